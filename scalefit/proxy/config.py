"""Frozen, validated configuration of one proxy training run, and the model size ladder.

``RunConfig`` is everything that determines a run's loss curve; its ``run_id`` is a short stable hash of
the canonical JSON (``to_dict`` with sorted keys), so the same config always lands in the same store
directory (which is what makes restarts resume instead of starting over). Every dataclass validates in
``__post_init__`` and raises ``ConfigError(field=...)`` before any training starts. No torch here: sweeps
and the Ray driver build configs without importing the trainer.

Units: ``batch_size`` is sequences per optimizer step, so tokens per step = ``batch_size * context``.
Steps are 0-indexed optimizer updates; ``schedule(s)`` is the LR of update ``s`` (scalefit.schedules).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from scalefit import schedules
from scalefit.conventions import ModelShape
from scalefit.errors import ConfigError
from scalefit.schedules import Schedule

__all__ = ["ModelConfig", "DataConfig", "Branch", "RunConfig", "MODEL_PRESETS", "ladder", "preset"]
__all__ += ["BUILTIN_DATASETS", "FLOP_CONVENTIONS"]

BUILTIN_DATASETS = ("python-stdlib", "python-docs", "shakespeare", "shakespeare-folio")
# "<flops>:<params>" in the terms of scalefit.conventions: 6N over non-embedding parameters (Kaplan), or
# 6N over non-embedding + head parameters plus the attention term (Porian's "standard" count).
FLOP_CONVENTIONS = ("6N:non_embedding", "6N+attn:standard", "6N:total", "6N+attn:total")


def check(ok: bool, message: str, field: str, value: Any, fix: str | None = None) -> None:
    """Raise ``ConfigError(field=...)`` unless ``ok``."""
    if not ok:
        raise ConfigError(message, field=field, value=value, fix=fix)


def check_positive_int(name: str, value: Any, *, allow_zero: bool = False) -> None:
    ok = isinstance(value, int) and not isinstance(value, bool) and (value > 0 or allow_zero and value == 0)
    check(ok, "must be a non-negative integer" if allow_zero else "must be a positive integer", name, value)


def check_choice(name: str, value: Any, choices: tuple) -> None:
    check(value in choices, f"unknown {name.split('.')[-1]}", name, value, f"use one of {choices}")


def is_token_files(spec: str) -> bool:
    """Whether a dataset spec names token files (paths) rather than a built-in dataset."""
    return any(part.strip().endswith(".bin") or "/" in part for part in spec.split(","))


def check_dataset(name: str, spec: Any) -> None:
    ok = isinstance(spec, str) and (spec in BUILTIN_DATASETS or is_token_files(spec))
    fix = f"use one of {BUILTIN_DATASETS} or comma-separated paths to .bin token files"
    check(ok, "unknown dataset", name, spec, fix)


@dataclass(frozen=True)
class ModelConfig:
    """Decoder-only transformer shape. ``vocab_size`` must cover the tokenizer (256 for bytes)."""

    n_layer: int
    d_model: int
    n_head: int
    context: int
    vocab_size: int = 256
    pos: str = "rope"  # "rope" (rotary, no parameters) | "learned" (context x d_model table)
    tie_embeddings: bool = True  # output head shares the token embedding matrix
    mlp_ratio: int = 4  # d_ff = mlp_ratio * d_model

    def __post_init__(self) -> None:
        for name in ("n_layer", "d_model", "n_head", "context", "vocab_size", "mlp_ratio"):
            check_positive_int(f"model.{name}", getattr(self, name))
        pair, fix = (self.n_head, self.d_model), "choose n_head among the divisors of d_model"
        check(self.d_model % self.n_head == 0, "n_head must divide d_model", "model.n_head", pair, fix)
        hd, fix = self.d_model // self.n_head, "make d_model / n_head even"
        check(
            self.pos != "rope" or hd % 2 == 0,
            "rotary positions need an even head dim",
            "model.n_head",
            hd,
            fix,
        )
        check_choice("model.pos", self.pos, ("rope", "learned"))

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    def shape(self) -> ModelShape:
        """The model as a counting shape (parameters and FLOPs under any ``scalefit.conventions`` rule)."""
        return ModelShape(
            n_layer=self.n_layer,
            d_model=self.d_model,
            vocab_size=self.vocab_size,
            context=self.context,
            d_ff=self.mlp_ratio * self.d_model,
            tied=self.tie_embeddings,
            learned_pos=self.pos == "learned",
        )


@dataclass(frozen=True)
class DataConfig:
    """Training text and evaluation sets.

    ``dataset`` is a built-in name (BUILTIN_DATASETS) or token files: comma-separated paths to flat
    ``.bin`` token arrays of ``token_dtype`` (a directory holding ``train.bin`` and ``val.bin`` works too).
    The held-out split of ``dataset`` is always evaluated; ``eval_datasets`` adds more (same tokenizer).
    """

    dataset: str = "python-stdlib"
    tokenizer: str = "byte"  # "byte" (vocab 256) | "bpe" (trained locally on the train split)
    eval_datasets: tuple[str, ...] = ()
    val_fraction: float = 0.1  # fraction of files held out (deterministic, by file name hash)
    bpe_vocab_size: int = 4096
    token_dtype: str = "uint16"  # dtype of user token files

    def __post_init__(self) -> None:
        object.__setattr__(self, "eval_datasets", tuple(self.eval_datasets))
        check_dataset("data.dataset", self.dataset)
        for name in self.eval_datasets:
            check_dataset("data.eval_datasets", name)
        check_choice("data.tokenizer", self.tokenizer, ("byte", "bpe"))
        check(0.0 < self.val_fraction < 0.5, "must lie in (0, 0.5)", "data.val_fraction", self.val_fraction)
        check_positive_int("data.bpe_vocab_size", self.bpe_vocab_size)
        check(self.bpe_vocab_size > 256, "must exceed 256", "data.bpe_vocab_size", self.bpe_vocab_size)
        check_choice("data.token_dtype", self.token_dtype, ("uint8", "uint16", "uint32"))

    @property
    def vocab_size(self) -> int | None:
        """Tokenizer vocabulary for built-in datasets (None for user token files: unknown here)."""
        if self.tokenizer == "bpe":
            return self.bpe_vocab_size
        return 256 if self.dataset in BUILTIN_DATASETS else None


@dataclass(frozen=True)
class Branch:
    """Start from the checkpoint of run ``trunk_run_id`` at step ``step`` (stored under the same root)."""

    trunk_run_id: str
    step: int

    def __post_init__(self) -> None:
        rid = self.trunk_run_id
        check(isinstance(rid, str) and bool(rid), "must be a run id", "branch_from.trunk_run_id", rid)
        check_positive_int("branch_from.step", self.step)


@dataclass(frozen=True)
class RunConfig:
    """One proxy run. ``steps`` defaults to (and must equal) ``schedule.total_steps``."""

    model: ModelConfig
    data: DataConfig
    schedule: Schedule
    batch_size: int
    steps: int | None = None
    seed: int = 0
    eval_every: int = 100  # evaluate every k steps (and at the last step); 0 disables evals
    eval_batches: int = 4  # batches per eval set, the same fixed batches at every eval
    checkpoint_every: int = 500  # 0: only the final checkpoint
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:N" | "mps"
    dtype: str = "auto"  # "auto" (bf16 autocast on CUDA, fp32 elsewhere) | "float32" | "bfloat16"
    compile: bool = False
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    grad_clip: float = 1.0  # max global grad norm; 0 disables clipping
    branch_from: Branch | None = None
    sweep: str = ""
    flops_convention: str = "6N+attn:standard"

    def __post_init__(self) -> None:
        _check_types(self)
        total = int(self.schedule.total_steps)
        object.__setattr__(self, "steps", total if self.steps is None else self.steps)
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        check_positive_int("steps", self.steps)
        fix = "leave steps unset or change the schedule"
        check(self.steps == total, "must equal schedule.total_steps", "steps", (self.steps, total), fix)
        peak = float(self.schedule.peak_lr)
        check(peak > 0, "peak LR must be positive", "schedule.peak_lr", peak)
        check_positive_int("batch_size", self.batch_size)
        for name in ("seed", "eval_every", "eval_batches", "checkpoint_every"):
            check_positive_int(name, getattr(self, name), allow_zero=True)
        ok = self.eval_every == 0 or self.eval_batches > 0
        check(ok, "must be positive when evaluating", "eval_batches", self.eval_batches)
        _check_optimizer(self)
        _check_runtime(self)
        if self.branch_from is not None:
            at, fix = self.branch_from.step, f"use a step below {self.steps}"
            check(at < self.steps, "branch step must lie inside the run", "branch_from.step", at, fix)

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.model.context

    @property
    def run_id(self) -> str:
        """12 hex characters of the SHA-256 of the canonical config JSON (stable across processes)."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict; ``RunConfig.from_dict`` inverts it exactly."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["model"], out["data"] = asdict(self.model), asdict(self.data)
        out["data"]["eval_datasets"] = list(self.data.eval_datasets)
        out["schedule"] = self.schedule.to_dict()
        out["betas"] = list(self.betas)
        out["branch_from"] = None if self.branch_from is None else asdict(self.branch_from)
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        fix = f"use fields of RunConfig: {sorted(known)}"
        check(not unknown, "unknown run config field", unknown[0] if unknown else "", unknown, fix)
        kw = dict(d)
        kw["model"] = ModelConfig(**d["model"])
        kw["data"] = DataConfig(**{**d["data"], "eval_datasets": tuple(d["data"].get("eval_datasets", ()))})
        kw["schedule"] = schedules.from_dict(d["schedule"])
        kw["betas"] = tuple(d.get("betas", (0.9, 0.95)))
        branch = d.get("branch_from")
        kw["branch_from"] = None if branch is None else Branch(**branch)
        return cls(**kw)

    @classmethod
    def from_json(cls, text: str) -> RunConfig:
        return cls.from_dict(json.loads(text))

    def replace(self, **changes: Any) -> RunConfig:
        """A copy with ``changes``; ``steps`` follows a new schedule unless given."""
        if "schedule" in changes and "steps" not in changes:
            changes["steps"] = None
        return replace(self, **changes)


def _check_types(cfg: RunConfig) -> None:
    check(isinstance(cfg.model, ModelConfig), "must be a ModelConfig", "model", type(cfg.model).__name__)
    check(isinstance(cfg.data, DataConfig), "must be a DataConfig", "data", type(cfg.data).__name__)
    ok = hasattr(cfg.schedule, "total_steps") and callable(cfg.schedule)
    check(ok, "must be a scalefit.schedules.Schedule", "schedule", type(cfg.schedule).__name__)
    vocab = cfg.data.vocab_size
    ok, fix = vocab is None or cfg.model.vocab_size >= vocab, f"use vocab_size >= {vocab}"
    check(ok, "smaller than the tokenizer's vocabulary", "model.vocab_size", cfg.model.vocab_size, fix)


def _check_optimizer(cfg: RunConfig) -> None:
    check(cfg.weight_decay >= 0, "must be >= 0", "weight_decay", cfg.weight_decay)
    check(cfg.grad_clip >= 0, "must be >= 0 (0 disables clipping)", "grad_clip", cfg.grad_clip)
    ok = len(cfg.betas) == 2 and all(0 <= b < 1 for b in cfg.betas)
    check(ok, "two values in [0, 1)", "betas", cfg.betas)
    check(cfg.eps > 0, "must be positive", "eps", cfg.eps)


def _check_runtime(cfg: RunConfig) -> None:
    dev = cfg.device
    ok = dev in ("auto", "cpu", "cuda", "mps") or (dev.startswith("cuda:") and dev[5:].isdigit())
    check(ok, "unknown device", "device", dev, "use auto, cpu, cuda, cuda:N or mps")
    check_choice("dtype", cfg.dtype, ("auto", "float32", "bfloat16"))
    check_choice("flops_convention", cfg.flops_convention, FLOP_CONVENTIONS)
    check(isinstance(cfg.sweep, str), "must be a string", "sweep", cfg.sweep)


# name -> (n_layer, d_model, n_head, context). Width grows ~1.6x per rung, depth slowly, head_dim 32-128,
# d_model / n_layer between 32 and 100 (Kaplan: loss depends weakly on shape within this band).
_LADDER: dict[str, tuple[int, int, int, int]] = {
    "100k": (2, 64, 2, 256),
    "300k": (3, 96, 3, 256),
    "1m": (4, 144, 4, 256),
    "3m": (6, 192, 6, 512),
    "10m": (8, 320, 5, 512),
    "30m": (10, 512, 8, 1024),
    "100m": (12, 768, 12, 1024),
    "300m": (24, 1024, 16, 1024),
    "1b": (20, 2048, 16, 2048),
}
MODEL_PRESETS: dict[str, ModelConfig] = {
    name: ModelConfig(n_layer=l, d_model=d, n_head=h, context=c) for name, (l, d, h, c) in _LADDER.items()
}


def preset(name: str, **changes: Any) -> ModelConfig:
    """The preset ``name`` (e.g. "10m", ~non-embedding parameters) with optional field changes."""
    if name not in MODEL_PRESETS:
        raise ConfigError(
            "unknown model preset", field="model", value=name, fix=f"use one of {list(MODEL_PRESETS)}"
        )
    return replace(MODEL_PRESETS[name], **changes)


def ladder(lo: str = "100k", hi: str = "1b", **changes: Any) -> tuple[ModelConfig, ...]:
    """Presets from ``lo`` to ``hi`` inclusive, smallest first, each with ``changes`` applied."""
    names = list(MODEL_PRESETS)
    for end in (lo, hi):
        preset(end)
    return tuple(preset(n, **changes) for n in names[names.index(lo) : names.index(hi) + 1])
