"""``Fit``: immutability, exact JSON round trip, lmfit Parameters, prediction bands, and ``sf.fit``."""

from __future__ import annotations

import dataclasses
import json
import warnings

import lmfit
import numpy as np
import pandas as pd
import pytest

import scalefit as sf
from scalefit.errors import ConfigError, FitWarning, SchemaError
from scalefit.fitting.design import build_design
from scalefit.fitting.result import Fit
from scalefit.laws.chinchilla import ChinchillaLaw

TRUE = np.array([6.0, 7.0, 0.5, 0.33, 0.36])  # a, b, e, alpha, beta


def table(n: int = 60, seed: int = 0, noise: float = 0.004) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    nn = np.exp(rng.uniform(np.log(5e7), np.log(1e10), n))
    dd = np.exp(rng.uniform(np.log(1e9), np.log(3e11), n))
    law = ChinchillaLaw()
    clean = law.predict(TRUE, build_design(law, pd.DataFrame({"N": nn, "D": dd}), predict=True))
    loss = clean * np.exp(noise * rng.standard_normal(n))
    return pd.DataFrame({"run_id": [f"run{i}" for i in range(n)], "N": nn, "D": dd, "loss": loss})


@pytest.fixture(scope="module")
def fits() -> tuple[Fit, Fit]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)
        plain = sf.fit(table(), law="chinchilla", starts=3)
        boot = sf.fit(table(), law="chinchilla", starts=3, bootstrap=100, seed=1)
    return plain, boot


def test_fit_is_immutable(fits):
    fit = fits[1]
    with pytest.raises(dataclasses.FrozenInstanceError):
        fit.values = {}
    with pytest.raises(TypeError):
        fit.values["a"] = 1.0
    with pytest.raises(TypeError):
        fit.diagnostics["objective"] = 0.0
    with pytest.raises(ValueError):
        fit.bootstrap[0, 0] = 0.0
    with pytest.raises(ValueError):
        fit.covariance[0, 0] = 0.0
    fit.theta[0] = 99.0  # a copy
    assert fit.values["a"] != 99.0


@pytest.mark.parametrize("which", [0, 1])
def test_json_round_trip_predicts_identical_numbers(fits, which):
    fit = fits[which]
    text = fit.to_json()
    json.loads(text)  # strict JSON: no NaN/Infinity tokens
    again = Fit.from_json(text)
    target = table(n=10, seed=9)
    a, b = fit.predict(target), again.predict(target)
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert again.values == fit.values and again.bounds == fit.bounds
    assert again.to_json() == text
    assert again.law_config == ChinchillaLaw().config()


def test_lmfit_parameters(fits):
    fit = fits[0]
    params = fit.params
    assert isinstance(params, lmfit.Parameters)
    assert list(params) == ["a", "b", "e", "alpha", "beta"]
    assert params["alpha"].value == fit.values["alpha"]
    assert params["alpha"].stderr == pytest.approx(fit.stderr["alpha"])
    assert (params["alpha"].min, params["alpha"].max) == (0.0, 5.0)
    assert params["e"].value == pytest.approx(TRUE[2], abs=0.03)


def test_predict_columns_and_bands(fits):
    plain, boot = fits
    target = table(n=10, seed=9)
    for fit in (plain, boot):  # delta-method band, bootstrap-percentile band
        pred = fit.predict(target)
        assert list(pred.columns[:1]) == ["run_id"]
        assert {"loss_pred", "lo", "hi", "N", "D"} <= set(pred.columns)
        assert np.all(pred["lo"] < pred["loss_pred"]) and np.all(pred["loss_pred"] < pred["hi"])
    assert plain.predict(target).attrs["band"]["method"] == "delta-method"
    assert boot.predict(target).attrs["band"] == {"method": "bootstrap-percentile", "ci": 0.95}
    wide = boot.predict(target, ci=0.99)
    narrow = boot.predict(target, ci=0.5)
    assert np.all(wide["hi"] - wide["lo"] > narrow["hi"] - narrow["lo"])
    noisy = boot.predict(target, noise=True)
    assert np.all(noisy["hi"] - noisy["lo"] > boot.predict(target)["hi"] - boot.predict(target)["lo"])
    truth = ChinchillaLaw().predict(TRUE, build_design(ChinchillaLaw(), target))
    inside = (noisy["lo"] <= truth) & (truth <= noisy["hi"])
    assert inside.mean() >= 0.8


def test_api_routes_options():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)
        fit = sf.fit(
            table().rename(columns={"loss": "final"}), law="chinchilla", loss="final", starts=4, delta=1e-2
        )
    assert fit.law_config["loss"] == "final"
    assert fit.options["delta"] == 1e-2 and fit.options["starts"] == 4
    with pytest.raises(ConfigError):
        sf.fit(table(), law=ChinchillaLaw(), loss="final")
    with pytest.raises(ConfigError):
        sf.fit(table(), law="chinchilla", ci=1.5)


def test_summary_and_provenance(fits):
    fit = fits[0]
    assert fit.provenance["scalefit_version"] == sf.__version__
    assert fit.data_summary["n_points"] == 60 and fit.data_summary["n_groups"] == 60
    text = fit.summary()
    assert "alpha" in text and f"{fit.values['alpha']:.6g}" in text


def _tampered(fit: Fit, edit) -> str:
    d = json.loads(fit.to_json())
    edit(d)
    return json.dumps(d)


def _set(path: str, value):
    def edit(d):
        *head, last = path.split(".")
        for key in head:
            d = d[key]
        d[last] = value

    return edit


TAMPERED = {
    "alpha negative": (_set("values.alpha", -5.0), "values.alpha"),
    "value above its bound": (_set("values.alpha", 1e9), "values.alpha"),
    "value not finite": (_set("values.e", "NaN"), "values.e"),
    "value a string": (_set("values.a", "6"), "values.a"),
    "unknown law": (_set("law", "chinchila"), "law_config"),
    "law option misspelt": (_set("law_config", {"los": "final"}), "law_config"),
    "parameter renamed": (lambda d: d["values"].update(alfa=d["values"].pop("alpha")), "values"),
    "parameter names reordered": (lambda d: d["param_names"].reverse(), "param_names"),
    "bounds widened": (_set("bounds.alpha", [-10, 10]), "bounds.alpha"),
    "negative stderr": (_set("stderr.a", -1.0), "stderr.a"),
    "ci reversed": (_set("ci.a", [2.0, 1.0]), "ci.a"),
    "covariance wrong shape": (_set("covariance", [[1.0]]), "covariance"),
    "bootstrap wrong width": (_set("bootstrap", [[1.0, 2.0]]), "bootstrap"),
    "field missing": (lambda d: d.pop("values"), "values"),
    "unknown field": (_set("extra", 1), "extra"),
    "wrong format": (_set("format", "scalefit.Fit/9"), "format"),
    "values not an object": (_set("values", [1, 2]), "values"),
    "band level out of range": (_set("options.ci", 3), "options.ci"),
}


@pytest.mark.parametrize("name", list(TAMPERED))
def test_a_tampered_fit_json_is_a_named_error(fits, name):
    edit, field = TAMPERED[name]
    with pytest.raises(SchemaError) as err:
        Fit.from_json(_tampered(fits[1], edit))
    assert err.value.field == field and err.value.fix, str(err.value)


@pytest.mark.parametrize("text", ["", "{", "[1, 2]", "null", '"fit"'])
def test_a_fit_json_that_is_not_a_fit_object_is_a_named_error(text):
    with pytest.raises(SchemaError):
        Fit.from_json(text)
