"""Run a sweep on Ray: a pool of long-lived actors, each training one run at a time with scalefit.proxy.train.

The only module of scalefit that imports ray. Every actor declares the sweep's ``resources`` (fractional
GPUs pack several small proxies on one GPU; CPUs on CPU-only clusters) and writes its own run's Parquet
under the store root (a path every node sees, or an object-store URI such as ``s3://bucket/runs``); only
small summaries (``RunResult`` dicts) travel back.
The driver feeds idle actors from a queue with ``ray.wait``, so at most one run per actor is in flight.

Fault tolerance: an actor whose process dies is restarted (``max_restarts``) and its run retried
(``max_task_retries``); the trainer resumes from its last checkpoint. Runs already ``ok`` or ``diverged``
in the store are skipped (after their files are verified), so submitting a sweep again trains only what
is missing; a run whose stored files are damaged is reported failed with the error naming the file, and
the other runs train. Two submissions of one sweep do not write a run at once: the trainer holds the
run's lease (`scalefit.store.lease`), so the second waits and then finds the run finished. A run that
fails for its own reasons is recorded ``failed`` with its error and the sweep goes on. Branch runs start
once their trunk is ``ok``. Progress lines (runs done/running/failed, tokens/s) go to stdout: the
console, and the job logs under ``ray job submit``.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
import traceback
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

import ray

from scalefit.cluster.sweep import SweepSpec, load_sweep
from scalefit.errors import ConfigError, DataError
from scalefit.proxy.config import RunConfig
from scalefit.store.fs import root_text, store_path
from scalefit.store.parquet import record_status, run_status, verify_run

__all__ = ["run_sweep", "ray_map", "connect", "SweepSummary", "NAMESPACE"]

NAMESPACE = "scalefit"  # Ray namespace of the named actors, e.g. ``ray list actors``
FINISHED = ("ok", "diverged")  # runs in these states are never trained again
T, R = TypeVar("T"), TypeVar("R")


@dataclass(frozen=True)
class SweepSummary:
    """What a sweep did: counts by outcome and one result dict per run trained (RunResult + timing)."""

    sweep: str
    store_root: str
    total: int
    skipped: int
    ok: int
    diverged: int
    failed: int
    wall_s: float
    results: tuple[dict[str, Any], ...] = field(default=(), repr=False)

    def __str__(self) -> str:
        return (
            f"sweep {self.sweep}: {self.total} runs, {self.skipped} skipped (already finished), "
            f"{self.ok} ok, {self.diverged} diverged, {self.failed} failed in {self.wall_s:.1f} s "
            f"-> {self.store_root}"
        )


@ray.remote
class ProxyWorker:
    """A long-lived trainer. Threaded (2), so ``status`` answers while ``train`` runs."""

    def __init__(self, store_root: str) -> None:
        self.root, self.latest = store_root, None

    def pid(self) -> int:
        return os.getpid()

    def status(self) -> dict[str, Any] | None:
        return self.latest

    def train(self, config: dict[str, Any]) -> dict[str, Any]:
        from scalefit.proxy.train import train

        cfg, started = RunConfig.from_dict(config), time.time()
        self.latest = {"run_id": cfg.run_id, "step": None, "tokens_per_s": 0.0}

        def on_step(row: dict[str, Any]) -> None:
            self.latest = {"run_id": cfg.run_id, "step": row["step"], "tokens_per_s": row["tokens_per_s"]}

        try:
            out = asdict(train(cfg, self.root, progress=on_step))
        except Exception as exc:  # a config/data error of this run: record it, keep the actor
            out = _failed(cfg, traceback.format_exception_only(exc)[-1].strip())
            record_failure(self.root, cfg, out["error"])
        self.latest = None
        return {**out, "started": started, "finished": time.time(), "pid": os.getpid()}


def _failed(cfg: RunConfig, error: str) -> dict[str, Any]:
    return {
        "run_id": cfg.run_id,
        "status": "failed",
        "steps_done": 0,
        "final_loss": math.nan,
        "tokens_per_s": 0.0,
        "wall_s": 0.0,
        "resumed_from": None,
        "error": error,
    }


def _config_meta(cfg: RunConfig) -> dict[str, Any]:
    m, s = cfg.model, cfg.schedule
    return {
        "sweep": cfg.sweep,
        "n_layer": m.n_layer,
        "d_model": m.d_model,
        "n_head": m.n_head,
        "context": m.context,
        "schedule": str(s),
        "peak_lr": float(s.peak_lr),
        "total_steps": cfg.steps,
        "seed": cfg.seed,
        "dataset": cfg.data.dataset,
        "config_json": cfg.to_json(),
    }


def record_failure(root: str | os.PathLike, cfg: RunConfig, error: str) -> None:
    """Mark ``cfg``'s run ``failed`` with ``error`` in the store, keeping the runs-table row it has."""
    record_status(root, cfg.run_id, "failed", error, defaults=_config_meta(cfg))


def _stored_statuses(root: str, configs: list[RunConfig]) -> tuple[dict[str, str], dict[str, str]]:
    """``({run_id: status}, {run_id: error})``: the stored status of each run, and the runs whose files
    are damaged (an unreadable run.parquet; a finished run whose chunks fail `verify_run`). A damaged run
    is neither trained (that could hide the damage) nor skipped as finished: it is reported failed."""
    statuses, damaged = {}, {}
    for cfg in configs:
        try:
            status = run_status(root, cfg.run_id)
            if status in FINISHED:
                verify_run(root, cfg.run_id)
        except DataError as err:
            damaged[cfg.run_id] = str(err)
            continue
        if status is not None:
            statuses[cfg.run_id] = status
    return statuses, damaged


def connect(address: str | None = None) -> None:
    """Connect to Ray unless connected: ``address``, else RAY_ADDRESS (set by ``ray job submit``), else
    start an embedded local Ray (no dashboard; it lives as long as this process)."""
    if not ray.is_initialized():
        extra = {"include_dashboard": False} if address is None and not os.environ.get("RAY_ADDRESS") else {}
        ray.init(address=address, logging_level="WARNING", **extra)


def _pool_size(spec: SweepSpec, n_runs: int, embedded: bool) -> int:
    res, have = spec.resources, ray.cluster_resources()
    fits = [
        math.floor(have.get(k, 0.0) / need + 1e-9)
        for k, need in (("CPU", res.num_cpus), ("GPU", res.num_gpus))
        if need > 0
    ]
    fit = min(fits)
    if fit == 0 and embedded:
        key = "resources.num_gpus" if res.num_gpus and not have.get("GPU") else "resources.num_cpus"
        raise ConfigError(
            "no node of this Ray cluster can hold one run",
            field=key,
            value=dict(have),
            fix="lower num_cpus/num_gpus (num_gpus: 0 on a CPU-only machine)",
        )
    fit = fit or (res.max_actors or 1)  # an autoscaling cluster adds nodes when actors are pending
    return max(1, min(fit, n_runs, res.max_actors or fit))


class _Progress:
    """Progress lines, at every finished run and every ``interval`` s while runs go on: runs done of all,
    each running run with its step, the sweep's tokens/s and an ETA from the pace of the finished runs:
    '[demo   41.2s] 3/12 done (0 skipped, 3 ok, 0 diverged, 0 failed); 2 running: demo-a step 450,
    demo-b step 300; 12,345 tokens/s; ETA 2m10s'."""

    def __init__(self, name: str, total: int, skipped: int, log: Callable[[str], None], interval: float):
        self.name, self.total, self.skipped, self.log, self.interval = name, total, skipped, log, interval
        self.t0, self.last, self.counts = time.monotonic(), 0.0, {"ok": 0, "diverged": 0, "failed": 0}
        self.active: list[dict[str, Any]] = []  # the running runs' latest status (run_id, step)

    def line(self, running: int, tokens_per_s: float, note: str = "") -> None:
        c, now = self.counts, time.monotonic()
        done = self.skipped + sum(c.values())
        shown = [
            f"{s.get('label') or s['run_id']} "
            + (f"step {s['step']}" if s.get("step") is not None else "starting")
            + (f"/{s['total']}" if s.get("total") and s.get("step") is not None else "")
            for s in self.active[:4]
        ]
        more = f" and {len(self.active) - 4} more" if len(self.active) > 4 else ""
        runs = f": {', '.join(shown)}{more}" if shown and running else ""
        self.log(
            f"[{self.name} {now - self.t0:7.1f}s] {done}/{self.total} done ({self.skipped} skipped, "
            f"{c['ok']} ok, {c['diverged']} diverged, {c['failed']} failed); {running} running{runs}; "
            f"{tokens_per_s:,.0f} tokens/s; ETA {self._eta(done, now)}{note}"
        )
        self.last = now

    def _eta(self, done: int, now: float) -> str:
        trained = done - self.skipped
        if done >= self.total:
            return "0s"
        if trained <= 0:
            return "after the first run"
        left = (now - self.t0) / trained * (self.total - done)
        return f"{int(left // 60)}m{int(left % 60):02d}s" if left >= 60 else f"{left:.0f}s"

    def due(self) -> bool:
        return time.monotonic() - self.last >= self.interval


class _Scheduler:
    """Feeds runs to idle actors; holds branch runs until their trunk is ok."""

    def __init__(
        self,
        spec: SweepSpec,
        todo: list[RunConfig],
        root: str,
        statuses: dict[str, str],
        progress: _Progress,
    ) -> None:
        self.spec, self.root, self.statuses, self.progress = spec, root, dict(statuses), progress
        self.ready = [c for c in todo if c.branch_from is None or self._trunk(c) == "ok"]
        self.waiting = [c for c in todo if c.branch_from is not None and self._trunk(c) != "ok"]
        self.in_flight: dict[Any, tuple[Any, RunConfig]] = {}
        self.results: list[dict[str, Any]] = []
        self.prefix = f"{spec.name}-{uuid.uuid4().hex[:6]}"
        self.actors: list[Any] = []

    def _trunk(self, cfg: RunConfig) -> str | None:
        return self.statuses.get(cfg.branch_from.trunk_run_id)

    def new_actor(self) -> Any:
        res = self.spec.resources
        opts = dict(
            num_cpus=res.num_cpus,
            num_gpus=res.num_gpus,
            max_restarts=res.max_restarts,
            max_task_retries=res.max_task_retries,
            max_concurrency=2,
            namespace=NAMESPACE,
            name=f"{self.prefix}-{len(self.actors)}",
        )
        actor = ProxyWorker.options(**opts).remote(str(self.root))
        self.actors.append(actor)
        return actor

    def run(self, n_actors: int) -> list[dict[str, Any]]:
        idle = [self.new_actor() for _ in range(n_actors)]
        while self.ready or self.in_flight:
            while self.ready and idle:
                cfg, actor = self.ready.pop(0), idle.pop()
                self.in_flight[actor.train.remote(cfg.to_dict())] = (actor, cfg)
            done, _ = ray.wait(list(self.in_flight), num_returns=1, timeout=self.progress.interval)
            for ref in done:
                idle.append(self._finish(ref))
            if done or self.progress.due():
                self.progress.line(len(self.in_flight), self._tokens_per_s())
        for cfg in self.waiting:  # their trunk failed or diverged
            error = f"trunk {cfg.branch_from.trunk_run_id} did not finish ok"
            self._record(cfg, _failed(cfg, error), store=True)
        return self.results

    def _finish(self, ref: Any) -> Any:
        """Record the run of ``ref``; the actor to reuse (a fresh one if it died for good)."""
        actor, cfg = self.in_flight.pop(ref)
        try:
            self._record(cfg, ray.get(ref))  # the actor stored any failure of the run itself
        except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError) as exc:
            msg = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1]}"
            retries = self.spec.resources.max_task_retries
            self._record(cfg, _failed(cfg, f"gave up after {retries} retries: {msg}"), store=True)
            if isinstance(exc, ray.exceptions.RayActorError):
                ray.kill(actor, no_restart=True)
                actor = self.new_actor()
        return actor

    def _record(self, cfg: RunConfig, result: dict[str, Any], store: bool = False) -> None:
        """Count a finished run; ``store``: write a failure the actor could not record itself."""
        status = result["status"]
        if store:
            record_failure(self.root, cfg, result["error"] or "failed")
        self.statuses[cfg.run_id] = status
        self.progress.counts[status] = self.progress.counts.get(status, 0) + 1
        self.results.append(result)
        self.ready += [c for c in self.waiting if self._trunk(c) == "ok"]
        self.waiting = [c for c in self.waiting if self._trunk(c) != "ok"]

    def _tokens_per_s(self) -> float:
        cfgs = {actor.status.remote(): cfg for actor, cfg in self.in_flight.values()}
        ready, _ = ray.wait(list(cfgs), num_returns=len(cfgs), timeout=2.0)
        total, active = 0.0, []
        for ref in ready:
            with contextlib.suppress(ray.exceptions.RayError):  # a restarting actor: no figure this time
                status = ray.get(ref) or {}
                total += status.get("tokens_per_s", 0.0)
                if status.get("run_id"):
                    cfg = cfgs[ref]
                    kind = str(cfg.schedule).split(":", 1)[0]
                    label = f"{status['run_id']} (d{cfg.model.d_model} {kind})"
                    active.append(status | {"label": label, "total": cfg.schedule.total_steps})
        self.progress.active = sorted(active, key=lambda st: str(st["run_id"]))
        return total

    def shutdown(self) -> None:
        for actor in self.actors:
            ray.kill(actor, no_restart=True)


def run_sweep(
    spec_or_path: SweepSpec | str | os.PathLike,
    store_root: str | os.PathLike,
    address: str | None = None,
    *,
    log: Callable[[str], None] | None = None,
    progress_interval: float = 10.0,
) -> SweepSummary:
    """Train every run of a sweep not yet finished in ``store_root``; block until all are done.

    ``address``: a Ray cluster (``"auto"``, ``"host:6379"``); default RAY_ADDRESS if set (as under ``ray
    job submit``), else an embedded local Ray. ``log`` receives the progress lines (default: print).
    """
    spec = spec_or_path if isinstance(spec_or_path, SweepSpec) else load_sweep(spec_or_path)
    log = log or (lambda line: print(line, flush=True))
    root, t0 = root_text(store_root), time.monotonic()  # a path made absolute, or a URI as given
    configs = spec.expand()
    statuses, damaged = _stored_statuses(root, configs)
    todo = [c for c in configs if statuses.get(c.run_id) not in FINISHED and c.run_id not in damaged]
    skipped = len(configs) - len(todo) - len(damaged)
    progress = _Progress(spec.name, len(configs), skipped, log, progress_interval)
    results: list[dict[str, Any]] = []
    for cfg in configs:
        if cfg.run_id in damaged:  # a named error for this run; the others train
            log(f"[{spec.name}] run {cfg.run_id} not trained: {damaged[cfg.run_id]}")
            progress.counts["failed"] += 1
            results.append(_failed(cfg, damaged[cfg.run_id]))
    if todo:
        store_path(root).mkdir(parents=True, exist_ok=True)
        embedded = address is None and not os.environ.get("RAY_ADDRESS") and not ray.is_initialized()
        connect(address)
        n_actors = _pool_size(spec, len(todo), embedded)
        res = spec.resources
        log(
            f"[{spec.name}] {len(todo)} runs, {n_actors} actors of {res.num_cpus:g} CPU, {res.num_gpus:g} GPU"
        )
        scheduler = _Scheduler(spec, todo, root, statuses, progress)
        try:
            results += scheduler.run(n_actors)
        finally:
            scheduler.shutdown()
    progress.line(0, 0.0, " | finished")
    c = progress.counts
    return SweepSummary(
        spec.name,
        str(store_path(root)),  # a URI without its query (no credentials in a summary)
        len(configs),
        progress.skipped,
        c["ok"],
        c["diverged"],
        c["failed"],
        time.monotonic() - t0,
        tuple(results),
    )


def ray_map(
    fn: Callable[[T], R],
    items: Iterable[T],
    *,
    num_cpus: float = 1.0,
    max_in_flight: int | None = None,
    address: str | None = None,
) -> list[R]:
    """``list(map(fn, items))`` as Ray tasks (results in input order), at most ``max_in_flight`` at once
    (default: the cluster's CPUs / num_cpus). A drop-in ``map_fn`` for the fitting engine's bootstrap."""
    connect(address)
    call, fn_ref = _call.options(num_cpus=num_cpus), ray.put(fn)  # fn is shipped once, not per item
    limit = max_in_flight or max(1, int(ray.cluster_resources().get("CPU", 1) // max(num_cpus, 1e-9)))
    results: dict[int, R] = {}
    pending: dict[ray.ObjectRef, int] = {}
    for i, item in enumerate(items):
        if len(pending) >= limit:
            done, _ = ray.wait(list(pending), num_returns=1)
            results[pending.pop(done[0])] = ray.get(done[0])
        pending[call.remote(fn_ref, item)] = i
    for ref, i in pending.items():
        results[i] = ray.get(ref)
    return [results[i] for i in range(len(results))]


@ray.remote
def _call(fn: Callable[[T], R], item: T) -> R:
    return fn(item)
