"""End to end: ``ray job submit`` of the CPU smoke sweep to the loopback cluster of ``ray_cluster``."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import scalefit as sf
from scalefit.cluster.sweep import load_sweep

ROOT = Path(__file__).resolve().parents[1]
CONFIG = "jobs/configs/smoke-cpu.yaml"


@pytest.mark.ray
@pytest.mark.slow
def test_ray_job_submit_runs_the_smoke_sweep(ray_cluster, tmp_path: Path) -> None:
    store = tmp_path / "runs"
    cmd = [
        "ray",
        "job",
        "submit",
        "--address",
        ray_cluster.dashboard_url,
        "--working-dir",
        str(ROOT),
        "--runtime-env-json",
        '{"excludes": [".git", "runs", "*.egg-info"]}',
        "--",
        "python",
        "jobs/sweep.py",
        CONFIG,
        "--store",
        str(store),
        "--progress-interval",
        "5",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=480, env=ray_cluster.env(), cwd=ROOT)
    logs = out.stdout + out.stderr
    assert out.returncode == 0, "\n".join(ln for ln in logs.splitlines() if "packaging.py" not in ln)[-4000:]
    assert "succeeded" in logs
    assert "4/4 done" in logs and "tokens/s" in logs  # the progress view reaches the job logs
    assert "sweep smoke-cpu: 4 runs, 0 skipped (already finished), 4 ok" in logs

    spec = load_sweep(ROOT / CONFIG)
    curves = sf.read_curves(store)
    assert sorted(curves.run_ids) == sorted(cfg.run_id for cfg in spec.expand())
    assert set(curves.runs["status"]) == {"ok"} and set(curves.runs["dataset"]) == {"python-stdlib"}
    counts = curves.frame.groupby("run_id")["step"].agg(["count", "min", "max"])
    assert (counts["count"] == 30).all() and (counts["min"] == 0).all() and (counts["max"] == 29).all()
