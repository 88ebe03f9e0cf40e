"""sf.forecast on a ladder of model sizes asked about a schedule at a fitted size: a curve law that does
not read the size is fitted per size (on that size's runs alone), so each size's curves are recovered;
fitted to every size at once, one curve goes through both and misses each."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scalefit.fitting.design import build_design
from scalefit.fitting.engine import fit_law
from scalefit.laws import get_law
from scalefit.predict.forecast import forecast
from scalefit.predict.members import LawMember, PerSizeMember
from scalefit.store.curves import Curves

LAM, PEAK, STEPS = 0.998, 3e-4, 6000
SIZES = {2e7: np.array([3.2, 0.9, 0.5, 0.4]), 8e7: np.array([2.8, 0.7, 0.5, 0.4])}  # momentum L0, A, alpha, C
TRAIN = {
    "constant": f"constant:peak={PEAK},steps={STEPS},warmup=300",
    "cosine": f"cosine:peak={PEAK},steps={STEPS},warmup=300,final=0.1",
    "wsd-0.3": f"wsd:peak={PEAK},steps={STEPS},warmup=300,decay=0.3",
}
TEST = {"wsd-0.1": f"wsd:peak={PEAK},steps={STEPS},warmup=300,decay=0.1"}


def ladder(specs: dict[str, str], noise: float, loss: bool = True) -> Curves:
    """Each schedule at each size of ``SIZES``, the momentum law at that size's parameters, evaluated
    every 100 steps, with log-normal noise (seeded); the loss NaN when not ``loss``."""
    law = get_law("momentum", lam=LAM)
    parts = []
    for k, (n, theta) in enumerate(SIZES.items()):
        steps = np.append(np.arange(100, STEPS - 1, 100), STEPS - 1)
        frame = pd.concat(
            pd.DataFrame({"run_id": f"{name}-{n:.0e}", "step": steps, "lr": np.nan, "loss": 1.0}).assign(
                schedule=spec, n_params=n
            )
            for name, spec in specs.items()
        )
        curves = Curves.from_frame(frame.reset_index(drop=True))
        value = law.predict(theta, build_design(law, curves, predict=True))
        value = value * np.exp(noise * np.random.default_rng(k).standard_normal(value.size))
        parts.append(curves.to_frame().assign(loss=value if loss else np.nan))
    return Curves.from_frame(pd.concat(parts, ignore_index=True))


def truth_finals() -> pd.Series:
    exact = ladder(TEST, noise=0.0)
    return exact.final().set_index("run_id")["loss"]


def test_a_size_blind_law_is_fitted_per_size_on_a_ladder():
    train, targets = ladder(TRAIN, noise=0.002), ladder(TEST, noise=0.0, loss=False)
    fc = forecast(train, targets, laws=[get_law("momentum", lam=LAM)])
    assert fc.question == "branch"  # a WSD cooldown off the fitted constant runs
    assert any("fitted per size" in note for note in fc.notes)
    table = fc.predict()
    got = table.loc[table.groupby("run_id")["step"].idxmax()].set_index("run_id")
    truth = truth_finals()
    assert np.allclose(got["loss_pred"], truth.reindex(got.index), rtol=3e-3)  # each size's own curve
    assert ((got["lo"] <= truth) & (truth <= got["hi"])).all()
    # the folds hold out one run of one size; it is predicted by the fit of its size
    assert np.nanmax(fc.scores.to_numpy()) < 0.01


def test_pooled_over_sizes_the_same_law_misses_both():
    """What the per-size fit avoids: one momentum curve through both sizes misses each by percents."""
    train, targets = ladder(TRAIN, noise=0.002), ladder(TEST, noise=0.0, loss=False)
    pooled = fit_law(get_law("momentum", lam=LAM), train, progress=False).predict(targets)
    got = pooled.loc[pooled.groupby("run_id")["step"].idxmax()].set_index("run_id")["loss_pred"]
    truth = truth_finals()
    assert (np.abs(got / truth.reindex(got.index) - 1) > 0.03).all()


def test_a_per_size_member_answers_only_the_sizes_it_has_fitted():
    one = ladder(TRAIN, noise=0.0)
    small = one.select([r for r in one.run_ids if r.endswith("2e+07")])
    fitted = PerSizeMember(LawMember(get_law("momentum", lam=LAM))).fit(small)
    assert [n for n, _ in fitted.fits] == [2e7]
    frame = fitted.frame(ladder(TEST, noise=0.0, loss=False))
    last = frame.loc[frame.groupby("run_id")["step"].idxmax()].set_index("run_id")["loss_pred"]
    assert np.isnan(last["wsd-0.1-8e+07"])  # no fit of that size: no answer
    assert last["wsd-0.1-2e+07"] == pytest.approx(truth_finals()["wsd-0.1-2e+07"], rel=1e-4)
