"""The store on object storage: a real S3-compatible server (moto in server mode) on 127.0.0.1.

The server is started once for the session, on a free port, and is ready when its API answers (polled,
no fixed sleep). Every test writes under its own prefix of one bucket; the endpoint and the test
credentials travel in the store URI's query, so Ray workers reach the same store with nothing else set.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from test_runner import kill_actors_mid_run

boto3 = pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")

from scalefit.cluster.runner import run_sweep  # noqa: E402
from scalefit.cluster.sweep import parse_sweep  # noqa: E402
from scalefit.errors import DataError  # noqa: E402
from scalefit.proxy import checkpoint as ckpt  # noqa: E402
from scalefit.proxy.data import write_token_folder  # noqa: E402
from scalefit.store.fs import ObjectPath, store_path  # noqa: E402
from scalefit.store.lease import LEASE_FILE, RunLease, RunLeaseError  # noqa: E402
from scalefit.store.parquet import RunWriter, read_curves, run_dir, verify_run, write_curves  # noqa: E402
from scalefit.store.sources import load_data  # noqa: E402

BUCKET = "scalefit-test"
READY_DEADLINE_S = 30.0


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """``http://127.0.0.1:<port>`` of a moto S3 server with the bucket BUCKET."""
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    deadline, last = time.monotonic() + READY_DEADLINE_S, None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2):
                break
        except OSError as exc:  # not listening yet
            last = exc
            time.sleep(0.05)
    else:
        server.stop()
        raise RuntimeError(f"moto server at {endpoint} did not answer in {READY_DEADLINE_S:.0f} s: {last}")
    _client(endpoint).create_bucket(Bucket=BUCKET)
    try:
        yield endpoint
    finally:
        server.stop()


def _client(endpoint: str):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing-secret",
    )


@pytest.fixture
def s3_root(s3_endpoint: str) -> str:
    """A fresh store URI (its own prefix) with the endpoint and credentials in its query."""
    query = f"endpoint_url={s3_endpoint}&region=us-east-1&access_key=testing&secret_key=testing-secret"
    return f"s3://{BUCKET}/{uuid.uuid4().hex[:12]}/runs?{query}"


def _keys(endpoint: str, root: str) -> list[str]:
    prefix = store_path(root).key.partition("/")[2] + "/"
    pages = _client(endpoint).get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return sorted(o["Key"][len(prefix) :] for page in pages for o in page.get("Contents", []))


def _raw_rows(endpoint: str, root: str) -> pd.DataFrame:
    """Every stored curve row, straight from the objects (what a plain SQL query over them sees)."""
    client, prefix = _client(endpoint), store_path(root).key.partition("/")[2] + "/"
    frames = [
        pd.read_parquet(io.BytesIO(client.get_object(Bucket=BUCKET, Key=prefix + key)["Body"].read()))
        for key in _keys(endpoint, root)
        if key.split("/")[-1].startswith("curves-")
    ]
    return pd.concat(frames, ignore_index=True)


def _rows(steps: range, offset: float = 0.0) -> list[dict]:
    return [{"step": s, "lr": 0.01, "train_loss": 5.0 - s / 100 + offset, "tokens": 64 * s} for s in steps]


def _flip_byte(endpoint: str, root: str, rel: str) -> None:
    client, key = _client(endpoint), store_path(root).key.partition("/")[2] + "/" + rel
    data = bytearray(client.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    data[len(data) // 2] ^= 0x01
    client.put_object(Bucket=BUCKET, Key=key, Body=bytes(data))


def test_store_paths_of_uris_and_local_roots(s3_root: str, tmp_path: Path) -> None:
    assert store_path(tmp_path) == tmp_path and store_path(f"file://{tmp_path}") == tmp_path
    folder = run_dir(s3_root, "group-a/run-1")
    assert isinstance(folder, ObjectPath) and str(folder).endswith("/runs/group-a%2Frun-1")
    assert str(folder).startswith(f"s3://{BUCKET}/") and "secret" not in repr(folder)


def test_write_curves_and_read_curves_round_trip_on_s3(
    s3_endpoint: str, s3_root: str, tmp_path: Path
) -> None:
    with RunWriter(tmp_path, "group-a/run-1", {"n_params": 100}) as w:
        w.append(_rows(range(0, 50)))
        w.append_evals([{"step": s, "dataset": "val", "eval_loss": 4.0 - s / 100} for s in (0, 25, 49)])
    RunWriter(tmp_path, "b", {"n_params": 200}).append(_rows(range(0, 30), 0.5))
    local = read_curves(tmp_path)
    write_curves(s3_root, local)
    back = read_curves(s3_root)
    assert back.run_ids == local.run_ids
    pd.testing.assert_frame_equal(back.frame, local.frame)
    pd.testing.assert_frame_equal(back.evals, local.evals)
    assert back.runs.loc["b", "n_params"] == 200
    assert {"group-a%2Frun-1/run.parquet", "b/curves-000000.parquet"} <= set(_keys(s3_endpoint, s3_root))
    assert not any(k.endswith((LEASE_FILE, ".tmp")) for k in _keys(s3_endpoint, s3_root))  # released
    ev = read_curves(s3_root, loss="eval:val").run("group-a/run-1")
    assert np.isfinite(ev.loss).sum() == 3
    assert load_data(s3_root).run_ids == local.run_ids  # a URI wherever a store folder is taken


def test_run_writer_appends_and_resumes_on_s3(s3_endpoint: str, s3_root: str) -> None:
    w = RunWriter(s3_root, "r", {"n_params": 10})
    w.append(_rows(range(0, 6)))
    w.append(_rows(range(6, 10)))
    assert "r/_lease.json" in _keys(s3_endpoint, s3_root)  # held while the writer is open
    w.close()
    again = RunWriter(s3_root, "r", {"n_params": 10})  # a resume from a checkpoint at step 7
    again.truncate(7)
    again.append(_rows(range(7, 12)))
    again.set_status("ok")
    keys = _keys(s3_endpoint, s3_root)
    assert [k for k in keys if "curves-" in k] == [f"r/curves-00000{i}.parquet" for i in range(3)]
    c = read_curves(s3_root)
    np.testing.assert_array_equal(c.run("r").steps, np.arange(12))
    assert c.runs.loc["r", "status"] == "ok"
    raw = _raw_rows(s3_endpoint, s3_root)
    assert not raw.duplicated(["run_id", "step"]).any() and sorted(raw["step"]) == list(range(12))
    verify_run(s3_root, "r")


def test_concurrent_appends_claim_distinct_chunks_with_conditional_puts(
    s3_endpoint: str, s3_root: str
) -> None:
    writers = [RunWriter(s3_root, "shared", lease=None) for _ in range(6)]
    barrier = threading.Barrier(len(writers))

    def write(i: int) -> None:
        barrier.wait()
        writers[i].append(_rows(range(10 * i, 10 * i + 10)))

    threads = [threading.Thread(target=write, args=(i,)) for i in range(len(writers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    chunks = [k for k in _keys(s3_endpoint, s3_root) if "/curves-" in k]
    assert len(chunks) == len(writers)  # six writers, six chunk numbers: none overwritten
    raw = _raw_rows(s3_endpoint, s3_root)
    assert sorted(raw["step"]) == list(range(60))
    assert not (store_path(s3_root) / chunks[0]).create_bytes(b"x")  # If-None-Match: * refused


def test_a_lease_of_a_dead_process_is_taken_over_and_a_live_one_refused(s3_root: str) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lease = run_dir(s3_root, "r") / LEASE_FILE
    record = {"owner": "x", "host": os.uname().nodename, "pid": dead.pid, "heartbeat": time.time()}
    lease.write_text(json.dumps({**record, "stale_s": 60.0}))
    with RunWriter(s3_root, "r", lease="refuse") as w:  # taken over at once
        w.append(_rows(range(3)))
    lease.write_text(json.dumps({**record, "host": "another-node", "stale_s": 60.0}))
    with pytest.raises(RunLeaseError) as err:
        RunWriter(s3_root, "r", lease="refuse")
    assert err.value.file == str(lease) and "secret" not in str(err.value)


@pytest.mark.parametrize("existing", ["none", "stale"])
def test_of_racing_writers_on_other_nodes_exactly_one_takes_the_lease(s3_root: str, existing: str) -> None:
    folder = run_dir(s3_root, "r")
    if existing == "stale":  # taken over with If-Match on the ETag read: one winner
        stale = {"owner": "old", "host": "gone-node", "pid": 1, "heartbeat": 0.0, "stale_s": 60.0}
        (folder / LEASE_FILE).write_text(json.dumps(stale))
    leases = [RunLease(folder, "r", policy="refuse") for _ in range(8)]
    for i, lease in enumerate(leases):
        lease.host = f"node-{i}"  # as if each ran on its own node
    barrier, won, refused = threading.Barrier(len(leases)), [], []

    def take(lease: RunLease) -> None:
        barrier.wait()
        try:
            won.append(lease.acquire())
        except RunLeaseError:
            refused.append(lease)

    threads = [threading.Thread(target=take, args=(lease,)) for lease in leases]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert (len(won), len(refused)) == (1, 7)
    assert json.loads((folder / LEASE_FILE).read_text())["owner"] == won[0].token
    won[0].check()
    won[0].release()
    assert not (folder / LEASE_FILE).exists()


def test_integrity_errors_name_the_object(s3_endpoint: str, s3_root: str) -> None:
    for run_id in ("r", "s"):
        with RunWriter(s3_root, run_id) as w:
            w.append(_rows(range(0, 10)))
            w.append(_rows(range(10, 20)))
            w.set_status("ok")
    _flip_byte(s3_endpoint, s3_root, "r/curves-000000.parquet")
    with pytest.raises(DataError) as err:
        read_curves(s3_root)
    assert err.value.file == str(run_dir(s3_root, "r") / "curves-000000.parquet")
    assert err.value.file.startswith(f"s3://{BUCKET}/") and "secret" not in str(err.value)
    prefix = store_path(s3_root).key.partition("/")[2]
    _client(s3_endpoint).delete_object(Bucket=BUCKET, Key=f"{prefix}/s/curves-000001.parquet")
    with pytest.warns(UserWarning, match="missing rows at steps 10-19") as caught:
        got = read_curves(s3_root, partial=True)
    np.testing.assert_array_equal(got.run("s").steps, np.arange(10))
    assert any(str(run_dir(s3_root, "s") / "curves-000001.parquet") in str(w.message) for w in caught)


def test_checkpoints_on_s3_and_a_damaged_newest_falls_back(s3_endpoint: str, s3_root: str) -> None:
    model = torch.nn.Linear(4, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=0.01)
    for step in (10, 20):
        ckpt.save(
            ckpt.ckpt_path(s3_root, "r", step),
            model=model,
            optimizer=opt,
            step=step,
            wall_time=1.0,
            config_json="{}",
        )
    assert ckpt.checkpoint_steps(s3_root, "r") == [10, 20]
    assert {"r/_ckpt/step-00000020.pt", "r/_ckpt/step-00000020.pt.sha256"} <= set(_keys(s3_endpoint, s3_root))
    path, state = ckpt.load_latest(s3_root, "r")
    assert state["step"] == 20 and torch.equal(state["model"]["weight"], model.state_dict()["weight"])
    _flip_byte(s3_endpoint, s3_root, "r/_ckpt/step-00000020.pt")
    with pytest.warns(UserWarning, match="step-00000020.pt"):
        path, state = ckpt.load_latest(s3_root, "r")
    assert state["step"] == 10 and str(path) == str(ckpt.ckpt_path(s3_root, "r", 10))


def test_an_fsspec_memory_store_round_trips(tmp_path: Path) -> None:
    pytest.importorskip("fsspec")
    RunWriter(tmp_path, "a").append(_rows(range(5)))
    root = f"memory://scalefit-{uuid.uuid4().hex[:8]}/runs"
    write_curves(root, read_curves(tmp_path))
    pd.testing.assert_frame_equal(read_curves(root).frame, read_curves(tmp_path).frame)


# -- a sweep whose Ray workers write to the S3 store, with a driver kill and worker kills, then resume --
TINY = {"n_layer": 1, "d_model": 32, "n_head": 2, "context": 32}
SWEEP_STEPS = 200
CHAOS = "chaos"  # the sweep's name (it enters the run ids): one for both stores and the clean reference

_DRIVER = """
import json, os, signal, sys
from scalefit.cluster.runner import run_sweep
from scalefit.cluster.sweep import parse_sweep
from scalefit.proxy.checkpoint import checkpoint_steps
spec, root = parse_sweep(json.loads(sys.argv[1])), sys.argv[2]
ids = [c.run_id for c in spec.expand()]

def log(line):  # called at each progress line: die once a run has written its first checkpoint
    if any(checkpoint_steps(root, r) for r in ids):
        os.kill(os.getpid(), signal.SIGKILL)

run_sweep(spec, root, address=sys.argv[3], log=log, progress_interval=0.2)
"""


@pytest.fixture(scope="module")
def tokens(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A folder with train.bin / val.bin: bytes of scalefit's sources as uint16 tokens."""
    root = Path(__file__).resolve().parents[1]
    text = b"".join(p.read_bytes() for p in sorted((root / "scalefit").glob("*.py")))
    arr = np.frombuffer(text, dtype=np.uint8).astype(np.uint16)
    return str(write_token_folder(arr, tmp_path_factory.mktemp("tokens")))


def chaos_spec(name: str, tokens: str) -> dict:
    """The fault test's sweep: a constant and a cosine run of the tiny model, checkpointed every 20 steps."""
    return {
        "sweep": name,
        "runs": [
            {"model": [TINY], "steps": SWEEP_STEPS, "peak_lr": 0.01, "dataset": tokens, "schedule": s}
            for s in ("constant", "cosine")
        ],
        "train": {"batch_size": 4, "warmup": 2, "eval_every": 40, "checkpoint_every": 20, "device": "cpu"},
        "resources": {"num_cpus": 1, "max_restarts": 10, "max_task_retries": 10},
    }


@pytest.fixture(scope="module")
def clean_sweep(ray_cluster, tokens: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fault test's sweep, uninterrupted, on a local disk: the reference both stores must equal
    (the same sweep name, so the same run ids; each ``run_sweep`` names its actors uniquely)."""
    clean = tmp_path_factory.mktemp("clean")
    run_sweep(parse_sweep(chaos_spec(CHAOS, tokens)), clean)
    return clean


@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_sweep_survives_driver_and_worker_kills_with_every_row_once(
    ray_cluster, tokens, clean_sweep: Path, s3_endpoint: str, s3_root: str, tmp_path: Path, where: str
) -> None:
    """The sweep fault test on a local-disk store and on the S3 store: the driver SIGKILLed mid-sweep,
    then a resubmission during which two workers are SIGKILLed at random steps."""
    root = s3_root if where == "s3" else str(tmp_path / "store")
    raw_spec = chaos_spec(CHAOS, tokens)
    proc = subprocess.run(
        [sys.executable, "-c", _DRIVER, json.dumps(raw_spec), root, ray_cluster.address],
        capture_output=True,
        text=True,
        timeout=300,
        env=ray_cluster.env(),
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert "running" in set(read_curves(root).runs["status"])  # interrupted mid-run
    killed: list[tuple[int, int]] = []
    killer = threading.Thread(target=kill_actors_mid_run, args=(f"{CHAOS}-", 2, SWEEP_STEPS, killed, 11))
    killer.start()
    summary = run_sweep(parse_sweep(raw_spec), root, progress_interval=1.0)
    killer.join()
    assert len(killed) == 2 and (summary.ok, summary.failed) == (2, 0)
    assert any(r["resumed_from"] for r in summary.results) and "secret" not in str(summary)
    if where == "s3":
        raw = _raw_rows(s3_endpoint, root)
    else:
        raw = pd.concat(pd.read_parquet(p) for p in Path(root).glob("*/curves-*.parquet"))
    assert not raw.duplicated(["run_id", "step"]).any()  # 0 duplicated (run, step) rows
    assert raw.groupby("run_id")["step"].apply(sorted).map(list).eq([list(range(SWEEP_STEPS))] * 2).all()
    a, b = (read_curves(r).frame for r in (root, clean_sweep))
    cols = ["step", "lr", "loss", "grad_norm"]
    assert a["run_id"].tolist() == b["run_id"].tolist()
    np.testing.assert_allclose(a[cols].to_numpy(float), b[cols].to_numpy(float), rtol=0, atol=1e-6)
    ea, eb = (read_curves(r, loss=f"eval:{tokens}").frame for r in (root, clean_sweep))
    np.testing.assert_allclose(ea["loss"], eb["loss"], rtol=0, atol=1e-6)
    again = run_sweep(parse_sweep(raw_spec), root)
    assert (again.skipped, again.results) == (2, ())
