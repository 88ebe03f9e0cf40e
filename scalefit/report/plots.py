"""Report figures, drawn from the report dictionary (the JSON twin) so a report re-renders from its JSON.

matplotlib is used through ``Figure`` objects (no pyplot, no global backend switch); every figure is
returned as PNG bytes. Conventions: steps on a log x axis (loss curves are power laws in steps), loss in
nats per token on the y axis, prediction bands shaded, held-out runs dashed.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

__all__ = ["curves_figure", "residuals_figure", "target_figure", "schedules_figure", "parity_figure"]
__all__ += ["short_schedule"]

_LOSS_LABEL = "loss (nats/token)"


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    return buf.getvalue()


def _new(width: float = 7.0, height: float = 4.2) -> tuple[Figure, Any]:
    fig = Figure(figsize=(width, height), layout="constrained")
    ax = fig.add_subplot()
    ax.grid(True, which="both", alpha=0.25)
    return fig, ax


def _arr(values: Sequence[float] | None) -> np.ndarray:
    return np.asarray([np.nan if v is None else v for v in (values or [])], dtype=float)


def _positive_steps(steps: np.ndarray) -> np.ndarray:
    """Step 0 cannot sit on a log axis; plot it at 1 (one optimizer update) instead."""
    return np.maximum(steps, 1.0)


def curves_figure(curves: Sequence[Mapping[str, Any]], title: str) -> bytes:
    """Observed (solid) vs fitted/predicted (dashed) loss per run, with the band of held-out runs."""
    fig, ax = _new()
    for i, c in enumerate(curves):
        color = f"C{i % 10}"
        steps = _positive_steps(_arr(c["steps"]))
        held = c.get("role") == "heldout"
        ax.plot(steps, _arr(c["observed"]), color=color, lw=1.0, alpha=0.55)
        label = f"{_name(c)} ({'held out' if held else 'fitted'})"
        ax.plot(steps, _arr(c["predicted"]), color=color, lw=1.6, ls="--" if held else ":", label=label)
        if held and c.get("lo") is not None:
            ax.fill_between(steps, _arr(c["lo"]), _arr(c["hi"]), color=color, alpha=0.18, lw=0)
    ax.set_xscale("log")
    ax.set_xlabel("optimizer step (log scale)")
    ax.set_ylabel(_LOSS_LABEL)
    ax.set_title(title + "\nthin solid: observed; dotted: fit; dashed + band: held-out prediction")
    _loss_ylim(ax, [(c["steps"], c["observed"]) for c in curves])
    ax.legend(fontsize=7, ncol=2, loc="upper right")
    return _png(fig)


def _loss_ylim(ax: Any, series: Sequence[tuple[Sequence[float], Sequence[float]]]) -> None:
    """Clip the y range to the informative part: steps past 2% of the longest run (skips the initial
    drop from ~ln(vocab), which would flatten everything else)."""
    pairs = [(_arr(s), _arr(v)) for s, v in series if len(v)]
    if not pairs:
        return
    last = max(float(np.nanmax(s)) for s, _ in pairs)
    vals = np.concatenate([v[s >= 0.02 * last] for s, v in pairs])
    vals = vals[np.isfinite(vals)]
    if vals.size:
        lo, hi = float(vals.min()), float(vals.max())
        pad = 0.05 * max(hi - lo, 1e-3)
        ax.set_ylim(lo - pad, hi + pad)


def short_schedule(text: str) -> str:
    """A schedule string without the peak/steps/warmup options (shared by a family's members)."""
    kind, _, opts = str(text).partition(":")
    keep = [o for o in opts.split(",") if o.split("=")[0] not in ("peak", "steps", "warmup")]
    return kind + (":" + ",".join(keep) if keep else "")


def _name(c: Mapping[str, Any]) -> str:
    return str(c.get("label") or c["run_id"])


def residuals_figure(curves: Sequence[Mapping[str, Any]], title: str) -> bytes:
    """Relative residual (predicted - observed) / observed in percent against step, per run."""
    fig, ax = _new(7.0, 3.4)
    for i, c in enumerate(curves):
        obs, pred = _arr(c["observed"]), _arr(c["predicted"])
        held = c.get("role") == "heldout"
        ax.plot(
            _positive_steps(_arr(c["steps"])),
            100 * (pred - obs) / obs,
            color=f"C{i % 10}",
            lw=1.2 if held else 0.8,
            ls="-" if held else ":",
            label=f"{_name(c)}{' (held out)' if held else ''}",
        )
    ax.axhline(0.0, color="black", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("optimizer step (log scale)")
    ax.set_ylabel("residual (pred - obs) / obs  [%]")
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=2)
    return _png(fig)


def target_figure(target: Mapping[str, Any], context: Sequence[Mapping[str, Any]]) -> bytes:
    """The extrapolated target curve with its band, over the observed runs it was fitted on."""
    fig, ax = _new()
    for c in context:
        ax.plot(_positive_steps(_arr(c["steps"])), _arr(c["observed"]), color="0.6", lw=0.8)
    curve = target["curve"]
    steps = _positive_steps(_arr(curve["steps"]))
    ax.plot(steps, _arr(curve["loss_pred"]), color="C3", lw=2.0, label=f"prediction: {_name(target)}")
    if curve.get("lo") is not None:
        ax.fill_between(steps, _arr(curve["lo"]), _arr(curve["hi"]), color="C3", alpha=0.2, label="band")
    if curve.get("actual") is not None:
        ax.plot(
            _positive_steps(_arr(curve["actual_steps"])),
            _arr(curve["actual"]),
            color="black",
            lw=1.2,
            label="actual (trained after the prediction)",
        )
    ax.set_xscale("log")
    ax.set_xlabel("optimizer step (log scale)")
    ax.set_ylabel(_LOSS_LABEL)
    ax.set_title(f"{_name(target)}: {short_schedule(target.get('schedule', ''))}\ngrey: observed proxy runs")
    _loss_ylim(ax, [(curve["steps"], curve["loss_pred"])] + [(c["steps"], c["observed"]) for c in context])
    ax.legend(fontsize=8)
    return _png(fig)


def schedules_figure(rows: Sequence[Mapping[str, Any]], title: str) -> bytes:
    """Predicted final loss of each schedule in a family, with bands; the best one highlighted."""
    fig, ax = _new(7.0, max(2.5, 0.32 * len(rows) + 1.2))
    names = [short_schedule(r["schedule"]) for r in rows]
    pred = _arr([r["final_pred"] for r in rows])
    lo, hi = _arr([r.get("lo") for r in rows]), _arr([r.get("hi") for r in rows])
    ypos = np.arange(len(rows))
    best = int(np.nanargmin(pred)) if len(rows) else -1
    colors = ["C2" if i == best else ("C1" if n.startswith("cosine") else "C0") for i, n in enumerate(names)]
    err = np.vstack([pred - lo, hi - pred]) if np.all(np.isfinite(lo)) else None
    ax.errorbar(pred, ypos, xerr=err, fmt="none", ecolor="0.4", capsize=3)
    ax.scatter(pred, ypos, c=colors, zorder=3)
    ax.set_yticks(ypos, names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("predicted final " + _LOSS_LABEL)
    ax.set_title(title + "\ngreen: best; orange: cosine baseline")
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
    ax.set_title(title)
    ax.legend(fontsize=8)
    return _png(fig)
