"""Histories no model can trust: each gives a clear error or a documented, sensible result."""

from __future__ import annotations

import re

import numpy as np
import pytest

from forecasts import FitFailed, InsufficientHistory, InvalidHistory, create, model_names
from forecasts.base import Calibration, FittedModel, FloatArray, prepare_history
from forecasts.series import LoadSeries
from tests.forecast_series import START, STEP, flat, seasonal, series

MODELS = [pytest.param(m, id=m) for m in model_names()]


@pytest.mark.parametrize("model", MODELS)
def test_all_missing_history_raises_insufficient_history(model: str) -> None:
    """A history of NaN only is InsufficientHistory, never a zero forecast."""
    with pytest.raises(InsufficientHistory):
        create(model).fit(series(np.full(4 * 288, np.nan)))


@pytest.mark.parametrize("model", MODELS)
def test_mostly_missing_history_raises_insufficient_history(model: str) -> None:
    """A history more than half missing inside its span is refused."""
    values = seasonal().values.copy()
    values[1::3] = np.nan
    values[2::3] = np.nan
    with pytest.raises(InsufficientHistory):
        create(model).fit(series(values))


@pytest.mark.parametrize("model", MODELS)
def test_a_negative_glitch_is_a_missing_sample(model: str) -> None:
    """One negative sample is no load: the fit and the forecast read it as missing, in the full
    fit and in the samples a fitted model advances over, exactly as a NaN there."""
    values = seasonal().values.copy()
    glitched, missing = values.copy(), values.copy()
    glitched[-10], missing[-10] = -5.0, np.nan
    fitted = create(model).fit(series(glitched))
    same = create(model).fit(series(missing))
    np.testing.assert_allclose(
        fitted.forecast(series(glitched), horizon=3600).point,
        same.forecast(series(missing), horizon=3600).point,
    )
    # A fit from before the glitch, advanced over it (the live loop between refits).
    early = create(model).fit(series(values[:-30]))
    np.testing.assert_allclose(
        early.forecast(series(glitched), horizon=3600).point,
        early.forecast(series(missing), horizon=3600).point,
    )


@pytest.mark.parametrize("model", MODELS)
def test_a_mostly_negative_history_raises_invalid_history(model: str) -> None:
    """A query that is negative most of the time is wrong: InvalidHistory, naming the value."""
    values = seasonal().values.copy()
    values[1::3] = -5.0
    values[2::3] = -5.0
    with pytest.raises(InvalidHistory, match="-5"):
        create(model).fit(series(values))


def test_one_negative_glitch_in_a_short_history_is_no_wrong_query() -> None:
    """A history too short for a model, with one negative glitch in it, is too short
    (InsufficientHistory, which auto passes over to a model that fits), not a wrong query:
    the glitch is not what left too little."""
    values = seasonal(days=2.2).values.copy()
    values[50] = -1.0
    with pytest.raises(InsufficientHistory):
        create("holt-winters").fit(series(values[:400]))
    chosen = create("auto").fit(series(values))
    missing = values.copy()
    missing[50] = np.nan
    assert chosen.name == create("auto").fit(series(missing)).name


@pytest.mark.parametrize("model", MODELS)
def test_constant_history_forecasts_the_constant(model: str) -> None:
    """A constant history gives a flat forecast at that constant with a band no lower."""
    history = flat(level=250.0)
    forecast = create(model).fit(history).forecast(history, horizon=3600)
    np.testing.assert_allclose(forecast.point, 250.0, rtol=1e-6)
    assert (forecast.upper(0.95) >= 250.0 - 1e-6).all()


@pytest.mark.parametrize("model", MODELS)
def test_constant_zero_history_forecasts_zero_not_an_error(model: str) -> None:
    """An idle region (all zero load) forecasts zero load, finite and non-negative."""
    history = flat(level=0.0)
    forecast = create(model).fit(history).forecast(history, horizon=3600)
    np.testing.assert_allclose(forecast.point, 0.0, atol=1e-9)
    assert np.isfinite(forecast.upper(0.95)).all()


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(np.inf, id="inf"),
        pytest.param(-np.inf, id="-inf"),
        pytest.param(np.nan, id="nan"),
    ],
)
@pytest.mark.parametrize("model", MODELS)
def test_non_finite_samples_count_as_missing(model: str, bad: float) -> None:
    """Non-finite samples are treated as missing: the fit succeeds and the forecast is finite."""
    values = seasonal().values.copy()
    values[100:110] = bad
    history = series(values)
    forecast = create(model).fit(history).forecast(history, horizon=1800)
    assert np.isfinite(forecast.point).all()


@pytest.mark.parametrize("model", MODELS)
def test_forecast_is_never_negative_on_a_falling_series(model: str) -> None:
    """A series falling steeply towards zero never yields a negative forecast."""
    values = seasonal().values.copy()
    values[-36:] = np.linspace(values[-37], 0.0, 36)
    history = series(values)
    forecast = create(model).fit(history).forecast(history, horizon=7200)
    assert (forecast.point >= 0).all()
    assert (forecast.upper(0.95) >= 0).all()


@pytest.mark.parametrize("model", MODELS)
def test_missing_recent_samples_are_advanced_over(model: str) -> None:
    """Missing samples after the fit advance the state on its projection; stays finite."""
    history = seasonal()
    fitted = create(model).fit(history)
    values = np.concatenate([history.values, np.full(6, np.nan)])
    forecast = fitted.forecast(series(values), horizon=1800)
    assert forecast.origin == pytest.approx(history.end + 6 * 300)
    assert np.isfinite(forecast.point).all()


class _BrokenModel(FittedModel):
    name = "broken"
    step = 300.0
    fitted_until = 0.0
    estimated_until = 0.0
    fit_seconds = 0.0
    calibration = Calibration((np.zeros(1),), 1.0)

    def _project(self, observed: FloatArray, steps: int) -> FloatArray:
        return np.full(steps, np.nan)


def test_non_finite_projection_raises_fit_failed_not_zero() -> None:
    """A model that projects NaN raises FitFailed instead of forecasting a silent zero."""
    model = _BrokenModel()
    model.fitted_until = seasonal().end
    with pytest.raises(FitFailed):
        model.forecast(seasonal(), horizon=1800)


def _within_buckets(amplitude: float, *, days: float = 4) -> tuple[LoadSeries, LoadSeries]:
    """``days`` of a daily cycle at 1-minute samples that swing by ``amplitude`` inside each
    5-minute bucket, and the same history as its 5-minute means."""
    cycle = seasonal(days, seed=5)
    swing = amplitude * np.array([-1.0, -0.5, 0.0, 0.5, 1.0])
    minutes = LoadSeries(cycle.start, 60.0, (cycle.values[:, None] + swing[None, :]).reshape(-1))
    return minutes, minutes.aggregate(300.0)


@pytest.mark.parametrize("model", MODELS)
def test_the_band_covers_the_samples_inside_each_bucket(model: str) -> None:
    """A model fitted on 5-minute means of a 1-minute history is calibrated on every minute:
    its band covers the load each minute, which capacity must serve, not only each mean."""
    minutes, means = _within_buckets(40.0)
    fitted_minutes = create(model, fit_step=300.0, max_horizon=1800.0).fit(minutes)
    fitted_means = create(model, fit_step=300.0, max_horizon=1800.0).fit(means)
    assert fitted_minutes.fitted_until == fitted_means.fitted_until
    by_minute = fitted_minutes.forecast(minutes, horizon=1800.0)
    by_mean = fitted_means.forecast(means, horizon=1800.0)
    np.testing.assert_allclose(by_minute.point, by_mean.point, rtol=1e-6)
    widening = by_minute.upper(0.95) - by_mean.upper(0.95)
    # The top fifth of the minutes sits 40 above its mean: the 0.95 band must reach it.
    assert widening.min() > 0.5 * 40.0
    # A cheap refit an hour later (the state advanced, the band recalibrated) keeps it.
    later, later_means = _within_buckets(40.0, days=4 + 1 / 24)
    refitted = create(model, fit_step=300.0, max_horizon=1800.0).fit(later, previous=fitted_minutes)
    assert refitted.cheaply_refitted or model == "seasonal-naive"
    band = refitted.forecast(later, horizon=1800.0)
    means_band = (
        create(model, fit_step=300.0, max_horizon=1800.0)
        .fit(later_means, previous=fitted_means)
        .forecast(later_means, horizon=1800.0)
    )
    assert (band.upper(0.95) - means_band.upper(0.95)).min() > 0.5 * 40.0


def test_buckets_are_the_samples_aggregate_averages() -> None:
    """``buckets`` holds each whole bucket's samples, aligned as ``aggregate`` aligns them."""
    history = LoadSeries(120.0, 60.0, np.arange(20.0))
    end, block = history.buckets(300.0)
    means = history.aggregate(300.0)
    assert end == means.start == 540.0
    np.testing.assert_allclose(block.mean(axis=1), means.values)
    np.testing.assert_allclose(block[0], [3.0, 4.0, 5.0, 6.0, 7.0])


@pytest.mark.parametrize("offset", [0.0, 30.0, 53.0], ids=["on-the-minute", "half-step", "53s"])
def test_the_bucket_grid_does_not_depend_on_where_a_slice_starts(offset: float) -> None:
    """A bucket holds the samples in ``[k * step, (k + 1) * step)`` wherever the series starts,
    so the history the operator slides a sample at a time is cut into the same buckets at
    every slice. Samples half a step off the minute used to be rounded to even, and the grid
    flipped by one sample from one slice to the next."""
    start = 1_700_000_100.0 + offset  # 1_700_000_100 is a multiple of 300 s
    history = LoadSeries(start, 60.0, np.arange(60.0))  # each value is its sample's index
    for first in range(8):
        part = history.since(start + 60.0 * first)
        end, block = part.buckets(300.0)
        opens = start + 60.0 * block[:, 0]  # the time of each bucket's first sample
        assert (opens % 300.0 < 60.0).all()
        assert end == opens[0] + 240.0
        assert part.aggregate(300.0).start == end


def test_prepared_history_keeps_each_bucket_s_samples() -> None:
    """Deviations from the value a model keeps for the bucket, so that a mean computed before
    the bucket was whole still gives back its samples; a bucket without a sample, or older
    than the history, holds one 0."""
    values = np.arange(20.0)
    values[5:10] = np.nan
    prepared = prepare_history(LoadSeries(0.0, 60.0, values), fit_step=300.0, min_points=2)
    assert prepared.samples is not None
    within = prepared.within_tail(prepared.values)
    assert within is not None
    np.testing.assert_allclose(within[0], [-2.0, -1.0, 0.0, 1.0, 2.0])
    assert within[1][0] == 0.0 and np.isnan(within[1][1:]).all()
    stale = np.array([99.0, 7.0, 10.0, 15.0, 17.0])  # an older first row, a stale last mean
    kept = prepared.within_tail(stale)
    assert kept is not None
    assert kept[0][0] == 0.0 and np.isnan(kept[0][1:]).all()
    np.testing.assert_allclose(stale[-1] + kept[-1], [15.0, 16.0, 17.0, 18.0, 19.0])
    unaggregated = prepare_history(LoadSeries(0.0, 300.0, values), fit_step=300.0, min_points=2)
    assert unaggregated.samples is None
    assert unaggregated.within_tail(unaggregated.values) is None


@pytest.mark.parametrize(
    ("values", "refused"),
    [
        pytest.param([1.0] * 6, False, id="exactly min_points known"),
        pytest.param([1.0] * 5, True, id="one short of min_points"),
        pytest.param([1.0] * 5 + [np.nan] * 10 + [1.0] * 5, False, id="exactly half missing"),
        pytest.param([1.0] * 5 + [np.nan] * 11 + [1.0] * 5, True, id="11 of 21 missing"),
    ],
)
def test_a_history_of_min_points_and_half_its_span_known_is_enough(
    values: list[float], refused: bool
) -> None:
    """``min_points`` known samples are enough, and so is a span half known; one fewer, or
    more than half missing, is InsufficientHistory."""
    if refused:
        with pytest.raises(InsufficientHistory):
            prepare_history(series(values), fit_step=300.0, min_points=6)
    else:
        prepared = prepare_history(series(values), fit_step=300.0, min_points=6)
        assert prepared.values.size == len(values)


@pytest.mark.parametrize(
    ("values", "step", "error"),
    [
        pytest.param(
            [1.0] * 5 + [np.nan] * 10 + [-1.0] * 5, 300.0, InvalidHistory, id="as loads, half known"
        ),
        pytest.param(
            [1.0] * 5 + [np.nan] * 11 + [-1.0] * 5,
            300.0,
            InsufficientHistory,
            id="as loads, 11 of 21 missing",
        ),
        pytest.param([1.0] * 3 + [-1.0] * 3, 300.0, InvalidHistory, id="as loads, min_points"),
        pytest.param([1.0] * 2 + [-1.0] * 3, 300.0, InsufficientHistory, id="as loads, too few"),
        pytest.param(
            [1.0] * 5 + [-1.0] * 15, 60.0, InsufficientHistory, id="20 minutes, 4 buckets"
        ),
    ],
)
def test_negatives_are_blamed_only_where_they_leave_too_little(
    values: list[float], step: float, error: type[Exception]
) -> None:
    """Negative samples too many to read as missing are a wrong query (InvalidHistory) only
    when, read as loads, the history would have been enough: 6 buckets of 5 minutes, half of
    the span known; else it is too short either way (InsufficientHistory)."""
    with pytest.raises(error):
        prepare_history(series(values, step=step), fit_step=300.0, min_points=6)


@pytest.mark.parametrize(
    ("before", "first"),
    [
        pytest.param([], 0, id="first sample negative"),
        pytest.param([0.0, 0.5, 5.0], 3, id="after no load and half a load"),
    ],
)
def test_invalid_history_counts_the_negatives_and_names_the_first(
    before: list[float], first: int
) -> None:
    """Sixteen samples of -7 after ``before`` (no load, or a fraction of one, is no negative):
    the error counts sixteen and names the first, with its time."""
    values = before + [-7.0] * 16 + [5.0] * 2
    when = START + first * STEP
    message = f"history holds 16 negative loads (the first -7 at t={when:.0f})"
    with pytest.raises(InvalidHistory, match=re.escape(message)):
        prepare_history(series(values), fit_step=STEP, min_points=6)


@pytest.mark.parametrize(
    ("leading", "trailing"),
    [(0, 0), (3, 0), (0, 2)],
    ids=["none missing", "three missing first", "two missing last"],
)
def test_a_prepared_history_spans_its_first_to_last_known_sample(
    leading: int, trailing: int
) -> None:
    """Missing samples before the first known one and after the last are dropped: the
    prepared history spans those samples' times, with their values, none filled."""
    values = [np.nan] * leading + [4.0, 5.0, 6.0, 7.0, 8.0, 9.0] + [np.nan] * trailing
    prepared = prepare_history(series(values), fit_step=STEP, min_points=6)
    assert prepared.start == START + leading * STEP
    np.testing.assert_array_equal(prepared.values, [4.0, 5.0, 6.0, 7.0, 8.0, 9.0])
    assert prepared.filled is None
