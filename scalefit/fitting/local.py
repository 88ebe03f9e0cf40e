"""Local optimisation and the multi-start search, on an ``Objective``.

The start grid (Cartesian product of ``Param.grid``) is scored in one vectorized pass
(``Objective.values_many``); L-BFGS-B with the exact gradient runs from the best starts plus a seeded
sample of the rest. With more than ``REFINE`` starts, every start first gets ``SCREEN_ITERS`` iterations;
of the runs stopped by that iteration limit, the ``REFINE`` with the lowest objective are continued to
convergence (``n_refined``) and the rest (``n_unfinished``) are dropped. On the Multi-Power Law's
72k-step curves (24 starts) it found the same optimum in 171 s against 407 s unscreened. ``n_best``:
runs ending within ``BASIN_RTOL`` of the best.

How a run stopped comes from scipy's ``OptimizeResult.status`` and ``nit`` (``Stop``), not its message:
status 0 converged; status 1 with ``nit >= maxiter`` hit the iteration limit; status 2 (e.g. the line
search failed) counts as converged when the projected gradient is flat there.
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
    "MAX_GRID",
    "OnRun",
    "REFINE",
    "SCREEN_ITERS",
    "LocalRun",
    "Multistart",
    "Starts",
    "Stop",
    "choose_starts",
    "local_fit",
    "multistart",
    "start_grid",
]

BASIN_RTOL = 1e-4
SCREEN_ITERS = 150  # L-BFGS-B iterations every start gets before the best are run to convergence
REFINE = 4  # starts still running after the screen that are continued, best objective first
MAX_GRID = 100_000
_FLAT_GTOL = 1e-6  # relative projected-gradient size that makes a failed line search a converged run

Starts = int | str | Sequence[Sequence[float]] | np.ndarray | None
# on_run(stage, done, total) after each local run: stage "start" (the screen, or the only pass) or "refine"
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


def _refine(obj: Objective, runs: list[LocalRun], maxiter: int, on_run: OnRun | None) -> list[LocalRun]:
    """Continue the ``REFINE`` best screened runs that stopped at the iteration limit."""
    order = np.argsort([r.objective for r in runs], kind="stable")
    stopped = [i for i in order if runs[i].at_iteration_limit][:REFINE]
    runs = list(runs)
    for k, i in enumerate(stopped):
        runs[i] = local_fit(obj, runs[i].u, maxiter=max(maxiter - SCREEN_ITERS, 1))
        if on_run is not None:
            on_run("refine", k + 1, len(stopped))
    return runs


def multistart(
    obj: Objective, starts: Starts, seed: int, maxiter: int, on_run: OnRun | None = None
) -> Multistart:
    """Run L-BFGS-B from the chosen starts (screened, then the best refined); best run, basin stats.
    ``on_run(stage, done, total)`` is called after each local run (e.g. to advance a progress bar)."""
    grid = start_grid(obj, seed)
    chosen = choose_starts(obj, grid, starts, seed)
    screen = len(chosen) > REFINE and maxiter > SCREEN_ITERS
    runs = []
    for u0 in chosen:
        runs.append(local_fit(obj, u0, maxiter=SCREEN_ITERS if screen else maxiter))
        if on_run is not None:
            on_run("start", len(runs), len(chosen))
    n_open = sum(r.at_iteration_limit for r in runs) if screen else 0
    if screen:
        runs = _refine(obj, runs, maxiter, on_run)
    funs = np.array([r.objective for r in runs])
    best = int(np.argmin(funs))
    tol = BASIN_RTOL * abs(funs[best]) + 1e-12
    return Multistart(
        best=runs[best],
        n_grid=len(grid),
        n_starts=len(chosen),
        n_best=int(np.sum(funs <= funs[best] + tol)),
        n_refined=min(n_open, REFINE),
        n_unfinished=max(n_open - REFINE, 0),
    )
