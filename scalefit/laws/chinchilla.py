"""Chinchilla law of Hoffmann et al. 2022, "Training Compute-Optimal Large Language Models"
(arXiv:2203.15556), Approach 3, as re-fitted by Besiroglu et al. 2024 (Epoch AI, arXiv:2404.10102):

    L(N, D) = E + A / N^alpha + B / D^beta

in the log-sum-exp parametrization ``log L = LSE(a - alpha log N, b - beta log D, e)`` with
``A = exp(a)``, ``B = exp(b)``, ``E = exp(e)``; fitted (by ``scalefit.fitting.engine``) with the Huber loss
(delta 1e-3) on log loss, summed over points, from Hoffmann's grid of 4,500 starts (alpha, beta in
0..2 step 0.5; e in -1..1 step 0.5; a, b in 0..25 step 5).

Conventions: N (column ``n``) is the parameter count and D (column ``d``) the training tokens; when the
table has no D column, D = C / (6 N) from the compute column ``c`` (flops per token 6N, Hoffmann's and
Epoch's convention). ``counting`` records how N and C were counted (``scalefit.conventions``). The
compute-optimal frontier at budget C (FLOPs, C = 6 N D) is in closed form:
``N* = G (C/6)^(beta/(alpha+beta))``, ``D* = (C/6) / N*``, ``G = (alpha A / (beta B))^(1/(alpha+beta))``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from scalefit.conventions import Counting, run_labels
from scalefit.errors import DataError
from scalefit.laws._static import StaticLaw
from scalefit.laws.base import Design, Param, TableFeatures

__all__ = ["ChinchillaLaw", "compute_optimal", "natural_values", "tokens_per_parameter"]

HOFFMANN = {"a": 6.0073404, "b": 6.0179186, "e": 0.5267228, "alpha": 0.33917084, "beta": 0.2849083}


class ChinchillaLaw(StaticLaw):
    """``L = exp(e) + exp(a) N^-alpha + exp(b) D^-beta``; parameters a, b, e, alpha, beta."""

    name: ClassVar[str] = "chinchilla"
    kind: ClassVar[str] = "static"
    options: ClassVar[tuple[str, ...]] = ("loss", "n", "d", "c")

    def __init__(
        self,
        *,
        loss: str = "loss",
        n: str = "N",
        d: str = "D",
        c: str = "C",
        counting: Counting | dict[str, Any] | None = None,
    ) -> None:
        super().__init__(loss=loss, n=n, d=d, counting=counting)
        self.c = c

    def parameters(self) -> tuple[Param, ...]:
        grid_ab = tuple(np.arange(0.0, 26.0, 5.0))
        grid_exp = tuple(np.arange(0.0, 2.01, 0.5))
        return (
            Param("a", -20.0, 80.0, grid=grid_ab, doc="log A (size term)"),
            Param("b", -20.0, 80.0, grid=grid_ab, doc="log B (data term)"),
            Param("e", -10.0, 5.0, grid=tuple(np.arange(-1.0, 1.01, 0.5)), doc="log E (irreducible loss)"),
            Param("alpha", 0.0, 5.0, grid=grid_exp, doc="size exponent"),
            Param("beta", 0.0, 5.0, grid=grid_exp, doc="data exponent"),
        )

    def features(self) -> TableFeatures:
        """N always; D or the compute C, and the loss to fit, are checked by ``table_design``."""
        return TableFeatures(columns=(self.n,))

    def table_design(self, frame: pd.DataFrame, *, predict: bool = False) -> Design:
        n = frame[self.n].to_numpy(float)
        if self.d in frame.columns:
            d = frame[self.d].to_numpy(float)
        elif self.c in frame.columns:
            d = frame[self.c].to_numpy(float) / (6.0 * n)
        else:
            raise DataError(
                "the chinchilla law needs training tokens or compute",
                column=self.d,
                fix=f"add a {self.d!r} (tokens) or {self.c!r} (FLOPs) column, or name yours with d=/c=",
            )
        self.check_positive(n, d, fix="fix those rows")
        if not predict and self.loss not in frame.columns:
            raise DataError(
                "the chinchilla law needs the observed loss",
                column=self.loss,
                fix="add the column or name it with loss=",
            )
        labels = run_labels(frame)
        keys = pd.DataFrame({"run_id": labels, "N": n, "D": d, "C": 6.0 * n * d})
        y = frame[self.loss].to_numpy(float) if self.loss in frame.columns else None
        return Design(x={"log_n": np.log(n), "log_d": np.log(d)}, y=y, groups=labels, keys=keys)

    @staticmethod
    def _terms(theta: np.ndarray, x: Mapping[str, np.ndarray]) -> tuple[np.ndarray, ...]:
        a, b, e, alpha, beta = (theta[..., j, None] for j in range(5))
        size = np.exp(a - alpha * x["log_n"])
        data = np.exp(b - beta * x["log_d"])
        return size, data, np.exp(e) * np.ones_like(size)

    def predict(self, theta: np.ndarray, design: Design) -> np.ndarray:
        size, data, floor = self._terms(np.asarray(theta, dtype=float), design.x)
        return size + data + floor

    def jacobian_many(self, thetas: np.ndarray, design: Design) -> np.ndarray:
        size, data, floor = self._terms(np.atleast_2d(np.asarray(thetas, dtype=float)), design.x)
        x = design.x
        return np.stack([size, data, floor, -x["log_n"] * size, -x["log_d"] * data], axis=-1)

    def floor(self, values: Mapping[str, float]) -> float | None:
        return float(np.exp(values["e"]))

    def compute_optimal(self, values: Mapping[str, float] | np.ndarray, compute: ArrayLike) -> pd.DataFrame:
        """The compute-optimal frontier at budgets ``compute`` (FLOPs, C = 6 N D), one row per budget:
        ``budget_flops``, ``n_opt``, ``d_opt``, ``tokens_per_param``.

        ``values`` is a mapping of a, b, alpha, beta (e.g. ``Fit.values``), or an (n_samples, 5) array of
        theta rows (e.g. ``Fit.bootstrap``): then one row per sample and budget, with a ``sample`` column.
        """
        budgets = np.atleast_1d(np.asarray(compute, dtype=float))
        if isinstance(values, Mapping):
            n_opt, d_opt = (np.atleast_1d(v) for v in compute_optimal(values, budgets))
            frame = {"budget_flops": budgets, "n_opt": n_opt, "d_opt": d_opt}
        else:
            rows = np.atleast_2d(np.asarray(values, dtype=float))
            n_opt, d_opt = compute_optimal(rows[:, None, :], budgets[None, :])
            samples = np.repeat(np.arange(rows.shape[0]), budgets.size)
            frame = {
                "sample": samples,
                "budget_flops": np.tile(budgets, rows.shape[0]),
                "n_opt": n_opt.ravel(),
                "d_opt": d_opt.ravel(),
            }
        out = pd.DataFrame(frame)
        out["tokens_per_param"] = out["d_opt"] / out["n_opt"]
        return out


def natural_values(values: Mapping[str, float]) -> dict[str, float]:
    """A, B, E, alpha, beta (and a = beta/(alpha+beta), the exponent of N* ~ C^a) from a, b, e."""
    out = {"A": float(np.exp(values["a"])), "B": float(np.exp(values["b"])), "E": float(np.exp(values["e"]))}
    out["alpha"], out["beta"] = float(values["alpha"]), float(values["beta"])
    out["a_exponent"] = out["beta"] / (out["alpha"] + out["beta"])
    return out


def _vectors(values: Mapping[str, ArrayLike] | ArrayLike) -> tuple[np.ndarray, ...]:
    """(a, b, alpha, beta) as arrays from a mapping, or from an (n, 5) array of theta rows."""
    if isinstance(values, Mapping):
        return tuple(np.asarray(values[k], dtype=float) for k in ("a", "b", "alpha", "beta"))
    arr = np.asarray(values, dtype=float)
    return arr[..., 0], arr[..., 1], arr[..., 3], arr[..., 4]


def compute_optimal(
    values: Mapping[str, ArrayLike] | ArrayLike, flops: ArrayLike
) -> tuple[np.ndarray, np.ndarray]:
    """(N*, D*) minimising L at compute ``flops`` (C = 6 N D). ``values``: a mapping of a, b, alpha,
    beta (e.g. ``Fit.values``) or an (n, 5) array of theta rows (e.g. ``Fit.bootstrap``), broadcast
    against ``flops``."""
    a, b, alpha, beta = _vectors(values)
    c6 = np.asarray(flops, dtype=float) / 6.0
    s = alpha + beta
    log_g = (np.log(alpha) + a - np.log(beta) - b) / s
    n_opt = np.exp(log_g + beta / s * np.log(c6))
    return n_opt, c6 / n_opt


def tokens_per_parameter(values: Mapping[str, ArrayLike] | ArrayLike, flops: ArrayLike) -> np.ndarray:
    """D*/N* at compute ``flops`` on the compute-optimal frontier."""
    n_opt, d_opt = compute_optimal(values, flops)
    return d_opt / n_opt
