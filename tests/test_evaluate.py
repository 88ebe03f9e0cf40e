"""``sf.evaluate``: metrics pinned on hand-computed values, exact step matching, family ranking."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scalefit.errors import DataError
from scalefit.predict.evaluate import evaluate
from scalefit.store.curves import Curves


def truth_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "run_id": ["a"] * 3 + ["b"] * 3 + ["c"] * 3,
            "step": [0, 10, 20] * 3,
            "lr": 1e-3,
            "loss": [4.0, 3.0, 2.0, 4.0, 3.2, 2.5, 4.0, 2.9, 2.2],
        }
    )


def pred_frame(offsets: dict[str, float]) -> pd.DataFrame:
    t = truth_frame()
    pred = t[["run_id", "step"]].copy()
    pred["loss_pred"] = t["loss"] + t["run_id"].map(offsets)
    pred["lo"], pred["hi"] = pred["loss_pred"] - 0.1, pred["loss_pred"] + 0.1
    return pred


def test_metrics_pinned():
    pred = pred_frame({"a": 0.1, "b": -0.2, "c": 0.0})
    out = evaluate(pred, truth_frame())
    err = np.array([0.1] * 3 + [-0.2] * 3 + [0.0] * 3)
    true = truth_frame()["loss"].to_numpy()
    assert out["mae"] == pytest.approx(0.1)
    assert out["rmse"] == pytest.approx(np.sqrt(0.05 * 3 / 9))
    assert out["pred_e"] == pytest.approx(np.mean(np.abs(err) / true))
    assert out["worst_e"] == pytest.approx(0.2 / 2.5)
    ss_tot = np.sum((true - true.mean()) ** 2)
    assert out["r2"] == pytest.approx(1 - np.sum(err**2) / ss_tot)
    assert out["final_err"]["per_run"] == pytest.approx({"a": 0.1, "b": -0.2, "c": 0.0})
    assert out["final_err"]["max_abs"] == pytest.approx(0.2)
    assert out["n_points"] == 9
    assert out["per_run"].loc["b", "final_step"] == 20


def test_family_ranking():
    # True finals: a 2.0 < c 2.2 < b 2.5. Offsets swap a and c.
    out = evaluate(pred_frame({"a": 0.3, "b": 0.0, "c": 0.0}), truth_frame())
    assert out["true_best"] == "a" and out["predicted_best"] == "c" and out["best_correct"] is False
    assert out["kendall_tau"] == pytest.approx(1 / 3)
    good = evaluate(pred_frame({"a": 0.01, "b": 0.0, "c": 0.0}), truth_frame())
    assert good["kendall_tau"] == pytest.approx(1.0) and good["best_correct"] is True


def test_missing_step_raises_naming_run_and_step():
    pred = pred_frame({"a": 0.0, "b": 0.0, "c": 0.0})
    pred.loc[4, "step"] = 11
    with pytest.raises(DataError) as err:
        evaluate(pred, truth_frame())
    assert err.value.run_id == "b" and err.value.value == 11


def test_curves_truth_skips_diverged_rows():
    frame = truth_frame()
    frame.loc[8, "loss"] = np.nan  # run c diverged at its last step
    curves = Curves.from_frame(frame)
    out = evaluate(pred_frame({"a": 0.0, "b": 0.0, "c": 0.1}), curves)
    assert out["n_excluded"] == 1 and out["n_points"] == 8
    assert out["per_run"].loc["c", "final_step"] == 10
    assert out["final_err"]["per_run"]["c"] == pytest.approx(0.1)


def test_static_predictions_match_on_run_id():
    truth = pd.DataFrame({"run_id": ["x", "y"], "loss": [2.0, 3.0]})
    pred = pd.DataFrame({"run_id": ["y", "x"], "loss_pred": [3.3, 2.0]})
    out = evaluate(pred, truth)
    assert out["final_err"]["per_run"] == pytest.approx({"x": 0.0, "y": 0.3})
    assert out["worst_e"] == pytest.approx(0.1)
    with pytest.raises(DataError) as err:
        evaluate(pd.DataFrame({"run_id": ["z"], "loss_pred": [1.0]}), truth)
    assert err.value.run_id == "z"
