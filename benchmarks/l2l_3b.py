"""Static extrapolation to the 3.3B models of Brandfonbrener et al. 2024, 20x beyond the sweep's largest
budget: each law and ``forecast`` fitted on every budget of one pre-training set, each 3.3B final
predicted with its nominal-90 % band; prints one JSON object.

    python benchmarks/l2l_3b.py --targets extrapolation.csv

``--targets``: the paper's 3.3B runs, ``data/extrapolation.csv`` of
``KempnerInstitute/loss-to-loss-notebooks`` at commit ``457ce81`` (the commit of the bundled sweep):
columns ``data``, ``params``, ``tokens``, ``val_loss``, one 3.3B model at 1e21 FLOPs per
pre-training set. The file is not bundled: these targets are kept outside the project (the bundled
README holds them out), so that no law or rule is developed with them in view. The check was first
run once, after the table rule of ``forecast`` and every static law were fixed: blind for every law
but ``kaplan`` (the paper's own form) and for the forecast.

Output: ``{"level", "rows": [{"dataset", "law" (a law name or "forecast"), "true", "pred", "rel_err"
(pred / true - 1), "lo", "hi", "band_rel_half_width", "inside"}], "summary": {"<law>": {"inside", "n",
"mean_abs_rel_err"}}}``. A law's band is ``Fit.predict(ci=0.9, noise=True)`` (its parameter and noise
uncertainty), the forecast's its own (cross-validated across budgets); the single laws are the
baseline of the same run.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # tiny L-BFGS problems: BLAS threads only contend

import argparse  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import pandas as pd  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import blind  # noqa: E402

from scalefit.errors import DataError, ExtrapolationWarning, FitWarning  # noqa: E402
from scalefit.fitting.engine import fit_law  # noqa: E402
from scalefit.laws import get_law  # noqa: E402
from scalefit.predict.forecast import forecast  # noqa: E402
from scalefit.store import datasets  # noqa: E402

LEVEL = 0.9
COLUMNS = {"loss": "val_loss", "n": "params", "d": "tokens"}  # the sweep's names for the static laws
LAWS = ("chinchilla", "kaplan", "overtraining")
NEEDED = ("data", "params", "tokens", "val_loss")


def read_targets(path: Path) -> pd.DataFrame:
    """The target rows (the paper's: one 3.3B model per pre-training set), with the columns ``NEEDED``
    and a loss on every row."""
    table = pd.read_csv(path)
    missing = [c for c in NEEDED if c not in table.columns]
    if missing:
        raise DataError(
            f"targets file lacks columns {missing}",
            file=path.name,
            fix="give data/extrapolation.csv of KempnerInstitute/loss-to-loss-notebooks",
        )
    known = set(datasets.load("brandfonbrener-sweep")["data"].dropna())
    unknown = sorted(set(table["data"]) - known)
    if unknown:
        raise DataError(
            f"targets name pre-training sets the sweep does not have: {unknown}",
            file=path.name,
            field="data",
            fix=f"use rows of {sorted(known)}",
        )
    unscored = table.index[table["val_loss"].isna()].tolist()
    if unscored:
        raise DataError(
            f"target rows {unscored} have no val_loss: a target without its loss cannot be scored",
            file=path.name,
            column="val_loss",
            fix="give the rows with their measured loss",
        )
    return table


def row(dataset: str, law: str, true: float, pred: pd.Series) -> dict:
    return {
        "dataset": dataset,
        "law": law,
        "true": round(true, 5),
        "pred": round(float(pred["loss_pred"]), 5),
        "rel_err": round(float(pred["loss_pred"]) / true - 1, 5),
        "lo": round(float(pred["lo"]), 5),
        "hi": round(float(pred["hi"]), 5),
        "band_rel_half_width": round(float((pred["hi"] - pred["lo"]) / (2 * pred["loss_pred"])), 5),
        "inside": bool(pred["lo"] <= true <= pred["hi"]),
    }


def run_dataset(sweep: pd.DataFrame, targets: pd.DataFrame) -> list[dict]:
    """Every law and the forecast, fitted on every budget of the pre-training set of ``targets`` (its
    rows), each row predicted."""
    dataset = str(targets["data"].iloc[0])
    train = sweep[(sweep["data"] == dataset) & sweep["val_loss"].notna()].reset_index(drop=True)
    truth = targets["val_loss"].to_numpy(float)
    question = targets.drop(columns=["val_loss"]).reset_index(drop=True)
    laws = [get_law(name, **COLUMNS) for name in LAWS]
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)
        warnings.simplefilter("ignore", ExtrapolationWarning)
        for law in laws:
            pred = fit_law(law, train, progress=False).predict(question, ci=LEVEL, noise=True)
            rows += [row(dataset, law.name, t, p) for t, (_, p) in zip(truth, pred.iterrows(), strict=True)]
        fc = forecast(train, question, laws=laws, level=LEVEL)
    pred = fc.predict()
    for t, (_, p) in zip(truth, pred.iterrows(), strict=True):
        rows.append(row(dataset, "forecast", t, p) | {"weights": fc.weights})
    return rows


def summary(rows: list[dict]) -> dict:
    out = {}
    for law in (*LAWS, "forecast"):
        mine = [r for r in rows if r["law"] == law]
        out[law] = {
            "inside": sum(r["inside"] for r in mine),
            "n": len(mine),
            "mean_abs_rel_err": round(sum(abs(r["rel_err"]) for r in mine) / len(mine), 5),
        }
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", type=Path, required=True, help="the paper's data/extrapolation.csv")
    ap.add_argument("--out", default=None, help="also write the JSON to this file")
    args = ap.parse_args(argv)
    targets = read_targets(args.targets)
    sweep = datasets.load("brandfonbrener-sweep")
    rows: list[dict] = []
    for _, group in targets.groupby("data", sort=True):
        rows += run_dataset(sweep, group)
    result = {"level": LEVEL, "rows": rows, "summary": summary(rows)}
    blind.emit(result, args.out)
    return result


if __name__ == "__main__":
    main()
