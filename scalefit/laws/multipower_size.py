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

from typing import Any, ClassVar

import numpy as np

from scalefit.errors import ConfigError, DataError, FitError
from scalefit.laws import _kernels as K
from scalefit.laws.base import Design, Law, Param
from scalefit.laws.multipower import MultiPowerLaw, mpl_parameters, stack_terms

__all__ = ["MultiPowerSizeLaw"]


class MultiPowerSizeLaw(Law):
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
        self.scale_A, self.n_ref = bool(scale_A), float(n_ref)
        self._mpl = MultiPowerLaw(ratio=ratio, convention=convention)

    def config(self) -> dict[str, Any]:
        return {
            "scale_A": self.scale_A,
            "n_ref": self.n_ref,
            "ratio": self._mpl.ratio,
            "convention": self._mpl.convention,
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

    def floor(self, values: Any) -> float | None:
        return float(values["E"]) if "E" in values else None

    def _per_run(self, run: K.RunArrays, P: np.ndarray, d: np.ndarray, offset: int) -> K.MPLTerms:
        n_params = run.meta.get("n_params")
        if n_params is None or not np.isfinite(float(n_params)) or float(n_params) <= 0:
            raise DataError(
                "multipower-size needs the model size of every run",
                run_id=run.run_id,
                column="n_params",
                value=n_params,
                fix="give n_params (parameters) in the runs table",
            )
        return self._mpl._terms(run, P, d, offset)

    def design(self, data: Any, *, predict: bool = False) -> Design:
        design = stack_terms(
            K.curve_design(
                self, data, predict=predict, per_run=self._per_run, needs_drop=True, shift=self._mpl.shift
            )
        )
        sizes = design.meta["n_params"]
        n = np.array([float(sizes[g]) for g in design.groups]) / self.n_ref
        if not predict and len(set(sizes.values())) < 2:
            raise FitError(
                "multipower-size needs curves of at least two model sizes",
                column="n_params",
                value=sorted(set(sizes.values())),
                fix="add runs of another size, or fit 'multipower'",
            )
        return Design(
            x={**design.x, "n": n},
            y=design.y,
            groups=design.groups,
            keys=design.keys,
            excluded=design.excluded,
            meta=design.meta,
        )

    def _split(self, theta: np.ndarray) -> tuple:
        theta = np.asarray(theta, dtype=float)
        E, Q, kappa, A = theta[:4]
        zeta = theta[4] if self.scale_A else 0.0
        return E, Q, kappa, A, zeta, theta[-5:]

    def predict(self, theta: np.ndarray, design: Design) -> np.ndarray:
        E, Q, kappa, A, zeta, kern = self._split(theta)
        n = design.x["n"]
        (ld,) = self._mpl._drop(np.concatenate([[0.0, 0.0, 0.0], kern]), design, False)[:1]
        return E + Q * n**-kappa + A * n**-zeta * design.x["S1"] ** -kern[0] - kern[1] * ld

    def jacobian(self, theta: np.ndarray, design: Design) -> np.ndarray:
        E, Q, kappa, A, zeta, kern = self._split(theta)
        n, s1 = design.x["n"], design.x["S1"]
        mpl = self._mpl.jacobian(np.concatenate([[0.0, 1.0], kern]), design)
        amp = n**-zeta
        pw = s1 ** -kern[0]
        cols = [np.ones_like(n), n**-kappa, -Q * np.log(n) * n**-kappa, amp * pw]
        if self.scale_A:
            cols.append(-A * np.log(n) * amp * pw)
        cols.append(-A * amp * np.log(s1) * pw)
        cols.extend(mpl[:, 3 + i] for i in range(4))
        return np.stack(cols, axis=1)
