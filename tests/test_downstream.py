"""Downstream-error law (Gadre et al. 2024) and its chaining after a loss law with error propagation."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from test_overtraining import gadre_split, quiet_fit

from scalefit.errors import FitError, FitWarning
from scalefit.laws.downstream import DownstreamLaw
from scalefit.laws.overtraining import OvertrainingLaw
from scalefit.predict.chains import chain_downstream
from scalefit.store import datasets


def _error_fit_runs(dataset: str, train: pd.DataFrame) -> pd.DataFrame:
    """The loss-law runs plus the 1.4B M=20 run, as in the paper."""
    runs = datasets.load("gadre-overtraining")
    extra = runs[(runs.dataset == dataset) & (runs.model == "open_lm_1b") & (runs.M == 20)]
    return pd.concat([train, extra])


@pytest.fixture(scope="module")
def rpj_chain():
    train, target = gadre_split("rpj", 640)
    loss_fit = quiet_fit(OvertrainingLaw(loss="loss_c4_val"), train, objective="lsq", bootstrap=100, seed=0)
    err_law = DownstreamLaw(loss="loss_c4_val", err="err_avg17")
    err_fit = quiet_fit(err_law, _error_fit_runs("rpj", train), objective="lsq", bootstrap=100, seed=1)
    return loss_fit, err_fit, target


def test_gadre_rpj_chained_error_reproduced(rpj_chain):
    loss_fit, err_fit, target = rpj_chain
    for name, value in {"eps": 0.857, "k": 2.206, "gamma": 0.715}.items():  # README values
        assert err_fit.values[name] == pytest.approx(value, abs=1e-3), name
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)
        out = chain_downstream(loss_fit, err_fit, target)
    rel = 100 * np.abs(out.err_pred.to_numpy() - target.err_avg17.to_numpy()) / target.err_avg17.to_numpy()
    np.testing.assert_allclose(rel, [3.64, 0.05], atol=0.05)  # published 3.64% (1.4B M=640), 0.05% (6.9B)


def test_chained_band_covers_both_fits_uncertainty(rpj_chain):
    loss_fit, err_fit, target = rpj_chain
    with pytest.warns(FitWarning, match="5 runs for 4 parameters"):
        out = chain_downstream(loss_fit, err_fit, target, ci=0.9)
    assert np.all(out.loss_lo <= out.loss_pred) and np.all(out.loss_pred <= out.loss_hi)
    assert np.all(out.err_lo <= out.err_pred) and np.all(out.err_pred <= out.err_hi)
    assert np.all(out.err_hi - out.err_lo > 0)
    # the error band is wider than the error law alone gives at the (fixed) predicted loss
    fixed = err_fit.predict(pd.DataFrame({"loss_c4_val": out.loss_pred}), ci=0.9)
    assert np.all((out.err_hi - out.err_lo).to_numpy() >= 0.999 * (fixed.hi - fixed.lo).to_numpy())


def test_chain_without_bootstrap_says_how_to_fix():
    train, target = gadre_split("rpj", 640)
    loss_fit = quiet_fit(OvertrainingLaw(loss="loss_c4_val"), train, objective="lsq")
    err_fit = quiet_fit(
        DownstreamLaw(loss="loss_c4_val", err="err_avg17"), _error_fit_runs("rpj", train), objective="lsq"
    )
    with pytest.raises(FitError, match="bootstrap"):
        chain_downstream(loss_fit, err_fit, target)
    with pytest.raises(FitError):
        chain_downstream(loss_fit, loss_fit, target)
