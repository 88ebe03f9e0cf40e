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
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from scalefit.cli.demo_reference import run_reference
from scalefit.errors import ConfigError

__all__ = ["DEFAULT_LADDER", "load_ladder", "run_demo", "run_reference", "held_out_targets", "model_target"]

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
    import yaml

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
    kind, _, opts = str(row["schedule"]).partition(":")
    keep = [o for o in opts.split(",") if o.split("=")[0] not in ("peak", "steps", "warmup")]
    return f"d{int(row['d_model'])} {kind}" + (":" + ",".join(keep) if keep else "")


def model_target(model: Any, schedule: Any, tokens_per_step: float | None, run_id: str) -> Any:
    """A `Target` for a `ModelConfig` (or its dict), with the runs-table columns the trainer records."""
    from scalefit.predict.targets import Target
    from scalefit.proxy.config import ModelConfig

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


def held_out_targets(spec: Any) -> list[Any]:
    """One `Target` per run of a sweep spec."""
    return [model_target(c.model, c.schedule, c.tokens_per_step, c.run_id) for c in spec.expand()]


class _Stages:
    """Progress lines: '[demo 3/7  41.2s] fitting ...'."""

    def __init__(self, n: int, log: Callable[[str], None]) -> None:
        self.n, self.i, self.log, self.t0 = n, 0, log, time.monotonic()

    def __call__(self, text: str) -> None:
        self.i += 1
        self.log(f"[demo {self.i}/{self.n} {time.monotonic() - self.t0:6.1f}s] {text}")


def _fit_all(curves: Any, train_ids: list[str], targets: list[Any], cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The size law on every training run (cross-validated by leaving out the largest size) and the
    schedule law per size that a held-out run has (cross-validated leaving out one run at a time)."""
    from scalefit.fitting import api
    from scalefit.predict.targets import cross_validate

    boot, train = int(cfg.get("bootstrap", 0)), curves.select(train_ids)
    sizes = train.runs["n_params"]
    fits: dict[str, Any] = {}
    law = cfg.get("size_law", "multipower-size")
    if law:
        fit_fn = lambda c: api.fit(c, law=law, bootstrap=boot)  # noqa: E731
        cv = cross_validate(fit_fn, train, [sorted(sizes.index[sizes == sizes.max()])])
        fits["size-law"] = {"fit": fit_fn(train), "size": None, "cv": cv}
    law = cfg.get("schedule_law", "cooldown")
    for n in sorted({t.n_params for t in targets if t.n_params in set(sizes)}):
        fit_fn = lambda c: api.fit(c, law=law, bootstrap=boot)  # noqa: E731
        same = curves.select(sorted(sizes.index[sizes == n]))
        cv = cross_validate(fit_fn, same, [[r] for r in same.run_ids])
        fits[f"schedule-law N={n / 1e3:.0f}k"] = {"fit": fit_fn(same), "size": n, "cv": cv}
    return fits


def _predict_all(fits: Mapping[str, Any], targets: list[Any], train: Any) -> list[dict[str, Any]]:
    from scalefit.predict.targets import predict_target

    out = []
    for name, f in fits.items():
        for t in targets:
            if f["size"] is None or t.n_params == f["size"]:
                pred = predict_target(f["fit"], t, name=name, fitted=train, model_error=f["cv"]["rel_sd"])
                out.append(pred | {"label": _label(t.runs_row())})
    return out


def _observe(preds: list[dict[str, Any]], curves: Any) -> None:
    """Attach each registered prediction's actual curve (its logged steps and loss)."""
    for p in preds:
        run = curves.run(p["run_id"])
        p["curve"]["actual_steps"] = run.steps[run.finite].tolist()
        p["curve"]["actual"] = run.loss[run.finite].tolist()


def run_demo(
    out: str | Path = "scalefit-out",
    *,
    config: str | Path | Mapping[str, Any] | None = None,
    address: str | None = None,
    store: str | Path | None = None,
    log: Callable[[str], None] = print,
) -> int:
    """Run the whole demo; returns the exit status (0: every held-out final inside its band)."""
    from scalefit.cluster import runner, sweep
    from scalefit.report import build as rep
    from scalefit.store.parquet import read_curves

    ladder, out = load_ladder(config), Path(out)
    store = Path(store) if store else out / "runs"
    train_spec, held_spec = sweep.parse_sweep(ladder["sweep"]), sweep.parse_sweep(ladder["heldout"])
    stage = _Stages(7, log)
    stage(f"training {len(train_spec.expand())} proxy runs on Ray -> {store}")
    runner.run_sweep(train_spec, store, address, log=log)
    train_ids = [c.run_id for c in train_spec.expand()]
    curves = read_curves(store, loss=ladder.get("fit", {}).get("loss", "train_loss"))
    targets = held_out_targets(held_spec)
    stage(f"fitting {ladder.get('fit', {})} on {len(train_ids)} runs")
    fits = _fit_all(curves, train_ids, targets, ladder.get("fit", {}))
    stage(f"predicting {len(targets)} held-out runs before training them")
    preds = _predict_all(fits, targets, curves.select(train_ids))
    out.mkdir(parents=True, exist_ok=True)
    (out / "predictions.json").write_text(json.dumps(rep.jsonable(preds), indent=1))
    stage(f"training the held-out runs: {', '.join(p['label'] for p in preds[: len(targets)])}")
    runner.run_sweep(held_spec, store, address, log=log)
    curves = read_curves(store, loss=ladder.get("fit", {}).get("loss", "train_loss"))
    _observe(preds, curves)
    stage("comparing predictions with the trained runs")
    report = _build_report(ladder, fits, curves, train_ids, targets, preds)
    stage("extrapolating to the target and writing the report")
    paths = rep.write_report(report, out)
    return _verdict(report, paths, stage, log)


def _build_report(
    ladder: Mapping[str, Any],
    fits: Mapping[str, Any],
    curves: Any,
    train_ids: list[str],
    targets: list[Any],
    preds: list[dict[str, Any]],
) -> dict[str, Any]:
    from scalefit.predict.targets import best_schedule, predict_target
    from scalefit.report import build as rep

    held_ids = [t.run_id for t in targets]
    labels = {rid: _label(row) for rid, row in curves.runs.iterrows()}
    entries = []
    for name, f in fits.items():
        ids = [
            r for r in train_ids + held_ids if f["size"] is None or curves.runs.at[r, "n_params"] == f["size"]
        ]
        entries += rep.curve_entries(
            name, f["fit"], curves.select(ids), held_ids, model_error=f["cv"]["rel_sd"]
        )
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
        extra["schedules"] = best_schedule(size_fit, big, spec.get("family", "wsd"))
    report = rep.assemble(
        f"scalefit demo: {ladder.get('name', 'ladder')}",
        {k: f["fit"] for k, f in fits.items()},
        curves=entries,
        targets=preds,
        calibration={k: f["cv"] for k, f in fits.items()},
        provenance=rep.provenance(ladder=ladder),
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


def _verdict(report: Mapping[str, Any], paths: Mapping[str, Path], stage: _Stages, log: Callable) -> int:
    from scalefit.report.html import fmt

    stage(f"report: {paths['html']} (JSON {paths['json'].name}, Markdown {paths['markdown'].name})")
    ok = True
    for h in report["heldout"]:
        inside = bool(h["within_band"])
        ok &= inside
        where = "inside" if inside else ("OUTSIDE" if h["within_band"] is not None else "no band for")
        log(
            f"  {h.get('label', h['run_id']):<34} [{h['fit']}] predicted {h['final_pred']:.4f} "
            f"[{fmt(h['lo'])}, {fmt(h['hi'])}], actual {h['final_obs']:.4f}: {where} band"
        )
    log("all held-out finals inside their bands" if ok else "some held-out finals fall outside their bands")
    return 0 if ok else 1
