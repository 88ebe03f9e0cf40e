"""Layered installs: the base package fits laws without torch or ray (those are the train / ray extras).

``test_base_install_fits_without_torch_or_ray`` builds a fresh virtualenv (no system site-packages, so it
cannot see this environment's torch and ray), installs the checkout with no extras from the package index
pip is configured with, and fits a law there. It takes about a minute, most of it pip.
"""

from __future__ import annotations

import os
import pkgutil
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import scalefit

ROOT = Path(__file__).resolve().parents[1]
# Modules that need an extra at import time: the trainer (torch), the runner (ray), the demo (a sweep).
NEEDS_EXTRA = {
    "scalefit.proxy.checkpoint",
    "scalefit.proxy.model",
    "scalefit.proxy.train",
    "scalefit.cluster.runner",
    "scalefit.cli.demo",
}
FIT = (
    "import scalefit as sf, sys; "
    "fit = sf.fit(sf.datasets.load('chinchilla-epoch'), law='chinchilla'); "
    "assert 'torch' not in sys.modules and 'ray' not in sys.modules, 'torch or ray imported'; "
    "print('fitted', type(fit).__name__)"
)


def _base_modules() -> list[str]:
    names = [m.name for m in pkgutil.walk_packages(scalefit.__path__, "scalefit.")]
    return sorted(n for n in names if n not in NEEDS_EXTRA)


def test_base_modules_import_neither_torch_nor_ray(tmp_path: Path) -> None:
    """Importing every other module (each in turn, in one fresh process) pulls in neither."""
    script = textwrap.dedent(
        """
        import importlib, sys
        for name in sys.argv[1:]:
            importlib.import_module(name)
            heavy = [m for m in ("torch", "ray") if m in sys.modules]
            if heavy:
                sys.exit(f"importing {name} imported {heavy}")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script, *_base_modules()],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]


def _copy_source(dest: Path) -> Path:
    """The files a build needs, without this checkout's build leftovers (egg-info, caches)."""
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "*.tmp")
    shutil.copytree(ROOT / "scalefit", dest / "scalefit", ignore=skip)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, dest / name)
    return dest


@pytest.mark.slow
def test_base_install_fits_without_torch_or_ray(tmp_path: Path) -> None:
    src = _copy_source(tmp_path / "src")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=600)
    python = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", str(src)],
        capture_output=True,
        text=True,
        timeout=1800,
        env=env,
        cwd=tmp_path,
    )
    assert install.returncode == 0, (install.stdout + install.stderr)[-4000:]
    listed = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=freeze"],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        check=True,
    ).stdout.lower()
    assert "torch==" not in listed and "ray==" not in listed, listed
    fit = subprocess.run(
        [str(python), "-c", FIT], capture_output=True, text=True, timeout=900, env=env, cwd=tmp_path
    )
    assert fit.returncode == 0 and "fitted" in fit.stdout, (fit.stdout + fit.stderr)[-4000:]
    cli = subprocess.run(
        [str(venv / "bin" / "scalefit"), "--help"],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=tmp_path,
    )
    assert cli.returncode == 0, (cli.stdout + cli.stderr)[-4000:]
