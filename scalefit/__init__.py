"""scalefit: predict a large language-model training run from small proxy runs.

The public API is re-exported here lazily, so that ``import scalefit`` stays cheap and never imports
torch or ray (those are imported only by the trainer and the runner).

    import scalefit as sf
    curves = sf.read_curves("runs/")
    fit = sf.fit(curves, law="momentum")
    pred = fit.predict(other_curves)
    sf.evaluate(pred, other_curves)
    fc = sf.forecast(curves, sf.target_curves([sf.Target("wsd:peak=1e-3,steps=50000,decay=0.2")]))
    fc.predict()                                   # every applicable law, scored, combined, banded
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS: dict[str, tuple[str, str]] = {
    "Curves": ("scalefit.store.curves", "Curves"),
    "read_curves": ("scalefit.store.parquet", "read_curves"),
    "write_curves": ("scalefit.store.parquet", "write_curves"),
    "fit": ("scalefit.fitting.api", "fit"),
    "evaluate": ("scalefit.predict.evaluate", "evaluate"),
    "forecast": ("scalefit.predict.forecast", "forecast"),
    "Forecast": ("scalefit.predict.forecast", "Forecast"),
    "target_curves": ("scalefit.predict.targets", "target_curves"),
    "Target": ("scalefit.predict.targets", "Target"),
    "Fit": ("scalefit.fitting.result", "Fit"),
    "get_law": ("scalefit.laws", "get_law"),
    "schedules": ("scalefit.schedules", None),
    "datasets": ("scalefit.store.datasets", None),
    "importers": ("scalefit.store.importers", None),
    "errors": ("scalefit.errors", None),
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    try:
        module_name, attr = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'scalefit' has no attribute {name!r}") from None
    module = importlib.import_module(module_name)
    value = module if attr is None else getattr(module, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
