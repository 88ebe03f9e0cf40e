"""Optimal peak learning rate against model size and token horizon.

Two stages, as in the LR-sweep literature (e.g. DeepSeek LLM 2024, arXiv:2401.02954; Bjorck et al. 2024,
"Scaling Optimal LR Across Token Horizons", arXiv:2409.19913; Porian et al. 2024):

1. Per (N, D) cell of an LR sweep, the final loss is locally quadratic in log LR:
   ``L = c0 + c1 x + c2 x^2``, ``x = ln(peak_lr)``; the vertex ``x* = -c1 / (2 c2)`` gives LR*(N, D)
   (``cell_optima``), with a delta-method SE of ``ln LR*`` from the quadratic's covariance. Cells whose
   vertex is not a minimum (c2 <= 0) or lies outside the swept LRs are marked ``at_edge`` and left out.
2. A power law across cells: ``LR*(N, D) = c * (N / n_ref)^a * (D / d_ref)^b`` (``OptimalLRLaw``), fitted
   by the engine (Huber on log LR*, i.e. a robust log-linear regression). ``n_ref``/``d_ref`` only
   centre the regression (c is LR* at the reference size and horizon). With ``horizon=False`` b = 0;
   with ``size=False`` a = 0 (a sweep at one model size: LR* against the token horizon only).

If every size is trained at one tokens-per-parameter ratio, a and b are collinear: the engine reports
the correlation in the Fit's warnings; fit with ``horizon=False`` then.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from scalefit.conventions import Counting, static_table
from scalefit.errors import ConfigError
from scalefit.laws._static import StaticLaw
from scalefit.laws.base import Design, Param, TableFeatures

__all__ = ["OptimalLRLaw", "cell_optima", "quadratic_vertex"]


def quadratic_vertex(log_lr: np.ndarray, loss: np.ndarray) -> dict[str, float]:
    """Vertex of the quadratic in log LR: ln LR*, its SE (NaN under 5 points), loss*, curvature c2."""
    x = np.asarray(log_lr, dtype=float)
    y = np.asarray(loss, dtype=float)
    if len(x) > 4:
        coef, cov = np.polyfit(x, y, 2, cov=True)
    else:
        coef, cov = np.polyfit(x, y, 2), np.full((3, 3), np.nan)
    c2, c1, c0 = coef
    x_star = -c1 / (2 * c2) if c2 != 0 else np.nan
    grad = np.array([c1 / (2 * c2**2), -1 / (2 * c2), 0.0]) if c2 != 0 else np.full(3, np.nan)
    se = float(np.sqrt(max(grad @ cov @ grad, 0.0))) if np.all(np.isfinite(cov)) else np.nan
    edge = not (c2 > 0 and x.min() < x_star < x.max())
    return {
        "log_lr_star": float(x_star),
        "log_lr_se": se,
        "loss_star": float(c0 - c1**2 / (4 * c2)),
        "curvature": float(c2),
        "at_edge": bool(edge),
    }


def cell_optima(
    frame: pd.DataFrame, *, lr: str = "peak_lr", loss: str = "loss", by: tuple[str, ...] = ("N", "D")
) -> pd.DataFrame:
    """One row per cell (``by`` columns): lr_star, log_lr_star, log_lr_se, loss_star, curvature,
    n_lrs and at_edge. Cells with fewer than 3 distinct LRs are skipped. Non-finite losses (diverged
    runs) are dropped from their cell's quadratic."""
    table = static_table(frame, (lr, loss, *by), law="optimal-lr")
    rows = []
    for key, cell in table.groupby(list(by), sort=True):
        cell = cell[np.isfinite(cell[loss].to_numpy(float))]
        if cell[lr].nunique() < 3:
            continue
        vertex = quadratic_vertex(np.log(cell[lr].to_numpy(float)), cell[loss].to_numpy(float))
        key = key if isinstance(key, tuple) else (key,)
        rows.append({**dict(zip(by, key, strict=True)), **vertex, "n_lrs": int(cell[lr].nunique())})
    out = pd.DataFrame(rows)
    if len(out):
        out.insert(len(by), "lr_star", np.exp(out["log_lr_star"]))
    return out


class OptimalLRLaw(StaticLaw):
    """``LR* = c (N/n_ref)^a (D/d_ref)^b``, fitted to per-cell optima (or a raw sweep, see ``design``)."""

    name: ClassVar[str] = "optimal-lr"
    kind: ClassVar[str] = "static"
    options: ClassVar[tuple[str, ...]] = ("n", "d", "lr", "loss", "size", "horizon", "n_ref", "d_ref")

    def __init__(
        self,
        *,
        n: str = "N",
        d: str = "D",
        lr: str = "peak_lr",
        loss: str = "loss",
        size: bool = True,
        horizon: bool = True,
        n_ref: float = 1e8,
        d_ref: float = 1e10,
        counting: Counting | dict[str, Any] | None = None,
    ) -> None:
        if not (size or horizon):
            raise ConfigError("the law needs model size, token horizon or both", field="size", value=size)
        super().__init__(loss=loss, n=n, d=d, counting=counting)
        self.lr, self.size, self.horizon = lr, bool(size), bool(horizon)
        self.n_ref, self.d_ref = float(n_ref), float(d_ref)

    @property
    def _terms(self) -> tuple[tuple[str, str, str], ...]:
        """(parameter, design array, column) per power-law factor."""
        out = (("a", "log_n", self.n),) if self.size else ()
        return out + ((("b", "log_d", self.d),) if self.horizon else ())

    def parameters(self) -> tuple[Param, ...]:
        docs = {"a": "model-size exponent", "b": "token-horizon exponent"}
        return (Param("c", 0.0, 1e3, log=True, grid=(1e-4, 1e-3, 1e-2), doc="LR* at n_ref, d_ref"),) + tuple(
            Param(name, -5.0, 5.0, grid=(-0.5, 0.0), doc=docs[name]) for name, _, _ in self._terms
        )

    def floor(self, values: Mapping[str, float]) -> float | None:
        return None

    def features(self) -> TableFeatures:
        """The size and horizon columns in use; ``lr_star`` (or the sweep's lr and loss) is checked by
        ``table_design``."""
        return TableFeatures(columns=tuple(col for _, _, col in self._terms))

    def table_design(self, frame: pd.DataFrame, *, predict: bool = False) -> Design:
        """From a table of cells with an ``lr_star`` column, or a raw sweep (lr and loss per run)."""
        by = tuple(col for _, _, col in self._terms)
        excluded: tuple[tuple[str, str], ...] = ()
        if not predict and "lr_star" not in frame.columns:
            cells = cell_optima(frame, lr=self.lr, loss=self.loss, by=by)
            excluded = tuple(
                (f"cell {dict(r[list(by)])}", "LR* at the edge of the sweep or not a minimum")
                for _, r in cells[cells.at_edge].iterrows()
            )
            frame = cells[~cells.at_edge].reset_index(drop=True)
        refs = {"log_n": self.n_ref, "log_d": self.d_ref}
        x = {key: np.log(frame[col].to_numpy(float) / refs[key]) for _, key, col in self._terms}
        labels = np.array([f"cell{i}" for i in range(len(frame))])
        keys = frame[list(by)].reset_index(drop=True).assign(run_id=labels)
        y = frame["lr_star"].to_numpy(float) if "lr_star" in frame.columns and not predict else None
        return Design(x=x, y=y, groups=labels, keys=keys, excluded=excluded)

    def _log_pred(self, theta: np.ndarray, x: Mapping[str, np.ndarray]) -> np.ndarray:
        theta = np.asarray(theta, dtype=float)
        out = np.log(theta[..., 0, None])
        for j, (_, key, _) in enumerate(self._terms, start=1):
            out = out + theta[..., j, None] * x[key]
        return out

    def predict(self, theta: np.ndarray, design: Design) -> np.ndarray:
        return np.exp(self._log_pred(theta, design.x))

    def jacobian_many(self, thetas: np.ndarray, design: Design) -> np.ndarray:
        thetas = np.atleast_2d(np.asarray(thetas, dtype=float))
        pred = self.predict(thetas, design)
        cols = [pred / thetas[:, 0, None]] + [pred * design.x[key] for _, key, _ in self._terms]
        return np.stack(cols, axis=-1)
