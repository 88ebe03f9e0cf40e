"""Issue #14, checked from the HTML (no browser needed): the answer first, captioned figures naming their
fit, bands labelled with their level, finals annotated, parameter tables without 1e-316, warnings by
severity, provenance collapsed at the end; on the reference demo's report and on a report of imported
W&B logs (``scalefit import`` -> ``fit`` -> ``report --data --schedule``: the forecast's answer first)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scalefit import schedules
from scalefit.cli.demo_reference import run_reference
from scalefit.cli.main import main
from scalefit.fitting.design import build_design
from scalefit.laws import get_law
from scalefit.report.build import assemble
from scalefit.report.check import page_problems, read_page
from scalefit.report.html import render_html
from scalefit.report.text import choice_verdict, ci_text, fmt_param, grouped_warnings
from scalefit.store.curves import Curves

TRUE = np.array([2.0, 0.8, 0.5, 0.3])  # L0, A, alpha, C of the momentum law (lam 0.999)
RUNS = {  # hash-like names, as W&B gives them
    "run-7f3a9c": "constant:peak=1e-3,steps=2000,warmup=50",
    "run-b2e410": "cosine:peak=1e-3,steps=2000,warmup=50",
    "run-0c9d77": "wsd:peak=1e-3,steps=2000,warmup=50,decay=0.2",
    "run-e51f08": "wsd:peak=1e-3,steps=2000,warmup=50,decay=0.5,shape=1-sqrt",
}
FITTED = ["run-7f3a9c", "run-b2e410", "run-0c9d77"]
TARGET = "cosine:peak=1e-3,steps=4000,warmup=50"
LAWS = "cooldown,momentum,finals-power,tail-power"  # the forecast's members (every one: test_forecast)


def write_wandb_histories(folder: Path, noise: float = 0.002) -> list[Path]:
    """One W&B run-history CSV per run (Lightning keys), momentum-law losses with log-normal noise."""
    law, rng = get_law("momentum", lam=0.999), np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for rid, text in RUNS.items():
        sched = schedules.parse(text)
        steps = np.arange(20, sched.total_steps, 20)
        df = pd.DataFrame({"run_id": rid, "step": steps, "lr": np.nan, "loss": np.nan, "schedule": text})
        clean = law.predict(TRUE, build_design(law, Curves.from_frame(df), predict=True))
        loss = clean * np.exp(noise * rng.standard_normal(len(steps)))
        out = pd.DataFrame({"trainer/global_step": steps, "lr-AdamW": sched(steps), "train_loss": loss})
        paths.append(folder / f"{rid}.csv")
        out.to_csv(paths[-1], index=False)
    return paths


def build_imported_report(root: Path) -> Path:
    """``scalefit import`` W&B histories, ``fit`` three runs, ``report --data --schedule`` (forecast);
    returns the report folder."""
    csvs = write_wandb_histories(root / "logs")
    store, fit, out = root / "store", root / "fit.json", root / "report"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["import", *map(str, csvs), "--format", "wandb", "--out", str(store)]) == 0
        assert (
            main(["fit", str(store), "--law", "momentum", "--runs", ",".join(FITTED), "--out", str(fit)]) == 0
        )
        argv = [
            "report",
            str(fit),
            "--data",
            str(store),
            "--schedule",
            TARGET,
            "--laws",
            LAWS,
            "--out",
            str(out),
        ]
        assert main(argv) == 0
    return out


def build_reference_report(out: Path) -> Path:
    """The reference demo's report (``scalefit demo --reference``, 20 bootstrap resamples) in ``out``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert run_reference(out, bootstrap=20, log=lambda line: None) == 0
    return out


@pytest.fixture(scope="module")
def imported_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_imported_report(tmp_path_factory.mktemp("imported"))


@pytest.fixture(scope="module")
def reference_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_reference_report(tmp_path_factory.mktemp("reference"))


@pytest.mark.parametrize("which", ["reference_report", "imported_report"])
def test_page_passes_the_reader_checks(which: str, request: pytest.FixtureRequest) -> None:
    out = request.getfixturevalue(which)
    page = (out / "report.html").read_text()
    assert page_problems(page) == []
    facts = read_page(page)
    assert [s["id"] for s in facts.sections] == ["answer", "heldout", "evidence", "provenance"]
    assert len(facts.figures) >= 3 and facts.loose_images == 0
    titles = [str(f["title"]) for f in facts.figures]
    assert len(set(titles)) == len(titles)  # two fits of one run never share a title


def test_imported_report_puts_the_forecast_answer_first(imported_report: Path) -> None:
    report = json.loads((imported_report / "report.json").read_text())
    answer = report["answer"]
    assert answer["band"] == {"level": 0.9, "kind": "forecast"}
    assert answer["lo"] < answer["final_pred"] < answer["hi"] and answer["final_step"] == 3999
    assert sum(answer["weights"].values()) == pytest.approx(1.0)
    assert list(answer["weights"]) == LAWS.split(",")  # --laws chose the members
    assert answer["question"] == "horizon" and answer["n_folds"] >= 1
    assert answer["reach"] and "2x the longest fitted run" in answer["reach"][0]
    first = read_page((imported_report / "report.html").read_text()).sections[0]["text"]
    assert "target: predicted final loss" in " ".join(first.split())
    assert "90% band" in first and "cross-validated forecast band" in first
    held = {h["fit"]: h for h in report["heldout"]}  # the fit's band and the forecast's, both checked
    assert sorted(held) == ["fit (momentum)", "forecast"]
    assert {h["run_id"] for h in held.values()} == {"run-e51f08"}
    assert held["fit (momentum)"]["band"] == {"level": 0.95, "kind": "fit-noise"}
    assert held["forecast"]["band"] == {"level": 0.9, "kind": "forecast"}
    assert held["forecast"]["within_band"] is True


def test_parameter_cells_name_what_is_not_identified() -> None:
    assert ci_text(5.2e-316, 5.4e292) == "not identified"
    assert ci_text(1e-3, 1e4) == "not identified"  # seven orders of magnitude: the data do not pin it
    assert ci_text(2.0, 2.1) == "[2, 2.1]"
    assert fmt_param(1e-11, (1e-11, 10.0)) == "1e-11 (at bound)"
    assert fmt_param(5.2e-316) == "≈0" and fmt_param(3e200) == "> 1e100"


def _fit_dict(values: dict, ci: dict, bounds: dict, warns: list) -> dict:
    return {
        "law": "momentum",
        "values": values,
        "stderr": {k: 1e300 for k in values},
        "ci": ci,
        "bounds": bounds,
        "options": {"ci": 0.95},
        "diagnostics": {"warnings": warns},
    }


def test_degenerate_fit_is_flagged_and_warnings_grouped() -> None:
    warns = [
        {"code": "at_bound", "param": "L0", "message": "L0 is at its lower bound (1e-11): not identified"},
        {"code": "correlated", "message": "A and alpha are strongly correlated (corr -0.99)"},
        {"code": "excluded", "message": "rows excluded from 1 run(s): 3f9a1c22"},
        {"code": "correlated", "message": "A and alpha are strongly correlated (corr -0.99)"},
    ]
    fit = _fit_dict(
        {"L0": 1e-11, "A": 0.8},
        {"L0": [5.2e-316, 5.4e292], "A": [0.7, 0.9]},
        {"L0": [1e-11, 10.0], "A": [1e-6, 1e3]},
        warns,
    )
    curve = {"fit": "m", "run_id": "3f9a1c22", "label": "d64 cosine", "role": "fit", "steps": [10, 20]}
    curve |= {"observed": [3.0, 2.9], "predicted": [3.01, 2.9], "lo": [2.9, 2.8], "hi": [3.1, 3.0]}
    report = assemble("degenerate", {"m": fit}, curves=[curve])
    groups = grouped_warnings(report["warnings"])
    assert list(groups) == ["problem", "caution", "note"] and len(groups["note"]) == 1
    page = render_html(report)
    no_target = [
        "the answer does not state a predicted final loss",
        "the answer does not state the band with its level",
    ]
    assert page_problems(page) == no_target  # no target was given: the answer says so
    assert "not identified" in page and "at a bound" in page and "1e-11 (at bound)" in page
    assert "d64 cosine [run 3f9a1c22]" in page  # the run named, not only its hash
    assert "No target run was given" in page


def test_a_choice_says_whether_the_best_is_distinguishable() -> None:
    rows = [
        {"schedule": "wsd:peak=1e-3,steps=100,decay=0.2", "final_pred": 2.50, "lo": 2.45, "hi": 2.55},
        {"schedule": "wsd:peak=1e-3,steps=100,decay=0.3", "final_pred": 2.52, "lo": 2.47, "hi": 2.57},
        {"schedule": "cosine:peak=1e-3,steps=100", "final_pred": 2.70, "lo": 2.65, "hi": 2.75},
    ]
    text = choice_verdict(rows)
    assert text.startswith(
        "best wsd:decay=0.2 vs next wsd:decay=0.3: 0.02 nats lower, within the uncertainty"
    )
    assert "not distinguishable; 1 of 2 other options overlap the best's band" in text
    assert "outside the uncertainty" in choice_verdict([rows[0], rows[2]])
