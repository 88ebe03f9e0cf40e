"""Schedules of published reference runs: Multi-Power Law CSVs and Hägele/Schaipp JSON logs.

Multi-Power Law (Luo et al. 2025, thu-yao-01-luo/MultiPowerLaw ``loss_curve_repo``): peak 3e-4, linear
warmup from 0 over 2160 steps, final 3e-5; the CSV ``lr`` at ``step`` equals ``schedule(step)``.

Hägele et al. 2024 / Schaipp et al. 2025 (epfml/schedules-and-scaling, data of fabian-sp/lr-scheduling):
``schedule(iter)`` equals the logged ``train_lr`` at each logged ``iter`` below ``iterations``.
- ``scheduler="wsd"``: linear warmup from 1% of peak over ``warmup_steps``, stable, then a decay of
  ``int(wsd_fract_decay * iterations)`` steps (``decay_type`` linear, or ``sqrt`` = 1-sqrt) to
  ``wsd_final_lr_scale * peak`` at ``iterations``. A fraction of 0 is a constant-LR trunk.
- ``scheduler="cos"``: torch ``OneCycleLR`` (anneal "cos", ``div_factor=100``): a half-cosine warmup from
  1% of peak reaching peak at step ``W - 1`` and a cosine of ``T - W`` steps to the final LR at ``T - 1``,
  so ``warmup_steps=W-1`` and ``decay_steps=T-W``. The final LR is ``cos_final_lr`` (absolute) when it
  is positive, else 10% of peak. OneCycleLR extrapolates the cosine one step past ``T - 1``: the value it
  logs at ``iter == T`` (never used by an update) is above the final LR by ~1e-8 relative, while this
  schedule holds the final LR there.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from scalefit.errors import ScheduleError
from scalefit.schedules.base import Schedule
from scalefit.schedules.cycles import TwoStage
from scalefit.schedules.kinds import WSD, Constant, Cosine

__all__ = ["MPL_PEAK_LR", "MPL_FINAL_LR", "MPL_WARMUP", "MPL_SWITCH", "for_mpl_curve", "for_schaipp_config"]

MPL_PEAK_LR = 3e-4
MPL_FINAL_LR = 3e-5
MPL_WARMUP = 2160
MPL_SWITCH = 8000
_MPL_FINAL_RATIO = MPL_FINAL_LR / MPL_PEAK_LR
_MPL_STEMS = "constant_T, cosine_T, wsd_S_T, wsdld_S_T, wsdcon_X (X in 1e-5 units)"


def for_mpl_curve(file_stem: str, n_steps: int | None = None) -> Schedule:
    """Schedule of a Multi-Power Law reference CSV from its file stem.

    ``n_steps`` is the run length where the stem does not give it (``wsdcon_X``: 16000 by default,
    the 25M runs end at 14144); for other stems it overrides the length in the name.
    """
    common: dict[str, Any] = {"peak_lr": MPL_PEAK_LR, "warmup_steps": MPL_WARMUP}
    m = re.fullmatch(r"(constant|cosine)_(\d+)", file_stem)
    if m:
        total = n_steps or int(m.group(2))
        if m.group(1) == "constant":
            return Constant(total_steps=total, **common)
        return Cosine(total_steps=total, final_ratio=_MPL_FINAL_RATIO, **common)
    m = re.fullmatch(r"(wsd|wsdld)_(\d+)_(\d+)", file_stem)
    if m:
        start, end = int(m.group(2)), int(m.group(3))
        shape = "exp" if m.group(1) == "wsd" else "linear"
        total = n_steps or end
        return WSD(
            total_steps=total, decay_steps=end - start, shape=shape, final_ratio=_MPL_FINAL_RATIO, **common
        )
    m = re.fullmatch(r"wsdcon_(\d+(?:\.\d+)?)", file_stem)
    if m:
        second = float(m.group(1)) * 1e-5 / MPL_PEAK_LR
        return TwoStage(total_steps=n_steps or 16000, switch_step=MPL_SWITCH, second_ratio=second, **common)
    raise ScheduleError(
        "unknown Multi-Power Law curve name",
        field="file_stem",
        value=file_stem,
        fix=f"valid stems: {_MPL_STEMS}",
    )


def _get(config: Mapping[str, Any], key: str) -> Any:
    if key not in config:
        raise ScheduleError("Schaipp config lacks a key", field=key, fix="pass the JSON log's 'config' dict")
    return config[key]


def _schaipp_wsd(config: Mapping[str, Any], peak: float, total: int, warmup: int) -> Schedule:
    decay_type = config.get("decay_type") or "linear"
    shapes = {"linear": "linear", "sqrt": "1-sqrt", "cosine": "cosine", "exp": "exp"}
    if config.get("wsd_exponential_decay"):
        decay_type = "exp"
    if decay_type not in shapes:
        raise ScheduleError(
            "unsupported decay_type", field="decay_type", value=decay_type, fix=f"one of {sorted(shapes)}"
        )
    fraction = float(config.get("wsd_fract_decay") or 0.0)
    return WSD(
        peak_lr=peak,
        total_steps=total,
        warmup_steps=warmup,
        warmup_start=0.01,
        decay_steps=int(fraction * total),
        shape=shapes[decay_type],
        final_ratio=float(config.get("wsd_final_lr_scale") or 0.0),
    )


def _schaipp_cos(config: Mapping[str, Any], peak: float, total: int, warmup: int) -> Schedule:
    final_lr = config.get("cos_final_lr")
    final_ratio = float(final_lr) / peak if final_lr is not None and final_lr > 0 else 0.1
    return Cosine(
        peak_lr=peak,
        total_steps=total,
        warmup_steps=max(warmup - 1, 0),
        warmup_start=0.01,
        warmup_shape="cosine",
        decay_steps=total - warmup,
        final_ratio=final_ratio,
    )


def for_schaipp_config(config: Mapping[str, Any]) -> Schedule:
    """Schedule of a Hägele/Schaipp run from the ``config`` dict of its JSON log (see module docstring)."""
    peak = float(_get(config, "lr"))
    total = int(_get(config, "iterations"))
    warmup = int(_get(config, "warmup_steps"))
    scheduler = _get(config, "scheduler")
    if scheduler == "wsd":
        return _schaipp_wsd(config, peak, total, warmup)
    if scheduler == "cos":
        return _schaipp_cos(config, peak, total, warmup)
    if scheduler == "none":
        return Constant(peak_lr=peak, total_steps=total)
    raise ScheduleError(
        "unsupported Schaipp scheduler", field="scheduler", value=scheduler, fix="one of wsd, cos, none"
    )
