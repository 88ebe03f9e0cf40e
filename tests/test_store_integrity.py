"""Store integrity (issue #13): the run-id rule, concurrent writers and the lease, damaged files.

Real Parquet files in a temporary store, real processes for concurrency (``multiprocessing`` spawn,
synchronised by a barrier and events, never by sleeping).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import socket
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scalefit.errors import DataError
from scalefit.store.curves import Curves
from scalefit.store.lease import LEASE_FILE, RunLeaseError
from scalefit.store.parquet import (
    RunWriter,
    read_curves,
    record_status,
    run_dir,
    run_meta,
    run_statuses,
    verify_run,
    write_curves,
)
from scalefit.store.run_ids import check_run_id, folder_name, run_id_of_folder
from scalefit.store.schema import CURVES_SCHEMA

BAD_IDS = ["../victim", "/etc/victim", "a/../b", "a//b", "a/", "./a", "..", ".", "", " a", "a\n", "C:\\x"]
BAD_IDS += ["\\\\host\\share", "a\x00b", "x" * 300]


def _rows(steps: range, loss0: float = 5.0) -> list[dict]:
    return [{"step": s, "lr": 1e-3, "train_loss": loss0 - 0.001 * s} for s in steps]


def _curves(ids: list[str], n: int = 30) -> Curves:
    df = pd.DataFrame(
        [{"run_id": r, "step": s, "lr": 1e-3, "loss": 4.0 - 0.01 * s} for r in ids for s in range(n)]
    )
    return Curves.from_frame(df)


# -- the run-id rule ------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", BAD_IDS)
def test_traversal_absolute_and_malformed_ids_are_refused_everywhere(tmp_path: Path, bad: str) -> None:
    root = tmp_path / "store"
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("x")
    for call in (
        lambda: RunWriter(root, bad),
        lambda: write_curves(root, _curves(["ok-run", bad])),
        lambda: record_status(root, bad, "failed"),
        lambda: run_meta(root, bad),
    ):
        with pytest.raises(DataError) as err:
            call()
        assert err.value.column == "run_id" and err.value.fix
    assert sorted(p.name for p in victim.iterdir()) == ["keep.txt"]
    assert not root.exists() or not any(root.iterdir())  # nothing written, not even the valid run


def test_ids_with_slashes_round_trip_into_one_safe_folder(tmp_path: Path) -> None:
    ids = ["group-a/run-1", "group-a/run-2", "group-a%2Frun-1", "plain_run.3", "é/ü", "_x", ".y"]
    write_curves(tmp_path, _curves(ids))
    folders = sorted(p.name for p in tmp_path.iterdir())
    assert len(folders) == len(ids) and all("/" not in f and not f.startswith((".", "_")) for f in folders)
    assert (tmp_path / "group-a%2Frun-1").is_dir() and (tmp_path / "plain_run.3").is_dir()
    back = read_curves(tmp_path)
    assert sorted(back.run_ids) == sorted(ids)
    assert back.frame.groupby("run_id").size().to_dict() == dict.fromkeys(ids, 30)
    assert set(run_statuses(tmp_path)) == set(ids)
    runs = pd.read_parquet(tmp_path / "group-a%2Frun-1" / "run.parquet")
    assert runs["run_id"].tolist() == ["group-a/run-1"]  # the readable name is the column


def test_ids_that_differ_in_case_only_are_refused_together(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="case-insensitive") as err:
        write_curves(tmp_path, _curves(["Run-A", "run-a"]))
    assert err.value.run_id in ("Run-A", "run-a") and not any(tmp_path.iterdir())


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1, max_size=40), st.text(min_size=1, max_size=40))
def test_folder_names_are_safe_reversible_and_collision_free(a: str, b: str) -> None:
    try:
        fa = folder_name(a)
    except DataError:
        return
    assert run_id_of_folder(fa) == a == check_run_id(a)
    assert "/" not in fa and "\\" not in fa and fa not in (".", "..") and not fa.startswith((".", "_"))
    assert len(fa.encode()) <= 255
    try:
        fb = folder_name(b)
    except DataError:
        return
    assert (fa == fb) == (a == b)


def test_nested_folder_of_an_older_store_is_reported_not_skipped(tmp_path: Path) -> None:
    RunWriter(tmp_path, "top").append(_rows(range(3)))
    nested = tmp_path / "group-a"
    RunWriter(nested, "run-1").append(_rows(range(3)))  # what `group-a/run-1` used to become
    with pytest.raises(DataError, match="nested") as err:
        read_curves(tmp_path)
    assert err.value.file == str(nested)


# -- concurrent writers ------------------------------------------------------------------------------
def _append_worker(root: str, run_id: str, offset: int, chunks: int, lease: str | None, barrier) -> None:
    barrier.wait()  # both start together
    writer = RunWriter(root, run_id, lease=lease)
    for i in range(chunks):
        start = offset + 10 * i
        writer.append(_rows(range(start, start + 10)))
        writer.append_evals([{"step": start, "dataset": "val", "eval_loss": 3.0}])
    writer.close()


def _run_two(target, args_a: tuple, args_b: tuple) -> None:
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=target, args=(*a, barrier)) for a in (args_a, args_b)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0


@pytest.mark.parametrize("lease", ["wait", None])
def test_two_processes_appending_to_one_run_lose_nothing(tmp_path: Path, lease: str | None) -> None:
    """With the lease the second waits; without it the chunk claims alone keep every row."""
    root = str(tmp_path)
    _run_two(_append_worker, (root, "r", 0, 25, lease), (root, "r", 1000, 25, lease))
    names = sorted(p.name for p in (tmp_path / "r").iterdir())
    assert names.count("run.parquet") == 1 and not [n for n in names if n.endswith(".tmp")]
    assert LEASE_FILE not in names  # released
    raw = duckdb.sql(f"SELECT step FROM read_parquet('{tmp_path}/r/curves-*.parquet')").df()
    assert sorted(raw["step"]) == list(range(250)) + list(range(1000, 1250))  # every row once
    evals = duckdb.sql(f"SELECT step FROM read_parquet('{tmp_path}/r/evals-*.parquet')").df()
    assert len(evals) == 50 and evals["step"].is_unique
    assert len(read_curves(tmp_path).frame) == 500


def _hold_lease(root: str, run_id: str, ready, release, die: bool) -> None:
    writer = RunWriter(root, run_id)
    ready.set()
    if die:
        os.kill(os.getpid(), signal.SIGKILL)
    release.wait(timeout=120)
    writer.set_status("ok")


def _holder(tmp_path: Path, die: bool = False):
    ctx = mp.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=_hold_lease, args=(str(tmp_path), "r", ready, release, die))
    proc.start()
    assert ready.wait(timeout=120)
    return proc, release


def test_a_live_lease_refuses_or_waits_and_a_released_one_is_taken(tmp_path: Path) -> None:
    proc, release = _holder(tmp_path)
    try:
        with pytest.raises(RunLeaseError) as err:
            RunWriter(tmp_path, "r", lease="refuse")
        assert err.value.run_id == "r" and err.value.file.endswith(LEASE_FILE) and err.value.fix
        with pytest.raises(RunLeaseError):
            RunWriter(tmp_path, "r", lease="wait", lease_wait_s=0.3)
    finally:
        release.set()
        proc.join(timeout=120)
    assert proc.exitcode == 0
    writer = RunWriter(tmp_path, "r", lease="refuse")  # released: taken at once
    writer.append(_rows(range(2)))
    writer.set_status("ok")


def test_the_lease_of_a_killed_writer_is_taken_over_at_once(tmp_path: Path) -> None:
    proc, _ = _holder(tmp_path, die=True)
    proc.join(timeout=120)
    assert proc.exitcode == -signal.SIGKILL
    assert (tmp_path / "r" / LEASE_FILE).exists()  # the dead writer never released it
    RunWriter(tmp_path, "r", lease="refuse").set_status("ok")


def _foreign_lease(tmp_path: Path, age_s: float) -> None:
    (tmp_path / "r").mkdir(parents=True, exist_ok=True)
    record = {
        "owner": "other",
        "host": f"not-{socket.gethostname()}",
        "pid": 1,
        "heartbeat": time.time() - age_s,
    }
    (tmp_path / "r" / LEASE_FILE).write_text(json.dumps(record))


def test_a_lease_of_another_node_is_honoured_until_stale(tmp_path: Path) -> None:
    _foreign_lease(tmp_path, age_s=1.0)
    with pytest.raises(RunLeaseError):
        RunWriter(tmp_path, "r", lease="refuse", lease_stale_s=60)
    _foreign_lease(tmp_path, age_s=120.0)  # no heartbeat for 2 minutes: stale
    RunWriter(tmp_path, "r", lease="refuse", lease_stale_s=60).set_status("ok")


def test_a_writer_whose_lease_was_taken_over_cannot_write(tmp_path: Path) -> None:
    writer = RunWriter(tmp_path, "r")
    writer.append(_rows(range(3)))
    _foreign_lease(tmp_path, age_s=0.0)  # another node took the run over (it thought us dead)
    with pytest.raises(RunLeaseError, match="taken over"):
        writer.append(_rows(range(3, 6)))
    assert len(list((tmp_path / "r").glob("curves-*.parquet"))) == 1


# -- damaged files ----------------------------------------------------------------------------------
def _finished(tmp_path: Path, run_id: str = "r", chunks: int = 4, status: str = "ok") -> RunWriter:
    w = RunWriter(tmp_path, run_id, {"n_params": 10})
    for i in range(chunks):
        w.append(_rows(range(10 * i, 10 * i + 10)))
    w.set_status(status)
    return w


def test_a_deleted_chunk_of_a_finished_run_names_the_file_and_the_steps(tmp_path: Path) -> None:
    _finished(tmp_path)
    gone = tmp_path / "r" / "curves-000001.parquet"
    gone.unlink()
    with pytest.raises(DataError, match="missing rows") as err:
        read_curves(tmp_path)
    assert err.value.file == str(gone) and err.value.value == list(range(10, 20))
    with pytest.raises(DataError):
        verify_run(tmp_path, "r")
    with pytest.warns(UserWarning, match=r"missing rows at steps 10-19 \(10 steps\)"):
        part = read_curves(tmp_path, partial=True)
    assert part.run("r").steps.tolist() == [*range(10), *range(20, 40)]


def test_a_chunk_of_another_run_is_a_foreign_chunk(tmp_path: Path) -> None:
    RunWriter(tmp_path, "a").append(_rows(range(5)))
    RunWriter(tmp_path, "b").append(_rows(range(5)))
    intruder = tmp_path / "a" / "curves-000001.parquet"
    intruder.write_bytes((tmp_path / "b" / "curves-000000.parquet").read_bytes())
    with pytest.raises(DataError, match="another run") as err:
        read_curves(tmp_path)
    assert err.value.file == str(intruder) and err.value.run_id == "a"


def test_a_chunk_added_to_a_finished_run_is_refused(tmp_path: Path) -> None:
    _finished(tmp_path)
    extra = tmp_path / "r" / "curves-000009.parquet"
    extra.write_bytes((tmp_path / "r" / "curves-000000.parquet").read_bytes())
    with pytest.raises(DataError, match="manifest") as err:
        read_curves(tmp_path)
    assert err.value.file == str(extra)


def test_every_single_byte_flip_of_a_finished_chunk_is_reported(tmp_path: Path) -> None:
    _finished(tmp_path, chunks=1)
    path = tmp_path / "r" / "curves-000000.parquet"
    good = path.read_bytes()
    for pos in range(0, len(good), 3):
        flipped = bytearray(good)
        flipped[pos] ^= 0x10
        path.write_bytes(bytes(flipped))
        with pytest.raises(DataError) as err:
            read_curves(tmp_path)
        assert err.value.file == str(path), pos
    path.write_bytes(good)
    assert len(read_curves(tmp_path).frame) == 10


def test_a_flipped_byte_in_a_page_of_a_running_run_fails_its_page_checksum(tmp_path: Path) -> None:
    w = RunWriter(tmp_path, "r")
    w.append([{"step": s, "lr": 1e-3, "train_loss": 1.0 + s / 7} for s in range(200)])  # not finished
    path = tmp_path / "r" / "curves-000000.parquet"
    data = bytearray(path.read_bytes())
    col = pq.ParquetFile(path).metadata.row_group(0).column(CURVES_SCHEMA.names.index("train_loss"))
    start = col.dictionary_page_offset or col.data_page_offset
    pos = start + col.total_compressed_size // 2  # inside the pages of train_loss
    data[pos] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match="unreadable") as err:
        read_curves(tmp_path)
    assert err.value.file == str(path)


def test_chunk_numbering_is_unbounded_and_numeric(tmp_path: Path) -> None:
    w = RunWriter(tmp_path, "r")
    w.append(_rows(range(5)))
    (tmp_path / "r" / "curves-000000.parquet").rename(tmp_path / "r" / "curves-999999.parquet")
    assert w.append(_rows(range(3, 8), loss0=4.0)).name == "curves-1000000.parquet"
    w.set_status("ok")
    run = read_curves(tmp_path).run("r")
    np.testing.assert_array_equal(run.steps, np.arange(8))
    np.testing.assert_allclose(run.loss[3:], 4.0 - 0.001 * np.arange(3, 8))  # the later chunk won


def test_a_copied_run_folder_is_not_read_as_another_run(tmp_path: Path) -> None:
    RunWriter(tmp_path, "a").append(_rows(range(3)))
    (tmp_path / "b").mkdir()
    for p in (tmp_path / "a").iterdir():
        (tmp_path / "b" / p.name).write_bytes(p.read_bytes())
    with pytest.raises(DataError, match="another run") as err:
        read_curves(tmp_path)
    assert err.value.file == str(tmp_path / "b" / "run.parquet")


def test_store_reads_as_a_plain_dataset_without_scalefit(tmp_path: Path) -> None:
    for run_id in ("a", "group/b"):
        w = _finished(tmp_path, run_id, chunks=2)
        w.close()
    ckpt = run_dir(tmp_path, "a") / "_ckpt"  # where checkpoints live (scalefit.proxy.checkpoint)
    ckpt.mkdir()
    (ckpt / "step-00000020.pt").write_bytes(b"not parquet")
    (run_dir(tmp_path, "a") / ".curves-000005.parquet.123.tmp").write_bytes(b"half a file")
    everything = pd.read_parquet(tmp_path)  # every table file, nothing else
    assert len(everything) == 2 * 20 + 2
    dataset = ds.dataset(tmp_path, format="parquet")
    assert len(dataset.files) == 6 and not [f for f in dataset.files if "_ckpt" in f or f.endswith(".tmp")]
    curves = duckdb.sql(
        f"SELECT run_id, count(*) FROM read_parquet('{tmp_path}/*/curves-*.parquet') GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert curves == [("a", 20), ("group/b", 20)]


@pytest.mark.parametrize("loss", [-1.0, 0.0, 1e308])
def test_impossible_losses_are_refused_by_the_writers(tmp_path: Path, loss: float) -> None:
    w = RunWriter(tmp_path, "r")
    with pytest.raises(DataError) as err:
        w.append([{"step": 0, "lr": 1e-3, "train_loss": loss}])
    assert err.value.column == "train_loss" and err.value.value == loss and err.value.run_id == "r"
    with pytest.raises(DataError) as err:
        w.append_evals([{"step": 0, "dataset": "val", "eval_loss": loss}])
    assert err.value.column == "eval_loss"
    df = pd.DataFrame({"run_id": "x", "step": [0, 1], "lr": 1e-3, "loss": [3.0, loss]})
    try:
        curves = Curves.from_frame(df)
    except DataError:
        return  # refused where it is read in (issue #12)
    with pytest.raises(DataError) as err:
        write_curves(tmp_path / "other", curves)
    assert err.value.column == "train_loss"


def test_non_finite_losses_are_recorded_as_a_divergence(tmp_path: Path) -> None:
    w = RunWriter(tmp_path, "r")
    w.append([{"step": 0, "lr": 1e-3, "train_loss": 3.0}, {"step": 1, "lr": 1e-3, "train_loss": np.inf}])
    w.set_status("diverged", "non-finite training loss")
    assert read_curves(tmp_path).runs.loc["r", "status"] == "diverged"


def test_the_heartbeat_renews_a_held_lease(tmp_path: Path) -> None:
    writer = RunWriter(tmp_path, "r", lease_stale_s=0.4)  # renewed every 0.1 s
    path = tmp_path / "r" / LEASE_FILE
    first = json.loads(path.read_text())
    assert first["stale_s"] == 0.4 and first["pid"] == os.getpid()
    deadline = time.monotonic() + 60
    while json.loads(path.read_text())["heartbeat"] == first["heartbeat"]:  # wait for the renewal
        assert time.monotonic() < deadline, "the heartbeat was never renewed"
        time.sleep(0.02)
    writer.close()
    assert not path.exists()
