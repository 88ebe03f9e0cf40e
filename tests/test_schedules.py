"""Schedules: hand-computed values for every kind, round trips (dict, YAML, string), errors."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import yaml

from scalefit import schedules as S
from scalefit.errors import ScheduleError

COS_QUARTER = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 4))  # cosine to 0.1 at progress 0.25

PINNED = [
    (
        S.Constant(1e-3, 100, warmup_steps=10, warmup_start=0.1),
        {0: 1e-4, 5: 5.5e-4, 10: 1e-3, 99: 1e-3, 500: 1e-3},
    ),
    (
        S.Constant(1.0, 100, warmup_steps=4, warmup_shape="cosine"),
        {0: 0.0, 1: 0.5 * (1 - math.sqrt(0.5)), 2: 0.5},
    ),
    (
        S.Cosine(1.0, 110, warmup_steps=10, final_ratio=0.1),
        {5: 0.5, 10: 1.0, 35: COS_QUARTER, 60: 0.55, 110: 0.1, 999: 0.1},
    ),
    (S.Cosine(1.0, 100, decay_steps=40, final_ratio=0.1), {10: COS_QUARTER, 40: 0.1, 99: 0.1}),
    (S.Linear(2.0, 100, final_ratio=0.5), {0: 2.0, 50: 1.5, 100: 1.0, 150: 1.0}),
    (
        S.WSD(1.0, 100, shape="linear", final_ratio=0.1),
        {79: 1.0, 80: 1.0, 85: 0.775, 90: 0.55, 100: 0.1, 101: 0.1},
    ),
    (S.WSD(1.0, 100, shape="cosine", final_ratio=0.1), {80: 1.0, 85: COS_QUARTER, 90: 0.55, 100: 0.1}),
    (S.WSD(1.0, 100, shape="1-sqrt", final_ratio=0.1), {85: 0.55, 100: 0.1}),
    (S.WSD(1.0, 100, shape="exp", final_ratio=0.1), {85: 0.1**0.25, 90: math.sqrt(0.1), 100: 0.1}),
    (S.WSD(1.0, 100, decay_steps=30), {69: 1.0, 70: 1.0, 85: 0.5, 100: 0.0}),
    (S.WSD(1.0, 100, decay_fraction=0.0), {0: 1.0, 99: 1.0, 100: 0.0}),
    (S.MultiStep(1.0, 100), {79: 1.0, 80: 0.316, 89: 0.316, 90: 0.316**2, 200: 0.316**2}),
    (S.MultiStep(1.0, 100, milestones=(10, 20), gamma=0.5), {9: 1.0, 10: 0.5, 25: 0.25}),
    (S.TwoStage(1.0, 100, switch_step=40, second_ratio=0.25), {39: 1.0, 40: 0.25, 100: 0.25}),
    (S.InverseSqrt(1.0, 1000, warmup_steps=100), {50: 0.5, 100: 1.0, 400: 0.5, 1600: 0.25}),
    (S.InverseSqrt(1.0, 1000, timescale=10), {0: 1.0, 30: 0.5}),
    (
        S.Cyclic(1.0, 100),
        {0: 1.0, 25: 0.5, 49: 0.5 * (1 + math.cos(math.pi * 0.98)), 50: 1.0, 75: 0.5, 100: 0.0},
    ),
    (S.WSDS(1.0, 100), {39: 1.0, 40: 1.0, 45: 0.5, 49: 0.1, 50: 1.0, 95: 0.5, 100: 0.0}),
    (
        S.WSDS(1.0, 100, final_ratio=0.1, rewarm_steps=10),
        {45: 0.55, 50: 0.1, 55: 0.55, 60: 1.0, 90: 1.0, 95: 0.55, 120: 0.1},
    ),
    (S.Logged.from_array([1.0, 2.0, 3.0]), {0: 1.0, 1: 2.0, 2: 3.0, 10: 3.0}),
]


@pytest.mark.parametrize(
    ("schedule", "expected"), PINNED, ids=lambda x: str(x) if isinstance(x, S.Schedule) else ""
)
def test_pinned_values(schedule: S.Schedule, expected: dict[int, float]) -> None:
    steps = list(expected)
    np.testing.assert_allclose(schedule(steps), [expected[s] for s in steps], rtol=1e-12, atol=1e-15)
    for s in steps:  # the vectorized call equals the scalar one
        assert float(schedule(s)) == pytest.approx(expected[s], rel=1e-12, abs=1e-15)


def test_lrs_and_shapes() -> None:
    s = S.Linear(1.0, 4)
    np.testing.assert_array_equal(s.lrs(), [1.0, 0.75, 0.5, 0.25])
    assert s.lrs(6).tolist() == [1.0, 0.75, 0.5, 0.25, 0.0, 0.0]
    assert s(np.zeros((2, 3))).shape == (2, 3)
    assert s(np.arange(0)).shape == (0,)
    assert S.Logged.from_array([1.0, 2.0]).peak_lr == 2.0


def test_string_form_and_aliases() -> None:
    s = S.parse("wsd:peak=1e-3,steps=50000,decay=0.2,shape=1-sqrt")
    assert s == S.WSD(1e-3, 50000, decay_fraction=0.2, shape="1-sqrt")
    assert str(s) == "wsd:peak=0.001,steps=50000,decay=0.2,shape=1-sqrt"
    assert str(S.MultiStep(1e-3, 10)) == "multistep:peak=0.001,steps=10"
    assert str(S.MultiStep(1e-3, 10, milestones=(5, 8))) == "multistep:peak=0.001,steps=10,milestones=5.0/8.0"
    assert S.parse("multistep:peak=1,steps=10,milestones=5/8").milestone_steps == (5, 8)
    assert S.parse(" Two_Stage : peak=1 , steps=10, switch_step=4, second_ratio=0.5 ").switch_step == 4
    assert S.parse("cos:final=0.1", peak=3e-4, steps=24000) == S.Cosine(3e-4, 24000, final_ratio=0.1)
    assert S.parse("wsd:decay_steps=10", peak=1.0, steps=100, decay=0.3).decay_steps == 10
    assert S.parse("cosine:peak=1,steps=1e4").total_steps == 10000


def test_replace() -> None:
    s = S.WSD(1.0, 100, decay_steps=30)
    t = s.replace(decay=0.5, peak=2.0)
    assert (t.decay_fraction, t.decay_steps, t.peak_lr, t.decay_length) == (0.5, None, 2.0, 50)
    assert s.replace(decay_steps=10).decay_fraction is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.peak_lr = 2.0  # type: ignore[misc]
    with pytest.raises(ScheduleError) as err:
        s.replace(nonsense=1)
    assert err.value.field == "nonsense" and "decay_steps" in err.value.fix


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: S.parse("foo:peak=1,steps=10"), "kind"),
        (lambda: S.parse("cosine:peak=1,steps=10,bogus=3"), "bogus"),
        (lambda: S.parse("cosine:peak=1"), "total_steps"),
        (lambda: S.parse("cosine:peak=abc,steps=10"), "peak_lr"),
        (lambda: S.parse("cosine:peak=1,steps=10.5"), "total_steps"),
        (lambda: S.parse("cosine:peak=1,steps=10,final"), "final"),
        (lambda: S.parse("cosine:peak=1,steps=10,peak=2"), "peak_lr"),
        (lambda: S.parse(""), "kind"),
        (lambda: S.parse("two-stage:peak=1,steps=10,second_ratio=0.1"), "switch_step"),
        (lambda: S.from_dict({"peak_lr": 1.0}), "kind"),
        (lambda: S.from_dict({"kind": "linear", "peak_lr": 1.0, "total_steps": 5, "x": 1}), "x"),
        (lambda: S.Schedule(1.0, 10), "kind"),
        (lambda: S.Constant(-1.0, 10), "peak_lr"),
        (lambda: S.Constant(1.0, 0), "total_steps"),
        (lambda: S.Constant(1.0, 10, warmup_steps=11), "warmup_steps"),
        (lambda: S.Constant(1.0, 10, warmup_start=1.5), "warmup_start"),
        (lambda: S.Constant(1.0, 10, warmup_shape="exp"), "warmup_shape"),
        (lambda: S.Constant("1e-3", 10), "peak_lr"),  # type: ignore[arg-type]
        (lambda: S.Constant(float("nan"), 10), "peak_lr"),
        (lambda: S.Cosine(1.0, 10, final_ratio=2.0), "final_ratio"),
        (lambda: S.WSD(1.0, 10, shape="exp"), "final_ratio"),
        (lambda: S.WSD(1.0, 10, shape="square"), "shape"),
        (lambda: S.WSD(1.0, 10, decay_fraction=0.2, decay_steps=2), "decay_steps"),
        (lambda: S.WSD(1.0, 10, warmup_steps=5, decay_steps=6), "decay_steps"),
        (lambda: S.MultiStep(1.0, 10, milestones=(5, 3)), "milestones"),
        (lambda: S.MultiStep(1.0, 10, gamma=0.0), "gamma"),
        (lambda: S.TwoStage(1.0, 10, warmup_steps=5, switch_step=3, second_ratio=0.1), "switch_step"),
        (lambda: S.Cyclic(1.0, 10, n_cycles=0), "n_cycles"),
        (lambda: S.WSDS(1.0, 10, n_cycles=2, warmup_steps=4, decay_steps=2), "n_cycles"),
        (lambda: S.Logged.from_array([1.0, -1.0]), "values"),
        (lambda: S.Constant(1.0, 10)([-1, 2]), "steps"),
        (lambda: S.for_mpl_curve("nope_1"), "file_stem"),
        (lambda: S.for_schaipp_config({"lr": 1e-3, "iterations": 10}), "warmup_steps"),
        (
            lambda: S.for_schaipp_config({"lr": 1e-3, "iterations": 10, "warmup_steps": 1, "scheduler": "x"}),
            "scheduler",
        ),
    ],
)
def test_errors_name_the_field(make, field: str) -> None:
    with pytest.raises(ScheduleError) as err:
        make()
    assert err.value.field == field


def test_unknown_kind_lists_valid_kinds() -> None:
    with pytest.raises(ScheduleError) as err:
        S.get_kind("warmup-stable")
    for name in ("constant", "cosine", "wsd", "wsd-s", "two-stage", "logged"):
        assert name in err.value.fix


def test_every_kind_registered() -> None:
    assert S.kind_names() == sorted(
        [
            "constant",
            "cosine",
            "linear",
            "wsd",
            "multistep",
            "two-stage",
            "inverse-sqrt",
            "cyclic",
            "wsd-s",
            "logged",
        ]
    )


def test_yaml_round_trip_of_each_pinned() -> None:
    for schedule, _ in PINNED:
        text = yaml.safe_dump(schedule.to_dict())
        again = S.from_dict(yaml.safe_load(text))
        assert again == schedule and str(again) == str(schedule)
        assert S.parse(str(schedule)) == schedule


# --- property tests -------------------------------------------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

ratio = st.floats(0.0, 1.0)
positive_ratio = st.floats(1e-3, 1.0)


@st.composite
def schedules(draw: st.DrawFn) -> S.Schedule:
    total = draw(st.integers(20, 400))
    common = {
        "peak_lr": draw(st.floats(1e-6, 1.0)),
        "total_steps": total,
        "warmup_steps": draw(st.integers(0, total // 4)),
        "warmup_start": draw(ratio),
        "warmup_shape": draw(st.sampled_from(["linear", "cosine"])),
    }
    span = total - common["warmup_steps"]
    options = [
        lambda: S.Constant(**common),
        lambda: S.Cosine(**common, final_ratio=draw(ratio)),
        lambda: S.Linear(**common, final_ratio=draw(ratio)),
        lambda: S.WSD(
            **common,
            decay_steps=draw(st.integers(0, span)),
            shape=draw(st.sampled_from(["linear", "cosine", "1-sqrt"])),
            final_ratio=draw(ratio),
        ),
        lambda: S.WSD(
            **common, decay_fraction=0.5 * span / total, shape="exp", final_ratio=draw(positive_ratio)
        ),
        lambda: S.MultiStep(**common, gamma=draw(positive_ratio)),
        lambda: S.TwoStage(
            **common,
            switch_step=draw(st.integers(common["warmup_steps"], total)),
            second_ratio=draw(positive_ratio),
        ),
        lambda: S.InverseSqrt(**common, timescale=draw(st.none() | st.integers(1, 100))),
        lambda: S.Cyclic(**common, n_cycles=draw(st.integers(1, 4)), final_ratio=draw(ratio)),
        lambda: S.WSDS(
            **{**common, "warmup_steps": 0},
            n_cycles=draw(st.integers(1, 3)),
            decay_fraction=draw(st.floats(0.0, 0.5)),
            final_ratio=draw(ratio),
            rewarm_steps=draw(st.integers(0, 3)),
        ),
        lambda: S.Logged.from_array(
            draw(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=30)), peak_lr=1.0
        ),
    ]
    return draw(st.sampled_from(options))()


@settings(max_examples=100, deadline=None)
@given(schedules())
def test_lr_within_bounds_and_warmup_monotone(schedule: S.Schedule) -> None:
    lr = schedule.lrs(schedule.total_steps + 10)
    peak = schedule.peak_lr
    assert np.all(np.isfinite(lr)) and np.all(lr >= 0) and np.all(lr <= peak * (1 + 1e-12))
    w = schedule.warmup_steps
    assert np.all(np.diff(lr[:w]) >= -1e-15 * peak)  # the warmup ramp (steps 0..W-1) never decreases
    if w:
        assert lr[0] == pytest.approx(schedule.warmup_start * peak, rel=1e-12, abs=1e-300)
        assert lr[w] == pytest.approx(float(schedule._main(np.array(float(w)))), rel=1e-12)
    final = getattr(schedule, "final_ratio", None)
    if final is not None:
        floor = min(final, schedule.warmup_start) if w else final
        assert np.all(lr >= peak * floor * (1 - 1e-12))
        assert lr[-1] == pytest.approx(peak * final, rel=1e-12, abs=1e-300)


@settings(max_examples=100, deadline=None)
@given(schedules())
def test_round_trips(schedule: S.Schedule) -> None:
    assert S.from_dict(schedule.to_dict()) == schedule
    assert S.from_dict(json.loads(json.dumps(schedule.to_dict()))) == schedule
    assert S.from_dict(yaml.safe_load(yaml.safe_dump(schedule.to_dict()))) == schedule
    assert S.parse(str(schedule)) == schedule
    assert schedule.replace() == schedule
    steps = np.arange(schedule.total_steps + 3)
    np.testing.assert_array_equal(S.parse(str(schedule))(steps), schedule(steps))
