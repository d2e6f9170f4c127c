"""Holt-Winters' rules one by one: the level, trend and season recursions and a missing sample
worked by hand, the forecast paths' season phases, a constant history's moderate smoothing,
the estimation's refusals, its fourteen-day window and the band's week on a long history."""

from __future__ import annotations

import warnings
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from forecasts import create
from forecasts.base import DAY
from forecasts.errors import FitFailed
from forecasts.models.holt_winters import (
    HoltWintersParameters,
    forecast_paths,
    run_recursion,
)
from tests.forecast_series import flat, seasonal, series

HOUR = 3600.0

#: Distinct smoothing parameters, so that a level, trend or season term taken with the wrong
#: weight shows; all powers of two, so that the hand-worked values below are exact.
PARAMS = HoltWintersParameters(alpha=0.5, beta=0.25, gamma=0.75, phi=0.5, period=2)


def _run(observed: list[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The recursion from level 10, trend 2 and seasons 1 then -1 (period 2)."""
    return run_recursion(
        PARAMS, np.array(observed), level=10.0, trend=2.0, seasons=np.array([1.0, -1.0])
    )


def test_the_recursion_steps_level_trend_and_season_as_worked_by_hand() -> None:
    """Two observations, 14 then 12, worked by hand from the component form:

    t=0: expected 10 + 0.5 * 2 = 11, season 1. Level 0.5 * (14 - 1) + 0.5 * 11 = 12; trend
    0.25 * (12 - 10) + 0.75 * 0.5 * 2 = 1.25; season 0.75 * (14 - 11) + 0.25 * 1 = 2.5.
    t=1: expected 12 + 0.5 * 1.25 = 12.625, season -1. Level 0.5 * 13 + 0.5 * 12.625 = 12.8125;
    trend 0.25 * 0.8125 + 0.75 * 0.5 * 1.25 = 0.671875; season 0.75 * (12 - 12.625) + 0.25 * -1
    = -0.71875.
    """
    level, trend, season = _run([14.0, 12.0])
    np.testing.assert_allclose(level, [12.0, 12.8125], rtol=1e-12)
    np.testing.assert_allclose(trend, [1.25, 0.671875], rtol=1e-12)
    np.testing.assert_allclose(season, [2.5, -0.71875], rtol=1e-12)


def test_a_missing_observation_leaves_the_state_on_its_projection() -> None:
    """After the two observations above a missing one (NaN) teaches nothing: the level becomes
    its projection 12.8125 + 0.5 * 0.671875, the trend is damped once (0.5 * 0.671875), and the
    season of that phase stays the 2.5 estimated a period earlier."""
    level, trend, season = _run([14.0, 12.0, np.nan])
    assert level[-1] == pytest.approx(12.8125 + 0.5 * 0.671875, rel=1e-12)
    assert trend[-1] == pytest.approx(0.5 * 0.671875, rel=1e-12)
    assert season[-1] == pytest.approx(2.5, rel=1e-12)


def test_forecast_paths_add_the_damped_trend_and_each_phase_s_latest_season() -> None:
    """From the state after 14 and 12, ``h`` steps ahead the path is the level 12.8125 plus
    ``phi + ... + phi**h`` trends (0.5, 0.75, 0.875, 0.9375 of 0.671875) plus the latest season
    of the step's phase: t=2 and t=4 share t=0's (2.5), t=3 and t=5 share t=1's (-0.71875),
    made a period before for ``h = 1, 2`` and two periods before for ``h = 3, 4``."""
    level, trend, season = _run([14.0, 12.0])
    paths = forecast_paths(PARAMS, level, trend, season, np.array([1]), 4)
    sums = np.array([0.5, 0.75, 0.875, 0.9375])
    np.testing.assert_allclose(
        paths[0], 12.8125 + sums * 0.671875 + np.array([2.5, -0.71875, 2.5, -0.71875]), rtol=1e-12
    )


def test_a_constant_history_follows_a_jump_only_part_way() -> None:
    """A constant history gets moderate smoothing parameters: when the load then jumps from 100
    to 200 for one sample, the next forecast moves towards 200 without reaching it, let alone
    overshooting (a level weight of one or more would)."""
    forecaster = create("holt-winters")
    first = forecaster.fit(flat(days=3))
    jumped = series(np.append(flat(days=3).values, 200.0))
    again = forecaster.fit(jumped, previous=first)
    assert again.cheaply_refitted
    point = again.forecast(jumped, horizon=300.0).point[0]
    assert 110.0 < point < 190.0


def test_forecasting_past_the_fit_advances_from_its_last_state() -> None:
    """After the jump above the last two states differ (level 100 then 150, trend 0 then 0.5):
    forecasting from a history one sample longer, without refitting, advances from the last of
    them exactly as a cheap refit over that sample does, and goes on up towards 200."""
    forecaster = create("holt-winters")
    jumped = series(np.append(flat(days=3).values, 200.0))
    fitted = forecaster.fit(jumped, previous=forecaster.fit(flat(days=3)))
    later = series(np.append(jumped.values, 200.0))
    advanced = fitted.forecast(later, horizon=900.0).point
    refitted = forecaster.fit(later, previous=fitted)
    assert refitted.cheaply_refitted
    np.testing.assert_allclose(advanced, refitted.forecast(later, horizon=900.0).point, rtol=1e-9)
    assert fitted.forecast(jumped, horizon=300.0).point[0] < advanced[0] < 200.0
    # The trend the jump started carries on: the path still rises (the seasons ahead are flat).
    assert np.all(np.diff(advanced) > 0.0)


def test_a_history_constant_but_for_rounding_is_not_given_to_the_optimiser(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A load of a million jittering by a ten-thousandth (rounding in the sums that made it)
    is constant for the model: it starts flat at the first value and forecasts it, with no
    estimation (which would warn or fail on it). A jitter of a hundredth of it is load, and is
    estimated."""
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the optimiser was called")

    monkeypatch.setattr(ExponentialSmoothing, "fit", refuse)
    jitter = np.random.default_rng(3).uniform(-1.0, 1.0, 3 * 288)
    history = series(1e6 + 1e-4 * jitter)
    point = create("holt-winters").fit(history).forecast(history, horizon=900.0).point
    np.testing.assert_allclose(point, history.values[0], atol=1e-3)
    with pytest.raises(AssertionError, match="optimiser was called"):
        create("holt-winters").fit(series(1e6 + 1e4 * jitter))


def _estimated(**params: Any) -> SimpleNamespace:
    """What statsmodels' fit returns, for a period of 24, with ``params`` overriding."""
    values: dict[str, Any] = {
        "smoothing_level": 0.5,
        "smoothing_trend": 0.1,
        "smoothing_seasonal": 0.1,
        "damping_trend": 0.9,
        "initial_level": 200.0,
        "initial_trend": 0.0,
        "initial_seasons": np.zeros(24),
    }
    values.update(params)
    return SimpleNamespace(params=values)


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"smoothing_level": np.nan}, id="smoothing-parameter"),
        pytest.param({"initial_level": np.inf}, id="initial-level"),
        pytest.param({"initial_trend": np.nan}, id="initial-trend"),
        pytest.param({"initial_seasons": np.full(24, np.nan)}, id="initial-seasons"),
    ],
)
def test_a_non_finite_estimate_is_a_failed_fit(
    monkeypatch: pytest.MonkeyPatch, params: dict[str, Any]
) -> None:
    """An estimation that returns a non-finite parameter or initial state (level, trend or any
    season) is refused as a failed fit, not run into forecasts of NaN; the same estimate
    finite is taken as it is."""
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    history = seasonal(days=3, step=HOUR)
    monkeypatch.setattr(ExponentialSmoothing, "fit", lambda *_a, **_k: _estimated(**params))
    with pytest.raises(FitFailed, match="non-finite"):
        create("holt-winters").fit(history)
    monkeypatch.setattr(ExponentialSmoothing, "fit", lambda *_a, **_k: _estimated())
    fitted = create("holt-winters").fit(history)
    assert np.isfinite(fitted.forecast(history, horizon=HOUR).point).all()


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(ValueError("endog must be finite"), id="value-error"),
        pytest.param(np.linalg.LinAlgError("singular matrix"), id="singular"),
    ],
)
def test_the_optimiser_s_error_is_a_failed_fit_naming_it(
    monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    """statsmodels' own errors while estimating come out as :class:`FitFailed` with the cause
    in the message and chained, so that the operator reports a failed fit, not a crash."""
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    def fail(*_args: object, **_kwargs: object) -> None:
        raise error

    monkeypatch.setattr(ExponentialSmoothing, "fit", fail)
    with pytest.raises(FitFailed, match="estimation failed: " + str(error)) as raised:
        create("holt-winters").fit(seasonal(days=3, step=HOUR))
    assert raised.value.__cause__ is error


def test_the_optimiser_s_chatter_stays_inside_the_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    """statsmodels warns when its optimiser does not converge; the fit checks the result
    itself, so the warning is not passed on (where warnings are errors, it would fail the
    fit)."""
    from statsmodels.tools.sm_exceptions import ConvergenceWarning
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    fit = ExponentialSmoothing.fit

    def chatty(self: Any, *args: Any, **kwargs: Any) -> Any:
        warnings.warn("Optimization failed to converge", ConvergenceWarning, stacklevel=2)
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(ExponentialSmoothing, "fit", chatty)
    history = seasonal(days=3, step=HOUR)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fitted = create("holt-winters").fit(history)
    assert np.isfinite(fitted.forecast(history, horizon=HOUR).point).all()


def test_the_estimation_sees_the_last_fourteen_days() -> None:
    """Sixteen days of hourly load whose first two days run at three times the level: by
    default the parameters are those estimated on the last fourteen days (336 samples) alone,
    as if the earlier days had never been; fifteen or thirteen days would estimate others."""
    values = seasonal(days=16, step=HOUR, seed=5).values
    values[:48] *= 3.0
    params = create("holt-winters").fit(series(values, step=HOUR)).params
    wide = create("holt-winters", window=30 * DAY)
    days = {n: wide.fit(series(values[-n * 24 :], step=HOUR)).params for n in (13, 14, 15)}
    assert params == days[14]
    assert params != days[13] and params != days[15]


def test_a_short_history_s_band_is_calibrated_from_its_first_full_day() -> None:
    """Three days of 5-minute load: every origin from the end of the first day on has a season
    for each phase of its leads, and calibrates the band: 2 * 288 one-step errors, none fewer
    (an origin earlier would read a season from before the start)."""
    fitted = create("holt-winters").fit(seasonal(days=3))
    assert len(fitted.calibration.errors[0]) == 2 * 288


def test_a_long_history_s_band_is_calibrated_on_its_last_week() -> None:
    """Ten days of 5-minute load: a fit keeps only the tail it needs (fewer states than the
    history's samples), but its band still comes from a whole week of origins, one one-step
    error each (2016)."""
    history = seasonal(days=10)
    fitted = create("holt-winters").fit(history)
    assert len(fitted.calibration.errors[0]) == 7 * DAY / 300.0
    assert fitted.values.size < len(history) - DAY / 300.0
