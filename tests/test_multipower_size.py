"""Size-aware Multi-Power Law: Jacobian, recovery across sizes, extrapolation to a larger model, bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scalefit.errors import DataError, FitError
from scalefit.fitting.design import build_design
from scalefit.laws import get_law
from scalefit.laws.base import numeric_jacobian
from scalefit.store.curves import Curves

TRUE = {
    "E": 2.2,
    "Q": 0.8,
    "kappa": 0.35,
    "A": 0.5,
    "alpha": 0.45,
    "B": 400.0,
    "C": 2.0,
    "beta": 0.6,
    "gamma": 0.5,
}
SIZES = {"s": 2e7, "m": 5e7, "l": 1e8, "x": 3e8}
SPECS = {
    "cosine": "cosine:peak=0.001,steps=3000,warmup=200,final=0.1",
    "constant": "constant:peak=0.001,steps=3000,warmup=200",
    "wsd": "wsd:peak=0.001,steps=2500,warmup=200,decay=0.2",
}


def make_curves(theta, sizes=SIZES, noise=0.0, seed=0, scale_A=False):
    law = get_law("multipower-size", scale_A=scale_A)
    frames = []
    for size, n in sizes.items():
        for kind, spec in SPECS.items():
            total = int(spec.split("steps=")[1].split(",")[0])
            steps = np.arange(100, total + 1, 100)
            row = {"run_id": f"{size}-{kind}", "lr": np.nan, "loss": 1.0, "schedule": spec, "n_params": n}
            frames.append(pd.DataFrame({"step": steps, **row}))
    curves = Curves.from_frame(pd.concat(frames, ignore_index=True))
    loss = law.predict(np.asarray(theta, dtype=float), build_design(law, curves, predict=True))
    loss *= np.exp(noise * np.random.default_rng(seed).standard_normal(loss.size))
    return Curves.from_frame(curves.to_frame().assign(loss=np.round(loss, 6))), law


def test_jacobian_matches_finite_differences_with_and_without_size_scaled_amplitude():
    theta = np.array(list(TRUE.values()))
    curves, law = make_curves(theta)
    design = build_design(law, curves)
    np.testing.assert_allclose(
        law.jacobian(theta, design), numeric_jacobian(law, theta, design), rtol=2e-5, atol=1e-8
    )
    theta_z = np.insert(theta, 4, 0.1)
    curves, law = make_curves(theta_z, scale_A=True)
    design = build_design(law, curves)
    assert law.param_names[4] == "zeta"
    np.testing.assert_allclose(
        law.jacobian(theta_z, design), numeric_jacobian(law, theta_z, design), rtol=2e-5, atol=1e-8
    )


@pytest.mark.parametrize("convention", ["official", "causal"])
def test_reduces_to_multipower_at_each_size(convention):
    theta = np.array(list(TRUE.values()))
    curves, _ = make_curves(theta, sizes={"m": 6e7})
    law = get_law("multipower-size", convention=convention)
    assert law.config()["convention"] == convention
    mpl = get_law("multipower", convention=convention)
    L0 = TRUE["E"] + TRUE["Q"] * (6e7 / 1e8) ** -TRUE["kappa"]
    mpl_theta = np.array([L0, *theta[3:]])
    design = build_design(law, curves, predict=True)
    np.testing.assert_allclose(
        law.predict(theta, design),
        mpl.predict(mpl_theta, build_design(mpl, curves, predict=True)),
        rtol=1e-13,
    )


def test_fit_on_smaller_sizes_predicts_the_largest():
    from scalefit.fitting.engine import fit_law

    theta = np.array(list(TRUE.values()))
    curves, law = make_curves(theta, noise=2e-4)
    train, test = curves.split([r for r in curves.run_ids if not r.startswith("x-")])
    fit = fit_law(law, train, starts=4)
    assert fit.values["kappa"] == pytest.approx(TRUE["kappa"], rel=0.5)
    design = build_design(law, test, predict=True)
    pred = law.predict(np.array([fit.values[n] for n in law.param_names]), design)
    truth = test.frame["loss"].to_numpy()
    assert np.mean(np.abs(pred / truth - 1)) < 2e-3


def test_one_size_or_missing_size_is_refused():
    curves, law = make_curves(np.array(list(TRUE.values())), sizes={"m": 6e7})
    with pytest.raises(FitError, match="two model sizes"):
        build_design(law, curves)
    frame = curves.to_frame().drop(columns=["n_params"])
    with pytest.raises(DataError, match="model size"):
        build_design(law, Curves.from_frame(frame))
