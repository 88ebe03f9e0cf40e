"""Checks and diagnostics around a fit: degenerate input, excluded rows, Gauss-Newton covariance and
identifiability warnings (parameter at a bound, floor above the lowest observed loss, strongly
correlated parameters, no convergence).

The covariance is the Gauss-Newton approximation at the optimum, in the objective's residual space
(log loss for ``huber_log``, raw loss for ``lsq``): ``cov_u = s^2 (J^T W J)^-1`` with
``s^2 = sum(W r^2) / (n - p)``, weights normalised to mean 1, then mapped to natural units by the delta
method (``d theta / d u = theta`` for log parameters).

A rank-deficient ``J^T W J`` (a parameter the data cannot identify, e.g. the size term of a law fitted to
one model size) has no covariance: the smallest eigenvalue of its correlation form
``D^-1/2 (J^T W J) D^-1/2`` (``D`` its diagonal) below ``RCOND`` reports ``no_covariance``. Inverting it
anyway gives rounding noise, whose sign and size vary with the BLAS: a negative variance (no covariance)
on one machine, spurious huge ``correlated`` pairs on another.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.stats import norm

from scalefit.errors import ConfigError, FitError
from scalefit.fitting.local import LocalRun, Starts
from scalefit.fitting.objective import OBJECTIVES, Objective
from scalefit.provenance import provenance as source_provenance

__all__ = [
    "CORR_LIMIT",
    "RCOND",
    "check_options",
    "jsonable",
    "provenance",
    "wald_ci",
    "check_degenerate",
    "data_summary",
    "excluded_rows",
    "exclusion",
    "few_groups",
    "gauss_newton",
    "identifiability_warnings",
    "residual_jacobian",
]

CORR_LIMIT = 0.95
RCOND = 1e-10  # smallest eigenvalue of the Gauss-Newton matrix's correlation form that counts as rank
WarningRecord = dict[str, Any]  # a JSON-able warning record: code, message and the code's own fields


def _runs_label(groups: np.ndarray) -> str:
    uniq = list(dict.fromkeys(groups.tolist()))
    return ",".join(uniq[:5]) + (f",... ({len(uniq)} runs)" if len(uniq) > 5 else "")


def check_degenerate(obj: Objective) -> None:
    """Raise FitError when the valid points cannot determine the parameters."""
    n_params = len(obj.params)
    n_valid = int(obj.valid.sum())
    groups = obj.design.groups
    if n_valid == 0:
        raise FitError(
            "no finite, positive observed loss to fit",
            run_id=_runs_label(groups) if groups.size else None,
            column="loss",
            value=int(groups.size),
            fix="check the loss column (all NaN/inf, or all runs diverged); fit on runs with finite loss",
        )
    if n_valid < n_params:
        raise FitError(
            f"too few points for {n_params} parameters",
            run_id=_runs_label(groups[obj.valid]),
            column="loss",
            value=n_valid,
            fix=f"give at least {n_params + 1} finite points, or use a law with fewer parameters",
        )


def excluded_rows(obj: Objective) -> list[dict[str, Any]]:
    """Rows left out of the objective, grouped by run, with the reason; plus rows the law dropped."""
    design = obj.design
    y = design.y
    out: list[dict[str, Any]] = []
    reason = np.where(
        ~np.isfinite(y),
        "non-finite loss",
        np.where((y <= 0) & (obj.kind != "lsq"), "non-positive loss (log objective)", "zero weight"),
    )
    bad = ~obj.valid
    for why in dict.fromkeys(reason[bad].tolist()):
        mask = bad & (reason == why)
        runs, counts = np.unique(design.groups[mask], return_counts=True)
        out.extend(
            {"run_id": str(r), "rows": int(c), "reason": why} for r, c in zip(runs, counts, strict=True)
        )
    out.extend({"run_id": str(r), "rows": None, "reason": str(why)} for r, why in design.excluded)
    return out


def profile_edges(profile: Mapping[str, Sequence[Any]], chosen: Mapping[str, Any]) -> list[WarningRecord]:
    """A warning per profiled structural option whose chosen value is the first or last of its grid
    (three values or more): the optimum may lie beyond the grid, like a parameter at its bound."""
    out: list[WarningRecord] = []
    for option, grid in profile.items():
        values = list(grid)
        if len(values) < 3 or chosen.get(option) not in (values[0], values[-1]):
            continue
        side = "smallest" if chosen[option] == values[0] else "largest"
        out.append(
            {
                "code": "profile_edge",
                "param": option,
                "message": (
                    f"{option} = {chosen[option]} is the {side} value of its profiled grid "
                    f"({values[0]}..{values[-1]}): the best value may lie beyond it"
                ),
            }
        )
    return out


def exclusion(excluded: list[dict[str, Any]]) -> list[WarningRecord]:
    """One warning listing the runs with excluded rows (none if nothing was excluded)."""
    out: list[WarningRecord] = []
    gone = sorted({e["run_id"] for e in excluded if str(e["reason"]).startswith("diverged")})
    if gone:
        more = " ..." if len(gone) > 5 else ""
        message = f"{len(gone)} diverged run(s) left out of the fit: {', '.join(gone[:5])}{more}"
        out.append({"code": "diverged", "runs": gone, "message": message + " (diverged='prefix' keeps them)"})
    runs = sorted({e["run_id"] for e in excluded if e["run_id"] not in gone})
    if runs:
        more = " ..." if len(runs) > 5 else ""
        message = f"rows excluded from {len(runs)} run(s): {', '.join(runs[:5])}{more}"
        out.append({"code": "excluded", "runs": runs, "message": message})
    return out


def thinning(thinned: Mapping[str, Sequence[int]], max_points: int | None) -> list[WarningRecord]:
    """One note listing the runs fitted at fewer points than they logged (``max_points``)."""
    if not thinned:
        return []
    runs = sorted(thinned)
    more = " ..." if len(runs) > 5 else ""
    shown = ", ".join(f"{r} ({thinned[r][1]} of {thinned[r][0]})" for r in runs[:5])
    message = (
        f"{len(runs)} run(s) fitted at {max_points} evenly spaced observed points each: {shown}{more}"
        " (every step's LR still counts; max_points=None fits every point)"
    )
    return [{"code": "thinned", "runs": runs, "message": message}]


def few_groups(obj: Objective, n_resamples: int, minimum: int = 5) -> list[WarningRecord]:
    """A warning when the bootstrap resamples fewer than ``minimum`` groups (coarse intervals)."""
    n_groups = len(set(obj.design.groups[obj.valid].tolist()))
    if n_groups >= minimum:
        return []
    return [
        {
            "code": "few_groups",
            "value": n_groups,
            "message": f"bootstrap over only {n_groups} group(s) (runs): its {n_resamples} resamples "
            "take few distinct values, so intervals are coarse and likely too narrow",
        }
    ]


def residual_jacobian(obj: Objective, theta: np.ndarray) -> np.ndarray:
    """d residual / d u (internal parameters) at the valid points, shape (n_valid, n_params)."""
    pred, jac = obj.law.predict_and_jacobian(theta, obj.design)
    return obj.residual_jacobian(theta, pred, jac)[obj.valid]


def _full_rank(hess: np.ndarray) -> bool:
    """Whether ``hess`` (symmetric, >= 0) has full rank: its correlation form's smallest eigenvalue is at
    least ``RCOND`` (scale-free, so one threshold serves every parametrization)."""
    d = np.diag(hess)
    if not np.all(d > 0):
        return False
    scaled = hess / np.sqrt(np.outer(d, d))
    if not np.all(np.isfinite(scaled)):
        return False
    try:
        return bool(np.linalg.eigvalsh(scaled)[0] >= RCOND)
    except np.linalg.LinAlgError:  # LAPACK gives up on a badly scaled matrix: not usable either way
        return False


def gauss_newton(obj: Objective, theta: np.ndarray) -> tuple[np.ndarray | None, float]:
    """(covariance of theta in natural units, or None when it is singular or undefined; residual scale
    s) at ``theta``."""
    n_params = len(obj.params)
    w = obj.w[obj.valid]
    n = int(w.size)
    with np.errstate(all="ignore"):
        pred, jac = obj.law.predict_and_jacobian(theta, obj.design)
        r = obj.residuals(pred)[obj.valid]
        jr = obj.residual_jacobian(theta, pred, jac)[obj.valid]
        wn = w * n / w.sum()
        hess = jr.T @ (wn[:, None] * jr)
    dof = n - n_params
    s2 = float(np.sum(wn * r * r) / dof) if dof > 0 else math.nan
    scale_s = math.sqrt(s2) if s2 == s2 else math.nan
    if dof <= 0 or not np.all(np.isfinite(hess)) or not _full_rank(hess):
        return None, scale_s
    try:
        cov_u = s2 * np.linalg.inv(hess)
    except np.linalg.LinAlgError:
        return None, scale_s
    scale = np.where(obj.log_mask, theta, 1.0)
    cov = cov_u * scale[:, None] * scale[None, :]
    if not np.all(np.isfinite(cov)) or np.any(np.diag(cov) < 0):
        return None, scale_s
    return cov, scale_s


def _at_bound(obj: Objective, u: np.ndarray) -> list[WarningRecord]:
    out = []
    for j, (p, (lo, hi)) in enumerate(zip(obj.params, obj.bounds(), strict=True)):
        for side, b in (("lower", lo), ("upper", hi)):
            if b is not None and abs(u[j] - b) <= 1e-6 * max(1.0, abs(b)):
                out.append(
                    {
                        "code": "at_bound",
                        "param": p.name,
                        "message": f"{p.name} is at its {side} bound ({getattr(p, side)}): not identified "
                        "by the data, or the bound is too tight",
                    }
                )
    return out


def identifiability_warnings(
    obj: Objective, theta: np.ndarray, cov: np.ndarray | None, best: LocalRun
) -> list[WarningRecord]:
    """Warnings about a fit (ending at ``best``) that the data may not support."""
    names = list(obj.names)
    u = best.u
    out = _at_bound(obj, u)
    values = dict(zip(names, theta.tolist(), strict=True))
    floor = obj.law.floor(values)
    y_min = float(obj.y[obj.valid].min())
    if floor is not None and floor > y_min:
        out.append(
            {
                "code": "floor_above_data",
                "value": floor,
                "message": f"irreducible loss {floor:.6g} lies above the lowest observed loss {y_min:.6g}",
            }
        )
    if cov is None:
        out.append(
            {
                "code": "no_covariance",
                "message": "Gauss-Newton covariance is singular or undefined: "
                "some parameters are not identified (too few points or redundant parameters)",
            }
        )
    else:
        sd = np.sqrt(np.diag(cov))
        with np.errstate(all="ignore"):
            corr = cov / np.outer(sd, sd)
        for i, j in zip(*np.triu_indices(len(names), 1), strict=True):
            if abs(corr[i, j]) > CORR_LIMIT:
                out.append(
                    {
                        "code": "correlated",
                        "params": [names[i], names[j]],
                        "value": float(corr[i, j]),
                        "message": f"{names[i]} and {names[j]} are strongly correlated "
                        f"(corr {corr[i, j]:+.3f}): they trade off and are weakly identified separately",
                    }
                )
    if not best.converged:
        out.append(
            {
                "code": "not_converged",
                "stop": best.stop.value,
                "message": f"L-BFGS-B did not converge ({best.stop.value}): {best.message}",
            }
        )
    return out


def data_summary(obj: Objective) -> dict[str, Any]:
    """What the fit saw: points, runs, loss range and the ranges of numeric key columns."""
    design = obj.design
    valid = obj.valid
    runs = list(dict.fromkeys(design.groups[valid].tolist()))
    out: dict[str, Any] = {
        "n_points": int(valid.sum()),
        "n_groups": len(runs),
        "run_ids": runs,
        "loss_range": [float(obj.y[valid].min()), float(obj.y[valid].max())],
    }
    if design.keys is not None:
        for col in design.keys.columns:
            vals = design.keys[col].to_numpy()[valid]
            if np.issubdtype(vals.dtype, np.number) and vals.size:
                out[f"{col}_range"] = [float(np.nanmin(vals)), float(np.nanmax(vals))]
    return out


def check_max_points(max_points: int | None) -> None:
    """``ConfigError`` unless ``max_points`` is None or an integer >= 2."""
    ok = max_points is None or (
        not isinstance(max_points, bool) and isinstance(max_points, (int, np.integer)) and max_points >= 2
    )
    if not ok:
        raise ConfigError(
            "max_points must be an integer >= 2 or None",
            field="max_points",
            value=max_points,
            fix="e.g. max_points=4000 (design points per run), None for every observed point",
        )


def check_options(objective: str, ci: float, bootstrap: int, maxiter: int = 3000, seed: int = 0) -> None:
    """``ConfigError`` for an unknown objective, a ci outside (0, 1), a bad bootstrap count, an
    iteration limit below 1 or a seed that is not an integer >= 0."""
    for name, value, least in (("maxiter", maxiter, 1), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
            raise ConfigError(f"{name} must be an integer >= {least}", field=name, value=value)
    if objective not in OBJECTIVES:
        raise ConfigError("unknown objective", field="objective", value=objective, fix="huber_log or lsq")
    if not 0 < ci < 1:
        raise ConfigError("ci must be in (0, 1)", field="ci", value=ci, fix="e.g. ci=0.95")
    if int(bootstrap) != bootstrap or bootstrap < 0:
        raise ConfigError("bootstrap must be an integer >= 0", field="bootstrap", value=bootstrap)


def wald_ci(
    obj: Objective, theta: np.ndarray, cov: np.ndarray | None, ci: float
) -> dict[str, tuple[float, float]]:
    """Normal CIs from the covariance, taken in log space for log parameters (so they stay > 0)."""
    z = float(norm.ppf(0.5 + ci / 2))
    out = {}
    for j, p in enumerate(obj.params):
        sd = math.sqrt(cov[j, j]) if cov is not None else math.nan
        if p.log and theta[j] > 0:
            # A near-singular covariance gives a huge log-space half-width: cap it so the interval
            # reads (0, inf) instead of overflowing.
            half = min(z * sd / theta[j], 700.0)
            out[p.name] = (theta[j] * math.exp(-half), theta[j] * math.exp(half))
        else:
            out[p.name] = (theta[j] - z * sd, theta[j] + z * sd)
    return out


def jsonable(starts: Starts) -> int | str | list[list[float]] | None:
    """``starts`` as recorded in ``Fit.options``."""
    if starts is None or isinstance(starts, (int, str)):
        return starts
    return np.asarray(starts, dtype=float).tolist()


def provenance() -> dict[str, str | None]:
    """What produced a fit: ``scalefit.provenance.provenance()`` plus the engine's version."""
    return {**source_provenance(), "engine": "fitting.fit_law/1"}
