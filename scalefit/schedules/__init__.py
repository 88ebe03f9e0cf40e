"""One source of truth for the learning rate: pure, vectorized LR-per-step schedules.

Steps are 0-indexed optimizer updates; ``schedule(steps)`` returns the LR of the update at each step
(float64 array), ``schedule.lrs(n)`` the LR at steps ``0..n-1``. Every kind is a frozen dataclass with
``peak_lr``, ``total_steps``, ``warmup_steps=0``, ``warmup_start=0.0`` (ratio of peak at step 0) and
``warmup_shape="linear"``; the warmup reaches ``peak_lr`` at step ``warmup_steps``.

Kinds (string name -> class): constant -> Constant, cosine -> Cosine, linear -> Linear, wsd -> WSD
(decay shapes linear, cosine, 1-sqrt, exp), multistep -> MultiStep, two-stage -> TwoStage,
inverse-sqrt -> InverseSqrt, cyclic -> Cyclic, wsd-s -> WSDS, logged -> Logged.

    >>> s = parse("wsd:peak=1e-3,steps=50000,decay=0.2,shape=1-sqrt")
    >>> str(s)
    'wsd:peak=0.001,steps=50000,decay=0.2,shape=1-sqrt'
    >>> from_dict(s.to_dict()) == s
    True

Published schedules: ``for_mpl_curve(stem)`` gives the schedule of each Multi-Power Law reference CSV
(Luo et al. 2025; peak 3e-4, linear warmup from 0 over 2160 steps, final 3e-5):

    constant_T          Constant(3e-4, T, warmup_steps=2160)
    cosine_T            Cosine(3e-4, T, warmup_steps=2160, final_ratio=0.1)   cosine over 2160..T
    wsd_20000_24000     WSD(..., decay_steps=4000, shape="exp", final_ratio=0.1)   geometric over 20k..24k
    wsdld_20000_24000   WSD(..., decay_steps=4000, shape="linear", final_ratio=0.1)
    wsdcon_X            TwoStage(3e-4, ..., switch_step=8000, second_ratio=X*1e-5/3e-4)

``for_schaipp_config(config)`` gives the schedule of a Hägele/Schaipp run (epfml/schedules-and-scaling)
from its JSON ``config``: ``schedule(iter)`` equals the logged ``train_lr`` at each logged ``iter``.
"""

from __future__ import annotations

from scalefit.schedules.base import KINDS, Schedule, kind_names
from scalefit.schedules.cycles import WSDS, Cyclic, Logged, MultiStep, TwoStage
from scalefit.schedules.kinds import DECAY_SHAPES, WSD, Constant, Cosine, InverseSqrt, Linear
from scalefit.schedules.parse import from_dict, get_kind, parse
from scalefit.schedules.reference import for_mpl_curve, for_schaipp_config

__all__ = [
    "Schedule",
    "Constant",
    "Cosine",
    "Linear",
    "WSD",
    "MultiStep",
    "TwoStage",
    "InverseSqrt",
    "Cyclic",
    "WSDS",
    "Logged",
    "KINDS",
    "DECAY_SHAPES",
    "kind_names",
    "get_kind",
    "from_dict",
    "parse",
    "for_mpl_curve",
    "for_schaipp_config",
]
