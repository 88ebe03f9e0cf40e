"""Data -> ``Design``: where data enters a fit. A law declares the inputs it reads (``Law.features()``);
this module builds them and hands them to the law.

- Curve laws (``CurveFeatures``): every run of ``Curves`` becomes a ``CurveRun`` (dense LR of updates
  ``0..n-1`` up to the last logged step plus ``shift``, warmup end, logged steps and losses, run meta).
  The design points of a fit are the steps with an observed loss: a NaN loss (a row logged for its LR
  only, between evaluations) is not observed and costs nothing, while the LR of every step enters the
  cumulative sums. Steps with no LR area yet (``S1 = P[s + shift] = 0``) are left out and listed in
  ``Design.excluded``.
  The design has ``S1`` at every kept step plus the law's own arrays (``CurveLaw.curve_x``), groups by
  run, keys (run_id, step) and ``meta["n_params"]`` per run.
- Table laws (``TableFeatures``): a DataFrame, or ``Curves`` through its ``final()`` rows
  (``scalefit.conventions.static_table``), checked for the declared columns, goes to
  ``TableLaw.table_design``.

Without ``predict`` a curve design is checked for data that cannot identify the law (no finite loss,
too few points, no LR decrease where the law has an LR-drop term) and then by ``Law.check_fit``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from scalefit.conventions import static_table
from scalefit.errors import ConfigError, DataError, FitError
from scalefit.laws._kernels import lr_area, lr_increments
from scalefit.laws.base import CurveFeatures, CurveLaw, CurveRun, Design, Law, TableLaw
from scalefit.store.curves import Curves, RunCurve

__all__ = ["DIVERGED", "build_design", "curve_runs"]


def _warmup_of(rc: RunCurve, lr: np.ndarray) -> int:
    """Warmup length: the runs table, else the schedule, else the leading non-decreasing LR prefix."""
    for source in (rc.meta.get("warmup_steps"), getattr(rc.schedule, "warmup_steps", None)):
        if source is not None and np.isfinite(float(source)):
            return int(source)
    falls = np.flatnonzero(np.diff(lr) < 0)
    return int(falls[0]) if falls.size else int(lr.size)


def curve_runs(curves: Curves, law_name: str, *, lead: int = 0, diverged: str = "exclude") -> list[CurveRun]:
    """Every run of ``curves`` with logged steps, as a ``CurveRun`` over all its logged steps: the dense
    LR before the last one, plus ``lead`` steps after it (``lead=1``: the LR of that step too).

    Diverged runs (runs-table ``status`` 'diverged': what the trainer records on a NaN/inf training loss,
    or an infinite logged loss; a NaN cell of an imported log is "not observed", not a divergence):
    ``diverged="exclude"`` (default) marks every loss of theirs +inf (observed, non-finite), so none of
    their rows is fitted and the engine's exclusion warning names them (reason "non-finite loss");
    ``diverged="prefix"`` keeps their finite losses before the first non-finite one (the exploding
    prefix included) and marks the rest so.
    """
    if diverged not in ("exclude", "prefix"):
        raise ConfigError("unknown diverged-run rule", field="diverged", value=diverged, fix="exclude|prefix")
    out = []
    for run_id in curves.run_ids:
        rc = curves.run(run_id)
        steps, loss = rc.steps.astype(np.int64), rc.loss.astype(float)
        if steps.size == 0:
            continue
        if rc.meta.get("status") == "diverged":
            bad = np.flatnonzero(~np.isfinite(loss))
            cut = 0 if diverged == "exclude" else (int(bad[0]) if bad.size else loss.size)
            loss = np.where(np.arange(loss.size) < cut, loss, np.inf)  # observed, not fitted
        lr = np.asarray(curves.lr_sequence(run_id, max(int(steps.max()), 1) + int(lead)), dtype=float)
        if np.any(lr < 0) or not np.all(np.isfinite(lr)) or not np.any(lr > 0):
            raise DataError(
                f"{law_name} needs a finite, non-negative LR that is positive somewhere",
                run_id=run_id,
                column="lr",
                value=float(lr.min()) if lr.size else None,
                fix="check the run's schedule or logged LR",
            )
        out.append(CurveRun(run_id, lr, _warmup_of(rc, lr), steps, loss, dict(rc.meta)))
    return out


def _check_meta(law: Law, features: CurveFeatures, run: CurveRun) -> None:
    for key, what in features.meta:
        value = run.meta.get(key)
        ok = value is not None and np.isfinite(float(value)) and float(value) > 0
        if not ok:
            raise DataError(
                f"{law.name} needs {what} of every run",
                run_id=run.run_id,
                column=key,
                value=value,
                fix=f"give {key} in the runs table",
            )


def _check_identifiable(law: Law, runs: Sequence[CurveRun], has_drop: bool, needs_drop: bool) -> None:
    n_finite = sum(int(np.isfinite(r.loss).sum()) for r in runs)
    n_params = len(law.parameters())
    if n_finite == 0:
        raise FitError(
            f"{law.name}: no finite loss to fit", column="loss", fix="give curves with finite losses"
        )
    if n_finite <= n_params:
        raise FitError(
            f"{law.name}: too few points ({n_finite}) for {n_params} parameters",
            column="loss",
            value=n_finite,
            fix="give longer or more curves",
        )
    if needs_drop and not has_drop:
        raise FitError(
            f"{law.name}: no LR decrease in the fitting curves, so the LR-drop term is not identifiable",
            column="lr",
            fix="add a curve whose LR decays (cosine, WSD or a step drop)",
        )


DIVERGED = "diverged (status 'diverged'): left out of the fit (diverged='prefix' keeps its finite prefix)"


def thin(observed: np.ndarray, max_points: int) -> np.ndarray:
    """``observed`` (a mask over a run's rows) with at most ``max_points`` rows kept, evenly spaced
    by position among the observed ones, the first and the last always kept."""
    idx = np.flatnonzero(observed)
    if idx.size <= max_points:
        return observed
    keep = np.zeros_like(observed)
    keep[idx[np.unique(np.round(np.linspace(0, idx.size - 1, max_points)).astype(int))]] = True
    return keep


def _curve_design(
    law: CurveLaw,
    data: Curves | pd.DataFrame,
    predict: bool,
    at: Mapping[str, int] | None = None,
    diverged: str = "exclude",
    max_points: int | None = None,
) -> Design:
    if not isinstance(data, Curves):
        raise DataError(
            f"the {law.name} law needs loss curves",
            value=type(data).__name__,
            fix="pass Curves (scalefit.Curves.from_frame or scalefit.read_curves)",
        )
    features = law.features()
    shift = int(features.shift)
    kept: list[CurveRun] = []
    s1_parts: list[np.ndarray] = []
    excluded: list[tuple[str, str]] = []
    thinned: dict[str, list[int]] = {}  # run -> [observed points, design points]
    offset, has_drop = 0, False
    for run in curve_runs(data, law.name, lead=shift, diverged=diverged):
        if not predict and diverged == "exclude" and run.meta.get("status") == "diverged":
            excluded.append((run.run_id, DIVERGED))
            continue
        P, d = lr_area(run.lr), lr_increments(run.lr, run.warmup)
        # a NaN loss was not observed: no design point there (its step's LR still counts in P)
        observed = np.ones(run.steps.size, dtype=bool) if predict else ~np.isnan(run.loss)
        if at is not None:  # predict at one step of the run only (its other rows give the LR)
            observed &= run.steps == at.get(run.run_id, -1)
        area = P[run.steps + shift] > 0
        if np.any(observed & ~area):
            n_early = int(np.sum(observed & ~area))
            excluded.append((run.run_id, f"{n_early} step(s) before any LR area (S1 = 0)"))
        ok = observed & area
        if max_points is not None and not predict and int(ok.sum()) > max_points:
            thinned[run.run_id] = [int(ok.sum()), max_points]
            ok = thin(ok, max_points)
        steps, loss = run.steps[ok], run.loss[ok]
        if steps.size == 0:
            continue
        finite = np.isfinite(loss)
        has_drop |= bool(finite.any() and np.any(d[: steps[finite].max() + shift] != 0))
        run = CurveRun(run.run_id, run.lr, run.warmup, steps, loss, run.meta, offset)
        _check_meta(law, features, run)
        kept.append(run)
        s1_parts.append(P[steps + shift])
        offset += steps.size
    if not predict:
        _check_identifiable(law, kept, has_drop, features.needs_drop)
    x = {"S1": np.concatenate(s1_parts) if s1_parts else np.zeros(0), **law.curve_x(kept)}
    groups = np.concatenate([np.full(r.steps.size, r.run_id, dtype=object) for r in kept] or [[]])
    keys = pd.DataFrame(
        {"run_id": groups.astype(str), "step": np.concatenate([r.steps for r in kept] or [[]])}
    )
    y = None if predict else np.concatenate([r.loss for r in kept])
    meta = {"n_params": {r.run_id: r.meta.get("n_params") for r in kept}, "thinned": thinned}
    design = Design(x=x, y=y, groups=groups, keys=keys, excluded=tuple(excluded), meta=meta)
    if not predict:
        law.check_fit(design)
    return design


def _table_design(law: TableLaw, data: Curves | pd.DataFrame, predict: bool) -> Design:
    features = law.features()
    columns = features.columns + (() if predict else features.target)
    frame = static_table(data, columns, law=law.name)
    design = law.table_design(frame, predict=predict)
    if not predict:
        law.check_fit(design)
    return design


def build_design(
    law: Law,
    data: Curves | pd.DataFrame | Design,
    *,
    predict: bool = False,
    at: Mapping[str, int] | None = None,
    diverged: str = "exclude",
    max_points: int | None = None,
) -> Design:
    """The design of ``law`` on ``data`` (a ready ``Design`` is returned as is); with ``predict=True``
    the observed loss may be absent. ``at`` (curve laws, with ``predict``): run_id -> the one step of
    that run to predict, the run's other rows only giving its LR (e.g. a run's final loss without the
    cost of a design point at every logged step). ``diverged`` (curve laws): "exclude" (default) leaves
    runs whose status is 'diverged' out of a fit, listed in ``Design.excluded``; "prefix" fits their
    finite losses before the first non-finite one (``curve_runs``). ``max_points`` (curve laws, for a
    fit): a run with more observed points than this gets design points at only this many of them,
    evenly spaced (``thin``; every step's LR still enters the sums), listed in ``meta["thinned"]``
    as run -> [observed, kept]."""
    if isinstance(data, Design):
        return data
    if isinstance(law, CurveLaw):
        return _curve_design(law, data, predict, at, diverged, max_points)
    if isinstance(law, TableLaw):
        return _table_design(law, data, predict)
    raise ConfigError(
        f"law {law.name!r} is neither a curve law nor a table law",
        field="law",
        value=type(law).__name__,
        fix="subclass scalefit.laws.base.CurveLaw or TableLaw",
    )
