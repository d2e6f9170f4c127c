"""The pieces Holt-Winters and MSTL share: the damped trend's sums, the paths read off a series,
which origins calibrate, how honest records merge, and how much history a fit needs."""

from __future__ import annotations

import numpy as np
import pytest

from forecasts import create
from forecasts.base import DAY
from forecasts.models.smoothing import (
    ForecastRecord,
    calibration_from_paths,
    calibration_origins,
    damped_sums,
    merge_records,
    shifted,
)

NAN = np.nan


@pytest.mark.parametrize(
    ("phi", "expected"),
    [
        pytest.param(0.5, [0.5, 0.75, 0.875], id="damped"),
        pytest.param(1.0, [1.0, 2.0, 3.0], id="undamped: the lead itself"),
    ],
)
def test_damped_sums_add_the_powers_of_phi_up_to_each_lead(
    phi: float, expected: list[float]
) -> None:
    np.testing.assert_allclose(damped_sums(phi, 3), expected)


VALUES = np.array([10.0, 20.0, 30.0, 40.0])


@pytest.mark.parametrize(
    ("origins", "expected"),
    [
        pytest.param([0, 1], [[20.0, 30.0], [30.0, 40.0]], id="within the series"),
        pytest.param([0, 2], [[20.0, 30.0], [40.0, NAN]], id="one lead past the end"),
        pytest.param([1, 3], [[30.0, 40.0], [NAN, NAN]], id="from the last value"),
    ],
)
def test_shifted_reads_each_lead_after_its_origin_and_nan_past_the_end(
    origins: list[int], expected: list[list[float]]
) -> None:
    np.testing.assert_array_equal(shifted(VALUES, np.array(origins), 2), expected)


def test_shifted_keeps_the_further_axes_of_a_row_per_time() -> None:
    rows = np.stack([VALUES, -VALUES], axis=1)  # a row of two samples per time
    paths = shifted(rows, np.array([2]), 2)
    assert paths.shape == (1, 2, 2)
    np.testing.assert_array_equal(paths[0], [[40.0, -40.0], [NAN, NAN]])


def test_shifted_from_no_origin_is_empty() -> None:
    assert shifted(VALUES, np.array([], dtype=np.int64), 3).shape == (0, 3)


@pytest.mark.parametrize(
    ("first", "window", "expected"),
    [
        # 3000 s is 10 steps: the 10 origins before the last value, which has no actual after it.
        pytest.param(0, 3000.0, list(range(89, 99)), id="a window of whole steps"),
        pytest.param(0, 3100.0, list(range(88, 99)), id="a part step counts as a step"),
        pytest.param(95, 3000.0, [95, 96, 97, 98], id="no origin before the first"),
    ],
)
def test_calibration_origins_are_the_window_before_the_last_value(
    first: int, window: float, expected: list[int]
) -> None:
    origins = calibration_origins(100, step=300.0, first=first, window=window)
    np.testing.assert_array_equal(origins, expected)


def _record(origins: list[float], value: float, *, lead: int = 1) -> ForecastRecord:
    return ForecastRecord(np.asarray(origins), np.full((len(origins), lead), value))


@pytest.mark.parametrize(
    ("older", "newer", "origins", "values"),
    [
        pytest.param(None, _record([300.0], 2.0), [300.0], [2.0], id="no older record"),
        pytest.param(
            _record([0.0], 1.0, lead=2), _record([300.0], 2.0), [300.0], [2.0], id="other lead"
        ),
        pytest.param(_record([], 1.0), _record([300.0], 2.0), [300.0], [2.0], id="older empty"),
        pytest.param(_record([0.0], 1.0), _record([], 2.0), [0.0], [1.0], id="newer empty"),
        pytest.param(
            _record([0.0], 1.0), _record([300.0], 2.0), [0.0, 300.0], [1.0, 2.0], id="one row"
        ),
        pytest.param(
            _record([0.0, 300.0], 1.0),
            _record([300.0, 600.0], 2.0),
            [0.0, 300.0, 600.0],
            [1.0, 2.0, 2.0],
            id="overlapping: the newer row",
        ),
    ],
)
def test_merge_records_keeps_the_older_rows_from_before_the_newer_start(
    older: ForecastRecord | None,
    newer: ForecastRecord,
    origins: list[float],
    values: list[float],
) -> None:
    merged = merge_records(older, newer)
    np.testing.assert_array_equal(merged.origins, origins)
    np.testing.assert_array_equal(merged.predicted[:, 0], values)


def test_calibration_from_paths_measures_errors_from_the_forecast_clipped_at_zero() -> None:
    """A forecast of -5 is a forecast of no load: an actual of 3 is an error of 3 against it,
    scaled by the floor alone (1), not 8, and not 2 against a forecast clipped higher."""
    calibration = calibration_from_paths(np.array([[3.0]]), np.array([[-5.0]]), floor=1.0)
    np.testing.assert_allclose(calibration.errors[0], [3.0])
    np.testing.assert_allclose(calibration.point_errors, [3.0])


@pytest.mark.parametrize("model", ["holt-winters", "mstl"])
@pytest.mark.parametrize(
    ("step", "least"),
    [
        # Two days of 288 five-minute steps, the lead of 12 steps (an hour), and one more.
        pytest.param(300.0, 2 * 288 + 12 + 1, id="five minutes"),
        # Two samples a day are a daily period of two; an hour's lead is one step.
        pytest.param(DAY / 2, 2 * 2 + 1 + 1, id="twelve hours"),
        # One sample a day still counts a period of two.
        pytest.param(DAY, 2 * 2 + 1 + 1, id="a day"),
    ],
)
def test_a_smoothing_model_needs_two_daily_periods_a_lead_and_one_more(
    model: str, step: float, least: int
) -> None:
    assert create(model, max_horizon=3600.0).least_points(step) == least
