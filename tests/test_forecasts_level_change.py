"""A lasting change of level: the errors of forecasts across it, and while the model followed
it, are retired."""

from __future__ import annotations

import numpy as np
import pytest

from forecasts import create
from forecasts.base import (
    DAY,
    PreparedHistory,
    calibrating_origins,
    level_changes,
    prepare_history,
    significantly_lower,
    unless_beaten,
)
from forecasts.models.smoothing import calibrate
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
def test_a_lasting_change_is_found_within_the_hour(factor: float) -> None:
    (change,) = level_changes(_prepared(_shifted(9, 5.0, factor)))
    assert abs(change - (START + 5.0 * DAY)) <= HOUR


@pytest.mark.parametrize(
    "values",
    [
        pytest.param(_daily(9), id="steady"),
        pytest.param(_shifted(9, 5.0, 1.6), id="a change under twice"),
        pytest.param(_shifted(9, 8.5, 3.0), id="less than a day of the new level"),
    ],
)
def test_no_change_without_a_day_of_a_level_at_least_twice_or_half(values: np.ndarray) -> None:
    assert level_changes(_prepared(values)) == ()


def test_a_spike_of_hours_is_not_a_change_of_level() -> None:
    """A day's median ignores six hours at ten times the load: the band keeps the spike's
    errors, which is what it is for."""
    values = _daily(9)
    start = round(5.0 * DAY / STEP)
    values[start : start + round(6 * HOUR / STEP)] *= 10.0
    assert level_changes(_prepared(values)) == ()


def test_a_weekly_cycle_is_not_a_change_of_level() -> None:
    """Weekends at 60% of weekdays, as on New York taxi: no change."""
    values = _daily(21)
    day = (np.arange(values.size) * STEP // DAY).astype(int)
    values[day % 7 >= 5] *= 0.6
    assert level_changes(_prepared(values)) == ()


def test_a_weekly_cycle_of_more_than_twice_is_not_a_change_once_a_week_is_known() -> None:
    """Office hours: weekends at a quarter of weekdays. Each Monday is a day at four times
    the one before, as the Monday a week before was: only the changes with no week before
    them in the history count (the first week and a day's)."""
    values = _daily(21)
    day = (np.arange(values.size) * STEP // DAY).astype(int)
    values[day % 7 >= 5] *= 0.25
    changes = level_changes(_prepared(values))
    assert changes and all(change < START + 8 * DAY + HOUR for change in changes)


def test_a_change_off_the_hour_is_placed_within_a_step_or_two() -> None:
    for minutes in (5, 25, 40, 55):
        at = 5.0 + minutes / (24 * 60)
        (change,) = level_changes(_prepared(_shifted(9, at, 3.0)))
        assert abs(change - (START + round(at * DAY / STEP) * STEP)) <= 2 * STEP


def test_load_after_a_day_of_none_is_placed_where_it_starts() -> None:
    """No load then load: every ratio is infinite, so the change is placed by the mean's
    move in load, not half a day early."""
    values = _daily(9)
    values[: round(3 * DAY / STEP)] = 0.0
    (change,) = level_changes(_prepared(values))
    assert abs(change - (START + 3 * DAY)) <= STEP


def test_a_history_with_fewer_than_two_steps_a_day_has_no_change() -> None:
    daily = prepare_history(
        LoadSeries(START, DAY, np.array([1.0, 1.0, 5.0, 5.0, 5.0, 1.0, 9.0])),
        fit_step=STEP,
        min_points=2,
    )
    assert level_changes(daily) == ()


@pytest.mark.parametrize(
    ("days", "start", "end"),
    [
        pytest.param(12, 5.0, 7.0, id="within the first week"),
        # Its end returns to the level of a week before, with no change made then: a change.
        pytest.param(16, 9.0, 11.0, id="ending at the week before's level"),
    ],
)
def test_a_failover_is_two_changes_oldest_first(days: int, start: float, end: float) -> None:
    """Three times a region's load for two days, then its end."""
    values = _daily(days)
    values[round(start * DAY / STEP) : round(end * DAY / STEP)] *= 3.0
    changes = level_changes(_prepared(values))
    assert len(changes) == 2
    for change, day in zip(changes, (start, end), strict=True):
        assert abs(change - (START + day * DAY)) <= 2 * STEP


def test_forecasts_across_the_change_and_for_a_day_after_are_retired() -> None:
    """With forecasts reaching 2 hours, the one made 2 hours before the change reaches the
    first value at the new level; it is retired, and so is the hour before it (a change is
    placed give or take a step), and every forecast up to a day after the change."""
    step = 3600.0
    times = np.arange(0.0, 5 * DAY, step)
    change = 2 * DAY
    kept = calibrating_origins(times, (change,), reach=2 * step, step=step)
    retired = times[~kept]
    assert retired[0] == change - 3 * step and retired[-1] == change + DAY - step
    assert retired.size == 3 + 24
    assert calibrating_origins(times, (), reach=2 * step, step=step).all()
    both = calibrating_origins(times, (change, change + 2 * DAY), reach=2 * step, step=step)
    assert np.count_nonzero(~both) == 2 * retired.size


def test_all_forecasts_stay_when_fewer_than_a_day_s_worth_would() -> None:
    step = 3600.0
    times = np.arange(0.0, 1.5 * DAY, step)
    assert calibrating_origins(times, (0.5 * DAY,), reach=step, step=step).all()


def test_calibrate_leaves_out_the_retired_origins_and_keeps_their_record() -> None:
    """Hourly forecasts one step ahead over five days, a change on day 2: the forecasts from
    it to a day after miss by far, and without them every forecast was right. Their honest
    rows stay in the record, for a later calibration that may count them."""
    step = 3600.0
    values = np.full(121, 10.0)
    origins = np.arange(120)
    predicted = np.full((120, 1), 10.0)
    predicted[48:72] = 2.0
    kwargs = {
        "end": 120 * step,
        "step": step,
        "values": values,
        "origins": origins,
        "predicted": predicted,
        "floor": 1.0,
        "estimated_until": 0.0,
        "record": None,
    }
    everything, _ = calibrate(**kwargs)
    settled, record = calibrate(**kwargs, changes=(48 * step,))
    assert everything.quantile(1 - 1e-9, 1)[0] > 1.0
    assert settled.quantile(1 - 1e-9, 1)[0] == pytest.approx(0.0)
    assert settled.samples == 120 - 24 - 2  # and the hour before the change, and its margin
    np.testing.assert_allclose(record.origins, origins * step)


DAYS, CHANGE = 13.0, 10.0  # tripled on day 10


def _fit(model: str, values: np.ndarray, end: float) -> tuple[float, int]:
    """The band's width over the next 6 hours (mean upper over point) and the errors it holds."""
    horizon = DAY / 4
    history = LoadSeries(START, STEP, values[: round(end * DAY / STEP)])
    fitted = create(model, max_horizon=horizon).fit(history)
    forecast = fitted.forecast(history, horizon=horizon)
    return float(np.mean(forecast.upper(0.95) / forecast.point)), fitted.calibration.samples


@pytest.mark.parametrize("model", ["holt-winters", "mstl", "seasonal-naive", "auto"])
def test_every_model_retires_the_errors_across_the_change_and_a_day_after(model: str) -> None:
    """Fitted two days after the change, a model holds fewer forecasts than on a history that
    had the higher load all along: those of the day after the change, and those made less
    than its reach (the 6 hours ``_fit`` forecasts) and an hour of margin before it."""
    _, shifted = _fit(model, _shifted(DAYS, CHANGE, 3.0), CHANGE + 2.0)
    _, plain = _fit(model, _daily(DAYS) * 3.0, CHANGE + 2.0)
    assert plain - shifted == round((DAY + DAY / 4 + 3600.0) / STEP)


@pytest.mark.parametrize(
    ("model", "hours"),
    [
        # Holt-Winters' band an hour into the day after is as narrow with the change's errors.
        *((model, 1.0) for model in ("mstl", "seasonal-naive", "auto")),
        ("holt-winters", 12.0),
        ("seasonal-naive", 12.0),
    ],
)
def test_the_band_settles_a_day_after_a_level_change(model: str, hours: float) -> None:
    """A day after the load tripled, the band is about as wide as on a history that had the
    higher load all along. With the change's errors it was up to three times the point at
    the hours whose level the old regime shared. (Half a day later, MSTL fitted afresh makes
    large errors of its own since the change, as its profile, decomposed over both levels,
    follows: they widen its band, rightly.)"""
    end = CHANGE + 1.0 + hours / 24
    shifted, _ = _fit(model, _shifted(DAYS, CHANGE, 3.0), end)
    plain, _ = _fit(model, _daily(DAYS) * 3.0, end)
    assert shifted <= 1.25 * plain


@pytest.mark.parametrize("model", ["holt-winters", "mstl", "seasonal-naive", "auto"])
def test_the_band_settles_a_day_after_a_failover_ends(model: str) -> None:
    """Three times the load for two days, then back: a day after the end, the errors of both
    changes are retired, and the band is about as wide as without the failover."""
    failover = _daily(DAYS)
    failover[round(5 * DAY / STEP) : round(7 * DAY / STEP)] *= 3.0
    end = 8.0 + 1 / 24
    shifted, _ = _fit(model, failover, end)
    plain, _ = _fit(model, _daily(DAYS), end)
    assert shifted <= 1.25 * plain


def _gain(size: int, gain: float) -> tuple[np.ndarray, np.ndarray]:
    """Held losses of 10 and a challenger's lower by ``gain``, give or take 1 in a
    +1, +1, -1, -1 pattern (no correlation from one origin to the next)."""
    held = np.full(size, 10.0)
    return held - gain + np.resize([1.0, 1.0, -1.0, -1.0], size), held


@pytest.mark.parametrize(
    ("gain", "lower"),
    [
        pytest.param(0.155, False, id="t -1.55, one-sided p 0.06"),
        pytest.param(0.175, True, id="t -1.75, one-sided p 0.04"),
    ],
)
def test_significantly_lower_is_one_sided_at_five_percent(gain: float, lower: bool) -> None:
    """A mean gain over a hundred origins whose differences stray by 1 has a t statistic of
    about -10 times the gain: beyond chance at 5% one-sided (t under -1.645) or not."""
    challenger, held = _gain(100, gain)
    assert significantly_lower(challenger, held, lead=1) is lower


@pytest.mark.parametrize(
    ("size", "lower"),
    [
        pytest.param(5, False, id="2 lead + 1 origins: too few"),
        pytest.param(6, True, id="2 lead + 2 origins: enough"),
    ],
)
def test_significantly_lower_needs_more_than_twice_the_lead_of_origins(
    size: int, lower: bool
) -> None:
    """A gain of 5 with differences straying by 1: plain beyond chance, once there are more
    origins than the ``lead`` lags on each side of one, and the origin itself."""
    challenger, held = _gain(size, 5.0)
    assert significantly_lower(challenger, held, lead=2) is lower


def test_a_rival_scored_no_lower_keeps_the_held_choice() -> None:
    """A rival whose losses are lower beyond chance but whose score only ties the held
    choice's does not beat it: a tie is no reason to swap."""
    held = np.full(100, 10.0)
    losses = {"held": held, "rival": held - 1.0}
    assert unless_beaten("held", {"held": 5.0, "rival": 5.0}, losses, lead=1) == "held"
    assert unless_beaten("held", {"held": 5.0, "rival": 4.0}, losses, lead=1) == "rival"


def _days(levels: list[float], *, step: float = HOUR) -> PreparedHistory:
    """Whole days at the given levels, on a grid of ``step``: a step of the level at each
    midnight that changes it."""
    per_day = round(DAY / step)
    values = np.repeat(np.asarray(levels, dtype=np.float64), per_day)
    return PreparedHistory(START, step, values, missing_fraction=0.0)


def test_a_level_exactly_twice_the_day_before_is_a_change() -> None:
    """``LEVEL_CHANGE`` is a bound the change may reach: a day at exactly twice the one
    before is a change, placed at its midnight."""
    assert level_changes(_days([10.0, 10.0, 20.0, 20.0])) == (START + 2 * DAY,)
    assert level_changes(_days([20.0, 20.0, 10.0, 10.0])) == (START + 2 * DAY,)


def test_a_history_of_exactly_two_days_has_its_change() -> None:
    """Two days are the day before and the whole day of the new level: enough."""
    assert level_changes(_days([10.0, 30.0])) == (START + DAY,)


def test_a_twelve_hour_step_is_two_steps_a_day_and_enough() -> None:
    """Two steps a day still compare one day with the next (fewer have no daily cycle)."""
    prepared = _days([10.0, 30.0], step=DAY / 2)
    assert prepared.values.size == 4
    assert level_changes(prepared) == (START + DAY,)


@pytest.mark.parametrize("busy", [40.0, 20.0], ids=["four times", "exactly twice"])
def test_a_change_a_week_after_the_same_change_is_a_weekly_cycle_at_its_first_origin(
    busy: float,
) -> None:
    """Nine days: a busy day 1 and a day 8 at four times the day before. The rise into day 8
    can be compared with the week before only from its last origin, the history's last (day 8
    is the history's last day), and there it matches the rise into day 1, which reached
    ``LEVEL_CHANGE``: a weekly cycle, not a change. The rise into day 1 and the fall after it
    have no week before them, and are changes."""
    levels = [10.0, busy, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 40.0]
    assert level_changes(_days(levels)) == (START + DAY, START + 2 * DAY)


def test_a_change_is_found_on_a_grid_whose_day_is_not_whole_hours() -> None:
    """At a 7-minute step a day is 206 steps and an hour 9, so the days compared do not all
    start on the hour: each has a median of its own. A tripled level is still found within an
    hour."""
    step = 420.0
    values = np.full(round(4 * DAY / step), 10.0)
    values[round(2 * DAY / step) :] = 30.0
    (change,) = level_changes(PreparedHistory(START, step, values, missing_fraction=0.0))
    assert abs(change - (START + 2 * DAY)) <= HOUR


def test_changes_within_a_week_and_a_day_of_the_start_have_no_week_before_them() -> None:
    """A busy first day, a quiet week, four times the load for three days, then half of it
    at the end: three changes. The rise into day 7 comes before a week and a day of history,
    so it has no week before it to compare: it is a change, whatever the history's other
    days hold."""
    levels = [100.0] + [10.0] * 6 + [40.0] * 3 + [20.0] * 2
    assert level_changes(_days(levels)) == (START + DAY, START + 7 * DAY, START + 10 * DAY)
