"""Fast numerics shared by the schedule-aware laws (momentum, multipower, multipower-size).

Conventions (see ``scalefit.schedules``): ``lr[k]`` is the LR of optimizer update ``k`` (0-indexed); the
loss logged at step ``s`` was computed before update ``s``, so it has seen updates ``0..s-1``:

- forward area ``S1(s) = P[s] = sum_{tau < s} lr[tau]`` (warmup included: the MPL paper's ``S1 + S_W``);
- signed LR increment of update ``k``: ``d[k] = lr[k-1] - lr[k]`` for ``k > warmup`` (a decay is
  positive, a re-warming negative); increments during warmup (``k <= warmup``) are zero by convention;
- Multi-Power Law drop sum at step ``s``: ``sum_{k < s} d[k] * G(lr[k]^-gamma * (P[s] - P[k]))``,
  i.e. the paper's ``S_k(t) = sum_{tau=k}^{t} lr[tau]`` with ``t = s - 1``.

The MPL reference code's convention (``MultiPowerLaw(convention="official")``, the default there) is
the same sum one step later with the warmup rises kept: ``P[s+1]`` and ``mpl_terms(lr, steps + 1,
warmup=0)``, with the LR area taken at ``s + 1`` (``CurveFeatures(shift=1)``).

The MPL drop sum is O(T^2) when written directly. ``mpl_terms`` turns it into a list of
(point, weight, area offset, log LR) terms, built once per design, so every evaluation is one vectorized
pass. With ``ratio=None`` the list is exact (every non-zero increment against every later point). With
a finite ``ratio`` R, increments further than ``R * 2**l`` steps from the point are merged into aligned
groups of ``2**l`` steps (multipole style, O(T log T) terms): a group of same-signed increments whose
log LR spreads by at most ``max_log_spread`` is replaced by one term of the same total weight placed at
its weighted mean area and weighted mean log LR, which cancels the first-order error. The remaining
second-order error of a group is at most ``beta*(beta+1)/24 * rho**2 + beta*(beta+1)*gamma**2 *
spread**2 / 8`` of its weight, where ``rho`` = group area width / area distance <= (lr_max/lr_min)/R.
With R=32 (the laws' default) and spread 0.02 that is below 1e-3 of the group's weight in the worst
case; measured against the O(T^2) sum it is about 1e-6 in loss on the published 24k-72k-step curves at
fitted parameters (benchmarks/lr_laws.py), ~100x below their 1e-4 rounding (tests/test_multipower.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter

__all__ = [
    "DROP_BLOCK",
    "LOG_LR_FLOOR",
    "MPLTerms",
    "lr_area",
    "lr_increments",
    "momentum_s2",
    "mpl_drop",
    "mpl_terms",
    "sorted_terms",
    "stack_terms",
]

DROP_BLOCK = 16_384  # terms per block of mpl_drop: its scratch columns (8 x 128 KiB) stay in cache
LOG_LR_FLOOR = float(np.log(1e-12))  # log LR used for an LR of exactly 0 (e.g. the last step of WSD-to-0)


def lr_area(lr: np.ndarray) -> np.ndarray:
    """``P`` with ``P[s] = sum_{tau < s} lr[tau]``, length ``len(lr) + 1`` (LR x steps)."""
    return np.concatenate([[0.0], np.cumsum(np.asarray(lr, dtype=float))])


def lr_increments(lr: np.ndarray, warmup: int) -> np.ndarray:
    """Signed decrements ``d[k] = lr[k-1] - lr[k]`` for ``k > warmup``, zero elsewhere; length ``len(lr)``."""
    lr = np.asarray(lr, dtype=float)
    d = np.zeros_like(lr)
    d[1:] = lr[:-1] - lr[1:]
    d[: max(int(warmup), 0) + 1] = 0.0
    return d


def momentum_s2(d: np.ndarray, lam: float) -> np.ndarray:
    """Annealing area of Tissue et al.: ``S2[s] = sum_{i < s} m_i``, ``m_i = lam*m_{i-1} + d[i]``.

    O(T) by a first-order recursive filter; length ``len(d) + 1`` (``S2[0] = 0``).
    """
    m = lfilter([1.0], [1.0, -float(lam)], np.asarray(d, dtype=float))
    return np.concatenate([[0.0], np.cumsum(m)])


@dataclass(frozen=True)
class MPLTerms:
    """Terms of the MPL drop sum: ``LD[p] = B * sum_{i: point_i = p} w_i * G(C*exp(-gamma*ell_i)*x_i)``.

    Sorted by point (``sorted_terms``), so the per-point sums are one ``np.add.reduceat`` over
    ``starts`` (the first term of each point that has any; ``has`` lists those points)."""

    point: np.ndarray  # int index of the design point, non-decreasing
    w: np.ndarray  # signed LR decrement (summed over a group)
    x: np.ndarray  # area since the decrement, P[s] - P[k] (> 0)
    ell: np.ndarray  # log LR after the decrement
    n_points: int
    starts: np.ndarray  # index of the first term of each point in ``has``
    has: np.ndarray  # the points with at least one term

    def __len__(self) -> int:
        return int(self.point.size)

    def sums(self, rows: np.ndarray) -> np.ndarray:
        """Per-point sums of each row of ``rows`` (k, n_terms) -> (k, n_points), zero where no term."""
        out = np.zeros((rows.shape[0], self.n_points))
        if self.has.size:
            out[:, self.has] = np.add.reduceat(rows, self.starts, axis=1)
        return out


def sorted_terms(point: np.ndarray, w: np.ndarray, x: np.ndarray, ell: np.ndarray, n_points: int) -> MPLTerms:
    """``MPLTerms`` from unsorted columns: stably sorted by point, with the segment starts."""
    order = np.argsort(point, kind="stable")
    point = np.asarray(point, dtype=np.int64)[order]
    has, starts = np.unique(point, return_index=True)
    return MPLTerms(point, w[order], x[order], ell[order], int(n_points), starts.astype(np.int64), has)


def _log_lr(lr: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.maximum(np.log(np.maximum(lr, 0.0)), LOG_LR_FLOOR)


def _level_units(prev: dict, d: np.ndarray, P: np.ndarray, ell: np.ndarray, size: int, spread: float) -> dict:
    """Units of level with group ``size``: a group's summary where compressible, else its children's units."""
    g = d.reshape(-1, size)
    absd = np.abs(g).sum(1)
    tot = g.sum(1)
    nz = g != 0
    lo = np.where(nz, ell.reshape(-1, size), np.inf).min(1)
    hi = np.where(nz, ell.reshape(-1, size), -np.inf).max(1)
    comp = (absd > 0) & np.isclose(np.abs(tot), absd, rtol=1e-12, atol=0.0) & (hi - lo <= spread)
    safe = np.where(comp, tot, 1.0)
    pbar = (g * P.reshape(-1, size)).sum(1) / safe
    lbar = (g * np.where(nz, ell.reshape(-1, size), 0.0)).sum(1) / safe
    keep = ~comp[prev["group"] // 2]
    gid = np.flatnonzero(comp)
    group = np.concatenate([prev["group"][keep] // 2, gid])
    order = np.argsort(group, kind="stable")
    units = {
        "group": group[order],
        "w": np.concatenate([prev["w"][keep], tot[gid]])[order],
        "p": np.concatenate([prev["p"][keep], pbar[gid]])[order],
        "ell": np.concatenate([prev["ell"][keep], lbar[gid]])[order],
    }
    units["offsets"] = np.searchsorted(units["group"], np.arange(g.shape[0] + 1))
    return units


def _gather(units: dict, point: np.ndarray, start: np.ndarray, stop: np.ndarray, P_s: np.ndarray) -> tuple:
    count = np.maximum(stop - start, 0)
    total = int(count.sum())
    base = np.repeat(start - np.concatenate([[0], np.cumsum(count)[:-1]]), count)
    idx = np.arange(total) + base
    rows = np.repeat(np.arange(point.size), count)
    return point[rows], units["w"][idx], P_s[rows] - units["p"][idx], units["ell"][idx]


def mpl_terms(
    lr: np.ndarray,
    steps: np.ndarray,
    warmup: int,
    *,
    ratio: float | None = 32.0,
    max_log_spread: float = 0.02,
    offset: int = 0,
) -> MPLTerms:
    """Terms of the MPL drop sum for one run at logged ``steps`` (each ``<= len(lr)``).

    ``offset`` is added to the point indices (to stack several runs in one design).
    """
    lr = np.asarray(lr, dtype=float)
    steps = np.asarray(steps, dtype=np.int64)
    P, d, ell = lr_area(lr), lr_increments(lr, warmup), _log_lr(lr)
    n_levels = 0 if ratio is None else max(int(np.ceil(np.log2(max(lr.size, 2) / ratio))) + 1, 0)
    width = 2**n_levels
    pad = (-lr.size) % width
    d_p, P_p, ell_p = (np.pad(a, (0, pad)) for a in (d, P[:-1], ell))
    nzk = np.flatnonzero(d_p)
    units = {"group": nzk, "w": d_p[nzk], "p": P_p[nzk], "ell": ell_p[nzk]}
    units["offsets"] = np.searchsorted(nzk, np.arange(d_p.size + 1))
    pts = np.arange(steps.size)
    P_s = P[steps]
    upper = steps.copy()
    parts = []
    for level in range(n_levels + 1):
        size = 2**level
        if level < n_levels:
            lower = np.maximum((steps - ratio * 2 * size) // (2 * size) * (2 * size), 0).astype(np.int64)
        else:
            lower = np.zeros_like(steps)
        start, stop = units["offsets"][lower // size], units["offsets"][upper // size]
        parts.append(_gather(units, pts, start, stop, P_s))
        upper = lower
        if level < n_levels:
            units = _level_units(units, d_p, P_p, ell_p, 2 * size, max_log_spread)
    point, w, x, ell_t = (np.concatenate(a) for a in zip(*parts, strict=True))
    return sorted_terms(point + offset, w, x, ell_t, steps.size + offset)


def mpl_drop(
    terms: MPLTerms, C: float, beta: float, gamma: float, *, grad: bool = False
) -> tuple[np.ndarray, ...]:
    """``sum w*G`` per point and, with ``grad``, its derivatives in C, beta, gamma.

    ``G = 1 - (1 + u)^-beta`` with ``u = C * exp(-gamma*ell) * x``. The summands are written into one
    (k, n_terms) buffer and summed per point by one ``reduceat``. They are computed in blocks of
    ``DROP_BLOCK`` terms: the passes over a block then stay in the core's cache instead of
    streaming every column of a long list through memory (1.6x faster on the 505k terms of the 124M
    horizon protocol, bit for bit the same values).
    """
    n = len(terms)
    rows = np.empty((4 if grad else 1, n))
    size = min(DROP_BLOCK, max(n, 1))
    u, log1pu, q, wq = (np.empty(size) for _ in range(4))  # scratch, reused by every block
    for a in range(0, n, size):
        b = min(a + size, n)
        m = b - a
        ub, lb, qb, wqb = u[:m], log1pu[:m], q[:m], wq[:m]
        ell, w = terms.ell[a:b], terms.w[a:b]
        np.multiply(ell, -gamma, out=ub)
        np.exp(ub, out=ub)
        ub *= terms.x[a:b]
        ub *= C  # u
        np.log1p(ub, out=lb)
        np.multiply(lb, -beta, out=qb)
        np.exp(qb, out=qb)  # (1 + u)^-beta
        np.subtract(1.0, qb, out=rows[0, a:b])
        rows[0, a:b] *= w  # w * G
        if grad:
            np.multiply(w, qb, out=wqb)
            np.multiply(wqb, lb, out=rows[2, a:b])  # w * dG/dbeta
            np.add(ub, 1.0, out=qb)
            np.divide(ub, qb, out=ub)  # u / (1 + u)
            np.multiply(wqb, ub, out=rows[1, a:b])
            rows[1, a:b] *= beta  # w * dG/du * u
            np.multiply(rows[1, a:b], ell, out=rows[3, a:b])
    sums = terms.sums(rows)
    if not grad:
        return (sums[0],)
    return sums[0], sums[1] / C, sums[2], -sums[3]


def stack_terms(parts: Sequence[MPLTerms], n_points: int) -> MPLTerms:
    """The terms of several runs (built with their point ``offset``) as one list over ``n_points``."""
    cols = [
        np.concatenate([getattr(p, f) for p in parts]) if parts else np.zeros(0)
        for f in ("point", "w", "x", "ell")
    ]
    return sorted_terms(cols[0].astype(np.int64), cols[1], cols[2], cols[3], n_points)
