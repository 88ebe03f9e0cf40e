"""Compute-optimal model size from isoFLOP profiles: Chinchilla Approach 2 and Porian et al.'s variant.

For each FLOP budget C the loss of models of different size N (each trained with exactly C FLOPs) is
minimised over N, giving N*(C); then ``log N* = a log C + c`` is fitted by weighted linear regression.

- Approach 2 (Hoffmann et al. 2022, arXiv:2203.15556): a parabola of loss in log N per budget; its
  vertex is N*.
- Porian et al. 2024 (arXiv:2406.19146): Akima-interpolate log loss against log N on a fine grid
  (``scipy.interpolate.Akima1DInterpolator``); the grid argmin is N*. Budgets whose minimum falls on a
  grid edge are dropped. Uncertainty: bootstrap replicas add Gaussian "seed noise" to every loss, with an
  SD interpolated log-log between ``sd_low`` at L <= e^``at_low`` and ``sd_high`` at L >= e^``at_high``
  (0.002 / 0.05 at e^3 / e^7 on RefinedWeb; 0.01 / 0.1 at e^3 / e^6 on OpenWebText2). The SD of log N*
  per budget is floored at 0.33 x the spacing of log N in that budget; weights are 1/SD^2; the point
  estimate uses the bootstrap-median N*, the CI refits every replica (vectorized: one solve for all).

The same code gives the token exponent (``size="T"``). Not a ``Law``: it has no loss model to fit.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.interpolate import Akima1DInterpolator

from scalefit.errors import DataError, FitError, FitWarning
from scalefit.fitting.intervals import percentile_interval

__all__ = [
    "ExponentFit",
    "parabola_minimum",
    "akima_minimum",
    "seed_noise_sd",
    "budget_optima",
    "weighted_power_law",
    "isoflop_exponent",
]


@dataclass(frozen=True)
class ExponentFit:
    """``N* = coef * C^exponent`` with a bootstrap CI, the per-budget optima and any warnings."""

    exponent: float
    coef: float
    r2: float
    ci: tuple[float, float]
    level: float
    n_boot: int
    method: str
    optima: pd.DataFrame
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "exponent": self.exponent,
            "coef": self.coef,
            "r2": self.r2,
            "ci": list(self.ci),
            "level": self.level,
            "n_boot": self.n_boot,
            "method": self.method,
            "warnings": list(self.warnings),
        }


def parabola_minimum(log_n: np.ndarray, loss: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vertex of ``loss = c0 + c1 x + c2 x^2`` fitted per column; ``loss`` is (n_models,) or (n, k).

    Returns (x*, loss*, at_edge); at_edge is True where c2 <= 0 or the vertex lies outside the data.
    """
    x = np.asarray(log_n, dtype=float)
    y = np.asarray(loss, dtype=float)
    y2 = y.reshape(len(x), -1)
    c2, c1, c0 = np.polyfit(x, y2, 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        xs = -c1 / (2 * c2)
    ys = c0 - c1**2 / (4 * c2)
    edge = (c2 <= 0) | (xs <= x.min()) | (xs >= x.max())
    shape = y.shape[1:]
    return xs.reshape(shape), ys.reshape(shape), edge.reshape(shape)


def akima_minimum(
    log_n: np.ndarray, log_loss: np.ndarray, grid: int = 1000
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Argmin over a fine grid of the Akima interpolant of ``log_loss`` (n_models,) or (n_models, k).

    Returns (x*, log_loss*, at_edge), each of shape ``log_loss.shape[1:]``.
    """
    x = np.asarray(log_n, dtype=float)
    y = np.asarray(log_loss, dtype=float)
    fine = np.linspace(x[0], x[-1], grid)
    values = Akima1DInterpolator(x, y, axis=0)(fine)
    idx = np.argmin(values, axis=0)
    best = np.take_along_axis(values, np.expand_dims(idx, 0), axis=0)[0]
    return fine[idx], best, (idx == 0) | (idx == grid - 1)


def seed_noise_sd(
    loss: np.ndarray,
    *,
    sd_low: float = 0.002,
    sd_high: float = 0.05,
    at_low: float = 3.0,
    at_high: float = 7.0,
) -> np.ndarray:
    """Porian et al.'s seed-noise SD, interpolated log-log from (e^at_low, sd_low) to (e^at_high, sd_high)."""
    t = np.clip(np.log(np.asarray(loss, dtype=float)), at_low, at_high)
    frac = (np.log(t) - np.log(at_low)) / (np.log(at_high) - np.log(at_low))
    return np.exp(np.log(sd_low) + frac * (np.log(sd_high) - np.log(sd_low)))


def _budget_replicas(
    h: pd.DataFrame, size: str, loss: str, method: str, n_boot: int, rng: np.random.Generator, noise: dict
) -> tuple[float, np.ndarray, bool, float]:
    """The point optimum, the replica optima, the edge flag and the log-size spacing of one budget."""
    x = np.log(h[size].to_numpy(float))
    y = h[loss].to_numpy(float)
    sd = seed_noise_sd(y, **noise)
    noisy = y[:, None] + sd[:, None] * rng.standard_normal((len(y), n_boot))
    both = np.concatenate([y[:, None], np.maximum(noisy, 1e-12)], axis=1)
    if method == "akima":
        xs, _, edge = akima_minimum(x, np.log(both))
    else:
        xs, _, edge = parabola_minimum(x, both)
    return float(xs[0]), xs[1:], bool(edge[0]), float(np.mean(np.diff(x)))


def budget_optima(
    points: pd.DataFrame,
    *,
    method: str = "akima",
    budget: str = "flops",
    size: str = "N",
    loss: str = "loss",
    n_boot: int = 1000,
    seed: int = 0,
    noise: dict | None = None,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Per-budget optima (median of replicas, SD of log size, edge flag) and the replica matrix.

    Returns a frame [budget, log_size_star, size_star, log_size_sd, n_models, dropped] and the replica
    log optima, shape (n_budgets, n_boot). ``dropped`` says why a budget is unusable ("" if usable):
    fewer than 3 models, or the minimum at the edge of the size grid. Several runs of one size in a
    budget (e.g. an LR sweep) are reduced to the best, as Porian et al. do.
    """
    if method not in ("akima", "parabola"):
        raise FitError("unknown isoFLOP method", field="method", value=method, fix="use akima or parabola")
    for col in (budget, size, loss):
        if col not in points.columns:
            raise DataError("isoFLOP points lack a column", column=col, fix=f"give {budget}, {size}, {loss}")
    rng = np.random.default_rng(seed)
    rows, reps = [], []
    finite = points[np.isfinite(points[loss].to_numpy(float))]  # diverged runs cannot be an optimum
    best = finite.groupby([budget, size], as_index=False)[loss].min()  # the best run per (C, N)
    for c, h in best.sort_values([budget, size]).groupby(budget):
        if len(h) < 3:
            rows.append((float(c), np.nan, np.nan, np.nan, len(h), "fewer than 3 models"))
            reps.append(np.full(max(n_boot, 1), np.nan))
            continue
        x0, xs, edge, spacing = _budget_replicas(h, size, loss, method, max(n_boot, 1), rng, noise or {})
        sd = max(float(np.std(xs)), 0.33 * spacing)
        med = float(np.median(xs)) if n_boot > 0 else x0
        rows.append((float(c), med, float(np.exp(med)), sd, len(h), "minimum at the edge" if edge else ""))
        reps.append(xs)
    cols = ["budget", "log_size_star", "size_star", "log_size_sd", "n_models", "dropped"]
    return pd.DataFrame(rows, columns=cols), np.array(reps)


def weighted_power_law(
    log_c: np.ndarray, log_y: np.ndarray, weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted least squares of ``log_y = a log_c + b``; ``log_y`` (n,) or (n, k) fits k columns at once."""
    x = np.asarray(log_c, dtype=float)
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype=float)
    X = np.stack([x, np.ones_like(x)], axis=1)
    XtW = X.T * w
    coef = np.linalg.solve(XtW @ X, XtW @ np.asarray(log_y, dtype=float))
    return coef[0], coef[1]


def isoflop_exponent(
    points: pd.DataFrame,
    *,
    method: str = "akima",
    budget: str = "flops",
    size: str = "N",
    loss: str = "loss",
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    noise: dict | None = None,
) -> ExponentFit:
    """The exponent a of ``size* ~ C^a`` from isoFLOP points (see the module docstring)."""
    optima, reps = budget_optima(
        points, method=method, budget=budget, size=size, loss=loss, n_boot=n_boot, seed=seed, noise=noise
    )
    keep = (optima["dropped"] == "").to_numpy(bool)
    notes = [
        f"dropped budget C={c:.3g}: {why}"
        for c, why in zip(optima.budget[~keep], optima.dropped[~keep], strict=True)
    ]
    optima, reps = optima[keep].reset_index(drop=True), reps[keep]
    if len(optima) < 2:
        raise FitError("fewer than two budgets with an interior optimum", field="budget", value=len(optima))
    if len(optima) < 4:
        notes.append(f"only {len(optima)} budgets: the exponent is poorly identified")
    log_c = np.log(optima.budget.to_numpy())
    w = 1.0 / optima.log_size_sd.to_numpy() ** 2
    y = optima.log_size_star.to_numpy()
    a, b = weighted_power_law(log_c, y, w)
    resid = y - (a * log_c + b)
    ybar = np.average(y, weights=w)
    r2 = 1.0 - np.sum(w * resid**2) / np.sum(w * (y - ybar) ** 2)
    boot_a, _ = weighted_power_law(log_c, reps, w)
    ci = tuple(float(v) for v in percentile_interval(boot_a, level))
    for note in notes:
        warnings.warn(note, FitWarning, stacklevel=2)
    return ExponentFit(float(a), float(np.exp(b)), float(r2), ci, level, n_boot, method, optima, tuple(notes))
