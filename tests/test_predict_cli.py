"""``scalefit predict`` (issue #14 item 4, issue #17): a short human summary on stdout, the full JSON in a
file (``--out``, default prediction.json) or on stdout only with ``--json``, warnings once; with
``--data`` and ``--schedule`` the answer comes from ``sf.forecast`` with its band's level and kind."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from scalefit.cli.main import main

ROOT = Path(__file__).resolve().parents[1]
RUNS = "cosine_24000,constant_24000,wsdcon_9"
SCHEDULE = "wsd:peak=3e-4,steps=24000,warmup=2160,decay=0.2,final=0.1"
# the forecast's members here: two laws and two baselines (every applicable member is the API's default,
# tested in test_forecast; multipower alone would double this module's time)
LAWS = "cooldown,momentum,finals-power,tail-power"


def scalefit(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    """The console command in a child process that imports this checkout's package."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    cmd = ["scalefit", *argv]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("predict")
    proc = scalefit("fit", "mpl-400m", "--law", "momentum", "--runs", RUNS, "--out", "mpl.json", cwd=folder)
    assert proc.returncode == 0, proc.stderr
    return folder


@pytest.fixture(scope="module")
def forecast_run(work: Path) -> subprocess.CompletedProcess:
    cmd = ("predict", "--data", "mpl-400m", "--runs", RUNS, "--schedule", SCHEDULE, "--laws", LAWS)
    proc = scalefit(*cmd, "--jobs", "2", cwd=work)  # the fits in two worker processes
    assert proc.returncode == 0, proc.stderr
    return proc


def test_forecast_summary_is_short_and_the_json_goes_to_a_file(forecast_run, work: Path) -> None:
    out = forecast_run.stdout.splitlines()
    assert len(out) < 40, forecast_run.stdout
    assert out[0].startswith("target: predicted final loss ") and "90% band [" in out[0]
    text = forecast_run.stdout
    for needle in ("cross-validated forecast band", "laws: ", "question: branch", "folds", "identified"):
        assert needle in text, needle
    assert "extrapolation: inside the fitted range" in text
    assert out[-1] == "full JSON: prediction.json (or --json to print it)"
    result = json.loads((work / "prediction.json").read_text())
    answer = result["answer"]
    assert answer["band"] == {"level": 0.9, "kind": "forecast"}
    assert answer["lo"] < answer["final_pred"] < answer["hi"]
    assert sum(answer["weights"].values()) == pytest.approx(1.0)
    assert list(answer["weights"]) == LAWS.split(",")
    assert result["forecast"]["format"] == "scalefit.Forecast/1"


def test_warnings_are_printed_once(forecast_run) -> None:
    lines = [line for line in forecast_run.stderr.splitlines() if line.startswith("warning: ")]
    assert len(lines) == len(set(lines))


def test_fit_json_prediction_labels_its_band(work: Path) -> None:
    proc = scalefit(
        "predict", "mpl.json", "--schedule", SCHEDULE, "--family", "wsd", "--out", "p.json", cwd=work
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.splitlines()
    assert len(out) < 40
    assert "95% prediction band (fit parameters + residual noise)" in out[0]
    assert any("distinguishable" in line for line in out)
    (target,) = json.loads((work / "p.json").read_text())["targets"]
    assert target["band"] == {"level": 0.95, "kind": "fit-noise"}


def test_json_flag_prints_the_json_on_stdout(work: Path) -> None:
    proc = scalefit("predict", "mpl.json", "--schedule", SCHEDULE, "--json", "--out", "unused.json", cwd=work)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["targets"][0]["fit"] == "mpl (momentum)"
    assert "final loss" in proc.stderr and not (work / "unused.json").exists()


def test_data_without_schedule_names_the_flag(work: Path) -> None:
    proc = scalefit("predict", "--data", "mpl-400m", cwd=work)
    assert proc.returncode == 2
    assert proc.stderr.startswith("scalefit: error: ") and "--schedule" in proc.stderr


def test_laws_name_the_members_and_a_misspelt_one_is_named(
    work: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The error paths of ``--laws``, in this process (the console command is run above)."""
    monkeypatch.chdir(work)
    argv = ["predict", "--data", "mpl-400m", "--schedule", SCHEDULE, "--laws", "cooldown,momentm"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "unknown law or baseline" in err and "momentm" in err and "tail-power" in err
    assert main(["predict", "mpl.json", "--schedule", SCHEDULE, "--laws", "cooldown"]) == 2
    err = capsys.readouterr().err
    assert "--laws" in err and "--data" in err
    assert main(["report", "mpl.json", "--data", "mpl-400m", "--laws", "cooldown"]) == 2
    err = capsys.readouterr().err
    assert "--laws" in err and "--schedule" in err
    assert main(["predict", "--data", "mpl-400m", "--runs", RUNS, "--schedule", SCHEDULE, "--jobs", "0"]) == 2
    err = capsys.readouterr().err
    assert "--jobs must be at least 1" in err and "--jobs 4" in err
