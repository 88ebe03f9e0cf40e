"""The empirical baselines. finals-power: recovers a known power law in run length through the finals,
answers only for its own schedule family at a final step. finals-chinchilla: recovers a known
Chinchilla law through annealed finals, answers only annealed rows. tail-power: recovers a known power
law in steps through a constant-LR run's tail, answers only that run continued at the same LR. A
forecast scores them like laws and weighs them among the members that answer a row."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scalefit.errors import FitError
from scalefit.predict.baselines import FinalsPowerLaw, FinalsScaling, TailPowerLaw, schedule_family
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
    fc = forecast(train, target, laws=["momentum", "finals-power"])  # a baseline by its member name
    assert list(fc.scores.index) == ["momentum", "finals-power"]
    assert fc.question == "horizon" and fc.folds[0]["kind"] == "horizon"
    assert np.isfinite(fc.scores.loc["finals-power", "horizon"])
    assert fc.scores.loc["finals-power", "horizon"] < 1e-4  # exact through 1000, 2000, 4000 -> 8000
    assert fc.weights["finals-power"] > 0
    got = fc.predict()
    final = got[got["step"] == 31999].iloc[0]
    truth = E + A * 32000**-ALPHA
    assert final["lo"] <= truth <= final["hi"]


# -- finals-chinchilla ---------------------------------------------------------------------------------
CH = {"E": 1.8, "A": 400.0, "alpha": 0.34, "B": 1500.0, "beta": 0.32}  # L = E + A/N^alpha + B/D^beta
TOKENS = 65536  # tokens per step


def chinchilla(n: float, d: float) -> float:
    return CH["E"] + CH["A"] / n ** CH["alpha"] + CH["B"] / d ** CH["beta"]


def sized(specs: list[tuple[float, int, str]], loss: bool = True) -> Curves:
    """Runs (n_params, steps, kind: "cosine" or "constant") evaluated every 100 steps; a cosine run's
    final (step T-1, D = T * TOKENS) is the Chinchilla law exactly, the rows before it 1 % above."""
    frames = []
    for n, T, kind in specs:
        steps = np.append(np.arange(100, T - 1, 100), T - 1)
        value = np.array([chinchilla(n, (s + 1) * TOKENS) for s in steps]) * np.where(
            steps == T - 1, 1.0, 1.01
        )
        schedule = cosine(T) if kind == "cosine" else f"constant:peak=1e-3,steps={T},warmup=100"
        frames.append(
            pd.DataFrame(
                {
                    "run_id": f"{kind}-{n:.0e}-{T}",
                    "step": steps,
                    "lr": np.nan,
                    "loss": value if loss else np.nan,
                    "schedule": schedule,
                    "n_params": n,
                    "tokens_per_step": TOKENS,
                }
            )
        )
    return Curves.from_frame(pd.concat(frames, ignore_index=True))


LADDER = [(n, T, "cosine") for n in (2e7, 4e7, 8e7, 1.6e8) for T in (2000, 4000, 8000)]


def test_finals_chinchilla_recovers_a_known_law_through_the_annealed_finals():
    fitted = FinalsScaling().fit(sized([*LADDER, (1.6e8, 8000, "constant")]))
    assert fitted.fit.data_summary["n_points"] == 12  # the constant run's final is not annealed
    big = sized([(6.4e8, 16000, "cosine"), (6.4e8, 16000, "constant")], loss=False)
    truth = pd.DataFrame({"run_id": ["cosine-6e+08-16000", "constant-6e+08-16000"], "step": [15999, 15999]})
    got = fitted.at(big, truth)
    assert got[0] == pytest.approx(chinchilla(6.4e8, 16000 * TOKENS), rel=2e-3)  # 4x the largest size
    assert np.isnan(got[1])  # a constant LR is not annealed at its last step: no answer
    rows = fitted.frame(big)
    assert rows["loss_pred"].notna().sum() == 1  # only the cosine run's final row


def test_finals_chinchilla_needs_three_sizes():
    with pytest.raises(FitError, match="annealed finals at 2 model size"):
        FinalsScaling().fit(sized([(n, T, "cosine") for n in (2e7, 4e7) for T in (2000, 4000)]))


def test_a_forecast_weighs_it_among_the_members_that_answer_a_row():
    """finals-chinchilla answers only the annealed finals: weighed against the laws on the folds it
    scored, it carries the target's final; the constant target's rows are the laws' alone."""
    train = sized(LADDER)
    target = sized([(3.2e8, 8000, "cosine"), (3.2e8, 8000, "constant")], loss=False)
    fc = forecast(train, target, laws=["momentum", FinalsScaling()])
    assert {"size"} <= {f["kind"] for f in fc.folds}
    assert fc.weights["finals-chinchilla"] > 0.9  # exact on every annealed fold
    assert len(fc.weight_sets) == 2 and sum(w["n_rows"] for w in fc.weight_sets) == 2
    got = fc.predict().set_index(["run_id", "step"])
    final = got.loc[("cosine-3e+08-8000", 7999)]
    assert final["loss_pred"] == pytest.approx(chinchilla(3.2e8, 8000 * TOKENS), rel=5e-3)
    assert final["lo"] <= chinchilla(3.2e8, 8000 * TOKENS) <= final["hi"]
    back = type(fc).from_json(fc.to_json())
    assert back.weight_sets == fc.weight_sets


# -- tail-power ----------------------------------------------------------------------------------------
TAIL = {"E": 2.5, "A": 4.0, "a": 0.3}  # the loss of a constant-LR run at step t: E + A t^-a


def continued(
    observed: dict[str, int], length: int, schedule: str = "constant", loss: bool = True, noise: float = 0.0
) -> Curves:
    """Runs of ``length`` steps (``schedule``: "constant", or "wsd" with a 20 % decay) logged every 100
    steps up to their ``observed`` step; the loss E + A t^-a (or NaN), times ``1 + noise * z`` with
    z standard normal (seeded per run)."""
    frames = []
    for k, (run_id, upto) in enumerate(observed.items()):
        steps = np.append(np.arange(100, upto, 100), upto)
        spec = f"{schedule}:peak=1e-3,steps={length},warmup=100" + (",decay=0.2" if schedule == "wsd" else "")
        z = np.random.default_rng(k).standard_normal(steps.size)
        value = (
            (TAIL["E"] + TAIL["A"] * steps.astype(float) ** -TAIL["a"]) * (1 + noise * z) if loss else np.nan
        )
        frames.append(pd.DataFrame({"run_id": run_id, "step": steps, "lr": np.nan, "loss": value}))
        frames[-1]["schedule"] = spec
    return Curves.from_frame(pd.concat(frames, ignore_index=True))


def test_tail_power_recovers_a_run_and_answers_only_its_continuation():
    fitted = TailPowerLaw().fit(continued({"a": 4000}, 16000))
    ((run_id, tail),) = fitted.tails.items()
    assert run_id == "a" and tail.start == 2000 and tail.lr == pytest.approx(1e-3)
    assert (tail.E, tail.A, tail.a) == pytest.approx(tuple(TAIL.values()), rel=1e-5)
    target = continued({"a": 15999, "b": 15999}, 16000, loss=False)
    frame = fitted.frame(target).set_index(["run_id", "step"])["loss_pred"]
    assert frame[("a", 15999)] == pytest.approx(TAIL["E"] + TAIL["A"] * 15999.0 ** -TAIL["a"], rel=1e-6)
    assert np.isnan(frame[("b", 15999)])  # another run: no answer
    assert frame.drop(index=("a", 15999)).isna().all()  # the final row only
    annealed = continued({"a": 15999}, 16000, schedule="wsd", loss=False)  # the same run, then a decay
    assert np.isnan(fitted.frame(annealed)["loss_pred"]).all()


def test_tail_power_needs_a_constant_lr_tail():
    """A cosine run's tail decays: not extrapolated; with no constant tail at all, a clear error."""
    fitted = TailPowerLaw().fit(
        Curves.from_frame(pd.concat([continued({"c": 4000}, 8000).frame, runs([8000]).frame]))
    )
    assert set(fitted.tails) == {"c"}
    with pytest.raises(FitError, match="constant LR over the last 50%") as err:
        TailPowerLaw().fit(runs([8000]))
    assert err.value.field == "lr"


def test_a_forecast_of_constant_runs_continued_uses_their_tails():
    """Only constant-LR runs: no schedule law can be fitted (no LR decay); tail-power is scored on the
    folds that truncate each run and carries the continued runs' finals, the truth inside the band."""
    train = continued({"a": 8000, "b": 8000, "c": 8000}, 16000, noise=0.002)
    target = continued({"a": 15999, "b": 15999, "c": 15999}, 16000, loss=False)
    fc = forecast(train, target, laws=["cooldown", TailPowerLaw()])
    assert fc.weights == {"cooldown": 0.0, "tail-power": 1.0}
    assert "cooldown" in fc.failures and "all" in fc.failures["cooldown"]
    scored = fc.scores.loc["tail-power"].dropna()
    assert len(scored) == 3 and all(name.startswith("trunc:") for name in scored.index)
    assert scored.max() < 0.01  # 0.2 % noise: the truncated tail predicts the rest closely
    truth = TAIL["E"] + TAIL["A"] * 15999.0 ** -TAIL["a"]
    got = fc.predict().set_index(["run_id", "step"]).xs(15999, level="step")
    assert np.allclose(got["loss_pred"], truth, rtol=0.01)
    assert ((got["lo"] <= truth) & (truth <= got["hi"])).all()
