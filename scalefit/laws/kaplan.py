"""The per-dataset scaling law that Brandfonbrener et al. 2024, "Loss-to-Loss Prediction: Scaling Laws for
All Datasets" (arXiv:2411.12925), use for the irreducible losses E0/E1 of a loss-to-loss map, after Kaplan
et al. 2020:

    L(N, D) = [(A/N)^(alpha/beta) + B/D]^beta + E

A shifted power law ``L1 = K (L0 - E0)^kappa + E1`` (``scalefit.laws.loss_to_loss``) maps it onto another
law of the same form exactly: alpha' = kappa alpha, beta' = kappa beta, A' = A K^(1/(kappa alpha)),
B' = B K^(1/(kappa beta)), E' = E1 (``scalefit.predict.chains.translate_values``).

Conventions: N (column ``N``) is the parameter count and D (column ``D``) the training tokens, one row per
run (``scalefit.laws._static.StaticLaw``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import numpy as np
import pandas as pd

from scalefit.laws._static import StaticLaw
from scalefit.laws.base import Design, Param

__all__ = ["KaplanLaw"]


class KaplanLaw(StaticLaw):
    """``L = [(A/N)^(alpha/beta) + B/D]^beta + E``, the per-dataset form of Brandfonbrener et al."""

    name: ClassVar[str] = "kaplan"
    kind: ClassVar[str] = "static"

    def parameters(self) -> tuple[Param, ...]:
        return (
            Param("E", 0.0, 20.0, log=True, grid=(0.5, 1.0, 2.0), doc="irreducible loss"),
            Param("A", 0.0, 1e30, log=True, grid=(1e2, 1e5, 1e8, 1e11), doc="size scale (params)"),
            Param("B", 0.0, 1e30, log=True, grid=(1e2, 1e5, 1e8, 1e11), doc="data scale (tokens)"),
            Param("alpha", 1e-3, 3.0, grid=(0.1, 0.3, 0.6), doc="size exponent"),
            Param("beta", 1e-3, 3.0, grid=(0.1, 0.3, 0.6), doc="data exponent"),
        )

    def table_design(self, frame: pd.DataFrame, *, predict: bool = False) -> Design:
        n, d, labels, y = self.points(frame, predict)
        keys = pd.DataFrame({"run_id": labels, "N": n, "D": d})
        return Design(x={"log_n": np.log(n), "log_d": np.log(d)}, y=y, groups=labels, keys=keys)

    @staticmethod
    def _parts(theta: np.ndarray, x: Mapping[str, np.ndarray]) -> tuple[np.ndarray, ...]:
        E, A, B, alpha, beta = (theta[..., j, None] for j in range(5))
        lnr = np.log(A) - x["log_n"]
        u = np.exp(alpha / beta * lnr)
        s = u + B * np.exp(-x["log_d"])
        return E, alpha, beta, lnr, u, s

    def predict(self, theta: np.ndarray, design: Design) -> np.ndarray:
        E, _, beta, _, _, s = self._parts(np.asarray(theta, dtype=float), design.x)
        return s**beta + E

    def jacobian_many(self, thetas: np.ndarray, design: Design) -> np.ndarray:
        thetas = np.atleast_2d(np.asarray(thetas, dtype=float))
        _, alpha, beta, lnr, u, s = self._parts(thetas, design.x)
        sb1 = s ** (beta - 1)
        cols = [
            np.ones_like(s),
            sb1 * alpha * u / thetas[:, 1, None],
            beta * sb1 * np.exp(-design.x["log_d"]),
            sb1 * u * lnr,
            s**beta * np.log(s) - sb1 * u * lnr * alpha / beta,
        ]
        return np.stack(cols, axis=-1)
