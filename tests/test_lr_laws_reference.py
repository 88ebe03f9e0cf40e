"""Published-curve reference: the Multi-Power Law protocol of Luo et al. 2025 (arXiv:2503.12811).

Split of the reference code (thu-yao-01-luo/MultiPowerLaw, ``src/config.py``): fit {cosine_24000,
constant_24000, wsdcon_9}, test the other six. Its metrics are per curve (PredE = mean relative error,
WorstE = max relative error over the curve's logged steps) then averaged over the six test curves.

1. Golden: the published best parameters (full precision, from the reference code's config) evaluated
   by scalefit's ``MultiPowerLaw`` (default ``convention="official"``) on the bundled curves reproduce
   the published test PredE 0.110/0.142/0.168% and WorstE 0.41/0.58/0.99% at 25M/100M/400M.
2. Refit: scalefit's own fit at 25M lands near the published figure (see benchmarks/lr_laws.py).
"""

from __future__ import annotations

import numpy as np
import pytest

from scalefit.fitting.design import build_design
from scalefit.fitting.engine import fit_law
from scalefit.laws import get_law
from scalefit.store import datasets

TRAIN = ["cosine_24000", "constant_24000", "wsdcon_9"]
# [L0, A, alpha, B, C, beta, gamma] as published in the reference code's config
PUBLISHED_PARAMS = {
    25: [3.04045406, 0.52468604, 0.50786857, 363.78751622, 2.06560812, 0.58279013, 0.64142257],
    100: [2.6514477, 0.60115152, 0.45295811, 437.9464276, 2.13245612, 0.59785199, 0.65523644],
    400: [2.37474466, 0.65421216, 0.42878731, 523.42464371, 2.02462735, 0.59350493, 0.63472457],
}
PUBLISHED_ERRORS = {25: (0.110, 0.41), 100: (0.142, 0.58), 400: (0.168, 0.99)}  # PredE %, WorstE %
# one start each, near the paper's typical values, so the test stays fast (the benchmark runs the grid)
STARTS = {"multipower": [[3.0, 0.6, 0.5, 400.0, 2.0, 0.6, 0.6]], "momentum": [[3.0, 0.6, 0.5, 0.5]]}


def protocol_errors(law, theta, test) -> tuple[float, float, np.ndarray]:
    """PredE and WorstE in % as the reference code averages them (per curve, then over curves)."""
    design = build_design(law, test, predict=True)
    pred = law.predict(np.asarray(theta, dtype=float), design)
    truth = test.frame.set_index(["run_id", "step"])["loss"]
    obs = truth.loc[list(zip(design.keys["run_id"], design.keys["step"], strict=True))].to_numpy()
    rel = np.abs(pred / obs - 1)
    groups = design.keys["run_id"].to_numpy()
    per_run = [rel[groups == r] for r in np.unique(groups)]
    return 100 * np.mean([r.mean() for r in per_run]), 100 * np.mean([r.max() for r in per_run]), rel


@pytest.mark.parametrize("size", [25, 100, 400])
def test_published_parameters_reproduce_published_protocol_errors(size):
    _, test = datasets.load(f"mpl-{size}m").split(TRAIN)
    pred_e, worst_e, _ = protocol_errors(get_law("multipower"), PUBLISHED_PARAMS[size], test)
    assert pred_e == pytest.approx(PUBLISHED_ERRORS[size][0], abs=0.005)
    assert worst_e == pytest.approx(PUBLISHED_ERRORS[size][1], abs=0.01)


def test_published_parameters_do_not_transfer_to_the_causal_convention():
    _, test = datasets.load("mpl-25m").split(TRAIN)
    pred_e, _, _ = protocol_errors(get_law("multipower", convention="causal"), PUBLISHED_PARAMS[25], test)
    assert pred_e > 1.0  # the warmup rises are ~B*peak = 0.11 in loss: dropping them is a 3% shift


@pytest.mark.parametrize("name", ["multipower", "momentum"])
def test_mpl_protocol_25m_refit_test_error(name):
    train, test = datasets.load("mpl-25m").split(TRAIN)
    fit = fit_law(get_law(name), train, starts=STARTS[name], maxiter=400)
    law = get_law(name, **dict(fit.law_config))
    pred_e, worst_e, rel = protocol_errors(law, [fit.values[n] for n in law.param_names], test)
    assert pred_e < 0.25
    assert rel.max() < 1e-2
    assert 2.5 < fit.values["L0"] < 3.3  # the floor sits below every observed loss (>= 3.2 at 72k steps)
