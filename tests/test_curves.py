"""Curves: validation, immutability, selection, final rows and the dense LR sequence."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scalefit.errors import ConfigError, DataError
from scalefit.store.curves import Curves, concat_curves, rebuild_lr


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "run_id": ["b", "b", "a", "a", "a", "a", "b"],
            "step": [1, 0, 0, 1, 2, 1, 2],
            "lr": [1e-3, 1e-3, 2e-3, 2e-3, 2e-3, 2e-3, 1e-3],
            "loss": [4.0, 5.0, 6.0, 5.5, 5.0, 5.2, 3.0],
            "n_params": [20, 20, 10, 10, 10, 10, 20],
            "tokens": [200, 100, 0, 10, 20, 10, 300],
        }
    )


def test_sorted_dedup_keeps_last_and_moves_run_columns() -> None:
    c = Curves.from_frame(_frame())
    assert c.run_ids == ["a", "b"]
    a = c.run("a")
    np.testing.assert_array_equal(a.steps, [0, 1, 2])
    np.testing.assert_array_equal(a.loss, [6.0, 5.2, 5.0])  # the later duplicate of step 1 wins
    assert c.runs.loc["a", "n_params"] == 10 and c.runs.loc["b", "n_params"] == 20
    assert "n_params" not in c.frame.columns and "tokens" in c.frame.columns
    assert list(c.frame.columns[:5]) == ["run_id", "step", "lr", "loss", "finite"]
    assert len(c) == 2 and [r.run_id for r in c] == ["a", "b"]


def test_nan_is_not_observed_and_inf_marks_divergence() -> None:
    df = _frame()
    df.loc[3, "loss"] = np.nan  # run a, step 1 (first copy; the later duplicate wins anyway)
    df.loc[4, "loss"] = np.nan  # run a, step 2: not observed
    nan_only = Curves.from_frame(df)
    np.testing.assert_array_equal(nan_only.run("a").finite, [True, True, False])
    assert nan_only.runs.loc["a", "status"] == "ok"
    assert nan_only.final().set_index("run_id").loc["a", "step"] == 1
    df.loc[6, "loss"] = np.inf
    c = Curves.from_frame(df)
    b = c.run("b")
    np.testing.assert_array_equal(b.finite, [True, True, False])
    assert c.runs.loc["b", "status"] == "diverged" and c.runs.loc["a", "status"] == "ok"
    final = c.final().set_index("run_id")
    assert final.loc["b", "step"] == 1 and final.loc["b", "loss"] == 4.0  # last finite row
    assert final.loc["a", "n_params"] == 10


def test_frame_is_not_mutable_through_accessors() -> None:
    c = Curves.from_frame(_frame())
    f = c.frame
    f.loc[0, "loss"] = -1.0
    assert c.frame.loc[0, "loss"] == 6.0
    with pytest.raises(ValueError):
        c.run("a").loss[0] = 0.0


def test_select_split_and_attrs() -> None:
    c = Curves.from_frame(_frame())
    assert c.select(n_params=20).run_ids == ["b"]
    assert c.select(n_params=[10, 20]).run_ids == ["a", "b"]
    train, test = c.split(["b"])
    assert train.run_ids == ["b"] and test.run_ids == ["a"]
    assert len(train.frame) == 3
    with pytest.raises(DataError, match="unknown run") as err:
        c.split(["zzz"])
    assert err.value.run_id == "zzz"
    with pytest.raises(DataError) as err:
        c.select(width=3)
    assert err.value.column == "width"


def test_truncate_keeps_the_steps_below_each_stop_and_without_loss_hides_it() -> None:
    evals = pd.DataFrame({"run_id": ["a", "a", "b"], "step": [0, 2, 1], "dataset": "val", "eval_loss": 1.0})
    c = Curves.from_frame(_frame(), evals=evals)
    cut = c.truncate({"a": 2, "b": None})
    assert cut.run_ids == ["a", "b"]
    np.testing.assert_array_equal(cut.run("a").steps, [0, 1])
    np.testing.assert_array_equal(cut.run("a").loss, [6.0, 5.2])
    np.testing.assert_array_equal(cut.run("b").steps, [0, 1, 2])
    assert cut.evals[["run_id", "step"]].values.tolist() == [["a", 0], ["b", 1]]  # the eval at a's step 2 too
    assert cut.runs.loc["a", "n_params"] == 10
    # the same as validating the kept rows afresh
    rows = c.frame[(c.frame["run_id"] == "b") | (c.frame["step"] < 2)].drop(columns=["finite"])
    again = Curves.from_frame(rows, runs=c.runs.reset_index())
    pd.testing.assert_frame_equal(cut.frame, again.frame)
    pd.testing.assert_frame_equal(cut.runs, again.runs)
    assert c.truncate({"a": 0, "b": 1}).run_ids == ["b"]  # a run with no row left is dropped
    with pytest.raises(DataError, match="unknown run"):
        c.truncate({"zzz": 1})
    hidden = cut.without_loss()
    assert hidden.frame["loss"].isna().all() and not hidden.frame["finite"].any() and hidden.evals is None
    np.testing.assert_array_equal(hidden.run("a").lr, cut.run("a").lr)
    assert len(c.final()) == 2 and len(hidden.final()) == 0  # nothing observed: no final row


def test_lr_sequence_from_dense_logged_lr() -> None:
    df = pd.DataFrame({"run_id": "r", "step": range(4), "lr": [0.0, 1.0, 2.0, 3.0], "loss": 1.0})
    c = Curves.from_frame(df)
    np.testing.assert_array_equal(c.lr_sequence("r"), [0.0, 1.0, 2.0, 3.0])
    np.testing.assert_array_equal(c.lr_sequence("r", 2), [0.0, 1.0])
    with pytest.raises(ConfigError, match="n must be an integer >= 0"):
        c.lr_sequence("r", -1)
    sparse = Curves.from_frame(df.iloc[::2])  # LR logged at steps 0 and 2: rebuilt between them
    np.testing.assert_array_equal(sparse.lr_sequence("r"), [0.0, 1.0, 2.0])
    np.testing.assert_array_equal(sparse.lr_sequence("r", 5), [0.0, 1.0, 2.0, 3.0, 4.0])
    nolr = Curves.from_frame(df.assign(lr=np.nan))
    with pytest.raises(DataError, match="no LR logged and no schedule") as err:
        nolr.lr_sequence("r")
    assert err.value.run_id == "r" and err.value.column == "lr" and "--schedule" in err.value.fix


def test_rebuild_lr_between_points_and_at_the_ends() -> None:
    got = rebuild_lr(np.array([10, 20, 40]), np.array([1.0, 2.0, 1.0]), 50)
    np.testing.assert_allclose(got[[0, 5, 10, 15, 20, 30, 40]], [0.0, 0.5, 1.0, 1.5, 2.0, 1.5, 1.0])
    np.testing.assert_allclose(got[45], 0.75) and np.testing.assert_allclose(got[49], 0.55)
    assert (rebuild_lr(np.array([0, 10]), np.array([1.0, 0.5]), 40) >= 0).all()  # clipped at 0
    np.testing.assert_array_equal(rebuild_lr(np.array([5]), np.array([2.0]), 3), [2.0, 2.0, 2.0])


def test_sparse_lr_with_nan_loss_rows_keeps_every_step() -> None:
    steps = np.arange(0, 100)
    df = pd.DataFrame(
        {"run_id": "r", "step": steps, "lr": 1e-3, "loss": np.where(steps % 10 == 9, 3.0, np.nan)}
    )
    c = Curves.from_frame(df)
    assert len(c.frame) == 100 and c.runs.loc["r", "status"] == "ok"
    np.testing.assert_array_equal(c.final()["step"], [99])


def test_lr_from_schedule_fills_missing_and_gives_sequence() -> None:
    schedules = pytest.importorskip("scalefit.schedules")
    sched = schedules.parse("cosine:peak=0.001,steps=100")
    df = pd.DataFrame({"run_id": "r", "step": [0, 50, 99], "lr": np.nan, "loss": [3.0, 2.0, 1.0]})
    c = Curves.from_frame(df, runs=pd.DataFrame({"run_id": ["r"], "schedule": [str(sched)]}))
    np.testing.assert_allclose(c.run("r").lr, sched([0, 50, 99]), rtol=1e-12)
    np.testing.assert_allclose(c.lr_sequence("r"), sched.lrs(100), rtol=1e-12)
    assert len(c.lr_sequence("r")) == 100
    assert c.run("r").schedule == sched


def test_to_frame_round_trip_and_evals() -> None:
    evals = pd.DataFrame(
        {"run_id": ["a", "a", "a"], "step": [2, 0, 2], "dataset": "val", "eval_loss": [1, 2, 3]}
    )
    c = Curves.from_frame(_frame(), evals=evals)
    np.testing.assert_array_equal(c.evals["eval_loss"], [2.0, 3.0])  # sorted, duplicate keeps last
    again = Curves.from_frame(c.to_frame(), evals=c.evals)
    pd.testing.assert_frame_equal(again.frame, c.frame)
    pd.testing.assert_frame_equal(again.runs, c.runs)
    assert c.run("a").evals["step"].tolist() == [0, 2]


def test_runs_table_must_match_rows() -> None:
    with pytest.raises(DataError, match="no curve rows") as err:
        Curves.from_frame(_frame(), runs=pd.DataFrame({"run_id": ["a", "b", "c"], "seed": [0, 1, 2]}))
    assert err.value.run_id == "c"
    c = Curves.from_frame(_frame(), runs=pd.DataFrame({"run_id": ["a", "b"], "seed": [0, 1]}))
    assert c.select(seed=1).run_ids == ["b"]


def test_concat_curves_keeps_every_run_and_refuses_a_repeated_id() -> None:
    a = Curves.from_frame(_frame()[lambda d: d["run_id"] == "a"], source="one.csv")
    b = Curves.from_frame(_frame()[lambda d: d["run_id"] == "b"], source="two.csv")
    both = concat_curves([a, b])
    assert both.run_ids == ["a", "b"] and len(both.frame) == len(a.frame) + len(b.frame)
    with pytest.raises(DataError, match="same run id") as err:
        concat_curves([a, both])
    assert err.value.run_id == "a" and "one.csv" in err.value.fix
