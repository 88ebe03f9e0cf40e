"""The verbs of the ``scalefit`` command (``scalefit.cli.main``): one handler per verb, taking the parsed
arguments and returning the exit status. Only ``sweep`` and ``demo`` import the Ray runner (inside the
verb: Ray and torch are optional extras), so every other verb runs without them.
"""

from __future__ import annotations

import argparse
import glob
import json
import multiprocessing
import re
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from scalefit.cli.demo_reference import run_reference
from scalefit.cluster.sweep import describe_plan, load_sweep
from scalefit.errors import ConfigError, DataError, FitWarning, ScalefitError
from scalefit.fitting import api
from scalefit.fitting.result import Fit
from scalefit.predict.forecast import ParallelMap, forecast
from scalefit.predict.schedule_choice import best_schedule
from scalefit.predict.targets import Target, compute_optimal, load_fit, predict_target, target_curves
from scalefit.report.build import (
    SCHEMA,
    assemble,
    curve_entries,
    fit_band,
    forecast_answer,
    forecast_entries,
    heldout_summary,
    jsonable,
    load_report,
    report_provenance,
    write_report,
)
from scalefit.report.text import answer_text, parameter_table_text, prediction_text
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
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = api.fit(data, law=args.law, bootstrap=args.bootstrap)
    print(parameter_table_text(fit))
    _write_json(fit.to_dict(), args.out)
    fit_texts = {" ".join(str(w.get("message", w)).split()) for w in fit.diagnostics.get("warnings", [])}
    _print_warnings_once([w for w in caught if not any(t in str(w.message) for t in fit_texts)])
    return 0


def _print_warnings_once(caught: Sequence[warnings.WarningMessage]) -> None:
    """Each distinct warning once, on stderr ('warning: ...'), in the order first seen."""
    seen: set[str] = set()
    for w in caught:
        text = " ".join(str(w.message).split())
        if text not in seen:
            seen.add(text)
            print(f"warning: {text}", file=sys.stderr)


def _run_predict(args: argparse.Namespace) -> int:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = _predict(args)
    summary = prediction_text(result)
    if args.json:
        print(summary, file=sys.stderr)
        print(json.dumps(result, indent=2, default=str))
    else:
        print(summary)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2, default=str) + "\n")
        print(f"full JSON: {args.out} (or --json to print it)")
    _print_warnings_once(caught)
    return 0


def _predict(args: argparse.Namespace) -> dict[str, Any]:
    """``scalefit predict``: with --data and --schedule the forecast's answer (`sf.forecast` over every
    applicable law); with Fit JSON files each fit's target prediction, schedule search and allocation."""
    if not args.fits and args.data is None:
        raise ConfigError(
            "nothing to predict from",
            field="fits",
            fix="give Fit JSON files, or --data STORE_OR_DATASET --schedule SCHEDULE",
        )
    if args.laws is not None and args.data is None:
        raise ConfigError(
            "--laws chooses the members of a forecast from --data",
            field="--laws",
            value=args.laws,
            fix="add --data STORE_OR_DATASET --schedule SCHEDULE, or drop --laws",
        )
    out: dict[str, Any] = {}
    if args.data is not None:
        if args.schedule is None:
            raise ConfigError(
                "--data needs the target's schedule",
                field="--schedule",
                fix="give --schedule KIND:peak=...,steps=... (see scalefit predict --help)",
            )
        curves = load_data(args.data, loss=args.loss, runs=args.runs)
        if not isinstance(curves, Curves):
            raise ConfigError(
                "--data with --schedule needs loss curves, not a table",
                field="--data",
                value=args.data,
                fix="give a store folder or a curve dataset (e.g. mpl-400m); fit tables with scalefit fit",
            )
        target = Target(args.schedule, args.n_params, args.tokens_per_step, run_id="target")
        with _fit_pool(args.jobs) as map_fn:
            fc = forecast(
                curves, target_curves([target]), laws=_law_list(args.laws), level=args.level, map_fn=map_fn
            )
        out["answer"] = forecast_answer(fc, target, curves)
        out["forecast"] = jsonable(fc.to_dict())
    if args.fits:
        out |= _predict_from_files(
            args.fits,
            schedule=args.schedule,
            n_params=args.n_params,
            tokens_per_step=args.tokens_per_step,
            budget=args.budget,
            family=args.family,
        )
    return out


@contextmanager
def _fit_pool(jobs: int) -> Iterator[ParallelMap | None]:
    """``--jobs``: the forecast's fits in ``jobs`` worker processes (started fresh, "spawn": a forked
    worker would inherit this process's threads), or here when 1 (``map_fn=None``)."""
    if jobs < 1:
        raise ConfigError("--jobs must be at least 1", field="--jobs", value=jobs, fix="e.g. --jobs 4")
    if jobs == 1:
        yield None
        return
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield pool.map


def _law_list(text: str | None) -> list[str] | None:
    """``--laws a,b,c``: the forecast's members by name (None: every applicable one)."""
    return None if text is None else [x.strip() for x in text.split(",") if x.strip()]


def _fit_name(path: str | Path, fit: Fit) -> str:
    """A fit's name in reports and predictions: its file's stem, with the law when the stem lacks it."""
    stem = Path(path).stem
    return stem if fit.law in stem else f"{stem} ({fit.law})"


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
    fits = {}
    for p in fit_paths:
        f = load_fit(p)
        fits[_fit_name(p, f)] = f
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
            pred = predict_target(f, target, name=name, downstream=down)
            out["targets"].append(pred | {"band": fit_band(f, noise=True)})
            if family:
                out["schedules"] = best_schedule(f, target, family) | {
                    "fit": name,
                    "band": fit_band(f, noise=False),
                }
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
    level: float = 0.9,
    laws: Sequence[str] | None = None,
    jobs: int = 1,
) -> dict[str, Path]:
    """What ``scalefit report`` does: re-render a report.json, or report a Fit JSON against ``data``
    (held out: the runs of ``data`` the fit did not see, or ``heldout``); returns the written paths."""
    if laws is not None and schedule is None:
        raise ConfigError(
            "--laws chooses the members of the forecast to --schedule",
            field="--laws",
            value=",".join(laws),
            fix="add --schedule SCHEDULE (with --data), or drop --laws",
        )
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
    name = _fit_name(source, fit)
    entries = curve_entries(name, fit, curves.select(sorted(fitted | set(held))), held)
    targets, extra = [], {}
    if schedule is not None:
        target = Target(schedule, n_params)
        train = curves.select(sorted(fitted))
        targets.append(predict_target(fit, target, name=name, fitted=train) | {"band": fit_band(fit)})
        checks = curves.select([r for r in held if r in set(curves.run_ids)])
        with _fit_pool(jobs) as map_fn:
            fc = forecast(train, target_curves([target]), laws=laws, level=level, map_fn=map_fn)
            extra["answer"] = forecast_answer(fc, target, train)
            if len(checks.run_ids):  # the forecast's own band, checked on the held-out runs
                held_fc = forecast(train, checks.without_loss(), laws=laws, level=level, map_fn=map_fn)
                entries += forecast_entries(held_fc, checks)
    report = assemble(
        f"scalefit report: {name} on {data}",
        {name: fit},
        curves=entries,
        targets=targets,
        provenance=report_provenance(fit=str(source), data=str(data), loss=loss),
        **extra,
    )
    report["summary"] = heldout_summary(report["heldout"])
    return write_report(report, out)


def _run_report(args: argparse.Namespace) -> int:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        paths = _report_from_files(
            args.source,
            data=args.data,
            heldout=args.heldout,
            schedule=args.schedule,
            n_params=args.n_params,
            loss=args.loss,
            out=args.out,
            level=args.level,
            laws=_law_list(args.laws),
            jobs=args.jobs,
        )
    answer = load_report(paths["json"]).get("answer")
    if answer:
        print(answer_text(answer))
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    _print_warnings_once(caught)
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
