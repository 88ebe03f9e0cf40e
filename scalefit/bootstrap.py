"""Bootstrap over groups (runs for curve laws, points for static laws), parameter CIs and prediction bands.

A resample draws as many groups as there are, with replacement; a group drawn k times enters the
objective with weight k. So every replicate reuses the same design (no copying or slicing of
law-specific arrays), and each is refitted by L-BFGS-B from the best fit. Replicates run in chunks
through a pluggable ``map_fn(fn, items) -> iterable`` (the built-in ``map`` by default; the runner
provides a Ray map). This module imports neither ray nor torch.

Bands: ``lo``/``hi`` are the (1-ci)/2 and (1+ci)/2 percentiles of the bootstrap predictions, i.e. a
confidence band for the mean curve. Without a bootstrap, a delta-method band from the Gauss-Newton
covariance (log-normal for the log objective). ``noise=True`` widens either band by the fit's residual
scale in quadrature (a prediction band for a single new observation).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.stats import norm

from scalefit.errors import ConfigError

__all__ = ["group_counts", "prediction_band", "run_bootstrap", "summarize"]


def group_counts(groups: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(counts (n, n_groups), group index per point) for ``n`` resamples of the groups."""
    uniq, gidx = np.unique(np.asarray(groups), return_inverse=True)
    n_groups = len(uniq)
    draws = np.random.default_rng(seed).integers(0, n_groups, size=(n, n_groups))
    flat = (draws + np.arange(n)[:, None] * n_groups).ravel()
    counts = np.bincount(flat, minlength=n * n_groups).reshape(n, n_groups).astype(float)
    return counts, gidx


def _refit_chunk(task: tuple[Any, np.ndarray, np.ndarray, np.ndarray, int]) -> np.ndarray:
    from scalefit.fitting import local_fit

    obj, u_hat, counts, gidx, maxiter = task
    out = np.empty((len(counts), len(u_hat)))
    for k, c in enumerate(counts):
        u, _, _, _ = local_fit(obj, u_hat, weights=obj.w * c[gidx], maxiter=maxiter)
        out[k] = obj.to_natural(u)
    return out


def run_bootstrap(
    obj: Any,
    u_hat: np.ndarray,
    n: int,
    *,
    seed: int = 0,
    map_fn: Callable[..., Any] | None = None,
    maxiter: int = 3000,
    n_chunks: int = 16,
) -> np.ndarray:
    """Parameter vectors (natural units) of ``n`` group-bootstrap refits, shape (n, n_params)."""
    if n < 0:
        raise ConfigError("bootstrap must be >= 0", field="bootstrap", value=n)
    counts, gidx = group_counts(obj.design.groups, n, seed)
    pieces = np.array_split(np.arange(n), min(n_chunks, max(1, n)))
    tasks = [(obj, u_hat, counts[idx], gidx, maxiter) for idx in pieces if len(idx)]
    mapper = map if map_fn is None else map_fn
    results = list(mapper(_refit_chunk, tasks))
    return np.concatenate(results, axis=0) if results else np.empty((0, len(u_hat)))


def summarize(
    boot: np.ndarray, names: list[str], ci: float
) -> tuple[dict[str, tuple[float, float]], dict[str, float], np.ndarray]:
    """Percentile CIs, bootstrap standard errors and covariance from the replicates."""
    alpha = (1.0 - ci) / 2.0
    lo, hi = np.nanpercentile(boot, [100 * alpha, 100 * (1 - alpha)], axis=0)
    finite = boot[np.all(np.isfinite(boot), axis=1)]
    cov = np.cov(finite, rowvar=False) if len(finite) > 1 else np.full((len(names),) * 2, np.nan)
    cov = np.atleast_2d(cov)
    cis = {nm: (float(a), float(b)) for nm, a, b in zip(names, lo, hi, strict=True)}
    sds = {nm: float(np.sqrt(cov[j, j])) for j, nm in enumerate(names)}
    return cis, sds, cov


def prediction_band(
    law: Any,
    design: Any,
    theta: np.ndarray,
    pred: np.ndarray,
    *,
    boot: np.ndarray | None,
    cov: np.ndarray | None,
    ci: float,
    log_space: bool,
    noise_scale: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, str]:
    """(lo, hi, method) around ``pred``; see the module docstring for the methods."""
    alpha = (1.0 - ci) / 2.0
    z = float(norm.ppf(1 - alpha))
    if boot is not None and len(boot):
        with np.errstate(all="ignore"):
            preds = law.predict_many(boot, design)
        lo, hi = np.nanpercentile(preds, [100 * alpha, 100 * (1 - alpha)], axis=0)
        method = "bootstrap-percentile"
    elif cov is not None:
        jac = law.jacobian(theta, design)
        sd = np.sqrt(np.maximum(np.sum((jac @ cov) * jac, axis=1), 0.0))
        if log_space:
            lo, hi = pred * np.exp(-z * sd / pred), pred * np.exp(z * sd / pred)
        else:
            lo, hi = pred - z * sd, pred + z * sd
        method = "delta-method"
    else:
        nan = np.full_like(pred, np.nan)
        return nan, nan.copy(), "none"
    if noise_scale > 0:
        extra = z * noise_scale
        if log_space:
            down = np.sqrt(np.log(pred / lo) ** 2 + extra**2)
            up = np.sqrt(np.log(hi / pred) ** 2 + extra**2)
            lo, hi = pred * np.exp(-down), pred * np.exp(up)
        else:
            lo = pred - np.sqrt((pred - lo) ** 2 + extra**2)
            hi = pred + np.sqrt((hi - pred) ** 2 + extra**2)
        method += "+noise"
    return np.asarray(lo, dtype=float), np.asarray(hi, dtype=float), method
