"""Malformed inputs: each raises a scalefit error naming file, run and column, or is handled without loss."""

from __future__ import annotations

import gzip
import json
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import scalefit as sf
from scalefit.errors import ConfigError, DataError, FitWarning, ScalefitError, ScheduleError, SchemaError
from scalefit.fitting.design import curve_runs
from scalefit.report.text import render_markdown
from scalefit.store.curves import Curves
from scalefit.store.datasets import data_path, load
from scalefit.store.importers import (
    import_mpl_csv,
    import_schaipp_json,
    import_table,
    import_tensorboard,
    import_wandb_csv,
)
from scalefit.store.parquet import RunWriter, read_curves, rows_before_step, write_curves

GOOD = "run_id,step,lr,loss\na,0,0.001,5.0\na,1,0.001,4.0\n"
BRANCH = "ann124-0.2_slimpajama_llama_norm_nlayers12_nhead12_lr0.001_sched_wsd_warmup300_decay_linear_0.2"


def _csv(tmp: Path, text: str, name: str = "log.csv") -> Path:
    path = tmp / name
    path.write_text(text)
    return path


def _table(text: str, **kw) -> Callable[[Path], tuple[Path, object]]:
    def run(tmp: Path) -> tuple[Path, object]:
        path = _csv(tmp, text)
        return path, lambda: import_table(path, **kw)

    return run


def _mpl(text: str, stem: str = "cosine_24000") -> Callable[[Path], tuple[Path, object]]:
    def run(tmp: Path) -> tuple[Path, object]:
        path = _csv(tmp, text, f"{stem}.csv")
        return path, lambda: import_mpl_csv(path)

    return run


def _schaipp(edit: Callable[[dict], None], raw: bytes | None = None) -> Callable[[Path], tuple[Path, object]]:
    def run(tmp: Path) -> tuple[Path, object]:
        src = (
            data_path("lr-curves/schaipp-lr-scheduling")
            / f"{BRANCH}_iter15000_bs50x2_ws2_seed0_data_seed1337.json.gz"
        )
        path = tmp / src.name
        if raw is not None:
            path.write_bytes(raw)
        else:
            log = json.loads(gzip.decompress(src.read_bytes()))
            log["config"]["resume_from"] = None  # standalone: no trunk needed
            edit(log)
            path.write_bytes(gzip.compress(json.dumps(log).encode()))
        return path, lambda: import_schaipp_json([path])

    return run


def _store(damage: Callable[[Path], Path]) -> Callable[[Path], tuple[Path, object]]:
    def run(tmp: Path) -> tuple[Path, object]:
        w = RunWriter(tmp, "r1", {"n_params": 10})
        w.append([{"step": s, "lr": 1e-3, "train_loss": 3.0} for s in range(5)])
        return damage(tmp), lambda: read_curves(tmp)

    return run


def _truncate(tmp: Path) -> Path:
    path = tmp / "r1" / "curves-000000.parquet"
    path.write_bytes(path.read_bytes()[:40])
    return path


def _garbage_meta(tmp: Path) -> Path:
    path = tmp / "r1" / "run.parquet"
    path.write_bytes(b"not a parquet file at all")
    return path


def _orphan(tmp: Path) -> Path:
    (tmp / "r2").mkdir()
    (tmp / "r2" / "curves-000000.parquet").write_bytes((tmp / "r1" / "curves-000000.parquet").read_bytes())
    return tmp / "r2"


def _tb_empty(tmp: Path) -> tuple[Path, object]:
    (tmp / "tb").mkdir()
    return tmp / "tb", lambda: import_tensorboard(tmp / "tb")


def _wandb(text: str, **kw) -> Callable[[Path], tuple[Path, object]]:
    def run(tmp: Path) -> tuple[Path, object]:
        path = _csv(tmp, text, "wandb.csv")
        return path, lambda: import_wandb_csv(path, **kw)

    return run


def _drop(part: str, col: str) -> Callable[[dict], None]:
    return lambda log: log["history"][part].pop(col)


def _set(part: str, col: str, i: int, value: object) -> Callable[[dict], None]:
    return lambda log: log["history"][part][col].__setitem__(i, value)


# name: (case, error type, run named, column named); file is always checked against the case's path
CASES = {
    "empty file": (_table(""), DataError, None, None),
    "header only": (_table("run_id,step,lr,loss\n"), DataError, None, None),
    "missing loss column": (_table("run_id,step,lr\na,0,0.1\n"), DataError, None, "loss"),
    "missing step column": (_table(GOOD, step="iter"), DataError, None, "iter"),
    "non-numeric loss": (_table(GOOD + "a,2,0.001,abc\n"), DataError, "a", "loss"),
    "non-integer step": (_table(GOOD + "a,2.5,0.001,3.0\n"), DataError, "a", "step"),
    "negative step": (_table(GOOD + "a,-1,0.001,3.0\n"), DataError, "a", "step"),
    "negative lr": (_table(GOOD + "a,2,-0.001,3.0\n"), DataError, "a", "lr"),
    "missing lr value": (_table(GOOD + "a,2,,3.0\n"), DataError, "a", "lr"),
    "no lr column, no schedule": (_table("run_id,step,loss\na,0,5\n", lr=None), DataError, None, "lr"),
    "unknown schedule name": (_table(GOOD, schedule="cosinus:peak=1e-3,steps=10"), ScheduleError, "a", None),
    "schedule disagrees with lr": (
        _table(GOOD, schedule="constant:peak=0.002,steps=10"),
        ScheduleError,
        "a",
        "lr",
    ),
    "schedule shorter than curve": (
        _table(GOOD + "a,50,0.001,3.0\n", schedule="constant:peak=0.001,steps=10"),
        DataError,
        "a",
        "step",
    ),
    "run-level column varies": (
        _table("run_id,step,lr,loss,n_params\na,0,0.1,5,10\na,1,0.1,4,11\n"),
        DataError,
        "a",
        "n_params",
    ),
    "missing run id": (_table("run_id,step,lr,loss\n,0,0.1,5\n"), DataError, None, "run_id"),
    "unknown file type": (
        lambda tmp: (_csv(tmp, GOOD, "log.xlsx"), lambda: import_table(tmp / "log.xlsx")),
        DataError,
        None,
        None,
    ),
    "mpl missing column": (_mpl("step,loss\n2160,4.1\n"), DataError, "cosine_24000", "lr"),
    "mpl string in lr": (_mpl("step,lr,loss\n2160,x,4.1\n"), DataError, "cosine_24000", "lr"),
    "mpl lr off schedule": (_mpl("step,lr,loss\n2160,0.00031,4.1\n"), ScheduleError, "cosine_24000", "lr"),
    "mpl unknown stem": (
        _mpl("step,lr,loss\n2160,0.0003,4.1\n", stem="mystery_9"),
        ScheduleError,
        "mystery_9",
        None,
    ),
    "schaipp truncated gzip": (
        _schaipp(lambda log: None, raw=b"\x1f\x8b\x08\x00trunc"),
        DataError,
        None,
        None,
    ),
    "schaipp missing train_lr": (_schaipp(_drop("train", "train_lr")), DataError, None, "train.train_lr"),
    "schaipp string in loss": (
        _schaipp(_set("train", "train_loss", 3, "oops")),
        DataError,
        None,
        "train.train_loss",
    ),
    "schaipp ragged history": (
        _schaipp(lambda log: log["history"]["train"]["iter"].pop()),
        DataError,
        None,
        "train",
    ),
    "schaipp lr off schedule": (
        _schaipp(_set("train", "train_lr", 10, 1.0)),
        ScheduleError,
        BRANCH[:20],
        "lr",
    ),
    "truncated parquet": (_store(_truncate), DataError, None, None),
    "garbage run.parquet": (_store(_garbage_meta), DataError, None, None),
    "chunks without run.parquet": (_store(_orphan), DataError, "r2", None),
    "tensorboard dir without events": (_tb_empty, DataError, None, None),
    "wandb without loss column": (_wandb("_step,lr\n0,0.1\n"), DataError, None, "train/loss"),
    "wandb empty step with a loss": (_wandb("_step,train/loss,lr\n,3.0,0.1\n"), DataError, "wandb", "step"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_malformed_input_raises_with_context(tmp_path: Path, name: str) -> None:
    case, exc_type, run_id, column = CASES[name]
    path, call = case(tmp_path)
    with pytest.raises(exc_type) as err:
        call()
    assert isinstance(err.value, ScalefitError) and err.value.file == str(path), str(err.value)
    if run_id is not None:
        assert err.value.run_id is not None and err.value.run_id.startswith(run_id), str(err.value)
    if column is not None:
        assert err.value.column == column, str(err.value)


def test_unsorted_duplicated_nan_inf_rows_are_kept_and_marked(tmp_path: Path) -> None:
    path = _csv(
        tmp_path,
        "run_id,step,lr,loss\na,2,0.1,3.0\na,0,0.1,5.0\na,1,0.1,4.5\na,1,0.1,4.0\n"
        "a,3,0.1,nan\na,4,0.1,inf\nb,0,0.1,2.0\n",
    )
    c = import_table(path)
    a = c.run("a")
    np.testing.assert_array_equal(a.steps, [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(a.loss[:3], [5.0, 4.0, 3.0])  # step 1: the later row wins
    np.testing.assert_array_equal(a.finite, [True, True, True, False, False])
    assert c.runs["status"].to_dict() == {"a": "diverged", "b": "ok"}
    assert c.final().set_index("run_id")["step"].to_dict() == {"a": 2, "b": 0}


def test_wrong_dtype_written_to_store_names_file_run_column(tmp_path: Path) -> None:
    w = RunWriter(tmp_path, "r1", {})
    with pytest.raises(SchemaError) as err:
        w.append([{"step": 0, "lr": 1e-3, "train_loss": "three"}])
    assert err.value.run_id == "r1" and err.value.column == "train_loss" and "curves-000000" in err.value.file
    with pytest.raises(SchemaError) as err:
        w.append([{"step": 0.5, "lr": 1e-3, "train_loss": 3.0}])
    assert err.value.column == "step"
    with pytest.raises(DataError) as err:
        w.append([{"step": 0, "lr": 1e-3}])
    assert err.value.column == "train_loss"


def test_bad_chunk_does_not_hide_valid_runs_error_names_it(tmp_path: Path) -> None:
    RunWriter(tmp_path, "good", {}).append([{"step": 0, "lr": 1e-3, "train_loss": 3.0}])
    bad = RunWriter(tmp_path, "bad", {})
    bad.append([{"step": 0, "lr": 1e-3, "train_loss": 3.0}])
    (tmp_path / "bad" / "curves-000001.parquet").write_bytes(b"PAR1broken")
    with pytest.raises(DataError) as err:
        read_curves(tmp_path)
    assert err.value.file.endswith("curves-000001.parquet")
    assert len(pd.read_parquet(tmp_path / "good" / "curves-000000.parquet")) == 1


def test_curves_level_errors() -> None:
    with pytest.raises(DataError):
        Curves.from_frame([{"run_id": "a"}])  # type: ignore[arg-type]
    df = pd.DataFrame({"run_id": "a", "step": [0, 1], "lr": 0.1, "loss": [1.0, 2.0]})
    with pytest.raises(DataError) as err:
        Curves.from_frame(df, evals=pd.DataFrame({"run_id": ["a"], "step": [0], "dataset": ["v"]}))
    assert err.value.column == "eval_loss"
    with pytest.raises(DataError) as err:
        Curves.from_frame(
            df, evals=pd.DataFrame({"run_id": ["zz"], "step": [0], "dataset": ["v"], "eval_loss": [1]})
        )
    assert err.value.run_id == "zz"
    with pytest.raises(DataError) as err:
        load("mpl-25m").lr_sequence("nope")
    assert err.value.run_id == "nope"


def test_markdown_summary_escapes_what_it_prints() -> None:
    evil = "a|b <img src=x onerror=alert(1)> *bold* [link](http://x) `code`\n# heading"
    report = {
        "title": "t <script>",
        "heldout": [
            {
                "run_id": evil,
                "final_pred": 2.5,
                "lo": 2.4,
                "hi": 2.6,
                "final_obs": 2.5,
                "rel_err_pct": 0.1,
                "within_band": True,
            }
        ],
        "targets": [{"run_id": evil, "fit": "m|x", "final_pred": 3.0}],
        "warnings": ["rows excluded from 1 run(s): a_b|c"],
    }
    text = render_markdown(report)
    row = next(line for line in text.splitlines() if line.startswith("| a"))
    assert row.count("|") - row.count("\\|") == 7  # the id's pipe does not open a column
    assert "<img" not in text and "<script" not in text and "&lt;img" in text
    assert "\\*bold\\*" in text and "\\[link\\]" in text and "\\`code\\`" in text
    assert "\n# heading" not in text and "a\\_b\\|c" in text


def _diverged_curves() -> Curves:
    rows = []
    for i, peak in enumerate([1e-3, 2e-3, 3e-3]):
        lr = peak * 0.5 * (1 + np.cos(np.pi * np.arange(1000) / 1000))
        area = np.cumsum(lr)  # the law's S1 at step s + 1
        for s in range(0, 1000, 10):
            rows.append({"run_id": f"ok{i}", "step": s, "lr": lr[s], "loss": 2.0 + 0.5 * area[s] ** -0.4})
    for i in range(2):
        for s in range(0, 400, 10):  # an exploding finite prefix, then the trainer's inf
            rows.append({"run_id": f"boom{i}", "step": s, "lr": 1e-2, "loss": 2.3 + 10 ** (s / 40)})
        rows.append({"run_id": f"boom{i}", "step": 400, "lr": 1e-2, "loss": np.inf})
    runs = pd.DataFrame({"run_id": ["boom0", "boom1"], "status": ["diverged", "diverged"]})
    return Curves.from_frame(pd.DataFrame(rows), runs=runs)


def test_diverged_runs_are_left_out_of_a_fit_with_a_warning_naming_them() -> None:
    curves = _diverged_curves()
    with pytest.warns(FitWarning, match=r"2 diverged run\(s\) left out of the fit: boom0, boom1"):
        fit = sf.fit(curves, law="momentum", starts=2)
    assert {"diverged"} <= {w["code"] for w in fit.warnings}
    gone = {e["run_id"] for e in fit.diagnostics["excluded"] if e["reason"].startswith("diverged")}
    assert gone == {"boom0", "boom1"} and fit.options["diverged"] == "exclude"
    assert fit.data_summary["n_points"] == 297  # the healthy runs' rows after step 0 (S1 = 0) only
    clean = sf.fit(curves.select(run_ids=["ok0", "ok1", "ok2"]), law="momentum", starts=2)
    assert fit.values["L0"] == pytest.approx(clean.values["L0"], rel=1e-4)
    assert fit.values["L0"] == pytest.approx(2.0, rel=0.02)  # not pulled by the exploding prefixes


def test_the_finite_prefix_of_a_diverged_run_is_kept_on_request() -> None:
    runs = {r.run_id: r for r in curve_runs(_diverged_curves(), "momentum", diverged="prefix")}
    assert np.isfinite(runs["boom0"].loss).sum() == 40 and np.isfinite(runs["ok0"].loss).all()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)
        kept = sf.fit(_diverged_curves(), law="momentum", starts=2, diverged="prefix")
    assert kept.options["diverged"] == "prefix"
    assert not any(e["reason"].startswith("diverged") for e in kept.diagnostics["excluded"])
    with pytest.raises(ConfigError, match="diverged"):
        curve_runs(_diverged_curves(), "momentum", diverged="keep-all")


def _bad_store(table: dict, name: str = "curves-000000.parquet", meta: dict | None = None):
    def run(tmp: Path) -> tuple[Path, object]:
        RunWriter(tmp, "x").append([{"step": 0, "lr": 1e-3, "train_loss": 3.0}])
        path = tmp / "x" / name
        arrow = pa.table(table)
        pq.write_table(arrow.replace_schema_metadata(meta) if meta else arrow, path)
        return path, lambda: read_curves(tmp)

    return run


def _writer_call(rows: list[dict], evals: bool = False):
    def run(tmp: Path) -> tuple[Path, object]:
        w = RunWriter(tmp, "x")
        kind = "evals" if evals else "curves"
        return tmp / "x" / f"{kind}-000000.parquet", lambda: (w.append_evals if evals else w.append)(rows)

    return run


STORE_CASES = {
    "chunk with text steps": (
        _bad_store({"run_id": ["x"], "step": ["a"], "lr": [1.0], "train_loss": [2.0]}),
        "step",
    ),
    "chunk with a negative loss": (
        _bad_store({"run_id": ["x"], "step": [1], "lr": [1e-3], "train_loss": [-2.0]}),
        "train_loss",
    ),
    "chunk without steps": (_bad_store({"run_id": ["x"], "lr": [1.0]}), "step"),
    "chunk of no run": (
        _bad_store({"run_id": [None], "step": [1], "lr": [1e-3], "train_loss": [2.0]}),
        "run_id",
    ),
    "unknown status in run.parquet": (
        _bad_store({"run_id": ["x"], "status": ["weird"]}, "run.parquet"),
        "status",
    ),
    "run.parquet without run_id": (_bad_store({"foo": [1]}, "run.parquet"), "run_id"),
    "schema version not a number": (
        _bad_store(
            {"run_id": ["x"], "step": [1], "lr": [1e-3], "train_loss": [2.0]},
            meta={b"scalefit.schema_version": b"abc"},
        ),
        None,
    ),
    "chunk with text LRs": (
        _bad_store({"run_id": ["x"], "step": [1], "lr": ["a"], "train_loss": [2.0]}),
        "lr",
    ),
    "chunk with a null step": (
        _bad_store(
            {"run_id": ["x"], "step": pa.array([None], pa.int64()), "lr": [1e-3], "train_loss": [2.0]}
        ),
        "step",
    ),
    "chunk mixing two runs": (
        _bad_store({"run_id": ["x", "y"], "step": [1, 2], "lr": [1e-3] * 2, "train_loss": [2.0] * 2}),
        "run_id",
    ),
    "null step written": (_writer_call([{"step": None, "lr": 1e-3, "train_loss": 3.0}]), "step"),
    "negative step written": (_writer_call([{"step": -5, "lr": 1e-3, "train_loss": 3.0}]), "step"),
    "negative lr written": (_writer_call([{"step": 1, "lr": -1e-3, "train_loss": 3.0}]), "lr"),
    "step beyond int64": (_writer_call([{"step": 1e300, "lr": 1e-3, "train_loss": 3.0}]), "step"),
    "eval row without dataset": (
        _writer_call([{"step": 0, "dataset": None, "eval_loss": 3.0}], True),
        "dataset",
    ),
}


@pytest.mark.parametrize("name", list(STORE_CASES))
def test_malformed_store_inputs_are_named_errors(tmp_path: Path, name: str) -> None:
    case, column = STORE_CASES[name]
    path, call = case(tmp_path)
    with pytest.raises(DataError) as err:
        call()
    assert err.value.file == str(path), str(err.value)
    if column is not None:
        assert err.value.column == column, str(err.value)


def test_store_api_type_errors_are_named(tmp_path: Path) -> None:
    RunWriter(tmp_path, "a").append([{"step": 0, "lr": 1e-3, "train_loss": 3.0}])
    with pytest.raises(DataError, match="needs Curves"):
        write_curves(tmp_path, pd.DataFrame({"run_id": ["a"]}))
    with pytest.raises(DataError) as err:
        rows_before_step(tmp_path, "a", "5")
    assert err.value.column == "step"
    with pytest.raises(DataError) as err:
        read_curves(tmp_path, loss=5)
    assert err.value.column == "loss"
    with pytest.raises(DataError) as err:
        RunWriter(tmp_path, None)
    assert err.value.column == "run_id"
