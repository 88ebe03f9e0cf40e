"""Sweep specs: YAML -> SweepSpec -> RunConfigs, the dry-run plan, and malformed files (no Ray here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from scalefit.cluster.sweep import describe_plan, load_sweep, parse_sweep, plan
from scalefit.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
SHAPE = {"n_layer": 2, "d_model": 64, "n_head": 2, "context": 64}


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(text)
    return path


def _spec(**grid: object) -> dict:
    return {"sweep": "t", "grid": {"model": [SHAPE], "steps": [100], **grid}, "train": {"batch_size": 4}}


def test_example_configs_load_and_expand() -> None:
    smoke = load_sweep(ROOT / "jobs/configs/smoke-cpu.yaml")
    assert smoke.name == "smoke-cpu" and len(smoke.expand()) == 4
    ladder = load_sweep(ROOT / "jobs/configs/gpu-ladder.yaml")
    # 4 sizes x 3 horizons x 2 LRs x (cosine + trunk + 3 branches)
    assert len(ladder.expand()) == 4 * 3 * 2 * 5
    assert ladder.resources.num_gpus == 0.25 and ladder.train.run["compile"] is True


def test_grid_product_and_yaml_exponent_floats(tmp_path: Path) -> None:
    text = """
sweep: g
grid:
  model: [100k, {preset: 100k, context: 64}]
  steps: [50, 80]
  schedule: [cosine, "wsd:decay=0.2,shape=1-sqrt"]
  peak_lr: [3e-3, 1e-2]
  seed: [0, 1]
train: {batch_size: 2, warmup: 5, eval_every: 0, checkpoint_every: 25}
"""
    runs = load_sweep(_write(tmp_path, text)).expand()
    assert len(runs) == 2 * 2 * 2 * 2 * 2
    assert len({r.run_id for r in runs}) == len(runs)
    assert {r.schedule.peak_lr for r in runs} == {3e-3, 1e-2}  # "3e-3" is a string in YAML 1.1
    assert {r.model.context for r in runs} == {256, 64}
    wsd = next(r for r in runs if r.schedule.kind == "wsd" and r.steps == 80)
    assert (wsd.schedule.decay_fraction, wsd.schedule.shape, wsd.schedule.warmup_steps) == (0.2, "1-sqrt", 5)
    assert all(r.sweep == "g" and r.eval_every == 0 and r.checkpoint_every == 25 for r in runs)


def test_tokens_per_param_horizon_counts_total_parameters() -> None:
    # total = n_layer (4d^2 + 2*d*4d + 2d) + d + vocab*d = 2 * 49280 + 64 + 16384 = 115008 (tied head)
    spec = parse_sweep(
        _spec(steps=None)
        | {
            "grid": {"model": [SHAPE], "tokens_per_param": [20], "schedule": ["constant"]},
            "train": {"batch_size": 4},
        }
    )
    (run,) = spec.expand()
    assert run.steps == 115008 * 20 // (4 * 64) == 8985
    nonembed = parse_sweep(
        {
            "grid": {"model": [SHAPE], "tokens": [256 * 1000 + 1], "schedule": ["cosine"]},
            "train": {"batch_size": 4},
        }
    )
    assert nonembed.expand()[0].steps == 1001  # ceil(tokens / tokens_per_step)


def test_family_expands_to_trunk_and_branches_on_its_checkpoints() -> None:
    spec = parse_sweep(
        _spec(family=[{"decay": [0.1, 0.25, 0.33], "shape": "linear"}], peak_lr=[0.01])
        | {"train": {"batch_size": 4, "warmup": 0.1}}
    )
    trunk, *branches = spec.expand()
    assert trunk.schedule.kind == "constant" and trunk.branch_from is None
    assert (trunk.steps, trunk.checkpoint_every, trunk.schedule.warmup_steps) == (100, 5, 10)
    assert [b.branch_from.step for b in branches] == [90, 75, 65]  # decay 0.33 rounds to 7/20
    assert {b.branch_from.trunk_run_id for b in branches} == {trunk.run_id}
    for b in branches:
        s = b.branch_from.step
        np.testing.assert_array_equal(b.schedule.lrs(s), trunk.schedule.lrs(s))
        assert b.schedule(s) == 0.01 and b.schedule(99) < 0.01 and b.schedule.decay_steps == 100 - s


def test_runs_list_unions_grids_and_deduplicates() -> None:
    one = {"model": [SHAPE], "steps": 40, "schedule": "cosine"}
    spec = parse_sweep({"runs": [one, one, {**one, "seed": [1, 2]}], "train": {"batch_size": 2}})
    assert sorted(r.seed for r in spec.expand()) == [0, 1, 2]


def test_dry_run_plan_tokens_flops_and_gpu_hours() -> None:
    spec = parse_sweep(_spec(schedule=["cosine"], family=[{"decay": [0.2]}]))
    rows = {r["schedule"].split(":")[0]: r for r in plan(spec)}
    assert rows["cosine"]["tokens"] == 100 * 4 * 64 and rows["wsd"]["steps"] == 20  # a branch trains its tail
    # "6N+attn:standard": 6 * (non-embedding + head) + 6 * n_layer * context * d_model per token
    per_token = 6 * (2 * 49280 + 64 + 256 * 64) + 6 * 2 * 64 * 64
    assert rows["cosine"]["flops"] == pytest.approx(25600 * per_token)
    total = sum(r["flops"] for r in rows.values())
    text = describe_plan(spec, peak_flops=1e12, mfu=0.5)
    assert f"{total / (1e12 * 0.5) / 3600:.4g} GPU-hours" in text and "3 runs" in text
    smoke = str(ROOT / "jobs/configs/smoke-cpu.yaml")
    cmd = [sys.executable, str(ROOT / "jobs/sweep.py"), smoke, "--dry-run"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    assert "sweep smoke-cpu: 4 runs, 1.536e+04 tokens" in out.stdout and "GPU-hours" in out.stdout


OK = "grid: {model: [100k], steps: [10], schedule: [cosine]}\n"
BAD = [
    ("sweep: x\ngrdi: {}\n", "grdi"),
    ("grid: {model: [100k], steps: [10], schedule: [cosine], sed: [1]}\n", "grid.sed"),
    ("grid: {model: [], steps: [10], schedule: [cosine]}\n", "grid.model"),
    ("grid: {model: [100k], steps: [], schedule: [cosine]}\n", "grid.steps"),
    ("train: {batch_size: 2}\n", "grid"),
    ("grid: {model: [100k], schedule: [cosine]}\n", "grid.steps"),
    ("grid: {model: [100k], steps: [10], tokens: [5], schedule: [cosine]}\n", "grid.steps"),
    ("grid: {model: [100k], steps: [10], schedule: [cosin]}\n", "grid.schedule[0].kind"),
    (
        "grid: {model: [100k], steps: [10], schedule: [cosine, 'wsd:decay=2']}\n",
        "grid.schedule[1].decay_fraction",
    ),  # noqa: E501
    ("grid: {model: [100k], steps: [10], schedule: ['cosine:peak=1']}\n", "grid.schedule[0]"),
    ("grid: {model: [100k], steps: [10], schedule: ['wsd:shape=zigzag']}\n", "grid.schedule[0].shape"),
    ("grid: {model: [1q], steps: [10], schedule: [cosine]}\n", "grid.model[0]"),
    (
        "grid: {model: [{n_layer: 1, d_model: 30, n_head: 4, context: 8}], steps: [10], "
        "schedule: [cosine]}\n",
        "grid.model[0].n_head",
    ),
    ("grid: {model: [{n_layr: 1}], steps: [10], schedule: [cosine]}\n", "grid.model[0].n_layr"),
    ("grid: {model: [100k], steps: [10], schedule: [cosine], dataset: [nope]}\n", "grid.dataset[0].dataset"),
    ("grid: {model: [100k], steps: [10], schedule: [cosine], peak_lr: [-1e-3]}\n", "grid.peak_lr"),
    ("grid: {model: [100k], steps: [10], schedule: [cosine], seed: [0.5]}\n", "grid.seed"),
    ("grid: {model: [100k], steps: [10], family: [{decay: [1.5]}]}\n", "grid.family[0].decay"),
    ("grid: {model: [100k], steps: [10], family: [{decay: [0.1], shap: x}]}\n", "grid.family[0].shap"),
    ("runs: [{model: [100k], steps: 10, schedule: nope}]\n", "runs[0].schedule[0].kind"),
    (OK + "train: {batch_sise: 2}\n", "train.batch_sise"),
    (OK + "train: {warmup: 1.5}\n", "train.warmup"),
    (OK + "train: {eval_every: -1}\n", "train.eval_every"),
    (OK + "train: {device: tpu}\n", "train.device"),
    (OK + "resources: {num_gpus: 1.5}\n", "resources.num_gpus"),
    (OK + "resources: {num_cpus: -2}\n", "resources.num_cpus"),
    (OK + "resources: {num_cpus: 0}\n", "resources.num_cpus"),
    (OK + "resources: {max_actors: 0}\n", "resources.max_actors"),
    (OK + "resources: {gpus: 1}\n", "resources.gpus"),
]


@pytest.mark.parametrize(("text", "key"), BAD, ids=[key for _, key in BAD])
def test_malformed_sweep_fails_at_load_naming_the_key(tmp_path: Path, text: str, key: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_sweep(path)
    assert info.value.field == key
    assert info.value.file == str(path) and key in str(info.value)


def test_unreadable_files_raise_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_sweep(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="cannot read"):
        load_sweep(_write(tmp_path, "grid: [unclosed\n"))
    with pytest.raises(ConfigError, match="mapping"):
        parse_sweep(yaml.safe_load("- just\n- a list\n"))
