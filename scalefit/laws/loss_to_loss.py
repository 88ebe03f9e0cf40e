"""Loss-to-loss prediction of Brandfonbrener et al. 2024, "Loss-to-Loss Prediction: Scaling Laws for All
Datasets" (arXiv:2411.12925): a shifted power law maps one loss onto another,

    L1 = K * (L0 - E0)^kappa + E1

for train-to-train (the losses of two models trained on different data, paired by identical N and D),
train-to-test (a model's train loss against its own test loss) and test-to-test (two test sets, paired
by N and D). E0 and E1 are the irreducible losses, normally fixed from per-dataset fits (``e0=``/``e1=``);
left as None they are fitted (E0 < min L0 is enforced in ``predict`` by flooring ``L0 - E0`` at 1e-9).

The per-dataset "Kaplan" form the paper uses for E0/E1 is ``scalefit.laws.kaplan.KaplanLaw``: a shifted
power law maps it onto another law of the same form exactly (``scalefit.predict.chains.translate_values``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from scalefit.conventions import run_labels
from scalefit.laws._static import BatchedLaw
from scalefit.laws.base import Design, Param, TableFeatures

__all__ = ["LossToLossLaw", "pair_runs", "shifted_power_lsq"]

_FLOOR = 1e-9


class LossToLossLaw(BatchedLaw):
    """``L1 = K (L0 - E0)^kappa + E1``; parameters K, kappa, then E0 and E1 where not fixed."""

    name: ClassVar[str] = "loss-to-loss"
    kind: ClassVar[str] = "map"

    def __init__(
        self, *, x: str = "loss0", y: str = "loss1", e0: float | None = None, e1: float | None = None
    ) -> None:
        self.x, self.y = x, y
        self.e0 = None if e0 is None else float(e0)
        self.e1 = None if e1 is None else float(e1)

    def config(self) -> dict[str, str | float | None]:
        return {"x": self.x, "y": self.y, "e0": self.e0, "e1": self.e1}

    def parameters(self) -> tuple[Param, ...]:
        out = [
            Param("K", 0.0, 1e6, log=True, grid=(0.3, 1.0, 3.0), doc="scale"),
            Param("kappa", 0.0, 20.0, log=True, grid=(0.5, 1.0, 1.5), doc="exponent"),
        ]
        if self.e0 is None:
            out.append(Param("E0", 0.0, 50.0, log=True, grid=(0.25, 0.5, 1.0, 1.5, 2.0), doc="offset of L0"))
        if self.e1 is None:
            out.append(Param("E1", 0.0, 50.0, log=True, grid=(0.25, 0.5, 1.0, 1.5, 2.0), doc="offset of L1"))
        return tuple(out)

    def floor(self, values: Mapping[str, float]) -> float | None:
        return self.e1 if self.e1 is not None else float(values["E1"])

    def features(self) -> TableFeatures:
        return TableFeatures(columns=(self.x,), target=(self.y,))

    def table_design(self, frame: pd.DataFrame, *, predict: bool = False) -> Design:
        x = frame[self.x].to_numpy(float)
        labels = run_labels(frame)
        y = None if predict or self.y not in frame else frame[self.y].to_numpy(float)
        return Design(x={"l0": x}, y=y, groups=labels, keys=pd.DataFrame({"run_id": labels, self.x: x}))

    def _unpack(self, theta: np.ndarray) -> tuple[np.ndarray, ...]:
        theta = np.asarray(theta, dtype=float)
        cols = [theta[..., j, None] for j in range(theta.shape[-1])]
        K, kappa = cols[0], cols[1]
        rest = iter(cols[2:])
        e0 = next(rest) if self.e0 is None else np.full_like(K, self.e0)
        e1 = next(rest) if self.e1 is None else np.full_like(K, self.e1)
        return K, kappa, e0, e1

    def predict(self, theta: np.ndarray, design: Design) -> np.ndarray:
        K, kappa, e0, e1 = self._unpack(theta)
        base = np.maximum(design.x["l0"] - e0, _FLOOR)
        return K * base**kappa + e1

    def jacobian_many(self, thetas: np.ndarray, design: Design) -> np.ndarray:
        K, kappa, e0, _ = self._unpack(np.atleast_2d(np.asarray(thetas, dtype=float)))
        diff = design.x["l0"] - e0
        base = np.maximum(diff, _FLOOR)
        power = base**kappa
        cols = [power, K * power * np.log(base)]
        if self.e0 is None:
            cols.append(np.where(diff > _FLOOR, -K * kappa * base ** (kappa - 1), 0.0))
        if self.e1 is None:
            cols.append(np.ones_like(base))
        return np.stack(cols, axis=-1)


def pair_runs(
    frame0: pd.DataFrame,
    frame1: pd.DataFrame,
    *,
    loss0: str,
    loss1: str,
    on: tuple[str, ...] = ("params", "tokens"),
) -> pd.DataFrame:
    """Train-to-train / test-to-test pairs: runs of two tables joined on identical ``on`` columns.

    Returns the ``on`` columns plus ``loss0`` (from frame0), ``loss1`` (from frame1) and any ``run_id``.
    """
    keep0 = frame0[list(on) + [loss0]].rename(columns={loss0: "loss0"})
    keep1 = frame1[list(on) + [loss1]].rename(columns={loss1: "loss1"})
    pairs = keep0.merge(keep1, on=list(on), how="inner").drop_duplicates(subset=list(on))
    pairs.insert(0, "run_id", [f"pair{i}" for i in range(len(pairs))])
    return pairs.reset_index(drop=True)


def _weighted_lines(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Slopes and intercepts of weighted least-squares lines, one per row of ``w`` (n_rows, n_points)."""
    sw, sx, sy = w.sum(axis=1), w @ x, w @ y
    sxx, sxy = w @ (x * x), w @ (x * y)
    slope = (sw * sxy - sx * sy) / (sw * sxx - sx * sx)
    return slope, (sy - slope * sx) / sw


def shifted_power_lsq(
    l0: np.ndarray,
    l1: np.ndarray,
    e0: float,
    e1: float,
    *,
    bootstrap: int = 0,
    seed: int = 0,
    ci: float = 0.95,
) -> dict[str, Any]:
    """The paper's fit with E0/E1 fixed: linear least squares of log(L1 - E1) on log(L0 - E0).

    With ``bootstrap`` > 0, pairs are resampled that many times, all refitted at once (closed form,
    vectorized), adding ``kappa_ci`` and ``K_ci`` (percentile intervals at level ``ci``).
    """
    x = np.log(np.asarray(l0, dtype=float) - e0)
    y = np.log(np.asarray(l1, dtype=float) - e1)
    kappa, log_k = _weighted_lines(x, y, np.ones((1, x.size)))
    out: dict[str, Any] = {
        "K": float(np.exp(log_k[0])),
        "kappa": float(kappa[0]),
        "E0": float(e0),
        "E1": float(e1),
    }
    if bootstrap:
        draws = np.random.default_rng(seed).integers(0, x.size, size=(bootstrap, x.size))
        counts = np.zeros((bootstrap, x.size))
        np.add.at(counts, (np.arange(bootstrap)[:, None], draws), 1.0)
        slopes, intercepts = _weighted_lines(x, y, counts)
        tail = 50.0 * (1.0 - ci)
        out["kappa_ci"] = tuple(float(v) for v in np.nanpercentile(slopes, [tail, 100 - tail]))
        out["K_ci"] = tuple(float(v) for v in np.exp(np.nanpercentile(intercepts, [tail, 100 - tail])))
    return out
