"""Importers: generic tables, W&B CSVs, TensorBoard event files, MPL CSVs and Schaipp JSON logs."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scalefit import schedules
from scalefit.errors import DataError, ScheduleError
from scalefit.store.datasets import data_path, load
from scalefit.store.importers import (
    import_mpl_csv,
    import_schaipp_json,
    import_table,
    import_tensorboard,
    import_wandb_csv,
)

MPL = "lr-curves/mpl-multipowerlaw"
SCHAIPP = "lr-curves/schaipp-lr-scheduling"
SCHED = "cosine:peak=0.001,steps=1000,warmup=100"


def test_import_table_named_columns_and_schedule_check(tmp_path: Path) -> None:
    sched = schedules.parse(SCHED)
    steps = np.arange(0, 1000, 10)
    df = pd.DataFrame({"name": "r1", "it": steps, "learning_rate": sched(steps), "nll": 3 + 1 / (1 + steps)})
    path = tmp_path / "log.csv"
    df.to_csv(path, index=False)
    c = import_table(path, run_id="name", step="it", lr="learning_rate", loss="nll", schedule=SCHED)
    np.testing.assert_allclose(c.run("r1").loss, 3 + 1 / (1 + steps))
    assert c.runs.loc["r1", "schedule"] == str(sched)
    np.testing.assert_allclose(c.lr_sequence("r1"), sched.lrs())
    df.loc[5, "learning_rate"] *= 1.01
    with pytest.raises(ScheduleError, match="step 50") as err:
        import_table(df, run_id="name", step="it", lr="learning_rate", loss="nll", schedule=SCHED)
    assert err.value.run_id == "r1" and err.value.column == "lr"


def test_import_table_without_lr_uses_schedule(tmp_path: Path) -> None:
    path = tmp_path / "run-a.json"
    pd.DataFrame({"step": [0, 500, 999], "loss": [5.0, 3.0, 2.5]}).to_json(path, orient="records")
    c = import_table(path, run_id=None, lr=None, schedule=SCHED)
    assert c.run_ids == ["run-a"]
    np.testing.assert_allclose(c.run("run-a").lr, schedules.parse(SCHED)([0, 500, 999]))
    with pytest.raises(DataError, match="no LR column and no schedule") as err:
        import_table(path, run_id=None, lr=None)
    assert err.value.file == str(path) and err.value.column == "lr"
    bare = import_table(path, run_id=None, lr="none")  # asked for: runs without any LR
    assert np.isnan(bare.run("run-a").lr).all() and "LR not logged" in bare.runs["import_summary"].iloc[0]
    with pytest.raises(DataError, match="no LR logged and no schedule") as err:
        bare.lr_sequence("run-a")
    assert err.value.file == str(path) and err.value.column == "lr" and "--lr" in err.value.fix


def test_import_wandb_history_csv(tmp_path: Path) -> None:
    csv = tmp_path / "wandb_export.csv"
    csv.write_text(
        "_step,name,train/loss,lr,val/loss\n"
        "0,a,5.0,0.001,\n1,a,4.0,0.001,\n2,a,,,3.9\n3,a,nan,0.001,\n"
        "0,b,6.0,0.002,\n1,b,5.0,0.002,5.1\n"
    )
    c = import_wandb_csv(csv, eval_columns={"val/loss": "val"})
    assert c.run_ids == ["a", "b"]
    np.testing.assert_array_equal(c.run("a").steps, [0, 1, 3])  # step 2 logged only val/loss: an eval row
    assert np.isnan(c.run("a").loss[2])  # a logged nan is not observed, not a divergence
    assert c.runs.loc["a", "status"] == "ok" and c.runs.loc["b", "status"] == "ok"
    assert c.evals[["run_id", "step", "eval_loss"]].values.tolist() == [["a", 2, 3.9], ["b", 1, 5.1]]


def test_import_wandb_one_file_per_run(tmp_path: Path) -> None:
    for name, loss in (("alpha", 3.0), ("beta", 4.0)):
        (tmp_path / f"{name}.csv").write_text(f"_step,train/loss,lr\n0,{loss},0.1\n1,{loss - 1},0.1\n")
    c = import_wandb_csv(sorted(tmp_path.glob("*.csv")))
    assert c.run_ids == ["alpha", "beta"]
    assert c.final().set_index("run_id")["loss"].to_dict() == {"alpha": 2.0, "beta": 3.0}


def test_import_table_rows_and_steps_match_the_file(tmp_path: Path) -> None:
    sched = schedules.parse(SCHED)
    steps = np.arange(0, 1000, 10)
    df = pd.DataFrame({"run_id": "r", "step": steps, "lr": sched(steps), "loss": 3 + 1 / (1 + steps)})
    df.loc[7, "loss"] = np.nan  # an eval-only row: kept, not observed
    df.to_csv(tmp_path / "t.csv", index=False)
    c = import_table(tmp_path / "t.csv")
    run = c.run("r")
    assert len(run.steps) == len(df) and np.array_equal(run.steps, steps)
    assert c.runs.loc["r", "schedule"] == str(sched) and c.runs.loc["r", "status"] == "ok"


def test_import_tensorboard_event_file(tmp_path: Path) -> None:
    summary_writer = pytest.importorskip("torch.utils.tensorboard").SummaryWriter  # writing needs torch

    sched = schedules.parse("wsd:peak=0.001,steps=200,warmup=20,decay=0.2")
    with summary_writer(str(tmp_path / "run1")) as w:
        for s in range(0, 200, 5):
            w.add_scalar("train/loss", 4.0 - s / 100, s)
            w.add_scalar("lr", float(sched(s)), s)
            if s % 50 == 0:
                w.add_scalar("val/loss", 4.1 - s / 100, s)
    c = import_tensorboard(tmp_path, schedule=str(sched), eval_tags={"val/loss": "val"})
    run = c.run("run1")
    np.testing.assert_array_equal(run.steps, np.arange(0, 200, 5))
    np.testing.assert_allclose(run.loss, 4.0 - np.arange(0, 200, 5) / 100, rtol=1e-6)
    np.testing.assert_allclose(run.lr, sched(np.arange(0, 200, 5)), rtol=1e-6)
    assert c.evals["step"].tolist() == [0, 50, 100, 150]
    with pytest.raises(ScheduleError) as err:
        import_tensorboard(tmp_path, schedule="wsd:peak=0.002,steps=200,warmup=20,decay=0.2")
    assert err.value.run_id == "run1"


def test_import_tensorboard_without_tensorboard_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "run1").mkdir()
    (tmp_path / "run1" / "events.out.tfevents.0.host").write_bytes(b"")
    for name in [m for m in sys.modules if m == "tensorboard" or m.startswith("tensorboard.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import tensorboard now raises ImportError
    with pytest.raises(DataError) as err:
        import_tensorboard(tmp_path, schedule=SCHED)
    assert err.value.fix == 'pip install "scalefit[tensorboard]"' and "run1" in str(err.value.file)


@pytest.mark.parametrize("size", [25, 100, 400])
def test_all_mpl_curves_import_with_lr_matching_to_1e9(size: int) -> None:
    folder = data_path(f"{MPL}/csv_{size}")
    c = import_mpl_csv(folder)
    assert len(c) == 9 and "cosine_24000" in c.run_ids
    for run in c:
        raw = pd.read_csv(folder / f"{run.run_id}.csv")
        np.testing.assert_allclose(run.schedule(raw["step"]), raw["lr"], rtol=1e-9, atol=0)
        np.testing.assert_array_equal(run.loss, raw["loss"])
    first = c.run("cosine_24000")
    assert (first.steps[0], first.lr[0], first.loss[0]) == (2160, 3e-4, 4.1114) if size == 25 else True


def test_mpl_wrong_lr_names_file_and_step(tmp_path: Path) -> None:
    raw = pd.read_csv(data_path(f"{MPL}/csv_25/cosine_24000.csv"))
    raw.loc[3, "lr"] *= 1 + 1e-7
    path = tmp_path / "cosine_24000.csv"
    raw.to_csv(path, index=False)
    with pytest.raises(ScheduleError, match=f"step {raw.loc[3, 'step']}") as err:
        import_mpl_csv(path)
    assert err.value.file == str(path) and err.value.run_id == "cosine_24000"


@pytest.fixture(scope="module")
def schaipp() -> list:
    """All 165 bundled logs, imported through the two bundled datasets (cached per process)."""
    return [load("schaipp-124m"), load("schaipp-sizes")]


def test_all_schaipp_logs_import_and_validate(schaipp) -> None:
    manifest = pd.read_csv(data_path(f"{SCHAIPP}/MANIFEST.csv")).set_index("file")["final_val_loss"]
    runs = pd.concat([c.runs for c in schaipp])
    assert len(runs) == len(manifest) == 165 and set(runs["source_file"]) == set(manifest.index)
    np.testing.assert_allclose(runs["final_val_loss"], manifest[runs["source_file"]], rtol=1e-12)
    for curves in schaipp:
        assert curves.frame.groupby("run_id")["step"].is_monotonic_increasing.all()
        assert not curves.frame.duplicated(["run_id", "step"]).any()
        assert (curves.runs["status"] == "ok").all()


def test_schaipp_branches_join_continuously(schaipp) -> None:
    n = 0
    for curves in schaipp:
        branches = curves.runs[curves.runs["branch_step"] > 0]
        n += len(branches)
        for run_id, row in branches.iterrows():
            run = curves.run(run_id)
            i = int(np.searchsorted(run.steps, row["branch_step"]))
            assert run.steps[i] == row["branch_step"] and run.steps[0] == 50  # trunk rows from the start
            jump = abs(run.loss[i + 1] - run.loss[i])
            typical = np.quantile(np.abs(np.diff(run.loss[max(0, i - 40) : i])), 0.95)
            assert jump <= typical, run_id
            trunk = curves.run(row["trunk"])
            np.testing.assert_array_equal(run.loss[: i + 1], trunk.loss[trunk.steps <= row["branch_step"]])
    assert n == 74


def test_schaipp_duplicates_keep_last_and_lr_rebuilt(schaipp) -> None:
    from scalefit.store.importers.schaipp import load_log

    curves = schaipp[0]
    run_id = "wsd-F0.4-linear-lr0.001-T50000"
    log = load_log(data_path(f"{SCHAIPP}/{curves.runs.loc[run_id, 'source_file']}"))
    hist = pd.DataFrame(log["history"]["train"])
    assert hist["iter"].duplicated().sum() == 5  # iters 39050..39250 logged twice (resumed)
    last = hist.drop_duplicates("iter", keep="last").set_index("iter")["train_loss"]
    run = curves.run(run_id)
    got = pd.Series(run.loss, index=run.steps)
    np.testing.assert_array_equal(got[last.index], last)
    np.testing.assert_allclose(run.lr, run.schedule(run.steps), rtol=0)
    assert run.meta["cooldown_frac"] == 0.4 and run.meta["decay_shape"] == "linear"


def test_schaipp_branch_without_trunk_raises() -> None:
    branch = next(p for p in data_path(SCHAIPP).glob("ann0.2_*nlayers8_nhead6*iter3000*"))
    with pytest.raises(DataError, match="trunk") as err:
        import_schaipp_json([branch])
    assert err.value.file == str(branch) and err.value.field == "config.resume_from"
