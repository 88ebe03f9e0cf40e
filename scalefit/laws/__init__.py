"""Scaling laws, one per file. ``get_law(name, **config)`` builds one from the registry.

A law holds structure only (its functional form and structural options); data enters at fit time.
"""

from __future__ import annotations

import importlib
from typing import Any

from scalefit.errors import ConfigError

# name -> (module, class). Modules are imported on first use so that one law's import cost is paid
# only by its users.
REGISTRY: dict[str, tuple[str, str]] = {
    "momentum": ("scalefit.laws.momentum", "MomentumLaw"),
    "multipower": ("scalefit.laws.multipower", "MultiPowerLaw"),
    "multipower-size": ("scalefit.laws.multipower_size", "MultiPowerSizeLaw"),
    "cooldown": ("scalefit.laws.cooldown", "CooldownLaw"),
    "chinchilla": ("scalefit.laws.chinchilla", "ChinchillaLaw"),
    "overtraining": ("scalefit.laws.overtraining", "OvertrainingLaw"),
    "downstream": ("scalefit.laws.downstream", "DownstreamLaw"),
    "loss-to-loss": ("scalefit.laws.loss_to_loss", "LossToLossLaw"),
    "kaplan": ("scalefit.laws.loss_to_loss", "KaplanLaw"),
    "optimal-lr": ("scalefit.laws.optimal_lr", "OptimalLRLaw"),
}


def register(name: str, module: str, cls: str) -> None:
    """Add a law to the registry (for laws defined outside scalefit)."""
    REGISTRY[name] = (module, cls)


def law_class(name: str) -> type:
    """The class registered under ``name``."""
    try:
        module_name, cls_name = REGISTRY[name]
    except KeyError:
        raise ConfigError(
            "unknown law",
            field="law",
            value=name,
            fix=f"use one of {', '.join(sorted(REGISTRY))}",
        ) from None
    return getattr(importlib.import_module(module_name), cls_name)


def get_law(name: str, **config: Any) -> Any:
    """Build the law registered under ``name`` with its structural options."""
    return law_class(name)(**config)


__all__ = ["REGISTRY", "get_law", "law_class", "register"]
