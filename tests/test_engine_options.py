"""The engine's runtime options: the BLAS thread limit in force during a fit (and restored after),
``threads=None`` leaving it alone, option validation, and progress bars on stderr."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from test_fitting import PowerLaw, synthetic
from threadpoolctl import threadpool_info, threadpool_limits

from scalefit.errors import ConfigError, FitWarning
from scalefit.fitting import api
from scalefit.fitting.engine import ENGINE_OPTIONS, fit_law
from scalefit.laws.base import Design


def blas_threads() -> list[int]:
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


class SpyLaw(PowerLaw, register=False):
    """PowerLaw that records the BLAS thread counts in force whenever it predicts."""

    name = "test-spy"
    seen: list[list[int]] = []

    def predict(self, theta: np.ndarray, design: Design) -> np.ndarray:
        SpyLaw.seen.append(blas_threads())
        return super().predict(theta, design)


def quiet(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)
        return fit_law(*args, **kwargs)


@pytest.fixture
def two_blas_threads():
    if not blas_threads():
        pytest.skip("no BLAS library loaded that threadpoolctl can see")
    with threadpool_limits(limits=2, user_api="blas"):
        yield
    SpyLaw.seen.clear()


def test_fit_runs_with_one_blas_thread_and_restores_the_limit(two_blas_threads):
    before = blas_threads()
    SpyLaw.seen.clear()
    fit = quiet(SpyLaw(), synthetic(), starts=2, bootstrap=4)
    assert SpyLaw.seen and all(set(seen) == {1} for seen in SpyLaw.seen)
    assert blas_threads() == before
    assert fit.options["threads"] == 1


def test_threads_none_leaves_the_limit_alone(two_blas_threads):
    before = blas_threads()
    SpyLaw.seen.clear()
    fit = quiet(SpyLaw(), synthetic(), starts=2, threads=None)
    assert SpyLaw.seen and all(seen == before for seen in SpyLaw.seen)
    assert fit.options["threads"] is None


@pytest.mark.parametrize("bad", [0, -1, 1.5, "1", True])
def test_bad_threads_is_a_config_error(bad):
    with pytest.raises(ConfigError) as err:
        fit_law(PowerLaw(), synthetic(), threads=bad)
    assert err.value.field == "threads"


def test_bad_progress_is_a_config_error():
    with pytest.raises(ConfigError) as err:
        fit_law(PowerLaw(), synthetic(), progress="yes")
    assert err.value.field == "progress"


def test_engine_options_pass_through_the_api_and_misspellings_stay_errors():
    assert {"threads", "progress"} <= set(ENGINE_OPTIONS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)
        fit = api.fit(synthetic(), law=PowerLaw(), starts=2, threads=2, progress=False)
    assert fit.options["threads"] == 2
    with pytest.raises(ConfigError) as err:
        api.fit(synthetic(), law="chinchilla", thread=1)
    assert err.value.field == "thread" and "threads" in err.value.fix


def test_progress_true_writes_bars_to_stderr(capsys):
    quiet(PowerLaw(), synthetic(), starts=2, bootstrap=4, progress=True)
    captured = capsys.readouterr()
    assert "test-power: screen 1/1" in captured.err and "test-power: refine 2/2" in captured.err
    assert "test-power: bootstrap" in captured.err
    assert captured.out == ""


@pytest.mark.parametrize("progress", [False, None])
def test_progress_false_or_auto_off_a_terminal_writes_nothing(capsys, progress):
    quiet(PowerLaw(), synthetic(), starts=2, bootstrap=4, progress=progress)
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


def test_progress_names_the_profiled_combination(capsys):
    class Profiled(PowerLaw):
        def profile(self) -> dict[str, list]:
            return {"shift": [0.0, 1.0]}

    quiet(Profiled(), synthetic(), starts=2, progress=True)
    err = capsys.readouterr().err
    assert "test-power shift=0.0: screen 1/1" in err and "test-power shift=1.0: refine 2/2" in err


@pytest.mark.parametrize(
    ("option", "value"), [("maxiter", 0), ("maxiter", -5), ("maxiter", 2.5), ("seed", "a"), ("seed", -1)]
)
def test_bad_iteration_limit_or_seed_is_a_config_error(option, value):
    with pytest.raises(ConfigError, match=f"{option} must be an integer") as err:
        fit_law(PowerLaw(), synthetic(), **{option: value})
    assert err.value.field == option
