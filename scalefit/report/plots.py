"""Report figures, drawn from the report dictionary (the JSON twin) so a report re-renders from its JSON.

matplotlib is used through ``Figure`` objects (no pyplot, no global backend switch); every figure is
returned as PNG bytes. Conventions: a linear step axis that starts after warmup (``plot_start``), so the
last part of training, where schedules differ and the final loss is claimed, gets its share of the
width; target figures add an inset of the final 30 %; loss in nats per token; bands shaded and labelled
with their level (``scalefit.report.text.band_short``); predicted and actual finals marked and labelled;
runs coloured by schedule (hue) and model size (shade), legends outside the data.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure

from scalefit.report.text import band_short, fmt, short_schedule

__all__ = [
    "curves_figure",
    "residuals_figure",
    "target_figure",
    "schedules_figure",
    "parity_figure",
    "plot_start",
    "run_colors",
    "RESIDUAL_CLIP",
]

_LOSS_LABEL = "loss (nats/token)"
_STEP_LABEL = "optimizer step (linear; warmup not shown)"
WARMUP_SHARE = 0.03  # without a recorded warmup, the axis starts at this share of the longest run
RESIDUAL_CLIP = 10.0  # residual panels clip at +-this many percent at most (a note says how many)
YLIM_SHARE = 0.1  # loss axes span the values past this share of training (the early drop runs off the top)
INSET_SHARE = 0.3  # the inset of a target figure shows this final share of training


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    return buf.getvalue()


def _new(width: float = 8.5, height: float = 4.4) -> tuple[Figure, Axes]:
    fig = Figure(figsize=(width, height), layout="constrained")
    ax = fig.add_subplot()
    ax.grid(True, which="both", alpha=0.25)
    return fig, ax


def _arr(values: Sequence[float | None] | None) -> np.ndarray:
    return np.asarray([np.nan if v is None else v for v in (values or [])], dtype=float)


def _name(c: Mapping[str, Any]) -> str:
    return str(c.get("label") or c["run_id"])


def plot_start(series: Sequence[Mapping[str, Any]], key: str = "steps") -> float:
    """The first step the x axis shows: the largest recorded warmup of ``series`` (entries with
    ``warmup``), else ``WARMUP_SHARE`` of the longest run, never before the first logged step."""
    lasts = [float(np.nanmax(_arr(c[key]))) for c in series if len(c.get(key) or [])]
    if not lasts:
        return 0.0
    firsts = [float(np.nanmin(_arr(c[key]))) for c in series if len(c.get(key) or [])]
    warm = [float(c["warmup"]) for c in series if isinstance(c.get("warmup"), int | float)]
    start = max(warm) if warm else WARMUP_SHARE * max(lasts)
    return max(start, min(firsts))


def _schedule_of(c: Mapping[str, Any]) -> str:
    if c.get("schedule"):
        return short_schedule(str(c["schedule"]))
    label = _name(c)
    return label.split(" ", 1)[1] if " " in label else label


def run_colors(curves: Sequence[Mapping[str, Any]]) -> dict[str, tuple[float, float, float]]:
    """run_id -> colour: hue by schedule (tab10, distinct schedules), shade by model size (the smallest
    lightest), so 14 runs of 4 sizes and 3 schedules read as groups rather than a repeating cycle."""
    scheds = sorted({_schedule_of(c) for c in curves})
    sizes = sorted({float(c["n_params"]) for c in curves if isinstance(c.get("n_params"), int | float)})
    tab = colormaps["tab10"]
    out = {}
    for c in curves:
        base = np.array(to_rgb(tab(scheds.index(_schedule_of(c)) % 10)))
        n = c.get("n_params")
        known = isinstance(n, int | float) and len(sizes) > 1
        rank = sizes.index(float(n)) / (len(sizes) - 1) if known else 1.0
        light = 0.55 * (1.0 - rank)
        out[str(c["run_id"])] = tuple(float(v) for v in base + (1.0 - base) * light)
    return out


def _clip_series(steps: np.ndarray, *arrays: np.ndarray, start: float) -> list[np.ndarray]:
    keep = steps >= start
    return [steps[keep], *(a[keep] for a in arrays)]


def _loss_ylim(ax: Axes, series: Sequence[tuple[np.ndarray, np.ndarray]], pad: float = 0.08) -> None:
    """The y range of the points past ``YLIM_SHARE`` of the longest series: the early drop runs off the
    top so that the differences late in training, where the final loss is claimed, are visible."""
    pairs = [(s, v) for s, v in series if len(v)]
    if not pairs:
        return
    last = max(float(np.nanmax(s)) for s, _ in pairs)
    vals = np.concatenate([v[s >= YLIM_SHARE * last] for s, v in pairs])
    vals = vals[np.isfinite(vals)]
    if vals.size:
        lo, hi = float(vals.min()), float(vals.max())
        span = max(hi - lo, 1e-3)
        ax.set_ylim(lo - pad * span, hi + pad * span)


def _legend_outside(ax: Axes, fontsize: int = 7) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ncol = 1 if len(handles) <= 18 else 2
        ax.legend(fontsize=fontsize, loc="upper left", bbox_to_anchor=(1.01, 1.0), ncol=ncol, frameon=False)


def _mark_finals(
    ax: Axes, step: float, pred: float, lo: float | None, hi: float | None, actual: float | None, color: Any
) -> None:
    """The predicted final (circle, its band as an error bar) and the actual final (cross), labelled."""
    if lo is not None and hi is not None and np.isfinite([lo, hi]).all():
        ax.errorbar([step], [pred], yerr=[[pred - lo], [hi - pred]], fmt="none", ecolor=color, capsize=4)
    ax.plot([step], [pred], "o", color=color, ms=6, zorder=5)
    text = f"predicted {fmt(pred)}"
    if lo is not None and hi is not None:
        text += f" [{fmt(lo)}, {fmt(hi)}]"
    if actual is not None and np.isfinite(actual):
        ax.plot([step], [actual], "X", color="black", ms=7, zorder=6)
        text += f"\nactual {fmt(actual)} ({100 * (pred - actual) / actual:+.2f}%)"
    ax.annotate(
        text,
        (step, pred),
        xytext=(-8, 14),
        textcoords="offset points",
        ha="right",
        fontsize=7,
        bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": color, "alpha": 0.9},
    )


def curves_figure(
    curves: Sequence[Mapping[str, Any]], title: str, band: Mapping[str, Any] | None = None
) -> bytes:
    """Observed (thin solid) vs fitted (dotted) or predicted (dashed, with its labelled band) loss per
    run after warmup; held-out finals marked and labelled."""
    fig, ax = _new(9.5, 4.8)
    start, colors = plot_start(curves), run_colors(curves)
    series, n_held = [], 0
    for c in curves:
        color = colors[str(c["run_id"])]
        held = c.get("role") == "heldout"
        banded = c.get("lo") is not None and c.get("hi") is not None
        predicted = _arr(c["predicted"])
        lo_, hi_ = (_arr(c["lo"]), _arr(c["hi"])) if banded else (predicted, predicted)
        steps, obs, pred, lo, hi = _clip_series(
            _arr(c["steps"]), _arr(c["observed"]), predicted, lo_, hi_, start=start
        )
        if not len(steps):
            continue
        series.append((steps, obs))
        ax.plot(steps, obs, color=color, lw=1.0, alpha=0.6)
        label = f"{_name(c)} ({'held out' if held else 'fitted'})"
        ax.plot(steps, pred, color=color, lw=1.7 if held else 1.2, ls="--" if held else ":", label=label)
        if held and banded:
            label = f"{band_short(band)} (held out)" if n_held == 0 else None
            ax.fill_between(steps, lo, hi, color=color, alpha=0.18, lw=0, label=label)
            ax.plot([steps[-1]], [pred[-1]], "o", color=color, ms=5, zorder=5)
            ax.plot([steps[-1]], [obs[-1]], "X", color="black", ms=6, zorder=6)
            ax.annotate(
                f"{_name(c)}: pred {fmt(pred[-1])}, actual {fmt(obs[-1])}",
                (steps[-1], pred[-1]),
                xytext=(-6, 10 + 11 * (n_held % 4)),
                textcoords="offset points",
                ha="right",
                fontsize=6.5,
                color=color,
                arrowprops={"arrowstyle": "-", "color": color, "lw": 0.6},
            )
            n_held += 1
    ax.set_xlabel(_STEP_LABEL)
    ax.set_ylabel(_LOSS_LABEL)
    ax.set_title(
        title
        + "\nthin solid: observed; dotted: fit; dashed + shade: held-out prediction; o predicted, x actual",
        fontsize=10,
    )
    _loss_ylim(ax, series)
    _legend_outside(ax)
    return _png(fig)


def residuals_figure(
    curves: Sequence[Mapping[str, Any]], title: str, clip: float = RESIDUAL_CLIP
) -> tuple[bytes, str]:
    """Relative residual (predicted - observed) / observed in percent after warmup, clipped at the
    smaller of ``clip`` and 1.5x the largest late (last 80 %) residual; returns the PNG and a note
    saying what was left out and clipped."""
    fig, ax = _new(9.5, 3.4)
    start, colors = plot_start(curves), run_colors(curves)
    parts, late = [], []
    for c in curves:
        steps, obs, pred = _clip_series(
            _arr(c["steps"]), _arr(c["observed"]), _arr(c["predicted"]), start=start
        )
        res = 100 * (pred - obs) / obs
        parts.append((c, steps, res))
        if len(steps):
            late.append(np.abs(res[steps >= 0.2 * steps[-1]]))
    lates = np.concatenate(late) if late else np.array([])
    lates = lates[np.isfinite(lates)]
    limit = min(clip, 1.5 * float(lates.max())) if lates.size else clip
    limit = max(limit, 0.05)
    n_clipped = 0
    for c, steps, res in parts:
        held = c.get("role") == "heldout"
        n_clipped += int(np.sum(np.abs(res) > limit))
        ax.plot(
            steps,
            np.clip(res, -limit, limit),
            color=colors[str(c["run_id"])],
            lw=1.3 if held else 0.9,
            ls="-" if held else ":",
            label=f"{_name(c)}{' (held out)' if held else ''}",
        )
    ax.axhline(0.0, color="black", lw=0.8)
    ax.set_ylim(-1.08 * limit, 1.08 * limit)
    ax.set_xlabel(_STEP_LABEL)
    ax.set_ylabel("(pred - obs) / obs  [%]")
    ax.set_title(title, fontsize=10)
    _legend_outside(ax)
    note = f"steps before {start:.0f} (warmup) not shown; y axis clipped at ±{limit:.2g}%"
    note += f" ({n_clipped} points beyond it drawn at the edge)" if n_clipped else ""
    return _png(fig), note


def target_figure(
    target: Mapping[str, Any],
    context: Sequence[Mapping[str, Any]],
    title: str,
    band: Mapping[str, Any] | None,
) -> bytes:
    """The target's predicted curve with its labelled band over the observed runs it rests on (coloured
    and labelled by run), the actual curve when trained afterwards, finals marked; an inset zooms into
    the final ``INSET_SHARE`` of training."""
    fig, ax = _new(9.5, 5.0)
    curve = target["curve"]
    steps_all = _arr(curve["steps"])
    start = plot_start([{"steps": curve["steps"], "warmup": target.get("warmup")}])
    colors = run_colors(context)
    series = []
    for c in context:
        s, obs = _clip_series(_arr(c["steps"]), _arr(c["observed"]), start=start)
        ax.plot(s, obs, color=colors[str(c["run_id"])], lw=0.9, alpha=0.7, label=f"observed: {_name(c)}")
        series.append((s, obs))
    has_band = curve.get("lo") is not None and curve.get("hi") is not None
    predicted = _arr(curve["loss_pred"])
    lo_, hi_ = (_arr(curve["lo"]), _arr(curve["hi"])) if has_band else (predicted, predicted)
    steps, pred, lo, hi = _clip_series(steps_all, predicted, lo_, hi_, start=start)
    series.append((steps, pred))
    ax.plot(steps, pred, color="C3", lw=2.0, label=f"prediction: {_name(target)}")
    if has_band:
        ax.fill_between(steps, lo, hi, color="C3", alpha=0.2, lw=0, label=band_short(band))
    actual_final = None
    act_s = act = np.array([])
    if curve.get("actual") is not None:
        act_s, act = _clip_series(_arr(curve["actual_steps"]), _arr(curve["actual"]), start=start)
        ax.plot(act_s, act, color="black", lw=1.2, label="actual (trained after the prediction)")
        actual_final = float(act[-1]) if len(act) else None
    _mark_finals(
        ax,
        steps[-1],
        pred[-1],
        lo[-1] if has_band else None,
        hi[-1] if has_band else None,
        actual_final,
        "C3",
    )
    ax.set_xlabel(_STEP_LABEL)
    ax.set_ylabel(_LOSS_LABEL)
    ax.set_title(title, fontsize=10)
    _loss_ylim(ax, series)
    inset = ax.inset_axes([0.5, 0.52, 0.3, 0.4])
    cut = steps[-1] * (1 - INSET_SHARE)
    w = steps >= cut
    inset.plot(steps[w], pred[w], color="C3", lw=1.6)
    if has_band:
        inset.fill_between(steps[w], lo[w], hi[w], color="C3", alpha=0.2, lw=0)
    zoom = [pred[w], lo[w], hi[w]]
    if len(act):
        wa = act_s >= cut
        inset.plot(act_s[wa], act[wa], color="black", lw=1.0)
        zoom.append(act[wa])
    inset.plot([steps[-1]], [pred[-1]], "o", color="C3", ms=4)
    if actual_final is not None:
        inset.plot([act_s[-1]], [actual_final], "X", color="black", ms=5)
    vals = np.concatenate(zoom)
    vals = vals[np.isfinite(vals)]
    if vals.size:
        span = max(float(vals.max() - vals.min()), 1e-4)
        inset.set_ylim(float(vals.min()) - 0.1 * span, float(vals.max()) + 0.1 * span)
    inset.set_title(f"final {100 * INSET_SHARE:.0f}% of training", fontsize=7)
    inset.tick_params(labelsize=6)
    inset.grid(True, alpha=0.25)
    _legend_outside(ax)
    return _png(fig)


def schedules_figure(
    rows: Sequence[Mapping[str, Any]], title: str, baseline: str | None = None, max_rows: int = 12
) -> bytes:
    """Predicted final loss of the best ``max_rows`` schedules of a family with bands: the best green,
    the baseline orange, options whose band overlaps the best's blue, the rest grey."""
    ranked = sorted(rows, key=lambda r: (r["final_pred"] is None, r["final_pred"] or 0.0))
    shown = ranked[:max_rows]
    if baseline is not None and all(r["schedule"] != baseline for r in shown):
        shown += [r for r in ranked if r["schedule"] == baseline][:1]
    fig, ax = _new(8.5, max(2.5, 0.32 * len(shown) + 1.4))
    names = [short_schedule(r["schedule"]) for r in shown]
    pred = _arr([r["final_pred"] for r in shown])
    lo, hi = _arr([r.get("lo") for r in shown]), _arr([r.get("hi") for r in shown])
    ypos = np.arange(len(shown))
    best_hi = hi[0] if len(hi) else np.nan
    colors = []
    for i, r in enumerate(shown):
        if i == 0:
            colors.append("C2")
        elif r["schedule"] == baseline:
            colors.append("C1")
        elif np.isfinite(best_hi) and lo[i] <= best_hi:
            colors.append("C0")
        else:
            colors.append("0.55")
    if np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)):
        ax.errorbar(pred, ypos, xerr=np.vstack([pred - lo, hi - pred]), fmt="none", ecolor="0.4", capsize=3)
        if np.isfinite(best_hi):
            ax.axvline(best_hi, color="C2", lw=0.8, ls="--")
    ax.scatter(pred, ypos, c=colors, zorder=3)
    ax.set_yticks(ypos, names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("predicted final " + _LOSS_LABEL)
    more = f"; {len(rows) - len(shown)} more in the table" if len(rows) > len(shown) else ""
    ax.set_title(
        f"{title}\ngreen: best; orange: baseline; blue: band overlaps the best's (dashed){more}", fontsize=10
    )
    return _png(fig)


def parity_figure(points: Mapping[str, Any], title: str) -> bytes:
    """Observed vs predicted loss for a static law (one point per run), on log axes."""
    fig, ax = _new(5.0, 4.6)
    obs, pred = _arr(points["observed"]), _arr(points["predicted"])
    held = np.asarray(points.get("heldout", [False] * len(obs)), dtype=bool)
    ax.scatter(obs[~held], pred[~held], s=12, color="C0", label="fitted")
    if held.any():
        ax.scatter(obs[held], pred[held], s=30, color="C3", marker="D", label="held out")
    both = np.concatenate([obs, pred])
    lim = (float(np.nanmin(both)) * 0.97, float(np.nanmax(both)) * 1.03)
    ax.plot(lim, lim, color="black", lw=0.8, label="y = x")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("observed final " + _LOSS_LABEL)
    ax.set_ylabel("predicted final " + _LOSS_LABEL)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    return _png(fig)
