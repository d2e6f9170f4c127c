"""Model internals: recursions match the libraries, cheap refits, auto records its choice."""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import numpy as np
import pytest

from forecasts import create
from forecasts.base import DAY, significantly_lower, unless_beaten
from forecasts.models.auto import Auto, _FittedAuto, _preferred
from forecasts.models.holt_winters import HoltWinters, run_recursion
from forecasts.models.mstl import (
    MSTL,
    LevelParameters,
    _FittedMSTL,
    advance_level,
    level_filter,
    level_paths,
    profile_widths,
    robust_parameters,
    smooth_cycle,
)
from forecasts.models.smoothing import carried_record
from forecasts.series import LoadSeries
from tests.forecast_series import seasonal, series

REFITTABLE = [pytest.param(m, id=m) for m in ("holt-winters", "mstl", "auto")]


def test_holt_winters_recursion_matches_statsmodels_fitted_values() -> None:
    """Our recursion with statsmodels' parameters and initial state gives its one-step fits."""
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    y = seasonal(days=3).values
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = ExponentialSmoothing(
            y,
            trend="add",
            damped_trend=True,
            seasonal="add",
            seasonal_periods=288,
            initialization_method="heuristic",
        ).fit()
    params, level0, trend0, seasons0 = HoltWinters._estimate(y, 288)
    level, trend, season = run_recursion(params, y, level=level0, trend=trend0, seasons=seasons0)
    prev_level = np.concatenate([[level0], level[:-1]])
    prev_trend = np.concatenate([[trend0], trend[:-1]])
    seasons = np.concatenate([seasons0, season])
    mine = prev_level + params.phi * prev_trend + seasons[: y.size]
    np.testing.assert_allclose(mine, result.fittedvalues, rtol=1e-3)


@pytest.mark.parametrize(
    "params",
    [
        pytest.param(LevelParameters(0.3, 0.0, 1.0), id="no-trend"),
        pytest.param(LevelParameters(0.5, 0.15, 0.9), id="damped-trend"),
        pytest.param(LevelParameters(1.0, 0.05, 0.8), id="alpha-one"),
    ],
)
def test_mstl_level_filter_matches_the_python_recursion(params: LevelParameters) -> None:
    """The lfilter form of the damped-trend level equals the step-by-step recursion."""
    d = np.random.default_rng(3).normal(size=400).cumsum() + 50
    level, trend = level_filter(params, d)
    level2, trend2 = advance_level(params, d[1:], level=float(d[0]), trend=0.0)
    np.testing.assert_allclose(level[1:], level2, atol=1e-9)
    np.testing.assert_allclose(trend[1:], trend2, atol=1e-9)


def test_mstl_clipped_level_filter_is_the_clipped_recursion() -> None:
    """With a finite clip the filter runs the recursion itself, each innovation clipped."""
    d = np.random.default_rng(4).normal(size=300).cumsum() + 50
    d[150] += 80.0
    params = LevelParameters(0.5, 0.15, 0.9, clip=2.0)
    level, trend = level_filter(params, d)
    level2, trend2 = advance_level(params, d[1:], level=float(d[0]), trend=0.0)
    np.testing.assert_allclose(level[1:], level2, atol=1e-12)
    np.testing.assert_allclose(trend[1:], trend2, atol=1e-12)
    jump = level[150] - (level[149] + params.phi * trend[149])
    assert jump == pytest.approx(params.alpha * 2.0)


def test_robust_parameters_clip_at_three_robust_standard_deviations() -> None:
    """The clip is three times 1.4826 MAD of the one-step innovations; no spread, no clip."""
    d = np.random.default_rng(5).normal(0, 4.0, 5000) + 100.0
    params = robust_parameters(LevelParameters(0.2, 0.0, 1.0), d)
    assert params.clip == pytest.approx(3 * 4.0 * np.sqrt(1 + 0.2 / (2 - 0.2)), rel=0.05)
    assert robust_parameters(LevelParameters(0.2, 0.0, 1.0), np.full(100, 7.0)).clip == np.inf


def _spiked(history: np.ndarray, *, at: int, length: int, height: float) -> np.ndarray:
    spiked = history.copy()
    spiked[at : at + length] += height
    return spiked


def test_clipped_level_forgets_a_passed_spike() -> None:
    """Two buckets at ten times the load, three buckets before the end, barely move the level
    and trend forecast after them; without the clip they swing the whole horizon."""
    d = np.random.default_rng(6).normal(0, 5.0, 600) + 200.0
    spiked = _spiked(d, at=595, length=2, height=2000.0)
    linear = LevelParameters(0.3, 0.15, 0.9)
    robust = robust_parameters(linear, d)
    for params, near in ((robust, True), (linear, False)):
        level, trend = level_filter(params, spiked)
        path = level_paths(params, level, trend, np.array([spiked.size - 1]), 6)[0]
        assert bool(np.abs(path - 200.0).max() < 20.0) is near


def test_mstl_keeps_the_clip_only_where_it_lowers_the_in_sample_loss() -> None:
    """Thirty two-bucket spikes: the clipped level is kept. A level that moves in large steps
    twice a day: the plain filter is kept."""
    rng = np.random.default_rng(7)
    spiky = seasonal(days=6).values.copy()
    for at in rng.choice(spiky.size - 2, 30, replace=False):
        spiky[at : at + 2] += 1000.0
    assert np.isfinite(create("mstl").fit(series(spiky)).params.clip)
    steps = seasonal(days=6).values.copy()
    for at in range(0, steps.size, 144):
        steps[at:] += rng.choice([-150.0, 150.0])
    assert create("mstl").fit(series(np.maximum(steps, 0.0))).params.clip == np.inf


def test_mstl_still_follows_a_lasting_shift() -> None:
    """A step up that lasts (half a day at +50%) is taken up by the level in full."""
    clean = seasonal(days=6).values
    shifted = _spiked(clean, at=clean.size - 144, length=144, height=100.0)
    fitted = create("mstl").fit(series(shifted))
    point = fitted.forecast(series(shifted), horizon=1800).point
    base = create("mstl").fit(series(clean)).forecast(series(clean), horizon=1800).point
    assert np.mean(point - base) > 80.0


@pytest.mark.parametrize("model", REFITTABLE)
def test_refit_within_a_day_keeps_the_parameters(model: str) -> None:
    """A refit with ``previous`` an hour later only advances the state: no re-estimation."""
    history = seasonal(days=5)
    forecaster = create(model)
    first = forecaster.fit(series(history.values[:-12]))
    again = forecaster.fit(history, previous=first)
    assert again.cheaply_refitted
    assert again.estimated_until == first.estimated_until
    assert again.fitted_until == pytest.approx(history.end)


@pytest.mark.parametrize("model", REFITTABLE)
def test_refit_after_a_day_re_estimates(model: str) -> None:
    """A refit with parameters a day old estimates them again."""
    history = seasonal(days=5)
    forecaster = create(model)
    first = forecaster.fit(series(history.values[:-288]))
    again = forecaster.fit(history, previous=first)
    assert not again.cheaply_refitted


@pytest.mark.parametrize("model", REFITTABLE)
def test_cheap_refit_forecasts_like_advancing_the_fit(model: str) -> None:
    """Refitting cheaply and forecasting from the old fit over the same data agree."""
    history = seasonal(days=5)
    forecaster = create(model)
    first = forecaster.fit(series(history.values[:-12]))
    again = forecaster.fit(history, previous=first)
    np.testing.assert_allclose(
        again.forecast(history, horizon=1800).point,
        first.forecast(history, horizon=1800).point,
        rtol=1e-9,
    )


def test_mstl_records_its_forecasts_whole_across_a_re_estimation() -> None:
    """A cheap refit's forecasts from its last origins reach past its last sample; the season
    repeats, so they are recorded whole, and once their actuals come they count at every lead
    after the next re-estimation too."""
    history = seasonal(days=5)
    forecaster = create("mstl")
    first = forecaster.fit(series(history.values[:-300]))
    cheap = forecaster.fit(series(history.values[:-288]), previous=first)
    again = forecaster.fit(history, previous=cheap)
    assert cheap.cheaply_refitted and not again.cheaply_refitted
    assert again.record is not None
    assert not np.isnan(again.record.predicted).any()


def test_auto_names_the_chosen_model_and_records_that_auto_chose_it() -> None:
    """The fitted auto model carries the winner's name, ``chosen_by == 'auto'`` and all scores."""
    fitted = create("auto").fit(seasonal(days=5))
    assert fitted.name in {"seasonal-naive", "holt-winters", "mstl"}
    assert fitted.chosen_by == "auto"
    scores = fitted.holdout_mae
    assert set(scores) == {"seasonal-naive", "holt-winters", "mstl"}
    assert fitted.name == min(scores, key=scores.__getitem__)


ALL_MODELS = {"seasonal-naive", "holt-winters", "mstl"}


@pytest.mark.parametrize(
    ("days", "scored"),
    [
        # A quarter held out leaves 1.9 days, short of the two days and a lead the smoothing
        # models need; what 2.5 days can spare beyond that (0.4 days) is still enough to judge.
        pytest.param(2.5, ALL_MODELS, id="two-and-a-half-days-all"),
        # 2.2 days can spare 0.1 days beyond their need: too little to judge them on.
        pytest.param(2.2, {"seasonal-naive"}, id="two-point-two-days-seasonal-naive-only"),
        pytest.param(4.0, ALL_MODELS, id="four-days-all"),
    ],
)
def test_auto_scores_every_model_the_history_can_spare_a_hold_out_for(
    days: float, scored: set[str]
) -> None:
    """The hold-out shrinks rather than leave a model that fits the history unscored."""
    fitted = create("auto").fit(seasonal(days=days))
    assert set(fitted.holdout_mae) == scored


def test_auto_chooses_again_as_soon_as_the_history_can_score_every_model() -> None:
    """A choice made without the smoothing models is not kept for a day once they can be scored."""
    history = seasonal(days=2.6)
    forecaster = create("auto")
    first = forecaster.fit(series(history.values[: round(2.2 * 288)]))
    assert set(first.holdout_mae) == {"seasonal-naive"}
    # An hour later the history is still too short: the choice is kept, not made again.
    kept = forecaster.fit(series(history.values[: round(2.2 * 288) + 12]), previous=first)
    assert kept.chosen_at == first.chosen_at
    assert kept.fitted_until == pytest.approx(first.fitted_until + 3600)
    # Hours later, well within the day, it can spare a hold-out for them: all are judged again.
    again = forecaster.fit(history, previous=kept)
    assert set(again.holdout_mae) == ALL_MODELS
    assert again.chosen_at == pytest.approx(history.end)


def _losses(rng: np.random.Generator, size: int, level: float) -> np.ndarray:
    """Per-origin losses that wander together, as overlapping multi-step errors do."""
    walk = np.convolve(rng.normal(0.0, 1.0, size + 11), np.ones(12) / 12, mode="valid")
    return level + 5.0 * walk


def test_significantly_lower_needs_more_than_noise() -> None:
    """A clear, steady gain is significant; a gain well inside the noise, or one measured on
    too few origins, is not."""
    rng = np.random.default_rng(3)
    held = _losses(rng, 200, 100.0)
    assert significantly_lower(held - 10.0 + rng.normal(0, 1.0, 200), held, lead=12)
    assert not significantly_lower(_losses(rng, 200, 99.5), held, lead=12)
    assert not significantly_lower(held[:20] - 10.0, held[:20], lead=12)
    assert not significantly_lower(held[:100] - 10.0, held, lead=12)


def test_auto_chooses_again_once_a_gap_lets_every_candidate_be_scored() -> None:
    """A two-hour outage early in a short history keeps two candidates from their hold-out
    score, though the history is long enough for them: the choice is made again as soon as
    the gap lets them fit, not a day later."""
    values = seasonal(days=4).values.copy()
    values[100:124] = np.nan
    forecaster = create("auto")
    start = round(2.6 * 288)
    fitted = forecaster.fit(series(values[:start]))
    assert set(fitted.holdout_mae) == {"seasonal-naive"}
    for end in range(start + 12, start + 12 * 12, 12):  # an hour at a time, for 11 hours
        fitted = forecaster.fit(series(values[:end]), previous=fitted)
        if len(fitted.holdout_mae) == 3:
            break
    assert set(fitted.holdout_mae) == {"seasonal-naive", "holt-winters", "mstl"}


def test_a_rival_better_at_every_origin_by_the_same_amount_is_significantly_lower() -> None:
    """Differences without spread leave the t statistic undefined; the answer is still plain:
    lower everywhere is lower, and equal everywhere is not."""
    held = np.ones(200)
    assert significantly_lower(held - 1.0, held, lead=6)
    assert not significantly_lower(held, held, lead=6)
    assert not significantly_lower(held + 1.0, held, lead=6)


def test_auto_keeps_its_choice_against_a_rival_no_better_than_chance() -> None:
    """The model chosen before stays when its rivals' lower scores are within the noise, and
    goes when one is lower beyond it."""
    previous = create("auto").fit(seasonal(days=5))
    mine, close = _mine_and_close()
    for held in ("holt-winters", "mstl"):
        earlier = _chosen_before(previous, held, faced=("seasonal-naive", "holt-winters", "mstl"))
        rival = "mstl" if held == "holt-winters" else "holt-winters"
        losses = {held: mine, rival: close}
        scores = _means(losses)
        assert scores[rival] < scores[held]
        assert _preferred(earlier, scores, losses, lead=12) == held
        # Beyond chance: the rival takes the place.
        beaten = {held: mine, rival: mine - 10.0}
        assert _preferred(earlier, _means(beaten), beaten, lead=12) == rival


def test_auto_without_a_choice_to_keep_holds_the_richest_model_against_chance() -> None:
    """With no earlier choice, or one made without facing a model that scores lower now (the
    history was too short to score it), the richest model scored (MSTL) holds the place: a
    simpler one must beat it beyond chance."""
    previous = create("auto").fit(seasonal(days=5))
    mine, close = _mine_and_close()
    losses = {"mstl": mine, "seasonal-naive": close}
    unfaced = _chosen_before(previous, "seasonal-naive", faced=("seasonal-naive",))
    for earlier in (None, unfaced):
        assert _preferred(earlier, _means(losses), losses, lead=12) == "mstl"
        beaten = {"mstl": mine, "seasonal-naive": mine - 10.0}
        assert _preferred(earlier, _means(beaten), beaten, lead=12) == "seasonal-naive"
    # Without MSTL scored, the richest left (Holt-Winters) holds it.
    losses = {"holt-winters": mine, "seasonal-naive": close}
    assert _preferred(None, _means(losses), losses, lead=12) == "holt-winters"
    assert _preferred(None, {}, {}, lead=12) is None


def test_auto_swaps_only_to_a_rival_that_beat_its_model_beyond_chance(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Holt-Winters chosen a day before; on the new hold-out MSTL is lower at every origin,
    give or take, and seasonal naive lower still on average but by far less than its errors
    wander. Only MSTL beat Holt-Winters beyond chance, so MSTL takes the place, not the lowest
    score."""
    rng = np.random.default_rng(8)
    size = 576  # two days of 5-minute origins
    held = _losses(rng, size, 100.0)
    steady = held - 2.0 + rng.normal(0.0, 0.5, size)
    wander = _losses(rng, size, 0.0)
    noisy = held - 2.5 + 40.0 * (wander - wander.mean())
    losses = {"holt-winters": held, "mstl": steady, "seasonal-naive": noisy}
    scores = _means(losses)
    lead = 24  # two hours of 5-minute steps, auto's default horizon
    assert scores["seasonal-naive"] < scores["mstl"] < scores["holt-winters"]
    assert significantly_lower(steady, held, lead=lead)
    assert not significantly_lower(noisy, held, lead=lead)
    history = seasonal(days=5)
    previous = create("auto").fit(series(history.values[:-288]))
    earlier = _chosen_before(previous, "holt-winters", faced=tuple(losses))
    levels = dict.fromkeys(losses, 100.0)
    monkeypatch.setattr(Auto, "_scores", lambda *_args, **_kwargs: (scores, {}, levels, losses))
    fitted = create("auto").fit(history, previous=earlier)
    assert fitted.chosen_at == history.end  # a day on: chosen again
    assert fitted.name == "mstl"


def test_a_choice_held_unless_beaten_goes_to_the_lowest_of_those_that_beat_it() -> None:
    """The rule MSTL's profile width and ``auto`` share: among several rivals that beat the
    held choice beyond chance the lowest score wins; one lower only by chance wins nothing."""
    rng = np.random.default_rng(9)
    held = _losses(rng, 300, 100.0)
    wander = _losses(rng, 300, 0.0)
    losses = {
        1: held,
        3: held - 3.0 + rng.normal(0.0, 0.5, 300),  # beats it
        5: held - 4.0 + rng.normal(0.0, 0.5, 300),  # beats it by more
        7: held - 5.0 + 60.0 * (wander - wander.mean()),  # lowest, within its noise
    }
    scores = _means(losses)
    assert min(scores, key=scores.__getitem__) == 7
    assert unless_beaten(1, scores, losses, lead=12) == 5
    assert unless_beaten(1, {1: scores[1], 7: scores[7]}, losses, lead=12) == 1
    assert unless_beaten(5, scores, losses, lead=12) == 5


def _mine_and_close() -> tuple[np.ndarray, np.ndarray]:
    """Per-origin losses of a model, and a rival's lower on average by 0.5, with differences
    that wander by several times that."""
    rng = np.random.default_rng(4)
    mine = _losses(rng, 300, 100.0)
    wander = _losses(rng, 300, 0.0)
    return mine, mine - 0.5 + 4.0 * (wander - wander.mean())


def _means(losses: dict[str, np.ndarray]) -> dict[str, float]:
    return {name: float(np.mean(v)) for name, v in losses.items()}


def _chosen_before(previous: Any, name: str, *, faced: tuple[str, ...]) -> Any:
    """``previous`` (a fit of ``auto``) as if it had chosen ``name`` having scored ``faced``."""
    chosen = dataclasses.replace(previous.chosen, name=name)
    return dataclasses.replace(
        previous, chosen=chosen, name=name, holdout_mae=dict.fromkeys(faced, 1.0)
    )


def test_auto_prefers_a_smoothing_model_on_a_noisy_daily_cycle() -> None:
    """On a noisy but regular daily cycle auto does not settle for seasonal naive."""
    fitted = create("auto").fit(seasonal(days=6))
    assert fitted.name != "seasonal-naive"


@pytest.mark.parametrize(
    ("days", "periods"),
    [
        pytest.param(10, (288,), id="ten-days-daily-only"),
        pytest.param(16, (288,), id="sixteen-days-daily-only"),
        pytest.param(23, (288, 2016), id="twenty-three-days-weekly"),
    ],
)
def test_mstl_adds_the_weekly_cycle_only_beyond_three_weeks(
    days: int, periods: tuple[int, ...]
) -> None:
    """MSTL uses the weekly season only when the history holds more than three weeks: two for
    STL, and the week the band is calibrated on, which the profile must not have seen."""
    fitted = create("mstl").fit(seasonal(days=days, weekly=30.0))
    assert fitted.periods == periods


def test_a_weekly_profile_s_band_comes_from_forecasts_it_did_not_see() -> None:
    """A fresh fit has no honest record: its band comes from the forecasts of the calibration
    week. A weekly profile is made of that very week, so it knew what those forecasts were to
    forecast. Here only the last week has a burst of 80 (about half the load then) from 15:00
    each day: forecasts an hour ahead did not see it coming, and the band must say so (0.05
    wide when the profile had seen the week)."""
    days = 23
    minutes = np.arange(days * 1440)
    values = 200 + 60 * np.sin(2 * np.pi * minutes / 1440)
    values += np.random.default_rng(4).normal(0.0, 4.0, minutes.size)
    hour = (minutes % 1440) / 60
    values[(minutes >= (days - 7) * 1440) & (hour >= 15) & (hour < 16)] += 80.0
    fitted = create("mstl").fit(LoadSeries(0.0, 60.0, values))
    assert fitted.periods == (288, 2016)
    assert fitted.calibration.quantile(0.97, 12)[11] > 0.3


def test_auto_keeps_the_weekly_profile_s_forecasts_it_did_not_see() -> None:
    """``auto`` puts its honest hold-out forecasts in the band in place of the winner's for the
    hold-out days, and keeps the winner's own for the week before: a weekly MSTL's forecasts by
    a profile that did not see that week. It used to drop them, and calibrate five of the
    week's seven days on in-sample forecasts, whose band is too narrow."""
    step, days = 300.0, 29
    t = step * np.arange(int(days * DAY / step) + 1)
    weekend = ((t // DAY) % 7) >= 5
    values = 1000 + 400 * np.sin(2 * np.pi * t / DAY) - 300 * weekend
    values += 80 * np.sin(2 * np.pi * t / (7 * DAY))
    values += np.random.default_rng(3).normal(0.0, 60.0, t.size)
    history = LoadSeries(0.0, step, values)
    fitted = create("auto").fit(history)
    assert isinstance(fitted, _FittedAuto)
    chosen = fitted.chosen
    assert isinstance(chosen, _FittedMSTL) and chosen.periods == (288, 2016)
    own = create("mstl").fit(history).record
    record = chosen.record
    assert record is not None and own is not None
    before = own.origins < history.end - 2 * DAY  # the days before auto's two-day hold-out
    assert before.sum() > 4 * 288
    np.testing.assert_array_equal(record.origins[: before.sum()], own.origins[before])
    np.testing.assert_allclose(record.predicted[: before.sum()], own.predicted[before])


def _weekdays_and_weekends(days: int, *, noise: float, seed: int = 1) -> LoadSeries:
    """Five-minute load with a daily cycle, weekends 80 lower, and white noise."""
    t = np.arange(days * 288)
    weekend = ((t // 288) % 7) >= 5
    values = 200 + 60 * np.sin(2 * np.pi * t / 288) - 80 * weekend
    values += np.random.default_rng(seed).normal(0.0, noise, t.size)
    return LoadSeries(0.0, 300.0, values)


def test_a_weekly_profile_s_first_band_matches_the_errors_that_follow() -> None:
    """The forecasts the first band is made of use the fit's daily and weekly periods, from the
    history before the calibration week: the band is as wide as the errors of the week after
    the fit (a daily-only profile there made it five times too wide), and on a noiseless
    series it is nil, as it is only when those forecasts line up with their actuals."""
    history = _weekdays_and_weekends(35, noise=4.0)
    fit_at = 28 * DAY - 300.0
    fitted = create("mstl").fit(history.until(fit_at))
    assert fitted.periods == (288, 2016)
    errors = []
    for origin in np.arange(fit_at, fit_at + 7 * DAY, 900.0):
        forecast = fitted.forecast(history.until(origin), horizon=1800.0)
        actual = history.values[history.index_of(forecast.times()[0])]
        errors.append(
            (actual - forecast.point[0]) / (forecast.point[0] + fitted.calibration.scale_floor)
        )
    band = fitted.calibration.quantile(0.95, 1)[0]
    assert 0.75 < band / np.quantile(errors, 0.95) < 1.33
    clean = create("mstl").fit(_weekdays_and_weekends(28, noise=0.0).until(fit_at))
    assert np.abs(clean.calibration.quantile(0.95, 6)).max() < 0.002  # 0.009 a step off


def test_honest_forecasts_outrank_the_held_out_profile_s() -> None:
    """A re-estimation keeps the forecasts the previous fit made as the load came in; the
    held-out profile's forecasts only fill what that record does not reach."""
    history = _weekdays_and_weekends(31, noise=4.0)
    model = create("mstl")
    first = model.fit(history.until(28 * DAY))
    assert first.record is not None
    # Its forecasts reach past the history's end: the rows keep their last leads for later.
    assert np.isfinite(first.record.predicted).all()
    second = model.fit(history.until(30 * DAY), previous=first)
    assert second.estimated_until > first.estimated_until  # re-estimated, not advanced
    prepared, _, lead = model._prepare(history.until(30 * DAY))
    carried = carried_record(first, prepared, lead)
    assert carried is not None and second.record is not None
    since = carried.origins > first.fitted_until
    rows = np.searchsorted(second.record.origins, carried.origins[since])
    np.testing.assert_array_equal(second.record.predicted[rows], carried.predicted[since])


def test_models_fit_a_coarser_trace_at_its_own_step() -> None:
    """An hourly history is fitted and forecast at one hour, with a 24-step daily season."""
    hourly = seasonal(days=10, step=3600.0)
    fitted = create("holt-winters").fit(hourly)
    assert fitted.step == 3600.0
    assert fitted.params.period == round(DAY / 3600)


def _sharp_or_noisy(noise: float, *, days: int = 8, seed: int = 5) -> np.ndarray:
    """A daily cycle with a one-hour evening burst, plus white noise of ``noise``."""
    t = np.arange(days * 288) * 300.0
    hour = (t % DAY) / 3600.0
    burst = np.where((hour >= 19) & (hour < 20), 150.0, 0.0)
    base = 200 + 60 * np.sin(2 * np.pi * t / DAY - 1.0) + burst
    return np.maximum(base + np.random.default_rng(seed).normal(0, noise, t.size), 0.0)


def test_mstl_smooths_a_noisy_profile_and_keeps_a_clean_one() -> None:
    """The profile's width is chosen on held-out data: noise is smoothed away, a sharp
    one-hour burst that repeats every day is kept."""
    noisy = create("mstl").fit(series(_sharp_or_noisy(noise=80.0)))
    clean = create("mstl").fit(series(_sharp_or_noisy(noise=1.0)))
    assert noisy.profile_width > 1
    assert clean.profile_width < noisy.profile_width
    # The clean burst survives in the profile (which starts at midnight here): the hour from
    # 19:00 stands well above the hour from 17:00, as in the data (150 minus the sine's fall).
    burst, before = clean.profile[228:240].mean(), clean.profile[204:216].mean()
    assert burst - before > 100.0


def test_mstl_profile_smoothing_lowers_the_error_on_a_noisy_cycle() -> None:
    """Smoothing chosen out of sample forecasts new noisy days better than the raw last cycle."""
    values = _sharp_or_noisy(noise=80.0, days=10)
    history, future = values[: 8 * 288], values[8 * 288 :]
    fitted = create("mstl").fit(series(history))
    assert fitted.profile_width > 1
    smoothed = np.tile(fitted.profile, 2)[: future.size] + fitted.level[-1]
    raw_fit = MSTL()._decompose(history, (288,))[0][-288:]
    raw = np.tile(raw_fit, 2)[: future.size] + fitted.level[-1]
    assert np.abs(future - smoothed).mean() < np.abs(future - raw).mean()


def test_mstl_keeps_its_profile_width_unless_a_rival_beats_it_beyond_chance() -> None:
    """Re-estimated a day later, MSTL keeps the width it smoothed its profile with while the
    widths that score lower on the new day do so within its noise; a width that is worse
    beyond chance (no smoothing on a noisy cycle, four hours over a one-hour burst) goes."""
    noisy = _sharp_or_noisy(noise=80.0, days=9)
    earlier = create("mstl").fit(series(noisy[:-288]))
    fresh = create("mstl").fit(series(noisy))
    assert fresh.profile_width not in (1, 3)
    kept = dataclasses.replace(earlier, profile_width=3)
    assert create("mstl").fit(series(noisy), previous=kept).profile_width == 3
    raw = dataclasses.replace(earlier, profile_width=1)
    assert create("mstl").fit(series(noisy), previous=raw).profile_width == fresh.profile_width
    clean = _sharp_or_noisy(noise=1.0, days=9)
    blurred = dataclasses.replace(create("mstl").fit(series(clean[:-288])), profile_width=49)
    assert create("mstl").fit(series(clean), previous=blurred).profile_width == 1


def test_auto_re_estimates_the_model_it_keeps_from_its_earlier_fit() -> None:
    """Choosing MSTL again a day later, ``auto`` hands it its earlier fit, so that MSTL keeps
    its profile width as it would on its own."""
    noisy = _sharp_or_noisy(noise=80.0, days=9)
    earlier = create("auto").fit(series(noisy[:-288]))
    assert earlier.name == "mstl"
    fresh = create("auto").fit(series(noisy))
    assert fresh.name == "mstl" and fresh.chosen.profile_width != 3
    kept = dataclasses.replace(earlier, chosen=dataclasses.replace(earlier.chosen, profile_width=3))
    again = create("auto").fit(series(noisy), previous=kept)
    assert again.name == "mstl" and again.chosen.profile_width == 3


def test_profile_widths_are_odd_and_cover_a_sixth_of_the_cycle() -> None:
    """Widths are centred (odd), start at none, and reach a sixth of the cycle."""
    widths = profile_widths(288)
    assert widths[0] == 1
    assert all(w % 2 == 1 for w in widths)
    assert widths[-1] == 49
    assert profile_widths(24) == (1, 3, 5)
    np.testing.assert_allclose(smooth_cycle(np.arange(6.0), 3), [2.0, 1.0, 2.0, 3.0, 4.0, 3.0])


def test_mstl_judges_the_profile_on_what_a_short_history_can_spare() -> None:
    """Two and a half days hold out half a day and still smooth a noisy profile; with barely
    more than the two cycles STL needs there is nothing to judge on and the profile stays raw."""
    noisy = _sharp_or_noisy(noise=80.0)
    assert create("mstl").fit(series(noisy[: 288 * 5 // 2])).profile_width > 1
    assert create("mstl").fit(series(noisy[: 2 * 288 + 40])).profile_width == 1
