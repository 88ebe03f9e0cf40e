"""Overhead of the Ray runner: N tiny runs through ``run_sweep`` vs the same runs back to back in one process.

    python benchmarks/sweep_overhead.py                    # N=4 runs at 25, 100 and 400 steps
    python benchmarks/sweep_overhead.py --runs 8 --steps 50 200

Prints JSON. The baseline, measured in the same process and run, is ``scalefit.proxy.train`` called back to
back (torch already imported, one warm-up run first, one torch thread as in a 1-CPU actor). The runner
is timed twice per horizon: one actor (the same serial work plus Ray's costs: actor start, torch import in
the worker, scheduling, summaries) and a pool of one actor per CPU. ``overhead_ratio`` = runner (1 actor)
/ baseline; it falls towards 1 as runs get longer because the runner's cost is per actor and per run, not
per step. Ray's own start-up is reported separately (``ray_init_s``). Data: a token file of scalefit's
own sources (no corpus scan).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TINY = {"n_layer": 1, "d_model": 32, "n_head": 2, "context": 32}


def _tokens(folder: Path) -> str:
    from scalefit.proxy.data import write_token_folder

    text = b"".join(p.read_bytes() for p in sorted((ROOT / "scalefit").glob("*.py")))
    arr = np.frombuffer(text, dtype=np.uint8).astype(np.uint16)
    return str(write_token_folder(arr, folder))


def _spec(steps: int, runs: int, tokens: str, actors: int, tag: str):
    from scalefit.cluster.sweep import parse_sweep

    grid = {
        "model": [TINY],
        "steps": [steps],
        "schedule": ["cosine"],
        "seed": list(range(runs)),
        "dataset": [tokens],
        "peak_lr": [0.01],
    }
    every = max(steps // 2, 1)
    train = {"batch_size": 4, "warmup": 2, "eval_every": 0, "checkpoint_every": every, "device": "cpu"}
    return parse_sweep(
        {
            "sweep": f"overhead-{tag}",
            "grid": grid,
            "train": train,
            "resources": {"num_cpus": 1, "max_actors": actors},
        }
    )


def _baseline(spec, store: Path) -> float:
    from scalefit.proxy.train import train

    t0 = time.perf_counter()
    for cfg in spec.expand():
        result = train(cfg, store)
        assert result.status == "ok", result
    return time.perf_counter() - t0


def _runner(spec, store: Path) -> float:
    from scalefit.cluster.runner import run_sweep

    t0 = time.perf_counter()
    summary = run_sweep(spec, store, log=lambda line: None)
    assert summary.ok == summary.total, summary
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=4)
    p.add_argument("--steps", type=int, nargs="+", default=[25, 100, 400])
    args = p.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray
    import torch

    from scalefit.proxy.train import train

    torch.set_num_threads(1)  # as in the actors: Ray sets OMP_NUM_THREADS to an actor's num_cpus (1 here)
    cpus = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        tokens = _tokens(tmp_path)
        train(_spec(5, 1, tokens, 1, "warm").expand()[0], tmp_path / "warmup")  # imports, kernels, page cache
        t0 = time.perf_counter()
        ray.init(num_cpus=cpus, include_dashboard=False, logging_level="ERROR")
        ray_init_s = time.perf_counter() - t0
        rows = []
        for steps in args.steps:
            base = _baseline(_spec(steps, args.runs, tokens, 1, f"b{steps}"), tmp_path / f"base-{steps}")
            serial = _runner(_spec(steps, args.runs, tokens, 1, f"s{steps}"), tmp_path / f"serial-{steps}")
            pool = _runner(_spec(steps, args.runs, tokens, cpus, f"p{steps}"), tmp_path / f"pool-{steps}")
            rows.append(
                {
                    "steps_per_run": steps,
                    "baseline_s": round(base, 3),
                    "runner_1_actor_s": round(serial, 3),
                    "runner_pool_s": round(pool, 3),
                    "overhead_ratio": round(serial / base, 3),
                    "pool_ratio": round(pool / base, 3),
                    "overhead_s_per_run": round((serial - base) / args.runs, 3),
                }
            )
        ray.shutdown()
    print(
        json.dumps(
            {
                "benchmark": "sweep_overhead",
                "runs": args.runs,
                "cpus": cpus,
                "model": TINY,
                "batch_size": 4,
                "baseline": (
                    "scalefit.proxy.train back to back in one process, 1 torch thread"
                    " (same configs, same run)"
                ),
                "ray_init_s": round(ray_init_s, 3),
                "results": rows,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
