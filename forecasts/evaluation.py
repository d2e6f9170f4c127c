"""Rolling-origin evaluation of the forecasting models on real traces (issue 2, ``tidal forecast``).

For each trace:

- the series is taken at its native step aggregated to the fit step (5-minute means; a coarser
  trace keeps its own step), and both the models and the scoring see that series;
- forecast origins are an hour apart over the trace's last quarter, from its first whole hour
  (every step from the first when a step is longer than 40 minutes), as long as the whole
  horizon lies inside the trace; a step that does not divide an hour takes the whole number of
  steps nearest to one (at 7 minutes, every 63 minutes), so later origins leave the clock's
  hours;
- at every origin each model forecasts the horizon (at least one step) from the history up to
  the origin, and the forecasts are compared with what happened next;
- every model of a trace is scored on the same origins: those where each of them could fit
  (a model that needs more history than another, or a stretch too gappy for one, leaves an
  origin out for all). A trace with no such origin is refused, with each model's count.

Refit policy (honest, and the one the operator uses): at every origin the model is refitted
with the previous fit as ``previous``. Each model then decides: a full estimation when its
parameters are a day old (``reestimate_every``), otherwise a cheap refit that advances the
state over the new hour and recalibrates. Nothing a forecast uses comes after its origin.

Metrics per model:

- ``mase``: MAE of the point forecast over all origins and lead times, divided by the in-sample
  MAE of the one-day seasonal-naive forecast over the history before the first origin;
- ``coverage``: fraction of actual values at or below the upper quantile;
- ``pinball``: mean quantile loss of the upper quantile, in the trace's units;
- ``fit_seconds``: median wall time of one full fit (parameter estimation), the cost the
  operator pays once a day; cheap refits cost milliseconds.

A trace that cannot be evaluated (a step that does not divide the fit step, too short for a
forecast origin, for the error scale or for a model to fit) is refused before any model runs,
and any error met while evaluating a trace is raised as :class:`TraceEvaluationFailed`, which
names the trace.
"""

from __future__ import annotations

import math
import os
import queue as queue_module
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from forecasts.base import DAY, BoolArray, FittedModel, FloatArray
from forecasts.errors import ForecastError, InsufficientHistory
from forecasts.interrupts import started_workers
from forecasts.registry import create, model_names
from forecasts.series import FIT_BUCKET, LoadSeries, divides, load_trace

__all__ = [
    "FIT_STEP",
    "ModelBacktest",
    "Progress",
    "TraceEvaluationFailed",
    "backtest_model",
    "check_evaluable",
    "evaluate_trace",
    "evaluate_traces",
    "evaluation_series",
    "fit_step_for",
    "forecast_report",
    "score_together",
]

FIT_STEP = FIT_BUCKET
ORIGIN_EVERY = 3600.0

#: ``progress(trace, model, done, total)``: origins done out of total for one model on one trace.
Progress = Callable[[str, str, int, int], None]


class TraceEvaluationFailed(ForecastError):
    """Evaluating one trace failed: ``trace`` names it, ``detail`` says why (cause chained)."""

    def __init__(self, trace: str, detail: str) -> None:
        super().__init__(f"{trace}: {detail}")
        self.trace = trace
        self.detail = detail

    def __reduce__(self) -> tuple[type[TraceEvaluationFailed], tuple[str, str]]:
        return type(self), (self.trace, self.detail)


def default_models() -> list[str]:
    """Every registered model, the floor first and ``auto`` last, as the report lists them."""
    names = model_names()
    first = [n for n in ("seasonal-naive",) if n in names]
    last = [n for n in ("auto",) if n in names]
    return first + [n for n in names if n not in first + last] + last


@dataclass(frozen=True, eq=False)
class ModelBacktest:
    """Every forecast of one model: ``point[i, j]`` from ``origins[i]``, ``j+1`` steps ahead."""

    model: str
    step: float
    origins: FloatArray  # origin times
    point: FloatArray
    upper: FloatArray
    actual: FloatArray
    fit_seconds: FloatArray  # wall time of the full fits
    chosen: tuple[str, ...]  # the fitted model's name at each origin (``auto`` picks one)

    @property
    def forecast_at(self) -> BoolArray:
        """The origins (rows) where the model could fit, and forecast."""
        return np.asarray(np.isfinite(self.point).all(axis=1))

    def metrics(
        self, *, quantile: float, scale: float, origins: BoolArray | None = None
    ) -> dict[str, float]:
        """The metrics over ``origins`` (a row mask; default: every origin it forecast from)."""
        rows = self.forecast_at if origins is None else origins
        known = np.isfinite(self.actual[rows]) & np.isfinite(self.point[rows])
        actual = self.actual[rows][known]
        point, upper = self.point[rows][known], self.upper[rows][known]
        if actual.size == 0:
            raise InsufficientHistory(f"{self.model}: no forecast could be scored")
        gap = actual - upper
        pinball = np.maximum(quantile * gap, (quantile - 1.0) * gap)
        return {
            "mase": round(float(np.abs(actual - point).mean()) / scale, 4),
            "coverage": round(float((actual <= upper).mean()), 4),
            "pinball": round(float(pinball.mean()), 4),
            "fit_seconds": round(float(np.median(self.fit_seconds)), 4)
            if self.fit_seconds.size
            else math.nan,
        }


def fit_step_for(step: float, *, fit_step: float = FIT_STEP) -> float:
    """The step a series of ``step`` seconds is fitted at: ``fit_step``, or its own when coarser.

    A finer step must divide ``fit_step``: a bucket mean over a fractional number of samples
    would mix two buckets' loads.
    """
    if step >= fit_step:
        return step
    if not divides(step, fit_step):
        raise ForecastError(
            f"a {step:g}s step does not divide the {fit_step:g}s fit step; use a step that does "
            f"(60s, for example) or one of {fit_step:g}s or more"
        )
    return fit_step


def evaluation_series(series: LoadSeries, *, fit_step: float = FIT_STEP) -> LoadSeries:
    """The trace as evaluated: aggregated to ``fit_step``, or at its own step when coarser."""
    return series.aggregate(fit_step_for(series.step, fit_step=fit_step))


def check_evaluable(series: LoadSeries, *, models: Sequence[str], horizon: float) -> LoadSeries:
    """The trace as evaluated, once it is known that every model can be scored on it.

    Cheap (no model is fitted), so that a trace too short fails in a second, not after the
    other traces' minutes of evaluation. Raises :class:`ForecastError` saying what is short.
    """
    evaluated = evaluation_series(series)
    origins, _ = origin_indices(evaluated, horizon=horizon)
    if origins.size == 0:
        raise InsufficientHistory(
            f"too short to evaluate: {len(evaluated)} samples at a {evaluated.step:g}s step "
            f"leave no forecast origin with a {horizon / 60:g}-minute horizon after it"
        )
    _scale(evaluated, horizon=horizon)
    # A model that cannot fit the history up to the last origin cannot be scored at any.
    known = int(np.isfinite(evaluated.values[: int(origins[-1]) + 1]).sum())
    for model in models:
        forecaster = create(model, fit_step=FIT_STEP, max_horizon=max(horizon, evaluated.step))
        needed = forecaster.least_points(evaluated.step)
        if known < needed:
            raise InsufficientHistory(
                f"too short to evaluate {model}: it needs {needed} known samples at a "
                f"{evaluated.step:g}s step before the last forecast origin, the trace has {known}"
            )
    return evaluated


def origin_indices(series: LoadSeries, *, horizon: float) -> tuple[np.ndarray, int]:
    """Indices of the origins over the last quarter, the whole steps nearest an hour apart from
    its first whole hour, and the number of lead steps: those that cover the horizon, as a
    forecast over it holds (7 minutes at a 5-minute step is two)."""
    steps = max(1, math.ceil(horizon / series.step - 1e-9))
    first = math.ceil(0.75 * (len(series) - 1))
    every = max(1, round(ORIGIN_EVERY / series.step))
    times = series.start + series.step * np.arange(len(series))
    # Start on a whole hour (or the first step when the step is an hour or longer).
    on_hour = np.flatnonzero((np.mod(times[first:], ORIGIN_EVERY) < 1e-6) | (every == 1))
    start = first + int(on_hour[0]) if on_hour.size else first
    return np.arange(start, len(series) - steps, every, dtype=np.int64), steps


def seasonal_naive_scale(values: FloatArray, season: int) -> float:
    """In-sample MAE of the one-day seasonal-naive forecast: the MASE denominator."""
    diffs = np.abs(values[season:] - values[:-season])
    known = diffs[np.isfinite(diffs)]
    if known.size == 0:
        raise InsufficientHistory(
            "too short to evaluate: the errors are scaled by a day-ago forecast, and the "
            "history before the first forecast origin holds less than a day of load"
        )
    return max(float(known.mean()), 1e-9)


def backtest_model(
    series: LoadSeries,
    model: str,
    *,
    horizon: float = 1800.0,
    quantile: float = 0.95,
    progress: Callable[[int, int], None] | None = None,
) -> ModelBacktest:
    """Rolling-origin forecasts of one model on a series already at its evaluation step."""
    origins, steps = origin_indices(series, horizon=horizon)
    forecaster = create(model, fit_step=FIT_STEP, max_horizon=max(horizon, series.step))
    values = series.values
    n_origins = origins.size
    point = np.full((n_origins, steps), np.nan)
    upper = np.full((n_origins, steps), np.nan)
    actual = np.full((n_origins, steps), np.nan)
    fit_seconds: list[float] = []
    chosen: list[str] = []
    fitted: FittedModel | None = None
    for i, origin in enumerate(origins.tolist()):
        history = LoadSeries(series.start, series.step, values[: origin + 1])
        try:
            fitted = forecaster.fit(history, previous=fitted)
        except InsufficientHistory:
            # A stretch too gappy to fit on: no forecast from here, and none is scored.
            fitted = None
        if fitted is not None:
            if not fitted.cheaply_refitted:
                fit_seconds.append(fitted.fit_seconds)
            forecast = fitted.forecast(history, horizon=horizon)
            point[i] = forecast.point[:steps]
            upper[i] = forecast.upper(quantile)[:steps]
            actual[i] = values[origin + 1 : origin + 1 + steps]
            chosen.append(fitted.name)
        if progress is not None:
            progress(i + 1, n_origins)
    return ModelBacktest(
        model=model,
        step=series.step,
        origins=series.start + series.step * origins.astype(np.float64),
        point=point,
        upper=upper,
        actual=actual,
        fit_seconds=np.asarray(fit_seconds),
        chosen=tuple(chosen),
    )


def score_together(
    backtests: Mapping[str, ModelBacktest], *, quantile: float, scale: float
) -> dict[str, dict[str, float]]:
    """The metrics of each model on one trace, all on the origins where every model forecast.

    A model that could not fit at some origins (too little history before the first ones, or a
    stretch too gappy for it) would otherwise be scored on fewer, later origins than another,
    and the two scores would not compare. Raises :class:`InsufficientHistory`, with each
    model's count, when no origin is left.
    """
    common = np.logical_and.reduce([backtest.forecast_at for backtest in backtests.values()])
    if not common.any():
        counts = ", ".join(
            f"{model} at {int(backtest.forecast_at.sum())}" for model, backtest in backtests.items()
        )
        raise InsufficientHistory(
            f"no forecast origin where every model could forecast, so none to compare them on "
            f"({counts} of {common.size} origins)"
        )
    return {
        model: backtest.metrics(quantile=quantile, scale=scale, origins=common)
        for model, backtest in backtests.items()
    }


def _as_series(trace: str | Path | LoadSeries) -> LoadSeries:
    return trace if isinstance(trace, LoadSeries) else load_trace(trace)


def _scale(series: LoadSeries, *, horizon: float) -> float:
    origins, _ = origin_indices(series, horizon=horizon)
    season = max(1, round(DAY / series.step))
    first = int(origins[0]) if origins.size else len(series)
    return seasonal_naive_scale(series.values[: first + 1], season)


def evaluate_trace(
    trace: str | Path | LoadSeries,
    *,
    models: Sequence[str] | None = None,
    horizon: float = 1800.0,
    quantile: float = 0.95,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """``{"models": {name: {mase, coverage, pinball, fit_seconds}}}`` for one trace.

    ``progress(model, done, total)`` is called after every origin. The trace is checked first
    (:func:`check_evaluable`): one too short for a model fails before any model runs.
    """
    names = list(models or default_models())
    series = check_evaluable(_as_series(trace), models=names, horizon=horizon)
    scale = _scale(series, horizon=horizon)
    backtests: dict[str, ModelBacktest] = {}
    for model in names:
        callback = None
        if progress is not None:
            callback = _bind(progress, model)
        backtests[model] = backtest_model(
            series, model, horizon=horizon, quantile=quantile, progress=callback
        )
    return {"models": score_together(backtests, quantile=quantile, scale=scale)}


def _bind(progress: Callable[[str, int, int], None], model: str) -> Callable[[int, int], None]:
    return lambda done, total: progress(model, done, total)


def _job(
    name: str,
    trace: str | Path | LoadSeries,
    model: str,
    horizon: float,
    quantile: float,
    ticks: Any,
    stop: Any = None,
) -> ModelBacktest:
    """One (trace, model) evaluation in a worker process; progress goes through ``ticks``, and
    the evaluation ends at its next forecast origin once ``stop`` (an event) is set. It is
    scored once every model of the trace is done (:func:`score_together`)."""
    if stop is not None and stop.is_set():  # queued before another failed: not started
        raise _Stopped(f"{name}/{model}: stopped after another evaluation failed")
    series = evaluation_series(_as_series(trace))

    def tick(done: int, total: int) -> None:
        if stop is not None and stop.is_set():
            raise _Stopped(f"{name}/{model}: stopped after another evaluation failed")
        if ticks is not None:
            ticks.put((name, model, done, total))

    return backtest_model(series, model, horizon=horizon, quantile=quantile, progress=tick)


class _Stopped(Exception):
    """A worker's evaluation given up because another one failed."""


def _trace_items(
    traces: Iterable[str | Path] | Mapping[str, LoadSeries],
) -> list[tuple[str, str | Path | LoadSeries]]:
    if isinstance(traces, Mapping):
        return list(traces.items())
    return [(Path(path).stem, path) for path in traces]


def evaluate_traces(
    traces: Iterable[str | Path] | Mapping[str, LoadSeries],
    *,
    models: Sequence[str] | None = None,
    horizon: float = 1800.0,
    quantile: float = 0.95,
    jobs: int | None = None,
    progress: Progress | None = None,
) -> dict[str, dict[str, dict[str, float]]]:
    """``{trace: {model: metrics}}`` for several traces, one (trace, model) per worker process.

    ``traces`` are paths (named by their stem) or a mapping of names to series. ``jobs``
    defaults to the CPU count; 1 runs everything in this process. Every trace is checked
    (:func:`check_evaluable`) before any model runs; a trace that cannot be evaluated raises
    :class:`TraceEvaluationFailed` naming it.
    """
    items = _trace_items(traces)
    names = list(models or default_models())
    # No more workers than (trace, model) evaluations: a worker with none to do is a process
    # forked for nothing (``--jobs 100000`` would try as many).
    workers = min(jobs if jobs is not None else (os.cpu_count() or 1), len(items) * len(names))
    # Every trace is read and checked first: a bad one fails at once, before any model runs.
    checked: list[tuple[str, LoadSeries]] = []
    for name, trace in items:
        with _naming(name):
            series = check_evaluable(_as_series(trace), models=names, horizon=horizon)
        checked.append((name, series))
    backtests: dict[str, dict[str, ModelBacktest]] = {name: {} for name, _ in checked}
    if workers <= 1:
        results: dict[str, dict[str, dict[str, float]]] = {}
        for name, series in checked:
            with _naming(name):
                for model in names:
                    callback = None
                    if progress is not None:
                        callback = _bind(_bind_trace(progress, name), model)
                    backtests[name][model] = backtest_model(
                        series, model, horizon=horizon, quantile=quantile, progress=callback
                    )
                results[name] = score_together(
                    backtests[name], quantile=quantile, scale=_scale(series, horizon=horizon)
                )
        return results
    # The costliest jobs first (auto fits every candidate), so the pool ends together.
    order = sorted(
        ((name, series, model) for name, series in checked for model in names),
        key=lambda job: job[2] != "auto",
    )

    def submit(manager: Any, pool: ProcessPoolExecutor) -> _Submitted:
        ticks = manager.Queue() if progress is not None else None
        stop = manager.Event()
        futures: dict[Future[ModelBacktest], tuple[str, str]] = {}
        for name, series, model in order:
            work = (name, series, model, horizon, quantile, ticks, stop)
            futures[pool.submit(_job, *work)] = (name, model)
        return futures, ticks, stop

    with started_workers(workers, submit) as (futures, ticks, stop):
        for (name, model), backtest in _collected(futures, ticks, stop, progress).items():
            backtests[name][model] = backtest
    scored: dict[str, dict[str, dict[str, float]]] = {}
    for name, series in checked:
        with _naming(name):
            # In the requested model order.
            together = {model: backtests[name][model] for model in names}
            scored[name] = score_together(
                together, quantile=quantile, scale=_scale(series, horizon=horizon)
            )
    return scored


#: What :func:`evaluate_traces` hands its pool: the futures by (trace, model), the queue its
#: progress ticks come by (None without progress), and the event that stops the others.
_Submitted = tuple[dict[Future[ModelBacktest], tuple[str, str]], Any, Any]


def _collected(
    futures: dict[Future[ModelBacktest], tuple[str, str]],
    ticks: Any,
    stop: Any,
    progress: Progress | None,
) -> dict[tuple[str, str], ModelBacktest]:
    """Every (trace, model) of ``futures``, evaluated in their pool, its progress drained here;
    the first that fails stops the others and is raised."""
    pending = set(futures)
    while pending:
        finished = {f for f in pending if f.done()}
        pending -= finished
        for future in finished:
            error = future.exception()
            if error is not None:
                # No more jobs start, and the running ones stop at their next origin, so
                # the error is reported now, not after the others' minutes of fitting.
                stop.set()
                for other in pending:
                    other.cancel()
                raise _named(futures[future][0], error) from error
        _drain(ticks, progress, wait=0.2 if pending else 0.0)
    _drain(ticks, progress, wait=0.0)
    return {key: future.result() for future, key in futures.items()}


def _named(trace: str, error: BaseException) -> BaseException:
    """``error`` as a :class:`TraceEvaluationFailed` naming ``trace``, when it is about the data."""
    about_data = isinstance(error, ForecastError | ValueError)
    if isinstance(error, TraceEvaluationFailed) or not about_data:
        return error
    return TraceEvaluationFailed(trace, str(error))


@contextmanager
def _naming(trace: str) -> Iterator[None]:
    """Raise the data errors of the block as :class:`TraceEvaluationFailed` naming ``trace``."""
    try:
        yield
    except (ForecastError, ValueError) as exc:
        named = _named(trace, exc)
        if named is exc:
            raise
        raise named from exc


def _bind_trace(progress: Progress, trace: str) -> Callable[[str, int, int], None]:
    return lambda model, done, total: progress(trace, model, done, total)


def _drain(ticks: Any, progress: Progress | None, *, wait: float) -> None:
    if ticks is None or progress is None:
        if wait:
            import time

            time.sleep(wait)
        return
    try:
        item = ticks.get(timeout=wait) if wait else ticks.get_nowait()
        while True:
            progress(*item)
            item = ticks.get_nowait()
    except queue_module.Empty:
        return


def forecast_report(
    results: Mapping[str, Mapping[str, Mapping[str, float]]], *, horizon: float, quantile: float
) -> dict[str, Any]:
    """The JSON object of ``tidal forecast --json`` (issue 2)."""
    return {
        "horizon_minutes": round(horizon / 60.0, 3) if horizon % 60 else int(horizon // 60),
        "quantile": quantile,
        "traces": {
            name: {"models": {model: dict(metrics) for model, metrics in models.items()}}
            for name, models in results.items()
        },
    }
