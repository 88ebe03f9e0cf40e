"""Progress bars on stderr for long fits (tqdm), and the engine's ``threads`` and ``progress`` options.

``progress``: None (auto) shows a bar only when stderr is a terminal and only once the work has run
``AUTO_DELAY_S`` seconds (tqdm's ``disable=None`` and ``delay``), redrawn at most every 0.1 s; False
never; True always, at once, redrawn after every step. Bars are transient (``leave=False``): they are
cleared when the work is done.
"""

from __future__ import annotations

import sys

from tqdm import tqdm

from scalefit.errors import ConfigError

__all__ = ["AUTO_DELAY_S", "check_progress", "check_threads", "progress_bar"]

AUTO_DELAY_S = 2.0


def check_threads(threads: int | None) -> None:
    """``ConfigError`` unless ``threads`` is None or an int >= 1."""
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ConfigError(
            "threads must be an integer >= 1 or None",
            field="threads",
            value=threads,
            fix="threads=1 (the default), threads=N, or threads=None to leave the BLAS setting alone",
        )


def check_progress(progress: bool | None) -> None:
    """``ConfigError`` unless ``progress`` is None, True or False."""
    if progress is not None and not isinstance(progress, bool):
        raise ConfigError(
            "progress must be True, False or None",
            field="progress",
            value=progress,
            fix="progress=None (auto: on a terminal, after 2 s), True (always) or False (never)",
        )


def progress_bar(progress: bool | None, *, desc: str, total: int | None, unit: str) -> tqdm:
    """A tqdm bar on the current ``sys.stderr`` following the ``progress`` rule above."""
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        file=sys.stderr,
        leave=False,
        disable=None if progress is None else not progress,
        delay=AUTO_DELAY_S if progress is None else 0.0,
        mininterval=0.1 if progress is None else 0.0,
    )
