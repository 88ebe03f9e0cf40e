"""sf.forecast on a ladder of model sizes asked about a schedule at a fitted size: a curve law that does
not read the size is fitted per size (on that size's runs alone), so each size's curves are recovered;
fitted to every size at once, one curve goes through both and misses each."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

from scalefit.fitting.design import build_design
from scalefit.fitting.engine import fit_law
from scalefit.laws import get_law
from scalefit.predict.folds import Fold
from scalefit.predict.forecast import MIN_COMMON, PREFERENCE, _weighers, forecast
from scalefit.predict.members import LawMember, PerSizeMember
from scalefit.store.curves import Curves

LAM, PEAK, STEPS = 0.998, 3e-4, 6000
SLOW_LAM = 0.9995  # a second momentum decay, for a ladder whose sizes follow different laws
SIZES = {2e7: np.array([3.2, 0.9, 0.5, 0.4]), 8e7: np.array([2.8, 0.7, 0.5, 0.4])}  # momentum L0, A, alpha, C
TRAIN = {
    "constant": f"constant:peak={PEAK},steps={STEPS},warmup=300",
    "cosine": f"cosine:peak={PEAK},steps={STEPS},warmup=300,final=0.1",
    "wsd-0.3": f"wsd:peak={PEAK},steps={STEPS},warmup=300,decay=0.3",
}
TEST = {"wsd-0.1": f"wsd:peak={PEAK},steps={STEPS},warmup=300,decay=0.1"}


def ladder(specs: dict[str, str], noise: float, loss: bool = True, lam: float = LAM) -> Curves:
    """Each schedule at each size of ``SIZES``, the momentum law (decay ``lam``) at that size's
    parameters, evaluated every 100 steps, with log-normal noise (seeded); the loss NaN when not
    ``loss``."""
    law = get_law("momentum", lam=lam)
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


class FastMomentum(type(get_law("momentum")), register=False):
    """The momentum law under a name outside ``PREFERENCE``: among members the folds cannot tell
    apart, the lowest fold MSE is chosen (module doc, step 3), so the choice shows which folds
    weighed."""

    name: ClassVar[str] = "fast-momentum"


class SlowMomentum(FastMomentum, register=False):
    name: ClassVar[str] = "slow-momentum"


def test_each_size_is_weighed_on_the_folds_that_hold_out_its_own_runs():
    """The small size follows momentum at LAM, the large one at SLOW_LAM: each size's target is
    answered by the member that its own folds choose (the folds of the other size test other fits),
    and recovers its size's truth."""
    fast = ladder(TRAIN, noise=0.001)
    slow = ladder(TRAIN, noise=0.001, lam=SLOW_LAM)
    pick = {"2e+07": fast, "8e+07": slow}
    train = Curves.from_frame(
        pd.concat([pick[r.rsplit("-", 1)[1]].select([r]).to_frame() for r in fast.run_ids], ignore_index=True)
    )
    targets = ladder(TEST, noise=0.0, loss=False)
    laws = [FastMomentum(lam=LAM), SlowMomentum(lam=SLOW_LAM)]
    fc = forecast(train, targets, laws=laws)
    assert {tuple(sorted(w["weights"].items())) for w in fc.weight_sets} == {
        (("fast-momentum", 1.0), ("slow-momentum", 0.0)),
        (("fast-momentum", 0.0), ("slow-momentum", 1.0)),
    }
    table = fc.predict()
    got = table.loc[table.groupby("run_id")["step"].idxmax()].set_index("run_id")["loss_pred"]
    truth = {"wsd-0.1-2e+07": truth_finals()["wsd-0.1-2e+07"]}
    truth["wsd-0.1-8e+07"] = (
        ladder(TEST, noise=0.0, lam=SLOW_LAM).final().set_index("run_id")["loss"]["wsd-0.1-8e+07"]
    )
    for run_id, value in truth.items():
        assert got[run_id] == pytest.approx(value, rel=2e-3)


def test_a_size_with_too_few_folds_of_its_own_is_weighed_on_every_fold():
    sizes = pd.Series({"a": 1e7, "b": 1e7, "c": 2e7})
    folds = [
        Fold(f"loo:{r}", "loo", pd.DataFrame(), pd.DataFrame(), pd.DataFrame({"run_id": [r]}), 0.0)
        for r in ("a", "b", "c")
    ]
    sq = pd.DataFrame({"loo:a": [1.0, 2.0], "loo:b": [1.0, 3.0], "loo:c": [5.0, 1.0]}, index=["x", "y"])
    weigh = _weighers(sq, folds, list(sq.columns), frozenset(sq.index), PREFERENCE, sizes)
    assert MIN_COMMON == 2
    assert set(weigh.by_size) == {1e7}  # 2e7 holds out one run: fewer than MIN_COMMON folds
    assert list(weigh.of(1e7).scores_sq.columns) == ["loo:a", "loo:b"]
    assert weigh.of(2e7) is weigh.default and weigh.of(float("nan")) is weigh.default
    assert list(weigh.default.scores_sq.columns) == ["loo:a", "loo:b", "loo:c"]
