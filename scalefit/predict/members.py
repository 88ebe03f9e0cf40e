"""What a forecast combines: members that fit the runs and predict the held-out or target rows.

A member has a ``name`` and ``fit(data) -> Fitted`` (raising a ``ScalefitError`` when it cannot be
fitted to, or does not apply to, the data); a ``Fitted`` gives the loss at given rows (``at``: one row
per truth row, NaN where it has no answer) and on a whole target (``frame``: the target's key columns
plus ``loss_pred``), and the warnings of its fit. ``LawMember`` wraps a law of the registry (fitted by
the engine with its defaults); empirical baselines live in ``scalefit.predict.baselines``.

``PerSizeMember`` fits a member once per model size (the runs table's ``n_params``) on the runs of
that size alone and answers a row with the fit of its run's size (no answer for a size it has no fit
of): a curve law that does not know the model size, fitted to a ladder of sizes at once, would fit one
curve through several.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd

from scalefit.errors import FitError, FitWarning, ScalefitError
from scalefit.fitting.design import build_design
from scalefit.fitting.engine import fit_law
from scalefit.fitting.result import Fit
from scalefit.laws.base import Law
from scalefit.predict.folds import run_sizes
from scalefit.store.curves import Curves

__all__ = ["Fitted", "FittedLaw", "FittedPerSize", "LawMember", "Member", "PerSizeMember"]


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


def _same_size(sizes: pd.Series, size: float) -> list[str]:
    return [str(r) for r, n in sizes.items() if np.isfinite(n) and np.isclose(n, size, rtol=1e-9)]


@dataclass(frozen=True)
class FittedPerSize:
    """One fit per model size; a row is answered by the fit of its run's size."""

    fits: tuple[tuple[float, Fitted], ...]  # (n_params, the member fitted on the runs of that size)
    warnings: tuple[str, ...] = ()

    def _route(self, targets: Curves, run_ids: pd.Series) -> list[tuple[Fitted, np.ndarray]]:
        """(fit, mask of the rows whose run has its size) for every fitted size."""
        sizes = run_sizes(targets).reindex(run_ids.astype(str)).to_numpy(float)
        return [(fitted, np.isclose(sizes, n, rtol=1e-9)) for n, fitted in self.fits]

    def at(self, targets: Curves | pd.DataFrame, truth: pd.DataFrame) -> np.ndarray:
        out = np.full(len(truth), np.nan)
        if not isinstance(targets, Curves):
            return out
        for fitted, rows in self._route(targets, truth["run_id"]):
            if rows.any():
                out[rows] = fitted.at(targets, truth[rows].reset_index(drop=True))
        return out

    def frame(self, targets: Curves | pd.DataFrame) -> pd.DataFrame:
        if not isinstance(targets, Curves):
            raise FitError("a per-size member predicts curves only", field="targets")
        out = targets.frame[["run_id", "step"]].reset_index(drop=True).assign(loss_pred=np.nan)
        for fitted, rows in self._route(targets, out["run_id"]):
            ids = sorted(pd.unique(out.loc[rows, "run_id"]).tolist())
            if ids:
                pred = fitted.frame(targets.select(ids)).set_index(["run_id", "step"])["loss_pred"]
                keys = pd.MultiIndex.from_frame(out.loc[rows, ["run_id", "step"]])
                out.loc[rows, "loss_pred"] = pred.reindex(keys).to_numpy(float)
        return out


@dataclass(frozen=True)
class PerSizeMember:
    """A member fitted per model size (module doc); its name is the wrapped member's."""

    member: Member

    @property
    def name(self) -> str:
        return self.member.name

    def fit(self, data: Curves | pd.DataFrame) -> FittedPerSize:
        if not isinstance(data, Curves):
            raise FitError(f"{self.name}: a per-size fit needs curves", field="data")
        sizes = run_sizes(data)
        fits, notes, why = [], [], []
        for n in sorted(set(sizes[np.isfinite(sizes)].tolist())):
            try:
                fitted = self.member.fit(data.select(_same_size(sizes, n)))
            except ScalefitError as err:
                why.append(f"N={n:.4g}: {err}")
                continue
            fits.append((float(n), fitted))
            notes += [f"N={n:.4g}: {w}" for w in fitted.warnings]
        if not fits:
            raise FitError(
                f"{self.name}: no model size could be fitted on its own runs: {'; '.join(why) or 'no sizes'}",
                field="n_params",
                fix="give each model size the runs its law needs (e.g. a constant run and a decaying one)",
            )
        return FittedPerSize(tuple(fits), tuple(notes) + tuple(f"not fitted at {w}" for w in why))
