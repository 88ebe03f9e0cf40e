"""Published-curve reference: the Multi-Power Law protocol of Luo et al. 2025 at 25M.

Fit {cosine_24000, constant_24000, wsdcon_9} of the bundled MPL 25M curves, predict the other six
(incl. 3x longer 72k-step horizons). Published MPL test average PredE is 0.110%; these exact-global-
optimum refits land at 0.15-0.20% (see benchmarks/lr_laws.py), so the bar here is PredE < 0.25% and
WorstE < 1%: a broken kernel, step convention or warmup handling is off by far more.
"""

from __future__ import annotations

import numpy as np
import pytest

from scalefit import datasets
from scalefit.fitting import fit_law
from scalefit.laws import get_law

TRAIN = ["cosine_24000", "constant_24000", "wsdcon_9"]
# one start each, near the paper's typical values, so the test stays fast (the benchmark runs the grid)
STARTS = {"multipower": [[3.0, 0.6, 0.5, 500.0, 1.0, 0.6, 0.6]], "momentum": [[3.0, 0.6, 0.5, 0.5]]}


@pytest.fixture(scope="module")
def split():
    return datasets.load("mpl-25m").split(TRAIN)


@pytest.mark.parametrize("name", ["multipower", "momentum"])
def test_mpl_protocol_25m_test_error(split, name):
    train, test = split
    fit = fit_law(get_law(name), train, starts=STARTS[name], maxiter=400)
    law = get_law(name, **dict(fit.law_config))
    design = law.design(test, predict=True)
    pred = law.predict(np.array([fit.values[n] for n in law.param_names]), design)
    truth = test.frame.set_index(["run_id", "step"])["loss"]
    obs = truth.loc[list(zip(design.keys["run_id"], design.keys["step"], strict=True))].to_numpy()
    rel = np.abs(pred / obs - 1)
    assert rel.mean() < 2.5e-3
    assert rel.max() < 1e-2
    assert 2.5 < fit.values["L0"] < 3.3  # the floor sits below every observed loss (>= 3.2 at 72k steps)
