"""A lasting change of level: the errors from before a model followed it are retired."""

from __future__ import annotations

import math

import numpy as np
import pytest

from forecasts import create
from forecasts.base import DAY, PreparedHistory, prepare_history, settled_since
from forecasts.models.smoothing import ForecastRecord, calibrate
from forecasts.series import LoadSeries
from tests.forecast_series import START, STEP, series

HOUR = 3600.0


def _daily(days: float, *, seed: int = 3, noise: float = 0.03) -> np.ndarray:
    """A daily sine between 0.2 and 1.8 of 1000, with multiplicative noise."""
    t = np.arange(round(days * DAY / STEP)) * STEP
    rng = np.random.default_rng(seed)
    return (1000.0 + 800.0 * np.sin(2 * np.pi * t / DAY)) * rng.lognormal(0.0, noise, t.size)


def _prepared(values: np.ndarray) -> PreparedHistory:
    return prepare_history(series(values), fit_step=STEP, min_points=10)


def _shifted(days: float, at: float, factor: float) -> np.ndarray:
    values = _daily(days)
    values[round(at * DAY / STEP) :] *= factor
    return values


@pytest.mark.parametrize("factor", [3.0, 1 / 3], ids=["tripled", "a third"])
def test_a_lasting_change_is_found_and_its_errors_retired_a_day_after(factor: float) -> None:
    """Up or down, errors count again from a day after the change, within the hour."""
    since = settled_since(_prepared(_shifted(9, 5.0, factor)))
    assert abs(since - (START + 6.0 * DAY)) <= HOUR


@pytest.mark.parametrize(
    "values",
    [
        pytest.param(_daily(9), id="steady"),
        pytest.param(_shifted(9, 5.0, 1.6), id="a change under twice"),
        pytest.param(_shifted(9, 7.5, 3.0), id="too recent for a day of errors after"),
    ],
)
def test_no_retirement_without_a_settled_change_of_at_least_twice(values: np.ndarray) -> None:
    assert settled_since(_prepared(values)) == -math.inf


def test_a_spike_of_hours_is_not_a_change_of_level() -> None:
    """A day's median ignores six hours at ten times the load: the band keeps the spike's
    errors, which is what it is for."""
    values = _daily(9)
    start = round(5.0 * DAY / STEP)
    values[start : start + round(6 * HOUR / STEP)] *= 10.0
    assert settled_since(_prepared(values)) == -math.inf


def test_a_weekly_cycle_is_not_a_change_of_level() -> None:
    """Weekends at 60% of weekdays, as on New York taxi: no change."""
    values = _daily(21)
    day = (np.arange(values.size) * STEP // DAY).astype(int)
    values[day % 7 >= 5] *= 0.6
    assert settled_since(_prepared(values)) == -math.inf


def test_the_latest_change_is_the_one_that_counts() -> None:
    values = _daily(12)
    values[round(3 * DAY / STEP) :] *= 3.0
    values[round(7 * DAY / STEP) :] /= 3.0
    since = settled_since(_prepared(values))
    assert abs(since - (START + 8.0 * DAY)) <= HOUR


def test_calibrate_leaves_out_origins_before_since_and_their_record() -> None:
    values = np.full(6, 10.0)
    origins = np.array([0, 1, 2, 3, 4])
    predicted = np.array([[2.0], [2.0], [10.0], [10.0], [10.0]])  # the first two miss by far
    record = ForecastRecord(np.array([0.0, 100.0]), np.array([[2.0], [2.0]]))
    kwargs = {
        "end": 500.0,
        "step": 100.0,
        "values": values,
        "origins": origins,
        "predicted": predicted,
        "floor": 1.0,
        "estimated_until": 0.0,
        "record": record,
    }
    everything, _ = calibrate(**kwargs)
    settled, kept = calibrate(**kwargs, since=200.0)
    assert everything.quantile(1 - 1e-9, 1)[0] > 1.0
    assert settled.quantile(1 - 1e-9, 1)[0] == pytest.approx(0.0)
    np.testing.assert_allclose(kept.origins, [200.0, 300.0, 400.0])


DAYS, CHANGE, FIT_AT = 13.0, 10.0, 12.25  # tripled on day 10, fitted on day 12 at 06:00


def _fit(model: str, values: np.ndarray, end: float) -> tuple[float, int]:
    """The band's width over the next 6 hours (mean upper over point) and the errors it holds."""
    horizon = DAY / 4
    history = LoadSeries(START, STEP, values[: round(end * DAY / STEP)])
    fitted = create(model, max_horizon=horizon).fit(history)
    forecast = fitted.forecast(history, horizon=horizon)
    return float(np.mean(forecast.upper(0.95) / forecast.point)), fitted.calibration.samples


@pytest.mark.parametrize("model", ["holt-winters", "mstl", "seasonal-naive", "auto"])
def test_every_model_calibrates_on_the_errors_since_a_day_after_the_change(model: str) -> None:
    """A day and a quarter of origins count (fewer at the longest lead), not the week's."""
    _, shifted = _fit(model, _shifted(DAYS, CHANGE, 3.0), FIT_AT)
    _, plain = _fit(model, _daily(DAYS) * 3.0, FIT_AT)
    assert shifted <= (FIT_AT - CHANGE - 1.0) * DAY / STEP < plain


@pytest.mark.parametrize("model", ["mstl", "seasonal-naive"])
@pytest.mark.parametrize("hours", [1.0, 12.0])
def test_the_band_settles_after_a_level_change(model: str, hours: float) -> None:
    """Two days after the load tripled, the band of a model that followed the change is about
    as wide as on a history that had the higher load all along. With the change's errors it
    was up to three times the point at the hours whose level the old regime shared. (Holt-
    Winters' seasonal terms take days to follow: its own errors keep its band wide.)"""
    end = CHANGE + 2.0 + hours / 24
    shifted, _ = _fit(model, _shifted(DAYS, CHANGE, 3.0), end)
    plain, _ = _fit(model, _daily(DAYS) * 3.0, end)
    assert shifted <= 1.25 * plain
