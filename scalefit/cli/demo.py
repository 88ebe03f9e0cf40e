"""The end-to-end demo: proxy sweep -> fits -> predictions registered before training -> train the held-out
runs -> report of predicted vs actual. ``scalefit demo`` (CPU, embedded Ray) or, on a cluster,
``ray job submit --working-dir . -- python jobs/predict.py jobs/configs/demo.yaml``.

A ladder (YAML or dict; ``DEFAULT_LADDER`` is the built-in CPU one) has these sections: ``sweep`` (a
`scalefit.cluster.sweep` spec: the runs the laws are fitted on), ``heldout`` (a sweep spec: runs predicted
first, trained afterwards), ``fit`` (``schedule_law``, ``size_law`` or null, ``bootstrap``, ``loss``:
``train_loss`` or ``eval:<dataset>``) and an optional ``target`` (``model``, ``schedule``, ``family``:
a run beyond the ladder to extrapolate to, and the schedule family to search at its budget).
The schedule law is fitted per model size (on the sizes of the held-out runs), the size law jointly on
every size. Exit status: 0 when every held-out final loss lies in its predicted band, 1 otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from scalefit.cli.stages import Stages, verdict
from scalefit.cluster.runner import run_sweep
from scalefit.cluster.sweep import SweepSpec, parse_sweep
from scalefit.errors import ConfigError
from scalefit.fitting.api import fit
from scalefit.predict.schedule_choice import best_schedule
from scalefit.predict.targets import Target, cross_validate, predict_target
from scalefit.proxy.config import ModelConfig
from scalefit.report.build import assemble, curve_entries, jsonable, report_provenance, write_report
from scalefit.report.text import short_schedule
from scalefit.schedules.base import Schedule
from scalefit.store.curves import Curves
from scalefit.store.parquet import read_curves

__all__ = ["DEFAULT_LADDER", "load_ladder", "run_demo", "held_out_targets", "model_target"]

_MODEL = {"n_layer": 2, "n_head": 2, "context": 64}
_TRAIN = {"batch_size": 16, "warmup": 30, "eval_every": 25, "checkpoint_every": 500, "device": "cpu"}
_GRID = {"steps": [1200], "peak_lr": [0.003], "seed": [0], "dataset": ["python-stdlib"]}
DEFAULT_LADDER: dict[str, Any] = {
    "name": "demo",
    "fit": {
        "schedule_law": "cooldown",
        "size_law": "multipower-size",
        "bootstrap": 0,
        "loss": "eval:python-stdlib",
    },
    "sweep": {
        "sweep": "demo",
        "grid": {
            **_GRID,
            "model": [{**_MODEL, "d_model": d} for d in (32, 48, 64, 96)],
            "schedule": ["constant", "cosine", "wsd:decay=0.2"],
        },
        "train": _TRAIN,
        "resources": {"num_cpus": 1},
    },
    "heldout": {
        "sweep": "demo-heldout",
        "runs": [
            {**_GRID, "model": [{**_MODEL, "d_model": 128}], "schedule": ["cosine"]},
            {**_GRID, "model": [{**_MODEL, "d_model": 64}], "schedule": ["wsd:decay=0.5,shape=1-sqrt"]},
        ],
        "train": _TRAIN,
        "resources": {"num_cpus": 1},
    },
    "target": {
        "model": {**_MODEL, "d_model": 256},
        "schedule": "cosine:peak=0.003,steps=2400,warmup=30",
        "family": "wsd",
    },
}
_SECTIONS = ("name", "fit", "sweep", "heldout", "target")


def load_ladder(source: str | Path | Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A ladder from a YAML file or a dict (default: ``DEFAULT_LADDER``), with its sections checked."""
    if source is None:
        return dict(DEFAULT_LADDER)
    ladder = dict(source) if isinstance(source, Mapping) else yaml.safe_load(Path(source).read_text())
    where = None if isinstance(source, Mapping) else str(source)
    if not isinstance(ladder, dict):
        raise ConfigError("a ladder must be a mapping", file=where, value=type(ladder).__name__)
    for key in ladder:
        if key not in _SECTIONS:
            raise ConfigError(
                "unknown ladder section", file=where, field=key, fix=f"use {', '.join(_SECTIONS)}"
            )
    for key in ("sweep", "heldout"):
        if key not in ladder:
            raise ConfigError(
                "missing ladder section", file=where, field=key, fix="give a scalefit sweep spec"
            )
    return ladder


def _label(row: Mapping[str, Any]) -> str:
    """E.g. 'd64 wsd:decay=0.5,shape=1-sqrt' from a runs-table row (or a Target's runs row)."""
    return f"d{int(row['d_model'])} {short_schedule(row['schedule'])}"


def model_target(
    model: ModelConfig | Mapping[str, Any],
    schedule: Schedule | str,
    tokens_per_step: float | None,
    run_id: str,
) -> Target:
    """A `Target` for a `ModelConfig` (or its dict), with the runs-table columns the trainer records."""
    m = model if isinstance(model, ModelConfig) else ModelConfig(**model)
    shape = m.shape()
    meta = {
        "n_params_nonembed": shape.n_params("non_embedding"),
        "n_layer": m.n_layer,
        "d_model": m.d_model,
        "context": m.context,
        "vocab_size": m.vocab_size,
    }
    return Target(schedule, shape.n_params("total"), tokens_per_step, run_id, meta)


def held_out_targets(spec: SweepSpec) -> list[Target]:
    """One `Target` per run of a sweep spec."""
    return [model_target(c.model, c.schedule, c.tokens_per_step, c.run_id) for c in spec.expand()]


def _fit_all(
    curves: Curves, train_ids: list[str], targets: list[Target], cfg: Mapping[str, Any]
) -> dict[str, Any]:
    """The size law on every training run (cross-validated by leaving out the largest size) and the
    schedule law per size that a held-out run has (cross-validated leaving out one run at a time)."""
    boot, train = int(cfg.get("bootstrap", 0)), curves.select(train_ids)
    sizes = train.runs["n_params"]
    fits: dict[str, Any] = {}
    law = cfg.get("size_law", "multipower-size")
    if law:
        fit_fn = partial(fit, law=law, bootstrap=boot)
        cv = cross_validate(fit_fn, train, [sorted(sizes.index[sizes == sizes.max()])])
        fits["size-law"] = {"fit": fit_fn(train), "size": None, "cv": cv}
    law = cfg.get("schedule_law", "cooldown")
    for n in sorted({t.n_params for t in targets if t.n_params in set(sizes)}):
        fit_fn = partial(fit, law=law, bootstrap=boot)
        same = curves.select(sorted(sizes.index[sizes == n]))
        cv = cross_validate(fit_fn, same, [[r] for r in same.run_ids])
        fits[f"schedule-law N={n / 1e3:.0f}k"] = {"fit": fit_fn(same), "size": n, "cv": cv}
    return fits


def _predict_all(fits: Mapping[str, Any], targets: list[Target], train: Curves) -> list[dict[str, Any]]:
    out = []
    for name, f in fits.items():
        for t in targets:
            if f["size"] is None or t.n_params == f["size"]:
                pred = predict_target(f["fit"], t, name=name, fitted=train, model_error=f["cv"]["rel_sd"])
                out.append(pred | {"label": _label(t.runs_row())})
    return out


def _observe(preds: list[dict[str, Any]], curves: Curves) -> None:
    """Attach each registered prediction's actual curve (its logged steps and loss)."""
    for p in preds:
        run = curves.run(p["run_id"])
        p["curve"]["actual_steps"] = run.steps[run.finite].tolist()
        p["curve"]["actual"] = run.loss[run.finite].tolist()


def _fit_plan(cfg: Mapping[str, Any]) -> str:
    """E.g. 'the cooldown law per model size and the multipower-size law on every size (loss
    eval:python-stdlib, 0 bootstrap resamples)': what the fit stage does, in words."""
    laws = []
    if cfg.get("schedule_law", "cooldown"):
        laws.append(f"the {cfg.get('schedule_law', 'cooldown')} law per held-out model size")
    if cfg.get("size_law", "multipower-size"):
        laws.append(f"the {cfg.get('size_law', 'multipower-size')} law on every size")
    loss, boot = cfg.get("loss", "train_loss"), int(cfg.get("bootstrap", 0))
    return f"{' and '.join(laws) or 'nothing'} (loss {loss}, {boot} bootstrap resamples)"


def run_demo(
    out: str | Path = "scalefit-out",
    *,
    config: str | Path | Mapping[str, Any] | None = None,
    address: str | None = None,
    store: str | Path | None = None,
    log: Callable[[str], None] = print,
) -> int:
    """Run the whole demo; returns the exit status (0: every held-out final inside its band)."""
    ladder, out = load_ladder(config), Path(out)
    store = Path(store) if store else out / "runs"
    train_spec, held_spec = parse_sweep(ladder["sweep"]), parse_sweep(ladder["heldout"])
    stage = Stages(7, log)
    stage(f"training {len(train_spec.expand())} proxy runs on Ray -> {store}")
    run_sweep(train_spec, store, address, log=log)
    train_ids = [c.run_id for c in train_spec.expand()]
    curves = read_curves(store, loss=ladder.get("fit", {}).get("loss", "train_loss"))
    targets = held_out_targets(held_spec)
    stage(f"fitting {_fit_plan(ladder.get('fit', {}))} on {len(train_ids)} runs")
    fits = _fit_all(curves, train_ids, targets, ladder.get("fit", {}))
    stage(f"predicting {len(targets)} held-out runs before training them")
    preds = _predict_all(fits, targets, curves.select(train_ids))
    out.mkdir(parents=True, exist_ok=True)
    (out / "predictions.json").write_text(json.dumps(jsonable(preds), indent=1))
    stage(f"training the held-out runs: {', '.join(p['label'] for p in preds[: len(targets)])}")
    run_sweep(held_spec, store, address, log=log)
    curves = read_curves(store, loss=ladder.get("fit", {}).get("loss", "train_loss"))
    _observe(preds, curves)
    stage("comparing predictions with the trained runs")
    report = _build_report(ladder, fits, curves, train_ids, targets, preds)
    stage("extrapolating to the target and writing the report")
    paths = write_report(report, out)
    return verdict(report, paths, stage, log)


def _build_report(
    ladder: Mapping[str, Any],
    fits: Mapping[str, Any],
    curves: Curves,
    train_ids: list[str],
    targets: list[Target],
    preds: list[dict[str, Any]],
) -> dict[str, Any]:
    held_ids = [t.run_id for t in targets]
    labels = {rid: _label(row) for rid, row in curves.runs.iterrows()}
    entries = []
    for name, f in fits.items():
        ids = [
            r for r in train_ids + held_ids if f["size"] is None or curves.runs.at[r, "n_params"] == f["size"]
        ]
        entries += curve_entries(name, f["fit"], curves.select(ids), held_ids, model_error=f["cv"]["rel_sd"])
    for e in entries:
        e["label"] = labels[e["run_id"]]
    extra: dict[str, Any] = {}
    spec = ladder.get("target")
    if spec and "size-law" in fits:
        size_fit, err = fits["size-law"]["fit"], fits["size-law"]["cv"]["rel_sd"]
        big = model_target(spec["model"], spec["schedule"], None, "")
        big = model_target(spec["model"], spec["schedule"], None, "target " + _label(big.runs_row()))
        fitted = curves.select(train_ids)
        preds = preds + [predict_target(size_fit, big, name="size-law", fitted=fitted, model_error=err)]
        extra["schedules"] = best_schedule(size_fit, big, spec.get("family", "wsd")) | {"fit": "size-law"}
    report = assemble(
        f"scalefit demo: {ladder.get('name', 'ladder')}",
        {k: f["fit"] for k, f in fits.items()},
        curves=entries,
        targets=preds,
        calibration={k: f["cv"] for k, f in fits.items()},
        provenance=report_provenance(ladder=ladder),
        **extra,
    )
    held = report["heldout"]
    inside = sum(bool(h["within_band"]) for h in held)
    report["summary"] = [
        f"{inside} of {len(held)} held-out final losses lie inside the band predicted "
        "before those runs were trained."
    ]
    for h in held:
        h["label"] = labels[h["run_id"]]
    return report
