"""The demo end to end: a mini proxy ladder on the session Ray cluster (train, fit, predict the held-out
run before training it, train it, report), and the reference demo on the bundled published curves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from scalefit.cli.demo import DEFAULT_LADDER, load_ladder, run_demo
from scalefit.cli.demo_reference import run_reference
from scalefit.errors import ConfigError
from scalefit.report.check import page_problems, read_page

MODEL = {"n_layer": 1, "n_head": 2, "context": 32, "d_model": 32}
GRID = {"steps": [300], "peak_lr": [0.01], "seed": [0], "dataset": ["python-stdlib"]}
TRAIN = {"batch_size": 8, "warmup": 10, "eval_every": 20, "checkpoint_every": 0, "device": "cpu"}
MINI = {
    "name": "mini",
    "fit": {"schedule_law": "momentum", "size_law": None, "loss": "eval:python-stdlib"},
    "sweep": {
        "sweep": "mini",
        "train": TRAIN,
        "resources": {"num_cpus": 1},
        "grid": {**GRID, "model": [MODEL], "schedule": ["constant", "cosine", "wsd:decay=0.2"]},
    },
    "heldout": {
        "sweep": "mini-heldout",
        "train": TRAIN,
        "resources": {"num_cpus": 1},
        "grid": {**GRID, "model": [MODEL], "schedule": ["wsd:decay=0.5,shape=1-sqrt"]},
    },
}


@pytest.fixture(scope="module")
def mini(ray_cluster, tmp_path_factory: pytest.TempPathFactory) -> tuple[int, Path, list[str]]:
    out = tmp_path_factory.mktemp("demo")
    lines: list[str] = []
    with pytest.warns(Warning):
        rc = run_demo(out, config=MINI, log=lines.append)
    return rc, out, lines


def test_mini_demo_predicts_the_heldout_run_inside_its_band(mini) -> None:
    rc, out, lines = mini
    report = json.loads((out / "report.json").read_text())
    (held,) = report["heldout"]
    assert held["label"] == "d32 wsd:decay=0.5,shape=1-sqrt"
    assert held["lo"] <= held["final_obs"] <= held["hi"] and held["within_band"] is True
    assert abs(held["rel_err_pct"]) < 3.0
    assert rc == 0
    assert any("inside band" in line for line in lines)
    assert lines[-1] == "all held-out finals inside their bands"
    stages = [line for line in lines if line.startswith("[demo ")]
    assert [line.split()[1] for line in stages] == [f"{i}/7" for i in range(1, 8)]


def test_predictions_were_registered_before_training(mini) -> None:
    _, out, _ = mini
    registered = json.loads((out / "predictions.json").read_text())
    report = json.loads((out / "report.json").read_text())
    (pre,) = registered
    (post,) = report["targets"]
    assert "actual" not in pre["curve"] and post["curve"]["actual_steps"][-1] >= pre["curve"]["steps"][-1]
    assert pre["final_pred"] == post["final_pred"] and pre["lo"] == post["lo"]
    assert (out / "report.html").stat().st_size > 10_000 and (out / "summary.md").exists()


def test_mini_demo_report_reads_right(mini) -> None:
    """Issue #14 on the demo's own report: the answer first, every figure titled by its fit with the
    band's level and its finals, bands labelled in the held-out table."""
    _, out, _ = mini
    page = (out / "report.html").read_text()
    assert page_problems(page) == []
    facts = read_page(page)
    assert (
        facts.sections[0]["id"] == "answer" and "d32 wsd:decay=0.5,shape=1-sqrt" in facts.sections[0]["text"]
    )
    titles = [str(f["title"]) for f in facts.figures]
    assert len(titles) == len(set(titles)) and any("schedule-law" in t for t in titles)
    report = json.loads((out / "report.json").read_text())
    (held,) = report["heldout"]
    assert held["band"] == {"level": 0.95, "kind": "fit"}


def test_reference_demo_reproduces_published_fits(tmp_path) -> None:
    lines: list[str] = []
    with pytest.warns(Warning):
        assert run_reference(tmp_path, bootstrap=50, log=lines.append) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    metrics = next(iter(report["metrics"].values()))
    assert metrics["pred_e"] < 0.005 and metrics["r2"] > 0.99
    assert len(report["heldout"]) == 6
    c588 = next(r for r in report["compute_optimal"] if r["budget_flops"] == 5.88e23)
    assert 16 < c588["tokens_per_param"] < 21  # Epoch AI: ~18 tokens per parameter at 5.88e23 FLOPs
    assert report["targets"][0]["extrapolation"]["factors"]["step"] == pytest.approx(71999 / 23936, rel=0.01)


def test_default_ladder_matches_the_job_config() -> None:
    shipped = yaml.safe_load((Path(__file__).parents[1] / "jobs/configs/demo.yaml").read_text())
    assert shipped == json.loads(json.dumps(DEFAULT_LADDER))


def test_bad_ladder_names_the_section(tmp_path) -> None:
    with pytest.raises(ConfigError, match="unknown ladder section.*'sweeps'"):
        load_ladder({"sweeps": {}, "heldout": {}})
    path = tmp_path / "l.yaml"
    path.write_text("sweep: {}\n")
    with pytest.raises(ConfigError, match="missing ladder section.*heldout"):
        load_ladder(path)
