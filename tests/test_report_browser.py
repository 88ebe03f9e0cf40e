"""Render a report in headless Chromium (Debian's ``chromium``): the page loads offline with no console
errors and no network requests, its plots are present, and the screenshot is not blank."""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest
from matplotlib.image import imread

from scalefit.report.build import assemble, write_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium package")
# Chromium's own background services (clock sync, component updates, accounts) talk to these hosts even
# with background networking disabled; the host resolver rule below keeps them from leaving the machine.
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


def test_report_renders_offline_without_errors(tmp_path) -> None:
    paths = write_report(_report(), tmp_path / "report")
    page = paths["html"].read_text()
    assert not re.search(r"https?://", page)
    assert len(re.findall(r'<img alt="[^"]*" src="data:image/png;base64,', page)) == 5
    shot = tmp_path / "shot.png"
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
        "--host-resolver-rules=MAP * ~NOTFOUND",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1200,2400",
        f"--screenshot={shot}",
        "--enable-logging=stderr",
        "--v=1",
        paths["html"].as_uri(),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    log = proc.stderr
    assert proc.returncode == 0 and shot.exists(), log[-2000:]
    assert not re.search(r":CONSOLE[:(]|Uncaught", log), log[-2000:]  # any console message fails
    requests = re.findall(r"NotifyBeforeURLRequest: (\S+)", log)
    assert [url for url in requests if not BROWSER_SERVICES.match(url)] == []
    pixels = imread(shot)[..., :3]
    assert pixels.shape[:2] == (2400, 1200)
    ink = (pixels < 0.9).any(axis=2).mean()
    assert 0.02 < ink < 0.9  # text, tables and plots on a white page
