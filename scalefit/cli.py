"""The ``scalefit`` command: import, sweep, fit, predict, report, demo.

Each verb is a thin shell over the Python API; heavy modules are imported inside the verb, so that
``scalefit --help`` is instant. Errors are one line on stderr (``scalefit: error: ...``, exit 2);
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scalefit.errors import ScalefitError

EXAMPLES: dict[str, str] = {
    "import": "scalefit import runs.csv --format table --run-id name --step iter --lr lr --loss loss "
    "--out store/\n  scalefit import csv_400/ --format mpl --out store/",
    "sweep": "scalefit sweep jobs/configs/smoke.yaml --store runs/ --dry-run",
    "fit": "scalefit fit runs/ --law momentum --runs cosine_24000,constant_24000 --out fit.json\n"
    "  scalefit fit chinchilla-epoch --law chinchilla --bootstrap 200 --out chin.json",
    "predict": "scalefit predict fit.json --schedule wsd:peak=3e-4,steps=24000,decay=0.2 "
    "--family wsd\n  scalefit predict chin.json --budget 5.88e23",
    "report": "scalefit report fit.json --data runs/ --heldout wsd_20000_24000 --out report/\n"
    "  scalefit report report/report.json --out report/   (re-render a JSON twin)",
    "demo": "scalefit demo                # proxy sweep on real text, ~10 min on 2 CPU cores\n"
    "  scalefit demo --reference    # fit bundled published curves, seconds",
}


def _sub(subs: Any, name: str, help_text: str) -> argparse.ArgumentParser:
    return subs.add_parser(
        name,
        help=help_text,
        description=help_text,
        epilog=f"example:\n  {EXAMPLES[name]}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _add_import(subs: Any) -> None:
    p = _sub(subs, "import", "Import existing training logs into a scalefit Parquet store.")
    p.add_argument("source", help="file or directory to import")
    p.add_argument("--format", default="table", choices=["table", "wandb", "tensorboard", "mpl", "schaipp"])
    p.add_argument("--out", required=True, help="store directory to write")
    for col in ("run-id", "step", "lr", "loss"):
        p.add_argument(f"--{col}", default=None, help=f"column holding the {col} (table/wandb)")
    p.add_argument("--schedule", default=None, help="schedule string when the log has no LR column")


def _add_sweep(subs: Any) -> None:
    p = _sub(subs, "sweep", "Run a proxy sweep (YAML spec) on Ray; an embedded local Ray by default.")
    p.add_argument("config", help="sweep YAML file")
    p.add_argument("--store", default="runs", help="Parquet store directory (default ./runs)")
    p.add_argument("--address", default=None, help="Ray cluster address (default: embedded local Ray)")
    p.add_argument("--dry-run", action="store_true", help="print the plan and exit")


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs", default=None, help="comma-separated run ids to fit on (default: all)")
    p.add_argument("--loss", default="train_loss", help="loss column, or eval:<dataset> (store only)")


def _add_fit(subs: Any) -> None:
    p = _sub(subs, "fit", "Fit a scaling law to curves (a store directory or a bundled dataset name).")
    p.add_argument("data", help="store directory or bundled dataset name (e.g. mpl-400m)")
    p.add_argument("--law", default="momentum", help="law name (momentum, multipower, chinchilla, ...)")
    _add_data_args(p)
    p.add_argument("--bootstrap", type=int, default=0, help="bootstrap resamples over runs for CIs")
    p.add_argument("--out", default="fit.json", help="where to write the Fit JSON")


def _add_predict(subs: Any) -> None:
    p = _sub(subs, "predict", "Predict a target run (curve, final loss, band) from one or more fits.")
    p.add_argument("fits", nargs="+", help="Fit JSON files (curve law, chinchilla, downstream)")
    p.add_argument("--schedule", default=None, help="target schedule string (sets steps and peak LR)")
    p.add_argument("--n-params", type=float, default=None, help="target model size (parameters)")
    p.add_argument("--tokens-per-step", type=float, default=None, help="tokens per optimizer step")
    p.add_argument("--budget", type=float, default=None, help="compute budget in FLOPs (chinchilla fit)")
    p.add_argument("--family", default=None, choices=["wsd", "cosine"], help="search this schedule family")
    p.add_argument("--out", default=None, help="write the prediction JSON here")


def _add_report(subs: Any) -> None:
    p = _sub(subs, "report", "Write the HTML report, its JSON twin and a Markdown summary.")
    p.add_argument("source", help="a Fit JSON (with --data) or a report.json to re-render")
    p.add_argument("--data", default=None, help="store directory or bundled dataset name")
    p.add_argument("--heldout", default=None, help="comma-separated held-out run ids (default: unfitted)")
    p.add_argument("--schedule", default=None, help="target schedule string to extrapolate to")
    p.add_argument("--n-params", type=float, default=None, help="target model size (parameters)")
    p.add_argument("--loss", default="train_loss", help="loss column, or eval:<dataset> (store only)")
    p.add_argument("--out", default="report", help="output directory (default ./report)")


def _add_demo(subs: Any) -> None:
    p = _sub(subs, "demo", "End to end: proxy sweep, fit, predict held-out runs, train them, report.")
    p.add_argument("--reference", action="store_true", help="fit the bundled published curves instead")
    p.add_argument("--out", default="scalefit-out", help="output directory (default ./scalefit-out)")
    p.add_argument("--config", default=None, help="ladder YAML (default: the built-in CPU demo)")
    p.add_argument("--address", default=None, help="Ray cluster address (default: embedded local Ray)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``scalefit`` command."""
    parser = argparse.ArgumentParser(
        prog="scalefit",
        description="Predict a large LM training run from small proxy runs.",
        epilog="examples:\n  " + "\n  ".join(v.split("\n")[0] for v in EXAMPLES.values()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show the traceback on errors")
    subs = parser.add_subparsers(dest="verb", metavar="VERB")
    for add in (_add_import, _add_sweep, _add_fit, _add_predict, _add_report, _add_demo):
        add(subs)
    return parser


def _write_json(obj: Any, path: str | None) -> None:
    text = json.dumps(obj, indent=2, default=str)
    if path is None:
        print(text)
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(text + "\n")
    print(f"wrote {path}")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    # Fits are many small L-BFGS problems: a multi-threaded BLAS only adds contention (10x slower on a
    # busy 2-core machine). Set before numpy is first imported; an explicit setting wins.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    if args.verb is None:
        parser.print_help()
        return 0
    try:
        return int(VERBS[args.verb](args) or 0)
    except (ScalefitError, FileNotFoundError, IsADirectoryError, PermissionError) as err:
        if args.debug:
            traceback.print_exc()
        else:
            print(f"scalefit: error: {_one_line(err)} (run with --debug for the traceback)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("scalefit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`
        sys.stderr.close()
        return 0


def _run_import(args: argparse.Namespace) -> int:
    from scalefit import importers, store

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
    from scalefit import sweep

    spec = sweep.load_sweep(args.config)
    if args.dry_run:
        print(sweep.describe_plan(spec))
        return 0
    from scalefit import runner

    summary = runner.run_sweep(spec, args.store, address=args.address)
    print(summary)
    return 1 if summary.failed else 0


def _run_fit(args: argparse.Namespace) -> int:
    from scalefit import api
    from scalefit.predict import load_data

    data = load_data(args.data, loss=args.loss, runs=args.runs)
    fit = api.fit(data, law=args.law, bootstrap=args.bootstrap)
    from scalefit.report import parameter_table_text

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
    from scalefit.report import prediction_text

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
    from scalefit.predict import Target, best_schedule, compute_optimal, load_fit, predict_target

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
    from scalefit.report import report_from_args

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
    from scalefit import demo
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


def _one_line(err: BaseException) -> str:
    text = str(err) if not isinstance(err, OSError) else f"{err.strerror}: {err.filename}"
    return " ".join(text.split())


__all__ = ["EXAMPLES", "build_parser", "main"]
