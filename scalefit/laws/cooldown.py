"""Cooldown law: a power law in the LR area plus a power of the schedule's noise functional from the
last-iterate bound of convex SGD (scalefit's own law, built for the WSD cooldown question):

    L(t) = L0 + A * S1(t)^-alpha + B * (N(t) / LR_REF)^p * g(t)^rho
    g(t)  = (1 + H_REF) / (1 + H[t-1]),   H_REF = H[9999]               log-horizon factor, 1 at t = 10^4
    S1(t) = P[t] = sum_{s < t} lr[s]                                  forward area (progress)
    H[n]  = sum_{j=1..n} 1/j                                          harmonic number
    N(t)  = Q[t] / (2 P[t])
            + 1/2 * sum_{k < t-1} lr[k] / (P[t] - P[k+1]) * (Q[t] - Q[k]) / (P[t] - P[k])
          = ( lr[t-1] + sum_{s < t-1} lr[s]^2 / (P[t] - P[s+1]) ) / 2      (equivalent form, used here)
    Q[t]  = sum_{s < t} lr[s]^2,   LR_REF = 1e-3

``N`` is the gradient-noise part of the bound on ``f(x_t) - f*`` for SGD with an arbitrary step-size
schedule (Defazio, Cutkosky, Mehta, Mishchenko 2023, "Optimal Linear Decay Learning Rate Schedules and
Further Refinements", arXiv:2310.07831, Thm. 10; used for LLM schedules by Schaipp, Hägele, Taylor,
Simsekli, Bach 2025, "The Surprising Agreement Between Convex Optimization Theory and Learning-Rate
Scheduling for Large Model Training", arXiv:2501.18965). Its distance term ``D^2 / (2 S1)`` is
generalised to the power law ``A * S1^-alpha`` of the annealing laws (Tissue et al. 2024,
arXiv:2408.11029; Luo et al. 2025, arXiv:2503.12811), and its noise term to a power ``p`` of ``N``: the
loss floor an LR holds scales like ``LR^p`` (``p = 1`` is the bound itself).

Why: on the 124M WSD runs of Hägele et al. 2024 (peak 1e-3, 50k steps) a cooldown gains, against the
constant run at equal LR area, 0.16 at F = 0.1 and 0.21 at F = 0.6: the gain of the same LR drop (peak to
0) grows with the length of the decay. In ``N`` the noise each step injects (``lr[s]^2``) is divided by
the LR area that follows it: the noise of a step is averaged out by the updates after it, so a decay
helps as far as small steps follow the large ones, and a longer decay gains more. No kernel time scale
is fitted. With ``p = 1`` the law cannot follow the cosine curve (residuals -0.014 mid-decay, +0.017 at
the end); a free ``p`` (fitted 0.5 on the 124M runs, 0.69-0.76 on the MPL runs, there with rho 1.9-2.9)
lowers the training objective (-59 % on the 124M runs, -18 % on MPL 25M) and credits the last,
small-LR part of a decay with more of its gain.

What was tried and dropped (selected on training-curve fit, reported on the held-out curves; scratch in
the research notes): progress in an effective area ``sum lr / (1 + lr/lr_c)`` (fits the cooldown
ranking, optimum F = 0.6, but all finals +0.012..+0.018; ``lr_c`` at its bound on the MPL runs); an
added ``C * lr[t-1]`` floor (``C`` fitted to 0); an EMA of the LR with a step time constant in place of
``N`` (training objective +20 %, F = 0.1 off by -0.033); a kernel ``1 / area^kappa`` (kappa = 1.25 fits
better, predicts the cooldowns worse).

Measured (``python benchmarks/lr_laws.py --laws cooldown,multipower --protocols cooldown,mpl``): MPL
protocol test PredE 0.091 / 0.095 / 0.127 % at 25M / 100M / 400M (published Multi-Power Law: 0.110 /
0.142 / 0.168; its engine refit: 0.194 / 0.208 / 0.301; ``p = 1``: 0.155 / 0.160 / 0.230), WorstE 0.65 /
0.63 / 0.77 % (published 0.41 / 0.58 / 0.99). Cooldown protocol final-loss errors +0.012 (F = 0.1)
falling to -0.003 (F = 0.9), predicted best F = 0.8 (true 0.6, plateau 0.4-0.8), 1-sqrt at 0.2 +0.012:
the bar of 0.005 is met for F >= 0.6 only; short cooldowns still get too little of their gain.

Conventions:
- Steps: ``lr[s]`` is the LR of update ``s`` (0-indexed); the loss at step ``t`` has seen updates
  ``0..t-1`` (``scalefit.schedules``), so the bound's horizon is ``t`` and its ``eta_1..eta_T`` are
  ``lr[0..t-1]``. Terms whose remaining area is zero (an LR of exactly 0 at the end) are skipped.
- Warmup is part of the schedule and enters both S1 and N as is; LR is used raw (not normalised by the
  peak), so ``A`` carries LR^alpha units; ``N`` is measured in units of ``LR_REF`` so that ``B`` is a
  loss (the noise term at ``N = LR_REF`` and ``t = 10^4``, where ``g = 1``; normalising ``g`` there rather
  than at ``t = 1`` keeps ``B`` and ``rho`` from trading off); curves with different peaks share both.
- ``N`` scales like the LR. At a constant LR ``eta``, ``N = eta * (1 + H[t-1]) / 2`` grows like ``log t``
  (the worst-case log factor of the last-iterate bound); the term then behaves as
  ``(1 + H)^(p - rho)``: ``rho = p`` holds it constant, ``rho > p`` lets it fall slowly with log-time,
  ``rho = 0`` keeps the bound's growth. ``rho`` is fitted on the training curves like every other
  parameter (6 in all, against 7 for the Multi-Power Law).
- Cost: ``N`` is computed once per design, exactly, in O(n_points * T) operations per run (one division
  each: about 0.5 s for 546 points on a 72k-step run on a loaded 2-core machine); ``predict`` and the
  analytic ``jacobian`` are O(n_points).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from scalefit.laws import _kernels as K
from scalefit.laws.base import Design, Law, Param

__all__ = ["CooldownLaw", "noise_functional"]

_CHUNK = 2_000_000  # max (points x steps) elements evaluated at once
LR_REF = 1e-3  # LR unit of the noise term: B is its loss at N = LR_REF and t = 10^4 steps
H_REF = float(np.sum(1.0 / np.arange(1, 10_000)))  # H[t - 1] at t = 10^4 (decorrelates B and rho)
_TINY = 1e-300


def _noise_block(lr: np.ndarray, P: np.ndarray, horizons: np.ndarray) -> np.ndarray:
    """``sum_{s <= T-2} lr[s]^2 / (P[T] - P[s+1])`` for each horizon ``T`` (one block, dense)."""
    s = np.arange(max(int(horizons.max()) - 1, 0))
    T = horizons[:, None]
    rest = P[T] - P[s + 1][None, :]
    valid = s[None, :] <= T - 2
    terms = np.divide((lr[s] ** 2)[None, :], rest, out=np.zeros(rest.shape), where=valid)
    return terms.sum(axis=1)


def noise_functional(lr: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """``N(t)`` at every horizon in ``steps`` (each in ``1..len(lr)``), in LR units; see the module doc.

    Evaluated in the equivalent form ``N(t) = (lr[T-1] + sum_{s <= T-2} lr[s]^2 / (P[T] - P[s+1])) / 2``
    (partial fractions and summation by parts of the bound's double sum), where ``T <= t`` is one past
    the last step before ``t`` with a positive LR: trailing zero LRs leave ``N`` unchanged, as the
    bound's terms with no area left are zero.
    """
    lr = np.asarray(lr, dtype=float)
    steps = np.asarray(steps, dtype=np.int64)
    P = K.lr_area(lr)
    last_pos = np.maximum.accumulate(np.where(lr > 0, np.arange(lr.size), -1))
    horizons = last_pos[np.maximum(steps, 1) - 1] + 1  # 0 when no positive LR yet
    out = np.zeros(steps.size)
    live = np.flatnonzero(horizons > 0)
    block = max(1, _CHUNK // max(int(horizons.max(initial=1)), 1))
    for start in range(0, live.size, block):
        idx = live[start : start + block]
        out[idx] = _noise_block(lr, P, horizons[idx])
    out[live] += lr[horizons[live] - 1]
    return 0.5 * out


class CooldownLaw(Law):
    """L = L0 + A*S1^-alpha + B*(N/LR_REF)^p*g^rho: LR-area power law plus the convex SGD noise functional."""

    name: ClassVar[str] = "cooldown"

    def config(self) -> dict[str, Any]:
        return {}

    def parameters(self) -> tuple[Param, ...]:
        return (
            Param("L0", 0.0, 20.0, log=True, grid=(1.5, 2.5, 3.5), doc="irreducible loss"),
            Param("A", 0.0, 100.0, log=True, grid=(0.3, 1.0, 3.0), doc="power-law amplitude (loss)"),
            Param("alpha", 0.0, 3.0, log=True, grid=(0.2, 0.5, 1.0), doc="power-law exponent in S1"),
            Param("B", 0.0, 100.0, log=True, grid=(0.05, 0.2, 1.0), doc="noise-term loss at N = LR_REF"),
            Param("rho", 0.0, 4.0, grid=(0.0, 1.0, 2.0), doc="exponent of the log-horizon factor g"),
            Param("p", 0.05, 3.0, grid=(0.5, 1.0), doc="power of N in the noise term (floor ~ LR^p)"),
        )

    def _noise(self, run: K.RunArrays, P: np.ndarray, d: np.ndarray, offset: int) -> np.ndarray:
        harmonic = np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, run.lr.size + 1))])
        log_g = np.log((1.0 + H_REF) / (1.0 + harmonic[run.steps - 1]))
        noise = noise_functional(run.lr, run.steps)
        log_u = np.log(np.maximum(noise, _TINY) / LR_REF)
        return np.stack([log_u, log_g])

    def design(self, data: Any, *, predict: bool = False) -> Design:
        design = K.curve_design(self, data, predict=predict, per_run=self._noise, needs_drop=True)
        parts = np.concatenate(design.x["parts"], axis=1) if design.x["parts"] else np.zeros((2, 0))
        return Design(
            x={"S1": design.x["S1"], "log_u": parts[0], "log_g": parts[1]}, y=design.y, groups=design.groups,
            keys=design.keys, excluded=design.excluded, meta=design.meta,
        )  # fmt: skip

    def predict(self, theta: np.ndarray, design: Design) -> np.ndarray:
        return self.predict_many(np.asarray(theta, dtype=float)[None, :], design)[0]

    def predict_many(self, thetas: np.ndarray, design: Design) -> np.ndarray:
        t = np.atleast_2d(np.asarray(thetas, dtype=float))
        x = design.x
        s1, log_u, log_g = x["S1"][None, :], x["log_u"][None, :], x["log_g"][None, :]
        noise = t[:, 3:4] * np.exp(t[:, 5:6] * log_u + t[:, 4:5] * log_g)
        return t[:, :1] + t[:, 1:2] * s1 ** -t[:, 2:3] + noise

    def jacobian(self, theta: np.ndarray, design: Design) -> np.ndarray:
        _, A, alpha, B, rho, p = theta
        s1, log_u, log_g = design.x["S1"], design.x["log_u"], design.x["log_g"]
        pw = s1**-alpha
        shape = np.exp(p * log_u + rho * log_g)
        cols = [np.ones_like(s1), pw, -A * np.log(s1) * pw, shape, B * shape * log_g, B * shape * log_u]
        return np.stack(cols, axis=1)
