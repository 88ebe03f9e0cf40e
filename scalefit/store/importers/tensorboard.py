"""TensorBoard event files -> Curves, read with tensorboard's EventAccumulator.

tensorboard is an optional extra (``pip install "scalefit[tensorboard]"``), imported only when a log is
read, so the rest of the store works without it; when it is missing, a `DataError` says how to install it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scalefit.errors import DataError
from scalefit.store.curves import Curves
from scalefit.store.importers._common import ScheduleSpec, attach_schedule, first_present, resolve_schedule

__all__ = ["import_tensorboard"]

TB_LOSS = ("train/loss", "loss", "train_loss", "Loss/train", "train/lm_loss")
TB_LR = ("lr", "train/lr", "learning_rate", "train/learning_rate", "optimizer/lr")


def _accumulator(path: Path) -> Any:
    try:  # local: tensorboard is the optional [tensorboard] extra, not a base dependency
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError as exc:
        raise DataError(
            "reading TensorBoard logs needs the tensorboard package, which is not installed",
            file=str(path),
            fix='pip install "scalefit[tensorboard]"',
        ) from exc
    acc = EventAccumulator(str(path), size_guidance={"scalars": 0})
    try:
        acc.Reload()
    except Exception as exc:  # tensorboard raises several kinds on corrupt files
        raise DataError(
            f"cannot read the event file ({exc})", file=str(path), fix="check the log directory"
        ) from exc
    return acc


def _scalars(acc: Any, tag: str) -> pd.DataFrame:
    """(step, value) of a tag; a step written twice (restarted run) keeps the later write (wall time)."""
    events = acc.Scalars(tag)
    df = pd.DataFrame(
        {
            "wall": [e.wall_time for e in events],
            "step": [e.step for e in events],
            "value": [e.value for e in events],
        }
    )
    df = df.sort_values("wall", kind="stable").drop_duplicates("step", keep="last")
    return df.sort_values("step").reset_index(drop=True)


def _run_dirs(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DataError(
            "path not found", file=str(path), fix="give a TensorBoard log directory or event file"
        )
    dirs = sorted({p.parent for p in path.rglob("events.out.tfevents.*")})
    if not dirs:
        raise DataError("no TensorBoard event files", file=str(path), fix="point at the run's log directory")
    return dirs


def import_tensorboard(
    path: str | os.PathLike,
    *,
    run_id: str | None = None,
    loss_tag: str | None = None,
    lr_tag: str | None = None,
    schedule: ScheduleSpec = None,
    eval_tags: dict[str, str] | None = None,
    lr_rtol: float = 1e-6,
) -> Curves:
    """Curves from a TensorBoard log directory (each folder with event files is one run) or one file.

    Run ids are the folder names relative to ``path`` (``run_id`` overrides a single run's). Tags default
    to ``train/loss``/``loss`` and ``lr``/``train/lr``; without an LR tag, ``schedule`` gives the LR (and is
    checked against a logged LR when both exist). ``eval_tags`` maps a tag to an eval dataset name.
    TensorBoard stores float32, so a logged LR is compared with ``lr_rtol`` (default 1e-6).
    """
    root = Path(path)
    dirs = _run_dirs(root)
    frames, evals, runs = [], [], []
    for d in dirs:
        acc = _accumulator(d)
        tags = acc.Tags().get("scalars", [])
        rid = (
            run_id if run_id and len(dirs) == 1 else (d.relative_to(root).as_posix() if d != root else d.name)
        )
        file = str(d)
        loss = _scalars(acc, loss_tag or first_present(tags, TB_LOSS, "loss", file))
        df = pd.DataFrame({"run_id": rid, "step": loss["step"], "loss": loss["value"].astype(float)})
        lr_name = lr_tag or next((t for t in TB_LR if t in tags), None)
        if lr_name is not None:
            lr = _scalars(acc, lr_name).set_index("step")["value"]
            df["lr"] = df["step"].map(lr).astype(float)
        else:
            df["lr"] = np.nan
        sched = resolve_schedule(schedule, rid, file)
        if sched is None and df["lr"].isna().any():
            raise DataError(
                "no LR at some logged steps and no schedule",
                file=file,
                run_id=rid,
                column="lr",
                fix="log the LR (lr_tag=) or give schedule=",
            )
        df, text = attach_schedule(df, sched, rtol=lr_rtol, file=file, run_id=rid)
        frames.append(df)
        runs.append({"run_id": rid, "schedule": text})
        for tag, dataset in (eval_tags or {}).items():
            ev = _scalars(acc, first_present(tags, (tag,), "eval", file))
            evals.append(
                pd.DataFrame(
                    {"run_id": rid, "step": ev["step"], "dataset": dataset, "eval_loss": ev["value"]}
                )
            )
    ev_df = pd.concat(evals, ignore_index=True) if evals else None
    return Curves.from_frame(
        pd.concat(frames, ignore_index=True), runs=pd.DataFrame(runs), evals=ev_df, source=str(root)
    )
