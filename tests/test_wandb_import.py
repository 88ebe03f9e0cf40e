"""W&B CSV exports in the exact shapes W&B writes: run histories (Hugging Face Trainer, Lightning, a plain
loop) and the UI's panel exports (the real OLMo-7B fixtures). Steps, LR and losses read back exactly and
no row is dropped or renumbered without the rule that says so."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scalefit import schedules
from scalefit.errors import DataError
from scalefit.store.importers import import_wandb_csv
from scalefit.store.parquet import read_curves, write_curves

FIXTURES = Path(__file__).parent / "fixtures" / "wandb-exports"
PANELS = sorted(FIXTURES.glob("wandb_export_*.csv"))
HF_SCHED = schedules.parse("linear:peak=5e-05,steps=400,warmup=40")


def _hf_history(path: Path) -> pd.DataFrame:
    """HF Trainer + WandbCallback, logging_steps=10, eval_steps=100, 400 steps: train rows, eval rows
    (their own ``wandb.log`` calls at the same global step) and the final train-summary row."""
    rows = []
    for g in range(10, 401, 10):
        rows.append(
            {
                "train/loss": f"{4.0 - g / 200:.4f}",
                "train/grad_norm": "1.25",
                "train/learning_rate": repr(float(HF_SCHED(g))),
                "train/epoch": f"{g / 400:.3f}",
                "train/global_step": str(g),
            }
        )
        if g % 100 == 0:
            rows.append(
                {
                    "eval/loss": f"{4.1 - g / 200:.4f}",
                    "eval/runtime": "3.2",
                    "eval/samples_per_second": "100.0",
                    "train/epoch": f"{g / 400:.3f}",
                    "train/global_step": str(g),
                }
            )
    rows.append({"train/train_runtime": "812.5", "train/train_loss": "3.1", "train/global_step": "400"})
    df = pd.DataFrame(rows).fillna("")
    df.insert(0, "_step", [str(i) for i in range(len(df))])
    df["_runtime"] = "1.0"
    df["_timestamp"] = "1700000000.0"
    df.to_csv(path, index=False)
    return df


def test_hf_trainer_history_steps_lr_loss_exact(tmp_path: Path) -> None:
    raw = _hf_history(tmp_path / "wandb_export_hf.csv")
    c = import_wandb_csv(tmp_path / "wandb_export_hf.csv", name="hf-run")
    run = c.run("hf-run")
    train = raw[raw["train/loss"] != ""]
    g = train["train/global_step"].astype(int).to_numpy()
    has_loss = ~np.isnan(run.loss)
    # HF rule: the loss logged at global step g is of update g-1, the LR logged at g is update g's
    np.testing.assert_array_equal(run.steps[has_loss], g - 1)
    np.testing.assert_array_equal(run.loss[has_loss], train["train/loss"].astype(float))
    lr_steps = run.steps[~np.isnan(run.lr) & np.isin(run.steps, g)]
    np.testing.assert_array_equal(lr_steps, g)
    np.testing.assert_array_equal(run.lr[np.isin(run.steps, g)], train["train/learning_rate"].astype(float))
    assert len(run.steps) == len(set(g - 1) | set(g))  # every file value has its row, none invented
    assert c.runs.loc["hf-run", "schedule"] == str(HF_SCHED)  # recognised from the points logged every 10
    np.testing.assert_allclose(c.lr_sequence("hf-run", 400), HF_SCHED.lrs(400), rtol=1e-12)
    ev = c.evals
    assert ev["dataset"].unique().tolist() == ["eval/loss"] and ev["step"].tolist() == [100, 200, 300, 400]
    np.testing.assert_array_equal(ev["eval_loss"], raw.loc[raw["eval/loss"] != "", "eval/loss"].astype(float))
    summary = c.runs.loc["hf-run", "import_summary"]
    assert "'train/global_step' (1-based" in summary and "eval/loss (4 rows)" in summary
    assert "row counter" not in summary  # W&B's _step is not the step
    assert "train/train_loss" in summary.split("not imported: ")[1]  # nothing dropped silently
    assert c.runs.loc["hf-run", "status"] == "ok"


def test_lightning_history_zero_based_rows_merged_by_step(tmp_path: Path) -> None:
    rows = []
    for s in range(49, 500, 50):  # log_every_n_steps=50: steps 49, 99, ... (0-based)
        rows.append({"lr-AdamW": repr(1e-3 * (s + 1) / 500), "trainer/global_step": str(s)})
        rows.append({"train_loss": f"{3.0 - s / 1000:.3f}", "epoch": "0", "trainer/global_step": str(s)})
    rows.append({"val_loss": "2.75", "epoch": "0", "trainer/global_step": "499"})
    df = pd.DataFrame(rows).fillna("")
    df.insert(0, "_step", [str(i) for i in range(len(df))])
    df.to_csv(tmp_path / "lightning.csv", index=False)
    c = import_wandb_csv(tmp_path / "lightning.csv")
    run = c.run("lightning")
    np.testing.assert_array_equal(run.steps, np.arange(49, 500, 50))  # LR and loss rows share a step
    np.testing.assert_allclose(run.lr, 1e-3 * (run.steps + 1) / 500, rtol=1e-15)
    np.testing.assert_array_equal(run.loss, [float(f"{3.0 - s / 1000:.3f}") for s in run.steps])
    assert c.evals[["step", "dataset", "eval_loss"]].values.tolist() == [[499, "val_loss", 2.75]]
    summary = c.runs.loc["lightning", "import_summary"]
    assert "step from 'trainer/global_step'" in summary and "1-based" not in summary
    assert "LR from 'lr-AdamW'" in summary


def test_plain_history_with_only_w_and_b_step_says_so(tmp_path: Path) -> None:
    path = tmp_path / "plain.csv"
    path.write_text("_step,loss,lr,_runtime\n0,5.0,0.001,1\n1,4.0,0.001,2\n2,,,3\n3,3.5,0.001,4\n")
    c = import_wandb_csv(path)
    np.testing.assert_array_equal(c.run("plain").steps, [0, 1, 3])  # row 2 logged nothing we import
    assert "W&B's _step row counter is the step" in c.runs.loc["plain", "import_summary"]


def test_missing_loss_is_not_observed_and_inf_is_divergence(tmp_path: Path) -> None:
    csv = tmp_path / "wandb_export.csv"
    csv.write_text(
        "_step,step,name,train/loss,lr,val/loss\n"
        "0,0,a,5.0,0.001,\n1,1,a,4.0,0.001,\n2,2,a,,0.001,3.9\n3,3,a,nan,0.001,\n"
        "4,0,b,6.0,0.002,\n5,1,b,inf,0.002,5.1\n"
    )
    c = import_wandb_csv(csv, eval_columns={"val/loss": "val"})
    a = c.run("a")
    np.testing.assert_array_equal(a.steps, [0, 1, 2, 3])
    np.testing.assert_array_equal(np.isnan(a.loss), [False, False, True, True])
    assert c.runs.loc["a", "status"] == "ok" and c.runs.loc["b", "status"] == "diverged"
    assert c.evals[["run_id", "step", "eval_loss"]].values.tolist() == [["a", 2, 3.9], ["b", 1, 5.1]]
    assert c.final().set_index("run_id").loc["a", "step"] == 1


def test_several_files_globs_and_not_found(tmp_path: Path) -> None:
    for name, loss in (("alpha", 3.0), ("beta", 4.0)):
        (tmp_path / f"{name}.csv").write_text(f"step,train/loss,lr\n0,{loss},0.1\n1,{loss - 1},0.1\n")
    assert import_wandb_csv(str(tmp_path / "*.csv")).run_ids == ["alpha", "beta"]
    assert import_wandb_csv([tmp_path / "alpha.csv", tmp_path / "beta.csv"]).run_ids == ["alpha", "beta"]
    assert import_wandb_csv(tmp_path).run_ids == ["alpha", "beta"]
    with pytest.raises(DataError, match="not found") as err:
        import_wandb_csv(tmp_path / "gamma.csv")
    assert err.value.file == str(tmp_path / "gamma.csv")
    with pytest.raises(DataError, match="not found"):
        import_wandb_csv(str(tmp_path / "*.tsv"))
    with pytest.raises(DataError, match="no LR column") as err:
        import_wandb_csv(tmp_path / "alpha.csv", lr="learning_rate")
    assert "lr=" in err.value.fix


def _panel_cells(path: Path) -> pd.DataFrame:
    """(run, metric, step, value) of every non-empty value cell of a panel export, read as text."""
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    out = []
    for col in raw.columns[1:]:
        if col.endswith(("__MIN", "__MAX")):
            continue
        run, _, metric = col.rpartition(" - ")
        cells = raw[col] != ""
        out.append(
            pd.DataFrame(
                {
                    "run": run,
                    "metric": metric,
                    "step": raw.loc[cells, "Step"].astype(int),
                    "value": raw.loc[cells, col].astype(float),
                }
            )
        )
    return pd.concat(out, ignore_index=True)


@pytest.mark.parametrize("path", PANELS, ids=[p.name[14:33] for p in PANELS])
def test_real_panel_export_imported_exactly(path: Path) -> None:
    cells = _panel_cells(path)
    c = import_wandb_csv(path)
    assert len(c) == 36 == cells["run"].nunique() and set(c.run_ids) == set(cells["run"])
    ev = c.evals.sort_values(["run_id", "step"]).reset_index(drop=True)
    want = cells.sort_values(["run", "step"]).reset_index(drop=True)
    assert len(ev) == len(want)  # every value cell, and no __MIN/__MAX cell, became one eval row
    assert ev["dataset"].unique().tolist() == want["metric"].unique().tolist()
    np.testing.assert_array_equal(ev["run_id"], want["run"])
    np.testing.assert_array_equal(ev["step"], want["step"])
    np.testing.assert_array_equal(ev["eval_loss"], want["value"])
    assert np.isnan(c.frame["loss"]).all() and np.isnan(c.frame["lr"]).all()  # no train loss, no LR
    assert (c.runs["status"] == "ok").all()
    for run_id in c.run_ids:
        assert set(c.run(run_id).steps) == set(want.loc[want["run"] == run_id, "step"])


def test_four_panels_in_one_call_round_trip_through_the_store(tmp_path: Path) -> None:
    c = import_wandb_csv(str(FIXTURES / "*.csv"))
    assert len(c) == 36 and c.evals["dataset"].nunique() == 4
    assert len(c.evals) == sum(len(_panel_cells(p)) for p in PANELS)
    write_curves(tmp_path, c)
    metric = "eval/wikitext_103-validation/CrossEntropyLoss"
    back = read_curves(tmp_path, loss=f"eval:{metric}")
    run = back.run("OLMo-7B-run-038")
    want = _panel_cells(PANELS[3])
    want = want[want["run"] == "OLMo-7B-run-038"]
    np.testing.assert_array_equal(run.steps, want["step"])
    np.testing.assert_array_equal(run.loss, want["value"])
    assert "from 4 files" in c.runs.loc["OLMo-7B-run-038", "import_summary"]


def test_panel_group_min_max_are_never_values(tmp_path: Path) -> None:
    path = tmp_path / "panel.csv"
    path.write_text(
        '"Step","Group: lr-sweep a - train/loss","Group: lr-sweep a - train/loss__MIN",'
        '"Group: lr-sweep a - train/loss__MAX","run b - train/loss","run b - train/loss__MIN",'
        '"run b - train/loss__MAX"\n'
        '"0","5.0","4.5","5.5","6.0","6.0","6.0"\n"10","4.0","3.5","4.5","","",""\n"20","","","","5.0","5.0","5.0"\n'
    )
    c = import_wandb_csv(path)
    assert c.run_ids == ["lr-sweep a", "run b"]
    a, b = c.run("lr-sweep a"), c.run("run b")
    np.testing.assert_array_equal(a.steps, [0, 10]) and np.testing.assert_array_equal(a.loss, [5.0, 4.0])
    np.testing.assert_array_equal(b.steps, [0, 20]) and np.testing.assert_array_equal(b.loss, [6.0, 5.0])
    assert c.evals is None
    summary = c.runs.loc["lr-sweep a", "import_summary"]
    assert "a W&B group" in summary and "__MIN/__MAX differ from the value at 2 steps" in summary
    bad = tmp_path / "bad.csv"
    bad.write_text('"Step","r - loss__MIN"\n"0","1"\n')
    with pytest.raises(DataError, match="without its value column"):
        import_wandb_csv(bad)


def test_w_and_b_run_names_stay_readable_through_the_store(tmp_path: Path) -> None:
    path = tmp_path / "panel.csv"
    path.write_text(
        '"Step","team/run 1 - eval/loss","team/run 1 - eval/loss__MIN","team/run 1 - eval/loss__MAX"\n'
    )
    with path.open("a") as fh:
        fh.write('"100","3.5","3.5","3.5"\n"200","3.25","3.25","3.25"\n')
    c = import_wandb_csv(path)
    assert c.run_ids == ["team/run 1"]
    write_curves(tmp_path / "store", c)
    back = read_curves(tmp_path / "store", loss="eval:eval/loss")
    assert back.run_ids == ["team/run 1"]
    np.testing.assert_array_equal(back.run("team/run 1").loss, [3.5, 3.25])


def test_eval_rows_without_a_step_are_counted_and_train_rows_without_one_refused(tmp_path: Path) -> None:
    path = tmp_path / "loop.csv"
    path.write_text("_step,step,loss,lr,eval/loss\n0,0,5.0,0.1,\n1,,,,4.9\n2,10,4.0,0.1,\n3,,,,3.9\n")
    c = import_wandb_csv(path)
    np.testing.assert_array_equal(c.run("loop").steps, [0, 10])
    assert c.evals is None
    assert "2 eval-only rows with no 'step': not imported" in c.runs.loc["loop", "import_summary"]
    path.write_text("_step,step,loss,lr\n0,0,5.0,0.1\n1,,4.5,0.1\n")
    with pytest.raises(DataError, match="a logged row has no step") as err:
        import_wandb_csv(path)
    assert err.value.value == "line 3" and err.value.run_id == "loop"


def test_a_panel_run_with_no_value_is_named_in_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "panel.csv"
    path.write_text('"Step","a - eval/loss","b - eval/loss"\n"100","3.5",""\n"200","3.25",""\n')
    with pytest.warns(UserWarning, match=r"no logged value left out: \['b'\]"):
        c = import_wandb_csv(path)
    assert c.run_ids == ["a"]
    path.write_text('"Step","b - eval/loss"\n"100",""\n')
    with pytest.raises(DataError, match="no logged values"), pytest.warns(UserWarning):
        import_wandb_csv(path)
