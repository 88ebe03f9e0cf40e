"""What produced a result: the scalefit version, the git commit of its source tree, and when.

    from scalefit.provenance import provenance
    provenance()  # {'scalefit_version': '0.1.0', 'git_sha': '7465512...' or None, 'created': '...+00:00'}

The store writes ``scalefit_version`` and ``git_sha`` with every run; fits and reports carry the same
record. ``git_sha`` is the ``HEAD`` of the checkout scalefit is imported from (an editable install), and
None for an installed package, a source tree outside git, or a machine without git. It is looked up once
per process, at the first call (never at import).
"""

from __future__ import annotations

import functools
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from scalefit import __version__

__all__ = ["provenance", "git_sha"]

_PACKAGE_DIR = Path(__file__).resolve().parent
_GIT_TIMEOUT_S = 10.0


@functools.cache
def git_sha() -> str | None:
    """The commit checked out in the git work tree that holds this scalefit package, else None.

    A package installed into an environment that itself sits inside some git checkout (a venv in a
    repository) is not that checkout's code, so the work tree must hold this very package folder.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--show-toplevel", "HEAD"],
            cwd=_PACKAGE_DIR,
            capture_output=True,
            text=True,
            timeout=_GIT_TIMEOUT_S,
            env=env,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    lines = out.stdout.splitlines()
    if out.returncode != 0 or len(lines) != 2:
        return None
    top, sha = lines
    if (Path(top) / _PACKAGE_DIR.name).resolve() != _PACKAGE_DIR:
        return None
    return sha


def provenance() -> dict[str, str | None]:
    """``{'scalefit_version', 'git_sha', 'created'}``; ``created``: now, UTC, ISO 8601 to the second."""
    created = datetime.now(UTC).isoformat(timespec="seconds")
    return {"scalefit_version": __version__, "git_sha": git_sha(), "created": created}
