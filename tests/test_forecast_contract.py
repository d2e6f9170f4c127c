"""The contract every registered forecasting model keeps (STYLE: one registry, one test)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from forecasts import InsufficientHistory, UnknownModel, create, model_names
from forecasts.base import (
    Calibration,
    FittedModel,
    PreparedHistory,
    new_observations,
    values_after,
)
from forecasts.series import LoadSeries
from tests.forecast_series import flat, seasonal, trend

HORIZON = 1800.0

SERIES = {"flat": flat, "trend": trend, "seasonal": seasonal}

_fits: dict[tuple[str, str], object] = {}


def fitted(model: str, shape: str):  # type: ignore[no-untyped-def]
    """One fit per (model, series) for the whole module: fits are the slow part."""
    key = (model, shape)
    if key not in _fits:
        history = SERIES[shape]()
        _fits[key] = (history, create(model).fit(history))
    return _fits[key]


CASES = [pytest.param(m, s, id=f"{m}-{s}") for m in model_names() for s in SERIES]


@pytest.mark.parametrize(("model", "shape"), CASES)
def test_forecast_covers_the_horizon_on_the_fit_grid(model: str, shape: str) -> None:
    """A forecast has one point per fit step up to the horizon, starting after the history."""
    history, fit = fitted(model, shape)
    forecast = fit.forecast(history, horizon=HORIZON)
    assert forecast.point.shape == (round(HORIZON / 300),)
    assert forecast.origin == pytest.approx(history.end)
    assert forecast.times()[0] == pytest.approx(history.end + 300)


@pytest.mark.parametrize(("model", "shape"), CASES)
def test_forecast_ends_at_its_last_point_and_each_step_has_its_lead_s_errors(
    model: str, shape: str
) -> None:
    """``end`` is the time of the last point, and a fit with the default maximum horizon (two
    hours) calibrates a row of errors for every lead up to it."""
    history, fit = fitted(model, shape)
    forecast = fit.forecast(history, horizon=HORIZON)
    assert forecast.end == pytest.approx(forecast.times()[-1])
    assert forecast.end == pytest.approx(history.end + HORIZON)
    assert fit.calibration.lead_steps == round(2 * 3600 / 300)


@pytest.mark.parametrize("model", [pytest.param(m, id=m) for m in model_names()])
def test_a_fit_records_the_wall_time_it_took(model: str) -> None:
    """``fit_seconds`` is positive and no longer than the fit took, timed from outside."""
    history = flat()
    started = time.perf_counter()
    fit = create(model).fit(history)
    elapsed = time.perf_counter() - started
    assert 0.0 < fit.fit_seconds <= elapsed


@pytest.mark.parametrize(
    ("max_horizon", "leads"),
    [
        pytest.param(1.0, 1, id="a-second"),
        pytest.param(300.0, 1, id="one-step"),
        pytest.param(301.0, 2, id="just-past-one-step"),
        pytest.param(7200.0, 24, id="two-hours"),
    ],
)
@pytest.mark.parametrize("model", [pytest.param(m, id=m) for m in model_names()])
def test_lead_steps_reach_the_maximum_horizon(model: str, max_horizon: float, leads: int) -> None:
    """A model calibrates the fewest 5-minute leads that reach its maximum horizon, at least one."""
    assert create(model, max_horizon=max_horizon).lead_steps(300.0) == leads


@pytest.mark.parametrize(
    "settings",
    [
        pytest.param({"fit_step": 0.0}, id="zero-step"),
        pytest.param({"fit_step": -300.0}, id="negative-step"),
        pytest.param({"max_horizon": 0.0}, id="zero-horizon"),
        pytest.param({"max_horizon": -1.0}, id="negative-horizon"),
    ],
)
def test_a_step_or_horizon_that_is_not_positive_is_refused(settings: dict[str, float]) -> None:
    """Every model refuses a fit step or maximum horizon at or below zero, the other valid."""
    for model in model_names():
        with pytest.raises(ValueError, match="must be positive"):
            create(model, **settings)


@pytest.mark.parametrize(
    ("horizon", "points"),
    [
        pytest.param(1.0, 1, id="a-second"),
        pytest.param(300.0, 1, id="one-step"),
        pytest.param(301.0, 2, id="just-past-one-step"),
    ],
)
@pytest.mark.parametrize("model", [pytest.param(m, id=m) for m in model_names()])
def test_a_short_horizon_is_covered_by_the_fewest_steps(
    model: str, horizon: float, points: int
) -> None:
    """A forecast has as many points as it takes to reach the horizon, and at least one."""
    history, fit = fitted(model, "flat")
    assert fit.forecast(history, horizon=horizon).point.size == points


@pytest.mark.parametrize(("model", "shape"), CASES)
def test_forecast_is_finite_and_never_negative(model: str, shape: str) -> None:
    """Point and upper paths are finite and never below zero."""
    history, fit = fitted(model, shape)
    forecast = fit.forecast(history, horizon=HORIZON)
    for path in (forecast.point, forecast.upper(0.9), forecast.upper(0.95)):
        assert np.isfinite(path).all()
        assert (path >= 0).all()


@pytest.mark.parametrize(("model", "shape"), CASES)
def test_upper_quantile_is_at_least_the_point(model: str, shape: str) -> None:
    """The upper quantile never lies below the point, and a higher level is never lower."""
    history, fit = fitted(model, shape)
    forecast = fit.forecast(history, horizon=HORIZON)
    assert (forecast.upper(0.9) >= forecast.point).all()
    assert (forecast.upper(0.99) >= forecast.upper(0.9) - 1e-9).all()


@pytest.mark.parametrize(("model", "shape"), CASES)
def test_forecasts_again_from_a_later_history_without_refitting(model: str, shape: str) -> None:
    """A fitted model forecasts from a history 40 minutes longer, starting after its new end."""
    history, fit = fitted(model, shape)
    extra = SERIES[shape](days=4 + 40 * 60 / 86400).values
    later = LoadSeries(history.start, history.step, extra)
    forecast = fit.forecast(later, horizon=HORIZON)
    assert forecast.origin == pytest.approx(later.end)
    assert forecast.point.shape == (round(HORIZON / 300),)
    assert np.isfinite(forecast.point).all()


@pytest.mark.parametrize("model", [pytest.param(m, id=m) for m in model_names()])
def test_too_short_history_raises_insufficient_history(model: str) -> None:
    """Less than a day of history is refused with InsufficientHistory, not a guess."""
    with pytest.raises(InsufficientHistory):
        create(model).fit(seasonal(days=0.9))


@pytest.mark.parametrize(
    "name", [pytest.param("prophet", id="unknown"), pytest.param("", id="empty")]
)
def test_unknown_model_name_is_an_error_naming_it(name: str) -> None:
    """An unknown model name raises UnknownModel whose message names it."""
    with pytest.raises(UnknownModel, match=repr(name)):
        create(name)


def test_auto_is_registered_for_the_crd_default() -> None:
    """The CRD's default model, auto, is a registry key."""
    assert "auto" in model_names()


@pytest.mark.parametrize(
    ("fitted_until", "expected"),
    [
        pytest.param(600.0, ([3.0, 4.0], [False, True]), id="on-the-grid"),
        pytest.param(1200.0, ([], []), id="at-the-end"),
        pytest.param(0.0, ([1.0, 2.0, 3.0, 4.0], [True, True, False, True]), id="at-the-start"),
        pytest.param(650.0, None, id="off-the-grid"),
        pytest.param(-300.0, None, id="before-the-start"),
        pytest.param(1500.0, None, id="after-the-end"),
    ],
)
def test_values_after_continues_a_fit_only_from_a_bucket_it_holds(
    fitted_until: float, expected: tuple[list[float], list[bool]] | None
) -> None:
    """A cheap refit continues from the buckets strictly after the fit's end, with which were
    observed; a history that does not hold that end on its grid gives None."""
    filled = np.array([False, False, False, True, False])
    prepared = PreparedHistory(0.0, 300.0, np.arange(5.0), 0.2, filled=filled)
    got = values_after(prepared, fitted_until)
    if expected is None:
        assert got is None
        return
    assert got is not None
    assert got[0].tolist() == expected[0]
    assert got[1].tolist() == expected[1]


class _Fixed(FittedModel):
    """A fitted model whose projection is a given path, fitted until t=3000 on a 300 s step,
    with a calibration whose lead ``h`` errors are all ``h / 100``."""

    def __init__(self, path: list[float]) -> None:
        self.name, self.step = "fixed", 300.0
        self.fitted_until = self.estimated_until = 3000.0
        self.fit_seconds = 0.0
        self.path = np.asarray(path, dtype=np.float64)
        rows = np.tile(np.arange(8.0) / 100.0, (3, 1))
        self.calibration = Calibration.from_forecasts(rows, np.zeros((3, 8)), scale_floor=1.0)

    def _project(self, observed: np.ndarray, steps: int) -> np.ndarray:
        return self.path[:steps]


def test_a_projection_below_zero_is_no_load() -> None:
    """The point is the projection with every value below zero raised to zero, and no other."""
    history = LoadSeries(0.0, 300.0, np.full(11, 5.0))  # up to the fit, t=3000
    forecast = _Fixed([-5.0, 0.0, 0.5, 3.0]).forecast(history, horizon=1200.0)
    np.testing.assert_array_equal(forecast.point, [0.0, 0.0, 0.5, 3.0])
    assert forecast.origin == 3000.0


@pytest.mark.parametrize(
    ("values", "origin", "first_lead"),
    [
        pytest.param([5.0] * 11, 3000.0, 0, id="nothing-new"),
        pytest.param([5.0] * 11 + [6.0, 7.0], 3600.0, 0, id="all-new-seen"),
        pytest.param([5.0] * 11 + [6.0, np.nan, np.nan], 3900.0, 2, id="the-last-two-missing"),
        pytest.param([5.0] * 11 + [np.nan] * 3, 3900.0, 3, id="every-new-one-missing"),
    ],
)
def test_the_band_counts_its_leads_from_the_last_bucket_observed(
    values: list[float], origin: float, first_lead: int
) -> None:
    """After a fit, buckets seen advance the origin; buckets missing at the end advance it too,
    but the first step's errors are those of a lead as far from the last bucket seen."""
    history = LoadSeries(0.0, 300.0, np.asarray(values))
    forecast = _Fixed([10.0] * 8).forecast(history, horizon=600.0)
    assert forecast.origin == origin
    np.testing.assert_allclose(forecast.calibration.errors[0], first_lead / 100.0)


@pytest.mark.parametrize(
    ("fit_step", "expected"),
    [
        # 5-minute means of minutes 10-14, 15-19, ...: each bucket stands at its last minute,
        # and the one ending at 540 s (minutes 5-9) is the fit's own.
        (300.0, [12.0, 17.0, 22.0, 27.0]),
        # At the history's own step, the samples themselves, from minute 10 on.
        (60.0, [float(m) for m in range(10, 30)]),
    ],
    ids=["aggregated-to-the-fit-step", "at-the-history-step"],
)
def test_new_observations_are_the_buckets_after_the_fit(
    fit_step: float, expected: list[float]
) -> None:
    """What a fitted model reads next: the history's buckets at its fit step, strictly after
    the last one it was fitted on, each whole bucket's mean."""
    history = LoadSeries(0.0, 60.0, np.arange(30, dtype=np.float64))  # minute m holds m
    assert new_observations(540.0, history, fit_step).tolist() == expected
