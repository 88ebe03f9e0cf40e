"""Parquet store: RunWriter chunks, resume de-duplication, round trip, DuckDB/pyarrow readability."""

from __future__ import annotations

import warnings
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scalefit.errors import DataError, SchemaError
from scalefit.provenance import provenance
from scalefit.store.curves import RUN_LEVEL_COLUMNS, Curves
from scalefit.store.parquet import (
    RunWriter,
    read_curves,
    record_status,
    rows_before_step,
    run_meta,
    run_status,
    run_statuses,
    write_curves,
)
from scalefit.store.schema import RUN_COLUMNS, RUNS_SCHEMA, SCHEMA_VERSION


def _rows(steps: range, loss0: float = 5.0) -> list[dict]:
    return [{"step": s, "lr": 1e-3, "train_loss": loss0 - 0.01 * s, "tokens": 64 * s} for s in steps]


def test_writer_chunks_resume_and_status(tmp_path: Path) -> None:
    w = RunWriter(tmp_path, "r1", {"n_params": 1234, "tokens_per_step": 64, "sweep": "s"})
    w.append(_rows(range(0, 10)))
    resumed = RunWriter(tmp_path, "r1", {"n_params": 1234, "tokens_per_step": 64, "sweep": "s"})
    resumed.append(_rows(range(5, 12), loss0=4.0))  # resumed from step 5: these rows win
    resumed.append_evals([{"step": 10, "dataset": "val", "eval_loss": 3.9}])
    resumed.set_status("ok")
    names = sorted(p.name for p in (tmp_path / "r1").iterdir() if not p.name.startswith("_"))  # + lease lock
    assert names == ["curves-000000.parquet", "curves-000001.parquet", "evals-000000.parquet", "run.parquet"]
    c = read_curves(tmp_path)
    run = c.run("r1")
    np.testing.assert_array_equal(run.steps, np.arange(12))
    np.testing.assert_allclose(run.loss[:5], 5.0 - 0.01 * np.arange(5))
    np.testing.assert_allclose(run.loss[5:], 4.0 - 0.01 * np.arange(5, 12))
    assert run.meta["status"] == "ok" and run.meta["n_params"] == 1234 and run.meta["sweep"] == "s"
    assert c.evals["eval_loss"].tolist() == [3.9]
    assert not list(tmp_path.rglob("*.tmp"))


def test_schema_version_in_metadata_and_types(tmp_path: Path) -> None:
    RunWriter(tmp_path, "r", {"n_params": 7}).append(_rows(range(3)))
    for name in ("run.parquet", "curves-000000.parquet"):
        meta = pq.read_schema(tmp_path / "r" / name).metadata
        assert meta[b"scalefit.schema_version"] == str(SCHEMA_VERSION).encode()
    schema = pq.read_schema(tmp_path / "r" / "curves-000000.parquet")
    assert str(schema.field("step").type) == "int64" and str(schema.field("lr").type) == "double"
    runs = pd.read_parquet(tmp_path / "r" / "run.parquet")
    assert runs["status"].tolist() == ["running"] and runs["schema_version"].tolist() == [1]


def test_readable_by_duckdb_and_pandas_without_scalefit(tmp_path: Path) -> None:
    for i, run_id in enumerate(["a", "b"]):
        w = RunWriter(tmp_path, run_id, {"n_params": 100 * (i + 1)})
        w.append(_rows(range(4)))
        w.append(_rows(range(4, 6)))
    glob = str(tmp_path / "*" / "curves-*.parquet")
    counts = duckdb.sql(
        f"SELECT run_id, count(*) FROM read_parquet('{glob}') GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert counts == [("a", 6), ("b", 6)]
    runs = duckdb.sql(f"SELECT run_id, n_params FROM read_parquet('{tmp_path}/*/run.parquet') ORDER BY 1")
    assert runs.fetchall() == [("a", 100), ("b", 200)]
    assert len(pd.read_parquet(tmp_path / "a" / "curves-000000.parquet")) == 4


def test_eval_loss_as_curve(tmp_path: Path) -> None:
    w = RunWriter(tmp_path, "r", {})
    w.append(_rows(range(0, 100, 10)))
    w.append_evals([{"step": s, "dataset": "val", "eval_loss": 3.0 - s / 100} for s in (0, 50, 90)])
    c = read_curves(tmp_path, loss="eval:val")
    observed = np.isfinite(c.run("r").loss)
    np.testing.assert_array_equal(c.run("r").steps[observed], [0, 50, 90])
    np.testing.assert_allclose(c.run("r").loss[observed], [3.0, 2.5, 2.1])
    with pytest.raises(DataError, match="unknown loss") as err:
        read_curves(tmp_path, loss="eval:test")
    assert err.value.column == "loss"


def test_eval_loss_curve_keeps_every_logged_lr_and_leaves_unevaluated_steps_unobserved(
    tmp_path: Path,
) -> None:
    w = RunWriter(tmp_path, "r", {"n_params": 10})
    w.append([{"step": s, "lr": 0.1 * (1 - s / 100), "train_loss": 5.0 - s / 100} for s in range(0, 100, 5)])
    w.append_evals([{"step": s, "dataset": "val", "eval_loss": 4.0 - s / 100} for s in (0, 40, 80, 100)])
    RunWriter(tmp_path, "no-val", {}).append(_rows(range(5)))  # a run without this eval: left out
    c = read_curves(tmp_path, loss="eval:val")
    assert c.run_ids == ["r"]
    f = c.frame.set_index("step")
    assert f.index.tolist() == [*range(0, 100, 5), 100]  # every curve row, and the eval step after them
    np.testing.assert_allclose(f["lr"].to_numpy()[:-1], [0.1 * (1 - s / 100) for s in range(0, 100, 5)])
    assert np.isnan(f.loc[100, "lr"])  # an eval step without a curve row: its LR was not logged
    np.testing.assert_allclose(f.loc[[0, 40, 80, 100], "loss"], [4.0, 3.6, 3.2, 3.0])
    assert f["loss"].drop([0, 40, 80, 100]).isna().all()  # not observed there, not a divergence
    assert c.runs.loc["r", "status"] == "running"


def test_empty_run_is_left_out_with_warning(tmp_path: Path) -> None:
    RunWriter(tmp_path, "good", {}).append(_rows(range(3)))
    RunWriter(tmp_path, "fresh", {})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        c = read_curves(tmp_path)
    assert c.run_ids == ["good"]
    assert any("fresh" in str(w.message) for w in caught)


def test_writer_rejects_unknown_field_and_status(tmp_path: Path) -> None:
    with pytest.raises(SchemaError) as err:
        RunWriter(tmp_path, "r", {"widht": 3})
    assert err.value.field == "widht"
    w = RunWriter(tmp_path, "r", {})
    with pytest.raises(DataError) as err:
        w.set_status("exploded")
    assert err.value.column == "status" and err.value.run_id == "r"


def test_newer_schema_version_is_refused(tmp_path: Path) -> None:
    RunWriter(tmp_path, "r", {}).append(_rows(range(3)))
    path = tmp_path / "r" / "curves-000000.parquet"
    table = pq.read_table(path)
    pq.write_table(table.replace_schema_metadata({b"scalefit.schema_version": b"99"}), path)
    with pytest.raises(SchemaError, match="newer") as err:
        read_curves(tmp_path)
    assert err.value.file == str(path)


_finite = st.floats(0.5, 12.0, allow_nan=False)
_loss = st.one_of(_finite, st.just(float("nan")), st.just(float("inf")))


@st.composite
def _curves(draw: st.DrawFn) -> Curves:
    rows, runs = [], []
    for i in range(draw(st.integers(1, 3))):
        run_id = f"run-{i}"
        steps = draw(st.lists(st.integers(0, 10_000), min_size=1, max_size=15, unique=True))
        for s in steps:
            rows.append({"run_id": run_id, "step": s, "lr": draw(st.floats(0, 1e-2)), "loss": draw(_loss)})
        runs.append({"run_id": run_id, "n_params": draw(st.integers(1, 10**12)), "schedule": None})
    return Curves.from_frame(pd.DataFrame(rows), runs=pd.DataFrame(runs))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(curves=_curves())
def test_round_trip_property(tmp_path_factory: pytest.TempPathFactory, curves: Curves) -> None:
    root = tmp_path_factory.mktemp("store")
    write_curves(root, curves)
    back = read_curves(root)
    pd.testing.assert_frame_equal(back.frame, curves.frame)
    assert back.run_ids == curves.run_ids
    np.testing.assert_array_equal(back.runs["n_params"].astype("int64"), curves.runs["n_params"])
    assert back.runs["status"].tolist() == curves.runs["status"].tolist()


def test_run_status_and_statuses(tmp_path: Path) -> None:
    assert run_status(tmp_path, "a") is None and run_statuses(tmp_path / "missing") == {}
    RunWriter(tmp_path, "a").set_status("ok")
    RunWriter(tmp_path, "b", {"status": "diverged"})
    RunWriter(tmp_path, "c")
    assert run_status(tmp_path, "a") == "ok" and run_status(tmp_path, "c") == "running"
    assert run_statuses(tmp_path) == {"a": "ok", "b": "diverged", "c": "running"}
    assert run_statuses(tmp_path, ["a", "zz"]) == {"a": "ok"}


def test_record_status_keeps_the_stored_row_and_fills_from_defaults(tmp_path: Path) -> None:
    RunWriter(tmp_path, "r", {"n_params": 7, "sweep": "s"}).append(_rows(range(3)))
    record_status(tmp_path, "r", "failed", "boom", defaults={"n_params": 99, "seed": 3})
    meta = run_meta(tmp_path, "r")
    assert (meta["status"], meta["error"], meta["n_params"], meta["seed"]) == ("failed", "boom", 7, 3)
    assert meta["sweep"] == "s" and meta["schema_version"] == SCHEMA_VERSION
    record_status(tmp_path, "new", "failed", "before any row", defaults={"sweep": "s"})
    assert run_status(tmp_path, "new") == "failed" and run_meta(tmp_path, "new")["sweep"] == "s"
    with pytest.raises(SchemaError):
        record_status(tmp_path, "r", "failed", defaults={"bogus": 1})
    with pytest.raises(DataError):
        record_status(tmp_path, "r", "exploded")


def test_rows_before_step_later_chunk_wins(tmp_path: Path) -> None:
    w = RunWriter(tmp_path, "r")
    w.append(_rows(range(0, 10)))
    w.append(_rows(range(5, 12), loss0=4.0))
    w.append_evals(
        [{"step": 4, "dataset": "val", "eval_loss": 3.0}, {"step": 8, "dataset": "val", "eval_loss": 2.0}]
    )
    w.append_evals([{"step": 4, "dataset": "val", "eval_loss": 2.5}])
    rows = rows_before_step(tmp_path, "r", 7)
    assert rows["curves"]["step"].tolist() == list(range(7))
    np.testing.assert_allclose(
        rows["curves"]["train_loss"], [5.0 - 0.01 * s for s in range(5)] + [3.95, 3.94]
    )
    assert rows["evals"][["step", "eval_loss"]].values.tolist() == [[4, 2.5]]
    assert rows_before_step(tmp_path, "r", 0) == {} and rows_before_step(tmp_path, "none", 5) == {}


def test_runs_table_columns_have_one_definition() -> None:
    assert ("run_id", *RUN_LEVEL_COLUMNS) == RUN_COLUMNS == tuple(RUNS_SCHEMA.names)


def test_every_run_records_version_and_git_sha(tmp_path: Path) -> None:
    RunWriter(tmp_path, "r").append(_rows(range(2)))
    meta, prov = run_meta(tmp_path, "r"), provenance()
    assert meta["scalefit_version"] == prov["scalefit_version"]
    assert meta.get("git_sha") == prov["git_sha"]  # None (so not stored) outside a git checkout
    if prov["git_sha"] is not None:
        assert len(prov["git_sha"]) == 40 and int(prov["git_sha"], 16) >= 0
