"""``tidal forecast TRACE.csv [...]``: rolling-origin accuracy of every model on real traces.

``--json`` prints the JSON object of issue 2 on standard output and nothing else there;
without it a table is printed, with a progress bar on standard error while the evaluation runs.
``--plot FILE.png`` draws, for the first trace, the actual load against the forecasts and their
upper band over the evaluated quarter. Bad input (a missing file, a malformed CSV, a bad
duration) is one line on standard error naming the file and line, and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from controller.durations import parse_duration
from forecasts.errors import ForecastError, UnknownModel
from forecasts.evaluation import (
    backtest_model,
    default_models,
    evaluate_traces,
    evaluation_series,
    forecast_report,
)
from forecasts.registry import model_names
from forecasts.series import LoadSeries, load_trace

__all__ = ["add_arguments", "run"]

EXIT_USAGE = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``tidal forecast``."""
    parser.add_argument("traces", nargs="+", metavar="TRACE.csv", help="timestamp,load CSV files")
    parser.add_argument("--json", action="store_true", help="print the JSON report on stdout")
    parser.add_argument("--horizon", default="30m", help="forecast horizon (default 30m)")
    parser.add_argument(
        "--quantile", type=float, default=0.95, help="upper quantile scored (default 0.95)"
    )
    parser.add_argument(
        "--models",
        nargs="+",
        metavar="MODEL",
        help=f"models to evaluate (default all: {', '.join(model_names())})",
    )
    parser.add_argument("--plot", metavar="FILE.png", help="plot the first trace's forecasts")
    parser.add_argument(
        "--jobs", type=int, default=None, help="worker processes (default: one per CPU)"
    )


def _fail(message: str) -> int:
    print(f"tidal forecast: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def run(args: argparse.Namespace) -> int:
    """Evaluate, print and plot; 0 on success, 2 on bad input."""
    try:
        horizon = parse_duration(args.horizon).total_seconds()
    except ValueError as exc:
        return _fail(f"--horizon: {exc}")
    if horizon <= 0:
        return _fail("--horizon must be positive")
    if not 0.5 <= args.quantile < 1.0:
        return _fail(f"--quantile must be in [0.5, 1), got {args.quantile}")
    models = list(args.models) if args.models else default_models()
    unknown = [name for name in models if name not in model_names()]
    if unknown:
        return _fail(
            str(
                UnknownModel(
                    f"unknown forecast model {unknown[0]!r}; known models: "
                    f"{', '.join(model_names())}"
                )
            )
        )
    # Read every trace first: a malformed file fails fast, before minutes of evaluation.
    series: dict[str, LoadSeries] = {}
    try:
        for path in args.traces:
            series[Path(path).stem] = load_trace(path)
    except ForecastError as exc:
        return _fail(str(exc))
    try:
        results = _evaluate(series, models, horizon, args.quantile, args.jobs, quiet=args.json)
        report = forecast_report(results, horizon=horizon, quantile=args.quantile)
        if args.plot:
            first = next(iter(series))
            _plot(series[first], first, models, horizon, args.quantile, Path(args.plot))
    except ForecastError as exc:
        return _fail(str(exc))
    if args.json:
        json.dump(report, sys.stdout)
        sys.stdout.write("\n")
    else:
        _print_table(report)
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
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    console = Console(stderr=True)
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


def _print_table(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"Rolling-origin accuracy, horizon {report['horizon_minutes']} min, "
        f"quantile {report['quantile']}"
    )
    for column in ("trace", "model", "MASE", "coverage", "pinball", "fit s"):
        table.add_column(column, justify="left" if column in ("trace", "model") else "right")
    for trace, entry in report["traces"].items():
        for model, m in entry["models"].items():
            table.add_row(
                trace,
                model,
                f"{m['mase']:.3f}",
                f"{m['coverage']:.3f}",
                f"{m['pinball']:.4g}",
                f"{m['fit_seconds']:.3f}",
            )
        table.add_section()
    Console().print(table)


def _plot(
    series: LoadSeries, name: str, models: list[str], horizon: float, quantile: float, path: Path
) -> None:
    """Actual load against the forecasts and their upper band over the last three days scored."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

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
    try:
        fig.savefig(path, dpi=110)
    except OSError as exc:
        raise ForecastError(f"{path}: cannot write the plot: {exc.strerror}") from exc
    finally:
        plt.close(fig)
