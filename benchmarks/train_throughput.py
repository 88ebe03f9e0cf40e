"""Training throughput of the proxy trainer: tokens/s and MFU per preset, eager vs compiled, packed
proxies vs one at a time, and the vectorized batch builder vs the old loop builder.

Runs the real ``scalefit.proxy.train.train`` loop (AdamW, clipping, logging to a throwaway Parquet store)
on the current device, without Ray, and prints one JSON object:

- ``presets.<name>.eager`` / ``.compiled``: median tokens/s of the steps after ``--warmup`` (each step's
  rate is its readback chunk's), and MFU = tokens/s x FLOPs/token / peak (FLOPs/token under
  "6N+attn:standard"; peak: the dense bf16 table of ``scalefit.proxy.model``, H100 SXM / H200 989e12,
  A100 312e12; ``null`` on a CPU). ``compiled`` is ``null`` with ``compiled_reason`` off CUDA
  (torch.compile runs on CUDA only).
- ``packing``: total tokens/s of k proxies of ``--pack-preset`` trained at once by k processes on the one
  device (over the window where all k are past warm-up), and its ratio to ``one_at_a_time_tokens_per_s``
  (one proxy alone, in this process).
- ``batch_builder_speedup``: ``reference_batch`` (old: one window at a time) time over ``get_batch``
  (vectorized) time, from (seed, step) to (x, y), timed in this run on the same (seed, step)s of the real
  train split at ``--builder-shape`` (batch x context); ``batches_identical``: every batch bit-identical.

Options: ``--presets 100k,1m`` ``--steps 15`` ``--warmup 5`` ``--batch-size 8`` ``--context N``
``--dtype auto|float32|bfloat16`` ``--log-every N`` (steps per loss readback; default the trainer's: 1 on
CPU, 16 on CUDA) ``--no-compile`` (skip the compiled runs) ``--compare-eager`` (kept for old command
lines: eager is always timed) ``--pack 1,2,4`` (k values; 0 skips) ``--pack-preset 100k``
``--builder-shape 32x256`` ``--builder-steps 500`` ``--out FILE`` ``--quick`` (one small preset, few
steps, k = 1, 2: under a minute on 2 CPU cores). Needs only torch, numpy, pandas, pyarrow and this
repository (no install, no Ray):

    python benchmarks/train_throughput.py --quick                 # CPU smoke
    python benchmarks/train_throughput.py                         # on a GPU: full set, up to 100m
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # scalefit importable from a bare checkout


def _config(preset: str, steps: int, batch: int, context: int | None, compile_: bool, dtype: str, seed: int):
    from scalefit import schedules
    from scalefit.proxy.config import DataConfig, RunConfig
    from scalefit.proxy.config import preset as get_preset

    model = get_preset(preset) if context is None else get_preset(preset, context=context)
    sched = schedules.Constant(peak_lr=3e-4, total_steps=steps, warmup_steps=min(10, steps - 1))
    return RunConfig(
        model=model,
        data=DataConfig(),
        schedule=sched,
        batch_size=batch,
        seed=seed,
        eval_every=0,
        checkpoint_every=0,
        compile=compile_,
        dtype=dtype,
        sweep="benchmark",
    )


def measure(cfg, warmup: int, log_every: int | None = None) -> dict:
    """Train ``cfg`` in a temporary store; the median steady-state tokens/s, MFU and readback stamps."""
    import numpy as np

    from scalefit.proxy.model import flops_per_token, n_params, peak_flops
    from scalefit.proxy.train import resolve_device, train

    stamps: list[tuple[float, int]] = []  # (time.time() at the row's readback, tokens of its step)
    rates: list[float] = []

    def progress(row: dict) -> None:
        stamps.append((time.time(), cfg.tokens_per_step))
        if row["step"] >= warmup:
            rates.append(row["tokens_per_s"])

    with tempfile.TemporaryDirectory() as root:
        result = train(cfg, root, progress=progress, log_every=log_every)
    device = resolve_device(cfg.device)
    fpt = flops_per_token(cfg.model, cfg.flops_convention)
    rate = float(np.median(rates)) if rates else float("nan")
    peak = peak_flops(device)
    return {
        "preset_shape": f"{cfg.model.n_layer}x{cfg.model.d_model}",
        "n_params": n_params(cfg.model),
        "flops_per_token": fpt,
        "batch_size": cfg.batch_size,
        "context": cfg.model.context,
        "compile": cfg.compile,
        "dtype": cfg.dtype,
        "status": result.status,
        "device": str(device),
        "tokens_per_s": rate,
        "mfu": rate * fpt / peak if peak else None,
        "steps": cfg.steps,
        "warmup": warmup,
        "stamps": stamps,
    }


def _worker(args: tuple, queue) -> None:
    cfg_json, warmup, log_every = args
    from scalefit.proxy.config import RunConfig

    queue.put(measure(RunConfig.from_json(cfg_json), warmup, log_every))


def packed(cfgs: list, warmup: int, log_every: int | None) -> float:
    """Total tokens/s of ``cfgs`` trained by concurrent processes, over their common steady window."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=((c.to_json(), warmup, log_every), queue)) for c in cfgs]
    for p in procs:
        p.start()
    results = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    starts = [r["stamps"][warmup][0] for r in results]
    ends = [r["stamps"][-1][0] for r in results]
    lo, hi = max(starts), min(ends)
    if hi <= lo:
        return float("nan")  # the processes never overlapped: give them more steps
    tokens = sum(n for r in results for t, n in r["stamps"] if lo < t <= hi)
    return tokens / (hi - lo)


def batch_builder(shape: str, steps: int, repeats: int = 3) -> dict:
    """Old loop builder vs vectorized builder on the real train split: same (seed, step)s, interleaved."""
    import numpy as np

    from scalefit.proxy.config import DataConfig
    from scalefit.proxy.data import get_batch, load_split, reference_batch, window_starts

    batch, context = (int(v) for v in shape.split("x"))
    arr = load_split(DataConfig(), "train")
    identical, best = True, {"loop": float("inf"), "vectorized": float("inf"), "rng": float("inf")}
    builders = (("loop", reference_batch), ("vectorized", get_batch), ("rng", window_starts))
    for rep in range(repeats):  # best of repeats: the least disturbed by other load on the machine
        for name, build in builders:
            t = time.perf_counter()
            for step in range(steps):
                build(arr, batch, context, rep, step)
            best[name] = min(best[name], (time.perf_counter() - t) / steps)
        for step in range(steps):
            new, old = (
                get_batch(arr, batch, context, rep, step),
                reference_batch(arr, batch, context, rep, step),
            )
            identical &= all(
                a.dtype == b.dtype and np.array_equal(a, b) for a, b in zip(new, old, strict=True)
            )
    return {
        "batch_size": batch,
        "context": context,
        "steps": steps * repeats,
        "loop_us_per_batch": best["loop"] * 1e6,
        "vectorized_us_per_batch": best["vectorized"] * 1e6,
        "of_which_rng_us_per_batch": best["rng"] * 1e6,  # the (seed, step) draw both builders share
        "batch_builder_speedup": best["loop"] / best["vectorized"],
        "batches_identical": bool(identical),
    }


def main(argv: list[str] | None = None) -> dict:
    import torch

    from scalefit.proxy.model import peak_flops

    cuda = torch.cuda.is_available()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small presets, few steps: < 1 min on 2 CPU cores")
    p.add_argument("--presets", default=None, help="comma-separated MODEL_PRESETS names")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--warmup", type=int, default=None, help="steps left out of the median")
    p.add_argument("--batch-size", type=int, default=32 if cuda else 8)
    p.add_argument("--context", type=int, default=None, help="override the presets' context")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"])
    p.add_argument("--log-every", type=int, default=None, help="steps per loss readback (trainer default)")
    p.add_argument("--no-compile", action="store_true", help="skip the compiled runs on CUDA")
    p.add_argument("--compare-eager", action="store_true", help="kept for old command lines (always on)")
    p.add_argument("--pack", default=None, help="comma-separated k (proxies at once), 0 skips")
    p.add_argument("--pack-preset", default=None)
    p.add_argument("--builder-shape", default="32x256", help="batch x context of the builder comparison")
    p.add_argument("--builder-steps", type=int, default=None)
    p.add_argument("--out", default="", help="also write the JSON here")
    a = p.parse_args(argv)
    full = "100k,1m,3m,10m,30m,100m" if cuda else "100k,300k,1m"
    presets = a.presets or ("100k" if a.quick else full)
    steps = a.steps or (12 if a.quick else 60 if cuda else 20)
    warmup = a.warmup if a.warmup is not None else (4 if a.quick else 10 if cuda else 5)
    pack = a.pack or ("1,2" if a.quick else "1,2,4")
    pack_preset = a.pack_preset or ("100k" if a.quick or not cuda else "3m")
    device = torch.device("cuda" if cuda else "cpu")
    report: dict = {
        "torch": torch.__version__,
        "device": str(device),
        "gpu": torch.cuda.get_device_name() if cuda else None,
        "peak_flops": peak_flops(device),
        "presets": {},
    }
    for name in [n for n in presets.split(",") if n]:
        cfg = _config(name, steps, a.batch_size, a.context, False, a.dtype, 0)
        entry = {"eager": _clean(measure(cfg, warmup, a.log_every)), "compiled": None}
        if not cuda:
            entry["compiled_reason"] = "torch.compile runs on CUDA only; this machine has no CUDA device"
        elif a.no_compile:
            entry["compiled_reason"] = "--no-compile"
        else:
            entry["compiled"] = _clean(measure(cfg.replace(compile=True), warmup, a.log_every))
            entry["compile_speedup"] = entry["compiled"]["tokens_per_s"] / entry["eager"]["tokens_per_s"]
        report["presets"][name] = entry
    ks = [int(k) for k in pack.split(",") if int(k) > 0]
    if ks:
        cfgs = [
            _config(pack_preset, steps, a.batch_size, a.context, False, a.dtype, s) for s in range(max(ks))
        ]
        single = measure(cfgs[0], warmup, a.log_every)["tokens_per_s"]
        report["packing"] = {
            "preset": pack_preset,
            "how": "k processes on one device, trained at once",
            "one_at_a_time_tokens_per_s": single,
            "k": {},
        }
        for k in ks:
            total = packed(cfgs[:k], warmup, a.log_every)
            report["packing"]["k"][str(k)] = {"total_tokens_per_s": total, "ratio": total / single}
    builder = batch_builder(a.builder_shape, a.builder_steps or (150 if a.quick else 500))
    report["batch_builder"] = builder
    report["batch_builder_speedup"] = builder["batch_builder_speedup"]
    report["batches_identical"] = builder["batches_identical"]
    text = json.dumps(report, indent=2)
    print(text)
    if a.out:
        Path(a.out).write_text(text)
    return report


def _clean(result: dict) -> dict:
    return {k: v for k, v in result.items() if k != "stamps"}


if __name__ == "__main__":
    main()
