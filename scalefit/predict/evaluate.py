"""``sf.evaluate``: accuracy of predicted loss curves (or final losses) against the truth.

    pred = fit.predict(held_out)
    sf.evaluate(pred, held_out)

Metrics over all matched points with a finite true loss: ``r2`` (1 - SS_res/SS_tot), ``mae``, ``rmse``
(nats), ``pred_e`` (mean |pred - true| / true) and ``worst_e`` (max of the same); relative errors are
fractions (0.0011 = 0.11%), as PredE/WorstE of Luo et al. 2025. ``final_err``: per run, predicted minus
true loss at the run's last finite matched step, and the largest absolute value. For a family (two or
more runs): Kendall tau between predicted and true final losses, and whether the predicted best (lowest
final loss) member is the true best.

Matching: rows are matched on (run_id, step) exactly; a predicted row without a true counterpart raises
DataError naming run and step. Predictions without steps (static laws) are matched on run_id, against
each run's last finite row when the truth is Curves.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import kendalltau

from scalefit.errors import DataError
from scalefit.store.curves import Curves

__all__ = ["evaluate", "metrics"]


def metrics(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """r2, mae, rmse, pred_e, worst_e of ``pred`` against ``true`` (same shape, finite)."""
    err = pred - true
    rel = np.abs(err) / np.abs(true)
    ss_tot = float(np.sum((true - true.mean()) ** 2))
    return {
        "r2": 1.0 - float(np.sum(err**2)) / ss_tot if ss_tot > 0 else float("nan"),
        "mae": float(np.mean(np.abs(err))),
        "rmse": float(np.sqrt(np.mean(err**2))),
        "pred_e": float(np.mean(rel)),
        "worst_e": float(np.max(rel)),
    }


def _truth_frame(truth: Curves | pd.DataFrame, loss: str, static: bool) -> pd.DataFrame:
    if isinstance(truth, Curves):
        frame = truth.final().reset_index() if static else truth.frame
        return frame.rename(columns={"loss": "true"})
    if not isinstance(truth, pd.DataFrame):
        raise DataError(
            "truth must be Curves or a DataFrame",
            value=type(truth).__name__,
            fix="pass Curves or a DataFrame with run_id, step, loss",
        )
    need = ("run_id", loss) if static else ("run_id", "step", loss)
    for col in need:
        if col not in truth.columns:
            raise DataError(
                "the truth table lacks a column", column=col, fix=f"give columns {', '.join(need)}"
            )
    return truth.rename(columns={loss: "true"})


def _match(pred: pd.DataFrame, truth: Curves | pd.DataFrame, loss: str) -> pd.DataFrame:
    for col in ("run_id", "loss_pred"):
        if col not in pred.columns:
            raise DataError("the prediction lacks a column", column=col, fix="pass Fit.predict output")
    static = "step" not in pred.columns or pred["step"].isna().all()
    keys = ["run_id"] if static else ["run_id", "step"]
    true = _truth_frame(truth, loss, static)[[*keys, "true"]].copy()
    left = pred[[*keys, "loss_pred"]].copy()
    left["run_id"], true["run_id"] = left["run_id"].astype(str), true["run_id"].astype(str)
    if not static:
        left["step"], true["step"] = left["step"].astype("int64"), true["step"].astype("int64")
    true = true.drop_duplicates(keys, keep="last")
    merged = left.merge(true, on=keys, how="left", indicator=True)
    missing = merged[merged["_merge"] == "left_only"]
    if len(missing):
        row = missing.iloc[0]
        raise DataError(
            f"{len(missing)} predicted row(s) have no true loss to compare with",
            run_id=str(row["run_id"]),
            column="step" if not static else "run_id",
            value=None if static else int(row["step"]),
            fix="predict only steps (runs) present in the truth, or give the full true curve",
        )
    merged = merged.drop(columns="_merge")
    if static:
        merged["step"] = 0
    return merged


def _per_run(merged: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for run_id, g in merged.groupby("run_id", sort=False):
        g = g.sort_values("step")
        last = g.iloc[-1]
        rows.append(
            {
                "run_id": run_id,
                "n": len(g),
                **metrics(g["loss_pred"].to_numpy(float), g["true"].to_numpy(float)),
                "final_step": int(last["step"]),
                "final_true": float(last["true"]),
                "final_pred": float(last["loss_pred"]),
                "final_err": float(last["loss_pred"] - last["true"]),
            }
        )
    return pd.DataFrame(rows).set_index("run_id")


def _ranking(per_run: pd.DataFrame) -> dict[str, Any]:
    if len(per_run) < 2:
        return {"kendall_tau": float("nan"), "predicted_best": None, "true_best": None, "best_correct": None}
    tau = kendalltau(per_run["final_pred"], per_run["final_true"]).statistic
    best_pred, best_true = per_run["final_pred"].idxmin(), per_run["final_true"].idxmin()
    return {
        "kendall_tau": float(tau),
        "predicted_best": str(best_pred),
        "true_best": str(best_true),
        "best_correct": bool(best_pred == best_true),
    }


def evaluate(pred: pd.DataFrame, truth: Curves | pd.DataFrame, *, loss: str = "loss") -> dict[str, Any]:
    """Compare ``pred`` (``Fit.predict`` output) with ``truth`` (Curves, or a DataFrame with run_id,
    step and the ``loss`` column). Returns r2, mae, rmse, pred_e, worst_e, final_err (max_abs and
    per_run), n_points, n_excluded (rows whose true loss is not finite), per_run (DataFrame) and the
    family ranking (kendall_tau, predicted_best, true_best, best_correct)."""
    merged = _match(pred, truth, loss)
    ok = np.isfinite(merged["true"].to_numpy(float)) & np.isfinite(merged["loss_pred"].to_numpy(float))
    n_excluded = int((~ok).sum())
    merged = merged[ok]
    if merged.empty:
        raise DataError(
            "no finite (predicted, true) pairs to evaluate",
            column="loss",
            fix="check that the truth has finite losses at the predicted steps",
        )
    per_run = _per_run(merged)
    final = per_run["final_err"]
    return {
        **metrics(merged["loss_pred"].to_numpy(float), merged["true"].to_numpy(float)),
        "final_err": {"max_abs": float(final.abs().max()), "per_run": final.to_dict()},
        "n_points": len(merged),
        "n_excluded": n_excluded,
        "per_run": per_run,
        **_ranking(per_run),
    }
