"""RunConfig and its parts: validation names the field, JSON round trip, stable run ids, presets."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from scalefit import schedules
from scalefit.errors import ConfigError, ScalefitError
from scalefit.proxy.config import MODEL_PRESETS, Branch, DataConfig, ModelConfig, RunConfig, ladder, preset
from scalefit.proxy.model import n_params_nonembed

SCHED = schedules.parse("wsd:peak=1e-3,steps=100,decay=0.2")


def _run(**kw) -> RunConfig:
    base = dict(model=ModelConfig(2, 32, 4, 64), data=DataConfig(), schedule=SCHED, batch_size=8)
    return RunConfig(**{**base, **kw})


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: ModelConfig(2, 30, 4, 64), "model.n_head"),
        (lambda: ModelConfig(2, 36, 4, 64), "model.n_head"),  # head_dim 9: rotary needs it even
        (lambda: ModelConfig(0, 32, 4, 64), "model.n_layer"),
        (lambda: ModelConfig(2, 32, 4, 64, pos="alibi"), "model.pos"),
        (lambda: DataConfig(dataset="wikipedia"), "data.dataset"),
        (lambda: DataConfig(eval_datasets=("nope",)), "data.eval_datasets"),
        (lambda: DataConfig(tokenizer="sentencepiece"), "data.tokenizer"),
        (lambda: _run(schedule=schedules.Constant(peak_lr=1e-3, total_steps=100), steps=50), "steps"),
        (lambda: _run(batch_size=0), "batch_size"),
        (lambda: _run(model=ModelConfig(2, 32, 4, 64, vocab_size=100)), "model.vocab_size"),
        (lambda: _run(device="tpu"), "device"),
        (lambda: _run(betas=(0.9, 1.5)), "betas"),
        (lambda: _run(flops_convention="7N"), "flops_convention"),
        (lambda: _run(branch_from=Branch("abc", 100)), "branch_from.step"),
        (lambda: _run(grad_clip=-1.0), "grad_clip"),
    ],
)
def test_bad_config_names_the_field(build, field):
    with pytest.raises(ConfigError) as info:
        build()
    assert info.value.field == field


def test_zero_steps_and_negative_lr_fail_naming_the_field():
    for bad in ({"total_steps": 0}, {"peak_lr": -1e-3}):
        with pytest.raises(ScalefitError) as info:
            _run(schedule=schedules.Constant(**{"peak_lr": 1e-3, "total_steps": 10, **bad}))
        assert info.value.field in ("total_steps", "peak_lr", "steps", "schedule.peak_lr")


def test_steps_follow_the_schedule_and_round_trip():
    cfg = _run(branch_from=Branch("abc123", 40), sweep="s1", data=DataConfig(eval_datasets=["python-docs"]))
    assert cfg.steps == 100 and cfg.tokens_per_step == 8 * 64
    back = RunConfig.from_json(json.dumps(cfg.to_dict()))
    assert back == cfg and back.run_id == cfg.run_id
    assert back.data.eval_datasets == ("python-docs",) and back.branch_from == Branch("abc123", 40)
    assert len(cfg.run_id) == 12 and int(cfg.run_id, 16) >= 0
    assert cfg.replace(seed=1).run_id != cfg.run_id
    assert cfg.replace(schedule=SCHED.replace(total_steps=200)).steps == 200


def test_run_id_is_stable_across_processes():
    code = (
        "from scalefit import schedules; from scalefit.proxy.config import *; "
        "print(RunConfig(model=ModelConfig(2, 32, 4, 64), data=DataConfig(), batch_size=8, "
        "schedule=schedules.parse('wsd:peak=1e-3,steps=100,decay=0.2')).run_id)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == _run().run_id


def test_unknown_field_in_dict_is_named():
    d = _run().to_dict() | {"learning_rate": 1.0}
    with pytest.raises(ConfigError) as info:
        RunConfig.from_dict(d)
    assert info.value.field == "learning_rate"


def test_token_file_paths_are_a_dataset():
    assert DataConfig(dataset="corpus/train.bin,corpus/more.bin").vocab_size is None
    assert DataConfig(tokenizer="bpe", bpe_vocab_size=1000).vocab_size == 1000


def test_ladder_spans_100k_to_1b_with_sane_shapes():
    sizes = [n_params_nonembed(m) for m in ladder()]
    assert sizes == sorted(sizes) and len(sizes) == len(MODEL_PRESETS) == 9
    assert 0.08e6 < sizes[0] < 0.12e6 and 0.9e9 < sizes[-1] < 1.1e9
    for m in MODEL_PRESETS.values():
        assert 32 <= m.head_dim <= 128 and 25 <= m.d_model / m.n_layer <= 110
    assert [m.context for m in ladder("1m", "3m", context=128)] == [128, 128]
    with pytest.raises(ConfigError):
        preset("7b")
