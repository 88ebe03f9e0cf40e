"""Training checkpoints: model, optimizer, RNG states, position, written atomically.

Layout: ``<store_root>/<run folder>/_ckpt/step-<step:08d>.pt`` (the run folder of
``scalefit.store.parquet.run_dir``; ``_``: Parquet dataset readers skip the folder, so the store's tables
read as a plain dataset), where ``step`` is the number of optimizer updates done (so training resumes
at update ``step``). Every checkpoint is kept: a constant-LR trunk's
checkpoints are the branch points of its cooldown branches. The data position needs no state beyond the
step, because batches are a pure function of (seed, step) (see scalefit.proxy.data).

Files are ``torch.save`` of plain dicts of tensors and Python scalars (no pickled objects), loaded with
``weights_only=True``; they are written to a unique ``.*.tmp`` name and moved into place with
``os.replace``, so a kill mid-write never leaves a truncated checkpoint under the final name. On an
object store (a URI store root, `scalefit.store.fs`) a checkpoint is serialised in memory and written
as one object (one PUT: never partial), its digest object first. Each
checkpoint has a ``step-<step:08d>.pt.sha256`` file written before it: `load` verifies it, so a damaged
file (truncated, a flipped byte) is found. `load_latest` falls back from a damaged newest checkpoint to
the previous intact one, with a warning naming the damaged file.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import random
import re
import uuid
import warnings
import zipfile
from typing import Any

import numpy as np
import torch

from scalefit.errors import ConfigError, DataError
from scalefit.proxy.config import RunConfig
from scalefit.store.fs import ObjectPath, StorePath, sha256
from scalefit.store.parquet import run_dir

__all__ = ["ckpt_dir", "ckpt_path", "checkpoint_steps", "latest_checkpoint", "save", "load", "load_latest"]
__all__ += ["rng_state", "set_rng_state", "branch_point"]

_NAME = re.compile(r"^step-(\d{8})\.pt$")
_LEGACY = "ckpt"  # where checkpoints were before they moved to _ckpt (read, never written)


def ckpt_dir(root: str | os.PathLike | ObjectPath, run_id: str) -> StorePath:
    return run_dir(root, run_id) / "_ckpt"


def ckpt_path(root: str | os.PathLike | ObjectPath, run_id: str, step: int) -> StorePath:
    """Where the checkpoint at ``step`` is (or is written): ``_ckpt/``, or the ``ckpt/`` folder of a
    store written before the checkpoints moved out of the Parquet tree, if it is there only."""
    path = ckpt_dir(root, run_id) / f"step-{step:08d}.pt"
    legacy = run_dir(root, run_id) / _LEGACY / path.name
    return legacy if not path.exists() and legacy.exists() else path


def checkpoint_steps(root: str | os.PathLike | ObjectPath, run_id: str) -> list[int]:
    """Steps with a complete checkpoint, ascending."""
    found = set()
    for folder in (ckpt_dir(root, run_id), run_dir(root, run_id) / _LEGACY):
        if isinstance(folder, ObjectPath) or folder.is_dir():
            found.update(int(m.group(1)) for p in folder.iterdir() if (m := _NAME.match(p.name)))
    return sorted(found)


def latest_checkpoint(root: str | os.PathLike | ObjectPath, run_id: str) -> StorePath | None:
    steps = checkpoint_steps(root, run_id)
    return ckpt_path(root, run_id, steps[-1]) if steps else None


def rng_state() -> dict[str, Any]:
    """The torch (CPU and CUDA), numpy-global and python RNG states, as tensors and plain lists."""
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        "python": _to_lists(random.getstate()),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), *rest))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def _to_lists(value: Any) -> Any:
    return [_to_lists(v) for v in value] if isinstance(value, tuple) else value


def save(
    path: StorePath,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    step: int,
    wall_time: float,
    config_json: str,
) -> None:
    """Write a checkpoint of the state after ``step`` updates, atomically."""
    payload = {
        "step": int(step),
        "wall_time": float(wall_time),
        "config_json": config_json,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "rng": rng_state(),
    }
    if isinstance(path, ObjectPath):
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        data = buffer.getvalue()
        _digest_path(path).write_text(hashlib.sha256(data).hexdigest())
        path.write_bytes(data)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp, digest = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp"), _digest_path(path)
    digest_tmp = digest.with_name(f".{digest.name}.{uuid.uuid4().hex}.tmp")
    try:
        torch.save(payload, tmp)
        digest_tmp.write_text(sha256(tmp))
        os.replace(digest_tmp, digest)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
        digest_tmp.unlink(missing_ok=True)


def _digest_path(path: StorePath) -> StorePath:
    return path.with_name(path.name + ".sha256")


def load(path: StorePath, map_location: torch.device | str = "cpu") -> dict[str, Any]:
    """A checkpoint dict (``step, wall_time, config_json, model, optimizer, rng``); a damaged or
    unreadable file is a `DataError` naming it."""
    digest = _digest_path(path)
    try:
        data = path.read_bytes() if isinstance(path, ObjectPath) else None  # an object: read it once
        actual = (lambda: sha256(path)) if data is None else (lambda: hashlib.sha256(data).hexdigest())
        if digest.exists() and digest.read_text().strip() != actual():
            raise DataError(
                "damaged checkpoint (its SHA-256 differs from the one written with it)",
                file=str(path),
                fix="delete it: training resumes from the previous checkpoint",
            )
        source = path if data is None else io.BytesIO(data)
        state = torch.load(source, map_location=map_location, weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"unreadable checkpoint ({exc})", file=str(path), fix="delete it") from exc
    if not isinstance(state, dict) or not {"step", "model", "optimizer", "rng"} <= set(state):
        raise DataError("checkpoint lacks its fields", file=str(path), fix="delete it")
    return state


def load_latest(
    root: str | os.PathLike | ObjectPath, run_id: str, map_location: torch.device | str = "cpu"
) -> tuple[StorePath, dict[str, Any]] | None:
    """The newest intact checkpoint of ``run_id`` and its dict (None: the run has none).

    A damaged newer checkpoint is skipped with a warning naming it; if every checkpoint is damaged,
    `DataError` naming the newest.
    """
    steps, first_error = checkpoint_steps(root, run_id), None
    for step in reversed(steps):
        path = ckpt_path(root, run_id, step)
        try:
            return path, load(path, map_location)
        except DataError as err:
            first_error = first_error or err
            warnings.warn(f"{err}; trying the previous checkpoint", UserWarning, stacklevel=2)
    if first_error is not None:
        raise DataError(
            f"no intact checkpoint among {len(steps)}: {first_error.message}",
            file=first_error.file,
            run_id=run_id,
            fix="delete the run's _ckpt folder to train it from step 0",
        )
    return None


def branch_point(root: str | os.PathLike | ObjectPath, config: RunConfig) -> StorePath:
    """The trunk checkpoint ``config.branch_from`` names, after checking the branch may start there.

    The trunk must have a checkpoint at exactly that step, the same model, data and batch size, and a
    schedule that gives the same LR as the branch's at every earlier step (so the branch's curve is a
    curve of its own schedule from step 0).
    """
    b = config.branch_from
    path = ckpt_path(root, b.trunk_run_id, b.step)
    if not path.exists():
        have = checkpoint_steps(root, b.trunk_run_id)
        fix = f"branch at one of the trunk's checkpoint steps {have}"
        raise ConfigError(
            "no trunk checkpoint at the branch step",
            field="branch_from.step",
            value=b.step,
            run_id=b.trunk_run_id,
            fix=fix,
        )
    trunk = RunConfig.from_json(load(path)["config_json"])
    for name in ("model", "data", "batch_size"):
        if getattr(trunk, name) != getattr(config, name):
            fix = "branch with the trunk's model, data and batch size"
            raise ConfigError(
                f"branch {name} differs from the trunk's", field=name, run_id=b.trunk_run_id, fix=fix
            )
    steps = np.arange(b.step)
    if not np.allclose(trunk.schedule(steps), config.schedule(steps), rtol=1e-9, atol=0.0):
        raise ConfigError(
            "branch schedule differs from the trunk's before the branch step",
            field="schedule",
            run_id=b.trunk_run_id,
            fix="use a schedule equal to the trunk's up to branch_from.step",
        )
    return path
