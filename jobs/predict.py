"""Fit, predict the held-out runs, train them and report: the demo flow as a ``ray job submit`` entry point.

    ray job submit --working-dir . -- python jobs/predict.py jobs/configs/demo.yaml --out /shared/demo
    python jobs/predict.py jobs/configs/demo.yaml                      # embedded local Ray

The ladder YAML holds the proxy sweep, the held-out runs, the laws to fit and an optional extrapolation
target (see ``scalefit.cli.demo``). Under ``ray job submit`` the driver joins the job's cluster (RAY_ADDRESS)
and the working directory is a temporary copy: give ``--out`` (or SCALEFIT_OUT) a path every node sees;
the Parquet store goes to ``<out>/runs`` unless ``--store`` says otherwise. Exit status: 0 when every
held-out final loss lies inside its predicted band, 1 when one does not, 2 for a bad ladder file.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

from scalefit.cli.demo import run_demo
from scalefit.errors import FitWarning, ScalefitError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("config", help="ladder YAML (see jobs/configs/demo.yaml)")
    p.add_argument("--out", default=os.environ.get("SCALEFIT_OUT", "scalefit-out"), help="report directory")
    p.add_argument("--store", default=None, help="Parquet store root (default <out>/runs)")
    p.add_argument("--address", default=None, help="Ray address (default: RAY_ADDRESS, else embedded)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FitWarning)  # listed in the report's diagnostics
            return run_demo(args.out, config=args.config, address=args.address, store=args.store)
    except ScalefitError as err:
        print(f"predict: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
