"""Seasonal naive worked out by hand on a short season: its forecasts, the missing samples it
fills, the honest paths it hands to ``auto`` and to the record, its calibration and the history
it needs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from forecasts.base import FittedModel, scale_floor
from forecasts.errors import InsufficientHistory
from forecasts.models.seasonal_naive import SeasonalNaive
from forecasts.series import LoadSeries
from tests.forecast_series import START, seasonal

STEP = 300.0
SEASON = 4 * STEP  # four steps: short enough to check by hand


def naive(*, lead: int = 3) -> SeasonalNaive:
    """Seasonal naive on a four-step season, forecasting ``lead`` steps ahead at most."""
    return SeasonalNaive(season=SEASON, fit_step=STEP, max_horizon=lead * STEP)


def history(values: list[float]) -> LoadSeries:
    return LoadSeries(START, STEP, np.asarray(values, dtype=np.float64))


HISTORY = [5.0, 6.0, 7.0, 8.0, 1.0, 2.0, 3.0, 4.0, 9.0, 10.0, 11.0, 12.0]


def test_the_forecast_repeats_the_last_season() -> None:
    """Six steps from the end of ...9, 10, 11, 12 are 9, 10, 11, 12, 9, 10."""
    fitted = naive().fit(history(HISTORY))
    forecast = fitted.forecast(history(HISTORY), horizon=6 * STEP)
    assert forecast.point.tolist() == [9.0, 10.0, 11.0, 12.0, 9.0, 10.0]


@pytest.mark.parametrize(
    ("new", "expected"),
    [
        pytest.param([20.0, 21.0], [11.0, 12.0, 20.0, 21.0, 11.0, 12.0], id="both-known"),
        pytest.param([math.nan, 21.0], [11.0, 12.0, 9.0, 21.0, 11.0, 12.0], id="first-missing"),
        pytest.param([20.0, math.nan], [11.0, 12.0, 20.0, 10.0, 11.0, 12.0], id="last-missing"),
        pytest.param(
            [math.nan, math.nan, math.nan, math.nan, math.nan],
            [10.0, 11.0, 12.0, 9.0, 10.0, 11.0],
            id="a-season-and-one-missing",
        ),
    ],
)
def test_samples_after_the_fit_advance_the_season_and_a_missing_one_repeats_a_season_back(
    new: list[float], expected: list[float]
) -> None:
    """Samples after the fit are the latest season's; a missing one is the sample a season
    before it, itself filled in when missing (a whole season missing repeats the fit's last)."""
    fitted = naive().fit(history(HISTORY))
    later = history(HISTORY + new)
    forecast = fitted.forecast(later, horizon=6 * STEP)
    assert forecast.point.tolist() == expected


def test_honest_paths_are_the_forecasts_made_from_each_origin() -> None:
    """Row ``i`` of the paths ``auto`` scores and the record keeps is what a forecast from the
    history up to ``observed[:i]`` says, over leads longer than a season, with missing samples
    on the way: the vectorised paths agree with projecting from each origin one at a time."""
    fitted = naive(lead=6).fit(history(HISTORY))
    observed = np.array([20.0, math.nan, 5.0, 7.0, math.nan, 9.0, 3.0])
    paths = fitted.backtest_paths(observed, 6)
    np.testing.assert_array_equal(paths, FittedModel.backtest_paths(fitted, observed, 6))
    # From the fit's end: 9, 10, 11, 12 repeated; after 20 and a missing one (10): 11, 12, 20, 10.
    assert paths[0].tolist() == [9.0, 10.0, 11.0, 12.0, 9.0, 10.0]
    assert paths[2].tolist() == [11.0, 12.0, 20.0, 10.0, 11.0, 12.0]


def test_calibration_errors_are_each_origin_s_day_ago_forecasts_against_what_followed() -> None:
    """The errors of lead ``h`` are ``(actual - forecast) / (forecast + floor)`` for every origin
    from the first with a season behind it, the forecast of ``o + h`` being the value one
    season, or two beyond a season, before it."""
    values = np.array([*HISTORY, 4.0, 9.0, 1.0, 3.0, 8.0, 6.0])
    fitted = naive(lead=6).fit(history(values.tolist()))
    floor = scale_floor(values)
    for h in range(1, 7):
        errors = []
        for origin in range(3, values.size - h):
            target = origin + h
            forecast = values[target - 4 * math.ceil(h / 4)]
            errors.append((values[target] - forecast) / (forecast + floor))
        np.testing.assert_allclose(fitted.calibration.errors[h - 1], sorted(errors))


@pytest.mark.parametrize(
    ("days", "origins"),
    [
        pytest.param(3, 3 * 288 - 288, id="three-days-every-origin-after-the-first-day"),
        pytest.param(10, 7 * 288, id="ten-days-the-last-week"),
    ],
)
def test_calibration_takes_a_week_of_origins_at_most(days: int, origins: int) -> None:
    """Errors a month old say little about now: on ten days the one-step errors come from the
    last week's origins only; on three, from every origin with a day behind it."""
    fitted = SeasonalNaive().fit(seasonal(days=days))
    assert fitted.calibration.errors[0].size == origins


def test_a_band_only_from_the_last_week_ignores_an_older_unsettled_day() -> None:
    """Days that repeat exactly for the last week leave no error to band: an irregular day
    before the week does not widen it."""
    rng = np.random.default_rng(3)
    day = 100.0 + 50.0 * np.sin(np.linspace(0.0, 2.0 * np.pi, 288, endpoint=False))
    values = np.tile(day, 10)
    values[: 2 * 288] = rng.uniform(50.0, 150.0, 2 * 288)  # older than a week and a day
    loads = LoadSeries(START, STEP, values)
    fitted = SeasonalNaive().fit(loads)
    forecast = fitted.forecast(loads, horizon=3600.0)
    np.testing.assert_allclose(forecast.upper(0.95), forecast.point)


def test_the_history_it_needs_is_a_season_and_a_lead() -> None:
    """A season of four and a lead of three need eight known samples: seven are refused."""
    assert naive().least_points(STEP) == 8
    naive().fit(history(HISTORY[:8]))
    with pytest.raises(InsufficientHistory, match="7 usable samples"):
        naive().fit(history(HISTORY[:7]))


def test_a_history_of_less_than_two_seasons_forecasts_its_last_season() -> None:
    """With a one-step lead six samples are enough, and the forecast repeats the last four,
    not what is left after the first season."""
    short = history(HISTORY[:6])
    fitted = naive(lead=1).fit(short)
    assert fitted.forecast(short, horizon=4 * STEP).point.tolist() == [7.0, 8.0, 1.0, 2.0]


def test_a_season_shorter_than_the_step_is_one_step() -> None:
    """On an hourly trace a 20-minute season is one step: the forecast repeats the last hour."""
    model = SeasonalNaive(season=SEASON, fit_step=STEP, max_horizon=3600.0)
    assert model.least_points(3600.0) == 3
    hourly = LoadSeries(START, 3600.0, np.array([3.0, 1.0, 4.0, 1.0, 5.0]))
    fitted = model.fit(hourly)
    assert fitted.step == 3600.0
    assert fitted.forecast(hourly, horizon=3 * 3600.0).point.tolist() == [5.0, 5.0, 5.0]
