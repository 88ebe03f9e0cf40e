"""Piecewise and multi-cycle schedule kinds: multi-step, two-stage, cyclic, WSD-S, logged array."""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import pairwise
from typing import ClassVar

import numpy as np
from numpy.typing import ArrayLike

from scalefit.schedules.base import Schedule, check
from scalefit.schedules.kinds import check_decay, decay_length, decay_shape

__all__ = ["MultiStep", "TwoStage", "Cyclic", "WSDS", "Logged"]


@dataclass(frozen=True, kw_only=True)
class MultiStep(Schedule):
    """Peak, multiplied by ``gamma`` at each milestone (default the "8-1-1" schedule: x0.316 at 80%, 90%).

    A milestone below 1 is a fraction of ``total_steps`` (rounded to a step); one >= 1 is a step.
    From the milestone step on, the factor applies.
    """

    kind: ClassVar[str] = "multistep"
    milestones: tuple[float, ...] = (0.8, 0.9)
    gamma: float = 0.316

    def _validate(self) -> None:
        check(0 < self.gamma <= 1, "must lie in (0, 1]", "gamma", self.gamma)
        steps = self.milestone_steps
        check(all(v > 0 for v in self.milestones), "must be positive", "milestones", self.milestones)
        check(all(b > a for a, b in pairwise(steps)), "must increase", "milestones", self.milestones)
        check(
            all(v == int(v) for v in self.milestones if v >= 1),
            "steps must be whole",
            "milestones",
            self.milestones,
        )

    @property
    def milestone_steps(self) -> tuple[int, ...]:
        """The milestones as steps."""
        return tuple(math.floor(v * self.total_steps + 0.5) if v < 1 else int(v) for v in self.milestones)

    def _main(self, steps: np.ndarray) -> np.ndarray:
        count = np.searchsorted(np.asarray(self.milestone_steps, dtype=np.float64), steps, side="right")
        return self.peak_lr * self.gamma ** count.astype(np.float64)


@dataclass(frozen=True, kw_only=True)
class TwoStage(Schedule):
    """Peak until ``switch_step``, then constant ``second_ratio * peak`` (from the switch step on)."""

    kind: ClassVar[str] = "two-stage"
    switch_step: int
    second_ratio: float

    def _validate(self) -> None:
        check(
            self.warmup_steps <= self.switch_step,
            "switch must come after warmup",
            "switch_step",
            self.switch_step,
        )
        check(self.second_ratio > 0, "must be positive", "second_ratio", self.second_ratio)

    def _main(self, steps: np.ndarray) -> np.ndarray:
        return np.where(steps < self.switch_step, self.peak_lr, self.peak_lr * self.second_ratio)


@dataclass(frozen=True, kw_only=True)
class Cyclic(Schedule):
    """``n_cycles`` equal cosine cycles over warmup..T, each from peak to ``final_ratio * peak`` (SGDR)."""

    kind: ClassVar[str] = "cyclic"
    n_cycles: int = 2
    final_ratio: float = 0.0

    def _validate(self) -> None:
        check(self.n_cycles >= 1, "must be at least 1", "n_cycles", self.n_cycles)
        check(0 <= self.final_ratio <= 1, "is a ratio of peak in [0, 1]", "final_ratio", self.final_ratio)

    def _main(self, steps: np.ndarray) -> np.ndarray:
        length = (self.total_steps - self.warmup_steps) / self.n_cycles
        if length <= 0:
            return np.where(steps >= self.total_steps, self.peak_lr * self.final_ratio, self.peak_lr)
        x = (steps - self.warmup_steps) / length
        k = np.clip(np.floor(x), 0, self.n_cycles - 1)
        return self.peak_lr * decay_shape(x - k, "cosine", self.final_ratio)


@dataclass(frozen=True, kw_only=True)
class WSDS(Schedule):
    """WSD-S: ``n_cycles`` equal stable+decay cycles; each ends at ``i * T / n`` with a decay of length
    ``decay_steps`` or ``round(decay_fraction * cycle length)``, and the next cycle resumes at peak,
    re-warming linearly from the final LR over ``rewarm_steps`` (0: jump back to peak).
    """

    kind: ClassVar[str] = "wsd-s"
    exclusive: ClassVar[tuple[tuple[str, ...], ...]] = (("decay_fraction", "decay_steps"),)
    n_cycles: int = 2
    decay_fraction: float | None = None
    decay_steps: int | None = None
    shape: str = "linear"
    final_ratio: float = 0.0
    rewarm_steps: int = 0

    def _validate(self) -> None:
        check(self.n_cycles >= 1, "must be at least 1", "n_cycles", self.n_cycles)
        check_decay(self)
        check(self.rewarm_steps >= 0, "must be >= 0", "rewarm_steps", self.rewarm_steps)
        for i, (a, b, length) in enumerate(self.cycles):
            lead = self.warmup_steps if i == 0 else self.rewarm_steps
            check(
                lead + length <= b - a,
                f"cycle {i + 1} ({a}..{b}) is too short for its warmup/re-warm and decay",
                "n_cycles",
                self.n_cycles,
            )

    @property
    def cycle_ends(self) -> tuple[int, ...]:
        """Last step (exclusive) of each cycle; the last is ``total_steps``."""
        return tuple(
            math.floor(i * self.total_steps / self.n_cycles + 0.5) for i in range(1, self.n_cycles + 1)
        )

    @property
    def cycles(self) -> tuple[tuple[int, int, int], ...]:
        """``(start, end, decay length)`` of each cycle, in steps."""
        ends = self.cycle_ends
        return tuple(
            (a, b, decay_length(self.decay_fraction, self.decay_steps, b - a))
            for a, b in zip((0, *ends[:-1]), ends, strict=True)
        )

    def _main(self, steps: np.ndarray) -> np.ndarray:
        table = np.asarray(self.cycles, dtype=np.float64)
        i = np.minimum(np.searchsorted(table[:, 1], steps, side="right"), self.n_cycles - 1)
        start, end, length = table[i, 0], table[i, 1], table[i, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            p = np.where(length > 0, (steps - (end - length)) / np.maximum(length, 1.0), (steps >= end) * 1.0)
        ratio = decay_shape(p, self.shape, self.final_ratio)
        if self.rewarm_steps > 0:
            since = steps - start
            rewarm = (i > 0) & (since < self.rewarm_steps)
            up = self.final_ratio + (1.0 - self.final_ratio) * since / self.rewarm_steps
            ratio = np.where(rewarm, up, ratio)
        return self.peak_lr * ratio


@dataclass(frozen=True, kw_only=True)
class Logged(Schedule):
    """An arbitrary LR per step: ``values[s]`` at step s, the last value after the array ends.

    Build it with ``Logged.from_array(lrs)`` (peak = max, total_steps = len).
    """

    kind: ClassVar[str] = "logged"
    values: tuple[float, ...] = ()

    @classmethod
    def from_array(cls, lrs: ArrayLike, **fields: object) -> Logged:
        """A Logged schedule holding ``lrs`` (peak_lr = max, total_steps = len unless given)."""
        values = tuple(float(v) for v in np.asarray(lrs, dtype=np.float64).ravel())
        check(len(values) > 0, "needs at least one value", "values", values)
        peak = fields.pop("peak_lr", max(values))
        total = fields.pop("total_steps", len(values))
        return cls(peak_lr=peak, total_steps=total, values=values, **fields)  # type: ignore[arg-type]

    def _validate(self) -> None:
        check(len(self.values) > 0, "needs at least one value", "values", self.values)
        check(min(self.values) >= 0, "LR values must be >= 0", "values", min(self.values))

    def _main(self, steps: np.ndarray) -> np.ndarray:
        arr = np.asarray(self.values, dtype=np.float64)
        idx = np.minimum(np.floor(steps).astype(np.int64), len(arr) - 1)
        return arr[idx]
