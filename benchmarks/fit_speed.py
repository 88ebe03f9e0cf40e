"""Fit wall time per law per workload, each against a baseline timed in the same run (issue #16 item 5).

    python benchmarks/fit_speed.py                       # every line
    python benchmarks/fit_speed.py --quick               # a subset that finishes in a few minutes
    python benchmarks/fit_speed.py --only s124m_cooldown,epoch_chinchilla --out speed.json

Prints one JSON object. Every line times ``fit_law`` (engine defaults unless said) with
``time.perf_counter`` and reports ``{"workload", "law", "seconds", "baseline_seconds", "ratio":
seconds / baseline_seconds, "objective", "baseline_objective", "same_optimum", "bar_seconds",
"meets_bar"}``; ``same_optimum``: the engine's objective is within 1e-9 relative of the baseline's or
lower. Lines (``--only`` names):

- ``mpl400m_multipower``: multipower on mpl-400m fitted on {cosine_24000, constant_24000, wsdcon_9};
  baseline: the reference code's path (``scalefit.fitting.reference.reference_fit``); the test PredE
  (%, per curve then averaged, as benchmarks/lr_laws.py) of both on the other six curves.
- ``s124m_{cooldown,momentum,multipower}``: schaipp-124m, the constant run and the cosine-to-zero run
  of the 50k horizon (peak 1e-3), validation loss at every logged point, LR per step from the schedule.
- ``s124m_{law}_dense``: the same workload given the natural way: one row per step 0..last with the LR
  (``Curves.lr_sequence``), the loss NaN except at the evaluated steps; its time, the ratio to the
  sparse form (bar: within 20 %) and the largest relative difference of the fitted values.
- ``epoch_chinchilla``: chinchilla on chinchilla-epoch's 240 ``epoch_fit`` points, the full Hoffmann
  start grid (``starts="all"``).
- ``brandfonbrener_chinchilla``: chinchilla (val_loss, params, tokens) on the fineweb-edu-100b points
  of brandfonbrener-sweep (every budget), ``starts="all"``.
- ``s124m_cooldown_bootstrap200``: ``bootstrap=200`` of cooldown on the 124M workload (the whole call,
  point fit included).
- ``per_step_cooldown``: a per-step log (two runs of 30k steps, constant and cosine, a loss at every
  step from the momentum law with 1 % noise) fitted by cooldown with the engine's default
  ``max_points`` (each run thinned to ``MAX_POINTS`` evenly spaced points), against the same fit at
  every point (``max_points=None``); both times, the largest relative difference of the fitted values.
- ``api_vs_cli_momentum``: the same momentum fit (mpl-400m's training curves) by ``sf.fit`` in a plain
  ``python -c`` process and by ``scalefit fit``, each a fresh process with no BLAS thread variable in
  its environment, three of each; medians, their ratio (bar: within 20 %) and both objectives.

Baselines other than the reference path: "a plain per-start SciPy loop": the law's ``Objective`` on
``build_design(law, data)`` minimised by ``scipy.optimize.minimize(method="L-BFGS-B", jac=True)`` (the
engine's tolerances) from every start the engine uses (``start_grid`` + ``choose_starts``), one after
another, no screening, best kept; for profiled laws every combination of ``law.profile()`` is looped.
The bootstrap's baseline adds one L-BFGS-B refit per resample from the best fit (the engine's group
resample weights). With ``--quick`` the per-start baselines of the slowest laws and the API/CLI line
are skipped, and the chinchilla grid and the bootstrap loops are timed on a subset and extrapolated
(listed under ``"quick"``). BLAS is limited to one thread (set here before numpy loads, and by
threadpoolctl around every timed call, as the engine does): the engine's speed depends on it.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # tiny L-BFGS problems: BLAS threads only contend

import argparse  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable, Mapping  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy.optimize import minimize  # noqa: E402
from threadpoolctl import threadpool_info, threadpool_limits  # noqa: E402

from scalefit.errors import FitWarning  # noqa: E402
from scalefit.fitting.bootstrap import group_counts  # noqa: E402
from scalefit.fitting.design import build_design  # noqa: E402
from scalefit.fitting.engine import fit_law  # noqa: E402
from scalefit.fitting.local import choose_starts, start_grid  # noqa: E402
from scalefit.fitting.objective import Objective  # noqa: E402
from scalefit.fitting.reference import reference_fit  # noqa: E402
from scalefit.fitting.result import Fit  # noqa: E402
from scalefit.laws import get_law  # noqa: E402
from scalefit.laws.base import Law  # noqa: E402
from scalefit.store import datasets  # noqa: E402
from scalefit.store.curves import Curves  # noqa: E402

MPL_TRAIN = ["cosine_24000", "constant_24000", "wsdcon_9"]
S124M_TRAIN = ["constant-lr0.001-T50000", "cosine-zero-lr0.001-T50000"]
L2L_DATASET = "fineweb-edu-100b"
N_BOOT = 200
SAME_RTOL = 1e-9
LSQ_OPTIONS = {"maxiter": 3000, "ftol": 1e-15, "gtol": 1e-12, "maxcor": 20}  # as local.local_fit
BARS = {  # seconds, issue #16
    "mpl400m_multipower": 5.0,
    "s124m_cooldown": 3.0,
    "s124m_momentum": 3.0,
    "s124m_multipower": 5.0,
    "epoch_chinchilla": 2.0,
    "s124m_cooldown_bootstrap200": 60.0,
}
DENSE_BAR = 1.2  # dense-NaN form: within 20 % of the sparse form's time
API_CLI_BAR = 1.2  # sf.fit in a plain python process and `scalefit fit`: within 20 % of each other
API_CLI_REPEATS = 3  # processes timed per side (the median is reported)
API_CLI_RUNS = ",".join(MPL_TRAIN)
LINES = (
    "mpl400m_multipower",
    "s124m_cooldown",
    "s124m_momentum",
    "s124m_multipower",
    "s124m_cooldown_dense",
    "s124m_momentum_dense",
    "s124m_multipower_dense",
    "epoch_chinchilla",
    "brandfonbrener_chinchilla",
    "s124m_cooldown_bootstrap200",
    "api_vs_cli_momentum",
    "per_step_cooldown",
)
QUICK_SKIP_BASELINE = ("s124m_multipower",)  # per-start baselines skipped with --quick
QUICK_SKIP = ("api_vs_cli_momentum",)  # lines skipped with --quick (six python processes)
QUICK_SUBSET = 200  # --quick: chinchilla grid starts / bootstrap resamples timed in the baseline loops


def quiet(fn: Callable, *args: object, **kwargs: object) -> object:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)
        return fn(*args, **kwargs)


def timed_fit(law: Law, data: Curves | pd.DataFrame, **options: object) -> tuple[Fit, float]:
    t0 = time.perf_counter()
    fit = quiet(fit_law, law, data, progress=False, **options)
    return fit, time.perf_counter() - t0


def machine() -> dict:
    """CPU count, BLAS libraries and their threads, the thread env vars."""
    env = {k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    blas = [
        {k: info.get(k) for k in ("internal_api", "num_threads", "version", "threading_layer")}
        for info in threadpool_info()
    ]
    return {
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "blas": blas,
        "env": env,
        "blas_threads_note": "one BLAS thread: env vars set before numpy loads, threadpoolctl around fits",
    }


# -- workloads ---------------------------------------------------------------------------------------
def s124m_sparse() -> Curves:
    """The 124M cooldown protocol's training curves: validation loss at every logged point, LR from the
    schedule (per step)."""
    curves = datasets.load("schaipp-124m")
    ev = curves.evals
    ev = ev[(ev["dataset"] == "val") & ev["run_id"].isin(S124M_TRAIN)]
    frame = ev.rename(columns={"eval_loss": "loss"})[["run_id", "step", "loss"]].assign(lr=np.nan)
    runs = curves.runs.loc[S124M_TRAIN][["schedule", "n_params", "warmup_steps"]]
    return Curves.from_frame(frame, runs=runs.reset_index())


def s124m_dense(sparse: Curves) -> Curves:
    """The same curves the natural way: one row per step 0..last with its LR, loss NaN where not evaluated."""
    parts = []
    for run_id in sparse.run_ids:
        rc = sparse.run(run_id)
        n = int(rc.steps.max()) + 1
        loss = np.full(n, np.nan)
        loss[rc.steps] = rc.loss
        lr = sparse.lr_sequence(run_id, n)
        parts.append(pd.DataFrame({"run_id": run_id, "step": np.arange(n), "lr": lr, "loss": loss}))
    runs = sparse.runs[["n_params", "warmup_steps"]].reset_index()
    return Curves.from_frame(pd.concat(parts, ignore_index=True), runs=runs)


def per_step_log(steps: int = 30000) -> Curves:
    """Two runs (constant, cosine to 10 %) logged at every step from 100 on: the momentum law at
    published-like values with 1 % log-normal noise (seeded)."""
    specs = {
        "constant": f"constant:peak=6e-4,steps={steps},warmup=500",
        "cosine": f"cosine:peak=6e-4,steps={steps},warmup=500,final=0.1",
    }
    frames = [
        pd.DataFrame({"run_id": r, "step": np.arange(100, steps), "lr": np.nan, "loss": 1.0, "schedule": s})
        for r, s in specs.items()
    ]
    curves = Curves.from_frame(pd.concat(frames, ignore_index=True))
    law = get_law("momentum")
    loss = law.predict(np.array([2.8, 0.7, 0.5, 0.4]), build_design(law, curves, predict=True))
    loss = loss * np.exp(0.01 * np.random.default_rng(0).standard_normal(loss.size))
    return Curves.from_frame(curves.to_frame().assign(loss=loss))


def per_step_line() -> dict:
    data = per_step_log()
    law = get_law("cooldown")
    fit, seconds = timed_fit(law, data)
    full, full_s = timed_fit(law, data, max_points=None)
    a = np.array([full.values[k] for k in full.param_names])
    b = np.array([fit.values[k] for k in full.param_names])
    return {
        "workload": "per-step log, 2 runs x 30k steps (momentum law + 1 % noise)",
        "law": "cooldown",
        "seconds": round(seconds, 3),
        "n_points": fit.data_summary["n_points"],
        "baseline": "every point (max_points=None)",
        "baseline_seconds": round(full_s, 3),
        "baseline_n_points": full.data_summary["n_points"],
        "ratio": round(seconds / full_s, 4),
        "same_config": dict(fit.law_config) == dict(full.law_config),
        "max_rel_diff_values": float(np.max(np.abs(a - b) / np.maximum(np.abs(a), 1e-300))),
    }


def epoch_points() -> pd.DataFrame:
    data = datasets.load("chinchilla-epoch")
    return data[data.epoch_fit].reset_index(drop=True)


def l2l_points() -> pd.DataFrame:
    sweep = datasets.load("brandfonbrener-sweep")
    return sweep[sweep.data == L2L_DATASET].reset_index(drop=True)


# -- baselines ---------------------------------------------------------------------------------------
def profile_combos(law: Law) -> list[dict[str, object]]:
    """Every combination of ``law.profile()`` (one empty combination when nothing is profiled)."""
    prof = law.profile()
    return [dict(zip(prof, vals, strict=True)) for vals in itertools.product(*prof.values())] or [{}]


def _objective_of(law: Law, data: Curves | pd.DataFrame) -> Objective:
    return Objective(law, quiet(build_design, law, data))


def _minimize(obj: Objective, u0: np.ndarray, weights: np.ndarray | None = None) -> tuple[float, np.ndarray]:
    lo, hi = obj.bound_arrays()
    res = minimize(
        obj.value_and_grad,
        np.clip(u0, lo, hi),
        args=(weights,),
        jac=True,
        method="L-BFGS-B",
        bounds=obj.bounds(),
        options=LSQ_OPTIONS,
    )
    return float(res.fun), np.asarray(res.x, dtype=float)


def per_start_loop(
    law: Law, data: Curves | pd.DataFrame, starts: object = None, limit: int | None = None
) -> dict:
    """The plain per-start SciPy loop over every profiled combination; ``limit``: time only the first
    ``limit`` starts of each combination (a seeded sample) and extrapolate to all of them."""
    t0 = time.perf_counter()
    best = (math.inf, None, None)
    n_total = n_run = 0
    with threadpool_limits(limits=1, user_api="blas"):
        for combo in profile_combos(law):
            law_k = law.replace(**combo) if combo else law
            obj = _objective_of(law_k, data)
            chosen = choose_starts(obj, start_grid(obj, 0), starts, 0)
            n_total += len(chosen)
            if limit is not None and len(chosen) > limit:
                pick = np.random.default_rng(0).choice(len(chosen), size=limit, replace=False)
                chosen = chosen[np.sort(pick)]
            n_run += len(chosen)
            for u0 in chosen:
                fun, u = _minimize(obj, u0)
                if fun < best[0]:
                    best = (fun, u, obj)
    seconds = time.perf_counter() - t0
    out = {"baseline_seconds": seconds * n_total / n_run, "baseline_objective": best[0]}
    out["baseline_starts"] = n_total
    if n_run < n_total:
        out["baseline_extrapolated_from_starts"] = n_run
        out["baseline_seconds_timed"] = seconds
    out["_best"] = best
    return out


def bootstrap_loop(best: tuple, n: int, limit: int | None) -> dict:
    """One L-BFGS-B refit per group resample (the engine's resample weights) from the best fit."""
    _, u_hat, obj = best
    counts, gidx = group_counts(obj.design.groups, n, 0)
    k = n if limit is None else min(n, limit)
    t0 = time.perf_counter()
    with threadpool_limits(limits=1, user_api="blas"):
        for row in counts[:k]:
            _minimize(obj, u_hat, obj.w * row[gidx])
    seconds = time.perf_counter() - t0
    return {"seconds": seconds * n / k, "resamples_timed": k}


# -- lines -------------------------------------------------------------------------------------------
def _row(workload: str, law: str, fit: Fit, seconds: float, base: dict | None) -> dict:
    row = {
        "workload": workload,
        "law": law,
        "seconds": round(seconds, 3),
        "objective": float(fit.diagnostics["objective"]),
        "n_starts": fit.diagnostics.get("n_starts"),
        "config": dict(fit.law_config),
    }
    if base is not None:
        b = {k: v for k, v in base.items() if not k.startswith("_")}
        row.update(b)
        row["baseline_seconds"] = round(b["baseline_seconds"], 3)
        row["ratio"] = round(seconds / b["baseline_seconds"], 4)
        obj, ref = row["objective"], b["baseline_objective"]
        row["same_optimum"] = bool(obj <= ref + SAME_RTOL * abs(ref))
    else:
        row.update({"baseline_seconds": None, "ratio": None, "baseline_objective": None})
        row["same_optimum"] = None
    return row


def _bar(row: dict, name: str) -> dict:
    bar = BARS.get(name)
    row["bar_seconds"] = bar
    row["meets_bar"] = None if bar is None else bool(row["seconds"] <= bar)
    return row


def pred_e(law: Law, theta: np.ndarray, test: Curves) -> float:
    """Test PredE in %: relative error per point, averaged per curve, then over curves (lr_laws.py)."""
    design = build_design(law, test, predict=True)
    pred = pd.DataFrame({**design.keys, "pred": law.predict(theta, design)})
    df = pred.merge(test.frame[["run_id", "step", "loss"]], on=["run_id", "step"])
    df = df[np.isfinite(df["loss"])]
    rel = np.abs(df["pred"] - df["loss"]) / df["loss"]
    return round(float(rel.groupby(df["run_id"]).mean().mean() * 100), 4)


def mpl_line() -> dict:
    train, test = datasets.load("mpl-400m").split(MPL_TRAIN)
    law = get_law("multipower")
    fit, seconds = timed_fit(law, train)
    t0 = time.perf_counter()
    with threadpool_limits(limits=1, user_api="blas"):
        ref = reference_fit(train)
    ref_s = time.perf_counter() - t0
    obj = _objective_of(law, train)
    ref_theta = np.array([ref[n] for n in law.param_names])
    ref_obj = obj.value_and_grad(obj.to_internal(ref_theta))[0]
    base = {"baseline": "reference_fit", "baseline_seconds": ref_s, "baseline_objective": ref_obj}
    row = _row("mpl-400m", "multipower", fit, seconds, base)
    theta = np.array([fit.values[n] for n in law.param_names])
    row["pred_e_pct"] = pred_e(law, theta, test)
    row["baseline_pred_e_pct"] = pred_e(law, ref_theta, test)
    row["same_optimum_note"] = "the reference path stops early by design: a higher objective is expected"
    return row


API_SCRIPT = """
import json, sys
import scalefit as sf
curves = sf.datasets.load("mpl-400m").select(sys.argv[1].split(","))
fit = sf.fit(curves, law="momentum")
open(sys.argv[2], "w").write(json.dumps(fit.to_dict()))
"""


def _process_seconds(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    return time.perf_counter() - t0


def api_vs_cli_line() -> dict:
    """``sf.fit`` in a plain ``python`` process against ``scalefit fit``, the same momentum fit on
    mpl-400m's training curves, each a fresh process (imports included) with no BLAS thread variable
    in its environment; the median of ``API_CLI_REPEATS`` each, and their objectives."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
    }
    env["TQDM_DISABLE"] = "1"
    with tempfile.TemporaryDirectory() as tmp:
        api_json, cli_json = os.path.join(tmp, "api.json"), os.path.join(tmp, "cli.json")
        api_cmd = [sys.executable, "-c", API_SCRIPT, API_CLI_RUNS, api_json]
        cli = os.path.join(os.path.dirname(sys.executable), "scalefit")  # the console script
        cli_cmd = [cli, "fit", "mpl-400m", "--law", "momentum"]
        cli_cmd += ["--runs", API_CLI_RUNS, "--out", cli_json]
        api_s, cli_s = [], []
        for _ in range(API_CLI_REPEATS):
            api_s.append(_process_seconds(api_cmd, env))
            cli_s.append(_process_seconds(cli_cmd, env))
        objectives = [json.load(open(f))["diagnostics"]["objective"] for f in (api_json, cli_json)]
    api_m, cli_m = statistics.median(api_s), statistics.median(cli_s)
    ratio = max(api_m, cli_m) / min(api_m, cli_m)
    return {
        "workload": "mpl-400m training curves, one process per fit",
        "law": "momentum",
        "seconds": round(api_m, 3),
        "baseline": "scalefit fit (CLI)",
        "baseline_seconds": round(cli_m, 3),
        "ratio": round(api_m / cli_m, 4),
        "api_seconds_each": [round(x, 3) for x in api_s],
        "cli_seconds_each": [round(x, 3) for x in cli_s],
        "objective": objectives[0],
        "baseline_objective": objectives[1],
        "same_optimum": objectives[0] == objectives[1],
        "bar": f"the slower within {API_CLI_BAR:g} x the faster",
        "meets_bar": bool(ratio <= API_CLI_BAR),
    }


class Runner:
    """Runs the requested lines, caching the sparse 124M fits the dense lines compare against."""

    def __init__(self, quick: bool) -> None:
        self.quick = quick
        self._sparse: Curves | None = None
        self._fits: dict[str, tuple[Fit, float]] = {}
        self._best: dict[str, tuple] = {}

    @property
    def sparse(self) -> Curves:
        if self._sparse is None:
            self._sparse = s124m_sparse()
        return self._sparse

    def _sparse_fit(self, name: str) -> tuple[Fit, float]:
        if name not in self._fits:
            self._fits[name] = timed_fit(get_law(name), self.sparse)
        return self._fits[name]

    def s124m(self, name: str, line: str) -> dict:
        fit, seconds = self._sparse_fit(name)
        base = None
        if not (self.quick and line in QUICK_SKIP_BASELINE):
            loop = per_start_loop(get_law(name), self.sparse)
            self._best[name] = loop["_best"]
            base = {"baseline": "per-start L-BFGS-B loop", **loop}
        row = _row("schaipp-124m constant+cosine0 50k (val)", name, fit, seconds, base)
        row["n_points"] = int(fit.data_summary.get("n_points", 0)) if fit.data_summary else None
        return row

    def dense(self, name: str) -> dict:
        sparse_fit, sparse_s = self._sparse_fit(name)
        data = s124m_dense(self.sparse)
        fit, seconds = timed_fit(get_law(name), data)
        a = np.array([sparse_fit.values[k] for k in sparse_fit.param_names])
        b = np.array([fit.values[k] for k in sparse_fit.param_names])
        ratio = seconds / sparse_s
        return {
            "workload": "schaipp-124m constant+cosine0 50k (val), dense NaN rows",
            "law": name,
            "seconds": round(seconds, 3),
            "n_rows": len(data.frame),
            "sparse_seconds": round(sparse_s, 3),
            "ratio_to_sparse": round(ratio, 4),
            "objective": float(fit.diagnostics["objective"]),
            "sparse_objective": float(sparse_fit.diagnostics["objective"]),
            "same_config": dict(fit.law_config) == dict(sparse_fit.law_config),
            "max_rel_diff_values": float(np.max(np.abs(a - b) / np.maximum(np.abs(a), 1e-300))),
            "bar_ratio_to_sparse": DENSE_BAR,
            "meets_bar": bool(ratio <= DENSE_BAR),
        }

    def table(self, workload: str, data: pd.DataFrame, law: Law) -> dict:
        fit, seconds = timed_fit(law, data, starts="all")
        limit = QUICK_SUBSET if self.quick else None
        loop = per_start_loop(law, data, starts="all", limit=limit)
        row = _row(workload, law.name, fit, seconds, {"baseline": "per-start L-BFGS-B loop", **loop})
        row["n_points"] = len(data)
        if "baseline_extrapolated_from_starts" in loop:
            row["same_optimum_note"] = "baseline objective from the timed subset of starts only"
        return row

    def bootstrap(self) -> dict:
        law = get_law("cooldown")
        fit, seconds = timed_fit(law, self.sparse, bootstrap=N_BOOT)
        loop = per_start_loop(law, self.sparse)
        limit = QUICK_SUBSET // 10 if self.quick else None
        boot = bootstrap_loop(loop["_best"], N_BOOT, limit)
        base = {
            "baseline": f"per-start L-BFGS-B loop + {N_BOOT} per-resample L-BFGS-B refits",
            **loop,
            "baseline_point_seconds": round(loop["baseline_seconds"], 3),
            "baseline_bootstrap_seconds": round(boot["seconds"], 3),
            "baseline_resamples_timed": boot["resamples_timed"],
        }
        base["baseline_seconds"] = loop["baseline_seconds"] + boot["seconds"]
        row = _row(f"schaipp-124m cooldown, bootstrap={N_BOOT}", "cooldown", fit, seconds, base)
        row["bootstrap_shape"] = list(np.asarray(fit.bootstrap).shape)
        return row

    def run(self, line: str) -> dict:
        t0 = time.perf_counter()
        if line == "mpl400m_multipower":
            row = mpl_line()
        elif line.endswith("_dense"):
            row = self.dense(line.split("_")[1])
        elif line == "s124m_cooldown_bootstrap200":
            row = self.bootstrap()
        elif line == "api_vs_cli_momentum":
            row = api_vs_cli_line()
        elif line == "per_step_cooldown":
            row = per_step_line()
        elif line.startswith("s124m_"):
            row = self.s124m(line.split("_")[1], line)
        elif line == "epoch_chinchilla":
            row = self.table("chinchilla-epoch (240 points)", epoch_points(), get_law("chinchilla"))
        else:
            law = get_law("chinchilla", loss="val_loss", n="params", d="tokens")
            row = self.table(f"brandfonbrener-sweep {L2L_DATASET}", l2l_points(), law)
        if "bar_ratio_to_sparse" not in row and "meets_bar" not in row:
            row = _bar(row, line)
        row["line_wall_s"] = round(time.perf_counter() - t0, 2)
        return row


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a subset that finishes in a few minutes")
    ap.add_argument("--only", default=None, help=f"comma-separated lines of {','.join(LINES)}")
    ap.add_argument("--out", default=None, help="also write the JSON to this file")
    args = ap.parse_args(argv)
    lines = list(LINES) if args.only is None else [s for s in args.only.split(",") if s]
    unknown = [s for s in lines if s not in LINES]
    if unknown:
        ap.error(f"unknown lines {unknown}; use {','.join(LINES)}")
    skipped = [s for s in lines if args.quick and args.only is None and s in QUICK_SKIP]
    runner = Runner(args.quick)
    t0 = time.perf_counter()
    result: dict = {
        "machine": machine(),
        "quick": {
            "on": args.quick,
            "lines_skipped": skipped,
            "baselines_skipped": [s for s in QUICK_SKIP_BASELINE if args.quick and s in lines],
            "chinchilla_baseline_starts_timed": QUICK_SUBSET if args.quick else "all",
            "bootstrap_baseline_resamples_timed": QUICK_SUBSET // 10 if args.quick else N_BOOT,
        },
        "bars": {
            **{k: f"<= {v:g} s" for k, v in BARS.items()},
            "s124m_*_dense": f"<= {DENSE_BAR:g} x the sparse form's time",
        },
        "same_optimum_rtol": SAME_RTOL,
        "lines": {},
    }
    for line in lines:
        if line not in skipped:
            print(f"fit_speed: {line} ...", file=sys.stderr, flush=True)
            result["lines"][line] = runner.run(line)
            print(
                f"fit_speed: {json.dumps(result['lines'][line], default=_json)}", file=sys.stderr, flush=True
            )
            result["wall_s"] = round(time.perf_counter() - t0, 1)
            write(result, args.out)  # partial results survive an interrupted run
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(result, indent=1, default=_json))
    write(result, args.out)
    return result


def _json(value: object) -> object:
    """JSON for what ``json`` does not know: mappings (law configs) as dicts, numbers as floats."""
    return dict(value) if isinstance(value, Mapping) else float(value)


def write(result: dict, path: str | None) -> None:
    if path:
        with open(path, "w") as fh:
            fh.write(json.dumps(result, indent=1, default=_json) + "\n")


if __name__ == "__main__":
    main()
