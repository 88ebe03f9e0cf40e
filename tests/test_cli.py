"""The ``scalefit`` command: help with an example for every verb, one-line errors, and the
fit -> predict -> report chain on bundled published data."""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scalefit import schedules
from scalefit.cli.main import EXAMPLES, build_parser, main
from scalefit.schedules.base import ALIASES

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
        (["report", "{missing}"], "not found: "),
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
    assert main(["fit", "mpl-400m", "--law", "momentum", "--runs", runs, "--out", str(fit_path)]) == 0
    assert main(["fit", "chinchilla-epoch", "--law", "chinchilla", "--out", str(chin_path)]) == 0
    fitted = capsys.readouterr()
    assert "alpha" in fitted.out and "warning: " in fitted.out
    assert not any(line in fitted.err for line in fitted.out.splitlines() if line.startswith("warning: "))
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
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 10 and out[-1].startswith("imported 9 runs, ")
    assert any(
        line.startswith("cosine_24000: steps ") and "LR from the given schedule cosine:" in line
        for line in out
    )
    curves = read_curves(tmp_path / "store")
    assert len(curves) == 9 and "cosine_24000" in curves.run_ids


README = Path(__file__).resolve().parents[1] / "README.md"
FIXTURES = Path(__file__).parent / "fixtures" / "wandb-exports"


def _readme_block(title: str) -> list[list[str]]:
    """The commands of the first ```bash block after the README heading ``title``, as argv lists."""
    text = README.read_text(encoding="utf-8").split(title, 1)[1]
    block = text.split("```bash\n", 1)[1].split("```", 1)[0]
    return [shlex.split(line)[1:] for line in block.splitlines() if line.startswith("scalefit ")]


def _write_hf_history(path: Path) -> None:
    sched = schedules.parse("linear:peak=0.001,steps=400,warmup=40")
    rows = []
    for g in range(10, 401, 10):
        s1 = float(np.sum(sched.lrs(g - 1)))
        rows.append(
            {
                "train/loss": repr(2.5 + 0.3 * max(s1, 1e-3) ** -0.4),
                "train/learning_rate": repr(float(sched(g))),
                "train/global_step": g,
            }
        )
        if g % 100 == 0:
            rows.append({"eval/loss": repr(2.6 + 0.3 * max(s1, 1e-3) ** -0.4), "train/global_step": g})
    df = pd.DataFrame(rows)
    df.insert(0, "_step", range(len(df)))
    df.to_csv(path, index=False)


def _write_lightning_history(path: Path) -> None:
    sched = schedules.parse("cosine:peak=0.001,steps=400,warmup=40,final=0.1")
    rows = []
    for s in range(9, 400, 10):
        s1 = float(np.sum(sched.lrs(s)))
        rows.append({"lr-AdamW": repr(float(sched(s))), "trainer/global_step": s})
        rows.append({"train_loss": repr(2.5 + 0.3 * max(s1, 1e-3) ** -0.4), "trainer/global_step": s})
    df = pd.DataFrame(rows)
    df.insert(0, "_step", range(len(df)))
    df.to_csv(path, index=False)


def _write_tb_logs(folder: Path) -> None:
    summary_writer = pytest.importorskip("torch.utils.tensorboard").SummaryWriter
    sched = schedules.parse("wsd:peak=0.001,steps=400,warmup=40,decay=0.3")
    with summary_writer(str(folder / "wsd-run")) as w:
        for s in range(9, 400, 10):
            w.add_scalar("lr-AdamW", float(sched(s)), s)
            w.add_scalar("train_loss", 2.5 + 0.3 * max(float(np.sum(sched.lrs(s))), 1e-3) ** -0.4, s)


def test_readme_bring_your_own_runs_works_as_written(tmp_path, monkeypatch, capsys) -> None:
    commands = _readme_block("### Bring your own W&B / TensorBoard runs")
    assert [c[0] for c in commands] == ["import", "import", "import", "fit", "predict"]
    shutil.copytree(FIXTURES, tmp_path / "tests" / "fixtures" / "wandb-exports")
    _write_hf_history(tmp_path / "hf_run.csv")
    _write_lightning_history(tmp_path / "lightning_run.csv")
    _write_tb_logs(tmp_path / "tb_logs")
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for argv in commands:
            assert main(argv) == 0, argv
    out = capsys.readouterr().out
    assert (
        "OLMo-7B-run-038: steps 551000..556000, 6 rows (0 with a loss)" in out and "imported 36 runs" in out
    )
    assert "hf_run: steps 9..400" in out and "'train/global_step' (1-based" in out
    assert "schedule recognised: linear:peak=0.001,steps=400,warmup=40" in out
    assert "lightning_run: steps 9..399" in out and "wsd-run: steps 9..399" in out
    fit = json.loads((tmp_path / "fit.json").read_text())
    assert sorted(fit["data_summary"]["run_ids"]) == ["hf_run", "lightning_run", "wsd-run"]


def test_import_errors_name_cli_flags_and_missing_paths_say_not_found(tmp_path, capsys) -> None:
    _write_hf_history(tmp_path / "hf.csv")
    store = str(tmp_path / "store")
    assert (
        main(["import", str(tmp_path / "hf.csv"), "--format", "wandb", "--loss", "nope", "--out", store]) == 2
    )
    err = capsys.readouterr().err
    assert "Fix: name it with --loss (have" in err and "loss=" not in err
    _write_tb_logs(tmp_path / "tb")
    argv = ["import", str(tmp_path / "tb"), "--format", "tensorboard", "--lr-tag", "lr-SGD", "--out", store]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "no LR tag 'lr-SGD'" in err and "Fix: name it with --lr-tag (have ['lr-AdamW'" in err
    assert "lr_tag=" not in err
    argv = ["import", str(tmp_path / "hf.csv"), "--format", "wandb", "--step-base", "hf", "--step", "_step"]
    assert main([*argv, "--out", store]) == 2
    assert "Fix: read the steps as logged with --step-base 0" in capsys.readouterr().err
    for argv in (
        ["import", str(tmp_path / "missing.csv"), "--format", "wandb", "--out", store],
        ["import", str(tmp_path / "missing.csv"), "--out", store],
        ["import", str(tmp_path / "no-logs"), "--format", "tensorboard", "--out", store],
        ["fit", str(tmp_path / "no-store/")],
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "not found" in err and err.count("\n") == 1, argv


def test_import_flags_eval_lr_none_and_several_files(tmp_path, capsys) -> None:
    _write_hf_history(tmp_path / "a.csv")
    _write_hf_history(tmp_path / "b.csv")
    store = tmp_path / "store"
    argv = ["import", str(tmp_path / "a.csv"), str(tmp_path / "b.csv"), "--format", "wandb"]
    assert main([*argv, "--eval", "eval/loss=val", "--out", str(store)]) == 0
    out = capsys.readouterr().out
    assert out.count("evals: val (4 rows)") == 2 and "imported 2 runs" in out
    from scalefit.store.parquet import read_curves

    ev = read_curves(store, loss="eval:val").frame
    assert ev.loc[(ev["run_id"] == "a") & ev["loss"].notna(), "step"].tolist() == [100, 200, 300, 400]
    table = tmp_path / "t.csv"
    table.write_text("step,loss\n0,5.0\n10,4.0\n")
    assert main(["import", str(table), "--name", "t", "--lr", "none", "--out", str(store)]) == 0
    assert "t: steps 0..10, 2 rows (2 with a loss); LR not logged" in capsys.readouterr().out


@pytest.mark.parametrize("verb", ["import", "predict"])
def test_help_has_the_schedule_grammar_with_every_kind_and_key(verb, capsys) -> None:
    with pytest.raises(SystemExit):
        main([verb, "--help"])
    text = capsys.readouterr().out
    for kind, cls in schedules.KINDS.items():
        assert f"  {kind}: " in text, kind
        short = {v: k for k, v in ALIASES.items()}
        for f in dataclasses.fields(cls):
            assert short.get(f.name, f.name) in text, (kind, f.name)


def test_sweep_progress_lines_name_runs_steps_tokens_and_eta() -> None:
    runner = pytest.importorskip("scalefit.cluster.runner")
    lines: list[str] = []
    progress = runner._Progress("demo", 4, 1, lines.append, 10.0)
    progress.line(2, 0.0)
    progress.active = [
        {"run_id": "demo-a", "step": 450, "label": "demo-a (d64 cosine)", "total": 1200},
        {"run_id": "demo-b", "step": None},
    ]
    progress.counts["ok"] = 1
    progress.line(2, 12345.0)
    progress.counts["ok"] = 3
    progress.line(0, 0.0, " | finished")
    assert "1/4 done" in lines[0] and "ETA after the first run" in lines[0]
    assert (
        "2/4 done" in lines[1] and "2 running: demo-a (d64 cosine) step 450/1200, demo-b starting" in lines[1]
    )
    assert "12,345 tokens/s" in lines[1] and re.search(r"ETA \d+(m\d\ds|s)", lines[1])
    assert "4/4 done" in lines[2] and "ETA 0s | finished" in lines[2] and "demo-a" not in lines[2]
