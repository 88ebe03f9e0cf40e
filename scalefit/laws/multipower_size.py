"""Model-size-aware Multi-Power Law: one fit across model sizes predicts the curve of a larger model.

    L(s; N) = E + Q * n^-kappa + A * n^-zeta * S1(s)^-alpha - LD(s),   n = N / n_ref

with ``LD`` the Multi-Power Law drop sum (Luo et al. 2025, arXiv:2503.12811, see ``multipower.py``)
whose kernel parameters (B, C, beta, gamma) are shared by every size. The size term follows the
Chinchilla form (Hoffmann et al. 2022, arXiv:2203.15556): the floor ``L0`` of the per-size MPL becomes
``E + Q * n^-kappa``, so each size's curve is an MPL curve and a larger size is an extrapolation in
``n`` alone. ``scale_A=True`` adds ``zeta`` so larger models also learn faster per unit of LR area
(with ``scale_A=False`` ``zeta`` is absent and the amplitude A is shared).

Conventions as in ``multipower.py`` (raw LR, signed increments; ``convention="official"``, the default:
sums include step ``s`` and the warmup rises, as in the reference code; ``"causal"``: step ``s`` has
seen updates ``0..s-1`` and warmup rises are not drops). N is the runs-table column ``n_params``
(parameters); ``n_ref`` (default 1e8) only sets the scale of Q and A.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

import numpy as np

from scalefit.errors import ConfigError, FitError
from scalefit.laws._kernels import MPLTerms
from scalefit.laws.base import CurveFeatures, CurveLaw, CurveRun, Design, Param
from scalefit.laws.multipower import check_mpl_options, drop_terms, mpl_parameters, mpl_x

__all__ = ["MultiPowerSizeLaw"]

_MAX_LOG_SPREAD = 0.02  # the drop-sum grouping option of the MPL default


class MultiPowerSizeLaw(CurveLaw):
    """Multi-Power Law whose floor (and optionally amplitude) scales as a power of the model size."""

    name: ClassVar[str] = "multipower-size"
    kind: ClassVar[str] = "curve"

    def __init__(
        self,
        scale_A: bool = False,
        n_ref: float = 1e8,
        ratio: float | None = 32.0,
        convention: str = "official",
    ) -> None:
        if not n_ref > 0:
            raise ConfigError(
                "reference size must be positive", field="n_ref", value=n_ref, fix="use e.g. 1e8"
            )
        check_mpl_options(ratio, _MAX_LOG_SPREAD, convention)
        self.scale_A, self.n_ref = bool(scale_A), float(n_ref)
        self.ratio = None if ratio is None else float(ratio)
        self.convention = convention

    def config(self) -> dict[str, float | bool | str | None]:
        return {
            "scale_A": self.scale_A,
            "n_ref": self.n_ref,
            "ratio": self.ratio,
            "convention": self.convention,
        }

    def parameters(self) -> tuple[Param, ...]:
        size = (
            Param("E", 0.0, 20.0, log=True, grid=(1.5, 2.5), doc="loss of an infinite model"),
            Param("Q", 0.0, 100.0, log=True, grid=(0.3, 1.0), doc="size-term amplitude (loss)"),
            Param("kappa", 0.0, 3.0, log=True, grid=(0.3,), doc="size exponent of the floor"),
        )
        zeta = (
            (Param("zeta", 0.0, 3.0, log=True, grid=(0.1,), doc="size exponent of A"),)
            if self.scale_A
            else ()
        )
        return (*size, *mpl_parameters()[:1], *zeta, *mpl_parameters()[1:])

    def features(self) -> CurveFeatures:
        return CurveFeatures(
            shift=1 if self.convention == "official" else 0,
            meta=(("n_params", "the model size (n_params, parameters)"),),
        )

    def floor(self, values: Mapping[str, float]) -> float | None:
        return float(values["E"]) if "E" in values else None

    def curve_x(self, runs: Sequence[CurveRun]) -> dict[str, np.ndarray | MPLTerms]:
        """The MPL drop-sum terms and the relative size ``n = N / n_ref`` at every kept step."""
        sizes = [np.full(r.steps.size, float(r.meta["n_params"]) / self.n_ref) for r in runs]
        terms = mpl_x(runs, convention=self.convention, ratio=self.ratio, max_log_spread=_MAX_LOG_SPREAD)
        return {**terms, "n": np.concatenate(sizes) if sizes else np.zeros(0)}

    def check_fit(self, design: Design) -> None:
        sizes = design.meta["n_params"]
        if len(set(sizes.values())) < 2:
            raise FitError(
                "multipower-size needs curves of at least two model sizes",
                column="n_params",
                value=sorted(set(sizes.values())),
                fix="add runs of another size, or fit 'multipower'",
            )

    def _split(self, theta: np.ndarray) -> tuple[float, ...]:
        theta = np.asarray(theta, dtype=float)
        E, Q, kappa, A = theta[:4]
        zeta = theta[4] if self.scale_A else 0.0
        alpha, B, C, beta, gamma = theta[-5:]
        return E, Q, kappa, A, zeta, alpha, B, C, beta, gamma

    def predict(self, theta: np.ndarray, design: Design) -> np.ndarray:
        E, Q, kappa, A, zeta, alpha, B, C, beta, gamma = self._split(theta)
        n = design.x["n"]
        (drop,) = drop_terms(design, B, C, beta, gamma, grad=False)
        return E + Q * n**-kappa + A * n**-zeta * design.x["S1"] ** -alpha - drop

    def predict_and_jacobian(self, theta: np.ndarray, design: Design) -> tuple[np.ndarray, np.ndarray]:
        E, Q, kappa, A, zeta, alpha, B, C, beta, gamma = self._split(theta)
        n, s1 = design.x["n"], design.x["S1"]
        drop, *d_kernel = drop_terms(design, B, C, beta, gamma, grad=True)
        amp = n**-zeta
        pw = s1**-alpha
        cols = [np.ones_like(n), n**-kappa, -Q * np.log(n) * n**-kappa, amp * pw]
        if self.scale_A:
            cols.append(-A * np.log(n) * amp * pw)
        cols.append(-A * amp * np.log(s1) * pw)
        cols.extend(-d for d in d_kernel)
        pred = E + Q * n**-kappa + A * amp * pw - drop
        return pred, np.stack(cols, axis=1)

    def jacobian(self, theta: np.ndarray, design: Design) -> np.ndarray:
        return self.predict_and_jacobian(theta, design)[1]

    def predict_and_jacobian_many(self, thetas: np.ndarray, design: Design) -> tuple[np.ndarray, np.ndarray]:
        """Row by row: the drop sum's terms per vector are too many to stack (one pass each)."""
        pairs = [self.predict_and_jacobian(t, design) for t in np.atleast_2d(thetas)]
        return np.stack([p for p, _ in pairs]), np.stack([j for _, j in pairs])
