"""Scaling laws, one per file. ``get_law(name, **config)`` builds one from the registry.

A law holds structure only (its functional form and structural options); data enters at fit time,
through the inputs the law declares (``scalefit.laws.base``). Every law class registers itself when its
module is imported (``Law.__init_subclass__``); the imports below make the built-in laws known.
"""

from __future__ import annotations

import importlib

from scalefit.laws import (
    chinchilla,
    cooldown,
    downstream,
    kaplan,
    loss_to_loss,
    momentum,
    multipower,
    multipower_size,
    optimal_lr,
    overtraining,
)
from scalefit.laws.base import REGISTRY, Law, get_law, law_class

# The law modules are listed so that importing this package registers every built-in law.
__all__ = ["REGISTRY", "get_law", "law_class", "register"]
__all__ += ["chinchilla", "cooldown", "downstream", "kaplan", "loss_to_loss", "momentum", "multipower"]
__all__ += ["multipower_size", "optimal_lr", "overtraining"]


def register(name: str, module: str, cls: str) -> type[Law]:
    """Register a law defined outside scalefit: import ``module`` and file its class ``cls`` under ``name``
    (a ``Law`` subclass with a ``name`` registers itself on import already)."""
    law = getattr(importlib.import_module(module), cls)
    REGISTRY[name] = law
    return law
