"""The fitting engine shared by every law: ``fit_law(law, data) -> Fit``, the top of the engine stack.

    objective   Objective: the loss of a law on a design, its parametrization and residual Jacobian
    design      data (Curves, a table) -> Design, from what the law declares it reads
    local       one L-BFGS-B run (LocalRun) and the multi-start search (Multistart)
    bootstrap   group bootstrap refits and prediction bands, on an Objective
    diagnostics checks, Gauss-Newton covariance and identifiability warnings
    result      Fit, the immutable, JSON round-trippable result
    engine      fit_law: profile the law's structural options, multistart, covariance or bootstrap

Objective and optimisation are described in ``scalefit.fitting.objective`` and ``scalefit.fitting.local``.
Options in ``law.profile()`` are profiled: every combination is fitted (with its own design) and the
lowest objective kept.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from scalefit.errors import FitWarning
from scalefit.fitting import diagnostics as diag
from scalefit.fitting.bootstrap import MapFn, run_bootstrap, summarize
from scalefit.fitting.design import build_design
from scalefit.fitting.local import Multistart, Starts, multistart
from scalefit.fitting.objective import Objective
from scalefit.fitting.result import Fit
from scalefit.laws.base import Design, Law
from scalefit.store.curves import Curves

__all__ = ["ENGINE_OPTIONS", "fit_law"]

# The keyword options of fit_law (every other option of sf.fit is a structural option of the law).
ENGINE_OPTIONS = ("delta", "objective", "starts", "bootstrap", "ci", "seed", "map_fn", "weights", "maxiter")


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
) -> Fit:
    """Fit ``law`` to ``data`` (Curves, a DataFrame, or a ready ``Design``); return a ``Fit``.

    ``starts``: None (24 local runs: the best two thirds of the start grid by objective plus a seeded
    random third), an int (that many local runs), "all" (every grid point), or explicit natural-unit
    start vectors. ``bootstrap``: number of group resamples refitted from the best fit, run through
    ``map_fn(fn, items)`` (built-in ``map`` by default; pass a Ray map to parallelise). ``weights``:
    per-point weights multiplying the design's. Options in ``law.profile()`` are profiled: every
    combination is fitted (with its own design) and the lowest objective kept.
    """
    diag.check_options(objective, ci, bootstrap)
    extra = None if weights is None else np.asarray(weights, dtype=float)
    trials = []
    for combo in _profile_combos(law):
        law_k = law.replace(**combo) if combo else law
        obj = Objective(law_k, build_design(law_k, data), kind=objective, delta=delta, weights=extra)
        diag.check_degenerate(obj)
        trials.append(_Trial(combo, obj, multistart(obj, starts, seed, maxiter)))
    chosen = min(trials, key=lambda t: t.search.objective)
    obj, best = chosen.obj, chosen.search.best
    law_k, names = obj.law, list(obj.names)
    theta = obj.to_natural(best.u)
    cov, scale = diag.gauss_newton(obj, theta)
    excluded = diag.excluded_rows(obj)
    warn_list = diag.identifiability_warnings(obj, theta, cov, best) + diag.exclusion(excluded)
    stderr = {n: math.sqrt(cov[j, j]) if cov is not None else math.nan for j, n in enumerate(names)}
    cis = diag.wald_ci(obj, theta, cov, ci)
    boot = None
    if bootstrap:
        boot = run_bootstrap(obj, best.u, int(bootstrap), seed=seed, map_fn=map_fn, maxiter=maxiter)
        cis, stderr, cov = summarize(boot, names, ci)
        warn_list += diag.few_groups(obj, int(bootstrap))
    for w in warn_list:
        warnings.warn(FitWarning(f"{law_k.name}: {w['message']}"), stacklevel=2)
    profiled = bool(law.profile())
    diagnostics = {
        **chosen.search.summary(),
        "warnings": warn_list,
        "excluded": excluded,
        "residual_scale": scale,
        "uncertainty": "bootstrap" if bootstrap else "gauss-newton",
        "profile": [{**t.combo, "objective": t.search.objective} for t in trials] if profiled else [],
    }
    options = {
        "delta": delta,
        "objective": objective,
        "starts": diag.jsonable(starts),
        "bootstrap": int(bootstrap),
        "ci": ci,
        "seed": seed,
        "maxiter": maxiter,
        "weighted": weights is not None,
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
