"""Resume integrity (issue #13): a damaged newest checkpoint falls back to the previous intact one, the
eval rows of the resume step are stored once, and a trained store reads as a plain Parquet dataset.

Real training on CPU (a tiny GPT on this repository's own source bytes), killed with SIGKILL in a child
process at a chosen step (the child kills itself from its progress callback: no timing involved).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
import torch
from test_train import KILLED_CHILD

from scalefit import schedules
from scalefit.errors import DataError
from scalefit.proxy.checkpoint import checkpoint_steps, ckpt_path, load_latest
from scalefit.proxy.config import DataConfig, ModelConfig, RunConfig
from scalefit.proxy.data import write_token_folder
from scalefit.proxy.train import train
from scalefit.store.parquet import read_curves, run_dir

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tokens(tmp_path_factory: pytest.TempPathFactory) -> str:
    text = b"".join(p.read_bytes() for p in sorted((ROOT / "scalefit").glob("*.py")))
    arr = np.frombuffer(text, dtype=np.uint8).astype(np.uint16)
    return str(write_token_folder(arr, tmp_path_factory.mktemp("tokens")))


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _config(tokens: str) -> RunConfig:
    return RunConfig(
        model=ModelConfig(1, 16, 2, context=32),
        data=DataConfig(dataset=tokens),
        schedule=schedules.Cosine(peak_lr=3e-2, total_steps=60, warmup_steps=5),
        batch_size=4,
        eval_every=10,
        eval_batches=2,
        checkpoint_every=20,
        device="cpu",
    )


def _run_child(cfg: RunConfig, root: Path, kill_at: int) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-c", KILLED_CHILD, cfg.to_json(), str(root), str(kill_at)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=300)


def test_damaged_newest_checkpoint_resumes_from_the_previous_and_evals_are_stored_once(tokens, tmp_path):
    cfg = _config(tokens)
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    assert _run_child(cfg, killed, 55).returncode == -9
    assert checkpoint_steps(killed, cfg.run_id) == [20, 40]
    newest = ckpt_path(killed, cfg.run_id, 40)
    newest.write_bytes(newest.read_bytes()[:1000])  # truncated (a disk that filled up, a bad copy)
    with pytest.warns(UserWarning, match="step-00000040"):
        path, state = load_latest(killed, cfg.run_id)
    assert path == ckpt_path(killed, cfg.run_id, 20) and state["step"] == 20

    with pytest.warns(UserWarning, match="step-00000040"):
        resumed = train(cfg, killed)
    assert resumed.status == "ok" and resumed.resumed_from == 20
    ref = train(cfg, clean)
    a, b = (read_curves(r).frame for r in (killed, clean))
    assert a["step"].tolist() == list(range(60))
    cols = ["step", "lr", "loss", "tokens", "grad_norm"]
    np.testing.assert_allclose(a[cols].to_numpy(float), b[cols].to_numpy(float), rtol=0, atol=1e-6)
    assert ref.status == "ok"

    folder = run_dir(killed, cfg.run_id)
    raw = duckdb.sql(f"SELECT step, dataset FROM read_parquet('{folder}/evals-*.parquet')").df()
    assert sorted(raw["step"]) == list(range(0, 61, 10))  # the resume step's eval (20) once, and all others
    raw = duckdb.sql(f"SELECT step FROM read_parquet('{folder}/curves-*.parquet')").df()
    assert sorted(raw["step"]) == list(range(60))  # no (run, step) row twice, also for plain SQL

    everything = pd.read_parquet(killed)  # checkpoints (under _ckpt/) do not break a plain read
    assert everything["run_id"].eq(cfg.run_id).all() and (folder / "_ckpt").is_dir()


def test_every_checkpoint_damaged_is_a_named_error(tokens, tmp_path):
    cfg = _config(tokens)
    assert _run_child(cfg, tmp_path, 45).returncode == -9
    for step in checkpoint_steps(tmp_path, cfg.run_id):
        path = ckpt_path(tmp_path, cfg.run_id, step)
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF  # one flipped byte: caught by the checkpoint's SHA-256
        path.write_bytes(bytes(data))
    with pytest.warns(UserWarning), pytest.raises(DataError, match="no intact checkpoint") as err:
        load_latest(tmp_path, cfg.run_id)
    assert err.value.run_id == cfg.run_id and err.value.file.endswith("step-00000040.pt")


def test_the_eval_of_the_resume_step_is_stored_once(tokens, tmp_path):
    cfg = _config(tokens)
    assert _run_child(cfg, tmp_path, 45).returncode == -9  # after the eval at 40 and checkpoint 40
    folder = run_dir(tmp_path, cfg.run_id)
    query = f"SELECT step FROM read_parquet('{folder}/evals-*.parquet')"
    assert 40 in duckdb.sql(query).df()["step"].tolist()
    result = train(cfg, tmp_path)
    assert result.status == "ok" and result.resumed_from == 40
    assert sorted(duckdb.sql(query).df()["step"]) == list(range(0, 61, 10))


def test_checkpoints_of_an_older_store_layout_are_still_resumed_from(tokens, tmp_path):
    cfg = _config(tokens)
    assert _run_child(cfg, tmp_path, 45).returncode == -9
    folder = run_dir(tmp_path, cfg.run_id)
    (folder / "_ckpt").rename(folder / "ckpt")  # where checkpoints lived before they moved to _ckpt/
    assert checkpoint_steps(tmp_path, cfg.run_id) == [20, 40]
    result = train(cfg, tmp_path)
    assert result.status == "ok" and result.resumed_from == 40
    assert read_curves(tmp_path).frame["step"].tolist() == list(range(60))
