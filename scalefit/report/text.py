"""Render a report dictionary (the JSON twin) as Markdown (a pull-request summary) or plain text (what
``scalefit fit`` and ``scalefit predict`` print), and the number formatting the HTML page shares.

Numbers are shown with 4 significant digits by default; a missing value (None, NaN) is '-'. Every text
the Markdown summary takes from data (run ids, labels, schedules, warnings) goes through `md_escape`, so a
run id such as ``a|b`` or ``<img src=x>`` shows as itself and cannot break the table or inject markup.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from scalefit.fitting.result import Fit

__all__ = ["render_markdown", "parameter_table_text", "prediction_text", "fmt", "warning_text", "md_escape"]

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]|~])")  # the rest only matters at a line start (prefixed here)
_HTML = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}


def md_escape(value: Any) -> str:
    """``value`` as literal Markdown text inside a line: ``\\ ` * _ { } [ ] | ~`` backslash-escaped,
    ``& < >`` as HTML entities, line breaks as spaces (a table cell or a list item stays one line)."""
    text = " ".join(str(value).splitlines())
    text = "".join(_HTML.get(ch, ch) for ch in text)
    return _MD_SPECIAL.sub(r"\\\1", text)


def fmt(value: Any, digits: int = 4) -> str:
    """A number with ``digits`` significant digits; '-' for missing values."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        if value != value:
            return "-"
        return f"{value:.{digits}g}"
    return str(value)


def warning_text(w: Any) -> str:
    """A fit warning (a string, or a dict with a message) as text."""
    return str(w.get("message", w)) if isinstance(w, Mapping) else str(w)


def render_markdown(report: Mapping[str, Any]) -> str:
    """A short Markdown summary for a pull request (text from the data is escaped: `md_escape`)."""
    e = md_escape
    lines = [f"### {e(report.get('title', 'scalefit report'))}", ""]
    lines += [f"- {e(s)}" for s in report.get("summary", [])]
    held = report.get("heldout", [])
    if held:
        lines += [
            "",
            "| run | predicted final | band | actual | error % | in band |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {e(h.get('label') or h['run_id'])} | {e(fmt(h['final_pred']))} "
            f"| [{e(fmt(h['lo']))}, {e(fmt(h['hi']))}] | {e(fmt(h['final_obs']))} "
            f"| {e(fmt(h['rel_err_pct'], 2))} | {e(fmt(h['within_band']))} |"
            for h in held
        ]
    lines.append("")
    for t in report.get("targets", []):
        ext = "; ".join((t.get("extrapolation") or {}).get("notes") or []) or "inside the fitted range"
        label, law = e(t.get("label") or t["run_id"]), e(t.get("fit"))
        lines.append(
            f"- target {label} \\[{law}\\]: final {e(fmt(t['final_pred']))} "
            f"\\[{e(fmt(t.get('lo')))}, {e(fmt(t.get('hi')))}\\] ({e(ext)})"
        )
    best = (report.get("schedules") or {}).get("best")
    if best:
        lines.append(
            f"- best schedule {e(best['schedule'])}: gain over cosine {e(fmt(best.get('gain_vs_cosine')))}"
        )
    for c in report.get("compute_optimal", []):
        lines.append(
            f"- at {e(fmt(c['budget_flops']))} FLOPs: N\\* {e(fmt(c['n_opt']))}, D\\* {e(fmt(c['d_opt']))} "
            f"({e(fmt(c['tokens_per_param'], 3))} tokens/param)"
        )
    lines += [f"- warning: {e(warning_text(w))}" for w in report.get("warnings", [])]
    sha = (report.get("provenance") or {}).get("git_sha")
    lines += ["", f"<sub>scalefit report, git {e(sha or 'unknown')}, {e(report.get('created'))}</sub>", ""]
    return "\n".join(lines)


def parameter_table_text(fit: Fit | Mapping[str, Any]) -> str:
    """A plain-text parameter table: value, standard error and 95% CI per parameter."""
    d = fit if isinstance(fit, Mapping) else fit.to_dict()
    stderr, ci = d.get("stderr") or {}, d.get("ci") or {}
    lines = [f"law {d.get('law')}", f"{'parameter':<12} {'value':>12} {'stderr':>10}  95% CI"]
    for k, v in d.get("values", {}).items():
        lo, hi = ci.get(k) or (None, None)
        lines.append(f"{k:<12} {fmt(v):>12} {fmt(stderr.get(k)):>10}  [{fmt(lo)}, {fmt(hi)}]")
    lines += [f"warning: {warning_text(w)}" for w in (d.get("diagnostics") or {}).get("warnings", [])]
    return "\n".join(lines)


def prediction_text(result: Mapping[str, Any]) -> str:
    """A plain-text summary of what ``scalefit predict`` computes: `scalefit.predict.targets.predict_target`
    results under ``targets``, a ``schedules`` search and ``compute_optimal`` rows."""
    lines = []
    for t in result.get("targets", []):
        notes = "; ".join((t.get("extrapolation") or {}).get("notes") or []) or "inside the fitted range"
        lines.append(
            f"{t['run_id']} [{t.get('fit')}]: final loss {fmt(t['final_pred'])} "
            f"[{fmt(t.get('lo'))}, {fmt(t.get('hi'))}] ({notes})"
        )
        if t.get("downstream"):
            ds = t["downstream"]
            lines.append(
                f"  downstream error {fmt(ds['err_pred'])} [{fmt(ds.get('lo'))}, {fmt(ds.get('hi'))}]"
            )
    best = (result.get("schedules") or {}).get("best")
    if best:
        lines.append(
            f"best schedule {best['schedule']}: final {fmt(best['final_pred'])}, "
            f"gain over cosine {fmt(best.get('gain_vs_cosine'))}"
        )
    for c in result.get("compute_optimal", []):
        lines.append(
            f"budget {fmt(c['budget_flops'])} FLOPs: N* {fmt(c['n_opt'])}, D* {fmt(c['d_opt'])}, "
            f"loss {fmt(c.get('loss_pred'))}"
        )
    return "\n".join(lines) or "nothing to predict: give --schedule, --budget or --family"
