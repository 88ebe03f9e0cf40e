"""Percentile intervals of resampled draws: the one definition every CI and band in scalefit uses.

A central interval at ``level`` (e.g. 0.9) runs from the ``(1 - level) / 2`` to the ``(1 + level) / 2``
quantile of the draws, ignoring NaN draws (a replicate that did not converge is not a draw).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from scalefit.errors import ConfigError

__all__ = ["percentile_interval"]


def percentile_interval(
    draws: ArrayLike, level: float, axis: int | None = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi): the central ``level`` interval of ``draws`` along ``axis`` (NaN draws ignored)."""
    if not 0.0 < level < 1.0:
        raise ConfigError("an interval level must lie strictly between 0 and 1", field="level", value=level)
    tail = 50.0 * (1.0 - level)
    with np.errstate(all="ignore"):
        lo, hi = np.nanpercentile(np.asarray(draws, dtype=float), [tail, 100.0 - tail], axis=axis)
    return np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)
