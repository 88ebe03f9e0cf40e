"""The vectorized batch builder against the old loop builder, the one-ahead prefetch, deferred readback."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scalefit import schedules
from scalefit.proxy.config import DataConfig, ModelConfig, RunConfig
from scalefit.proxy.data import Prefetch, TokenArray, get_batch, reference_batch
from scalefit.proxy.train import device_batches, train
from scalefit.store.parquet import read_curves


@pytest.fixture(autouse=True)
def _cpu(tmp_path, monkeypatch):
    monkeypatch.setenv("SCALEFIT_CACHE", str(tmp_path / "cache"))
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _parts(dtype, sizes) -> TokenArray:
    rng = np.random.default_rng(7)
    return TokenArray(tuple(rng.integers(0, np.iinfo(dtype).max, n).astype(dtype) for n in sizes), "t")


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32])
@pytest.mark.parametrize("sizes", [(5000,), (40, 3, 200, 11, 400), (9, 1000, 9)])
def test_vectorized_batches_are_bit_identical_to_the_loop_builder(dtype, sizes):
    arr = _parts(dtype, sizes)
    for context in (1, 8, 33):
        for batch_size in (1, 7, 64):
            for seed in (0, 3):
                for step in range(0, 200, 13):
                    new = get_batch(arr, batch_size, context, seed, step)
                    old = reference_batch(arr, batch_size, context, seed, step)
                    for a, b in zip(new, old, strict=True):
                        assert a.dtype == b.dtype == np.int64 and a.flags.c_contiguous
                        assert a.shape == (batch_size, context) and np.array_equal(a, b)


def test_windows_of_a_memory_mapped_split_never_cross_files(tmp_path):
    paths = [tmp_path / f"{i}.bin" for i in range(3)]
    for i, (p, n) in enumerate(zip(paths, (30, 5, 50), strict=True)):
        np.full(n, i + 1, dtype=np.uint16).tofile(p)
    arr = TokenArray(tuple(np.memmap(p, dtype=np.uint16, mode="r") for p in paths), "mm")
    x, y = get_batch(arr, 256, 10, seed=1, step=2)
    assert {int(v) for v in np.unique(x)} == {1, 3}  # the 5-token file holds no 11-token window
    assert all(len(set(row)) == 1 for row in np.concatenate([x, y], axis=1))
    assert np.array_equal(arr.windows(np.array([0, 19, 20, 59]), 10)[:, 0], [1, 1, 3, 3])


@pytest.mark.parametrize("start", [0, 17])
def test_prefetch_yields_the_pure_batches_in_order_from_any_start(start):
    arr = _parts(np.uint16, (300, 700))
    with Prefetch(lambda s: get_batch(arr, 5, 12, 9, s), start) as it:
        got = [next(it) for _ in range(25)]
    assert [s for s, _ in got] == list(range(start, start + 25))
    for step, (x, y) in got:
        want = reference_batch(arr, 5, 12, 9, step)
        assert np.array_equal(x, want[0]) and np.array_equal(y, want[1])
    with device_batches(arr, 5, 12, 9, start, torch.device("cpu")) as it:
        for (step, (x, y)), want in zip(it, range(start, start + 10), strict=False):  # it is endless
            ref = get_batch(arr, 5, 12, 9, want)
            assert step == want and x.dtype == torch.int64
            assert torch.equal(x, torch.from_numpy(ref[0])) and torch.equal(y, torch.from_numpy(ref[1]))


def test_prefetch_raises_the_error_of_the_step_that_failed():
    def make(step: int) -> int:
        if step == 3:
            raise ValueError("bad step")
        return step * 10

    with Prefetch(make, 0) as it:
        assert [next(it)[1] for _ in range(3)] == [0, 10, 20]
        with pytest.raises(ValueError, match="bad step"):
            next(it)


def _cfg(**kw) -> RunConfig:
    base = dict(
        model=ModelConfig(1, 16, 2, context=32),
        data=DataConfig(),
        schedule=schedules.Constant(peak_lr=3e-2, total_steps=30, warmup_steps=3),
        batch_size=4,
        eval_every=10,
        eval_batches=2,
        checkpoint_every=20,
    )
    return RunConfig(**{**base, **kw})


COLS = ["step", "tokens", "flops", "lr", "loss", "grad_norm", "finite"]


@pytest.mark.parametrize("log_every", [4, 7, 1000])
def test_deferred_readback_stores_the_rows_of_a_per_step_readback(tmp_path, log_every):
    cfg = _cfg()
    seen: list[int] = []
    ref = train(cfg, tmp_path / "ref", log_every=1)
    got = train(cfg, tmp_path / "got", log_every=log_every, progress=lambda row: seen.append(row["step"]))
    assert ref.status == got.status == "ok" and ref.final_loss == got.final_loss
    assert seen == list(range(30))  # every row reaches progress, in step order
    a, b = (read_curves(tmp_path / r).frame for r in ("ref", "got"))
    assert a["step"].tolist() == list(range(30))
    assert a[COLS].equals(b[COLS])  # bit-identical values, not merely close
    ea, eb = (read_curves(tmp_path / r, loss="eval:python-stdlib").frame for r in ("ref", "got"))
    assert ea[["step", "loss"]].equals(eb[["step", "loss"]])


@pytest.mark.parametrize("log_every", [1, 3, 50])
def test_divergence_is_recorded_at_its_step_whatever_the_readback_interval(tmp_path, log_every):
    cfg = _cfg(schedule=schedules.Constant(peak_lr=1e30, total_steps=20), grad_clip=0.0, eval_every=0)
    ref = train(cfg, tmp_path / "ref", log_every=1)
    got = train(cfg, tmp_path / str(log_every), log_every=log_every)
    assert ref.status == got.status == "diverged" and got.steps_done == ref.steps_done
    a, b = read_curves(tmp_path / "ref"), read_curves(tmp_path / str(log_every))
    assert len(b.frame) == got.steps_done + 1 and not b.frame["finite"].iloc[-1]
    assert a.frame[COLS].equals(b.frame[COLS]) and b.runs.loc[cfg.run_id, "status"] == "diverged"
