"""Empirical baselines that a forecast scores like any law (``scalefit.predict.members``).

``FinalsPowerLaw`` (member name ``finals-power``): for each schedule family among the fitted runs (the
schedule with its length taken out: kind, peak, warmup, final ratio, shape, and a decay length as a
share of the run; one model size, ``n_params``, per family), the final losses of its complete runs
against their length ``T`` (optimizer steps) are fitted by ``L(T) = E + A * T^-a`` (least squares on
log loss; ``0 <= E <`` the lowest final, ``0 < a <= 3``) when the family has finals at
``MIN_HORIZONS`` or more lengths. It predicts the final loss of a target run of a fitted family at the
target's own length; it gives no answer at other steps, for other families, or for runs without a
schedule in the runs table. On a held-out ladder of sizes and horizons such a three-point power law
through the finals beat every schedule law at predicting 5x and 10x longer runs (issue #17), which is
why the forecast weighs it like a law.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

from scalefit.errors import FitError
from scalefit.schedules.parse import parse
from scalefit.store.curves import Curves

__all__ = ["MIN_HORIZONS", "FinalsPowerLaw", "FittedFinals", "schedule_family"]

MIN_HORIZONS = 3  # distinct run lengths a family needs before its finals are fitted
COMPLETE = 0.99  # a run is complete when its last observed step reaches this share of its length


def schedule_family(schedule: str) -> tuple[tuple[str, object], ...] | None:
    """The schedule with its length taken out (a decay length as a share of the run, a cosine's
    default decay dropped), hashable; None when the string does not parse."""
    try:
        spec = parse(schedule).to_dict()
    except ValueError:
        return None
    total = float(spec.pop("total_steps"))
    decay = spec.pop("decay_steps", None)
    warm = float(spec.get("warmup_steps") or 0)
    if decay is not None and not math.isclose(float(decay), total - warm, rel_tol=1e-6):
        spec["decay_share"] = round(float(decay) / total, 2)
    return tuple(sorted((k, v) for k, v in spec.items()))


def _family_of(schedule: object, n_params: object) -> tuple[tuple[str, object], ...] | None:
    """The family key of a run: its schedule family and its model size (sizes are never pooled)."""
    if not isinstance(schedule, str):
        return None
    key = schedule_family(schedule)
    size = float(n_params) if n_params is not None and pd.notna(n_params) else None
    return None if key is None else (*key, ("n_params", size))


def _length(schedule: str) -> int:
    return int(parse(schedule).total_steps)


@dataclass(frozen=True)
class FittedFinals:
    """(E, A, a) per schedule family, and how to answer at target rows."""

    params: Mapping[tuple[tuple[str, object], ...], tuple[float, float, float]]
    warnings: tuple[str, ...] = field(default=())

    def _final(self, schedule: object, n_params: object) -> tuple[int, float] | None:
        """(the run's last step, its predicted final loss), or None without an answer."""
        key = _family_of(schedule, n_params)
        if key is None or key not in self.params:
            return None
        E, A, a = self.params[key]
        T = _length(schedule)
        return T - 1, E + A * T**-a

    def at(self, targets: Curves | pd.DataFrame, truth: pd.DataFrame) -> np.ndarray:
        out = np.full(len(truth), np.nan)
        if not isinstance(targets, Curves) or "schedule" not in targets.runs.columns:
            return out
        runs = targets.runs
        sizes = runs["n_params"] if "n_params" in runs.columns else pd.Series(np.nan, index=runs.index)
        for i, (run_id, step) in enumerate(zip(truth["run_id"].astype(str), truth["step"], strict=True)):
            got = self._final(runs["schedule"].get(run_id), sizes.get(run_id))
            if got is not None and int(step) >= int(COMPLETE * got[0]):
                out[i] = got[1]
        return out

    def frame(self, targets: Curves | pd.DataFrame) -> pd.DataFrame:
        if not isinstance(targets, Curves):
            raise FitError("finals-power predicts curves only", field="targets", value=type(targets).__name__)
        rows = targets.frame[["run_id", "step"]].reset_index(drop=True)
        last = rows.groupby("run_id")["step"].transform("max").to_numpy()
        truth = rows.assign(step=last)
        pred = self.at(targets, truth)
        return rows.assign(loss_pred=np.where(rows["step"].to_numpy() == last, pred, np.nan))


def _fit_family(lengths: np.ndarray, finals: np.ndarray) -> tuple[float, float, float]:
    """Least squares on log loss of E + A T^-a through the finals."""
    floor = float(finals.min())

    def resid(p: np.ndarray) -> np.ndarray:
        E, logA, a = p
        return np.log(E + np.exp(logA) * lengths**-a) - np.log(finals)

    gap = max(float(finals[0]) - 0.5 * floor, 1e-6)  # the reducible part at the shortest run
    start = np.array([0.5 * floor, math.log(gap) + 0.3 * math.log(float(lengths[0])), 0.3])
    res = least_squares(resid, start, bounds=([0.0, -50.0, 1e-3], [floor * (1 - 1e-9), 50.0, 3.0]))
    E, logA, a = (float(v) for v in res.x)
    return E, math.exp(logA), a


@dataclass(frozen=True)
class FinalsPowerLaw:
    """The ``finals-power`` baseline (module doc)."""

    name: str = "finals-power"

    def fit(self, data: Curves | pd.DataFrame) -> FittedFinals:
        if not isinstance(data, Curves) or "schedule" not in data.runs.columns:
            raise FitError("finals-power needs curves with their schedules", field="schedule")
        final = data.final()
        groups: dict[tuple[tuple[str, object], ...], list[tuple[int, float]]] = {}
        for _, row in final.iterrows():
            schedule = row.get("schedule")
            key = _family_of(schedule, row.get("n_params"))
            if key is None:
                continue
            T = _length(schedule)
            if int(row["step"]) >= int(COMPLETE * (T - 1)) and float(row["loss"]) > 0:
                groups.setdefault(key, []).append((T, float(row["loss"])))
        params = {}
        for key, points in groups.items():
            lengths = np.array(sorted({T for T, _ in points}), dtype=float)
            if lengths.size < MIN_HORIZONS:
                continue
            finals = np.array([np.mean([v for T, v in points if T == L]) for L in lengths])
            params[key] = _fit_family(lengths, finals)
        if not params:
            raise FitError(
                f"finals-power: no schedule family with complete runs at {MIN_HORIZONS} or more lengths",
                field="schedule",
                fix="give complete runs of one schedule at several horizons",
            )
        return FittedFinals(params)
