"""Hägele/Schaipp JSON logs (epfml/schedules-and-scaling runs, data of fabian-sp/lr-scheduling).

Each ``*.json[.gz]`` holds ``{summary, config, name, history}``; ``history.train`` logs ``iter``,
``train_loss``, ``train_lr`` every 50 steps, ``history.val`` logs ``val_loss`` every 200. Rows are sorted
by iter and a duplicated iter (a resumed segment) keeps its last occurrence. A cooldown branch (``ann*``)
resumes from step ``b`` of a constant-LR trunk (``config.resume_from = .../<trunk name>/ckpts/<b>``): its
full curve is the trunk's rows at ``iter <= b`` followed by the branch's rows at ``iter > b`` (evals:
trunk ``iter < b``, branch ``iter >= b``). A branch from step 0 is a full run. The LR of every row is
rebuilt from `scalefit.schedules.for_schaipp_config(branch config)` and checked against the logged
``train_lr`` to ``SCHAIPP_LR_RTOL``; ``val_loss`` becomes eval dataset ``'val'`` and the final
validation loss dataset ``'final-val'`` (also the runs column ``final_val_loss``).
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scalefit.errors import DataError, ScheduleError
from scalefit.schedules import Schedule, for_schaipp_config
from scalefit.store.curves import Curves
from scalefit.store.importers._common import check_lr

__all__ = ["import_schaipp_json", "load_log", "SCHAIPP_LR_RTOL"]

SCHAIPP_LR_RTOL = 1e-6


def load_log(path: str | os.PathLike) -> dict[str, Any]:
    """The parsed JSON log (gzip or plain); DataError naming the file if unreadable or incomplete."""
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as fh:
            log = json.load(fh)
    except (OSError, EOFError, ValueError) as exc:
        raise DataError(
            f"cannot read the JSON log ({exc})", file=str(path), fix="re-download the file"
        ) from exc
    for key in ("config", "history"):
        if not isinstance(log, dict) or key not in log:
            raise DataError(
                "not a Schaipp log", file=str(path), field=key, fix="give {summary, config, name, history}"
            )
    if "train" not in log["history"]:
        raise DataError(
            "no train history", file=str(path), field="history.train", fix="the log has no train rows"
        )
    return log


def _history(log: dict, part: str, cols: tuple[str, ...], file: str) -> dict[str, np.ndarray]:
    """One history table as arrays sorted by iter, the last duplicate kept; bad columns raise naming them."""
    hist = log["history"].get(part) or {}
    out = {}
    for col in cols:
        if col not in hist:
            raise DataError("missing history column", file=file, column=f"{part}.{col}", fix="a complete log")
        try:
            out[col] = np.asarray(hist[col], dtype=float)
        except (TypeError, ValueError) as exc:
            raise DataError(f"non-numeric values ({exc})", file=file, column=f"{part}.{col}") from exc
    if len({len(v) for v in out.values()}) > 1:
        raise DataError(
            "history columns differ in length",
            file=file,
            column=part,
            value=sorted({len(v) for v in out.values()}),
        )
    it = out["iter"]
    if not np.isfinite(it).all():
        raise DataError("missing or non-finite iter", file=file, column=f"{part}.iter", fix="fix the log")
    order = np.argsort(it, kind="stable")
    sorted_it = it[order]
    keep = order[np.r_[sorted_it[1:] != sorted_it[:-1], True]]
    return {c: v[keep] for c, v in out.items()}


def _cut(table: dict[str, np.ndarray], mask: np.ndarray) -> dict[str, np.ndarray]:
    return {c: v[mask] for c, v in table.items()}


def _join(trunk: dict[str, np.ndarray], branch: dict[str, np.ndarray], bp: int, inclusive: bool) -> dict:
    """Trunk rows before the branch point (``<= bp`` if inclusive) followed by the branch's other rows."""
    t_mask = trunk["iter"] <= bp if inclusive else trunk["iter"] < bp
    b_mask = branch["iter"] > bp if inclusive else branch["iter"] >= bp
    return {c: np.concatenate([trunk[c][t_mask], branch[c][b_mask]]) for c in branch}


def _branch_point(config: dict) -> tuple[str | None, int]:
    resume = config.get("resume_from")
    if not resume:
        return None, 0
    parts = str(resume).rstrip("/").split("/")
    return parts[-3], int(parts[-1])


def _run_row(log: dict, run_id: str, sched: Schedule, path: Path, trunk: str | None, branch: int) -> dict:
    c = log["config"]
    seq = int(c.get("sequence_length", 0))
    final = (log["history"].get("final-val") or {}).get("final_val_loss") or [np.nan]
    batch = int(c.get("batch_size", 0)) * int(c.get("acc_steps", 1)) * int(c.get("world_size", 1))
    n_params = (log.get("summary") or {}).get("parameters")
    return {
        "run_id": run_id,
        "n_layer": c.get("n_layer"),
        "d_model": c.get("n_embd"),
        "n_head": c.get("n_head"),
        "context": seq,
        "vocab_size": c.get("vocab_size"),
        "n_params": n_params,
        "tokens_per_step": batch * seq,
        "schedule": str(sched),
        "peak_lr": float(c["lr"]),
        "warmup_steps": int(c["warmup_steps"]),
        "total_steps": int(c["iterations"]),
        "seed": c.get("seed"),
        "dataset": c.get("dataset"),
        "config_json": json.dumps(c, sort_keys=True),
        "family": path.name.split("_")[0],
        "scheduler": c.get("scheduler"),
        "decay_shape": _shape(c, sched),
        "cooldown_frac": float(c.get("wsd_fract_decay") or 0.0) if c.get("scheduler") == "wsd" else np.nan,
        "trunk": trunk,
        "branch_step": branch,
        "final_val_loss": float(final[-1]),
        "source_file": path.name,
    }


def _shape(config: dict, sched: Schedule) -> str:
    """'constant' for a trunk (no decay), else the decay shape: linear, 1-sqrt, cosine ..."""
    if config.get("scheduler") == "wsd" and not config.get("wsd_fract_decay"):
        return "constant"
    return str(getattr(sched, "shape", type(sched).__name__.lower()))


def _index(paths: list[Path], logs: dict[Path, dict]) -> dict[str, Path]:
    """Trunk lookup by the log's ``name`` and by the file stem."""
    index = {}
    for p in paths:
        index[p.name.removesuffix(".gz").removesuffix(".json")] = p
        index[str(logs[p].get("name"))] = p
    return index


def _one(path: Path, logs: dict[Path, dict], index: dict[str, Path]) -> tuple[dict, dict, dict]:
    log, file = logs[path], str(path)
    run_id = path.name.removesuffix(".gz").removesuffix(".json")
    train_cols = ("iter", "train_loss", "train_lr") + (
        ("grad_norm",) if "grad_norm" in log["history"]["train"] else ()
    )
    train = _history(log, "train", train_cols, file)
    val = _history(log, "val", ("iter", "val_loss"), file) if log["history"].get("val") else None
    trunk_name, bp = _branch_point(log["config"])
    trunk_id = None
    if bp > 0:
        if trunk_name not in index:
            raise DataError(
                "cooldown branch without its trunk",
                file=file,
                run_id=run_id,
                field="config.resume_from",
                value=trunk_name,
                fix="import the trunk's log together with the branch",
            )
        tpath = index[trunk_name]
        trunk_id = tpath.name.removesuffix(".gz").removesuffix(".json")
        train = _join(_history(logs[tpath], "train", train_cols, str(tpath)), train, bp, inclusive=True)
        if val is not None and logs[tpath]["history"].get("val"):
            val = _join(
                _history(logs[tpath], "val", ("iter", "val_loss"), str(tpath)), val, bp, inclusive=False
            )
    try:
        sched = for_schaipp_config(log["config"])
    except ScheduleError as exc:
        raise ScheduleError(
            exc.message, file=file, run_id=run_id, field=exc.field, value=exc.value, fix=exc.fix
        ) from exc
    steps = train["iter"].astype(np.int64)
    check_lr(steps, train["train_lr"], sched, rtol=SCHAIPP_LR_RTOL, file=file, run_id=run_id)
    grad_norm = train.get("grad_norm", np.full(len(steps), np.nan))
    rows = {"run_id": np.full(len(steps), run_id, dtype=object), "step": steps, "lr": sched(steps)}
    rows.update(loss=train["train_loss"], grad_norm=grad_norm)
    run = _run_row(log, run_id, sched, path, trunk_id, bp)
    evals = _evals(run_id, val, run["total_steps"], run["final_val_loss"])
    return rows, evals, run


def _evals(run_id: str, val: dict | None, total: int, final: float) -> dict[str, np.ndarray]:
    steps = np.r_[val["iter"] if val is not None else [], total].astype(np.int64)
    loss = np.r_[val["val_loss"] if val is not None else [], final]
    names = np.array(["val"] * (len(steps) - 1) + ["final-val"], dtype=object)
    ok = np.isfinite(loss)
    return {
        "run_id": np.full(ok.sum(), run_id, dtype=object),
        "step": steps[ok],
        "dataset": names[ok],
        "eval_loss": loss[ok],
    }


def _stack(tables: list[dict[str, np.ndarray]]) -> pd.DataFrame:
    return pd.DataFrame({c: np.concatenate([t[c] for t in tables]) for c in tables[0]})


def import_schaipp_json(
    paths: str | os.PathLike | list[str | os.PathLike], *, trunks: list[str | os.PathLike] | None = None
) -> Curves:
    """Curves (run id = file name without ``.json[.gz]``) from Schaipp logs: a file, list, or directory.

    Trunks for cooldown branches are looked up among ``paths`` and ``trunks``; the trunk runs themselves
    are returned only if they are in ``paths``.
    """
    if isinstance(paths, str | os.PathLike) and Path(paths).is_dir():
        paths = sorted(Path(paths).glob("*.json*"))
    files = [Path(p) for p in ([paths] if isinstance(paths, str | os.PathLike) else paths)]
    if not files:
        raise DataError("no log files given", file=str(paths), fix="give .json or .json.gz logs")
    extra = [Path(p) for p in trunks or []]
    logs = {p: load_log(p) for p in dict.fromkeys(files + extra)}
    index = _index(list(logs), logs)
    results = [_one(p, logs, index) for p in files]
    frame = _stack([r[0] for r in results])
    if frame["grad_norm"].isna().all():
        frame = frame.drop(columns="grad_norm")
    evals = _stack([r[1] for r in results])
    runs = pd.DataFrame([r[2] for r in results])
    source = str(paths) if isinstance(paths, str | os.PathLike) else None
    return Curves.from_frame(frame, runs=runs, evals=evals, source=source)
