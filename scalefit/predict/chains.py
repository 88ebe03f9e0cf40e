"""Chaining fitted laws, with the uncertainty carried through bootstrap draws.

- ``chain_downstream``: a loss law's prediction fed into the downstream-error law (Gadre et al. 2024):
  draw i of the loss fit predicts the loss, draw i of the error fit maps it to an error; both fits
  were bootstrapped independently, so the band carries both sources of error.
- ``translate_values`` / ``translate_fit``: a per-dataset law moved to a new dataset through a
  loss-to-loss map ``L1 = K (L0 - E0)^kappa + E1`` (Brandfonbrener et al. 2024). Exact for the Kaplan
  form ``[(A/N)^(alpha/beta) + B/D]^beta + E`` when E0 is the source law's E; the Chinchilla form is
  not closed under the map and is translated term by term (``A' = K A^kappa``), an approximation that
  is warned about (``FitWarning``) and recorded in the Fit's warnings.
- ``derived``: a CI for any function of the parameters (N* at a budget, tokens per parameter, ...).
- ``difference_test``: do two fits differ in a parameter or derived quantity? Bootstrap of the
  difference (independent resamples paired by index), two-sided p-value.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from scalefit.errors import FitError, FitWarning
from scalefit.fitting.design import build_design
from scalefit.fitting.intervals import percentile_interval
from scalefit.fitting.result import Fit
from scalefit.laws.downstream import DownstreamLaw
from scalefit.laws.loss_to_loss import LossToLossLaw
from scalefit.store.curves import Curves

__all__ = ["chain_downstream", "translate_values", "translate_fit", "derived", "difference_test"]


def _draws(fit: Fit, name: str) -> np.ndarray:
    if fit.bootstrap is None or not len(fit.bootstrap):
        raise FitError("the fit has no bootstrap draws", field=name, fix="fit with bootstrap=1000")
    return np.asarray(fit.bootstrap, dtype=float)


def _warn_if_few_groups(fit: Fit, role: str) -> None:
    """Resampling k runs for p parameters: when k is close to p, many resamples cannot identify the law."""
    n_groups = int(fit.data_summary.get("n_groups", 0))
    if 0 < n_groups <= len(fit.param_names) + 2:
        warnings.warn(
            f"{role}: bootstrap over {n_groups} runs for {len(fit.param_names)} parameters; many resamples "
            "cannot identify the law, so the band is wide and conservative",
            FitWarning,
            stacklevel=3,
        )


def chain_downstream(
    loss_fit: Fit, err_fit: Fit, target: Curves | pd.DataFrame, *, ci: float = 0.95
) -> pd.DataFrame:
    """Predicted loss and downstream error at ``target`` with bands from both fits' bootstrap draws.

    Returns the loss law's key columns plus loss_pred, loss_lo, loss_hi, err_pred, err_lo, err_hi.
    """
    if not isinstance(err_fit.get_law(), DownstreamLaw):
        raise FitError("the second fit must be a downstream-law fit", field="err_fit", value=err_fit.law)
    law = loss_fit.get_law()
    design = build_design(law, target, predict=True)
    loss_pred = np.asarray(law.predict(loss_fit.theta, design), dtype=float)
    err_pred = DownstreamLaw.curve(err_fit.theta, loss_pred)
    loss_boot, err_boot = _draws(loss_fit, "loss_fit"), _draws(err_fit, "err_fit")
    _warn_if_few_groups(loss_fit, "loss fit")
    _warn_if_few_groups(err_fit, "error fit")
    n = min(len(loss_boot), len(err_boot))
    with np.errstate(all="ignore"):
        loss_draws = law.predict_many(loss_boot[:n], design)
        err_draws = DownstreamLaw.curve(err_boot[:n], loss_draws)
    out = design.keys.reset_index(drop=True).copy() if design.keys is not None else pd.DataFrame()
    out["loss_pred"] = loss_pred
    out["loss_lo"], out["loss_hi"] = percentile_interval(loss_draws, ci)
    out["err_pred"] = err_pred
    out["err_lo"], out["err_hi"] = percentile_interval(err_draws, ci)
    return out


def translate_values(
    values: Mapping[str, Any], *, K: Any, kappa: Any, E1: Any, form: str = "kaplan"
) -> dict[str, Any]:
    """A Kaplan- or Chinchilla-form law (E, A, B, alpha, beta) moved through ``K (L - E)^kappa + E1``.

    Both: alpha' = kappa alpha, beta' = kappa beta, E' = E1.
    - ``form="kaplan"``, ``L = [(A/N)^(alpha/beta) + B/D]^beta + E``: A' = A K^(1/(kappa alpha)),
      B' = B K^(1/(kappa beta)); exact (the bracket's power absorbs the map).
    - ``form="chinchilla"``, ``L = E + A N^-alpha + B D^-beta``: the image term by term,
      A' = K A^kappa, B' = K B^kappa; exact when one term dominates, else an approximation
      (``K (x + y)^kappa`` against ``K x^kappa + K y^kappa``).
    Works elementwise on arrays (bootstrap draws).
    """
    if form not in ("kaplan", "chinchilla"):
        raise FitError("unknown law form", field="form", value=form, fix='use "kaplan" or "chinchilla"')
    alpha, beta = values["alpha"], values["beta"]
    if form == "kaplan":
        A, B = values["A"] * K ** (1.0 / (kappa * alpha)), values["B"] * K ** (1.0 / (kappa * beta))
    else:
        A, B = K * values["A"] ** kappa, K * values["B"] ** kappa
    return {"E": E1 + 0.0 * alpha, "A": A, "B": B, "alpha": kappa * alpha, "beta": kappa * beta}


def _map_values(map_fit: Fit) -> dict[str, np.ndarray]:
    """K, kappa, E1 of a loss-to-loss fit: point values (index 0) then bootstrap draws."""
    cfg = map_fit.law_config
    names = list(map_fit.param_names)
    rows = [map_fit.theta] + ([] if map_fit.bootstrap is None else list(np.asarray(map_fit.bootstrap)))
    table = np.array(rows, dtype=float)
    e1 = table[:, names.index("E1")] if "E1" in names else np.full(len(table), float(cfg["e1"]))
    return {"K": table[:, names.index("K")], "kappa": table[:, names.index("kappa")], "E1": e1}


def translate_fit(fit: Fit, map_fit: Fit) -> Fit:
    """``fit`` (a kaplan- or chinchilla-law Fit) translated to the map's target dataset.

    Bootstrap draws, where both fits have them, are translated pairwise (so the new Fit has bands).
    """
    if not isinstance(map_fit.get_law(), LossToLossLaw):
        raise FitError("the map must be a loss-to-loss fit", field="map_fit", value=map_fit.law)
    names = list(fit.param_names)
    lse = {p: p.upper() for p in ("a", "b", "e") if p in names}  # Chinchilla form: A, B, E in log space
    natural = [lse.get(p, p) for p in names]
    missing = [p for p in ("E", "A", "B", "alpha", "beta") if p not in natural]
    if missing:
        raise FitError(
            "translation needs a law with E, A, B, alpha, beta",
            field=missing[0],
            value=fit.law,
            fix="translate a kaplan or chinchilla fit",
        )
    mv = _map_values(map_fit)
    own = np.array([fit.theta] + ([] if fit.bootstrap is None else list(np.asarray(fit.bootstrap))))
    n = min(len(own), len(mv["K"]))
    src = {
        q: np.exp(own[:n, j]) if p in lse else own[:n, j]
        for j, (p, q) in enumerate(zip(names, natural, strict=True))
    }
    form = "chinchilla" if lse else "kaplan"
    new = translate_values(src, **{k: v[:n] for k, v in mv.items()}, form=form)
    table = np.stack(
        [np.log(new[q]) if p in lse else new.get(q, src[q]) for p, q in zip(names, natural, strict=True)], 1
    )
    warn = []
    if lse:
        message = (
            f"a {fit.law} law is only approximately closed under a shifted power law: translated term by "
            "term (exact where one term dominates)"
        )
        warn.append({"code": "approximate_translation", "message": message})
        warnings.warn(FitWarning(f"{fit.law}: {message}"), stacklevel=2)
    boot = table[1:] if n > 1 else None
    level = float(fit.options.get("ci", 0.95))
    ci = {
        p: tuple(float(v) for v in percentile_interval(boot[:, j], level))
        if boot is not None
        else (np.nan, np.nan)
        for j, p in enumerate(names)
    }
    return Fit(
        law=fit.law,
        law_config=fit.law_config,
        param_names=tuple(names),
        values={p: float(table[0, j]) for j, p in enumerate(names)},
        stderr={p: float(np.std(boot[:, j])) if boot is not None else np.nan for j, p in enumerate(names)},
        ci=ci,
        bounds=fit.bounds,
        covariance=None if boot is None else np.cov(boot, rowvar=False),
        bootstrap=boot,
        diagnostics={
            "objective": np.nan,
            "converged": True,
            "n_best": 0,
            "warnings": warn,
            "translated_by": {
                "K": float(mv["K"][0]),
                "kappa": float(mv["kappa"][0]),
                "E1": float(mv["E1"][0]),
            },
        },
        data_summary=fit.data_summary,
        provenance=fit.provenance,
        options=fit.options,
        _law=fit.get_law(),
    )


def derived(fit: Fit, fn: Callable[[Mapping[str, Any]], Any], *, ci: float = 0.95) -> dict[str, Any]:
    """``fn(values)`` at the fit and over its bootstrap draws (``fn`` must work on arrays elementwise).

    Returns value, ci, stderr and the draws.
    """
    value = float(fn(dict(fit.values)))
    boot = _draws(fit, "bootstrap")
    draws = np.asarray(fn({p: boot[:, j] for j, p in enumerate(fit.param_names)}), dtype=float)
    lo, hi = percentile_interval(draws, ci)
    return {"value": value, "ci": (float(lo), float(hi)), "stderr": float(np.nanstd(draws)), "draws": draws}


def difference_test(
    fit_a: Fit, fit_b: Fit, quantity: str | Callable[[Mapping[str, Any]], Any], *, ci: float = 0.95
) -> dict[str, Any]:
    """Bootstrap test of ``quantity(a) - quantity(b)`` (a parameter name or a function of the values).

    Returns diff, ci, p_value (two-sided: twice the smaller tail mass of the bootstrap differences at
    zero, floored at 1/n) and whether the CI excludes zero.
    """
    fn = (lambda v: v[quantity]) if isinstance(quantity, str) else quantity
    da, db = derived(fit_a, fn, ci=ci), derived(fit_b, fn, ci=ci)
    n = min(len(da["draws"]), len(db["draws"]))
    diff = da["draws"][:n] - db["draws"][:n]
    diff = diff[np.isfinite(diff)]
    lo, hi = percentile_interval(diff, ci)
    tail = min(np.mean(diff <= 0), np.mean(diff >= 0))
    p = float(min(1.0, max(2.0 * tail, 1.0 / len(diff))))
    return {
        "diff": da["value"] - db["value"],
        "ci": (float(lo), float(hi)),
        "p_value": p,
        "significant": bool(lo > 0 or hi < 0),
        "n": int(len(diff)),
    }
