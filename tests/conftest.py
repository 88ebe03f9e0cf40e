"""Shared pytest fixtures: the one real Ray cluster of the test session.

``ray_cluster`` runs ``ray start --head --block`` on 127.0.0.1 (ports picked free, a private temp dir, a
fake GPU, the dashboard on loopback), so the same cluster serves ``ray.init(address=...)`` from the tests
and ``ray job submit`` through the dashboard. Terminating the blocking ``ray start`` process stops every
process of this cluster and no other (a plain ``ray stop`` would stop every Ray on the machine).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

# Before anything imports ray (this module imports it only inside the fixture): an explicit auth mode,
# because Ray >= 2.59 turns token auth on for new local clusters; no Windows/macOS multi-node mode.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ["RAY_AUTH_MODE"] = "disabled"
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# One BLAS thread per process, before numpy is first imported: L-BFGS-B makes many tiny BLAS calls,
# and threaded BLAS on 2 cores shared with Ray workers is an order of magnitude slower than serial.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

CLUSTER_CPUS = 6  # logical CPUs: four 0.25-GPU actors (1 CPU each) plus the job driver fit at once
CLUSTER_GPUS = 1  # a fake GPU: lets tests check fractional-GPU packing without one


@dataclass(frozen=True)
class RayCluster:
    """A running loopback Ray head: ``address`` for ray.init, ``dashboard_url`` for ray job submit."""

    address: str
    dashboard_url: str
    temp_dir: str


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_dashboard(url: str, proc: subprocess.Popen, log: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ray start exited early ({proc.returncode}); see {log}")
        try:
            with urllib.request.urlopen(f"{url}/api/version", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"Ray dashboard at {url} did not come up in {timeout:.0f} s; see {log}")


def _start_head(temp_dir: str) -> tuple[subprocess.Popen, RayCluster]:
    port, dash_port = _free_port(), _free_port()
    cmd = [
        "ray",
        "start",
        "--head",
        "--block",
        "--node-ip-address=127.0.0.1",
        f"--port={port}",
        f"--num-cpus={CLUSTER_CPUS}",
        f"--num-gpus={CLUSTER_GPUS}",
        "--object-store-memory=200000000",
        "--include-dashboard=true",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dash_port}",
        f"--temp-dir={temp_dir}",
        "--disable-usage-stats",
    ]
    log = os.path.join(temp_dir, "ray-start.log")
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    cluster = RayCluster(f"127.0.0.1:{port}", f"http://127.0.0.1:{dash_port}", temp_dir)
    _wait_for_dashboard(cluster.dashboard_url, proc, log)
    return proc, cluster


def _stop_head(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayCluster]:
    """A real Ray head on 127.0.0.1 (CLUSTER_CPUS CPUs, one fake GPU), connected from this process."""
    import ray

    temp_dir = tempfile.mkdtemp(prefix="sfray")  # short: Ray's socket paths must fit 107 bytes
    proc, cluster = _start_head(temp_dir)
    try:
        if ray.is_initialized():  # an embedded Ray an earlier test started in this process
            ray.shutdown()
        ray.init(address=cluster.address, namespace="scalefit-tests", logging_level="ERROR")
        yield cluster
    finally:
        ray.shutdown()
        _stop_head(proc)
        shutil.rmtree(temp_dir, ignore_errors=True)
