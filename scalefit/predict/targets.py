"""Predictions for a run not yet trained: its loss curve and final loss with a band, how far outside the
fitted range it lies, the downstream error and the compute-optimal N and D; the model error from
cross-validation that widens a band; reading a Fit JSON.

Every result is a plain JSON-able dictionary (the report embeds them as they are). Conventions: steps are
0-indexed optimizer updates, the final loss is the loss logged at step ``total_steps - 1``; losses in
nats per token; compute in FLOPs; N in parameters (the fit's counting convention); D in tokens.

    target = Target("wsd:peak=3e-4,steps=48000,decay=0.2", n_params=4e8)
    predict_target(fit, target)["final_pred"]

The best schedule of a family for a target: ``scalefit.predict.schedule_choice``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scalefit.errors import ConfigError, ExtrapolationWarning
from scalefit.fitting.intervals import percentile_interval
from scalefit.fitting.result import Fit
from scalefit.schedules.base import Schedule
from scalefit.schedules.parse import from_dict, parse
from scalefit.store.curves import Curves
from scalefit.store.sources import read_stamped

__all__ = [
    "Target",
    "target_curves",
    "predict_target",
    "extrapolation",
    "compute_optimal",
    "widen",
    "cross_validate",
    "downstream_error",
    "load_fit",
]

SLACK = 1.02  # a target this close to the fitted range (e.g. the last step of a fitted horizon) is inside


@dataclass(frozen=True)
class Target:
    """A run to predict: its LR schedule (which fixes the steps and peak LR) and its model size.

    ``meta`` holds further runs-table columns the law may need (e.g. ``n_params_nonembed``).
    """

    schedule: Schedule | str | Mapping[str, Any]
    n_params: float | None = None
    tokens_per_step: float | None = None
    run_id: str = "target"
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        sched = self.schedule
        if isinstance(sched, str):
            sched = parse(sched)
        elif isinstance(sched, Mapping):
            sched = from_dict(dict(sched))
        object.__setattr__(self, "schedule", sched)
        for name in ("n_params", "tokens_per_step"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ConfigError(f"target {name} must be > 0", field=name, value=value)

    @property
    def total_steps(self) -> int:
        return int(self.schedule.total_steps)

    def runs_row(self) -> dict[str, Any]:
        """The target's runs-table row."""
        row = {
            "schedule": str(self.schedule),
            "peak_lr": self.schedule.peak_lr,
            "total_steps": self.total_steps,
        }
        row.update(
            {k: getattr(self, k) for k in ("n_params", "tokens_per_step") if getattr(self, k) is not None}
        )
        return {**row, **dict(self.meta)}

    def steps(self, n_points: int) -> np.ndarray:
        """About ``n_points`` steps, log-spaced from 1, always including the final step."""
        last = self.total_steps - 1
        if n_points <= 1:
            return np.array([last])
        grid = np.unique(np.geomspace(1, max(last, 1), n_points).round().astype(int))
        return np.unique(np.append(grid[grid < last], last))


def target_curves(targets: Sequence[Target], n_points: int = 200) -> Curves:
    """The targets as `Curves` with an unknown (NaN) loss, for `Fit.predict`."""
    frames, rows = [], []
    for t in targets:
        steps = t.steps(n_points)
        lr = t.schedule(steps)
        frames.append(pd.DataFrame({"run_id": t.run_id, "step": steps, "lr": lr, "loss": np.nan}))
        rows.append({"run_id": t.run_id, **t.runs_row()})
        if t.tokens_per_step is not None:
            frames[-1]["tokens"] = steps * t.tokens_per_step
    return Curves.from_frame(pd.concat(frames, ignore_index=True), runs=pd.DataFrame(rows), source="target")


def _ratio_note(label: str, value: float, lo: float, hi: float, unit: str) -> tuple[float, str | None]:
    """The factor outside [lo, hi] (1 inside) and a note when it exceeds the 2% ``SLACK``."""
    if value > hi:
        note = f"{value / hi:.3g}x the largest fitted {label} ({hi:.4g} {unit})"
        return value / hi, note if value > hi * SLACK else None
    if value < lo:
        note = f"{lo / value:.3g}x below the smallest fitted {label} ({lo:.4g} {unit})"
        return value / lo, note if value < lo / SLACK else None
    return 1.0, None


def extrapolation(fit: Fit, target: Target, fitted: Curves | None = None) -> dict[str, Any]:
    """How far the target lies outside what the fit saw (model size, horizon in steps).

    Ranges come from ``fit.data_summary`` (``<key>_range``), else from the runs table of ``fitted``
    (the Curves the fit was made on). Emits an `ExtrapolationWarning` when outside.
    """
    summary = dict(getattr(fit, "data_summary", None) or {})
    ranges = {k[: -len("_range")]: [float(x) for x in v] for k, v in summary.items() if k.endswith("_range")}
    if fitted is not None:
        runs = fitted.runs
        if "n_params" in runs.columns and "n_params" not in ranges and runs["n_params"].notna().any():
            ranges["n_params"] = [float(runs["n_params"].min()), float(runs["n_params"].max())]
        last = fitted.frame.groupby("run_id")["step"].max()
        ranges.setdefault("step", [0.0, float(last.max())])
    factors, notes = {}, []
    checks = [
        ("n_params", "N", target.n_params, "params"),
        ("step", "horizon", target.total_steps - 1, "steps"),
    ]
    for key, label, value, unit in checks:
        if value is None or key not in ranges:
            continue
        factors[key], note = _ratio_note(label, float(value), *map(float, ranges[key]), unit)
        if note:
            notes.append(note)
    if notes:
        warnings.warn(f"target {target.run_id}: " + "; ".join(notes), ExtrapolationWarning, stacklevel=2)
    return {"outside": bool(notes), "factors": factors, "notes": notes, "fitted_ranges": ranges}


def predict_target(
    fit: Fit,
    target: Target,
    *,
    name: str | None = None,
    fitted: Curves | None = None,
    downstream: Fit | None = None,
    n_points: int = 200,
    noise: bool = True,
    model_error: float = 0.0,
) -> dict[str, Any]:
    """The target's predicted curve and final loss with band, its extrapolation, and downstream error.

    With ``noise`` the band also covers the fit's residual scale: where the logged loss may land."""
    pred = widen(fit.predict(target_curves([target], n_points), noise=noise), model_error)
    pred = pred.sort_values("step")
    final = pred.iloc[-1]
    out = {
        "run_id": target.run_id,
        "fit": name or fit.law,
        "law": fit.law,
        "schedule": str(target.schedule),
        "n_params": target.n_params,
        "steps": target.total_steps,
        "final_pred": float(final["loss_pred"]),
        "lo": float(final["lo"]),
        "hi": float(final["hi"]),
        "curve": {"steps": pred["step"].astype(int).tolist()}
        | {c: pred[c].astype(float).tolist() for c in ("loss_pred", "lo", "hi")},
        "extrapolation": extrapolation(fit, target, fitted),
    }
    if downstream is not None:
        out["downstream"] = downstream_error(downstream, out)
    return out


def widen(pred: pd.DataFrame, model_error: float, z: float = 1.96) -> pd.DataFrame:
    """``Fit.predict`` output with its band widened by a relative model error (a standard deviation,
    e.g. ``cross_validate(...)["rel_sd"]``), added in quadrature to the band's half-widths in log space."""
    if not model_error:
        return pred
    p = pred["loss_pred"].to_numpy(float)
    up = np.hypot(np.log(pred["hi"].to_numpy(float) / p), z * model_error)
    down = np.hypot(np.log(p / pred["lo"].to_numpy(float)), z * model_error)
    return pred.assign(
        lo=p * np.exp(-np.nan_to_num(down, nan=z * model_error)),
        hi=p * np.exp(np.nan_to_num(up, nan=z * model_error)),
    )


def cross_validate(
    fit_fn: Callable[[Curves], Fit], curves: Curves, folds: Sequence[Sequence[str]]
) -> dict[str, Any]:
    """Model error from held-out folds: refit without each fold (``fit_fn(curves)``) and predict its
    final losses. Returns the relative errors per run and their root mean square ``rel_sd``."""
    errors: dict[str, float] = {}
    for fold in folds:
        rest = [r for r in curves.run_ids if r not in set(fold)]
        held = curves.select(list(fold))
        pred = fit_fn(curves.select(rest)).predict(held).groupby("run_id").last()
        for _, row in held.final().iterrows():
            errors[str(row["run_id"])] = float(pred.at[row["run_id"], "loss_pred"] / row["loss"] - 1.0)
    rel = np.array(list(errors.values()))
    return {"folds": [list(f) for f in folds], "errors": errors, "rel_sd": float(np.sqrt(np.mean(rel**2)))}


def downstream_error(fit: Fit, loss_pred: Mapping[str, Any]) -> dict[str, float]:
    """Downstream error at the predicted final loss (and at the ends of its band), from a downstream fit."""
    losses = [loss_pred["final_pred"], loss_pred["lo"], loss_pred["hi"]]
    table = pd.DataFrame({"run_id": ["mid", "lo", "hi"], fit.law_config.get("loss", "loss"): losses})
    err = fit.predict(table)["loss_pred"].astype(float).to_numpy()
    return {"err_pred": float(err[0]), "lo": float(np.nanmin(err)), "hi": float(np.nanmax(err))}


def compute_optimal(fit: Fit, budgets: Iterable[float]) -> list[dict[str, Any]]:
    """Compute-optimal N*, D*, D*/N* and the predicted loss with its band per budget (FLOPs, C = 6ND)
    from a fit whose law has a compute-optimal frontier (``law.compute_optimal``, e.g. Chinchilla); a 95%
    bootstrap band on N* when the fit carries bootstrap samples."""
    law = fit.get_law()
    budgets = np.asarray(list(budgets), dtype=float)
    frontier = law.compute_optimal(fit.values, budgets)
    n_opt, d_opt = frontier["n_opt"].to_numpy(float), frontier["d_opt"].to_numpy(float)
    cfg = fit.law_config
    table = pd.DataFrame(
        {"run_id": [f"C={b:.3g}" for b in budgets], cfg.get("n", "N"): n_opt, cfg.get("d", "D"): d_opt}
    )
    pred = fit.predict(table)
    n_lo = n_hi = np.full(len(budgets), np.nan)
    banded = fit.bootstrap is not None and len(fit.bootstrap) > 0
    if banded:
        draws = law.compute_optimal(np.asarray(fit.bootstrap), budgets)["n_opt"].to_numpy(float)
        n_lo, n_hi = percentile_interval(draws.reshape(-1, len(budgets)), 0.95)
    return [
        {
            "budget_flops": float(budget),
            "n_opt": float(n_opt[k]),
            "d_opt": float(d_opt[k]),
            "tokens_per_param": float(d_opt[k] / n_opt[k]),
            "loss_pred": float(pred["loss_pred"].iloc[k]),
            "lo": float(pred["lo"].iloc[k]),
            "hi": float(pred["hi"].iloc[k]),
            "n_lo": float(n_lo[k]) if banded else None,
            "n_hi": float(n_hi[k]) if banded else None,
        }
        for k, budget in enumerate(budgets)
    ]


def load_fit(path: str | Path) -> Fit:
    """A `Fit` from its JSON file (as written by ``scalefit fit`` or ``Fit.to_json``)."""
    kind = "a Fit JSON written by `scalefit fit`"
    return Fit.from_dict(read_stamped(path, kind, "scalefit Fit", "format", "scalefit.Fit/1"))
