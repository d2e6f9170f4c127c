"""Rolling-origin evaluation: origins, metrics and the report of ``tidal forecast --json``."""

from __future__ import annotations

import pickle
import time
from typing import Any

import numpy as np
import pytest

from forecasts import evaluation
from forecasts.errors import FitFailed, ForecastError, InsufficientHistory
from forecasts.evaluation import (
    ModelBacktest,
    TraceEvaluationFailed,
    backtest_model,
    evaluate_trace,
    evaluate_traces,
    evaluation_series,
    fit_step_for,
    forecast_report,
    origin_indices,
    score_together,
    seasonal_naive_scale,
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


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        pytest.param(60.0, 300.0, id="minute-aggregated"),
        pytest.param(150.0, 300.0, id="divisor-aggregated"),
        pytest.param(300.0, 300.0, id="fit-step"),
        pytest.param(420.0, 420.0, id="coarser-kept"),
        pytest.param(3600.0, 3600.0, id="hourly-kept"),
    ],
)
def test_fit_step_is_five_minutes_or_the_coarser_step(step: float, expected: float) -> None:
    """A finer step that divides five minutes is aggregated to it; a coarser one is kept."""
    assert fit_step_for(step) == expected


def test_a_step_that_does_not_divide_the_fit_step_is_refused() -> None:
    """A 2-minute step (2.5 samples per bucket) is an error that says so, not a ValueError."""
    with pytest.raises(ForecastError, match="120s step does not divide the 300s"):
        evaluation_series(LoadSeries(0.0, 120.0, np.ones(100)))


@pytest.mark.parametrize(
    ("history", "models", "expected"),
    [
        pytest.param(seasonal(days=0.5), ["seasonal-naive"], "less than a day", id="half-a-day"),
        pytest.param(
            seasonal(days=2), ["holt-winters"], "too short to evaluate holt-winters", id="model"
        ),
        pytest.param(
            LoadSeries(0.0, 120.0, np.ones(2000)), ["seasonal-naive"], "120s", id="step-120s"
        ),
    ],
)
def test_a_trace_that_cannot_be_evaluated_is_refused_naming_it(
    history: LoadSeries, models: list[str], expected: str
) -> None:
    """Too short overall, too short for a model, or on a bad step: the error names the trace."""
    with pytest.raises(TraceEvaluationFailed, match=expected) as error:
        evaluate_traces({"good": seasonal(days=8), "bad": history}, models=models, jobs=1)
    assert error.value.trace == "bad"
    assert str(error.value).startswith("bad: ")


@pytest.mark.parametrize("jobs", [pytest.param(1, id="in-process"), pytest.param(2, id="pool")])
def test_an_error_while_evaluating_names_the_trace(
    monkeypatch: pytest.MonkeyPatch, jobs: int
) -> None:
    """A model failing on a trace mid-evaluation (in a worker or not) is raised naming it."""

    def failing(*_args: object, **_kwargs: object) -> None:
        raise FitFailed("model seasonal-naive produced a non-finite forecast")

    # Workers are forked: they see the patched function too.
    monkeypatch.setattr(evaluation, "backtest_model", failing)
    with pytest.raises(TraceEvaluationFailed, match="non-finite") as error:
        evaluate_traces({"synthetic": seasonal(days=3)}, models=["seasonal-naive"], jobs=jobs)
    assert error.value.trace == "synthetic"
    assert isinstance(error.value.__cause__, FitFailed)


def test_a_failed_evaluation_stops_the_others_at_their_next_origin(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One trace fails in a worker while another's evaluation still has minutes to go: the
    error comes back within a few of the other's origins, not after it ends."""
    real = evaluation.backtest_model

    def slow_or_failing(series: LoadSeries, model: str, **kwargs: Any) -> Any:
        if float(np.nanmax(series.values)) > 1_000:  # the "bad" trace
            time.sleep(0.5)
            raise FitFailed("model seasonal-naive produced a non-finite forecast")
        progress = kwargs["progress"]
        for origin in range(600):  # 600 origins of 0.05 s: 30 s unless stopped
            time.sleep(0.05)
            progress(origin + 1, 600)
        return real(series, model, **kwargs)

    monkeypatch.setattr(evaluation, "backtest_model", slow_or_failing)
    base = seasonal(days=3)
    bad = LoadSeries(base.start, base.step, base.values * 1_000.0)
    traces = {"long": base, "bad": bad}
    started = time.perf_counter()
    with pytest.raises(TraceEvaluationFailed, match="non-finite") as error:
        evaluate_traces(traces, models=["seasonal-naive"], jobs=2)
    assert error.value.trace == "bad"
    assert time.perf_counter() - started < 10.0


def test_trace_evaluation_failed_survives_pickling() -> None:
    """The error crosses a process boundary with its trace and detail intact."""
    error = pickle.loads(pickle.dumps(TraceEvaluationFailed("wc98", "too short")))
    assert (error.trace, error.detail, str(error)) == ("wc98", "too short", "wc98: too short")


@pytest.mark.parametrize(
    "jobs",
    [
        pytest.param(None, id="one-trace"),
        pytest.param(1, id="in-process"),
        pytest.param(2, id="pool"),
    ],
)
def test_every_model_is_scored_on_the_same_origins(jobs: int | None) -> None:
    """On 2.65 days Holt-Winters cannot fit at the first origin (it needs two days and a lead
    before it), seasonal naive can: both are scored on the origins where both forecast, not
    seasonal naive on one more."""
    history = seasonal(days=2.65)
    evaluated = evaluation_series(history)
    naive = backtest_model(evaluated, "seasonal-naive", horizon=1800.0)
    smooth = backtest_model(evaluated, "holt-winters", horizon=1800.0)
    both = np.isfinite(smooth.point[:, 0])
    assert np.isfinite(naive.point[:, 0]).all() and both[1:].all() and not both[0]
    origins, _ = origin_indices(evaluated, horizon=1800.0)
    scale = seasonal_naive_scale(evaluated.values[: int(origins[0]) + 1], 288)
    on_both = float(np.abs(naive.actual[both] - naive.point[both]).mean()) / scale
    on_all = float(np.abs(naive.actual - naive.point).mean()) / scale
    assert round(on_both, 4) != round(on_all, 4)  # the extra origin moves the score
    covered = float((naive.actual[both] <= naive.upper[both]).mean())
    models = ["seasonal-naive", "holt-winters"]
    if jobs is None:
        report = evaluate_trace(history, models=models)["models"]
    else:
        report = evaluate_traces({"short": history}, models=models, jobs=jobs)["short"]
    assert list(report) == models
    assert report["seasonal-naive"]["mase"] == pytest.approx(on_both, abs=1e-4)
    assert report["seasonal-naive"]["coverage"] == pytest.approx(covered, abs=1e-4)


def test_models_without_an_origin_in_common_are_refused_with_their_counts() -> None:
    """Models that forecast at different origins only leave nothing to compare them on."""
    point = np.array([[1.0], [np.nan]])

    def made(rows: np.ndarray) -> ModelBacktest:
        return ModelBacktest(
            model="m",
            step=300.0,
            origins=np.array([0.0, 300.0]),
            point=rows,
            upper=rows,
            actual=np.ones((2, 1)),
            fit_seconds=np.empty(0),
            chosen=(),
        )

    backtests = {"early": made(point), "late": made(point[::-1])}
    with pytest.raises(InsufficientHistory, match="early at 1, late at 1 of 2 origins"):
        score_together(backtests, quantile=0.95, scale=1.0)
