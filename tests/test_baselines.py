"""The finals-power baseline: recovers a known power law in run length through the finals, answers only
for its own schedule family at a final step, and is scored by a forecast like a law."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scalefit.errors import FitError
from scalefit.predict.baselines import FinalsPowerLaw, schedule_family
from scalefit.predict.forecast import forecast
from scalefit.store.curves import Curves

E, A, ALPHA = 2.0, 5.0, 0.4


def cosine(steps: int) -> str:
    return f"cosine:peak=1e-3,steps={steps},warmup=100,final=0.1"


def runs(lengths: list[int], loss: bool = True) -> Curves:
    """Cosine runs whose loss at step s is E + A (s + 1)^-ALPHA: the final of a run of T steps is
    E + A T^-ALPHA exactly."""
    frames = []
    for T in lengths:
        steps = np.append(np.arange(100, T - 1, 100), T - 1)
        value = E + A * (steps + 1.0) ** -ALPHA if loss else np.nan
        frames.append(pd.DataFrame({"run_id": f"cos-{T}", "step": steps, "lr": np.nan, "loss": value}))
        frames[-1]["schedule"] = cosine(T)
    return Curves.from_frame(pd.concat(frames, ignore_index=True))


def test_a_known_power_law_through_the_finals_is_recovered():
    fitted = FinalsPowerLaw().fit(runs([1000, 2000, 4000, 8000]))
    ((key, (e, a, alpha)),) = fitted.params.items()
    assert key[:-1] == schedule_family(cosine(123))  # the family does not depend on the length
    assert (e, a, alpha) == pytest.approx((E, A, ALPHA), rel=1e-5)
    target = runs([32000], loss=False)
    frame = fitted.frame(target)
    final = frame[frame["step"] == 31999]["loss_pred"].iloc[0]
    assert final == pytest.approx(E + A * 32000**-ALPHA, rel=1e-6)
    assert frame[frame["step"] < 31999]["loss_pred"].isna().all()  # no answer before the final step
    other = Curves.from_frame(
        pd.DataFrame({"run_id": "wsd", "step": [10, 999], "lr": np.nan, "loss": np.nan}).assign(
            schedule="wsd:peak=1e-3,steps=1000,decay=0.2"
        )
    )
    assert np.isnan(fitted.frame(other)["loss_pred"]).all()  # another family: no answer


def test_fewer_than_three_lengths_is_not_applicable():
    with pytest.raises(FitError, match="3 or more lengths"):
        FinalsPowerLaw().fit(runs([1000, 2000]))


def test_a_forecast_scores_it_on_the_horizon_fold():
    train, target = runs([1000, 2000, 4000, 8000]), runs([32000], loss=False)
    fc = forecast(train, target, laws=["momentum", FinalsPowerLaw()])
    assert fc.question == "horizon" and fc.folds[0]["kind"] == "horizon"
    assert np.isfinite(fc.scores.loc["finals-power", "horizon"])
    assert fc.scores.loc["finals-power", "horizon"] < 1e-4  # exact through 1000, 2000, 4000 -> 8000
    assert fc.weights["finals-power"] > 0
    got = fc.predict()
    final = got[got["step"] == 31999].iloc[0]
    truth = E + A * 32000**-ALPHA
    assert final["lo"] <= truth <= final["hi"]
