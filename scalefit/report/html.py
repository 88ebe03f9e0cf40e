"""Render a report dictionary (the JSON twin) as one self-contained HTML page (Markdown and plain text:
``scalefit.report.text``).

Page order: the answer (the target's predicted final with its band and level, what it rests on, how far
it extrapolates; a schedule or allocation choice says whether the best is distinguishable from the
next), then the held-out checks, then the evidence (targets per fit, schedules, allocation, curves,
parameters, warnings by severity) and the provenance, collapsed, at the end.

Every figure is a ``<figure class="fig">`` with ``data-fit`` (the fit it shows) and a ``<figcaption>``:
its title (``.fig-title``, naming the run and the fit), its legend (``.fig-legend``, naming the band's
level) and its final values (``.fig-finals``), so the page states in text what each picture shows.

Everything is inline: CSS in a ``<style>`` block, figures as ``data:image/png;base64`` images. The page
loads nothing from the network and runs no script.
"""

from __future__ import annotations

import base64
import html
import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from scalefit.report import plots
from scalefit.report.text import (
    answer_text,
    at_bound,
    band_short,
    band_text,
    choice_verdict,
    ci_text,
    fmt,
    fmt_param,
    grouped_warnings,
    short_schedule,
    steps_text,
    weights_text,
)

__all__ = ["render_html", "SECTION_IDS"]

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1200px;
       color: #1d2330; line-height: 1.45; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; } h2 { border-bottom: 1px solid #d6dae3; padding-bottom: .2rem;
       margin-top: 2rem; font-size: 1.25rem; } h3 { font-size: 1.05rem; }
table { border-collapse: collapse; margin: .6rem 0; font-size: .88rem; }
th, td { border: 1px solid #d6dae3; padding: .25rem .6rem; text-align: right; overflow-wrap: break-word; }
th { background: #f1f3f7; } td:first-child, th:first-child { text-align: left; }
figure.fig { margin: 1rem 0; } figure.fig img { max-width: 100%; border: 1px solid #e4e7ee; }
figcaption { font-size: .85rem; color: #3b4252; } figcaption span { display: block; }
.fig-title { font-weight: 600; color: #1d2330; }
.ok { color: #11702c; font-weight: 600; } .bad { color: #b3261e; font-weight: 600; }
.answer { background: #eef5ff; border-left: 5px solid #2b6cd4; padding: .6rem 1rem; }
.answer .headline { font-size: 1.15rem; font-weight: 600; }
.flag { color: #9a5b00; font-weight: 600; }
.problem { background: #fdecea; border-left: 4px solid #b3261e; padding: .3rem .7rem; margin: .3rem 0; }
.caution { background: #fff6e0; border-left: 4px solid #e0a800; padding: .3rem .7rem; margin: .3rem 0; }
.note { background: #f3f4f7; border-left: 4px solid #9aa1b1; padding: .3rem .7rem; margin: .3rem 0; }
.muted { color: #5d6475; font-size: .85rem; } pre { background: #f6f7f9; padding: .6rem; overflow-x: auto;
       font-size: .8rem; }
details > summary { cursor: pointer; font-weight: 600; margin: .4rem 0; }
"""

SECTION_IDS = ("answer", "heldout", "evidence", "provenance")


def _esc(value: Any) -> str:
    return html.escape(fmt(value))


def _figure(
    png: bytes, *, title: str, fit: str, legend: str, finals: str, note: str = "", run: str = ""
) -> str:
    """A figure with its caption: title (run and fit), legend (band level), final values, a note."""
    data = base64.b64encode(png).decode("ascii")
    extra = f'<span class="fig-note muted">{html.escape(note)}</span>' if note else ""
    return (
        f'<figure class="fig" data-fit="{html.escape(fit)}" data-run="{html.escape(run)}">'
        f'<img alt="{html.escape(title)}" src="data:image/png;base64,{data}">'
        f'<figcaption><span class="fig-title">{html.escape(title)}</span>'
        f'<span class="fig-legend">Legend: {html.escape(legend)}</span>'
        f'<span class="fig-finals">Finals: {html.escape(finals)}</span>{extra}</figcaption></figure>'
    )


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], cls: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    attr = f' class="{cls}"' if cls else ""
    return f"<table{attr}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _band(lo: Any, hi: Any) -> str:
    return f"[{_esc(lo)}, {_esc(hi)}]"


def _within(flag: Any) -> str:
    if flag is None:
        return "-"
    return '<span class="ok">yes</span>' if flag else '<span class="bad">no</span>'


def _labels(report: Mapping[str, Any]) -> dict[str, str]:
    """run_id -> readable label (from the curves, held-out rows and targets that carry one)."""
    out = {}
    for item in [*report.get("curves", []), *report.get("heldout", []), *report.get("targets", [])]:
        if item.get("label") and item.get("run_id"):
            out[str(item["run_id"])] = str(item["label"])
    return out


def _extrapolation_text(ext: Mapping[str, Any] | None) -> str:
    notes = (ext or {}).get("notes") or []
    return "; ".join(notes) if notes else "inside the fitted range"


def _heldout_ids(report: Mapping[str, Any]) -> set[str]:
    return {str(h["run_id"]) for h in report.get("heldout", [])}


def _answer_targets(report: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The targets the answer is about: those that are not held-out checks (else none)."""
    held = _heldout_ids(report)
    return [t for t in report.get("targets", []) if str(t["run_id"]) not in held]


def _context(report: Mapping[str, Any], fit: str | None = None) -> list[Mapping[str, Any]]:
    """The observed fitted runs (of ``fit`` when given, else of the first fit) a target rests on."""
    fitted = [c for c in report.get("curves", []) if c.get("role") != "heldout"]
    names = [c.get("fit") for c in fitted]
    pick = fit if fit in names else (names[0] if names else None)
    return [c for c in fitted if c.get("fit") == pick]


def _target_finals(t: Mapping[str, Any]) -> str:
    band = f"{band_short(t.get('band'))} [{fmt(t.get('lo'))}, {fmt(t.get('hi'))}]"
    text = f"predicted {fmt(t.get('final_pred'))} {band}"
    actual = (t.get("curve") or {}).get("actual")
    if actual:
        text += f"; actual {fmt(actual[-1])} ({100 * (t['final_pred'] - actual[-1]) / actual[-1]:+.2f}%)"
    return text


def _target_fig(t: Mapping[str, Any], report: Mapping[str, Any], fit: str) -> str:
    context = _context(report, t.get("fit"))
    name = str(t.get("label") or t["run_id"])
    horizon = steps_text(t.get("steps"))
    title = f"{name}, fit {fit}: predicted loss curve, horizon {horizon} steps ({t.get('schedule')})"
    png = plots.target_figure(t, context, title, t.get("band"))
    runs = ", ".join(str(c.get("label") or c["run_id"]) for c in context) or "none"
    legend = (
        f"red line: prediction; shade: {band_text(t.get('band'))}; "
        f"coloured lines: observed runs it rests on ({runs})"
        + ("; black: actual, trained after the prediction" if (t.get("curve") or {}).get("actual") else "")
    )
    return _figure(png, title=title, fit=fit, legend=legend, finals=_target_finals(t), run=str(t["run_id"]))


def _answer(report: Mapping[str, Any]) -> str:
    answer = report.get("answer")
    parts = ['<section id="answer"><h2>The answer</h2>']
    if answer:
        lines = answer_text(answer).splitlines()
        parts.append(f'<div class="answer"><p class="headline">{html.escape(lines[0])}</p><ul>')
        parts += [f"<li>{html.escape(line.strip())}</li>" for line in lines[1:]]
        parts.append("</ul></div>")
        if answer.get("curve"):
            t = {
                **answer,
                "run_id": answer.get("target"),
                "fit": "forecast",
                "curve": answer["curve"],
            }
            parts.append(_target_fig(t, report, f"forecast ({weights_text(answer.get('weights') or {})})"))
    else:
        targets = _answer_targets(report)
        registered = not targets and bool(report.get("targets"))
        if registered:  # no target beyond the ladder: the held-out predictions, made before training
            targets = report["targets"]
            parts.append(
                "<p>No target beyond the fitted runs was given; these are the held-out runs' predictions, "
                "made before those runs were trained (the held-out checks below compare them).</p>"
            )
        if not targets:
            parts.append(
                '<div class="answer"><p class="headline">No target run was given: the report checks '
                "the fit on held-out runs only (give --schedule to predict a target).</p></div>"
            )
        for t in targets:
            name = t.get("label") or t["run_id"]
            band = f"{html.escape(band_short(t.get('band')))} {_band(t.get('lo'), t.get('hi'))}"
            ext = html.escape(_extrapolation_text(t.get("extrapolation")))
            parts.append(
                f'<div class="answer"><p class="headline">{html.escape(str(name))}: predicted final loss '
                f"{_esc(t['final_pred'])}, {band}"
                f"</p><ul><li>band: {html.escape(band_text(t.get('band')))}</li>"
                f"<li>schedule: {html.escape(str(t.get('schedule')))} "
                f"(horizon {steps_text(t.get('steps'))} steps"
                f"{', N ' + _esc(t.get('n_params')) if t.get('n_params') else ''})</li>"
                f"<li>rests on: fit {html.escape(str(t.get('fit')))} (law {html.escape(str(t.get('law')))}), "
                f"{len(_context(report, t.get('fit')))} observed runs</li>"
                f"<li>extrapolation: {ext}</li></ul></div>"
            )
    comp = report.get("schedules")
    if comp and comp.get("rows"):
        parts.append(
            f"<p><b>Schedule choice</b> ({html.escape(str(comp.get('title', 'family')))}): "
            f"{html.escape(choice_verdict(comp['rows']))}.</p>"
        )
    parts.append("</section>")
    return "".join(parts)


def _heldout(report: Mapping[str, Any]) -> str:
    held = report.get("heldout", [])
    summary = "".join(f"<li>{html.escape(s)}</li>" for s in report.get("summary", []))
    parts = ['<section id="heldout"><h2>Held-out checks: predicted vs actual</h2>']
    parts.append(f"<ul>{summary}</ul>" if summary else "")
    if held:
        rows = [
            [
                html.escape(h.get("label") or h["run_id"]),
                html.escape(h.get("fit", "")),
                _esc(h["final_pred"]),
                _band(h["lo"], h["hi"]),
                html.escape(band_short(h.get("band"))),
                _esc(h.get("final_obs")),
                _esc(h.get("rel_err_pct")),
                _within(h.get("within_band")),
            ]
            for h in held
        ]
        heads = [
            "run",
            "fit",
            "predicted final",
            "band",
            "band level",
            "actual final",
            "error %",
            "within band",
        ]
        parts.append(_table(heads, rows))
    else:
        parts.append("<p>No held-out runs.</p>")
    parts.append(_metrics(report))
    parts.append("</section>")
    return "".join(parts)


def _metrics(report: Mapping[str, Any]) -> str:
    metrics = report.get("metrics") or {}
    keys = ["r2", "mae", "rmse", "pred_e", "worst_e", "kendall_tau"]
    rows = [[html.escape(name)] + [_esc(m.get(k)) for k in keys] for name, m in metrics.items()]
    return ("<h3>Held-out curve metrics</h3>" + _table(["fit", *keys], rows)) if rows else ""


def _targets(report: Mapping[str, Any]) -> str:
    targets = report.get("targets", [])
    if not targets:
        return ""
    rows = [
        [
            html.escape(t.get("label") or t["run_id"]),
            html.escape(t.get("fit", "")),
            html.escape(short_schedule(t.get("schedule", ""))),
            html.escape(steps_text(t.get("steps"))),
            _esc(t.get("n_params")),
            _esc(t["final_pred"]),
            _band(t.get("lo"), t.get("hi")),
            html.escape(band_short(t.get("band"))),
            html.escape(_extrapolation_text(t.get("extrapolation"))),
        ]
        for t in targets
    ]
    heads = ["target", "fit", "schedule", "horizon (steps)", "N (params)", "predicted final", "band"]
    heads += ["band level", "extrapolation"]
    figs = [_target_fig(t, report, str(t.get("fit"))) for t in targets if t.get("curve")]
    return "<h3>Targets and held-out runs, per fit</h3>" + _table(heads, rows) + "".join(figs)


def _schedules(report: Mapping[str, Any]) -> str:
    comp = report.get("schedules")
    if not comp or not comp.get("rows"):
        return ""
    ranked = sorted(comp["rows"], key=lambda r: (r["final_pred"] is None, r["final_pred"] or 0.0))
    best = ranked[0]
    baseline = (comp.get("baseline") or {}).get("schedule")

    def row(r: Mapping[str, Any]) -> list[str]:
        overlaps = isinstance(r.get("lo"), int | float) and isinstance(best.get("hi"), int | float)
        role = "best" if r is best else ("baseline" if r["schedule"] == baseline else "")
        within = "yes" if overlaps and r["lo"] <= best["hi"] else "no"
        return [
            html.escape(short_schedule(r["schedule"])),
            html.escape(role),
            _esc(r["final_pred"]),
            _band(r.get("lo"), r.get("hi")),
            _esc(r.get("gain_vs_cosine")),
            "-" if r is best else within,
        ]

    heads = ["schedule", "role", "predicted final", "band", "gain vs baseline", "within the best's band"]
    band = comp.get("band") or (report.get("targets") or [{}])[-1].get("band")
    text = (
        f"<p>{html.escape(choice_verdict(comp['rows']))}. Baseline: {html.escape(str(baseline))}. "
        f"Bands: {html.escape(band_text(band))}"
        + (
            " (model error not included: a difference smaller than the held-out errors above may not be real)"
            if (band or {}).get("kind") == "fit-parameters"
            else ""
        )
        + ".</p>"
    )
    fit_name = str(comp.get("fit") or next(iter(report.get("fits") or {}), ""))
    title = f"Schedule family {comp.get('title', '')}, fit {fit_name}"
    png = plots.schedules_figure(comp["rows"], title, baseline)
    fig = _figure(
        png,
        title=title,
        fit=fit_name,
        legend=f"green: best; orange: baseline; blue: band overlaps the best's; bars: {band_short(band)}",
        finals=f"best {short_schedule(best['schedule'])}: predicted final {fmt(best['final_pred'])} "
        f"[{fmt(best.get('lo'))}, {fmt(best.get('hi'))}]",
    )
    top = _table(heads, [row(r) for r in ranked[:12]])
    rest = ""
    if len(ranked) > 12:
        full = _table(heads, [row(r) for r in ranked])
        rest = f"<details><summary>all {len(ranked)} options</summary>{full}</details>"
    return "<h3>Schedule comparison</h3>" + text + fig + top + rest


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
    heads = [
        "budget (FLOPs)",
        "N* (params)",
        "D* (tokens)",
        "D*/N*",
        "predicted loss",
        "N* 95% bootstrap band",
    ]
    parity = []
    for p in report.get("parity", []):
        fit = str(p.get("fit") or p.get("title", "static law"))
        title = f"{p.get('title', 'static law')} (fit {fit})"
        obs, pred = p.get("observed") or [], p.get("predicted") or []
        worst = max((abs(b / a - 1) for a, b in zip(obs, pred, strict=False) if a), default=0.0)
        parity.append(
            _figure(
                plots.parity_figure(p, title),
                title=title,
                fit=fit,
                legend="points: final losses at the fitted parameters (no band drawn; the table's N* band "
                "is a 95% bootstrap band)",
                finals=f"{len(obs)} final losses, largest relative error {100 * worst:.2f}%",
            )
        )
    if not rows and not parity:
        return ""
    return "<h3>Compute-optimal allocation</h3>" + (_table(heads, rows) if rows else "") + "".join(parity)


def _curves(report: Mapping[str, Any]) -> str:
    by_fit: dict[str, list] = {}
    for c in report.get("curves", []):
        by_fit.setdefault(c.get("fit", "fit"), []).append(c)
    parts = []
    for name, curves in by_fit.items():
        law = ((report.get("fits") or {}).get(name) or {}).get("law") or "sf.forecast: weighted laws"
        band = next((c.get("band") for c in curves if c.get("band")), None)
        held = [c for c in curves if c.get("role") == "heldout"]
        finals = "; ".join(
            f"{c.get('label') or c['run_id']}: predicted {fmt(c['predicted'][-1])} "
            f"[{fmt(c['lo'][-1])}, {fmt(c['hi'][-1])}], actual {fmt(c['observed'][-1])}"
            for c in held
            if c["steps"] and c.get("lo") is not None
        )
        finals = finals or "no held-out runs; fitted: " + "; ".join(
            f"{c.get('label') or c['run_id']}: fit {fmt(c['predicted'][-1])}, "
            f"observed {fmt(c['observed'][-1])}"
            for c in curves[:8]
            if c["steps"]
        )
        parts.append(f"<h3>Fit {html.escape(name)} (law {html.escape(str(law))})</h3>")
        title = f"Fit {name}: observed vs fitted loss, {len(curves)} runs ({len(held)} held out)"
        parts.append(
            _figure(
                plots.curves_figure(curves, title, band),
                title=title,
                fit=name,
                legend=f"colour: schedule (hue) and model size (darker = larger); dashed + shade: held-out "
                f"prediction with its {band_text(band)}",
                finals=finals,
            )
        )
        title = f"Fit {name}: relative residuals after warmup"
        png, note = plots.residuals_figure(curves, title)
        last = "; ".join(
            f"{c.get('label') or c['run_id']} {_rel_pct(c['predicted'][-1], c['observed'][-1])}"
            for c in curves
            if c["steps"]
        )
        parts.append(
            _figure(
                png,
                title=title,
                fit=name,
                legend=f"solid: held out, dotted: fitted; the held-out band is the {band_text(band)}",
                finals=f"final residuals: {last}",
                note=note,
            )
        )
    return ("<h3>Observed vs fitted curves</h3>" + "".join(parts)) if parts else ""


def _rel_pct(pred: Any, obs: Any) -> str:
    if not isinstance(pred, int | float) or not isinstance(obs, int | float) or not obs:
        return "-"
    return f"{100 * (pred - obs) / obs:+.2f}%"


def _params(report: Mapping[str, Any]) -> str:
    parts = []
    for name, fit in (report.get("fits") or {}).items():
        values, stderr, ci = fit.get("values", {}), fit.get("stderr") or {}, fit.get("ci") or {}
        bounds = fit.get("bounds") or {}
        level = (fit.get("options") or {}).get("ci", 0.95)
        rows = []
        for k, v in values.items():
            lo, hi = ci.get(k) or (None, None)
            ci_cell = ci_text(lo, hi)
            flags = []
            if at_bound(v, bounds.get(k)):
                flags.append("at a bound")
            if ci_cell == "not identified":
                flags.append("not identified")
            rows.append(
                [
                    html.escape(k),
                    html.escape(fmt_param(v, bounds.get(k))),
                    html.escape(fmt_param(stderr.get(k))),
                    html.escape(ci_cell),
                    f'<span class="flag">{html.escape(", ".join(flags))}</span>' if flags else "",
                ]
            )
        diag = fit.get("diagnostics") or {}
        notes = ", ".join(
            f"{k}: {fmt(diag[k])}" for k in ("objective", "converged", "n_starts", "n_best") if k in diag
        )
        parts.append(f"<h4>{html.escape(name)} (law {html.escape(str(fit.get('law')))})</h4>")
        heads = ["parameter", "value", "std. err.", f"{100 * float(level):.0f}% CI", "flag"]
        parts.append(_table(heads, rows, cls="params"))
        parts.append(f'<p class="muted">{html.escape(notes)}</p>')
    return ("<h3>Parameters</h3>" + "".join(parts)) if parts else ""


def _readable(text: str, labels: Mapping[str, str]) -> str:
    """Run ids in a warning shown with their readable label: 'd64 cosine [run 1a2b3c]'."""
    for run_id, label in sorted(labels.items(), key=lambda kv: -len(kv[0])):
        if label != run_id and run_id in text:
            text = re.sub(rf"(?<![\w-]){re.escape(run_id)}(?![\w-])", f"{label} [run {run_id}]", text)
    return text


def _warnings(report: Mapping[str, Any]) -> str:
    groups = grouped_warnings(list(report.get("warnings") or []))
    if not groups:
        return "<h3>Diagnostics and warnings</h3><p>None.</p>"
    labels = _labels(report)
    meaning = {
        "problem": "the fit may be wrong or a parameter is not identified",
        "caution": "read the numbers with this in mind",
        "note": "expected for these laws; weakly identified parameter combinations",
    }
    parts = ["<h3>Diagnostics and warnings</h3>"]
    for severity, texts in groups.items():
        items = "".join(f'<div class="{severity}">{html.escape(_readable(t, labels))}</div>' for t in texts)
        opened = " open" if severity != "note" else ""
        parts.append(
            f'<details class="warnings-{severity}"{opened}><summary>{severity} ({len(texts)}): '
            f"{html.escape(meaning[severity])}</summary>{items}</details>"
        )
    return "".join(parts)


def _evidence(report: Mapping[str, Any]) -> str:
    body = "".join(
        part(report) for part in (_targets, _schedules, _compute_optimal, _curves, _params, _warnings)
    )
    return f'<section id="evidence"><h2>The evidence</h2>{body}</section>'


def _provenance(report: Mapping[str, Any]) -> str:
    prov = json.dumps(report.get("provenance") or {}, indent=2, default=str)
    return (
        '<section id="provenance"><details><summary>Provenance (versions, git, inputs)</summary><pre>'
        + html.escape(prov)
        + "</pre></details></section>"
    )


SECTIONS: tuple[Callable[[Mapping[str, Any]], str], ...] = (_answer, _heldout, _evidence, _provenance)


def render_html(report: Mapping[str, Any]) -> str:
    """The report as one self-contained HTML document (no network access needed to view it)."""
    title = html.escape(report.get("title", "scalefit report"))
    body = "".join(section(report) for section in SECTIONS)
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_CSS}</style></head>'
        f'<body><h1>{title}</h1><p class="muted">{_esc(report.get("created"))}</p>'
        f"{body}</body></html>\n"
    )
