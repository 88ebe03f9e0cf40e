"""Schedules reproduce the LR logged by published runs.

Multi-Power Law CSVs (all 27): ``for_mpl_curve(stem)(step) == lr`` to 1e-9 relative.
Hägele/Schaipp JSON logs (one file per run family): ``for_schaipp_config(config)(iter) == train_lr``
to 1e-9 relative for every logged iter below ``iterations``.

The raw files are read from the bundled ``scalefit/reference_data/lr-curves/`` when complete, else from
a ``shared/reference/lr-curves`` folder found by walking up from this file; the tests skip otherwise.
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import scalefit
from scalefit import schedules as S

MPL_STEMS = [
    "constant_24000",
    "constant_72000",
    "cosine_24000",
    "cosine_72000",
    "wsd_20000_24000",
    "wsdld_20000_24000",
    "wsdcon_3",
    "wsdcon_9",
    "wsdcon_18",
]
MPL_SIZES = ["25", "100", "400"]


def _roots() -> list[Path]:
    roots = [Path(scalefit.__file__).resolve().parent / "reference_data" / "lr-curves"]
    for parent in Path(__file__).resolve().parents:
        roots.append(parent / "shared" / "reference" / "lr-curves")
    return roots


def _find_mpl() -> Path | None:
    for root in _roots():
        for cand in sorted(root.glob("**/csv_25/cosine_24000.csv")) if root.is_dir() else []:
            base = cand.parent.parent
            if all((base / f"csv_{z}" / f"{s}.csv").is_file() for z in MPL_SIZES for s in MPL_STEMS):
                return base
    return None


def _find_schaipp() -> Path | None:
    for root in _roots():
        for cand in sorted(root.glob("**/stable-124m_*lr0.001_*.json.gz")) if root.is_dir() else []:
            return cand.parent
    return None


MPL_DIR = _find_mpl()
SCHAIPP_DIR = _find_schaipp()
needs_mpl = pytest.mark.skipif(
    MPL_DIR is None, reason="Multi-Power Law CSVs neither bundled nor in shared/reference"
)
needs_schaipp = pytest.mark.skipif(
    SCHAIPP_DIR is None, reason="Schaipp JSON logs neither bundled nor in shared/reference"
)


@needs_mpl
@pytest.mark.parametrize("size", MPL_SIZES)
@pytest.mark.parametrize("stem", MPL_STEMS)
def test_mpl_logged_lr_reproduced(size: str, stem: str) -> None:
    frame = pd.read_csv(MPL_DIR / f"csv_{size}" / f"{stem}.csv")
    assert len(frame) > 90
    schedule = S.for_mpl_curve(stem)
    np.testing.assert_allclose(schedule(frame["step"].to_numpy()), frame["lr"].to_numpy(), rtol=1e-9, atol=0)
    # and the schedule survives serialization bit for bit
    assert S.parse(str(schedule)) == schedule


def test_mpl_mapping() -> None:
    assert S.for_mpl_curve("cosine_72000") == S.Cosine(
        3e-4, 72000, warmup_steps=2160, final_ratio=3e-5 / 3e-4
    )
    wsd = S.for_mpl_curve("wsd_20000_24000")
    assert (wsd.shape, wsd.decay_length, wsd.total_steps) == ("exp", 4000, 24000)
    assert float(wsd(22000)) == pytest.approx(3e-4 * 0.1**0.5, rel=1e-12)
    assert S.for_mpl_curve("wsdld_20000_24000").shape == "linear"
    con = S.for_mpl_curve("wsdcon_9", n_steps=14144)
    assert (con.total_steps, con.switch_step) == (14144, 8000)
    assert con(np.array([7999, 8000])).tolist() == pytest.approx([3e-4, 9e-5], rel=1e-12)
    assert float(S.for_mpl_curve("constant_24000")(1080)) == pytest.approx(1.5e-4, rel=1e-12)


def _schaipp_files() -> list[Path]:
    """One file per run family (prefix, scheduler, decay type), for speed."""
    if SCHAIPP_DIR is None:
        return []
    chosen: dict[str, Path] = {}
    for path in sorted(SCHAIPP_DIR.glob("*.json.gz")):
        family = re.sub(r"_lr[\d.]+_|_iter\d+_|nlayers\d+_nhead\d+", "_", path.name)
        chosen.setdefault(family, path)
    return list(chosen.values())


def _load_train(path: Path) -> tuple[dict, np.ndarray, np.ndarray]:
    with gzip.open(path, "rt") as fh:
        log = json.load(fh)
    train = pd.DataFrame({k: log["history"]["train"][k] for k in ("iter", "train_lr")})
    train = train.drop_duplicates("iter", keep="last").sort_values("iter")
    return log["config"], train["iter"].to_numpy(float), train["train_lr"].to_numpy(float)


@needs_schaipp
@pytest.mark.parametrize("path", _schaipp_files(), ids=lambda p: p.name[:48])
def test_schaipp_logged_lr_reproduced(path: Path) -> None:
    config, iters, logged = _load_train(path)
    schedule = S.for_schaipp_config(config)
    total = config["iterations"]
    inside = iters < total
    assert inside.sum() > 10
    np.testing.assert_allclose(schedule(iters[inside]), logged[inside], rtol=1e-9, atol=1e-15)
    # at iter == T OneCycleLR has run one step past its cosine (~(pi / (T - W))**2 / 4 of peak above the
    # final LR); the WSD logs hit the final LR exactly
    atol = 1e-7 * schedule.peak_lr if config["scheduler"] == "cos" else 1e-15
    np.testing.assert_allclose(schedule(iters[~inside]), logged[~inside], rtol=1e-12, atol=atol)


def test_schaipp_mapping() -> None:
    base = {"lr": 1e-3, "iterations": 25000, "warmup_steps": 300}
    wsd = S.for_schaipp_config({**base, "scheduler": "wsd", "decay_type": "sqrt", "wsd_fract_decay": 0.2})
    assert wsd == S.WSD(1e-3, 25000, warmup_steps=300, warmup_start=0.01, decay_steps=5000, shape="1-sqrt")
    assert float(wsd(50)) == pytest.approx(1.75e-4, rel=1e-12)  # 50/300 + (1 - 50/300) / 100
    cos = S.for_schaipp_config({**base, "scheduler": "cos", "cos_final_lr": 1e-7})
    assert (cos.warmup_steps, cos.decay_steps, cos.warmup_shape) == (299, 24700, "cosine")
    assert cos.final_ratio == pytest.approx(1e-4, rel=1e-12)
    assert S.for_schaipp_config({**base, "scheduler": "cos", "cos_final_lr": -1}).final_ratio == 0.1
