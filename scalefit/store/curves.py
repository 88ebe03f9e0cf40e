"""`Curves`: an immutable, validated set of complete loss curves plus a per-run table.

Conventions: ``step`` counts 0-indexed optimizer updates; ``lr`` is the learning rate the optimizer
used for the update at that step; ``loss`` is the loss logged at that step (nats per token). Rows are
sorted by (run_id, step); a duplicated step keeps the row that came last (a resumed run's last attempt).

Missing values: a NaN ``loss`` means *not observed* at that step (a row that logged only the LR, or an
eval step), never a divergence; a NaN ``lr`` means the LR was not logged there. Such rows are kept and
flagged ``finite=False`` (no observed finite loss). A run is ``diverged`` when its runs table says so (what
the trainer recorded) or an observed loss is infinite (+-inf); nothing else marks a divergence.

The dense LR of a run (``lr_sequence``) comes from its schedule when one is known, else from the logged LR:
exact where every step is logged, else rebuilt piecewise-linearly between the logged LR points
(``rebuild_lr``: linear between neighbours, extended linearly at both ends, never below 0).

    curves = Curves.from_frame(df, runs=runs_table)
    curves.final()                      # last finite row of each run + its runs-table columns
    curves.lr_sequence("cosine_24000")  # dense LR at steps 0..n-1
    curves.truncate({"cosine_24000": 12000, "constant_24000": None})  # the first 12k steps, one whole
    curves.without_loss()               # the same rows, loss not observed: targets to predict
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from scalefit.errors import ConfigError, DataError, ScheduleError
from scalefit.schedules import Schedule, parse
from scalefit.store.schema import CURVE_COLUMNS, EVAL_COLUMNS, RUN_COLUMNS

__all__ = ["Curves", "RunCurve", "RUN_LEVEL_COLUMNS", "STEP_COLUMNS", "rebuild_lr", "concat_curves"]

REQUIRED = ("run_id", "step", "lr", "loss")
# The store's tables name the loss ``train_loss``; here it is ``loss`` (a curve may be an eval loss).
STEP_COLUMNS = tuple(c for c in CURVE_COLUMNS if c not in ("run_id", "step", "lr", "train_loss"))
RUN_LEVEL_COLUMNS = tuple(c for c in RUN_COLUMNS if c != "run_id")


@dataclass(frozen=True)
class RunCurve:
    """One run: arrays over its logged steps, its runs-table row as ``meta``, its schedule if known."""

    run_id: str
    steps: np.ndarray
    lr: np.ndarray
    loss: np.ndarray
    finite: np.ndarray
    meta: Mapping[str, Any] = field(default_factory=dict)
    schedule: Schedule | None = None
    evals: pd.DataFrame | None = None


def _numeric(df: pd.DataFrame, col: str, source: str | None, *, integer: bool = False) -> pd.Series:
    """Column ``col`` as float64 (or int64); non-numeric entries raise DataError naming run and column."""
    raw = df[col]
    values = pd.to_numeric(raw, errors="coerce").astype("float64")
    bad = values.isna() & raw.notna() & ~raw.astype(str).str.strip().str.lower().isin(["nan", "-nan"])
    if integer:
        bad |= ~(values.notna() & np.isfinite(values) & (values == np.round(values)) & (values >= 0))
    if bool(bad.any()):
        row = df.loc[bad].iloc[0]
        message = "steps must be integers >= 0" if integer else "non-numeric value"
        raise DataError(
            message,
            file=source,
            run_id=str(row.get("run_id")),
            column=col,
            value=row[col],
            fix=f"fix column {col!r}",
        )
    return values.astype("int64") if integer else values


def _clean_steps(df: pd.DataFrame, source: str | None) -> pd.DataFrame:
    """Typed, sorted by (run_id, step), duplicates keep the last row in input order."""
    for col in REQUIRED:
        if col not in df.columns:
            raise DataError("missing column", file=source, column=col, fix=f"have {list(df.columns)}")
    if df["run_id"].isna().any():
        raise DataError("missing run_id", file=source, column="run_id", fix="give every row a run id")
    df = df.copy()
    df["run_id"] = df["run_id"].astype(str)
    df["step"] = _numeric(df, "step", source, integer=True)
    df["loss"] = _numeric(df, "loss", source)
    for col in ("lr", *[c for c in STEP_COLUMNS if c in df.columns]):
        df[col] = _numeric(df, col, source)
    df = df.drop(columns=[c for c in ("finite",) if c in df.columns])
    df = df.drop_duplicates(["run_id", "step"], keep="last")
    df = df.sort_values(["run_id", "step"], kind="stable").reset_index(drop=True)
    df["finite"] = np.isfinite(df["loss"].to_numpy())
    order = [*REQUIRED, "finite"]
    return df[order + [c for c in df.columns if c not in order]]


def _fill_lr(df: pd.DataFrame, scheds: Mapping[str, Schedule | None], source: str | None) -> pd.DataFrame:
    """Fill LRs that were not logged from the run's schedule (where known); a negative or infinite LR raises.

    Without a schedule a missing LR stays NaN (not logged): `Curves.lr_sequence` rebuilds it.
    """
    lr = df["lr"].to_numpy(copy=True)
    for run_id in pd.unique(df.loc[np.isnan(lr), "run_id"]):
        if scheds.get(run_id) is None:
            continue
        mask = (df["run_id"] == run_id).to_numpy() & np.isnan(lr)
        lr[mask] = scheds[run_id](df.loc[mask, "step"].to_numpy())
    bad = np.isinf(lr) | (lr < 0)
    if bad.any():
        row = df.loc[bad].iloc[0]
        raise DataError(
            "learning rate must be finite and >= 0",
            file=source,
            run_id=row["run_id"],
            column="lr",
            value=float(lr[bad][0]),
            fix="fix the LR or the schedule",
        )
    return df.assign(lr=lr)


def rebuild_lr(steps: np.ndarray, lr: np.ndarray, n: int) -> np.ndarray:
    """The LR at steps ``0..n-1`` from LR values logged at ``steps`` (sorted, unique, finite values).

    Linear between logged neighbours; before the first and after the last logged step the line through
    the two nearest points is continued (a warmup from 0 or a decay to 0 extends exactly), clipped at 0.
    One logged point gives a constant LR.
    """
    steps, lr = np.asarray(steps, dtype=float), np.asarray(lr, dtype=float)
    grid = np.arange(int(n), dtype=float)
    out = np.interp(grid, steps, lr)
    if steps.size >= 2:
        for side, (a, b) in (("lo", (0, 1)), ("hi", (-2, -1))):
            sel = grid < steps[0] if side == "lo" else grid > steps[-1]
            slope = (lr[b] - lr[a]) / (steps[b] - steps[a])
            out[sel] = lr[a] + slope * (grid[sel] - steps[a])
    return np.maximum(out, 0.0)


def _parse_schedules(
    runs: pd.DataFrame, last_step: pd.Series, source: str | None
) -> dict[str, Schedule | None]:
    """{run_id: Schedule or None}; a schedule must cover every logged step (step <= total_steps)."""
    if "schedule" not in runs.columns:
        return {}
    out = {}
    for run_id, text in runs["schedule"].items():
        try:
            out[run_id] = None if _blank(text) else parse(str(text))
        except ScheduleError as exc:
            raise ScheduleError(
                exc.message,
                file=source,
                run_id=run_id,
                column="schedule",
                field=exc.field,
                value=exc.value,
                fix=exc.fix,
            ) from exc
        if out[run_id] is not None and last_step[run_id] > out[run_id].total_steps:
            raise DataError(
                f"steps logged past the schedule's end ({out[run_id].total_steps})",
                file=source,
                run_id=run_id,
                column="step",
                value=int(last_step[run_id]),
                fix="give the schedule the run's real length (total_steps)",
            )
    return out


def _split_run_columns(df: pd.DataFrame, source: str | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Move known run-level columns out of the per-step rows; each must be constant within its run."""
    cols = [c for c in df.columns if c in RUN_LEVEL_COLUMNS]
    groups = df.groupby("run_id", sort=True)
    for col in cols:
        varying = groups[col].nunique(dropna=False) > 1
        if bool(varying.any()):
            raise DataError(
                "run-level column varies within a run",
                file=source,
                column=col,
                run_id=str(varying.idxmax()),
                fix="give one value per run",
            )
    moved = groups[cols].first() if cols else pd.DataFrame(index=pd.Index(sorted(pd.unique(df["run_id"]))))
    moved.index = moved.index.astype(str).rename("run_id")
    return df.drop(columns=cols), moved


def _build_runs(
    run_ids: list[str], moved: pd.DataFrame, runs: pd.DataFrame | None, source: str | None
) -> pd.DataFrame:
    table = pd.DataFrame(index=pd.Index(run_ids, dtype=str, name="run_id"))
    if runs is not None:
        given = runs.copy()
        if "run_id" in given.columns:
            given = given.set_index("run_id")
        given.index = given.index.astype(str).rename("run_id")
        if given.index.duplicated().any():
            dup = str(given.index[given.index.duplicated()][0])
            raise DataError("duplicate run in runs table", file=source, run_id=dup, column="run_id")
        extra = sorted(set(given.index) - set(run_ids))
        if extra:
            raise DataError(
                "run in the runs table has no curve rows",
                file=source,
                run_id=extra[0],
                column="run_id",
                fix="add its rows or drop it",
            )
        table = table.join(given)
    for col in moved.columns:
        table[col] = moved[col] if col not in table.columns else table[col].fillna(moved[col])
    if "schedule" in table.columns:
        table["schedule"] = [None if _blank(s) else str(s) for s in table["schedule"]]
    return table


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA or value == ""


def _clean_evals(evals: pd.DataFrame | None, run_ids: list[str], source: str | None) -> pd.DataFrame | None:
    if evals is None:
        return None
    for col in EVAL_COLUMNS:
        if col not in evals.columns:
            raise DataError("missing eval column", file=source, column=col, fix=f"give {list(EVAL_COLUMNS)}")
    ev = evals.copy()
    ev["run_id"] = ev["run_id"].astype(str)
    ev["dataset"] = ev["dataset"].astype(str)
    ev["step"] = _numeric(ev, "step", source, integer=True)
    ev["eval_loss"] = _numeric(ev, "eval_loss", source)
    unknown = sorted(set(ev["run_id"]) - set(run_ids))
    if unknown:
        raise DataError("eval rows for an unknown run", file=source, run_id=unknown[0], column="run_id")
    ev = ev.drop_duplicates(["run_id", "dataset", "step"], keep="last")
    return ev.sort_values(["run_id", "dataset", "step"], kind="stable").reset_index(drop=True)


class Curves:
    """Immutable validated loss curves. Build with `Curves.from_frame`; every accessor returns a copy."""

    def __init__(
        self,
        frame: pd.DataFrame,
        runs: pd.DataFrame,
        evals: pd.DataFrame | None,
        source: str | None,
        schedules: Mapping[str, Schedule | None] | None = None,
    ):
        self._frame, self._runs, self._evals, self.source = frame, runs, evals, source
        ids = frame["run_id"].to_numpy()
        starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]]) if len(ids) else np.array([], int)
        ends = np.r_[starts[1:], len(ids)]
        self._slices = {str(ids[a]): slice(int(a), int(b)) for a, b in zip(starts, ends, strict=True)}
        self._schedules = dict(schedules or {})

    @classmethod
    def from_frame(
        cls,
        df: pd.DataFrame,
        *,
        runs: pd.DataFrame | None = None,
        evals: pd.DataFrame | None = None,
        source: str | None = None,
    ) -> Curves:
        """Validate per-step rows (run_id, step, lr, loss, ...) into `Curves`. See the module docstring."""
        if not isinstance(df, pd.DataFrame):
            raise DataError("expected a pandas DataFrame", file=source, value=type(df).__name__)
        frame = _clean_steps(df, source)
        frame, moved = _split_run_columns(frame, source)
        run_ids = sorted(pd.unique(frame["run_id"]).tolist())
        table = _build_runs(run_ids, moved, runs, source)
        scheds = _parse_schedules(table, frame.groupby("run_id")["step"].max(), source)
        frame = _fill_lr(frame, scheds, source)
        status = table["status"] if "status" in table.columns else pd.Series("ok", index=table.index)
        status = status.fillna("ok").astype(str)
        diverged = frame.assign(inf=np.isinf(frame["loss"].to_numpy())).groupby("run_id")["inf"].any()
        fixable = diverged & status.isin(["ok", "running"])
        table["status"] = status.where(~fixable.reindex(table.index, fill_value=False), "diverged")
        return cls(frame, table, _clean_evals(evals, run_ids, source), source, scheds)

    @property
    def frame(self) -> pd.DataFrame:
        return self._frame.copy(deep=False)

    @property
    def runs(self) -> pd.DataFrame:
        return self._runs.copy(deep=False)

    @property
    def evals(self) -> pd.DataFrame | None:
        return None if self._evals is None else self._evals.copy(deep=False)

    @property
    def run_ids(self) -> list[str]:
        return list(self._runs.index)

    def __len__(self) -> int:
        return len(self._runs)

    def __iter__(self) -> Iterator[RunCurve]:
        return (self.run(r) for r in self.run_ids)

    def __repr__(self) -> str:
        return f"Curves({len(self)} runs, {len(self._frame)} rows)"

    def _check_ids(self, ids: Iterable[str]) -> list[str]:
        ids = [str(i) for i in ids]
        for run_id in ids:
            if run_id not in self._runs.index:
                raise DataError("unknown run", file=self.source, run_id=run_id, fix=f"one of {self.run_ids}")
        return ids

    def truncate(self, stops: Mapping[str, int | None]) -> Curves:
        """The runs named in ``stops``, each kept at its steps below its stop (None: whole run), evals
        alike; a run left with no row is dropped. The rows are already validated: nothing is re-read."""
        ids = self._check_ids(stops)
        run_ids, steps = self._frame["run_id"].to_numpy(), self._frame["step"].to_numpy()
        keep = np.zeros(len(self._frame), dtype=bool)
        for run_id in ids:
            rows = run_ids == run_id
            stop = stops[run_id]
            keep |= rows if stop is None else rows & (steps < stop)
        frame = self._frame[keep].reset_index(drop=True)
        kept = sorted(pd.unique(frame["run_id"]).tolist())
        evals = None
        if self._evals is not None:
            ev = self._evals
            cap = ev["run_id"].map({r: np.inf if s is None else s for r, s in stops.items()})
            evals = ev[ev["run_id"].isin(kept) & (ev["step"] < cap)].reset_index(drop=True)
        scheds = {k: v for k, v in self._schedules.items() if k in set(kept)}
        return Curves(frame, self._runs.loc[kept], evals, self.source, scheds)

    def without_loss(self) -> Curves:
        """The same runs and rows with the loss not observed (NaN) and no evals: targets to predict."""
        frame = self._frame.assign(loss=np.nan, finite=False)
        return Curves(frame, self._runs, None, self.source, self._schedules)

    def select(self, run_ids: Iterable[str] | None = None, **run_attrs: Any) -> Curves:
        """Runs in ``run_ids`` whose runs-table columns equal ``run_attrs`` (a list/set means 'one of')."""
        keep = pd.Series(True, index=self._runs.index)
        if run_ids is not None:
            keep &= keep.index.isin(self._check_ids([run_ids] if isinstance(run_ids, str) else run_ids))
        for col, want in run_attrs.items():
            if col not in self._runs.columns:
                raise DataError(
                    "unknown runs-table column",
                    file=self.source,
                    column=col,
                    fix=f"use one of {list(self._runs.columns)}",
                )
            values = self._runs[col]
            keep &= values.isin(list(want)) if isinstance(want, list | tuple | set) else values == want
        ids = list(keep.index[keep.to_numpy()])
        frame = self._frame[self._frame["run_id"].isin(ids)].reset_index(drop=True)
        evals = None if self._evals is None else self._evals[self._evals["run_id"].isin(ids)]
        evals = None if evals is None else evals.reset_index(drop=True)
        scheds = {k: v for k, v in self._schedules.items() if k in set(ids)}
        return Curves(frame, self._runs.loc[ids], evals, self.source, scheds)

    def split(self, train_ids: Iterable[str]) -> tuple[Curves, Curves]:
        """(the runs in ``train_ids``, all other runs)."""
        train = set(self._check_ids([train_ids] if isinstance(train_ids, str) else train_ids))
        return self.select(sorted(train)), self.select([r for r in self.run_ids if r not in train])

    def final(self) -> pd.DataFrame:
        """The last finite row of each run joined with its runs-table columns (one row per run)."""
        rows = self._frame[self._frame["finite"]].groupby("run_id", sort=True).tail(1)
        return rows.merge(self._runs, left_on="run_id", right_index=True, how="left").reset_index(drop=True)

    def run(self, run_id: str) -> RunCurve:
        """One run's arrays, runs-table row and parsed schedule."""
        (run_id,) = self._check_ids([run_id])
        rows = self._frame.iloc[self._slices[run_id]]
        meta = {k: v for k, v in self._runs.loc[run_id].items() if not _blank(v)}
        evals = None if self._evals is None else self._evals[self._evals["run_id"] == run_id]
        evals = None if evals is None else evals.reset_index(drop=True)
        return RunCurve(
            run_id,
            rows["step"].to_numpy(),
            rows["lr"].to_numpy(),
            rows["loss"].to_numpy(),
            rows["finite"].to_numpy(),
            meta,
            self._schedules.get(run_id),
            evals,
        )

    def lr_sequence(self, run_id: str, n: int | None = None) -> np.ndarray:
        """Dense LR at steps 0..n-1 (default: up to the last logged step): from the run's schedule, else from
        the logged LR, exact where every step is logged, else rebuilt between the logged points
        (`rebuild_lr`). A run with no LR logged and no schedule raises `DataError`."""
        if n is not None and (isinstance(n, bool) or int(n) != n or n < 0):
            raise ConfigError("n must be an integer >= 0", field="n", value=n, fix="the number of steps")
        rc = self.run(run_id)
        if rc.schedule is not None:
            return np.asarray(rc.schedule.lrs(n), dtype=float)
        known = np.isfinite(rc.lr)
        steps, lr = rc.steps[known], rc.lr[known]
        if steps.size == 0:
            raise DataError(
                "no LR logged and no schedule",
                file=self.source,
                run_id=run_id,
                column="lr",
                fix="import the run with its LR (--lr COLUMN or --lr-tag TAG) or its schedule (--schedule)",
            )
        n = int(rc.steps.max()) + 1 if n is None else int(n)
        if n <= steps.size and np.array_equal(steps[:n], np.arange(n)):
            return lr[:n].copy()
        return rebuild_lr(steps, lr, n)

    def to_frame(self) -> pd.DataFrame:
        """Per-step rows with the runs-table columns repeated on each row (round-trips via from_frame)."""
        return self._frame.merge(self._runs, left_on="run_id", right_index=True, how="left")


def concat_curves(parts: Sequence[Curves]) -> Curves:
    """One `Curves` from several (e.g. one import per file); a run id in two of them raises `DataError`
    (nothing is overwritten)."""
    if len(parts) == 1:
        return parts[0]
    seen: dict[str, str | None] = {}
    for c in parts:
        for rid in c.run_ids:
            if rid in seen:
                raise DataError(
                    "the same run id in two inputs",
                    file=c.source,
                    run_id=rid,
                    fix=f"import them separately or rename one (also in {seen[rid]})",
                )
            seen[rid] = c.source
    evals = [c.evals for c in parts if c.evals is not None]
    return Curves.from_frame(
        pd.concat([c.frame for c in parts], ignore_index=True),
        runs=pd.concat([c.runs for c in parts]).reset_index(),
        evals=pd.concat(evals, ignore_index=True) if evals else None,
    )
