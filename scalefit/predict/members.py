"""What a forecast combines: members that fit the runs and predict the held-out or target rows.

A member has a ``name`` and ``fit(data) -> Fitted`` (raising a ``ScalefitError`` when it cannot be
fitted to, or does not apply to, the data); a ``Fitted`` gives the loss at given rows (``at``: one row
per truth row, NaN where it has no answer) and on a whole target (``frame``: the target's key columns
plus ``loss_pred``), and the warnings of its fit. ``LawMember`` wraps a law of the registry (fitted by
the engine with its defaults); empirical baselines live in ``scalefit.predict.baselines``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd

from scalefit.errors import FitWarning
from scalefit.fitting.design import build_design
from scalefit.fitting.engine import fit_law
from scalefit.fitting.result import Fit
from scalefit.laws.base import Law
from scalefit.store.curves import Curves

__all__ = ["Fitted", "FittedLaw", "LawMember", "Member"]


class Fitted(Protocol):
    """A member fitted to one training set."""

    warnings: tuple[str, ...]

    def at(self, targets: Curves | pd.DataFrame, truth: pd.DataFrame) -> np.ndarray:
        """The loss at each truth row: a held-out run's ``step`` (curves), or a held-out table row."""
        ...

    def frame(self, targets: Curves | pd.DataFrame) -> pd.DataFrame:
        """The target's key columns (run_id, step, ...) and ``loss_pred``."""
        ...


class Member(Protocol):
    """A forecast member: a law or an empirical baseline."""

    name: str

    def fit(self, data: Curves | pd.DataFrame) -> Fitted:
        """Fit to ``data``; a ``ScalefitError`` when it cannot (the forecast records why)."""
        ...


@dataclass(frozen=True)
class FittedLaw:
    """A law's ``Fit`` as a forecast member's answer."""

    fit: Fit
    warnings: tuple[str, ...] = ()

    def at(self, targets: Curves | pd.DataFrame, truth: pd.DataFrame) -> np.ndarray:
        law = self.fit.get_law()
        with np.errstate(all="ignore"):
            if isinstance(targets, Curves):
                at = dict(zip(truth["run_id"].astype(str), truth["step"].astype(int), strict=True))
                design = build_design(law, targets, predict=True, at=at)
                pred = np.asarray(law.predict(self.fit.theta, design), dtype=float)
                by_run = pd.Series(pred, index=design.keys["run_id"])
                return by_run.reindex(truth["run_id"].astype(str)).to_numpy(float)
            design = build_design(law, targets, predict=True)
            return np.asarray(law.predict(self.fit.theta, design), dtype=float)

    def frame(self, targets: Curves | pd.DataFrame) -> pd.DataFrame:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FitWarning)
            pred = self.fit.predict(targets)
        return pred.drop(columns=["lo", "hi"])


@dataclass(frozen=True)
class LawMember:
    """A law of the registry, fitted by the engine with its defaults (no progress bars)."""

    law: Law

    @property
    def name(self) -> str:
        return self.law.name

    def fit(self, data: Curves | pd.DataFrame) -> FittedLaw:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", FitWarning)
            fit = fit_law(self.law, data, progress=False)
        notes = tuple(str(w.message) for w in caught if issubclass(w.category, FitWarning))
        return FittedLaw(fit, notes)
