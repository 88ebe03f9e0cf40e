"""Static scaling laws against their papers: prints JSON with each published value beside ours.

    OMP_NUM_THREADS=1 python benchmarks/static_laws.py [--quick] [--only epoch,gadre,l2l,porian,lr]

Sections: Epoch's Chinchilla re-fit (240 points), a 4,000-resample bootstrap timed against a naive
per-resample SciPy loop (BFGS, finite-difference gradients, as Epoch did; timed on fewer resamples in the
same run, extrapolated: ``speedup`` is a ratio); Approach 2 on Epoch's points; Gadre et al.'s over-training
and downstream predictions (paper split: least squares as in the paper, and our Huber-on-log default);
loss-to-loss extrapolation across budgets (Brandfonbrener); Porian et al.'s exponents of N* ~ C^a; LR*
against the token horizon on the 124M WSD sweeps. Use 1 BLAS thread (L-BFGS-B slows down badly otherwise).
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from itertools import permutations

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import huber, logsumexp

from scalefit.errors import FitWarning
from scalefit.fitting.engine import fit_law
from scalefit.laws.chinchilla import HOFFMANN, ChinchillaLaw, natural_values, tokens_per_parameter
from scalefit.laws.downstream import DownstreamLaw
from scalefit.laws.kaplan import KaplanLaw
from scalefit.laws.loss_to_loss import LossToLossLaw, pair_runs
from scalefit.laws.optimal_lr import OptimalLRLaw, cell_optima
from scalefit.laws.overtraining import OvertrainingLaw
from scalefit.predict.chains import chain_downstream, translate_fit
from scalefit.predict.isoflop import isoflop_exponent
from scalefit.store import datasets

EPOCH = {
    "E": (1.8172, 1.769, 1.871),
    "A": (482.01, 285.2, 743.6),
    "B": (2085.43, 1042.4, 5810.3),
    "alpha": (0.3478, 0.317, 0.373),
    "beta": (0.3658, 0.331, 0.415),
}
GADRE = {
    "rpj": (640, [0.71, 0.73], [3.64, 0.05]),
    "c4_original": (80, [1.50, 4.30], [9.58, 0.14]),
    "rw_original": (320, [0.01, 1.62], [5.62, 2.94]),
}
SMALL = ["d=96_l=8_h=4", "d=512_l=8_h=4", "d=576_l=24_h=8", "d=1024_l=24_h=8"]


def quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)
        return fn(*args, **kwargs)


def timed_fit(law, data, **options):
    start = time.perf_counter()
    return quiet(fit_law, law, data, **options), time.perf_counter() - start


def naive_epoch_refits(data: pd.DataFrame, n: int, seed: int) -> float:
    """Seconds for ``n`` resamples refitted one by one: BFGS, finite-difference gradient, from Hoffmann."""
    log_n, log_d, log_y = np.log(data.N.to_numpy()), np.log(data.D.to_numpy()), np.log(data.loss.to_numpy())
    x0 = np.array([HOFFMANN[k] for k in ("a", "b", "e", "alpha", "beta")])
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    for _ in range(n):
        idx = rng.integers(0, len(log_y), len(log_y))

        def objective(p, idx=idx):
            terms = np.stack([p[0] - p[3] * log_n[idx], p[1] - p[4] * log_d[idx], np.full(len(idx), p[2])])
            return float(np.sum(huber(1e-3, logsumexp(terms, axis=0) - log_y[idx])))

        minimize(objective, x0, method="BFGS")
    return time.perf_counter() - start


def epoch_section(n_boot: int, n_naive: int) -> dict:
    data = datasets.load("chinchilla-epoch")
    data = data[data.epoch_fit].reset_index(drop=True)
    timed = [timed_fit(ChinchillaLaw(), data, bootstrap=b) for b in (0, 0, n_boot)]
    point, fit = timed[0][0], timed[2][0]
    t_boot = timed[2][1] - min(timed[0][1], timed[1][1])  # the bootstrap alone: total minus a point fit
    ours = natural_values(fit.values)
    boot = np.asarray(fit.bootstrap)
    natural = np.column_stack([np.exp(boot[:, :3]), boot[:, 3:]])
    draws = dict(zip(("A", "B", "E", "alpha", "beta"), natural.T, strict=True))
    params = {
        k: {"published": pub, "ours": [ours[k], *np.percentile(draws[k], [2.5, 97.5]).tolist()]}
        for k, pub in EPOCH.items()
    }
    a_draws = draws["beta"] / (draws["alpha"] + draws["beta"])
    t_naive = naive_epoch_refits(data, n_naive, seed=1)
    return {
        "n_points": len(data),
        "objective": point.objective,
        "objective_published_recheck": 1.0183e-3,
        "params [value, 2.5%, 97.5%]": params,
        "a=beta/(alpha+beta)": {
            "published": [0.513, 0.020],
            "ours [value, bootstrap SE]": [ours["a_exponent"], float(np.std(a_draws))],
        },
        "tokens_per_param_at_5.88e23": {
            "published": 18.4,
            "ours": float(tokens_per_parameter(fit.values, 5.88e23)),
        },
        "bootstrap": {
            "resamples": n_boot,
            "seconds": t_boot,
            "goal_seconds": 10.0,
            "naive_resamples_timed": n_naive,
            "naive_seconds_extrapolated": t_naive * n_boot / n_naive,
            "speedup": t_naive * n_boot / n_naive / t_boot,
        },
    }


def _rel_err_pct(pred: np.ndarray, truth: np.ndarray) -> list[float]:
    """Relative error of each prediction, in percent (3 decimals)."""
    return (100 * np.abs(pred - truth) / truth).round(3).tolist()


def gadre_dataset(runs: pd.DataFrame, dataset: str, n_boot: int) -> dict:
    target_m, pub_loss, pub_err = GADRE[dataset]
    d = runs[runs.dataset == dataset]
    train = d[(d.model.isin(SMALL) & (d.M == 20)) | ((d.model == SMALL[0]) & (d.M == 320))]
    target = pd.concat(
        [d[(d.model == "open_lm_1b") & (d.M == target_m)], d[(d.model == "open_lm_7b") & (d.M == 20)]]
    )
    err_train = pd.concat([train, d[(d.model == "open_lm_1b") & (d.M == 20)]])
    out = {
        "targets": [f"1.4B M={target_m:g}", "6.9B M=20"],
        "published_loss_rel_err_%": pub_loss,
        "published_err_rel_err_%": pub_err,
    }
    for objective in ("lsq", "huber_log"):
        loss_fit = quiet(
            fit_law,
            OvertrainingLaw(loss="loss_c4_val"),
            train,
            objective=objective,
            starts="all",
            bootstrap=n_boot,
            seed=0,
        )
        err_fit = quiet(
            fit_law,
            DownstreamLaw(loss="loss_c4_val", err="err_avg17"),
            err_train,
            objective=objective,
            starts="all",
            bootstrap=n_boot,
            seed=1,
        )
        chain = quiet(chain_downstream, loss_fit, err_fit, target)
        out[objective] = {
            "loss_rel_err_%": _rel_err_pct(chain.loss_pred.to_numpy(), target.loss_c4_val.to_numpy()),
            "err_rel_err_%": _rel_err_pct(chain.err_pred.to_numpy(), target.err_avg17.to_numpy()),
            "loss_95%_band": chain[["loss_lo", "loss_hi"]].round(4).to_numpy().tolist(),
            "err_95%_band": chain[["err_lo", "err_hi"]].round(4).to_numpy().tolist(),
            "truth_inside_err_band": (
                (chain.err_lo <= target.err_avg17.to_numpy()) & (target.err_avg17.to_numpy() <= chain.err_hi)
            ).tolist(),
            "values": {**dict(loss_fit.values), **dict(err_fit.values)},
        }
    return out


def gadre_section(n_boot: int) -> dict:
    runs = datasets.load("gadre-overtraining")
    return {ds: gadre_dataset(runs, ds, n_boot) for ds in GADRE}


def _mean_rel(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean(np.abs(pred - truth) / truth) * 100)


def l2l_section(starts: int) -> dict:
    """Per-dataset laws and shifted power laws fitted on budgets <= 1e19; errors on 2.2e19 and 4.84e19."""
    sweep = datasets.load("brandfonbrener-sweep").assign(run_id=lambda f: f["id"])
    held = sweep.iso_flop > 1.01e19
    laws, per_dataset = {}, {}
    for name, g in sweep.groupby("data"):
        train, test = g[g.iso_flop <= 1.01e19], g[g.iso_flop > 1.01e19]
        row = {}
        for form, law in (
            ("kaplan", KaplanLaw(loss="val_loss", n="params", d="tokens")),
            ("chinchilla", ChinchillaLaw(loss="val_loss", n="params", d="tokens")),
        ):
            fit = quiet(fit_law, law, train, starts=starts)
            row[form] = {
                "test_rel_err_%": _mean_rel(fit.predict(test).loss_pred.to_numpy(), test.val_loss.to_numpy()),
                "E": float(fit.values["E"]) if "E" in fit.values else float(np.exp(fit.values["e"])),
            }
            laws.setdefault(name, {})[form] = fit
        per_dataset[name] = row
    pairs = {}
    for src, dst in permutations(sorted(laws), 2):
        p = pair_runs(
            sweep[sweep.data == src],
            sweep[sweep.data == dst],
            loss0="val_loss",
            loss1="val_loss",
            on=("params", "tokens", "iso_flop"),
        )
        train, test = p[p.iso_flop <= 1.01e19], p[p.iso_flop > 1.01e19]
        e0, e1 = (laws[k]["kaplan"].values["E"] for k in (src, dst))
        mapping = quiet(fit_law, LossToLossLaw(e0=e0, e1=e1), train, starts=4)
        moved = translate_fit(laws[src]["kaplan"], mapping)
        frame = sweep[(sweep.data == dst) & held]
        pairs[f"{src}->{dst}"] = {
            "kappa": mapping.values["kappa"],
            "K": mapping.values["K"],
            "n_test": len(test),
            "map_rel_err_%": _mean_rel(mapping.predict(test).loss_pred.to_numpy(), test.loss1.to_numpy()),
            "translated_law_rel_err_%": _mean_rel(
                moved.predict(frame).loss_pred.to_numpy(), frame.val_loss.to_numpy()
            ),
            "direct_law_rel_err_%": per_dataset[dst]["kaplan"]["test_rel_err_%"],
        }
    summary = {
        k: float(np.mean([v[k] for v in pairs.values()]))
        for k in ("map_rel_err_%", "translated_law_rel_err_%", "direct_law_rel_err_%")
    }
    return {
        "fit_budgets": "<= 1e19",
        "test_budgets": [2.2e19, 4.84e19],
        "per_dataset": per_dataset,
        "pairs_train_to_train": pairs,
        "mean_over_pairs": summary,
    }


def porian_section(n_boot: int) -> dict:
    points, published = datasets.load("porian-isoflop"), datasets.load("porian-fits")
    out = {}
    for (src, label), g in points.groupby(["source_file", "config_label"]):
        owt = g.dataset.iloc[0] == "owt2"
        noise = {"sd_low": 0.01, "sd_high": 0.1, "at_high": 6.0} if owt else None
        fit = quiet(isoflop_exponent, g, n_boot=n_boot, noise=noise)
        pub = published[(published.source_file == src) & (published.config_label == label)].iloc[0]
        out[f"{g.dataset.iloc[0]}: {label}"] = {
            "published": [pub.n_exponent, pub["n_exponent_boot_p2.5"], pub["n_exponent_boot_p97.5"]],
            "ours_akima": [fit.exponent, *fit.ci],
            "ours_parabola (Approach 2)": quiet(
                isoflop_exponent, g, method="parabola", n_boot=n_boot, noise=noise
            ).exponent,
        }
    return out


def optimal_lr_section() -> dict:
    """LR*(token horizon) of the 124M WSD sweeps of Hägele/Schaipp (one size: LR* = c (D/1e10)^b)."""
    runs = datasets.load("schaipp-124m").runs.reset_index()
    runs = runs.assign(D=runs.total_steps * runs.tokens_per_step, N=runs.n_params)
    out = {}
    for family, g in runs[runs.decay_shape.isin(["linear"])].groupby("family"):
        law = OptimalLRLaw(size=False, loss="final_val_loss")
        cells = cell_optima(g, loss="final_val_loss", by=("D",))
        fit = quiet(fit_law, law, g)
        out[family] = {
            "lr_star_by_tokens": dict(zip(cells.D.astype(str), cells.lr_star.round(6), strict=True)),
            "b": fit.values["b"],
            "c (LR* at 1e10 tokens)": fit.values["c"],
        }
    return out


def approach2_section(n_boot: int) -> dict:
    """Chinchilla Approach 2 on Epoch's extracted points: each point joins the nearest of Hoffmann's nine
    isoFLOP budgets when within 20% in C (points off the profiles are left out)."""
    data = datasets.load("chinchilla-epoch")
    budgets = np.array([6e18, 1e19, 3e19, 6e19, 1e20, 3e20, 6e20, 1e21, 3e21])
    gap = np.log(data.C.to_numpy())[:, None] - np.log(budgets)[None, :]
    nearest = np.argmin(np.abs(gap), axis=1)
    on_profile = np.abs(gap[np.arange(len(data)), nearest]) < np.log(1.2)
    points = data.assign(budget=budgets[nearest])[on_profile & data.epoch_fit.to_numpy()]
    noise = {"sd_low": 0.01, "sd_high": 0.01}  # the colour-decoded losses carry quantisation error
    out = {"published_hoffmann_a": [0.49, 0.462, 0.534], "n_points": int(len(points))}
    for method in ("parabola", "akima"):
        fit = quiet(isoflop_exponent, points, budget="budget", method=method, n_boot=n_boot, noise=noise)
        out[f"ours_{method} [a, 2.5%, 97.5%]"] = [fit.exponent, *fit.ci]
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer resamples and starts")
    parser.add_argument("--only", default="epoch,gadre,l2l,porian,lr")
    args = parser.parse_args(argv)
    sections = set(args.only.split(","))
    q = args.quick
    result = {}
    if "epoch" in sections:
        result["epoch_chinchilla"] = epoch_section(400 if q else 4000, 10 if q else 40)
        result["chinchilla_approach2"] = approach2_section(200 if q else 1000)
    if "gadre" in sections:
        result["gadre_overtraining"] = gadre_section(200 if q else 1000)
    if "l2l" in sections:
        result["loss_to_loss"] = l2l_section(6 if q else 12)
    if "porian" in sections:
        result["porian_isoflop"] = porian_section(200 if q else 1000)
    if "lr" in sections:
        result["optimal_lr_schaipp_124m"] = optimal_lr_section()
    print(json.dumps(result, indent=1, default=float))
    return result


if __name__ == "__main__":
    main()
