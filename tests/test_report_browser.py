"""Render reports in headless Chromium (Debian's ``chromium``) at 1400 px, as a new user reads them: the
page loads offline with no console errors and no network requests, the screenshot (an artifact: its
path is printed, under pytest's tmp path) is not blank, and the DOM Chromium built passes the reader
checks of issue #14 (``scalefit.report.check``: the answer first, figures titled by fit with the band's
level and annotated finals, no 1e-316 in parameter tables). On a synthetic report, the reference demo's
and a report of imported W&B logs (the same checks run without a browser in test_report_layout.py)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread
from test_report_layout import build_imported_report, build_reference_report

from scalefit.report.build import assemble, write_report
from scalefit.report.check import page_problems

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium package")
# Chromium's own background services (clock sync, component updates, accounts) talk to these hosts even
# with background networking disabled; the host resolver rule below keeps them from leaving the machine.
WIDTH = 1400
BROWSER_SERVICES = re.compile(r"https?://[a-z0-9.-]*(google\.com|googleapis\.com|gstatic\.com)/")


def _entry(run_id: str, role: str, scale: float) -> dict:
    steps = np.unique(np.geomspace(10, 2000, 60).astype(int))
    loss = 2.0 + scale * steps**-0.3
    return {
        "fit": "momentum",
        "run_id": run_id,
        "role": role,
        "steps": steps.tolist(),
        "observed": loss.tolist(),
        "predicted": (loss * 1.002).tolist(),
        "lo": (loss * 0.99).tolist(),
        "hi": (loss * 1.01).tolist(),
    }


def _report() -> dict:
    fit = {
        "law": "momentum",
        "values": {"L0": 2.0, "A": 3.0, "alpha": 0.3, "C": 0.2},
        "stderr": {"L0": 0.01},
        "ci": {"L0": [1.98, 2.02]},
        "diagnostics": {"warnings": [{"message": "L0 at bound"}]},
    }
    target = _entry("big", "target", 2.5)
    rows = [
        {"schedule": f"wsd:decay={f}", "final_pred": 2.1 + (f - 0.5) ** 2, "lo": 2.09, "hi": 2.3}
        for f in (0.2, 0.5)
    ]
    return assemble(
        "browser check",
        {"momentum": fit},
        curves=[_entry("constant", "fit", 3.0), _entry("wsd", "heldout", 2.8)],
        targets=[
            {
                "run_id": "big",
                "fit": "momentum",
                "schedule": "cosine",
                "final_pred": 2.1,
                "lo": 2.0,
                "hi": 2.2,
                "curve": {
                    "steps": target["steps"],
                    "loss_pred": target["predicted"],
                    "lo": target["lo"],
                    "hi": target["hi"],
                },
                "extrapolation": {"notes": ["2x the largest fitted N"]},
            }
        ],
        schedules={"rows": rows, "best": rows[1] | {"gain_vs_cosine": 0.01}, "title": "wsd family"},
        parity=[{"title": "chinchilla", "observed": [2.0, 2.5, 3.0], "predicted": [2.01, 2.48, 3.02]}],
        provenance={"git_sha": "abc"},
    )


def _chromium(url: str, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-default-apps",
        "--hide-scrollbars",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--enable-logging=stderr",
        "--v=1",
        *extra,
        url,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180)


def _check_in_browser(html: Path, tmp_path: Path, name: str, height: int = 2400) -> None:
    page = html.read_text()
    assert not re.search(r"https?://", page)
    shot = tmp_path / f"{name}-1400px.png"
    proc = _chromium(html.as_uri(), tmp_path, f"--window-size={WIDTH},{height}", f"--screenshot={shot}")
    log = proc.stderr
    assert proc.returncode == 0 and shot.exists(), log[-2000:]
    print(f"screenshot: {shot}")
    assert not re.search(r":CONSOLE[:(]|Uncaught", log), log[-2000:]  # any console message fails
    requests = re.findall(r"NotifyBeforeURLRequest: (\S+)", log)
    assert [url for url in requests if not BROWSER_SERVICES.match(url)] == []
    pixels = imread(shot)[..., :3]
    assert pixels.shape[:2] == (height, WIDTH)
    ink = (pixels < 0.9).any(axis=2).mean()
    assert 0.02 < ink < 0.9  # text, tables and plots on a white page
    dom = _chromium(html.as_uri(), tmp_path, "--dump-dom")
    assert dom.returncode == 0 and "<figure" in dom.stdout, dom.stderr[-2000:]
    assert page_problems(dom.stdout) == []


def test_report_renders_offline_without_errors(tmp_path) -> None:
    paths = write_report(_report(), tmp_path / "synthetic")
    page = paths["html"].read_text()
    assert len(re.findall(r'<img alt="[^"]*" src="data:image/png;base64,', page)) == 5
    _check_in_browser(paths["html"], tmp_path, "synthetic")


def test_demo_and_imported_logs_reports_read_right(tmp_path) -> None:
    reference = build_reference_report(tmp_path / "reference")
    _check_in_browser(reference / "report.html", tmp_path, "reference-demo", height=6000)
    imported = build_imported_report(tmp_path / "imported")
    _check_in_browser(imported / "report.html", tmp_path, "imported-logs", height=6000)
