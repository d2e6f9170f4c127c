"""``tidal forecast``: the JSON report, the table, the plot, one forecast shown, and one-line
errors with exit 2."""

from __future__ import annotations

import argparse
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from controller import forecast_command
from forecasts.series import LoadSeries
from tests.forecast_series import START, seasonal
from tests.support.prometheus_server import free_port


def _run(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    forecast_command.add_arguments(parser)
    return forecast_command.run(parser.parse_args(list(argv)))


@pytest.fixture(scope="module")
def trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("traces") / "synthetic-5min.csv"
    history = seasonal(days=8)
    lines = ["timestamp,load"]
    for when, load in zip(history.times(), history.values, strict=True):
        stamp = datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        lines.append(f"{stamp},{load:.3f}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_json_prints_exactly_the_report(trace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--json prints one JSON object on stdout, keyed by the trace's stem."""
    assert _run(str(trace), "--json", "--models", "seasonal-naive", "--jobs", "1") == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) == {"horizon_minutes", "quantile", "traces"}
    assert list(report["traces"]) == ["synthetic-5min"]
    assert set(report["traces"]["synthetic-5min"]["models"]["seasonal-naive"]) == {
        "mase",
        "coverage",
        "pinball",
        "fit_seconds",
    }


def test_horizon_and_quantile_options_reach_the_report(
    trace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--horizon 1h and --quantile 0.9 are reported back."""
    argv = [str(trace), "--json", "--models", "seasonal-naive", "--jobs", "1", "--horizon", "1h"]
    assert _run(*argv, "--quantile", "0.9") == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["horizon_minutes"], report["quantile"]) == (60, 0.9)


def test_table_and_plot_without_json(
    trace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --json a table names each model, and --plot writes a PNG."""
    plot = tmp_path / "forecast.png"
    assert _run(str(trace), "--models", "seasonal-naive", "--jobs", "1", "--plot", str(plot)) == 0
    assert "seasonal-naive" in capsys.readouterr().out
    assert plot.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param("time,load\n", ":1:", id="bad-header"),
        pytest.param(
            "timestamp,load\n2020-01-01T00:00:00Z,1\nnot-a-time,2\n", ":3:", id="bad-timestamp"
        ),
        pytest.param(
            "timestamp,load\n2020-01-01T00:00:00Z,1\n2020-01-01T00:05:00Z,x\n", ":3:", id="bad-load"
        ),
    ],
)
def test_malformed_csv_is_one_line_naming_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, expected: str
) -> None:
    """A malformed trace exits 2 with one line naming the file and the line, no traceback."""
    path = tmp_path / "bad.csv"
    path.write_text(content)
    assert _run(str(path), "--json") == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert f"{path}{expected}" in captured.err
    assert "Traceback" not in captured.err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        pytest.param(["missing.csv"], "missing.csv", id="missing-file"),
        pytest.param(["{trace}", "--horizon", "soon"], "--horizon", id="bad-horizon"),
        pytest.param(["{trace}", "--models", "prophet"], "'prophet'", id="unknown-model"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(
    trace: Path, capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    """A missing file, a bad duration or an unknown model exit 2 with a one-line error."""
    assert _run(*[a.format(trace=trace) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err


def _write(path: Path, history: LoadSeries) -> Path:
    """``history`` as a trace file (empty cells for NaN)."""
    lines = ["timestamp,load"]
    for when, load in zip(history.times(), history.values, strict=True):
        stamp = datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        lines.append(f"{stamp},{'' if np.isnan(load) else f'{load:.3f}'}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def _one_line_error(captured: pytest.CaptureResult[str], *expected: str) -> None:
    assert captured.out == ""
    assert captured.err.count("\n") == 1, captured.err
    assert captured.err.startswith("tidal forecast: error: ")
    for text in expected:
        assert text in captured.err
    assert "Traceback" not in captured.err


@pytest.mark.parametrize("quantile", ["0.5", "1.0", "0.3", "nan"])
def test_quantile_must_be_in_the_crd_range(
    trace: Path, capsys: pytest.CaptureFixture[str], quantile: str
) -> None:
    """--quantile is in (0.5, 1) as spec.forecast.quantile is: 0.5 is refused too."""
    assert _run(str(trace), "--json", "--quantile", quantile) == 2
    _one_line_error(capsys.readouterr(), "--quantile", "(0.5, 1)")


def test_two_traces_with_one_stem_are_refused(
    trace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """a/base.csv and b/base.csv would share the row 'base': refused, naming both files."""
    first, second = tmp_path / "a" / "base.csv", tmp_path / "b" / "base.csv"
    for path in (first, second):
        path.parent.mkdir()
        path.write_bytes(trace.read_bytes())
    assert _run(str(first), str(second), "--json", "--models", "seasonal-naive") == 2
    _one_line_error(capsys.readouterr(), str(first), str(second), "'base'")


@pytest.mark.parametrize(
    ("plot", "expected"),
    [
        pytest.param("missing/forecast.png", "no folder", id="missing-directory"),
        pytest.param("forecast.jpg", "the plot is a PNG, not .jpg", id="not-png"),
        pytest.param("plots.png", "is a folder", id="a-directory"),
    ],
)
def test_plot_path_is_checked_before_any_work(
    trace: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    plot: str,
    expected: str,
) -> None:
    """A --plot that cannot be written fails at once, naming the flag, before evaluating."""

    def evaluate(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("evaluated before --plot was checked")

    monkeypatch.setattr(forecast_command, "evaluate_traces", evaluate)
    target = tmp_path / plot
    if plot == "plots.png":
        target.mkdir()
    assert _run(str(trace), "--json", "--plot", str(target)) == 2
    _one_line_error(capsys.readouterr(), "--plot", expected)


def test_a_plot_that_fails_keeps_the_report(
    trace: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The report is printed before the plot is drawn; a failing plot is one line after it."""

    def plot(*_args: object, **_kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(forecast_command, "_plot", plot)
    argv = [str(trace), "--json", "--models", "seasonal-naive", "--jobs", "1"]
    assert _run(*argv, "--plot", str(tmp_path / "forecast.png")) == 2
    captured = capsys.readouterr()
    assert list(json.loads(captured.out)["traces"]) == ["synthetic-5min"]
    assert captured.err.splitlines()[-1].startswith("tidal forecast: error: --plot")
    assert "No space left on device" in captured.err


def _sub_second(count: int) -> bytes:
    """A trace of ``count`` rows 0.7 s apart: a step no minute divides, too fine to be put on
    one that does (a step from 1 s to 5 minutes is; see ``grid_step``)."""
    stamps = (datetime.fromtimestamp(START + 0.7 * i, UTC) for i in range(count))
    rows = "".join(f"{t.isoformat(timespec='milliseconds')},1\n" for t in stamps)
    return ("timestamp,load\n" + rows).encode()


@pytest.mark.parametrize(
    ("content", "argv", "expected"),
    [
        pytest.param(
            b"timestamp,load\n2020-01-01T00:00:00Z,1\n2020-01-01T00:05:00Z,\xff\n",
            [],
            "UTF-8",
            id="not-utf8",
        ),
        pytest.param(
            b"timestamp,load\n2020-01-01T00:00:00Z,\n2020-01-01T00:05:00Z,nan\n",
            [],
            "no finite load",
            id="all-nan",
        ),
        pytest.param(_sub_second(2000), [], "0.7s step", id="step-0.7s"),
        pytest.param(seasonal(days=0.5), [], "too short to evaluate", id="half-a-day"),
        pytest.param(
            seasonal(days=2),
            ["--models", "holt-winters"],
            "too short to evaluate holt-winters",
            id="too-short-for-a-model",
        ),
        pytest.param(_sub_second(2000), ["--show"], "0.7s step", id="show-step-0.7s"),
        pytest.param(
            seasonal(days=0.5), ["--show", "--model", "mstl"], "usable samples", id="show-short"
        ),
    ],
)
def test_an_unusable_trace_is_one_line_naming_the_file(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: bytes | LoadSeries,
    argv: list[str],
    expected: str,
) -> None:
    """Non-UTF-8, all missing, a step that does not divide 5 minutes, too short: exit 2."""
    path = tmp_path / "unusable.csv"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        _write(path, content)
    evaluated = [] if "--show" in argv else ["--jobs", "1"]
    assert _run(str(path), "--json", *evaluated, *argv) == 2
    _one_line_error(capsys.readouterr(), str(path), expected)


def test_progress_lines_when_stderr_is_not_a_terminal(
    trace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Redirected standard error (CI, 2>file) gets a plain line when a trace is evaluated."""
    assert _run(str(trace), "--json", "--models", "seasonal-naive", "--jobs", "1") == 0
    err = capsys.readouterr().err
    assert "tidal forecast: synthetic-5min: evaluated (1/1 trace-model evaluations done" in err


def test_progress_lines_come_every_half_minute() -> None:
    """Between finished traces, one line per PROGRESS_EVERY seconds, whatever the tick rate."""
    clock = iter(float(second) for second in range(0, 200, 5))
    out = io.StringIO()
    lines = forecast_command._ProgressLines(
        ["a", "b"], ["seasonal-naive"], clock=lambda: next(clock), out=out
    )
    for done in range(1, 31):  # a tick every 5 s, for 150 s
        lines("a", "seasonal-naive", done, 100)
    assert out.getvalue().count("\n") == 5  # at 30, 60, 90, 120 and 150 s
    assert "0/2 trace-model evaluations done; a seasonal-naive at origin 6/100" in out.getvalue()


# -- one forecast shown ------------------------------------------------------------------------

SHOWN_KEYS = {
    "source",
    "model",
    "chosen_model",
    "fitted_until",
    "fit_seconds",
    "last_observed",
    "step_seconds",
    "horizon_minutes",
    "quantile",
    "forecast",
    "peak_upper",
}


def _iso(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_show_prints_one_forecast_as_json(trace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--show --json: the documented keys, one row per step, the band above the point."""
    argv = [str(trace), "--show", "--json", "--model", "holt-winters", "--quantile", "0.9"]
    assert _run(*argv) == 0
    shown = json.loads(capsys.readouterr().out)
    history = seasonal(days=8)
    assert set(shown) == SHOWN_KEYS
    assert shown["source"] == {"trace": str(trace)}
    assert (shown["model"], shown["chosen_model"]) == ("holt-winters", "holt-winters")
    assert shown["fitted_until"] == _iso(history.end)
    assert shown["last_observed"] == {
        "time": _iso(history.end),
        "load": round(float(f"{history.values[-1]:.3f}"), 4),
    }
    assert (shown["step_seconds"], shown["horizon_minutes"], shown["quantile"]) == (300, 30, 0.9)
    rows = shown["forecast"]
    assert [row["time"] for row in rows] == [_iso(history.end + 300 * i) for i in range(1, 7)]
    assert all(row["upper"] >= row["point"] > 0 for row in rows)
    peak = max(rows, key=lambda row: row["upper"])
    assert shown["peak_upper"] == {"time": peak["time"], "load": peak["upper"]}


def test_show_at_fits_on_the_history_up_to_then(
    trace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--at cuts the trace: the fit and the last observation are at that time, not the end."""
    at = seasonal(days=8).end - 2 * 86400
    argv = [str(trace), "--show", "--json", "--model", "seasonal-naive", "--at", _iso(at)]
    assert _run(*argv) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["fitted_until"] == shown["last_observed"]["time"] == _iso(at)
    assert shown["forecast"][0]["time"] == _iso(at + 300)


def test_show_table_and_plot(
    trace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --json the forecast is a table with the peak of the band; --plot draws it."""
    plot = tmp_path / "shown.png"
    at = _iso(seasonal(days=8).end - 86400)
    argv = [str(trace), "--show", "--model", "seasonal-naive", "--at", at, "--plot", str(plot)]
    assert _run(*argv) == 0
    out = capsys.readouterr().out
    assert "model seasonal-naive, fitted until" in out
    assert "upper q=0.95" in out and "peak of the upper 0.95 quantile" in out
    assert plot.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        pytest.param([], "TRACE.csv", id="nothing"),
        pytest.param(["{trace}", "--at", "2023-11-20"], "--at applies only to --show", id="at"),
        pytest.param(["{trace}", "--model", "auto"], "--model applies only", id="model"),
        pytest.param(["{trace}", "--show", "--models", "auto"], "--models", id="models-shown"),
        pytest.param(["{trace}", "--show", "--jobs", "2"], "--jobs", id="jobs-shown"),
        pytest.param(["{trace}", "--step", "1m"], "--step", id="step-on-trace"),
        pytest.param(["{trace}", "{trace}", "--show"], "one trace file", id="show-two"),
        pytest.param(["{trace}", "--show", "--model", "prophet"], "'prophet'", id="show-model"),
        pytest.param(["{trace}", "--show", "--at", "soon"], "ISO-8601", id="bad-at"),
        pytest.param(
            ["{trace}", "--show", "--at", "0001-01-01T00:00:00+01:00"],
            "--at '0001-01-01T00:00:00+01:00' is outside the years 1 to 9999 in UTC",
            id="at-in-year-0-in-utc",
        ),
        pytest.param(["{trace}", "--show", "--at", "2001-01-01"], "runs from", id="at-before"),
        pytest.param(["--prometheus-url", "{url}"], "--query", id="url-without-query"),
        pytest.param(["--query", "up"], "--prometheus-url", id="query-without-url"),
        pytest.param(
            ["{trace}", "--prometheus-url", "{url}", "--query", "up"], "not both", id="both"
        ),
        pytest.param(["--prometheus-url", "{url}", "--query", "up", "--show"], "--show", id="show"),
        pytest.param(
            ["--prometheus-url", "{url}", "--query", "up", "--step", "2m"], "--step 2m", id="step"
        ),
        pytest.param(
            ["--prometheus-url", "{url}", "--query", "up", "--history", "1m"],
            "--history",
            id="hist",
        ),
    ],
)
def test_flags_that_do_not_fit_the_mode_exit_2(
    trace: Path, capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    """Each mode refuses the flags of the others, with one line naming the flag."""
    url = "http://127.0.0.1:9"  # never contacted: the flags are refused first
    assert _run(*[a.format(trace=trace, url=url) for a in argv]) == 2
    _one_line_error(capsys.readouterr(), expected)


def test_unreachable_prometheus_is_one_line_naming_url_and_query(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Nothing listens on the port: exit 2, one line with the URL and the query."""
    url = f"http://127.0.0.1:{free_port()}"
    assert _run("--prometheus-url", url, "--query", "sum(load)", "--json") == 2
    _one_line_error(capsys.readouterr(), url, "'sum(load)'", "unreachable")
