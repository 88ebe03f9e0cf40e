"""Weights & Biases CSV exports -> Curves: run histories and the UI's panel exports.

Two shapes, told apart by their header:

- **History** (``run.history()`` / ``scan_history()`` to CSV, or the run page's export): one row per
  ``wandb.log`` call, with W&B's ``_step`` row counter and the logged keys as columns; empty cells are keys
  not logged in that call. The optimizer step is the first of `STEP_CANDIDATES` present
  (``train/global_step`` of the Hugging Face Trainer, ``trainer/global_step`` of Lightning, ``global_step``,
  ``step``, ...); ``_step`` only when none is, with a note (it also counts eval and other log calls).
  Hugging Face's ``train/global_step`` is 1-based and converted by the rule in `_common`. Rows that
  log only evals (no train loss) never shift steps: each quantity is placed at its own step; an
  eval-only row without a step (a separate ``wandb.log`` call without the step key) cannot be placed
  and is counted in the summary, a train row without one is an error.
- **Panel** (a chart's "Export CSV"): a ``Step`` column (the chart's x-axis), then per run or group
  ``<run> - <metric>``, ``<run> - <metric>__MIN`` and ``<run> - <metric>__MAX``. The value column is the
  curve; ``__MIN``/``__MAX`` are the range W&B draws around it (over a group's runs, or within a sampled
  bucket) and are never imported as values: where they differ from the value, the summary says so.
  ``Group: name`` runs are named ``name``. Each metric becomes an eval dataset named by the metric
  (its values as exported: a Perplexity panel stays perplexity) unless it is the train loss (``loss=`` or a
  usual train-loss key) or the LR (a usual LR key).

In both, an empty cell or a ``nan`` is *not observed*; ``inf`` is kept (an observed divergence).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from scalefit.errors import DataError
from scalefit.store.curves import Curves, _numeric
from scalefit.store.importers._common import (
    HF_NOTE,
    HF_STEP_COLUMN,
    LOSS_CANDIDATES,
    LR_CANDIDATES,
    STEP_CANDIDATES,
    RunLog,
    ScheduleSpec,
    assemble,
    check_step_base,
    eval_loss_names,
    expand_paths,
    lr_candidate,
    observations,
)

__all__ = ["import_wandb_csv", "is_panel", "WANDB_RUN"]

WANDB_RUN = ("name", "run", "run_name", "run_id")
_BOOKKEEPING = ("_step", "_runtime", "_timestamp", "_wandb")


def _wandb_frame(path: Path) -> pd.DataFrame:
    """A W&B export as strings, so that empty cells (not logged) stay empty."""
    if path.stat().st_size == 0:
        raise DataError("empty W&B export", file=str(path), fix="export the run history as CSV again")
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except (ValueError, pd.errors.ParserError) as exc:
        raise DataError(
            f"cannot parse the CSV ({exc})", file=str(path), fix="export the history again"
        ) from exc


def is_panel(columns: Sequence[str]) -> bool:
    """A panel export: ``Step`` first, every other column ``<run> - <metric>`` (optionally __MIN/__MAX)."""
    cols = list(columns)
    return len(cols) > 1 and cols[0] == "Step" and all(" - " in c for c in cols[1:])


def import_wandb_csv(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    step: str | None = None,
    loss: str | None = None,
    lr: str | None = None,
    run_id: str | None = None,
    name: str | None = None,
    schedule: ScheduleSpec = None,
    eval_columns: Mapping[str, str] | Sequence[str] | None = None,
    step_base: str = "auto",
    lr_rtol: float = 1e-6,
) -> Curves:
    """Curves from W&B CSV exports: files, folders (their ``*.csv``) or glob patterns, history or panel.

    ``step``/``loss``/``lr`` name columns (default: the usual keys, see the module docstring; ``lr="none"``:
    no LR column). ``run_id`` names the run column of a history with several runs (default: ``name``,
    ``run``, ... if present), ``name`` the run of a one-run file (default: the file stem). ``eval_columns``:
    columns to import as evals, a list or a {column: dataset} mapping (default: the columns whose name
    says eval/val loss, each its own dataset). ``step_base``: ``auto`` (the Hugging Face rule for
    ``train/global_step``), ``0`` (steps as logged) or ``hf``. Every run gets an ``import_summary``.
    """
    check_step_base(step_base)
    files = expand_paths(paths, "W&B CSV export")
    evals = _eval_map(eval_columns)
    logs: list[RunLog] = []
    for path in files:
        raw = _wandb_frame(path)
        if is_panel(raw.columns):
            logs += _panel_logs(raw, str(path), loss, evals)
        else:
            logs += _history_logs(raw, str(path), path, step, loss, lr, run_id, name, evals, step_base)
    source = str(files[0]) if len(files) == 1 else None
    for col, dataset in (evals or {}).items():
        if not any(dataset in set(log.evals["dataset"]) for log in logs) and not _in_any(files, col):
            raise DataError(
                f"no eval column {col!r} in any file",
                file=source,
                column=col,
                fix="name an existing column with eval_columns=",
            )
    return assemble(logs, schedule, lr_rtol=lr_rtol, source=source)


def _in_any(files: Sequence[Path], col: str) -> bool:
    """Whether a history file's header or a panel's metric names ``col``."""
    for path in files:
        header = list(pd.read_csv(path, dtype=str, nrows=0).columns)
        if col in header or any(_split_header(c)[1] == col for c in header[1:]):
            return True
    return False


def _eval_map(eval_columns: Mapping[str, str] | Sequence[str] | None) -> dict[str, str] | None:
    if eval_columns is None:
        return None
    if isinstance(eval_columns, Mapping):
        return {str(k): str(v) for k, v in eval_columns.items()}
    return {str(c): str(c) for c in eval_columns}


def _missing(file: str, column: str, what: str, flag: str, have: Sequence[str]) -> DataError:
    return DataError(
        f"no {what} column {column!r}",
        file=file,
        column=column,
        fix=f"name it with {flag} (have {list(have)})",
    )


def _history_logs(
    raw: pd.DataFrame,
    file: str,
    path: Path,
    step: str | None,
    loss: str | None,
    lr: str | None,
    run_col: str | None,
    name: str | None,
    evals: dict[str, str] | None,
    step_base: str,
) -> list[RunLog]:
    cols = list(raw.columns)
    for given, what, flag in ((step, "step", "step="), (loss, "loss", "loss="), (run_col, "run", "run_id=")):
        if given is not None and given not in cols:
            raise _missing(file, given, what, flag, cols)
    loss_col = loss or next((c for c in LOSS_CANDIDATES if c in cols), None)
    if loss_col is None:
        raise DataError(
            "no train-loss column found",
            file=file,
            column=LOSS_CANDIDATES[0],
            fix=f"name it with loss= (tried {list(LOSS_CANDIDATES)}; have {cols})",
        )
    if lr is not None and lr.lower() == "none":
        lr_col = None
    elif lr is not None:
        if lr not in cols:
            raise _missing(file, lr, "LR", "lr=", cols)
        lr_col = lr
    else:
        lr_col = lr_candidate(cols)
    notes: list[str] = []
    if step is None:
        present = [c for c in STEP_CANDIDATES if c in cols]
        if not present:
            raise DataError(
                "no step column found",
                file=file,
                column="step",
                fix=f"name it with step= (tried {list(STEP_CANDIDATES)}; have {cols})",
            )
        step = present[0]
        if step == "_step":
            notes.append(
                "no optimizer-step column: W&B's _step row counter is the step (it also counts eval rows)"
            )
    hf = step_base == "hf" or (step_base == "auto" and step == HF_STEP_COLUMN)
    notes.insert(
        0,
        f"step from {step!r}" + (f" ({HF_NOTE})" if hf else ""),
    )
    if evals is None:
        evals = {c: c for c in eval_loss_names(cols, exclude={loss_col, step})}
    else:
        notes += [f"eval column {c!r} not in this file" for c in evals if c not in cols]
        evals = {c: d for c, d in evals.items() if c in cols}
    run_col = run_col or next((c for c in WANDB_RUN if c in cols), None)
    used = {step, loss_col, lr_col, run_col, *evals}
    ignored = [c for c in cols if c not in used and not c.startswith(_BOOKKEEPING)]
    groups = (
        raw.groupby(raw[run_col].astype(str), sort=True)
        if run_col
        else [(name or path.name.split(".")[0], raw)]
    )
    if run_col and bool((raw[run_col].str.strip() == "").any()):
        line = int(np.flatnonzero((raw[run_col].str.strip() == "").to_numpy())[0]) + 2
        raise DataError(
            "a row has no run name",
            file=file,
            column=run_col,
            value=f"line {line}",
            fix="fill the run column, or name another with run_id=",
        )
    logs = []
    for rid, rows in groups:
        steps = rows[step].str.strip()
        numeric = pd.DataFrame({"run_id": str(rid), "step": steps.where(steps != "", np.nan)})
        curve = rows[loss_col].str.strip().ne("") | (rows[lr_col].str.strip().ne("") if lr_col else False)
        logged = curve.copy()
        for col in evals:
            logged |= rows[col].str.strip().ne("")
        bad = curve & numeric["step"].isna()
        unplaced = logged & ~curve & numeric["step"].isna()
        logged &= ~unplaced
        run_notes = (
            [f"{int(unplaced.sum())} eval-only rows with no {step!r}: not imported"] if unplaced.any() else []
        )
        if bool(bad.any()):
            raise DataError(
                f"a logged row has no step in column {step!r}",
                file=file,
                run_id=str(rid),
                column="step",
                value=f"line {int(bad.index[bad.to_numpy()][0]) + 2}",
                fix="export the history with the step column filled, or name another with step=",
            )
        at = pd.Series(np.nan, index=rows.index)
        at[logged] = _numeric(numeric[logged], "step", file, integer=True)
        loss_at = at - 1 if hf else at
        if hf and bool((loss_at[rows[loss_col].str.strip() != ""] < 0).any()):
            raise DataError(
                "a train loss at step 0 of a 1-based (Hugging Face) step column",
                file=file,
                run_id=str(rid),
                column=step,
                fix="read the steps as logged with step_base=0",
            )
        ev = [
            observations(at, rows[col].where(logged, ""), file=file, run_id=str(rid))
            .rename(columns={"value": "eval_loss"})
            .assign(dataset=dataset)
            for col, dataset in evals.items()
        ]
        ev_df = (
            pd.concat(ev, ignore_index=True) if ev else pd.DataFrame(columns=["step", "eval_loss", "dataset"])
        )
        logs.append(
            RunLog(
                run_id=str(rid),
                file=file,
                loss=observations(loss_at, rows[loss_col], file=file, run_id=str(rid)),
                lr=observations(at, rows[lr_col], file=file, run_id=str(rid))
                if lr_col
                else pd.DataFrame(columns=["step", "value"]),
                evals=ev_df,
                notes=[
                    *notes,
                    f"loss from {loss_col!r}",
                    f"LR from {lr_col!r}" if lr_col else "no LR column",
                    *run_notes,
                ],
                ignored=ignored,
            )
        )
    return logs


def _split_header(col: str) -> tuple[str, str, str]:
    """(run, metric, '' | '__MIN' | '__MAX') of a panel column; the metric follows the last ' - '."""
    suffix = next((s for s in ("__MIN", "__MAX") if col.endswith(s)), "")
    run, _, metric = col[: len(col) - len(suffix)].rpartition(" - ")
    return run, metric, suffix


def _panel_logs(raw: pd.DataFrame, file: str, loss: str | None, evals: dict[str, str] | None) -> list[RunLog]:
    steps = raw["Step"].str.strip()
    at = pd.Series(np.nan, index=raw.index)
    at[steps != ""] = _numeric(pd.DataFrame({"step": steps[steps != ""]}), "step", file, integer=True)
    values = [c for c in raw.columns[1:] if not c.endswith(("__MIN", "__MAX"))]
    for col in raw.columns[1:]:
        run, metric, suffix = _split_header(col)
        if suffix and f"{run} - {metric}" not in values:
            raise DataError(
                f"a {suffix} column without its value column",
                file=file,
                column=col,
                fix="export the panel again (W&B writes the value, __MIN and __MAX columns together)",
            )
    by_run: dict[str, RunLog] = {}
    for col in values:
        run, metric, _ = _split_header(col)
        rid = run.removeprefix("Group: ").strip()
        if (raw.loc[steps == "", col].str.strip() != "").any():
            raise DataError(
                "a value without a step", file=file, run_id=rid, column=col, fix="check the Step column"
            )
        log = by_run.setdefault(
            rid,
            RunLog(
                rid,
                file,
                pd.DataFrame(columns=["step", "value"]),
                pd.DataFrame(columns=["step", "value"]),
                pd.DataFrame(columns=["step", "eval_loss", "dataset"]),
                notes=["step from the panel's x-axis 'Step' (as exported)"]
                + (
                    ["a W&B group (value: the group's line; __MIN/__MAX: its range)"]
                    if run.startswith("Group: ")
                    else []
                ),
            ),
        )
        obs = observations(at, raw[col], file=file, run_id=rid)
        if metric == loss or (loss is None and metric in LOSS_CANDIDATES):
            log.loss = pd.concat([log.loss, obs], ignore_index=True)
            log.notes.append(f"loss from {metric!r}")
        elif metric in LR_CANDIDATES or metric.startswith("lr-"):
            log.lr = pd.concat([log.lr, obs], ignore_index=True)
            log.notes.append(f"LR from {metric!r}")
        elif evals is None or metric in evals:
            dataset = metric if evals is None else evals[metric]
            ev = obs.rename(columns={"value": "eval_loss"}).assign(dataset=dataset)
            log.evals = pd.concat([log.evals, ev], ignore_index=True)
        else:
            log.ignored.append(metric)
        spread = _spread_differs(raw, col)
        if spread:
            log.notes.append(
                f"{metric} __MIN/__MAX differ from the value at {spread} steps (the value is imported)"
            )
    return list(by_run.values())


def _spread_differs(raw: pd.DataFrame, col: str) -> int:
    """Rows where __MIN or __MAX hold something other than the value cell (never imported as values)."""
    value = raw[col].str.strip()
    out = pd.Series(False, index=raw.index)
    for suffix in ("__MIN", "__MAX"):
        if col + suffix in raw.columns:
            out |= raw[col + suffix].str.strip() != value
    return int(out.sum())
