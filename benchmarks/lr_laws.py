"""Schedule-aware loss-curve laws on the bundled published curves; prints one JSON document.

    python benchmarks/lr_laws.py                                  # every protocol, every law
    python benchmarks/lr_laws.py --laws multipower --protocols mpl --sizes 25

Protocols (issue 5):
- ``mpl``: Luo et al. 2025 split at 25M/100M/400M: fit {cosine_24000, constant_24000, wsdcon_9}, predict
  the other six; R^2, MAE, RMSE, PredE, WorstE (relative errors in %; per curve, then averaged over the
  curves as the reference code does; ``*_pooled`` over all points). Side by side: the published MPL
  numbers, the published MPL parameters evaluated by scalefit, and every law's own refit.
- ``cooldown``: Schaipp 124M, peak 1e-3, validation loss: fit the constant and cosine-to-zero curves (two
  splits: the 50k-step cosine only, and the 25k- and 50k-step cosines), predict the final loss of every
  WSD cooldown fraction at 50k steps (linear, and 1-sqrt at 0.2) and the best fraction; the WSD families
  of the 15k/25k/35k horizons are predicted by the same fits as a check on the choice of law.
- ``size``: Hägele size sweep (validation loss): fit every size but the largest with a size-aware law,
  predict the largest size's curves.
- ``timing``: per law, fit wall time on the 72k-step MPL curves, and the cost of one objective
  evaluation against a plain-numpy O(T^2) evaluation of the same prediction, as a ratio.
Any registered law name plugs in through ``--laws``.
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # tiny L-BFGS problems: BLAS threads only contend

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from scalefit.fitting.design import build_design  # noqa: E402
from scalefit.fitting.engine import fit_law  # noqa: E402
from scalefit.fitting.objective import Objective  # noqa: E402
from scalefit.fitting.reference import reference_fit  # noqa: E402
from scalefit.laws import _kernels as K  # noqa: E402
from scalefit.laws import get_law  # noqa: E402
from scalefit.store import datasets  # noqa: E402
from scalefit.store.curves import Curves  # noqa: E402

MPL_TRAIN = ["cosine_24000", "constant_24000", "wsdcon_9"]
MPL_PUBLISHED = {25: (0.110, 0.41), 100: (0.142, 0.58), 400: (0.168, 0.99)}  # PredE %, WorstE %
MPL_PUBLISHED_PARAMS = {  # [L0, A, alpha, B, C, beta, gamma], the reference code's config
    25: [3.04045406, 0.52468604, 0.50786857, 363.78751622, 2.06560812, 0.58279013, 0.64142257],
    100: [2.6514477, 0.60115152, 0.45295811, 437.9464276, 2.13245612, 0.59785199, 0.65523644],
    400: [2.37474466, 0.65421216, 0.42878731, 523.42464371, 2.02462735, 0.59350493, 0.63472457],
}
COOLDOWN_TRUE = {0.1: 2.9483, 0.2: 2.9303, 0.4: 2.9188, 0.6: 2.9165, 0.8: 2.9189, 0.9: 2.9225}
CURVE_LAWS = ("momentum", "multipower", "cooldown")


def fit_predict(
    law_name: str, train: Curves, test: Curves, starts: int | None, **config: object
) -> tuple[pd.DataFrame, dict]:
    """Fit ``law_name`` on ``train``; predicted loss at every usable step of ``test`` and fit info."""
    t0 = time.perf_counter()
    fit = fit_law(get_law(law_name, **config), train, starts=starts)
    law = get_law(law_name, **dict(fit.law_config))
    design = build_design(law, test, predict=True)
    pred = law.predict(np.array([fit.values[n] for n in law.param_names]), design)
    info = {"values": {k: float(v) for k, v in fit.values.items()}, "config": dict(fit.law_config)}
    info["fit_s"] = round(time.perf_counter() - t0, 2)
    info["objective"] = float(fit.diagnostics["objective"])
    return pd.DataFrame({"run_id": design.keys["run_id"], "step": design.keys["step"], "pred": pred}), info


def metrics(pred: pd.DataFrame, test: Curves) -> dict:
    truth = test.frame[["run_id", "step", "loss"]]
    df = pred.merge(truth, on=["run_id", "step"])
    df = df[np.isfinite(df["loss"])]
    rel = np.abs(df["pred"] - df["loss"]) / df["loss"]
    res = df["pred"] - df["loss"]
    r2 = 1 - np.sum(res**2) / np.sum((df["loss"] - df["loss"].mean()) ** 2)
    by_run = rel.groupby(df["run_id"])
    return {
        "r2": round(float(r2), 5),
        "mae": round(float(np.abs(res).mean()), 5),
        "rmse": round(float(np.sqrt(np.mean(res**2))), 5),
        "pred_e_pct": round(float(by_run.mean().mean() * 100), 4),
        "worst_e_pct": round(float(by_run.max().mean() * 100), 4),
        "pred_e_pct_pooled": round(float(rel.mean() * 100), 4),
        "worst_e_pct_pooled": round(float(rel.max() * 100), 4),
        "pred_e_pct_per_run": by_run.mean().mul(100).round(4).to_dict(),
    }


def mpl_metrics(theta: list[float], test: Curves) -> dict:
    """Metrics of ``MultiPowerLaw`` (official convention) at ``theta`` on ``test``, with the values."""
    law = get_law("multipower")
    design = build_design(law, test, predict=True)
    pred = law.predict(np.asarray(theta, dtype=float), design)
    frame = pd.DataFrame({"run_id": design.keys["run_id"], "step": design.keys["step"], "pred": pred})
    return {**metrics(frame, test), "values": dict(zip(law.param_names, map(float, theta), strict=True))}


def reference_path(train: Curves, test: Curves) -> dict:
    """MultiPowerLaw fitted along the reference code's path (pre-fit + early-stopped AdamW)."""
    t0 = time.perf_counter()
    values = reference_fit(train)
    fit_s = round(time.perf_counter() - t0, 2)
    return {**mpl_metrics(list(values.values()), test), "fit_s": fit_s}


def mpl_protocol(laws: list[str], sizes: list[int], starts: int | None, reference: bool = True) -> dict:
    out = {}
    for size in sizes:
        curves = datasets.load(f"mpl-{size}m")
        train, test = curves.split(MPL_TRAIN)
        row = {
            "published_multipower": {
                "pred_e_pct": MPL_PUBLISHED[size][0],
                "worst_e_pct": MPL_PUBLISHED[size][1],
            },
            "published_params_by_scalefit": mpl_metrics(MPL_PUBLISHED_PARAMS[size], test),
        }
        if reference:
            row["multipower_reference_path"] = reference_path(train, test)
        for name in laws:
            pred, info = fit_predict(name, train, test, starts)
            row[name] = {**metrics(pred, test), "fit": info}
        out[f"{size}m"] = row
    return out


def val_curves(name: str, run_ids: list[str] | None = None, every: int = 200) -> Curves:
    """Validation-loss curves (``evals`` dataset ``val``) of a bundled Schaipp set as ``Curves``."""
    curves = datasets.load(name)
    ev = curves.evals
    ev = ev[(ev["dataset"] == "val") & (ev["step"] % every == 0)]
    if run_ids is not None:
        ev = ev[ev["run_id"].isin(run_ids)]
    frame = ev.rename(columns={"eval_loss": "loss"})[["run_id", "step", "loss"]].assign(lr=np.nan)
    runs = curves.runs.loc[sorted(frame["run_id"].unique())][["schedule", "n_params", "warmup_steps"]]
    return Curves.from_frame(frame, runs=runs.reset_index())


COOLDOWN_SPLITS = {  # training curves of the cooldown protocol; both splits are reported side by side
    "constant+cosine0_50k": ["constant-lr0.001-T50000", "cosine-zero-lr0.001-T50000"],
    "constant+cosine0_25k_50k": [
        "constant-lr0.001-T50000",
        "cosine-zero-lr0.001-T25000",
        "cosine-zero-lr0.001-T50000",
    ],
}
FRACTIONS = (0.1, 0.2, 0.4, 0.6, 0.8, 0.9)


def _wsd_id(f: float, horizon: int) -> str:
    return f"wsd-F{f}-linear-lr0.001-T{horizon}"


def _horizon_errors(final: pd.Series, last: pd.DataFrame, horizon: int) -> dict:
    """Final-loss errors of the WSD family of one horizon, its worst error and predicted best F."""
    ids = [_wsd_id(f, horizon) for f in FRACTIONS]
    pairs = zip(FRACTIONS, ids, strict=True)
    err = {str(f): round(float(final[r] - last.loc[r, "loss"]), 4) for f, r in pairs}
    best = FRACTIONS[int(np.argmin([final[r] for r in ids]))]
    true_best = FRACTIONS[int(np.argmin([last.loc[r, "loss"] for r in ids]))]
    return {
        "error": err,
        "max_abs_error": max(abs(e) for e in err.values()),
        "best_F": best,
        "true_best_F": true_best,
    }


def cooldown_protocol(laws: list[str], starts: int | None) -> dict:
    """Fit each split, predict every WSD cooldown fraction at 50k steps (the test) and, as a check that
    nothing was tuned on it, the WSD families of the 15k/25k/35k horizons from the same fit."""
    wsd = {_wsd_id(f, 50000): f for f in COOLDOWN_TRUE}
    sqrt_id = "wsd-F0.2-1-sqrt-lr0.001-T50000"
    others = [_wsd_id(f, h) for h in (15000, 25000, 35000) for f in FRACTIONS]
    every = sorted({r for ids in COOLDOWN_SPLITS.values() for r in ids})
    curves = val_curves("schaipp-124m", [*every, *wsd, sqrt_id, *others])
    out: dict = {"true_final": {str(f): COOLDOWN_TRUE[f] for f in COOLDOWN_TRUE}, "true_best_F": 0.6}
    for split, train_ids in COOLDOWN_SPLITS.items():
        train, test = curves.split(train_ids)
        last = test.final().set_index("run_id")
        row: dict = {"train": train_ids}
        for name in laws:
            pred, info = fit_predict(name, train, test, starts)
            final = pred.groupby("run_id").last()["pred"]
            got = {str(f): round(float(final[r]), 4) for r, f in wsd.items()}
            err = {f: round(got[f] - out["true_final"][f], 4) for f in got}
            row[name] = {
                "pred_final": got,
                "error": err,
                "max_abs_error": max(abs(e) for e in err.values()),
                "best_F": float(min(got, key=got.get)),
                "pred_final_1sqrt_0.2": round(float(final[sqrt_id]), 4),
                "true_final_1sqrt_0.2": round(float(last.loc[sqrt_id, "loss"]), 4),
                "other_horizons": {str(h): _horizon_errors(final, last, h) for h in (15000, 25000, 35000)},
                "fit": info,
            }
        out[split] = row
    return out


def size_protocol(law: str, starts: int | None, config: dict, peak_lr: float | None) -> dict:
    """Fit all sizes but the largest, predict the largest; ``peak_lr`` keeps only runs of that peak LR
    (the sweep gives small models 2e-3 and large ones 1e-3/5e-4, and these laws treat LR as time); only
    runs of the sweep's usual batch (tokens per step) are used."""
    runs = datasets.load("schaipp-sizes").runs
    tokens = runs["tokens_per_step"].astype(float)
    keep = tokens == tokens.mode().iloc[0]  # 360M ran at twice the batch: per step it is another curve
    if peak_lr:
        keep &= np.isclose(runs["peak_lr"].astype(float), peak_lr)
    curves = val_curves("schaipp-sizes", list(runs.index[keep]), every=1000)
    sizes = curves.runs["n_params"].astype(float)
    largest = sizes.max()
    train, test = curves.split(list(sizes.index[sizes < largest]))
    pred, info = fit_predict(law, train, test, starts, **config)
    final = pred.groupby("run_id").last()["pred"]
    truth = test.final().set_index("run_id")["loss"]
    finals = {r: {"pred": round(float(final[r]), 4), "true": round(float(truth[r]), 4)} for r in final.index}
    out = {"target_n_params": int(largest), "peak_lr": peak_lr, "train_runs": train.run_ids}
    return {law: {**out, **metrics(pred, test), "final": finals, "fit": info}}


def quadratic_drop(
    lr: np.ndarray, steps: np.ndarray, warmup: int, C: float, beta: float, gamma: float
) -> np.ndarray:
    """The MPL drop sum straight from its definition: O(T) per point, O(T^2) per curve."""
    P, d = K.lr_area(lr), K.lr_increments(lr, warmup)
    eta = np.exp(np.maximum(np.log(np.maximum(lr, 1e-300)), K.LOG_LR_FLOOR))
    return np.array(
        [np.sum(d[:s] * (1 - (1 + C * eta[:s] ** -gamma * (P[s] - P[:s])) ** -beta)) for s in steps]
    )


def timing_protocol(laws: list[str], starts: int | None) -> dict:
    curves = datasets.load("mpl-400m").select(["cosine_72000", "constant_72000"])
    out = {}
    for name in laws:
        law = get_law(name)
        t0 = time.perf_counter()
        fit = fit_law(law, curves, starts=starts)
        fit_s = time.perf_counter() - t0
        law = get_law(name, **dict(fit.law_config))
        theta = np.array([fit.values[n] for n in law.param_names])
        design = build_design(law, curves)
        obj = Objective(law, design)
        u = obj.to_internal(theta)
        t0 = time.perf_counter()
        for k in range(5):  # a new theta each call: a law's cache must not serve a repeat
            obj.value_and_grad(u * (1.0 + 1e-9 * (k + 1)))
        eval_s = (time.perf_counter() - t0) / 5
        out[name] = {"fit_s": round(fit_s, 2), "objective_and_gradient_s": round(eval_s, 5)}
        if name == "multipower":
            run, shift = curves.run("cosine_72000"), law.shift  # official: causal sum at s+1, warmup rises
            steps = run.steps[run.steps > 0]
            lr = curves.lr_sequence("cosine_72000", int(steps.max()) + shift)
            t0 = time.perf_counter()
            ref = quadratic_drop(lr, steps + shift, 0 if shift else 2160, *theta[-3:])
            ref_s = time.perf_counter() - t0
            rows = np.flatnonzero(design.groups == "cosine_72000")
            (fast,) = K.mpl_drop(design.x["terms"], *theta[-3:])
            out[name].update(
                {
                    "quadratic_predict_only_s": round(ref_s, 4),
                    "speedup_vs_quadratic": round(ref_s / eval_s, 1),
                    "max_abs_loss_diff_vs_quadratic": float(np.abs(theta[3] * (fast[rows] - ref)).max()),
                    "n_terms": len(design.x["terms"]),
                }
            )
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--laws", default=",".join(CURVE_LAWS), help="comma-separated law names")
    ap.add_argument("--protocols", default="mpl,cooldown,size,timing")
    ap.add_argument("--sizes", default="25,100,400")
    ap.add_argument("--size-law", default="multipower-size")
    ap.add_argument("--size-config", default="{}", help='size-law options as JSON: {"scale_A": true}')
    ap.add_argument(
        "--size-peak-lr", type=float, default=1e-3, help="size protocol: runs of this peak LR only"
    )
    ap.add_argument("--starts", type=int, default=None, help="L-BFGS starts per fit (engine default)")
    ap.add_argument(
        "--no-reference-path", action="store_true", help="mpl: skip the reference code's fitting path"
    )
    args = ap.parse_args(argv)
    laws = [s for s in args.laws.split(",") if s]
    protocols = set(args.protocols.split(","))
    result: dict = {"laws": laws}
    t0 = time.perf_counter()
    if "mpl" in protocols:
        sizes = [int(s) for s in args.sizes.split(",")]
        result["mpl"] = mpl_protocol(laws, sizes, args.starts, not args.no_reference_path)
    if "cooldown" in protocols:
        result["cooldown"] = cooldown_protocol(laws, args.starts)
    if "size" in protocols:
        result["size"] = size_protocol(
            args.size_law, args.starts, json.loads(args.size_config), args.size_peak_lr
        )
    if "timing" in protocols:
        result["timing"] = timing_protocol(laws, args.starts)
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(result, indent=1, default=str))
    return result


if __name__ == "__main__":
    main()
