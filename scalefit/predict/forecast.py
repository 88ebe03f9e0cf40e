"""``sf.forecast``: from a handful of fitted runs, which law to trust for the question asked, how much,
and a band that says so.

    fc = sf.forecast(curves, targets)              # targets: Curves with the LR and no loss
    fc.predict()                                   # run_id, step, loss_pred, lo, hi
    fc.weights, fc.scores, fc.level, fc.question, fc.notes

The rule, computed from the fitted runs alone (the targets only fix the question and the points to
predict):

1. Members (``scalefit.predict.members``): every applicable law (``laws=None``: ``CURVE_LAWS`` for
   Curves, plus ``multipower-size`` when a target is a larger model; ``STATIC_LAWS`` for a table),
   each fitted by the engine with its defaults (a curve law that does not read the model size is
   fitted per size, on the runs of each size alone, when the runs span several sizes and no target
   is larger than all of them: ``PerSizeMember``), and for Curves the empirical baselines
   ``finals-power`` (a power law in run length through the finals of one schedule family),
   ``finals-chinchilla`` (the Chinchilla law through the annealed finals of runs of three or more
   sizes) and ``tail-power`` (a power law in steps through the constant-LR tail of each run, for a
   target that continues that run; ``scalefit.predict.baselines``), scored like the laws (each has no
   answer where its data are lacking). ``laws=`` takes names (a law's, or a baseline's from
   ``BASELINES``), ``Law`` objects or members.
2. Folds that mimic the question (``scalefit.predict.folds``): leave one run out, truncate a run and
   predict its remainder, leave the longest horizon, the largest size or the largest compute out. Each
   member is refitted on every fold and predicts the held-out final losses; its error is the log ratio
   ``log(pred / true)`` (``errors``); ``scores`` is member x fold, the mean absolute error (NaN where the
   member could not be fitted or did not apply). These fits and those on the whole data are
   independent tasks (``_Task``), each seeded and single-threaded: ``map_fn`` may run them in
   parallel (a process pool, Ray) and the forecast is the same.
3. Weights, per target row among the members that answer it (a baseline answers only some rows; a
   member whose fit failed on more than half of the folds is not weighed), from their mean squared
   error over the folds that all of them scored (for tables each error divided by ``growth`` of its
   distance, so that a far fold does not outweigh the near ones); while they share fewer than
   ``MIN_COMMON`` scored folds the member with the fewest is left out; none scored at all: equal
   weights. A ``branch`` question (every target a cooldown branch off a fitted run) is weighed on the
   anneal folds alone (a fitted run's anneal predicted from its observed start, what a branch asks)
   when there are ``MIN_COMMON`` of them: leaving out a whole run of another peak, say, asks another
   question. The band still takes the errors of every fold (step 4). When the size-blind laws are
   fitted per size (step 1), a target is weighed on those of the weighing folds that hold out a run
   of its size (the folds that test the fits answering it; a ladder's other sizes test other fits)
   when there are ``MIN_COMMON`` of them, else on all; step 4 weighs each held-out run alike.
   - Curves (a handful of runs, a handful of folds): the folds rarely tell the laws apart, so the rule
     selects, in the spirit of the one-standard-error rule (Breiman et al. 1984, "Classification and
     Regression Trees", 3.4.3). A member scores alike the best (lowest MSE) unless a one-sided paired
     t-test on their per-fold squared errors shows it worse at ``ALIKE_LEVEL``; the earliest alike
     member in ``PREFERENCE`` (then the lowest MSE) takes all the weight. ``PREFERENCE`` is the
     laws' record on ``benchmarks/blind.py`` (``cooldown`` was the best single law on 9 of its 10
     curve protocols when the order was set, and on 17 of 18 with the ``cooldown-<size>``
     protocols added since), then the baselines.
   - Tables (many points per fold): proportional to ``1 / MSE``, set to 0 beyond ``CUTOFF`` times the
     best MSE, normalised; members with at least ``ALIKE`` of the largest weight score alike.
   The forecast is the weighted mean of the answering members' predictions; ``weights`` reports the
   set that answers most of the targets' finals, ``weight_sets`` every set.
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
     their level's mean; each target row's half-width is that times ``growth`` of its own distance,
     the level means taken from the groups at a comparable distance (within a factor ``WINDOW`` of
     the row's) when there are two or more.
   Then added in quadrature to the spread between members that score alike (step 3: their largest log
   distance from the forecast). Fewer than ``MIN_ERRORS`` fold errors: the runs cannot identify the
   answer; the forecast says so (``identified`` False, a note) and the band is at least
   ``UNIDENTIFIED`` (relative) wide each side.

The band is one kind everywhere (reports and ``scalefit predict`` label it with ``level``); its
half-width is the same relative width at every step of a target run (the one of its final loss).
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, TypeVar

import numpy as np
import pandas as pd
from scipy.stats import t as student_t

from scalefit.errors import ConfigError, DataError, ScalefitError
from scalefit.laws.base import REGISTRY, CurveLaw, Law, get_law
from scalefit.predict.baselines import FinalsPowerLaw, FinalsScaling, TailPowerLaw
from scalefit.predict.folds import (
    Fold,
    curve_folds,
    extrapolates,
    question_of,
    run_sizes,
    table_folds,
    table_question,
)
from scalefit.predict.members import Fitted, LawMember, Member, PerSizeMember
from scalefit.store.curves import Curves

__all__ = [
    "ALIKE",
    "ALIKE_LEVEL",
    "BASELINES",
    "CURVE_LAWS",
    "CUTOFF",
    "MIN_COMMON",
    "MIN_ERRORS",
    "PREFERENCE",
    "STATIC_LAWS",
    "UNIDENTIFIED",
    "WINDOW",
    "Forecast",
    "ParallelMap",
    "forecast",
    "growth",
]

CURVE_LAWS = ("momentum", "multipower", "cooldown")
STATIC_LAWS = ("chinchilla", "kaplan", "overtraining")
# the empirical baselines by member name: what ``laws=["finals-power", ...]`` builds (curves only)
BASELINES: Mapping[str, Callable[[], Member]] = {
    "finals-power": FinalsPowerLaw,
    "finals-chinchilla": FinalsScaling,
    "tail-power": TailPowerLaw,
}
CUTOFF = 4.0  # members whose fold MSE exceeds this multiple of the best get no weight
# curves: the order in which members that score alike are preferred (module doc, step 3)
PREFERENCE = (
    "cooldown",
    "momentum",
    "multipower",
    "multipower-size",
    "finals-chinchilla",
    "finals-power",
    "tail-power",
)
ALIKE = 0.25  # tables: members with at least this share of the largest weight count in the spread
ALIKE_LEVEL = 0.9  # curves: a member is worse than the best when a one-sided paired t-test says so here
MIN_ERRORS = 2  # fewer fold errors than this: the answer is not identified by the runs
UNIDENTIFIED = 0.05  # the least relative half-width of the band of an unidentified forecast
WINDOW = 1.5  # tables: fold groups within this factor of a row's distance are at a comparable distance
MIN_COMMON = 2  # folds the members answering a row must all have scored to be weighed against each other
FORMAT = "scalefit.Forecast/1"

_T = TypeVar("_T")
_R = TypeVar("_R")


class ParallelMap(Protocol):
    """``map_fn(fn, items)``: ``fn`` applied to every item, the results in the items' order."""

    def __call__(self, fn: Callable[[_T], _R], items: Sequence[_T], /) -> Iterable[_R]: ...


@dataclass(frozen=True)
class Forecast:
    """The result of ``forecast``: the combined prediction with its band and how it was reached.

    ``table``: run_id (and step for curves, the key columns for tables), loss_pred, lo, hi.
    ``members``: each member's prediction at the same rows (long: member, row, loss_pred).
    ``errors``: the fold errors (fold, kind, member, run_id, err = log(pred/true), distance, level:
    the held-out row's compute level for tables, NaN for curves).
    ``scores``: member x fold mean |err|. ``weights``: member -> weight at most of the targets'
    finals; ``weight_sets``: every set of weights used at the finals, with its number of rows.
    ``band``: how the band was set (n_errors, q_conformal, q_t, q, distance_factor, identified).
    ``folds``: name, kind, distance, n_truth, anneal, weighs (the weights were computed on it).
    ``failures``: member -> {fold or "all": why it was not fitted}.
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
    weight_sets: tuple[Mapping[str, Any], ...] = ()

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
            "weight_sets": [{"weights": dict(w["weights"]), "n_rows": w["n_rows"]} for w in self.weight_sets],
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
            weight_sets=tuple(
                {"weights": {str(m): float(v) for m, v in w["weights"].items()}, "n_rows": int(w["n_rows"])}
                for w in d.get("weight_sets", ())
            ),
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
    data: Curves | pd.DataFrame,
    laws: Sequence[str | Law | Member] | str | Law | None,
    asked: Sequence[str],
) -> list[Member]:
    if laws is None:
        if isinstance(data, Curves):
            names = CURVE_LAWS + (("multipower-size",) if "size" in asked else ())
            return [*(LawMember(get_law(n)) for n in names), *(make() for make in BASELINES.values())]
        return [LawMember(get_law(n)) for n in STATIC_LAWS]
    if isinstance(laws, (str, Law)):
        laws = [laws]
    out = [_member(x) for x in laws]
    if not out:
        raise ConfigError("laws must name at least one law", field="laws", value=list(laws))
    want = "curve" if isinstance(data, Curves) else "table"
    kinds = {"curve" if isinstance(m.law, CurveLaw) else "table" for m in out if isinstance(m, LawMember)}
    if want == "table" and any(m.name in BASELINES for m in out):
        raise ConfigError(
            "the baselines answer Curves, not a table",
            field="laws",
            value=[m.name for m in out if m.name in BASELINES],
            fix="give static laws (e.g. chinchilla) for a table",
        )
    if kinds - {want}:
        raise ConfigError(
            f"forecast of {'Curves' if want == 'curve' else 'a table'} needs {want} laws only",
            field="laws",
            value=[m.name for m in out],
            fix="give curve laws for Curves, static laws (e.g. chinchilla) for a table",
        )
    return out


def _member(x: str | Law | Member) -> Member:
    """One member of ``laws=``: a baseline's or a law's name, a ``Law`` object, or a member as is."""
    if isinstance(x, str):
        if x in BASELINES:
            return BASELINES[x]()
        if x not in REGISTRY:
            raise ConfigError(
                "unknown law or baseline",
                field="laws",
                value=x,
                fix=f"use one of {', '.join(sorted([*REGISTRY, *BASELINES]))}",
            )
        return LawMember(get_law(x))
    return LawMember(x) if isinstance(x, Law) else x


def _size_blind(member: Member) -> bool:
    """A curve law that does not read the model size (``n_params``)."""
    if not isinstance(member, LawMember) or not isinstance(member.law, CurveLaw):
        return False
    return "n_params" not in {name for name, _ in member.law.features().meta}


def _per_size(members: list[Member], data: Curves, asked: Sequence[str]) -> tuple[list[Member], bool]:
    """Size-blind curve laws fitted per model size (``PerSizeMember``) when the fitted runs span two or
    more sizes, each run has one and no target is a larger model (module doc, step 1); and whether so."""
    sizes = run_sizes(data)
    if "size" in asked or not np.isfinite(sizes).all() or sizes.nunique() < 2:
        return members, False
    return [PerSizeMember(m) if _size_blind(m) else m for m in members], True


def _fit(member: Member, data: Curves | pd.DataFrame) -> tuple[Fitted | None, str | None]:
    """(fitted, None) or (None, why it could not be fitted or does not apply)."""
    try:
        return member.fit(data), None
    except ScalefitError as err:
        return None, str(err)


# -- the rule ------------------------------------------------------------------------------------------
def _disqualified(failures: Mapping[str, Mapping[str, str]], n_folds: int) -> set[str]:
    """Members whose fit failed (raised) on more than half of the folds: too unstable to weigh."""
    return {m for m, f in failures.items() if sum(k != "all" for k in f) > n_folds / 2}


@dataclass
class _Weigher:
    """Weights among the members that answer a row, from the folds all of them scored (module doc,
    step 3), cached per set of members; and the members that score alike there (the spread)."""

    scores_sq: pd.DataFrame  # member x fold: mean squared (normalised) error, NaN where not scored
    eligible: frozenset[str]
    prefer: tuple[str, ...] = ()  # curves: PREFERENCE (selection among alike); tables: () (1 / MSE)
    cache: dict[frozenset[str], tuple[dict[str, float], frozenset[str]]] = field(default_factory=dict)

    def __call__(self, answering: Sequence[str]) -> dict[str, float]:
        return self._entry(answering)[0]

    def alike(self, answering: Sequence[str]) -> frozenset[str]:
        """The answering members the folds cannot tell apart from the best (module doc, step 3)."""
        return self._entry(answering)[1]

    def _entry(self, answering: Sequence[str]) -> tuple[dict[str, float], frozenset[str]]:
        key = frozenset(m for m in answering if m in self.eligible)
        if key not in self.cache:
            self.cache[key] = self._weights(sorted(key))
        return self.cache[key]

    def _weights(self, names: list[str]) -> tuple[dict[str, float], frozenset[str]]:
        sq = self.scores_sq
        if names and not sq.loc[names].notna().to_numpy().any():  # none scored: weigh them alike
            return {m: 1.0 / len(names) for m in names}, frozenset(names)
        while len(names) > 1:  # the members must share MIN_COMMON scored folds to be compared
            sub = sq.loc[names]
            common = sub.columns[sub.notna().all(axis=0).to_numpy()]
            if len(common) >= MIN_COMMON:
                break
            names.remove(min(names, key=lambda m: (int(sub.loc[m].notna().sum()), m)))
        if len(names) <= 1:
            return {m: 1.0 for m in names}, frozenset(names)
        folds = sq.loc[names, common]
        mse = folds.mean(axis=1)
        if self.prefer:
            return self._alike_best(folds, mse)
        best = float(mse.min())
        raw = {m: (1.0 / max(float(v), 1e-12) if v <= CUTOFF * best else 0.0) for m, v in mse.items()}
        total = sum(raw.values())
        weights = {m: w / total for m, w in raw.items()}
        top = max(weights.values())
        return weights, frozenset(m for m, w in weights.items() if top > 0 and w >= ALIKE * top)

    def _alike_best(self, folds: pd.DataFrame, mse: pd.Series) -> tuple[dict[str, float], frozenset[str]]:
        """Curves: the members that the folds do not show worse than the best (a one-sided paired
        t-test at ``ALIKE_LEVEL`` on their per-fold squared errors) score alike; the earliest of them
        in ``prefer`` (then the lowest MSE) takes all the weight."""
        best = str(mse.idxmin())
        n = folds.shape[1]
        t_crit = float(student_t.ppf(ALIKE_LEVEL, n - 1))
        alike = set()
        for m in mse.index:
            diff = (folds.loc[m] - folds.loc[best]).to_numpy(float)
            se = float(np.std(diff, ddof=1) / math.sqrt(n))
            if float(diff.mean()) <= t_crit * se:
                alike.add(str(m))
        rank = {
            m: (self.prefer.index(m) if m in self.prefer else len(self.prefer), float(mse[m])) for m in alike
        }
        chosen = min(alike, key=lambda m: (rank[m], m))
        return {str(m): (1.0 if m == chosen else 0.0) for m in mse.index}, frozenset(alike)

    def combine(
        self, preds: Mapping[str, np.ndarray]
    ) -> tuple[np.ndarray, list[dict[str, float]], list[frozenset[str]]]:
        """Per row: the weighted mean of the answering members' predictions, their weights and the
        members that score alike there."""
        names = list(preds)
        stack = np.stack([preds[m] for m in names]) if names else np.zeros((0, 0))
        n = stack.shape[1] if names else 0
        out, used, alike = np.full(n, np.nan), [], []
        for i in range(n):
            answering = [m for j, m in enumerate(names) if np.isfinite(stack[j, i]) and stack[j, i] > 0]
            w, similar = self._entry(answering)
            used.append(w)
            alike.append(similar)
            total = sum(w.values())
            if total > 0:
                out[i] = sum(w[m] * stack[names.index(m), i] for m in w) / total
        return out, used, alike


@dataclass(frozen=True)
class _Weighers:
    """The weigher of every weighing fold and, when the size-blind laws are fitted per model size,
    one per size from the folds that hold out a run of that size (module doc, step 3); a row is
    weighed by the weigher of its run's size, else by ``default``."""

    default: _Weigher
    by_size: Mapping[float, _Weigher] = field(default_factory=dict)

    def of(self, size: float) -> _Weigher:
        """The weigher of a run of ``size`` parameters (NaN: unknown, ``default``)."""
        return next((w for n, w in self.by_size.items() if math.isclose(size, n, rel_tol=1e-9)), self.default)

    def combine(
        self, preds: Mapping[str, np.ndarray], sizes: np.ndarray
    ) -> tuple[np.ndarray, list[dict[str, float]], list[frozenset[str]]]:
        """``_Weigher.combine`` with each row (of a run of ``sizes[i]`` parameters) weighed by the
        weigher of its size."""
        n = len(sizes)
        out = np.full(n, np.nan)
        used: list[dict[str, float]] = [{} for _ in range(n)]
        alike: list[frozenset[str]] = [frozenset() for _ in range(n)]
        route = [self.of(float(s)) for s in sizes]
        for weigher in {id(w): w for w in route}.values():
            rows = np.array([i for i, w in enumerate(route) if w is weigher])
            part, part_used, part_alike = weigher.combine({m: p[rows] for m, p in preds.items()})
            out[rows] = part
            for j, i in enumerate(rows):
                used[i], alike[i] = part_used[j], part_alike[j]
        return out, used, alike


def _held_out_size(fold: Fold, sizes: pd.Series) -> float:
    """The model size of the runs a fold holds out, NaN when they are of several sizes or unknown."""
    held = {float(sizes.get(str(r), math.nan)) for r in fold.truth["run_id"]}
    return held.pop() if len(held) == 1 else math.nan


def _weighers(
    scores_sq: pd.DataFrame,
    folds: Sequence[Fold],
    weighing: Sequence[str],
    eligible: frozenset[str],
    prefer: tuple[str, ...],
    sizes: pd.Series,
) -> _Weighers:
    """The weigher of the ``weighing`` folds and one per size of ``sizes`` (run_id -> n_params; empty
    unless the size-blind laws are fitted per size) that has ``MIN_COMMON`` weighing folds holding out
    its runs (module doc, step 3)."""
    default = _Weigher(scores_sq[list(weighing)], eligible, prefer)
    held = {f.name: _held_out_size(f, sizes) for f in folds if f.name in weighing}
    by_size = {}
    for n in sorted(set(sizes.dropna().tolist())):
        own = [name for name, size in held.items() if math.isclose(size, n, rel_tol=1e-9)]
        if len(own) >= MIN_COMMON:
            by_size[float(n)] = _Weigher(scores_sq[own], eligible, prefer)
    return _Weighers(default, by_size)


def _summary_weights(
    keys: pd.DataFrame, used: Sequence[Mapping[str, float]], names: Sequence[str]
) -> tuple[dict[str, float], tuple[dict[str, Any], ...]]:
    """The weights answering the targets' finals (curves: each run's last row; tables: every row):
    the most common set (on a tie the one of more members) as ``Forecast.weights`` (every member
    named, 0 when not weighed) and every set with the number of final rows it answered."""
    if "step" in keys.columns and len(keys):
        rows = keys.groupby("run_id")["step"].idxmax().to_numpy()
    else:
        rows = np.arange(len(keys))
    counts: dict[tuple[tuple[str, float], ...], int] = {}
    for i in rows:
        key = tuple(sorted(used[int(i)].items()))
        counts[key] = counts.get(key, 0) + 1
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], -len(kv[0])))  # ties: the fuller set
    top = dict(ranked[0][0]) if ranked else {}
    weights = {m: float(top.get(m, 0.0)) for m in names}
    sets = tuple({"weights": dict(k), "n_rows": n} for k, n in ranked)
    return weights, sets


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


def _table_row_q(
    cv: pd.DataFrame, band: Mapping[str, Any], level: float, distance: np.ndarray, floor: float
) -> np.ndarray:
    """Tables, per target row: ``band`` (``_table_quantile``'s) with its bias part taken from the
    (fold, level) groups at a comparable distance (within a factor ``WINDOW`` of the row's own,
    raised to ``floor``) when there are two or more, else ``band``'s own. ``cv``: normalised errors."""
    finite = cv[np.isfinite(cv["err"].to_numpy(float))]
    groups = finite.groupby(["fold", "level"]).agg(err=("err", "mean"), d=("distance", "mean"))
    scatter = band["q_scatter"] if math.isfinite(band["q_scatter"]) else 0.0
    out = np.empty(len(distance))
    for i, d in enumerate(np.maximum(np.asarray(distance, dtype=float), floor)):
        near = groups["err"][(groups["d"] >= d / WINDOW) & (groups["d"] <= d * WINDOW)].to_numpy(float)
        bias = _quantile(near, level)["q"] if near.size >= 2 else band["q_bias"]
        out[i] = math.hypot(bias, scatter)
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
        return math.log(float(run_sizes(targets).max()) / float(run_sizes(data).max()))
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


def _combined_errors(errors: pd.DataFrame, weigh: _Weighers, sizes: pd.Series) -> pd.DataFrame:
    """The fold errors of the weighted forecast itself: one row per (fold, held-out run), the run
    weighed as a target of its size would be (``sizes``: run_id -> n_params)."""
    if errors.empty:
        return pd.DataFrame(columns=["fold", "run_id", "err", "distance", "level"])
    rows = []
    for (fold, run_id), g in errors.groupby(["fold", "run_id"], sort=False):
        preds = {m: np.array([v]) for m, v in zip(g["member"], g["pred"], strict=True)}
        size = np.array([float(sizes.get(str(run_id), math.nan))])
        comb = float(weigh.combine(preds, size)[0][0])
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


def _spread(
    preds: Mapping[str, np.ndarray], center: np.ndarray, alike: Sequence[frozenset[str]]
) -> np.ndarray:
    """Per row, the largest |log(pred / forecast)| of the members that score alike there (module doc,
    step 3)."""
    out = np.zeros_like(center)
    for i, names in enumerate(alike):
        gaps = [abs(math.log(preds[m][i] / center[i])) for m in names if preds[m][i] > 0 and center[i] > 0]
        out[i] = max(gaps, default=0.0)
    return out


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


def _weighing_folds(folds: Sequence[Fold], question: str) -> list[str]:
    """The folds the weights are computed on (module doc, step 3): a branch question's anneal folds
    when there are ``MIN_COMMON`` of them, else every fold."""
    anneal = [f.name for f in folds if f.anneal]
    if question == "branch" and len(anneal) >= MIN_COMMON:
        return anneal
    return [f.name for f in folds]


@dataclass(frozen=True)
class _Task:
    """One member fitted to one training set (steps 1-2): a fold's, predicting its held-out rows, or
    (``fold`` None) the whole ``data``'s, predicting the ``targets``."""

    member: Member
    fold: Fold | None = None
    data: Curves | pd.DataFrame | None = None
    targets: Curves | pd.DataFrame | None = None


@dataclass(frozen=True)
class _Outcome:
    """What a ``_Task`` returns to the forecast (small, so that a parallel map ships it cheaply)."""

    pred: np.ndarray | None = None  # a fold's: the loss at each truth row
    frame: pd.DataFrame | None = None  # the whole data's: the targets' key columns and loss_pred
    notes: tuple[str, ...] = ()  # the fit's FitWarnings (``Fitted.warnings``)
    caught: tuple[tuple[type[Warning], str], ...] = ()  # other warnings raised in the task, re-emitted
    failure: str | None = None  # why the member could not be fitted or could not answer


def _run(task: _Task) -> _Outcome:
    """Fit ``task.member`` and predict what the task asks; a ``ScalefitError`` becomes its failure.

    Warnings raised here are returned, not emitted, and the forecast re-emits them in its own process:
    the same under the built-in ``map`` and under a process pool's."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        outcome = _answer(task)
    return replace(outcome, caught=tuple((w.category, str(w.message)) for w in caught))


def _answer(task: _Task) -> _Outcome:
    train = task.data if task.fold is None else task.fold.train
    fitted, why = _fit(task.member, train)
    if fitted is None:
        return _Outcome(failure=why)
    if task.fold is None:
        return _Outcome(frame=fitted.frame(task.targets), notes=tuple(fitted.warnings))
    try:
        return _Outcome(pred=fitted.at(task.fold.targets, task.fold.truth))
    except ScalefitError as err:
        return _Outcome(failure=str(err))


def _fold_errors(
    folds: Sequence[Fold], members: Sequence[Member], loss: str, outcomes: Sequence[_Outcome]
) -> tuple[pd.DataFrame, dict[str, dict[str, str]]]:
    """The error rows and the failures of every member refitted on every fold (``outcomes`` in the
    order fold by fold, member by member)."""
    rows, failures = [], {}
    done = iter(outcomes)
    for fold in folds:
        truth = fold.truth[loss].to_numpy(float)
        for member in members:
            outcome = next(done)
            pred = np.full(len(truth), np.nan) if outcome.pred is None else outcome.pred
            if outcome.failure is not None:
                failures.setdefault(member.name, {})[fold.name] = outcome.failure
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
    map_fn: ParallelMap | None = None,
) -> Forecast:
    """Fit every applicable law to ``data``, score each by folds that mimic the question the
    ``targets`` ask, combine them by those scores and band the result at ``level`` (module doc).

    ``data``: the fitted runs (Curves, or a static table); ``targets``: what ``Fit.predict`` takes
    (Curves with the LR and no loss, e.g. ``target_curves``; a table of N and D). ``laws``: names or
    ``Law`` objects (default: every applicable law; static laws with other column names are passed as
    objects, e.g. ``ChinchillaLaw(loss="val_loss", n="params", d="tokens")``). ``map_fn(fn, tasks)``:
    how the fits (every member on the whole data, then on every fold) are run, results in order:
    the built-in ``map`` (default), or a parallel one, e.g. ``ProcessPoolExecutor(4).map`` or the
    runner's ``ray_map``; the forecast is the same either way (each fit is seeded and single-threaded).
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
        also = extrapolates(data, targets)
        members, split = _per_size(_members(data, laws, also), data, also)
        if split:
            notes.append(
                "the runs span several model sizes: each size-blind law is fitted per size, on that "
                "size's runs alone, and answers the targets of its size"
            )
        folds = curve_folds(data, question, also)
    else:
        members = _members(data, laws, ("compute",))
        split = False
        first = next((m.law for m in members if isinstance(m, LawMember)), None)
        if first is None:
            raise ConfigError(
                "a static forecast needs a static law", field="laws", fix="e.g. laws=['chinchilla']"
            )
        compute = (_table_compute(first, data), _table_compute(first, targets))
        question = table_question(*compute)
        folds = table_folds(data, compute[0])
    loss = "loss" if curves else str(getattr(first, "loss", "loss"))
    # the fits on all the runs first: the largest, so a parallel map does not end on one of them alone
    tasks = [_Task(m, data=data, targets=targets) for m in members]
    tasks += [_Task(m, fold=f) for f in folds for m in members]
    outcomes = list((map if map_fn is None else map_fn)(_run, tasks))
    if len(outcomes) != len(tasks):
        raise ConfigError(
            "map_fn returned a different number of results than tasks",
            field="map_fn",
            value=f"{len(outcomes)} of {len(tasks)}",
            fix="give a map that returns one result per item, in order (e.g. ProcessPoolExecutor.map)",
        )
    for outcome in outcomes:
        for category, message in outcome.caught:
            warnings.warn(message, category, stacklevel=2)
    errors, failures = _fold_errors(folds, members, loss, outcomes[len(members) :])
    scores = _by_fold(errors, members, folds, np.abs)
    floor = None if curves else _distance_floor(folds)
    scores_sq = _by_fold(_normalised(errors, floor), members, folds, np.square)
    full: dict[str, pd.DataFrame] = {}
    warned: dict[str, tuple[str, ...]] = {}
    for member, outcome in zip(members, outcomes[: len(members)], strict=True):
        if outcome.frame is None:
            failures.setdefault(member.name, {})["all"] = str(outcome.failure)
            continue
        full[member.name] = outcome.frame
        warned[member.name] = outcome.notes
    if not full:
        raise DataError(
            "no law could be fitted to the runs",
            value="; ".join(f"{m}: {v.get('all')}" for m, v in failures.items()),
            fix="give more runs (with an LR decay for curve laws) or other laws",
        )
    eligible = frozenset(full) - _disqualified(failures, len(folds))
    weighing = _weighing_folds(folds, question)
    sizes = run_sizes(data) if split else pd.Series(dtype=float)  # weighed per size (module doc, step 3)
    prefer = PREFERENCE if curves else ()
    weigh = _weighers(scores_sq, folds, weighing, eligible or frozenset(full), prefer, sizes)
    keys, member_preds = _align(full)
    row_sizes = run_sizes(targets) if split else pd.Series(dtype=float)
    center, used, alike = weigh.combine(
        member_preds, row_sizes.reindex(keys["run_id"].astype(str)).to_numpy(float)
    )
    weights, weight_sets = _summary_weights(keys, used, [m.name for m in members])
    for name, w in weights.items():
        if w > 0:
            notes.extend(warned.get(name, ()))  # each starts with its law's name
    cv = _combined_errors(errors, weigh, sizes)
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
    if identified and not curves:
        q = _table_row_q(_normalised(cv, floor), band, level, row_distance, floor) * factor
    else:
        q = band["q"] * factor if identified else np.full(len(keys), math.log1p(UNIDENTIFIED))
    if not identified:
        notes.append(
            f"the runs cannot identify the answer: {band['n_errors']} fold error(s) "
            f"(at least {MIN_ERRORS} needed); the band is at least +-{UNIDENTIFIED:.0%}"
        )
    spread = _spread(member_preds, center, alike)
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
        {"name": f.name, "kind": f.kind, "distance": f.distance, "n_truth": len(f.truth)}
        | {"anneal": f.anneal, "weighs": f.name in weighing}
        for f in folds
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
        weight_sets=weight_sets,
    )
