"""The public entry points: ``sf.fit`` and ``sf.evaluate``.

fit = sf.fit(curves, law="momentum", bootstrap=200)        # structural options go to the law,
fit = sf.fit(table, law="chinchilla", n="N", d="D")        # engine options to ``fit_law``
pred = fit.predict(held_out)
sf.evaluate(pred, held_out)
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from scalefit.errors import ConfigError
from scalefit.evaluate import evaluate as _evaluate
from scalefit.fitting import fit_law
from scalefit.laws.base import Law
from scalefit.results import Fit

__all__ = ["ENGINE_OPTIONS", "evaluate", "fit"]

ENGINE_OPTIONS = frozenset(
    {"delta", "objective", "starts", "bootstrap", "ci", "seed", "map_fn", "weights", "maxiter"}
)


def fit(data: Any, law: str | Law = "momentum", **options: Any) -> Fit:
    """Fit ``law`` (a registry name or a ``Law``) to ``data`` (Curves, or a DataFrame for static laws).

    Options named in ``ENGINE_OPTIONS`` (delta, objective, starts, bootstrap, ci, seed, map_fn,
    weights, maxiter) go to ``scalefit.fitting.fit_law``; every other option is a structural option of
    the law and goes to its constructor (only when ``law`` is a name).
    """
    engine = {k: v for k, v in options.items() if k in ENGINE_OPTIONS}
    structural = {k: v for k, v in options.items() if k not in ENGINE_OPTIONS}
    if isinstance(law, Law):
        if structural:
            raise ConfigError(
                "structural options given with a ready-made law",
                field=",".join(sorted(structural)),
                fix="pass them to the law's constructor, or pass the law by name",
            )
        law_obj = law
    elif isinstance(law, str):
        from scalefit.laws import get_law

        law_obj = get_law(law, **structural)
    else:
        raise ConfigError("law must be a registry name or a Law", field="law", value=type(law).__name__)
    return fit_law(law_obj, data, **engine)


def evaluate(pred: pd.DataFrame, truth: Any, **options: Any) -> dict[str, Any]:
    """Accuracy of ``pred`` (``Fit.predict`` output) against ``truth`` (Curves or a DataFrame with
    run_id, step, loss); see ``scalefit.evaluate.evaluate``."""
    return _evaluate(pred, truth, **options)
