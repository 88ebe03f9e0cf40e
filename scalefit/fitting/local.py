"""Local optimisation and the multi-start search, on an ``Objective``.

The start grid (Cartesian product of ``Param.grid``) is scored in one vectorized pass
(``Objective.values_many``); the search runs from the best starts plus a seeded sample of the rest:

1. Screen: rounds of ``SCREEN_ITERS`` iterations of a Levenberg-Marquardt solver vectorized over the
   starts (``batched_lm``: one ``predict_and_jacobian_many`` call per iteration for all of them;
   iteratively reweighted Gauss-Newton for the Huber, projected on the bounds). After each round the
   better half by objective goes on (successive halving), until ``REFINE`` starts are left: 24 starts
   take 4 rounds and 42 start-rounds, Hoffmann's 4,500-point grid 12 rounds.
2. Refine: those ``REFINE`` starts are continued by the same solver (with the Huber's exact
   curvature) to convergence (``LM_MAXITER``), then polished by L-BFGS-B with the exact gradient
   (``local_fit``, the engine's tolerances), which also says how each run stopped. ``n_refined``
   counts them; ``n_unfinished`` the screened starts dropped before they had converged. ``n_best``:
   runs ending within ``BASIN_RTOL`` of the best (the dropped ones at their last screen value).

The screen costs about ``2 * SCREEN_ITERS`` evaluations per start, Python overhead paid once per
iteration for all starts; Gauss-Newton steps reach a basin's floor in a handful of iterations where
L-BFGS-B from a far start takes hundreds (on the 124M cooldown workload the per-start search took 202
L-BFGS-B runs and 18k evaluations).

How an L-BFGS-B run stopped comes from scipy's ``OptimizeResult.status`` and ``nit`` (``Stop``), not its
message: status 0 converged; status 1 with ``nit >= maxiter`` hit the iteration limit; status 2 (e.g.
the line search failed) counts as converged when the projected gradient is flat there.
"""

from __future__ import annotations

import enum
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from scalefit.errors import ConfigError
from scalefit.fitting.objective import Objective

__all__ = [
    "BASIN_RTOL",
    "LM_MAXITER",
    "MAX_GRID",
    "OnRun",
    "REFINE",
    "SCREEN_ITERS",
    "Batch",
    "LocalRun",
    "Multistart",
    "Starts",
    "Stop",
    "batched_lm",
    "choose_starts",
    "local_fit",
    "multistart",
    "start_grid",
]

BASIN_RTOL = 1e-4
SCREEN_ITERS = 3  # vectorized Levenberg-Marquardt iterations per round of the screen
REFINE = 4  # starts continued to convergence after the screen, lowest objective first
LM_MAXITER = 300  # Levenberg-Marquardt iterations of a refined start (then L-BFGS-B polishes)
LM_RTOL = 1e-12  # an accepted LM step lowering the objective by less than this (relative) converges
MAX_GRID = 100_000
BATCH_ELEMS = 20_000_000  # Jacobian elements (rows x points x parameters) per vectorized LM batch
_FLAT_GTOL = 1e-6  # relative projected-gradient size that makes a failed line search a converged run

Starts = int | str | Sequence[Sequence[float]] | np.ndarray | None
# on_run(stage, done, total): stage "screen" after each round of the screen (total: the rounds),
# "refine" after each refined start (total: the number refined)
OnRun = Callable[[str, int, int], None]


class Stop(enum.Enum):
    """Why a local run stopped."""

    CONVERGED = "converged"  # scipy status 0
    FLAT = "flat"  # scipy status 2 (line search failed) at a flat projected gradient: converged
    ITERATION_LIMIT = "iteration_limit"  # scipy status 1 with nit >= maxiter
    EVALUATION_LIMIT = "evaluation_limit"  # scipy status 1 below maxiter: function evaluations
    FAILED = "failed"  # scipy status 2 with a gradient that is not flat, or any other status

    @property
    def converged(self) -> bool:
        return self in (Stop.CONVERGED, Stop.FLAT)


@dataclass(frozen=True)
class LocalRun:
    """One L-BFGS-B run: the internal vector it ended at, its objective and how it stopped."""

    u: np.ndarray
    objective: float
    stop: Stop
    nit: int
    message: str

    @property
    def converged(self) -> bool:
        return self.stop.converged

    @property
    def at_iteration_limit(self) -> bool:
        return self.stop is Stop.ITERATION_LIMIT


@dataclass(frozen=True)
class Multistart:
    """The best local run of a multi-start search and the search's statistics."""

    best: LocalRun
    n_grid: int
    n_starts: int
    n_best: int
    n_refined: int
    n_unfinished: int

    @property
    def objective(self) -> float:
        return self.best.objective

    def summary(self) -> dict[str, float | int | bool | str]:
        """The JSON-able record stored in ``Fit.diagnostics``."""
        return {
            "objective": self.best.objective,
            "converged": self.best.converged,
            "stop": self.best.stop.value,
            "message": self.best.message,
            "n_grid": self.n_grid,
            "n_starts": self.n_starts,
            "n_best": self.n_best,
            "n_refined": self.n_refined,
            "n_unfinished": self.n_unfinished,
        }


def start_grid(obj: Objective, seed: int = 0, max_grid: int = MAX_GRID) -> np.ndarray:
    """The Cartesian product of the start grids, in internal space (deterministically subsampled)."""
    axes = [p.starts() for p in obj.params]
    size = math.prod(len(a) for a in axes)
    if size <= max_grid:
        grid = np.array(list(itertools.product(*axes)), dtype=float)
    else:
        rng = np.random.default_rng(seed)
        grid = np.stack([rng.choice(np.asarray(a), size=max_grid) for a in axes], axis=1)
    return obj.to_internal(grid.reshape(-1, len(axes)))


def _stop(
    obj: Objective,
    status: int,
    nit: int,
    maxiter: int,
    x: np.ndarray,
    fun: float,
    weights: np.ndarray | None,
) -> Stop:
    if status == 0:
        return Stop.CONVERGED
    if status == 1:
        return Stop.ITERATION_LIMIT if nit >= maxiter else Stop.EVALUATION_LIMIT
    if status == 2:  # line search exhausted: at a flat optimum?
        lo, hi = obj.bound_arrays()
        grad = obj.value_and_grad(x, weights)[1]
        grad = np.where(((x <= lo) & (grad > 0)) | ((x >= hi) & (grad < 0)), 0.0, grad)
        flat = bool(np.max(np.abs(grad)) <= _FLAT_GTOL * max(1.0, abs(float(fun))))
        return Stop.FLAT if flat else Stop.FAILED
    return Stop.FAILED


def local_fit(
    obj: Objective, u0: np.ndarray, weights: np.ndarray | None = None, maxiter: int = 3000
) -> LocalRun:
    """One L-BFGS-B run from ``u0`` (clipped to the bounds)."""
    lo, hi = obj.bound_arrays()
    u0 = np.clip(u0, lo, hi)
    res = minimize(
        obj.value_and_grad,
        u0,
        args=(weights,),
        jac=True,
        method="L-BFGS-B",
        bounds=obj.bounds(),
        options={"maxiter": maxiter, "ftol": 1e-15, "gtol": 1e-12, "maxcor": 20},
    )
    x = np.asarray(res.x, dtype=float)
    nit = int(res.nit)
    stop = _stop(obj, int(res.status), nit, maxiter, x, float(res.fun), weights)
    return LocalRun(u=x, objective=float(res.fun), stop=stop, nit=nit, message=str(res.message))


def choose_starts(obj: Objective, grid: np.ndarray, starts: Starts, seed: int) -> np.ndarray:
    """The internal start vectors: explicit ones, the whole grid, or the best two thirds of ``starts``
    grid points by objective plus a seeded random third (24 by default)."""
    if starts is not None and not isinstance(starts, (int, str)):
        explicit = np.atleast_2d(np.asarray(starts, dtype=float))
        if explicit.shape[1] != len(obj.params):
            raise ConfigError(
                "explicit starts need one value per parameter",
                field="starts",
                value=explicit.shape,
                fix=f"give rows of {list(obj.names)}",
            )
        return obj.to_internal(explicit)
    if isinstance(starts, str) and starts != "all":
        raise ConfigError("unknown starts option", field="starts", value=starts, fix='use "all" or an int')
    if starts == "all" or len(grid) <= 8:
        return grid
    k = 24 if starts is None else int(starts)
    if k < 1:
        raise ConfigError("starts must be >= 1", field="starts", value=starts)
    if k >= len(grid):
        return grid
    order = np.argsort(obj.values_many(grid), kind="stable")
    n_best = max(1, (2 * k) // 3)
    rest = np.random.default_rng(seed).choice(order[n_best:], size=k - n_best, replace=False)
    return grid[np.concatenate([order[:n_best], np.sort(rest)])]


@dataclass(frozen=True)
class Batch:
    """Rows of a vectorized Levenberg-Marquardt run: where each ended, its objective, whether it met the
    convergence test and its iteration count."""

    U: np.ndarray  # (B, p) internal vectors
    f: np.ndarray  # (B,) objective (inf where not finite)
    converged: np.ndarray  # (B,) bool
    nit: np.ndarray  # (B,) int


def _lm_step(
    obj: Objective, U: np.ndarray, W: np.ndarray, lam: np.ndarray, exact: bool
) -> tuple[np.ndarray, np.ndarray]:
    """One damped, bound-projected Gauss-Newton step for every row of ``U``, with the per-point weights
    ``W`` (B, n); the curvature of each residual is ``Objective.curvature`` (``exact``) or
    ``Objective.irls_weight``. Returns (step (B, p), finite (B,))."""
    lo, hi = obj.bound_arrays()
    theta = obj.to_natural(U)
    with np.errstate(all="ignore"):
        pred, jac = obj.law.predict_and_jacobian_many(theta, obj.design)
        jr = obj.residual_jacobian(theta, pred, jac)  # (B, n, p)
        if not obj.valid.all():  # rows of excluded points may hold inf or NaN; their weight is 0
            jr = np.where(obj.valid[:, None], jr, 0.0)
        r = obj.residuals(pred)
        jt = jr.transpose(0, 2, 1)
        grad = np.matmul(jt, (W * obj.psi(r))[..., None])[..., 0]  # (B, p)
        omega = obj.curvature(r) if exact else obj.irls_weight(r)
        hess = np.matmul(jt, (W * omega)[..., None] * jr)  # (B, p, p)
    finite = np.all(np.isfinite(grad), axis=1) & np.all(np.isfinite(hess), axis=(1, 2))
    fixed = ((U <= lo) & (grad > 0)) | ((U >= hi) & (grad < 0))  # at a bound, pushed outwards: held
    eye = np.eye(U.shape[1], dtype=bool)
    hess = np.where(fixed[:, :, None] | fixed[:, None, :], np.where(eye, 1.0, 0.0), hess)
    hess = np.where(finite[:, None, None], hess, np.eye(U.shape[1]))
    grad = np.where(fixed | ~finite[:, None], 0.0, grad)
    diag = np.einsum("bpp->bp", hess)
    damped = hess + (lam[:, None] * diag + 1e-12 * (1.0 + diag))[..., None] * eye
    try:
        step = -np.linalg.solve(damped, grad[..., None])[..., 0]
    except np.linalg.LinAlgError:
        step = np.stack([-np.linalg.lstsq(a, g, rcond=None)[0] for a, g in zip(damped, grad, strict=True)])
    return np.where(np.isfinite(step), step, 0.0), finite


def _lm_rows(
    obj: Objective,
    U: np.ndarray,
    W: np.ndarray,
    maxiter: int,
    rtol: float,
    exact: bool,
    on_iter: Callable[[int], None] | None,
) -> Batch:
    """``batched_lm`` on one chunk of rows."""
    lo, hi = obj.bound_arrays()
    U = np.clip(U, lo, hi)
    f = obj.values_many(U, W)
    lam = np.full(len(U), 1e-3)
    done = ~np.isfinite(f)
    converged = np.zeros(len(U), dtype=bool)
    nit = np.zeros(len(U), dtype=np.int64)
    for it in range(maxiter):
        act = np.flatnonzero(~done)
        if act.size:
            step, finite = _lm_step(obj, U[act], W[act], lam[act], exact)
            cand = np.clip(U[act] + step, lo, hi)
            f_new = obj.values_many(cand, W[act])
            better = f_new <= f[act]
            small = better & (f[act] - f_new <= rtol * np.abs(f[act]))
            small |= np.max(np.abs(cand - U[act]), axis=1) <= 1e-14 * (1.0 + np.max(np.abs(U[act]), axis=1))
            U[act[better]], f[act[better]] = cand[better], f_new[better]
            lam[act] = np.where(better, np.maximum(lam[act] / 3.0, 1e-12), lam[act] * 4.0)
            nit[act] += 1
            converged[act] = small & finite
            done[act] = converged[act] | ~finite | (lam[act] > 1e12)
        if on_iter is not None:
            on_iter(it + 1)
        if done.all():
            break
    return Batch(U=U, f=f, converged=converged, nit=nit)


def batched_lm(
    obj: Objective,
    U0: np.ndarray,
    *,
    weights: np.ndarray | None = None,
    maxiter: int = LM_MAXITER,
    rtol: float = LM_RTOL,
    exact: bool = False,
    on_iter: Callable[[int], None] | None = None,
) -> Batch:
    """Levenberg-Marquardt from every row of ``U0`` at once (internal vectors, clipped to the bounds).

    Each iteration takes one damped Gauss-Newton step per row, with parameters at a bound that the
    gradient pushes outwards held there. The curvature of a residual is its IRLS weight
    (``Objective.irls_weight``: a majorizer, so steps descend from far-off starts; convergence is
    linear when many residuals lie beyond the Huber's delta) or, with ``exact``, the Huber's own
    (``Objective.curvature``: 1 inside delta, 0 beyond; quadratic convergence near an optimum). A
    step is kept when it does not raise the row's objective (the damping then falls by 3, else rises
    by 4). A row converges when a kept step lowers its objective by at most ``rtol`` (relative) or the
    step vanishes; it stops when its damping exceeds 1e12. ``weights``: per-point weights, one row
    per start (bootstrap resamples), else the objective's own. Rows are processed in chunks of
    ``BATCH_ELEMS`` Jacobian elements. ``on_iter(k)`` is called after iteration k of the first chunk.
    """
    U0 = np.atleast_2d(np.asarray(U0, dtype=float))
    W = np.tile(obj.w, (len(U0), 1)) if weights is None else np.atleast_2d(np.asarray(weights, dtype=float))
    rows = max(1, BATCH_ELEMS // max(1, obj.design.n_points * U0.shape[1]))
    parts = [
        _lm_rows(
            obj, U0[i : i + rows].copy(), W[i : i + rows], maxiter, rtol, exact, on_iter if i == 0 else None
        )
        for i in range(0, len(U0), rows)
    ]
    return Batch(*(np.concatenate([getattr(b, k) for b in parts]) for k in ("U", "f", "converged", "nit")))


def _screen_rounds(n_starts: int) -> int:
    """How many rounds the screen of ``n_starts`` takes (halving down to ``REFINE``)."""
    rounds = 1
    while n_starts > REFINE:
        n_starts = max(REFINE, math.ceil(n_starts / 2))
        rounds += 1
    return rounds


def multistart(
    obj: Objective, starts: Starts, seed: int, maxiter: int, on_run: OnRun | None = None
) -> Multistart:
    """The vectorized screen of the chosen starts, the best ``REFINE`` continued and polished (module
    doc); best run and basin statistics. ``on_run(stage, done, total)`` reports progress."""
    grid = start_grid(obj, seed)
    chosen = choose_starts(obj, grid, starts, seed)
    U, f = chosen.copy(), obj.values_many(chosen)
    converged = np.zeros(len(chosen), dtype=bool)
    active = np.arange(len(chosen))
    n_rounds = _screen_rounds(len(chosen))
    for k in range(n_rounds):
        if k:  # halve: the better half by objective goes on
            keep = max(REFINE, math.ceil(active.size / 2))
            active = active[np.argsort(f[active], kind="stable")[:keep]]
        batch = batched_lm(obj, U[active], maxiter=SCREEN_ITERS)
        U[active], f[active], converged[active] = batch.U, batch.f, batch.converged
        if on_run is not None:
            on_run("screen", k + 1, n_rounds)
    continued = batched_lm(obj, U[active], maxiter=LM_MAXITER, exact=True)
    runs = []
    for k, u in enumerate(continued.U):
        runs.append(local_fit(obj, u, maxiter=maxiter))
        if on_run is not None:
            on_run("refine", k + 1, active.size)
    rest = np.setdiff1d(np.arange(len(chosen)), active)
    funs = np.concatenate([[r.objective for r in runs], f[rest]])
    best = min(runs, key=lambda r: r.objective)
    tol = BASIN_RTOL * abs(best.objective) + 1e-12
    return Multistart(
        best=best,
        n_grid=len(grid),
        n_starts=len(chosen),
        n_best=int(np.sum(funs <= best.objective + tol)),
        n_refined=int(active.size),
        n_unfinished=int(np.sum(~converged[rest])),
    )
