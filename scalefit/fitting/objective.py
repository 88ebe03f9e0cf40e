"""The fit objective: the bottom of the engine stack (``objective`` <- ``local`` <- ``bootstrap``,
``diagnostics`` <- ``result`` <- ``engine``).

``kind="huber_log"`` (the default): the SUM over points of ``w_i * Huber_delta(r_i)`` with
``r_i = log(pred_i) - log(obs_i)`` and ``Huber_d(r) = r^2/2`` for ``|r| <= d`` else ``d*(|r| - d/2)``.
Summed, not averaged: with a mean, L-BFGS-B's relative-reduction test stops after a couple of iterations
(how the original Chinchilla fit stopped at its start; Besiroglu et al. 2024).
``kind="lsq"``: ``sum w_i (pred_i - obs_i)^2`` on the raw loss (``curve_fit``; Gadre et al. 2024).

Parametrization: ``Param.log`` parameters are optimised as ``u = log(theta)``, the others as ``theta``.
``Objective.residual_jacobian`` is the one place where the chain rule through the log residual and the
log reparametrization is written; the gradient, the Gauss-Newton covariance and the batched
Levenberg-Marquardt bootstrap all use it.
"""

from __future__ import annotations

import math

import numpy as np

from scalefit.errors import ConfigError, FitError
from scalefit.laws.base import Design, Law, Param

__all__ = ["OBJECTIVES", "Objective"]

OBJECTIVES = ("huber_log", "lsq")
_TINY = 1e-300


class Objective:
    """The fit objective of one law on one design, as a function of the internal vector ``u``.

    ``u_j = log(theta_j)`` for log-parametrized parameters, ``theta_j`` otherwise. Points with a
    non-finite observed loss or zero weight are excluded (``valid`` is False there).
    """

    def __init__(
        self,
        law: Law,
        design: Design,
        *,
        kind: str = "huber_log",
        delta: float = 1e-3,
        weights: np.ndarray | None = None,
    ) -> None:
        if kind not in OBJECTIVES:
            raise ConfigError("unknown objective", field="objective", value=kind, fix=f"use {OBJECTIVES}")
        if not delta > 0:
            raise ConfigError("Huber delta must be > 0", field="delta", value=delta)
        if design.y is None:
            raise FitError("the design has no observed loss", column="loss", fix="fit on observed data")
        self.law, self.design, self.kind, self.delta = law, design, kind, float(delta)
        self.params: tuple[Param, ...] = law.parameters()
        self.log_mask = np.array([p.log for p in self.params], dtype=bool)
        y = design.y
        w = np.ones_like(y) if design.weights is None else design.weights.copy()
        if weights is not None:
            extra = np.asarray(weights, dtype=float)
            if extra.shape != y.shape or np.any(~(extra >= 0)):
                raise ConfigError(
                    "weights must be >= 0, one per design point",
                    field="weights",
                    value=extra.shape,
                    fix=f"give {y.size} non-negative weights",
                )
            w = w * extra
        self.valid = np.isfinite(y) & (w > 0) & ((y > 0) | (kind == "lsq"))
        self.w = np.where(self.valid, w, 0.0)
        self.y = np.where(self.valid, y, 1.0)
        self.log_y = np.log(np.abs(self.y))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    # -- parametrization ---------------------------------------------------------------------------
    def to_internal(self, theta: np.ndarray) -> np.ndarray:
        theta = np.asarray(theta, dtype=float)
        return np.where(self.log_mask, np.log(np.maximum(np.abs(theta), _TINY)), theta)

    def to_natural(self, u: np.ndarray) -> np.ndarray:
        u = np.asarray(u, dtype=float)
        return np.where(self.log_mask, np.exp(np.clip(u, -700, 700)), u)

    def bounds(self) -> list[tuple[float | None, float | None]]:
        """L-BFGS-B bounds in internal space (None = unbounded)."""
        out = []
        for p in self.params:
            lo, hi = p.lower, p.upper
            if p.log:
                lo = math.log(lo) if lo > 0 else -math.inf
                hi = math.log(hi) if math.isfinite(hi) else math.inf
            out.append((lo if math.isfinite(lo) else None, hi if math.isfinite(hi) else None))
        return out

    def bound_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(lower, upper) internal bounds as arrays, +-inf where unbounded."""
        bounds = self.bounds()
        lo = np.array([-np.inf if b[0] is None else b[0] for b in bounds])
        hi = np.array([np.inf if b[1] is None else b[1] for b in bounds])
        return lo, hi

    # -- residuals and values ----------------------------------------------------------------------
    def residuals(self, pred: np.ndarray) -> np.ndarray:
        """Residuals in the objective's space (log for huber_log, raw for lsq); 0 at excluded points."""
        if self.kind == "lsq":
            r = pred - self.y
        else:
            r = np.log(np.maximum(pred, _TINY)) - self.log_y
        return np.where(self.valid, r, 0.0)

    def residual_jacobian(self, theta: np.ndarray, pred: np.ndarray, jac: np.ndarray) -> np.ndarray:
        """d residual / d u from the law's ``pred`` and ``jac`` (d pred / d theta) at ``theta``.

        Shapes broadcast over leading axes: theta (p,), pred (n,), jac (n, p) for one vector, or
        (B, p), (B, n), (B, n, p) for a batch. Excluded points keep their rows (mask with ``valid``).
        """
        cols = np.where(self.log_mask, np.asarray(theta, dtype=float), 1.0)[..., None, :]  # d theta / d u
        if self.kind == "huber_log":
            with np.errstate(divide="ignore"):
                rows = np.where(pred > _TINY, 1.0 / pred, 0.0)[..., None]  # d log pred / d pred
            out = jac * rows
            out *= cols
            return out
        return jac * cols

    def rho(self, r: np.ndarray) -> np.ndarray:
        """The loss of each residual (Huber, or the square for lsq)."""
        if self.kind == "lsq":
            return r * r
        a = np.abs(r)
        return np.where(a <= self.delta, 0.5 * r * r, self.delta * (a - 0.5 * self.delta))

    def psi(self, r: np.ndarray) -> np.ndarray:
        """d rho / d r."""
        return 2.0 * r if self.kind == "lsq" else np.clip(r, -self.delta, self.delta)

    def irls_weight(self, r: np.ndarray) -> np.ndarray:
        """The iteratively-reweighted least-squares weight ``psi(r) / r`` of each residual: 1 in the
        Huber's quadratic zone, ``delta / |r|`` outside it (2 for lsq). ``sum w * irls * r^2 / 2`` majorizes
        the Huber sum at ``r``, so Gauss-Newton steps on it descend even from far-off starts."""
        if self.kind == "lsq":
            return np.full_like(r, 2.0)
        return self.delta / np.maximum(np.abs(r), self.delta)

    def curvature(self, r: np.ndarray) -> np.ndarray:
        """The Gauss-Newton weight of each residual: d psi / d r (1 in the Huber's quadratic zone)."""
        if self.kind == "lsq":
            return np.full_like(r, 2.0)
        return (np.abs(r) <= self.delta).astype(float)

    def values_many(
        self, U: np.ndarray, weights: np.ndarray | None = None, chunk_elems: int = 2_000_000
    ) -> np.ndarray:
        """Objective at many internal vectors (rows of ``U``), vectorized over rows; ``weights``: one
        row per vector (bootstrap resamples) or None for the objective's own."""
        U = np.atleast_2d(U)
        step = max(1, chunk_elems // max(1, self.design.n_points))
        out = np.empty(len(U))
        with np.errstate(all="ignore"):
            for i in range(0, len(U), step):
                pred = self.law.predict_many(self.to_natural(U[i : i + step]), self.design)
                w = self.w if weights is None else weights[i : i + step]
                out[i : i + step] = np.sum(w * self.rho(self.residuals(pred)), axis=1)
        return np.where(np.isfinite(out), out, np.inf)

    def value_and_grad(self, u: np.ndarray, weights: np.ndarray | None = None) -> tuple[float, np.ndarray]:
        """Objective and its exact gradient in internal space."""
        theta = self.to_natural(u)
        with np.errstate(all="ignore"):
            pred, jac = self.law.predict_and_jacobian(theta, self.design)
            r = self.residuals(pred)
            w = self.w if weights is None else weights
            val = float(np.sum(w * self.rho(r)))
            jr = self.residual_jacobian(theta, pred, jac)
            grad = jr.T @ np.where(self.valid, w * self.psi(r), 0.0)
        if not (math.isfinite(val) and np.all(np.isfinite(grad))):
            return 1e300, np.zeros_like(grad)
        return val, grad
