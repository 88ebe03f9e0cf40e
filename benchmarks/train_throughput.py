"""Training throughput of the proxy trainer: tokens/s per preset, MFU on GPU, packed proxies vs one.

Runs the real ``scalefit.proxy.train.train`` loop (AdamW, clipping, per-step logging to a throwaway Parquet
store) on the current device, without Ray, and prints one JSON object. Per preset: the median tokens/s
over the steps after ``--warmup`` (compilation and allocator warm-up excluded) and, on a GPU with a
known peak, MFU = tokens/s x FLOPs/token / peak (FLOPs/token under "6N+attn:standard": non-embedding +
head parameters plus attention; H100 dense bf16 peak 989 TFLOP/s). Baselines computed in the same run:
``packing.ratio`` = total tokens/s of ``--pack`` concurrent processes of a small preset over one
process alone; ``compile_speedup`` = compiled over eager tokens/s of the MFU preset (``--compare-eager``).

Needs only torch, numpy, pandas, pyarrow and this repository (no install, no Ray):

    python benchmarks/train_throughput.py --presets 100k,1m --steps 30           # CPU smoke
    python benchmarks/train_throughput.py                                        # on a GPU: full set
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


def measure(cfg, warmup: int) -> dict:
    """Train ``cfg`` in a temporary store; per-step wall clocks and the median steady-state tokens/s."""
    import numpy as np

    from scalefit.proxy.model import flops_per_token, n_params
    from scalefit.proxy.train import resolve_device, train

    stamps: list[tuple[float, int]] = []
    rates: list[float] = []
    mfus: list[float] = []

    def progress(row: dict) -> None:
        stamps.append((time.time(), cfg.tokens_per_step))
        rates.append(row["tokens_per_s"])
        if "mfu" in row:
            mfus.append(row["mfu"])

    with tempfile.TemporaryDirectory() as root:
        result = train(cfg, root, progress=progress)
    steady = rates[warmup:] or rates
    out = {
        "preset_shape": f"{cfg.model.n_layer}x{cfg.model.d_model}",
        "n_params": n_params(cfg.model),
        "flops_per_token": flops_per_token(cfg.model, cfg.flops_convention),
        "batch_size": cfg.batch_size,
        "context": cfg.model.context,
        "compile": cfg.compile,
        "dtype": cfg.dtype,
        "status": result.status,
        "device": str(resolve_device(cfg.device)),
        "tokens_per_s": float(np.median(steady)),
        "steps": cfg.steps,
        "warmup": warmup,
    }
    if mfus:
        out["mfu"] = float(np.median(mfus[warmup:] or mfus))
    out["stamps"] = stamps
    return out


def _worker(args: tuple, queue) -> None:
    cfg_json, warmup = args
    from scalefit.proxy.config import RunConfig

    queue.put(measure(RunConfig.from_json(cfg_json), warmup))


def packed(cfgs: list, warmup: int) -> float:
    """Total tokens/s of ``cfgs`` trained by concurrent processes, over their common steady window."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=((c.to_json(), warmup), queue)) for c in cfgs]
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


def main(argv: list[str] | None = None) -> dict:
    import torch

    cuda = torch.cuda.is_available()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--presets",
        default="100k,1m,3m,10m,30m" if cuda else "100k,300k,1m",
        help="comma-separated MODEL_PRESETS names (tokens/s each, eager)",
    )
    p.add_argument("--steps", type=int, default=60 if cuda else 20)
    p.add_argument("--warmup", type=int, default=10 if cuda else 5, help="steps left out of the median")
    p.add_argument("--batch-size", type=int, default=32 if cuda else 8)
    p.add_argument("--context", type=int, default=None, help="override the presets' context")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"])
    p.add_argument("--mfu-preset", default="100m" if cuda else "", help="'' skips the bf16+compile run")
    p.add_argument("--mfu-batch-size", type=int, default=32)
    p.add_argument("--no-compile", action="store_true", help="eager mode for the MFU preset")
    p.add_argument("--compare-eager", action="store_true", help="also time the MFU preset eagerly")
    p.add_argument("--pack", type=int, default=4 if cuda else 0, help="concurrent processes, 0 skips")
    p.add_argument("--pack-preset", default="3m")
    p.add_argument("--out", default="", help="also write the JSON here")
    a = p.parse_args(argv)
    report: dict = {
        "torch": torch.__version__,
        "cuda": cuda,
        "gpu": torch.cuda.get_device_name() if cuda else None,
        "presets": {},
    }
    for name in [n for n in a.presets.split(",") if n]:
        cfg = _config(name, a.steps, a.batch_size, a.context, False, a.dtype, 0)
        report["presets"][name] = _clean(measure(cfg, a.warmup))
    if a.mfu_preset:
        cfg = _config(a.mfu_preset, a.steps, a.mfu_batch_size, a.context, not a.no_compile, a.dtype, 0)
        report["mfu_run"] = _clean(measure(cfg, a.warmup))
        if a.compare_eager and not a.no_compile:
            eager = _clean(measure(cfg.replace(compile=False), a.warmup))
            report["compile_speedup"] = report["mfu_run"]["tokens_per_s"] / eager["tokens_per_s"]
    if a.pack:
        cfgs = [
            _config(a.pack_preset, a.steps, a.batch_size, a.context, False, a.dtype, seed)
            for seed in range(a.pack)
        ]
        single = measure(cfgs[0], a.warmup)["tokens_per_s"]
        total = packed(cfgs, a.warmup)
        report["packing"] = {
            "preset": a.pack_preset,
            "n_procs": a.pack,
            "single_tokens_per_s": single,
            "packed_tokens_per_s": total,
            "ratio": total / single,
        }
    text = json.dumps(report, indent=2)
    print(text)
    if a.out:
        Path(a.out).write_text(text)
    return report


def _clean(result: dict) -> dict:
    return {k: v for k, v in result.items() if k != "stamps"}


if __name__ == "__main__":
    main()
