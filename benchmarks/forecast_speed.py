"""Forecast wall time with its fits in worker processes, against the same forecast run serially in the
same run (a ratio), and whether the two forecasts are the same.

    python benchmarks/forecast_speed.py                                   # 2 workers, 3 protocols
    python benchmarks/forecast_speed.py --jobs 4 --protocols s124m-horizon --out speed.json

Prints one JSON object: ``{"jobs", "cpus", "lines": [{"protocol", "n_fits", "serial_seconds",
"parallel_seconds", "speedup": serial / parallel, "same_forecast"}]}``. Each line builds one protocol
of ``benchmarks/blind.py`` and times ``sf.forecast`` with its default members, first with the built-in
``map`` (the baseline), then with ``map_fn`` a spawned ``ProcessPoolExecutor(jobs).map`` started (and
its workers warmed by one task each) before the clock starts: the pool is a user's to keep across
forecasts. ``same_forecast``: the predictions, bands, fold errors and weights are identical. The
speedup is bounded by the cores (``cpus``) and by the slowest single fit (a fold's ``multipower``
refit), which one worker runs alone at the end.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # tiny L-BFGS problems: BLAS threads only contend

import argparse  # noqa: E402
import json  # noqa: E402
import multiprocessing  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402

import pandas as pd  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import blind  # noqa: E402

from scalefit.errors import ExtrapolationWarning, FitWarning  # noqa: E402
from scalefit.predict.forecast import Forecast, ParallelMap, forecast  # noqa: E402
from scalefit.store.curves import Curves  # noqa: E402

DEFAULT_PROTOCOLS = ("mpl-400m", "s124m-cooldown-T50000", "cooldown-152m")


def _timed(
    train: Curves | pd.DataFrame, targets: Curves | pd.DataFrame, map_fn: ParallelMap | None
) -> tuple[Forecast, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)
        warnings.simplefilter("ignore", ExtrapolationWarning)
        t0 = time.perf_counter()
        fc = forecast(train, targets, level=blind.LEVEL, map_fn=map_fn)
        return fc, time.perf_counter() - t0


def _same(a: Forecast, b: Forecast) -> bool:
    try:
        pd.testing.assert_frame_equal(a.predict(), b.predict())
        pd.testing.assert_frame_equal(a.errors, b.errors)
    except AssertionError:
        return False
    return a.weights == b.weights and a.band == b.band


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    ap.add_argument("--protocols", default=",".join(DEFAULT_PROTOCOLS), help="blind.py protocol names")
    ap.add_argument("--out", default=None, help="also write the JSON to this file")
    args = ap.parse_args(argv)
    if args.jobs < 2:
        ap.error("--jobs must be at least 2 (1 is the baseline)")
    known = {p.name: p for p in blind.protocols()}
    names = args.protocols.split(",")
    unknown = sorted(set(names) - set(known))
    if unknown:
        ap.error(f"unknown protocols {unknown}; use {','.join(known)}")
    lines = []
    with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(abs, range(args.jobs)))  # start every worker before timing
        for name in names:
            train, test = known[name].build()
            targets = blind.hide(test, "loss")
            print(f"forecast_speed: {name} ...", file=sys.stderr, flush=True)
            serial, t_serial = _timed(train, targets, None)
            parallel, t_parallel = _timed(train, targets, pool.map)
            n_fits = (len(serial.folds) + 1) * serial.scores.shape[0]
            lines.append(
                {
                    "protocol": name,
                    "n_fits": int(n_fits),
                    "serial_seconds": round(t_serial, 2),
                    "parallel_seconds": round(t_parallel, 2),
                    "speedup": round(t_serial / t_parallel, 3),
                    "same_forecast": _same(serial, parallel),
                }
            )
            print(f"forecast_speed: {json.dumps(lines[-1])}", file=sys.stderr, flush=True)
    result = {"jobs": args.jobs, "cpus": os.cpu_count(), "lines": lines}
    blind.emit(result, args.out)
    return result


if __name__ == "__main__":
    main()
