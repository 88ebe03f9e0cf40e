"""Training checkpoints: model, optimizer, RNG states, position, written atomically.

Layout: ``<store_root>/<run_id>/ckpt/step-<step:08d>.pt``, where ``step`` is the number of optimizer
updates done (so training resumes at update ``step``). Every checkpoint is kept: a constant-LR trunk's
checkpoints are the branch points of its cooldown branches. The data position needs no state beyond the
step, because batches are a pure function of (seed, step) (see scalefit.proxy.data).

Files are ``torch.save`` of plain dicts of tensors and Python scalars (no pickled objects), loaded with
``weights_only=True``; they are written to ``*.tmp`` and moved into place with ``os.replace``, so a kill
mid-write never leaves a truncated checkpoint under the final name.
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scalefit.errors import ConfigError
from scalefit.proxy.config import RunConfig

__all__ = ["ckpt_dir", "ckpt_path", "checkpoint_steps", "latest_checkpoint", "save", "load"]
__all__ += ["rng_state", "set_rng_state", "branch_point"]

_NAME = re.compile(r"^step-(\d{8})\.pt$")


def ckpt_dir(root: str | os.PathLike, run_id: str) -> Path:
    return Path(root) / run_id / "ckpt"


def ckpt_path(root: str | os.PathLike, run_id: str, step: int) -> Path:
    return ckpt_dir(root, run_id) / f"step-{step:08d}.pt"


def checkpoint_steps(root: str | os.PathLike, run_id: str) -> list[int]:
    """Steps with a complete checkpoint, ascending."""
    folder = ckpt_dir(root, run_id)
    if not folder.is_dir():
        return []
    return sorted(int(m.group(1)) for p in folder.iterdir() if (m := _NAME.match(p.name)))


def latest_checkpoint(root: str | os.PathLike, run_id: str) -> Path | None:
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
    path: Path,
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
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load(path: Path, map_location: torch.device | str = "cpu") -> dict[str, Any]:
    """A checkpoint dict (``step, wall_time, config_json, model, optimizer, rng``)."""
    return torch.load(path, map_location=map_location, weights_only=True)


def branch_point(root: str | os.PathLike, config: RunConfig) -> Path:
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
