"""Cooldown law: a power law in the LR area plus the schedule's noise functional from the last-iterate
bound of convex SGD (scalefit's own law, built for the WSD cooldown question):

    L(t) = L0 + A * S1(t)^-alpha + B * N(t) * (2 / (1 + H[t-1]))^rho
    S1(t) = P[t] = sum_{s < t} lr[s]                                  forward area (progress)
    H[n]  = sum_{j=1..n} 1/j                                          harmonic number
    N(t)  = Q[t] / (2 P[t])
            + 1/2 * sum_{k < t-1} lr[k] / (P[t] - P[k+1]) * (Q[t] - Q[k]) / (P[t] - P[k])
    Q[t]  = sum_{s < t} lr[s]^2

``N`` is the gradient-noise part of the bound on ``f(x_t) - f*`` for SGD with an arbitrary step-size
schedule (Defazio, Cutkosky, Mehta, Mishchenko 2023, "Optimal Linear Decay Learning Rate Schedules and
Further Refinements", arXiv:2310.07831, Thm. 10; used for LLM schedules by Schaipp, Hägele, Taylor,
Simsekli, Bach 2025, "The Surprising Agreement Between Convex Optimization Theory and Learning-Rate
Scheduling for Large Model Training", arXiv:2501.18965), with ``G^2`` absorbed into ``B``. Its distance
term ``D^2 / (2 S1)`` is generalised to the power law ``A * S1^-alpha`` of the annealing laws (Tissue et
al. 2024, arXiv:2408.11029; Luo et al. 2025, arXiv:2503.12811).

Why: the momentum law and the Multi-Power Law model an LR decrease as a benefit that saturates in a fixed
time (steps, or LR area scaled by ``lr^-gamma``) and charge a long cooldown for its lost area through S1.
Fitted to a constant and a cosine curve, whose decay is slow, the saturation time is poorly identified,
and the laws put the optimal WSD cooldown fraction too early (0.2-0.4 instead of ~0.6 on the 124M runs of
Hägele et al. 2024). In ``N`` the noise of each step ``k`` is averaged over the rest of the run, weighted
by ``lr[k]`` over the area still to come: a longer, smoother decay averages the noise over more steps,
which is the benefit a long cooldown buys; no kernel time scale has to be fitted, so ``B`` is the only
cooldown parameter besides the log-horizon exponent ``rho`` (5 parameters in all, against 7 for the
Multi-Power Law).

Conventions:
- Steps: ``lr[s]`` is the LR of update ``s`` (0-indexed); the loss at step ``t`` has seen updates
  ``0..t-1`` (``scalefit.schedules``), so the bound's horizon is ``t`` and its ``eta_1..eta_T`` are
  ``lr[0..t-1]``. Terms whose remaining area is zero (an LR of exactly 0 at the end) are skipped.
- Warmup is part of the schedule and enters both S1 and N as is; LR is used raw (not normalised by the
  peak), so ``A`` carries LR^alpha units and ``B`` loss per LR; curves with different peaks share them.
- ``N`` scales like the LR. At a constant LR ``eta``, ``N = eta * (1 + H[t-1]) / 2`` grows like ``log t``
  (the worst-case log factor of the last-iterate bound), which LLM loss curves do not show; ``rho`` in
  [0, 1] divides that growth out (``rho = 0``: the bound as is; ``rho = 1``: ``B * eta`` at constant LR,
  absorbed in the floor). It is fitted on the training curves like every other parameter.
- Cost: ``N`` is computed once per design, exactly, in O(n_points * T) operations per run (about 0.1 s
  for 250 points on a 50k-step run); ``predict`` and the analytic ``jacobian`` are O(n_points).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from scalefit.laws import _kernels as K
from scalefit.laws.base import Design, Law, Param

__all__ = ["CooldownLaw", "noise_functional"]

_CHUNK = 2_000_000  # max (points x steps) elements evaluated at once


def _noise_block(lr: np.ndarray, P: np.ndarray, Q: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """The sum over ``k`` of ``noise_functional`` for the horizons ``steps`` (one block, dense)."""
    t_max = int(steps.max())
    k = np.arange(max(t_max - 1, 0))
    t = steps[:, None]
    rem_next = P[t] - P[k + 1][None, :]
    rem = P[t] - P[k][None, :]
    valid = (k[None, :] < t - 1) & (rem_next > 0) & (rem > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = lr[k][None, :] / rem_next * (Q[t] - Q[k][None, :]) / rem
    return np.where(valid, terms, 0.0).sum(axis=1)


def noise_functional(lr: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """``N(t)`` at every horizon in ``steps`` (each in ``1..len(lr)``), in LR units; see the module doc."""
    lr = np.asarray(lr, dtype=float)
    steps = np.asarray(steps, dtype=np.int64)
    P = K.lr_area(lr)
    Q = np.concatenate([[0.0], np.cumsum(lr * lr)])
    out = np.zeros(steps.size)
    block = max(1, _CHUNK // max(int(steps.max(initial=1)), 1))
    for start in range(0, steps.size, block):
        out[start : start + block] = _noise_block(lr, P, Q, steps[start : start + block])
    with np.errstate(divide="ignore", invalid="ignore"):
        first = np.where(P[steps] > 0, Q[steps] / (2.0 * P[steps]), 0.0)
    return first + 0.5 * out


class CooldownLaw(Law):
    """L = L0 + A*S1^-alpha + B*N*g^rho: LR-area power law plus the convex last-iterate noise functional."""

    name: ClassVar[str] = "cooldown"

    def config(self) -> dict[str, Any]:
        return {}

    def parameters(self) -> tuple[Param, ...]:
        return (
            Param("L0", 0.0, 20.0, log=True, grid=(1.5, 2.5, 3.5), doc="irreducible loss"),
            Param("A", 0.0, 100.0, log=True, grid=(0.3, 1.0, 3.0), doc="power-law amplitude (loss)"),
            Param("alpha", 0.0, 3.0, log=True, grid=(0.2, 0.5, 1.0), doc="power-law exponent in S1"),
            Param("B", 0.0, 1e5, log=True, grid=(3.0, 30.0, 300.0), doc="noise-functional scale (loss / LR)"),
            Param(
                "rho", 0.0, 1.0, grid=(0.0, 0.5, 1.0), doc="exponent dividing out the log-horizon growth of N"
            ),
        )

    def _noise(self, run: K.RunArrays, P: np.ndarray, d: np.ndarray, offset: int) -> np.ndarray:
        harmonic = np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, run.lr.size + 1))])
        log_g = np.log(2.0 / (1.0 + harmonic[run.steps - 1]))
        return np.stack([noise_functional(run.lr, run.steps), log_g])

    def design(self, data: Any, *, predict: bool = False) -> Design:
        design = K.curve_design(self, data, predict=predict, per_run=self._noise, needs_drop=True)
        parts = np.concatenate(design.x["parts"], axis=1) if design.x["parts"] else np.zeros((2, 0))
        return Design(
            x={"S1": design.x["S1"], "N": parts[0], "log_g": parts[1]}, y=design.y, groups=design.groups,
            keys=design.keys, excluded=design.excluded, meta=design.meta,
        )  # fmt: skip

    def predict(self, theta: np.ndarray, design: Design) -> np.ndarray:
        return self.predict_many(np.asarray(theta, dtype=float)[None, :], design)[0]

    def predict_many(self, thetas: np.ndarray, design: Design) -> np.ndarray:
        t = np.atleast_2d(np.asarray(thetas, dtype=float))
        x = design.x
        s1, noise, log_g = x["S1"][None, :], x["N"][None, :], x["log_g"][None, :]
        return t[:, :1] + t[:, 1:2] * s1 ** -t[:, 2:3] + t[:, 3:4] * noise * np.exp(t[:, 4:5] * log_g)

    def jacobian(self, theta: np.ndarray, design: Design) -> np.ndarray:
        _, A, alpha, B, rho = theta
        s1, log_g = design.x["S1"], design.x["log_g"]
        pw = s1**-alpha
        scaled = design.x["N"] * np.exp(rho * log_g)
        cols = [np.ones_like(s1), pw, -A * np.log(s1) * pw, scaled, B * scaled * log_g]
        return np.stack(cols, axis=1)
