"""The proxy training loop: one run, one process, no Ray; every step logged to the Parquet store.

``train(config, store_root)`` trains ``GPT(config.model)`` with AdamW (fused on CUDA), global-norm
gradient clipping and the LR ``config.schedule(s)`` at update ``s``: the very function the fitter uses.
At step ``s`` it logs the loss of the batch of step ``s`` computed before update ``s`` (the convention of
scalefit.schedules), with ``tokens`` and ``flops`` cumulative before the update. Evals run on the model
before update ``s`` for ``s % eval_every == 0``, and once more on the final model at ``s = steps``.

Resume: a run whose ``<root>/<run_id>/ckpt`` holds checkpoints restarts from the newest; rows written
after it are recomputed bit-identically (batches are pure in (seed, step)) and the store's "later chunk
wins" rule leaves every step exactly once. Branch: ``config.branch_from`` starts from the trunk's
checkpoint at step ``s`` (same model, data and batch size; the branch schedule must give the trunk's
LRs before ``s``), copies the trunk's rows before ``s`` so the branch is a complete curve from step 0,
and continues with its own schedule. A NaN/inf loss stops the run as 'diverged', keeping its curve.
"""

from __future__ import annotations

import contextlib
import math
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scalefit.errors import ConfigError
from scalefit.proxy import checkpoint as ckpt
from scalefit.proxy.config import RunConfig
from scalefit.proxy.data import TokenArray, check_context, eval_batch, get_batch, load_split
from scalefit.proxy.model import GPT, flops_per_token, n_params, n_params_nonembed, peak_flops
from scalefit.store.parquet import RunWriter

__all__ = ["RunResult", "train", "prepare_data", "resolve_device"]

_FLUSH_SECONDS = 10.0  # rows also reach the store at every eval and checkpoint


@dataclass(frozen=True)
class RunResult:
    """Outcome of ``train``. ``tokens_per_s`` is the mean over this process's steps."""

    run_id: str
    status: str  # 'ok' | 'diverged' | 'failed'
    steps_done: int
    final_loss: float
    tokens_per_s: float
    wall_s: float
    resumed_from: int | None  # the step training (re)started from, None for a fresh start
    error: str | None = None


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("CUDA requested but not available", field="device", value=name, fix="use cpu")
    return torch.device(name)


def prepare_data(config: RunConfig) -> tuple[TokenArray, dict[str, TokenArray]]:
    """Train split and eval splits (name -> val split); ConfigError if a split is shorter than context."""
    data, context = config.data, config.model.context
    train_arr = load_split(data, "train")
    check_context(train_arr, context, "train")
    evals = {}
    for name in dict.fromkeys((data.dataset, *data.eval_datasets)):
        evals[name] = load_split(data, "val", name)
        if config.eval_every:
            check_context(evals[name], context, "val")
    return train_arr, evals


def _run_meta(config: RunConfig) -> dict[str, Any]:
    m, s = config.model, config.schedule
    return {
        "sweep": config.sweep,
        "n_layer": m.n_layer,
        "d_model": m.d_model,
        "n_head": m.n_head,
        "context": m.context,
        "vocab_size": m.vocab_size,
        "n_params": n_params(m),
        "n_params_nonembed": n_params_nonembed(m),
        "flops_per_token": flops_per_token(m, config.flops_convention),
        "flops_convention": config.flops_convention,
        "tokens_per_step": config.tokens_per_step,
        "schedule": str(s),
        "peak_lr": float(s.peak_lr),
        "warmup_steps": int(s.warmup_steps),
        "total_steps": config.steps,
        "seed": config.seed,
        "dataset": config.data.dataset,
        "config_json": config.to_json(),
    }


def _optimizer(model: torch.nn.Module, config: RunConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices only (not on norm weights), as in nanoGPT."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": config.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    lr0 = float(config.schedule(0))
    return torch.optim.AdamW(groups, lr=lr0, betas=config.betas, eps=config.eps, fused=device.type == "cuda")


class _Loop:
    """State of one training process: model, optimizer, data, store writer, buffered rows."""

    def __init__(self, config: RunConfig, root: Path, progress: Callable[[dict], None] | None) -> None:
        self.cfg, self.root, self.progress = config, root, progress
        self.run_id = config.run_id
        self.train_arr, self.eval_arrs = prepare_data(config)  # fails before any training
        self.device = resolve_device(config.device)
        self.bf16 = config.dtype == "bfloat16" or (config.dtype == "auto" and self.device.type == "cuda")
        torch.manual_seed(config.seed)
        self.model = GPT(config.model).to(self.device)
        self.step_model = torch.compile(self.model) if config.compile else self.model
        self.opt = _optimizer(self.model, config, self.device)
        self.fpt = flops_per_token(config.model, config.flops_convention)
        self.peak = peak_flops(self.device)
        self.rows: list[dict[str, Any]] = []
        self.eval_rows: list[dict[str, Any]] = []
        self.writer = RunWriter(root, self.run_id, _run_meta(config))
        self.wall_offset, self.last_flush = 0.0, time.perf_counter()

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast (CUDA default), else a no-op: fp32 throughout."""
        if self.bf16:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def restore(self) -> int | None:
        """Load the newest own checkpoint, else the branch point; the step to start from (None: fresh)."""
        path = ckpt.latest_checkpoint(self.root, self.run_id)
        if path is None and self.cfg.branch_from is not None:
            path = ckpt.branch_point(self.root, self.cfg)
            b = self.cfg.branch_from
            for kind, rows in ckpt.trunk_rows(self.root, b.trunk_run_id, b.step).items():
                append = self.writer.append if kind == "curves" else self.writer.append_evals
                append(rows.assign(run_id=self.run_id))
        if path is None:
            return None
        state = ckpt.load(path, self.device)
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        ckpt.set_rng_state(state["rng"])
        self.wall_offset = state["wall_time"]
        return state["step"]

    def evaluate(self, step: int) -> None:
        self.model.eval()
        with torch.no_grad(), self.autocast():
            for name, arr in self.eval_arrs.items():
                losses = [
                    self._loss(*eval_batch(arr, self.cfg.batch_size, self.cfg.model.context, i))
                    for i in range(self.cfg.eval_batches)
                ]
                loss = float(torch.stack(losses).mean())
                self.eval_rows.append({"step": step, "dataset": name, "eval_loss": loss})
        self.model.train()

    def _loss(self, x: np.ndarray, y: np.ndarray) -> torch.Tensor:
        xt, yt = (torch.from_numpy(a).to(self.device, non_blocking=True) for a in (x, y))
        return self.step_model(xt, yt)[1]

    def train_step(self, step: int, t0: float) -> dict[str, Any]:
        cfg = self.cfg
        lr = float(cfg.schedule(step))
        for group in self.opt.param_groups:
            group["lr"] = lr
        with self.autocast():
            loss = self._loss(*get_batch(self.train_arr, cfg.batch_size, cfg.model.context, cfg.seed, step))
        loss.backward()
        clip = cfg.grad_clip if cfg.grad_clip > 0 else math.inf
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip))
        loss_v = float(loss.detach())
        if math.isfinite(loss_v):
            self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        now = time.perf_counter()
        tokens = step * cfg.tokens_per_step
        row = {
            "step": step,
            "tokens": tokens,
            "flops": tokens * self.fpt,
            "lr": lr,
            "train_loss": loss_v,
            "grad_norm": grad_norm,
            "wall_time": self.wall_offset + now - self.start_time,
            "tokens_per_s": cfg.tokens_per_step / max(now - t0, 1e-9),
        }
        if self.peak:
            row["mfu"] = row["tokens_per_s"] * self.fpt / self.peak
        self.rows.append(row)
        return row

    def flush(self) -> None:
        if self.rows:
            self.writer.append(self.rows)
            self.rows = []
        if self.eval_rows:
            self.writer.append_evals(self.eval_rows)
            self.eval_rows = []
        self.last_flush = time.perf_counter()

    def save(self, step: int) -> None:
        self.flush()  # rows first: a checkpoint never gets ahead of the stored curve
        ckpt.save(
            ckpt.ckpt_path(self.root, self.run_id, step),
            model=self.model,
            optimizer=self.opt,
            step=step,
            wall_time=self.wall_offset + time.perf_counter() - self.start_time,
            config_json=self.cfg.to_json(),
        )

    def run(self, start: int) -> tuple[str, int, float, float]:
        """Steps ``start..steps-1``; (status, steps done, last finite loss, mean tokens/s)."""
        cfg, last, rates = self.cfg, math.nan, []
        self.start_time = time.perf_counter()
        for step in range(start, cfg.steps):
            if cfg.eval_every and step % cfg.eval_every == 0:
                self.evaluate(step)
                self.flush()
            row = self.train_step(step, time.perf_counter())
            if self.progress is not None:
                self.progress(row)
            if not math.isfinite(row["train_loss"]):
                self.flush()
                return "diverged", step, last, float(np.mean(rates or [0.0]))
            last = row["train_loss"]
            rates.append(row["tokens_per_s"])
            done = self.done = step + 1
            if cfg.checkpoint_every and done % cfg.checkpoint_every == 0 and done < cfg.steps:
                self.save(done)
            elif time.perf_counter() - self.last_flush > _FLUSH_SECONDS:
                self.flush()
        if cfg.eval_every:
            self.evaluate(cfg.steps)
        self.save(cfg.steps)
        return "ok", cfg.steps, last, float(np.mean(rates or [0.0]))


def train(
    config: RunConfig, store_root: str | Path, *, progress: Callable[[dict], None] | None = None
) -> RunResult:
    """Train (or resume, or branch) the run ``config`` and store its curve under ``store_root``.

    Config errors (ConfigError, DataError) raise before any training. Errors during training are
    recorded as status 'failed' with the traceback's last line in the runs table, and returned.
    ``progress(row)`` is called after every step with the logged row (a dict).
    """
    t_start = time.perf_counter()
    loop = _Loop(config, Path(store_root), progress)
    resumed = loop.restore()
    if resumed is not None and resumed >= config.steps:
        loop.writer.set_status("ok")
        return RunResult(
            loop.run_id,
            "ok",
            config.steps,
            _stored_final_loss(loop),
            0.0,
            time.perf_counter() - t_start,
            resumed,
        )
    loop.done = resumed or 0
    try:
        status, done, final, rate = loop.run(resumed or 0)
    except Exception as exc:  # recorded in the store and returned, so a sweep continues
        loop.flush()
        error = traceback.format_exception_only(exc)[-1].strip()
        loop.writer.set_status("failed", error)
        return RunResult(
            loop.run_id, "failed", loop.done, math.nan, 0.0, time.perf_counter() - t_start, resumed, error
        )
    loop.writer.set_status(status, "non-finite training loss" if status == "diverged" else None)
    return RunResult(loop.run_id, status, done, final, rate, time.perf_counter() - t_start, resumed)


def _stored_final_loss(loop: _Loop) -> float:
    rows = ckpt.trunk_rows(loop.root, loop.run_id, loop.cfg.steps).get("curves")
    return math.nan if rows is None else float(rows["train_loss"].iloc[-1])
