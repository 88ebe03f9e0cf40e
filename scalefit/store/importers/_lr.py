"""Recognise the schedule behind an LR logged every N steps.

`recognise_schedule(steps, lr)` tries the usual families (constant, linear, cosine, WSD with a linear,
cosine or 1-sqrt decay; each with a linear warmup) and returns the simplest `Schedule` that reproduces
every logged point to ``rtol`` (relative, as the importers check a logged LR against a schedule). When
none does, the LR is rebuilt piecewise-linearly between the logged points
(`scalefit.store.curves.rebuild_lr`) and `interpolation_error` estimates how far that can be from the
true LR: the largest distance of a logged point from the line through its two neighbours (a rebuild over
twice the cadence), a conservative estimate: for a smooth schedule about four times the rebuild's own
error, and a kink between two logged points shows up in full.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from scalefit.errors import ScheduleError
from scalefit.schedules import WSD, Constant, Cosine, Linear, Schedule
from scalefit.schedules.kinds import decay_shape

__all__ = ["recognise_schedule", "interpolation_error", "LRSource"]


@dataclass(frozen=True)
class LRSource:
    """How a run's dense LR is obtained: a recognised or given schedule, or the rebuild and its error."""

    schedule: Schedule | None
    n_points: int
    cadence: int | None
    max_deviation: float | None  # piecewise-linear rebuild: estimated largest error, as a ratio of peak

    def describe(self) -> str:
        every = {None: "", 1: " (every step)"}.get(self.cadence, f" (every {self.cadence} steps)")
        if self.n_points == 0:
            return "LR not logged"
        if self.schedule is not None:
            return f"LR logged at {self.n_points} steps{every}, schedule recognised: {self.schedule}"
        dev = "" if self.max_deviation is None else f", max deviation {self.max_deviation:.2%} of peak"
        return f"LR logged at {self.n_points} steps{every}, rebuilt piecewise-linear{dev}"


def cadence(steps: np.ndarray) -> int | None:
    """The most common gap between logged steps (None with fewer than two)."""
    gaps = np.diff(np.asarray(steps, dtype=np.int64))
    if gaps.size == 0:
        return None
    values, counts = np.unique(gaps, return_counts=True)
    return int(values[np.argmax(counts)])


def interpolation_error(steps: np.ndarray, lr: np.ndarray) -> float | None:
    """Largest distance of an interior logged LR from the line through its neighbours, over the peak."""
    s, y = np.asarray(steps, dtype=float), np.asarray(lr, dtype=float)
    if s.size < 3 or not np.max(y) > 0:
        return None
    line = y[:-2] + (y[2:] - y[:-2]) * (s[1:-1] - s[:-2]) / (s[2:] - s[:-2])
    return float(np.max(np.abs(y[1:-1] - line)) / np.max(y))


def _nice(value: float, rtol: float = 1e-9) -> float:
    """The shortest decimal within ``rtol`` of ``value`` (so that the short form reads 0.1, not 0.0999...)."""
    for digits in range(1, 16):
        rounded = float(f"{value:.{digits}g}")
        if abs(rounded - value) <= rtol * max(abs(value), 1e-300):
            return rounded
    return float(value)


def _matches(sched: Schedule, steps: np.ndarray, lr: np.ndarray, rtol: float) -> bool:
    """Every logged LR within ``rtol`` of the schedule, relative to the value (the importers' LR check)."""
    want = sched(steps)
    scale = max(float(np.max(np.abs(want))), 1e-300)
    return bool(np.all(np.abs(want - lr) <= rtol * np.maximum(np.abs(want), 1e-6 * scale)))


def _warmup(steps: np.ndarray, lr: np.ndarray, peak: float) -> tuple[int, float]:
    """(warmup steps, start ratio) of a linear ramp to ``peak`` ending at the first logged peak value."""
    at_peak = np.flatnonzero(lr >= peak * (1 - 1e-9))
    if at_peak.size == 0:
        return 0, 0.0
    ramp = steps[: at_peak[0]], lr[: at_peak[0]]
    if ramp[0].size == 0:
        return 0, 0.0
    if ramp[0].size == 1:
        if steps[at_peak[0]] == ramp[0][0]:
            return 0, 0.0
        start = 0.0
        width = ramp[0][0] * peak / ramp[1][0] if ramp[1][0] > 0 else steps[at_peak[0]]
        return int(round(width)), start
    slope, intercept = np.polyfit(ramp[0].astype(float), ramp[1], 1)
    if slope <= 0:
        return 0, 0.0
    start = max(0.0, min(1.0, intercept / peak))
    return int(round((peak - intercept) / slope)), _nice(start, 1e-6) if start > 1e-6 else 0.0


def _ratio(y: np.ndarray, g: np.ndarray) -> float | None:
    """Least-squares final ratio f of y = f + (1 - f) g (y, g as ratios of peak), within [0, 1]."""
    w = 1.0 - g
    if not np.any(w > 1e-12):
        return None
    f = float(np.sum(w * (y - g)) / np.sum(w * w))
    return None if not -1e-9 <= f <= 1 + 1e-9 else _clean_ratio(f)


def _clean_ratio(f: float) -> float:
    """A fitted ratio snapped to 0 below 1e-6 and to its shortest decimal (candidates are checked after)."""
    return 0.0 if f < 1e-6 else _nice(min(f, 1.0), 1e-7)


def _peak_and_ratio(lr: np.ndarray, g: np.ndarray) -> tuple[float, float] | None:
    """Least-squares (peak, final ratio) of lr = peak (f + (1 - f) g): linear in (peak f, peak (1 - f))."""
    if lr.size < 2 or np.ptp(g) < 1e-12:
        return None
    b, a = np.polyfit(g, lr, 1)
    peak = a + b
    if not peak > 0 or not -1e-9 <= a / peak <= 1 + 1e-9:
        return None
    return _nice(float(peak), 1e-7), _clean_ratio(float(a / peak))


def _close(pred: np.ndarray, y: np.ndarray) -> bool:
    """A cheap screen before a candidate is built: within 1e-4 of the logged values, relative."""
    return bool(np.all(np.abs(pred - y) <= 1e-4 * np.maximum(np.abs(y), 1e-6 * np.max(np.abs(y)))))


def _candidates(
    steps: np.ndarray, lr: np.ndarray, peak: float, min_total: int, stage: str
) -> Iterator[Callable[[], Schedule]]:
    """Schedule builders to try for a ``stage``: ``simple`` (constant, linear, cosine) or ``wsd``; each
    passed a cheap screen on the points after warmup (a builder may raise ScheduleError)."""
    warm, start = _warmup(steps, lr, peak)
    last, every = int(steps[-1]), cadence(steps) or 1
    common = {"warmup_steps": warm, "warmup_start": start}
    totals = [t for t in dict.fromkeys((last, last + 1, last + every, last - 1)) if t > 0 and t >= min_total]
    top = int(np.argmax(lr))
    # warmups to try for decays that start at once (linear, cosine): the peak need not be logged
    warmups = [warm] + (list(range(int(steps[top - 1]) + 1, int(steps[top]) + 1)) if top > 0 else [])
    if stage == "simple":
        yield lambda: Constant(peak, max(last, warm, min_total, 1), **common)
    for total in totals if stage == "simple" else ():
        for w in dict.fromkeys(warmups):
            post = steps >= w
            if w >= total or post.sum() < 2:
                continue
            p = (steps[post] - w) / (total - w)
            for cls, shape in ((Linear, "linear"), (Cosine, "cosine")):
                fitted = _peak_and_ratio(lr[post], decay_shape(p, shape, 0.0))
                if fitted is not None and _close(fitted[0] * decay_shape(p, shape, fitted[1]), lr[post]):
                    pk, f = fitted
                    ws = start if w == warm else 0.0
                    yield lambda c=cls, t=total, w=w, pk=pk, f=f, ws=ws: c(
                        pk, t, final_ratio=f, warmup_steps=w, warmup_start=ws
                    )
    post = steps >= warm
    s, y = steps[post].astype(float), lr[post] / peak
    below = np.flatnonzero(y < 1 - 1e-9)
    if stage != "wsd" or below.size == 0 or below[0] == 0:
        return
    first_low, last_high = int(s[below[0]]), int(s[below[0] - 1])
    for total in totals:
        for begin in range(max(last_high, warm), first_low):
            length = total - begin
            if length < 1:
                continue
            q = np.clip((s - begin) / length, 0.0, 1.0)
            for shape in ("linear", "cosine", "1-sqrt"):
                f = _ratio(y, decay_shape(q, shape, 0.0))
                if f is not None and _close(decay_shape(q, shape, f), y):
                    yield lambda t=total, n=length, k=shape, f=f: WSD(
                        peak, t, decay_steps=n, shape=k, final_ratio=f, **common
                    )


def recognise_schedule(
    steps: np.ndarray, lr: np.ndarray, *, rtol: float = 1e-6, min_total: int = 0
) -> Schedule | None:
    """The first family member that reproduces every logged (step, LR) to ``rtol``, or None.

    Needs at least 3 logged points and a positive peak. The peak is the largest logged LR; warmup (linear,
    from the first logged ramp points), length (the last logged step, or one more or less) and final ratio
    are read off the points, and every candidate is checked against all of them; of several that match,
    the one with the shortest string form (fewest non-default fields) wins, constant, linear and cosine
    before WSD. ``min_total``: the
    schedule must cover the run's rows (its last step).
    """
    steps, lr = np.asarray(steps, dtype=np.int64), np.asarray(lr, dtype=float)
    keep = np.isfinite(lr)
    steps, lr = steps[keep], lr[keep]
    if steps.size < 3 or not np.max(lr) > 0:
        return None
    peak = _nice(float(np.max(lr)), rtol / 10)
    for stage in ("simple", "wsd"):
        found: list[Schedule] = []
        for build in _candidates(steps, lr, peak, min_total, stage):
            try:
                sched = build()
            except ScheduleError:
                continue
            if _matches(sched, steps, lr, rtol):
                found.append(sched)
        if found:
            return min(found, key=lambda sched: len(str(sched)))
    return None
