"""Rolling-origin evaluation: origins, metrics and the report of ``tidal forecast --json``."""

from __future__ import annotations

import numpy as np
import pytest

from forecasts.evaluation import (
    evaluate_trace,
    evaluate_traces,
    evaluation_series,
    forecast_report,
    origin_indices,
)
from forecasts.series import LoadSeries
from tests.forecast_series import seasonal

METRICS = {"mase", "coverage", "pinball", "fit_seconds"}


@pytest.mark.parametrize(
    ("step", "every"), [pytest.param(300.0, 12, id="5min"), pytest.param(3600.0, 1, id="hourly")]
)
def test_origins_are_hourly_over_the_last_quarter(step: float, every: int) -> None:
    """Origins fall every hour, on whole hours, from three quarters of the way through."""
    history = seasonal(days=8, step=step)
    origins, _ = origin_indices(history, horizon=1800)
    assert origins[0] >= 0.75 * (len(history) - 1)
    assert set(np.diff(origins)) == {every}
    assert np.all(np.mod(history.start + step * origins, 3600) == 0)


def test_origins_leave_room_for_the_whole_horizon() -> None:
    """No origin is scored on a horizon that runs past the end of the trace."""
    history = seasonal(days=8)
    origins, steps = origin_indices(history, horizon=1800)
    assert steps == 6
    assert origins[-1] + steps <= len(history) - 1


def test_one_minute_trace_is_evaluated_on_five_minute_means() -> None:
    """A 1-minute trace is aggregated to the 5-minute fit step before evaluation."""
    minute = LoadSeries(0.0, 60.0, np.arange(600, dtype=float))
    assert evaluation_series(minute).step == 300.0


def test_evaluate_trace_reports_the_four_metrics_per_model() -> None:
    """Each model gets mase, coverage, pinball and fit_seconds, within their ranges."""
    report = evaluate_trace(seasonal(days=8), models=["seasonal-naive", "holt-winters"])
    assert list(report["models"]) == ["seasonal-naive", "holt-winters"]
    for metrics in report["models"].values():
        assert set(metrics) == METRICS
        assert 0.0 <= metrics["coverage"] <= 1.0
        assert metrics["mase"] > 0 and metrics["pinball"] >= 0 and metrics["fit_seconds"] >= 0


def test_holt_winters_beats_seasonal_naive_on_a_noisy_cycle() -> None:
    """On a regular noisy daily cycle the smoothed model has the lower MASE."""
    report = evaluate_trace(seasonal(days=8), models=["seasonal-naive", "holt-winters"])["models"]
    assert report["holt-winters"]["mase"] < report["seasonal-naive"]["mase"]


def test_progress_reaches_every_origin() -> None:
    """The progress callback ends at done == total for each model."""
    seen: dict[str, tuple[int, int]] = {}
    evaluate_trace(
        seasonal(days=8),
        models=["seasonal-naive"],
        progress=lambda model, done, total: seen.__setitem__(model, (done, total)),
    )
    done, total = seen["seasonal-naive"]
    assert done == total > 0


def test_report_has_the_shape_of_issue_2() -> None:
    """The JSON object holds horizon_minutes, quantile and traces → models → metrics."""
    results = evaluate_traces({"synthetic": seasonal(days=8)}, models=["seasonal-naive"], jobs=1)
    report = forecast_report(results, horizon=1800, quantile=0.95)
    assert report["horizon_minutes"] == 30
    assert report["quantile"] == 0.95
    assert set(report["traces"]["synthetic"]["models"]["seasonal-naive"]) == METRICS
