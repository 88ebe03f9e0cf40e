"""The store's tables, schema version 1: the one definition of their columns and types.

``RUNS_SCHEMA`` is the runs table (one row per run, ``<root>/<folder>/run.parquet``, the folder of
``scalefit.store.run_ids.folder_name``), ``CURVES_SCHEMA`` the per-step rows, ``EVALS_SCHEMA`` the eval
rows in long form. `scalefit.store.parquet` writes and reads them; `scalefit.store.curves` takes its
run-level columns from here.
"""

from __future__ import annotations

import pyarrow as pa

__all__ = ["SCHEMA_VERSION", "STATUSES", "RUNS_SCHEMA", "CURVES_SCHEMA", "EVALS_SCHEMA", "RUN_COLUMNS"]
__all__ += ["CURVE_COLUMNS", "EVAL_COLUMNS"]

SCHEMA_VERSION = 1
STATUSES = ("ok", "running", "diverged", "failed")
_S, _I, _F = pa.string(), pa.int64(), pa.float64()
RUNS_SCHEMA = pa.schema(
    [
        ("run_id", _S),
        ("sweep", _S),
        ("n_layer", _I),
        ("d_model", _I),
        ("n_head", _I),
        ("context", _I),
        ("vocab_size", _I),
        ("n_params", _I),
        ("n_params_nonembed", _I),
        ("flops_per_token", _F),
        ("flops_convention", _S),
        ("tokens_per_step", _I),
        ("schedule", _S),
        ("peak_lr", _F),
        ("warmup_steps", _I),
        ("total_steps", _I),
        ("seed", _I),
        ("dataset", _S),
        ("status", _S),
        ("error", _S),
        ("config_json", _S),
        ("git_sha", _S),
        ("scalefit_version", _S),
        ("schema_version", _I),
    ]
)
CURVES_SCHEMA = pa.schema(
    [
        ("run_id", _S),
        ("step", _I),
        ("tokens", _I),
        ("flops", _F),
        ("lr", _F),
        ("train_loss", _F),
        ("grad_norm", _F),
        ("wall_time", _F),
        ("tokens_per_s", _F),
    ]
)
EVALS_SCHEMA = pa.schema([("run_id", _S), ("step", _I), ("dataset", _S), ("eval_loss", _F)])

RUN_COLUMNS: tuple[str, ...] = tuple(RUNS_SCHEMA.names)
CURVE_COLUMNS: tuple[str, ...] = tuple(CURVES_SCHEMA.names)
EVAL_COLUMNS: tuple[str, ...] = tuple(EVALS_SCHEMA.names)
