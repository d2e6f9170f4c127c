"""``auto``'s rules one by one: the hold-out score worked by hand on candidates with known
forecasts, the choice where one candidate is clearly better, either way."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from forecasts import create
from forecasts.base import DAY
from forecasts.errors import InsufficientHistory
from forecasts.models import auto as auto_module
from forecasts.models.auto import Auto
from forecasts.series import LoadSeries
from tests.forecast_series import seasonal, series, trend


class _Constant:
    """A candidate that forecasts ``value`` at every lead from every origin."""

    def __init__(self, value: float) -> None:
        self.value = value

    def fit(self, history: LoadSeries, *, previous: object = None) -> SimpleNamespace:
        def paths(observed: np.ndarray, lead: int) -> np.ndarray:
            return np.full((observed.size, lead), self.value)

        return SimpleNamespace(fitted_until=history.end, step=history.step, backtest_paths=paths)


class _TooShort:
    """A candidate that cannot fit the training part."""

    def fit(self, history: LoadSeries, *, previous: object = None) -> SimpleNamespace:
        raise InsufficientHistory("too short")


def _scored(candidates: dict[str, object]) -> tuple[dict, dict, dict, dict]:
    """Scores on five samples of 5 then 10, 20 and 30 held out, two steps ahead."""
    auto = Auto()
    auto.candidates = candidates  # type: ignore[assignment]
    history = series([5.0, 5.0, 5.0, 5.0, 5.0, 10.0, 20.0, 30.0])
    return auto._scores(history, history.end, 3 * 300.0, 2)


def test_the_hold_out_score_is_the_mean_error_of_every_forecast_with_an_actual() -> None:
    """A candidate forecasting 15 from the origins before 10, 20 and 30: one and two steps
    ahead from the first, (5, 5); from the second (5, 15); from the last only one step (15),
    the second is past the hold-out. Its score is their mean, 45 / 5 = 9; its per-origin
    losses 5, 10 and 15; the level it is scored against (10 + 20 + 20 + 30 + 30) / 5 = 22; and
    its record holds the three rows, from the training part's end on."""
    scores, records, levels, losses = _scored({"fifteen": _Constant(15.0)})
    assert scores == {"fifteen": pytest.approx(9.0)}
    np.testing.assert_allclose(losses["fifteen"], [5.0, 10.0, 15.0])
    assert levels == {"fifteen": pytest.approx(22.0)}
    record = records["fifteen"]
    start = series([0.0] * 5).end
    np.testing.assert_allclose(record.origins, start + 300.0 * np.arange(3))
    np.testing.assert_allclose(record.predicted, np.full((3, 2), 15.0))


def test_a_negative_forecast_is_scored_as_zero_load() -> None:
    """The planner never provisions below zero: a forecast of -5 errs as a forecast of 0
    would, by the load itself (110 / 5 = 22), not by 5 more."""
    scores, *_ = _scored({"negative": _Constant(-5.0)})
    assert scores == {"negative": pytest.approx(22.0)}


def test_a_candidate_without_a_score_is_left_out_not_scored_as_zero() -> None:
    """A candidate that cannot fit the training part, or whose forecasts are all unknown,
    has no score, record, level or losses; the others are scored as on their own."""
    scored = _scored(
        {"short": _TooShort(), "unknown": _Constant(np.nan), "fifteen": _Constant(15.0)}
    )
    for part in scored:
        assert set(part) == {"fifteen"}
    assert scored[0]["fifteen"] == pytest.approx(9.0)


def _drifting_profile(days: int = 5, *, seed: int = 1) -> LoadSeries:
    """A daily profile that each day is the day before plus noise that stays: yesterday at the
    same time is the best forecast there is, and averaging older days only adds their noise."""
    rng = np.random.default_rng(seed)
    day = 200.0 + 60.0 * np.sin(np.arange(288) * 2 * np.pi / 288)
    profile = [day]
    for _ in range(days - 1):
        profile.append(profile[-1] + rng.normal(0.0, 15.0, 288))
    return series(np.maximum(np.concatenate(profile), 0.0))


def test_auto_chooses_seasonal_naive_where_yesterday_is_clearly_the_best_forecast() -> None:
    """On a drifting daily profile seasonal naive errs clearly less than the smoothing models,
    by far more than chance, and takes the place the richest model would hold."""
    fitted = create("auto").fit(_drifting_profile())
    scores = fitted.holdout_mae
    assert set(scores) == {"seasonal-naive", "holt-winters", "mstl"}
    assert scores["seasonal-naive"] < 0.9 * min(scores["holt-winters"], scores["mstl"])
    assert fitted.name == "seasonal-naive"


def test_auto_leaves_seasonal_naive_on_a_steady_trend() -> None:
    """On a rising load yesterday's value lags a day of growth (about 14 here, against noise
    of 2): the smoothing models follow the trend, score far lower, and one of them is chosen,
    with its hold-out error relative to the mean load there as its relative error."""
    history = trend(days=4)
    fitted = create("auto").fit(history)
    scores = fitted.holdout_mae
    assert fitted.name in ("holt-winters", "mstl")
    assert scores[fitted.name] < 0.5 * scores["seasonal-naive"]
    # The hold-out is the last day (a quarter of the history).
    held_out = history.values[-288:].mean()
    assert fitted.error == pytest.approx(scores[fitted.name] / held_out, rel=0.02)


@pytest.mark.parametrize("unit", [1.0, 0.005], ids=["replicas", "a-load-under-one"])
def test_the_relative_error_does_not_depend_on_the_unit_of_the_load(unit: float) -> None:
    """The same trend counted in a unit 200 times larger (a hold-out mean of 0.75) has the same
    relative error: any mean load above zero is a level to divide by."""
    history = trend(days=4)
    reference = create("auto").fit(history)
    fitted = create("auto").fit(series(history.values * unit))
    assert fitted.name == reference.name
    assert fitted.error == pytest.approx(reference.error, rel=1e-6)


def test_a_load_of_zero_has_no_relative_error() -> None:
    """With no load in the hold-out there is no level to divide by: the error is None, not a
    division by zero, and the fit still stands."""
    fitted = create("auto").fit(series(np.zeros(4 * 288)))
    assert all(score == 0.0 for score in fitted.holdout_mae.values())
    assert fitted.error is None


@pytest.mark.parametrize(
    ("days", "holdout"),
    [
        pytest.param(10.0, 2 * DAY, id="two-days"),
        pytest.param(4.0, DAY, id="a-quarter-of-the-history"),
        # A quarter would leave 1.875 days, under the 601 samples (2.09 days) the smoothing
        # models need: the hold-out is what is left beyond them, 0.41 days.
        pytest.param(2.5, 2.5 * DAY - 601 * 300.0, id="what-the-smoothing-models-spare"),
        # Exactly a quarter of a day (72 steps) to spare beyond the 601 is enough.
        pytest.param(673 * 300.0 / DAY, DAY / 4, id="a-quarter-day-spared"),
        # 59 steps are not: the quarter stands, and the smoothing models go unscored.
        pytest.param(660 * 300.0 / DAY, 660 * 300.0 / 4, id="too-little-to-spare"),
    ],
)
def test_the_hold_out_is_two_days_a_quarter_or_what_the_smoothing_models_spare(
    days: float, holdout: float
) -> None:
    """Item 1 of ``auto``'s rules, on a 5-minute grid with the default two-hour horizon."""
    span = round(days * DAY / 300.0) * 300.0  # whole steps, as a history's span is
    assert Auto()._holdout(span, 300.0) == pytest.approx(holdout)


def test_a_hold_out_shrunk_to_what_is_spared_still_holds_a_lead() -> None:
    """With a day's horizon the smoothing models need 865 samples (two days and a lead, three
    in all). Four days leave them too few after a quarter; what they spare, 300 s short of a
    day, would not hold one whole day-ahead forecast: the quarter stands."""
    auto = Auto(max_horizon=DAY)
    assert 4 * DAY - 865 * 300.0 == DAY - 300.0
    assert auto._holdout(4 * DAY, 300.0) == pytest.approx(DAY)


def test_auto_fits_a_history_only_seasonal_naive_can_fit() -> None:
    """A day and a half is too short for the smoothing models (two days and a lead) but not
    for seasonal naive: ``auto`` needs only what its least demanding candidate needs, and
    uses it."""
    fitted = create("auto").fit(seasonal(days=1.5))
    assert fitted.name == "seasonal-naive"


def test_a_refit_on_the_same_history_reuses_the_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pass whose history brought nothing new (the metrics lag) keeps the choice without
    scoring the candidates again; a history that ends before the fit (the metrics went back)
    is a new choice."""
    history = seasonal(days=3)
    previous = create("auto").fit(history)

    def scored_again(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("scored again")

    monkeypatch.setattr(Auto, "_scores", scored_again)
    again = create("auto").fit(history, previous=previous)
    assert again.name == previous.name and again.chosen_at == previous.chosen_at
    with pytest.raises(AssertionError, match="scored again"):
        create("auto").fit(series(history.values[:-1]), previous=previous)


@pytest.mark.parametrize(
    ("before", "now", "carried"),
    [("mstl", "holt-winters", False), ("holt-winters", "holt-winters", True)],
)
def test_only_the_same_winner_carries_its_honest_record_into_a_new_choice(
    monkeypatch: pytest.MonkeyPatch, before: str, now: str, carried: bool
) -> None:
    """A choice made again a day later keeps the earlier fit's honest forecasts only when it
    picks the same model: they are that model's errors. A new winner's record is the one a
    fresh choice would give it, its hold-out's and its own fit's, and nothing older."""
    full = seasonal(days=5)
    earlier = series(full.values[: -round(DAY / full.step)])
    winner = {"name": before}
    monkeypatch.setattr(auto_module, "_preferred", lambda *_args, **_kwargs: winner["name"])
    previous = create("auto").fit(earlier)
    winner["name"] = now
    again = create("auto").fit(full, previous=previous)
    fresh = create("auto").fit(full)
    assert (previous.name, again.name, fresh.name) == (before, now, now)
    kept, own = again.chosen.record, fresh.chosen.record
    first_before = previous.chosen.record.origins.min()
    assert bool(kept.origins.min() == first_before) is carried
    assert own.origins.min() > first_before
    if not carried:
        np.testing.assert_array_equal(kept.origins, own.origins)
        np.testing.assert_allclose(kept.predicted, own.predicted)
