"""CooldownLaw: exact noise functional, analytic Jacobian, recovery of known parameters (q included, by
profile), a fit of the Multi-Power Law paper's training curves (MPL protocol, 25M) and the cooldown
protocol on the 124M runs of Hägele et al. 2024."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import scalefit as sf
from scalefit.errors import ConfigError, FitError
from scalefit.fitting.design import build_design
from scalefit.fitting.engine import fit_law
from scalefit.laws import get_law
from scalefit.laws.cooldown import (
    DEFAULT_P,
    DEFAULT_RHO,
    Q_GRID,
    CooldownLaw,
    noise_functional,
    progress_area,
)
from scalefit.store.curves import Curves

TRUTH = {"L0": 2.5, "A": 0.8, "alpha": 0.45, "B": 0.03, "rho": 1.5}
Q_TRUE = 0.75


def _brute_noise(lr: np.ndarray, t: int, q: float = 1.0) -> float:
    """The bound's noise term written as in Defazio et al. 2023 (1-indexed eta_1..eta_T, T = t), with
    the injected noise eta^2 generalised to eta * l(eta), l(eta) = 1e-3 * (eta / 1e-3)^q."""
    eta = lr[:t]
    inj = eta * 1e-3 * (eta / 1e-3) ** q
    total = eta.sum()
    out = inj.sum() / (2 * total)
    for k in range(t - 1):
        rest, tail, tail_inj = eta[k + 1 :].sum(), eta[k:], inj[k:]
        if rest > 0:
            out += 0.5 * eta[k] / rest * tail_inj.sum() / tail.sum()
    return out


def test_noise_functional_constant_lr_is_harmonic() -> None:
    eta, steps = 2e-3, np.array([1, 10, 1000])
    harmonic = np.array([sum(1.0 / j for j in range(1, t)) for t in steps])
    np.testing.assert_allclose(
        noise_functional(np.full(1000, eta), steps), eta * (1 + harmonic) / 2, rtol=1e-12
    )


@pytest.mark.parametrize("q", [1.0, 0.75])
def test_noise_functional_matches_the_bound_term_by_term(q: float) -> None:
    rng = np.random.default_rng(0)
    lr = rng.uniform(0.0, 1e-3, 400)
    lr[-3:] = 0.0  # an LR of exactly zero at the end: terms with no area left are skipped
    steps = np.array([1, 2, 7, 150, 397, 400])
    expected = [_brute_noise(lr, int(t), q) for t in steps]
    np.testing.assert_allclose(noise_functional(lr, steps, q), expected, rtol=1e-10)


def test_noise_floor_scales_as_lr_to_the_q() -> None:
    steps = np.array([500])
    low, high = (noise_functional(np.full(500, eta), steps, 0.75)[0] for eta in (2.5e-4, 1e-3))
    assert high / low == pytest.approx(4**0.75, rel=1e-12)


def test_progress_area_pinned_values() -> None:
    """S = sum lr[s] * (m[s] / 1e-3)^(p - 1), m the running peak: pinned on a warmup, a peak, a decay."""
    lr = np.array([5e-4, 1e-3, 2e-3, 1e-3, 0.0])
    steps = np.arange(6)
    plain = np.array([0.0, 5e-4, 1.5e-3, 3.5e-3, 4.5e-3, 4.5e-3])
    np.testing.assert_allclose(progress_area(lr, steps, 1.0), plain, rtol=1e-15)
    # p = 0.5: 5e-4 * 0.5^-0.5, 1e-3 * 1, 2e-3 * 2^-0.5, then 1e-3 * 2^-0.5 (the peak so far is 2e-3)
    inc = np.array([5e-4 * 2**0.5, 1e-3, 2e-3 / 2**0.5, 1e-3 / 2**0.5, 0.0])
    np.testing.assert_allclose(progress_area(lr, steps, 0.5), np.r_[0.0, np.cumsum(inc)], rtol=1e-14)


def test_progress_grows_as_the_peak_to_the_p() -> None:
    """Constant runs at two peaks: the progress ratio is 2^p (p = 1: the LR area, ratio 2)."""
    steps = np.array([1000])
    for p in (1.0, DEFAULT_P):
        low, high = (progress_area(np.full(1000, eta), steps, p)[0] for eta in (1e-3, 2e-3))
        assert high / low == pytest.approx(2**p, rel=1e-12)


def _synthetic(theta: dict[str, float], noise: float = 0.0, seed: int = 0) -> Curves:
    schedules = {
        "constant": sf.schedules.parse("constant:peak=1e-3,steps=4000,warmup=100"),
        "cosine": sf.schedules.parse("cosine:peak=1e-3,steps=4000,warmup=100"),
        "wsd": sf.schedules.parse("wsd:peak=1e-3,steps=4000,warmup=100,decay=0.3"),
    }
    steps = np.arange(40, 4001, 40)
    law, rows = CooldownLaw(q=Q_TRUE, rho=theta.get("rho")), []
    for run_id, sched in schedules.items():
        lr = sched.lrs(4000)
        frame = pd.DataFrame(
            {"run_id": run_id, "step": steps, "lr": lr[np.minimum(steps, 3999)], "loss": 3.0}
        )
        one = Curves.from_frame(frame, runs=pd.DataFrame({"schedule": [str(sched)]}, index=[run_id]))
        design = build_design(law, one, predict=True)
        frame["loss"] = law.predict(np.array([theta[name] for name in law.param_names]), design)
        rows.append(frame)
    df = pd.concat(rows, ignore_index=True)
    df["loss"] *= np.exp(noise * np.random.default_rng(seed).standard_normal(len(df)))
    runs = pd.DataFrame({"schedule": [str(s) for s in schedules.values()]}, index=list(schedules))
    return Curves.from_frame(df, runs=runs)


@pytest.fixture(scope="module")
def synthetic() -> Curves:
    return _synthetic(TRUTH, noise=2e-4)


def test_registered_and_round_trips() -> None:
    law = get_law("cooldown")
    assert isinstance(law, CooldownLaw) and law.name == "cooldown"
    assert law.config() == {"q": None, "rho": DEFAULT_RHO, "p": DEFAULT_P}
    assert law.profile() == {"q": list(Q_GRID)}
    assert type(law)(**law.config()).param_names == ("L0", "A", "alpha", "B")  # rho fixed at 2
    assert CooldownLaw(rho=None).param_names == ("L0", "A", "alpha", "B", "rho")
    assert CooldownLaw(q=0.8).profile() == {}
    with pytest.raises(ConfigError, match="q"):
        CooldownLaw(q=-1.0)
    with pytest.raises(ConfigError, match="rho") as err:
        CooldownLaw(rho=0.5)
    assert err.value.field == "rho" and "rho=None" in err.value.fix
    with pytest.raises(ConfigError, match="peak exponent") as err:
        CooldownLaw(p=1.2)
    assert err.value.field == "p" and "p=1" in err.value.fix


def test_fixed_rho_is_the_fitted_form_at_that_value() -> None:
    """The default (rho fixed at 2) predicts exactly what the free form predicts with rho = 2."""
    curves = _synthetic(TRUTH)
    free, fixed = CooldownLaw(q=Q_TRUE, rho=None), CooldownLaw(q=Q_TRUE)
    design = build_design(fixed, curves, predict=True)
    theta = np.array([TRUTH[name] for name in fixed.param_names])
    np.testing.assert_allclose(
        fixed.predict(theta, design), free.predict(np.append(theta, DEFAULT_RHO), design), rtol=1e-14
    )
    np.testing.assert_allclose(
        fixed.jacobian(theta, design), free.jacobian(np.append(theta, DEFAULT_RHO), design)[:, :4], rtol=1e-14
    )


@pytest.mark.filterwarnings("ignore::scalefit.errors.FitWarning")  # A-alpha correlation is expected
def test_recovers_known_parameters_with_rho_fixed() -> None:
    truth = {**TRUTH, "rho": DEFAULT_RHO}
    fit = fit_law(CooldownLaw(), _synthetic(truth, noise=2e-4).select(["constant", "cosine"]), starts=4)
    assert fit.law_config == {"q": Q_TRUE, "rho": DEFAULT_RHO, "p": DEFAULT_P}
    for name in fit.get_law().param_names:
        assert fit.values[name] == pytest.approx(truth[name], rel=0.15), name


@pytest.mark.filterwarnings("ignore::scalefit.errors.FitWarning")  # A-alpha correlation is expected
def test_recovers_known_parameters(synthetic: Curves) -> None:
    """rho=None fits rho as well (identified here: noiseless enough, three-parameter noise term)."""
    fit = fit_law(CooldownLaw(rho=None), synthetic.select(["constant", "cosine"]), starts=4)
    assert fit.law_config == {"q": Q_TRUE, "rho": None, "p": DEFAULT_P}  # q chosen by profile from Q_GRID
    for name, true in TRUTH.items():
        assert fit.values[name] == pytest.approx(true, rel=0.15, abs=0.1 if name == "rho" else 0.0), name
    # the held-out WSD curve is predicted to within the noise level
    law = fit.get_law()
    held = synthetic.select(["wsd"])
    pred = law.predict(fit.theta, build_design(law, held, predict=True))
    assert np.max(np.abs(np.log(pred / build_design(law, held).y))) < 2e-3


def test_a_curve_without_lr_drop_is_refused(synthetic: Curves) -> None:
    with pytest.raises(FitError):
        fit_law(CooldownLaw(), synthetic.select(["constant"]), starts=2)


@pytest.mark.filterwarnings("ignore::scalefit.errors.FitWarning")  # L0-A-alpha correlation is expected
def test_fits_mpl_protocol_training_curves() -> None:
    curves = sf.datasets.load("mpl-25m")
    train, test = curves.split(["cosine_24000", "constant_24000", "wsdcon_9"])
    fit = fit_law(CooldownLaw(), train, starts=3)
    law = fit.get_law()
    design = build_design(law, train)
    rel_train = np.abs(law.predict(fit.theta, design) / design.y - 1)
    assert rel_train.mean() < 0.001  # in-sample mean relative error below 0.1 %
    test_design = build_design(law, test)
    pred_e = np.mean(np.abs(law.predict(fit.theta, test_design) / test_design.y - 1))
    assert pred_e < 0.0011  # pooled held-out PredE 0.1005 % measured: below MPL's published 0.110 %
    assert 2.5 < fit.values["L0"] < 3.5 and 0.2 < fit.values["alpha"] < 1.0


def _val_curves(run_ids: list[str], name: str = "schaipp-124m", upto: dict[str, int] | None = None) -> Curves:
    """Validation-loss curves (every 200 steps) of bundled Schaipp runs (the 124M runs of Hägele et al.
    2024 by default); ``upto``: run -> keep steps below this (a trunk observed up to a horizon)."""
    curves = sf.datasets.load(name)
    ev = curves.evals
    ev = ev[(ev["dataset"] == "val") & ev["run_id"].isin(run_ids) & (ev["step"] > 0)]
    for run_id, stop in (upto or {}).items():
        ev = ev[(ev["run_id"] != run_id) | (ev["step"] < stop)]
    frame = ev.rename(columns={"eval_loss": "loss"})[["run_id", "step", "loss"]].assign(lr=np.nan)
    runs = curves.runs.loc[run_ids][["schedule", "warmup_steps"]]
    return Curves.from_frame(frame, runs=runs)


def _finals(train_ids: list[str], wsd: dict[str, float], law: CooldownLaw) -> dict[float, float]:
    curves = _val_curves([*train_ids, *wsd])
    train, test = curves.split(train_ids)
    fit = fit_law(law, train, starts=3)
    law = fit.get_law()
    design = build_design(law, test, predict=True)
    pred = pd.Series(law.predict(fit.theta, design)).groupby(design.keys["run_id"].to_numpy()).last()
    return {wsd[run_id]: pred[run_id] for run_id in wsd}


TRUE_FINAL = {0.1: 2.9483, 0.2: 2.9303, 0.4: 2.9188, 0.6: 2.9165, 0.8: 2.9189, 0.9: 2.9225}
WSD_50K = {f"wsd-F{f}-linear-lr0.001-T50000": f for f in TRUE_FINAL}


TWO = ["constant-lr0.001-T50000", "cosine-zero-lr0.001-T50000"]
THREE = ["constant-lr0.001-T50000", "cosine-zero-lr0.001-T25000", "cosine-zero-lr0.001-T50000"]


@pytest.mark.filterwarnings("ignore::scalefit.errors.FitWarning")  # rho at its bound 1 is expected
@pytest.mark.parametrize(("train_ids", "measured"), [(TWO, 0.0045), (THREE, 0.0032)])
def test_cooldown_protocol_final_losses_meet_the_bar_with_rho_fitted(
    train_ids: list[str], measured: float
) -> None:
    """Fit the constant run and the cosine-to-zero run(s) with rho fitted and the plain LR area
    (``rho=None, p=1``, the form this protocol was developed with): every 50k-step WSD final within
    0.005 (issue 5's bar; ``measured`` is the worst error seen), the predicted optimum at the true F = 0.6."""
    got = _finals(train_ids, WSD_50K, CooldownLaw(rho=None, p=1.0))
    errors = np.array([got[f] - TRUE_FINAL[f] for f in TRUE_FINAL])
    assert np.max(np.abs(errors)) < 0.005
    assert np.max(np.abs(errors)) == pytest.approx(measured, abs=3e-4)
    assert min(got, key=got.get) == 0.6


@pytest.mark.filterwarnings("ignore::scalefit.errors.FitWarning")  # L0-A-alpha correlation is expected
@pytest.mark.parametrize(("train_ids", "measured"), [(TWO, 0.0144), (THREE, 0.0147)])
def test_cooldown_protocol_with_the_default_rho(train_ids: list[str], measured: float) -> None:
    """The defaults (rho fixed at 2, p = 0.8; one peak here, so p changes only the warmup) on the same
    protocol: this is the one set where the free fit (rho at 1) is better; the fixed rho under-credits
    the short cooldowns (errors all positive, falling with F from F = 0.2) and puts the optimum on the
    true plateau F = 0.4-0.8."""
    got = _finals(train_ids, WSD_50K, CooldownLaw())
    errors = np.array([got[f] - TRUE_FINAL[f] for f in TRUE_FINAL])
    assert np.max(np.abs(errors)) == pytest.approx(measured, abs=3e-4)
    assert np.all(errors > 0) and np.all(np.diff(errors[1:]) < 0)
    assert min(got, key=got.get) in (0.4, 0.6, 0.8)


SIZE_53M_TRAIN = ["53m-constant-lr0.001-T11250", "53m-cosine-lr0.002-T3650", "53m-cosine-lr0.002-T7500"]
SIZE_53M_WSD = ["53m-wsd-F0.2-linear-lr0.001-T3650", "53m-wsd-F0.2-linear-lr0.001-T7500"]


@pytest.mark.filterwarnings("ignore::scalefit.errors.FitWarning")  # q at the edge of its grid is expected
@pytest.mark.parametrize(("p", "measured"), [(DEFAULT_P, 0.0065), (1.0, 0.0249)])
def test_peak_exponent_on_the_blind_half_of_the_size_sweep(p: float, measured: float) -> None:
    """``benchmarks/blind.py``'s ``cooldown-53m``, one of the sizes p was not chosen on: the constant run
    at peak 1e-3 (up to 7500 steps) and cosines at 2e-3 fitted, the two 20 % WSD cooldowns at 1e-3
    predicted. The default p = 0.8: mean |error| under 0.01; the plain LR area (p = 1) under-credits both
    by more than 0.01."""
    curves = _val_curves([*SIZE_53M_TRAIN, *SIZE_53M_WSD], "schaipp-sizes", upto={SIZE_53M_TRAIN[0]: 7501})
    train, test = curves.split(SIZE_53M_TRAIN)
    fit = fit_law(CooldownLaw(p=p), train, starts=3)
    law = fit.get_law()
    design = build_design(law, test, predict=True)
    keys = design.keys.assign(pred=law.predict(fit.theta, design))
    last = keys.loc[keys.groupby("run_id")["step"].idxmax()].set_index("run_id")
    truth = test.frame.loc[test.frame.groupby("run_id")["step"].idxmax()].set_index("run_id")["loss"]
    errors = last["pred"] - truth.loc[last.index]
    assert errors.abs().mean() == pytest.approx(measured, abs=1e-3)
    if p == DEFAULT_P:
        assert errors.abs().mean() < 0.01 and np.max(np.abs(errors)) < 0.015  # +0.013 at 3650 steps
    else:
        assert np.all(errors > 0.01)  # both cooldowns under-credited
