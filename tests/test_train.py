"""The training loop on CPU: a mini-sweep on real text, exact resume after SIGKILL, branches, divergence."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import torch

from scalefit import schedules
from scalefit.errors import ConfigError
from scalefit.proxy.checkpoint import checkpoint_steps
from scalefit.proxy.config import Branch, DataConfig, ModelConfig, RunConfig
from scalefit.proxy.train import train
from scalefit.store.parquet import read_curves

SIZES = [(1, 16, 2), (1, 32, 2), (2, 32, 2), (2, 48, 2)]  # (n_layer, d_model, n_head)
STEPS, DECAY_AT, PEAK = 120, 60, 0.1  # a high LR, so the cooldown's gain is large and robust


@pytest.fixture(scope="module", autouse=True)
def _cpu_env(tmp_path_factory):
    """Private token cache, one torch thread (bit-identical across processes; fair on a shared box)."""
    old_env, old_threads = os.environ.get("SCALEFIT_CACHE"), torch.get_num_threads()
    os.environ["SCALEFIT_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old_threads)
    if old_env is None:
        os.environ.pop("SCALEFIT_CACHE")
    else:
        os.environ["SCALEFIT_CACHE"] = old_env


def _config(size=(1, 16, 2), schedule=None, **kw) -> RunConfig:
    sched = schedule or schedules.Constant(peak_lr=PEAK, total_steps=STEPS, warmup_steps=10)
    base = dict(
        model=ModelConfig(*size, context=32),
        data=DataConfig(),
        schedule=sched,
        batch_size=8,
        eval_every=30,
        eval_batches=16,
        checkpoint_every=DECAY_AT,
    )
    return RunConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """4 sizes x {constant, WSD}: each WSD run is a cooldown branch of its constant trunk."""
    root = tmp_path_factory.mktemp("sweep")
    wsd = schedules.WSD(peak_lr=PEAK, total_steps=STEPS, warmup_steps=10, decay_steps=STEPS - DECAY_AT)
    pairs = []
    for size in SIZES:
        trunk = _config(size)
        branch = trunk.replace(schedule=wsd, branch_from=Branch(trunk.run_id, DECAY_AT))
        results = train(trunk, root), train(branch, root)
        assert [r.status for r in results] == ["ok", "ok"]
        pairs.append((trunk, branch))
    return root, pairs


def _frame(root, run_id, loss="train_loss"):
    f = read_curves(root, loss=loss).frame
    return f[f["run_id"] == run_id].reset_index(drop=True)


def test_loss_falls_and_cooldown_beats_its_constant_twin(sweep):
    root, pairs = sweep
    ev = read_curves(root, loss="eval:python-stdlib").frame
    final = ev[ev["step"] == STEPS].set_index("run_id")["loss"]
    for trunk, branch in pairs:
        curve = _frame(root, trunk.run_id)
        assert curve["step"].tolist() == list(range(STEPS))
        assert curve["loss"].iloc[0] > 5.0  # ~ln 256 at init
        assert final[trunk.run_id] < 3.4 and final[branch.run_id] < final[trunk.run_id] - 0.02


def test_branch_continues_the_trunk_and_equals_a_run_from_scratch(sweep):
    root, pairs = sweep
    trunk, branch = pairs[0]
    t, b = _frame(root, trunk.run_id), _frame(root, branch.run_id)
    assert b["step"].tolist() == list(range(STEPS))
    pd.testing.assert_frame_equal(
        t.loc[: DECAY_AT - 1, ["step", "lr", "loss"]], b.loc[: DECAY_AT - 1, ["step", "lr", "loss"]]
    )
    # The branch's first own step: same weights, same batch, so the same loss as the trunk's step.
    assert b.loc[DECAY_AT, "loss"] == t.loc[DECAY_AT, "loss"]
    assert b.loc[STEPS - 1, "lr"] < t.loc[STEPS - 1, "lr"] / 10
    scratch = branch.replace(branch_from=None)
    assert train(scratch, root).status == "ok"
    s = _frame(root, scratch.run_id)
    np.testing.assert_allclose(s["loss"], b["loss"], rtol=0, atol=1e-6)


KILLED_CHILD = textwrap.dedent("""
    import os, signal, sys, torch
    torch.set_num_threads(1)
    from scalefit.proxy.config import RunConfig
    from scalefit.proxy.train import train
    kill_at = int(sys.argv[3])
    def progress(row):
        if row["step"] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
    print(train(RunConfig.from_json(sys.argv[1]), sys.argv[2], progress=progress).status)
""")


def test_sigkill_mid_run_then_restart_equals_an_uninterrupted_run(tmp_path):
    cfg = _config(
        schedule=schedules.Cosine(peak_lr=3e-2, total_steps=60, warmup_steps=5),
        eval_every=10,
        eval_batches=2,
        checkpoint_every=20,
    )
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    argv = [sys.executable, "-c", KILLED_CHILD, cfg.to_json(), str(killed)]
    first = subprocess.run([*argv, "55"], capture_output=True, text=True, timeout=120)
    assert first.returncode == -9
    assert checkpoint_steps(killed, cfg.run_id) == [20, 40]
    assert _frame(killed, cfg.run_id)["step"].max() == 49  # rows past the last checkpoint were stored
    second = subprocess.run([*argv, "-1"], capture_output=True, text=True, timeout=120)
    assert second.stdout.strip() == "ok", second.stderr
    ref = train(cfg, clean)
    assert ref.status == "ok" and ref.resumed_from is None
    a, b = _frame(killed, cfg.run_id), _frame(clean, cfg.run_id)
    assert a["step"].tolist() == list(range(60))  # every step exactly once
    cols = ["step", "lr", "loss", "tokens", "grad_norm"]
    np.testing.assert_allclose(a[cols].to_numpy(float), b[cols].to_numpy(float), rtol=0, atol=1e-6)
    ea, eb = (read_curves(r, loss="eval:python-stdlib").frame for r in (killed, clean))
    np.testing.assert_allclose(ea["loss"], eb["loss"], rtol=0, atol=1e-6)
    again = train(cfg, killed)  # a finished run is not trained again
    assert again.resumed_from == 60 and again.final_loss == pytest.approx(a["loss"].iloc[-1])


def test_nan_loss_stops_as_diverged_and_keeps_the_curve(tmp_path):
    cfg = _config(schedule=schedules.Constant(peak_lr=1e30, total_steps=20), grad_clip=0.0, eval_every=0)
    result = train(cfg, tmp_path)
    assert result.status == "diverged" and 0 < result.steps_done < 20
    curves = read_curves(tmp_path)
    frame = curves.frame
    assert len(frame) == result.steps_done + 1 and not frame["finite"].iloc[-1]
    assert frame["finite"].iloc[0] and curves.runs.loc[cfg.run_id, "status"] == "diverged"


def test_bad_runs_fail_before_training_naming_the_field(tmp_path):
    tokens = tmp_path / "tiny.bin"
    np.arange(40, dtype=np.uint16).tofile(tokens)
    short = _config(data=DataConfig(dataset=str(tokens)), model=ModelConfig(1, 16, 2, 64, vocab_size=64))
    with pytest.raises(ConfigError) as info:
        train(short, tmp_path / "store")
    assert info.value.field == "model.context"
    orphan = _config(branch_from=Branch("000000000000", 60))
    with pytest.raises(ConfigError) as info:
        train(orphan, tmp_path / "store")
    assert info.value.field == "branch_from.step"
    assert not (tmp_path / "store" / short.run_id).exists()


def test_an_error_mid_run_is_recorded_as_failed_with_its_rows(tmp_path):
    def boom(row):
        if row["step"] == 3:
            raise RuntimeError("disk full")

    cfg = _config(schedule=schedules.Constant(peak_lr=1e-3, total_steps=10), eval_every=0)
    result = train(cfg, tmp_path, progress=boom)
    assert result.status == "failed" and result.steps_done == 3 and "disk full" in result.error
    curves = read_curves(tmp_path)
    assert curves.frame["step"].tolist() == [0, 1, 2, 3]
    assert curves.runs.loc[cfg.run_id, "status"] == "failed"
    assert "disk full" in curves.runs.loc[cfg.run_id, "error"]
