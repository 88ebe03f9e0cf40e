"""TensorBoard event files written by ``torch.utils.tensorboard.SummaryWriter`` with the tags the
Hugging Face Trainer and PyTorch Lightning write: steps, LR and losses read back exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from scalefit import schedules
from scalefit.errors import DataError
from scalefit.store.importers import import_tensorboard

SummaryWriter = pytest.importorskip("torch.utils.tensorboard").SummaryWriter
SCHED = schedules.parse("cosine:peak=0.0003,steps=300,warmup=30,final=0.1")


def _f32(x: float) -> float:
    return float(np.float32(x))


def _hf_run(folder: Path) -> None:
    """HF Trainer's TensorBoardCallback: train/* at global_step g (loss of update g-1, LR of update g)."""
    with SummaryWriter(str(folder)) as w:
        for g in range(10, 301, 10):
            w.add_scalar("train/loss", 4.0 - g / 100, g)
            w.add_scalar("train/learning_rate", float(SCHED(g)), g)
            w.add_scalar("train/epoch", g / 300, g)
            if g % 100 == 0:
                w.add_scalar("eval/loss", 4.2 - g / 100, g)
                w.add_scalar("eval/runtime", 2.0, g)


def _lightning_run(folder: Path) -> None:
    """Lightning's TensorBoardLogger: self.log('train_loss'), LearningRateMonitor's lr-AdamW, val_loss."""
    with SummaryWriter(str(folder)) as w:
        for s in range(9, 300, 10):
            w.add_scalar("lr-AdamW", float(SCHED(s)), s)
            w.add_scalar("train_loss", 3.0 - s / 1000, s)
            w.add_scalar("epoch", 0.0, s)
        w.add_scalar("val_loss", 2.9, 299)


def test_hf_tags_one_based_steps_converted(tmp_path: Path) -> None:
    _hf_run(tmp_path / "hf")
    c = import_tensorboard(tmp_path)
    run = c.run("hf")
    g = np.arange(10, 301, 10)
    loss_rows = ~np.isnan(run.loss)
    np.testing.assert_array_equal(run.steps[loss_rows], g - 1)
    np.testing.assert_array_equal(run.loss[loss_rows], [_f32(4.0 - x / 100) for x in g])
    at_g = np.isin(run.steps, g)
    np.testing.assert_array_equal(run.steps[at_g], g)
    np.testing.assert_array_equal(run.lr[at_g], [_f32(float(SCHED(x))) for x in g])
    assert len(run.steps) == len(set(g) | set(g - 1))
    assert c.evals["step"].tolist() == [100, 200, 300] and set(c.evals["dataset"]) == {"eval/loss"}
    summary = c.runs.loc["hf", "import_summary"]
    assert "1-based" in summary and "tag 'train/learning_rate'" in summary
    assert "eval/runtime" in summary and "train/epoch" in summary  # read, not imported, and said so
    np.testing.assert_allclose(c.lr_sequence("hf", 300), SCHED.lrs(300), rtol=1e-6)


def test_lightning_tags_zero_based_and_named_tags(tmp_path: Path) -> None:
    _lightning_run(tmp_path / "lightning")
    c = import_tensorboard(tmp_path / "lightning")
    run = c.run("lightning")
    s = np.arange(9, 300, 10)
    np.testing.assert_array_equal(run.steps, s)
    np.testing.assert_array_equal(run.lr, [_f32(float(SCHED(x))) for x in s])
    np.testing.assert_array_equal(run.loss, [_f32(3.0 - x / 1000) for x in s])
    assert c.evals[["step", "dataset"]].values.tolist() == [[299, "val_loss"]]
    assert "1-based" not in c.runs.loc["lightning", "import_summary"]
    named = import_tensorboard(tmp_path / "lightning", loss_tag="train_loss", lr_tag="lr-AdamW", run_id="L")
    np.testing.assert_array_equal(named.run("L").lr, run.lr)
    with pytest.raises(DataError, match="no LR tag 'lr-SGD'") as err:
        import_tensorboard(tmp_path / "lightning", lr_tag="lr-SGD")
    assert "lr_tag=" in err.value.fix and "lr-AdamW" in err.value.fix
    none = import_tensorboard(tmp_path / "lightning", lr_tag="none")
    assert np.isnan(none.run("lightning").lr).all()


def test_two_runs_in_one_folder_and_not_found(tmp_path: Path) -> None:
    _hf_run(tmp_path / "logs" / "hf")
    _lightning_run(tmp_path / "logs" / "lightning")
    c = import_tensorboard(tmp_path / "logs")
    assert c.run_ids == ["hf", "lightning"]
    with pytest.raises(DataError, match="not found"):
        import_tensorboard(tmp_path / "nope")
