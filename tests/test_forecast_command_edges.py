"""The edges of ``tidal forecast``: progress lines worked out tick by tick, the bar on a
terminal, the table's and the shown forecast's text, the plots' content, where --at and the
live flags stop, and which errors name what. Small synthetic traces keep it fast."""

from __future__ import annotations

import argparse
import io
import json
import math
import re
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError
from rich.console import Console

from controller import forecast_command
from controller.durations import parse_duration
from controller.spec import MAX_HISTORY_POINTS, LoadSpec
from forecasts.errors import ForecastError
from forecasts.evaluation import TraceEvaluationFailed
from forecasts.series import LoadSeries
from tests.forecast_series import local_clock_trace, seasonal
from tests.support.prometheus_server import free_port

DAY = 86400.0


def _run(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    forecast_command.add_arguments(parser)
    return forecast_command.run(parser.parse_args(list(argv)))


def _iso(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _trace(path: Path, history: LoadSeries, *, blank_after: int | None = None) -> Path:
    """``history`` as a timestamp,load file; rows from ``blank_after`` on have no load."""
    rows = []
    for i, (when, load) in enumerate(zip(history.times(), history.values, strict=True)):
        cell = "" if blank_after is not None and i >= blank_after else f"{load:.3f}"
        rows.append(f"{_iso(when)},{cell}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("timestamp,load\n" + "\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="module")
def history() -> LoadSeries:
    """Four days of a daily cycle at five minutes: enough for every model, quick to fit."""
    return seasonal(days=4)


@pytest.fixture(scope="module")
def trace(tmp_path_factory: pytest.TempPathFactory, history: LoadSeries) -> Path:
    return _trace(tmp_path_factory.mktemp("edges") / "cycle.csv", history)


def _one_line_error(captured: pytest.CaptureResult[str], *expected: str) -> str:
    assert captured.out == ""
    assert captured.err.count("\n") == 1, captured.err
    assert captured.err.startswith("tidal forecast: error: ")
    for text in expected:
        assert text in captured.err
    return captured.err


# -- progress lines ------------------------------------------------------------------------


class _Clock:
    """A clock the test sets by hand."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _lines(
    traces: list[str], models: list[str], *, start: float = 0.0
) -> tuple[forecast_command._ProgressLines, _Clock, io.StringIO]:
    clock, out = _Clock(start), io.StringIO()
    lines = forecast_command._ProgressLines(traces, models, every=30.0, clock=clock, out=out)
    return lines, clock, out


def test_a_trace_is_evaluated_once_every_model_is_done() -> None:
    """One model of two done says nothing yet; the second says the trace is evaluated, with
    the count of evaluations over every trace and the seconds since the start."""
    lines, clock, out = _lines(["a", "b"], ["m1", "m2"], start=100.0)
    clock.now = 110.0
    lines("a", "m1", 5, 5)
    assert out.getvalue() == ""
    clock.now = 125.0
    lines("b", "m1", 5, 5)
    assert out.getvalue() == ""
    clock.now = 127.0
    lines("a", "m2", 5, 5)
    assert out.getvalue() == (
        "tidal forecast: a: evaluated (3/4 trace-model evaluations done, 27s elapsed)\n"
    )


def test_a_model_reported_done_twice_counts_once() -> None:
    """A second 'done' for one trace and model neither counts again nor repeats the line."""
    lines, clock, out = _lines(["a", "b"], ["m"])
    lines("a", "m", 3, 3)
    clock.now = 1.0
    lines("a", "m", 3, 3)
    lines("b", "m", 2, 3)
    assert out.getvalue().count("\n") == 1
    assert lines.finished == {("a", "m")}


def test_an_origin_short_of_the_total_is_not_done() -> None:
    """done < total is progress, not a finished evaluation."""
    lines, _, out = _lines(["a"], ["m"])
    lines("a", "m", 2, 3)
    assert out.getvalue() == "" and lines.finished == set()


@pytest.mark.parametrize(
    ("ticks", "expected"),
    [
        pytest.param([29.9], 0, id="just-short"),
        pytest.param([30.0], 1, id="exactly-every"),
        pytest.param([30.0, 59.9], 1, id="restarts-at-the-line"),
        pytest.param([30.0, 60.0], 2, id="two-periods"),
    ],
)
def test_a_periodic_line_every_period_counted_from_the_last(
    ticks: list[float], expected: int
) -> None:
    """A line when ``every`` seconds have passed since the last line, not before."""
    lines, clock, out = _lines(["a"], ["m"])
    for tick in ticks:
        clock.now = tick
        lines("a", "m", 1, 10)
    assert out.getvalue().count("\n") == expected


def test_a_finished_trace_restarts_the_period() -> None:
    """The line for a finished trace counts as the last line: the next periodic one is a
    whole period after it, not after the start."""
    lines, clock, out = _lines(["a", "b"], ["m"])
    clock.now = 20.0
    lines("a", "m", 4, 4)
    clock.now = 45.0
    lines("b", "m", 1, 4)
    assert out.getvalue().count("\n") == 1
    clock.now = 50.0
    lines("b", "m", 2, 4)
    assert out.getvalue().splitlines()[-1] == (
        "tidal forecast: 1/2 trace-model evaluations done; b m at origin 2/4, 50s elapsed"
    )


def _terminal(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """Standard error as a terminal, its output kept."""
    screen = io.StringIO()
    real = forecast_command.rich_console

    def console(**options: Any) -> Console:
        if options.get("stderr"):
            return Console(file=screen, force_terminal=True, color_system=None, width=120)
        return real(**options)

    monkeypatch.setattr(forecast_command, "rich_console", console)
    return screen


@pytest.mark.parametrize("as_json", [False, True], ids=["table", "json"])
def test_a_terminal_gets_a_bar_unless_json(
    trace: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    as_json: bool,
) -> None:
    """On a terminal a bar per trace and model counts the origins (no plain lines); --json
    draws none, and the report is printed either way."""
    screen = _terminal(monkeypatch)
    argv = [str(trace), "--models", "seasonal-naive", "--jobs", "1"]
    assert _run(*argv, *(["--json"] if as_json else [])) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    if as_json:
        assert screen.getvalue() == ""
        assert list(json.loads(captured.out)["traces"]) == ["cycle"]
    else:
        drawn = screen.getvalue()
        assert "cycle seasonal-naive" in drawn
        done = re.findall(r" (\d+)/(\d+) ", drawn)
        assert done and done[-1][0] == done[-1][1] != "0"
        assert "cycle" in captured.out


# -- the accuracy report's text ------------------------------------------------------------


def test_the_table_has_the_report_s_numbers(
    trace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The table's title is the horizon and the quantile; each row is the trace and the model
    (left-aligned), then the JSON report's numbers (right-aligned) to three places, the
    pinball loss to four figures."""
    argv = [str(trace), "--models", "seasonal-naive", "--jobs", "1", "--horizon", "1h"]
    argv += ["--quantile", "0.9"]
    assert _run(*argv, "--json") == 0
    metrics = json.loads(capsys.readouterr().out)["traces"]["cycle"]["models"]["seasonal-naive"]
    assert _run(*argv) == 0
    out = capsys.readouterr().out
    assert "Rolling-origin accuracy, horizon 60 min, quantile 0.9" in out
    header = next(line for line in out.splitlines() if "MASE" in line)
    assert [cell.strip() for cell in header.split("┃")[1:-1]] == [
        "trace",
        "model",
        "MASE",
        "coverage",
        "pinball",
        "fit s",
    ]
    row = next(line for line in out.splitlines() if "seasonal-naive" in line)
    cells = row.split("│")[1:-1]
    assert cells[0] == " cycle "
    assert header.split("┃")[2].startswith(" model  "), "left-aligned"
    assert cells[1].strip() == "seasonal-naive"
    expected = [f"{metrics['mase']:.3f}", f"{metrics['coverage']:.3f}", f"{metrics['pinball']:.4g}"]
    assert [cell.strip() for cell in cells[2:5]] == expected
    assert cells[3] == f"{expected[1]:>{len(cells[3]) - 1}} ", "right-aligned"
    assert len(cells[5].strip().split(".")[1]) == 3


def test_each_trace_is_a_section_of_the_table(
    trace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two traces: a rule between their rows."""
    other = tmp_path / "other.csv"
    other.write_bytes(trace.read_bytes())
    assert _run(str(trace), str(other), "--models", "seasonal-naive", "--jobs", "1") == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [i for i, line in enumerate(lines) if "seasonal-naive" in line]
    assert [lines[i].split("│")[1].strip() for i in rows] == ["cycle", "other"]
    assert rows[1] == rows[0] + 2 and lines[rows[0] + 1].startswith("├")


def test_on_80_columns_a_long_trace_name_wraps_whole(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A terminal of 80 columns: two traces whose long names differ only at the end are both
    there whole, over two lines each, and no figure is cut."""
    monkeypatch.setenv("COLUMNS", "80")
    metrics = {"mase": 0.812, "coverage": 0.951, "pinball": 12.34, "fit_seconds": 1.234}
    names = ("wikipedia-en-hourly-from-the-dumps-a", "wikipedia-en-hourly-from-the-dumps-b")
    report = {
        "horizon_minutes": 30,
        "quantile": 0.95,
        "traces": {name: {"models": {"seasonal-naive": metrics}} for name in names},
    }
    forecast_command._print_table(report)
    lines = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "…" not in "\n".join(lines)
    cells = [line.split("│")[1].strip() for line in lines if line.startswith("│")]
    assert "".join(cells) == "".join(names)
    assert sum("0.812" in line for line in lines) == 2


def test_the_json_report_is_one_line(trace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--json prints one line: the object and a newline (for tools that read lines)."""
    assert _run(str(trace), "--json", "--models", "seasonal-naive", "--jobs", "1") == 0
    out = capsys.readouterr().out
    assert out.endswith("}\n") and out.count("\n") == 1


@pytest.mark.parametrize(
    ("horizon", "expected"),
    [
        pytest.param("2h", "120", id="whole-minutes"),
        pytest.param("7m30s", "7.5", id="half-a-minute"),
        pytest.param("301s", "5.017", id="a-step-and-a-second"),
    ],
)
def test_the_horizon_in_minutes_is_whole_when_it_can_be(
    trace: Path, capsys: pytest.CaptureFixture[str], horizon: str, expected: str
) -> None:
    """horizon_minutes is an integer for whole minutes and a decimal (to three places)
    otherwise, in the JSON text too (120, not 120.0); the object is one line. A horizon of a
    step or more is taken, whole steps or not (the steps it reaches into are forecast)."""
    argv = [str(trace), "--show", "--json", "--model", "seasonal-naive", "--horizon", horizon]
    assert _run(*argv) == 0
    out = capsys.readouterr().out
    assert f'"horizon_minutes": {expected},' in out
    assert out.endswith("}\n") and out.count("\n") == 1


def test_the_shown_report_rounds_seconds_to_3_places_and_loads_to_4(
    history: LoadSeries,
) -> None:
    """fit_seconds to the millisecond; each point and upper value to four places."""
    shown = forecast_command.show_forecast(
        history, model="seasonal-naive", horizon=1800.0, quantile=0.95
    )
    shown.fitted.fit_seconds = 1.23456
    report = forecast_command.shown_report(shown, {"trace": "t.csv"})
    assert report["fit_seconds"] == 1.235
    rows = report["forecast"]
    assert [row["point"] for row in rows] == [round(float(v), 4) for v in shown.forecast.point]
    assert [row["upper"] for row in rows] == [round(float(v), 4) for v in shown.upper]
    assert any(round(row["upper"], 3) != row["upper"] for row in rows)


def test_of_two_unknown_models_the_first_is_named(
    trace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--models with two unknown names names the first, and lists the known ones."""
    assert _run(str(trace), "--models", "prophet", "seasonal-naive", "arima") == 2
    err = _one_line_error(capsys.readouterr(), "'prophet'", "known models: ")
    assert "'arima'" not in err


# -- errors of the report ------------------------------------------------------------------


def _evaluate_raises(monkeypatch: pytest.MonkeyPatch, error: BaseException) -> None:
    def evaluate(*_args: object, **_kwargs: object) -> None:
        raise error

    monkeypatch.setattr(forecast_command, "evaluate_traces", evaluate)


def test_a_failed_trace_is_named_by_its_file(
    trace: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Evaluation names a trace by its stem; the error names the file given."""
    _evaluate_raises(monkeypatch, TraceEvaluationFailed("cycle", "the fit diverged"))
    assert _run(str(trace), "--json", "--jobs", "1") == 2
    err = _one_line_error(capsys.readouterr())
    assert err == f"tidal forecast: error: {trace}: the fit diverged\n"


def test_another_forecast_error_of_the_evaluation_is_one_line(
    trace: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ForecastError that names no trace is its own message."""
    _evaluate_raises(monkeypatch, ForecastError("no model can be scored"))
    assert _run(str(trace), "--json", "--jobs", "1") == 2
    assert capsys.readouterr().err == "tidal forecast: error: no model can be scored\n"


def test_a_worker_that_died_is_exit_1_and_says_so(
    trace: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker process killed (out of memory) is not bad input: exit 1, one line with the
    way out (--jobs 1), nothing on standard output."""
    _evaluate_raises(monkeypatch, BrokenProcessPool("gone"))
    assert _run(str(trace), "--json") == 1
    err = _one_line_error(capsys.readouterr(), "worker process died", "--jobs 1")
    assert "Traceback" not in err


#: Live mode on a port nothing listens on: the flags are refused before it is asked.
LIVE = ["--prometheus-url", "http://127.0.0.1:9", "--query", "up"]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        pytest.param(["--horizon", "0s"], "--horizon must be positive", id="horizon-zero"),
        pytest.param(["--prometheus-url", "", "--query", "up"], "neither empty", id="empty-url"),
        pytest.param(
            [*LIVE[:3], ""],
            "neither empty",
            id="empty-query",
        ),
        pytest.param(
            LIVE[:2], "--prometheus-url and --query go together, neither empty", id="url-alone"
        ),
        pytest.param(["{trace}", *LIVE[2:]], "not both", id="trace-and-query"),
        pytest.param(
            [*LIVE, "--models", "auto"],
            "--models applies only",
            id="models-live",
        ),
        pytest.param(
            [*LIVE, "--at", "2024-01-01"],
            "--at applies only to --show",
            id="at-live",
        ),
        pytest.param(
            [*LIVE, "--history", "0s"],
            "--history must be positive",
            id="history-zero",
        ),
        pytest.param(
            [*LIVE, "--step", "0s"],
            "--step must be positive",
            id="step-zero",
        ),
        pytest.param(
            [*LIVE, "--history", "soon"],
            "--history: ",
            id="history-not-a-duration",
        ),
        pytest.param(
            [*LIVE, "--model", "prophet"],
            "unknown forecast model 'prophet'",
            id="live-model",
        ),
        pytest.param(
            [*LIVE, "--step", "1m", "--history", "119s"],
            "--history 119s must cover at least two --step",
            id="history-under-two-steps",
        ),
        pytest.param(
            [*LIVE, "--step", "1ms", "--history", "3650d"],
            "--step 1ms is finer than 1s, the finest load.step",
            id="step-under-a-second",  # 2.29 TiB asked for before any query
        ),
        pytest.param(
            [*LIVE, "--step", "999ms"],
            "--step 999ms is finer than 1s",
            id="step-a-millisecond-short",
        ),
        pytest.param(
            [*LIVE, "--quantile", "nan"],
            "--quantile must be a number in (0.5, 1), got nan",
            id="quantile-nan",
        ),
        pytest.param(
            [*LIVE, "--step", "1s", "--history", "500001s"],
            "--history 500001s at --step 1s is 500,001 samples, at most 500,000",
            id="one-sample-too-many",
        ),
        pytest.param(
            [*LIVE, "--step", "1s", "--history", "14d"],
            "--history 14d at --step 1s is 1,209,600 samples, at most 500,000",
            id="too-many-samples",  # 110,000 queries, as load.history / load.step refuses
        ),
        pytest.param(
            [*LIVE, "--step", "1m", "--history", "3650d"],
            "--history 3650d at --step 1m is 5,256,000 samples",
            id="ten-years-of-minutes",
        ),
        pytest.param(
            [*LIVE, "--step", "7s"],
            "--step 7s: a 7s step does not divide the 300s fit step",
            id="step-not-dividing-the-fit-step",
        ),
    ],
)
def test_flags_refused_before_any_read(
    trace: Path, capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    """Each is one line naming the flag, exit 2; nothing listens on port 9 and nothing is read."""
    assert _run(*[arg.format(trace=trace) for arg in argv]) == 2
    _one_line_error(capsys.readouterr(), expected)


@pytest.mark.parametrize(
    ("slash", "step", "span"),
    [
        pytest.param("", "1m", "2m", id="minutes"),
        pytest.param("/", "1s", "2s", id="seconds-trailing-slash"),
    ],
)
def test_two_steps_of_history_go_on_to_the_read(
    capsys: pytest.CaptureFixture[str], slash: str, step: str, span: str
) -> None:
    """--history of exactly two --step (a second is a step) is enough to ask Prometheus: the
    error is the read's, naming the URL once (a trailing slash is the same URL)."""
    url = f"http://127.0.0.1:{free_port()}"
    argv = ["--prometheus-url", url + slash, "--query", "up", "--step", step, "--history", span]
    assert _run(*argv) == 2
    err = _one_line_error(capsys.readouterr(), "unreachable", "'up'")
    assert err.startswith(f"tidal forecast: error: Prometheus at {url} ")
    assert err.count(url) == 1


def test_the_most_samples_load_history_takes_go_on_to_the_read(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--history of exactly MAX_HISTORY_POINTS --step is what load.history takes: asked for."""
    url = f"http://127.0.0.1:{free_port()}"
    argv = ["--prometheus-url", url, "--query", "up", "--step", "1s"]
    assert _run(*argv, "--history", f"{MAX_HISTORY_POINTS}s") == 2
    _one_line_error(capsys.readouterr(), "unreachable", "'up'")


@pytest.mark.parametrize(
    ("step", "span"),
    [
        ("1ms", "1d"),
        ("10ms", "14d"),
        ("999ms", "1h"),
        ("1s", "1h"),
        ("1s", "14d"),
        ("1.5s", "1d"),
        ("1.7s", "1d"),
        ("7s", "1d"),
        ("15s", "14d"),
        ("1m", "2m"),
        ("1m", "119s"),
        ("1m", "14d"),
        ("1m", "3650d"),
        ("2m", "1d"),
        ("5m", "3650d"),
        ("7m", "1d"),
        ("1h", "3650d"),
    ],
)
def test_live_step_and_history_are_refused_as_load_step_and_history_are(
    step: str, span: str
) -> None:
    """The live mode reads what the operator would read: a --step and --history are refused
    exactly where a GatewayAutoscaler's load.step and load.history are."""
    refused = forecast_command._history_problem(
        parse_duration(step).total_seconds(),
        parse_duration(span).total_seconds(),
        step_text=step,
        span_text=span,
    )
    try:
        LoadSpec.model_validate({"query": "up", "perReplica": 1, "step": step, "history": span})
    except ValidationError:
        assert refused is not None
        assert refused.startswith(("--step", "--history"))
    else:
        assert refused is None


def test_whatever_else_load_spec_refuses_is_refused_with_both_flags(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The resource's own validator has the last word: a bound of it the flags' checks did not
    name (here the samples', as if this module's copy were stale) is refused, one line with
    --step and --history and the resource's reason, and nothing is read."""
    monkeypatch.setattr(forecast_command, "MAX_HISTORY_POINTS", 10**9)
    assert _run(*LIVE, "--step", "1s", "--history", "14d") == 2
    _one_line_error(
        capsys.readouterr(), "--step 1s, --history 14d: ", "1,209,600 samples, at most 500,000"
    )


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        pytest.param(
            ["{trace}", "--show", "--horizon", "1ms"],
            "--horizon 1ms is less than one forecast step (5m, the finest fit step): give at "
            "least 5m",
            id="show",
        ),
        pytest.param(
            ["{trace}", "--show", "--horizon", "4m59s"],
            "--horizon 4m59s is less than one forecast step (5m",
            id="show-a-second-short",
        ),
        pytest.param(
            ["{trace}", "--models", "seasonal-naive", "--jobs", "1", "--horizon", "1s"],
            "--horizon 1s is less than one forecast step (5m, the finest fit step)",
            id="accuracy",
        ),
        pytest.param(
            [*LIVE, "--horizon", "1ms"],
            "--horizon 1ms is less than one forecast step (5m, the finest fit step)",
            id="live",
        ),
    ],
)
def test_a_horizon_less_than_one_step_is_refused_naming_the_step(
    trace: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    expected: str,
) -> None:
    """A forecast is of whole steps' means: --horizon 1ms was shown as one 5-minute step
    "0.0 min ahead". Less than the finest fit step is one line naming --horizon and the step,
    exit 2; nothing is fitted or read."""
    assert _run(*[a.format(trace=trace) for a in argv]) == 2
    _one_line_error(capsys.readouterr(), expected)


def test_a_horizon_of_exactly_the_finest_fit_step_is_one_step(
    trace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """5m, the finest fit step, is the shortest horizon taken: one step shown."""
    argv = [str(trace), "--show", "--json", "--model", "seasonal-naive", "--horizon", "5m"]
    assert _run(*argv) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["horizon_minutes"], len(shown["forecast"])) == (5, 1)


@pytest.mark.parametrize("horizon", ["10m", "30m"])
def test_a_horizon_within_one_coarse_step_is_that_step(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], horizon: str
) -> None:
    """At a trace's half-hour step, 10m and 30m both reach into the next step, and are shown as
    that one step (the default 30m on an hourly trace is the next hour): a trace coarser than
    the horizon is not refused."""
    coarse = _trace(tmp_path / "half-hours.csv", seasonal(days=8, step=1800.0))
    argv = [str(coarse), "--show", "--json", "--model", "seasonal-naive", "--horizon", horizon]
    assert _run(*argv) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["step_seconds"] == 1800.0
    assert len(shown["forecast"]) == 1


def test_accuracy_over_a_fine_and_a_coarse_trace_takes_a_horizon_under_the_coarse_step(
    trace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``tidal forecast traces/*.csv`` at the default 30m, with an hourly trace among them, is
    scored on every trace (each at the step its horizon reaches into), not refused."""
    hourly = _trace(tmp_path / "hours.csv", seasonal(days=15, step=3600.0))
    argv = [str(trace), str(hourly), "--models", "seasonal-naive", "--jobs", "1", "--json"]
    assert _run(*argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["traces"]) == {trace.stem, "hours"}
    assert report["traces"]["hours"]["models"]["seasonal-naive"]["mase"] is not None


@pytest.mark.parametrize("zulu", ["Z", "z"])
def test_show_at_takes_utc_as_z_or_lower_case_z(
    trace: Path, history: LoadSeries, capsys: pytest.CaptureFixture[str], zulu: str
) -> None:
    """RFC 3339 allows a lower-case z: it was refused as "not ISO-8601"."""
    at = _iso(history.end - DAY).removesuffix("Z") + zulu
    argv = [str(trace), "--show", "--json", "--model", "seasonal-naive", "--at", at]
    assert _run(*argv) == 0
    assert json.loads(capsys.readouterr().out)["fitted_until"] == _iso(history.end - DAY)


# -- one forecast shown --------------------------------------------------------------------


def test_show_at_the_trace_s_last_sample_is_its_end(
    trace: Path, history: LoadSeries, capsys: pytest.CaptureFixture[str]
) -> None:
    """--at the last timestamp is inside the trace: the same as no --at."""
    argv = [str(trace), "--show", "--json", "--model", "seasonal-naive"]
    assert _run(*argv, "--at", _iso(history.end)) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["fitted_until"] == _iso(history.end)


@pytest.mark.parametrize(
    ("offset", "expected"),
    [
        pytest.param(-300.0, "runs from", id="before-start"),
        pytest.param(0.0, "usable samples", id="at-start"),
        pytest.param(None, "runs from", id="after-end"),
    ],
)
def test_show_at_outside_the_trace(
    trace: Path,
    history: LoadSeries,
    capsys: pytest.CaptureFixture[str],
    offset: float | None,
    expected: str,
) -> None:
    """--at before the first sample or after the last names the trace's span; at the first
    sample it is inside the trace, one sample too little to fit on."""
    at = history.end + 300.0 if offset is None else history.start + offset
    argv = [str(trace), "--show", "--json", "--model", "seasonal-naive", "--at", _iso(at)]
    assert _run(*argv) == 2
    err = _one_line_error(capsys.readouterr(), str(trace), expected)
    if expected == "runs from":
        assert f"runs from {_iso(history.start)} to {_iso(history.end)}" in err


def test_show_last_observed_is_the_last_load_not_the_last_row(
    tmp_path: Path, history: LoadSeries, capsys: pytest.CaptureFixture[str]
) -> None:
    """Rows without a load at the end of the trace: the last observation is the last load."""
    path = _trace(tmp_path / "tail.csv", history, blank_after=len(history) - 3)
    assert _run(str(path), "--show", "--json", "--model", "seasonal-naive") == 0
    last = json.loads(capsys.readouterr().out)["last_observed"]
    index = len(history) - 4
    assert last == {
        "time": _iso(history.start + index * history.step),
        "load": round(float(f"{history.values[index]:.3f}"), 4),
    }


@pytest.mark.parametrize(
    ("horizon", "reach"),
    [pytest.param("30m", 3600.0, id="an-hour-at-least"), pytest.param("2h", 7200.0, id="2h")],
)
def test_show_calibrates_the_model_at_least_an_hour_ahead(
    trace: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    horizon: str,
    reach: float,
) -> None:
    """As the planner does: the model is created for max(horizon, 1h), at the fit step."""
    created: list[dict[str, Any]] = []
    real = forecast_command.create

    def create(name: str, **options: Any) -> Any:
        created.append({"name": name, **options})
        return real(name, **options)

    monkeypatch.setattr(forecast_command, "create", create)
    argv = [str(trace), "--show", "--json", "--model", "seasonal-naive", "--horizon", horizon]
    assert _run(*argv) == 0
    assert created == [{"name": "seasonal-naive", "fit_step": 300.0, "max_horizon": reach}]
    capsys.readouterr()


def test_show_table_text(
    trace: Path, history: LoadSeries, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The shown forecast's lines: the trace (as named, brackets and all), the model, the last
    load, a table titled with the horizon and the step, and the band's peak."""
    named = tmp_path / "[red] cycle.csv"
    named.write_bytes(trace.read_bytes())
    assert _run(str(named), "--show", "--model", "seasonal-naive") == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == str(named)
    assert lines[1].startswith("model seasonal-naive, fitted until ")
    assert "(chose" not in out
    load = float(f"{history.values[-1]:.3f}")
    assert lines[2] == f"last observed load {load:g} at {_iso(history.end)}"
    assert "Forecast, 30 min ahead in 5-minute means" in out
    assert lines[-1].startswith("peak of the upper 0.95 quantile: ")


def test_show_table_says_what_auto_chose(capsys: pytest.CaptureFixture[str]) -> None:
    """A live forecast's first line is the URL and the query; auto's choice follows the model
    asked for; the numbers are the report's, to two places."""
    report = {
        "source": {"prometheus_url": "http://127.0.0.1:9090", "query": "sum(load)"},
        "model": "auto",
        "chosen_model": "holt-winters",
        "fitted_until": "2024-01-01T00:00:00Z",
        "fit_seconds": 1.234,
        "last_observed": {"time": "2024-01-01T00:00:00Z", "load": 120.5},
        "step_seconds": 60.0,
        "horizon_minutes": 2,
        "quantile": 0.9,
        "forecast": [
            {"time": "2024-01-01T00:01:00Z", "point": 121.004, "upper": 130.0},
            {"time": "2024-01-01T00:02:00Z", "point": 122.0, "upper": 140.126},
        ],
        "peak_upper": {"time": "2024-01-01T00:02:00Z", "load": 140.126},
    }
    forecast_command._print_shown(report, as_json=False)
    lines = capsys.readouterr().out.splitlines()
    assert lines[:3] == [
        "http://127.0.0.1:9090, query 'sum(load)'",
        "model auto (chose holt-winters), fitted until 2024-01-01T00:00:00Z in 1.23s",
        "last observed load 120.5 at 2024-01-01T00:00:00Z",
    ]
    table = "\n".join(lines[3:])
    assert "Forecast, 2 min ahead in 1-minute means" in table
    header = next(line for line in lines if "upper q=0.9" in line).split("┃")[1:-1]
    assert header[0].startswith(" time  ") and header[1].endswith(" point ")
    row = next(line for line in lines if "00:01:00Z" in line).split("│")[1:-1]
    assert [cell.strip() for cell in row] == ["2024-01-01T00:01:00Z", "121.00", "130.00"]
    assert row[2] == f"{'130.00':>{len(row[2]) - 1}} ", "right-aligned"
    assert lines[-1] == "peak of the upper 0.9 quantile: 140.13 at 2024-01-01T00:02:00Z"


# -- the plots -----------------------------------------------------------------------------


def _keep_figures(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The figures the command would save, kept to look at instead of written."""
    figures: list[Any] = []

    def save(fig: Any, path: Path) -> None:
        figures.append(fig)

    monkeypatch.setattr(forecast_command, "_save", save)
    return figures


def _lines_by_label(fig: Any) -> dict[str, Any]:
    """The figure's lines by label, each one drawn (not of width zero)."""
    (ax,) = fig.axes
    lines = ax.get_lines()
    assert all(line.get_linewidth() > 0 for line in lines if line.get_linestyle() != "None")
    return {line.get_label(): line for line in lines}


def test_the_accuracy_plot_shows_the_last_three_days(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plot draws the first model's forecasts from each origin of the three days before the
    last one (in hours from their start, a line from the load at the origin), and the band.
    Thirteen days are evaluated over their last quarter: some origins come before those three
    days, and are not drawn."""
    import matplotlib.pyplot as plt

    figures = _keep_figures(monkeypatch)
    trace = _trace(tmp_path / "cycle.csv", seasonal(days=13))
    plot = str(tmp_path / "report.png")
    argv = [str(trace), "--json", "--jobs", "1", "--horizon", "1h", "--plot", plot]
    assert _run(*argv, "--models", "seasonal-naive") == 0
    capsys.readouterr()
    (fig,) = figures
    (ax,) = fig.axes
    assert ax.get_title() == "cycle: actual vs seasonal-naive forecasts (horizon 60 min)"
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("hours", "load")
    lines = _lines_by_label(fig)
    hours = lines["actual"].get_xdata()
    # From three days before the last origin to the end, a horizon or more after it.
    assert hours[0] == 0.0 and 73.0 <= hours[-1] < 75.0
    forecasts = [line for line in ax.get_lines() if line.get_color() == "tab:blue"]
    assert len(forecasts) > 10 and forecasts[0].get_label() == "seasonal-naive forecast"
    # The first drawn starts where the hours do; the last is the last origin's, three days on.
    assert (forecasts[0].get_xdata()[0], forecasts[-1].get_xdata()[0]) == (0.0, 72.0)
    assert all(line.get_label().startswith("_") for line in forecasts[1:])
    actual_at = dict(zip(np.round(hours, 6), lines["actual"].get_ydata(), strict=True))
    for line in forecasts:
        x, y = line.get_xdata(), line.get_ydata()
        assert len(x) == 13 and x[0] >= 0.0 and np.allclose(np.diff(x), 300 / 3600)
        assert y[0] == actual_at[round(x[0], 6)]
    bands = ax.collections
    assert len(bands) == len(forecasts) and bands[0].get_label() == "band to q=0.95"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "actual",
        "seasonal-naive forecast",
        "band to q=0.95",
    ]
    assert fig.subplotpars.left < plt.rcParams["figure.subplot.left"]  # the layout tightened
    plt.close(fig)


@pytest.mark.parametrize(
    ("models", "expected"),
    [
        pytest.param(["seasonal-naive", "auto"], "auto", id="auto-wherever-it-is"),
        pytest.param(["holt-winters", "seasonal-naive"], "holt-winters", id="else-the-first"),
    ],
)
def test_the_accuracy_plot_draws_auto_when_it_was_evaluated(
    history: LoadSeries, monkeypatch: pytest.MonkeyPatch, models: list[str], expected: str
) -> None:
    """Of the models evaluated, auto's forecasts are drawn if it is one, whatever its place;
    otherwise the first model's."""
    import matplotlib.pyplot as plt

    figures = _keep_figures(monkeypatch)
    drawn: list[str] = []
    real = forecast_command.backtest_model

    def backtest(series: LoadSeries, model: str, **options: Any) -> Any:
        drawn.append(model)
        return real(series, "seasonal-naive", **options)  # quicker, and enough to draw

    monkeypatch.setattr(forecast_command, "backtest_model", backtest)
    forecast_command._plot(history, "h", models, 1800.0, 0.9, Path("unused.png"))
    assert drawn == [expected]
    (fig,) = figures
    assert fig.axes[0].get_title() == f"h: actual vs {expected} forecasts (horizon 30 min)"
    plt.close(fig)


def test_the_shown_plot_draws_what_followed_the_at_time(
    trace: Path,
    history: LoadSeries,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With --at before the end: the history's last six hours, the load that followed over
    the horizon, the forecast, and a marker at the band's peak."""
    import matplotlib.pyplot as plt

    figures = _keep_figures(monkeypatch)
    at = history.end - DAY
    argv = [str(trace), "--show", "--json", "--model", "seasonal-naive", "--at", _iso(at)]
    assert _run(*argv, "--plot", str(tmp_path / "shown.png")) == 0
    shown = json.loads(capsys.readouterr().out)
    (fig,) = figures
    (ax,) = fig.axes
    assert ax.get_title() == f"cycle.csv at {_iso(at)}: seasonal-naive, 30 min ahead"
    lines = _lines_by_label(fig)
    assert set(lines) >= {"load", "what followed", "seasonal-naive forecast", "peak of the band"}

    def seconds(line: Any) -> np.ndarray:
        return np.asarray(line.get_xdata(), dtype="datetime64[s]").astype(np.int64)

    load = seconds(lines["load"])
    assert (load[0], load[-1]) == (at - 6 * 3600, at)
    followed = seconds(lines["what followed"])
    assert (followed[0], followed[-1]) == (at + 300, at + 1800)
    peak = lines["peak of the band"]
    assert peak.get_ydata()[0] == pytest.approx(shown["peak_upper"]["load"], abs=1e-3)
    assert seconds(peak)[0] == datetime.fromisoformat(shown["peak_upper"]["time"]).timestamp()
    points = [row["point"] for row in shown["forecast"]]
    assert np.allclose(lines["seasonal-naive forecast"].get_ydata(), points, atol=1e-3)
    (band,) = ax.collections
    assert band.get_label() == "band to q=0.95"
    assert ax.get_ylabel() == "load"
    assert [text.get_text() for text in ax.get_legend().get_texts()] == [
        "load",
        "what followed",
        "seasonal-naive forecast",
        "band to q=0.95",
        "peak of the band",
    ]
    assert {label.get_rotation() for label in ax.get_xticklabels()} == {30.0}  # dates slanted
    assert fig.subplotpars.left < plt.rcParams["figure.subplot.left"]  # the layout tightened
    plt.close(fig)


@pytest.mark.parametrize("past", [60, 149, 150, 200, 299], ids=lambda s: f"{s}s")
def test_the_shown_plot_after_an_at_between_samples(
    trace: Path,
    history: LoadSeries,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    past: int,
) -> None:
    """--at anywhere between two 5-minute samples: the history ends at the one before, and
    what followed starts at the next one, however late in the step --at falls."""
    import matplotlib.pyplot as plt

    figures = _keep_figures(monkeypatch)
    sample = history.end - DAY
    argv = [str(trace), "--show", "--model", "seasonal-naive", "--at", _iso(sample + past)]
    assert _run(*argv, "--plot", str(tmp_path / "shown.png")) == 0
    capsys.readouterr()
    (fig,) = figures
    lines = _lines_by_label(fig)
    ends = [
        np.asarray(lines[label].get_xdata(), dtype="datetime64[s]").astype(np.int64)
        for label in ("load", "what followed")
    ]
    assert (ends[0][-1], ends[1][0]) == (sample, sample + 300)
    plt.close(fig)


def test_the_shown_plot_at_the_end_has_nothing_that_followed(
    trace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """At the trace's end nothing followed: no such line."""
    import matplotlib.pyplot as plt

    figures = _keep_figures(monkeypatch)
    argv = [str(trace), "--show", "--model", "seasonal-naive", "--horizon", "2h"]
    assert _run(*argv, "--plot", str(tmp_path / "shown.png")) == 0
    capsys.readouterr()
    (fig,) = figures
    lines = _lines_by_label(fig)
    assert "what followed" not in lines
    load = np.asarray(lines["load"].get_xdata(), dtype="datetime64[s]").astype(np.int64)
    assert load[-1] - load[0] == 16 * 3600  # eight horizons, more than six hours
    plt.close(fig)


def test_a_plot_that_cannot_be_written_names_the_file(tmp_path: Path) -> None:
    """Saving into a folder that has gone is a ForecastError naming the file, and the
    figure is closed either way."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, _ = plt.subplots()
    path = tmp_path / "gone" / "plot.png"
    with pytest.raises(ForecastError, match=r"plot\.png: cannot write the plot: No such file"):
        forecast_command._save(fig, path)
    assert fig.number not in plt.get_fignums()


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        pytest.param(ForecastError("x.png: cannot write"), "x.png: cannot write\n", id="forecast"),
        pytest.param(
            ValueError("bad data"), "--plot x.png: cannot draw the plot: bad data\n", id="value"
        ),
    ],
)
def test_a_plot_that_fails_to_draw_is_one_line(
    capsys: pytest.CaptureFixture[str], error: Exception, expected: str
) -> None:
    """A ForecastError already names the file; any other failure is named by the flag."""

    def plot(_path: Path) -> None:
        raise error

    assert forecast_command._draw(plot, "x.png") == 2
    assert capsys.readouterr().err == "tidal forecast: error: " + expected


def test_a_plot_drawn_is_exit_0(tmp_path: Path) -> None:
    """The plot is called with the path of the flag's text."""
    seen: list[Path] = []
    draw: Callable[[Path], None] = seen.append
    assert forecast_command._draw(draw, str(tmp_path / "p.png")) == 0
    assert seen == [tmp_path / "p.png"]


def test_scores_that_are_not_finite_are_null_in_the_json() -> None:
    """NaN and Infinity are not JSON (a MASE over loads near 1e307 overflows): they are
    written null, everywhere in the report, and the rest as it was."""
    report = {
        "horizon_minutes": 30,
        "traces": {"t": [{"model": "mstl", "mase": math.nan, "pinball": math.inf}]},
        "bounds": (1.5, -math.inf),
    }
    text = json.dumps(forecast_command._json_finite(report), allow_nan=False)
    assert json.loads(text) == {
        "horizon_minutes": 30,
        "traces": {"t": [{"model": "mstl", "mase": None, "pinball": None}]},
        "bounds": [1.5, None],
    }


@pytest.mark.filterwarnings("ignore::forecasts.errors.TraceWarning")
def test_show_at_on_a_local_clock_reads_the_row_written_at_that_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--at 06:00 on a trace whose clock went back at 02:00 fits up to the row the file
    writes at 06:00, as the help says (before, the row written at 05:00)."""
    path = local_clock_trace(tmp_path / "local.csv")
    row = next(
        i
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines())
        if line.startswith("2024-11-03T06:00:00,")
    )
    argv = [str(path), "--show", "--json", "--model", "seasonal-naive"]
    assert _run(*argv, "--at", "2024-11-03T06:00:00") == 0
    assert json.loads(capsys.readouterr().out)["last_observed"]["load"] == row
