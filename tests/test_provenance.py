"""scalefit.provenance: version, git sha of the source checkout (or None), UTC timestamp."""

from __future__ import annotations

import datetime
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import scalefit
from scalefit import provenance as prov


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    prov.git_sha.cache_clear()
    yield
    prov.git_sha.cache_clear()


def test_provenance_fields() -> None:
    out = prov.provenance()
    assert set(out) == {"scalefit_version", "git_sha", "created"}
    assert out["scalefit_version"] == scalefit.__version__
    created = datetime.datetime.fromisoformat(out["created"])
    assert created.utcoffset() == datetime.timedelta(0)
    assert abs((datetime.datetime.now(datetime.UTC) - created).total_seconds()) < 60


def test_git_sha_is_the_checkouts_head_when_run_from_one() -> None:
    src = Path(prov.__file__).resolve().parent
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=src, capture_output=True, text=True, timeout=30)
    top = subprocess.run(
        ["git", "rev-parse", "--show-toplevel"], cwd=src, capture_output=True, text=True, timeout=30
    )
    if head.returncode != 0 or Path(top.stdout.strip()) / "scalefit" != src:
        assert prov.git_sha() is None  # an installed package: not a checkout of its own
    else:
        assert prov.git_sha() == head.stdout.strip()


def test_git_sha_none_outside_a_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prov, "_PACKAGE_DIR", tmp_path)
    assert prov.git_sha() is None


def test_git_sha_none_inside_someone_elses_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    repo = tmp_path / "repo"
    pkg = repo / "venv" / "site-packages" / "scalefit"
    pkg.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(repo)], check=True, timeout=30)
    monkeypatch.setattr(prov, "_PACKAGE_DIR", pkg.resolve())
    assert prov.git_sha() is None


def test_git_sha_none_without_git(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    assert prov.git_sha() is None


def test_git_sha_is_looked_up_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = subprocess.run

    def counting(*args: object, **kwargs: object) -> subprocess.CompletedProcess:
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(prov.subprocess, "run", counting)
    first = prov.git_sha()
    assert prov.git_sha() == first and prov.provenance()["git_sha"] == first
    assert len(calls) == 1
