"""Shared plumbing of the static laws: laws fitted to one point per run (a table of final losses against
model size N and training tokens D), not to whole curves.

- `BatchedLaw`: a table law (``scalefit.laws.base.TableLaw``) whose ``predict`` broadcasts over the
  leading axes of ``theta`` (shape (..., n_params)) and whose ``jacobian_many`` is the vectorized
  Jacobian; it supplies ``predict_many`` and ``jacobian``.
- `StaticLaw`: a `BatchedLaw` with the column names of the loss, N and D (``loss``/``n``/``d``, default
  ``loss``, ``N``, ``D``), the ``counting`` convention of N and the FLOPs (`scalefit.conventions.Counting`)
  and the ``config()`` that rebuilds it. A subclass with more structural options lists them, in the
  order of its ``config()``, in ``options``; ``counting`` always comes last.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pandas as pd

from scalefit.conventions import Counting, run_labels
from scalefit.errors import DataError
from scalefit.laws.base import Design, TableFeatures, TableLaw

__all__ = ["BatchedLaw", "StaticLaw"]


class BatchedLaw(TableLaw):
    """``predict_many`` from a broadcasting ``predict``, ``jacobian`` from ``jacobian_many``."""

    def predict_many(self, thetas: np.ndarray, design: Design) -> np.ndarray:
        return self.predict(np.atleast_2d(np.asarray(thetas, dtype=float)), design)

    def jacobian(self, theta: np.ndarray, design: Design) -> np.ndarray:
        return self.jacobian_many(np.asarray(theta, dtype=float)[None, :], design)[0]


class StaticLaw(BatchedLaw):
    """A law of N (parameters), D (tokens) and the final loss, one point per run."""

    options: ClassVar[tuple[str, ...]] = ("loss", "n", "d")

    def __init__(
        self,
        *,
        loss: str = "loss",
        n: str = "N",
        d: str = "D",
        counting: Counting | dict[str, Any] | None = None,
    ) -> None:
        self.loss, self.n, self.d = loss, n, d
        self.counting = Counting.coerce(counting)

    def config(self) -> dict[str, Any]:
        """The column names, the structural options of ``options`` and ``counting`` (a JSON dict)."""
        return {**{key: getattr(self, key) for key in self.options}, "counting": self.counting.to_dict()}

    def features(self) -> TableFeatures:
        """N and D to predict, and the loss to fit."""
        return TableFeatures(columns=(self.n, self.d), target=(self.loss,))

    def points(
        self, frame: pd.DataFrame, predict: bool
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
        """N, D, the run labels and the observed loss (None when predicting) of ``frame``."""
        n, d = frame[self.n].to_numpy(float), frame[self.d].to_numpy(float)
        y = None if predict or self.loss not in frame else frame[self.loss].to_numpy(float)
        return n, d, run_labels(frame), y

    def check_positive(self, n: np.ndarray, d: np.ndarray, fix: str = "drop or fix those rows") -> None:
        """A `DataError` naming the N or D column when a size or token count is not > 0."""
        if np.any(~(n > 0)) or np.any(~(d > 0)):
            bad = self.n if np.any(~(n > 0)) else self.d
            raise DataError("sizes and token counts must be positive", column=bad, fix=fix)
