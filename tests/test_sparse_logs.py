"""Loss and LR logged every N steps, in the Hugging Face Trainer's W&B history shape, fit as they are
(no schedule given) and predict as the fit on the dense logs of the same synthetic runs does."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import scalefit as sf
from scalefit import schedules
from scalefit.fitting.design import build_design
from scalefit.laws import get_law
from scalefit.store.curves import Curves
from scalefit.store.importers import import_wandb_csv
from scalefit.store.importers._lr import recognise_schedule

TRUE = np.array([2.8, 0.7, 0.5, 0.4])  # momentum law: L0, A, alpha, C (lam 0.999)
SPECS = {
    "linear": "linear:peak=0.001,steps=3000,warmup=250",
    "cosine": "cosine:peak=0.001,steps=3000,warmup=250,final=0.1",
    "wsd": "wsd:peak=0.001,steps=3000,warmup=250,decay=0.2",
    "twostage": "two-stage:peak=0.001,steps=3000,warmup=250,switch_step=1950,second_ratio=0.3",
}
TARGET = "cosine:peak=0.001,steps=6000,warmup=250,final=0.1"


def true_loss(spec: str) -> dict[int, float]:
    """The momentum law's loss at every step of the run (step s: after updates 0..s-1)."""
    total = schedules.parse(spec).total_steps
    frame = pd.DataFrame({"run_id": "r", "step": np.arange(1, total + 1), "lr": np.nan, "loss": 1.0})
    curves = Curves.from_frame(frame.assign(schedule=spec))
    law = get_law("momentum", lam=0.999)
    design = build_design(law, curves, predict=True)
    return dict(zip(design.keys["step"].tolist(), law.predict(TRUE, design).tolist(), strict=True))


def write_hf_history(path: Path, spec: str, every: int) -> pd.DataFrame:
    """A W&B history CSV as the Hugging Face Trainer's WandbCallback writes it (logging_steps=every,
    eval every 500 steps): at global step g the train row has the loss of update g-1 and the LR the
    scheduler set for update g; eval rows are separate log calls; ``_step`` counts every call."""
    loss, sched = true_loss(spec), schedules.parse(spec)
    rows = []
    for g in range(every, sched.total_steps + 1, every):
        if g - 1 in loss:
            rows.append(
                {
                    "train/loss": repr(round(loss[g - 1], 6)),
                    "train/learning_rate": repr(float(sched(g))),
                    "train/epoch": repr(g / sched.total_steps),
                    "train/global_step": g,
                }
            )
        if g % 500 == 0:
            rows.append(
                {"eval/loss": repr(round(loss[g] + 0.05, 6)), "eval/runtime": "1.5", "train/global_step": g}
            )
    df = pd.DataFrame(rows)
    df.insert(0, "_step", range(len(df)))
    df.to_csv(path, index=False)
    return df


@pytest.fixture(scope="module")
def fits(tmp_path_factory: pytest.TempPathFactory) -> dict[int, sf.Fit]:
    out = {}
    for every in (1, 10, 100):
        folder = tmp_path_factory.mktemp(f"every{every}")
        for name, spec in SPECS.items():
            write_hf_history(folder / f"{name}.csv", spec, every)
        curves = import_wandb_csv(str(folder / "*.csv"))
        assert curves.run_ids == sorted(SPECS)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out[every] = sf.fit(curves, law="momentum", lam=0.999)
    return out


def test_sparse_logs_import_with_the_lr_rebuilt_and_no_schedule(tmp_path: Path) -> None:
    write_hf_history(tmp_path / "twostage.csv", SPECS["twostage"], 100)
    write_hf_history(tmp_path / "cosine.csv", SPECS["cosine"], 10)
    c = import_wandb_csv([tmp_path / "twostage.csv", tmp_path / "cosine.csv"])
    assert c.runs.loc["cosine", "schedule"] == SPECS["cosine"]  # recognised exactly
    np.testing.assert_allclose(
        c.lr_sequence("cosine"), schedules.parse(SPECS["cosine"]).lrs(3000), rtol=1e-12
    )
    assert pd.isna(c.runs.loc["twostage", "schedule"])  # no family matches: piecewise-linear rebuild
    summary = c.runs.loc["twostage", "import_summary"]
    assert "rebuilt piecewise-linear, max deviation" in summary and "every 100 steps" in summary
    dense = c.lr_sequence("twostage", 3000)
    truth = schedules.parse(SPECS["twostage"]).lrs(3000)
    logged = np.arange(100, 3000, 100)
    np.testing.assert_allclose(dense[logged], truth[logged], rtol=1e-12)  # exact at every logged step
    np.testing.assert_allclose(
        dense[:201], truth[:201], rtol=1e-9, atol=1e-15
    )  # the warmup line extends to 0
    assert (c.runs["status"] == "ok").all()


@pytest.mark.parametrize("every", [10, 100])
def test_sparse_fit_predicts_as_the_dense_fit(fits: dict[int, sf.Fit], every: int) -> None:
    target = Curves.from_frame(
        pd.DataFrame(
            {"run_id": "t", "step": np.arange(250, 6001, 50), "lr": np.nan, "loss": 1.0, "schedule": TARGET}
        )
    )
    dense = fits[1].predict(target)["loss_pred"].to_numpy()
    sparse = fits[every].predict(target)["loss_pred"].to_numpy()
    assert np.max(np.abs(sparse - dense)) < 0.002
    assert fits[every].values["L0"] == pytest.approx(2.8, abs=0.01)


@pytest.mark.parametrize(
    "spec",
    [
        "linear:peak=0.0005,steps=8000,warmup=100",
        "cosine:peak=0.001,steps=3000,warmup=200,final=0.1",
        "cosine:peak=0.001,steps=3000",
        "constant:peak=0.0003,steps=2000,warmup=250",
        "wsd:peak=0.002,steps=4000,warmup=100,decay_steps=800,shape=1-sqrt",
        "wsd:peak=0.002,steps=4000,warmup=100,decay_steps=600,shape=cosine,final=0.05",
    ],
)
@pytest.mark.parametrize("every", [10, 100])
def test_schedule_family_recognised_exactly_from_sparse_points(spec: str, every: int) -> None:
    sched = schedules.parse(spec)
    steps = np.arange(0, sched.total_steps + 1, every)
    for logged in (sched(steps), sched(steps).astype(np.float32).astype(float)):  # W&B float64, TB float32
        assert str(recognise_schedule(steps, logged)) == spec


def test_no_family_for_a_step_schedule() -> None:
    sched = schedules.parse("multistep:peak=0.001,steps=3000")
    steps = np.arange(0, 3001, 10)
    assert recognise_schedule(steps, sched(steps)) is None
