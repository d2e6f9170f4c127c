"""``tidal forecast``: fit and show a forecast for a trace file or a live Prometheus query.

Three modes:

- ``tidal forecast TRACE.csv [...]`` (the default for trace files): rolling-origin accuracy of
  every model (``--models``). ``--json`` prints the JSON object of issue 2 on standard output
  and nothing else there; without it a table is printed. ``--plot FILE.png`` draws, for the
  first trace, the actual load against the forecasts and their upper band over the evaluated
  quarter. Progress goes to standard error: a bar on a terminal (none with ``--json``),
  otherwise (CI logs, ``2>file``) a plain line when a trace is done and one every
  :data:`PROGRESS_EVERY` seconds in between, ``--json`` or not.
- ``tidal forecast TRACE.csv --show [--at TIMESTAMP]``: fits ``--model`` (default ``auto``)
  once on the trace up to ``--at`` (default: its end) and shows the forecast.
- ``tidal forecast --prometheus-url URL --query PROMQL [--step 1m] [--history 14d]``: the same
  on the last ``--history`` of the query up to now, read with the operator's own
  :class:`~controller.operator.prometheus_source.PrometheusLoadSource`, and fitted as the
  planner fits (:func:`controller.planner.forecaster_for`: the registry's model at
  ``max(5m, step)``). ``--step`` and ``--history`` are bound as the custom resource bounds
  ``load.step`` and ``load.history`` (:class:`controller.spec.LoadSpec`).

``--horizon`` is covered by the forecast's whole steps it reaches into (7m at 5m is two, 30m on
an hourly trace one); one shorter than the finest fit step, 5m, is refused whatever the trace.

A shown forecast, on a terminal, is a few lines and a table; with ``--json`` it is one object:

- ``source``: ``{"trace": PATH}`` or ``{"prometheus_url": URL, "query": PROMQL}``;
- ``model``: the model asked for; ``chosen_model``: the one fitted (``auto`` picks one);
- ``fitted_until``: the time fitted, the end of the history the model saw (the forecast's
  origin), ISO-8601 UTC; ``fit_seconds``: the fit's wall time;
- ``last_observed``: ``{"time", "load"}``, the newest known sample of the history;
- ``step_seconds``, ``horizon_minutes``, ``quantile``: the forecast's step, horizon and band;
- ``forecast``: one ``{"time", "point", "upper"}`` per step over the horizon, ``upper`` being
  the ``quantile`` upper quantile; each value is the mean over the step that ends at ``time``;
- ``peak_upper``: ``{"time", "load"}``, the highest upper quantile over the horizon.

``--plot FILE.png`` then draws the history's last hours, the point forecast and its band.

Bad input (a missing file, a malformed or unusable trace, a bad flag) and a failed source
(Prometheus unreachable, a query it rejects or that returns nothing, too little history) are
one line on standard error naming the file, the flag or the URL and query, and exit code 2.
``--plot`` is checked before any work; a plot that fails to draw afterwards comes after the
report, which is printed first.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TextIO

import numpy as np
from pydantic import ValidationError

from controller.cli import rich_console, timestamp_flag
from controller.durations import format_duration, parse_duration
from controller.planner import MIN_FIT_STEP
from controller.spec import MAX_HISTORY_POINTS, MIN_STEP, LoadSpec, format_validation_error
from forecasts.base import FittedModel, FloatArray, Forecast
from forecasts.errors import ForecastError, UnknownModel
from forecasts.evaluation import (
    TraceEvaluationFailed,
    backtest_model,
    default_models,
    evaluate_traces,
    evaluation_series,
    fit_step_for,
    forecast_report,
)
from forecasts.registry import create, model_names
from forecasts.series import LoadSeries, format_timestamp, load_trace

__all__ = [
    "PROGRESS_EVERY",
    "ShownForecast",
    "add_arguments",
    "run",
    "show_forecast",
    "shown_report",
]

EXIT_USAGE = 2
DEFAULT_MODEL = "auto"
DEFAULT_STEP = "1m"
DEFAULT_HISTORY = "14d"
#: Seconds between two plain progress lines when standard error is not a terminal.
PROGRESS_EVERY = 30.0
#: History drawn before a shown forecast (at least eight horizons).
PLOT_TAIL = 6 * 3600.0
#: The shortest reach :func:`controller.planner.forecaster_for` calibrates a model for.
PLANNER_HORIZON = 3600.0

#: Flags that only some modes take: attribute, flag, modes, and where the flag applies.
_MODE_FLAGS = (
    ("models", "--models", ("accuracy",), "the accuracy report (trace files without --show)"),
    ("jobs", "--jobs", ("accuracy",), "the accuracy report (trace files without --show)"),
    (
        "model",
        "--model",
        ("show", "live"),
        "--show and --prometheus-url; the report takes --models",
    ),
    ("at", "--at", ("show",), "--show"),
    ("step", "--step", ("live",), "--prometheus-url"),
    ("history", "--history", ("live",), "--prometheus-url"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``tidal forecast``."""
    parser.add_argument(
        "traces",
        nargs="*",
        metavar="TRACE.csv",
        help="timestamp,load CSV files (or --prometheus-url and --query)",
    )
    parser.add_argument("--json", action="store_true", help="print the JSON report on stdout")
    parser.add_argument("--horizon", default="30m", help="forecast horizon (default 30m)")
    parser.add_argument(
        "--quantile",
        type=float,
        default=0.95,
        help="upper quantile, in (0.5, 1) like spec.forecast.quantile (default 0.95)",
    )
    parser.add_argument(
        "--plot",
        metavar="FILE.png",
        help="plot the first trace's forecasts, or the shown forecast with its history",
    )
    accuracy = parser.add_argument_group("accuracy report (trace files, the default)")
    accuracy.add_argument(
        "--models",
        nargs="+",
        metavar="MODEL",
        help=f"models to evaluate (default all: {', '.join(model_names())})",
    )
    accuracy.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="worker processes, at most one per trace and model (default: one per CPU)",
    )
    shown = parser.add_argument_group("one forecast shown (--show on a trace, or live)")
    shown.add_argument(
        "--show", action="store_true", help="fit once on the trace and show the forecast"
    )
    shown.add_argument(
        "--at",
        metavar="TIMESTAMP",
        help="with --show: fit on the trace up to this time (times without an offset are read "
        "as UTC, and a local-clock trace's times after summer time's end an hour on, as the "
        "trace's own are)",
    )
    shown.add_argument(
        "--model",
        default=None,
        help=f"model to fit (default {DEFAULT_MODEL}; one of {', '.join(model_names())})",
    )
    live = parser.add_argument_group("live, from Prometheus")
    live.add_argument("--prometheus-url", metavar="URL", help="Prometheus to read the load from")
    live.add_argument("--query", metavar="PROMQL", help="PromQL returning one series: the load")
    live.add_argument(
        "--step", default=None, help=f"resolution of the history read (default {DEFAULT_STEP})"
    )
    live.add_argument(
        "--history", default=None, help=f"how much history to read (default {DEFAULT_HISTORY})"
    )


def _fail(message: str) -> int:
    print(f"tidal forecast: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def run(args: argparse.Namespace) -> int:
    """Report accuracy or show one forecast; 0 on success, 2 on bad input or a failed source."""
    try:
        horizon = parse_duration(args.horizon).total_seconds()
    except ValueError as exc:
        return _fail(f"--horizon: {exc}")
    if horizon <= 0:
        return _fail("--horizon must be positive")
    problem = _horizon_problem(args.horizon, horizon)
    if problem is not None:
        return _fail(problem)  # at once: no forecast is finer, whatever the trace
    if math.isnan(args.quantile):
        return _fail(f"--quantile must be a number in (0.5, 1), got {args.quantile}")
    # The CRD's bounds (spec.forecast.quantile): at 0.5 the "upper" band is the median.
    if not 0.5 < args.quantile < 1.0:
        return _fail(f"--quantile must be in (0.5, 1), got {args.quantile}")
    if args.jobs is not None and args.jobs < 1:
        return _fail(f"--jobs must be at least 1, got {args.jobs}")
    try:
        mode = _mode(args)
    except ValueError as exc:
        return _fail(str(exc))
    if args.plot is not None:
        from controller.plotting import plot_path

        try:
            args.plot = str(plot_path(args.plot))  # checked before minutes of work
        except ValueError as exc:
            return _fail(f"--plot {args.plot or repr(args.plot)}: {exc}")
    if mode == "accuracy":
        return _run_accuracy(args, horizon)
    model = DEFAULT_MODEL if args.model is None else args.model
    if model not in model_names():
        return _fail(_unknown_model(model))
    if mode == "show":
        return _run_show(args, model=model, horizon=horizon)
    return _run_live(args, model=model, horizon=horizon)


def _mode(args: argparse.Namespace) -> str:
    """``accuracy``, ``show`` or ``live``; ValueError names a flag that does not fit it."""
    if args.prometheus_url is not None or args.query is not None:
        if args.traces:
            raise ValueError("give trace files or --prometheus-url, not both")
        if not args.prometheus_url or not args.query:
            raise ValueError("--prometheus-url and --query go together, neither empty")
        if args.show:
            raise ValueError("--show applies to trace files; --prometheus-url always shows")
        mode = "live"
    elif not args.traces:
        raise ValueError("give TRACE.csv files, or --prometheus-url and --query")
    else:
        mode = "show" if args.show else "accuracy"
    for attribute, flag, modes, where in _MODE_FLAGS:
        if getattr(args, attribute) is not None and mode not in modes:
            raise ValueError(f"{flag} applies only to {where}")
    if mode == "show" and len(args.traces) != 1:
        raise ValueError(f"--show takes one trace file, got {len(args.traces)}")
    return mode


def _horizon_problem(text: str, horizon: float) -> str | None:
    """Why ``--horizon`` is shorter than the finest fit step, or None.

    A forecast is of whole steps' means: a horizon that is not a whole number of steps is
    covered by the steps it reaches into (7m at 5m is two; 30m on an hourly trace is the next
    hour, shown as "30 min ahead in 60-minute means"), but one shorter than the finest step any
    forecast is fitted at would be a step's forecast reported as less (``--horizon 1ms`` was
    "0.0 min ahead" of a 5-minute mean).
    """
    if horizon >= MIN_FIT_STEP - 1e-9:
        return None
    least = format_duration(timedelta(seconds=MIN_FIT_STEP))
    return (
        f"--horizon {text} is less than one forecast step ({least}, the finest fit step): "
        f"give at least {least}"
    )


def _unknown_model(name: str) -> str:
    return str(
        UnknownModel(f"unknown forecast model {name!r}; known models: {', '.join(model_names())}")
    )


# -- the accuracy report -----------------------------------------------------------------------


def _run_accuracy(args: argparse.Namespace, horizon: float) -> int:
    models = list(args.models) if args.models else default_models()
    unknown = [name for name in models if name not in model_names()]
    if unknown:
        return _fail(_unknown_model(unknown[0]))
    # The report is keyed by file stem: two files with one stem would share a row.
    paths: dict[str, str] = {}
    for path in args.traces:
        stem = Path(path).stem
        if stem in paths:
            return _fail(f"{paths[stem]} and {path} are both reported as {stem!r}; rename one")
        paths[stem] = path
    # Read every trace first: a malformed file fails fast, before minutes of evaluation.
    series: dict[str, LoadSeries] = {}
    try:
        for stem, path in paths.items():
            series[stem] = load_trace(path)
    except ForecastError as exc:
        return _fail(str(exc))
    try:
        results = _evaluate(series, models, horizon, args.quantile, args.jobs, quiet=args.json)
    except TraceEvaluationFailed as exc:
        return _fail(f"{paths.get(exc.trace, exc.trace)}: {exc.detail}")
    except ForecastError as exc:
        return _fail(str(exc))
    except BrokenProcessPool:
        _fail(
            "an evaluation's worker process died (out of memory, or killed); --jobs 1 "
            "evaluates one model at a time"
        )
        return 1
    report = forecast_report(results, horizon=horizon, quantile=args.quantile)
    if args.json:
        json.dump(_json_finite(report), sys.stdout, allow_nan=False)
        sys.stdout.write("\n")
    else:
        _print_table(report)
    if args.plot:
        first = next(iter(series))
        return _draw(
            lambda path: _plot(series[first], first, models, horizon, args.quantile, path),
            args.plot,
        )
    return 0


def _draw(plot: Callable[[Path], None], text: str) -> int:
    """Draw after the report is out: a plot that fails costs the plot, not the report."""
    try:
        plot(Path(text))
    except ForecastError as exc:
        return _fail(str(exc))
    except (OSError, ValueError) as exc:
        return _fail(f"--plot {text}: cannot draw the plot: {exc}")
    return 0


def _evaluate(
    series: dict[str, LoadSeries],
    models: list[str],
    horizon: float,
    quantile: float,
    jobs: int | None,
    *,
    quiet: bool,
) -> dict[str, dict[str, dict[str, float]]]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    console = rich_console(stderr=True)
    if not console.is_terminal:
        # A bar draws nothing in a log: plain lines show that a long run is alive.
        lines = _ProgressLines(list(series), models)
        return evaluate_traces(
            series, models=models, horizon=horizon, quantile=quantile, jobs=jobs, progress=lines
        )
    columns = (
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True, disable=quiet) as bar:
        tasks: dict[tuple[str, str], Any] = {}

        def progress(trace: str, model: str, done: int, total: int) -> None:
            key = (trace, model)
            if key not in tasks:
                tasks[key] = bar.add_task(f"{trace} {model}", total=total)
            bar.update(tasks[key], completed=done)

        return evaluate_traces(
            series,
            models=models,
            horizon=horizon,
            quantile=quantile,
            jobs=jobs,
            progress=progress,
        )


class _ProgressLines:
    """Progress as plain lines: one when a trace is done, one every ``every`` seconds between."""

    def __init__(
        self,
        traces: Sequence[str],
        models: Sequence[str],
        *,
        every: float = PROGRESS_EVERY,
        clock: Callable[[], float] = time.monotonic,
        out: TextIO | None = None,
    ) -> None:
        self.models = len(models)
        self.evaluations = len(traces) * len(models)
        self.every = every
        self.clock = clock
        self.out = out if out is not None else sys.stderr
        self.started = self.last = clock()
        self.finished: set[tuple[str, str]] = set()

    def __call__(self, trace: str, model: str, done: int, total: int) -> None:
        now = self.clock()
        elapsed = f"{now - self.started:.0f}s elapsed"
        if done >= total and (trace, model) not in self.finished:
            self.finished.add((trace, model))
            if sum(1 for name, _ in self.finished if name == trace) == self.models:
                self._say(
                    f"{trace}: evaluated ({len(self.finished)}/{self.evaluations} "
                    f"trace-model evaluations done, {elapsed})"
                )
                self.last = now
                return
        if now - self.last >= self.every:
            self._say(
                f"{len(self.finished)}/{self.evaluations} trace-model evaluations done; "
                f"{trace} {model} at origin {done}/{total}, {elapsed}"
            )
            self.last = now

    def _say(self, text: str) -> None:
        print(f"tidal forecast: {text}", file=self.out, flush=True)


def _print_table(report: dict[str, Any]) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(
        title=f"Rolling-origin accuracy, horizon {report['horizon_minutes']} min, "
        f"quantile {report['quantile']}"
    )
    for column in ("trace", "model", "MASE", "coverage", "pinball", "fit s"):
        table.add_column(
            column,
            justify="left" if column in ("trace", "model") else "right",
            overflow="fold" if column == "trace" else "ellipsis",  # a name wraps whole
        )
    for trace, entry in report["traces"].items():
        for model, m in entry["models"].items():
            table.add_row(
                escape(trace),
                model,
                f"{m['mase']:.3f}",
                f"{m['coverage']:.3f}",
                f"{m['pinball']:.4g}",
                f"{m['fit_seconds']:.3f}",
            )
        table.add_section()
    rich_console().print(table)


def _plot(
    series: LoadSeries, name: str, models: list[str], horizon: float, quantile: float, path: Path
) -> None:
    """Actual load against the forecasts and their upper band over the last three days scored."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    evaluated = evaluation_series(series)
    model = "auto" if "auto" in models else models[0]
    backtest = backtest_model(evaluated, model, horizon=horizon, quantile=quantile)
    shown_from = backtest.origins[-1] - 3 * 86400
    fig, ax = plt.subplots(figsize=(12, 4.5))
    times = evaluated.times()
    visible = times >= shown_from
    hours = (times[visible] - shown_from) / 3600
    ax.plot(hours, evaluated.values[visible], color="black", lw=1, label="actual")
    lead = np.arange(1, backtest.point.shape[1] + 1) * backtest.step
    labelled = False
    for origin, point, upper in zip(backtest.origins, backtest.point, backtest.upper, strict=True):
        if origin < shown_from or not np.isfinite(point).all():
            continue
        x = np.concatenate([[0.0], lead]) / 3600 + (origin - shown_from) / 3600
        start = evaluated.values[evaluated.index_of(origin)]
        ax.plot(
            x,
            np.concatenate([[start], point]),
            color="tab:blue",
            lw=1.2,
            label=None if labelled else f"{model} forecast",
        )
        ax.fill_between(
            x[1:],
            point,
            upper,
            color="tab:orange",
            alpha=0.3,
            label=None if labelled else f"band to q={quantile}",
        )
        labelled = True
    ax.set_xlabel("hours")
    ax.set_ylabel("load")
    ax.set_title(f"{name}: actual vs {model} forecasts (horizon {horizon / 60:g} min)")
    ax.legend(loc="upper left")
    fig.tight_layout()
    _save(fig, path)


def _save(fig: Any, path: Path) -> None:
    """Write ``fig`` to ``path`` and close it; a failed write names the file."""
    import matplotlib.pyplot as plt

    from controller.plotting import save_png

    try:
        save_png(fig, path)
    except OSError as exc:
        raise ForecastError(f"{path}: cannot write the plot: {exc.strerror}") from exc
    finally:
        plt.close(fig)


# -- one forecast shown ------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ShownForecast:
    """One fit and its forecast over the horizon, with the upper quantile's path."""

    model: str
    fitted: FittedModel
    forecast: Forecast
    quantile: float
    upper: FloatArray
    horizon: float
    last_time: float
    last_load: float


def show_forecast(
    history: LoadSeries, *, model: str, horizon: float, quantile: float
) -> ShownForecast:
    """Fit ``model`` once on ``history`` as the planner does, and forecast ``horizon`` past it.

    The registry's model at ``max(5m, history.step)``, calibrated at least an hour ahead
    (:func:`controller.planner.forecaster_for`). Raises :class:`ForecastError` when the history
    is too short, unusable, or on a step that does not divide five minutes.
    """
    fit_step = fit_step_for(history.step, fit_step=MIN_FIT_STEP)
    # The planner's floor of an hour: auto judges its candidates over the leads the
    # operator's fit would, not over a shorter --horizon alone.
    forecaster = create(model, fit_step=fit_step, max_horizon=max(horizon, PLANNER_HORIZON))
    fitted = forecaster.fit(history)
    forecast = fitted.forecast(history, horizon=horizon)
    last = int(np.flatnonzero(np.isfinite(history.values))[-1])
    return ShownForecast(
        model=model,
        fitted=fitted,
        forecast=forecast,
        quantile=quantile,
        upper=forecast.upper(quantile),
        horizon=horizon,
        last_time=history.start + last * history.step,
        last_load=float(history.values[last]),
    )


def shown_report(shown: ShownForecast, source: dict[str, str]) -> dict[str, Any]:
    """The JSON object of a shown forecast (its keys are in the module's docstring)."""
    forecast = shown.forecast
    times = forecast.times()
    peak = int(np.argmax(shown.upper))
    horizon = shown.horizon
    return {
        "source": source,
        "model": shown.model,
        "chosen_model": shown.fitted.name,
        "fitted_until": format_timestamp(shown.fitted.fitted_until),
        "fit_seconds": round(shown.fitted.fit_seconds, 3),
        "last_observed": {
            "time": format_timestamp(shown.last_time),
            "load": _load(shown.last_load),
        },
        "step_seconds": forecast.step,
        "horizon_minutes": round(horizon / 60.0, 3) if horizon % 60 else int(horizon // 60),
        "quantile": shown.quantile,
        "forecast": [
            {"time": format_timestamp(when), "point": _load(point), "upper": _load(upper)}
            for when, point, upper in zip(
                times.tolist(), forecast.point.tolist(), shown.upper.tolist(), strict=True
            )
        ],
        "peak_upper": {
            "time": format_timestamp(float(times[peak])),
            "load": _load(shown.upper[peak]),
        },
    }


def _load(value: float) -> float:
    return round(float(value), 4)


def _run_show(args: argparse.Namespace, *, model: str, horizon: float) -> int:
    path = args.traces[0]
    try:
        series = load_trace(path)
    except ForecastError as exc:
        return _fail(str(exc))
    at = series.end
    if args.at is not None:
        try:
            at = timestamp_flag("--at", args.at, series)
        except ValueError as exc:
            return _fail(str(exc))
        if not series.start <= at <= series.end:
            return _fail(
                f"--at {args.at}: {path} runs from {format_timestamp(series.start)} to "
                f"{format_timestamp(series.end)}"
            )
    history = series.until(at)
    try:
        shown = show_forecast(history, model=model, horizon=horizon, quantile=args.quantile)
    except ForecastError as exc:
        return _fail(f"{path}: {exc}")
    report = shown_report(shown, {"trace": str(path)})
    _print_shown(report, as_json=args.json)
    if args.plot:
        # What followed starts at the first sample after the history's last, wherever in
        # the step --at falls.
        after = series.since(history.end + series.step / 2).until(shown.forecast.end)
        title = f"{Path(path).name} at {format_timestamp(at)}"
        return _draw(
            lambda out: _plot_shown(shown, history, out, title=title, actual=after), args.plot
        )
    return 0


def _run_live(args: argparse.Namespace, *, model: str, horizon: float) -> int:
    from controller.operator.prometheus_source import MetricsUnavailable, shown_url
    from controller.operator.sources import live_load_source

    texts = {
        "--step": DEFAULT_STEP if args.step is None else args.step,
        "--history": DEFAULT_HISTORY if args.history is None else args.history,
    }
    durations: dict[str, float] = {}
    for flag, text in texts.items():
        try:
            durations[flag] = parse_duration(text).total_seconds()
        except ValueError as exc:
            return _fail(f"{flag}: {exc}")
        if not durations[flag] > 0:
            return _fail(f"{flag} must be positive")
    step, span = durations["--step"], durations["--history"]
    problem = _history_problem(step, span, step_text=texts["--step"], span_text=texts["--history"])
    if problem is not None:
        return _fail(problem)
    url, query = args.prometheus_url, args.query
    named = shown_url(url)  # its password, if any, as ***
    where = f"{named}, query {query!r}"
    now = time.time()  # the edge reads the clock; the fit and the forecast never do
    try:
        reader = live_load_source(url)
    except ValueError as exc:
        return _fail(str(exc))
    try:
        with reader as source:
            history = source.read_history(query, start=now - span, end=now, step=step)
    except MetricsUnavailable as exc:
        message = str(exc)
        return _fail(message if named.rstrip("/") in message else f"{named}: {message}")
    try:
        shown = show_forecast(history, model=model, horizon=horizon, quantile=args.quantile)
    except ForecastError as exc:
        return _fail(f"{where}: {exc}")
    report = shown_report(shown, {"prometheus_url": named, "query": query})
    _print_shown(report, as_json=args.json)
    if args.plot:
        return _draw(lambda out: _plot_shown(shown, history, out, title=where), args.plot)
    return 0


def _history_problem(step: float, span: float, *, step_text: str, span_text: str) -> str | None:
    """Why ``--step`` and ``--history`` are not a history the operator would read, or None.

    The custom resource's rules for ``load.step`` and ``load.history`` (the validator of
    :class:`controller.spec.LoadSpec`, and its bounds named here): the history is read as the
    operator reads it, so that a ``--step 1ms`` asks for no 2 TiB of samples nor a hundred
    thousand queries before the first one is sent.
    """
    if step < MIN_STEP.total_seconds():
        least = format_duration(MIN_STEP)
        return f"--step {step_text} is finer than {least}, the finest load.step the operator reads"
    if span < 2 * step:
        return f"--history {span_text} must cover at least two --step"
    try:
        fit_step_for(step, fit_step=MIN_FIT_STEP)
    except ForecastError as exc:
        return f"--step {step_text}: {exc}"
    samples = span / step
    if samples > MAX_HISTORY_POINTS:
        return (
            f"--history {span_text} at --step {step_text} is {samples:,.0f} samples, at most "
            f"{MAX_HISTORY_POINTS:,} (as load.history / load.step): a longer --step or a "
            "shorter --history"
        )
    try:  # whatever else the resource refuses, so that the two never part
        LoadSpec(
            query="tidal forecast",
            per_replica=1.0,
            step=timedelta(seconds=step),
            history=timedelta(seconds=span),
        )
    except ValidationError as exc:
        reason = format_validation_error(exc, prefix="load").removeprefix("load: ")
        return f"--step {step_text}, --history {span_text}: {reason}"
    return None


def _json_finite(value: Any) -> Any:
    """``value`` with every float that is not finite made null: ``NaN`` and ``Infinity`` are
    not JSON, and a reader's parser refuses them (a MASE over loads near 1e307 overflows)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _json_finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_finite(item) for item in value]
    return value


def _print_shown(report: dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        json.dump(_json_finite(report), sys.stdout, allow_nan=False)
        sys.stdout.write("\n")
        return
    from rich.table import Table

    console = rich_console()
    source = report["source"]
    where = source.get("trace") or f"{source['prometheus_url']}, query {source['query']!r}"
    model = report["model"]
    if report["chosen_model"] != model:
        model = f"{model} (chose {report['chosen_model']})"
    last, peak, q = report["last_observed"], report["peak_upper"], report["quantile"]
    for line in (
        where,
        f"model {model}, fitted until {report['fitted_until']} in {report['fit_seconds']:.2f}s",
        f"last observed load {last['load']:g} at {last['time']}",
    ):
        console.print(line, markup=False, highlight=False)
    table = Table(
        title=f"Forecast, {report['horizon_minutes']} min ahead in "
        f"{report['step_seconds'] / 60:g}-minute means"
    )
    for column in ("time", "point", f"upper q={q}"):
        table.add_column(column, justify="left" if column == "time" else "right")
    for row in report["forecast"]:
        table.add_row(row["time"], f"{row['point']:.2f}", f"{row['upper']:.2f}")
    console.print(table)
    console.print(
        f"peak of the upper {q} quantile: {peak['load']:.2f} at {peak['time']}",
        markup=False,
        highlight=False,
    )


def _plot_shown(
    shown: ShownForecast,
    history: LoadSeries,
    path: Path,
    *,
    title: str,
    actual: LoadSeries | None = None,
) -> None:
    """The history's tail, the point forecast and the band up to the upper quantile."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def dates(times: FloatArray) -> np.ndarray:
        return np.asarray(np.round(times), dtype="datetime64[s]")

    forecast = shown.forecast
    tail = history.since(history.end - max(PLOT_TAIL, 8 * shown.horizon))
    fig, ax = plt.subplots(figsize=(12, 4.5))
    ax.plot(dates(tail.times()), tail.values, color="black", lw=1, label="load")
    if actual is not None and len(actual):
        ax.plot(
            dates(actual.times()), actual.values, color="grey", lw=1, ls="--", label="what followed"
        )
    times = dates(forecast.times())
    ax.plot(times, forecast.point, color="tab:blue", lw=1.5, label=f"{shown.fitted.name} forecast")
    ax.fill_between(
        times,
        forecast.point,
        shown.upper,
        color="tab:orange",
        alpha=0.35,
        label=f"band to q={shown.quantile}",
    )
    peak = int(np.argmax(shown.upper))
    ax.plot([times[peak]], [shown.upper[peak]], "v", color="tab:red", label="peak of the band")
    ax.set_ylabel("load")
    ax.set_title(f"{title}: {shown.fitted.name}, {shown.horizon / 60:g} min ahead")
    ax.legend(loc="upper left")
    fig.autofmt_xdate()
    fig.tight_layout()
    _save(fig, path)
