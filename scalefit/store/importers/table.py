"""Generic table import: CSV/JSON/Parquet/DataFrame with user-named columns."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from scalefit.errors import DataError
from scalefit.store.curves import Curves, _numeric
from scalefit.store.importers._common import (
    ScheduleSpec,
    attach_schedule,
    lr_summary,
    read_table,
    resolve_schedule,
    run_summary,
    schedule_for,
)

__all__ = ["import_table"]


def import_table(
    df_or_path: pd.DataFrame | str | os.PathLike,
    *,
    run_id: str | None = "run_id",
    step: str = "step",
    lr: str | None = "lr",
    loss: str = "loss",
    schedule: ScheduleSpec = None,
    name: str | None = None,
    lr_rtol: float = 1e-6,
) -> Curves:
    """Curves from a table whose run/step/LR/loss columns the user names.

    ``run_id`` names the run column; with ``run_id=None`` every row belongs to one run called ``name``
    (default: the file stem). Every row is a logged step and carries its LR, unless ``schedule`` (a
    `Schedule`, its short string form, a dict, or a {run_id: schedule} mapping) gives it: ``lr=None``
    means no LR column, so a schedule is needed; ``lr="none"`` imports the runs without any LR (a static
    law can still be fitted; a curve law then needs the schedule). When both are given, the logged LR is
    checked against the schedule to ``lr_rtol`` relative (a `ScheduleError` names the first bad step).
    An LR logged every N rows-worth of steps is matched to a schedule family or rebuilt (see `_common`).
    An empty or NaN loss is not observed (never a divergence). Other columns are kept (run-level ones
    such as ``n_params`` move to the runs table).
    """
    file = None if isinstance(df_or_path, pd.DataFrame) else str(df_or_path)
    df = df_or_path.copy() if isinstance(df_or_path, pd.DataFrame) else read_table(df_or_path)
    if df.empty:
        raise DataError("no rows", file=file, fix="give a table with at least one row")
    no_lr = lr is not None and lr.lower() == "none"
    if lr is None and schedule is None:
        raise DataError("no LR column and no schedule", file=file, column="lr", fix="give lr= or schedule=")
    if no_lr or (lr == "lr" and "lr" not in df.columns and schedule is not None):
        lr = None  # no LR column (asked for, or the default is absent and the schedule gives the LR)
    wanted = {"step": step, "loss": loss, **({"lr": lr} if lr is not None else {})}
    if run_id is not None:
        wanted["run_id"] = run_id
    for role, col in wanted.items():
        if col not in df.columns:
            raise DataError(
                f"missing {role} column",
                file=file,
                column=col,
                fix=f"name the {role} column with {role}= (have {list(df.columns)})",
            )
    out = df.rename(columns={col: role for role, col in wanted.items()})
    if run_id is None:
        out["run_id"] = name or (Path(file).name.split(".")[0] if file else "run")
    if lr is None:
        out["lr"] = np.nan
    return _build(out, schedule, file, lr_rtol, no_lr=no_lr)


def _build(
    out: pd.DataFrame, schedule: ScheduleSpec, file: str | None, lr_rtol: float, *, no_lr: bool
) -> Curves:
    if out["run_id"].isna().any() or (out["run_id"].astype(str).str.strip() == "").any():
        raise DataError("missing run id", file=file, column="run_id", fix="give every row a run id")
    out["run_id"] = out["run_id"].astype(str)
    out["step"] = _numeric(out, "step", file, integer=True)
    out["lr"] = _numeric(out, "lr", file)
    out["loss"] = _numeric(out, "loss", file)
    parts, runs = [], []
    for rid, rows in out.groupby("run_id", sort=True):
        rows = rows.drop_duplicates("step", keep="last").sort_values("step", kind="stable")
        given = resolve_schedule(schedule, str(rid), file)
        if given is None and not no_lr and rows["lr"].isna().any():
            raise DataError(
                "missing learning rate",
                file=file,
                run_id=str(rid),
                column="lr",
                value=f"step {int(rows.loc[rows['lr'].isna(), 'step'].iloc[0])}",
                fix="log the LR at every row or give schedule= (W&B or TensorBoard logs: their importers)",
            )
        sched = schedule_for(rows, given, lr_rtol)
        how = lr_summary(rows, sched, given is not None)
        rows, text = attach_schedule(rows, sched, rtol=lr_rtol, file=file, run_id=str(rid))
        parts.append(rows)
        runs.append(
            {"run_id": str(rid), "schedule": text, "import_summary": run_summary(str(rid), rows, None, how)}
        )
    return Curves.from_frame(pd.concat(parts, ignore_index=True), runs=pd.DataFrame(runs), source=file)
