"""Parameter and FLOP counting conventions, explicit and recorded with every static-law fit.

Scaling exponents depend on how N and C are counted (Kaplan et al. 2020 vs Hoffmann et al. 2022; Porian
et al. 2024 trace most of the 0.73-vs-0.50 discrepancy to this). So a static law takes a ``Counting``
(``params`` and ``flops``) as a structural option; it lands in ``Fit.law_config`` and travels with the fit.

Parameter counts (``Counting.params``), for a decoder-only transformer of ``ModelShape``:
- ``"non_embedding"`` (Kaplan): the transformer blocks only, ``n_layer * (4 d^2 + 2 d d_ff + 2 d) + d``
  (attention q/k/v/o, MLP in/out, the weights of two norms per block and the final norm; no biases).
  With ``d_ff = 4 d`` this is Kaplan's ``12 n_layer d^2`` plus the norm weights.
- ``"standard"`` (Porian): non-embedding plus the output head / last layer, ``+ vocab * d``.
- ``"total"`` (Hoffmann): every parameter: non-embedding + token embedding ``vocab * d`` + learned
  position embedding ``context * d`` (if any) + the head when it is not tied to the embedding.

FLOP counts per token of training (``Counting.flops``), forward + backward = 3 x forward:
- ``"6N"``: ``6 * N`` with N in the chosen parameter convention;
- ``"6N+attn"``: ``6 * N + 6 * n_layer * context * d`` (Kaplan's attention term, ``2 n_layer n_ctx d``
  forward, with the full context as the attention span).
Compute of a run: ``C = flops_per_token * D`` for D training tokens (so ``C = 6 N D`` under ``"6N"``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from scalefit.errors import ConfigError, DataError

__all__ = [
    "PARAM_COUNTS",
    "FLOP_COUNTS",
    "Counting",
    "ModelShape",
    "convert_params",
    "convert_compute",
    "compute",
    "tokens_for_compute",
    "static_table",
    "run_labels",
]

PARAM_COUNTS = ("total", "non_embedding", "standard")
FLOP_COUNTS = ("6N", "6N+attn")
_SHAPE_COLUMNS = ("n_layer", "d_model", "vocab_size", "context")


@dataclass(frozen=True)
class Counting:
    """How N and C were counted: ``params`` in PARAM_COUNTS, ``flops`` in FLOP_COUNTS."""

    params: str = "total"
    flops: str = "6N"

    def __post_init__(self) -> None:
        if self.params not in PARAM_COUNTS:
            raise ConfigError(
                "unknown parameter-counting convention",
                field="params",
                value=self.params,
                fix=f"use one of {', '.join(PARAM_COUNTS)}",
            )
        if self.flops not in FLOP_COUNTS:
            raise ConfigError(
                "unknown FLOP-counting convention",
                field="flops",
                value=self.flops,
                fix=f"use one of {', '.join(FLOP_COUNTS)}",
            )

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def coerce(cls, value: Counting | dict[str, Any] | None) -> Counting:
        """A Counting from a Counting, a dict (``to_dict`` output) or None (the default)."""
        if value is None:
            return cls()
        if isinstance(value, Counting):
            return value
        return cls(**value)


@dataclass(frozen=True)
class ModelShape:
    """The shape of a decoder-only transformer, enough to count its parameters and FLOPs."""

    n_layer: int
    d_model: int
    vocab_size: int
    context: int
    d_ff: int | None = None
    tied: bool = True
    learned_pos: bool = False

    def __post_init__(self) -> None:
        for name in ("n_layer", "d_model", "vocab_size", "context"):
            value = getattr(self, name)
            if int(value) != value or value <= 0:
                raise ConfigError("must be a positive integer", field=name, value=value)
        if self.d_ff is not None and self.d_ff <= 0:
            raise ConfigError("must be a positive integer", field="d_ff", value=self.d_ff)

    @property
    def ff(self) -> int:
        return 4 * self.d_model if self.d_ff is None else int(self.d_ff)

    def n_params(self, params: str = "total") -> int:
        """The parameter count under convention ``params`` (see the module docstring)."""
        Counting(params=params)
        d = self.d_model
        non_embedding = self.n_layer * (4 * d * d + 2 * d * self.ff + 2 * d) + d
        head = self.vocab_size * d
        if params == "non_embedding":
            return non_embedding
        if params == "standard":
            return non_embedding + head
        position = self.context * d if self.learned_pos else 0
        return non_embedding + head + position + (0 if self.tied else head)

    def flops_per_token(self, counting: Counting | dict[str, Any] | None = None) -> float:
        """Training FLOPs per token (forward + backward) under ``counting``."""
        counting = Counting.coerce(counting)
        flops = 6.0 * self.n_params(counting.params)
        if counting.flops == "6N+attn":
            flops += 6.0 * self.n_layer * self.context * self.d_model
        return flops

    @classmethod
    def from_row(cls, row: pd.Series | dict[str, Any]) -> ModelShape:
        """A shape from a runs-table row (columns n_layer, d_model, vocab_size, context)."""
        missing = [c for c in _SHAPE_COLUMNS if c not in row]
        if missing:
            raise DataError(
                "the runs table lacks the model-shape columns needed to convert counts",
                column=missing[0],
                fix=f"give columns {', '.join(_SHAPE_COLUMNS)}",
            )
        extra = {k: row[k] for k in ("d_ff", "tied", "learned_pos") if k in row and pd.notna(row[k])}
        return cls(**{c: int(row[c]) for c in _SHAPE_COLUMNS}, **extra)


def compute(n: ArrayLike, d: ArrayLike, *, flops_per_token: ArrayLike | None = None) -> np.ndarray:
    """Training compute C in FLOPs: ``flops_per_token * D``, or ``6 N D`` when not given."""
    d = np.asarray(d, dtype=float)
    fpt = 6.0 * np.asarray(n, dtype=float) if flops_per_token is None else np.asarray(flops_per_token, float)
    return fpt * d


def tokens_for_compute(c: ArrayLike, n: ArrayLike, *, flops_per_token: ArrayLike | None = None) -> np.ndarray:
    """Tokens D that spend compute C on a model of N parameters (``C / (6 N)`` by default)."""
    c = np.asarray(c, dtype=float)
    fpt = 6.0 * np.asarray(n, dtype=float) if flops_per_token is None else np.asarray(flops_per_token, float)
    return c / fpt


def _shapes(runs: pd.DataFrame) -> list[ModelShape]:
    return [ModelShape.from_row(row) for _, row in runs.iterrows()]


def convert_params(runs: pd.DataFrame, to: str) -> np.ndarray:
    """Parameter counts of each run in ``runs`` (one row per run, shape columns) under convention ``to``."""
    return np.array([shape.n_params(to) for shape in _shapes(runs)], dtype=float)


def convert_compute(
    c: Any,
    runs: pd.DataFrame,
    *,
    src: Counting | dict[str, Any] | None,
    dst: Counting | dict[str, Any] | None,
) -> np.ndarray:
    """Compute ``c`` (one value per run of ``runs``) counted under ``src``, recounted under ``dst``.

    The token count is unchanged, so ``C_dst = C_src * fpt_dst / fpt_src`` per run.
    """
    src, dst = Counting.coerce(src), Counting.coerce(dst)
    shapes = _shapes(runs)
    ratio = np.array([s.flops_per_token(dst) / s.flops_per_token(src) for s in shapes])
    c = np.asarray(c, dtype=float)
    if c.shape != ratio.shape:
        raise DataError("one compute value per run is needed", column="flops", value=c.shape)
    return c * ratio


def static_table(data: Any, columns: tuple[str, ...], *, law: str) -> pd.DataFrame:
    """The one-row-per-run table a static law reads: a DataFrame, or ``Curves`` (its ``final()`` rows).

    Raises DataError naming the first missing column.
    """
    frame = data.final() if hasattr(data, "final") and not isinstance(data, pd.DataFrame) else data
    if not isinstance(frame, pd.DataFrame):
        raise DataError(
            f"the {law} law needs a table of runs",
            value=type(data).__name__,
            fix="pass a DataFrame or Curves",
        )
    for col in columns:
        if col not in frame.columns:
            raise DataError(
                f"the {law} law needs a column that the table lacks",
                column=col,
                fix=f"add it, or name the column to use (columns: {', '.join(map(str, frame.columns[:12]))})",
            )
    return frame.reset_index(drop=frame.index.name != "run_id")


def run_labels(frame: pd.DataFrame) -> np.ndarray:
    """A label per row: the ``run_id`` column, else ``name``, else the row position."""
    for col in ("run_id", "name"):
        if col in frame.columns:
            return frame[col].astype(str).to_numpy()
    return np.array([f"row{i}" for i in range(len(frame))])
