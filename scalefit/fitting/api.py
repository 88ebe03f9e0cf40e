"""The public entry point ``sf.fit``.

    fit = sf.fit(curves, law="momentum", bootstrap=200)        # structural options go to the law,
    fit = sf.fit(table, law="chinchilla", n="N", d="D")        # engine options to ``fit_law``
    pred = fit.predict(held_out)

An option that is neither an engine option (``ENGINE_OPTIONS``) nor one of the law's structural options
(its constructor's keywords) is a ``ConfigError`` naming it, with the valid names in ``fix``. Accuracy
against held-out truth is ``sf.evaluate`` (``scalefit.predict.evaluate``).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from scalefit.errors import ConfigError
from scalefit.fitting.engine import ENGINE_OPTIONS, fit_law
from scalefit.fitting.result import Fit
from scalefit.laws.base import Design, Law, check_options, get_law, law_class
from scalefit.store.curves import Curves

__all__ = ["ENGINE_OPTIONS", "fit"]


def fit(data: Curves | pd.DataFrame | Design, law: str | Law = "momentum", **options: Any) -> Fit:
    """Fit ``law`` (a registry name or a ``Law``) to ``data`` (Curves, or a DataFrame for static laws).

    Options named in ``ENGINE_OPTIONS`` (delta, objective, starts, bootstrap, ci, seed, map_fn,
    weights, maxiter, threads, progress, diverged, max_points) go to
    ``scalefit.fitting.engine.fit_law``; every other option is a structural option of the law and goes
    to its constructor (only when ``law`` is a name).
    """
    engine = {k: v for k, v in options.items() if k in ENGINE_OPTIONS}
    structural = {k: v for k, v in options.items() if k not in ENGINE_OPTIONS}
    if isinstance(law, Law):
        if structural:
            check_options(type(law), list(structural), also=ENGINE_OPTIONS)
            raise ConfigError(
                "structural options given with a ready-made law",
                field=",".join(sorted(structural)),
                fix="pass them to the law's constructor, or pass the law by name",
            )
        law_obj = law
    elif isinstance(law, str):
        check_options(law_class(law), list(structural), also=ENGINE_OPTIONS)
        law_obj = get_law(law, **structural)
    else:
        raise ConfigError("law must be a registry name or a Law", field="law", value=type(law).__name__)
    return fit_law(law_obj, data, **engine)
