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

__all__ = [
    "render_markdown",
    "parameter_table_text",
    "prediction_text",
    "answer_text",
    "fmt",
    "fmt_param",
    "ci_text",
    "band_text",
    "warning_text",
    "warning_severity",
    "weights_text",
    "choice_verdict",
    "band_short",
    "at_bound",
    "grouped_warnings",
    "SEVERITIES",
    "md_escape",
    "short_schedule",
    "steps_text",
]

# The kinds of band a report or ``scalefit predict`` shows, each labelled with its level.
BAND_KINDS = {
    "forecast": "cross-validated forecast band (sf.forecast: folds that mimic the question)",
    "fit": "prediction band (fit parameters + residual noise + cross-validated model error)",
    "fit-noise": "prediction band (fit parameters + residual noise)",
    "fit-parameters": "parameter band (fit parameters only)",
}
# Severity of a fit warning by its code; unknown codes (and plain strings) are cautions.
SEVERITIES = ("problem", "caution", "note")
_SEVERITY = {
    "not_converged": "problem",
    "no_covariance": "problem",
    "floor_above_data": "problem",
    "at_bound": "problem",
    "profile_edge": "caution",
    "few_groups": "caution",
    "excluded": "caution",
    "approximate_translation": "caution",
    "correlated": "note",
    "thinned": "note",
}
TINY, HUGE = 1e-100, 1e100  # a parameter or CI end beyond these is shown in words, never as a number

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]|~])")  # the rest only matters at a line start (prefixed here)
_HTML = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}


def md_escape(value: Any) -> str:
    """``value`` as literal Markdown text inside a line: ``\\ ` * _ { } [ ] | ~`` backslash-escaped,
    ``& < >`` as HTML entities, line breaks as spaces (a table cell or a list item stays one line)."""
    text = " ".join(str(value).splitlines())
    text = "".join(_HTML.get(ch, ch) for ch in text)
    return _MD_SPECIAL.sub(r"\\\1", text)


def short_schedule(text: str) -> str:
    """A schedule string without the peak/steps/warmup options (shared by a family's members)."""
    kind, _, opts = str(text).partition(":")
    keep = [o for o in opts.split(",") if o.split("=")[0] not in ("peak", "steps", "warmup")]
    return kind + (":" + ",".join(keep) if keep else "")


def _code(value: Any) -> str:
    """``value`` as a Markdown code span (literal), escaped text when it holds a backtick or a break."""
    text = str(value)
    return f"`{text}`" if "`" not in text and "\n" not in text else md_escape(text)


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


def steps_text(value: Any) -> str:
    """A step count as an integer with thousands separators (72,000), '-' when missing."""
    return f"{int(value):,}" if isinstance(value, int | float) and value == value else "-"


def band_text(band: Mapping[str, Any] | None) -> str:
    """'90% cross-validated forecast band (...)': a band's level and kind, as every figure and table
    labels it ('band (level not recorded)' when unknown)."""
    band = band or {}
    level = band.get("level")
    kind = BAND_KINDS.get(str(band.get("kind")), str(band.get("kind") or "band"))
    if not isinstance(level, int | float):
        return f"{kind} (level not recorded)"
    return f"{100 * level:.0f}% {kind}"


def band_short(band: Mapping[str, Any] | None) -> str:
    """'90% forecast band' / '95% fit band': the short label of a legend or a table head."""
    band = band or {}
    level = band.get("level")
    kind = str(band.get("kind") or "")
    kind = {"fit-parameters": "parameter", "fit-noise": "fit"}.get(kind, kind)
    head = f"{100 * level:.0f}% " if isinstance(level, int | float) else ""
    return f"{head}{kind + ' ' if kind else ''}band"


def fmt_param(value: Any, bounds: Any = None) -> str:
    """A parameter value; '≈0' or '> 1e100' beyond ``TINY``/``HUGE`` (never 1e-316), and ' (at bound)'
    when within 0.1% (relative) of one of ``bounds``."""
    text = fmt(value)
    if isinstance(value, int | float) and value == value:
        if value != 0 and abs(value) < TINY:
            text = "≈0"
        elif abs(value) > HUGE:
            text = "> 1e100" if value > 0 else "< -1e100"
    if at_bound(value, bounds):
        text += " (at bound)"
    return text


def at_bound(value: Any, bounds: Any) -> bool:
    """Whether ``value`` lies within 0.1% (relative, or 1e-9 absolute) of a finite end of ``bounds``."""
    if not isinstance(value, int | float) or not bounds or value != value:
        return False
    for b in bounds:
        if isinstance(b, int | float) and abs(b) < HUGE and abs(value - b) <= max(1e-3 * abs(b), 1e-9):
            return True
    return False


def ci_text(lo: Any, hi: Any) -> str:
    """'[lo, hi]', or 'not identified' when an end is missing, beyond ``TINY``/``HUGE``, or the interval
    spans more than six orders of magnitude (the data do not pin the parameter)."""
    if not all(isinstance(v, int | float) and v == v for v in (lo, hi)):
        return "not identified" if (lo, hi) != (None, None) else "-"
    ends = [abs(lo), abs(hi)]
    spans = lo > 0 and hi > 0 and hi / lo > 1e6
    if spans or any(e > HUGE or (e != 0 and e < TINY) for e in ends):
        return "not identified"
    return f"[{fmt(lo)}, {fmt(hi)}]"


def warning_severity(w: Any) -> str:
    """'problem', 'caution' or 'note' of a fit warning (by its code; see ``_SEVERITY``)."""
    if not isinstance(w, Mapping):
        return "caution"
    return str(w.get("severity") or _SEVERITY.get(str(w.get("code")), "caution"))


def grouped_warnings(items: list[Any]) -> dict[str, list[str]]:
    """Warnings by severity (``SEVERITIES`` order), each text once; an item may be a string, a fit
    warning dict, or {"source": ..., "warning": ...} (its source prefixed)."""
    out: dict[str, list[str]] = {s: [] for s in SEVERITIES}
    for item in items:
        source, w = "", item
        if isinstance(item, Mapping) and "warning" in item:
            source, w = str(item.get("source") or ""), item["warning"]
        text = (f"{source}: " if source else "") + warning_text(w)
        group = out[warning_severity(w)]
        if text not in group:
            group.append(text)
    return {s: v for s, v in out.items() if v}


def warning_text(w: Any) -> str:
    """A fit warning (a string, or a dict with a message) as text."""
    return str(w.get("message", w)) if isinstance(w, Mapping) else str(w)


def render_markdown(report: Mapping[str, Any]) -> str:
    """A short Markdown summary for a pull request (text from the data is escaped: `md_escape`)."""
    e = md_escape
    lines = [f"### {e(report.get('title', 'scalefit report'))}", ""]
    answer = report.get("answer")
    if answer:
        lines += [f"**{e(answer_text(answer).splitlines()[0])}**", ""]
    lines += [f"- {e(s)}" for s in report.get("summary", [])]
    held = report.get("heldout", [])
    if held:
        lines += [
            "",
            f"| run | predicted final | {e(band_short(held[0].get('band')))} | actual | error % | in band |",
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
            f"- target {label} \\[{law}\\]: final {e(fmt(t['final_pred']))}, {e(band_short(t.get('band')))} "
            f"\\[{e(fmt(t.get('lo')))}, {e(fmt(t.get('hi')))}\\] ({e(ext)})"
        )
    best = (report.get("schedules") or {}).get("best")
    if best:
        lines.append(
            f"- best schedule {_code(best['schedule'])}: "
            f"gain over cosine {e(fmt(best.get('gain_vs_cosine')))}; "
            + e(choice_verdict((report.get("schedules") or {}).get("rows") or []))
        )
    for c in report.get("compute_optimal", []):
        lines.append(
            f"- at {e(fmt(c['budget_flops']))} FLOPs: N\\* {e(fmt(c['n_opt']))}, D\\* {e(fmt(c['d_opt']))} "
            f"({e(fmt(c['tokens_per_param'], 3))} tokens/param)"
        )
    for severity, texts in grouped_warnings(report.get("warnings", [])).items():
        lines += [f"- {severity} ({len(texts)}): " + "; ".join(e(t) for t in texts[:5])]
        lines[-1] += f"; and {len(texts) - 5} more" if len(texts) > 5 else ""
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


def choice_verdict(rows: list[Mapping[str, Any]], key: str = "schedule") -> str:
    """Whether the best option (lowest predicted final) is distinguishable from the next within the
    uncertainty: their bands (lo, hi) overlap or not; how many others overlap the best's band."""
    ranked = sorted(
        (r for r in rows if isinstance(r.get("final_pred"), int | float)), key=lambda r: r["final_pred"]
    )
    if len(ranked) < 2:
        return "only one option: nothing to compare"
    best, nxt = ranked[0], ranked[1]
    gap = nxt["final_pred"] - best["final_pred"]
    head = f"best {short_schedule(best[key])} vs next {short_schedule(nxt[key])}: {fmt(gap, 2)} nats lower"
    if not all(isinstance(r.get(k), int | float) for r in (best, nxt) for k in ("lo", "hi")):
        return head + "; no bands, so whether the difference is real is unknown"
    overlap = [r for r in ranked[1:] if isinstance(r.get("lo"), int | float) and r["lo"] <= best["hi"]]
    if nxt["lo"] <= best["hi"]:
        return (
            head + f", within the uncertainty (their bands overlap): not distinguishable; "
            f"{len(overlap)} of {len(ranked) - 1} other options overlap the best's band"
        )
    return head + ", outside the uncertainty (the bands do not overlap): distinguishable"


def answer_text(answer: Mapping[str, Any]) -> str:
    """The forecast's answer in a few lines: target, predicted final with its band and level, the laws
    it rests on and their weights, the question and its folds, whether identified, how far it reaches."""
    level = (answer.get("band") or {}).get("level")
    pct = f"{100 * level:.0f}%" if isinstance(level, int | float) else "?"
    lines = [
        f"{answer.get('target')}: predicted final loss {fmt(answer.get('final_pred'))}, {pct} band "
        f"[{fmt(answer.get('lo'))}, {fmt(answer.get('hi'))}] at step {answer.get('final_step')}",
        f"  band: {band_text(answer.get('band'))}",
        f"  schedule: {answer.get('schedule')} (horizon {steps_text(answer.get('steps'))} steps"
        + (f", N {fmt(answer.get('n_params'))}" if answer.get("n_params") else "")
        + ")",
        f"  rests on: {answer.get('rests_on')}",
        f"  laws: {weights_text(answer.get('weights') or {})}",
        f"  question: {answer.get('question')}, {answer.get('n_folds')} cross-validation folds; "
        + ("identified by the runs" if answer.get("identified") else "NOT identified by the runs"),
        f"  extrapolation: {'; '.join(answer.get('reach') or []) or 'inside the fitted range'}",
    ]
    notes = answer.get("notes") or []
    if notes:
        lines.append(f"  {len(notes)} fit note(s) in the JSON (e.g. {notes[0]})")
    return "\n".join(lines)


def weights_text(weights: Mapping[str, float]) -> str:
    """'multipower 62%, momentum 38%, cooldown 0%': the members by weight."""
    ranked = sorted(weights.items(), key=lambda kv: -float(kv[1] or 0.0))
    return ", ".join(f"{m} {100 * float(w or 0.0):.0f}%" for m, w in ranked) or "-"


def prediction_text(result: Mapping[str, Any]) -> str:
    """A plain-text summary of what ``scalefit predict`` computes: `scalefit.predict.targets.predict_target`
    results under ``targets``, a ``schedules`` search and ``compute_optimal`` rows."""
    lines = [answer_text(result["answer"])] if result.get("answer") else []
    for t in result.get("targets", []):
        notes = "; ".join((t.get("extrapolation") or {}).get("notes") or []) or "inside the fitted range"
        lines.append(
            f"{t['run_id']} [fit {t.get('fit')}]: final loss {fmt(t['final_pred'])}, "
            f"{band_text(t.get('band'))} [{fmt(t.get('lo'))}, {fmt(t.get('hi'))}] ({notes})"
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
        lines.append("  " + choice_verdict((result.get("schedules") or {}).get("rows") or []))
    for c in result.get("compute_optimal", []):
        lines.append(
            f"budget {fmt(c['budget_flops'])} FLOPs: N* {fmt(c['n_opt'])}, D* {fmt(c['d_opt'])}, "
            f"loss {fmt(c.get('loss_pred'))}"
        )
    return "\n".join(lines) or "nothing to predict: give --schedule, --budget or --family"
