"""The best schedule of a family for a target run's budget: every member's predicted final loss, the best
one and its gain over the best cosine.

Members share the target's peak LR, steps and warmup. Losses in nats per token; a gain is in nats,
positive = better than the cosine baseline.

    best_schedule(fit, Target("cosine:peak=3e-4,steps=24000,warmup=2160"), family="wsd")["best"]
"""

from __future__ import annotations

import warnings
from typing import Any

from scalefit.errors import ConfigError, ExtrapolationWarning
from scalefit.fitting.result import Fit
from scalefit.predict.targets import Target, target_curves
from scalefit.schedules.base import Schedule
from scalefit.schedules.kinds import WSD, Cosine

__all__ = ["schedule_family", "best_schedule", "WSD_FRACTIONS", "WSD_SHAPES", "COSINE_FINALS"]

WSD_FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
WSD_SHAPES = ("linear", "cosine", "1-sqrt")
COSINE_FINALS = (0.0, 0.01, 0.1, 0.2, 0.5)


def schedule_family(base: Schedule, family: str) -> list[Schedule]:
    """Members of a schedule family at the base schedule's peak LR, steps and warmup, cosine first.

    ``wsd``: decay fraction 0.1..0.9 x shapes linear/cosine/1-sqrt (to zero); ``cosine``: final LR ratio
    0, 0.01, 0.1, 0.2, 0.5. Both include cosine to 0 and to 0.1 as baselines.
    """
    common = {"peak_lr": base.peak_lr, "total_steps": base.total_steps, "warmup_steps": base.warmup_steps}
    cosines = [Cosine(final_ratio=f, **common) for f in COSINE_FINALS]
    if family == "cosine":
        return cosines
    if family == "wsd":
        wsds = [WSD(decay_fraction=f, shape=s, **common) for s in WSD_SHAPES for f in WSD_FRACTIONS]
        return [cosines[0], cosines[2], *wsds]
    raise ConfigError("unknown schedule family", field="family", value=family, fix="use wsd or cosine")


def best_schedule(fit: Fit, target: Target, family: str = "wsd") -> dict[str, Any]:
    """Predicted final loss of every member of ``family`` for the target's budget; the best one and its
    gain (in nats, positive = better) over the best cosine member."""
    members = schedule_family(target.schedule, family)
    targets = [
        Target(s, target.n_params, target.tokens_per_step, f"m{i}", target.meta)
        for i, s in enumerate(members)
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExtrapolationWarning)
        pred = fit.predict(target_curves(targets, n_points=1)).set_index("run_id")
    rows = [
        {
            "schedule": str(t.schedule),
            "final_pred": float(pred.at[t.run_id, "loss_pred"]),
            "lo": float(pred.at[t.run_id, "lo"]),
            "hi": float(pred.at[t.run_id, "hi"]),
        }
        for t in targets
    ]
    cosine = min((r for r in rows if r["schedule"].startswith("cosine")), key=lambda r: r["final_pred"])
    for r in rows:
        r["gain_vs_cosine"] = cosine["final_pred"] - r["final_pred"]
    best = min(rows, key=lambda r: r["final_pred"])
    title = f"{family} family at {target.total_steps} steps, peak LR {target.schedule.peak_lr:g}"
    return {"family": family, "title": title, "rows": rows, "best": best, "baseline": cosine}
