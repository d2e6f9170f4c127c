"""The pieces Holt-Winters and MSTL share: the damped trend's sums, the paths read off a series,
which origins calibrate, how honest records merge and are carried, which forecasts a band is
calibrated on, and how much history a fit needs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from forecasts import create
from forecasts.base import DAY, PreparedHistory
from forecasts.models.smoothing import (
    ForecastRecord,
    calibrate,
    calibration_from_paths,
    calibration_origins,
    carried_record,
    damped_sums,
    merge_records,
    shifted,
)
from tests.forecast_series import seasonal

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


def _calibrate(
    *,
    estimated_until: float,
    record: ForecastRecord | None = None,
    known: list[bool] | None = None,
    size: int = 5,
) -> tuple[np.ndarray, ForecastRecord]:
    """Calibrate on ``size`` values of 10 at a 100 s step, the last at ``100 * (size - 1)``,
    from every origin but the last, whose in-sample one-step forecasts are perfect (10): an
    error is a row the honest record replaced (5, an error of 1 at a floor of 0)."""
    values = np.full(size, 10.0)
    origins = np.arange(size - 1)
    calibration, kept = calibrate(
        end=100.0 * (size - 1),
        step=100.0,
        values=values,
        origins=origins,
        predicted=np.full((size - 1, 1), 10.0),
        floor=0.0,
        estimated_until=estimated_until,
        record=record,
        known=None if known is None else np.asarray(known),
    )
    return calibration.errors[0], kept


def test_an_origin_at_the_estimation_is_honest_as_computed() -> None:
    """Origins at 0, 100, 200 and 300 s, parameters estimated at 200 s: the forecast from 200
    is honest and stays; the record replaces only the one from 100."""
    errors, kept = _calibrate(estimated_until=200.0, record=_record([100.0, 200.0], 5.0))
    assert np.count_nonzero(errors) == 1
    np.testing.assert_array_equal(kept.origins, [100.0, 200.0, 300.0])


def test_a_record_replaces_rows_up_to_its_last_when_no_origin_is_honest_yet() -> None:
    """Estimated after every origin: the record's rows at 100 and 200 s replace the in-sample
    ones there, and the record keeps them; the origin after the record's last has no row."""
    errors, kept = _calibrate(estimated_until=350.0, record=_record([100.0, 200.0], 5.0))
    np.testing.assert_allclose(np.sort(errors), [0.0, 0.0, 1.0, 1.0])
    np.testing.assert_array_equal(kept.origins, [100.0, 200.0])


def test_the_record_keeps_rows_from_the_first_origin_on() -> None:
    """A row from before the first origin (at -100 s) is dropped; the one at the first origin
    (0 s) stays, with the honest rows after it."""
    errors, kept = _calibrate(estimated_until=250.0, record=_record([-100.0, 0.0, 100.0], 5.0))
    assert np.count_nonzero(errors) == 2
    np.testing.assert_array_equal(kept.origins, [0.0, 100.0, 300.0])


def test_no_forecast_from_inside_a_filled_gap_is_kept_or_measured() -> None:
    """Six values, the second and third filled in over a gap. The origins at 100 and 200 s
    lean on the value after the gap: the record drops them and the calibration leaves them
    out. The forecast from 0 s is of a filled value, no actual: only the ones from 300 and
    400 s are measured."""
    errors, kept = _calibrate(
        estimated_until=0.0, known=[True, False, False, True, True, True], size=6
    )
    assert errors.size == 2
    np.testing.assert_array_equal(kept.origins, [0.0, 300.0, 400.0])


@dataclass
class _Fit:
    """A fit's part that :func:`carried_record` reads. Its path from each origin holds how
    many new values the origin had seen, at every lead."""

    record: ForecastRecord | None
    fitted_until: float = 200.0
    step: float = 100.0

    def backtest_paths(self, observed: np.ndarray, lead: int) -> np.ndarray:
        return np.repeat(np.arange(observed.size, dtype=np.float64)[:, None], lead, axis=1)


def _history(
    size: int, *, filled: list[bool] | None = None, step: float = 100.0
) -> PreparedHistory:
    values = np.full(size, 10.0)
    mask = None if filled is None else np.asarray(filled)
    return PreparedHistory(0.0, step, values, missing_fraction=0.0, filled=mask)


def test_a_carried_record_adds_a_row_from_the_fit_s_end_and_each_new_sample_but_the_last() -> None:
    """Fitted through 200 s; values up to 600 s, the one at 400 s filled over a gap. Rows are
    made at 200 s (before the new values), at 300 s, and at 500 s; none at 400 s, inside the
    gap, and none at 600 s, whose forecast has no actual yet. The older row at 100 s stays."""
    previous = _Fit(record=_record([100.0], -1.0, lead=2))
    record = carried_record(previous, _history(7, filled=[False] * 4 + [True, False, False]), 2)
    assert record is not None
    np.testing.assert_array_equal(record.origins, [100.0, 200.0, 300.0, 500.0])
    np.testing.assert_array_equal(record.predicted[:, 0], [-1.0, 0.0, 1.0, 3.0])


def test_one_new_sample_carries_the_row_from_the_fit_s_end() -> None:
    record = carried_record(_Fit(record=None), _history(4), 1)
    assert record is not None
    np.testing.assert_array_equal(record.origins, [200.0])
    np.testing.assert_array_equal(record.predicted, [[0.0]])


@pytest.mark.parametrize(
    ("history", "carried"),
    [
        pytest.param(_history(3), True, id="nothing new"),
        pytest.param(_history(3, step=50.0), False, id="another step"),
        pytest.param(PreparedHistory(300.0, 100.0, np.ones(3), 0.0), True, id="fit not in it"),
    ],
)
def test_a_record_is_carried_unchanged_or_dropped_without_new_samples_to_add(
    history: PreparedHistory, carried: bool
) -> None:
    """Nothing after the fit, or a history that starts after it: the record as it was. A
    history on another step: no record (its rows are on the old grid)."""
    older = _record([100.0], 1.0)
    assert carried_record(_Fit(record=older), history, 1) is (older if carried else None)


def test_auto_hands_its_hold_out_forecasts_to_the_smoothing_model_it_chooses() -> None:
    """Fitted alone on six days, a smoothing model has no honest record yet: its in-sample
    forecasts are all it could calibrate on. Chosen by ``auto``, it keeps the hold-out's
    forecasts, every one made by parameters that had not seen what it forecast."""
    history = seasonal(6)
    chosen = create("auto", max_horizon=3600.0).fit(history).chosen
    assert chosen.name in ("holt-winters", "mstl")
    alone = create(chosen.name, max_horizon=3600.0).fit(history)
    assert alone.record is None or alone.record.origins.size == 0
    assert chosen.record is not None and chosen.record.origins.size > 0
    assert chosen.record.origins.max() < chosen.estimated_until
