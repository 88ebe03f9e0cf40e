"""TensorBoard event files -> Curves, read with tensorboard's EventAccumulator.

tensorboard is an optional extra (``pip install "scalefit[tensorboard]"``), imported only when a log is
read, so the rest of the store works without it; when it is missing, a `DataError` says how to install it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from scalefit.errors import DataError
from scalefit.store.curves import Curves
from scalefit.store.importers._common import (
    HF_NOTE,
    LOSS_CANDIDATES,
    RunLog,
    ScheduleSpec,
    assemble,
    check_step_base,
    eval_loss_names,
    first_present,
    lr_candidate,
)

__all__ = ["import_tensorboard"]


def _accumulator(path: Path) -> Any:
    try:  # local: tensorboard is the optional [tensorboard] extra, not a base dependency
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError as exc:
        raise DataError(
            "reading TensorBoard logs needs the tensorboard package, which is not installed",
            file=str(path),
            fix='pip install "scalefit[tensorboard]"',
        ) from exc
    acc = EventAccumulator(str(path), size_guidance={"scalars": 0})
    try:
        acc.Reload()
    except Exception as exc:  # tensorboard raises several kinds on corrupt files
        raise DataError(
            f"cannot read the event file ({exc})", file=str(path), fix="check the log directory"
        ) from exc
    return acc


def _scalars(acc: Any, tag: str) -> pd.DataFrame:
    """(step, value) of a tag; a step written twice (restarted run) keeps the later write (wall time)."""
    events = acc.Scalars(tag)
    df = pd.DataFrame(
        {
            "wall": [e.wall_time for e in events],
            "step": [e.step for e in events],
            "value": [e.value for e in events],
        }
    )
    df = df.sort_values("wall", kind="stable").drop_duplicates("step", keep="last")
    return df.sort_values("step").reset_index(drop=True)


def _run_dirs(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DataError("not found", file=str(path), fix="give a TensorBoard log directory or event file")
    dirs = sorted({p.parent for p in path.rglob("events.out.tfevents.*")})
    if not dirs:
        raise DataError("no TensorBoard event files", file=str(path), fix="point at the run's log directory")
    return dirs


def _hf_tags(tags: list[str]) -> bool:
    """Tags the Hugging Face Trainer writes (its TensorBoard callback prefixes train metrics ``train/``)."""
    return "train/learning_rate" in tags or "train/epoch" in tags


def _observed(acc: Any, tag: str, shift: int) -> pd.DataFrame:
    sc = _scalars(acc, tag)
    return pd.DataFrame({"step": sc["step"] + shift, "value": sc["value"].astype(float)})


def import_tensorboard(
    path: str | os.PathLike,
    *,
    run_id: str | None = None,
    loss_tag: str | None = None,
    lr_tag: str | None = None,
    schedule: ScheduleSpec = None,
    eval_tags: Mapping[str, str] | Sequence[str] | None = None,
    step_base: str = "auto",
    lr_rtol: float = 1e-6,
) -> Curves:
    """Curves from a TensorBoard log directory (each folder with event files is one run) or one file.

    Run ids are the folder names relative to ``path`` (``run_id`` overrides a single run's). Tags default
    to the usual train-loss tags (``train/loss`` of Hugging Face, ``train_loss`` of Lightning, ``loss``, ...)
    and LR tags (``train/learning_rate``, ``lr``, Lightning's ``lr-<Optimizer>``); ``lr_tag="none"``: no
    LR. ``eval_tags``: tags to import as evals, a list or a {tag: dataset} mapping (default: the tags whose
    name says eval/val loss, each its own dataset). ``step_base``: ``auto`` (Hugging Face logs, told by
    their ``train/learning_rate`` or ``train/epoch`` tag, get the rule in `_common`), ``0`` or ``hf``.
    With a ``schedule`` a logged LR is checked against it; TensorBoard stores float32, so to ``lr_rtol``
    (default 1e-6). Every run gets an ``import_summary``.
    """
    check_step_base(step_base)
    root = Path(path)
    dirs = _run_dirs(root)
    logs = []
    for d in dirs:
        acc = _accumulator(d)
        tags = sorted(acc.Tags().get("scalars", []))
        rid = (
            run_id if run_id and len(dirs) == 1 else (d.relative_to(root).as_posix() if d != root else d.name)
        )
        file = str(d)
        for given, what, flag in ((loss_tag, "loss", "loss_tag="), (lr_tag, "LR", "lr_tag=")):
            if given is not None and given.lower() != "none" and given not in tags:
                raise DataError(
                    f"no {what} tag {given!r}",
                    file=file,
                    run_id=rid,
                    column=given,
                    fix=f"name it with {flag} (have {tags})",
                )
        loss_name = loss_tag or first_present(tags, LOSS_CANDIDATES, "loss", file)
        lr_name = None if lr_tag is not None and lr_tag.lower() == "none" else (lr_tag or lr_candidate(tags))
        hf = step_base == "hf" or (step_base == "auto" and _hf_tags(tags))
        evals = _tag_map(eval_tags, tags, {loss_name, lr_name}, file, rid)
        ev = [
            _observed(acc, tag, 0).rename(columns={"value": "eval_loss"}).assign(dataset=dataset)
            for tag, dataset in evals.items()
        ]
        notes = ["step from the event steps" + (f" ({HF_NOTE})" if hf else "")]
        notes += [f"loss from tag {loss_name!r}", f"LR from tag {lr_name!r}" if lr_name else "no LR tag"]
        logs.append(
            RunLog(
                run_id=rid,
                file=file,
                loss=_observed(acc, loss_name, -1 if hf else 0),
                lr=_observed(acc, lr_name, 0) if lr_name else pd.DataFrame(columns=["step", "value"]),
                evals=pd.concat(ev, ignore_index=True)
                if ev
                else pd.DataFrame(columns=["step", "eval_loss", "dataset"]),
                notes=notes,
                ignored=[t for t in tags if t not in {loss_name, lr_name, *evals}],
            )
        )
    return assemble(logs, schedule, lr_rtol=lr_rtol, source=str(root))


def _tag_map(
    eval_tags: Mapping[str, str] | Sequence[str] | None,
    tags: list[str],
    exclude: set[str | None],
    file: str,
    rid: str,
) -> dict[str, str]:
    if eval_tags is None:
        return {t: t for t in eval_loss_names(tags, exclude={t for t in exclude if t})}
    wanted = dict(eval_tags) if isinstance(eval_tags, Mapping) else {t: t for t in eval_tags}
    for tag in wanted:
        if tag not in tags:
            raise DataError(
                f"no eval tag {tag!r}",
                file=file,
                run_id=rid,
                column=tag,
                fix=f"name one of {tags} with eval_tags=",
            )
    return {str(k): str(v) for k, v in wanted.items()}
