"""Momentum (annealing) law of Tissue et al. 2024: S2 definition, Jacobian, recovery, profile, bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from scalefit.errors import ConfigError, FitError, FitWarning
from scalefit.fitting.design import build_design
from scalefit.fitting.engine import fit_law
from scalefit.laws import get_law
from scalefit.store.curves import Curves

TRUE = {"L0": 2.8, "A": 0.7, "alpha": 0.5, "C": 0.4}
SPECS = {
    "cosine": "cosine:peak=0.0003,steps=12000,warmup=500,final=0.1",
    "constant": "constant:peak=0.0003,steps=12000,warmup=500",
    "wsd": "wsd:peak=0.0003,steps=10000,warmup=500,decay=0.3",
}


def make_curves(theta, specs, lam=0.999, noise=0.0, seed=0):
    law = get_law("momentum", lam=lam)
    frames = []
    for run_id, spec in specs.items():
        total = int(spec.split("steps=")[1].split(",")[0])
        steps = np.arange(0, total + 1, 50)
        frames.append(
            pd.DataFrame({"run_id": run_id, "step": steps, "lr": np.nan, "loss": 1.0, "schedule": spec})
        )
    curves = Curves.from_frame(pd.concat(frames, ignore_index=True))
    design = build_design(law, curves, predict=True)
    loss = law.predict(np.asarray(theta, dtype=float), design)
    loss *= np.exp(noise * np.random.default_rng(seed).standard_normal(loss.size))
    frame = curves.to_frame()
    frame = frame[frame["step"] > 0].assign(loss=np.round(loss, 6))
    return Curves.from_frame(frame), law


def test_s1_s2_follow_the_definition_step_by_step():
    curves, law = make_curves(list(TRUE.values()), {"wsd": SPECS["wsd"]}, lam=0.99)
    design = build_design(law, curves)
    lr = curves.lr_sequence("wsd", 10000)
    m, s1, s2 = 0.0, 0.0, 0.0
    expected = {}
    for i in range(10000):  # the paper's recursion, written out
        if i > 500:
            m = 0.99 * m + (lr[i - 1] - lr[i])
        s1 += lr[i]
        s2 += m
        expected[i + 1] = (s1, s2)
    steps = design.keys["step"].to_numpy()
    got = np.array([expected[s] for s in steps])
    np.testing.assert_allclose(design.x["S1"], got[:, 0], rtol=1e-12)
    np.testing.assert_allclose(design.x["S2"], got[:, 1], rtol=1e-9, atol=1e-12)
    assert design.x["S2"][steps <= 7000].max() == 0.0  # constant phase: no annealing yet


def test_recovers_known_parameters_and_lambda_by_profile():
    curves, law = make_curves(list(TRUE.values()), SPECS, lam=0.998, noise=3e-4)
    fit = fit_law(get_law("momentum"), curves, starts=4)  # lam=None: profiled over LAMBDA_GRID
    assert fit.law_config["lam"] == 0.998
    for name, value in TRUE.items():
        assert fit.values[name] == pytest.approx(value, rel=0.1), name


def test_profile_offers_lambda_and_config_round_trips():
    assert 0.999 in get_law("momentum").profile()["lam"]
    law = get_law("momentum", lam=0.995)
    assert law.profile() == {}  # a given lam is kept, not searched
    assert type(law)(**law.config()).config() == {"lam": 0.995}
    with pytest.raises(ConfigError):
        get_law("momentum", lam=1.0)


def test_constant_curve_alone_is_refused():
    curves, law = make_curves(list(TRUE.values()), {"constant": SPECS["constant"]})
    with pytest.raises(FitError, match="no LR decrease"):
        build_design(law, curves)


def test_rewarming_makes_the_annealing_term_negative():
    frame = pd.DataFrame({"run_id": "r", "step": np.arange(0, 3000), "loss": 3.0})
    lr = np.where(frame["step"] < 1000, 3e-4, np.where(frame["step"] < 2000, 1e-4, 3e-4))
    curves = Curves.from_frame(frame.assign(lr=lr))
    design = build_design(get_law("momentum", lam=0.99), curves, predict=True)
    s2 = design.x["S2"]
    assert design.excluded == (("r", "1 step(s) before any LR area (S1 = 0)"),)  # step 0 is reported
    assert s2[1500] > 0  # after the drop
    # the re-warm cancels the drop's annealing: S2 = 2e-4 * (lam^1000 - lam^~2000) / (1 - lam) at the end
    assert s2[-1] == pytest.approx(2e-4 * (0.99**999 - 0.99**1999) / 0.01, rel=1e-6)
    assert np.min(np.diff(s2[2000:])) < 0  # and the momentum is negative during the re-warm


def test_lambda_at_the_edge_of_its_grid_is_flagged():
    """Curves made with lam = 0.99, the smallest value profiled: the fit keeps it and warns that the best
    value may lie beyond the grid, as for a parameter at its bound; an inner value is not flagged."""
    curves, _ = make_curves(list(TRUE.values()), SPECS, lam=0.99, noise=3e-4)
    with pytest.warns(FitWarning, match="lam = 0.99 is the smallest value of its profiled grid"):
        fit = fit_law(get_law("momentum"), curves, starts=4)
    assert fit.law_config["lam"] == 0.99
    assert any(w["code"] == "profile_edge" and w["param"] == "lam" for w in fit.warnings)
    inner, _ = make_curves(list(TRUE.values()), SPECS, lam=0.998, noise=3e-4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)
        fit = fit_law(get_law("momentum"), inner, starts=4)
    assert not any(w["code"] == "profile_edge" for w in fit.warnings)
