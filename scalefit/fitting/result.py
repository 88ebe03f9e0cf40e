"""``Fit``: the immutable, JSON round-trippable result of fitting a law (lmfit-style result object).

Mappings are read-only (``MappingProxyType``), sequences are tuples and arrays are read-only numpy
arrays. ``to_json``/``from_json`` round-trip exactly (floats are written with ``repr`` precision;
non-finite floats as the strings "NaN", "Infinity", "-Infinity"), so a reloaded Fit predicts identical
numbers. The law is rebuilt from the registry (``scalefit.laws.get_law(law, **law_config)``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any

import lmfit
import numpy as np
import pandas as pd

from scalefit.errors import ConfigError, SchemaError
from scalefit.fitting.bootstrap import prediction_band
from scalefit.fitting.design import build_design
from scalefit.laws import get_law
from scalefit.laws.base import Law
from scalefit.store.curves import Curves

__all__ = ["Fit", "freeze", "thaw"]

_NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
_FORMAT = "scalefit.Fit/1"
_FIX = "refit, or restore the file Fit.to_json wrote"
_MAPPINGS = ("law_config", "values", "stderr", "ci", "bounds", "diagnostics", "data_summary")
_MAPPINGS += ("provenance", "options")


def freeze(obj: Any) -> Any:
    """A deeply read-only copy: dict -> MappingProxyType, list -> tuple, ndarray -> read-only copy."""
    if isinstance(obj, Mapping):
        return MappingProxyType({str(k): freeze(v) for k, v in obj.items()})
    if isinstance(obj, (list, tuple)):
        return tuple(freeze(v) for v in obj)
    if isinstance(obj, np.ndarray):
        arr = np.array(obj, dtype=float, copy=True)
        arr.flags.writeable = False
        return arr
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def thaw(obj: Any) -> Any:
    """The JSON-able form of a frozen value (non-finite floats become strings)."""
    if isinstance(obj, Mapping):
        return {k: thaw(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [thaw(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return thaw(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return "NaN" if obj != obj else ("Infinity" if obj > 0 else "-Infinity")
    if isinstance(obj, np.generic):
        return thaw(obj.item())
    return obj


def _decode(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _decode(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(v) for v in obj]
    if isinstance(obj, str) and obj in _NONFINITE:
        return _NONFINITE[obj]
    return obj


def _bad(message: str, key: str, value: Any = None) -> SchemaError:
    return SchemaError(f"invalid Fit: {message}", field=key, value=value, fix=_FIX)


def _number(value: Any, key: str, *, finite: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad("not a number", key, value)
    if finite and not math.isfinite(value):
        raise _bad("not a finite number", key, value)
    return float(value)


def _matrix(value: Any, key: str, shape: tuple[int | None, int]) -> np.ndarray | None:
    if value is None:
        return None
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError) as exc:
        raise _bad("not a numeric matrix", key, type(value).__name__) from exc
    rows, cols = shape
    if arr.ndim != 2 or arr.shape[1] != cols or (rows is not None and arr.shape[0] != rows):
        raise _bad(f"matrix of shape {arr.shape}, want ({rows or 'k'}, {cols})", key, arr.shape)
    if np.isinf(arr).any():
        raise _bad("infinite entries", key)
    return arr


def _validated(d: dict[str, Any]) -> dict[str, Any]:
    """``d`` (Fit fields from JSON) checked against the registered law: law and options, parameter
    names, bounds (the law's own), finite values inside them, stderr >= 0, ordered CIs, matrix shapes.
    A value outside the law's bounds (``alpha = -5``) would predict nonsense: it is refused here."""
    for key in _MAPPINGS:
        if not isinstance(d[key], Mapping):
            raise _bad("not a JSON object", key, type(d[key]).__name__)
    if not isinstance(d["law"], str):
        raise _bad("not a law name", "law", d["law"])
    try:
        law = get_law(d["law"], **d["law_config"])
    except (ConfigError, TypeError, ValueError) as exc:
        raise _bad(f"law cannot be built ({exc})", "law_config", d["law_config"]) from exc
    params = law.parameters()
    want = [p.name for p in params]
    names = d["param_names"]
    if not isinstance(names, list | tuple) or list(names) != want:
        raise _bad(f"parameter names differ from the law's {want}", "param_names", names)
    d["param_names"] = tuple(names)
    for key in ("values", "stderr", "ci", "bounds"):
        if set(d[key]) != set(want):
            raise _bad(f"keys differ from the parameters {want}", key, sorted(d[key]))
    bounds, ci = {}, {}
    for p in params:
        pair = d["bounds"][p.name]
        if not isinstance(pair, list | tuple) or len(pair) != 2:
            raise _bad("not a (lower, upper) pair", f"bounds.{p.name}", pair)
        lo, hi = (_number(v, f"bounds.{p.name}") for v in pair)
        if (lo, hi) != (p.lower, p.upper):
            raise _bad(f"bounds differ from the law's ({p.lower}, {p.upper})", f"bounds.{p.name}", pair)
        bounds[p.name] = (lo, hi)
        value = _number(d["values"][p.name], f"values.{p.name}", finite=True)
        if not lo <= value <= hi or (p.log and value <= 0):
            raise _bad(f"outside the law's bounds [{lo}, {hi}]", f"values.{p.name}", value)
        err = _number(d["stderr"][p.name], f"stderr.{p.name}")
        if err < 0:
            raise _bad("negative standard error", f"stderr.{p.name}", err)
        pair = d["ci"][p.name]
        if not isinstance(pair, list | tuple) or len(pair) != 2:
            raise _bad("not a (lo, hi) pair", f"ci.{p.name}", pair)
        c_lo, c_hi = (_number(v, f"ci.{p.name}") for v in pair)
        if c_lo > c_hi:
            raise _bad("lower end above the upper end", f"ci.{p.name}", pair)
        ci[p.name] = (c_lo, c_hi)
    d["bounds"], d["ci"] = bounds, ci
    n = len(want)
    d["covariance"] = _matrix(d["covariance"], "covariance", (n, n))
    d["bootstrap"] = _matrix(d["bootstrap"], "bootstrap", (None, n))
    _number(d["diagnostics"].get("objective"), "diagnostics.objective")
    if not isinstance(d["diagnostics"].get("warnings", []), list | tuple):
        raise _bad("not a list", "diagnostics.warnings", d["diagnostics"].get("warnings"))
    level = d["options"].get("ci", 0.95)
    if isinstance(level, bool) or not isinstance(level, int | float) or not 0 < level < 1:
        raise _bad("not a level in (0, 1)", "options.ci", level)
    scale = d["diagnostics"].get("residual_scale", 0.0)
    if _number(scale, "diagnostics.residual_scale") < 0:
        raise _bad("negative", "diagnostics.residual_scale", scale)
    d["_law"] = law
    return d


def _array(value: Any) -> np.ndarray | None:
    return None if value is None else freeze(np.asarray(value, dtype=float))


@dataclass(frozen=True)
class Fit:
    """A fitted law. ``values``/``stderr``/``ci`` are keyed by parameter name, in natural units.

    ``covariance`` rows/columns follow ``param_names``; ``bootstrap`` holds the refitted parameter
    vectors (n_resamples, n_params) or None. ``diagnostics`` has objective, converged, n_starts,
    n_best, warnings, excluded, uncertainty method, residual_scale and the profile (if any).
    """

    law: str
    law_config: Mapping[str, Any]
    param_names: tuple[str, ...]
    values: Mapping[str, float]
    stderr: Mapping[str, float]
    ci: Mapping[str, tuple[float, float]]
    bounds: Mapping[str, tuple[float, float]]
    covariance: np.ndarray | None
    bootstrap: np.ndarray | None
    diagnostics: Mapping[str, Any]
    data_summary: Mapping[str, Any]
    provenance: Mapping[str, Any]
    options: Mapping[str, Any]
    _law: Law | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        for f in fields(self):
            if f.name in ("law", "_law"):
                continue
            value = getattr(self, f.name)
            frozen = _array(value) if f.name in ("covariance", "bootstrap") else freeze(value)
            object.__setattr__(self, f.name, frozen)

    # -- access ------------------------------------------------------------------------------------
    @property
    def theta(self) -> np.ndarray:
        """Parameter vector in law order (a fresh, writable copy)."""
        return np.array([self.values[n] for n in self.param_names], dtype=float)

    @property
    def objective(self) -> float:
        return float(self.diagnostics["objective"])

    @property
    def warnings(self) -> tuple[Mapping[str, Any], ...]:
        return tuple(self.diagnostics.get("warnings", ()))

    def get_law(self) -> Law:
        """The law object (rebuilt from the registry after a JSON round trip)."""
        if self._law is None:
            object.__setattr__(self, "_law", get_law(self.law, **thaw(self.law_config)))
        return self._law

    @property
    def params(self) -> lmfit.Parameters:
        """The parameters as ``lmfit.Parameters`` (value, bounds, stderr where defined)."""
        out = lmfit.Parameters()
        for name in self.param_names:
            lo, hi = self.bounds[name]
            out.add(name, value=self.values[name], min=lo, max=hi, vary=True)
            err = self.stderr.get(name, math.nan)
            out[name].stderr = None if not math.isfinite(err) else float(err)
        return out

    # -- prediction --------------------------------------------------------------------------------
    def predict(
        self, target: Curves | pd.DataFrame, *, ci: float | None = None, noise: bool = False
    ) -> pd.DataFrame:
        """Predicted loss at ``target`` (Curves for a curve law; a table, or Curves, for a static law).

        Returns the design's key columns (run_id, step, ... ) plus ``loss_pred``, ``lo``, ``hi``; the
        band is at level ``ci`` (default: the fit's), by the method described in
        ``scalefit.fitting.bootstrap`` (recorded in ``out.attrs["band"]``); ``noise=True`` adds the
        residual scale.
        """
        law = self.get_law()
        design = build_design(law, target, predict=True)
        theta = self.theta
        pred = np.asarray(law.predict(theta, design), dtype=float)
        level = float(self.options.get("ci", 0.95) if ci is None else ci)
        if not 0 < level < 1:
            raise ConfigError("ci must be in (0, 1)", field="ci", value=ci)
        lo, hi, method = prediction_band(
            law,
            design,
            theta,
            pred,
            boot=self.bootstrap,
            cov=self.covariance,
            ci=level,
            log_space=self.options.get("objective", "huber_log") == "huber_log",
            noise_scale=float(self.diagnostics.get("residual_scale", 0.0)) if noise else 0.0,
        )
        out = design.keys.reset_index(drop=True).copy() if design.keys is not None else pd.DataFrame()
        if "run_id" not in out.columns:
            out.insert(0, "run_id", design.groups)
        out["loss_pred"], out["lo"], out["hi"] = pred, lo, hi
        out.attrs["band"] = {"method": method, "ci": level}
        return out

    # -- serialisation -----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out = {f.name: thaw(getattr(self, f.name)) for f in fields(self) if f.name != "_law"}
        out["format"] = _FORMAT
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Fit:
        """The Fit of ``to_dict``'s output, validated (`_validated`): a tampered or truncated dict is a
        `SchemaError` naming the field."""
        if not isinstance(d, Mapping):
            raise SchemaError("a Fit must be a JSON object", value=type(d).__name__, fix=_FIX)
        d = _decode(dict(d))
        fmt = d.pop("format", _FORMAT)
        if fmt != _FORMAT:
            raise SchemaError("not a scalefit Fit", field="format", value=fmt, fix=f"give format {_FORMAT}")
        names = {f.name for f in fields(cls)} - {"_law"}
        missing, extra = names - set(d), set(d) - names
        if missing or extra:
            which = sorted(missing) or sorted(extra)
            what = "lacks fields" if missing else "has unknown fields"
            raise SchemaError(f"Fit {what}", field=",".join(which), fix=_FIX)
        return cls(**_validated({k: d[k] for k in names}))

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> Fit:
        try:
            d = json.loads(text)
        except (TypeError, ValueError) as exc:
            raise SchemaError(f"a Fit must be JSON ({exc})", fix=_FIX) from exc
        return cls.from_dict(d)

    def summary(self) -> str:
        """One line per parameter: value, stderr and CI."""
        lines = [f"{self.law} fit: objective {self.objective:.6g}, n_best {self.diagnostics.get('n_best')}"]
        for n in self.param_names:
            lo, hi = self.ci.get(n, (math.nan, math.nan))
            lines.append(
                f"  {n:>10s} = {self.values[n]:.6g} +- {self.stderr.get(n, math.nan):.3g}"
                f"  [{lo:.6g}, {hi:.6g}]"
            )
        lines.extend(f"  warning: {w['message'] if isinstance(w, Mapping) else w}" for w in self.warnings)
        return "\n".join(lines)
