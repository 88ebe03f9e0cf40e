"""The Ray runner on a real loopback cluster (the session fixture ``ray_cluster``, with one fake GPU).

Runs are tiny GPTs on a token file made from this repository's own Python source (real text, no corpus
scan), so each test spends its time in Ray and the store, not in data preparation.
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import scalefit as sf
from scalefit.cluster.runner import NAMESPACE, ray_map, run_sweep
from scalefit.cluster.sweep import parse_sweep
from scalefit.proxy.data import write_token_folder
from scalefit.store import datasets

pytestmark = pytest.mark.ray  # every test here uses the ray_cluster fixture

ROOT = Path(__file__).resolve().parents[1]
TINY = {"n_layer": 1, "d_model": 32, "n_head": 2, "context": 32}


@pytest.fixture(scope="module")
def tokens(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A folder with train.bin / val.bin: bytes of scalefit's sources as uint16 tokens."""
    text = b"".join(p.read_bytes() for p in sorted((ROOT / "scalefit").glob("*.py")))
    arr = np.frombuffer(text, dtype=np.uint8).astype(np.uint16)
    return str(write_token_folder(arr, tmp_path_factory.mktemp("tokens")))


def _spec(name: str, grids: list[dict], steps: int, tokens: str, **resources: object):
    runs = [{"model": [TINY], "steps": steps, "peak_lr": 0.01, "dataset": tokens, **g} for g in grids]
    train = {"batch_size": 4, "warmup": 2, "eval_every": 0, "checkpoint_every": 10, "device": "cpu"}
    return parse_sweep(
        {"sweep": name, "runs": runs, "train": train, "resources": {"num_cpus": 1, **resources}}
    )


def _assert_every_step_once(curves: sf.Curves, steps: int) -> None:
    for run_id in curves.run_ids:
        got = curves.frame.loc[curves.frame["run_id"] == run_id, "step"].to_numpy()
        np.testing.assert_array_equal(got, np.arange(steps), err_msg=run_id)


def test_sweep_completes_reads_back_and_a_resubmission_trains_nothing(ray_cluster, tokens, tmp_path) -> None:
    spec = _spec("basic", [{"schedule": "cosine", "family": {"decay": 0.5, "resolution": 4}}], 40, tokens)
    lines: list[str] = []
    summary = run_sweep(spec, tmp_path, log=lines.append, progress_interval=1.0)
    assert (summary.total, summary.ok, summary.failed, summary.skipped) == (3, 3, 0, 0)
    assert any("3/3 done" in line and "tokens/s" in line for line in lines)
    curves = sf.read_curves(tmp_path)
    assert sorted(curves.run_ids) == sorted(c.run_id for c in spec.expand())
    assert set(curves.runs["status"]) == {"ok"} and set(curves.runs["sweep"]) == {"basic"}
    _assert_every_step_once(curves, 40)
    trunk, branch = (c for c in spec.expand() if c.schedule.kind != "cosine")
    f = curves.frame.set_index(["run_id", "step"])
    np.testing.assert_array_equal(f.loc[branch.run_id]["loss"][:20], f.loc[trunk.run_id]["loss"][:20])
    assert f.loc[branch.run_id]["lr"].iloc[-1] < f.loc[trunk.run_id]["lr"].iloc[-1] == 0.01

    chunks = {p: p.stat().st_mtime_ns for p in tmp_path.glob("*/*.parquet")}
    again = run_sweep(spec, tmp_path, log=lines.append)
    assert (again.skipped, again.ok, again.results) == (3, 0, ())
    assert {p: p.stat().st_mtime_ns for p in tmp_path.glob("*/*.parquet")} == chunks


def test_four_quarter_gpu_actors_share_one_gpu_and_failed_runs_are_recorded(ray_cluster, tokens, tmp_path):
    good = {"schedule": "constant", "seed": [0, 1, 2, 3]}
    bad = {"family": {"decay": 0.5, "resolution": 4}, "dataset": str(tmp_path / "no-such-tokens")}
    spec = _spec("gpu4", [good, bad], 60, tokens, num_gpus=0.25, max_actors=4)
    summary = run_sweep(spec, tmp_path / "store", progress_interval=1.0)
    assert (summary.ok, summary.failed) == (4, 2)
    ok = [r for r in summary.results if r["status"] == "ok"]
    assert len({r["pid"] for r in ok}) == 4  # four actors ...
    assert max(r["started"] for r in ok) < min(r["finished"] for r in ok)  # ... training at the same time
    trunk, branch = (c for c in spec.expand() if c.data.dataset.endswith("no-such-tokens"))
    runs = {
        c.run_id: pd.read_parquet(tmp_path / "store" / c.run_id / "run.parquet").iloc[0]
        for c in (trunk, branch)
    }
    assert runs[trunk.run_id]["status"] == "failed" and "token file not found" in runs[trunk.run_id]["error"]
    assert runs[branch.run_id]["status"] == "failed" and "did not finish ok" in runs[branch.run_id]["error"]
    assert runs[trunk.run_id]["sweep"] == "gpu4" and runs[branch.run_id]["schedule"] == str(branch.schedule)


def kill_actors_mid_run(
    prefix: str, kills: int, steps: int, log: list[tuple[int, int]], seed: int = 7
) -> None:
    """SIGKILL a busy actor's worker process ``kills`` times, each at a random step of its run (also
    used by the object-store sweep test)."""
    import ray

    rng = random.Random(seed)
    deadline = time.monotonic() + 120
    while len(log) < kills and time.monotonic() < deadline:
        names = [
            a["name"]
            for a in ray.util.list_named_actors(all_namespaces=True)
            if a["namespace"] == NAMESPACE and a["name"].startswith(prefix)
        ]
        target = rng.randrange(5, steps - 10)
        for name in rng.sample(names, len(names)):
            actor = ray.get_actor(name, namespace=NAMESPACE)
            try:
                status = ray.get(actor.status.remote(), timeout=5)
            except ray.exceptions.RayError:
                continue
            if status and status["step"] is not None and status["step"] >= target:
                pid = ray.get(actor.pid.remote(), timeout=5)
                os.kill(pid, signal.SIGKILL)
                log.append((pid, status["step"]))
                break
        time.sleep(0.02)


def test_killed_actors_restart_and_every_run_resumes_with_each_step_once(ray_cluster, tokens, tmp_path):
    steps, kills, killed = 200, 3, []
    spec = _spec(
        "chaos",
        [{"schedule": ["constant", "cosine", "linear"]}],
        steps,
        tokens,
        max_restarts=10,
        max_task_retries=10,
    )
    killer = threading.Thread(target=kill_actors_mid_run, args=("chaos-", kills, steps, killed))
    killer.start()
    summary = run_sweep(spec, tmp_path, progress_interval=1.0)
    killer.join()
    assert len(killed) == kills and all(step >= 5 for _, step in killed)
    assert (summary.ok, summary.failed) == (3, 0)
    assert any(r["resumed_from"] for r in summary.results)  # a retried run picked up its checkpoint
    curves = sf.read_curves(tmp_path)
    _assert_every_step_once(curves, steps)
    raw = pd.concat(pd.read_parquet(p) for p in tmp_path.glob("*/curves-*.parquet"))
    assert raw.groupby("run_id")["step"].nunique().eq(steps).all()  # no gap was left by a kill
    assert not raw.duplicated(["run_id", "step"]).any()  # and no step stored twice, even in raw files


def test_ray_map_keeps_order_with_bounded_in_flight(ray_cluster) -> None:
    assert ray_map(math.factorial, range(12), max_in_flight=3) == [math.factorial(i) for i in range(12)]
    offset = 10
    assert ray_map(lambda x: (x + offset) ** 2, [1, 2, 3]) == [121, 144, 169]
    assert ray_map(abs, []) == []


def test_forecast_fits_on_ray_equal_the_serial_forecast(ray_cluster) -> None:
    """The runner's Ray map is a drop-in ``map_fn`` for ``sf.forecast``: the same forecast, fit for fit."""
    curves = datasets.load("mpl-400m")
    train = curves.select(["cosine_24000", "constant_24000", "wsdcon_9"])
    target = curves.select(["wsd_20000_24000"]).without_loss()
    serial = sf.forecast(train, target, laws=["momentum", "finals-power"])
    remote = sf.forecast(train, target, laws=["momentum", "finals-power"], map_fn=ray_map)
    pd.testing.assert_frame_equal(remote.predict(), serial.predict())
    pd.testing.assert_frame_equal(remote.errors, serial.errors)
    assert remote.weights == serial.weights and len(serial.folds) >= 3


def test_a_damaged_run_is_a_named_error_and_the_other_runs_train(ray_cluster, tokens, tmp_path) -> None:
    spec = _spec("damaged", [{"schedule": "constant", "seed": [0, 1, 2]}], 20, tokens)
    garbage, corrupt, fresh = spec.expand()
    (tmp_path / garbage.run_id).mkdir(parents=True)
    (tmp_path / garbage.run_id / "run.parquet").write_bytes(b"not a parquet file")
    first = run_sweep(_spec("damaged", [{"schedule": "constant", "seed": 1}], 20, tokens), tmp_path)
    assert first.ok == 1
    chunk = sorted((tmp_path / corrupt.run_id).glob("curves-*.parquet"))[0]
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0x01  # a finished run with a flipped byte must not be skipped as ok
    chunk.write_bytes(bytes(data))
    lines: list[str] = []
    summary = run_sweep(spec, tmp_path, log=lines.append)
    assert (summary.ok, summary.failed, summary.skipped) == (1, 2, 0)
    errors = {r["run_id"]: r["error"] for r in summary.results if r["status"] == "failed"}
    assert "run.parquet" in errors[garbage.run_id] and "unreadable" in errors[garbage.run_id]
    assert chunk.name in errors[corrupt.run_id]
    assert any(garbage.run_id in line and "not trained" in line for line in lines)
    assert sf.read_curves(tmp_path / fresh.run_id).run_ids == [fresh.run_id]


def test_two_concurrent_sweeps_on_one_store_store_every_step_once(ray_cluster, tokens, tmp_path) -> None:
    spec = _spec("twice", [{"schedule": ["constant", "cosine"]}], 40, tokens)
    summaries = []
    threads = [threading.Thread(target=lambda: summaries.append(run_sweep(spec, tmp_path))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(summaries) == 2 and all(s.failed == 0 for s in summaries)
    raw = pd.concat(pd.read_parquet(p) for p in tmp_path.glob("*/curves-*.parquet"))
    assert not raw.duplicated(["run_id", "step"]).any()  # every (run, step) once, no lost row
    assert raw.groupby("run_id")["step"].nunique().eq(40).all() and raw["run_id"].nunique() == 2
    curves = sf.read_curves(tmp_path)  # every file intact, as each run's manifest says
    _assert_every_step_once(curves, 40)
    assert set(curves.runs["status"]) == {"ok"}
    again = run_sweep(spec, tmp_path)
    assert (again.skipped, again.results) == (2, ())


_DRIVER = """
import json, os, signal, sys
from pathlib import Path
from scalefit.cluster.runner import run_sweep
from scalefit.cluster.sweep import parse_sweep
spec, root = parse_sweep(json.loads(sys.argv[1])), Path(sys.argv[2])

def log(line):  # called at each progress line: die once a run has passed its second checkpoint
    if any(len(list(p.glob("step-*.pt"))) >= 2 for p in root.glob("*/_ckpt")):
        os.kill(os.getpid(), signal.SIGKILL)

run_sweep(spec, root, address=sys.argv[3], log=log, progress_interval=0.2)
"""


def _raw_rows(root: Path) -> pd.DataFrame:
    return pd.concat(pd.read_parquet(p) for p in root.glob("*/curves-*.parquet"))


def test_a_killed_driver_resumes_with_every_row_once_equal_to_an_uninterrupted_sweep(
    ray_cluster, tokens, tmp_path
) -> None:
    raw_spec = {
        "sweep": "driver",
        "runs": [{"model": [TINY], "steps": 120, "peak_lr": 0.01, "dataset": tokens, "schedule": "cosine"}],
        "train": {"batch_size": 4, "warmup": 2, "eval_every": 20, "checkpoint_every": 20, "device": "cpu"},
        "resources": {"num_cpus": 1},
    }
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    proc = subprocess.run(
        [sys.executable, "-c", _DRIVER, json.dumps(raw_spec), str(killed), ray_cluster.address],
        capture_output=True,
        text=True,
        timeout=300,
        env=ray_cluster.env(),
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    (run_id,) = [c.run_id for c in parse_sweep(raw_spec).expand()]
    assert sf.read_curves(killed).runs.loc[run_id, "status"] == "running"  # interrupted mid-run
    summary = run_sweep(parse_sweep(raw_spec), killed)
    assert summary.ok == 1 and summary.results[0]["resumed_from"] >= 40
    run_sweep(parse_sweep(raw_spec), clean)
    raw = _raw_rows(killed)
    assert not raw.duplicated(["run_id", "step"]).any() and sorted(raw["step"]) == list(range(120))
    a, b = (sf.read_curves(r).frame for r in (killed, clean))
    cols = ["step", "lr", "loss", "grad_norm"]
    np.testing.assert_allclose(a[cols].to_numpy(float), b[cols].to_numpy(float), rtol=0, atol=1e-6)
    ea, eb = (sf.read_curves(r, loss=f"eval:{tokens}").frame for r in (killed, clean))
    assert ea.loc[ea["loss"].notna(), "step"].tolist() == list(range(0, 121, 20))
    np.testing.assert_allclose(ea["loss"], eb["loss"], rtol=0, atol=1e-6)
