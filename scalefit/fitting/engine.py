"""The fitting engine shared by every law: ``fit_law(law, data) -> Fit``, the top of the engine stack.

    objective   Objective: the loss of a law on a design, its parametrization and residual Jacobian
    design      data (Curves, a table) -> Design, from what the law declares it reads
    local       one L-BFGS-B run (LocalRun) and the multi-start search (Multistart)
    bootstrap   group bootstrap refits and prediction bands, on an Objective
    diagnostics checks, Gauss-Newton covariance and identifiability warnings
    result      Fit, the immutable, JSON round-trippable result
    progress    progress bars on stderr (tqdm) and the checks of the threads and progress options
    engine      fit_law: profile the law's structural options, multistart, covariance or bootstrap

Objective and optimisation are described in ``scalefit.fitting.objective`` and ``scalefit.fitting.local``.
Options in ``law.profile()`` are profiled: every combination is fitted (with its own design) and the
lowest objective kept.

Threads: the whole fit (profile, multistart, covariance, bootstrap) runs with BLAS limited to
``threads`` threads (default 1, through threadpoolctl; the previous setting is restored afterwards).
The engine's linear algebra is many operations on small matrices, where one thread is fastest and a
threaded BLAS only oversubscribes the cores. ``threads=None`` leaves the libraries' setting alone.
Progress: a bar over the local runs and one over the bootstrap chunks, on stderr
(``scalefit.fitting.progress``).
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from scalefit.errors import FitWarning
from scalefit.fitting import diagnostics as diag
from scalefit.fitting.bootstrap import MapFn, run_bootstrap, summarize
from scalefit.fitting.design import build_design
from scalefit.fitting.local import Multistart, Starts, multistart
from scalefit.fitting.objective import Objective
from scalefit.fitting.progress import check_progress, check_threads, progress_bar
from scalefit.fitting.result import Fit
from scalefit.laws.base import Design, Law
from scalefit.store.curves import Curves

__all__ = ["ENGINE_OPTIONS", "MAX_POINTS", "fit_law"]

# The keyword options of fit_law (every other option of sf.fit is a structural option of the law).
ENGINE_OPTIONS = (
    "delta",
    "objective",
    "starts",
    "bootstrap",
    "ci",
    "seed",
    "map_fn",
    "weights",
    "maxiter",
    "threads",
    "progress",
    "diverged",
    "max_points",
)
MAX_POINTS = 4000  # design points per run at most (a per-step log of 50k steps is thinned to this)


@dataclass(frozen=True)
class _Trial:
    """One profiled combination of structural options, fitted."""

    combo: dict[str, object]
    obj: Objective
    search: Multistart


def _profile_combos(law: Law) -> list[dict[str, object]]:
    prof = law.profile()
    keys = list(prof)
    combos = itertools.product(*(prof[k] for k in keys))
    return [dict(zip(keys, vals, strict=True)) for vals in combos] or [{}]


class _RunProgress:
    """One bar over the profiled combinations, e.g. "momentum lam=0.999: screen 2/4"; a combination's
    screen rounds fill the first half of its step, its refined starts the second."""

    def __init__(self, law: Law, n_combos: int, progress: bool | None) -> None:
        self._name = law.name
        self._started = 0  # combinations started
        self._label = law.name
        self._bar = progress_bar(progress, desc=law.name, total=n_combos, unit="combo")

    def combo(self, combo: dict[str, object]) -> None:
        """Start the next combination."""
        self._bar.update(self._started - self._bar.n)
        self._started += 1
        self._label = " ".join([self._name, *(f"{k}={v}" for k, v in combo.items())])

    def on_run(self, stage: str, done: int, total: int) -> None:
        """``multistart``'s callback: round ``done`` of the screen, or refined start ``done``."""
        part = 0.5 * done / max(total, 1) + (0.5 if stage == "refine" else 0.0)
        self._bar.set_description_str(f"{self._label}: {stage} {done}/{total}", refresh=False)
        self._bar.update(round(self._started - 1 + part, 3) - self._bar.n)

    def close(self) -> None:
        self._bar.close()


def fit_law(
    law: Law,
    data: Curves | pd.DataFrame | Design,
    *,
    delta: float = 1e-3,
    objective: str = "huber_log",
    starts: Starts = None,
    bootstrap: int = 0,
    ci: float = 0.95,
    seed: int = 0,
    map_fn: MapFn | None = None,
    weights: Sequence[float] | np.ndarray | None = None,
    maxiter: int = 3000,
    threads: int | None = 1,
    progress: bool | None = None,
    diverged: str = "exclude",
    max_points: int | None = MAX_POINTS,
) -> Fit:
    """Fit ``law`` to ``data`` (Curves, a DataFrame, or a ready ``Design``); return a ``Fit``.

    ``starts``: None (24 local runs: the best two thirds of the start grid by objective plus a seeded
    random third), an int (that many local runs), "all" (every grid point), or explicit natural-unit
    start vectors. ``bootstrap``: number of group resamples refitted from the best fit, run through
    ``map_fn(fn, items)`` (built-in ``map`` by default; pass a Ray map to parallelise). ``weights``:
    per-point weights multiplying the design's. Options in ``law.profile()`` are profiled: every
    combination is fitted (with its own design) and the lowest objective kept. ``threads``: BLAS
    threads during the fit (default 1; None leaves the libraries' setting alone). ``progress``: None
    shows bars on stderr only on a terminal and after 2 s, True always, False never. ``diverged``:
    "exclude" (default) leaves runs whose status is 'diverged' out, with a ``FitWarning`` naming them;
    "prefix" fits their finite losses up to the divergence. ``max_points``: a curve with more observed
    points than this is fitted at this many of them, evenly spaced along the run (every step's LR
    still counts; a smooth law gains nothing from 50k noisy per-step losses but pays for each), the
    runs thinned listed in ``diagnostics["thinned"]`` as run -> [observed, fitted]; None fits every
    point.
    """
    diag.check_options(objective, ci, bootstrap, maxiter, seed)
    diag.check_max_points(max_points)
    check_threads(threads)
    check_progress(progress)
    with threadpool_limits(limits=threads, user_api="blas"):
        return _fit(
            law,
            data,
            delta=delta,
            objective=objective,
            starts=starts,
            bootstrap=int(bootstrap),
            ci=ci,
            seed=seed,
            map_fn=map_fn,
            weights=weights,
            maxiter=maxiter,
            threads=threads,
            progress=progress,
            diverged=diverged,
            max_points=max_points,
        )


def _fit(
    law: Law,
    data: Curves | pd.DataFrame | Design,
    *,
    delta: float,
    objective: str,
    starts: Starts,
    bootstrap: int,
    ci: float,
    seed: int,
    map_fn: MapFn | None,
    weights: Sequence[float] | np.ndarray | None,
    maxiter: int,
    threads: int | None,
    progress: bool | None,
    diverged: str,
    max_points: int | None,
) -> Fit:
    """``fit_law`` after its options are checked, under its thread limit."""
    extra = None if weights is None else np.asarray(weights, dtype=float)
    trials = []
    combos = _profile_combos(law)
    runs = _RunProgress(law, len(combos), progress)
    try:
        for combo in combos:
            law_k = law.replace(**combo) if combo else law
            design = build_design(law_k, data, diverged=diverged, max_points=max_points)
            obj = Objective(law_k, design, kind=objective, delta=delta, weights=extra)
            diag.check_degenerate(obj)
            runs.combo(combo)
            trials.append(_Trial(combo, obj, multistart(obj, starts, seed, maxiter, runs.on_run)))
    finally:
        runs.close()
    chosen = min(trials, key=lambda t: t.search.objective)
    obj, best = chosen.obj, chosen.search.best
    law_k, names = obj.law, list(obj.names)
    theta = obj.to_natural(best.u)
    cov, scale = diag.gauss_newton(obj, theta)
    excluded = diag.excluded_rows(obj)
    warn_list = diag.identifiability_warnings(obj, theta, cov, best) + diag.exclusion(excluded)
    warn_list += diag.profile_edges(law.profile(), chosen.combo)
    thinned = dict(obj.design.meta.get("thinned", {}))
    warn_list += diag.thinning(thinned, max_points)
    stderr = {n: math.sqrt(cov[j, j]) if cov is not None else math.nan for j, n in enumerate(names)}
    cis = diag.wald_ci(obj, theta, cov, ci)
    boot = None
    if bootstrap:
        boot = run_bootstrap(
            obj,
            best.u,
            bootstrap,
            seed=seed,
            map_fn=map_fn,
            maxiter=maxiter,
            threads=threads,
            progress=progress,
        )
        cis, stderr, cov = summarize(boot, names, ci)
        warn_list += diag.few_groups(obj, bootstrap)
    for w in warn_list:
        warnings.warn(FitWarning(f"{law_k.name}: {w['message']}"), stacklevel=3)
    profiled = bool(law.profile())
    diagnostics = {
        **chosen.search.summary(),
        "warnings": warn_list,
        "excluded": excluded,
        "thinned": thinned,
        "residual_scale": scale,
        "uncertainty": "bootstrap" if bootstrap else "gauss-newton",
        "profile": [{**t.combo, "objective": t.search.objective} for t in trials] if profiled else [],
    }
    options = {
        "delta": delta,
        "objective": objective,
        "starts": diag.jsonable(starts),
        "bootstrap": bootstrap,
        "ci": ci,
        "seed": seed,
        "maxiter": maxiter,
        "weighted": weights is not None,
        "threads": threads,
        "diverged": diverged,
        "max_points": max_points,
    }
    return Fit(
        law=law_k.name,
        law_config=law_k.config(),
        param_names=tuple(names),
        values=dict(zip(names, theta.tolist(), strict=True)),
        stderr=stderr,
        ci=cis,
        bounds={p.name: (p.lower, p.upper) for p in obj.params},
        covariance=cov,
        bootstrap=boot,
        diagnostics=diagnostics,
        data_summary=diag.data_summary(obj),
        provenance=diag.provenance(),
        options=options,
        _law=law_k,
    )
