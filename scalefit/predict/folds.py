"""Cross-validation folds that mimic the question a forecast is asked, built from the fitted runs only.

The question is read off the targets against the fitted data (``question_of``):

- ``"horizon"``: a target runs more than ``HORIZON_SLACK`` times longer than the longest fitted run;
- ``"size"``: a target model is larger than every fitted one (by more than ``SIZE_SLACK``); a target
  that is both larger and longer asks both (``extrapolates``), its question is ``"horizon"``;
- ``"branch"``: otherwise, when every target branches off a fitted run (``branches``): its LR equals
  that run's over at least ``BRANCH_SHARE`` of its steps and then differs, at a step where that run's
  loss is observed (a cooldown branch off a constant-LR trunk);
- ``"schedule"``: otherwise (another schedule within the fitted horizons and sizes);
- ``"compute"``: static targets (a table) beyond the largest fitted compute.

Folds of curves (``curve_folds``), each a training set and held-out truths (the final loss of a run):

- ``loo:<run>``: every other run fitted, the run's final predicted (runs with distinct schedules);
- ``trunc:<run>``: every other run fitted in full and the run up to ``TRUNCATE`` of its last step
  (its anneal, if any, left out), its final predicted; ``anneal`` when the LR of the part left out
  falls below ``ANNEAL`` of the LR at the cut (the fold then asks what a branch asks: the anneal of a
  run whose start is observed);
- ``horizon``: runs longer than the second-longest horizon held out, their logged prefixes up to it
  kept (as a trunk is observed while its branches are not), their finals predicted;
- ``size``: the runs of the largest model held out, their finals predicted (three sizes or more).

Which folds score a forecast: those of its question when there are any (``horizon``, ``size``), then
``loo`` and ``trunc`` (targets mix questions: another schedule of a longer horizon is both). Folds of tables
(``table_folds``): ``compute:<k>``: every point below the k-th largest compute level fitted and every
point at that level or above predicted, for the ``TABLE_FOLDS`` largest levels (levels: log10 compute
rounded to ``LEVEL_DECADES``), so that the folds extrapolate one, two and three levels. Each fold
records its extrapolation ``distance``: log of the held-out horizon, size or compute over the largest
fitted one (0 for schedule folds; for tables that of its nearest held-out level), and a table fold
each held-out row's own (``row_distance``: log of its compute over the largest fitted compute) and
level (``row_level``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from scalefit.conventions import run_labels
from scalefit.store.curves import Curves

__all__ = [
    "ANNEAL",
    "BRANCH_SHARE",
    "HORIZON_SLACK",
    "LEVEL_DECADES",
    "SIZE_SLACK",
    "TABLE_FOLDS",
    "TRUNCATE",
    "Fold",
    "branches",
    "curve_folds",
    "extrapolates",
    "question_of",
    "run_sizes",
    "table_folds",
    "table_question",
]

HORIZON_SLACK = 1.2  # a target this many times longer than the longest fitted run is a horizon question
BRANCH_SHARE = 0.1  # a target branches off a fitted run when their LRs agree over this share of its steps
ANNEAL = 0.8  # a trunc fold is an anneal fold when the LR left out falls below this share of the cut's
SIZE_SLACK = 1.02  # a target model this much larger than the largest fitted one is a size question
TRUNCATE = 0.6  # a trunc fold keeps a run's steps below this fraction of its last step
TABLE_FOLDS = 3  # compute levels held out (the largest ones), one fold each
LEVEL_DECADES = 0.25  # width of a compute level in decades of FLOPs


@dataclass(frozen=True)
class Fold:
    """One fold: the data to fit and the rows whose truth is predicted.

    ``truth``: run_id, ``step`` and ``loss`` (the held-out final loss) for curves; for tables the
    held-out rows themselves. ``targets``: the data to predict (Curves of the held-out runs up to
    their final step with the loss hidden, predicted at ``truth``'s step; the held-out table rows).
    """

    name: str
    kind: str  # "loo", "trunc", "horizon", "size" or "compute"
    train: Curves | pd.DataFrame
    targets: Curves | pd.DataFrame
    truth: pd.DataFrame
    distance: float
    row_distance: tuple[float, ...] = ()  # tables: per truth row; curves: empty (``distance`` for all)
    row_level: tuple[float, ...] = ()  # tables: each truth row's compute level (log10 FLOPs, rounded)
    anneal: bool = False  # a trunc fold whose held-out part has an LR decay (module doc)


def _last_steps(curves: Curves) -> pd.Series:
    frame = curves.frame
    return frame[frame["finite"]].groupby("run_id")["step"].max()


def run_sizes(curves: Curves) -> pd.Series:
    """run_id -> model size (``n_params``), NaN where the runs table does not give one."""
    if "n_params" not in curves.runs.columns:
        return pd.Series(np.nan, index=curves.runs.index, dtype=float)
    return pd.to_numeric(curves.runs["n_params"], errors="coerce").astype(float)


def _sizes(curves: Curves) -> pd.Series:
    return run_sizes(curves).dropna()


def _target_last(targets: Curves) -> pd.Series:
    return targets.frame.groupby("run_id")["step"].max()


def extrapolates(train: Curves, targets: Curves) -> tuple[str, ...]:
    """What the targets extrapolate beyond the fitted runs: "horizon" and/or "size" (module doc)."""
    out = []
    if float(_target_last(targets).max()) > HORIZON_SLACK * float(_last_steps(train).max()):
        out.append("horizon")
    sizes, target_sizes = _sizes(train), _sizes(targets)
    if len(sizes) and len(target_sizes) and float(target_sizes.max()) > SIZE_SLACK * float(sizes.max()):
        out.append("size")
    return tuple(out)


def _agree(a: np.ndarray, b: np.ndarray) -> int:
    """The number of leading steps at which two dense LR sequences agree (to 1e-9 of their peak)."""
    n = min(a.size, b.size)
    scale = max(float(np.max(np.abs(a[:n]), initial=0.0)), 1e-300)
    differ = np.flatnonzero(np.abs(a[:n] - b[:n]) > 1e-9 * scale)
    return int(differ[0]) if differ.size else n


def branches(train: Curves, targets: Curves) -> dict[str, str | None]:
    """Target run -> the fitted run it branches off (module doc, ``"branch"``), or None."""
    observed = _last_steps(train)
    fitted = {r: train.lr_sequence(r, int(observed[r]) + 1) for r in observed.index}
    out: dict[str, str | None] = {}
    for run_id, last in _target_last(targets).items():
        lr = targets.lr_sequence(run_id, int(last) + 1)
        out[str(run_id)] = None
        for r, own in fitted.items():
            shared = _agree(lr, own)
            if BRANCH_SHARE * lr.size <= shared < min(lr.size, own.size):
                out[str(run_id)] = str(r)
                break
    return out


def question_of(train: Curves, targets: Curves) -> str:
    """ "horizon", "size", "branch" or "schedule" (module doc): a larger model trained longer is a
    horizon question whose folds also hold the largest size out (``extrapolates``)."""
    also = extrapolates(train, targets)
    if also:
        return also[0]
    return "branch" if all(v is not None for v in branches(train, targets).values()) else "schedule"


def _final_truth(curves: Curves, run_ids: Sequence[str]) -> pd.DataFrame:
    final = curves.final()
    final = final[final["run_id"].isin(list(run_ids))]
    return final[["run_id", "step", "loss"]].reset_index(drop=True)


def _predict_targets(curves: Curves, run_ids: Sequence[str]) -> Curves:
    """The held-out runs' rows up to their final finite step with the loss hidden: every row gives the
    LR; the forecast predicts at the final step only (``build_design(..., at=)``)."""
    last = _last_steps(curves)
    return curves.truncate({r: int(last[r]) + 1 for r in run_ids}).without_loss()


def _schedule_key(curves: Curves, run_id: str) -> str:
    runs = curves.runs
    if "schedule" in runs.columns and isinstance(runs.at[run_id, "schedule"], str):
        return str(runs.at[run_id, "schedule"])
    lr = curves.run(run_id).lr
    return run_id if not np.isfinite(lr).any() else repr(np.round(lr[np.isfinite(lr)][::50], 12).tolist())


def _loo(train: Curves) -> list[Fold]:
    ids = train.run_ids
    keys = {r: _schedule_key(train, r) for r in ids}
    distinct = [r for r in ids if sum(k == keys[r] for k in keys.values()) == 1]
    if len(ids) < 2:
        return []
    return [
        Fold(
            name=f"loo:{r}",
            kind="loo",
            train=train.select([x for x in ids if x != r]),
            targets=_predict_targets(train, [r]),
            truth=_final_truth(train, [r]),
            distance=0.0,
        )
        for r in distinct
    ]


def _trunc(train: Curves) -> list[Fold]:
    last = _last_steps(train)
    out = []
    for r in train.run_ids:
        stop = int(math.floor(TRUNCATE * int(last[r])))
        cut: dict[str, int | None] = {x: None for x in train.run_ids}
        cut[r] = stop
        kept = train.truncate(cut)
        if r not in kept.run_ids or int(_last_steps(kept.select([r])).max()) < 1:
            continue
        lr = train.lr_sequence(r, int(last[r]) + 1)
        out.append(
            Fold(
                name=f"trunc:{r}",
                kind="trunc",
                train=kept,
                targets=_predict_targets(train, [r]),
                truth=_final_truth(train, [r]),
                distance=math.log(int(last[r]) / max(stop, 1)),
                anneal=bool(np.min(lr[stop:]) < ANNEAL * lr[stop]) if stop < lr.size else False,
            )
        )
    return out


def _horizon(train: Curves) -> list[Fold]:
    last = _last_steps(train)
    horizons = np.unique(last.to_numpy())
    if horizons.size < 2 or horizons[-1] < HORIZON_SLACK * horizons[-2]:
        return []
    cut_at = int(horizons[-2])
    held = [r for r in train.run_ids if last[r] > cut_at]
    cut: dict[str, int | None] = {r: (cut_at + 1 if r in held else None) for r in train.run_ids}
    return [
        Fold(
            name="horizon",
            kind="horizon",
            train=train.truncate(cut),
            targets=_predict_targets(train, held),
            truth=_final_truth(train, held),
            distance=math.log(float(horizons[-1]) / cut_at),
        )
    ]


def _size(train: Curves) -> list[Fold]:
    sizes = _sizes(train)
    levels = np.unique(sizes.to_numpy())
    if levels.size < 3:
        return []
    held = [r for r in sizes.index if sizes[r] == levels[-1]]
    rest = [r for r in train.run_ids if r not in held]
    return [
        Fold(
            name="size",
            kind="size",
            train=train.select(rest),
            targets=_predict_targets(train, held),
            truth=_final_truth(train, held),
            distance=math.log(float(levels[-1] / levels[-2])),
        )
    ]


def curve_folds(train: Curves, question: str, also: Sequence[str] = ()) -> list[Fold]:
    """The folds that score a curve forecast of ``question`` and of what else the targets
    extrapolate (``also``: "horizon", "size"; module doc)."""
    asked = {question, *also}
    special = (_horizon(train) if "horizon" in asked else []) + (_size(train) if "size" in asked else [])
    return special + _loo(train) + _trunc(train)


def _levels(compute: np.ndarray) -> np.ndarray:
    return np.round(np.log10(compute) / LEVEL_DECADES) * LEVEL_DECADES


def table_question(compute: np.ndarray, target_compute: np.ndarray) -> str:
    """ "compute" when a target lies beyond the largest fitted compute level, else "interpolate"."""
    return (
        "compute"
        if float(np.max(_levels(target_compute))) > float(np.max(_levels(compute)))
        else "interpolate"
    )


def table_folds(table: pd.DataFrame, compute: np.ndarray) -> list[Fold]:
    """Leave-the-largest-compute-out folds of a static table (module doc); ``compute`` per row."""
    levels = _levels(compute)
    distinct = np.unique(levels)
    out = []
    for k in range(1, min(TABLE_FOLDS, distinct.size - 2) + 1):
        level = distinct[-k]
        fit_rows = levels < level
        held_rows = levels >= level
        held = table[held_rows].reset_index(drop=True)
        truth = held.assign(run_id=run_labels(held))
        largest = float(np.max(compute[fit_rows]))
        out.append(
            Fold(
                name=f"compute:{k}",
                kind="compute",
                train=table[fit_rows].reset_index(drop=True),
                targets=held,
                truth=truth,
                distance=float((level - levels[fit_rows].max()) * math.log(10.0)),
                row_distance=tuple(float(v) for v in np.log(compute[held_rows] / largest)),
                row_level=tuple(float(v) for v in levels[held_rows]),
            )
        )
    return out
