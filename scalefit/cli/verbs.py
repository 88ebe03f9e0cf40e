"""The verbs of the ``scalefit`` command (``scalefit.cli.main``): one handler per verb, taking the parsed
arguments and returning the exit status. Heavy modules are imported inside each handler, so that
``scalefit --help`` stays instant.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["VERBS"]


def _write_json(obj: Any, path: str | None) -> None:
    text = json.dumps(obj, indent=2, default=str)
    if path is None:
        print(text)
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(text + "\n")
    print(f"wrote {path}")


def _run_import(args: argparse.Namespace) -> int:
    from scalefit.store import importers
    from scalefit.store import parquet as store

    names = {"run_id": args.run_id, "step": args.step, "lr": args.lr, "loss": args.loss}
    cols = {k: v for k, v in names.items() if v is not None}
    src, sched = args.source, args.schedule
    if args.format == "table":
        curves = importers.import_table(src, schedule=sched, **cols)
    elif args.format == "wandb":
        curves = importers.import_wandb_csv(
            src, schedule=sched, **{k: v for k, v in cols.items() if k != "run_id"}
        )
    elif args.format == "tensorboard":
        curves = importers.import_tensorboard(src, run_id=args.run_id, schedule=sched)
    elif args.format == "mpl":
        curves = importers.import_mpl_csv(src)
    else:
        curves = importers.import_schaipp_json(
            sorted(Path(src).glob("*.json*")) if Path(src).is_dir() else src
        )
    store.write_curves(args.out, curves)
    print(f"imported {len(curves)} runs, {len(curves.frame)} rows -> {args.out}")
    return 0


def _run_sweep(args: argparse.Namespace) -> int:
    from scalefit.cluster import sweep

    spec = sweep.load_sweep(args.config)
    if args.dry_run:
        print(sweep.describe_plan(spec))
        return 0
    from scalefit.cluster import runner

    summary = runner.run_sweep(spec, args.store, address=args.address)
    print(summary)
    return 1 if summary.failed else 0


def _run_fit(args: argparse.Namespace) -> int:
    from scalefit.fitting import api
    from scalefit.predict.targets import load_data

    data = load_data(args.data, loss=args.loss, runs=args.runs)
    fit = api.fit(data, law=args.law, bootstrap=args.bootstrap)
    from scalefit.report.build import parameter_table_text

    print(parameter_table_text(fit))
    _write_json(fit.to_dict(), args.out)
    return 0


def _run_predict(args: argparse.Namespace) -> int:
    result = _predict_from_files(
        args.fits,
        schedule=args.schedule,
        n_params=args.n_params,
        tokens_per_step=args.tokens_per_step,
        budget=args.budget,
        family=args.family,
    )
    from scalefit.report.build import prediction_text

    print(prediction_text(result), file=sys.stderr if args.out is None else sys.stdout)
    _write_json(result, args.out)
    return 0


def _predict_from_files(
    fit_paths: Sequence[str],
    *,
    schedule: str | None = None,
    n_params: float | None = None,
    tokens_per_step: float | None = None,
    budget: float | None = None,
    family: str | None = None,
) -> dict[str, Any]:
    """What ``scalefit predict`` prints: a target prediction per curve fit, the schedule family search,
    the compute-optimal allocation (chinchilla fits) and the downstream error (downstream fits)."""
    from scalefit.errors import ConfigError
    from scalefit.predict.targets import Target, best_schedule, compute_optimal, load_fit, predict_target

    fits = {Path(p).stem: load_fit(p) for p in fit_paths}
    static = {k: f for k, f in fits.items() if f.law in ("chinchilla", "overtraining")}
    down = next((f for f in fits.values() if f.law == "downstream"), None)
    curve_fits = {k: f for k, f in fits.items() if k not in static and f.law != "downstream"}
    out: dict[str, Any] = {"targets": []}
    if schedule is not None:
        target = Target(schedule, n_params, tokens_per_step)
        for name, fit in curve_fits.items():
            out["targets"].append(predict_target(fit, target, name=name, downstream=down))
            if family:
                out["schedules"] = best_schedule(fit, target, family)
    if budget is not None:
        out["compute_optimal"] = [
            r for f in static.values() if f.law == "chinchilla" for r in compute_optimal(f, [budget])
        ]
    if not out["targets"] and "compute_optimal" not in out:
        raise ConfigError(
            "nothing to predict",
            field="schedule",
            fix="give --schedule (curve fits) or --budget (chinchilla fit)",
        )
    return json.loads(json.dumps(out, default=float))


def _run_report(args: argparse.Namespace) -> int:
    from scalefit.report.build import report_from_args

    paths = report_from_args(
        args.source,
        data=args.data,
        heldout=args.heldout,
        schedule=args.schedule,
        n_params=args.n_params,
        loss=args.loss,
        out=args.out,
    )
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0


def _run_demo(args: argparse.Namespace) -> int:
    from scalefit.cli import demo
    from scalefit.errors import FitWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)  # they are listed in the report's diagnostics
        if args.reference:
            return demo.run_reference(args.out)
        return demo.run_demo(args.out, config=args.config, address=args.address)


VERBS = {
    "import": _run_import,
    "sweep": _run_sweep,
    "fit": _run_fit,
    "predict": _run_predict,
    "report": _run_report,
    "demo": _run_demo,
}
