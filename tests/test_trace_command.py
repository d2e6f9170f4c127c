"""``tidal trace`` without a Prometheus: its flags refused before any query, and the file it
writes read back by the trace reader as the series it was given."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest

from controller.cli import main
from controller.trace_command import MOST_SAMPLES, write_trace
from forecasts.series import LoadSeries, TraceWarning, load_trace

#: Nothing listens on port 1 of the loopback: a flag that passed its checks would end in
#: "unreachable", which none of the expected messages below says.
NOWHERE = "http://127.0.0.1:1"


def _trace(*argv: str) -> int:
    return main(["trace", *argv])


BASE = ["--prometheus-url", NOWHERE, "--query", "sum(up)"]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        pytest.param(["--query", "up"], "--prometheus-url is required", id="no-url"),
        pytest.param(["--prometheus-url", NOWHERE], "--query is required", id="no-query"),
        pytest.param(
            ["--prometheus-url", NOWHERE, "--query", ""], "--query is required", id="empty-query"
        ),
        pytest.param(
            [*BASE, "--step", "1500ms"], "--step must be a whole number of seconds", id="ms"
        ),
        pytest.param([*BASE, "--step", "0s"], "--step must be positive", id="zero-step"),
        pytest.param([*BASE, "--step", "soon"], "--step: 'soon' is not a duration", id="step"),
        pytest.param([*BASE, "--history", "30s"], "must cover at least one --step", id="short"),
        pytest.param([*BASE, "--history=-1d"], "--history: '-1d' is not a duration", id="negative"),
        pytest.param(
            [*BASE, "--step", "1s", "--history", "365d"],
            f"31,536,001 samples, at most {MOST_SAMPLES:,}",
            id="too-many-samples",
        ),
        pytest.param(
            [*BASE, "--end", "yesterday"], "--end 'yesterday' is not an ISO-8601", id="end"
        ),
        pytest.param(
            [*BASE, "-o", "/nonexistent-dir/x.csv"],
            "no such directory: /nonexistent-dir",
            id="no-dir",
        ),
        pytest.param([*BASE, "-o", "."], "--output .: a directory", id="a-directory"),
        pytest.param([*BASE, "-o", ""], "--output '': an empty path", id="empty-output"),
        pytest.param(
            ["--prometheus-url", "ftp://127.0.0.1", "--query", "sum(up)"],
            "Prometheus URL",
            id="not-http",
        ),
    ],
)
def test_bad_flags_are_one_line_before_any_query(
    capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    assert _trace(*argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("tidal trace: error: ") and expected in lines[0], lines[0]
    assert "unreachable" not in lines[0].lower() and captured.out == ""


def test_an_unreachable_prometheus_is_named_without_its_password(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = tmp_path / "x.csv"
    url = "http://ops:hunter2@127.0.0.1:1"
    assert _trace("--prometheus-url", url, "--query", "sum(up)", "-o", str(out)) == 2
    err = capsys.readouterr().err
    assert "http://ops:***@127.0.0.1:1" in err and "hunter2" not in err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_written_loads_read_back_exactly() -> None:
    """Every finite load reads back as the same float, a NaN as a gap, and the grid is kept."""
    values = np.array([0.1, 1e-300, 123456789.123456789, math.nan, 7.0, 2.0 / 3.0, 1e300, 5.0])
    series = LoadSeries(1_700_000_040.0, 60.0, values)
    out = io.StringIO()
    assert write_trace(series, out) == len(values)
    rows = out.getvalue().splitlines()
    assert rows[0] == "timestamp,load"
    assert rows[1] == "2023-11-14T22:14:00Z,0.1" and rows[4] == "2023-11-14T22:17:00Z,"


def test_the_trace_reader_reads_the_file_as_the_series(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    values = rng.lognormal(8.0, 1.0, 500)
    values[100:110] = np.nan  # a ten-minute outage stays a gap
    series = LoadSeries(1_700_000_040.0, 60.0, values)
    path = tmp_path / "t.csv"
    with path.open("w") as out:
        write_trace(series, out)
    read = load_trace(path)
    assert (read.start, read.step, len(read)) == (series.start, series.step, len(series))
    np.testing.assert_array_equal(read.values, series.values)


def test_a_negative_load_is_written_and_read_as_missing_with_a_warning(tmp_path: Path) -> None:
    series = LoadSeries(1_700_000_040.0, 60.0, np.array([5.0, -1.0, 6.0, 7.0]))
    path = tmp_path / "t.csv"
    with path.open("w") as out:
        write_trace(series, out)
    assert path.read_text().splitlines()[2].endswith(",-1.0")
    with pytest.warns(TraceWarning, match=r"t\.csv:3"):
        read = load_trace(path)
    assert read.values[0] == 5.0 and read.values[2] == 6.0


@pytest.mark.parametrize(
    ("terminal", "chunks", "shown"),
    [(True, 3, True), (True, 1, False), (False, 3, False)],
    ids=["terminal-many-queries", "one-query", "a-pipe"],
)
def test_progress_shows_on_a_terminal_for_a_read_of_many_queries(
    terminal: bool, chunks: int, shown: bool
) -> None:
    from rich.console import Console

    from controller.trace_command import _progress

    sink = io.StringIO()
    console = Console(file=sink, force_terminal=terminal, width=80)
    with _progress(console, chunks) as advance:
        for _ in range(chunks):
            advance()
    assert ("queries" in sink.getvalue()) is shown
