"""Over-training law of Gadre et al. 2024, "Language models scale reliably with over-training and on
downstream tasks" (arXiv:2403.08540):

    L(C, M) = E + (a * M^eta + b * M^-eta) * C^-eta,     M = D / N (tokens per parameter),  C = 6 N D

It is Chinchilla ``E + A/N^alpha + B/D^beta`` with tied exponents alpha = beta = 2 eta
(a = A 6^eta, b = B 6^eta). Over-training (larger M at fixed C) moves along a curve of constant shape
in log C, so a few small runs at two multipliers predict a large over-trained run.

Conventions: N and D columns are the run's parameter count and training tokens (``counting`` records how
N was counted); C = 6 N D under ``flops="6N"``, else C = D * the ``flops_per_token`` column. Gadre et al.
fit by plain least squares on the raw loss (``scipy.optimize.curve_fit``) from a 4x4x2x4 start grid and
keep the best RMSE: ``fit_law(law, data, objective="lsq", starts="all")`` does the same; the default
engine objective (Huber on log loss) is the robust alternative.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import numpy as np
import pandas as pd

from scalefit.laws._static import StaticLaw
from scalefit.laws.base import Design, Param, TableFeatures

__all__ = ["OvertrainingLaw"]


class OvertrainingLaw(StaticLaw):
    """``L = E + (a M^eta + b M^-eta) C^-eta``; parameters E, a, b, eta."""

    name: ClassVar[str] = "overtraining"
    kind: ClassVar[str] = "static"

    def parameters(self) -> tuple[Param, ...]:
        return (
            Param("E", 0.0, 20.0, log=True, grid=(0.5, 1.0, 2.0, 3.0), doc="irreducible loss (nats)"),
            Param("a", 0.0, 1e12, log=True, grid=(1e1, 1e2, 1e3, 1e4), doc="size term, A 6^eta"),
            Param("b", 0.0, 1e12, log=True, grid=(1e1, 1e2, 1e3, 1e4), doc="data term, B 6^eta"),
            Param("eta", 1e-3, 2.0, grid=(0.1, 0.3), doc="compute exponent (alpha = beta = 2 eta)"),
        )

    def features(self) -> TableFeatures:
        """N, D (and flops_per_token unless FLOPs are counted as 6N) to predict; the loss to fit."""
        extra = () if self.counting.flops == "6N" else ("flops_per_token",)
        return TableFeatures(columns=(self.n, self.d, *extra), target=(self.loss,))

    def table_design(self, frame: pd.DataFrame, *, predict: bool = False) -> Design:
        n, d, labels, y = self.points(frame, predict)
        self.check_positive(n, d)
        fpt = 6.0 * n if self.counting.flops == "6N" else frame["flops_per_token"].to_numpy(float)
        c, m = fpt * d, d / n
        keys = pd.DataFrame({"run_id": labels, "N": n, "D": d, "C": c, "M": m})
        return Design(x={"log_c": np.log(c), "log_m": np.log(m)}, y=y, groups=labels, keys=keys)

    @staticmethod
    def _terms(theta: np.ndarray, x: Mapping[str, np.ndarray]) -> tuple[np.ndarray, ...]:
        """(size term, data term) in broadcastable form; theta (..., 4)."""
        E, a, b, eta = (theta[..., j, None] for j in range(4))
        log_c, log_m = x["log_c"], x["log_m"]
        up = a * np.exp(eta * (log_m - log_c))
        down = b * np.exp(-eta * (log_m + log_c))
        return E, up, down

    def predict(self, theta: np.ndarray, design: Design) -> np.ndarray:
        E, up, down = self._terms(np.asarray(theta, dtype=float), design.x)
        return E + up + down

    def jacobian_many(self, thetas: np.ndarray, design: Design) -> np.ndarray:
        thetas = np.atleast_2d(np.asarray(thetas, dtype=float))
        _, up, down = self._terms(thetas, design.x)
        log_c, log_m = design.x["log_c"], design.x["log_m"]
        cols = [
            np.ones_like(up),
            up / thetas[:, 1, None],
            down / thetas[:, 2, None],
            up * (log_m - log_c) - down * (log_m + log_c),
        ]
        return np.stack(cols, axis=-1)

    @staticmethod
    def chinchilla_values(values: Mapping[str, float]) -> dict[str, float]:
        """The equivalent Chinchilla parameters: A = a 6^-eta, B = b 6^-eta, alpha = beta = 2 eta."""
        eta = values["eta"]
        scale = 6.0**-eta
        return {
            "E": values["E"],
            "A": values["a"] * scale,
            "B": values["b"] * scale,
            "alpha": 2 * eta,
            "beta": 2 * eta,
        }
