"""Generic table import (CSV/JSON/Parquet/DataFrame with user-named columns) and W&B history CSVs."""

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
    first_present,
    read_table,
    resolve_schedule,
)

__all__ = ["import_table", "import_wandb_csv"]

WANDB_STEP = ("trainer/global_step", "global_step", "train/step", "iter", "step", "_step")
WANDB_LOSS = ("train/loss", "train_loss", "loss", "train/train_loss", "train/lm_loss")
WANDB_LR = ("lr", "train/lr", "learning_rate", "train/learning_rate", "optimizer/lr", "lr-AdamW")
WANDB_RUN = ("run", "name", "run_name", "run_id")


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
    (default: the file stem). ``lr=None`` means no LR column: then ``schedule`` (a `Schedule`, its short
    string form, a dict, or a {run_id: schedule} mapping) gives the LR. When both are given, the logged LR
    is checked against the schedule to ``lr_rtol`` relative (a `ScheduleError` names the first bad step).
    Other columns are kept (run-level ones such as ``n_params`` move to the runs table).
    """
    file = None if isinstance(df_or_path, pd.DataFrame) else str(df_or_path)
    df = df_or_path.copy() if isinstance(df_or_path, pd.DataFrame) else read_table(df_or_path)
    if df.empty:
        raise DataError("no rows", file=file, fix="give a table with at least one row")
    if lr == "lr" and "lr" not in df.columns and schedule is not None:
        lr = None  # the default LR column is absent: the schedule gives the LR
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
        if schedule is None:
            raise DataError(
                "no LR column and no schedule", file=file, column="lr", fix="give lr= or schedule="
            )
        out["lr"] = np.nan
    return _build(out, schedule, file, lr_rtol)


def _build(out: pd.DataFrame, schedule: ScheduleSpec, file: str | None, lr_rtol: float) -> Curves:
    if out["run_id"].isna().any() or (out["run_id"].astype(str).str.strip() == "").any():
        raise DataError("missing run id", file=file, column="run_id", fix="give every row a run id")
    out["run_id"] = out["run_id"].astype(str)
    out["step"] = _numeric(out, "step", file, integer=True)
    out["lr"] = _numeric(out, "lr", file)
    parts, schedules = [], {}
    for rid, rows in out.groupby("run_id", sort=True):
        sched = resolve_schedule(schedule, str(rid), file)
        rows, schedules[str(rid)] = attach_schedule(rows, sched, rtol=lr_rtol, file=file, run_id=str(rid))
        parts.append(rows)
    runs = None
    if schedule is not None:
        runs = pd.DataFrame({"run_id": list(schedules), "schedule": list(schedules.values())})
    return Curves.from_frame(pd.concat(parts, ignore_index=True), runs=runs, source=file)


def _wandb_frame(path: Path) -> pd.DataFrame:
    """A W&B history export as strings, so empty cells (not logged) differ from logged 'nan'/'inf'."""
    if not path.is_file() or path.stat().st_size == 0:
        raise DataError(
            "missing or empty W&B export", file=str(path), fix="export the run history as CSV again"
        )
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except (ValueError, pd.errors.ParserError) as exc:
        raise DataError(
            f"cannot parse the CSV ({exc})", file=str(path), fix="export the history again"
        ) from exc


def import_wandb_csv(
    paths: str | os.PathLike | list[str | os.PathLike],
    *,
    step: str | None = None,
    loss: str | None = None,
    lr: str | None = None,
    schedule: ScheduleSpec = None,
    eval_columns: dict[str, str] | None = None,
    lr_rtol: float = 1e-6,
) -> Curves:
    """Curves from Weights & Biases history CSV exports (one file per run, or a ``run``/``name`` column).

    Column names default to the usual W&B keys (``trainer/global_step``/``_step``, ``train/loss``,
    ``lr``). Rows where the loss cell is empty (another metric was logged at that step) are not curve
    rows; a logged ``nan``/``inf`` is kept as divergence. ``eval_columns`` maps a column to an eval dataset
    name (e.g. ``{"val/loss": "val"}``); its non-empty cells become eval rows.
    """
    paths = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
    if not paths:
        raise DataError("no files given", fix="give one or more W&B history CSV files")
    frames, evals = [], []
    for path in map(Path, paths):
        raw = _wandb_frame(path)
        file = str(path)
        cols = {
            "step": step or first_present(raw.columns, WANDB_STEP, "step", file),
            "loss": loss or first_present(raw.columns, WANDB_LOSS, "loss", file),
        }
        lr_col = lr or next((c for c in WANDB_LR if c in raw.columns), None)
        run_col = next((c for c in WANDB_RUN if c in raw.columns), None)
        df = pd.DataFrame({role: raw[col] for role, col in cols.items() if _has(raw, col, file)})
        df["run_id"] = raw[run_col] if run_col else path.name.split(".")[0]
        df["lr"] = raw[lr_col].replace("", np.nan) if lr_col else np.nan
        for col, dataset in (eval_columns or {}).items():
            ok = _has(raw, col, file) and raw[col] != ""
            evals.append(
                pd.DataFrame(
                    {
                        "run_id": df["run_id"][ok],
                        "step": df["step"][ok],
                        "dataset": dataset,
                        "eval_loss": raw[col][ok],
                    }
                )
            )
        frames.append(df[df["loss"] != ""])
    out = pd.concat(frames, ignore_index=True)
    if out.empty:
        raise DataError(
            "no loss rows", file=str(paths[0]), column=cols["loss"], fix="check the loss column name"
        )
    if schedule is None and out["lr"].isna().any():
        raise DataError(
            "no LR logged and no schedule", file=str(paths[0]), column="lr", fix="give schedule= or lr="
        )
    curves = _build(out, schedule, str(paths[0]) if len(paths) == 1 else None, lr_rtol)
    if not evals:
        return curves
    return Curves.from_frame(
        curves.frame, runs=curves.runs, evals=pd.concat(evals, ignore_index=True), source=curves.source
    )


def _has(raw: pd.DataFrame, col: str, file: str) -> bool:
    if col not in raw.columns:
        raise DataError("missing column", file=file, column=col, fix=f"have {list(raw.columns)}")
    return True
