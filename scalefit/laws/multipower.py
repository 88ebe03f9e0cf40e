"""Multi-Power Law (Luo et al. 2025, "A Multi-Power Law for Loss Curve Prediction Across Learning Rate
Schedules", ICLR 2025, arXiv:2503.12811; reference code thu-yao-01-luo/MultiPowerLaw).

    L(s) = L0 + A * S1(s)^-alpha - B * sum_k (lr[k-1] - lr[k]) * G(lr[k]^-gamma * S_k(s))
    G(x) = 1 - (C*x + 1)^-beta

``lr[k]`` is the raw (not peak-normalised) LR of optimizer update ``k`` (0-indexed), so B is of order
1/peak LR. Two conventions (``convention=``), a structural choice fixed per law instance:

- ``"official"`` (default), the convention of the reference code, under which the published parameters
  were fitted and reproduce the published test errors (tests/test_lr_laws_reference.py):
  ``S1(s) = sum_{tau=0..s} lr[tau]``, ``S_k(s) = sum_{tau=k..s} lr[tau]`` and the drop sum runs over
  ``k = 1..s`` with EVERY signed increment, warmup included: the LR rises of the warmup enter as negative
  drops and add about ``B * peak * G`` to the loss. Sums include the LR of step ``s`` itself.
- ``"causal"``: the loss at step ``s`` has seen updates ``0..s-1`` only (``scalefit.schedules``):
  ``S1(s) = sum_{tau<s} lr[tau]``, ``S_k(s) = sum_{tau=k..s-1} lr[tau]``, and increments during warmup
  are zero (the paper's text: ``S_W`` is part of S1 but warmup is not an LR drop). The published
  parameters do not transfer to it (3-5% test error instead of 0.11-0.17%); a refit works as well.

Both are the same sum: ``official(s) = causal(s + 1)`` with warmup increments kept, which is how it is
computed (``CurveFeatures(shift=1)``, ``mpl_terms(lr, steps + 1, warmup=0)``). Signed
increments also make re-warming after warmup a negative drop in both. The O(T^2) drop sum is evaluated
by ``_kernels.mpl_terms`` (multipole grouping, error ~1e-6 in loss on the published curves;
``ratio=None`` makes it exact) with an analytic Jacobian. The drop-sum kernel (``mpl_x``, ``drop_terms``)
is public: the model-size-aware law (``multipower_size.py``) shares it. The reference code's own fitting
path (AdamW, early stopped) is ``scalefit.fitting.reference.reference_fit``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from scalefit.errors import ConfigError
from scalefit.laws._kernels import MPLTerms, mpl_drop, mpl_terms, stack_terms
from scalefit.laws.base import CurveFeatures, CurveLaw, CurveRun, Design, Param

__all__ = ["CONVENTIONS", "MultiPowerLaw", "check_mpl_options", "drop_terms", "mpl_parameters", "mpl_x"]

CONVENTIONS = ("official", "causal")


def mpl_parameters() -> tuple[Param, ...]:
    """The kernel parameters shared by the MPL family (after the floor and power-law terms)."""
    return (
        Param("A", 0.0, 100.0, log=True, grid=(0.3, 1.0), doc="power-law amplitude (loss)"),
        Param("alpha", 0.0, 3.0, log=True, grid=(0.3, 0.6), doc="power-law exponent in S1"),
        Param("B", 1.0, 1e4, log=True, grid=(100.0, 600.0), doc="LR-drop scale (loss / LR)"),
        Param("C", 0.0, 1e4, log=True, grid=(0.5, 2.0), doc="LR-drop saturation rate"),
        Param("beta", 0.05, 5.0, log=True, grid=(0.6,), doc="LR-drop power"),
        Param("gamma", 0.0, 3.0, log=True, grid=(0.6,), doc="LR exponent of the drop time scale"),
    )


def check_mpl_options(ratio: float | None, max_log_spread: float, convention: str) -> None:
    """``ConfigError`` for an unknown convention or a bad grouping option of the drop-sum kernel."""
    if convention not in CONVENTIONS:
        raise ConfigError(
            f"unknown MPL convention {convention!r}",
            field="convention",
            value=convention,
            fix=f"use one of {CONVENTIONS}",
        )
    if ratio is not None and not ratio >= 4:
        raise ConfigError("grouping ratio must be >= 4 or None (exact)", field="ratio", value=ratio)
    if not max_log_spread >= 0:
        raise ConfigError("max_log_spread must be >= 0", field="max_log_spread", value=max_log_spread)


def mpl_x(
    runs: Sequence[CurveRun], *, convention: str, ratio: float | None, max_log_spread: float
) -> dict[str, MPLTerms]:
    """The drop-sum terms of every kept step of ``runs``, stacked (``x["terms"]``)."""
    shift = 1 if convention == "official" else 0
    parts = [
        mpl_terms(
            r.lr,
            r.steps + shift,
            0 if shift else r.warmup,
            ratio=ratio,
            max_log_spread=max_log_spread,
            offset=r.offset,
        )
        for r in runs
    ]
    n_points = sum(int(r.steps.size) for r in runs)
    return {"terms": stack_terms(parts, n_points)}


def drop_terms(
    design: Design, B: float, C: float, beta: float, gamma: float, *, grad: bool
) -> tuple[np.ndarray, ...]:
    """``B * LD`` per point and, with ``grad``, its derivatives in B, C, beta and gamma."""
    out = mpl_drop(design.x["terms"], C, beta, gamma, grad=grad)
    if not grad:
        return (B * out[0],)
    ld, dC, dbeta, dgamma = out
    return B * ld, ld, B * dC, B * dbeta, B * dgamma


class MultiPowerLaw(CurveLaw):
    """Multi-Power Law: a power law in the LR area minus a saturating power-law loss drop per LR decrease."""

    name: ClassVar[str] = "multipower"
    kind: ClassVar[str] = "curve"

    def __init__(
        self, ratio: float | None = 32.0, max_log_spread: float = 0.02, convention: str = "official"
    ) -> None:
        check_mpl_options(ratio, max_log_spread, convention)
        self.ratio = None if ratio is None else float(ratio)
        self.max_log_spread = float(max_log_spread)
        self.convention = convention

    @property
    def shift(self) -> int:
        """1 under the official convention (the loss at step s after update s), else 0."""
        return self.features().shift

    def config(self) -> dict[str, float | str | None]:
        return {"ratio": self.ratio, "max_log_spread": self.max_log_spread, "convention": self.convention}

    def parameters(self) -> tuple[Param, ...]:
        return (Param("L0", 0.0, 20.0, log=True, grid=(2.0, 3.0), doc="irreducible loss"), *mpl_parameters())

    def features(self) -> CurveFeatures:
        return CurveFeatures(shift=1 if self.convention == "official" else 0)

    def curve_x(self, runs: Sequence[CurveRun]) -> dict[str, MPLTerms]:
        return mpl_x(runs, convention=self.convention, ratio=self.ratio, max_log_spread=self.max_log_spread)

    def predict(self, theta: np.ndarray, design: Design) -> np.ndarray:
        L0, A, alpha, B, C, beta, gamma = np.asarray(theta, dtype=float)
        (drop,) = drop_terms(design, B, C, beta, gamma, grad=False)
        return L0 + A * design.x["S1"] ** -alpha - drop

    def predict_and_jacobian(self, theta: np.ndarray, design: Design) -> tuple[np.ndarray, np.ndarray]:
        """One pass of the drop sum for both (it dominates the cost)."""
        L0, A, alpha, B, C, beta, gamma = np.asarray(theta, dtype=float)
        s1 = design.x["S1"]
        pw = s1**-alpha
        drop, d_B, d_C, d_beta, d_gamma = drop_terms(design, B, C, beta, gamma, grad=True)
        cols = [np.ones_like(s1), pw, -A * np.log(s1) * pw, -d_B, -d_C, -d_beta, -d_gamma]
        return L0 + A * pw - drop, np.stack(cols, axis=1)

    def jacobian(self, theta: np.ndarray, design: Design) -> np.ndarray:
        return self.predict_and_jacobian(theta, design)[1]

    def predict_and_jacobian_many(self, thetas: np.ndarray, design: Design) -> tuple[np.ndarray, np.ndarray]:
        """Row by row: the drop sum's terms per vector are too many to stack (one pass each)."""
        pairs = [self.predict_and_jacobian(t, design) for t in np.atleast_2d(thetas)]
        return np.stack([p for p, _ in pairs]), np.stack([j for _, j in pairs])
