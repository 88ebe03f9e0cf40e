"""The Parquet curve store, schema version 1.

Layout (readable by pandas, pyarrow and DuckDB: ``read_parquet('runs/*/curves-*.parquet')``)::

    <root>/<folder>/run.parquet                one row: the runs table
    <root>/<folder>/curves-<seq>.parquet       per-step rows in chunks; a later chunk wins on a duplicate step
    <root>/<folder>/evals-<seq>.parquet        long form: run_id, step, dataset, eval_loss
    <root>/<folder>/_ckpt/step-<step>.pt       training checkpoints (scalefit.proxy.checkpoint)
    <root>/<folder>/_lease.json, _lease.lock   the writer lease (scalefit.store.lease)

``<folder>`` is ``scalefit.store.run_ids.folder_name(run_id)`` (the run id itself for plain ids, a
reversible percent-encoding for ids such as ``group-a/run-1``); the readable id is the ``run_id`` column.
``<seq>`` is the chunk number, zero-padded to 6 digits and unbounded (``curves-1000000`` follows
``curves-999999``; order is numeric). Everything that is not a table (checkpoints, the lease, temporary
files ``.<name>.<token>.tmp``) starts with ``_`` or ``.``, the prefixes Parquet dataset readers skip,
so ``pd.read_parquet(root)``, ``pyarrow.dataset.dataset(root)`` and DuckDB read the store's tables.

Every file carries ``scalefit.schema_version`` in its Parquet key-value metadata and Parquet page
checksums (verified on read). A chunk also carries ``scalefit.run_id``, ``scalefit.rows``,
``scalefit.step_min`` and ``scalefit.step_max``, checked on read (a chunk of another run, a short or
edited chunk is a `DataError` naming the file). When a run is finished (``set_status`` with ``ok``,
``diverged`` or ``failed``, and every ``write_curves``) its run.parquet gets a manifest
(``scalefit.manifest``: each chunk's rows, step range and SHA-256, and the run's steps): a missing,
extra, foreign or changed chunk of a finished run is then a `DataError` naming the file and, for
missing rows, the exact steps (``read_curves(..., partial=True)``: a warning instead, and the rest read).

Writes: a table is written to a unique temporary name and moved into place; a chunk is claimed with a
hard link that fails if the name exists (then the next number is tried), so concurrent writers never
share or overwrite a chunk. One process writes a run at a time (`RunWriter` holds the run's lease).
The root may also be an object-store URI (``s3://bucket/prefix``, `scalefit.store.fs`): then a file is
one object written in one PUT (no temporary name) and a chunk is claimed with a conditional PUT
(``If-None-Match: *``) that fails if the name exists.
Columns beyond the schema are kept (written after the schema columns). Units: ``tokens`` is cumulative
tokens seen before the step's update, ``flops`` cumulative training FLOPs, ``wall_time`` seconds since
the run started, ``lr`` the LR of the update at ``step``. Losses must be positive (or NaN/inf: a
divergence) and below the float32 maximum.
"""

from __future__ import annotations

import errno
import json
import os
import re
import uuid
import warnings
import weakref
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from scalefit.errors import DataError, SchemaError
from scalefit.provenance import provenance
from scalefit.store.curves import Curves
from scalefit.store.fs import ObjectPath, StorePath, read_source, sha256, store_path
from scalefit.store.lease import DEFAULT_STALE_S, LeasePolicy, RunLease
from scalefit.store.run_ids import check_run_id, folder_name, run_id_of_folder
from scalefit.store.schema import CURVES_SCHEMA, EVALS_SCHEMA, RUNS_SCHEMA, SCHEMA_VERSION, STATUSES

__all__ = ["RunWriter", "run_dir"]
__all__ += ["write_curves", "read_curves", "run_meta", "run_status", "run_statuses", "record_status"]
__all__ += ["rows_before_step", "verify_run"]

_META_KEY = b"scalefit.schema_version"
_RUN_KEY, _ROWS_KEY = b"scalefit.run_id", b"scalefit.rows"
_MIN_KEY, _MAX_KEY, _MANIFEST_KEY = b"scalefit.step_min", b"scalefit.step_max", b"scalefit.manifest"
# Rows to append: a DataFrame, one row as a mapping, or an iterable of such mappings.
Rows = pd.DataFrame | Mapping[str, object] | Iterable[Mapping[str, object]]
_CHUNK = re.compile(r"^(curves|evals)-(\d{6,})\.parquet$")
_KINDS = ("curves", "evals")
_FINAL = ("ok", "diverged", "failed")
_MAX_LOSS = float(np.finfo(np.float32).max)  # no float32/bf16 trainer can log a larger finite loss
_LOSS_COLUMNS = ("train_loss", "eval_loss")


def run_dir(root: str | os.PathLike | ObjectPath, run_id: str) -> StorePath:
    """The folder of ``run_id`` under ``root`` (a path or a URI, `scalefit.store.fs`; the run-id rule of
    `scalefit.store.run_ids`)."""
    return store_path(root) / folder_name(run_id)


def _to_table(df: pd.DataFrame, schema: pa.Schema, path: StorePath, run_id: str) -> pa.Table:
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
    table = pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata=meta))
    _check_values(table, path, run_id)
    return table


def _check_values(table: pa.Table, path: StorePath, run_id: str) -> None:
    """Values no run can have: a loss <= 0 or above the float32 maximum (NaN/inf marks a divergence),
    a negative step, a negative or infinite LR, an eval row without its dataset."""
    checks = [
        (name, "loss must be positive and below the float32 maximum (NaN/inf marks a divergence)")
        for name in _LOSS_COLUMNS
    ]
    checks += [
        ("step", "step must be >= 0"),
        ("lr", "learning rate must be >= 0 and finite (NaN: not logged)"),
    ]
    for name, message in checks:
        if name not in table.column_names:
            continue
        typ = table.schema.field(name).type
        if not (pa.types.is_integer(typ) or pa.types.is_floating(typ)):
            raise SchemaError(
                f"column has the wrong type (want a number, have {typ})",
                file=str(path),
                run_id=run_id,
                column=name,
                fix="rewrite it with scalefit",
            )
        values = table.column(name).to_numpy(zero_copy_only=False).astype(float)
        if name == "step":
            bad = values < 0
        elif name == "lr":
            bad = (values < 0) | np.isinf(values)
        else:
            bad = np.isfinite(values) & ((values <= 0) | (values > _MAX_LOSS))
        if bad.any():
            raise DataError(
                message,
                file=str(path),
                run_id=run_id,
                column=name,
                value=float(values[bad][0]),
                fix="give cross-entropy losses in nats (> 0), steps from 0, LRs >= 0; drop placeholder rows",
            )
    if "step" in table.column_names and table.column("step").null_count:
        raise DataError("row without its step", file=str(path), run_id=run_id, column="step")
    if "eval_loss" in table.column_names and table.column("dataset").null_count:
        raise DataError("eval row without its dataset", file=str(path), run_id=run_id, column="dataset")


def _array(col: pd.Series, typ: pa.DataType, path: StorePath, run_id: str, name: str) -> pa.Array:
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
        if (np.abs(floats[~missing]) >= 2.0**63).any():
            raise ValueError("out of the int64 range")
        return pa.array(np.where(missing, 0, floats).astype(np.int64), mask=missing, type=typ)
    except (ValueError, TypeError, OverflowError, pa.ArrowException) as exc:
        raise SchemaError(
            f"column has the wrong type (want {typ}): {exc}",
            file=str(path),
            run_id=run_id,
            column=name,
            fix=f"give {typ} values",
        ) from exc


def _blank(v: object) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v))


def _tmp_name(path: StorePath) -> StorePath:
    """A temporary name next to ``path``, unique to this write (``.``: dataset readers skip it)."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")


def _write_tmp(table: pa.Table, path: StorePath) -> StorePath:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    try:
        pq.write_table(table, tmp, write_page_checksum=True)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, write_page_checksum=True)
    return sink.getvalue().to_pybytes()


def _atomic_write(table: pa.Table, path: StorePath) -> None:
    if isinstance(path, ObjectPath):  # one PUT: readers see the old object or the new one
        path.write_bytes(_parquet_bytes(table))
        return
    os.replace(_write_tmp(table, path), path)


def _claim(tmp: StorePath, path: StorePath) -> bool:
    """Move ``tmp`` to ``path`` unless ``path`` exists (atomic no-clobber); whether it was claimed."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    except OSError as exc:  # a filesystem without hard links: claim the name, then move the file there
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
            raise
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return False
        os.replace(tmp, path)
        return True
    tmp.unlink()
    return True


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


def _write_run_row(
    path: StorePath, run_id: str, meta: Mapping[str, object], manifest: dict | None = None
) -> None:
    if meta["status"] not in STATUSES:
        raise DataError(
            "unknown status",
            run_id=run_id,
            column="status",
            value=meta["status"],
            fix=f"use one of {STATUSES}",
        )
    table = _to_table(pd.DataFrame([dict(meta)]), RUNS_SCHEMA, path, run_id)
    if manifest is not None:
        extra = {_MANIFEST_KEY: json.dumps(manifest, separators=(",", ":")).encode()}
        table = table.replace_schema_metadata({**table.schema.metadata, **extra})
    _atomic_write(table, path)


# -- chunks ----------------------------------------------------------------------------------------------
def _chunk_paths(folder: StorePath, kind: str) -> list[StorePath]:
    """The run's ``kind`` chunks in numeric order (``curves-1000000`` after ``curves-999999``)."""
    if isinstance(folder, Path) and not folder.is_dir():
        return []
    found = [(int(m.group(2)), p) for p in folder.iterdir() if (m := _CHUNK.match(p.name)) and m[1] == kind]
    return [p for _, p in sorted(found)]


def _next_seq(folder: StorePath, kind: str) -> int:
    paths = _chunk_paths(folder, kind)
    return int(_CHUNK.match(paths[-1].name).group(2)) + 1 if paths else 0


def _chunk_meta(table: pa.Table, run_id: str) -> dict[bytes, bytes]:
    steps = table.column("step").to_numpy(zero_copy_only=False) if table.num_rows else np.zeros(0)
    out = {_RUN_KEY: run_id.encode(), _ROWS_KEY: str(table.num_rows).encode()}
    if steps.size:
        out |= {_MIN_KEY: str(int(steps.min())).encode(), _MAX_KEY: str(int(steps.max())).encode()}
    return out


def _with_chunk_meta(table: pa.Table, run_id: str) -> pa.Table:
    return table.replace_schema_metadata({**(table.schema.metadata or {}), **_chunk_meta(table, run_id)})


def _write_chunk(table: pa.Table, folder: StorePath, kind: str, run_id: str) -> StorePath:
    """Write ``table`` as the run's next ``kind`` chunk, claiming a number no other writer has."""
    if isinstance(folder, ObjectPath):  # claimed by a create-if-absent PUT (If-None-Match: *)
        data, seq = _parquet_bytes(_with_chunk_meta(table, run_id)), _next_seq(folder, kind)
        while not (path := folder / f"{kind}-{seq:06d}.parquet").create_bytes(data):
            seq += 1
        return path
    tmp = _write_tmp(_with_chunk_meta(table, run_id), folder / f"{kind}.parquet")
    try:
        seq = _next_seq(folder, kind)
        while not _claim(tmp, path := folder / f"{kind}-{seq:06d}.parquet"):
            seq += 1
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _read(path: StorePath) -> pa.Table:
    try:
        with pq.ParquetFile(read_source(path), page_checksum_verification=True) as fh:
            table = fh.read()
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise DataError(f"unreadable Parquet file ({exc})", file=str(path), fix="rewrite it") from exc
    try:
        version = int((table.schema.metadata or {}).get(_META_KEY, b"1"))
    except ValueError as exc:
        raise SchemaError("unreadable schema version", file=str(path), fix="rewrite it") from exc
    if version > SCHEMA_VERSION:
        raise SchemaError("written by a newer scalefit", file=str(path), value=version, fix="upgrade")
    return table


def _read_chunk(path: StorePath, run_id: str) -> pa.Table:
    """A chunk, checked: its run id (column and metadata), row count and step range as recorded."""
    table = _read(path)
    meta = table.schema.metadata or {}
    ids = set(table.column("run_id").to_pylist()) if "run_id" in table.column_names else set()
    owner = meta.get(_RUN_KEY, run_id.encode()).decode(errors="replace")
    if owner != run_id or ids - {run_id}:
        raise DataError(
            "chunk belongs to another run (a foreign chunk)",
            file=str(path),
            run_id=run_id,
            column="run_id",
            value=sorted(str(i) for i in {owner, *ids} - {run_id}),
            fix="move the file to its own run's folder, or delete it",
        )
    if "step" not in table.column_names or not pa.types.is_integer(table.schema.field("step").type):
        raise SchemaError(
            "chunk has no integer step column",
            file=str(path),
            run_id=run_id,
            column="step",
            value=str(table.schema.field("step").type) if "step" in table.column_names else None,
            fix="rewrite it with scalefit (steps are int64)",
        )
    _check_values(table, path, run_id)
    recorded = {k: meta.get(k) for k in (_ROWS_KEY, _MIN_KEY, _MAX_KEY)}
    actual = _chunk_meta(table, run_id)
    for key, value in recorded.items():
        if value is not None and value != actual.get(key):
            raise DataError(
                f"chunk differs from what was written ({key.decode()} {value.decode()}, "
                f"read {(actual.get(key) or b'none').decode()})",
                file=str(path),
                run_id=run_id,
                fix="the file was truncated or edited: restore it, or delete the run and train it again",
            )
    return table


def _progressions(steps: np.ndarray) -> list[list[int]]:
    """Sorted distinct steps as arithmetic progressions ``[first, last, stride]`` (a compact manifest)."""
    steps = np.unique(np.asarray(steps, dtype=np.int64))
    out: list[list[int]] = []
    i = 0
    while i < steps.size:
        if i + 1 == steps.size:
            out.append([int(steps[i]), int(steps[i]), 1])
            break
        stride = int(steps[i + 1] - steps[i])
        j = i + 1
        while j + 1 < steps.size and steps[j + 1] - steps[j] == stride:
            j += 1
        out.append([int(steps[i]), int(steps[j]), stride])
        i = j + 1
    return out


def _ranges(steps: np.ndarray) -> list[str]:
    """Steps as exact, compact text: ``7``, ``10-19``, ``100-900 every 100``."""
    out = []
    for a, b, stride in _progressions(steps):
        out.append(str(a) if a == b else f"{a}-{b}" if stride == 1 else f"{a}-{b} every {stride}")
    return out


def _expand(progressions: Sequence[Sequence[int]]) -> np.ndarray:
    parts = [np.arange(a, b + 1, s, dtype=np.int64) for a, b, s in progressions]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def _manifest(folder: StorePath, run_id: str) -> dict[str, object]:
    """What a finished run holds: each chunk's rows, step range and SHA-256, and its distinct steps."""
    out: dict[str, object] = {}
    steps = []
    for kind in _KINDS:
        chunks = {}
        for path in _chunk_paths(folder, kind):
            table = _read_chunk(path, run_id)
            col = table.column("step").to_numpy(zero_copy_only=False)
            if kind == "curves":
                steps.append(col)
            chunks[path.name] = {
                "rows": table.num_rows,
                "step_min": int(col.min()) if col.size else None,
                "step_max": int(col.max()) if col.size else None,
                "sha256": sha256(path),
            }
        out[kind] = chunks
    out["steps"] = _progressions(np.concatenate(steps) if steps else np.zeros(0))
    return out


def _stored_manifest(folder: StorePath) -> dict | None:
    path = folder / "run.parquet"
    try:
        raw = pq.read_schema(read_source(path)).metadata or {}
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"unreadable Parquet file ({exc})", file=str(path), fix="rewrite it") from exc
    if _MANIFEST_KEY not in raw:
        return None
    try:
        manifest = json.loads(raw[_MANIFEST_KEY])
        ok = isinstance(manifest, dict) and all(isinstance(manifest.get(k), dict) for k in _KINDS)
    except ValueError:
        ok = False
    if not ok:
        raise DataError("run.parquet has a damaged manifest", file=str(path), fix="rewrite the run")
    return manifest


class _RunRead:
    """A run folder's checked chunks (``tables[kind]``), checked against a finished run's manifest."""

    def __init__(self, folder: StorePath, run_id: str, *, partial: bool = False) -> None:
        self.folder, self.run_id, self.partial = folder, run_id, partial
        manifest = _stored_manifest(folder) if (folder / "run.parquet").exists() else None
        self.tables: dict[str, list[pa.Table]] = {}
        self.gone: dict[str, list[str]] = {}
        for kind in _KINDS:
            self.tables[kind], self.gone[kind] = self._kind(
                kind, None if manifest is None else manifest[kind]
            )
        for name in self.gone["evals"]:
            info = manifest["evals"][name]
            self._problem(
                DataError(
                    f"eval chunk missing (steps {info.get('step_min')}..{info.get('step_max')})",
                    file=str(folder / name),
                    run_id=run_id,
                    fix="restore the file, or delete the run and train it again",
                )
            )
        if manifest is not None:
            self._missing_steps(manifest)

    def _problem(self, err: DataError) -> None:
        if not self.partial:
            raise err
        warnings.warn(f"store: {err} (left out: partial read)", UserWarning, stacklevel=4)

    def _kind(self, kind: str, listed: dict | None) -> tuple[list[pa.Table], list[str]]:
        """The readable chunks of ``kind``, and the names the manifest lists that are not there."""
        out, seen = [], set()
        for path in _chunk_paths(self.folder, kind):
            seen.add(path.name)
            try:
                if listed is not None and path.name not in listed:
                    raise DataError(
                        "chunk is not in the finished run's manifest (a foreign or later file)",
                        file=str(path),
                        run_id=self.run_id,
                        fix="delete it, or train the run again to take its rows in",
                    )
                if listed is not None and sha256(path) != listed[path.name].get("sha256"):
                    raise DataError(
                        "chunk changed since the run finished (checksum mismatch)",
                        file=str(path),
                        run_id=self.run_id,
                        fix="restore the file, or delete the run and train it again",
                    )
                out.append(_read_chunk(path, self.run_id))
            except DataError as err:
                if listed is None and not path.exists():
                    continue  # removed by the run's writer (a resume) since the listing
                self._problem(err)
        return out, sorted(set(listed or ()) - seen)

    def _missing_steps(self, manifest: dict) -> None:
        want = _expand(manifest.get("steps") or [])
        have = [t.column("step").to_numpy(zero_copy_only=False) for t in self.tables["curves"]]
        missing = np.setdiff1d(want, np.concatenate(have) if have else np.zeros(0, dtype=np.int64))
        if not missing.size:
            return
        exact = ", ".join(_ranges(missing))
        files = [str(self.folder / n) for n in self.gone["curves"]] or [str(self.folder)]
        self._problem(
            DataError(
                f"finished run is missing rows at steps {exact} ({missing.size} steps)",
                file=", ".join(files),
                run_id=self.run_id,
                column="step",
                value=missing.tolist(),
                fix="restore the missing chunk, or delete the run and train it again",
            )
        )


def _open_lease(
    folder: StorePath, run_id: str, policy: LeasePolicy | None, stale_s: float, wait_s: float | None
) -> RunLease | None:
    return None if policy is None else RunLease(folder, run_id, policy=policy, stale_s=stale_s, wait_s=wait_s)


class RunWriter:
    """Write one run: its runs-table row now, per-step rows and eval rows in appended chunks.

    ``run_meta`` holds runs-table columns (unknown keys raise `SchemaError`); ``status`` defaults to
    ``'running'``. Re-opening an existing run (a resume) continues the chunk numbering. The writer
    holds the run's lease (`scalefit.store.lease`) from here until a final ``set_status`` (``ok``,
    ``diverged``, ``failed``) or ``close``: another live writer of the run makes this one wait
    (``lease="wait"``, at most ``lease_wait_s`` if given) or refuse (``lease="refuse"``) with
    `RunLeaseError`; a lease without a heartbeat for ``lease_stale_s`` seconds is taken over.
    """

    def __init__(
        self,
        root: str | os.PathLike | ObjectPath,
        run_id: str,
        run_meta: Mapping[str, object] | None = None,
        *,
        lease: LeasePolicy | None = "wait",
        lease_stale_s: float = DEFAULT_STALE_S,
        lease_wait_s: float | None = None,
    ):
        self.root, self.run_id = store_path(root), check_run_id(run_id)
        self.dir = run_dir(self.root, self.run_id)
        meta = _check_fields(run_meta, self.run_id)
        meta.setdefault("status", "running")
        self._meta = _with_provenance(meta, self.run_id)
        if self._meta["status"] not in STATUSES:
            _write_run_row(self.dir / "run.parquet", self.run_id, self._meta)  # raises, naming the status
        self._lease = _open_lease(self.dir, self.run_id, lease, lease_stale_s, lease_wait_s)
        if self._lease is not None:
            self._lease.acquire()
            weakref.finalize(self, self._lease.release)
        self._write_row()

    def _write_row(self) -> None:
        final = self._meta["status"] in _FINAL
        manifest = _manifest(self.dir, self.run_id) if final else None
        _write_run_row(self.dir / "run.parquet", self.run_id, self._meta, manifest)

    def append(self, rows: Rows) -> StorePath:
        """Append per-step rows (DataFrame, dict or list of dicts with step, lr, train_loss, ...)."""
        return self._append(rows, "curves", CURVES_SCHEMA, ("step", "lr", "train_loss"))

    def append_evals(self, rows: Rows) -> StorePath:
        """Append eval rows in long form (step, dataset, eval_loss)."""
        return self._append(rows, "evals", EVALS_SCHEMA, ("step", "dataset", "eval_loss"))

    def _append(self, rows: Rows, kind: str, schema: pa.Schema, required: Sequence[str]) -> StorePath:
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
        table = _to_table(df, schema, path, self.run_id)
        if self._lease is not None:
            self._lease.check()
        return _write_chunk(table, self.dir, kind, self.run_id)

    def truncate(self, step: int) -> None:
        """Remove the run's stored rows (curves and evals) at steps >= ``step``: what a resume from a
        checkpoint at ``step`` recomputes, so that every step is stored once. A chunk with rows on both
        sides is rewritten in place (atomically) with its earlier rows."""
        if self._lease is not None:
            self._lease.check()
        for kind in _KINDS:
            for path in _chunk_paths(self.dir, kind):
                table = _read_chunk(path, self.run_id)
                steps = table.column("step").to_numpy(zero_copy_only=False)
                keep = steps < step
                if keep.all():
                    continue
                if not keep.any():
                    path.unlink()
                    continue
                _atomic_write(_with_chunk_meta(table.filter(pa.array(keep)), self.run_id), path)

    def set_status(self, status: str, error: str | None = None) -> None:
        """Record the run's final (or current) status and error message in run.parquet; a final status
        (ok, diverged, failed) also records the run's manifest and releases the lease."""
        if self._lease is not None:
            self._lease.check()
        self._meta.update(status=status, error=error)
        self._write_row()
        if status in _FINAL:
            self.close()

    def close(self) -> None:
        """Release the run's lease (the rows written stay); further writes need a new RunWriter."""
        if self._lease is not None:
            self._lease.release()

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_curves(root: str | os.PathLike, curves: Curves) -> None:
    """Write every run of ``curves`` under ``root``: one chunk each, replacing those runs' old chunks.

    Run ids pass the run-id rule (`scalefit.store.run_ids`; ``group-a/run-1`` is stored in folder
    ``group-a%2Frun-1`` and read back as ``group-a/run-1``). Every id is checked before anything is
    written; each run is written under its lease, with a manifest.
    """
    if not isinstance(curves, Curves):
        raise DataError(
            "write_curves needs Curves",
            value=type(curves).__name__,
            fix="build them with scalefit.Curves.from_frame or an importer",
        )
    frame, runs, evals = curves.frame.rename(columns={"loss": "train_loss"}), curves.runs, curves.evals
    folders: dict[str, str] = {}
    for run_id in curves.run_ids:
        name = folder_name(run_id)
        if name.lower() in folders:  # also on case-insensitive filesystems
            raise DataError(
                "two run ids share one folder on a case-insensitive filesystem",
                run_id=run_id,
                column="run_id",
                value=[folders[name.lower()], run_id],
                fix="rename one of the runs",
            )
        folders[name.lower()] = run_id
    for run_id in curves.run_ids:
        folder = run_dir(root, run_id)
        meta = runs.loc[run_id].to_dict()
        meta_row = pd.DataFrame([{**meta, "run_id": run_id, "schema_version": SCHEMA_VERSION}])
        meta_table = _to_table(meta_row, RUNS_SCHEMA, folder / "run.parquet", run_id)
        rows = frame[frame["run_id"] == run_id].drop(columns="finite")
        tables = {"curves-000000.parquet": _to_table(rows, CURVES_SCHEMA, folder, run_id)}
        if evals is not None and (ev := evals[evals["run_id"] == run_id]).shape[0]:
            tables["evals-000000.parquet"] = _to_table(ev, EVALS_SCHEMA, folder, run_id)
        lease = RunLease(folder, run_id, policy="wait").acquire()
        try:
            for kind in _KINDS:
                for p in _chunk_paths(folder, kind):
                    if p.name not in tables:
                        p.unlink()
            for name, table in tables.items():
                _atomic_write(_with_chunk_meta(table, run_id), folder / name)
            manifest = json.dumps(_manifest(folder, run_id), separators=(",", ":")).encode()
            meta_table = meta_table.replace_schema_metadata(
                {**meta_table.schema.metadata, _MANIFEST_KEY: manifest}
            )
            _atomic_write(meta_table, folder / "run.parquet")
        finally:
            lease.release()


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


def _is_run_folder(path: StorePath) -> bool:
    """A run folder's name (an object-store prefix exists when an object is under it)."""
    return not path.name.startswith((".", "_")) and (isinstance(path, ObjectPath) or path.is_dir())


def _run_dirs(root: StorePath) -> list[StorePath]:
    """Run folders under ``root``; a folder with chunks but no run.parquet raises (its rows would be lost)."""
    if not root.is_dir():
        raise DataError("store directory not found", file=str(root), fix="give the folder of the run folders")
    if (root / "run.parquet").exists():
        return [root]
    dirs = sorted(p.parent for p in root.glob("*/run.parquet") if _is_run_folder(p.parent))
    chunked = {
        p.parent for kind in _KINDS for p in root.glob(f"*/{kind}-*.parquet") if _is_run_folder(p.parent)
    }
    orphans = sorted(chunked - set(dirs))
    if orphans:
        raise DataError(
            "run folder has curve chunks but no run.parquet",
            file=str(orphans[0]),
            run_id=orphans[0].name,
            fix="write run.parquet or move it",
        )
    nested = sorted(p.parent.parent for p in root.glob("*/*/run.parquet") if _is_run_folder(p.parent.parent))
    nested = [p for p in nested if p not in set(dirs)]
    if nested:
        raise DataError(
            "run folder nested in a folder (an older scalefit wrote ids with '/' there; it is not read)",
            file=str(nested[0]),
            fix="import the runs again: ids with '/' are now stored in one encoded folder",
        )
    if not dirs:
        raise DataError("no <run_id>/run.parquet found", file=str(root), fix="point at a scalefit store")
    return dirs


def _run_row(folder: StorePath) -> pa.Table:
    """run.parquet of ``folder``, checked: one row, whose run id is the folder's."""
    path = folder / "run.parquet"
    table = _read(path)
    if table.num_rows != 1 or "run_id" not in table.column_names:
        raise DataError(
            "run.parquet must hold one row with a run_id",
            file=str(path),
            column="run_id",
            value=table.num_rows,
            fix="rewrite it with scalefit",
        )
    status = table.column("status")[0].as_py() if "status" in table.column_names else None
    if status is not None and status not in STATUSES:
        raise DataError(
            "unknown status", file=str(path), column="status", value=status, fix=f"use one of {STATUSES}"
        )
    run_id = table.column("run_id")[0].as_py()
    if not isinstance(run_id, str) or _folder_or_none(run_id) != folder.name:
        raise DataError(
            "run.parquet belongs to another run (its run_id is not this folder's)",
            file=str(path),
            run_id=str(run_id),
            column="run_id",
            value=run_id_of_folder(folder.name),
            fix="move the folder to the run's own folder name",
        )
    return table


def _folder_or_none(run_id: str) -> str | None:
    try:
        return folder_name(run_id)
    except DataError:
        return None


def verify_run(root: str | os.PathLike, run_id: str) -> None:
    """Check every file of a stored run (readable, its own, as its manifest says): `DataError` if not."""
    folder = run_dir(root, run_id)
    _run_row(folder)
    _RunRead(folder, run_id)


def read_curves(root: str | os.PathLike, *, loss: str = "train_loss", partial: bool = False) -> Curves:
    """Read every run under ``root`` (or the single run directory ``root``) into `Curves`.

    ``loss='eval:<dataset>'`` makes that eval loss the curve (runs without it are left out). Runs with no
    rows yet (e.g. failed before the first log) are left out with a warning naming them. All-null
    optional columns are dropped, so a round trip gives back the columns that were written.

    Every chunk is checked (`DataError` naming the file): page checksums, its run id, row count and step
    range; a finished run's chunks also against its manifest (missing steps, foreign or changed files).
    ``partial=True`` reads what is intact instead, with a warning naming each file and missing step.
    """
    if not isinstance(loss, str):
        raise DataError("unknown loss", column="loss", value=loss, fix="use 'train_loss' or 'eval:<dataset>'")
    runs, frames, evals, empty = [], [], [], []
    where = store_path(root)  # named in messages: a URI without its query (no credentials)
    for folder in _run_dirs(where):
        row = _run_row(folder)
        run_id = row.column("run_id")[0].as_py()
        found = _RunRead(folder, run_id, partial=partial)
        rows = found.tables["curves"]
        if not sum(t.num_rows for t in rows):
            empty.append(run_id)
            continue
        runs.append(row)
        frames += rows
        evals += found.tables["evals"]
    if not frames:
        raise DataError("no curve rows in the store", file=str(where), fix="train or import some runs first")
    if empty:
        warnings.warn(f"store {where}: runs with no rows left out: {empty}", UserWarning, stacklevel=2)
    runs_df = _to_pandas(runs, nullable_ints=True).drop(columns="schema_version", errors="ignore")
    runs_df = _drop_null(runs_df, keep=("run_id",))
    frame = _drop_null(_to_pandas(frames), keep=("run_id", "step", "lr", "train_loss"))
    ev_df = _to_pandas(evals)
    if loss != "train_loss":
        frame = _eval_frame(frame, ev_df, loss, str(where))
        runs_df = runs_df[runs_df["run_id"].isin(frame["run_id"])]
        ev_df = ev_df[ev_df["run_id"].isin(frame["run_id"])]
    frame = frame.rename(columns={"train_loss": "loss"})
    return Curves.from_frame(frame, runs=runs_df, evals=ev_df, source=str(where))


def _drop_null(df: pd.DataFrame, keep: Sequence[str]) -> pd.DataFrame:
    return df.drop(columns=[c for c in df.columns if c not in keep and df[c].isna().all()])


def _eval_frame(frame: pd.DataFrame, evals: pd.DataFrame | None, loss: str, source: str) -> pd.DataFrame:
    """The curve of an eval loss: every curve row of the runs that have it, with its LR, and the eval
    loss where it was evaluated (NaN, not observed, elsewhere; an eval step without a curve row has a
    NaN LR)."""
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
    ev = _latest(evals[evals["dataset"] == dataset], ["run_id", "step"]).drop(columns="dataset")
    curve = _latest(frame[frame["run_id"].isin(ev["run_id"])], ["run_id", "step"])
    curve = curve.drop(columns=[c for c in ("train_loss", "eval_loss") if c in curve.columns])
    extra = [c for c in ev.columns if c in curve.columns and c not in ("run_id", "step")]
    out = curve.merge(ev.drop(columns=extra), on=["run_id", "step"], how="outer", sort=False)
    out = out.sort_values(["run_id", "step"], kind="stable").reset_index(drop=True)
    return out.rename(columns={"eval_loss": "train_loss"})


def _latest(df: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """One row per ``keys``: the last in chunk order (a later chunk wins, e.g. a resumed run's rows)."""
    return df.drop_duplicates(list(keys), keep="last")


def run_meta(root: str | os.PathLike, run_id: str) -> dict[str, object] | None:
    """The runs-table row of ``run_id`` (its non-null fields), or None when the store has no such run."""
    folder = run_dir(root, run_id)
    if not (folder / "run.parquet").exists():
        return None
    rows = _run_row(folder).to_pylist()
    return {k: v for k, v in rows[0].items() if not _blank(v)}


def run_status(root: str | os.PathLike, run_id: str) -> str | None:
    """The stored ``status`` of ``run_id`` (one of STATUSES), or None when the store has no such run."""
    meta = run_meta(root, run_id)
    return None if meta is None or "status" not in meta else str(meta["status"])


def run_statuses(root: str | os.PathLike, run_ids: Iterable[str] | None = None) -> dict[str, str]:
    """``{run_id: status}`` of the runs in the store (of ``run_ids`` only, if given); a missing store: {}."""
    if run_ids is None:
        folders = [p.parent for p in store_path(root).glob("*/run.parquet") if _is_run_folder(p.parent)]
        run_ids = sorted(run_id_of_folder(p.name) for p in folders)
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
    does not have yet (e.g. a run that failed before its trainer wrote anything). A final status
    records the run's manifest (as `RunWriter.set_status` does).
    """
    run_id = check_run_id(run_id)
    folder = run_dir(root, run_id)
    meta = {**_check_fields(defaults, run_id), **(run_meta(root, run_id) or {})}
    meta.update(status=status, error=error)
    meta = _with_provenance(meta, run_id)
    manifest = _manifest(folder, run_id) if status in _FINAL and meta["status"] in STATUSES else None
    _write_run_row(folder / "run.parquet", run_id, meta, manifest)


def rows_before_step(root: str | os.PathLike, run_id: str, step: int) -> dict[str, pd.DataFrame]:
    """A run's stored rows at steps < ``step``, one per step (a later chunk wins), sorted.

    ``{'curves': per-step rows, 'evals': eval rows}`` with the store's column names (``train_loss``);
    a kind with no such rows is left out. What a resume or a branch from step ``step`` keeps. Its chunks
    are checked as `read_curves` checks them.
    """
    if isinstance(step, bool) or not isinstance(step, int | np.integer):
        raise DataError("step must be an integer", run_id=run_id, column="step", value=step)
    folder = run_dir(root, run_id)
    out = {}
    if not folder.is_dir():
        return out
    found = _RunRead(folder, run_id)
    for kind, keys in (("curves", ["step"]), ("evals", ["step", "dataset"])):
        df = _to_pandas(found.tables[kind])
        if df is None:
            continue
        df = _latest(df, keys)
        df = df[df["step"] < step]
        if len(df):
            out[kind] = df.sort_values(keys, kind="stable").reset_index(drop=True)
    return out
