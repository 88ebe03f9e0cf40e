"""``sf.forecast``: from a handful of fitted runs, which law to trust for the question asked, how much,
and a band that says so.

    fc = sf.forecast(curves, targets)              # targets: Curves with the LR and no loss
    fc.predict()                                   # run_id, step, loss_pred, lo, hi
    fc.weights, fc.scores, fc.level, fc.question, fc.notes

The rule, computed from the fitted runs alone (the targets only fix the question and the points to
predict):

1. Members (``scalefit.predict.members``): every applicable law (``laws=None``: ``CURVE_LAWS`` for
   Curves, plus ``multipower-size`` for a size question; ``STATIC_LAWS`` for a table), each fitted by
   the engine with its defaults, and for Curves the empirical baseline ``finals-power`` (a power law in
   run length through the finals of one schedule family, ``scalefit.predict.baselines``), scored like
   the laws (it has no answer where its family lacks finals at three lengths). ``laws=`` takes names,
   ``Law`` objects or members.
2. Folds that mimic the question (``scalefit.predict.folds``): leave one run out, truncate a run and
   predict its remainder, leave the longest horizon, the largest size or the largest compute out. Each
   member is refitted on every fold and predicts the held-out final losses; its error is the log ratio
   ``log(pred / true)`` (``errors``); ``scores`` is member x fold, the mean absolute error (NaN where the
   member could not be fitted or did not apply).
3. Weights: a member that scored fewer than half of the folds gets none; the others get weights
   proportional to ``1 / MSE`` (their mean squared fold error; for tables each error divided by
   ``growth`` of its distance, so that a far fold does not outweigh the near ones), set to 0 beyond
   ``CUTOFF`` times the best MSE, normalised. The forecast is the weighted mean of the members'
   predictions.
4. Band at ``level``, in log space around the forecast, from the folds' errors of the weighted forecast
   itself (``n`` of them): the larger of the split-conformal quantile (the ``ceil((n+1) level)``-th
   smallest absolute error, when ``n`` allows one) and a Student-t prediction interval ``rms * t_{n-1} *
   sqrt(1 + 1/n)`` (wide when the folds are few).
   - Curves: multiplied by ``target distance / fold distance`` when the target extrapolates further
     than the folds did (horizon, size: log ratios).
   - Tables: the errors are first divided by ``growth(d) = d (1 + d)`` of their own distance ``d``
     (log compute beyond the largest fitted point; a slope error grows like ``d``, a curvature error
     like ``d^2``), the quantile is taken of the (fold, compute level) mean errors as ``n`` (the points
     of one level share their law's bias there) and added in quadrature to that of the errors about
     their level's mean; each target row's half-width is that times ``growth`` of its own distance.
   Then added in quadrature to the spread between members that score alike (weight at least ``ALIKE``
   of the largest: their largest log distance from the forecast). Fewer than ``MIN_ERRORS`` fold
   errors: the runs cannot identify the answer; the forecast says so (``identified`` False, a note)
   and the band is at least ``UNIDENTIFIED`` (relative) wide each side.

The band is one kind everywhere (reports and ``scalefit predict`` label it with ``level``); its
half-width is the same relative width at every step of a target run (the one of its final loss).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import t as student_t

from scalefit.errors import ConfigError, DataError, ScalefitError
from scalefit.laws.base import CurveLaw, Law, get_law
from scalefit.predict.baselines import FinalsPowerLaw
from scalefit.predict.folds import Fold, curve_folds, question_of, table_folds, table_question
from scalefit.predict.members import Fitted, LawMember, Member
from scalefit.store.curves import Curves

__all__ = [
    "ALIKE",
    "CURVE_LAWS",
    "CUTOFF",
    "MIN_ERRORS",
    "STATIC_LAWS",
    "UNIDENTIFIED",
    "Forecast",
    "forecast",
    "growth",
]

CURVE_LAWS = ("momentum", "multipower", "cooldown")
STATIC_LAWS = ("chinchilla", "kaplan", "overtraining")
CUTOFF = 4.0  # members whose fold MSE exceeds this multiple of the best get no weight
ALIKE = 0.25  # members with at least this share of the largest weight count in the spread
MIN_ERRORS = 2  # fewer fold errors than this: the answer is not identified by the runs
UNIDENTIFIED = 0.05  # the least relative half-width of the band of an unidentified forecast
FORMAT = "scalefit.Forecast/1"


@dataclass(frozen=True)
class Forecast:
    """The result of ``forecast``: the combined prediction with its band and how it was reached.

    ``table``: run_id (and step for curves, the key columns for tables), loss_pred, lo, hi.
    ``members``: each member's prediction at the same rows (long: member, row, loss_pred).
    ``errors``: the fold errors (fold, kind, member, run_id, err = log(pred/true), distance, level:
    the held-out row's compute level for tables, NaN for curves).
    ``scores``: member x fold mean |err|. ``weights``: member -> weight. ``band``: how the band was
    set (n_errors, q_conformal, q_t, q, distance_factor, identified). ``folds``: name, kind, distance,
    n_truth. ``failures``: member -> {fold or "all": why it was not fitted}.
    """

    level: float
    question: str
    table: pd.DataFrame
    members: pd.DataFrame
    errors: pd.DataFrame
    scores: pd.DataFrame
    weights: Mapping[str, float]
    band: Mapping[str, Any]
    folds: tuple[Mapping[str, Any], ...]
    notes: tuple[str, ...] = ()
    failures: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    @property
    def identified(self) -> bool:
        return bool(self.band.get("identified", False))

    def predict(self) -> pd.DataFrame:
        """run_id (step), loss_pred, lo, hi; ``attrs["band"]`` gives the level and the method."""
        out = self.table.copy()
        out.attrs["band"] = {"method": "forecast-cv", "ci": self.level}
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "level": self.level,
            "question": self.question,
            "table": _columns(self.table),
            "members": _columns(self.members),
            "errors": _columns(self.errors),
            "scores": {m: {k: _num(v) for k, v in row.items()} for m, row in self.scores.iterrows()},
            "weights": dict(self.weights),
            "band": dict(self.band),
            "folds": [dict(f) for f in self.folds],
            "notes": list(self.notes),
            "failures": {k: dict(v) for k, v in self.failures.items()},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Forecast:
        if not isinstance(d, Mapping) or d.get("format") != FORMAT:
            got = d.get("format") if isinstance(d, Mapping) else type(d).__name__
            raise DataError("not a scalefit Forecast", field="format", value=got, fix=f"give a {FORMAT} JSON")
        scores = pd.DataFrame.from_dict(
            {
                m: {k: (math.nan if v is None else v) for k, v in row.items()}
                for m, row in d["scores"].items()
            },
            orient="index",
        )
        return cls(
            level=float(d["level"]),
            question=str(d["question"]),
            table=_frame(d["table"]),
            members=_frame(d["members"]),
            errors=_frame(d["errors"]),
            scores=scores,
            weights={str(k): float(v) for k, v in d["weights"].items()},
            band=dict(d["band"]),
            folds=tuple(dict(f) for f in d["folds"]),
            notes=tuple(d.get("notes", ())),
            failures={str(k): dict(v) for k, v in d.get("failures", {}).items()},
        )

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, default=_num)

    @classmethod
    def from_json(cls, text: str) -> Forecast:
        return cls.from_dict(json.loads(text))


def _num(value: Any) -> Any:
    """JSON-able: numpy scalars as Python numbers, NaN as None."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _columns(frame: pd.DataFrame) -> dict[str, list[Any]]:
    """A frame as JSON columns: NaN (not observed, no answer) as null, numpy scalars as Python."""
    return {str(c): [_num(v) for v in frame[c].tolist()] for c in frame.columns}


def _frame(columns: Mapping[str, Sequence[Any]]) -> pd.DataFrame:
    """The inverse of ``_columns``: a column of numbers and nulls is float again, nulls NaN."""
    out = {}
    for name, values in columns.items():
        numeric = all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in values)
        out[name] = [math.nan if v is None else v for v in values] if numeric else list(values)
    return pd.DataFrame(out)


# -- members -------------------------------------------------------------------------------------------
def _members(
    data: Curves | pd.DataFrame, laws: Sequence[str | Law | Member] | str | Law | None, question: str
) -> list[Member]:
    if laws is None:
        if isinstance(data, Curves):
            names = CURVE_LAWS + (("multipower-size",) if question == "size" else ())
            return [*(LawMember(get_law(n)) for n in names), FinalsPowerLaw()]
        return [LawMember(get_law(n)) for n in STATIC_LAWS]
    if isinstance(laws, (str, Law)):
        laws = [laws]
    out: list[Member] = []
    for x in laws:
        out.append(LawMember(get_law(x)) if isinstance(x, str) else LawMember(x) if isinstance(x, Law) else x)
    if not out:
        raise ConfigError("laws must name at least one law", field="laws", value=list(laws))
    want = "curve" if isinstance(data, Curves) else "table"
    kinds = {"curve" if isinstance(m.law, CurveLaw) else "table" for m in out if isinstance(m, LawMember)}
    if kinds - {want}:
        raise ConfigError(
            f"forecast of {'Curves' if want == 'curve' else 'a table'} needs {want} laws only",
            field="laws",
            value=[m.name for m in out],
            fix="give curve laws for Curves, static laws (e.g. chinchilla) for a table",
        )
    return out


def _fit(member: Member, data: Curves | pd.DataFrame) -> tuple[Fitted | None, str | None]:
    """(fitted, None) or (None, why it could not be fitted or does not apply)."""
    try:
        return member.fit(data), None
    except ScalefitError as err:
        return None, str(err)


# -- the rule ------------------------------------------------------------------------------------------
def _weights(scores_sq: pd.DataFrame, n_folds: int) -> dict[str, float]:
    """Inverse-MSE weights over the members that scored at least half of the folds (module doc)."""
    covered = scores_sq.notna().sum(axis=1)
    mse = scores_sq.mean(axis=1)
    ok = (covered >= max(1, math.ceil(n_folds / 2))) & np.isfinite(mse)
    if not ok.any():
        return {m: 0.0 for m in scores_sq.index}
    best = float(mse[ok].min())
    raw = {
        m: (1.0 / max(float(mse[m]), 1e-12) if ok[m] and mse[m] <= CUTOFF * best else 0.0) for m in mse.index
    }
    total = sum(raw.values())
    return {m: w / total for m, w in raw.items()}


def _combine(preds: Mapping[str, np.ndarray], weights: Mapping[str, float]) -> np.ndarray:
    """The weighted mean of the members' predictions, renormalised where some are missing (NaN)."""
    names = [m for m in preds if weights.get(m, 0.0) > 0]
    if not names:
        n = len(next(iter(preds.values()))) if preds else 0
        return np.full(n, np.nan)
    stack = np.stack([preds[m] for m in names])
    w = np.array([weights[m] for m in names])[:, None] * np.isfinite(stack)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.nansum(np.where(np.isfinite(stack), stack, 0.0) * w, axis=0) / w.sum(axis=0)


def _quantile(errors: np.ndarray, level: float) -> dict[str, float]:
    """The band's half-width in log space from fold errors (module doc, step 4)."""
    e = np.abs(errors[np.isfinite(errors)])
    n = int(e.size)
    out = {"n_errors": n, "q_conformal": math.nan, "q_t": math.nan}
    if n >= 1:
        k = math.ceil((n + 1) * level)
        if k <= n:
            out["q_conformal"] = float(np.sort(e)[k - 1])
    if n >= 2:
        rms = float(np.sqrt(np.mean(e**2)))
        out["q_t"] = rms * float(student_t.ppf(0.5 + level / 2, n - 1)) * math.sqrt(1 + 1 / n)
    finite = [v for v in (out["q_conformal"], out["q_t"]) if math.isfinite(v)]
    out["q"] = max(finite) if finite else math.nan
    return out


def _table_quantile(cv: pd.DataFrame, level: float) -> dict[str, float]:
    """Tables: the points of one held-out compute level share most of their error (the law's bias
    there), so the band adds in quadrature the quantile of the (fold, level) mean errors, as
    ``n = groups`` errors (``_quantile``: a Student-t interval when the groups are few), and the
    quantile of the errors about their group's mean (the scatter between allocations of one budget)."""
    finite = cv[np.isfinite(cv["err"].to_numpy(float))]
    means = finite.groupby(["fold", "level"])["err"].transform("mean")
    bias = _quantile(finite.groupby(["fold", "level"])["err"].mean().to_numpy(float), level)
    scatter = _quantile((finite["err"] - means).to_numpy(float), level)
    out = {"n_errors": int(len(finite)), "n_groups": bias["n_errors"]}
    out |= {"q_bias": bias["q"], "q_scatter": scatter["q"]}
    out["q_conformal"], out["q_t"] = bias["q_conformal"], bias["q_t"]
    parts = [v for v in (bias["q"], scatter["q"]) if math.isfinite(v)]
    out["q"] = math.sqrt(sum(v * v for v in parts)) if math.isfinite(bias["q"]) else math.nan
    return out


def _table_compute(law: Law, table: pd.DataFrame) -> np.ndarray:
    """C = 6 N D of each row, from the law's column names (D, else the compute column)."""
    n_col, d_col, c_col = (getattr(law, k, None) for k in ("n", "d", "c"))
    if n_col not in table.columns:
        raise DataError("the table lacks the model-size column", column=n_col, fix="name it with n=")
    n = table[n_col].to_numpy(float)
    if d_col in table.columns:
        return 6.0 * n * table[d_col].to_numpy(float)
    if c_col is not None and c_col in table.columns:
        return table[c_col].to_numpy(float)
    raise DataError("the table lacks the tokens column", column=d_col, fix="name it with d= (or give c=)")


def _distance_floor(folds: Sequence[Fold]) -> float:
    """The nearest table fold's distance (one compute level; 1 when there is no fold)."""
    d = [f.distance for f in folds if f.distance > 0]
    return min(d) if d else 1.0


def _target_distance(
    data: Curves | pd.DataFrame,
    targets: Curves | pd.DataFrame,
    question: str,
    compute: tuple[np.ndarray, np.ndarray] | None,
) -> float:
    """How far the targets extrapolate: log of the target horizon, size or compute over the fitted."""
    if question == "horizon":
        fitted = data.frame[data.frame["finite"]]["step"].max()
        return math.log(float(targets.frame["step"].max()) / float(fitted))
    if question == "size":
        sizes = pd.to_numeric(data.runs["n_params"], errors="coerce")
        tsizes = pd.to_numeric(targets.runs["n_params"], errors="coerce")
        return math.log(float(tsizes.max()) / float(sizes.max()))
    if question == "compute":
        return math.log(float(np.max(compute[1])) / float(np.max(compute[0])))
    return 0.0


def _by_fold(
    errors: pd.DataFrame,
    members: Sequence[Member],
    folds: Sequence[Fold],
    fn: Callable[[pd.Series], pd.Series],
) -> pd.DataFrame:
    """member x fold: the mean of ``fn(err)`` over the fold's held-out rows (NaN where none)."""
    index, columns = [m.name for m in members], [f.name for f in folds]
    if errors.empty:
        return pd.DataFrame(np.nan, index=index, columns=columns)
    table = errors.assign(v=fn(errors["err"])).groupby(["member", "fold"])["v"].mean().unstack("fold")
    return table.reindex(index=index, columns=columns)


def _combined_errors(errors: pd.DataFrame, weights: Mapping[str, float]) -> pd.DataFrame:
    """The fold errors of the weighted forecast itself: one row per (fold, held-out run)."""
    if errors.empty:
        return pd.DataFrame(columns=["fold", "run_id", "err", "distance", "level"])
    rows = []
    for (fold, run_id), g in errors.groupby(["fold", "run_id"], sort=False):
        preds = {m: np.array([v]) for m, v in zip(g["member"], g["pred"], strict=True)}
        comb = float(_combine(preds, weights)[0])
        true = float(g["true"].iloc[0])
        err = math.log(comb / true) if comb > 0 and true > 0 else math.nan
        first = g.iloc[0]
        rows.append(
            {
                "fold": fold,
                "run_id": run_id,
                "err": err,
                "distance": float(first["distance"]),
                "level": float(first["level"]),
            }
        )
    return pd.DataFrame(rows)


def growth(distance: np.ndarray | float, floor: float) -> np.ndarray:
    """How a static law's extrapolation error grows with the log-compute distance ``d`` beyond the
    fitted points: ``d (1 + d)`` (a slope error grows like ``d``, a curvature error like ``d^2``),
    with ``d`` raised to ``floor`` (the nearest fold's distance: no target is trusted more than one
    level of extrapolation)."""
    d = np.maximum(np.asarray(distance, dtype=float), floor)
    return d * (1.0 + d)


def _normalised(errors: pd.DataFrame, floor: float | None) -> pd.DataFrame:
    """Tables (``floor`` given): each error divided by ``growth`` of its distance; curves unchanged."""
    if floor is None or errors.empty:
        return errors
    return errors.assign(err=errors["err"] / growth(errors["distance"].to_numpy(float), floor))


def _spread(preds: Mapping[str, np.ndarray], center: np.ndarray, weights: Mapping[str, float]) -> np.ndarray:
    """Per row, the largest |log(pred / forecast)| of the members that score alike (module doc)."""
    top = max(weights.values()) if weights else 0.0
    alike = [m for m in preds if top > 0 and weights.get(m, 0.0) >= ALIKE * top]
    if not alike:
        return np.zeros_like(center)
    with np.errstate(invalid="ignore", divide="ignore"):
        gaps = np.abs(np.log(np.stack([preds[m] for m in alike]) / center))
    return np.nan_to_num(np.nanmax(np.where(np.isfinite(gaps), gaps, np.nan), axis=0), nan=0.0)


def _align(full: Mapping[str, pd.DataFrame]) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """The union of the members' prediction rows (laws may leave out different early steps) and each
    member's loss_pred on it (NaN where it has none). Curves: rows by run and step; tables: the
    targets' own row order (a forecast row answers the target row at the same position)."""
    frames = list(full.values())
    shared = set.intersection(*(set(f.columns) for f in frames)) - {"loss_pred"}
    on = [c for c in frames[0].columns if c in shared]  # laws key their rows by different columns
    keys = pd.concat([f[on] for f in frames], ignore_index=True).drop_duplicates(on)
    if "step" in on:
        keys = keys.sort_values(["run_id", "step"], kind="stable")
    keys = keys.reset_index(drop=True)
    preds = {
        m: keys.merge(f[[*on, "loss_pred"]].drop_duplicates(on), on=on, how="left")["loss_pred"].to_numpy(
            float
        )
        for m, f in full.items()
    }
    return keys, preds


def _per_run(keys: pd.DataFrame, half: np.ndarray) -> np.ndarray:
    """Curves: every row of a run gets the half-width of its final (largest-step) row."""
    if "step" not in keys.columns:
        return half
    frame = keys[["run_id", "step"]].assign(half=half)
    last = frame.loc[frame.groupby("run_id")["step"].idxmax(), ["run_id", "half"]].set_index("run_id")["half"]
    return frame["run_id"].map(last).to_numpy(float)


def _fold_errors(
    folds: Sequence[Fold], members: Sequence[Member], loss: str
) -> tuple[pd.DataFrame, dict[str, dict[str, str]]]:
    """Every member refitted on every fold: the error rows and the failures."""
    rows, failures = [], {}
    for fold in folds:
        truth = fold.truth[loss].to_numpy(float)
        for member in members:
            fitted, why = _fit(member, fold.train)
            pred = np.full(len(truth), np.nan)
            if fitted is None:
                failures.setdefault(member.name, {})[fold.name] = str(why)
            else:
                try:
                    pred = fitted.at(fold.targets, fold.truth)
                except ScalefitError as err:
                    failures.setdefault(member.name, {})[fold.name] = str(err)
            distances = fold.row_distance or (fold.distance,) * len(truth)
            levels = fold.row_level or (math.nan,) * len(truth)
            for run_id, p_, t_, d_, l_ in zip(
                fold.truth["run_id"].astype(str), pred, truth, distances, levels, strict=True
            ):
                err = math.log(p_ / t_) if p_ > 0 and t_ > 0 and math.isfinite(p_) else math.nan
                rows.append(
                    {
                        "fold": fold.name,
                        "kind": fold.kind,
                        "member": member.name,
                        "run_id": run_id,
                        "err": err,
                    }
                    | {"distance": float(d_), "level": float(l_), "pred": float(p_), "true": float(t_)}
                )
    return pd.DataFrame(rows), failures


def forecast(
    data: Curves | pd.DataFrame,
    targets: Curves | pd.DataFrame,
    *,
    laws: Sequence[str | Law] | str | Law | None = None,
    level: float = 0.9,
) -> Forecast:
    """Fit every applicable law to ``data``, score each by folds that mimic the question the
    ``targets`` ask, combine them by those scores and band the result at ``level`` (module doc).

    ``data``: the fitted runs (Curves, or a static table); ``targets``: what ``Fit.predict`` takes
    (Curves with the LR and no loss, e.g. ``target_curves``; a table of N and D). ``laws``: names or
    ``Law`` objects (default: every applicable law; static laws with other column names are passed as
    objects, e.g. ``ChinchillaLaw(loss="val_loss", n="params", d="tokens")``).
    """
    if not 0.0 < float(level) < 1.0:
        raise ConfigError("level must be in (0, 1)", field="level", value=level, fix="e.g. level=0.9")
    for role, value in (("data", data), ("targets", targets)):
        if not isinstance(value, (Curves, pd.DataFrame)):
            raise DataError(
                f"forecast {role} must be Curves or a DataFrame",
                field=role,
                value=type(value).__name__,
                fix="give Curves (sf.read_curves, sf.Curves.from_frame) or a table of N and D",
            )
    curves = isinstance(data, Curves)
    if curves != isinstance(targets, Curves):
        raise DataError(
            "data and targets must both be Curves (curve laws) or both tables (static laws)",
            value=f"{type(data).__name__} / {type(targets).__name__}",
            fix="give the targets as scalefit.predict.targets.target_curves(...) or as a table of N and D",
        )
    notes: list[str] = []
    compute = None
    if curves:
        if len(data.run_ids) < 1:
            raise DataError("no runs to fit", fix="give at least one run with an observed loss")
        question = question_of(data, targets)
        members = _members(data, laws, question)
        folds = curve_folds(data, question)
    else:
        members = _members(data, laws, "compute")
        first = next((m.law for m in members if isinstance(m, LawMember)), None)
        if first is None:
            raise ConfigError(
                "a static forecast needs a static law", field="laws", fix="e.g. laws=['chinchilla']"
            )
        compute = (_table_compute(first, data), _table_compute(first, targets))
        question = table_question(*compute)
        folds = table_folds(data, compute[0])
    loss = "loss" if curves else str(getattr(first, "loss", "loss"))
    errors, failures = _fold_errors(folds, members, loss)
    scores = _by_fold(errors, members, folds, np.abs)
    floor = None if curves else _distance_floor(folds)
    weights = _weights(_by_fold(_normalised(errors, floor), members, folds, np.square), len(folds))
    full: dict[str, pd.DataFrame] = {}
    for member in members:
        fitted, why = _fit(member, data)
        if fitted is None:
            failures.setdefault(member.name, {})["all"] = str(why)
            weights[member.name] = 0.0
            continue
        full[member.name] = fitted.frame(targets)
        if weights.get(member.name, 0.0) > 0:
            notes.extend(fitted.warnings)  # each starts with its law's name
    total = sum(weights.values())
    weights = {m: (w / total if total > 0 else 0.0) for m, w in weights.items()}
    if not full:
        raise DataError(
            "no law could be fitted to the runs",
            value="; ".join(f"{m}: {v.get('all')}" for m, v in failures.items()),
            fix="give more runs (with an LR decay for curve laws) or other laws",
        )
    keys, member_preds = _align(full)
    if total <= 0:  # no member could be scored: weigh them equally and say so
        weights = {m: 1.0 / len(full) for m in full}
    center = _combine(member_preds, weights)
    cv = _combined_errors(errors, weights)
    band = (
        _quantile(cv["err"].to_numpy(float), level)
        if curves
        else _table_quantile(_normalised(cv, floor), level)
    )
    fold_distance = float(cv["distance"].median()) if len(cv) else 0.0
    if curves:
        distance = _target_distance(data, targets, question, compute)
        factor = max(1.0, distance / fold_distance) if fold_distance > 0 and distance > 0 else 1.0
    else:  # per target row: its own distance beyond the largest fitted compute, through ``growth``
        row_distance = np.log(compute[1] / float(np.max(compute[0])))
        distance = float(np.max(row_distance))
        factor = growth(row_distance, floor)
    identified = band["n_errors"] >= MIN_ERRORS and math.isfinite(band["q"])
    q = band["q"] * factor if identified else np.full(len(keys), math.log1p(UNIDENTIFIED))
    if not identified:
        notes.append(
            f"the runs cannot identify the answer: {band['n_errors']} fold error(s) "
            f"(at least {MIN_ERRORS} needed); the band is at least +-{UNIDENTIFIED:.0%}"
        )
    spread = _spread(member_preds, center, weights)
    half = np.sqrt(q**2 + spread**2)
    half = _per_run(keys, half)
    table = keys.assign(loss_pred=center, lo=center * np.exp(-half), hi=center * np.exp(half))
    members_long = pd.concat(
        [keys.assign(member=m, loss_pred=v) for m, v in member_preds.items()], ignore_index=True
    )
    band_info = {
        **{k: _num(v) for k, v in band.items()},
        "distance_target": distance,
        "distance_folds": fold_distance,
        "distance_factor": float(np.max(factor)),
        "scale": "q per unit of growth(d) = d (1 + d), d per row" if floor is not None else "q",
        "identified": bool(identified),
        "level": float(level),
    }
    fold_info = tuple(
        {"name": f.name, "kind": f.kind, "distance": f.distance, "n_truth": len(f.truth)} for f in folds
    )
    return Forecast(
        level=float(level),
        question=question,
        table=table,
        members=members_long,
        errors=errors,
        scores=scores,
        weights=weights,
        band=band_info,
        folds=fold_info,
        notes=tuple(notes),
        failures=failures,
    )
