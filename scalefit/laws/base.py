"""The contract every scaling law implements, and the containers it exchanges with the fitting engine.

A law holds *structure* only: its functional form and structural options (``config()``). It never reads
``Curves`` or files: it declares the inputs it needs (``features()``: a ``CurveFeatures`` or a
``TableFeatures``), and the fitting side (``scalefit.fitting.design.build_design``) turns the data into
those inputs: per-run arrays (``CurveRun``) for a curve law, which the law maps to its design arrays in
``curve_x``; the table with the declared columns for a static or map law (``table_design``). The engine
(``scalefit.fitting.engine.fit_law``) then minimises a loss over the parameters declared by
``parameters()``, using ``predict`` and its analytic ``jacobian``.

Adding a law is one file: a subclass of ``Law`` (or ``CurveLaw``/``BatchedLaw``) with a ``name`` and a
``kind`` registers itself (``__init_subclass__``) in ``REGISTRY``, which ``get_law`` reads.

Conventions:
- ``theta`` is a 1-D float array in the order of ``parameters()``, in natural units (not log space;
  the engine does the log reparametrization of ``Param.log`` parameters itself).
- ``predict`` returns the predicted loss (natural units, > 0) at every design point, shape (n_points,).
- ``jacobian`` returns d predict / d theta, shape (n_points, n_params).
- ``Param.grid`` values are natural-unit start values; the engine takes their Cartesian product.
"""

from __future__ import annotations

import abc
import difflib
import inspect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from scalefit.errors import ConfigError

__all__ = [
    "KINDS",
    "REGISTRY",
    "CurveFeatures",
    "CurveLaw",
    "CurveRun",
    "Design",
    "Law",
    "Param",
    "TableFeatures",
    "TableLaw",
    "check_options",
    "get_law",
    "law_class",
    "law_options",
    "numeric_jacobian",
]

KINDS = ("curve", "static", "map")


@dataclass(frozen=True)
class Param:
    """One named, bounded parameter (lmfit style).

    ``log=True`` means the parameter is positive and optimized as log(value); its bounds must then be
    > 0 (use ``lower=0`` for "positive, unbounded below": the engine maps it to -inf in log space).
    ``grid`` holds the start values of the multi-start search (values outside the bounds are clipped to
    them); ``init`` is used when the grid is empty.
    """

    name: str
    lower: float = -math.inf
    upper: float = math.inf
    log: bool = False
    grid: tuple[float, ...] = ()
    init: float | None = None
    doc: str = ""

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ConfigError("parameter name must be an identifier", field="name", value=self.name)
        if not self.lower < self.upper:
            raise ConfigError(
                "parameter lower bound must be below its upper bound",
                field=self.name,
                value=(self.lower, self.upper),
                fix="give lower < upper",
            )
        if self.log and self.lower < 0:
            raise ConfigError(
                "a log-parametrized parameter must have lower >= 0",
                field=self.name,
                value=self.lower,
                fix="set lower=0 or log=False",
            )
        object.__setattr__(self, "grid", tuple(float(g) for g in self.grid))

    def starts(self) -> tuple[float, ...]:
        """The start values: the grid, else ``init``, else a default inside the bounds."""
        if self.grid:
            return self.grid
        if self.init is not None:
            return (float(self.init),)
        lo, hi = self.lower, self.upper
        if self.log:
            lo = max(lo, 1e-12)
            if math.isfinite(hi):
                return (math.sqrt(lo * hi) if lo > 1e-12 else min(1.0, hi / 2),)
            return (max(1.0, lo * 10),)
        if math.isfinite(lo) and math.isfinite(hi):
            return ((lo + hi) / 2,)
        if math.isfinite(lo):
            return (lo + 1.0,)
        if math.isfinite(hi):
            return (hi - 1.0,)
        return (0.0,)


@dataclass(frozen=True)
class Design:
    """The arrays a law needs at a set of points, plus what the engine needs around them.

    - ``x``: named arrays (per point, or any structure the law understands: e.g. per-run LR sums).
    - ``y``: observed loss per point (None when built for prediction only). Non-finite values are
      excluded by the engine and listed by run in the Fit's diagnostics.
    - ``groups``: the resampling unit per point (run id for curve laws, point id for static laws).
    - ``keys``: identifying columns per point, carried into ``Fit.predict`` output (run_id, step, ...).
    - ``weights``: optional per-point weights (default 1).
    - ``excluded``: rows the law itself left out, as (run_id, reason) pairs, reported in diagnostics.
    """

    x: Mapping[str, Any]  # arrays, or a law's own per-point structures (e.g. the MPL drop-sum terms)
    y: np.ndarray | None
    groups: np.ndarray
    keys: pd.DataFrame | None = None
    weights: np.ndarray | None = None
    excluded: tuple[tuple[str, str], ...] = ()
    meta: Mapping[str, Any] = field(default_factory=dict)  # JSON-able facts about the points (per run)

    def __post_init__(self) -> None:
        groups = np.asarray(self.groups).astype(str)
        object.__setattr__(self, "groups", groups)
        n = groups.shape[0]
        if self.y is not None:
            y = np.asarray(self.y, dtype=float)
            if y.shape != (n,):
                raise ConfigError("design y and groups differ in length", field="y", value=(y.shape, n))
            object.__setattr__(self, "y", y)
        if self.weights is not None:
            w = np.asarray(self.weights, dtype=float)
            if w.shape != (n,) or np.any(w < 0) or not np.all(np.isfinite(w)):
                raise ConfigError(
                    "weights must be finite, >= 0, one per point", field="weights", value=w.shape
                )
            object.__setattr__(self, "weights", w)
        if self.keys is not None and len(self.keys) != n:
            raise ConfigError("design keys and groups differ in length", field="keys", value=len(self.keys))

    @property
    def n_points(self) -> int:
        return int(self.groups.shape[0])


@dataclass(frozen=True)
class CurveFeatures:
    """What a curve law reads from each run: the per-step LR, the logged steps and losses, run meta.

    - ``shift``: the loss at logged step ``s`` is evaluated after update ``s`` (``S1 = P[s + shift]``;
      the LR sequence then runs ``shift`` steps past the last logged step).
    - ``meta``: (key, description) of run-meta numbers the law needs, finite and > 0, for every run.
    - ``needs_drop``: fitting needs an LR decrease somewhere (the law has an LR-drop term).
    """

    shift: int = 0
    meta: tuple[tuple[str, str], ...] = ()
    needs_drop: bool = True


@dataclass(frozen=True)
class TableFeatures:
    """What a static or map law reads: a table (one row per run) with these columns.

    ``columns`` are needed to fit and to predict; ``target`` (the observed column) only to fit.
    """

    columns: tuple[str, ...] = ()
    target: tuple[str, ...] = ()


@dataclass(frozen=True)
class CurveRun:
    """One run prepared for a curve law by the fitting side.

    ``lr[k]`` is the LR of update ``k`` (0-indexed) up to the last kept step plus ``CurveFeatures.shift``;
    ``steps``/``loss`` are the kept logged steps (those with LR area) and their losses; ``offset`` is the
    index of the run's first point in the stacked design.
    """

    run_id: str
    lr: np.ndarray
    warmup: int
    steps: np.ndarray
    loss: np.ndarray
    meta: Mapping[str, object]
    offset: int = 0


REGISTRY: dict[str, type[Law]] = {}


class Law(abc.ABC):
    """A scaling law: structure only. Subclasses declare ``name``, ``kind``, ``parameters``, ``features``,
    the hook that builds their design from those features, ``predict``, ``jacobian`` and ``config``."""

    name: ClassVar[str]
    # What the law maps: "curve" (a loss curve from the LR schedule, per step), "static" (one loss per
    # run from its size, tokens or compute) or "map" (one loss or error from another loss). Callers
    # dispatch on it instead of on law names.
    kind: ClassVar[str]

    def __init_subclass__(cls, *, register: bool = True, **kwargs: Any) -> None:
        """Validate a law class and register it under its ``name`` (``register=False``: validate only,
        e.g. for a law defined in a test)."""
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:
            return  # a shared base (BatchedLaw, StaticLaw, CurveLaw), not a law
        kind = getattr(cls, "kind", None)
        if kind not in KINDS:
            raise ConfigError(
                f"law class {cls.__qualname__} has no valid kind",
                field="kind",
                value=kind,
                fix=f"set kind: ClassVar[str] to one of {', '.join(KINDS)}",
            )
        if not isinstance(cls.name, str) or not cls.name:
            raise ConfigError("a law's name must be a non-empty string", field="name", value=cls.name)
        if not register:
            return
        known = REGISTRY.get(cls.name)
        if known is not None and (known.__module__, known.__qualname__) != (cls.__module__, cls.__qualname__):
            raise ConfigError(
                f"law name {cls.name!r} is already registered by {known.__module__}.{known.__qualname__}",
                field="name",
                value=cls.name,
                fix="give the new law another name",
            )
        REGISTRY[cls.name] = cls

    @abc.abstractmethod
    def parameters(self) -> tuple[Param, ...]:
        """The parameters, in the order of ``theta``."""

    @abc.abstractmethod
    def features(self) -> CurveFeatures | TableFeatures:
        """The inputs the law reads; the fitting side builds them from the data."""

    @abc.abstractmethod
    def predict(self, theta: np.ndarray, design: Design) -> np.ndarray:
        """Predicted loss at the design points, shape (n_points,)."""

    def jacobian(self, theta: np.ndarray, design: Design) -> np.ndarray:
        """d predict / d theta, shape (n_points, n_params). Override with the analytic form.

        The default is a central finite difference (accurate to ~1e-7 relative), for prototyping only.
        """
        return numeric_jacobian(self, theta, design)

    def predict_and_jacobian(self, theta: np.ndarray, design: Design) -> tuple[np.ndarray, np.ndarray]:
        """(predict, jacobian) at one ``theta``; override when the two share work."""
        return self.predict(theta, design), self.jacobian(theta, design)

    def predict_many(self, thetas: np.ndarray, design: Design) -> np.ndarray:
        """Predictions for many parameter vectors, shape (n_thetas, n_points). Override to vectorize."""
        thetas = np.atleast_2d(np.asarray(thetas, dtype=float))
        return np.stack([self.predict(t, design) for t in thetas]) if len(thetas) else np.empty((0, 0))

    def jacobian_many(self, thetas: np.ndarray, design: Design) -> np.ndarray:
        """Jacobians for many parameter vectors, shape (n_thetas, n_points, n_params). Override to
        vectorize (the batched bootstrap solver uses it)."""
        thetas = np.atleast_2d(np.asarray(thetas, dtype=float))
        return np.stack([self.jacobian(t, design) for t in thetas])

    def predict_and_jacobian_many(self, thetas: np.ndarray, design: Design) -> tuple[np.ndarray, np.ndarray]:
        """(``predict_many``, ``jacobian_many``) at many vectors, shapes (B, n) and (B, n, p); the batched
        solvers call this. Override when the two share work (e.g. loop ``predict_and_jacobian``)."""
        return self.predict_many(thetas, design), self.jacobian_many(thetas, design)

    def check_fit(self, design: Design) -> None:  # noqa: B027 (an optional hook: no check by default)
        """Raise ``FitError`` when a design built for fitting cannot identify the law (default: no check
        beyond the engine's own)."""

    def config(self) -> dict[str, Any]:
        """Structural options, JSON-able; ``type(self)(**self.config())`` rebuilds the law."""
        return {}

    def profile(self) -> dict[str, list]:
        """Structural options chosen by profile likelihood: option -> candidate values (default none).

        The engine fits every combination and keeps the lowest objective.
        """
        return {}

    def replace(self, **changes: Any) -> Law:
        """A copy of the law with some structural options changed."""
        return type(self)(**{**self.config(), **changes})

    def floor(self, values: Mapping[str, float]) -> float | None:
        """The irreducible loss implied by ``values`` (e.g. E or L0), or None if the law has none.

        The engine warns when the fitted floor lies above the lowest observed loss.
        """
        for key in ("E", "L0"):
            if key in values:
                return float(values[key])
        return None

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parameters())

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({opts})"


class CurveLaw(Law):
    """A law of the loss curve: it maps the prepared runs to its design arrays (besides ``S1``, which the
    fitting side adds: the LR area ``P[s + shift]`` at every kept step)."""

    def features(self) -> CurveFeatures:
        return CurveFeatures()

    @abc.abstractmethod
    def curve_x(self, runs: Sequence[CurveRun]) -> dict[str, Any]:
        """The law's design arrays over the stacked points of ``runs`` (in order; see ``CurveRun``)."""


class TableLaw(Law):
    """A law of a table (one row per run): static laws and maps. The fitting side checks the declared
    columns (``TableFeatures``) and hands the table over."""

    @abc.abstractmethod
    def features(self) -> TableFeatures:
        """The columns the law reads."""

    @abc.abstractmethod
    def table_design(self, frame: pd.DataFrame, *, predict: bool = False) -> Design:
        """The design from ``frame`` (it has the declared columns; the target ones unless ``predict``)."""


def law_options(cls: type[Law]) -> tuple[str, ...] | None:
    """The structural options ``cls`` accepts (its constructor's keywords); None if it takes ``**kwargs``."""
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return tuple(p.name for p in params if p.kind is not inspect.Parameter.VAR_POSITIONAL)


def check_options(cls: type[Law], given: Sequence[str], *, also: Sequence[str] = ()) -> None:
    """``ConfigError`` naming the first option in ``given`` that ``cls`` (or ``also``) does not accept."""
    valid = law_options(cls)
    if valid is None:
        return
    for option in given:
        if option not in valid and option not in also:
            names = sorted({*valid, *also})
            close = difflib.get_close_matches(option, names, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(
                f"unknown option {option!r} for law {cls.name!r}",
                field=option,
                value=option,
                fix=f"{hint}valid options: {', '.join(names) or '(none)'}",
            )


def law_class(name: str) -> type[Law]:
    """The class registered under ``name``."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ConfigError(
            "unknown law",
            field="law",
            value=name,
            fix=f"use one of {', '.join(sorted(REGISTRY))}",
        ) from None


def get_law(name: str, **config: Any) -> Law:
    """Build the law registered under ``name`` with its structural options (``ConfigError`` naming a
    misspelt option)."""
    cls = law_class(name)
    check_options(cls, list(config))
    return cls(**config)


def numeric_jacobian(law: Law, theta: Sequence[float], design: Design, rel: float = 1e-6) -> np.ndarray:
    """Central finite-difference d predict / d theta; use it to test an analytic ``jacobian``."""
    theta = np.asarray(theta, dtype=float)
    cols = []
    for j in range(theta.size):
        h = rel * max(abs(theta[j]), 1e-3)
        up, down = theta.copy(), theta.copy()
        up[j] += h
        down[j] -= h
        cols.append((law.predict(up, design) - law.predict(down, design)) / (2 * h))
    return np.stack(cols, axis=1)
