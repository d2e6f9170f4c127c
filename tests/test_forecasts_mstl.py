"""MSTL's rules one by one: the damped-trend level's paths, loss and grid, the robust clip's
spread, a missing sample in the level's advance, when a refit is cheap, the backtest paths, the
profile's phase and held-out width, when the weekly cycle comes, the window and the first
band's week."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from forecasts import create
from forecasts.base import DAY, FittedModel
from forecasts.models.mstl import (
    CLIP_SIGMAS,
    LevelParameters,
    advance_level,
    estimate_level,
    level_filter,
    level_loss,
    level_paths,
    profile_widths,
    robust_parameters,
)
from forecasts.series import LoadSeries
from tests.forecast_series import seasonal, series


@pytest.mark.parametrize(
    ("phi", "expected"),
    [
        pytest.param(0.5, [11.0, 11.5, 11.75], id="damped"),
        pytest.param(1.0, [12.0, 14.0, 16.0], id="undamped"),
    ],
)
def test_level_paths_add_the_damped_trend_to_the_level(phi: float, expected: list[float]) -> None:
    """``h`` steps ahead the path is ``l + (phi + ... + phi**h) b``: level 10, trend 2."""
    params = LevelParameters(0.5, 0.1, phi)
    level, trend = np.array([0.0, 10.0]), np.array([0.0, 2.0])
    paths = level_paths(params, level, trend, np.array([1]), 3)
    np.testing.assert_allclose(paths, [expected])


def test_the_level_grid_takes_up_a_trend() -> None:
    """On a straight ramp every no-trend candidate lags by ``h`` slopes at lead ``h``; the grid
    holds trended candidates, and one of them wins with a lower loss."""
    ramp = 100.0 + 2.0 * np.arange(600)
    params, loss = estimate_level(ramp, lead=6, burn_in=100)
    assert params.beta > 0.0
    # The best no-trend candidate (alpha 1) errs by 2h at lead h: 2 * (1 + ... + 6) = 42.
    assert loss < 42.0


def test_robust_spread_is_that_of_the_one_step_innovations() -> None:
    """A random walk followed with ``alpha = 1`` has the walk's own steps as its one-step
    innovations: the clip is three times their standard deviation (1.4826 MAD), not a
    multiple of the level's."""
    steps = np.random.default_rng(11).normal(0.0, 2.0, 4000)
    walk = 1000.0 + np.cumsum(steps)
    params = robust_parameters(LevelParameters(1.0, 0.0, 1.0), walk)
    assert params.clip == pytest.approx(CLIP_SIGMAS * 2.0, rel=0.06)


def test_robust_clip_is_three_robust_deviations_of_the_damped_trend_s_innovations() -> None:
    """With a trend, the one-step innovation is ``d - (l + phi b)`` as in the recursion: the
    clip is ``CLIP_SIGMAS`` times 1.4826 times their median absolute deviation."""
    d = 500.0 + np.cumsum(np.random.default_rng(13).normal(0.05, 0.3, 2000))  # spread < 1
    params = LevelParameters(0.5, 0.15, 0.9)
    level, trend, innovations = float(d[0]), 0.0, []
    for value in d[1:]:
        error = value - (level + params.phi * trend)
        innovations.append(error)
        level += params.phi * trend + params.alpha * error
        trend = params.phi * trend + params.alpha * params.beta * error
    mad = np.median(np.abs(np.array(innovations) - np.median(innovations)))
    clip = robust_parameters(params, d).clip
    assert clip == pytest.approx(CLIP_SIGMAS * 1.4826 * mad, rel=1e-9)


@pytest.mark.parametrize(
    ("lead", "burn_in", "expected"),
    [
        pytest.param(1, 10, 1.0, id="one-lead"),
        pytest.param(3, 10, 6.0, id="three-leads"),
        pytest.param(3, 0, 6.0, id="no-burn-in"),
    ],
)
def test_level_loss_sums_the_mae_over_leads_one_to_lead(
    lead: int, burn_in: int, expected: float
) -> None:
    """With ``alpha = 1`` and no trend the forecast is the last value: on a ramp of slope 1 it
    errs by ``h`` at lead ``h``, so the loss is ``1 + ... + lead``."""
    ramp = np.arange(50, dtype=np.float64)
    params = LevelParameters(1.0, 0.0, 1.0)
    assert level_loss(params, ramp, lead=lead, burn_in=burn_in) == pytest.approx(expected)


def test_level_loss_is_nil_for_a_trend_locked_onto_a_ramp() -> None:
    """``alpha = 1`` with a trend (``beta = 0.5``, undamped) learns a slope of 2 within a few
    dozen samples (its gap halves each step); from then on ``l + h b`` is exact at every lead."""
    ramp = 2.0 * np.arange(120, dtype=np.float64)
    params = LevelParameters(1.0, 0.5, 1.0)
    assert level_loss(params, ramp, lead=4, burn_in=60) == pytest.approx(0.0, abs=1e-9)


def test_the_level_grid_tries_no_trend() -> None:
    """A level that steps once and stays: any trend overshoots after the step, so the grid's
    best is ``alpha = 1`` with no trend (``beta == 0``), the last value carried on."""
    step = np.concatenate([np.full(300, 50.0), np.full(300, 150.0)])
    params, _ = estimate_level(step, lead=6, burn_in=100)
    assert (params.alpha, params.beta) == (1.0, 0.0)


def test_profile_widths_are_the_documented_fractions_of_a_five_minute_day() -> None:
    """None, 15 and 30 minutes, one, two and four hours of 288 samples, each rounded down to
    an odd count: 1, 3, 2*3+1, 2*6+1, 2*12+1 and 2*24+1."""
    assert profile_widths(288) == (1, 3, 7, 13, 25, 49)


def test_a_missing_sample_advances_the_level_without_a_correction() -> None:
    """NaN (no observation) moves level and trend only by the damped trend: ``l + phi b`` and
    ``phi b``; the sample after it is corrected from there."""
    params = LevelParameters(0.5, 0.2, 0.8)
    level, trend = advance_level(params, np.array([np.nan, 20.0]), level=10.0, trend=1.0)
    assert level[0] == pytest.approx(10.8) and trend[0] == pytest.approx(0.8)
    # Expected 10.8 + 0.64 = 11.44; error 8.56; level += 0.5 e, trend = 0.64 + 0.1 e.
    assert level[1] == pytest.approx(11.44 + 0.5 * 8.56)
    assert trend[1] == pytest.approx(0.64 + 0.1 * 8.56)


def test_the_level_filter_starts_at_the_first_value_with_no_trend() -> None:
    """The filter's first level is the first sample and its first trend zero, clipped or not."""
    d = np.random.default_rng(12).normal(0.0, 3.0, 50) + 40.0
    for clip in (np.inf, 2.0):
        level, trend = level_filter(LevelParameters(0.4, 0.15, 0.9, clip=clip), d)
        assert level[0] == d[0] and trend[0] == 0.0


def test_a_refit_at_another_step_re_estimates() -> None:
    """A cheap refit continues a state on its own grid only: an hourly history handed a
    five-minute fit is fitted afresh, at one hour."""
    forecaster = create("mstl")
    first = forecaster.fit(seasonal(days=5))
    hourly = seasonal(days=5, step=3600.0)
    again = forecaster.fit(hourly, previous=first)
    assert again.step == 3600.0 and not again.cheaply_refitted
    assert again.periods == (24,)


def test_a_refit_just_short_of_a_day_is_cheap() -> None:
    """Re-estimation is due a whole ``reestimate_every`` after the estimation, not before: a
    day less one sample only advances the state."""
    history = seasonal(days=5)
    forecaster = create("mstl")
    first = forecaster.fit(series(history.values[:-287]))
    again = forecaster.fit(history, previous=first)
    assert again.cheaply_refitted and again.estimated_until == first.estimated_until


def _climbing() -> np.ndarray:
    """Five days of a daily cycle climbing 0.2 a sample: a trend the level takes up."""
    return seasonal(days=5).values + 0.2 * np.arange(5 * 288)


def test_cheap_refits_carry_the_trend_on_from_where_the_last_one_stopped() -> None:
    """A cheap refit starts from the level and trend of the fit's last sample: two refits, over
    40 samples and then 60, end where one over all 100 does, on a series whose trend is not nil
    (with a trend of zero, a refit that dropped it would pass unseen)."""
    values = _climbing()
    forecaster = create("mstl")
    first = forecaster.fit(series(values[:-100]))
    assert first.trend[-1] > 0.05
    twice = forecaster.fit(
        series(values), previous=forecaster.fit(series(values[:-60]), previous=first)
    )
    once = forecaster.fit(series(values), previous=first)
    assert twice.cheaply_refitted and once.cheaply_refitted
    np.testing.assert_allclose(twice.level, once.level)
    np.testing.assert_allclose(twice.trend, once.trend)
    history = series(values)
    np.testing.assert_allclose(
        twice.forecast(history, horizon=3600.0).point, once.forecast(history, horizon=3600.0).point
    )


def test_a_forecast_over_new_samples_advances_as_a_cheap_refit_does() -> None:
    """Forecasting from a fit over samples it has not seen advances its level and trend over
    them as a cheap refit would: the same point forecast, read on from the same phase."""
    values = _climbing()
    forecaster = create("mstl")
    first = forecaster.fit(series(values[:-100]))
    refitted = forecaster.fit(series(values), previous=first)
    history = series(values)
    advanced = first.forecast(history, horizon=3600.0).point
    assert first.trend[-1] > 0.05
    np.testing.assert_allclose(advanced, refitted.forecast(history, horizon=3600.0).point)


@pytest.mark.parametrize(
    "cheap", [pytest.param(False, id="fresh"), pytest.param(True, id="advanced")]
)
def test_backtest_paths_are_the_forecasts_re_advanced_from_each_origin(cheap: bool) -> None:
    """The vectorised paths equal the documented default: row ``i`` is the forecast after
    advancing over ``observed[:i]`` (a missing sample included), also from a fit already
    advanced by a cheap refit, whose season is read on from where it stopped."""
    history = seasonal(days=4)
    values = history.values + 0.3 * np.arange(history.values.size)  # a trend to follow
    forecaster = create("mstl")
    fitted = forecaster.fit(series(values[:-60]))
    if cheap:
        fitted = forecaster.fit(series(values[:-40]), previous=fitted)
        assert fitted.cheaply_refitted
    observed = values[-40:].copy()
    observed[7] = np.nan
    np.testing.assert_allclose(
        fitted.backtest_paths(observed, 6), FittedModel.backtest_paths(fitted, observed, 6)
    )


def test_mstl_decomposes_the_last_four_weeks_by_default() -> None:
    """The default window is 28 days: what came before it, however different, changes nothing."""
    hourly = seasonal(days=35, step=3600.0, weekly=30.0)
    earlier = hourly.values.copy()
    earlier[: 7 * 24] *= 5.0
    start = hourly.end - 28 * DAY + 3600.0
    last_four_weeks = LoadSeries(start, 3600.0, hourly.values[-28 * 24 :])
    both = [
        create("mstl").fit(history).forecast(history, horizon=7200.0).point
        for history in (LoadSeries(hourly.start, 3600.0, earlier), last_four_weeks)
    ]
    np.testing.assert_allclose(both[0], both[1])


@pytest.mark.parametrize(
    ("step", "days"),
    [
        pytest.param(300.0, 9, id="five-minute"),
        pytest.param(3600.0, 9, id="hourly"),
        pytest.param(300.0, 3, id="shorter-than-a-week-all-of-it"),
    ],
)
def test_a_first_fit_s_band_is_made_of_the_whole_last_week(step: float, days: int) -> None:
    """A fresh fit calibrates on in-sample forecasts from each step of the last
    ``calibration_window`` (a week), its end included: of those ``n + 1`` origins (``n`` steps
    a week, or every sample of a shorter history), ``n + 1 - h`` have their actual ``h`` steps
    ahead."""
    fitted = create("mstl").fit(seasonal(days=days, step=step))
    n = min(round(days * DAY / step) - 1, round(7 * DAY / step))
    sizes = [row.size for row in fitted.calibration.errors]
    assert sizes == [n + 1 - h for h in range(1, len(sizes) + 1)]


def test_a_width_the_grid_does_not_hold_is_not_kept() -> None:
    """Only a width among :func:`profile_widths` is kept: handed another (5 samples, not one
    of a five-minute day's), the re-estimation chooses as a fresh fit does."""
    t = np.arange(9 * 288) * 300.0
    noisy = 200 + 60 * np.sin(2 * np.pi * t / DAY) + np.random.default_rng(5).normal(0, 80, t.size)
    noisy = np.maximum(noisy, 0.0)
    earlier = create("mstl").fit(series(noisy[:-288]))
    odd = dataclasses.replace(earlier, profile_width=5)
    fresh = create("mstl").fit(series(noisy))
    assert create("mstl").fit(series(noisy), previous=odd).profile_width == fresh.profile_width


@pytest.mark.parametrize(
    ("extra", "periods"),
    [
        pytest.param(0, (24,), id="exactly-three-weeks-daily-only"),
        pytest.param(1, (24, 168), id="an-hour-more-weekly"),
    ],
)
def test_the_weekly_cycle_needs_more_than_three_weeks(extra: int, periods: tuple[int, ...]) -> None:
    """The weekly profile comes only when the history holds *more* than three weeks: at an
    hour a step, 504 samples are daily only, 505 add the 168-sample week."""
    hourly = seasonal(days=22, step=3600.0, weekly=30.0)
    history = series(hourly.values[: 3 * 168 + extra], step=3600.0)
    assert create("mstl").fit(history).periods == periods


@pytest.mark.parametrize("days", [pytest.param(4, id="four-days"), pytest.param(6, id="six-days")])
def test_a_pure_daily_sine_is_forecast_in_phase(days: int) -> None:
    """Without noise the profile is the last day repeated from the step after the last sample:
    the next two hours of a sine of amplitude 60 come out within 0.3 (a step out of phase
    errs by up to 60 * 2 pi / 288, about 1.3)."""
    t = np.arange((days + 1) * 288) * 300.0
    values = 200 + 60 * np.sin(2 * np.pi * t / DAY - 1.0)
    history = series(values[: days * 288])
    forecast = create("mstl").fit(history).forecast(history, horizon=7200.0)
    expected = values[days * 288 : days * 288 + forecast.point.size]
    assert forecast.point.size == 24
    np.testing.assert_allclose(forecast.point, expected, atol=0.3)
    # Its in-sample forecasts, which the first band is made of, read the same profile: nil.
    fitted = create("mstl").fit(history)
    assert np.abs(fitted.calibration.quantile(0.95, 24)).max() < 0.005


@pytest.mark.parametrize(
    "samples",
    [pytest.param(8 * 288, id="whole-days"), pytest.param(8 * 288 + 100, id="part-of-a-day")],
)
def test_a_noiseless_sharp_profile_is_kept_raw(samples: int) -> None:
    """Judged on the held-out day, read at its own phase, the raw profile of a noiseless daily
    cycle with a one-hour burst forecasts it exactly: any smoothing blurs the burst and loses."""
    t = np.arange(samples) * 300.0
    hour = (t % DAY) / 3600.0
    values = (
        200
        + 60 * np.sin(2 * np.pi * t / DAY - 1.0)
        + np.where((hour >= 19) & (hour < 20), 150.0, 0.0)
    )
    assert create("mstl").fit(series(values)).profile_width == 1
