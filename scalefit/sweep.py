"""Sweep specs: a YAML file -> a frozen, validated `SweepSpec` -> a list of `RunConfig` (no ray here).

A spec is one ``grid`` (a Cartesian product) and/or a list ``runs`` of more grids (each value a scalar
or a list), plus shared ``train`` settings, the Ray ``resources`` of one run, and the throughput assumed
by the dry-run estimate::

    sweep: smoke-cpu                      # name, recorded as RunConfig.sweep
    grid:
      model: [100k, {preset: 300k, context: 128}, {n_layer: 2, d_model: 64, n_head: 2, context: 64}]
      tokens_per_param: [20]              # exactly one of: steps, tokens, tokens_per_param
      schedule: [cosine, "wsd:decay=0.2,shape=1-sqrt"]   # peak, steps, warmup come from the grid/train
      family: [{decay: [0.1, 0.2, 0.4], shape: 1-sqrt}]  # constant trunk + WSD cooldown branches
      peak_lr: [3e-3, 1e-2]
      seed: [0]
      dataset: [shakespeare]
    train: {batch_size: 8, warmup: 0.05, eval_every: 50, checkpoint_every: 50}
    resources: {num_gpus: 0.25, num_cpus: 1, max_restarts: 3}
    estimate: {peak_flops: 989e12, mfu: 0.4}

Horizons: ``steps`` directly, else ``ceil(tokens / tokens_per_step)`` with ``tokens = tokens_per_param *
N`` (N counted as ``train.params``; default ``total``, as Hoffmann et al.). A ``family`` expands, per grid
point, into a constant-LR trunk and one WSD branch per decay fraction that starts from the trunk's
checkpoint at step ``T - L`` (``branch_from``). So that branch points fall on checkpoints, a family's
horizon T and each decay length L are rounded to multiples of ``train.checkpoint_every``. A malformed key
or value raises `ConfigError` naming its key path (e.g. ``grid.schedule[1]``) when the file is loaded.
"""

from __future__ import annotations

import itertools
import math
import os
from dataclasses import dataclass, fields, replace
from typing import Any

import yaml

from scalefit import schedules
from scalefit.config import MODEL_PRESETS, Branch, DataConfig, ModelConfig, RunConfig, preset
from scalefit.conventions import ModelShape
from scalefit.errors import ConfigError, ScalefitError

__all__ = ["SweepSpec", "Grid", "Family", "Train", "Resources", "Estimate", "load_sweep", "parse_sweep"]
__all__ += ["plan", "describe_plan"]

_HORIZONS = ("steps", "tokens", "tokens_per_param")


def _fail(message: str, key: str, value: Any = None, fix: str | None = None) -> None:
    raise ConfigError(message, field=key, value=value, fix=fix)


def _listify(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _check_keys(d: Any, allowed: tuple[str, ...], path: str) -> dict[str, Any]:
    if not isinstance(d, dict):
        _fail("must be a mapping", path or "sweep file", d)
    unknown = sorted(set(d) - set(allowed))
    if unknown:
        _fail("unknown key", f"{path}.{unknown[0]}" if path else unknown[0], d[unknown[0]], f"use {list(allowed)}")
    return d


@dataclass(frozen=True)
class Family:
    """A constant-LR trunk plus WSD cooldown branches at decay fractions ``decay`` (of the horizon)."""

    decay: tuple[float, ...]
    shape: str = "1-sqrt"
    final: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "decay", tuple(_listify(self.decay)))
        if not self.decay or not all(isinstance(f, (int, float)) and 0 < f < 1 for f in self.decay):
            _fail("decay fractions must lie in (0, 1)", "family.decay", self.decay, "e.g. decay: [0.1, 0.2]")


@dataclass(frozen=True)
class Train:
    """Settings shared by every run. ``warmup``: steps (int) or a fraction of the run (float < 1)."""

    batch_size: int = 8
    warmup: int | float = 0
    eval_every: int = 100
    checkpoint_every: int = 100
    device: str = "auto"
    tokenizer: str = "byte"
    eval_datasets: tuple[str, ...] = ()
    params: str = "total"
    extra: dict[str, Any] | None = None  # further RunConfig fields (e.g. weight_decay, compile)

    def __post_init__(self) -> None:
        object.__setattr__(self, "eval_datasets", tuple(_listify(self.eval_datasets)))
        if not (isinstance(self.warmup, (int, float)) and self.warmup >= 0):
            _fail("must be steps (int) or a fraction (< 1)", "train.warmup", self.warmup)
        if isinstance(self.warmup, float) and self.warmup >= 1:
            _fail("a float warmup is a fraction of the run, below 1", "train.warmup", self.warmup)
        if self.params not in ("total", "non_embedding", "standard"):
            _fail("unknown parameter count", "train.params", self.params, "use total, non_embedding or standard")


@dataclass(frozen=True)
class Resources:
    """Ray resources of one run's actor, the pool size, and the fault-tolerance budget."""

    num_cpus: float = 1.0
    num_gpus: float = 0.0
    max_actors: int | None = None  # default: as many as the cluster fits (and no more than runs)
    max_restarts: int = 3  # actor restarts after its process dies
    max_task_retries: int = 3  # re-runs of the interrupted run on the restarted actor (resumes)

    def __post_init__(self) -> None:
        for key in ("num_cpus", "num_gpus"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                _fail("must be a number >= 0", f"resources.{key}", value)
        if self.num_gpus > 1 and self.num_gpus != int(self.num_gpus):
            _fail("above 1 GPU must be whole GPUs", "resources.num_gpus", self.num_gpus, "use 0 < x <= 1 or 2, 3...")
        if self.num_cpus == 0 and self.num_gpus == 0:
            _fail("a run needs some resource", "resources.num_cpus", 0, "give num_cpus >= 1 or num_gpus > 0")
        if self.max_actors is not None and (not isinstance(self.max_actors, int) or self.max_actors < 1):
            _fail("must be a positive integer", "resources.max_actors", self.max_actors)
        for key in ("max_restarts", "max_task_retries"):
            if not isinstance(getattr(self, key), int) or getattr(self, key) < -1:
                _fail("must be an integer >= -1 (-1: unlimited)", f"resources.{key}", getattr(self, key))


@dataclass(frozen=True)
class Estimate:
    """Throughput assumed by the GPU-hours estimate: default one H100 SXM (989 TFLOP/s bf16) at 40% MFU."""

    peak_flops: float = 989e12
    mfu: float = 0.4

    def __post_init__(self) -> None:
        if not (isinstance(self.peak_flops, (int, float)) and self.peak_flops > 0):
            _fail("must be positive (FLOP/s per GPU)", "estimate.peak_flops", self.peak_flops)
        if not (isinstance(self.mfu, (int, float)) and 0 < self.mfu <= 1):
            _fail("must lie in (0, 1]", "estimate.mfu", self.mfu)


@dataclass(frozen=True)
class Grid:
    """One Cartesian product. ``horizon`` is (kind, values) with kind in steps/tokens/tokens_per_param."""

    model: tuple[ModelConfig, ...]
    horizon: tuple[str, tuple[float, ...]]
    schedule: tuple[str, ...] = ()
    family: tuple[Family, ...] = ()
    peak_lr: tuple[float, ...] = (1e-3,)
    seed: tuple[int, ...] = (0,)
    dataset: tuple[str, ...] = ("python-stdlib",)


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep: ``expand()`` gives its RunConfigs (trunks before their branches)."""

    name: str
    grids: tuple[Grid, ...]
    train: Train = Train()
    resources: Resources = Resources()
    estimate: Estimate = Estimate()
    source: str | None = None

    def expand(self) -> list[RunConfig]:
        runs = [cfg for g, grid in enumerate(self.grids) for cfg in _expand_grid(self, grid, g)]
        unique = list({cfg.run_id: cfg for cfg in runs}.values())
        return sorted(unique, key=lambda cfg: cfg.branch_from is not None)


def _section(cls: type, d: Any, path: str) -> Any:
    names = tuple(f.name for f in fields(cls))
    d = dict(_check_keys({} if d is None else d, names, path))
    return _at(path, lambda: cls(**d))


def _model(entry: Any, key: str) -> ModelConfig:
    if isinstance(entry, str):
        if entry not in MODEL_PRESETS:
            _fail("unknown model preset", key, entry, f"use one of {list(MODEL_PRESETS)} or a shape mapping")
        return preset(entry)
    shape = dict(_check_keys(entry, ("preset", *(f.name for f in fields(ModelConfig))), key))
    name = shape.pop("preset", None)
    return _at(key, lambda: ModelConfig(**shape) if name is None else replace(_model(name, f"{key}.preset"), **shape))


def _at(key: str, build: Any) -> Any:
    """``build()``, re-raising a ScalefitError with its field placed under the key path ``key``."""
    try:
        return build()
    except ScalefitError as exc:
        leaf = (exc.field or "").rpartition(".")[2]
        raise type(exc)(exc.message, field=f"{key}.{leaf}" if leaf else key, value=exc.value, fix=exc.fix) from exc


def _schedule_template(text: Any, key: str) -> str:
    if not isinstance(text, str):
        _fail("must be a schedule string such as 'cosine' or 'wsd:decay=0.2'", key, text)
    keys = {part.split("=")[0].strip() for part in text.partition(":")[2].split(",") if part}
    if keys & {"peak", "peak_lr", "steps", "total_steps"}:
        _fail("peak LR and steps come from the grid, not the schedule string", key, text, "use grid.peak_lr / steps")
    try:
        schedules.parse(text, peak=1e-3, steps=10_000)
    except ScalefitError as exc:
        _fail(f"bad schedule string: {exc.message}", key, text, exc.fix)
    return text


def _grid(d: Any, path: str) -> Grid:
    d = _check_keys(d, ("model", *_HORIZONS, "schedule", "family", "peak_lr", "seed", "dataset"), path)
    horizons = [k for k in _HORIZONS if k in d]
    if len(horizons) != 1:
        _fail("give exactly one horizon", f"{path}.steps", horizons, f"one of {_HORIZONS}")
    kw: dict[str, Any] = {"horizon": (horizons[0], tuple(_listify(d[horizons[0]])))}
    for key in ("model", "schedule", "family", "peak_lr", "seed", "dataset"):
        if key in d:
            kw[key] = tuple(_listify(d[key]))
            if not kw[key]:
                _fail("empty list: the grid would have no runs", f"{path}.{key}", d[key])
    if "model" not in kw:
        _fail("missing", f"{path}.model", None, "give preset names or shapes")
    if "schedule" not in kw and "family" not in kw:
        _fail("give schedules or a family", f"{path}.schedule", None, "e.g. schedule: [cosine]")
    kw["model"] = tuple(_model(m, f"{path}.model[{i}]") for i, m in enumerate(kw["model"]))
    kw["schedule"] = tuple(_schedule_template(s, f"{path}.schedule[{i}]") for i, s in enumerate(kw.get("schedule", ())))
    kw["family"] = tuple(_section(Family, f, f"{path}.family[{i}]") for i, f in enumerate(kw.get("family", ())))
    kind, values = kw["horizon"]
    if not values or not all(isinstance(v, (int, float)) and v > 0 for v in values):
        _fail("horizons must be positive numbers", f"{path}.{kind}", values)
    return Grid(**kw)


def parse_sweep(data: Any, *, source: str | None = None) -> SweepSpec:
    """A `SweepSpec` from the parsed YAML mapping; expands it once so every error surfaces now."""
    try:
        d = _check_keys(data, ("sweep", "grid", "runs", "train", "resources", "estimate"), "")
        grids = ([_grid(d["grid"], "grid")] if "grid" in d else []) + [
            _grid(g, f"runs[{i}]") for i, g in enumerate(_listify(d.get("runs", [])))
        ]
        if not grids:
            _fail("empty sweep: no grid and no runs", "grid", None, "add a grid: or runs: section")
        name = d.get("sweep", os.path.splitext(os.path.basename(source or "sweep"))[0])
        spec = SweepSpec(str(name), tuple(grids), _section(Train, d.get("train"), "train"),
                         _section(Resources, d.get("resources"), "resources"),
                         _section(Estimate, d.get("estimate"), "estimate"), source)  # fmt: skip
        spec.expand()
    except TypeError as exc:
        raise ConfigError(f"malformed value: {exc}", file=source, fix="see scalefit/sweep.py for the format") from exc
    except ScalefitError as exc:
        if exc.file is None and source is not None:
            raise type(exc)(exc.message, file=source, run_id=exc.run_id, field=exc.field, value=exc.value,
                            fix=exc.fix) from exc
        raise
    return spec


def load_sweep(path: str | os.PathLike) -> SweepSpec:
    """Read and validate a sweep YAML file (`ConfigError` naming the file and key on any problem)."""
    try:
        with open(path) as fh:
            data = yaml.safe_load(fh)
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read sweep file: {exc}", file=str(path), fix="give a readable YAML file") from exc
    return parse_sweep(data, source=str(path))


def _n_params(model: ModelConfig, convention: str) -> int:
    shape = ModelShape(model.n_layer, model.d_model, model.vocab_size, model.context,
                       d_ff=model.mlp_ratio * model.d_model, tied=model.tie_embeddings,
                       learned_pos=model.pos == "learned")  # fmt: skip
    return shape.n_params(convention)


def _steps(spec: SweepSpec, model: ModelConfig, kind: str, value: float) -> int:
    tokens_per_step = spec.train.batch_size * model.context
    if kind == "steps":
        return int(value)
    tokens = value if kind == "tokens" else value * _n_params(model, spec.train.params)
    return max(1, math.ceil(tokens / tokens_per_step))


def _expand_grid(spec: SweepSpec, grid: Grid, g: int) -> list[RunConfig]:
    t, out = spec.train, []
    kind, horizons = grid.horizon
    for model, h, lr, seed, dataset in itertools.product(grid.model, horizons, grid.peak_lr, grid.seed, grid.dataset):
        steps = _steps(spec, model, kind, h)
        warm = int(round(t.warmup * steps)) if isinstance(t.warmup, float) else int(t.warmup)
        data = DataConfig(dataset=dataset, tokenizer=t.tokenizer, eval_datasets=t.eval_datasets)
        base = dict(model=model, data=data, batch_size=t.batch_size, seed=seed, eval_every=t.eval_every,
                    checkpoint_every=t.checkpoint_every, device=t.device, sweep=spec.name, **(t.extra or {}))  # fmt: skip
        for s in grid.schedule:
            out.append(RunConfig(schedule=schedules.parse(s, peak=lr, steps=steps, warmup=warm), **base))
        for i, fam in enumerate(grid.family):
            out.extend(_family(fam, base, lr, steps, warm, f"grid[{g}].family[{i}]"))
    return out


def _family(fam: Family, base: dict[str, Any], lr: float, steps: int, warm: int, key: str) -> list[RunConfig]:
    every = base["checkpoint_every"]
    if every < 1:
        _fail("a family needs trunk checkpoints to branch from", "train.checkpoint_every", every, "set it >= 1")
    total = max(every, math.ceil(steps / every) * every)
    trunk = RunConfig(schedule=schedules.Constant(lr, total, warmup_steps=warm), **base)
    runs = [trunk]
    for f in fam.decay:
        length = max(every, round(f * total / every) * every)
        if total - length <= warm:
            _fail("the cooldown starts inside the warmup", f"{key}.decay", f, "use a smaller fraction or warmup")
        wsd = schedules.WSD(lr, total, warmup_steps=warm, decay_steps=length, shape=fam.shape, final_ratio=fam.final)
        runs.append(RunConfig(schedule=wsd, branch_from=Branch(trunk.run_id, total - length), **base))
    return runs


def plan(spec: SweepSpec) -> list[dict[str, Any]]:
    """One row per run: shape, parameters, steps trained, tokens, FLOPs (the run's FLOP convention)."""
    rows = []
    for cfg in spec.expand():
        params, flops = cfg.flops_convention.split(":")[1], cfg.flops_convention.split(":")[0]
        m = cfg.model
        shape = ModelShape(m.n_layer, m.d_model, m.vocab_size, m.context, d_ff=m.mlp_ratio * m.d_model,
                           tied=m.tie_embeddings, learned_pos=m.pos == "learned")  # fmt: skip
        start = 0 if cfg.branch_from is None else cfg.branch_from.step
        tokens = (cfg.steps - start) * cfg.tokens_per_step
        rows.append({
            "run_id": cfg.run_id, "model": f"{m.n_layer}x{m.d_model}", "n_params": shape.n_params("total"),
            "steps": cfg.steps - start, "tokens": tokens, "flops": tokens * shape.flops_per_token(
                {"params": params, "flops": flops}), "schedule": str(cfg.schedule), "seed": cfg.seed,
            "dataset": cfg.data.dataset, "branch_from": "" if cfg.branch_from is None else
            f"{cfg.branch_from.trunk_run_id}@{cfg.branch_from.step}",
        })  # fmt: skip
    return rows


def describe_plan(spec: SweepSpec) -> str:
    """The dry-run text: totals, the GPU-hours estimate with its assumption, and one line per run."""
    rows, est = plan(spec), spec.estimate
    flops, tokens = sum(r["flops"] for r in rows), sum(r["tokens"] for r in rows)
    hours = flops / (est.peak_flops * est.mfu) / 3600.0
    head = [
        f"sweep {spec.name}: {len(rows)} runs, {tokens:.4g} tokens, {flops:.4g} FLOPs",
        f"estimated {hours:.4g} GPU-hours at {est.mfu:.0%} MFU of {est.peak_flops / 1e12:.0f} TFLOP/s per GPU "
        f"(set estimate.peak_flops / estimate.mfu for your hardware)",
        f"resources per run: {spec.resources.num_cpus:g} CPU, {spec.resources.num_gpus:g} GPU",
    ]
    lines = [f"{r['run_id']}  {r['model']:>9}  N={r['n_params']:.3g}  steps={r['steps']:<7d} tokens={r['tokens']:.3g}  "
             f"{r['schedule']}  seed={r['seed']}  {r['dataset']}" + (f"  from {r['branch_from']}" if r["branch_from"] else "")
             for r in rows]  # fmt: skip
    return "\n".join(head + lines)
