"""Reports: a real fit on synthetic momentum-law curves, written as JSON + HTML + Markdown; the JSON
twin round-trips into Fits that predict the same numbers."""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pandas as pd
import pytest

from scalefit import schedules
from scalefit.cli.main import main
from scalefit.fitting.design import build_design
from scalefit.fitting.engine import fit_law
from scalefit.laws import get_law
from scalefit.predict.schedule_choice import best_schedule
from scalefit.predict.targets import Target, predict_target
from scalefit.report.build import assemble, curve_entries, fits_from_report, load_report, write_report
from scalefit.store.curves import Curves

TRUE = np.array([2.0, 0.8, 0.5, 0.3])  # L0, A, alpha, C of the momentum law (lam 0.999)
SPECS = {
    "constant": "constant:peak=1e-3,steps=2000,warmup=50",
    "cosine": "cosine:peak=1e-3,steps=2000,warmup=50",
    "wsd": "wsd:peak=1e-3,steps=2000,warmup=50,decay=0.2",
    "wsd-sqrt": "wsd:peak=1e-3,steps=2000,warmup=50,decay=0.5,shape=1-sqrt",
}
HELDOUT = ["wsd", "wsd-sqrt"]


def synthetic_curves(noise: float = 0.002, seed: int = 0) -> Curves:
    """Momentum-law curves with multiplicative log-normal noise, logged every 20 steps."""
    law, rng = get_law("momentum", lam=0.999), np.random.default_rng(seed)
    frames = []
    for rid, text in SPECS.items():
        steps = np.arange(20, schedules.parse(text).total_steps, 20)
        df = pd.DataFrame({"run_id": rid, "step": steps, "lr": np.nan, "loss": np.nan, "schedule": text})
        clean = law.predict(TRUE, build_design(law, Curves.from_frame(df), predict=True))
        frames.append(df.assign(loss=clean * np.exp(noise * rng.standard_normal(len(steps)))))
    return Curves.from_frame(pd.concat(frames, ignore_index=True))


@pytest.fixture(scope="module")
def curves() -> Curves:
    return synthetic_curves()


@pytest.fixture(scope="module")
def fit(curves: Curves):
    return fit_law(get_law("momentum", lam=0.999), curves.select(["constant", "cosine"]), starts=4)


@pytest.fixture(scope="module")
def report(fit, curves: Curves) -> dict:
    entries = curve_entries("momentum", fit, curves, HELDOUT)
    target = Target("wsd:peak=1e-3,steps=4000,warmup=50,decay=0.2", run_id="long-wsd")
    with pytest.warns(Warning, match="2x the largest fitted horizon"):
        targets = [predict_target(fit, target, name="momentum")]
    sched = best_schedule(fit, Target("cosine:peak=1e-3,steps=2000,warmup=50"), "wsd")
    return assemble("synthetic momentum", {"momentum": fit}, curves=entries, targets=targets, schedules=sched)


@pytest.fixture(scope="module")
def written(report: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    return write_report(report, tmp_path_factory.mktemp("report"))


def test_fit_recovers_the_law(fit) -> None:
    got = np.array([fit.values[k] for k in ("L0", "A", "alpha", "C")])
    np.testing.assert_allclose(got, TRUE, rtol=0.05)


def test_heldout_finals_inside_band(report: dict) -> None:
    held = {h["run_id"]: h for h in report["heldout"]}
    assert sorted(held) == HELDOUT
    for h in held.values():
        assert h["step"] == 1980
        assert abs(h["rel_err_pct"]) < 0.5
        assert h["within_band"] is True and h["lo"] <= h["final_obs"] <= h["hi"]


def test_json_round_trip_predicts_the_same_numbers(written: dict, report: dict, curves: Curves) -> None:
    loaded = load_report(written["json"])
    fit2 = fits_from_report(loaded)["momentum"]
    pred = fit2.predict(curves).set_index(["run_id", "step"])
    for entry in loaded["curves"]:
        again = pred.loc[entry["run_id"]].loc[entry["steps"]]
        np.testing.assert_array_equal(again["loss_pred"].to_numpy(), np.array(entry["predicted"]))
    target = loaded["targets"][0]
    with pytest.warns(Warning):
        redo = predict_target(fit2, Target(target["schedule"], run_id="long-wsd"))
    assert redo["final_pred"] == target["final_pred"] == report["targets"][0]["final_pred"]
    assert redo["lo"] == target["lo"] and redo["hi"] == target["hi"]


def test_html_is_self_contained_with_plots(written: dict) -> None:
    page = written["html"].read_text()
    assert not re.search(r"https?:|<script|<link|@import|url\(", page)
    images = re.findall(r'<img alt="[^"]*" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) >= 4
    assert all(base64.b64decode(img)[:8] == b"\x89PNG\r\n\x1a\n" for img in images)
    for text in (
        "Held-out checks",
        "long-wsd",
        "2x the largest fitted horizon",
        "Schedule comparison",
        "alpha",
    ):
        assert text in page


def test_markdown_summary(written: dict, report: dict) -> None:
    md = written["markdown"].read_text()
    for h in report["heldout"]:
        assert f"| {h['run_id']} | {h['final_pred']:.4g} | [{h['lo']:.4g}, {h['hi']:.4g}] |" in md
    assert f"best schedule `{report['schedules']['best']['schedule']}`" in md


def test_cli_rerenders_the_json_twin(written: dict, tmp_path) -> None:
    assert main(["report", str(written["json"]), "--out", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "report.json").read_text()) == json.loads(written["json"].read_text())
    assert (tmp_path / "report.html").read_text() == written["html"].read_text()
