"""The `Schedule` base class: common fields, warmup, validation, serialization.

Step convention: steps are 0-indexed optimizer updates and ``schedule(s)`` is the LR used for update
``s``. A warmup of ``warmup_steps`` steps ramps from ``warmup_start * peak_lr`` at step 0 to ``peak_lr``
at step ``warmup_steps`` (linear by default; ``warmup_shape="cosine"`` gives the half-cosine ramp of
torch's OneCycleLR). From step ``warmup_steps`` on, each kind defines the LR in ``_main``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import KW_ONLY, dataclass
from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike

from scalefit.errors import ScheduleError

__all__ = ["Schedule", "KINDS", "ALIASES", "WARMUP_SHAPES", "kind_names"]

KINDS: dict[str, type[Schedule]] = {}

# Short keys of the string form -> field names. Full field names are accepted everywhere too.
ALIASES: dict[str, str] = {
    "peak": "peak_lr",
    "steps": "total_steps",
    "warmup": "warmup_steps",
    "final": "final_ratio",
    "decay": "decay_fraction",
}
_SHORT = {field: key for key, field in ALIASES.items()}
WARMUP_SHAPES = ("linear", "cosine")


def kind_names() -> list[str]:
    """The registered schedule kinds, sorted."""
    return sorted(KINDS)


def _to_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ScheduleError("must be an integer", field=name, value=value)
    if not float(value).is_integer():
        raise ScheduleError("must be a whole number of steps", field=name, value=value)
    return int(value)


def _to_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ScheduleError("must be a number", field=name, value=value)
    if not math.isfinite(float(value)):
        raise ScheduleError("must be finite", field=name, value=value)
    return float(value)


def _to_str(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ScheduleError("must be a string", field=name, value=value)
    return value


def _to_floats(name: str, value: Any) -> tuple[float, ...]:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise ScheduleError("must be a sequence of numbers", field=name, value=value)
    return tuple(_to_float(name, v) for v in value)


_CONVERT = {"int": _to_int, "float": _to_float, "str": _to_str, "tuple[float, ...]": _to_floats}


def _convert(name: str, type_name: str, value: Any) -> Any:
    if type_name.endswith(" | None"):
        return None if value is None else _convert(name, type_name[: -len(" | None")], value)
    return _CONVERT[type_name](name, value)


def check(ok: bool, message: str, field: str, value: Any, fix: str | None = None) -> None:
    """Raise ScheduleError(field=...) unless ``ok``."""
    if not ok:
        raise ScheduleError(message, field=field, value=value, fix=fix)


@dataclass(frozen=True)
class Schedule:
    """Base of all schedule kinds: a frozen, validated, serializable LR-per-step function."""

    kind: ClassVar[str] = ""
    # Groups of fields of which at most one may be set; replace() clears the others.
    exclusive: ClassVar[tuple[tuple[str, ...], ...]] = ()

    peak_lr: float
    total_steps: int
    _: KW_ONLY
    warmup_steps: int = 0
    warmup_start: float = 0.0
    warmup_shape: str = "linear"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.kind:
            KINDS[cls.kind] = cls

    def __post_init__(self) -> None:
        if not self.kind:
            raise ScheduleError(
                "Schedule is the abstract base", field="kind", fix=f"use one of: {', '.join(kind_names())}"
            )
        for f in dataclasses.fields(self):
            value = _convert(f.name, str(f.type), getattr(self, f.name))
            object.__setattr__(self, f.name, value)
        check(self.peak_lr > 0, "peak LR must be positive", "peak_lr", self.peak_lr)
        check(self.total_steps >= 1, "must be at least 1", "total_steps", self.total_steps)
        check(
            0 <= self.warmup_steps <= self.total_steps,
            "warmup must lie within the run",
            "warmup_steps",
            self.warmup_steps,
            fix=f"use 0 <= warmup_steps <= total_steps ({self.total_steps})",
        )
        check(0 <= self.warmup_start <= 1, "is a ratio of peak in [0, 1]", "warmup_start", self.warmup_start)
        check(
            self.warmup_shape in WARMUP_SHAPES,
            f"unknown warmup shape; valid: {', '.join(WARMUP_SHAPES)}",
            "warmup_shape",
            self.warmup_shape,
        )
        self._validate()

    def _validate(self) -> None:
        """Kind-specific checks; raise ScheduleError naming the field."""

    def _main(self, steps: np.ndarray) -> np.ndarray:
        """LR (absolute) at ``steps`` as if there were no warmup."""
        raise NotImplementedError

    def __call__(self, steps: ArrayLike) -> np.ndarray:
        """LR used for the optimizer update at each of ``steps`` (0-indexed), as float64."""
        s = np.asarray(steps, dtype=np.float64)
        if s.size and not (np.all(np.isfinite(s)) and np.all(s >= 0)):
            raise ScheduleError(
                "steps must be finite and >= 0", field="steps", value=s[(s < 0) | ~np.isfinite(s)][:3]
            )
        lr = np.asarray(self._main(s), dtype=np.float64)
        if self.warmup_steps > 0:
            lr = np.where(s < self.warmup_steps, self._warmup(s), lr)
        return lr

    def _warmup(self, s: np.ndarray) -> np.ndarray:
        r = np.clip(s / self.warmup_steps, 0.0, 1.0)
        ramp = r if self.warmup_shape == "linear" else 0.5 * (1.0 - np.cos(np.pi * r))
        return self.peak_lr * (self.warmup_start + (1.0 - self.warmup_start) * ramp)

    def lrs(self, n: int | None = None) -> np.ndarray:
        """LR at steps ``0..n-1`` (default ``total_steps``)."""
        n = self.total_steps if n is None else _to_int("n", n)
        return self(np.arange(n))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-safe dict: ``kind`` plus every field (tuples become lists)."""
        out: dict[str, Any] = {"kind": self.kind}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    def replace(self, **changes: Any) -> Schedule:
        """A copy with fields changed (short keys such as ``peak`` or ``final`` accepted)."""
        changes = resolve_keys(type(self), changes)
        for group in self.exclusive:
            chosen = [name for name in group if name in changes and changes[name] is not None]
            for name in group:
                if chosen and name not in changes:
                    changes[name] = None
        return dataclasses.replace(self, **changes)

    def __str__(self) -> str:
        parts = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            required = f.default is dataclasses.MISSING
            if value is None or (not required and value == f.default):
                continue
            parts.append(f"{_SHORT.get(f.name, f.name)}={_format(value)}")
        return f"{self.kind}:{','.join(parts)}"


def _format(value: Any) -> str:
    if isinstance(value, tuple):
        return "/".join(_format(v) for v in value)
    return repr(value) if isinstance(value, float) else str(value)


def resolve_keys(cls: type[Schedule], values: dict[str, Any]) -> dict[str, Any]:
    """Map short keys to field names; reject unknown keys, listing the valid ones."""
    names = [f.name for f in dataclasses.fields(cls)]
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = ALIASES.get(key, key)
        if name not in names:
            valid = sorted(set(names) | {k for k, v in ALIASES.items() if v in names})
            raise ScheduleError(
                f"unknown key for schedule kind {cls.kind!r}",
                field=key,
                value=value,
                fix=f"valid keys: {', '.join(valid)}",
            )
        out[name] = value
    return out
