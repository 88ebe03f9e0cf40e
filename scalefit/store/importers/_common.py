"""Shared pieces of the log importers: reading tables, resolving schedules, checking a logged LR, the
usual column names of loggers, and `assemble` (run logs in long form -> `Curves` with one import summary
per run).

Hugging Face Trainer steps (W&B key ``train/global_step``; TensorBoard runs with a ``train/learning_rate``
or ``train/epoch`` tag) are 1-based: ``global_step`` g counts the updates done. Its trainer steps the LR
scheduler, increments ``global_step`` and then logs, so the train loss logged at g is that of update g-1
(step g-1), the LR logged at g (``lr_scheduler.get_last_lr()``) is the one set for update g (step g), and
an eval at g is of the model before update g (step g). This is `HF_NOTE`'s rule.
"""

from __future__ import annotations

import glob
import os
import re
import warnings
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from scalefit.errors import DataError, ScheduleError
from scalefit.schedules import Schedule, from_dict, parse
from scalefit.store.curves import Curves, _numeric
from scalefit.store.importers._lr import LRSource, cadence, interpolation_error, recognise_schedule

__all__ = ["read_table", "resolve_schedule", "check_lr", "first_present", "attach_schedule", "ScheduleSpec"]
__all__ += ["STEP_CANDIDATES", "LOSS_CANDIDATES", "LR_CANDIDATES", "HF_STEP_COLUMN", "HF_NOTE", "RunLog"]
__all__ += ["STEP_BASES", "check_step_base"]
__all__ += ["lr_candidate", "eval_loss_names", "expand_paths", "observations", "assemble"]
__all__ += ["run_summary", "lr_summary", "schedule_for"]

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


# The optimizer-step columns of the usual loggers, first match wins; W&B's own ``_step`` (a row counter
# that also counts eval and other log calls) only when none of these exists.
STEP_CANDIDATES = (
    "train/global_step",
    "trainer/global_step",
    "global_step",
    "train/step",
    "step",
    "Step",
    "iter",
    "iteration",
    "_step",
)
LOSS_CANDIDATES = ("train/loss", "train_loss", "loss", "train/train_loss", "train/lm_loss", "Loss/train")
LR_CANDIDATES = ("lr", "train/lr", "learning_rate", "train/learning_rate", "optimizer/lr", "trainer/lr")
# The W&B step key of the Hugging Face Trainer, whose steps are 1-based (module docstring).
HF_STEP_COLUMN = "train/global_step"
HF_NOTE = "1-based, Hugging Face rule: loss at g-1, LR and evals at g"
# How an importer counts steps: ``auto`` (the Hugging Face rule where its keys/tags say so), ``0`` (as
# logged) or ``hf`` (the Hugging Face rule).
STEP_BASES = ("auto", "0", "hf")
_EVAL_LOSS = re.compile(
    r"^(eval|val|valid|validation|test)[/_\-].*loss$|^(eval|val)[/_]?loss$", re.IGNORECASE
)


def check_step_base(step_base: str) -> None:
    """A `DataError` naming the field unless ``step_base`` is one of `STEP_BASES`."""
    if step_base not in STEP_BASES:
        raise DataError(
            "unknown step base", field="step_base", value=step_base, fix=f"use one of {STEP_BASES}"
        )


def lr_candidate(columns: Collection[str]) -> str | None:
    """The first usual LR column/tag present, then Lightning's ``lr-<Optimizer>`` (LearningRateMonitor)."""
    found = next((c for c in LR_CANDIDATES if c in columns), None)
    return found or next((c for c in sorted(columns) if c.startswith("lr-")), None)


def eval_loss_names(columns: Collection[str], exclude: Collection[str]) -> list[str]:
    """Columns/tags that are eval losses by name (``eval/loss``, ``val_loss``, ``eval/<set>_loss``, ...)."""
    return [c for c in columns if c not in exclude and _EVAL_LOSS.match(c)]


def expand_paths(paths: str | os.PathLike | Sequence[str | os.PathLike], what: str) -> list[Path]:
    """Files from paths, folders (their ``*.csv``) and glob patterns; a path matching nothing is not found."""
    items = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
    if not items:
        raise DataError("no files given", fix=f"give one or more {what} files")
    out: list[Path] = []
    for item in map(str, items):
        if any(ch in item for ch in "*?["):
            matched = sorted(Path(p) for p in glob.glob(item, recursive=True))
            if not matched:
                raise DataError("not found: the pattern matches no file", file=item, fix=f"give {what} files")
            out += [p for p in matched if p.is_file()]
        elif Path(item).is_dir():
            found = sorted(Path(item).glob("*.csv"))
            if not found:
                raise DataError("no .csv file in the folder", file=item, fix=f"give {what} files")
            out += found
        elif Path(item).is_file():
            out.append(Path(item))
        else:
            raise DataError("not found", file=item, fix=f"give the path of {what} files")
    return list(dict.fromkeys(out))


@dataclass
class RunLog:
    """What an importer read for one run from one file, in long form, before it becomes `Curves`.

    ``loss`` and ``lr``: (step, value) observations; ``evals``: (step, dataset, eval_loss); ``notes``:
    how steps were read, for the import summary; ``ignored``: columns/tags read but not imported.
    """

    run_id: str
    file: str
    loss: pd.DataFrame
    lr: pd.DataFrame
    evals: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


def observations(steps: pd.Series, values: pd.Series, *, file: str | None, run_id: str) -> pd.DataFrame:
    """(step, value) of the non-empty cells of ``values`` (a column named as in the file), as floats;
    empty cells are not observations; a cell that is not a number raises naming run and column."""
    cells = values.astype(str).str.strip()
    keep = values.notna() & (cells != "")
    col = str(values.name)
    numbers = _numeric(pd.DataFrame({"run_id": run_id, col: values[keep]}), col, file)
    return pd.DataFrame({"step": steps[keep].to_numpy(), "value": numbers.to_numpy()})


def _merge_observations(parts: list[pd.DataFrame], keys: list[str]) -> tuple[pd.DataFrame, int]:
    """Concatenated in reading order; a repeated key keeps the later value (a resumed run).

    Returns (rows, number of repeats)."""
    df = pd.concat(parts, ignore_index=True)
    dup = int(df.duplicated(keys, keep="last").sum())
    return df.drop_duplicates(keys, keep="last"), dup


def assemble(logs: list[RunLog], schedule: ScheduleSpec, *, lr_rtol: float, source: str | None) -> Curves:
    """`Curves` from run logs (a run may come from several files); one ``import_summary`` per run.

    Curve rows are the union of the steps with a loss or an LR (a missing one is NaN: not observed).
    With a ``schedule`` the logged LR is checked against it and fills the rest; without one, an LR logged
    at only some steps is matched to a schedule family (`recognise_schedule`) or else rebuilt
    piecewise-linearly when the curves are fitted (`Curves.lr_sequence`).
    """
    by_run: dict[str, list[RunLog]] = {}
    for log in logs:
        by_run.setdefault(log.run_id, []).append(log)
    frames, runs, evals, empty = [], [], [], []
    for rid, parts in sorted(by_run.items()):
        file = parts[0].file if len({p.file for p in parts}) == 1 else None
        loss, dup_loss = _merge_observations([p.loss for p in parts], ["step"])
        lr, dup_lr = _merge_observations([p.lr for p in parts], ["step"])
        ev, dup_ev = _merge_observations([p.evals for p in parts], ["step", "dataset"])
        rows = pd.merge(
            loss.rename(columns={"value": "loss"}), lr.rename(columns={"value": "lr"}), on="step", how="outer"
        )
        if rows.empty:
            rows = pd.DataFrame({"step": sorted(set(ev["step"])), "loss": np.nan, "lr": np.nan})
        if rows.empty:
            empty.append(rid)
            continue
        rows = rows.assign(run_id=rid).sort_values("step", kind="stable").reset_index(drop=True)
        rows["step"] = _numeric(rows, "step", file, integer=True)
        given = resolve_schedule(schedule, rid, file)
        sched = schedule_for(rows, given, lr_rtol)
        how = lr_summary(rows, sched, given is not None)
        rows, text = attach_schedule(rows, sched, rtol=lr_rtol, file=file, run_id=rid)
        frames.append(rows)
        evals.append(ev.assign(run_id=rid))
        summary = run_summary(
            rid,
            rows,
            ev,
            how,
            notes=[n for p in parts for n in p.notes],
            ignored={c for p in parts for c in p.ignored},
            files={p.file for p in parts},
            repeats=dup_loss + dup_lr + dup_ev,
        )
        runs.append({"run_id": rid, "schedule": text, "import_summary": summary})
    if empty:
        warnings.warn(f"runs with no logged value left out: {empty}", UserWarning, stacklevel=3)
    if not frames:
        raise DataError(
            "no logged values", file=source, fix="check the file and the column names (loss=, lr=)"
        )
    ev_all = pd.concat(evals, ignore_index=True)
    ev_all = ev_all if len(ev_all) else None
    return Curves.from_frame(
        pd.concat(frames, ignore_index=True), runs=pd.DataFrame(runs), evals=ev_all, source=source
    )


def run_summary(
    rid: str,
    rows: pd.DataFrame,
    ev: pd.DataFrame | None,
    how: str,
    *,
    notes: Sequence[str] = (),
    ignored: Collection[str] = (),
    files: Collection[str] = (),
    repeats: int = 0,
) -> str:
    """The one import-summary line of a run: step range, rows, where the LR came from, evals, notes."""
    loss = rows["loss"].to_numpy(dtype=float)
    steps = rows["step"].to_numpy()
    span = f"steps {int(steps.min())}..{int(steps.max())}" if len(steps) else "no steps"
    text = f"{rid}: {span}, {len(rows)} rows ({int((~np.isnan(loss)).sum())} with a loss); {how}"
    if ev is not None and len(ev):
        counts = ev.groupby("dataset").size()
        text += "; evals: " + ", ".join(f"{d} ({n} rows)" for d, n in counts.items())
    else:
        text += "; no eval columns"
    if notes:
        text += "; " + "; ".join(dict.fromkeys(notes))
    if repeats:
        text += f"; {repeats} repeated step(s): the later value kept"
    if ignored:
        shown = sorted(ignored)
        more = f" (+{len(shown) - 6} more)" if len(shown) > 6 else ""
        text += f"; not imported: {', '.join(shown[:6])}{more}"
    if len(files) > 1:
        text += f"; from {len(files)} files"
    return text


def lr_summary(rows: pd.DataFrame, sched: Schedule | None, given: bool) -> str:
    """Where a run's LR comes from, for its import summary (``given``: the schedule was given)."""
    if given and sched is not None:
        return f"LR from the given schedule {sched}"
    points = rows.loc[np.isfinite(rows["lr"].to_numpy(dtype=float))]
    if points.empty:
        return "LR not logged"
    steps = points["step"].to_numpy()
    if np.array_equal(steps, np.arange(len(steps))):
        return f"LR logged at every step 0..{int(steps[-1])}"
    err = None if sched is not None else interpolation_error(steps, points["lr"].to_numpy())
    return LRSource(sched, len(steps), cadence(steps), err).describe()


def schedule_for(rows: pd.DataFrame, given: Schedule | None, rtol: float) -> Schedule | None:
    """The given schedule, else the family recognised from an LR logged at only some steps, else None."""
    if given is not None:
        return given
    points = rows.loc[np.isfinite(rows["lr"].to_numpy(dtype=float))]
    steps = points["step"].to_numpy()
    if len(steps) == 0 or np.array_equal(steps, np.arange(len(steps))):
        return None
    return recognise_schedule(steps, points["lr"].to_numpy(), rtol=rtol, min_total=int(rows["step"].max()))
