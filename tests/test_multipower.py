"""Multi-Power Law: fast drop-sum kernel against the O(T^2) definition, Jacobian, recovery, bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scalefit.errors import DataError, FitError
from scalefit.fitting.design import build_design
from scalefit.laws import _kernels as K
from scalefit.laws import get_law
from scalefit.store.curves import Curves

TRUE = {"L0": 2.9, "A": 0.6, "alpha": 0.45, "B": 450.0, "C": 2.0, "beta": 0.55, "gamma": 0.6}


def reference_drop(lr, steps, warmup, C, beta, gamma):
    """The MPL drop sum written directly from its definition, O(T^2)."""
    P, d = K.lr_area(lr), K.lr_increments(lr, warmup)
    eta = np.exp(np.maximum(np.log(np.maximum(lr, 1e-300)), K.LOG_LR_FLOOR))
    out = []
    for s in steps:
        k = np.arange(s)
        u = C * eta[k] ** -gamma * (P[s] - P[k])
        out.append(np.sum(d[k] * (1.0 - (1.0 + u) ** -beta)))
    return np.array(out)


def schedules(T=3000, w=200):
    rng = np.random.default_rng(1)
    t = np.arange(T)
    warm = np.minimum(t / w, 1.0) * 3e-4
    cosine = np.where(t < w, warm, 3e-5 + 1.35e-4 * (1 + np.cos(np.pi * (t - w) / (T - w))))
    rewarm = cosine.copy()
    rewarm[1800:] = np.minimum(3e-4, rewarm[1800:] * 2.5)
    noisy = np.where(t < w, warm, rng.uniform(1e-5, 3e-4, T))
    step = np.where(t < 1500, warm, 9e-5)
    zero = np.where(t < w, warm, np.maximum(3e-4 * (1 - (t - w) / (T - 1 - w)), 0.0))
    return {"cosine": cosine, "rewarm": rewarm, "noisy": noisy, "step": step, "to-zero": zero}


@pytest.mark.parametrize("name", ["cosine", "rewarm", "noisy", "step", "to-zero"])
def test_exact_terms_match_quadratic_reference(name):
    lr = schedules()[name]
    steps = np.arange(200, 3001, 37)
    ref = reference_drop(lr, steps, 200, 2.0, 0.6, 0.7)
    (fast,) = K.mpl_drop(K.mpl_terms(lr, steps, 200, ratio=None), 2.0, 0.6, 0.7)
    np.testing.assert_allclose(fast, ref, rtol=0, atol=1e-10 * max(1.0, np.abs(ref).max()))


@pytest.mark.parametrize("name", ["cosine", "rewarm", "noisy", "step"])
def test_grouped_terms_error_is_far_below_data_rounding(name):
    lr = np.tile(schedules()[name], 4)[:12000]
    steps = np.arange(300, 12001, 256)
    ref = reference_drop(lr, steps, 200, 2.0, 0.6, 0.7)
    terms = K.mpl_terms(lr, steps, 200, ratio=32.0)
    (fast,) = K.mpl_drop(terms, 2.0, 0.6, 0.7)
    # B ~ 500 turns the drop sum into loss: 1e-9 here is < 1e-6 in loss, far below the 1e-4 rounding
    assert np.abs(fast - ref).max() < 1e-9
    if name != "noisy":  # random signs everywhere cannot be grouped; the others compress
        assert len(terms) < 0.25 * np.sum(np.minimum(steps, np.count_nonzero(np.diff(lr))))


@pytest.mark.parametrize("block", [61, 997, 10**9])
def test_drop_and_its_derivatives_do_not_depend_on_the_block_size(block, monkeypatch):
    lr = schedules()["rewarm"]
    terms = K.mpl_terms(lr, np.arange(200, 3001, 37), 200, ratio=None)
    whole = K.mpl_drop(terms, 2.0, 0.6, 0.7, grad=True)  # default blocks: several, the last one ragged
    assert len(terms) > 2 * K.DROP_BLOCK and len(terms) % K.DROP_BLOCK
    monkeypatch.setattr(K, "DROP_BLOCK", block)
    blocked = K.mpl_drop(terms, 2.0, 0.6, 0.7, grad=True)
    for a, b in zip(whole, blocked, strict=True):
        np.testing.assert_array_equal(a, b)
    # the derivatives are those of the drop sum: central differences in C, beta, gamma
    theta, h = np.array([2.0, 0.6, 0.7]), 1e-6
    for j in range(3):
        up, down = theta.copy(), theta.copy()
        up[j] += h
        down[j] -= h
        numeric = (K.mpl_drop(terms, *up)[0] - K.mpl_drop(terms, *down)[0]) / (2 * h)
        np.testing.assert_allclose(blocked[j + 1], numeric, rtol=1e-6, atol=1e-9)


def official_prediction(lr, steps, theta):
    """The reference code's MPL from its definition: sums over 0..s, warmup rises included, LR >= 1e-12."""
    L0, A, alpha, B, C, beta, gamma = theta
    lr_sum = np.cumsum(lr)
    gap = np.zeros(lr.size)
    gap[1:] = np.diff(lr)
    out = []
    for s in steps:
        k = np.arange(1, s + 1)
        g = 1 - (1 + C * np.maximum(lr[k], 1e-12) ** -gamma * (lr_sum[s] - lr_sum[k - 1])) ** -beta
        out.append(L0 + A * lr_sum[s] ** -alpha + B * np.sum(gap[k] * g))
    return np.array(out)


@pytest.mark.parametrize(
    "spec",
    [
        SPEC
        for SPEC in (
            "cosine:peak=0.0003,steps=3000,warmup=300,final=0.1",
            "wsd:peak=0.0003,steps=3000,warmup=300,decay=0.2",
        )
    ],
)
def test_official_convention_matches_reference_definition(spec):
    frame = pd.DataFrame({"run_id": "r", "step": np.arange(50, 3001, 50), "lr": np.nan, "loss": 3.0})
    curves = Curves.from_frame(frame.assign(schedule=spec))
    law, exact = get_law("multipower"), get_law("multipower", ratio=None)
    assert law.convention == exact.convention == "official"
    design = build_design(law, curves, predict=True)
    theta = list(TRUE.values())
    steps = design.keys["step"].to_numpy()
    ref = official_prediction(curves.lr_sequence("r", int(steps.max()) + 1), steps, theta)
    np.testing.assert_allclose(
        exact.predict(np.array(theta), build_design(exact, curves, predict=True)), ref, atol=1e-11
    )
    np.testing.assert_allclose(law.predict(np.array(theta), design), ref, rtol=0, atol=1e-6)  # grouped
    causal = get_law("multipower", convention="causal")
    assert (
        np.abs(causal.predict(np.array(theta), build_design(causal, curves, predict=True)) - ref).max() > 0.05
    )


def test_unknown_convention_is_refused():
    from scalefit.errors import ConfigError

    with pytest.raises(ConfigError, match="convention"):
        get_law("multipower", convention="paper")


def test_momentum_s2_matches_closed_form():
    lr = schedules()["rewarm"]
    d = K.lr_increments(lr, 200)
    lam = 0.995
    s2 = K.momentum_s2(d, lam)
    for s in (0, 1, 500, 1799, 2500, 3000):
        k = np.arange(s)
        expected = np.sum(d[k] * (1 - lam ** (s - k)) / (1 - lam))
        assert s2[s] == pytest.approx(expected, abs=1e-12)


def make_curves(law_name, theta, specs, noise=0.0, seed=0, n_params=None):
    """Synthetic curves from ``law_name`` at ``theta`` for schedule strings ``specs`` (run_id -> schedule)."""
    law = get_law(law_name)
    frames = []
    for run_id, spec in specs.items():
        total = int(spec.split("steps=")[1].split(",")[0])
        steps = np.arange(100, total + 1, 50)
        frame = pd.DataFrame({"run_id": run_id, "step": steps, "lr": np.nan, "loss": 1.0, "schedule": spec})
        if n_params is not None:
            frame["n_params"] = n_params[run_id]
        frames.append(frame)
    curves = Curves.from_frame(pd.concat(frames, ignore_index=True))
    design = build_design(law, curves, predict=True)
    loss = law.predict(np.asarray(theta, dtype=float), design)
    loss *= np.exp(noise * np.random.default_rng(seed).standard_normal(loss.size))
    frame = curves.to_frame()
    frame["loss"] = np.round(loss, 6)
    return Curves.from_frame(frame), law


SPECS = {
    "cosine": "cosine:peak=0.0003,steps=12000,warmup=500,final=0.1",
    "constant": "constant:peak=0.0003,steps=12000,warmup=500",
    "two-stage": "two-stage:peak=0.0003,steps=8000,warmup=500,switch_step=4000,second_ratio=0.3",
}


def test_predict_and_jacobian_share_one_drop_pass_without_state():
    """The engine asks for both at once: one drop-sum pass gives what predict and jacobian give
    separately, and the law keeps no memo between calls (its state is its config)."""
    curves, law = make_curves("multipower", list(TRUE.values()), SPECS)
    design = build_design(law, curves)
    state = dict(vars(law))
    theta = np.array(list(TRUE.values()))
    pred, jac = law.predict_and_jacobian(theta, design)
    np.testing.assert_array_equal(pred, law.predict(theta, design))
    np.testing.assert_array_equal(jac, law.jacobian(theta, design))
    assert vars(law) == state


def test_recovers_known_parameters():
    from scalefit.fitting.engine import fit_law

    curves, law = make_curves("multipower", list(TRUE.values()), SPECS, noise=2e-4)
    fit = fit_law(law, curves, starts=4)
    for name in ("L0", "A", "alpha"):
        assert fit.values[name] == pytest.approx(TRUE[name], rel=0.15), name
    held, _ = make_curves(
        "multipower", list(TRUE.values()), {"wsd": "wsd:peak=0.0003,steps=12000,warmup=500,decay=0.2"}
    )
    design = build_design(law, held, predict=True)
    pred = law.predict(np.array([fit.values[n] for n in law.param_names]), design)
    truth = held.frame.loc[held.frame["step"] > 0, "loss"].to_numpy()
    assert np.max(np.abs(pred / truth - 1)) < 2e-3


def test_single_constant_curve_is_refused():
    curves, law = make_curves("multipower", list(TRUE.values()), {"constant": SPECS["constant"]})
    with pytest.raises(FitError, match="no LR decrease"):
        build_design(law, curves)


def test_all_nan_and_too_few_points_are_refused():
    curves, law = make_curves("multipower", list(TRUE.values()), SPECS)
    frame = curves.to_frame().assign(loss=np.nan)
    with pytest.raises(FitError, match="no finite loss"):
        build_design(law, Curves.from_frame(frame))
    few = curves.to_frame().groupby("run_id").head(2)
    with pytest.raises(FitError, match="too few points"):
        build_design(law, Curves.from_frame(few))


def test_zero_learning_rate_is_refused():
    frame = pd.DataFrame({"run_id": "r", "step": np.arange(0, 10), "lr": 0.0, "loss": 3.0})
    with pytest.raises(DataError, match="positive somewhere"):
        build_design(get_law("multipower"), Curves.from_frame(frame))


def test_reference_fit_path_lands_near_the_truth():
    from scalefit.fitting.reference import reference_fit

    curves, law = make_curves("multipower", list(TRUE.values()), SPECS, noise=2e-4)
    frame = curves.to_frame()
    values = reference_fit(Curves.from_frame(frame[frame["step"] % 200 == 0]))  # every 4th point: fast
    assert values["L0"] == pytest.approx(TRUE["L0"], rel=0.05)
    assert 0.3 < values["beta"] < 1.0  # the early stop keeps the exponents near their 0.5 start
    held, _ = make_curves(
        "multipower", list(TRUE.values()), {"wsd": "wsd:peak=0.0003,steps=12000,warmup=500,decay=0.2"}
    )
    design = build_design(law, held, predict=True)
    pred = law.predict(np.array([values[n] for n in law.param_names]), design)
    assert np.max(np.abs(pred / held.frame["loss"].to_numpy() - 1)) < 5e-3
