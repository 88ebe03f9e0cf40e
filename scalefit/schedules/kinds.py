"""Single-phase schedule kinds: constant, cosine, linear, WSD, inverse-sqrt.

All ratios (``final_ratio``) are fractions of ``peak_lr``. Every kind starts its main phase at
``warmup_steps`` with LR ``peak_lr``; cosine, linear and WSD hold their final value for steps >=
``total_steps``, inverse-sqrt keeps decaying (it has no end).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from scalefit.schedules.base import Schedule, check

__all__ = [
    "Constant",
    "Cosine",
    "Linear",
    "WSD",
    "InverseSqrt",
    "DECAY_SHAPES",
    "decay_shape",
    "decay_length",
]

DECAY_SHAPES = ("linear", "cosine", "1-sqrt", "exp")


def decay_shape(p: np.ndarray, shape: str, final: float) -> np.ndarray:
    """Ratio of peak at decay progress ``p`` in [0, 1]: 1 at p=0, ``final`` at p=1.

    linear: f + (1-f)(1-p); cosine: f + (1-f)(1+cos(pi p))/2; 1-sqrt: f + (1-f)(1-sqrt(p));
    exp (geometric): f**p.
    """
    p = np.clip(p, 0.0, 1.0)
    if shape == "linear":
        return final + (1.0 - final) * (1.0 - p)
    if shape == "cosine":
        return final + (1.0 - final) * 0.5 * (1.0 + np.cos(np.pi * p))
    if shape == "1-sqrt":
        return final + (1.0 - final) * (1.0 - np.sqrt(p))
    return final**p


def check_shape(shape: str, final: float) -> None:
    """Validate a decay shape and its final ratio (exp needs final > 0)."""
    check(shape in DECAY_SHAPES, f"unknown decay shape; valid: {', '.join(DECAY_SHAPES)}", "shape", shape)
    check(0 <= final <= 1, "is a ratio of peak in [0, 1]", "final_ratio", final)
    if shape == "exp":
        check(
            final > 0,
            "exponential decay needs a positive final ratio",
            "final_ratio",
            final,
            fix="e.g. final=0.1",
        )


def check_decay(sched: Schedule) -> None:
    """Validate a decay given as ``decay_fraction`` or ``decay_steps`` (not both; neither means a fraction
    of 0.2, set on the frozen schedule) with its ``shape`` and ``final_ratio`` (WSD, WSDS)."""
    check(
        sched.decay_fraction is None or sched.decay_steps is None,
        "give a decay fraction or a decay length in steps, not both",
        "decay_steps",
        sched.decay_steps,
    )
    if sched.decay_fraction is None and sched.decay_steps is None:
        object.__setattr__(sched, "decay_fraction", 0.2)
    if sched.decay_fraction is not None:
        check(0 <= sched.decay_fraction <= 1, "must lie in [0, 1]", "decay_fraction", sched.decay_fraction)
    check_shape(sched.shape, sched.final_ratio)


def decay_length(fraction: float | None, steps: int | None, span: int) -> int:
    """Decay length in steps: ``steps`` if given, else ``round(fraction * span)``."""
    if steps is not None:
        return steps
    return math.floor(fraction * span + 0.5) if fraction is not None else 0


def _progress(s: np.ndarray, start: float, length: float) -> np.ndarray:
    if length <= 0:
        return np.where(s >= start, 1.0, 0.0)
    return np.clip((s - start) / length, 0.0, 1.0)


@dataclass(frozen=True, kw_only=True)
class Constant(Schedule):
    """Constant ``peak_lr`` after warmup."""

    kind: ClassVar[str] = "constant"

    def _main(self, steps: np.ndarray) -> np.ndarray:
        return np.full(steps.shape, self.peak_lr)


@dataclass(frozen=True, kw_only=True)
class Cosine(Schedule):
    """Half-cosine from peak at ``warmup_steps`` to ``final_ratio * peak`` at ``warmup_steps + decay_steps``.

    ``decay_steps`` defaults to ``total_steps - warmup_steps`` (cosine over warmup..T); held after.
    """

    kind: ClassVar[str] = "cosine"
    final_ratio: float = 0.0
    decay_steps: int | None = None

    def _validate(self) -> None:
        check(0 <= self.final_ratio <= 1, "is a ratio of peak in [0, 1]", "final_ratio", self.final_ratio)
        if self.decay_steps is not None:
            check(self.decay_steps >= 1, "must be at least 1", "decay_steps", self.decay_steps)

    def _main(self, steps: np.ndarray) -> np.ndarray:
        length = self.decay_steps if self.decay_steps is not None else self.total_steps - self.warmup_steps
        p = _progress(steps, self.warmup_steps, length)
        return self.peak_lr * decay_shape(p, "cosine", self.final_ratio)


@dataclass(frozen=True, kw_only=True)
class Linear(Schedule):
    """Linear from peak at ``warmup_steps`` to ``final_ratio * peak`` at ``total_steps``."""

    kind: ClassVar[str] = "linear"
    final_ratio: float = 0.0

    def _validate(self) -> None:
        check(0 <= self.final_ratio <= 1, "is a ratio of peak in [0, 1]", "final_ratio", self.final_ratio)

    def _main(self, steps: np.ndarray) -> np.ndarray:
        p = _progress(steps, self.warmup_steps, self.total_steps - self.warmup_steps)
        return self.peak_lr * decay_shape(p, "linear", self.final_ratio)


@dataclass(frozen=True, kw_only=True)
class WSD(Schedule):
    """Warmup-stable-decay: peak until ``T - L``, then decay of ``shape`` to ``final_ratio`` at ``T``.

    The decay length ``L`` is ``decay_steps`` or ``round(decay_fraction * total_steps)`` (default
    fraction 0.2); at step ``T - L + k`` the progress is ``k / L``. ``L = 0`` drops to the final LR at T.
    """

    kind: ClassVar[str] = "wsd"
    exclusive: ClassVar[tuple[tuple[str, ...], ...]] = (("decay_fraction", "decay_steps"),)
    decay_fraction: float | None = None
    decay_steps: int | None = None
    shape: str = "linear"
    final_ratio: float = 0.0

    def _validate(self) -> None:
        check_decay(self)
        length = self.decay_length
        check(
            0 <= length <= self.total_steps - self.warmup_steps,
            "decay must fit between the end of warmup and total_steps",
            "decay_steps" if self.decay_steps is not None else "decay_fraction",
            length,
        )

    @property
    def decay_length(self) -> int:
        """Decay length ``L`` in steps."""
        return decay_length(self.decay_fraction, self.decay_steps, self.total_steps)

    def _main(self, steps: np.ndarray) -> np.ndarray:
        length = self.decay_length
        p = _progress(steps, self.total_steps - length, length)
        return self.peak_lr * decay_shape(p, self.shape, self.final_ratio)


@dataclass(frozen=True, kw_only=True)
class InverseSqrt(Schedule):
    """``peak * sqrt(tau / (tau + s - warmup_steps))`` after warmup; ``tau`` = timescale.

    The timescale defaults to ``max(warmup_steps, 1)``, which gives the classic ``peak * sqrt(W / s)``.
    """

    kind: ClassVar[str] = "inverse-sqrt"
    timescale: int | None = None

    def _validate(self) -> None:
        if self.timescale is not None:
            check(self.timescale >= 1, "must be at least 1", "timescale", self.timescale)

    def _main(self, steps: np.ndarray) -> np.ndarray:
        tau = self.timescale if self.timescale is not None else max(self.warmup_steps, 1)
        return self.peak_lr * np.sqrt(tau / (tau + np.maximum(steps - self.warmup_steps, 0.0)))
