"""scalefit.predict.targets: target curves, extrapolation, schedule search and compute-optimal allocation,
checked against an independent plain-numpy evaluation of the law with known parameters."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scalefit import schedules
from scalefit.errors import ConfigError, ExtrapolationWarning
from scalefit.fitting.result import Fit
from scalefit.predict.schedule_choice import best_schedule
from scalefit.predict.targets import Target, compute_optimal, extrapolation, predict_target

TRUE = {"L0": 2.0, "A": 0.8, "alpha": 0.5, "C": 0.3}
LAM = 0.999


def momentum_loss(sched: schedules.Schedule, step: int) -> float:
    """Tissue et al.'s momentum law at ``step`` by a direct loop (independent of scalefit.laws)."""
    lr = sched.lrs()
    s1 = lr[:step].sum()
    m, s2 = 0.0, 0.0
    for i in range(step):
        drop = lr[i - 1] - lr[i] if i >= max(1, sched.warmup_steps + 1) else 0.0
        m = LAM * m + drop
        s2 += m
    return TRUE["L0"] + TRUE["A"] * s1 ** -TRUE["alpha"] - TRUE["C"] * s2


def make_fit(law: str, values: dict, config: dict, summary: dict | None = None) -> Fit:
    names = tuple(values)
    return Fit(
        law=law,
        law_config=config,
        param_names=names,
        values=values,
        stderr={},
        ci={},
        bounds={n: (-math.inf, math.inf) for n in names},
        covariance=np.diag([1e-8] * len(names)),
        bootstrap=None,
        diagnostics={"objective": 0.0, "warnings": []},
        data_summary=summary or {},
        provenance={},
        options={},
    )


@pytest.fixture(scope="module")
def fit() -> Fit:
    return make_fit(
        "momentum", TRUE, {"lam": LAM}, {"step_range": [0.0, 1999.0], "n_params_range": [1e6, 4e6]}
    )


def test_target_curve_matches_independent_law(fit: Fit) -> None:
    target = Target("wsd:peak=1e-3,steps=2000,warmup=50,decay=0.3,shape=1-sqrt", n_params=2e6)
    out = predict_target(fit, target, n_points=50)
    sched = target.schedule
    assert out["curve"]["steps"][-1] == 1999
    assert out["final_pred"] == pytest.approx(momentum_loss(sched, 1999), rel=1e-6)
    mid = out["curve"]["steps"][25]
    assert out["curve"]["loss_pred"][25] == pytest.approx(momentum_loss(sched, mid), rel=1e-6)
    assert out["lo"] <= out["final_pred"] <= out["hi"]
    assert out["extrapolation"] == {
        "outside": False,
        "factors": {"n_params": 1.0, "step": 1.0},
        "notes": [],
        "fitted_ranges": {"step": [0.0, 1999.0], "n_params": [1e6, 4e6]},
    }


def test_extrapolation_says_how_far(fit: Fit) -> None:
    target = Target("cosine:peak=1e-3,steps=4000", n_params=8e6, run_id="big")
    with pytest.warns(ExtrapolationWarning, match="2x the largest fitted N"):
        ext = extrapolation(fit, target)
    assert ext["outside"] is True
    assert ext["factors"]["n_params"] == pytest.approx(2.0)
    assert ext["factors"]["step"] == pytest.approx(3999 / 1999)
    assert ext["notes"] == [
        "2x the largest fitted N (4e+06 params)",
        "2x the largest fitted horizon (1999 steps)",
    ]


def test_best_schedule_is_the_true_optimum(fit: Fit) -> None:
    target = Target("cosine:peak=1e-3,steps=2000,warmup=50")
    out = best_schedule(fit, target, family="wsd")
    assert len(out["rows"]) == 2 + 27
    truth = {r["schedule"]: momentum_loss(schedules.parse(r["schedule"]), 1999) for r in out["rows"]}
    for r in out["rows"]:
        assert r["final_pred"] == pytest.approx(truth[r["schedule"]], rel=1e-6)
    best = min(truth, key=truth.get)
    assert out["best"]["schedule"] == best
    cosine = min(v for k, v in truth.items() if k.startswith("cosine"))
    assert out["best"]["gain_vs_cosine"] == pytest.approx(cosine - truth[best], rel=1e-4)
    assert out["best"]["gain_vs_cosine"] > 0


def test_cosine_family_and_unknown_family(fit: Fit) -> None:
    target = Target("cosine:peak=1e-3,steps=1000")
    rows = best_schedule(fit, target, family="cosine")["rows"]
    assert [schedules.parse(r["schedule"]).final_ratio for r in rows] == [0.0, 0.01, 0.1, 0.2, 0.5]
    with pytest.raises(ConfigError, match="family"):
        best_schedule(fit, target, family="step")


def test_compute_optimal_reproduces_epoch_frontier() -> None:
    """Epoch AI's refit (E 1.8172, A 482.01, B 2085.43, alpha 0.3478, beta 0.3658): ~18 tokens per
    parameter at 5.88e23 FLOPs (Besiroglu et al. 2024)."""
    values = {
        "a": math.log(482.01),
        "b": math.log(2085.43),
        "e": math.log(1.8172),
        "alpha": 0.3478,
        "beta": 0.3658,
    }
    fit = make_fit("chinchilla", values, {})
    (row,) = compute_optimal(fit, [5.88e23])
    g = (0.3478 * 482.01 / (0.3658 * 2085.43)) ** (1 / (0.3478 + 0.3658))
    n_opt = g * (5.88e23 / 6) ** (0.3658 / (0.3478 + 0.3658))
    assert row["n_opt"] == pytest.approx(n_opt, rel=1e-9)
    assert row["d_opt"] * row["n_opt"] * 6 == pytest.approx(5.88e23, rel=1e-9)
    assert round(row["tokens_per_param"], 2) == 18.38
    expected = 1.8172 + 482.01 / n_opt**0.3478 + 2085.43 / row["d_opt"] ** 0.3658
    assert row["loss_pred"] == pytest.approx(expected, rel=1e-9)


def test_bad_target_names_the_field() -> None:
    with pytest.raises(ConfigError, match="n_params"):
        Target("constant:peak=1e-3,steps=100", n_params=-5)
