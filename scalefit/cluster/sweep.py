"""Sweep specs: a YAML file -> a frozen, validated `SweepSpec` -> a list of `RunConfig` (no ray here).

A ``grid`` (Cartesian product) and/or ``runs`` (more grids) over ``model``, one horizon (``steps``, ``tokens``
or ``tokens_per_param``, N = total parameters), ``schedule`` strings (peak/steps/warmup come from the grid),
``family`` (a constant trunk + WSD cooldowns branching from its checkpoints), ``peak_lr``, ``seed``,
``dataset``; ``train`` (any RunConfig field) and ``resources`` (of one run). See jobs/configs/*.yaml.
"""

from __future__ import annotations

import itertools
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from scalefit import schedules
from scalefit.errors import ConfigError, DataError, ScalefitError
from scalefit.proxy.config import MODEL_PRESETS, Branch, DataConfig, ModelConfig, RunConfig, preset
from scalefit.store.run_ids import check_run_id

__all__ = ["SweepSpec", "Family", "Train", "Resources", "load_sweep", "parse_sweep", "plan", "describe_plan"]

_HORIZONS = ("steps", "tokens", "tokens_per_param")
_FROM_GRID = {"peak", "peak_lr", "steps", "total_steps"}  # schedule fields a sweep fills in
_NUM = (int, float)  # YAML numbers (``type(v) in _NUM`` also rejects booleans)
_PER_GRID = {"model", "data", "schedule", "steps", "seed", "branch_from", "sweep"}  # not train: keys
_EXP = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")  # 3e-4: a float in YAML 1.2, a string in 1.1
_Loader = type("_Loader", (yaml.SafeLoader,), {})  # a SafeLoader that reads _EXP numbers as floats
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _EXP, list("-+.0123456789"))


def _need(ok: bool, message: str, key: str, value: Any = None, fix: str | None = None) -> None:
    if not ok:
        raise ConfigError(message, field=key, value=value, fix=fix)


def _check_id(run_id: str, key: str) -> None:
    try:
        check_run_id(run_id)
    except DataError as err:
        raise ConfigError(err.message, field=key, value=run_id, fix=err.fix) from err


def _listify(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


@dataclass(frozen=True)
class Family:
    """A constant-LR trunk plus WSD cooldown branches at decay fractions ``decay`` of the horizon."""

    decay: tuple[float, ...]
    shape: str = "1-sqrt"
    final: float = 0.0  # final LR as a ratio of peak
    resolution: int = 20  # trunk checkpoints every T/resolution steps; decays round to 1/resolution

    def __post_init__(self) -> None:
        object.__setattr__(self, "decay", tuple(_listify(self.decay)))
        ok = bool(self.decay) and all(type(f) in _NUM and 0 < f < 1 for f in self.decay)
        _need(ok, "fractions in (0, 1)", "family.decay", self.decay)
        r = self.resolution
        _need(type(r) is int and r >= 2, "an integer >= 2", "family.resolution", r)


@dataclass(frozen=True)
class Train:
    """Shared by every run: ``warmup`` in steps (int) or of the run (float < 1); ``run``: RunConfig fields."""

    batch_size: int = 8
    warmup: int | float = 0
    tokenizer: str = "byte"
    eval_datasets: tuple[str, ...] = ()
    run: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "eval_datasets", tuple(_listify(self.eval_datasets)))
        b, w = self.batch_size, self.warmup
        _need(type(b) is int and b > 0, "a positive integer", "train.batch_size", b)
        ok = type(w) in _NUM and w >= 0 and (type(w) is int or w < 1)
        _need(ok, "steps (an int) or a fraction (a float < 1)", "train.warmup", w)


@dataclass(frozen=True)
class Resources:
    """Ray resources of one run's actor, the pool size, and fault tolerance."""

    num_cpus: float = 1.0
    num_gpus: float = 0.0  # a fraction packs several runs on one GPU
    max_actors: int | None = None  # default: as many as the cluster fits (and no more than runs)
    max_restarts: int = 3  # actor restarts after its process dies (-1: unlimited)
    max_task_retries: int = 3  # re-runs of an interrupted run on the restarted actor (it resumes)

    def __post_init__(self) -> None:
        cpus, gpus, m = self.num_cpus, self.num_gpus, self.max_actors
        _need(type(cpus) in _NUM and cpus >= 0, "a number >= 0", "resources.num_cpus", cpus)
        _need(
            type(gpus) in _NUM and gpus >= 0 and (gpus <= 1 or gpus % 1 == 0),
            "a fraction or whole GPUs",
            "resources.num_gpus",
            gpus,
        )
        _need(cpus > 0 or gpus > 0, "a run needs some resource", "resources.num_cpus", cpus, "num_cpus: 1")
        _need(m is None or type(m) is int and m >= 1, "a positive integer", "resources.max_actors", m)
        for key in ("max_restarts", "max_task_retries"):
            v = getattr(self, key)
            _need(type(v) is int and v >= -1, "an integer >= -1 (-1: unlimited)", f"resources.{key}", v)


@dataclass(frozen=True)
class Grid:
    """One Cartesian product; ``horizon`` is (kind, values), kind one of steps/tokens/tokens_per_param."""

    model: tuple[ModelConfig, ...]
    horizon: tuple[str, tuple[float, ...]]
    schedule: tuple[str, ...] = ()
    family: tuple[Family, ...] = ()
    peak_lr: tuple[float, ...] = (1e-3,)
    seed: tuple[int, ...] = (0,)
    dataset: tuple[str, ...] = ("python-stdlib",)


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep; ``expand()`` gives its RunConfigs, each once, trunks before their branches."""

    name: str
    grids: tuple[Grid, ...]
    train: Train = Train()
    resources: Resources = Resources()

    def expand(self) -> list[RunConfig]:
        unique = {cfg.run_id: cfg for grid in self.grids for cfg in _expand_grid(self, grid)}
        for cfg in unique.values():  # the store's run-id rule (run ids themselves are hashes)
            if cfg.branch_from is not None:
                _check_id(cfg.branch_from.trunk_run_id, "branch_from.trunk_run_id")
        return sorted(unique.values(), key=lambda cfg: cfg.branch_from is not None)


def _check_keys(d: Any, allowed: tuple[str, ...] | set[str], path: str) -> dict[str, Any]:
    _need(isinstance(d, dict), "must be a mapping", path or "sweep file", d)
    unknown = sorted(set(d) - set(allowed)) or [None]
    key = f"{path}.{unknown[0]}" if path else str(unknown[0])
    _need(unknown == [None], "unknown key", key, d.get(unknown[0]), f"use one of {sorted(allowed)}")
    return d


def _at(key: str, build: Callable[[], Any]) -> Any:
    """``build()``; a ScalefitError becomes a ConfigError with its field under the key path ``key``."""
    try:
        return build()
    except ScalefitError as exc:
        field = f"{key}.{(exc.field or '').rpartition('.')[2]}".rstrip(".")
        raise ConfigError(exc.message, field=field, value=exc.value, fix=exc.fix) from exc


def _section(cls: type, d: Any, path: str) -> Any:
    d = dict(_check_keys({} if d is None else d, {f.name for f in fields(cls)}, path))
    return _at(path, lambda: cls(**d))


def _train(d: Any) -> Train:
    """``train:``: Train's own keys, and any other RunConfig field (eval_every, device, ...) as ``run``."""
    own, allowed = {f.name for f in fields(Train)} - {"run"}, {f.name for f in fields(RunConfig)} - _PER_GRID
    d = dict(_check_keys({} if d is None else d, own | allowed, "train"))
    run = {k: d.pop(k) for k in list(d) if k not in own}
    probe = {"model": preset("100k"), "data": DataConfig(), "schedule": schedules.Constant(1e-3, 10)}
    _at("train", lambda: RunConfig(**probe, **{"batch_size": 1, **run}))  # checks the RunConfig fields
    return _at("train", lambda: Train(**d, run=run))


def _model(entry: Any, key: str) -> ModelConfig:
    if isinstance(entry, str):
        _need(entry in MODEL_PRESETS, "unknown model preset", key, entry, f"use one of {list(MODEL_PRESETS)}")
        return preset(entry)
    shape = dict(_check_keys(entry, {"preset", *(f.name for f in fields(ModelConfig))}, key))
    name = shape.pop("preset", None)
    base = None if name is None else _model(name, f"{key}.preset")
    return _at(key, lambda: ModelConfig(**shape) if base is None else replace(base, **shape))


def _schedule(text: Any, key: str) -> str:
    _need(isinstance(text, str), "a schedule string such as 'cosine' or 'wsd:decay=0.2'", key, text)
    clash = {p.split("=")[0].strip() for p in text.partition(":")[2].split(",")} & _FROM_GRID
    _need(not clash, f"{sorted(clash)} come from the grid (peak_lr, a horizon)", key, text, "drop them")
    _at(key, lambda: schedules.parse(text, peak=1e-3, steps=10_000))  # the schedule's own validation
    return text


def _grid(d: Any, path: str) -> Grid:
    axes = ("model", "schedule", "family", "peak_lr", "seed", "dataset")
    d = _check_keys(d, (*axes, *_HORIZONS), path)
    kinds = [k for k in _HORIZONS if k in d]
    _need(len(kinds) == 1, "give exactly one horizon", f"{path}.steps", kinds, f"one of {_HORIZONS}")
    kw: dict[str, Any] = {k: tuple(_listify(d[k])) for k in (*axes, kinds[0]) if k in d}
    for key, values in kw.items():
        _need(bool(values), "empty list: the grid would have no runs", f"{path}.{key}", d[key])
    _need("model" in kw, "missing", f"{path}.model", None, "give preset names or shapes")
    _need("schedule" in kw or "family" in kw, "give schedules or a family", f"{path}.schedule")
    for key, lo in ((kinds[0], 0), ("peak_lr", 0), ("seed", -1)):
        ok = all(type(v) in _NUM and v > lo and (lo == 0 or type(v) is int) for v in kw.get(key, ()))
        _need(ok, "must be positive" if lo == 0 else "a whole number >= 0", f"{path}.{key}", d.get(key))
    for i, name in enumerate(kw.get("dataset", ())):
        _at(f"{path}.dataset[{i}]", lambda name=name: DataConfig(dataset=name))
    kw["horizon"] = (kinds[0], kw.pop(kinds[0]))
    kw["model"] = tuple(_model(m, f"{path}.model[{i}]") for i, m in enumerate(kw["model"]))
    schedule, family = enumerate(kw.get("schedule", [])), enumerate(kw.get("family", []))
    kw["schedule"] = tuple(_schedule(s, f"{path}.schedule[{i}]") for i, s in schedule)
    kw["family"] = tuple(_section(Family, f, f"{path}.family[{i}]") for i, f in family)
    return Grid(**kw)


def parse_sweep(data: object, *, source: str | None = None) -> SweepSpec:
    """A `SweepSpec` from a parsed YAML mapping; expands it once, so every error surfaces now."""
    try:
        d = _check_keys(data, ("sweep", "grid", "runs", "train", "resources"), "")
        grids = [_grid(d["grid"], "grid")] if "grid" in d else []
        grids += [_grid(g, f"runs[{i}]") for i, g in enumerate(_listify(d.get("runs", [])))]
        _need(bool(grids), "empty sweep: no grid and no runs", "grid", None, "add a grid: or a runs: section")
        name = str(d.get("sweep", os.path.splitext(os.path.basename(source or "sweep"))[0]))
        resources = _section(Resources, d.get("resources"), "resources")
        spec = SweepSpec(name, tuple(grids), _train(d.get("train")), resources)
        spec.expand()
    except TypeError as exc:
        raise ConfigError(f"malformed value: {exc}", file=source, fix="see jobs/configs/*.yaml") from exc
    except ScalefitError as exc:
        if exc.file is not None or source is None:
            raise
        raise type(exc)(
            exc.message, file=source, run_id=exc.run_id, field=exc.field, value=exc.value, fix=exc.fix
        ) from exc
    return spec


def load_sweep(path: str | os.PathLike) -> SweepSpec:
    """Read and validate a sweep YAML file (`ConfigError` naming the file and key on any problem)."""
    try:
        data = yaml.load(Path(path).read_text(), Loader=_Loader)  # noqa: S506 (a SafeLoader)
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read sweep file: {exc}", file=str(path), fix="give a YAML file") from exc
    return parse_sweep(data, source=str(path))


def _expand_grid(spec: SweepSpec, grid: Grid) -> list[RunConfig]:
    t, out = spec.train, []
    kind, horizons = grid.horizon
    axes = (grid.model, horizons, grid.peak_lr, grid.seed, grid.dataset)
    for model, h, lr, seed, dataset in itertools.product(*axes):
        tokens = h if kind == "tokens" else h * model.shape().n_params("total")  # tokens_per_param: N total
        steps = int(h) if kind == "steps" else max(1, math.ceil(tokens / (t.batch_size * model.context)))
        warm = round(t.warmup * steps) if isinstance(t.warmup, float) else t.warmup
        data = DataConfig(dataset=dataset, tokenizer=t.tokenizer, eval_datasets=t.eval_datasets)
        base = {"model": model, "data": data, "batch_size": t.batch_size, "seed": seed, "sweep": spec.name}
        base.update(t.run)
        for s in grid.schedule:
            out.append(RunConfig(schedule=schedules.parse(s, peak=lr, steps=steps, warmup=warm), **base))
        for fam in grid.family:
            out.extend(_family(fam, base, lr, steps, warm))
    return out


def _family(fam: Family, base: dict[str, Any], lr: float, steps: int, warm: int) -> list[RunConfig]:
    every = max(1, math.ceil(steps / fam.resolution))  # the trunk's checkpoints are the branch points
    total = every * fam.resolution
    constant = schedules.Constant(lr, total, warmup_steps=warm)
    runs = [trunk := RunConfig(schedule=constant, **{**base, "checkpoint_every": every})]
    for f in fam.decay:
        length = max(1, round(f * fam.resolution)) * every
        _need(total - length > warm, "cooldown starts inside the warmup", "family.decay", f, "shorten warmup")
        wsd = schedules.WSD(
            lr, total, warmup_steps=warm, decay_steps=length, shape=fam.shape, final_ratio=fam.final
        )
        runs.append(RunConfig(schedule=wsd, branch_from=Branch(trunk.run_id, total - length), **base))
    return runs


def plan(spec: SweepSpec) -> list[dict[str, Any]]:
    """One row per run: shape, steps it trains, tokens and FLOPs (in the run's FLOP convention)."""
    rows = []
    for cfg in spec.expand():
        flops, params = cfg.flops_convention.split(":")
        b, shape, m = cfg.branch_from, cfg.model.shape(), cfg.model
        steps = cfg.steps - (b.step if b else 0)  # a branch trains from its branch point on
        per_token, tokens = (
            shape.flops_per_token({"params": params, "flops": flops}),
            steps * cfg.tokens_per_step,
        )
        rows.append(
            {
                "run_id": cfg.run_id,
                "model": f"{m.n_layer}x{m.d_model}",
                "steps": steps,
                "n_params": shape.n_params("total"),
                "tokens": tokens,
                "flops": tokens * per_token,
                "schedule": str(cfg.schedule),
                "seed": cfg.seed,
                "dataset": cfg.data.dataset,
                "branch_from": f"{b.trunk_run_id}@{b.step}" if b else "",
            }
        )
    return rows


def describe_plan(spec: SweepSpec, *, peak_flops: float = 989e12, mfu: float = 0.4) -> str:
    """The dry-run text: totals, GPU-hours at ``mfu`` of ``peak_flops`` per GPU (default: an H100 SXM's dense
    bf16 peak at 40% MFU), and one line per run."""
    rows, fmt = plan(spec), {k: "{:.3g}".format for k in ("n_params", "tokens", "flops")}
    flops, tokens = sum(r["flops"] for r in rows), sum(r["tokens"] for r in rows)
    return (
        f"sweep {spec.name}: {len(rows)} runs, {tokens:.4g} tokens, {flops:.4g} FLOPs\nestimated "
        f"{flops / (peak_flops * mfu) / 3600:.4g} GPU-hours, assuming {mfu:.0%} MFU of "
        f"{peak_flops / 1e12:.0f} TFLOP/s a GPU\n{pd.DataFrame(rows).to_string(index=False, formatters=fmt)}"
    )
