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

``FinalsScaling`` (member name ``finals-chinchilla``): the last observed loss of every fitted run that
ends annealed (its LR there at most ``ANNEALED`` of the run's peak) as a point ``(N, D)``: ``N`` the
run's ``n_params``, ``D`` its steps so far times ``tokens_per_step`` (steps when the runs table has no
token count), fitted by the Chinchilla law ``E + A/N^alpha + B/D^beta`` (the engine's defaults) when
the points span ``MIN_SIZES`` model sizes or more. It predicts a target run at a row where the run's
LR is annealed the same way (its final, for a cosine or WSD run), at any size and length: the
classic size-and-tokens law through annealed finals, the baseline for a question about a larger
model or a longer run.

``TailPowerLaw`` (member name ``tail-power``): each fitted run on its own, extrapolated. A run whose LR
is constant (within ``CONSTANT_LR`` of its value) over the last ``1 - TAIL_START`` of its observed steps
has its observed losses there fitted by ``L(t) = E + A * t^-a`` in the step ``t`` (the same least
squares on log loss and bounds as ``finals-power``) when that tail holds ``MIN_TAIL_POINTS`` finite
losses or more. It predicts the final loss of a target run with that run's id at a step past the
tail's start, provided the target's LR stays at the tail's LR from the tail's start to that step (the
run continued as it was logged); it gives no answer for other runs, for a run that anneals or changes
its LR, or at other steps. It is the per-run tail extrapolation a user does by eye ("where will this
run end if I keep it going"), and the forecast scores it on the folds that truncate a constant-LR run
and predict its remainder.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

from scalefit.errors import FitError, FitWarning, ScalefitError
from scalefit.fitting.engine import fit_law
from scalefit.fitting.result import Fit
from scalefit.laws import get_law
from scalefit.schedules.parse import parse
from scalefit.store.curves import Curves

__all__ = [
    "ANNEALED",
    "MIN_HORIZONS",
    "MIN_SIZES",
    "MIN_TAIL_POINTS",
    "TAIL_START",
    "FinalsPowerLaw",
    "FinalsScaling",
    "FittedFinals",
    "FittedScaling",
    "FittedTails",
    "TailPowerLaw",
    "schedule_family",
]

MIN_HORIZONS = 3  # distinct run lengths a family needs before its finals are fitted
COMPLETE = 0.99  # a run is complete when its last observed step reaches this share of its length
ANNEALED = 0.25  # finals-chinchilla: a row is annealed when its LR is at most this share of the peak
MIN_SIZES = 3  # finals-chinchilla: model sizes the annealed finals must span
TAIL_START = 0.5  # tail-power: a run's tail is its observed steps from this share of its last one
CONSTANT_LR = 1e-3  # tail-power: the tail's LR is constant when it stays within this share of its value
MIN_TAIL_POINTS = 5  # tail-power: finite losses a run's tail needs before it is fitted


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
        return _final_rows(self.at, targets, "finals-power")


def _final_rows(
    at: Callable[[Curves, pd.DataFrame], np.ndarray], targets: Curves | pd.DataFrame, name: str
) -> pd.DataFrame:
    """A baseline's ``frame``: every target row, ``loss_pred`` from ``at`` at each run's last row and
    NaN before it (a baseline answers finals only)."""
    if not isinstance(targets, Curves):
        raise FitError(f"{name} predicts curves only", field="targets", value=type(targets).__name__)
    rows = targets.frame[["run_id", "step"]].reset_index(drop=True)
    last = rows.groupby("run_id")["step"].transform("max").to_numpy()
    pred = at(targets, rows.assign(step=last))
    return rows.assign(loss_pred=np.where(rows["step"].to_numpy() == last, pred, np.nan))


def _fit_power(lengths: np.ndarray, finals: np.ndarray) -> tuple[float, float, float]:
    """Least squares on log loss of E + A T^-a through the points (``lengths`` ascending, all >= 1)."""
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
            params[key] = _fit_power(lengths, finals)
        if not params:
            raise FitError(
                f"finals-power: no schedule family with complete runs at {MIN_HORIZONS} or more lengths",
                field="schedule",
                fix="give complete runs of one schedule at several horizons",
            )
        return FittedFinals(params)


# -- finals-chinchilla ----------------------------------------------------------------------------------
def _annealed_points(curves: Curves, rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` (run_id, step) that are annealed (module doc), with N and D; the others dropped."""
    runs = curves.runs
    tokens = runs["tokens_per_step"] if "tokens_per_step" in runs.columns else None
    out = []
    for run_id, step in zip(rows["run_id"].astype(str), rows["step"].astype(int), strict=True):
        size = runs["n_params"].get(run_id) if "n_params" in runs.columns else None
        if size is None or not pd.notna(size) or float(size) <= 0:
            continue
        try:
            lr = curves.lr_sequence(run_id, int(step) + 1)
        except ScalefitError:
            continue
        peak = float(np.nanmax(lr)) if lr.size else math.nan
        if not (peak > 0 and lr[int(step)] <= ANNEALED * peak):
            continue
        per_step = float(tokens[run_id]) if tokens is not None and pd.notna(tokens.get(run_id)) else 1.0
        out.append({"run_id": run_id, "step": int(step), "N": float(size), "D": (int(step) + 1) * per_step})
    return pd.DataFrame(out, columns=["run_id", "step", "N", "D"])


@dataclass(frozen=True)
class FittedScaling:
    """The Chinchilla fit through the annealed finals, and how to answer at target rows."""

    fit: Fit
    warnings: tuple[str, ...] = field(default=())

    def at(self, targets: Curves | pd.DataFrame, truth: pd.DataFrame) -> np.ndarray:
        keys = list(zip(truth["run_id"].astype(str), truth["step"].astype(int), strict=True))
        if not isinstance(targets, Curves):
            return np.full(len(keys), np.nan)
        unique = pd.DataFrame(sorted(set(keys)), columns=["run_id", "step"])
        points = _annealed_points(targets, unique)
        answer: dict[tuple[str, int], float] = {}
        if len(points):
            pred = self.fit.predict(points[["N", "D"]])["loss_pred"].to_numpy(float)
            answer = dict(zip(zip(points["run_id"], points["step"], strict=True), pred, strict=True))
        return np.array([answer.get(k, np.nan) for k in keys], dtype=float)

    def frame(self, targets: Curves | pd.DataFrame) -> pd.DataFrame:
        return _final_rows(self.at, targets, "finals-chinchilla")


@dataclass(frozen=True)
class FinalsScaling:
    """The ``finals-chinchilla`` baseline (module doc)."""

    name: str = "finals-chinchilla"

    def fit(self, data: Curves | pd.DataFrame) -> FittedScaling:
        if not isinstance(data, Curves) or "n_params" not in data.runs.columns:
            raise FitError("finals-chinchilla needs curves with their model sizes", field="n_params")
        final = data.final()
        points = _annealed_points(data, final[["run_id", "step"]])
        loss = final.set_index("run_id")["loss"]
        points = points.assign(loss=loss.reindex(points["run_id"]).to_numpy(float))
        points = points[np.isfinite(points["loss"]) & (points["loss"] > 0)]
        if points["N"].nunique() < MIN_SIZES:
            raise FitError(
                f"finals-chinchilla: annealed finals at {points['N'].nunique()} model size(s)",
                field="n_params",
                fix=f"give annealed (cosine or WSD) runs of {MIN_SIZES} or more sizes",
            )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", FitWarning)
            fit = fit_law(get_law("chinchilla", n="N", d="D"), points[["N", "D", "loss"]], progress=False)
        notes = tuple(f"finals-chinchilla: {w.message}" for w in caught if issubclass(w.category, FitWarning))
        return FittedScaling(fit, notes)


# -- tail-power ----------------------------------------------------------------------------------------
def _constant(lr: np.ndarray, value: float) -> bool:
    """Every LR in ``lr`` within ``CONSTANT_LR`` of ``value`` (a positive LR)."""
    return bool(value > 0 and lr.size and np.all(np.abs(lr - value) <= CONSTANT_LR * value))


@dataclass(frozen=True)
class RunTail:
    """One run's fitted tail: ``E + A * t^-a`` from step ``start`` on, at the constant LR ``lr``."""

    start: int
    lr: float
    E: float
    A: float
    a: float


@dataclass(frozen=True)
class FittedTails:
    """The fitted tail of each run that has one, and how to answer at target rows."""

    tails: Mapping[str, RunTail]
    warnings: tuple[str, ...] = field(default=())

    def _answer(self, targets: Curves, run_id: str, step: int) -> float:
        tail = self.tails.get(run_id)
        if tail is None or step < tail.start or run_id not in targets.runs.index:
            return math.nan
        try:
            lr = targets.lr_sequence(run_id, step + 1)
        except ScalefitError:
            return math.nan
        if not _constant(lr[tail.start :], tail.lr):
            return math.nan
        return tail.E + tail.A * float(step) ** -tail.a  # step >= tail.start >= 1

    def at(self, targets: Curves | pd.DataFrame, truth: pd.DataFrame) -> np.ndarray:
        if not isinstance(targets, Curves):
            return np.full(len(truth), np.nan)
        rows = zip(truth["run_id"].astype(str), truth["step"].astype(int), strict=True)
        return np.array([self._answer(targets, r, s) for r, s in rows], dtype=float)

    def frame(self, targets: Curves | pd.DataFrame) -> pd.DataFrame:
        return _final_rows(self.at, targets, "tail-power")


def _tail(curves: Curves, run_id: str) -> RunTail | None:
    """The run's fitted tail (module doc, ``tail-power``), or None when its tail does not qualify."""
    frame = curves.frame
    own = frame[(frame["run_id"] == run_id) & frame["finite"]]
    if own.empty:
        return None
    last = int(own["step"].max())
    start = max(int(math.ceil(TAIL_START * last)), 1)
    tail = own[own["step"] >= start]
    if len(tail) < MIN_TAIL_POINTS:
        return None
    try:
        lr = curves.lr_sequence(run_id, last + 1)
    except ScalefitError:
        return None
    if not _constant(lr[start:], float(lr[last])):
        return None
    E, A, a = _fit_power(tail["step"].to_numpy(float), tail["loss"].to_numpy(float))
    return RunTail(start=start, lr=float(lr[last]), E=E, A=A, a=a)


@dataclass(frozen=True)
class TailPowerLaw:
    """The ``tail-power`` baseline (module doc)."""

    name: str = "tail-power"

    def fit(self, data: Curves | pd.DataFrame) -> FittedTails:
        if not isinstance(data, Curves):
            raise FitError("tail-power extrapolates curves only", field="data", value=type(data).__name__)
        tails = {r: t for r in data.run_ids if (t := _tail(data, r)) is not None}
        if not tails:
            raise FitError(
                f"tail-power: no run holds a constant LR over the last {1 - TAIL_START:.0%} of its "
                f"observed steps with {MIN_TAIL_POINTS} or more finite losses there",
                field="lr",
                fix="give a constant-LR run (or a WSD run's trunk before its decay) observed over its tail",
            )
        return FittedTails(tails)
