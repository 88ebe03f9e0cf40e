"""The ``scalefit`` command: import, sweep, fit, predict, report, demo.

Each verb is a thin shell over the Python API (its handler lives in ``scalefit.cli.verbs``; only the
verbs that train, ``sweep`` and ``demo``, need the Ray and torch extras). Errors are one line on
stderr (``scalefit: error: ...``, exit 2); ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import traceback
from typing import Any

from scalefit.cli.verbs import VERBS
from scalefit.errors import ScalefitError
from scalefit.schedules import KINDS
from scalefit.schedules.base import ALIASES

EXAMPLES: dict[str, str] = {
    "import": "scalefit import 'exports/*.csv' --format wandb --eval eval/loss=val --out store/\n"
    "  scalefit import tb_logs/ --format tensorboard --loss-tag train_loss --lr-tag lr-AdamW --out store/\n"
    "  scalefit import runs.csv --format table --run-id name --step iter --lr lr --loss loss --out store/\n"
    "  scalefit import csv_400/ --format mpl --out store/",
    "sweep": "scalefit sweep jobs/configs/smoke.yaml --store runs/ --dry-run",
    "fit": "scalefit fit runs/ --law momentum --runs cosine_24000,constant_24000 --out fit.json\n"
    "  scalefit fit chinchilla-epoch --law chinchilla --bootstrap 200 --out chin.json",
    "predict": "scalefit predict --data runs/ --schedule cosine:peak=3e-4,steps=48000,warmup=2000\n"
    "  scalefit predict --data runs/ --schedule wsd:peak=3e-4,steps=24000 --laws cooldown,momentum\n"
    "  scalefit predict fit.json --schedule wsd:peak=3e-4,steps=24000,decay=0.2 --family wsd\n"
    "  scalefit predict chin.json --budget 5.88e23 --json",
    "report": "scalefit report fit.json --data runs/ --schedule cosine:peak=3e-4,steps=48000 --out report/\n"
    "  scalefit report report/report.json --out report/   (re-render a JSON twin)",
    "demo": "scalefit demo                # proxy sweep on real text, ~10 min on 2 CPU cores\n"
    "  scalefit demo --reference    # fit bundled published curves, seconds",
}


def schedule_grammar() -> str:
    """The schedule string grammar, with every kind and its keys (from the schedule classes)."""
    short = {name: key for key, name in ALIASES.items()}
    lines = [
        "schedule strings: KIND:KEY=VALUE,...  (steps are 0-indexed optimizer updates; LR of update s)",
        "  common keys: peak (peak LR, required), steps (total steps, required), warmup (linear warmup",
        "  steps, 0), warmup_start (ratio of peak at step 0, 0.0), warmup_shape (linear|cosine)",
    ]
    common = {"peak_lr", "total_steps", "warmup_steps", "warmup_start", "warmup_shape"}
    for kind, cls in sorted(KINDS.items()):
        keys = []
        for f in dataclasses.fields(cls):
            if f.name in common:
                continue
            key = short.get(f.name, f.name)
            default = "required" if f.default is dataclasses.MISSING else f.default
            keys.append(f"{key} ({'/'.join(map(str, default)) if isinstance(default, tuple) else default})")
        lines.append(f"  {kind}: {', '.join(keys) if keys else 'no other keys'}")
    lines += [
        "  wsd/wsd-s shape: linear|cosine|1-sqrt|exp; decay is a fraction of steps (0.2 when neither",
        "  decay nor decay_steps is given), decay_steps a length in steps; final is a ratio of peak;",
        "  cosine decay_steps defaults to steps - warmup; inverse-sqrt timescale to max(warmup, 1);",
        "  two-stage switch_step is a step and second_ratio a ratio of peak; logged values use /",
        "  multistep milestones are fractions (or steps if >= 1) joined by /, e.g. milestones=0.8/0.9",
        "  e.g. wsd:peak=1e-3,steps=50000,warmup=500,decay=0.2,shape=1-sqrt",
        "       cosine:peak=3e-4,steps=24000,warmup=2160,final=0.1",
    ]
    return "\n".join(lines)


def _sub(subs: Any, name: str, help_text: str, extra: str = "") -> argparse.ArgumentParser:
    return subs.add_parser(
        name,
        help=help_text,
        description=help_text,
        epilog=f"example:\n  {EXAMPLES[name]}" + (f"\n\n{extra}" if extra else ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


IMPORT_NOTES = """steps: the optimizer step is the first of train/global_step, trainer/global_step,
  global_step, train/step, step, Step, iter, iteration; W&B's _step row counter only when none
  of them exists (then the summary says so).
  Hugging Face Trainer steps (W&B train/global_step; TensorBoard with train/learning_rate or
  train/epoch) are 1-based: the loss logged at g is of update g-1 (step g-1), the LR logged at g is
  the next update's (step g), an eval at g is at step g (--step-base 0 reads steps as logged).
missing values: an empty cell or NaN is not observed (never a divergence); +-inf is a divergence.
LR: logged every N steps is fine: the schedule family is recognised when it matches every logged
  point exactly, else the dense LR is rebuilt piecewise-linearly (max deviation in the summary);
  --schedule is needed only when no LR was logged (or to check the logged one).
W&B panel exports (a chart's Export CSV) are read by --format wandb: one run per '<run> - <metric>'
  column, each metric an eval dataset named by the metric (--loss METRIC makes it the train loss);
  __MIN/__MAX columns are W&B's range band and never imported as values."""


def _add_import(subs: Any) -> None:
    p = _sub(
        subs,
        "import",
        "Import existing training logs into a scalefit Parquet store (one summary line per run).",
        IMPORT_NOTES + "\n\n" + schedule_grammar(),
    )
    p.add_argument("source", nargs="+", help="files, folders or glob patterns to import (several allowed)")
    p.add_argument("--format", default="table", choices=["table", "wandb", "tensorboard", "mpl", "schaipp"])
    p.add_argument("--out", required=True, help="store directory to write")
    p.add_argument("--run-id", default=None, help="column holding the run id (table/wandb)")
    p.add_argument("--name", default=None, help="run name of a one-run file (default: the file name)")
    p.add_argument("--step", default=None, help="column holding the optimizer step (table/wandb)")
    p.add_argument("--lr", default=None, help="LR column (table/wandb) or tag (tensorboard), or 'none'")
    p.add_argument("--loss", default=None, help="train-loss column (table/wandb) or tag (tensorboard)")
    p.add_argument("--loss-tag", default=None, help="TensorBoard tag of the train loss (e.g. train_loss)")
    p.add_argument("--lr-tag", default=None, help="TensorBoard tag of the LR (e.g. lr-AdamW), or 'none'")
    p.add_argument(
        "--eval",
        action="append",
        default=None,
        metavar="COLUMN[=DATASET]",
        help="eval column (wandb) or tag (tensorboard) to import, repeatable (default: eval/val loss names)",
    )
    p.add_argument(
        "--step-base", default="auto", choices=["auto", "0", "hf"], help="how steps count (wandb/tensorboard)"
    )
    p.add_argument("--schedule", default=None, help="schedule string (grammar below) when no LR was logged")


def _add_sweep(subs: Any) -> None:
    p = _sub(subs, "sweep", "Run a proxy sweep (YAML spec) on Ray; an embedded local Ray by default.")
    p.add_argument("config", help="sweep YAML file")
    p.add_argument("--store", default="runs", help="Parquet store directory (default ./runs)")
    p.add_argument("--address", default=None, help="Ray cluster address (default: embedded local Ray)")
    p.add_argument("--dry-run", action="store_true", help="print the plan and exit")


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs", default=None, help="comma-separated run ids to fit on (default: all)")
    p.add_argument("--loss", default="train_loss", help="loss column, or eval:<dataset> (store only)")


def _add_laws_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--laws",
        default=None,
        help="comma-separated laws and baselines the forecast weighs (default: every applicable one)",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="worker processes for the forecast's fits (default 1: in this process; the answer is the same)",
    )


def _add_fit(subs: Any) -> None:
    p = _sub(subs, "fit", "Fit a scaling law to curves (a store directory or a bundled dataset name).")
    p.add_argument("data", help="store directory or bundled dataset name (e.g. mpl-400m)")
    p.add_argument("--law", default="momentum", help="law name (momentum, multipower, chinchilla, ...)")
    _add_data_args(p)
    p.add_argument("--bootstrap", type=int, default=0, help="bootstrap resamples over runs for CIs")
    p.add_argument("--out", default="fit.json", help="where to write the Fit JSON")


def _add_predict(subs: Any) -> None:
    p = _sub(
        subs,
        "predict",
        "Predict a target run (curve, final loss, band) from one or more fits.",
        schedule_grammar(),
    )
    p.add_argument("fits", nargs="*", help="Fit JSON files (curve law, chinchilla, downstream)")
    p.add_argument(
        "--data",
        default=None,
        metavar="STORE_OR_DATASET",
        help="forecast from these runs with every applicable law (needs --schedule)",
    )
    _add_data_args(p)
    _add_laws_arg(p)
    p.add_argument("--level", type=float, default=0.9, help="level of the forecast band (default 0.9)")
    p.add_argument("--schedule", default=None, help="target schedule string (sets steps and peak LR)")
    p.add_argument("--n-params", type=float, default=None, help="target model size (parameters)")
    p.add_argument("--tokens-per-step", type=float, default=None, help="tokens per optimizer step")
    p.add_argument("--budget", type=float, default=None, help="compute budget in FLOPs (chinchilla fit)")
    p.add_argument("--family", default=None, choices=["wsd", "cosine"], help="search this schedule family")
    p.add_argument("--out", default="prediction.json", help="where to write the full JSON (prediction.json)")
    p.add_argument("--json", action="store_true", help="print the full JSON on stdout (summary on stderr)")


def _add_report(subs: Any) -> None:
    p = _sub(subs, "report", "Write the HTML report, its JSON twin and a Markdown summary.")
    p.add_argument("source", help="a Fit JSON (with --data) or a report.json to re-render")
    p.add_argument("--data", default=None, help="store directory or bundled dataset name")
    p.add_argument("--heldout", default=None, help="comma-separated held-out run ids (default: unfitted)")
    p.add_argument("--schedule", default=None, help="target schedule string to extrapolate to")
    p.add_argument("--n-params", type=float, default=None, help="target model size (parameters)")
    p.add_argument("--loss", default="train_loss", help="loss column, or eval:<dataset> (store only)")
    p.add_argument("--level", type=float, default=0.9, help="level of the forecast band (default 0.9)")
    _add_laws_arg(p)
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


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
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


def _one_line(err: BaseException) -> str:
    text = str(err) if not isinstance(err, OSError) else f"{err.strerror}: {err.filename}"
    if isinstance(err, FileNotFoundError):
        text = f"not found: {err.filename} ({err.strerror})"
    return " ".join(text.split())


__all__ = ["EXAMPLES", "build_parser", "main", "schedule_grammar"]
