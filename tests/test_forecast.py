"""sf.forecast: folds that mimic the question, weights from fold scores alone, a band that covers at its
stated level on curves drawn from a known law, an honest answer when the runs cannot tell, JSON."""

from __future__ import annotations

import json
import math
import multiprocessing
import warnings
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
from scipy.stats import t as student_t

import scalefit as sf
from scalefit.errors import ConfigError, DataError, ExtrapolationWarning
from scalefit.fitting.design import build_design
from scalefit.laws import get_law
from scalefit.laws.base import CurveLaw, CurveRun, Design, Param
from scalefit.predict.folds import branches, question_of
from scalefit.predict.forecast import (
    ALIKE_LEVEL,
    MIN_ERRORS,
    PREFERENCE,
    UNIDENTIFIED,
    WINDOW,
    Forecast,
    _Weigher,
    forecast,
    growth,
)
from scalefit.predict.members import Fitted, LawMember
from scalefit.store import datasets
from scalefit.store.curves import Curves

TRUE = np.array([2.8, 0.7, 0.5, 0.4])  # momentum L0, A, alpha, C
LAM = 0.998
PEAK = 3e-4
TRAIN = {
    "constant": f"constant:peak={PEAK},steps=6000,warmup=300",
    "cosine": f"cosine:peak={PEAK},steps=6000,warmup=300,final=0.1",
    "wsd-0.3": f"wsd:peak={PEAK},steps=6000,warmup=300,decay=0.3",
}
TEST = {
    "wsd-0.1": f"wsd:peak={PEAK},steps=6000,warmup=300,decay=0.1",
    "wsd-0.6": f"wsd:peak={PEAK},steps=6000,warmup=300,decay=0.6",
}


def draw(specs: dict[str, str], noise: float, seed: int) -> Curves:
    """Curves of the momentum law at TRUE, evaluated every 100 steps up to each run's last update, with
    log-normal noise."""
    frames = []
    for run_id, spec in specs.items():
        total = int(spec.split("steps=")[1].split(",")[0])
        steps = np.append(np.arange(100, total - 1, 100), total - 1)
        frames.append(
            pd.DataFrame({"run_id": run_id, "step": steps, "lr": np.nan, "loss": 1.0, "schedule": spec})
        )
    curves = Curves.from_frame(pd.concat(frames, ignore_index=True))
    law = get_law("momentum", lam=LAM)
    loss = law.predict(TRUE, build_design(law, curves, predict=True))
    loss = loss * np.exp(noise * np.random.default_rng(seed).standard_normal(loss.size))
    return Curves.from_frame(curves.to_frame().assign(loss=loss))


def hidden(curves: Curves) -> Curves:
    """The same runs with the loss unknown: what a forecast is asked about."""
    return Curves.from_frame(curves.to_frame().assign(loss=np.nan))


def finals(fc: Forecast) -> pd.DataFrame:
    table = fc.predict()
    return table.loc[table.groupby("run_id")["step"].idxmax()].set_index("run_id")


def test_band_covers_at_its_level_on_curves_of_a_known_law():
    """30 draws x 2 held-out schedules: the share of true finals inside the 90 % band is within 10
    points of 90 % (the band is calibrated from the folds, not from the targets)."""
    inside = []
    for seed in range(30):
        train, test = draw(TRAIN, 3e-3, seed), draw(TEST, 3e-3, 1000 + seed)
        fc = forecast(train, hidden(test), laws=[get_law("momentum", lam=LAM)], level=0.9)
        got = finals(fc)
        truth = test.final().set_index("run_id")["loss"]
        inside += [bool(got.at[r, "lo"] <= truth[r] <= got.at[r, "hi"]) for r in TEST]
    assert 0.8 <= np.mean(inside) <= 1.0
    assert fc.question == "branch" and {f["kind"] for f in fc.folds} == {"loo", "trunc"}  # WSD off the trunk
    assert fc.level == 0.9 and fc.predict().attrs["band"]["ci"] == 0.9


class NoAnnealLaw(CurveLaw, register=False):
    """L = L0 + A * S1^-alpha: blind to the schedule's decay, so it cannot explain a cooldown."""

    name: ClassVar[str] = "no-anneal"
    kind: ClassVar[str] = "curve"

    def parameters(self) -> tuple[Param, ...]:
        return (
            Param("L0", 0.0, 20.0, log=True, grid=(1.5, 2.5, 3.5)),
            Param("A", 0.0, 100.0, log=True, grid=(0.3, 1.0, 3.0)),
            Param("alpha", 0.0, 3.0, log=True, grid=(0.2, 0.5, 1.0)),
        )

    def curve_x(self, runs: Sequence[CurveRun]) -> dict[str, np.ndarray]:
        return {}

    def predict(self, theta: np.ndarray, design: Design) -> np.ndarray:
        L0, A, alpha = theta
        return L0 + A * design.x["S1"] ** -alpha

    def jacobian(self, theta: np.ndarray, design: Design) -> np.ndarray:
        _, A, alpha = theta
        s1 = design.x["S1"]
        pw = s1**-alpha
        return np.stack([np.ones_like(s1), pw, -A * np.log(s1) * pw], axis=1)


def test_a_law_that_cannot_explain_the_runs_gets_a_small_weight():
    train, test = draw(TRAIN, 1e-3, 1), draw(TEST, 1e-3, 2)
    fc = forecast(train, hidden(test), laws=[get_law("momentum", lam=LAM), NoAnnealLaw()])
    assert fc.weights["no-anneal"] < 0.05 and fc.weights["momentum"] > 0.95
    assert sum(fc.weights.values()) == pytest.approx(1.0)
    scores = fc.scores
    assert (scores.loc["no-anneal"] > scores.loc["momentum"]).sum() >= len(fc.folds) - 1
    truth = test.final().set_index("run_id")["loss"]
    assert np.abs(finals(fc)["loss_pred"] - truth).max() < 0.01


def _sq(rows: dict[str, list[float]]) -> pd.DataFrame:
    """member x fold squared errors, as the forecast's weigher reads them."""
    return pd.DataFrame(rows, index=[f"f{i}" for i in range(len(next(iter(rows.values()))))]).T


def test_curve_weights_select_the_preferred_member_among_those_the_folds_cannot_tell_apart():
    """Curves: a member scores alike the best unless a one-sided paired t-test at ALIKE_LEVEL shows it
    worse; the earliest alike member in PREFERENCE takes all the weight, the alike ones form the spread."""
    best = [1.0, 2.0, 3.0, 4.0]
    t_crit = student_t.ppf(ALIKE_LEVEL, 3)
    # momentum: differences (0, 4, -2, 2) from the best: mean 1 <= t_crit * se (se = 2.58 / 2)
    inside = [b + d for b, d in zip(best, [0.0, 4.0, -2.0, 2.0], strict=True)]
    assert 1.0 <= t_crit * np.std([0.0, 4.0, -2.0, 2.0], ddof=1) / 2  # alike: not shown worse
    far = [b + 10.0 + d for b, d in zip(best, [0.0, 0.1, 0.0, 0.1], strict=True)]  # clearly worse
    sq = _sq({"multipower": best, "momentum": inside, "cooldown": far})
    weigh = _Weigher(sq, frozenset(sq.index), PREFERENCE)
    assert PREFERENCE.index("momentum") < PREFERENCE.index("multipower")
    assert weigh(["multipower", "momentum", "cooldown"]) == {
        "cooldown": 0.0,
        "momentum": 1.0,
        "multipower": 0.0,
    }
    assert weigh.alike(["multipower", "momentum", "cooldown"]) == {"multipower", "momentum"}
    # a member not in PREFERENCE ranks after those in it, then by MSE
    sq2 = _sq({"mine": best, "cooldown": inside})
    assert _Weigher(sq2, frozenset(sq2.index), PREFERENCE)(["mine", "cooldown"])["cooldown"] == 1.0
    # tables: no preference, weights proportional to 1 / MSE (cut beyond CUTOFF x the best)
    table = _Weigher(sq, frozenset(sq.index))(["multipower", "momentum", "cooldown"])
    assert table["cooldown"] == 0.0
    assert table["multipower"] / table["momentum"] == pytest.approx(np.mean(inside) / np.mean(best))


def test_the_preferred_law_is_chosen_when_the_folds_cannot_tell():
    """Two copies of the true law under different names score identically on every fold: the one
    earlier in PREFERENCE takes all the weight (not half each)."""

    class Twin(type(get_law("momentum")), register=False):
        name: ClassVar[str] = "twin"

    train, test = draw(TRAIN, 1e-3, 11), draw(TEST, 1e-3, 12)
    fc = forecast(train, hidden(test), laws=[Twin(lam=LAM), get_law("momentum", lam=LAM)])
    assert fc.weights == {"twin": 0.0, "momentum": 1.0}
    assert fc.scores.loc["twin"].to_numpy() == pytest.approx(fc.scores.loc["momentum"].to_numpy())


BRANCH_TRAIN = {
    "constant": f"constant:peak={PEAK},steps=6000,warmup=300",
    "cos-3k": f"cosine:peak={PEAK},steps=3000,warmup=300,final=0.1",
    "cos-6k": TRAIN["cosine"],
}
BRANCH_TEST = {
    "wsd-3k": f"wsd:peak={PEAK},steps=3000,warmup=300,decay=0.2",
    "wsd-6k": f"wsd:peak={PEAK},steps=6000,warmup=300,decay=0.2",
}


def test_cooldown_branches_off_a_fitted_trunk_are_weighed_on_the_anneal_folds():
    """WSD branches off the fitted constant run: a "branch" question, weighed on the folds that predict
    a cosine's anneal from its observed start (not on leaving out the constant run)."""
    train, test = draw(BRANCH_TRAIN, 1e-3, 13), draw(BRANCH_TEST, 1e-3, 14)
    assert branches(train, hidden(test)) == {"wsd-3k": "constant", "wsd-6k": "constant"}
    fc = forecast(train, hidden(test), laws=[get_law("momentum", lam=LAM), NoAnnealLaw()])
    assert fc.question == "branch"
    info = {f["name"]: f for f in fc.folds}
    assert {n for n, f in info.items() if f["anneal"]} == {"trunc:cos-3k", "trunc:cos-6k"}
    assert {n for n, f in info.items() if f["weighs"]} == {"trunc:cos-3k", "trunc:cos-6k"}
    assert not info["trunc:constant"]["anneal"] and not info["loo:constant"]["weighs"]
    assert fc.weights == {"momentum": 1.0, "no-anneal": 0.0}
    truth = test.final().set_index("run_id")["loss"]
    got = finals(fc)
    assert np.abs(got["loss_pred"] - truth).max() < 0.01
    assert np.all((got["lo"] <= truth) & (truth <= got["hi"]))
    # with one cosine there is one anneal fold: too few to weigh on, so every fold weighs
    one = forecast(train.select(["constant", "cos-6k"]), hidden(test), laws=[get_law("momentum", lam=LAM)])
    assert one.question == "branch" and all(f["weighs"] for f in one.folds)


def test_a_run_at_another_peak_is_not_a_branch():
    train = draw(BRANCH_TRAIN, 1e-3, 15)
    other = draw({"wsd-hi": f"wsd:peak={2 * PEAK},steps=6000,warmup=300,decay=0.2"}, 1e-3, 16)
    assert branches(train, hidden(other)) == {"wsd-hi": None}
    assert question_of(train, hidden(other)) == "schedule"
    # a target that only continues a fitted run (its LR never differs where that run is observed)
    longer = draw({"cos-6k": TRAIN["cosine"]}, 1e-3, 17)
    assert branches(train.select(["cos-3k", "constant"]), hidden(longer))["cos-6k"] is None


def test_a_single_run_is_not_identified_and_says_so_with_a_wide_band():
    train = draw({"cosine": TRAIN["cosine"]}, 1e-3, 3)
    fc = forecast(train, hidden(draw(TEST, 1e-3, 4)), laws=[get_law("momentum", lam=LAM)])
    assert not fc.identified and fc.band["n_errors"] < MIN_ERRORS
    assert any("cannot identify" in n for n in fc.notes)
    got = finals(fc)
    assert np.all(got["hi"] / got["loss_pred"] >= 1 + UNIDENTIFIED - 1e-12)
    assert np.all(got["lo"] / got["loss_pred"] <= 1 / (1 + UNIDENTIFIED) + 1e-12)


def test_horizon_question_holds_out_the_longest_runs():
    specs = {
        "cos-2k": f"cosine:peak={PEAK},steps=2000,warmup=300,final=0.1",
        "cos-3k": f"cosine:peak={PEAK},steps=3000,warmup=300,final=0.1",
        "cos-6k": TRAIN["cosine"],
    }
    train = draw(specs, 1e-3, 5)
    target = draw({"cos-12k": f"cosine:peak={PEAK},steps=12000,warmup=300,final=0.1"}, 0.0, 6)
    fc = forecast(train, hidden(target), laws=[get_law("momentum", lam=LAM)])
    assert fc.question == "horizon"
    kinds = [f["kind"] for f in fc.folds]
    assert kinds[0] == "horizon" and set(kinds[1:]) == {"loo", "trunc"}
    assert fc.folds[0]["distance"] == pytest.approx(np.log(5999 / 2999))
    assert fc.band["distance_target"] == pytest.approx(np.log(11999 / 5999))
    truth = float(target.final()["loss"].iloc[0])
    got = finals(fc).loc["cos-12k"]
    assert got["lo"] <= truth <= got["hi"] and abs(got["loss_pred"] - truth) < 0.01


@dataclass(frozen=True)
class LoudMember:
    """The momentum law as a member that warns on every fit (module level: a spawned worker imports it)."""

    name: str = "loud"

    def fit(self, data: Curves | pd.DataFrame) -> Fitted:
        warnings.warn(f"loud: fitted {len(data.run_ids)} runs", ExtrapolationWarning, stacklevel=2)
        return LawMember(get_law("momentum", lam=LAM)).fit(data)


def test_fits_in_worker_processes_give_the_same_forecast():
    """``map_fn``: the fits run in a process pool give the serial forecast exactly, and the warnings
    raised in the workers reach the caller (one per fit: every fold's and the whole data's)."""
    specs = {
        "cos-3k": f"cosine:peak={PEAK},steps=3000,warmup=300,final=0.1",
        "cos-6k": TRAIN["cosine"],
        "constant": TRAIN["constant"],
    }
    train = draw(specs, 1e-3, 21)
    target = hidden(draw({"cos-12k": f"cosine:peak={PEAK},steps=12000,warmup=300,final=0.1"}, 0.0, 22))
    laws = [LoudMember(), "finals-power"]
    with pytest.warns(ExtrapolationWarning, match="loud: fitted") as said:
        serial = forecast(train, target, laws=laws)
    with (
        ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool,
        pytest.warns(ExtrapolationWarning, match="loud: fitted") as heard,
    ):
        pooled = forecast(train, target, laws=laws, map_fn=pool.map)
    assert len(said) == len(serial.folds) + 1  # the loud member's fit on every fold and on the whole data
    assert sorted(str(w.message) for w in heard) == sorted(str(w.message) for w in said)
    pd.testing.assert_frame_equal(pooled.predict(), serial.predict())
    pd.testing.assert_frame_equal(pooled.errors, serial.errors)
    assert pooled.weights == serial.weights and pooled.notes == serial.notes
    assert pooled.failures == serial.failures and len(serial.errors) > 0
    with pytest.raises(ConfigError, match="map_fn") as bad:
        forecast(train, target, laws=laws, map_fn=lambda fn, items: [fn(x) for x in items][:1])
    assert bad.value.field == "map_fn"


def test_json_round_trip_and_bad_input():
    train, test = draw(TRAIN, 1e-3, 7), draw(TEST, 1e-3, 8)
    fc = forecast(train, hidden(test), laws=["momentum"])
    text = fc.to_json()
    json.loads(text, parse_constant=pytest.fail)  # strict JSON: no NaN token (curves have no level)
    back = Forecast.from_json(text)
    pd.testing.assert_frame_equal(back.predict(), fc.predict(), check_dtype=False)
    pd.testing.assert_frame_equal(back.errors, fc.errors, check_dtype=False)
    assert back.errors["level"].isna().all() and back.errors["err"].dtype == float
    assert back.weights == fc.weights and back.level == fc.level and back.question == fc.question
    pd.testing.assert_frame_equal(back.scores, fc.scores, check_dtype=False, check_names=False)
    with pytest.raises(ConfigError, match="level"):
        forecast(train, hidden(test), level=1.5)
    with pytest.raises(DataError, match="both be Curves"):
        forecast(train, test.final())
    with pytest.raises(DataError, match="not a scalefit Forecast"):
        Forecast.from_dict({"format": "other"})
    with pytest.raises(ConfigError, match="unknown law or baseline") as bad:
        forecast(train, hidden(test), laws=["momentum", "finals-pwer"])
    assert bad.value.value == "finals-pwer" and "finals-power" in bad.value.fix
    epoch = datasets.load("chinchilla-epoch")
    with pytest.raises(ConfigError, match="baselines answer Curves") as bad:
        forecast(epoch, epoch.drop(columns=["loss"]), laws=["chinchilla", "tail-power"])
    assert bad.value.value == ["tail-power"]


def test_static_forecast_leaves_the_largest_compute_out():
    epoch = datasets.load("chinchilla-epoch")
    epoch = epoch[epoch["epoch_fit"]].reset_index(drop=True)
    c = 6 * epoch["N"] * epoch["D"]
    small, large = epoch[c < c.quantile(0.9)].reset_index(drop=True), epoch[c >= c.quantile(0.9)]
    fc = forecast(small, large.drop(columns=["loss"]).reset_index(drop=True), laws=["chinchilla"])
    assert fc.question == "compute" and all(f["kind"] == "compute" for f in fc.folds) and len(fc.folds) == 3
    got = fc.predict()
    assert (
        len(got) == len(large)
        and np.all(got["lo"] < got["loss_pred"])
        and np.all(got["loss_pred"] < got["hi"])
    )
    # row i of the forecast answers target row i: the one member's own prediction, in the targets' order
    assert list(got["run_id"]) == [f"row{i}" for i in range(len(large))]
    fit = sf.fit(small, "chinchilla", progress=False)
    own = fit.predict(large.drop(columns=["loss"]).reset_index(drop=True))
    np.testing.assert_allclose(got["loss_pred"].to_numpy(), own["loss_pred"].to_numpy(), rtol=1e-9)
    rel = np.abs(got["loss_pred"].to_numpy() / large["loss"].to_numpy() - 1)
    assert rel.mean() < 0.012


def test_static_band_grows_with_each_rows_own_distance():
    """One law (no spread between members): each target row's log half-width is growth(d) of its own
    distance beyond the largest fitted compute times a q taken from the fold groups at a comparable
    distance; the folds extrapolate one, two and three compute levels."""
    epoch = datasets.load("chinchilla-epoch")
    epoch = epoch[epoch["epoch_fit"]].reset_index(drop=True)
    c = 6 * epoch["N"] * epoch["D"]
    small, large = epoch[c < c.quantile(0.8)].reset_index(drop=True), epoch[c >= c.quantile(0.8)]
    targets = large.drop(columns=["loss"]).reset_index(drop=True)
    fc = forecast(small, targets, laws=["chinchilla"])
    got = fc.predict()
    half = np.log(got["hi"] / got["loss_pred"]).to_numpy()
    floor = min(f["distance"] for f in fc.folds)
    d = np.log(6 * targets["N"] * targets["D"] / (6 * small["N"] * small["D"]).max()).to_numpy()
    q = half / growth(d, floor)
    # rows at the same (floored) distance share q; q is never below the scatter part alone
    same = np.isclose(np.maximum(d, floor), floor)
    assert same.sum() >= 2 and np.ptp(q[same]) < 1e-12
    assert np.all(q >= fc.band["q_scatter"] - 1e-12)
    # by hand for the nearest rows: the level-mean errors of the groups within WINDOW of the floor
    cv = fc.errors.assign(err=fc.errors["err"] / growth(fc.errors["distance"].to_numpy(), floor))
    groups = cv.groupby(["fold", "level"]).agg(err=("err", "mean"), d=("distance", "mean"))
    near = groups[(groups["d"] >= floor / WINDOW) & (groups["d"] <= floor * WINDOW)]["err"].to_numpy()
    n = near.size
    t = student_t.ppf(0.95, n - 1) * np.sqrt(np.mean(near**2)) * np.sqrt(1 + 1 / n)
    conformal = np.sort(np.abs(near))[math.ceil((n + 1) * 0.9) - 1] if math.ceil((n + 1) * 0.9) <= n else 0.0
    assert q[same][0] == pytest.approx(math.hypot(max(t, conformal), fc.band["q_scatter"]), rel=1e-9)
    assert half.max() > 3 * half.min()  # the farthest rows are trusted least
    held = fc.errors.groupby("fold")["level"].nunique()
    assert held.to_dict() == {"compute:1": 1, "compute:2": 2, "compute:3": 3}
    assert fc.band["n_groups"] == 6


def test_forecast_of_something_that_is_not_data_is_a_named_error():
    train = draw(TRAIN, 1e-3, 9)
    with pytest.raises(DataError, match="forecast targets must be Curves or a DataFrame"):
        forecast(train, None)
    with pytest.raises(DataError, match="forecast data must be Curves or a DataFrame"):
        forecast([1, 2], hidden(train))
