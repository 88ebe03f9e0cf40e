"""Build schedules from dicts (JSON/YAML) and from the short string form ``kind:key=value,...``."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from scalefit.errors import ScheduleError
from scalefit.schedules.base import KINDS, Schedule, kind_names, resolve_keys

__all__ = ["get_kind", "from_dict", "parse"]

_KIND_ALIASES = {"cos": "cosine", "rsqrt": "inverse-sqrt", "invsqrt": "inverse-sqrt", "step": "multistep"}


def _squash(name: str) -> str:
    return name.strip().lower().replace("-", "").replace("_", "")


def get_kind(name: str) -> type[Schedule]:
    """The Schedule class for a kind name (case, ``-`` and ``_`` are ignored: ``two_stage`` works)."""
    key = _squash(str(name))
    by_squashed = {_squash(k): k for k in KINDS}
    canonical = by_squashed.get(key) or _KIND_ALIASES.get(key)
    if canonical is None:
        raise ScheduleError(
            "unknown schedule kind", field="kind", value=name, fix=f"valid kinds: {', '.join(kind_names())}"
        )
    return KINDS[canonical]


def _build(cls: type[Schedule], values: dict[str, Any]) -> Schedule:
    missing = [
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
        and f.name not in values
    ]
    if missing:
        raise ScheduleError(
            f"schedule kind {cls.kind!r} needs {', '.join(missing)}",
            field=missing[0],
            fix=f"give {missing[0]}=... (e.g. in the string form or as a default to parse())",
        )
    return cls(**values)


def from_dict(d: Mapping[str, Any]) -> Schedule:
    """Inverse of ``Schedule.to_dict()``: ``{"kind": ..., field: value, ...}`` (short keys accepted)."""
    if not isinstance(d, Mapping) or "kind" not in d:
        raise ScheduleError(
            "a schedule dict needs a 'kind' key", field="kind", value=d, fix="e.g. {'kind': 'cosine', ...}"
        )
    values = dict(d)
    cls = get_kind(values.pop("kind"))
    return _build(cls, resolve_keys(cls, values))


def _text_value(cls: type[Schedule], name: str, text: str) -> Any:
    type_name = str({f.name: f.type for f in dataclasses.fields(cls)}[name]).removesuffix(" | None")
    if text.lower() == "none":
        return None
    try:
        if type_name == "int":
            number = float(text)
            return int(number) if number.is_integer() else number
        if type_name == "float":
            return float(text)
        if type_name.startswith("tuple"):
            return tuple(float(v) for v in text.split("/") if v)
    except ValueError:
        raise ScheduleError(f"cannot read {text!r} as {type_name}", field=name, value=text) from None
    return text


def parse(text: str, **defaults: Any) -> Schedule:
    """Parse ``"kind:key=value,..."`` (the form ``str(schedule)`` writes).

    Keys are field names or the short keys peak, steps, warmup, final, decay; sequences use ``/``
    (``milestones=0.8/0.9``). ``defaults`` fill fields missing from the text, e.g.
    ``parse("wsd:decay=0.2,shape=1-sqrt", peak=1e-3, steps=50000)``.
    """
    if not isinstance(text, str) or not text.strip():
        raise ScheduleError(
            "empty schedule string", field="kind", value=text, fix="e.g. 'cosine:peak=3e-4,steps=24000'"
        )
    kind, _, rest = text.strip().partition(":")
    cls = get_kind(kind)
    values = resolve_keys(cls, defaults)
    given: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, sep, raw = item.partition("=")
        if not sep:
            raise ScheduleError(
                "expected key=value", field=key.strip(), value=item, fix=f"write {key.strip()}=<value>"
            )
        name = next(iter(resolve_keys(cls, {key.strip(): raw})))
        if name in given:
            raise ScheduleError("key given twice", field=name, value=text)
        given[name] = _text_value(cls, name, raw.strip())
    for group in cls.exclusive:
        if any(name in given for name in group):
            for name in group:
                values.pop(name, None)
    values.update(given)
    return _build(cls, values)
