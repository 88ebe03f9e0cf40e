"""Momentum (annealing) law of Tissue et al. 2024, "Scaling Law with Learning Rate Annealing"
(arXiv:2408.11029):

    L(s) = L0 + A * S1(s)^-alpha - C * S2(s)
    S1(s) = sum_{i < s} lr[i]                       forward area
    S2(s) = sum_{i < s} m_i,  m_i = lam * m_{i-1} + (lr[i-1] - lr[i])     annealing area

Conventions:
- Step indexing: ``lr[i]`` is the LR of update ``i`` (0-indexed); the loss at step ``s`` has seen
  updates ``0..s-1`` (``scalefit.schedules``), which is the paper's sum over ``i = 1..s`` shifted by one.
- LR is used raw, not normalised by peak (the paper's S1 and S2 are plain sums of the LR in use); A and
  C therefore carry LR units, and curves with different peak LRs share one set of parameters.
- Warmup: the warmup LR is part of S1 (the paper counts every step in S1); LR increases during warmup
  are not annealing (m stays 0 there). After warmup increments are signed: re-warming makes m, and so
  the annealing term, negative.
- ``lam`` (the paper's momentum decay factor, typically 0.999) is structural: S2 is linear in C for a
  fixed ``lam``, so ``profile()`` offers a grid of ``lam`` that the engine chooses by profile likelihood
  on the training curves only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from scalefit.errors import ConfigError
from scalefit.laws._kernels import lr_increments, momentum_s2
from scalefit.laws.base import CurveLaw, CurveRun, Design, Param

__all__ = ["MomentumLaw", "LAMBDA_GRID"]

LAMBDA_GRID = (0.99, 0.995, 0.998, 0.999, 0.9995, 0.9998)
DEFAULT_LAMBDA = 0.999  # the paper's typical value; used when a design is built before lam is chosen


class MomentumLaw(CurveLaw):
    """L = L0 + A*S1^-alpha - C*S2 with the momentum-smoothed annealing area S2."""

    name: ClassVar[str] = "momentum"
    kind: ClassVar[str] = "curve"

    def __init__(self, lam: float | None = None) -> None:
        if lam is not None and not 0.0 <= lam < 1.0:
            raise ConfigError(
                "momentum decay factor must be in [0, 1)", field="lam", value=lam, fix="use e.g. 0.999"
            )
        self.lam = None if lam is None else float(lam)

    def config(self) -> dict[str, float | None]:
        return {"lam": self.lam}

    def profile(self) -> dict[str, list]:
        """``lam=None`` (the default): choose lam from LAMBDA_GRID by profile likelihood; a given lam is
        kept as is."""
        return {"lam": list(LAMBDA_GRID)} if self.lam is None else {}

    def parameters(self) -> tuple[Param, ...]:
        return (
            Param("L0", 0.0, 20.0, log=True, grid=(1.5, 2.5, 3.5), doc="irreducible loss"),
            Param("A", 0.0, 100.0, log=True, grid=(0.3, 1.0, 3.0), doc="power-law amplitude (loss)"),
            Param("alpha", 0.0, 3.0, log=True, grid=(0.2, 0.5, 1.0), doc="power-law exponent in S1"),
            Param("C", 0.0, 1e3, log=True, grid=(0.1, 1.0), doc="annealing coefficient (loss / LR step)"),
        )

    def curve_x(self, runs: Sequence[CurveRun]) -> dict[str, np.ndarray]:
        """``S2`` at every kept step (the warmup's rises are no annealing: increments zero there)."""
        lam = DEFAULT_LAMBDA if self.lam is None else self.lam
        parts = [momentum_s2(lr_increments(r.lr, r.warmup), lam)[r.steps] for r in runs]
        return {"S2": np.concatenate(parts) if parts else np.zeros(0)}

    def predict(self, theta: np.ndarray, design: Design) -> np.ndarray:
        L0, A, alpha, C = theta
        return L0 + A * design.x["S1"] ** -alpha - C * design.x["S2"]

    def predict_many(self, thetas: np.ndarray, design: Design) -> np.ndarray:
        t = np.atleast_2d(np.asarray(thetas, dtype=float))
        s1, s2 = design.x["S1"][None, :], design.x["S2"][None, :]
        return t[:, :1] + t[:, 1:2] * s1 ** -t[:, 2:3] - t[:, 3:4] * s2

    def jacobian(self, theta: np.ndarray, design: Design) -> np.ndarray:
        return self.jacobian_many(np.asarray(theta, dtype=float)[None, :], design)[0]

    def jacobian_many(self, thetas: np.ndarray, design: Design) -> np.ndarray:
        t = np.atleast_2d(np.asarray(thetas, dtype=float))
        A, alpha = t[:, 1:2], t[:, 2:3]  # (B, 1)
        s1 = design.x["S1"][None, :]
        pw = s1**-alpha  # (B, n)
        s2 = np.broadcast_to(-design.x["S2"][None, :], pw.shape)
        return np.stack([np.ones_like(pw), pw, -A * np.log(s1) * pw, s2], axis=-1)  # (B, n, 4)
