"""The edges of ``forecasts.evaluation``: the metrics worked out by hand, where origins fall, the
error scale, the models a report lists, and which errors name their trace."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from forecasts import evaluation, interrupts
from forecasts.errors import FitFailed, InsufficientHistory, InvalidHistory
from forecasts.evaluation import (
    ModelBacktest,
    TraceEvaluationFailed,
    backtest_model,
    check_evaluable,
    default_models,
    evaluate_trace,
    evaluate_traces,
    evaluation_series,
    forecast_report,
    origin_indices,
    seasonal_naive_scale,
)
from forecasts.registry import create, model_names
from forecasts.series import LoadSeries
from tests.forecast_series import START, seasonal


def backtest(
    actual: list[list[float]],
    point: list[list[float]],
    upper: list[list[float]],
    *,
    fit_seconds: list[float] | None = None,
) -> ModelBacktest:
    """A backtest of two-dimensional rows (origin x lead) at a 5-minute step."""
    rows = len(actual)
    return ModelBacktest(
        model="m",
        step=300.0,
        origins=300.0 * np.arange(rows, dtype=float),
        point=np.array(point, dtype=float),
        upper=np.array(upper, dtype=float),
        actual=np.array(actual, dtype=float),
        fit_seconds=np.array(fit_seconds or [], dtype=float),
        chosen=("m",) * rows,
    )


def pinball_loss(actual: np.ndarray, upper: np.ndarray, quantile: float) -> float:
    """The quantile loss as usually written: ``q`` per unit under, ``1 - q`` per unit over."""
    under = np.maximum(actual - upper, 0.0)
    over = np.maximum(upper - actual, 0.0)
    return float(np.mean(quantile * under + (1.0 - quantile) * over))


def scores(report: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """Each model's metrics but its fit time, which is wall time and differs from run to run."""
    return {
        model: {name: value for name, value in metrics.items() if name != "fit_seconds"}
        for model, metrics in report.items()
    }


# Two origins, two leads; the second origin's second actual is missing.
ACTUAL = [[10.0, 20.0], [30.0, math.nan]]
POINT = [[12.0, 18.0], [25.0, 40.0]]
UPPER = [[15.0, 20.0], [28.0, 50.0]]


def test_metrics_by_hand() -> None:
    """Three known actuals: errors 2, 2 and 5 over a scale of 7 (MASE 3/7); 10 <= 15 and 20 <= 20
    covered, 30 > 28 not (2/3); quantile losses 0.1 x 5, 0 and 0.9 x 2 (mean 2.3 / 3). Each is
    rounded to four places, the median fit time too."""
    metrics = backtest(ACTUAL, POINT, UPPER, fit_seconds=[0.123456, 0.1, 5.0]).metrics(
        quantile=0.9, scale=7.0
    )
    assert metrics == {
        "mase": 0.4286,
        "coverage": 0.6667,
        "pinball": 0.7667,
        "fit_seconds": 0.1235,
    }


def test_pinball_agrees_with_the_quantile_loss_as_usually_written() -> None:
    """The pinball metric is the textbook quantile loss of the upper quantile, for a high and a
    low quantile alike, on values above, below and at the band."""
    rng = np.random.default_rng(7)
    actual = rng.uniform(0.0, 100.0, (6, 3))
    upper = rng.uniform(0.0, 100.0, (6, 3))
    upper[0, 0] = actual[0, 0]
    for quantile in (0.95, 0.5, 0.1):
        scored = backtest(actual.tolist(), actual.tolist(), upper.tolist()).metrics(
            quantile=quantile, scale=1.0
        )
        assert scored["pinball"] == pytest.approx(pinball_loss(actual, upper, quantile), abs=5e-5)


def test_an_actual_at_the_upper_quantile_is_covered() -> None:
    """Coverage counts actuals at or below the band: one exactly on it is covered."""
    metrics = backtest([[7.0]], [[5.0]], [[7.0]]).metrics(quantile=0.95, scale=1.0)
    assert (metrics["coverage"], metrics["pinball"]) == (1.0, 0.0)


def test_metrics_leave_out_rows_the_model_did_not_forecast_and_missing_actuals() -> None:
    """A row with a missing point is no forecast: the default rows leave it out, and a missing
    actual is not scored, while a row mask picks the rows it names."""
    point = [[12.0, 18.0], [25.0, math.nan]]
    scored = backtest(ACTUAL, point, UPPER)
    assert scored.forecast_at.tolist() == [True, False]
    assert scored.metrics(quantile=0.9, scale=2.0)["mase"] == 1.0  # errors 2 and 2
    masked = backtest(ACTUAL, POINT, UPPER).metrics(
        quantile=0.9, scale=2.0, origins=np.array([False, True])
    )
    assert (masked["mase"], masked["coverage"], masked["pinball"]) == (2.5, 0.0, 1.8)


def test_a_backtest_without_a_full_fit_has_no_fit_time() -> None:
    """No full fit, no time: NaN, not a 0 that reads as free."""
    assert math.isnan(
        backtest([[1.0]], [[1.0]], [[1.0]]).metrics(quantile=0.9, scale=1.0)["fit_seconds"]
    )


def test_nothing_to_score_is_insufficient_history_naming_the_model() -> None:
    """Every actual missing leaves no error to average: refused, naming the model."""
    with pytest.raises(InsufficientHistory, match="m: no forecast could be scored"):
        backtest([[math.nan]], [[1.0]], [[1.0]]).metrics(quantile=0.9, scale=1.0)


@pytest.mark.parametrize(
    ("size", "first"),
    [
        pytest.param(2001, 1500, id="three-quarters-on-the-hour"),
        pytest.param(2002, 1512, id="three-quarters-just-past-the-hour"),
        pytest.param(2000, 1500, id="three-quarters-just-before-the-hour"),
    ],
)
def test_the_first_origin_is_the_first_whole_hour_from_three_quarters_on(
    size: int, first: int
) -> None:
    """Three quarters of the way through 2001 samples is sample 1500 (hour 125) itself, the first
    origin; through 2002, sample 1500.75, so the next whole hour (1512); through 2000, 1499.25,
    so 1500."""
    history = LoadSeries(START, 300.0, np.ones(size))
    origins, steps = origin_indices(history, horizon=1800.0)
    assert steps == 6
    assert origins[0] == first
    assert set(np.diff(origins).tolist()) == {12}


def test_origins_fall_on_whole_hours_of_the_clock_when_the_trace_starts_off_the_hour() -> None:
    """A trace starting at 00:25 has its whole hours at samples 7, 19, 31...: the origins are
    those, not the hours counted from the trace's start."""
    history = LoadSeries(START + 1500.0, 300.0, np.ones(2001))
    origins, _ = origin_indices(history, horizon=1800.0)
    assert origins[0] == 1507
    assert np.all(np.mod(history.start + 300.0 * origins, 3600.0) == 0.0)


def test_the_last_origin_is_the_last_hour_with_a_whole_horizon_after_it() -> None:
    """From step 1992, six steps reach the trace's last sample (1998): it is an origin."""
    origins, steps = origin_indices(LoadSeries(START, 300.0, np.ones(1999)), horizon=1800.0)
    assert origins[-1] == 1992 == 1999 - 1 - steps


@pytest.mark.parametrize(
    "step", [pytest.param(5400.0, id="90-minutes"), pytest.param(3 * 3600.0, id="3-hours")]
)
def test_a_step_longer_than_an_hour_forecasts_from_every_step(step: float) -> None:
    """At a step longer than an hour every sample from three quarters on is an origin, whether
    or not it falls on a whole hour (at 90 minutes, every other one does not)."""
    history = LoadSeries(START, step, np.ones(42))
    origins, steps = origin_indices(history, horizon=1800.0)
    assert steps == 1
    assert origins.tolist() == list(range(31, 41))
    assert np.mod(history.start + step * origins[0], 3600.0) == (1800.0 if step == 5400.0 else 0.0)


def test_an_horizon_shorter_than_a_step_still_forecasts_one_step() -> None:
    """A 30-minute horizon on an hourly trace scores the one next step."""
    history = LoadSeries(START, 3600.0, np.ones(100))
    origins, steps = origin_indices(history, horizon=1800.0)
    assert steps == 1
    assert origins[-1] == 98


@pytest.mark.parametrize(
    ("hours", "origins"),
    [pytest.param(11, 1, id="one-origin-left"), pytest.param(24, 0, id="none-left")],
)
def test_a_horizon_past_the_last_quarter_leaves_no_origin_and_is_refused(
    hours: int, origins: int
) -> None:
    """Two hourly days score an 11-hour horizon from their last quarter's first hour only, and
    that one origin is enough; a one-day horizon leaves none: refused as too short, saying so,
    before any model runs."""
    history = LoadSeries(START, 3600.0, np.ones(48))
    assert origin_indices(history, horizon=hours * 3600.0)[0].size == origins
    if origins:
        check_evaluable(history, models=["seasonal-naive"], horizon=hours * 3600.0)
    else:
        with pytest.raises(InsufficientHistory, match="no forecast origin with a 1440-minute"):
            check_evaluable(history, models=["seasonal-naive"], horizon=hours * 3600.0)


@pytest.mark.parametrize(
    "values",
    [
        pytest.param(np.ones(288), id="under-a-day"),
        pytest.param(np.array([1.0, math.nan, math.nan, 2.0]), id="no-known-pair"),
    ],
)
def test_no_day_ago_error_is_insufficient_history(values: np.ndarray) -> None:
    """Without a pair of known samples a season apart there is no scale: too short, not 0."""
    with pytest.raises(InsufficientHistory, match="less than a day"):
        seasonal_naive_scale(values, 288 if values.size == 288 else 2)


def test_the_error_scale_by_hand() -> None:
    """Day-ago errors |4 - 1| and |3 - 4| (the pairs with a missing value left out): 2."""
    values = np.array([1.0, 2.0, 4.0, math.nan, 3.0, 6.0])
    assert seasonal_naive_scale(values, 2) == 2.0


def test_a_flat_history_scores_a_perfect_forecast_zero_not_a_division_by_zero() -> None:
    """A flat trace's day-ago errors are all zero: the scale has a floor, so the forecasts,
    exact too, score a MASE of 0."""
    flat = LoadSeries(START, 300.0, np.full(288 * 4, 50.0))
    report = evaluate_trace(flat, models=["seasonal-naive"])["models"]["seasonal-naive"]
    assert (report["mase"], report["coverage"], report["pinball"]) == (0.0, 1.0, 0.0)


def test_the_error_scale_is_the_history_known_at_the_first_origin() -> None:
    """The MASE divides by the day-ago MAE over the samples up to the first origin, its own
    included and none after. The origin's sample is made a jump here, so that leaving it out,
    or adding the one after it, moves the score."""
    values = seasonal(days=4).values.copy()
    evaluated = LoadSeries(START, 300.0, values)
    origins, _ = origin_indices(evaluated, horizon=1800.0)
    first = int(origins[0])
    values[first] += 500.0
    values[first + 1] += 900.0
    evaluated = LoadSeries(START, 300.0, values)
    known = values[: first + 1]
    scale = float(np.mean(np.abs(known[288:] - known[:-288])))
    naive = backtest_model(evaluated, "seasonal-naive")
    mae = float(np.abs(naive.actual - naive.point).mean())
    report = evaluate_trace(evaluated, models=["seasonal-naive"])["models"]["seasonal-naive"]
    assert report["mase"] == pytest.approx(mae / scale, abs=1e-4)


def test_the_backtest_records_what_happened_after_each_origin() -> None:
    """Row ``i`` holds the samples after origin ``i``, at origin times on the series' clock; a
    seasonal-naive forecast is the sample a day before each, its fits are full ones, and its band
    is the one the model gives for that horizon (calibrated on leads up to it)."""
    history = seasonal(days=3)
    naive = backtest_model(history, "seasonal-naive", horizon=900.0)
    origins, steps = origin_indices(history, horizon=900.0)
    assert steps == 3
    rows = origins[:, None] + np.arange(1, 4)[None, :]
    np.testing.assert_array_equal(naive.actual, history.values[rows])
    np.testing.assert_array_equal(naive.point, history.values[rows - 288])
    np.testing.assert_array_equal(naive.origins, history.start + 300.0 * origins)
    assert naive.chosen == ("seasonal-naive",) * origins.size
    assert naive.fit_seconds.size == origins.size
    known = LoadSeries(history.start, 300.0, history.values[: int(origins[-1]) + 1])
    alone = create("seasonal-naive", max_horizon=900.0).fit(known).forecast(known, horizon=900.0)
    np.testing.assert_allclose(naive.upper[-1], alone.upper(0.95))


def test_progress_counts_each_origin_once() -> None:
    """The backtest reports 1, 2, ... n origins done out of n."""
    seen: list[tuple[int, int]] = []
    history = seasonal(days=3)
    backtest_model(
        history, "seasonal-naive", progress=lambda done, total: seen.append((done, total))
    )
    total = origin_indices(history, horizon=1800.0)[0].size
    assert seen == [(done, total) for done in range(1, total + 1)]


def test_an_origin_without_enough_history_has_no_forecast_and_the_next_one_does() -> None:
    """The trace's first 366 samples are missing: at the first origin (648) seasonal naive has
    283 known samples, short of the 295 it needs, and forecasts nothing (NaN, not scored); at the
    next (660) it has them and forecasts."""
    values = seasonal(days=3).values.copy()
    values[:366] = math.nan
    naive = backtest_model(LoadSeries(START, 300.0, values), "seasonal-naive")
    assert naive.origins[0] == START + 648 * 300.0
    assert naive.forecast_at.tolist() == [False] + [True] * (naive.forecast_at.size - 1)
    assert len(naive.chosen) == naive.forecast_at.size - 1


def test_a_trace_of_negative_loads_is_a_wrong_query_not_a_short_trace() -> None:
    """Loads below zero at every origin are the query's fault: the model's refusal says so,
    rather than every origin being skipped as too short to fit."""
    negative = LoadSeries(START, 300.0, -seasonal(days=3).values)
    with pytest.raises(InvalidHistory, match="negative loads"):
        evaluate_trace(negative, models=["seasonal-naive"])


def test_a_trace_file_is_read_and_named_by_its_stem(tmp_path: Path) -> None:
    """Paths are read as trace files, one at a time or several, each named by its stem."""
    history = seasonal(days=3)
    lines = ["timestamp,load"]
    for when, load in zip(history.times(), history.values, strict=True):
        stamp = datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        lines.append(f"{stamp},{float(load)!r}")
    path = tmp_path / "gateway-a.csv"
    path.write_text("\n".join(lines) + "\n")
    models = ["seasonal-naive"]
    expected = scores(evaluate_trace(history, models=models)["models"])
    assert scores(evaluate_trace(path, models=models)["models"]) == expected
    assert {
        name: scores(report)
        for name, report in evaluate_traces([path], models=models, jobs=1).items()
    } == {"gateway-a": expected}


def test_the_defaults_are_a_30_minute_horizon_and_the_95th_percentile() -> None:
    """Called without them, the evaluation scores 30 minutes ahead (six 5-minute steps) against
    the 0.95 quantile, as ``tidal forecast`` does by default."""
    history = seasonal(days=3)
    assert backtest_model(history, "seasonal-naive").point.shape[1] == 6
    models = ["seasonal-naive"]
    assert scores(evaluate_trace(history, models=models)["models"]) == scores(
        evaluate_trace(history, models=models, horizon=1800.0, quantile=0.95)["models"]
    )
    assert scores(evaluate_traces({"t": history}, models=models, jobs=1)["t"]) == scores(
        evaluate_traces({"t": history}, models=models, jobs=1, horizon=1800.0, quantile=0.95)["t"]
    )


def test_the_default_models_list_the_floor_first_and_auto_last() -> None:
    """``tidal forecast`` without ``--models`` evaluates every registered model: seasonal naive
    (the floor) first, ``auto`` last."""
    models = default_models()
    assert sorted(models) == sorted(model_names())
    assert models[0] == "seasonal-naive"
    assert models[-1] == "auto"


@pytest.mark.parametrize(
    ("horizon", "text"),
    [
        pytest.param(1800.0, "30", id="whole-minutes"),
        pytest.param(7200.0, "120", id="two-hours"),
        pytest.param(90.0, "1.5", id="a-minute-and-a-half"),
        pytest.param(100.0, "1.667", id="thirds"),
    ],
)
def test_the_report_s_horizon_is_in_minutes(horizon: float, text: str) -> None:
    """Whole minutes print as an integer in the JSON; others with three decimals at most."""
    report = forecast_report({}, horizon=horizon, quantile=0.95)
    assert json.dumps(report["horizon_minutes"]) == text


def test_a_model_needing_exactly_the_known_samples_before_the_last_origin_is_evaluable() -> None:
    """Seasonal naive needs a day and a lead of known samples up to the last origin: exactly
    that many is enough, one fewer is refused, and samples after the last origin do not count."""
    size = 2001
    history = LoadSeries(START, 300.0, np.ones(size))
    origins, _ = origin_indices(history, horizon=1800.0)
    last = int(origins[-1])
    needed = create("seasonal-naive", max_horizon=1800.0).least_points(300.0)
    for missing, enough in ((last + 1 - needed, True), (last + 2 - needed, False)):
        values = np.ones(size)
        values[289 : 289 + missing] = math.nan  # the day-ago pair at 0 and 288 stays
        assert np.isfinite(values[: last + 1]).sum() == needed - (not enough)
        assert np.isfinite(values[last + 1]) and np.isfinite(values[last])
        gappy = LoadSeries(START, 300.0, values)
        if enough:
            assert check_evaluable(gappy, models=["seasonal-naive"], horizon=1800.0) is not None
        else:
            with pytest.raises(InsufficientHistory, match=f"needs {needed} known samples"):
                check_evaluable(gappy, models=["seasonal-naive"], horizon=1800.0)


def test_a_value_error_while_evaluating_names_the_trace(monkeypatch: pytest.MonkeyPatch) -> None:
    """A ValueError about the data is as much the trace's fault as a ForecastError: it is raised
    naming the trace, with the cause chained."""

    def failing(*_args: object, **_kwargs: object) -> None:
        raise ValueError("zero-size array")

    monkeypatch.setattr(evaluation, "backtest_model", failing)
    with pytest.raises(TraceEvaluationFailed, match="zero-size array") as error:
        evaluate_traces({"synthetic": seasonal(days=3)}, models=["seasonal-naive"], jobs=1)
    assert error.value.trace == "synthetic"
    assert isinstance(error.value.__cause__, ValueError)


def test_a_bug_while_evaluating_is_raised_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    """An error that is not about the data (a bug) keeps its own type and traceback: dressing it
    as a bad trace would send the user to fix a file that is fine."""

    def failing(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(evaluation, "backtest_model", failing)
    with pytest.raises(RuntimeError, match="bug"):
        evaluate_traces({"synthetic": seasonal(days=3)}, models=["seasonal-naive"], jobs=1)


def test_an_already_named_failure_is_not_named_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure that already names its trace is raised as it is, not renamed or chained."""

    def failing(*_args: object, **_kwargs: object) -> None:
        raise TraceEvaluationFailed("inner", "too short")

    monkeypatch.setattr(evaluation, "backtest_model", failing)
    with pytest.raises(TraceEvaluationFailed) as error:
        evaluate_traces({"outer": seasonal(days=3)}, models=["seasonal-naive"], jobs=1)
    assert (error.value.trace, str(error.value)) == ("inner", "inner: too short")
    assert error.value.__cause__ is None


def test_an_evaluated_series_at_the_fit_step_is_the_trace_itself() -> None:
    """A 5-minute trace is evaluated as it is."""
    history = seasonal(days=2)
    np.testing.assert_array_equal(evaluation_series(history).values, history.values)


def test_one_job_evaluates_in_this_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """``jobs=1`` starts no worker process: every model is backtested here."""
    real = evaluation.backtest_model
    pids: list[int] = []

    def recorded(series: LoadSeries, model: str, **kwargs: Any) -> ModelBacktest:
        pids.append(os.getpid())
        return real(series, model, **kwargs)

    monkeypatch.setattr(evaluation, "backtest_model", recorded)
    evaluate_traces({"t": seasonal(days=3)}, models=["seasonal-naive"], jobs=1)
    assert pids == [os.getpid()]


@pytest.mark.parametrize(
    ("cpus", "here"),
    [pytest.param(2, False, id="two-cpus-workers"), pytest.param(None, True, id="unknown-here")],
)
def test_without_jobs_the_models_run_in_a_worker_process_per_cpu(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, cpus: int | None, here: bool
) -> None:
    """``jobs`` defaults to the CPU count: on two CPUs the two backtests run in workers, not
    here; when the count is unknown, in this process."""
    real = evaluation.backtest_model

    def recorded(series: LoadSeries, model: str, **kwargs: Any) -> ModelBacktest:
        (tmp_path / str(os.getpid())).touch()
        return real(series, model, **kwargs)

    # Workers are forked: they see the patched function too.
    monkeypatch.setattr(evaluation, "backtest_model", recorded)
    monkeypatch.setattr(os, "cpu_count", lambda: cpus)
    evaluate_traces({"t": seasonal(days=3), "u": seasonal(days=3)}, models=["seasonal-naive"])
    ran = {path.name for path in tmp_path.iterdir()}
    assert ran and (str(os.getpid()) in ran) == here
    if here:
        assert ran == {str(os.getpid())}


class _Pool(ProcessPoolExecutor):
    """A process pool that notes the workers it is asked for."""

    asked: ClassVar[list[int | None]] = []

    def __init__(self, max_workers: int | None = None, **kwargs: Any) -> None:
        type(self).asked.append(max_workers)
        super().__init__(max_workers, **kwargs)


@pytest.mark.parametrize(
    ("traces", "models", "jobs", "asked"),
    [
        pytest.param(2, ["seasonal-naive"], 8, [2], id="two-evaluations-of-eight-jobs"),
        pytest.param(2, ["seasonal-naive", "holt-winters"], 3, [3], id="fewer-jobs-than-four"),
        pytest.param(1, ["seasonal-naive"], 8, [], id="one-evaluation-here"),
        pytest.param(1, ["seasonal-naive"], None, [], id="one-evaluation-by-default"),
    ],
)
def test_the_pool_is_asked_for_no_more_workers_than_evaluations(
    monkeypatch: pytest.MonkeyPatch,
    traces: int,
    models: list[str],
    jobs: int | None,
    asked: list[int],
) -> None:
    """Each worker takes one (trace, model) evaluation: ``--jobs 40`` forked 40 processes for
    one evaluation (``--jobs 100000``, as many). No more are asked for than there are
    evaluations, and one is run in this process, as ``jobs=1`` is."""
    monkeypatch.setattr(_Pool, "asked", [])
    monkeypatch.setattr(interrupts, "ProcessPoolExecutor", _Pool)  # where the pool is made
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    named = {f"t{i}": seasonal(days=3) for i in range(traces)}
    report = evaluate_traces(named, models=models, jobs=jobs)
    assert _Pool.asked == asked
    assert {name: set(entry) for name, entry in report.items()} == {
        name: set(models) for name in named
    }


def test_worker_processes_report_each_model_s_progress() -> None:
    """Across worker processes, progress still reaches every origin of every trace's model."""
    seen: dict[tuple[str, str], tuple[int, int]] = {}
    history = seasonal(days=3)
    evaluate_traces(
        {"a": history, "b": history},
        models=["seasonal-naive"],
        jobs=2,
        progress=lambda trace, model, done, total: seen.__setitem__((trace, model), (done, total)),
    )
    total = origin_indices(history, horizon=1800.0)[0].size
    assert seen == {
        ("a", "seasonal-naive"): (total, total),
        ("b", "seasonal-naive"): (total, total),
    }


def test_every_trace_fails_fast_before_any_model_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bad second trace is refused before the first trace's models run."""
    calls: list[str] = []

    def counted(series: LoadSeries, model: str, **_kwargs: object) -> None:
        calls.append(model)
        raise FitFailed("unreachable")

    monkeypatch.setattr(evaluation, "backtest_model", counted)
    with pytest.raises(TraceEvaluationFailed) as error:
        evaluate_traces(
            {"good": seasonal(days=3), "bad": seasonal(days=0.5)}, models=["seasonal-naive"], jobs=1
        )
    assert error.value.trace == "bad"
    assert calls == []


def test_evaluating_one_trace_checks_it_before_any_model_runs() -> None:
    """A trace long enough for seasonal naive but not for Holt-Winters is refused by
    ``evaluate_trace`` as by ``evaluate_traces``: naming the model and the samples it needs,
    before any model has forecast from a single origin."""
    history = LoadSeries(START, 300.0, np.ones(580))
    needed = create("holt-winters", max_horizon=1800.0).least_points(300.0)
    ran: list[tuple[str, int, int]] = []
    with pytest.raises(InsufficientHistory, match=f"holt-winters: it needs {needed} known"):
        evaluate_trace(
            history,
            models=["seasonal-naive", "holt-winters"],
            progress=lambda *tick: ran.append(tick),
        )
    assert ran == []
    # The same trace is evaluable by seasonal naive alone, which then runs at every origin.
    report = evaluate_trace(history, models=["seasonal-naive"], progress=lambda *t: ran.append(t))
    assert set(report["models"]) == {"seasonal-naive"}
    origins, _ = origin_indices(history, horizon=1800.0)
    assert ran[-1] == ("seasonal-naive", origins.size, origins.size)


@pytest.mark.parametrize(
    ("horizon", "steps"),
    [(420.0, 2), (300.0, 1), (301.0, 2), (1.0, 1), (1800.0, 6), (1800.0 + 1e-7, 6)],
)
def test_the_lead_steps_cover_the_horizon_as_a_forecast_does(horizon: float, steps: int) -> None:
    """At a 5-minute step, 7 minutes are scored over two steps, as a forecast over 7 minutes
    holds two (`tidal forecast --show --horizon 7m`), not the one nearest."""
    history = LoadSeries(START, 300.0, np.ones(2000))
    assert origin_indices(history, horizon=horizon)[1] == steps
    fitted = create("seasonal-naive", fit_step=300.0, max_horizon=horizon).fit(history)
    assert fitted.forecast(history, horizon=horizon).point.size == steps
