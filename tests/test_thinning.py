"""Per-step logs: a fit places design points at no more than ``max_points`` evenly spaced observed
steps of a run (every step's LR still in the sums), says which runs it thinned, and recovers the same
law as a fit at every point."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scalefit.errors import ConfigError, FitWarning
from scalefit.fitting.design import build_design, thin
from scalefit.fitting.engine import MAX_POINTS, fit_law
from scalefit.laws import get_law
from scalefit.store import datasets
from scalefit.store.curves import Curves

TRUE = np.array([2.8, 0.7, 0.5, 0.4])  # momentum L0, A, alpha, C
LAM = 0.998
SPECS = {
    "constant": "constant:peak=6e-4,steps=8000,warmup=200",
    "cosine": "cosine:peak=6e-4,steps=8000,warmup=200,final=0.1",
}


def per_step(noise: float = 0.005, seed: int = 0) -> Curves:
    """The momentum law at TRUE logged at every step from 100 on, with log-normal noise."""
    frames = [
        pd.DataFrame({"run_id": r, "step": np.arange(100, 8000), "lr": np.nan, "loss": 1.0, "schedule": s})
        for r, s in SPECS.items()
    ]
    curves = Curves.from_frame(pd.concat(frames, ignore_index=True))
    law = get_law("momentum", lam=LAM)
    loss = law.predict(TRUE, build_design(law, curves, predict=True))
    loss = loss * np.exp(noise * np.random.default_rng(seed).standard_normal(loss.size))
    return Curves.from_frame(curves.to_frame().assign(loss=loss))


def test_thin_keeps_the_ends_and_spaces_the_rest_evenly():
    observed = np.ones(101, dtype=bool)
    observed[[3, 4, 5]] = False  # not observed: never chosen
    keep = thin(observed, 11)
    idx = np.flatnonzero(keep)
    assert keep.sum() == 11 and idx[0] == 0 and idx[-1] == 100 and not keep[[3, 4, 5]].any()
    rank = np.searchsorted(np.flatnonzero(observed), idx)  # position among the observed rows
    assert np.ptp(np.diff(rank)) <= 1  # evenly spaced among them, to within a rounding
    assert np.array_equal(thin(observed, 500), observed)  # fewer points than the cap: untouched


def test_a_per_step_log_is_thinned_and_gives_the_same_law():
    curves = per_step()
    law = get_law("momentum", lam=LAM)
    with pytest.warns(FitWarning, match=r"2 run\(s\) fitted at 400 evenly spaced observed points"):
        thinned = fit_law(law, curves, max_points=400, progress=False)
    assert [w["code"] for w in thinned.diagnostics["warnings"]].count("thinned") == 1
    full = fit_law(law, curves, max_points=None, progress=False)
    got = {run: list(counts) for run, counts in thinned.diagnostics["thinned"].items()}
    assert got == {"constant": [7900, 400], "cosine": [7900, 400]}  # run -> [observed, fitted]
    assert thinned.data_summary["n_points"] == 800 and thinned.options["max_points"] == 400
    assert len(full.diagnostics["thinned"]) == 0 and full.data_summary["n_points"] == 15800
    np.testing.assert_allclose(thinned.theta, TRUE, rtol=0.03)
    np.testing.assert_allclose(thinned.theta, full.theta, rtol=0.02)
    # the thinned fit still predicts every logged step of the runs
    pred = thinned.predict(curves)
    assert len(pred) == 15800 and np.all(np.isfinite(pred["loss_pred"]))


def test_the_default_thins_per_step_logs_but_no_bundled_curve_set():
    fit = fit_law(get_law("momentum", lam=LAM), per_step(), progress=False)
    assert fit.options["max_points"] == MAX_POINTS == 4000
    assert {run: list(c) for run, c in fit.diagnostics["thinned"].items()} == {
        "constant": [7900, MAX_POINTS],
        "cosine": [7900, MAX_POINTS],
    }
    law = get_law("momentum", lam=LAM)
    for name in ("mpl-25m", "mpl-100m", "mpl-400m", "schaipp-124m", "schaipp-sizes"):
        curves = datasets.load(name)
        assert build_design(law, curves, max_points=MAX_POINTS).meta["thinned"] == {}, name


@pytest.mark.parametrize("bad", [1, 0, 2.5, True, "all"])
def test_max_points_must_be_an_integer_of_at_least_two(bad: object):
    with pytest.raises(ConfigError, match="max_points") as err:
        fit_law(get_law("momentum", lam=LAM), per_step(), max_points=bad, progress=False)
    assert err.value.field == "max_points"
