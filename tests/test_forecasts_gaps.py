"""Gaps filled in a history: what the bands and the honest record may lean on.

A gap inside a history is filled by linear interpolation towards the first sample after it.
A forecast made at an origin inside the gap could not have known that sample, and a filled
value is no load anyone observed: the bands count neither.
"""

from __future__ import annotations

import numpy as np
import pytest

from forecasts import create
from tests.forecast_series import START, STEP, seasonal, series

OUTAGE = 36  # three hours of 5-minute buckets


def _wandering(days: float) -> np.ndarray:
    """A daily cycle on a random-walk level: a filled gap misses what the walk did."""
    values = seasonal(days=days).values
    walk = np.cumsum(np.random.default_rng(5).normal(0.0, 3.0, values.size))
    return np.asarray(values + walk)


@pytest.mark.parametrize("model", ["holt-winters", "mstl"])
@pytest.mark.parametrize(
    "later",
    [
        pytest.param(72, id="cheap-refit"),  # six hours after the fit
        pytest.param(300, id="re-estimated"),  # a day and an hour after it
    ],
)
def test_no_recorded_forecast_leans_on_the_sample_after_a_gap(model: str, later: int) -> None:
    """An outage after a fit, the load then lifted or not: the honest forecasts recorded from
    origins before the first sample after the outage are the same either way."""
    values = _wandering(7)
    fit_end = values.size - 1 - later
    gap = slice(fit_end + 12, fit_end + 12 + OUTAGE)
    forecaster = create(model)
    first = forecaster.fit(series(values[: fit_end + 1]))
    back = START + STEP * gap.stop  # the first sample after the outage
    records = []
    for lift in (0.0, 150.0):
        seen = values.copy()
        seen[gap] = np.nan
        seen[gap.stop :] += lift
        refit = forecaster.fit(series(seen), previous=first)
        assert refit.cheaply_refitted == (later < 288)
        assert refit.record is not None
        before = refit.record.origins < back - 1e-6
        records.append((refit.record.origins[before], refit.record.predicted[before]))
    (origins, rows), (lifted_origins, lifted_rows) = records
    assert first.fitted_until in origins  # the forecasts made before the outage are there
    np.testing.assert_array_equal(lifted_origins, origins)
    np.testing.assert_array_equal(lifted_rows, rows)


@pytest.mark.parametrize("model", ["holt-winters", "mstl", "seasonal-naive", "auto"])
def test_a_band_does_not_lean_on_values_filled_in_over_a_gap(model: str) -> None:
    """A history that ends with a three-hour outage and one sample after it: no forecast from
    a sample before the outage reaches that sample, so the band (fitted cheaply, on the same
    parameters) does not depend on it. Filled in, it would reach every value of the gap."""
    values = _wandering(8)
    gap_start = values.size - 1 - OUTAGE
    forecaster = create(model)
    first = forecaster.fit(series(values[:gap_start]))
    bands = []
    for last in (values[-1] - 40.0, values[-1] + 40.0):
        seen = values.copy()
        seen[gap_start:-1] = np.nan
        seen[-1] = last
        bands.append(forecaster.fit(series(seen), previous=first).calibration)
    low, high = bands
    assert low.lead_steps == high.lead_steps
    for lead in range(low.lead_steps):
        np.testing.assert_array_equal(high.errors[lead], low.errors[lead])
