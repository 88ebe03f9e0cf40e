"""Bundled published scaling-law data under ``scalefit/reference_data/``, each folder with its README.

    import scalefit as sf
    sf.datasets.list_datasets()
    curves = sf.datasets.load("mpl-400m")          # Curves, run ids = file stems ("cosine_24000", ...)
    chin = sf.datasets.load("chinchilla-epoch")    # DataFrame N, D, C, loss, epoch_fit
    print(sf.datasets.describe("schaipp-124m"))

Curves are immutable and cached per process; tables are returned as fresh DataFrames.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import pandas as pd

from scalefit.errors import DataError
from scalefit.store.curves import Curves
from scalefit.store.importers import import_mpl_csv, import_schaipp_json

__all__ = ["load", "list_datasets", "describe", "data_path", "epoch_subset"]


@dataclass(frozen=True)
class _Spec:
    folder: str
    kind: str  # "curves" or "table"
    summary: str


_MPL = "Luo et al. 2025 (arXiv 2503.12811; thu-yao-01-luo/MultiPowerLaw, MIT)"
_SCH = "Hägele et al. 2024 / Schaipp et al. 2025 (fabian-sp/lr-scheduling, MIT)"
_SPECS: dict[str, _Spec] = {
    f"mpl-{s}m": _Spec(
        "lr-curves",
        "curves",
        f"{_MPL}: the 9 {s}M curves (step, lr, loss every 128 steps), run_id = file stem; "
        f"runs: schedule, model_size, n_params (nominal {s}e6).",
    )
    for s in (25, 100, 400)
}
_SPECS["schaipp-124m"] = _Spec(
    "lr-curves",
    "curves",
    f"{_SCH}: 124M runs (constant trunks, WSD cooldown branches joined to their trunk, cosine to 0 "
    "and to 10%); train loss every 50 steps, evals 'val' and 'final-val'; runs: peak_lr, cooldown_frac, "
    "decay_shape, total_steps, family, trunk.",
)
_SPECS["schaipp-sizes"] = _Spec(
    "lr-curves",
    "curves",
    f"{_SCH}: Hägele's 33M-360M size sweep (cosine to 10%, constant trunks, 20% linear cooldowns "
    "joined to trunks) with n_params.",
)
_SPECS["chinchilla-epoch"] = _Spec(
    "chinchilla",
    "table",
    "Hoffmann et al. 2022 Fig. 4 as extracted by Epoch AI (Besiroglu et al. 2024): 245 rows N, "
    "D = C/(6N), C, loss; epoch_fit marks Epoch's 240-point subset (the 5 highest losses left out).",
)
_SPECS["gadre-overtraining"] = _Spec(
    "overtraining",
    "table",
    "Gadre et al. 2024: 104 runs, one row each (runs_flat.csv: N, D, M, 8 eval losses, 46 task errors).",
)
_SPECS["brandfonbrener-sweep"] = _Spec(
    "loss-to-loss",
    "table",
    "Brandfonbrener et al. 2024: 529 runs, 6 pre-training sets x 8 isoFLOP budgets, train and eval losses.",
)
_SPECS["porian-isoflop"] = _Spec("porian", "table", "Porian et al. 2024: isoFLOP points (flops, N, T, loss).")
_SPECS["porian-optimal"] = _Spec("porian", "table", "Porian et al. 2024: compute-optimal (N*, T*, loss*).")
_SPECS["porian-fits"] = _Spec(
    "porian", "table", "Porian et al. 2024: published power-law fits (exponent a of N* ~ C^a, bootstrap CIs)."
)
_TABLES = {
    "gadre-overtraining": "overtraining/runs_flat.csv",
    "brandfonbrener-sweep": "loss-to-loss/data/sweep.csv",
    "porian-isoflop": "porian/isoflop_points.csv",
    "porian-optimal": "porian/optimal_pairs.csv",
    "porian-fits": "porian/power_law_fits.csv",
}
_MPL_25M_STEPS = {"wsdcon_3": 14144, "wsdcon_9": 14144, "wsdcon_18": 14144}
SCHAIPP_DIR = "lr-curves/schaipp-lr-scheduling"


def list_datasets() -> list[str]:
    """Names accepted by `load`."""
    return sorted(_SPECS)


def _spec(name: str) -> _Spec:
    if name not in _SPECS:
        raise DataError("unknown dataset", field="name", value=name, fix=f"use one of {list_datasets()}")
    return _SPECS[name]


def data_path(relative: str = "") -> Path:
    """Filesystem path of a file or folder under the bundled ``reference_data/``."""
    path = Path(str(resources.files("scalefit") / "reference_data")) / relative
    if not path.exists():
        raise DataError(
            "bundled data file missing", file=str(path), fix="reinstall scalefit with its package data"
        )
    return path


def describe(name: str) -> str:
    """What the dataset holds, where it comes from, and the provenance README to read."""
    spec = _spec(name)
    kind = "Curves" if spec.kind == "curves" else "pandas DataFrame"
    readme = data_path(f"{spec.folder}/README.md")
    return f"{name} ({kind}): {spec.summary}\nProvenance and licence: {readme}"


def load(name: str) -> Curves | pd.DataFrame:
    """Load a bundled dataset by name (see `list_datasets` and `describe`)."""
    spec = _spec(name)
    if spec.kind == "curves":
        return _load_curves(name)
    if name == "chinchilla-epoch":
        return _chinchilla()
    return pd.read_csv(data_path(_TABLES[name]))


@functools.cache
def _load_curves(name: str) -> Curves:
    if name.startswith("mpl-"):
        return _mpl(int(name.removeprefix("mpl-").removesuffix("m")))
    return _schaipp(name)


def _mpl(size: int) -> Curves:
    folder = data_path(f"lr-curves/mpl-multipowerlaw/csv_{size}")
    curves = import_mpl_csv(folder, n_steps=_MPL_25M_STEPS if size == 25 else None)
    runs = curves.runs.assign(model_size=f"{size}M", n_params=int(size * 1e6))
    return Curves.from_frame(curves.frame, runs=runs, source=f"scalefit:mpl-{size}m")


def _chinchilla() -> pd.DataFrame:
    raw = pd.read_csv(data_path("chinchilla/svg_extracted_data.csv"))
    n, c = raw["Model Size"].astype(float), raw["Training FLOP"].astype(float)
    df = pd.DataFrame({"N": n, "D": c / (6.0 * n), "C": c, "loss": raw["loss"].astype(float)})
    df["epoch_fit"] = df["loss"] < sorted(df["loss"])[-5]
    return df


def epoch_subset(df: pd.DataFrame | None = None) -> pd.DataFrame:
    """Epoch AI's 240-point fit subset of ``chinchilla-epoch``: the 5 highest-loss runs left out."""
    df = _chinchilla() if df is None else df
    return df[df["epoch_fit"]].reset_index(drop=True)


_SCHAIPP_FAMILIES = {
    "schaipp-124m": ("stable-124m_", "ann124-", "cos-zero-124m_", "cos-10-124m_"),
    "schaipp-sizes": ("sl_", "sl53_", "sl93_", "sl166_", "ann0.2_"),
}


def _readable_id(run: pd.Series, sized: bool) -> str:
    """E.g. 'wsd-F0.2-linear-lr0.001-T50000' (124M) or '124m-cosine-lr0.001-T25000' (size sweep)."""
    if run["scheduler"] == "cos":
        kind = "cosine" if not run["family"].startswith("cos-zero") else "cosine-zero"
    elif run["cooldown_frac"] > 0:
        kind = f"wsd-F{run['cooldown_frac']:g}-{run['decay_shape']}"
    else:
        kind = "constant"
    head = f"{round(run['n_params'] / 1e6)}m-" if sized else ""
    return f"{head}{kind}-lr{run['peak_lr']:g}-T{run['total_steps']}"


def _schaipp(name: str) -> Curves:
    files = sorted(
        p for p in data_path(SCHAIPP_DIR).glob("*.json.gz") if p.name.startswith(_SCHAIPP_FAMILIES[name])
    )
    curves = import_schaipp_json(files)
    runs = curves.runs
    new = {old: _readable_id(row, name == "schaipp-sizes") for old, row in runs.iterrows()}
    if len(set(new.values())) != len(new):
        raise DataError("bundled run ids collide", file=SCHAIPP_DIR, fix="report this as a scalefit bug")
    runs = runs.rename(index=new).assign(trunk=runs["trunk"].map(new).to_numpy())
    frame = curves.frame.assign(run_id=curves.frame["run_id"].map(new))
    evals = curves.evals.assign(run_id=curves.evals["run_id"].map(new))
    return Curves.from_frame(frame, runs=runs.reset_index(), evals=evals, source=f"scalefit:{name}")
