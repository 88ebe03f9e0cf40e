"""The verbs of the ``scalefit`` command (``scalefit.cli.main``): one handler per verb, taking the parsed
arguments and returning the exit status. Only ``sweep`` and ``demo`` import the Ray runner (inside the
verb: Ray and torch are optional extras), so every other verb runs without them.
"""

from __future__ import annotations

import argparse
import glob
import json
import re
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from scalefit.cli.demo_reference import run_reference
from scalefit.cluster.sweep import describe_plan, load_sweep
from scalefit.errors import ConfigError, DataError, FitWarning, ScalefitError
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
from scalefit.store.curves import Curves, concat_curves
from scalefit.store.importers._common import expand_paths, lr_summary, run_summary
from scalefit.store.importers.mpl import import_mpl_csv
from scalefit.store.importers.schaipp import import_schaipp_json
from scalefit.store.importers.table import import_table
from scalefit.store.importers.tensorboard import import_tensorboard
from scalefit.store.importers.wandb import import_wandb_csv
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


# The importers' Python arguments and the `scalefit import` flags that set them: an error's fix that
# names an argument is shown with the flag instead.
IMPORT_FLAGS = {
    "loss_tag=": "--loss-tag",
    "lr_tag=": "--lr-tag",
    "eval_columns=": "--eval",
    "eval_tags=": "--eval",
    "step_base=": "--step-base",
    "run_id=": "--run-id",
    "schedule=": "--schedule",
    "loss=": "--loss",
    "step=": "--step",
    "lr=": "--lr",
    "name=": "--name",
}


def cli_fix(err: ScalefitError, flags: dict[str, str] = IMPORT_FLAGS) -> ScalefitError:
    """The same error with the Python arguments in its fix named as CLI flags (``loss=`` -> ``--loss``)."""
    fix = err.fix
    if not fix:
        return err
    for arg, flag in flags.items():
        fix = re.sub(rf"(?<![\w-]){re.escape(arg)} ?", f"{flag} ", fix)
    fix = fix.replace(" )", ")").replace(" ,", ",").strip()
    if fix == err.fix:
        return err
    return type(err)(
        err.message,
        file=err.file,
        run_id=err.run_id,
        column=err.column,
        field=err.field,
        value=err.value,
        fix=fix,
    )


def _evals(items: Sequence[str] | None) -> dict[str, str] | None:
    """``--eval COLUMN[=DATASET]`` items as {column: dataset}."""
    if not items:
        return None
    return {col: (name or col) for col, _, name in (item.partition("=") for item in items)}


def _import_curves(args: argparse.Namespace) -> Curves:
    src, sched, fmt = list(args.source), args.schedule, args.format
    if fmt not in ("wandb", "tensorboard") and (args.eval or args.step_base != "auto"):
        raise ConfigError(
            "--eval and --step-base apply to --format wandb and tensorboard",
            field="--format",
            value=fmt,
            fix="use --format wandb or --format tensorboard, or drop the flag",
        )
    if fmt != "tensorboard" and (args.loss_tag or args.lr_tag):
        raise ConfigError(
            "--loss-tag and --lr-tag name TensorBoard tags",
            field="--format",
            value=fmt,
            fix="use --format tensorboard, or name columns with --loss and --lr",
        )
    if fmt == "wandb":
        return import_wandb_csv(
            src,
            step=args.step,
            loss=args.loss,
            lr=args.lr,
            run_id=args.run_id,
            name=args.name,
            schedule=sched,
            eval_columns=_evals(args.eval),
            step_base=args.step_base,
        )
    if fmt == "tensorboard":
        if args.step or args.run_id:
            raise ConfigError(
                "--step and --run-id name table columns",
                field="--step" if args.step else "--run-id",
                fix="TensorBoard steps are the event steps; name a single run with --name",
            )
        folders = [p for item in src for p in (sorted(glob.glob(item)) if glob.has_magic(item) else [item])]
        if not folders:
            raise DataError("not found: the pattern matches nothing", file=src[0], fix="give log folders")
        parts = [
            import_tensorboard(
                path,
                run_id=args.name,
                loss_tag=args.loss_tag or args.loss,
                lr_tag=args.lr_tag or args.lr,
                schedule=sched,
                eval_tags=_evals(args.eval),
                step_base=args.step_base,
            )
            for path in folders
        ]
        return concat_curves(parts)
    if fmt == "mpl":
        return concat_curves([import_mpl_csv(path) for path in src])
    if fmt == "schaipp":
        files = [
            f for path in src for f in (sorted(Path(path).glob("*.json*")) if Path(path).is_dir() else [path])
        ]
        return import_schaipp_json(files)
    names = {"run_id": args.run_id, "step": args.step, "lr": args.lr, "loss": args.loss}
    cols = {k: v for k, v in names.items() if v is not None}
    if args.name:
        cols.update(run_id=None, name=args.name)
    files = expand_paths(src, "log table")
    return concat_curves([import_table(path, schedule=sched, **cols) for path in files])


def _run_import(args: argparse.Namespace) -> int:
    try:
        curves = _import_curves(args)
    except ScalefitError as err:
        raise cli_fix(err) from err
    write_curves(args.out, curves)
    runs = curves.runs
    for run in curves:
        line = runs.loc[run.run_id, "import_summary"] if "import_summary" in runs.columns else None
        if not isinstance(line, str):
            rows = curves.frame[curves.frame["run_id"] == run.run_id]
            how = lr_summary(rows, run.schedule, run.schedule is not None)
            line = run_summary(run.run_id, rows, run.evals, how)
        print(line)
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
