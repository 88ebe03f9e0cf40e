"""Loss-to-loss law (Brandfonbrener et al. 2024): published maps, synthetic recovery, translation."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from test_overtraining import quiet_fit

from scalefit.errors import FitWarning
from scalefit.fitting.design import build_design
from scalefit.laws.base import numeric_jacobian
from scalefit.laws.chinchilla import ChinchillaLaw
from scalefit.laws.kaplan import KaplanLaw
from scalefit.laws.loss_to_loss import LossToLossLaw, pair_runs, shifted_power_lsq
from scalefit.predict.chains import translate_fit, translate_values
from scalefit.store import datasets

KAPLAN = np.array([1.9, 4e7, 5e8, 0.48, 0.6])  # E, A, B, alpha, beta


def _kaplan_runs(theta=KAPLAN, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    n = np.repeat(np.geomspace(2e7, 1e9, 6), 4)
    d = n * np.tile([5.0, 20.0, 60.0, 150.0], 6)
    frame = pd.DataFrame({"N": n, "D": d})
    law = KaplanLaw()
    loss = law.predict(theta, build_design(law, frame, predict=True))
    return frame.assign(loss=loss * np.exp(noise * rng.standard_normal(len(n))))


@pytest.mark.parametrize(
    ("target", "e1", "kappa", "K"),
    [
        ("fineweb-100b", 2.17, 1.00, 1.01),
        ("proof-pile-2", 1.32, 1.07, 0.60),
        ("slimpajama-chunk1", 1.97, 0.97, 1.05),
        ("smollm-corpus", 1.53, 1.01, 1.07),
        ("starcoder", 0.85, 1.10, 0.63),
    ],
)
def test_published_train_to_train_maps_from_fineweb_edu(target, e1, kappa, K):
    sweep = datasets.load("brandfonbrener-sweep")
    pairs = pair_runs(
        sweep[sweep.data == "fineweb-edu-100b"],
        sweep[sweep.data == target],
        loss0="val_loss",
        loss1="val_loss",
    )
    assert len(pairs) >= 80
    fit = shifted_power_lsq(pairs.loss0, pairs.loss1, 1.97, e1, bootstrap=1000)  # the paper's E0, E1
    assert fit["kappa"] == pytest.approx(kappa, abs=0.015)
    assert fit["K"] == pytest.approx(K, abs=0.02)
    assert (
        fit["kappa_ci"][0] < fit["kappa"] < fit["kappa_ci"][1] and fit["K_ci"][0] < fit["K"] < fit["K_ci"][1]
    )


def test_fixed_offsets_recovered_by_engine_and_by_linear_fit():
    l0 = np.linspace(2.3, 3.6, 30)
    l1 = 0.63 * (l0 - 1.97) ** 1.1 + 0.85
    frame = pd.DataFrame({"loss0": l0, "loss1": l1})
    lin = shifted_power_lsq(l0, l1, 1.97, 0.85)
    assert lin["kappa"] == pytest.approx(1.1, abs=1e-10) and lin["K"] == pytest.approx(0.63, abs=1e-10)
    fit = quiet_fit(LossToLossLaw(e0=1.97, e1=0.85), frame)
    assert fit.param_names == ("K", "kappa")
    np.testing.assert_allclose(fit.theta, [0.63, 1.1], rtol=1e-5)


def test_free_target_offset_recovered():
    l0 = np.linspace(2.2, 4.0, 40)
    rng = np.random.default_rng(1)
    l1 = (0.63 * (l0 - 1.97) ** 1.1 + 0.85) * np.exp(2e-4 * rng.standard_normal(l0.size))
    fit = quiet_fit(LossToLossLaw(e0=1.97), pd.DataFrame({"loss0": l0, "loss1": l1}))
    assert fit.values["E1"] == pytest.approx(0.85, abs=0.03)
    assert fit.values["kappa"] == pytest.approx(1.1, abs=0.03)


def test_jacobian_with_both_offsets_free_matches_finite_differences():
    """The law-contract test covers the fixed-E0 form; here E0 is a parameter too."""
    l2l = LossToLossLaw()
    d2 = build_design(l2l, pd.DataFrame({"loss0": [2.5, 3.0, 3.5], "loss1": [1.2, 1.6, 2.0]}))
    theta = np.array([0.7, 1.1, 1.9, 0.8])
    np.testing.assert_allclose(l2l.jacobian(theta, d2), numeric_jacobian(l2l, theta, d2), rtol=1e-6)
    np.testing.assert_allclose(l2l.jacobian_many(np.stack([theta, theta]), d2)[1], l2l.jacobian(theta, d2))


def test_translation_is_exact_for_the_kaplan_form():
    frame = _kaplan_runs()
    law = KaplanLaw()
    design = build_design(law, frame, predict=True)
    K, kappa, e1 = 0.63, 1.1, 0.85
    mapped = K * (law.predict(KAPLAN, design) - KAPLAN[0]) ** kappa + e1
    values = translate_values(dict(zip(law.param_names, KAPLAN, strict=True)), K=K, kappa=kappa, E1=e1)
    moved = np.array([values[p] for p in law.param_names])
    np.testing.assert_allclose(law.predict(moved, design), mapped, rtol=1e-12)


def test_translate_fit_carries_bootstrap_draws():
    frame = _kaplan_runs(noise=1e-3)
    source = quiet_fit(KaplanLaw(), frame, bootstrap=20, seed=0)
    l0 = source.predict(frame).loss_pred.to_numpy()
    pairs = pd.DataFrame({"loss0": l0, "loss1": 0.63 * (l0 - source.values["E"]) ** 1.1 + 0.85})
    mapping = quiet_fit(LossToLossLaw(e0=source.values["E"], e1=0.85), pairs, bootstrap=20, seed=1)
    moved = translate_fit(source, mapping)
    assert moved.values["E"] == pytest.approx(0.85) and moved.bootstrap.shape == (20, 5)
    assert moved.values["alpha"] == pytest.approx(1.1 * source.values["alpha"], rel=1e-6)
    pred = moved.predict(frame)
    np.testing.assert_allclose(pred.loss_pred, pairs.loss1, rtol=1e-6)
    assert np.all(pred.lo <= pred.loss_pred) and np.all(pred.loss_pred <= pred.hi)
    assert json.loads(json.dumps(moved.to_dict()))["values"]["E"] == pytest.approx(0.85)


def test_chinchilla_translation_is_term_by_term_and_warned():
    """K (L - E)^kappa + E1 of E + A N^-alpha + B D^-beta: each term maps to K (term)^kappa. Exact when one
    term dominates; the Kaplan rule (A K^(1/(kappa alpha))) would be wrong by orders of magnitude."""
    values = {"E": 1.7, "A": 400.0, "B": 1e-30, "alpha": 0.34, "beta": 0.28}
    K, kappa, e1 = 0.63, 1.1, 0.85
    moved = translate_values(values, K=K, kappa=kappa, E1=e1, form="chinchilla")
    n = np.geomspace(1e8, 3.3e9, 5)
    mapped = K * (values["A"] * n ** -values["alpha"]) ** kappa + e1
    np.testing.assert_allclose(e1 + moved["A"] * n ** -moved["alpha"], mapped, rtol=1e-12)
    assert moved["A"] == pytest.approx(K * 400.0**kappa)
    law = ChinchillaLaw()
    table = pd.DataFrame({"N": np.geomspace(1e7, 1e9, 12), "D": np.geomspace(1e9, 1e11, 12)})
    design = build_design(law, table, predict=True)
    theta = np.array([6.0, 7.0, 0.5, 0.34, 0.28])
    table["loss"] = law.predict(theta, design)
    source = quiet_fit(law, table)
    e0 = float(np.exp(source.values["e"]))
    pairs = pd.DataFrame({"loss0": table["loss"], "loss1": K * (table["loss"] - e0) ** kappa + e1})
    mapping = quiet_fit(LossToLossLaw(e0=e0, e1=e1), pairs)
    with pytest.warns(FitWarning, match="term by term"):
        moved_fit = translate_fit(source, mapping)
    expect = np.log(mapping.values["K"]) + mapping.values["kappa"] * source.values["a"]
    assert moved_fit.values["a"] == pytest.approx(expect, rel=1e-12)
    assert moved_fit.warnings[0]["code"] == "approximate_translation"
