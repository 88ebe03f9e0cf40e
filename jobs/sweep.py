"""Run a proxy sweep on Ray: the entry point for ``ray job submit``.

    ray job submit --working-dir . -- python jobs/sweep.py jobs/configs/smoke-cpu.yaml --store /shared/runs
    python jobs/sweep.py jobs/configs/gpu-ladder.yaml --dry-run      # runs, tokens, FLOPs, GPU-hours

Under ``ray job submit`` the driver joins the job's cluster (RAY_ADDRESS); run directly, it starts an
embedded local Ray unless ``--address`` is given. The store must be one every node reaches: an object
store URI (``--store s3://bucket/runs``) or a shared filesystem; under a job the working directory is a
temporary copy, so give ``--store`` (or SCALEFIT_STORE) a URI or an absolute path.
Exit status: 0 when no run failed, 1 otherwise, 2 for a bad sweep file.
"""

from __future__ import annotations

import argparse
import os
import sys

from scalefit.cluster.sweep import describe_plan, load_sweep
from scalefit.errors import ConfigError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("config", help="sweep YAML file (see jobs/configs/)")
    p.add_argument(
        "--store",
        default=os.environ.get("SCALEFIT_STORE", "runs"),
        help="Parquet store root (default $SCALEFIT_STORE or ./runs)",
    )
    p.add_argument("--address", default=None, help="Ray address (default: RAY_ADDRESS, else embedded)")
    p.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    p.add_argument("--progress-interval", type=float, default=10.0, help="seconds between progress lines")
    p.add_argument(
        "--peak-flops", type=float, default=989e12, help="dry run: peak FLOP/s per GPU (H100 bf16)"
    )
    p.add_argument("--mfu", type=float, default=0.4, help="dry run: model FLOPs utilization assumed")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        spec = load_sweep(args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.dry_run:
        print(describe_plan(spec, peak_flops=args.peak_flops, mfu=args.mfu))
        return 0
    from scalefit.cluster.runner import run_sweep  # optional extra: ray (not needed for --dry-run)

    summary = run_sweep(spec, args.store, args.address, progress_interval=args.progress_interval)
    print(summary, flush=True)
    return 1 if summary.failed else 0


if __name__ == "__main__":
    sys.exit(main())
