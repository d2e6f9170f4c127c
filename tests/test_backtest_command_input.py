"""``tidal backtest`` on bad input: every trace checked before any replay, each error one line
naming its file, a failing replay stopping the others, progress without a terminal, and --plot
checked before the run."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from controller import backtest_command
from controller.cli import main
from forecasts.series import load_trace

START = 1_577_836_800.0  # 2020-01-01T00:00:00Z

#: The replay of one trace in a worker, kept before any test replaces it.
_REAL_RUN_ONE = backtest_command._run_one


def format_time(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _daily(minute: int) -> str:
    return f"{100.0 + 50.0 * math.sin(2 * math.pi * minute / 1440):.1f}"


def _write_trace(
    path: Path, rows: int, *, step: float = 60.0, load: Callable[[int], str] = _daily
) -> Path:
    """A ``timestamp,load`` CSV of ``rows`` samples ``step`` seconds apart from START."""
    lines = [f"{format_time(START + i * step)},{load(i)}" for i in range(rows)]
    path.write_text("timestamp,load\n" + "\n".join(lines) + "\n")
    return path


def _minute(minutes: int) -> str:
    """The time ``minutes`` after START, as --score-from takes it."""
    return format_time(START + 60.0 * minutes)


def _fail_on_bad(trace: Any, *args: Any) -> Any:
    """A worker's replay that breaks on the trace named ``bad``, as a bug would mid-run; how
    every other replay ends is left as a file in $OUTCOMES (workers share no memory)."""
    if trace.name == "bad":
        raise ValueError("the replay broke")
    outcome = Path(os.environ["OUTCOMES"]) / trace.name
    try:
        run = _REAL_RUN_ONE(trace, *args)
    except Exception as exc:
        outcome.write_text(type(exc).__name__)
        raise
    outcome.write_text("finished")
    return run


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_every_trace_is_checked_before_any_replay(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], jobs: str
) -> None:
    """A bad trace after a good one fails before the good one is replayed, and every bad
    trace is named, not only the first."""
    good = _write_trace(tmp_path / "good.csv", 600)
    malformed = tmp_path / "malformed.csv"
    malformed.write_text("timestamp,load\n2020-01-01T00:00:00Z,1\n2020-01-01T00:01:00Z,many\n")
    zero = _write_trace(tmp_path / "zero.csv", 600, load=lambda _i: "0")
    argv = ["backtest", str(good), str(malformed), str(zero), "--jobs", jobs]
    assert main([*argv, "--score-from", _minute(500)]) == 2
    err = capsys.readouterr().err
    assert f"tidal backtest: {malformed}:3: load 'many' is not a number" in err
    assert f"tidal backtest: {zero}: the load's 99th percentile is zero" in err
    assert "replay" not in err


def test_a_replay_that_fails_stops_the_others(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A replay failing in a worker is named at once, exits 2, and the replays under way or
    waiting are given up rather than finished."""
    monkeypatch.setattr(backtest_command, "_run_one", _fail_on_bad)
    outcomes = tmp_path / "outcomes"
    outcomes.mkdir()
    monkeypatch.setenv("OUTCOMES", str(outcomes))
    traces = [_write_trace(tmp_path / f"{name}.csv", 4 * 1440) for name in ("bad", "a", "b")]
    argv = ["backtest", *map(str, traces), "--jobs", "2", "--score-from", _minute(1440)]
    assert main(argv) == 2
    err = capfd.readouterr().err
    assert f"tidal backtest: {traces[0]}: the replay broke\n" in err
    assert "replayed in" not in err
    assert "Traceback" not in err
    # Each of the others was stopped or never started: none was replayed to its end.
    assert {p.read_text() for p in outcomes.iterdir()} <= {"_Stopped"}


@pytest.mark.parametrize(
    ("rows", "step", "load", "score_from", "says"),
    [
        (600, 60.0, lambda _i: "0", 500, "the load's 99th percentile is zero"),
        (600, 60.0, lambda i: f"{1e-310 * float(_daily(i))!r}", 500, "too close to zero to scale"),
        (
            600,
            60.0,
            lambda i: "1e308" if i == 100 else _daily(i),
            500,
            "a load of 1e+308 is too far above the 99th percentile",
        ),
        (
            600,
            60.0,
            lambda i: "1e20" if i in (100, 101) else _daily(i),
            500,
            "its highest load (1e+20) needs 7.33e+19 replicas with --headroom 0.1",
        ),
        (
            600,
            60.0,
            _daily,
            5000,
            "--score-from 2020-01-04T11:20:00Z falls outside the trace: the trace runs from "
            "2020-01-01T00:00:00Z to 2020-01-01T09:59:00Z",
        ),
        (
            600,
            60.0,
            lambda i: _daily(i) if i < 400 else "",
            500,
            "no load sample in the scored minutes, 2020-01-01T08:20:00Z to 2020-01-01T09:59:00Z",
        ),
    ],
    ids=[
        "all-zero",
        "subnormal-loads",
        "overflowing-load",
        "beyond-any-cluster",
        "score-from-outside",
        "no-load-scored",
    ],
)
def test_a_trace_that_cannot_be_replayed_is_one_line_naming_it(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    rows: int,
    step: float,
    load: Callable[[int], str],
    score_from: int,
    says: str,
) -> None:
    """Exit 2 and one line on stderr, ``tidal backtest: FILE: why``, before any replay."""
    trace = _write_trace(tmp_path / "t.csv", rows, step=step, load=load)
    argv = ["backtest", str(trace), "--jobs", "1", "--score-from", _minute(score_from)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"tidal backtest: {trace}: ")
    assert err.count("\n") == 1
    assert says in err


def test_minutes_without_load_are_warned_about(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Rows without a load over half the scored minutes: a warning with the share."""
    trace = _write_trace(tmp_path / "t.csv", 600, load=lambda i: _daily(i) if i < 450 else "")
    argv = ["backtest", str(trace), "--jobs", "1", "--json", "--policies", "oracle"]
    assert main([*argv, "--score-from", _minute(300)]) == 0
    captured = capsys.readouterr()
    assert f"tidal backtest: warning: {trace}: 50% of the scored minutes have no load sample" in (
        captured.err
    )
    assert set(json.loads(captured.out)["traces"]["t"]) == {"oracle"}


def test_a_few_minutes_without_load_are_not_warned_about(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A missing sample here and there is below the 5% that warrants a warning."""
    trace = _write_trace(tmp_path / "t.csv", 600, load=lambda i: "" if i % 50 == 0 else _daily(i))
    argv = ["backtest", str(trace), "--jobs", "1", "--json", "--policies", "oracle"]
    assert main([*argv, "--score-from", _minute(300)]) == 0
    assert "no load sample" not in capsys.readouterr().err


@pytest.mark.parametrize(
    "policies",
    ["", " , ", "hpa,,oracle", "hpa,hpa", "tidal,bogus"],
    ids=["empty", "commas", "an-empty-one", "one-twice", "unknown"],
)
def test_no_policy_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], policies: str
) -> None:
    trace = _write_trace(tmp_path / "t.csv", 600)
    assert main(["backtest", str(trace), "--jobs", "1", "--policies", policies]) == 2
    assert "--policies" in capsys.readouterr().err


def test_no_ratio_is_printed_without_both_tidal_and_hpa(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The table's summary compares tidal with the HPA: without one of them, it is left out."""
    trace = _write_trace(tmp_path / "t.csv", 600)
    argv = ["backtest", str(trace), "--jobs", "1", "--policies", "oracle"]
    assert main([*argv, "--score-from", _minute(500)]) == 0
    out = capsys.readouterr().out
    assert "oracle" in out
    assert "tidal/hpa" not in out and "nan" not in out


def _policy(cloud_hours: float) -> dict[str, float | int]:
    return {
        "unserved_fraction": 0.0,
        "underprovisioned_minutes": 0,
        "cloud_replica_hours": cloud_hours,
        "physical_replica_hours": 10.0,
        "replicas_removed": 0,
    }


@pytest.mark.parametrize(
    ("hpa_cloud", "expected"),
    [
        ((0.0,), "cloud hours: no ratio, the HPA used no cloud;"),
        ((0.0, 4.0), "cloud hours 2.00 (without the 1 trace(s) where the HPA used no cloud);"),
        ((4.0, 4.0), "cloud hours 2.00;"),
    ],
    ids=["no-trace", "one-trace-of-two", "every-trace"],
)
def test_the_cloud_ratio_says_which_traces_it_leaves_out(
    hpa_cloud: tuple[float, ...], expected: str
) -> None:
    """A trace where the HPA paid no cloud has no cloud ratio: the summary says so, rather than
    printing nan or leaving the trace out unsaid."""
    from rich.console import Console

    result = {
        "traces": {
            f"t{i}": {"tidal": _policy(8.0), "hpa": _policy(hours)}
            for i, hours in enumerate(hpa_cloud)
        }
    }
    console = Console(record=True, width=400)
    backtest_command.print_table(result, console)
    out = console.export_text()
    assert expected in out
    assert "nan" not in out


def test_a_small_unserved_ratio_keeps_its_digits() -> None:
    """Where the HPA leaves much unserved and tidal none, the ratio is small, not 0.000."""
    from rich.console import Console

    tidal, hpa = _policy(8.0), _policy(4.0)
    hpa["unserved_fraction"] = 0.0159
    console = Console(record=True, width=400)
    backtest_command.print_table({"traces": {"t": {"tidal": tidal, "hpa": hpa}}}, console)
    assert "unserved 6.29e-05 (worst trace 6.29e-05)" in console.export_text()


def test_a_trace_name_with_brackets_is_printed_as_it_is() -> None:
    """A file named site[eu].csv is not read as console markup: its name shows whole."""
    from rich.console import Console

    console = Console(record=True, width=400)
    result = {"traces": {"site[eu]": {"tidal": _policy(8.0), "hpa": _policy(4.0)}}}
    backtest_command.print_table(result, console)
    assert "site[eu]" in console.export_text()


def test_a_peak_beyond_the_backtest_s_replica_cap_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--peak-replicas so high that the trace's peak needs more than the spec's 100,000
    replicas would cap tidal and the HPA but not the oracle: refused, naming the flag."""
    trace = _write_trace(tmp_path / "t.csv", 600)
    assert main(["backtest", str(trace), "--jobs", "1", "--peak-replicas", "200000"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"tidal backtest: {trace}: its highest load")
    assert "--peak-replicas 200000, more than the 100,000 a backtest can hold" in err


def test_progress_lines_without_a_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a terminal, stderr says which trace is replayed and how far it has got."""
    monkeypatch.setattr(backtest_command, "PROGRESS_EVERY", 0.0)
    trace = _write_trace(tmp_path / "long.csv", 1200)
    argv = ["backtest", str(trace), "--jobs", "1", "--json", "--policies", "hpa,oracle"]
    assert main([*argv, "--score-from", _minute(600)]) == 0
    err = capsys.readouterr().err
    assert "long: replaying 600 scored minutes" in err
    assert "long: 240 of 600 minutes replayed (40%)" in err
    assert re.search(r"long: replayed in \d+s", err)


@pytest.mark.parametrize(
    ("plot", "says"),
    [("missing/x.png", "no folder"), ("out.txt", "the plot is a PNG, not .txt")],
    ids=["no-folder", "not-png"],
)
def test_a_bad_plot_path_is_refused_before_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], plot: str, says: str
) -> None:
    trace = _write_trace(tmp_path / "t.csv", 600)
    argv = ["backtest", str(trace), "--jobs", "1", "--plot", str(tmp_path / plot)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"tidal backtest: --plot {tmp_path / plot}: {says}")
    assert "replay" not in err


def test_a_plot_without_suffix_is_a_png_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = _write_trace(tmp_path / "t.csv", 600)
    argv = ["backtest", str(trace), "--jobs", "1", "--json", "--policies", "oracle"]
    assert main([*argv, "--score-from", _minute(500), "--plot", str(tmp_path / "pic")]) == 0
    assert (tmp_path / "pic.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"plot written to {tmp_path / 'pic.png'}\n" in capsys.readouterr().err


def test_a_plot_that_fails_keeps_the_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The report is printed before the plot is drawn; a failing plot is one line, exit 2."""

    def broken(*_args: Any, **_kwargs: Any) -> Path:
        raise OSError("disk full")

    monkeypatch.setattr("controller.plotting.plot_backtest", broken)
    trace = _write_trace(tmp_path / "t.csv", 600)
    argv = ["backtest", str(trace), "--jobs", "1", "--json", "--policies", "oracle"]
    assert main([*argv, "--score-from", _minute(500), "--plot", str(tmp_path / "p.png")]) == 2
    captured = capsys.readouterr()
    assert set(json.loads(captured.out)["traces"]["t"]) == {"oracle"}
    assert captured.err.endswith(
        f"tidal backtest: --plot {tmp_path / 'p.png'}: the report stands, the plot failed: "
        "disk full\n"
    )


def _mistype(stamp: str, year: str) -> str:
    """``stamp`` with its year typed as ``year``."""
    return year + stamp[4:]


@pytest.mark.parametrize(
    ("command", "typo", "says"),
    [
        (
            "backtest",
            -1,
            ":2881: timestamp 2204-01-02T23:59:00Z is 67,204 days after the row "
            "before it (2020-01-02T23:58:00Z, line 2880): its 2,880 rows would span 96,776,640 "
            "samples at the trace's 60s step (a mistyped date?)",
        ),
        ("forecast", -1, ":2881: timestamp 2204-01-02T23:59:00Z is 67,204 days after"),
        (
            "backtest",
            0,
            ":3: timestamp 2020-01-01T00:01:00Z is 3,652 days after the row "
            "before it (2010-01-01T00:00:00Z, line 2)",
        ),
    ],
    ids=["last-row-backtest", "last-row-forecast", "first-row"],
)
def test_a_mistyped_year_is_refused_with_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, typo: int, says: str
) -> None:
    """2204 for 2020 in the last row made a grid of 97 million minutes and ran out of memory;
    2010 in the first, five million. Refused before the grid is made, naming the row."""
    lines = [format_time(START + 60.0 * i) for i in range(2880)]
    lines[typo] = _mistype(lines[typo], "2204" if typo else "2010")
    trace = tmp_path / "t.csv"
    trace.write_text(
        "timestamp,load\n" + "".join(f"{s},{_daily(i)}\n" for i, s in enumerate(lines))
    )
    assert main([command, str(trace), "--jobs", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{trace}{says}" in err


def test_a_coarse_trace_spanning_centuries_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two rows 184 years apart are one step of the trace, but 97 million minutes once
    interpolated to the backtest's minutes: refused with the dates, not run out of memory."""
    trace = tmp_path / "two.csv"
    trace.write_text("timestamp,load\n2020-01-01T00:00:00Z,5\n2204-01-01T00:00:00Z,6\n")
    assert main(["backtest", str(trace), "--jobs", "1"]) == 2
    assert capsys.readouterr().err == (
        f"tidal backtest: {trace}: the trace runs from 2020-01-01T00:00:00Z to "
        "2204-01-01T00:00:00Z: 96,773,761 minutes, more than the 16,777,216 a backtest replays "
        "(a mistyped date?)\n"
    )


def test_a_long_outage_is_not_a_mistyped_date(tmp_path: Path) -> None:
    """Two days, sixty days without a row, two days: most of the grid is a gap, but not 99%
    of it; such a trace is read (and its gap warned about by the backtest)."""
    minutes = [*range(2880), *range(64 * 1440, 66 * 1440)]
    trace = tmp_path / "outage.csv"
    trace.write_text(
        "timestamp,load\n"
        + "".join(f"{format_time(START + 60.0 * m)},{_daily(m)}\n" for m in minutes)
    )
    series = load_trace(trace)
    assert series.step == 60.0 and len(series) == 66 * 1440


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (
            ["backtest", "t.csv", "--jobs", "x"],
            "tidal backtest: argument --jobs: invalid int value: 'x' (see tidal backtest --help)",
        ),
        (["backtest", "t.csv", "--limit-by", "Pods"], "tidal backtest: argument --limit-by: "),
        (["backtest"], "tidal backtest: the following arguments are required: TRACE.csv"),
        (
            ["backtest", "t.csv", "--nope"],
            "tidal backtest: unrecognized arguments: --nope (see tidal backtest --help)",
        ),
        (
            ["--nope", "backtest", "t.csv"],
            "tidal: unrecognized arguments: --nope (see tidal --help)",
        ),
        (["demo", "--every", "x"], "tidal demo: argument --every: invalid float value: 'x'"),
        (["forecast", "t.csv", "--quantile", "x"], "tidal forecast: argument --quantile: "),
        (["bogus"], "tidal: argument COMMAND: invalid choice: 'bogus'"),
        ([], "tidal: the following arguments are required: COMMAND (see tidal --help)"),
    ],
    ids=[
        "type",
        "choice",
        "missing",
        "unknown",
        "unknown-before-the-command",
        "demo",
        "forecast",
        "command",
        "no-command",
    ],
)
def test_a_bad_flag_is_one_line_without_the_usage(
    capsys: pytest.CaptureFixture[str], argv: list[str], says: str
) -> None:
    """argparse printed its usage, a dozen lines, above the error; every other error of
    tidal's is one line naming the command. Still exit 2."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(says)
    assert "usage" not in err


@pytest.mark.parametrize(
    ("argv", "unbuffered"),
    [
        (["backtest", "--policies", "oracle"], False),
        (["backtest", "--policies", "oracle", "--json"], False),
        (["backtest", "--policies", "oracle", "--json"], True),
        (["forecast", "--models", "seasonal-naive", "--json"], False),
    ],
    ids=["table", "json", "json-unbuffered", "forecast-json"],
)
def test_a_reader_that_has_gone_ends_the_command_quietly(
    tmp_path: Path, argv: list[str], unbuffered: bool
) -> None:
    """``tidal backtest ... | head -1``: the reader stops reading, and what it did not read is
    not wanted. Exit 0 with nothing on stderr, not rich's exit 1 or Python's 120 and
    "Exception ignored ... BrokenPipeError" when it flushes the output at exit."""
    trace = _write_trace(tmp_path / "t.csv", 2 * 1440)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    if unbuffered:
        env["PYTHONUNBUFFERED"] = "1"
    read, write = os.pipe()
    os.close(read)  # a reader gone before the first line is written
    try:
        done = subprocess.run(
            [sys.executable, "-m", "controller", argv[0], str(trace), "--jobs", "1", *argv[1:]],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            timeout=300,
        )
    finally:
        os.close(write)
    progress = ("t: ", "tidal forecast: t: ")
    problems = [line for line in done.stderr.splitlines() if not line.startswith(progress)]
    assert (done.returncode, problems) == (0, [])


@pytest.mark.parametrize(
    ("argv", "jobs"),
    [
        (["backtest", "--policies", "oracle", "--json"], "1"),
        (["backtest", "--policies", "oracle", "--json"], "2"),
        (["forecast", "--models", "seasonal-naive", "--json"], "1"),
    ],
    ids=["backtest", "backtest-two-workers", "forecast"],
)
def test_a_log_reader_gone_leaves_the_report_whole(
    tmp_path: Path, argv: list[str], jobs: str
) -> None:
    """``tidal backtest ... --json 2>&1 >report.json | head -1``: the reader of the progress
    stops reading, not the report's. The command goes on, writes the whole report to standard
    output and exits 0; before, its first line of progress ended it with exit 0 and no report."""
    traces = [_write_trace(tmp_path / f"{name}.csv", 2 * 1440) for name in ("t", "u")]
    read, write = os.pipe()
    os.close(read)  # the log's reader gone before the first line of progress
    try:
        command = [sys.executable, "-m", "controller", argv[0], *map(str, traces)]
        done = subprocess.run(
            [*command, "--jobs", jobs, *argv[1:]],
            stdout=subprocess.PIPE,
            stderr=write,
            text=True,
            timeout=300,
        )
    finally:
        os.close(write)
    assert done.returncode == 0
    report = json.loads(done.stdout)
    assert set(report["traces"]) == {"t", "u"}


@pytest.mark.parametrize(
    ("command", "flags", "says"),
    [
        ("backtest", ["--plot", "{dir}"], "--plot {dir}: is a folder: give the .png file"),
        ("backtest", ["--plot", "{dir}/new/"], "--plot {dir}/new/: names a folder"),
        ("backtest", ["--plot", ""], "--plot '': names no file: give the .png file to write"),
        ("backtest", ["--score-from", ""], "--score-from '' is not an ISO-8601 timestamp"),
        (
            "backtest",
            ["--score-from", "0001-01-01T00:00:00+01:00"],
            "--score-from '0001-01-01T00:00:00+01:00' is outside the years 1 to 9999 in UTC",
        ),
        ("backtest", ["{dir}"], "{dir}: a directory, not a trace (give its .csv files)"),
        ("demo", ["--plot", "{dir}"], "--plot {dir}: is a folder"),
        ("demo", ["--plot", ""], "--plot '': names no file"),
        ("forecast", ["--plot", ""], "error: --plot '': names no file"),
        ("forecast", ["--show", "--model", ""], "error: unknown forecast model ''"),
        (
            "forecast",
            ["--prometheus-url", "http://127.0.0.1:9", "--query", "up", "--step", ""],
            "error: --step: '' is not a duration",
        ),
    ],
    ids=[
        "plot-folder",
        "plot-slash",
        "plot-empty",
        "score-from-empty",
        "score-from-year-0-in-utc",
        "trace-folder",
        "demo-plot-folder",
        "demo-plot-empty",
        "forecast-plot-empty",
        "forecast-model-empty",
        "forecast-step-empty",
    ],
)
def test_a_folder_or_an_empty_value_is_refused_with_its_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, flags: list[str], says: str
) -> None:
    """--plot FOLDER wrote FOLDER.png beside it; an empty --plot, --score-from, or (tidal
    forecast) --model or --step was taken for the flag left out. Each is refused, exit 2."""
    folder = tmp_path / "plots"
    folder.mkdir()
    trace = _write_trace(tmp_path / "t.csv", 600)
    argv = [command, *([] if command == "demo" or "--query" in flags else [str(trace)])]
    argv += [flag.format(dir=folder) for flag in flags]
    assert main([*argv, *(["--jobs", "1"] if command == "backtest" else [])]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"tidal {command}: {says.format(dir=folder)}")
    assert err.count("\n") == 1
    assert not (tmp_path / "plots.png").exists()


def _plateau(path: Path, replicas: float) -> Path:
    """Per-minute daily load with twenty minutes whose load needs ``replicas`` at perReplica
    once the trace is scaled to the default --peak-replicas (100 at its 99th percentile)."""
    values = [float(_daily(i)) for i in range(3000)]
    values[2500:2520] = [math.inf] * 20
    p99 = float(np.percentile(values, 99))  # the plateau is above it, whatever its height
    values[2500:2520] = [replicas / 100 * p99] * 20
    lines = [f"{format_time(START + 60.0 * i)},{v!r}" for i, v in enumerate(values)]
    path.write_text("timestamp,load\n" + "\n".join(lines) + "\n")
    return path


def test_the_replica_cap_counts_the_headroom(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A peak that needs 95,000 replicas at perReplica needs 104,500 with the default 10%
    headroom, as tidal and the HPA size it: the spec's cap of 100,000 held them below what
    they asked for. Refused, naming --headroom; without headroom, or at 85,000, it fits."""
    from controller.backtest import load_for_replay
    from controller.simulator import Scenario

    tall = _plateau(tmp_path / "tall.csv", 95_000)
    assert main(["backtest", str(tall), "--jobs", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"tidal backtest: {tall}: its highest load (")
    assert "needs 104,500 replicas with --headroom 0.1 once its 99th percentile" in err
    assert main(["backtest", str(tall), "--jobs", "1", "--headroom", "0.06"]) == 2
    assert "needs 100,700 replicas with --headroom 0.06" in capsys.readouterr().err
    assert load_for_replay(tall, scenario=Scenario(), headroom=0.0).load.values.max() == (
        pytest.approx(95_000 * 5000)
    )
    fits = _plateau(tmp_path / "fits.csv", 85_000)
    assert load_for_replay(fits, scenario=Scenario()).load.values.max() == pytest.approx(
        85_000 * 5000
    )
    with pytest.raises(ValueError, match=r"needs 110,500 replicas with --headroom 0\.3"):
        load_for_replay(fits, scenario=Scenario(), headroom=0.3)


@pytest.mark.parametrize(
    ("command", "jobs", "says"),
    [
        ("backtest", "-1", "tidal backtest: --jobs must be 0 (one per core) or more, got -1\n"),
        ("forecast", "0", "tidal forecast: error: --jobs must be at least 1, got 0\n"),
        ("forecast", "-2", "tidal forecast: error: --jobs must be at least 1, got -2\n"),
    ],
    ids=["backtest-negative", "forecast-zero", "forecast-negative"],
)
def test_a_number_of_jobs_below_one_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, jobs: str, says: str
) -> None:
    """A negative --jobs (or none for tidal forecast) was run as one process, unsaid."""
    trace = _write_trace(tmp_path / "t.csv", 600)
    assert main([command, str(trace), "--json", "--jobs", jobs]) == 2
    assert capsys.readouterr().err == says


def test_a_trace_through_a_pipe_is_read(tmp_path: Path) -> None:
    """`tidal backtest <(zcat trace.csv.gz)`: a pipe is no regular file, but it is a trace."""
    trace = _write_trace(tmp_path / "t.csv", 3 * 1440)
    read, write = os.pipe()
    done = subprocess.Popen(
        [sys.executable, "-m", "controller", "backtest", f"/dev/fd/{read}", "--json"],
        pass_fds=(read,),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    os.close(read)
    with os.fdopen(write, "w") as pipe:
        pipe.write(trace.read_text())
    out, err = done.communicate(timeout=300)
    assert done.returncode == 0, err
    assert list(json.loads(out)["traces"]) == [str(read)]


def test_the_utilization_threshold_under_packed_is_warned_about(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The threshold counts only where pods are counted per node: with Packed it would be
    taken silently and change nothing."""
    trace = _write_trace(tmp_path / "t.csv", 3 * 1440)
    argv = [str(trace), "--jobs", "1", "--policies", "oracle"]
    assert main(["backtest", *argv, "--scale-down-utilization-threshold", "0.3"]) == 0
    warning = "tidal backtest: warning: --scale-down-utilization-threshold counts only with"
    assert warning in capsys.readouterr().err
    flags = ["--scale-down-utilization-threshold", "0.3", "--cloud-scoring", "MostAllocated"]
    assert main(["backtest", *argv, *flags]) == 0
    assert "counts only with" not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--quantile", "nan"], "--quantile must be a number, got nan"),
        (["--quantile", "NaN"], "--quantile must be a number, got nan"),
        (["--headroom", "nan"], "--headroom must be a number, got nan"),
    ],
    ids=["quantile", "quantile-capitals", "headroom"],
)
def test_a_number_flag_given_nan_says_it_must_be_a_number(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], says: str
) -> None:
    """argparse's float takes "nan", which every bound compares false with: the spec said only
    "Input should be less than 1". One line naming the flag, exit 2, before any replay."""
    trace = _write_trace(tmp_path / "t.csv", 600)
    assert main(["backtest", str(trace), "--jobs", "1", *flags]) == 2
    assert capsys.readouterr().err == f"tidal backtest: {says}\n"


def test_score_from_takes_utc_as_z_or_lower_case_z(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """RFC 3339's lower-case z is UTC, as Z is: it was refused as "not an ISO-8601 timestamp".
    The same minutes are scored, to the same report."""
    trace = _write_trace(tmp_path / "t.csv", 600)
    argv = ["backtest", str(trace), "--jobs", "1", "--policies", "oracle", "--json"]
    said = []
    for zulu in ("Z", "z"):
        assert main([*argv, "--score-from", _minute(500).removesuffix("Z") + zulu]) == 0
        captured = capsys.readouterr()
        assert "t: replaying 100 scored minutes" in captured.err
        said.append(captured.out)
    assert said[0] == said[1]
