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
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from scalefit.errors import DataError, SchemaError
from scalefit.provenance import provenance
from scalefit.store.curves import Curves
from scalefit.store.schema import CURVES_SCHEMA, EVALS_SCHEMA, RUNS_SCHEMA, SCHEMA_VERSION, STATUSES

__all__ = ["RunWriter"]
__all__ += ["write_curves", "read_curves", "run_meta", "run_status", "run_statuses", "record_status"]
__all__ += ["rows_before_step"]

_META_KEY = b"scalefit.schema_version"
# Rows to append: a DataFrame, one row as a mapping, or an iterable of such mappings.
Rows = pd.DataFrame | Mapping[str, object] | Iterable[Mapping[str, object]]
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


def _blank(v: object) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v))


def _atomic_write(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def _rows_frame(rows: Rows, run_id: str) -> pd.DataFrame:
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


def _check_run_id(run_id: str) -> str:
    run_id = str(run_id)
    if not run_id or "/" in run_id or run_id.startswith("."):
        raise DataError("invalid run id", run_id=run_id, column="run_id", fix="a plain folder name")
    return run_id


def _check_fields(meta: Mapping[str, object] | None, run_id: str) -> dict[str, object]:
    """A copy of ``meta``; a key that is not a runs-table column raises `SchemaError`."""
    meta = dict(meta or {})
    unknown = sorted(set(meta) - set(RUNS_SCHEMA.names))
    if unknown:
        raise SchemaError(
            "unknown runs-table field",
            run_id=run_id,
            field=unknown[0],
            fix=f"use {RUNS_SCHEMA.names}",
        )
    return meta


def _with_provenance(meta: dict[str, object], run_id: str) -> dict[str, object]:
    """``meta`` with its run id and schema version; scalefit version and git sha of this process if unset."""
    prov = provenance()
    meta.update(run_id=run_id, schema_version=SCHEMA_VERSION)
    for key in ("scalefit_version", "git_sha"):
        if _blank(meta.get(key)):
            meta[key] = prov[key]
    return meta


def _write_run_row(path: Path, run_id: str, meta: Mapping[str, object]) -> None:
    if meta["status"] not in STATUSES:
        raise DataError(
            "unknown status",
            run_id=run_id,
            column="status",
            value=meta["status"],
            fix=f"use one of {STATUSES}",
        )
    _atomic_write(_to_table(pd.DataFrame([dict(meta)]), RUNS_SCHEMA, path, run_id), path)


def _next_seq(run_dir: Path, kind: str) -> int:
    seqs = [int(m.group(2)) for p in run_dir.glob(f"{kind}-*.parquet") if (m := _CHUNK.match(p.name))]
    return max(seqs, default=-1) + 1


class RunWriter:
    """Write one run: its runs-table row now, per-step rows and eval rows in appended chunks.

    ``run_meta`` holds runs-table columns (unknown keys raise `SchemaError`); ``status`` defaults to
    ``'running'``. Re-opening an existing run (a resume) continues the chunk numbering.
    """

    def __init__(self, root: str | os.PathLike, run_id: str, run_meta: Mapping[str, object] | None = None):
        self.root, self.run_id = Path(root), _check_run_id(run_id)
        self.dir = self.root / self.run_id
        meta = _check_fields(run_meta, self.run_id)
        meta.setdefault("status", "running")
        self._meta = _with_provenance(meta, self.run_id)
        _write_run_row(self.dir / "run.parquet", self.run_id, self._meta)

    def append(self, rows: Rows) -> Path:
        """Append per-step rows (DataFrame, dict or list of dicts with step, lr, train_loss, ...)."""
        return self._append(rows, "curves", CURVES_SCHEMA, ("step", "lr", "train_loss"))

    def append_evals(self, rows: Rows) -> Path:
        """Append eval rows in long form (step, dataset, eval_loss)."""
        return self._append(rows, "evals", EVALS_SCHEMA, ("step", "dataset", "eval_loss"))

    def _append(self, rows: Rows, kind: str, schema: pa.Schema, required: Sequence[str]) -> Path:
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
        _write_run_row(self.dir / "run.parquet", self.run_id, self._meta)


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
    ev = _latest(evals[evals["dataset"] == dataset], ["run_id", "step"])
    lr = _latest(frame, ["run_id", "step"])[["run_id", "step", "lr"]]
    out = ev.merge(lr, on=["run_id", "step"], how="left").rename(columns={"eval_loss": "train_loss"})
    return out.drop(columns="dataset")


def _latest(df: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """One row per ``keys``: the last in chunk order (a later chunk wins, e.g. a resumed run's rows)."""
    return df.drop_duplicates(list(keys), keep="last")


def run_meta(root: str | os.PathLike, run_id: str) -> dict[str, object] | None:
    """The runs-table row of ``run_id`` (its non-null fields), or None when the store has no such run."""
    path = Path(root) / _check_run_id(run_id) / "run.parquet"
    if not path.exists():
        return None
    rows = _read(path).to_pylist()
    if len(rows) != 1:
        raise DataError("run.parquet must hold one row", file=str(path), run_id=run_id, value=len(rows))
    return {k: v for k, v in rows[0].items() if not _blank(v)}


def run_status(root: str | os.PathLike, run_id: str) -> str | None:
    """The stored ``status`` of ``run_id`` (one of STATUSES), or None when the store has no such run."""
    meta = run_meta(root, run_id)
    return None if meta is None or "status" not in meta else str(meta["status"])


def run_statuses(root: str | os.PathLike, run_ids: Iterable[str] | None = None) -> dict[str, str]:
    """``{run_id: status}`` of the runs in the store (of ``run_ids`` only, if given); a missing store: {}."""
    if run_ids is None:
        run_ids = sorted(p.parent.name for p in Path(root).glob("*/run.parquet"))
    found = {run_id: run_status(root, run_id) for run_id in run_ids}
    return {run_id: status for run_id, status in found.items() if status is not None}


def record_status(
    root: str | os.PathLike,
    run_id: str,
    status: str,
    error: str | None = None,
    *,
    defaults: Mapping[str, object] | None = None,
) -> None:
    """Set a run's ``status`` and ``error`` in its run.parquet, keeping every other field it has.

    ``defaults`` (runs-table fields) fill what the stored row lacks, or make the row of a run the store
    does not have yet (e.g. a run that failed before its trainer wrote anything).
    """
    run_id = _check_run_id(run_id)
    meta = {**_check_fields(defaults, run_id), **(run_meta(root, run_id) or {})}
    meta.update(status=status, error=error)
    _write_run_row(Path(root) / run_id / "run.parquet", run_id, _with_provenance(meta, run_id))


def rows_before_step(root: str | os.PathLike, run_id: str, step: int) -> dict[str, pd.DataFrame]:
    """A run's stored rows at steps < ``step``, one per step (a later chunk wins), sorted.

    ``{'curves': per-step rows, 'evals': eval rows}`` with the store's column names (``train_loss``);
    a kind with no such rows is left out. What a resume or a branch from step ``step`` keeps.
    """
    run_dir = Path(root) / _check_run_id(run_id)
    out = {}
    for kind, keys in (("curves", ["step"]), ("evals", ["step", "dataset"])):
        df = _to_pandas(_chunks(run_dir, kind))
        if df is None:
            continue
        df = _latest(df, keys)
        df = df[df["step"] < step]
        if len(df):
            out[kind] = df.sort_values(keys, kind="stable").reset_index(drop=True)
    return out
