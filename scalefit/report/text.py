"""Render a report dictionary (the JSON twin) as Markdown (a pull-request summary) or plain text (what
``scalefit fit`` and ``scalefit predict`` print), and the number formatting the HTML page shares.

Numbers are shown with 4 significant digits by default; a missing value (None, NaN) is '-'.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from scalefit.fitting.result import Fit

__all__ = ["render_markdown", "parameter_table_text", "prediction_text", "fmt", "warning_text"]


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
    """A short Markdown summary for a pull request."""
    lines = [f"### {report.get('title', 'scalefit report')}", ""]
    lines += [f"- {s}" for s in report.get("summary", [])]
    held = report.get("heldout", [])
    if held:
        lines += [
            "",
            "| run | predicted final | band | actual | error % | in band |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {h.get('label') or h['run_id']} | {fmt(h['final_pred'])} | [{fmt(h['lo'])}, {fmt(h['hi'])}] "
            "| "
            f"{fmt(h['final_obs'])} | {fmt(h['rel_err_pct'], 2)} | {fmt(h['within_band'])} |"
            for h in held
        ]
    lines.append("")
    for t in report.get("targets", []):
        ext = "; ".join((t.get("extrapolation") or {}).get("notes") or []) or "inside the fitted range"
        lines.append(
            f"- target `{t.get('label') or t['run_id']}` [{t.get('fit')}]: final {fmt(t['final_pred'])} "
            f"[{fmt(t.get('lo'))}, "
            f"{fmt(t.get('hi'))}] ({ext})"
        )
    best = (report.get("schedules") or {}).get("best")
    if best:
        lines.append(
            f"- best schedule `{best['schedule']}`: gain over cosine {fmt(best.get('gain_vs_cosine'))}"
        )
    for c in report.get("compute_optimal", []):
        lines.append(
            f"- at {fmt(c['budget_flops'])} FLOPs: N* {fmt(c['n_opt'])}, D* {fmt(c['d_opt'])} "
            f"({fmt(c['tokens_per_param'], 3)} tokens/param)"
        )
    lines += [f"- warning: {w}" for w in report.get("warnings", [])]
    sha = (report.get("provenance") or {}).get("git_sha")
    lines += ["", f"<sub>scalefit report, git {sha or 'unknown'}, {report.get('created')}</sub>", ""]
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
