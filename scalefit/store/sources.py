"""Input sources: curves from a store directory or a bundled dataset name, and JSON input files checked
for their format stamp. Every reader fails with a `DataError` naming the file.

    curves = load_data("runs/", loss="eval:python-stdlib", runs="cosine_24000,wsd_24000")
    table = load_data("chinchilla-epoch")
    d = read_stamped("fit.json", "a Fit JSON", "scalefit Fit", "format", "scalefit.Fit/1")
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scalefit.errors import DataError
from scalefit.store import datasets
from scalefit.store.curves import Curves
from scalefit.store.fs import is_uri
from scalefit.store.parquet import read_curves

__all__ = ["load_data", "read_json", "read_stamped"]


def load_data(
    spec: str | Path, *, loss: str = "train_loss", runs: str | Sequence[str] | None = None
) -> Curves | pd.DataFrame:
    """Curves (or a table) from a store directory or URI (``s3://bucket/runs``) or a bundled dataset name,
    optionally a subset of runs (``runs``: run ids, or one comma-separated string)."""
    path = Path(spec)
    if is_uri(spec):
        data = read_curves(str(spec), loss=loss)
    elif path.is_dir():
        data = read_curves(path, loss=loss)
    elif str(spec) in datasets.list_datasets():
        data = _bundled(str(spec), loss)
    elif path.exists():
        raise DataError(
            "not a store folder",
            file=str(spec),
            fix="give the folder written by scalefit import (or sweep), or a bundled dataset name",
        )
    else:
        raise DataError(
            "not found: no such store folder or bundled dataset",
            file=str(spec),
            fix=f"give a store folder (written by scalefit import) or one of {datasets.list_datasets()}",
        )
    if runs:
        ids = runs.split(",") if isinstance(runs, str) else list(runs)
        data = data.select(ids) if isinstance(data, Curves) else data[data["run_id"].isin(ids)]
    return data


def _bundled(name: str, loss: str) -> Curves | pd.DataFrame:
    """A bundled dataset, its curves' loss ``loss``: "train_loss" (as bundled) or "eval:<dataset>" (an eval
    set it carries: the eval loss at its steps, the LR from each run's schedule)."""
    data = datasets.load(name)
    if loss == "train_loss":
        return data
    evals = data.evals if isinstance(data, Curves) else None
    sets = [] if evals is None else sorted(evals["dataset"].dropna().unique())
    if not loss.startswith("eval:") or loss[len("eval:") :] not in sets:
        raise DataError(
            "unknown loss for this bundled dataset",
            file=name,
            column="loss",
            value=loss,
            fix=f"use --loss train_loss or one of {[f'eval:{d}' for d in sets]}",
        )
    ev = evals[evals["dataset"] == loss[len("eval:") :]]
    frame = ev.rename(columns={"eval_loss": "loss"})[["run_id", "step", "loss"]].assign(lr=np.nan)
    runs = data.runs.loc[sorted(frame["run_id"].unique())].reset_index()
    return Curves.from_frame(frame, runs=runs, source=f"scalefit:{name} ({loss})")


def read_json(path: str | Path, kind: str) -> Any:
    """A JSON file's content; a `DataError` naming the file when it is not JSON (``kind``: what to give
    instead, e.g. "a Fit JSON written by `scalefit fit`")."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError("not a JSON file", file=str(path), value=str(err)[:80], fix=f"give {kind}") from None


def read_stamped(path: str | Path, kind: str, what: str, key: str, expected: str) -> dict[str, Any]:
    """A JSON object whose ``key`` field is ``expected`` (e.g. format scalefit.Fit/1); a `DataError`
    naming the file and the field when the file is not JSON or not such an object."""
    d = read_json(path, kind)
    if not isinstance(d, dict) or d.get(key) != expected:
        got = d.get(key) if isinstance(d, dict) else type(d).__name__
        fix = f"give {kind} ({key} {expected})"
        raise DataError(f"not a {what}", file=str(path), field=key, value=got, fix=fix)
    return d
