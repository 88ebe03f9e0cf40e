"""Bootstrap over groups (runs for curve laws, points for static laws), parameter CIs and prediction bands.

A resample draws as many groups as there are, with replacement; a group drawn k times enters the
objective with weight k. So every replicate reuses the same design (no copying or slicing of
law-specific arrays). All replicates of a chunk are refitted at once from the best fit by the vectorized
Levenberg-Marquardt of the multi-start screen (``scalefit.fitting.local.batched_lm``); rows it does not
converge are finished by L-BFGS-B. Replicates run in chunks
through a pluggable ``map_fn(fn, items) -> iterable`` (the built-in ``map`` by default; the runner
provides a Ray map). This module imports neither ray nor torch.

Bands: ``lo``/``hi`` are the (1-ci)/2 and (1+ci)/2 percentiles of the bootstrap predictions, i.e. a
confidence band for the mean curve. Without a bootstrap, a delta-method band from the Gauss-Newton
covariance (log-normal for the log objective). ``noise=True`` widens either band by the fit's residual
scale in quadrature (a prediction band for a single new observation).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm
from threadpoolctl import threadpool_limits

from scalefit.errors import ConfigError
from scalefit.fitting.local import BATCH_ELEMS, batched_lm, local_fit
from scalefit.fitting.objective import Objective
from scalefit.fitting.progress import progress_bar
from scalefit.laws.base import Design, Law

__all__ = [
    "MapFn",
    "RefitTask",
    "group_counts",
    "prediction_band",
    "run_bootstrap",
    "summarize",
]

# map_fn(fn, items) -> results in order: the built-in ``map``, or a parallel map (the runner's Ray map)
MapFn = Callable[[Callable[["RefitTask"], np.ndarray], Sequence["RefitTask"]], Iterable[np.ndarray]]


def group_counts(groups: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(counts (n, n_groups), group index per point) for ``n`` resamples of the groups."""
    uniq, gidx = np.unique(np.asarray(groups), return_inverse=True)
    n_groups = len(uniq)
    draws = np.random.default_rng(seed).integers(0, n_groups, size=(n, n_groups))
    flat = (draws + np.arange(n)[:, None] * n_groups).ravel()
    counts = np.bincount(flat, minlength=n * n_groups).reshape(n, n_groups).astype(float)
    return counts, gidx


@dataclass(frozen=True)
class RefitTask:
    """One chunk of bootstrap replicates: resample counts per group, refitted from ``u_hat``."""

    obj: Objective
    u_hat: np.ndarray
    counts: np.ndarray  # (n_replicates, n_groups)
    gidx: np.ndarray  # group index per point
    maxiter: int
    threads: int | None = None  # BLAS thread limit in force while the chunk runs (None: leave it alone)


def _refit_chunk(task: RefitTask) -> np.ndarray:
    obj, u_hat = task.obj, task.u_hat
    rows = max(1, BATCH_ELEMS // max(1, obj.design.n_points * len(u_hat)))
    out = []
    with threadpool_limits(limits=task.threads, user_api="blas"):  # also in a map_fn's workers
        for start in range(0, len(task.counts), rows):
            W = obj.w * task.counts[start : start + rows, task.gidx]
            refit = batched_lm(
                obj, np.tile(u_hat, (len(W), 1)), weights=W, maxiter=100, rtol=1e-10, exact=True
            )
            U, ok = refit.U, refit.converged
            for k in np.flatnonzero(~ok):
                U[k] = local_fit(obj, U[k], weights=W[k], maxiter=task.maxiter).u
            out.append(obj.to_natural(U))
    return np.concatenate(out, axis=0)


def run_bootstrap(
    obj: Objective,
    u_hat: np.ndarray,
    n: int,
    *,
    seed: int = 0,
    map_fn: MapFn | None = None,
    maxiter: int = 3000,
    n_chunks: int | None = None,
    threads: int | None = None,
    progress: bool | None = None,
) -> np.ndarray:
    """Parameter vectors (natural units) of ``n`` group-bootstrap refits, shape (n, n_params).

    ``n_chunks``: how many tasks ``map_fn`` gets (default 16, or 1 without ``map_fn``); each replicate
    is refitted independently, so the result does not depend on the chunking. ``threads``: the BLAS
    thread limit each chunk runs under (None: leave it alone). ``progress``: a bar over the chunks as
    ``map_fn`` returns them (``scalefit.fitting.progress``)."""
    if n < 0:
        raise ConfigError("bootstrap must be >= 0", field="bootstrap", value=n)
    counts, gidx = group_counts(obj.design.groups, n, seed)
    if n_chunks is None:
        n_chunks = 1 if map_fn is None else 16
    pieces = np.array_split(np.arange(n), min(n_chunks, max(1, n)))
    tasks = [RefitTask(obj, u_hat, counts[idx], gidx, maxiter, threads) for idx in pieces if len(idx)]
    mapper = map if map_fn is None else map_fn
    with progress_bar(progress, desc=f"{obj.law.name}: bootstrap", total=len(tasks), unit="chunk") as bar:
        results = []
        for chunk in mapper(_refit_chunk, tasks):
            results.append(chunk)
            bar.update()
    return np.concatenate(results, axis=0) if results else np.empty((0, len(u_hat)))


def summarize(
    boot: np.ndarray, names: Sequence[str], ci: float
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
    law: Law,
    design: Design,
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
