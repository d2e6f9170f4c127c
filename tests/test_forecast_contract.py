"""The contract every registered forecasting model keeps (STYLE: one registry, one test)."""

from __future__ import annotations

import numpy as np
import pytest

from forecasts import InsufficientHistory, UnknownModel, create, model_names
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
