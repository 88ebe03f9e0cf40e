"""Shared pytest fixtures: the one real Ray cluster of the test session.

``ray_cluster`` runs ``ray start --head --block`` on 127.0.0.1 (ports picked free, a private temp dir, a
fake GPU, the dashboard on loopback), so the same cluster serves ``ray.init(address=...)`` from the tests
and ``ray job submit`` through the dashboard. It is ready when the Jobs API accepts a job: the dashboard
answering is not enough, the head node's job agent registers later (until then a submission fails with
"No available agent to submit job"). Terminating the blocking ``ray start`` process stops every process
of this cluster and no other (a plain ``ray stop`` would stop every Ray on the machine).

Every test that uses ``ray_cluster`` gets the ``ray`` marker (``-m "not ray"`` leaves them out).
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

# Before anything imports ray (this module imports it only inside the fixture), for this process, the
# `ray start` of the fixture and every `ray job submit` a test runs: an explicit auth mode, because
# Ray >= 2.59 turns token auth on for new local clusters; no Windows/macOS multi-node mode.
RAY_ENV = {
    "RAY_AUTH_MODE": "disabled",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
}
os.environ.update(RAY_ENV)
# One BLAS thread per process, before numpy is first imported: L-BFGS-B makes many tiny BLAS calls,
# and threaded BLAS on 2 cores shared with Ray workers is an order of magnitude slower than serial.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

CLUSTER_CPUS = 6  # logical CPUs: four 0.25-GPU actors (1 CPU each) plus the job driver fit at once
CLUSTER_GPUS = 1  # a fake GPU: lets tests check fractional-GPU packing without one
DASHBOARD_DEADLINE_S = 120.0  # ray start until the dashboard answers
JOB_AGENT_DEADLINE_S = 180.0  # dashboard answering until the Jobs API has run a no-op job


@dataclass(frozen=True)
class RayCluster:
    """A running loopback Ray head: ``address`` for ray.init, ``dashboard_url`` for ray job submit."""

    address: str
    dashboard_url: str
    temp_dir: str

    def env(self) -> dict[str, str]:
        """The environment for a ``ray`` CLI subprocess (``ray job submit``) against this cluster."""
        return {**os.environ, **RAY_ENV}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_dashboard(
    url: str, proc: subprocess.Popen, log: str, timeout: float = DASHBOARD_DEADLINE_S
) -> None:
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


def _wait_for_job_agent(
    url: str, proc: subprocess.Popen, log: str, timeout: float = JOB_AGENT_DEADLINE_S
) -> None:
    """Submit a no-op job until the head accepts it (its job agent has registered), then wait for it to
    succeed. Each refused submission already waits (about 10 s, inside the dashboard) for the agent."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    deadline, probe_id = time.monotonic() + timeout, f"scalefit-probe-{os.getpid()}"
    client, accepted, last = None, False, "no answer yet"
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            client = client or JobSubmissionClient(url)
            if not accepted:
                client.submit_job(entrypoint="python -c pass", submission_id=probe_id)
                accepted = True
            status = client.get_job_status(probe_id)
        except (RuntimeError, OSError) as exc:  # the head answers 500 until its job agent is there
            last = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
            accepted = accepted or "already exists" in str(exc)  # an earlier try got through
            time.sleep(0.5)  # a refusal that came back at once (connection refused): try again shortly
            continue
        if status == JobStatus.SUCCEEDED:
            return
        if status.is_terminal():
            raise RuntimeError(f"the probe job ended {status}: {client.get_job_logs(probe_id)[-2000:]}")
        time.sleep(0.2)  # the probe job is running: poll its status again
    if proc.poll() is not None:
        raise RuntimeError(f"ray start exited early ({proc.returncode}); see {log}")
    raise RuntimeError(
        f"Ray Jobs API at {url} did not run a no-op job in {timeout:.0f} s (last answer: {last}); "
        f"see {log} and dashboard_agent.log under the temp dir"
    )


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
        # Every other fixed default port picked free too: another Ray on this machine (a second test
        # session) holds the defaults, and a dashboard agent that cannot bind never serves the Jobs API.
        f"--dashboard-agent-listen-port={_free_port()}",
        f"--dashboard-agent-grpc-port={_free_port()}",
        f"--metrics-export-port={_free_port()}",
        f"--runtime-env-agent-port={_free_port()}",
        f"--ray-client-server-port={_free_port()}",
        f"--temp-dir={temp_dir}",
        "--disable-usage-stats",
    ]
    log = os.path.join(temp_dir, "ray-start.log")
    with open(log, "w") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env={**os.environ, **RAY_ENV}
        )
    cluster = RayCluster(f"127.0.0.1:{port}", f"http://127.0.0.1:{dash_port}", temp_dir)
    try:
        _wait_for_dashboard(cluster.dashboard_url, proc, log)
        _wait_for_job_agent(cluster.dashboard_url, proc, log)
    except BaseException:
        _stop_head(proc)
        raise
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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The ``ray`` marker on every test that uses the Ray cluster, directly or through a fixture."""
    for item in items:
        if "ray_cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.ray)
