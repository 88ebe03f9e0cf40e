"""The verbs of the ``scalefit`` command (``scalefit.cli.main``): one handler per verb, taking the parsed
arguments and returning the exit status. Only ``sweep`` and ``demo`` import the Ray runner (inside the
verb: Ray and torch are optional extras), so every other verb runs without them.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from scalefit.cli.demo_reference import run_reference
from scalefit.cluster.sweep import describe_plan, load_sweep
from scalefit.errors import ConfigError, DataError, FitWarning
from scalefit.fitting import api
from scalefit.predict.schedule_choice import best_schedule
from scalefit.predict.targets import Target, compute_optimal, load_fit, predict_target
from scalefit.report.build import (
    SCHEMA,
    assemble,
    curve_entries,
    heldout_summary,
    load_report,
    report_provenance,
    write_report,
)
from scalefit.report.text import parameter_table_text, prediction_text
from scalefit.store.importers.mpl import import_mpl_csv
from scalefit.store.importers.schaipp import import_schaipp_json
from scalefit.store.importers.table import import_table, import_wandb_csv
from scalefit.store.importers.tensorboard import import_tensorboard
from scalefit.store.parquet import write_curves
from scalefit.store.sources import load_data, read_json

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
    names = {"run_id": args.run_id, "step": args.step, "lr": args.lr, "loss": args.loss}
    cols = {k: v for k, v in names.items() if v is not None}
    src, sched = args.source, args.schedule
    if args.format == "table":
        curves = import_table(src, schedule=sched, **cols)
    elif args.format == "wandb":
        curves = import_wandb_csv(src, schedule=sched, **{k: v for k, v in cols.items() if k != "run_id"})
    elif args.format == "tensorboard":
        curves = import_tensorboard(src, run_id=args.run_id, schedule=sched)
    elif args.format == "mpl":
        curves = import_mpl_csv(src)
    else:
        curves = import_schaipp_json(sorted(Path(src).glob("*.json*")) if Path(src).is_dir() else src)
    write_curves(args.out, curves)
    print(f"imported {len(curves)} runs, {len(curves.frame)} rows -> {args.out}")
    return 0


def _run_sweep(args: argparse.Namespace) -> int:
    spec = load_sweep(args.config)
    if args.dry_run:
        print(describe_plan(spec))
        return 0
    from scalefit.cluster.runner import run_sweep  # optional extra: ray

    summary = run_sweep(spec, args.store, address=args.address)
    print(summary)
    return 1 if summary.failed else 0


def _run_fit(args: argparse.Namespace) -> int:
    data = load_data(args.data, loss=args.loss, runs=args.runs)
    fit = api.fit(data, law=args.law, bootstrap=args.bootstrap)
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
    """What ``scalefit predict`` prints: a target prediction per curve-law fit (with the downstream error
    when a map-law fit is given), the schedule family search, and the compute-optimal allocation of every
    static-law fit whose law has a compute-optimal frontier."""
    fits = {Path(p).stem: load_fit(p) for p in fit_paths}
    kinds = {name: f.get_law().kind for name, f in fits.items()}
    curve_fits = {name: f for name, f in fits.items() if kinds[name] == "curve"}
    down = next((f for name, f in fits.items() if kinds[name] == "map"), None)
    frontier_fits = [
        f for name, f in fits.items() if kinds[name] == "static" and hasattr(f.get_law(), "compute_optimal")
    ]
    out: dict[str, Any] = {"targets": []}
    if schedule is not None:
        target = Target(schedule, n_params, tokens_per_step)
        for name, f in curve_fits.items():
            out["targets"].append(predict_target(f, target, name=name, downstream=down))
            if family:
                out["schedules"] = best_schedule(f, target, family)
    if budget is not None:
        out["compute_optimal"] = [r for f in frontier_fits for r in compute_optimal(f, [budget])]
    if not out["targets"] and "compute_optimal" not in out:
        raise ConfigError(
            "nothing to predict",
            field="schedule",
            fix="give --schedule (curve fits) or --budget (chinchilla fit)",
        )
    return json.loads(json.dumps(out, default=float))


def _report_from_files(
    source: str,
    *,
    data: str | None = None,
    heldout: str | None = None,
    schedule: str | None = None,
    n_params: float | None = None,
    loss: str = "train_loss",
    out: str | Path = "report",
) -> dict[str, Path]:
    """What ``scalefit report`` does: re-render a report.json, or report a Fit JSON against ``data``
    (held out: the runs of ``data`` the fit did not see, or ``heldout``); returns the written paths."""
    content = read_json(source, "a report.json or a Fit JSON")
    if isinstance(content, dict) and content.get("schema") == SCHEMA:
        return write_report(load_report(source), out)
    if data is None:
        raise DataError(
            "a Fit report needs the curves",
            file=str(source),
            field="--data",
            fix="give --data STORE_DIR or a bundled dataset name",
        )
    fit = load_fit(source)
    curves = load_data(data, loss=loss)
    fitted = set(fit.data_summary.get("run_ids", []))
    held = heldout.split(",") if heldout else [r for r in curves.run_ids if r not in fitted]
    name = Path(source).stem
    entries = curve_entries(name, fit, curves.select(sorted(fitted | set(held))), held)
    targets = []
    if schedule is not None:
        target = Target(schedule, n_params)
        targets.append(predict_target(fit, target, name=name, fitted=curves.select(sorted(fitted))))
    report = assemble(
        f"scalefit report: {name} on {data}",
        {name: fit},
        curves=entries,
        targets=targets,
        provenance=report_provenance(fit=str(source), data=str(data), loss=loss),
    )
    report["summary"] = heldout_summary(report["heldout"])
    return write_report(report, out)


def _run_report(args: argparse.Namespace) -> int:
    paths = _report_from_files(
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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)  # they are listed in the report's diagnostics
        if args.reference:
            return run_reference(args.out)
        from scalefit.cli.demo import run_demo  # optional extras: ray and torch

        return run_demo(args.out, config=args.config, address=args.address)


VERBS: dict[str, Callable[[argparse.Namespace], int]] = {
    "import": _run_import,
    "sweep": _run_sweep,
    "fit": _run_fit,
    "predict": _run_predict,
    "report": _run_report,
    "demo": _run_demo,
}
