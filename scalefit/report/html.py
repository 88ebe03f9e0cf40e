"""Render a report dictionary (the JSON twin) as one self-contained HTML page (Markdown and plain text:
``scalefit.report.text``).

Everything is inline: CSS in a ``<style>`` block, figures as ``data:image/png;base64`` images. The page
loads nothing from the network and runs no script.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from scalefit.report import plots
from scalefit.report.text import fmt

__all__ = ["render_html"]

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1100px;
       color: #1d2330; line-height: 1.45; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; } h2 { border-bottom: 1px solid #d6dae3; padding-bottom: .2rem;
       margin-top: 2rem; font-size: 1.25rem; } h3 { font-size: 1.05rem; }
table { border-collapse: collapse; margin: .6rem 0; font-size: .88rem; }
th, td { border: 1px solid #d6dae3; padding: .25rem .6rem; text-align: right; overflow-wrap: break-word; }
th { background: #f1f3f7; } td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; border: 1px solid #e4e7ee; margin: .4rem 0; }
.ok { color: #11702c; font-weight: 600; } .bad { color: #b3261e; font-weight: 600; }
.warn { background: #fff6e0; border-left: 4px solid #e0a800; padding: .3rem .7rem; margin: .3rem 0; }
.muted { color: #5d6475; font-size: .85rem; } pre { background: #f6f7f9; padding: .6rem; overflow-x: auto;
       font-size: .8rem; }
"""


def _esc(value: Any) -> str:
    return html.escape(fmt(value))


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _band(lo: Any, hi: Any) -> str:
    return f"[{_esc(lo)}, {_esc(hi)}]"


def _within(flag: Any) -> str:
    if flag is None:
        return "-"
    return '<span class="ok">yes</span>' if flag else '<span class="bad">no</span>'


def _heldout(report: Mapping[str, Any]) -> str:
    rows = [
        [
            html.escape(h.get("label") or h["run_id"]),
            html.escape(h.get("fit", "")),
            _esc(h["final_pred"]),
            _band(h["lo"], h["hi"]),
            _esc(h.get("final_obs")),
            _esc(h.get("rel_err_pct")),
            _within(h.get("within_band")),
        ]
        for h in report.get("heldout", [])
    ]
    if not rows:
        return ""
    heads = ["run", "fit", "predicted final", "band", "actual final", "error %", "within band"]
    return "<h2>Held-out runs: predicted vs actual</h2>" + _table(heads, rows)


def _metrics(report: Mapping[str, Any]) -> str:
    metrics = report.get("metrics") or {}
    keys = ["r2", "mae", "rmse", "pred_e", "worst_e", "kendall_tau"]
    rows = [[html.escape(name)] + [_esc(m.get(k)) for k in keys] for name, m in metrics.items()]
    return ("<h3>Held-out curve metrics</h3>" + _table(["fit", *keys], rows)) if rows else ""


def _curves(report: Mapping[str, Any]) -> str:
    by_fit: dict[str, list] = {}
    for c in report.get("curves", []):
        by_fit.setdefault(c.get("fit", "fit"), []).append(c)
    parts = []
    for name, curves in by_fit.items():
        parts.append(f"<h3>{html.escape(name)}</h3>")
        parts.append(_img(plots.curves_figure(curves, f"{name}: observed vs fitted"), f"curves {name}"))
        parts.append(_img(plots.residuals_figure(curves, f"{name}: residuals"), f"residuals {name}"))
    return ("<h2>Observed vs fitted curves</h2>" + "".join(parts)) if parts else ""


def _extrapolation_text(ext: Mapping[str, Any] | None) -> str:
    notes = (ext or {}).get("notes") or []
    return "; ".join(notes) if notes else "inside the fitted range"


def _targets(report: Mapping[str, Any]) -> str:
    targets = report.get("targets", [])
    if not targets:
        return ""
    context = [c for c in report.get("curves", []) if c.get("role") != "heldout"]
    rows = [
        [
            html.escape(t.get("label") or t["run_id"]),
            html.escape(t.get("fit", "")),
            html.escape(plots.short_schedule(t.get("schedule", ""))),
            _esc(t.get("n_params")),
            _esc(t["final_pred"]),
            _band(t.get("lo"), t.get("hi")),
            html.escape(_extrapolation_text(t.get("extrapolation"))),
        ]
        for t in targets
    ]
    heads = ["target", "fit", "schedule", "N (params)", "predicted final", "band", "extrapolation"]
    figs = [_img(plots.target_figure(t, context), f"target {t['run_id']}") for t in targets if t.get("curve")]
    return "<h2>Extrapolation to the target</h2>" + _table(heads, rows) + "".join(figs)


def _schedules(report: Mapping[str, Any]) -> str:
    comp = report.get("schedules")
    if not comp or not comp.get("rows"):
        return ""
    rows = [
        [
            html.escape(r["schedule"]),
            _esc(r["final_pred"]),
            _band(r.get("lo"), r.get("hi")),
            _esc(r.get("gain_vs_cosine")),
        ]
        for r in comp["rows"]
    ]
    best = comp.get("best", {})
    text = (
        f"<p>Best: <b>{html.escape(str(best.get('schedule')))}</b>, predicted gain over cosine "
        f"{_esc(best.get('gain_vs_cosine'))} nats.</p>"
    )
    fig = _img(plots.schedules_figure(comp["rows"], comp.get("title", "schedule family")), "schedules")
    heads = ["schedule", "predicted final", "band", "gain vs cosine"]
    return "<h2>Schedule comparison</h2>" + text + _table(heads, rows) + fig


def _compute_optimal(report: Mapping[str, Any]) -> str:
    rows = [
        [
            _esc(c["budget_flops"]),
            _esc(c["n_opt"]),
            _esc(c["d_opt"]),
            _esc(c["tokens_per_param"]),
            _esc(c.get("loss_pred")),
            _band(c.get("n_lo"), c.get("n_hi")),
        ]
        for c in report.get("compute_optimal", [])
    ]
    heads = ["budget (FLOPs)", "N* (params)", "D* (tokens)", "D*/N*", "predicted loss", "N* band"]
    parity = [
        _img(plots.parity_figure(p, p.get("title", "static law")), "parity") for p in report.get("parity", [])
    ]
    if not rows and not parity:
        return ""
    return "<h2>Compute-optimal allocation</h2>" + (_table(heads, rows) if rows else "") + "".join(parity)


def _params(report: Mapping[str, Any]) -> str:
    parts = []
    for name, fit in (report.get("fits") or {}).items():
        values, stderr, ci = fit.get("values", {}), fit.get("stderr") or {}, fit.get("ci") or {}
        rows = [
            [html.escape(k), _esc(v), _esc(stderr.get(k)), _band(*(ci.get(k) or (None, None)))]
            for k, v in values.items()
        ]
        diag = fit.get("diagnostics") or {}
        notes = ", ".join(
            f"{k}: {fmt(diag[k])}" for k in ("objective", "converged", "n_starts", "n_best") if k in diag
        )
        parts.append(f"<h3>{html.escape(name)} (law {html.escape(str(fit.get('law')))})</h3>")
        parts.append(_table(["parameter", "value", "std. err.", "95% CI"], rows))
        parts.append(f'<p class="muted">{html.escape(notes)}</p>')
    return ("<h2>Parameters</h2>" + "".join(parts)) if parts else ""


def _warnings(report: Mapping[str, Any]) -> str:
    items = report.get("warnings") or []
    body = "".join(f'<div class="warn">{html.escape(str(w))}</div>' for w in items) or "<p>None.</p>"
    return "<h2>Diagnostics and warnings</h2>" + body


def _provenance(report: Mapping[str, Any]) -> str:
    prov = json.dumps(report.get("provenance") or {}, indent=2, default=str)
    return "<h2>Provenance</h2><pre>" + html.escape(prov) + "</pre>"


SECTIONS: tuple[Callable[[Mapping[str, Any]], str], ...] = (
    _heldout,
    _metrics,
    _targets,
    _schedules,
    _compute_optimal,
    _curves,
    _params,
    _warnings,
    _provenance,
)


def render_html(report: Mapping[str, Any]) -> str:
    """The report as one self-contained HTML document (no network access needed to view it)."""
    title = html.escape(report.get("title", "scalefit report"))
    summary = "".join(f"<li>{html.escape(s)}</li>" for s in report.get("summary", []))
    body = "".join(section(report) for section in SECTIONS)
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_CSS}</style></head>'
        f'<body><h1>{title}</h1><p class="muted">{_esc(report.get("created"))}</p><ul>{summary}</ul>'
        f"{body}</body></html>\n"
    )
