"""The ``scalefit`` command: help with an example for every verb, one-line errors, and the
fit -> predict -> report chain on bundled published data."""

from __future__ import annotations

import json
import subprocess

import pytest

from scalefit.cli.main import EXAMPLES, build_parser, main

VERBS = ["import", "sweep", "fit", "predict", "report", "demo"]


def test_every_verb_has_help_with_an_example(capsys) -> None:
    assert sorted(EXAMPLES) == sorted(VERBS)
    for verb in VERBS:
        with pytest.raises(SystemExit) as exit_info:
            main([verb, "--help"])
        assert exit_info.value.code == 0
        text = capsys.readouterr().out
        assert f"usage: scalefit {verb}" in text
        assert "example:" in text and f"scalefit {verb}" in text.split("example:")[1]


def test_top_level_help_lists_the_verbs() -> None:
    text = build_parser().format_help()
    for verb in VERBS:
        assert f"    {verb} " in text
    assert "scalefit demo --reference" in text or "scalefit demo" in text


def test_console_script_errors_are_one_line(tmp_path) -> None:
    bad = tmp_path / "fit.json"
    bad.write_text('{"law": "momentum"}')
    argv = ["scalefit", "predict", str(bad), "--budget", "1e21"]
    proc = subprocess.run(argv, capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("scalefit: error: not a scalefit Fit [file=")
    assert "field='format'" in proc.stderr and "Fix: give a Fit JSON" in proc.stderr
    debug = subprocess.run(["scalefit", "--debug", "predict", str(bad)], capture_output=True, text=True)
    assert debug.returncode == 2 and "Traceback (most recent call last)" in debug.stderr


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["report", "{missing}"], "No such file or directory"),
        (["predict", "{notjson}"], "not a JSON file"),
        (["report", "{notjson}"], "not a JSON file"),
        (["fit", "no-such-dataset"], "no-such-dataset"),
    ],
)
def test_bad_inputs_give_one_line(argv, needle, tmp_path, capsys) -> None:
    notjson = tmp_path / "x.json"
    notjson.write_text("[1,")
    paths = {"missing": str(tmp_path / "missing.json"), "notjson": str(notjson)}
    assert main([a.format(**paths) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("scalefit: error: ") and err.count("\n") == 1 and needle in err


def test_fit_predict_report_chain(tmp_path, capsys) -> None:
    fit_path, chin_path = tmp_path / "mpl.json", tmp_path / "chin.json"
    runs = "cosine_24000,constant_24000,wsdcon_9"
    with pytest.warns(Warning):
        assert main(["fit", "mpl-400m", "--law", "momentum", "--runs", runs, "--out", str(fit_path)]) == 0
        assert main(["fit", "chinchilla-epoch", "--law", "chinchilla", "--out", str(chin_path)]) == 0
    assert "alpha" in capsys.readouterr().out
    pred_path = tmp_path / "pred.json"
    sched = "cosine:peak=3e-4,steps=24000,warmup=2160,final=0.1"
    argv = ["predict", str(fit_path), str(chin_path), "--schedule", sched, "--family", "wsd"]
    argv += ["--budget", "1e22"]
    assert main([*argv, "--out", str(pred_path)]) == 0
    pred = json.loads(pred_path.read_text())
    (target,) = pred["targets"]
    assert target["lo"] < target["final_pred"] < target["hi"] and target["steps"] == 24000
    assert pred["schedules"]["best"]["gain_vs_cosine"] > 0
    (opt,) = pred["compute_optimal"]
    assert opt["n_opt"] * opt["d_opt"] * 6 == pytest.approx(1e22)
    assert target["extrapolation"]["outside"] is False and target["extrapolation"]["notes"] == []
    assert main(["report", str(fit_path), "--data", "mpl-400m", "--out", str(tmp_path / "r")]) == 0
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert sorted(h["run_id"] for h in report["heldout"]) == [
        "constant_72000",
        "cosine_72000",
        "wsd_20000_24000",
        "wsdcon_18",
        "wsdcon_3",
        "wsdld_20000_24000",
    ]


def test_import_mpl_csvs_into_a_store(tmp_path, capsys) -> None:
    from scalefit.store.datasets import data_path
    from scalefit.store.parquet import read_curves

    src = data_path("lr-curves/mpl-multipowerlaw/csv_100")
    assert main(["import", str(src), "--format", "mpl", "--out", str(tmp_path / "store")]) == 0
    assert capsys.readouterr().out.startswith("imported 9 runs, ")
    curves = read_curves(tmp_path / "store")
    assert len(curves) == 9 and "cosine_24000" in curves.run_ids
