"""isoFLOP Approach 2 and Porian et al.'s Akima variant: published exponents and synthetic recovery."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scalefit.errors import FitWarning
from scalefit.predict.isoflop import (
    akima_minimum,
    isoflop_exponent,
    parabola_minimum,
    seed_noise_sd,
    weighted_power_law,
)
from scalefit.store import datasets

TUNED = "Optimizer tuning (no decay)"
KAPLAN = "Reproducing Kaplan et al."


def _config(frame: pd.DataFrame, label: str, dataset: str = "rw") -> pd.DataFrame:
    return frame[(frame.config_label == label) & (frame.dataset == dataset)]


def test_porian_tuned_exponent_within_published_ci():
    points = _config(datasets.load("porian-isoflop"), TUNED)
    fit = isoflop_exponent(points, n_boot=1000, seed=0)
    assert 0.491 <= fit.exponent <= 0.505  # published 0.497, 95% CI [0.491, 0.505]
    assert fit.exponent == pytest.approx(0.497, abs=0.002)
    assert fit.ci[0] < 0.497 < fit.ci[1]
    assert fit.ci[0] == pytest.approx(0.491, abs=0.003) and fit.ci[1] == pytest.approx(0.505, abs=0.003)
    assert len(fit.optima) == 12


def test_porian_kaplan_setup_exponent():
    points = _config(datasets.load("porian-isoflop"), KAPLAN)
    fit = isoflop_exponent(points, n_boot=400, seed=1)
    assert fit.exponent == pytest.approx(0.835, abs=0.005)  # published 0.835 [0.824, 0.846]
    assert fit.warnings == () and len(fit.optima) == 11


def test_unusable_budgets_are_dropped_with_a_warning():
    points = _synthetic_isoflop()
    shifted = points[~((points.flops == points.flops.max()) & (points.N < points.N.quantile(0.9)))]
    few = pd.DataFrame({"flops": [1e23, 1e23], "N": [1e9, 2e9], "loss": [2.0, 2.1]})
    with pytest.warns(FitWarning) as record:
        fit = isoflop_exponent(pd.concat([shifted, few]), n_boot=50)
    messages = " ".join(str(w.message) for w in record)
    assert "edge" in messages and "fewer than 3 models" in messages
    assert len(fit.warnings) == 2 and len(fit.optima) == 5


def test_weighted_fit_of_stored_optima_reproduces_published_exponents():
    optimal = datasets.load("porian-optimal").dropna(subset=["N_star", "log_N_star_std"])
    published = datasets.load("porian-fits")
    for (src, label), g in optimal.groupby(["source_file", "config_label"]):
        a, _ = weighted_power_law(np.log(g.flops), np.log(g.N_star), 1 / g.log_N_star_std**2)
        row = published[(published.source_file == src) & (published.config_label == label)]
        assert a == pytest.approx(float(row.n_exponent.iloc[0]), abs=1e-6), label


def _synthetic_isoflop(alpha=0.34, beta=0.28, A=406.4, B=410.7, E=1.69, span=1.5, k=15):
    rows = []
    for c in np.geomspace(1e18, 1e22, 6):
        g = (alpha * A / (beta * B)) ** (1 / (alpha + beta))
        n_opt = g * (c / 6) ** (beta / (alpha + beta))
        for n in n_opt * np.exp(np.linspace(-span, span, k)):
            d = c / (6 * n)
            rows.append((c, n, E + A / n**alpha + B / d**beta))
    return pd.DataFrame(rows, columns=["flops", "N", "loss"])


@pytest.mark.parametrize("method", ["akima", "parabola"])
def test_synthetic_exponent_recovered(method):
    points = _synthetic_isoflop()
    fit = isoflop_exponent(points, method=method, n_boot=200, noise={"sd_low": 1e-5, "sd_high": 1e-5})
    assert fit.exponent == pytest.approx(0.28 / 0.62, abs=0.003)
    assert fit.r2 > 0.999


def test_minimum_finders_are_exact_on_a_parabola():
    x = np.linspace(0.0, 4.0, 9)
    y = 3.0 + 0.5 * (x - 1.7) ** 2
    xs, ys, edge = parabola_minimum(x, y)
    assert float(xs) == pytest.approx(1.7, abs=1e-12) and float(ys) == pytest.approx(3.0, abs=1e-12)
    assert not bool(edge)
    xa, _, edge_a = akima_minimum(x, y, grid=4001)
    assert float(xa) == pytest.approx(1.7, abs=2e-3) and not bool(edge_a)
    _, _, edge_m = akima_minimum(x, (x - 5.0) ** 2)
    assert bool(edge_m)


def test_seed_noise_schedule():
    sd = seed_noise_sd(np.exp([2.0, 3.0, 7.0, 8.0]))
    np.testing.assert_allclose(sd, [0.002, 0.002, 0.05, 0.05])
    mid = seed_noise_sd(np.exp(np.sqrt(21.0)))  # log-log midpoint of 3 and 7
    assert float(mid) == pytest.approx(np.sqrt(0.002 * 0.05), rel=1e-12)
