"""Optimal peak LR: per-cell log-quadratic vertices, then a power law in model size and token horizon."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_overtraining import quiet_fit

from scalefit.errors import ConfigError, DataError
from scalefit.fitting.design import build_design
from scalefit.laws.base import numeric_jacobian
from scalefit.laws.optimal_lr import OptimalLRLaw, cell_optima, quadratic_vertex

C, A, B = 3e-3, -0.35, -0.12  # LR*(N, D) = C (N/1e8)^A (D/1e10)^B


def _sweep(noise: float, seed: int = 0, ratios=(10.0, 40.0, 160.0)) -> pd.DataFrame:
    """Final loss = floor(N, D) + w (ln lr - ln LR*)^2 + noise, over a 7-point LR grid per cell."""
    rng = np.random.default_rng(seed)
    rows = []
    for n in (2e7, 6e7, 2e8, 6e8):
        for ratio in ratios:
            d = n * ratio
            lr_star = C * (n / 1e8) ** A * (d / 1e10) ** B
            for lr in lr_star * np.exp(np.linspace(-1.5, 1.5, 7) + rng.uniform(-0.3, 0.3)):
                loss = 2.0 + 50 / n**0.3 + 0.04 * np.log(lr / lr_star) ** 2
                rows.append((n, d, lr, loss + noise * rng.standard_normal()))
    return pd.DataFrame(rows, columns=["N", "D", "peak_lr", "loss"])


def test_vertex_exact_on_a_quadratic():
    x = np.log(np.geomspace(1e-4, 1e-2, 6))
    out = quadratic_vertex(x, 3.1 + 0.05 * (x - np.log(1.3e-3)) ** 2)
    assert np.exp(out["log_lr_star"]) == pytest.approx(1.3e-3, rel=1e-10)
    assert out["loss_star"] == pytest.approx(3.1, abs=1e-12) and out["log_lr_se"] < 1e-6
    assert not out["at_edge"]


def test_power_law_recovered_from_a_raw_sweep():
    fit = quiet_fit(OptimalLRLaw(), _sweep(noise=2e-4))
    assert fit.values["c"] == pytest.approx(C, rel=0.05)
    assert fit.values["a"] == pytest.approx(A, abs=0.03)
    assert fit.values["b"] == pytest.approx(B, abs=0.03)
    pred = fit.predict(pd.DataFrame({"N": [1e9], "D": [2e10]}))
    assert pred.loss_pred.iloc[0] == pytest.approx(C * 10**A * 2**B, rel=0.08)


def test_cells_with_optimum_outside_the_sweep_are_excluded():
    sweep = _sweep(noise=0.0)
    big = sweep.N == sweep.N.max()
    low = sweep[big].groupby("D").peak_lr.transform(lambda s: s < s.median())
    trimmed = sweep[~big | low.reindex(sweep.index, fill_value=True)]
    cells = cell_optima(trimmed, by=("N", "D"))
    assert cells.at_edge.sum() == 3 and len(cells) == 12
    law = OptimalLRLaw()
    design = build_design(law, trimmed)
    assert design.n_points == 9 and len(design.excluded) == 3
    theta = np.array([C, A, B])
    np.testing.assert_allclose(law.jacobian(theta, design), numeric_jacobian(law, theta, design), rtol=1e-6)


def test_one_tokens_per_parameter_ratio_flags_collinearity():
    fit = quiet_fit(OptimalLRLaw(), _sweep(noise=2e-4, ratios=(20.0,)))
    assert {w["code"] for w in fit.warnings} & {"correlated", "no_covariance"}
    size_only = quiet_fit(OptimalLRLaw(horizon=False), _sweep(noise=2e-4, ratios=(20.0,)))
    assert size_only.param_names == ("c", "a")
    assert size_only.values["a"] == pytest.approx(A + B, abs=0.03)  # D = 20 N: the exponents merge


def test_missing_lr_column_is_named():
    with pytest.raises(DataError) as err:
        build_design(OptimalLRLaw(lr="lr"), _sweep(noise=0.0))
    assert err.value.column == "lr"


def test_horizon_only_sweep_at_one_size():
    sweep = _sweep(noise=1e-4)
    one = sweep[sweep.N == 2e8]
    fit = quiet_fit(OptimalLRLaw(size=False), one)
    assert fit.param_names == ("c", "b")
    assert fit.values["b"] == pytest.approx(B, abs=0.03)
    assert fit.values["c"] == pytest.approx(C * 2**A, rel=0.05)  # LR* at N = 2e8 and d_ref
    with pytest.raises(ConfigError) as err:
        OptimalLRLaw(size=False, horizon=False)
    assert err.value.field == "size"
