"""The Parquet curve store, schema version 1.

Layout (readable by pandas, pyarrow and DuckDB: ``read_parquet('runs/*/curves-*.parquet')``)::

    <root>/<run_id>/run.parquet                one row: the runs table
    <root>/<run_id>/curves-<seq:06d>.parquet   per-step rows in chunks; a later chunk wins on a duplicate step
    <root>/<run_id>/evals-<seq:06d>.parquet    long form: run_id, step, dataset, eval_loss

Every file carries ``scalefit.schema_version`` in its Parquet key-value metadata. Writes are atomic
(``*.tmp`` then ``os.replace``). Columns beyond the schema are kept (written after the schema columns).
Units: ``tokens`` is cumulative tokens seen before the step's update, ``flops`` cumulative training FLOPs,
``wall_time`` seconds since the run started, ``lr`` the LR of the update at ``step``.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from scalefit.errors import DataError, SchemaError
from scalefit.store.curves import Curves

__all__ = ["SCHEMA_VERSION", "RUNS_SCHEMA", "CURVES_SCHEMA", "EVALS_SCHEMA", "RunWriter"]
__all__ += ["write_curves", "read_curves"]

SCHEMA_VERSION = 1
STATUSES = ("ok", "running", "diverged", "failed")
_META_KEY = b"scalefit.schema_version"
_S, _I, _F = pa.string(), pa.int64(), pa.float64()
RUNS_SCHEMA = pa.schema(
    [
        ("run_id", _S),
        ("sweep", _S),
        ("n_layer", _I),
        ("d_model", _I),
        ("n_head", _I),
        ("context", _I),
        ("vocab_size", _I),
        ("n_params", _I),
        ("n_params_nonembed", _I),
        ("flops_per_token", _F),
        ("flops_convention", _S),
        ("tokens_per_step", _I),
        ("schedule", _S),
        ("peak_lr", _F),
        ("warmup_steps", _I),
        ("total_steps", _I),
        ("seed", _I),
        ("dataset", _S),
        ("status", _S),
        ("error", _S),
        ("config_json", _S),
        ("git_sha", _S),
        ("scalefit_version", _S),
        ("schema_version", _I),
    ]
)
CURVES_SCHEMA = pa.schema(
    [
        ("run_id", _S),
        ("step", _I),
        ("tokens", _I),
        ("flops", _F),
        ("lr", _F),
        ("train_loss", _F),
        ("grad_norm", _F),
        ("wall_time", _F),
        ("tokens_per_s", _F),
    ]
)
EVALS_SCHEMA = pa.schema([("run_id", _S), ("step", _I), ("dataset", _S), ("eval_loss", _F)])
_CHUNK = re.compile(r"^(curves|evals)-(\d{6})\.parquet$")


def _to_table(df: pd.DataFrame, schema: pa.Schema, path: Path, run_id: str) -> pa.Table:
    """Arrow table with the schema's columns first (missing ones null), then any extra columns."""
    arrays, fields = [], []
    for fld in schema:
        if fld.name in df.columns:
            arrays.append(_array(df[fld.name], fld.type, path, run_id, fld.name))
        else:
            arrays.append(pa.nulls(len(df), fld.type))
        fields.append(fld)
    for name in [c for c in df.columns if c not in schema.names]:
        arr = pa.array(df[name], from_pandas=True)
        arrays.append(arr)
        fields.append(pa.field(str(name), arr.type))
    meta = {_META_KEY: str(SCHEMA_VERSION).encode()}
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata=meta))


def _array(col: pd.Series, typ: pa.DataType, path: Path, run_id: str, name: str) -> pa.Array:
    """One column as ``typ``; a value that does not fit raises SchemaError naming file, run and column."""
    try:
        if typ == pa.string():
            if pd.api.types.is_string_dtype(col.dtype) and col.dtype != object:
                return pa.array(col, type=typ, from_pandas=True)
            return pa.array([None if _blank(v) else str(v) for v in col.to_numpy(dtype=object)], type=typ)
        numeric = pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype)
        col = col if numeric else pd.to_numeric(col, errors="raise")
        floats = col.to_numpy(dtype=float, na_value=np.nan)
        if typ == pa.float64():
            return pa.array(floats, type=typ)
        missing = np.isnan(floats)
        if not (missing | (floats == np.round(floats))).all():
            raise ValueError(f"non-integer {floats[~missing & (floats != np.round(floats))][0]!r}")
        return pa.array(np.where(missing, 0, floats).astype(np.int64), mask=missing, type=typ)
    except (ValueError, TypeError, pa.ArrowException) as exc:
        raise SchemaError(
            f"column has the wrong type (want {typ}): {exc}",
            file=str(path),
            run_id=run_id,
            column=name,
            fix=f"give {typ} values",
        ) from exc


def _blank(v: Any) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v))


def _atomic_write(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def _rows_frame(rows: Any, run_id: str) -> pd.DataFrame:
    if isinstance(rows, pd.DataFrame):
        df = rows.copy()
    else:
        df = pd.DataFrame([rows] if isinstance(rows, Mapping) else list(rows))
    if "run_id" in df.columns and not (df["run_id"].astype(str) == run_id).all():
        raise DataError(
            "rows belong to another run",
            run_id=run_id,
            column="run_id",
            fix="write each run with its own RunWriter",
        )
    df["run_id"] = run_id
    return df


def _next_seq(run_dir: Path, kind: str) -> int:
    seqs = [int(m.group(2)) for p in run_dir.glob(f"{kind}-*.parquet") if (m := _CHUNK.match(p.name))]
    return max(seqs, default=-1) + 1


class RunWriter:
    """Write one run: its runs-table row now, per-step rows and eval rows in appended chunks.

    ``run_meta`` holds runs-table columns (unknown keys raise `SchemaError`); ``status`` defaults to
    ``'running'``. Re-opening an existing run (a resume) continues the chunk numbering.
    """

    def __init__(self, root: str | os.PathLike, run_id: str, run_meta: Mapping[str, Any] | None = None):
        self.root, self.run_id = Path(root), str(run_id)
        if not self.run_id or "/" in self.run_id or self.run_id.startswith("."):
            raise DataError("invalid run id", run_id=self.run_id, column="run_id", fix="a plain folder name")
        self.dir = self.root / self.run_id
        meta = dict(run_meta or {})
        unknown = sorted(set(meta) - set(RUNS_SCHEMA.names))
        if unknown:
            raise SchemaError(
                "unknown runs-table field",
                run_id=self.run_id,
                field=unknown[0],
                fix=f"use {RUNS_SCHEMA.names}",
            )
        from scalefit import __version__

        meta.update(run_id=self.run_id, schema_version=SCHEMA_VERSION)
        meta.setdefault("status", "running")
        meta.setdefault("scalefit_version", __version__)
        self._meta = meta
        self._write_meta()

    def _write_meta(self) -> None:
        if self._meta["status"] not in STATUSES:
            raise DataError(
                "unknown status",
                run_id=self.run_id,
                column="status",
                value=self._meta["status"],
                fix=f"use one of {STATUSES}",
            )
        path = self.dir / "run.parquet"
        _atomic_write(_to_table(pd.DataFrame([self._meta]), RUNS_SCHEMA, path, self.run_id), path)

    def append(self, rows: Any) -> Path:
        """Append per-step rows (DataFrame, dict or list of dicts with step, lr, train_loss, ...)."""
        return self._append(rows, "curves", CURVES_SCHEMA, ("step", "lr", "train_loss"))

    def append_evals(self, rows: Any) -> Path:
        """Append eval rows in long form (step, dataset, eval_loss)."""
        return self._append(rows, "evals", EVALS_SCHEMA, ("step", "dataset", "eval_loss"))

    def _append(self, rows: Any, kind: str, schema: pa.Schema, required: Sequence[str]) -> Path:
        df = _rows_frame(rows, self.run_id)
        path = self.dir / f"{kind}-{_next_seq(self.dir, kind):06d}.parquet"
        for col in required:
            if col not in df.columns:
                raise DataError(
                    "missing column",
                    file=str(path),
                    run_id=self.run_id,
                    column=col,
                    fix=f"give {list(required)}",
                )
        _atomic_write(_to_table(df, schema, path, self.run_id), path)
        return path

    def set_status(self, status: str, error: str | None = None) -> None:
        """Record the run's final (or current) status and error message in run.parquet."""
        self._meta.update(status=status, error=error)
        self._write_meta()


def write_curves(root: str | os.PathLike, curves: Curves) -> None:
    """Write every run of ``curves`` under ``root``: one chunk each, replacing those runs' old chunks."""
    frame, runs, evals = curves.frame.rename(columns={"loss": "train_loss"}), curves.runs, curves.evals
    for run_id in curves.run_ids:
        meta = runs.loc[run_id].to_dict()
        run_dir = Path(root) / run_id
        old = [p for p in run_dir.glob("*-*.parquet") if _CHUNK.match(p.name)] if run_dir.exists() else []
        meta_row = pd.DataFrame([{**meta, "run_id": run_id, "schema_version": SCHEMA_VERSION}])
        meta_table = _to_table(meta_row, RUNS_SCHEMA, run_dir / "run.parquet", run_id)
        rows = frame[frame["run_id"] == run_id].drop(columns="finite")
        tables = {"curves-000000.parquet": _to_table(rows, CURVES_SCHEMA, run_dir, run_id)}
        if evals is not None and (ev := evals[evals["run_id"] == run_id]).shape[0]:
            tables["evals-000000.parquet"] = _to_table(ev, EVALS_SCHEMA, run_dir, run_id)
        for p in old:
            if p.name not in tables:
                p.unlink()
        for name, table in tables.items():
            _atomic_write(table, run_dir / name)
        _atomic_write(meta_table, run_dir / "run.parquet")


def _read(path: Path) -> pa.Table:
    try:
        with pq.ParquetFile(path) as fh:
            table = fh.read()
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"unreadable Parquet file ({exc})", file=str(path), fix="rewrite it") from exc
    version = int((table.schema.metadata or {}).get(_META_KEY, b"1"))
    if version > SCHEMA_VERSION:
        raise SchemaError("written by a newer scalefit", file=str(path), value=version, fix="upgrade")
    return table


def _to_pandas(tables: list[pa.Table], *, nullable_ints: bool = False) -> pd.DataFrame | None:
    """One DataFrame from tables whose extra columns may differ (missing ones become null)."""
    if not tables:
        return None
    mapper = {pa.int64(): pd.Int64Dtype()}.get if nullable_ints else None
    try:
        table = pa.concat_tables([t.replace_schema_metadata(None) for t in tables], promote_options="default")
    except pa.ArrowException:  # an extra column with different types in different files
        return pd.concat([t.to_pandas(types_mapper=mapper) for t in tables], ignore_index=True)
    return table.to_pandas(types_mapper=mapper)


def _chunks(run_dir: Path, kind: str) -> list[pa.Table]:
    return [_read(p) for p in sorted(run_dir.glob(f"{kind}-*.parquet")) if _CHUNK.match(p.name)]


def _run_dirs(root: Path) -> list[Path]:
    """Run folders under ``root``; a folder with chunks but no run.parquet raises (its rows would be lost)."""
    if not root.is_dir():
        raise DataError("store directory not found", file=str(root), fix="give the folder of the run folders")
    if (root / "run.parquet").exists():
        return [root]
    dirs = sorted(p.parent for p in root.glob("*/run.parquet"))
    orphans = sorted({p.parent for p in root.glob("*/curves-*.parquet")} - set(dirs))
    if orphans:
        raise DataError(
            "run folder has curve chunks but no run.parquet",
            file=str(orphans[0]),
            run_id=orphans[0].name,
            fix="write run.parquet or move it",
        )
    if not dirs:
        raise DataError("no <run_id>/run.parquet found", file=str(root), fix="point at a scalefit store")
    return dirs


def read_curves(root: str | os.PathLike, *, loss: str = "train_loss") -> Curves:
    """Read every run under ``root`` (or the single run directory ``root``) into `Curves`.

    ``loss='eval:<dataset>'`` makes that eval loss the curve (runs without it are left out). Runs with no
    rows yet (e.g. failed before the first log) are left out with a warning naming them. All-null
    optional columns are dropped, so a round trip gives back the columns that were written.
    """
    runs, frames, evals, empty = [], [], [], []
    for run_dir in _run_dirs(Path(root)):
        rows = _chunks(run_dir, "curves")
        if not sum(t.num_rows for t in rows):
            empty.append(run_dir.name)
            continue
        runs.append(_read(run_dir / "run.parquet"))
        frames += rows
        evals += _chunks(run_dir, "evals")
    if not frames:
        raise DataError("no curve rows in the store", file=str(root), fix="train or import some runs first")
    if empty:
        warnings.warn(f"store {root}: runs with no rows left out: {empty}", UserWarning, stacklevel=2)
    runs_df = _to_pandas(runs, nullable_ints=True).drop(columns="schema_version")
    runs_df = _drop_null(runs_df, keep=("run_id",))
    frame = _drop_null(_to_pandas(frames), keep=("run_id", "step", "lr", "train_loss"))
    ev_df = _to_pandas(evals)
    if loss != "train_loss":
        frame = _eval_frame(frame, ev_df, loss, str(root))
        runs_df = runs_df[runs_df["run_id"].isin(frame["run_id"])]
        ev_df = ev_df[ev_df["run_id"].isin(frame["run_id"])]
    frame = frame.rename(columns={"train_loss": "loss"})
    return Curves.from_frame(frame, runs=runs_df, evals=ev_df, source=str(root))


def _drop_null(df: pd.DataFrame, keep: Sequence[str]) -> pd.DataFrame:
    return df.drop(columns=[c for c in df.columns if c not in keep and df[c].isna().all()])


def _eval_frame(frame: pd.DataFrame, evals: pd.DataFrame | None, loss: str, source: str) -> pd.DataFrame:
    """Rows of an eval loss at its eval steps, with the LR logged at that step (NaN if not logged)."""
    dataset = loss.removeprefix("eval:")
    if not loss.startswith("eval:") or evals is None or dataset not in set(evals["dataset"]):
        have = [] if evals is None else sorted(set(evals["dataset"]))
        raise DataError(
            "unknown loss",
            file=source,
            column="loss",
            value=loss,
            fix=f"use 'train_loss' or one of {['eval:' + d for d in have]}",
        )
    ev = evals[evals["dataset"] == dataset].drop_duplicates(["run_id", "step"], keep="last")
    lr = frame.drop_duplicates(["run_id", "step"], keep="last")[["run_id", "step", "lr"]]
    out = ev.merge(lr, on=["run_id", "step"], how="left").rename(columns={"eval_loss": "train_loss"})
    return out.drop(columns="dataset")
