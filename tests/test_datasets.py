"""Bundled reference datasets: every name loads, with published sizes and values pinned."""

from __future__ import annotations

import numpy as np
import pytest

import scalefit as sf
from scalefit.errors import DataError
from scalefit.store import datasets
from scalefit.store.datasets import data_path, describe, epoch_subset, list_datasets, load
from scalefit.store.sources import load_data

NAMES = [
    "brandfonbrener-sweep",
    "chinchilla-epoch",
    "gadre-overtraining",
    "mpl-100m",
    "mpl-25m",
    "mpl-400m",
    "porian-fits",
    "porian-isoflop",
    "porian-optimal",
    "schaipp-124m",
    "schaipp-sizes",
]


def test_list_and_describe() -> None:
    assert list_datasets() == NAMES
    for name in NAMES:
        text = describe(name)
        assert text.startswith(name) and "README.md" in text
    with pytest.raises(DataError, match="unknown dataset") as err:
        load("chinchilla")
    assert err.value.value == "chinchilla"


def test_every_bundled_folder_has_a_provenance_readme() -> None:
    for folder in ("lr-curves", "chinchilla", "overtraining", "loss-to-loss", "porian"):
        text = (data_path(folder) / "README.md").read_text(encoding="utf-8")
        assert "Source" in text or "source" in text


@pytest.mark.parametrize("size", [25, 100, 400])
def test_mpl_curves(size: int) -> None:
    curves = load(f"mpl-{size}m")
    assert isinstance(curves, sf.Curves) and len(curves) == 9
    assert curves.runs["n_params"].unique().tolist() == [size * 1_000_000]
    run = curves.run("wsdcon_9")
    assert run.lr[-1] == pytest.approx(9e-5, rel=1e-12)
    np.testing.assert_allclose(
        curves.lr_sequence("cosine_24000")[[0, 2160, 23999]], [0.0, 3e-4, 3e-5], rtol=1e-3
    )
    assert load(f"mpl-{size}m") is curves  # cached, immutable


def test_mpl_25m_first_row_is_the_published_csv() -> None:
    run = load("mpl-25m").run("cosine_24000")
    assert (int(run.steps[0]), float(run.lr[0]), float(run.loss[0])) == (2160, 3e-4, 4.1114)


def test_schaipp_124m() -> None:
    curves = load("schaipp-124m")
    assert len(curves) == 117
    runs = curves.runs
    assert runs["n_params"].unique().tolist() == [123587328]
    run = curves.run("wsd-F0.2-linear-lr0.001-T50000")
    assert run.meta["trunk"] == "constant-lr0.001-T50000" and run.meta["branch_step"] == 40000
    assert run.meta["cooldown_frac"] == 0.2 and run.meta["total_steps"] == 50000
    final = curves.evals.query("dataset == 'final-val'").set_index("run_id")["eval_loss"]
    assert final["wsd-F0.2-linear-lr0.001-T50000"] == pytest.approx(2.965991497039795, rel=1e-12)
    assert final["wsd-F0.2-1-sqrt-lr0.001-T50000"] == pytest.approx(2.95990252494812, rel=1e-12)
    assert set(runs["decay_shape"]) == {"constant", "linear", "1-sqrt", "cosine"}
    val = curves.select(["cosine-zero-lr0.001-T50000"]).evals.query("dataset == 'val'")
    assert val["step"].iloc[0] == 0 and val["step"].iloc[-1] == 49800


def test_schaipp_sizes() -> None:
    curves = load("schaipp-sizes")
    assert len(curves) == 48
    sizes = sorted(curves.runs["n_params"].unique().tolist())
    assert sizes == [33479040, 53027328, 59845120, 93159040, 123587328, 151905024, 208540416, 359842816]
    assert curves.runs.loc["360m-cosine-lr0.001-T50000", "tokens_per_step"] == 50 * 4 * 2 * 512


def test_chinchilla_epoch() -> None:
    df = load("chinchilla-epoch")
    assert len(df) == 245 and list(df.columns) == ["N", "D", "C", "loss", "epoch_fit"]
    np.testing.assert_allclose(df["D"], df["C"] / (6 * df["N"]))
    sub = epoch_subset(df)
    assert len(sub) == 240 and sub["loss"].max() < df["loss"].nlargest(5).min()
    first = df.iloc[0]
    assert first["N"] == pytest.approx(6795600349.289497) and first["loss"] == pytest.approx(
        5.005581996196243
    )


def test_tables() -> None:
    gadre = load("gadre-overtraining")
    assert gadre.shape == (104, 85) and {"N", "D", "M", "loss_c4_val"} <= set(gadre.columns)
    assert load("brandfonbrener-sweep").shape == (529, 86)
    fits = load("porian-fits")
    kaplan = fits[fits["config_label"] == "Reproducing Kaplan et al."]["n_exponent"]
    assert kaplan.iloc[0] == pytest.approx(0.835, abs=5e-4)
    assert load("porian-isoflop").shape[0] == 1745 and load("porian-optimal").shape[0] == 177


def test_a_bundled_curve_set_gives_its_eval_loss_and_refuses_an_unknown_one():
    """`--loss eval:<set>` on a bundled dataset reads that eval set (its steps, LR from the schedules);
    a loss the dataset does not carry is a named error, never silently ignored."""
    ids = ["constant-lr0.001-T50000", "cosine-zero-lr0.001-T50000"]
    val = load_data("schaipp-124m", loss="eval:val", runs=ids)
    evals = datasets.load("schaipp-124m").evals
    want = evals[(evals["dataset"] == "val") & evals["run_id"].isin(ids)]
    assert len(val.frame) == len(want) and set(val.run_ids) == set(ids)
    got = val.frame.set_index(["run_id", "step"])["loss"].sort_index()
    np.testing.assert_array_equal(
        got.to_numpy(), want.set_index(["run_id", "step"])["eval_loss"].sort_index()
    )
    assert np.all(np.isfinite(val.lr_sequence(ids[1], 100)))
    with pytest.raises(DataError, match="unknown loss for this bundled dataset") as err:
        load_data("mpl-25m", loss="eval:nope")
    assert err.value.fix.startswith("use --loss train_loss")
