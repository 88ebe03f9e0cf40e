"""The proxy training loop: one run, one process, no Ray; every step logged to the Parquet store.

``train(config, store_root)`` trains ``GPT(config.model)`` with AdamW (fused on CUDA), global-norm
gradient clipping and the LR ``config.schedule(s)`` at update ``s``: the very function the fitter uses.
At step ``s`` it logs the loss of the batch of step ``s`` computed before update ``s`` (the convention of
scalefit.schedules), with ``tokens`` and ``flops`` cumulative before the update. Evals run on the model
before update ``s`` for ``s % eval_every == 0``, and once more on the final model at ``s = steps``.

Resume: a run whose ``_ckpt`` folder holds checkpoints restarts from the newest intact one (a damaged
newest checkpoint falls back to the previous one, with a warning). The rows an earlier attempt stored
at and after the resume step (curves and evals, the resume step's eval included) are removed first
(``RunWriter.truncate``) and recomputed bit-identically (batches are pure in (seed, step)), so the
stored files hold every step exactly once, also for a plain DuckDB query; a fresh start (no checkpoint)
removes an earlier attempt's rows the same way. Branch: ``config.branch_from`` starts from the trunk's
checkpoint at step ``s`` (same model, data and batch size; the branch schedule must give the trunk's
LRs before ``s``), copies the trunk's rows before ``s`` so the branch is a complete curve from step 0,
and continues with its own schedule. A NaN/inf loss stops the run as 'diverged', keeping its curve.

On a GPU (as in nanoGPT's train.py): the batch of step ``s + 1`` is gathered, pinned and copied
asynchronously while step ``s`` runs (``device_batches``); a step queues its work without waiting for the
device, and losses and grad norms are read back in one ``.tolist()`` every ``log_every`` steps. The host
syncs left: that readback, each eval set's mean, and the checkpoint's state dicts. A non-finite loss is
seen at the readback; its step, and every row before it, are recorded exactly as with a readback per
step, and the steps queued after it are discarded. Fused AdamW, bf16 autocast (``dtype="auto"``) and,
with ``config.compile``, ``torch.compile`` apply on CUDA only; on CPU the loop is the eager fp32 one.
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
from scalefit.proxy.data import Prefetch, TokenArray, check_context, eval_batch, get_batch, load_split
from scalefit.proxy.model import GPT, flops_per_token, n_params, n_params_nonembed, peak_flops
from scalefit.store.fs import ObjectPath, StorePath, store_path
from scalefit.store.parquet import RunWriter, rows_before_step

__all__ = ["RunResult", "train", "prepare_data", "resolve_device", "device_batches", "default_log_every"]

_FLUSH_SECONDS = 10.0  # rows also reach the store at every eval and checkpoint
_CUDA_LOG_EVERY = 16  # steps between loss/grad-norm readbacks on CUDA (one host sync per chunk)


@dataclass(frozen=True)
class _Pending:
    """A step queued on the device whose loss (() fp32) and grad norm (() fp32) are not yet read back."""

    step: int
    lr: float
    loss: torch.Tensor
    grad_norm: torch.Tensor


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


def default_log_every(device: torch.device) -> int:
    """Steps per loss readback: 1 on CPU (a CPU tensor's ``.item()`` waits for nothing), 16 on CUDA."""
    return _CUDA_LOG_EVERY if device.type == "cuda" else 1


def device_batches(
    arr: TokenArray, batch_size: int, context: int, seed: int, start: int, device: torch.device
) -> Prefetch[tuple[torch.Tensor, torch.Tensor]]:
    """``(step, (x, y))`` for steps ``start, start + 1, ...``: ``get_batch``'s arrays as tensors on
    ``device``, one batch ahead. On CUDA the worker thread also copies the batch into pinned memory, so
    ``.to(device, non_blocking=True)`` is an asynchronous copy that overlaps the running step."""
    pin = device.type == "cuda"

    def make(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = (torch.from_numpy(a) for a in get_batch(arr, batch_size, context, seed, step))  # (B, T) int64
        if pin:
            x, y = x.pin_memory(), y.pin_memory()
        return x.to(device, non_blocking=pin), y.to(device, non_blocking=pin)

    return Prefetch(make, start)


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

    def __init__(self, config: RunConfig, root: StorePath, progress: Callable[[dict], None] | None) -> None:
        self.cfg, self.root, self.progress = config, root, progress
        self.run_id = config.run_id
        self.train_arr, self.eval_arrs = prepare_data(config)  # fails before any training
        self.device = resolve_device(config.device)
        self.bf16 = config.dtype == "bfloat16" or (config.dtype == "auto" and self.device.type == "cuda")
        torch.manual_seed(config.seed)
        self.model = GPT(config.model).to(self.device)
        # torch.compile on CUDA only (opt-in: config.compile); on CPU the eager model, as before.
        compiled = config.compile and self.device.type == "cuda"
        self.step_model = torch.compile(self.model) if compiled else self.model
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
        found = ckpt.load_latest(self.root, self.run_id, self.device)  # skips a damaged newest one
        start = 0 if found is None else int(found[1]["step"])
        if start < self.cfg.steps:  # rows an earlier attempt stored from the start step on are redone
            self.writer.truncate(start)
        if found is None and self.cfg.branch_from is not None:
            path = ckpt.branch_point(self.root, self.cfg)
            b = self.cfg.branch_from
            for kind, rows in rows_before_step(self.root, b.trunk_run_id, b.step).items():
                append = self.writer.append if kind == "curves" else self.writer.append_evals
                append(rows.assign(run_id=self.run_id))
            found = path, ckpt.load(path, self.device)
        if found is None:
            return None
        state = found[1]
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
                loss = float(torch.stack(losses).mean())  # one host sync per eval set: the row needs it
                self.eval_rows.append({"step": step, "dataset": name, "eval_loss": loss})
        self.model.train()

    def _loss(self, x: np.ndarray, y: np.ndarray) -> torch.Tensor:
        xt, yt = (torch.from_numpy(a).to(self.device, non_blocking=True) for a in (x, y))
        return self.step_model(xt, yt)[1]

    def train_step(self, step: int, x: torch.Tensor, y: torch.Tensor) -> _Pending:
        """Update ``step`` on batch (x, y), with no host sync: loss and grad norm stay on the device."""
        cfg = self.cfg
        lr = float(cfg.schedule(step))  # a host-side function of the step: no sync
        for group in self.opt.param_groups:
            group["lr"] = lr
        with self.autocast():
            loss = self.step_model(x, y)[1]  # () fp32, nats/token
        loss.backward()
        clip = cfg.grad_clip if cfg.grad_clip > 0 else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)  # () on device, no sync
        # Updates even on a non-finite loss (no host check here): such a step marks the run diverged at
        # the next readback, and every later step is then discarded unrecorded, so its update is unused.
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return _Pending(step, lr, loss.detach(), grad_norm.detach())

    def readback(self, pending: list[_Pending], t0: float) -> tuple[list[dict[str, Any]], bool]:
        """Rows of the ``pending`` steps (run since ``t0``), appended and passed to ``progress`` in step
        order up to and including the first non-finite loss; (those rows, whether one diverged).

        Timing: the chunk's mean rate, and wall clocks spread evenly over its steps (on CUDA a step's host
        time is only when it was queued; the readback is the one point where the device is known done).
        """
        cfg, n = self.cfg, len(pending)
        values = torch.cat(
            [torch.stack([p.loss for p in pending]), torch.stack([p.grad_norm for p in pending])]
        )
        losses_norms = values.float().tolist()  # the one host sync of the chunk: 2n fp32 values
        now = time.perf_counter()
        rate = n * cfg.tokens_per_step / max(now - t0, 1e-9)
        rows = []
        for i, p in enumerate(pending):
            tokens = p.step * cfg.tokens_per_step
            row = {
                "step": p.step,
                "tokens": tokens,
                "flops": tokens * self.fpt,
                "lr": p.lr,
                "train_loss": losses_norms[i],
                "grad_norm": losses_norms[n + i],
                "wall_time": self.wall_offset + t0 + (now - t0) * (i + 1) / n - self.start_time,
                "tokens_per_s": rate,
            }
            if self.peak:
                row["mfu"] = rate * self.fpt / self.peak
            self.rows.append(row)
            rows.append(row)
            if self.progress is not None:
                self.progress(row)
            if not math.isfinite(row["train_loss"]):
                return rows, True
            self.done = p.step + 1
        return rows, False

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

    def run(self, start: int, log_every: int) -> tuple[str, int, float, float]:
        """Steps ``start..steps-1``; (status, steps done, last finite loss, mean tokens/s).

        Losses are read back every ``log_every`` steps, and always before an eval, a checkpoint or a
        timed flush, so the stored rows, the evals and the checkpoints are those of a per-step readback.
        """
        cfg, last, rates = self.cfg, math.nan, []
        pending: list[_Pending] = []  # steps queued since the last readback
        self.start_time = t0 = time.perf_counter()

        def drain() -> bool:
            """Read back the pending steps; whether one of them diverged (then the rows are flushed)."""
            nonlocal last, t0
            chunk = list(pending)
            pending.clear()  # cleared first: after an error in ``progress`` the rest is never recorded
            rows, diverged = self.readback(chunk, t0) if chunk else ([], False)
            finite = [r for r in rows if math.isfinite(r["train_loss"])]
            if finite:
                last = finite[-1]["train_loss"]
            rates.extend(r["tokens_per_s"] for r in finite)
            t0 = time.perf_counter()
            if diverged:
                self.flush()
            return diverged

        def diverged() -> tuple[str, int, float, float]:
            return "diverged", self.done, last, float(np.mean(rates or [0.0]))

        batches = device_batches(
            self.train_arr, cfg.batch_size, cfg.model.context, cfg.seed, start, self.device
        )
        try:
            with batches:
                for step, (x, y) in batches:
                    if step >= cfg.steps:
                        break
                    if cfg.eval_every and step % cfg.eval_every == 0:
                        if drain():
                            return diverged()
                        self.evaluate(step)
                        self.flush()
                        t0 = time.perf_counter()  # the eval's time is not training time
                    pending.append(self.train_step(step, x, y))
                    done = step + 1
                    ckpt_now = cfg.checkpoint_every and done % cfg.checkpoint_every == 0 and done < cfg.steps
                    flush_now = time.perf_counter() - self.last_flush > _FLUSH_SECONDS
                    if len(pending) >= log_every or ckpt_now or flush_now or done == cfg.steps:
                        if drain():
                            return diverged()
                    if ckpt_now:
                        self.save(done)
                        t0 = time.perf_counter()
                    elif flush_now:
                        self.flush()
        except Exception:
            if drain():  # a step failed with earlier steps unread: record them as per-step readback would
                return diverged()
            raise
        if cfg.eval_every:
            self.evaluate(cfg.steps)
        self.save(cfg.steps)
        return "ok", cfg.steps, last, float(np.mean(rates or [0.0]))


def train(
    config: RunConfig,
    store_root: str | Path | ObjectPath,
    *,
    progress: Callable[[dict], None] | None = None,
    log_every: int | None = None,
) -> RunResult:
    """Train (or resume, or branch) the run ``config`` and store its curve under ``store_root``.

    Config errors (ConfigError, DataError) raise before any training. Errors during training are
    recorded as status 'failed' with the traceback's last line in the runs table, and returned.
    ``progress(row)`` is called with every step's logged row (a dict), in step order, when the step's
    loss is read back: every ``log_every`` steps (default ``default_log_every``: 1 on CPU, 16 on CUDA)
    and before every eval, checkpoint and timed flush. The stored rows do not depend on ``log_every``
    (their timing columns are measurements: per readback chunk).
    """
    if log_every is not None and (
        isinstance(log_every, bool) or not isinstance(log_every, int) or log_every < 1
    ):
        raise ConfigError("must be a positive integer", field="log_every", value=log_every)
    t_start = time.perf_counter()
    loop = _Loop(config, store_path(store_root), progress)
    try:
        resumed = loop.restore()
    except BaseException:  # e.g. no intact checkpoint: the run's lease is not kept while the error travels
        loop.writer.close()
        raise
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
        every = default_log_every(loop.device) if log_every is None else log_every
        status, done, final, rate = loop.run(resumed or 0, every)
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
    rows = rows_before_step(loop.root, loop.run_id, loop.cfg.steps).get("curves")
    return math.nan if rows is None else float(rows["train_loss"].iloc[-1])
