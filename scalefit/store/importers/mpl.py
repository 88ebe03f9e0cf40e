"""Multi-Power Law reference CSVs (Luo et al. 2025): ``step,lr,loss`` per file, run id = file stem.

The schedule of each file comes from `scalefit.schedules.for_mpl_curve(stem)`; the logged ``lr`` must
match it to 1e-9 relative at every row, else `ScheduleError` names the file, run and first bad step.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from scalefit.errors import DataError, ScheduleError
from scalefit.schedules import for_mpl_curve
from scalefit.store.curves import Curves, _numeric
from scalefit.store.importers._common import check_lr, read_table

__all__ = ["import_mpl_csv", "MPL_LR_RTOL"]

MPL_LR_RTOL = 1e-9
_COLUMNS = ("step", "lr", "loss")


def _files(path_or_dir: str | os.PathLike | list[str | os.PathLike]) -> list[Path]:
    if isinstance(path_or_dir, list | tuple):
        return [Path(p) for p in path_or_dir]
    path = Path(path_or_dir)
    if path.is_dir():
        files = sorted(path.glob("*.csv"))
        if not files:
            raise DataError(
                "no .csv files in the directory", file=str(path), fix="point at a csv_<size> folder"
            )
        return files
    return [path]


def _one(path: Path, n_steps: int | None) -> tuple[pd.DataFrame, dict]:
    df = read_table(path)
    file, run_id = str(path), path.stem
    for col in _COLUMNS:
        if col not in df.columns:
            raise DataError(
                "missing column", file=file, run_id=run_id, column=col, fix="an MPL CSV has step,lr,loss"
            )
    df = df[list(_COLUMNS)].assign(run_id=run_id)
    for col in _COLUMNS:
        df[col] = _numeric(df, col, file, integer=col == "step")
    try:
        sched = for_mpl_curve(run_id, n_steps)
    except ScheduleError as exc:
        raise ScheduleError(
            exc.message, file=file, run_id=run_id, field=exc.field, value=exc.value, fix=exc.fix
        ) from exc
    check_lr(df["step"].to_numpy(), df["lr"].to_numpy(), sched, rtol=MPL_LR_RTOL, file=file, run_id=run_id)
    run = {"run_id": run_id, "schedule": str(sched), "peak_lr": sched.peak_lr, "source_file": path.name}
    run.update(warmup_steps=sched.warmup_steps, total_steps=sched.total_steps)
    return df, run


def import_mpl_csv(
    path_or_dir: str | os.PathLike | list[str | os.PathLike],
    *,
    n_steps: int | Mapping[str, int] | None = None,
) -> Curves:
    """Curves from one MPL CSV, a list of them, or a directory of them (``csv_25/`` ...).

    ``n_steps`` is the run length where the name does not give it (``wsdcon_X``; the 25M runs end at
    14144), as one int or a {stem: steps} mapping.
    """
    frames, runs = [], []
    for path in _files(path_or_dir):
        steps = n_steps.get(path.stem) if isinstance(n_steps, Mapping) else n_steps
        df, run = _one(path, steps)
        frames.append(df)
        runs.append(run)
    ids = [r["run_id"] for r in runs]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise DataError("two files with the same stem", run_id=dup, fix="import each size separately")
    source = str(path_or_dir) if not isinstance(path_or_dir, list | tuple) else None
    return Curves.from_frame(pd.concat(frames, ignore_index=True), runs=pd.DataFrame(runs), source=source)
