"""Shared pieces of the log importers: reading tables, resolving schedules, checking a logged LR."""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from scalefit.errors import DataError, ScheduleError
from scalefit.schedules import Schedule, from_dict, parse

__all__ = ["read_table", "resolve_schedule", "check_lr", "first_present", "attach_schedule", "ScheduleSpec"]

# What importers accept as a run's schedule: a `Schedule`, its short string form, its dict form, or a
# {run_id: one of those} mapping; None when the LR is logged.
ScheduleSpec = Schedule | str | Mapping[str, object] | None


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """A CSV/TSV/JSON/JSON-lines/Parquet file as strings-where-given DataFrame; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise DataError("file not found", file=str(path), fix="give the path of an existing log file")
    if path.stat().st_size == 0:
        raise DataError("empty file", file=str(path), fix="export the log again; the file has no bytes")
    suffix = "".join(path.suffixes[-2:]) if path.suffix == ".gz" else path.suffix
    try:
        if suffix in (".csv", ".csv.gz", ".tsv", ".txt"):
            sep = "\t" if suffix == ".tsv" else ","
            df = pd.read_csv(path, sep=sep, keep_default_na=False, na_values=[""])
        elif suffix in (".jsonl", ".ndjson"):
            df = pd.read_json(path, lines=True)
        elif suffix in (".json", ".json.gz"):
            df = pd.read_json(path)
        elif suffix == ".parquet":
            df = pd.read_parquet(path)
        else:
            raise DataError(
                "unknown file type",
                file=str(path),
                value=suffix,
                fix="use .csv, .tsv, .json, .jsonl or .parquet",
            )
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(
            f"cannot parse the file ({exc})", file=str(path), fix="check the file format"
        ) from exc
    if df.empty:
        raise DataError("no rows", file=str(path), fix="the file has a header but no data rows")
    return df


def first_present(columns: Collection[str], candidates: tuple[str, ...], what: str, file: str | None) -> str:
    """The first of ``candidates`` present in ``columns``; DataError naming the column otherwise."""
    for name in candidates:
        if name in columns:
            return name
    raise DataError(
        f"no {what} column found",
        file=file,
        column=candidates[0],
        fix=f"name the column (tried {list(candidates)}; have {list(columns)})",
    )


def resolve_schedule(schedule: ScheduleSpec, run_id: str, file: str | None) -> Schedule | None:
    """A `Schedule` from a Schedule, its short string form, a dict, or a {run_id: schedule} mapping."""
    if isinstance(schedule, Mapping) and "kind" not in schedule:
        if run_id not in schedule:
            raise ScheduleError(
                "no schedule for this run", file=file, run_id=run_id, fix=f"add {run_id!r} to the mapping"
            )
        schedule = schedule[run_id]
    if schedule is None or isinstance(schedule, Schedule):
        return schedule
    try:
        if isinstance(schedule, Mapping):
            return from_dict(dict(schedule))
        return parse(str(schedule))
    except ScheduleError as exc:
        raise ScheduleError(
            exc.message, file=file, run_id=run_id, field=exc.field, value=exc.value, fix=exc.fix
        ) from exc


def check_lr(
    steps: np.ndarray, logged: np.ndarray, schedule: Schedule, *, rtol: float, file: str | None, run_id: str
) -> None:
    """Raise ScheduleError naming the first step where the logged LR differs from ``schedule`` by > rtol.

    Rows at ``step >= schedule.total_steps`` are not checked: no update of the run uses that LR (a log
    written after the last update, e.g. torch's OneCycleLR extrapolating one step past the end).
    """
    steps, logged = np.asarray(steps), np.asarray(logged, dtype=float)
    known = ~np.isnan(logged) & (steps < getattr(schedule, "total_steps", np.inf))
    if not known.any():
        return
    want = np.asarray(schedule(steps[known]), dtype=float)
    scale = max(float(np.max(np.abs(want))), 1e-300)
    bad = np.abs(logged[known] - want) > rtol * np.maximum(np.abs(want), 1e-6 * scale)
    if bad.any():
        i = int(np.argmax(bad))
        step = int(steps[known][i])
        raise ScheduleError(
            f"logged LR disagrees with the schedule at step {step}: logged {logged[known][i]!r}, "
            f"schedule {want[i]!r}",
            file=file,
            run_id=run_id,
            column="lr",
            value=str(schedule),
            fix="give the schedule the run really used (or drop it and use the logged LR)",
        )


def attach_schedule(
    df: pd.DataFrame, schedule: Schedule | None, *, rtol: float, file: str | None, run_id: str
) -> tuple[pd.DataFrame, str | None]:
    """Check a logged LR against ``schedule`` and fill missing LRs from it; returns (rows, short form)."""
    if schedule is None:
        return df, None
    lr = df["lr"].to_numpy(dtype=float) if "lr" in df.columns else np.full(len(df), np.nan)
    steps = df["step"].to_numpy()
    check_lr(steps, lr, schedule, rtol=rtol, file=file, run_id=run_id)
    filled = np.where(np.isnan(lr), np.asarray(schedule(steps), dtype=float), lr)
    return df.assign(lr=filled), str(schedule)
