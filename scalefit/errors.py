"""The exceptions scalefit raises, and the warnings it attaches to fits.

Every exception carries the data needed to act on it: the file, run, column, field or value that is
wrong, and where one is known, the fix. ``str(err)`` renders all of it on one line, so a CLI can print
it as is.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ScalefitError",
    "DataError",
    "SchemaError",
    "ScheduleError",
    "ConfigError",
    "FitError",
    "FitWarning",
    "ExtrapolationWarning",
]


class ScalefitError(Exception):
    """Base class: a message plus the context that locates the problem."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        run_id: str | None = None,
        column: str | None = None,
        field: str | None = None,
        value: Any = None,
        fix: str | None = None,
    ) -> None:
        self.message = message
        self.file = None if file is None else str(file)
        self.run_id = run_id
        self.column = column
        self.field = field
        self.value = value
        self.fix = fix
        super().__init__(self._render())

    def _render(self) -> str:
        where = [
            f"{key}={val!r}"
            for key, val in (
                ("file", self.file),
                ("run", self.run_id),
                ("column", self.column),
                ("field", self.field),
            )
            if val is not None
        ]
        text = self.message
        if where:
            text = f"{text} [{', '.join(where)}]"
        if self.value is not None:
            text = f"{text}; got {self.value!r}"
        if self.fix:
            text = f"{text}. Fix: {self.fix}"
        return text

    def context(self) -> dict[str, Any]:
        """The structured context, e.g. for a JSON error report."""
        return {
            "type": type(self).__name__,
            "message": self.message,
            "file": self.file,
            "run_id": self.run_id,
            "column": self.column,
            "field": self.field,
            "value": None if self.value is None else repr(self.value),
            "fix": self.fix,
        }


class DataError(ScalefitError, ValueError):
    """Input data (curves, logs, Parquet files) that cannot be used as given."""


class SchemaError(DataError):
    """A table whose columns, dtypes or schema version do not match what scalefit expects."""


class ScheduleError(ScalefitError, ValueError):
    """An LR schedule that is malformed, unknown, or disagrees with a logged LR."""


class ConfigError(ScalefitError, ValueError):
    """A configuration field (model, run, sweep, fit options) with an invalid value."""


class FitError(ScalefitError, RuntimeError):
    """A fit that cannot be made from the given data (too few points, no LR drop, all-NaN ...)."""


class FitWarning(UserWarning):
    """A fit was made but something about it deserves attention (parameter at a bound, ...)."""


class ExtrapolationWarning(UserWarning):
    """A prediction lies outside the range the fit was made on."""
