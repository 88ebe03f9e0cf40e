"""Loss-to-downstream-error law of Gadre et al. 2024 (arXiv:2403.08540, eq. 5):

    Err(L) = eps - k * exp(-gamma * L)

``L`` is a validation loss (nats per token; Gadre et al. use C4 eval loss), ``Err`` an average top-1
error in [0, 1] (their 17-task average, error = 1 - accuracy). Since ``exp(-gamma L) = PP^-gamma``,
this is a power law in perplexity; ``eps`` is the error as the loss grows (near random chance).
Gadre et al. fit it with one ``curve_fit`` (least squares on the raw error): use
``fit_law(law, data, objective="lsq")``. Chain it after a loss law with ``scalefit.predict.chains``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from scalefit.conventions import run_labels
from scalefit.laws._static import BatchedLaw
from scalefit.laws.base import Design, Param, TableFeatures

__all__ = ["DownstreamLaw"]


class DownstreamLaw(BatchedLaw):
    """``Err = eps - k exp(-gamma L)``; parameters eps, k, gamma. Reads columns ``loss`` and ``err``."""

    name: ClassVar[str] = "downstream"
    kind: ClassVar[str] = "map"

    def __init__(self, *, loss: str = "loss", err: str = "err") -> None:
        self.loss, self.err = loss, err

    def config(self) -> dict[str, str]:
        return {"loss": self.loss, "err": self.err}

    def parameters(self) -> tuple[Param, ...]:
        return (
            Param("eps", 0.0, 10.0, log=True, grid=(0.6, 0.8, 0.9, 1.0), doc="error as loss grows"),
            Param("k", 0.0, 1e6, log=True, grid=(0.3, 1.0, 3.0, 10.0), doc="scale"),
            Param("gamma", 0.0, 20.0, log=True, grid=(0.2, 0.5, 1.0, 2.0), doc="exponent in perplexity"),
        )

    def floor(self, values: Mapping[str, float]) -> float | None:
        return None

    def features(self) -> TableFeatures:
        return TableFeatures(columns=(self.loss,), target=(self.err,))

    def table_design(self, frame: pd.DataFrame, *, predict: bool = False) -> Design:
        loss = frame[self.loss].to_numpy(float)
        labels = run_labels(frame)
        y = None if predict or self.err not in frame else frame[self.err].to_numpy(float)
        keys = pd.DataFrame({"run_id": labels, "loss": loss})
        return Design(x={"loss": loss}, y=y, groups=labels, keys=keys)

    @staticmethod
    def curve(theta: ArrayLike, loss: ArrayLike) -> np.ndarray:
        """``eps - k exp(-gamma L)`` for theta (3,) or (k, 3) and losses (n,) -> (n,) or (k, n)."""
        theta = np.asarray(theta, dtype=float)
        eps, k, gamma = (theta[..., j, None] for j in range(3))
        return eps - k * np.exp(-gamma * np.atleast_1d(np.asarray(loss, dtype=float)))

    def predict(self, theta: np.ndarray, design: Design) -> np.ndarray:
        return self.curve(theta, design.x["loss"])

    def jacobian_many(self, thetas: np.ndarray, design: Design) -> np.ndarray:
        thetas = np.atleast_2d(np.asarray(thetas, dtype=float))
        k, gamma = thetas[:, 1, None], thetas[:, 2, None]
        loss = design.x["loss"]
        e = np.exp(-gamma * loss)
        return np.stack([np.ones_like(e), -e, k * loss * e], axis=-1)
