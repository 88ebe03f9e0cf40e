"""Reports: a JSON twin (the source of truth), a self-contained HTML page and a Markdown summary.

The report is a plain dictionary (schema ``scalefit-report/1``). Its ``fits`` hold ``Fit.to_dict()``
of every fit, so ``fits_from_report`` rebuilds `Fit` objects that predict the same numbers; every
figure is drawn from the dictionary alone, so ``scalefit report report.json`` re-renders it.

    entries = curve_entries("momentum", fit, curves, heldout=["wsd_20000_24000"])
    report = assemble("MPL 400M", {"momentum": fit}, curves=entries)
    write_report(report, "out/")   # out/report.json, out/report.html, out/summary.md
"""

from __future__ import annotations

import datetime as dt
import json
import math
import platform
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
import scipy

from scalefit.fitting.result import Fit
from scalefit.predict.forecast import Forecast
from scalefit.predict.targets import SLACK, Target, widen
from scalefit.provenance import provenance
from scalefit.report.html import render_html
from scalefit.report.text import render_markdown
from scalefit.store.curves import Curves
from scalefit.store.sources import read_stamped

__all__ = [
    "SCHEMA",
    "assemble",
    "curve_entries",
    "heldout_finals",
    "heldout_summary",
    "fit_band",
    "forecast_entries",
    "forecast_answer",
    "reach",
    "write_report",
    "load_report",
    "fits_from_report",
    "report_provenance",
    "jsonable",
]

SCHEMA = "scalefit-report/1"


def jsonable(obj: Any) -> Any:
    """``obj`` with numpy/pandas scalars made Python, NaN/inf made None, tuples made lists."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, pd.DataFrame):
        return jsonable(obj.to_dict(orient="records"))
    if isinstance(obj, np.ndarray | list | tuple | pd.Series):
        return [jsonable(v) for v in list(obj)]
    if isinstance(obj, np.bool_ | bool):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        return float(obj) if math.isfinite(obj) else None
    return obj


def _thin(n: int, max_points: int) -> np.ndarray:
    """Indices of about ``max_points`` points, log-spaced in position, always keeping the last."""
    if n <= max_points:
        return np.arange(n)
    idx = np.unique(np.geomspace(1, n, max_points).astype(int) - 1)
    return np.unique(np.append(idx, n - 1))


def fit_band(fit: Fit | Mapping[str, Any], *, noise: bool = True, model_error: float = 0.0) -> dict:
    """The band record of a fit's predictions: its level (the fit's ``ci`` option) and its kind
    (``fit``: parameters + noise + model error, ``fit-noise``, ``fit-parameters``; see
    `scalefit.report.text.BAND_KINDS`)."""
    options = (fit.get("options") if isinstance(fit, Mapping) else fit.options) or {}
    kind = "fit" if model_error else ("fit-noise" if noise else "fit-parameters")
    return {"level": float(options.get("ci", 0.95)), "kind": kind}


def _run_meta(curves: Curves, run_id: str) -> dict:
    runs = curves.runs
    if run_id not in runs.index:
        return {}
    row = runs.loc[run_id]
    out = {}
    for key, col in (("schedule", "schedule"), ("n_params", "n_params"), ("warmup", "warmup_steps")):
        value = row.get(col) if col in runs.columns else None
        if value is not None and not (isinstance(value, float) and not math.isfinite(value)):
            out[key] = value
    return out


def curve_entries(
    name: str,
    fit: Fit,
    curves: Curves,
    heldout: Iterable[str] = (),
    *,
    max_points: int = 200,
    noise: bool = True,
    model_error: float = 0.0,
) -> list[dict]:
    """Observed and predicted loss per run of ``curves``, thinned for plotting. The band (``lo``, ``hi``)
    covers the fit's uncertainty, with ``noise`` the fit's residual scale (where one observed point may
    land), and a relative ``model_error`` (see `scalefit.predict.targets.widen`)."""
    pred = widen(fit.predict(curves, noise=noise), model_error)
    band = fit_band(fit, noise=noise, model_error=model_error)
    return _entries(name, pred, curves, heldout, band, max_points)


def _entries(
    name: str, pred: pd.DataFrame, curves: Curves, heldout: Iterable[str], band: dict, max_points: int
) -> list[dict]:
    heldout = set(heldout)
    obs = curves.frame[["run_id", "step", "loss"]]
    merged = obs.merge(pred[["run_id", "step", "loss_pred", "lo", "hi"]], on=["run_id", "step"], how="inner")
    entries = []
    for run_id, rows in merged.groupby("run_id", sort=True):
        rows = rows[np.isfinite(rows["loss"].to_numpy(dtype=float))]
        keep = rows.iloc[_thin(len(rows), max_points)]
        entries.append(
            {
                "fit": name,
                "run_id": str(run_id),
                "role": "heldout" if run_id in heldout else "fit",
                "steps": keep["step"].tolist(),
                "observed": keep["loss"].tolist(),
                "predicted": keep["loss_pred"].tolist(),
                "lo": keep["lo"].tolist(),
                "hi": keep["hi"].tolist(),
                "band": band,
                **_run_meta(curves, str(run_id)),
            }
        )
    return entries


def forecast_entries(
    fc: Forecast, curves: Curves, name: str = "forecast", *, max_points: int = 200
) -> list[dict]:
    """Held-out curve entries of a `Forecast` whose targets were ``curves`` (e.g. ``held.without_loss()``):
    its prediction and band at every observed step, for the held-out checks of the forecast's band."""
    band = {"level": fc.level, "kind": "forecast"}
    return _entries(name, fc.predict(), curves, curves.run_ids, band, max_points)


def heldout_finals(entries: Sequence[Mapping[str, Any]]) -> list[dict]:
    """Final-loss check of every held-out curve: prediction, band, actual, error, inside the band."""
    out = []
    for e in entries:
        if e.get("role") != "heldout" or not e["steps"]:
            continue
        obs, pred, lo, hi = e["observed"][-1], e["predicted"][-1], e["lo"][-1], e["hi"][-1]
        banded = lo is not None and hi is not None and all(map(math.isfinite, (lo, hi)))
        out.append(
            {
                "fit": e["fit"],
                "run_id": e["run_id"],
                "step": e["steps"][-1],
                "final_obs": obs,
                "final_pred": pred,
                "lo": lo,
                "hi": hi,
                "rel_err_pct": 100 * (pred - obs) / obs,
                "within_band": bool(lo <= obs <= hi) if banded else None,
                **{k: e[k] for k in ("label", "band") if k in e},
            }
        )
    return out


def report_provenance(**extra: Any) -> dict:
    """The provenance record (`scalefit.provenance.provenance`: scalefit version, git SHA, created) with
    the versions of the numerical libraries, the host platform, and ``extra``."""
    versions = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "scipy": scipy.__version__,
        "matplotlib": matplotlib.__version__,
    }
    return {**provenance(), "versions": versions, "platform": platform.platform(), **extra}


def assemble(title: str, fits: Mapping[str, Fit | Mapping[str, Any]], **sections: Any) -> dict:
    """The report dictionary. ``sections``: curves, targets, schedules, compute_optimal, parity,
    metrics, summary, warnings, provenance (see the HTML renderer for their fields)."""
    curves = sections.pop("curves", [])
    warnings = list(sections.pop("warnings", []))
    fit_dicts = {k: (f if isinstance(f, Mapping) else f.to_dict()) for k, f in fits.items()}
    for name, f in fit_dicts.items():
        warnings += [{"source": name, "warning": w} for w in (f.get("diagnostics") or {}).get("warnings", [])]
    calibrated = set(sections.get("calibration") or {})
    for c in curves:
        if "band" not in c and c.get("fit") in fit_dicts:
            c["band"] = fit_band(fit_dicts[c["fit"]], model_error=float(c.get("fit") in calibrated))
    for t in sections.get("targets") or []:
        if "band" not in t and t.get("fit") in fit_dicts:
            t["band"] = fit_band(fit_dicts[t["fit"]], model_error=float(t.get("fit") in calibrated))
    comp = sections.get("schedules")
    if comp and "band" not in comp:
        f = fit_dicts.get(comp.get("fit")) or next(iter(fit_dicts.values()), {})
        comp["band"] = fit_band(f, noise=False)
    report = {
        "schema": SCHEMA,
        "title": title,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "fits": fit_dicts,
        "curves": curves,
        "heldout": heldout_finals(curves),
        "warnings": warnings,
        "provenance": sections.pop("provenance", None) or report_provenance(),
    }
    report.update(sections)
    return jsonable(report)


def write_report(report: Mapping[str, Any], out: str | Path) -> dict[str, Path]:
    """Write ``report.json``, ``report.html`` and ``summary.md`` under ``out``; returns their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "report.json", "html": out / "report.html", "markdown": out / "summary.md"}
    texts = {
        "json": json.dumps(jsonable(report), indent=1),
        "html": render_html(report),
        "markdown": render_markdown(report),
    }
    for kind, path in paths.items():
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(texts[kind], encoding="utf-8")
        tmp.replace(path)
    return paths


def load_report(path: str | Path) -> dict:
    """Read a report JSON, checking its schema."""
    return read_stamped(path, "a report.json written by scalefit", "scalefit report", "schema", SCHEMA)


def fits_from_report(report: Mapping[str, Any]) -> dict[str, Fit]:
    """The report's fits as `Fit` objects (they predict what the report shows)."""
    return {name: Fit.from_dict(d) for name, d in (report.get("fits") or {}).items()}


def heldout_summary(held: Sequence[Mapping[str, Any]]) -> list[str]:
    """The summary line of a report's held-out checks (none when there are none)."""
    inside = [h for h in held if h.get("within_band")]
    return (
        [f"{len(inside)} of {len(held)} held-out final losses lie inside their predicted band."]
        if held
        else []
    )


def reach(fitted: Curves, target: Target) -> list[str]:
    """How far ``target`` lies beyond the fitted runs: its horizon and size as multiples of the largest
    fitted ones (nothing when within the 2% ``SLACK``)."""
    out = []
    last = float(fitted.frame.groupby("run_id")["step"].max().max())
    horizon = float(target.total_steps - 1)
    if last > 0 and horizon > SLACK * last:
        out.append(
            f"horizon {horizon / last:.3g}x the longest fitted run ({horizon:.0f} vs {last:.0f} steps)"
        )
    sizes = pd.to_numeric(fitted.runs.get("n_params", pd.Series(dtype=float)), errors="coerce").dropna()
    if target.n_params is not None and len(sizes) and target.n_params > SLACK * float(sizes.max()):
        out.append(
            f"N {target.n_params / float(sizes.max()):.3g}x the largest fitted model ({sizes.max():.4g})"
        )
    return out


def forecast_answer(fc: Forecast, target: Target, fitted: Curves, label: str | None = None) -> dict:
    """The report's (and ``scalefit predict``'s) answer from a `Forecast` of one target: the predicted
    final with its band and level, the laws' weights, the question and its folds, whether identified,
    how far it extrapolates, and the predicted curve."""
    table = fc.predict()
    rows = table[table["run_id"].astype(str) == str(target.run_id)].sort_values("step")
    final = rows.iloc[-1]
    n = len(fitted.run_ids)
    return jsonable(
        {
            "target": label or target.run_id,
            "run_id": target.run_id,
            "schedule": str(target.schedule),
            "steps": target.total_steps,
            "n_params": target.n_params,
            "final_step": int(final["step"]),
            "final_pred": float(final["loss_pred"]),
            "lo": float(final["lo"]),
            "hi": float(final["hi"]),
            "band": {"level": fc.level, "kind": "forecast"},
            "weights": dict(fc.weights),
            "question": fc.question,
            "n_folds": len(fc.folds),
            "identified": fc.identified,
            "rests_on": f"{n} fitted run{'s' if n != 1 else ''} ({', '.join(map(str, fitted.run_ids[:6]))}"
            + (", ..." if n > 6 else "")
            + f"), {sum(w > 0 for w in fc.weights.values())} of {len(fc.weights)} laws weighted",
            "reach": reach(fitted, target),
            "band_detail": dict(fc.band),
            "notes": list(fc.notes),
            "curve": {
                "steps": rows["step"].astype(int).tolist(),
                "loss_pred": rows["loss_pred"].tolist(),
                "lo": rows["lo"].tolist(),
                "hi": rows["hi"].tolist(),
            },
        }
    )
