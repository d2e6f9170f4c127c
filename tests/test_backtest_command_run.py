"""``tidal backtest``'s run, piece by piece (controller.backtest_command): the minutes a replay
reports from a worker, the bars on a terminal and the plain lines without one, at the pace
``PROGRESS_EVERY`` sets; the workers a run takes; the report's output."""

from __future__ import annotations

import io
import json
import math
import threading
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from rich.console import Console
from rich.progress import Progress

from controller import backtest_command
from controller.backtest_command import _Progress, _run_one, _Stopped, print_table
from controller.cli import main
from forecasts import interrupts

START = 1_577_836_800.0  # 2020-01-01T00:00:00Z


def _minute(minutes: int) -> str:
    """The time ``minutes`` after START, as the traces and --score-from write it."""
    return f"{datetime.fromtimestamp(START + 60 * minutes, UTC):%Y-%m-%dT%H:%M:%SZ}"


def _trace(path: Path, minutes: int = 600, *, missing: range = range(0)) -> Path:
    """A daily wave of ``minutes`` one-minute samples, as ``timestamp,load`` CSV; the rows of
    the ``missing`` minutes have no load."""
    rows = [
        f"{_minute(i)},"
        + ("" if i in missing else f"{100 + 50 * math.sin(2 * math.pi * i / 1440):.1f}")
        for i in range(minutes)
    ]
    path.write_text("timestamp,load\n" + "\n".join(rows) + "\n")
    return path


#: One policy's metrics, each a different number, as the report holds them.
_METRICS = {
    "unserved_fraction": 0.001,
    "underprovisioned_minutes": 3,
    "cloud_replica_hours": 12.0,
    "physical_replica_hours": 40.0,
    "replicas_removed": 5,
}


def _table(traces: dict[str, Any], *, width: int = 400) -> list[str]:
    """The lines :func:`print_table` prints for a report of ``traces``."""
    console = Console(record=True, width=width)
    print_table({"traces": traces}, console)
    return console.export_text().splitlines()


class _Clock:
    """``time.monotonic`` as the test sets it."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    fake = _Clock()
    monkeypatch.setattr(backtest_command, "time", fake)
    monkeypatch.setattr(backtest_command, "PROGRESS_EVERY", 30.0)
    return fake


def _progress(*names: str, terminal: bool) -> tuple[_Progress, Progress, io.StringIO]:
    out = io.StringIO()
    err = Console(file=out, force_terminal=terminal, width=200)
    bars = Progress(console=Console(file=io.StringIO()), disable=True)
    return _Progress(bars, err, list(names)), bars, out


def _bar(bars: Progress, name: str) -> tuple[float, float | None]:
    task = next(task for task in bars.tasks if task.description == name)
    return task.completed, task.total


def test_without_a_terminal_each_replay_is_announced_once_then_shown_at_its_pace(
    clock: _Clock,
) -> None:
    """The first report names the minutes to replay; where each unfinished replay has got is
    shown once ``PROGRESS_EVERY`` has passed since the last showing, not at every report."""
    progress, bars, out = _progress("elb", "wiki", terminal=False)
    progress.minute("elb", 1, 600)
    progress.minute("wiki", 1, 300)
    clock.now = 29.0
    progress.minute("elb", 240, 600)
    assert out.getvalue().splitlines() == [
        "elb: replaying 600 scored minutes",
        "wiki: replaying 300 scored minutes",
    ]
    clock.now = 30.0
    progress.minute("wiki", 240, 300)
    clock.now = 59.0
    progress.minute("elb", 480, 600)
    assert out.getvalue().splitlines()[2:] == [
        "elb: 240 of 600 minutes replayed (40%)",
        "wiki: 240 of 300 minutes replayed (80%)",
    ]
    clock.now = 60.0
    progress.show_if_due()
    assert out.getvalue().splitlines()[4:] == [
        "elb: 480 of 600 minutes replayed (80%)",
        "wiki: 240 of 300 minutes replayed (80%)",
    ]
    assert _bar(bars, "elb") == (480, 600)
    assert _bar(bars, "wiki") == (240, 300)


def test_a_replay_at_its_last_minute_is_not_listed_as_running(clock: _Clock) -> None:
    """Its last minute reported, a replay waits only for its result: it is not shown as 100%
    still running."""
    progress, _, out = _progress("elb", "wiki", terminal=False)
    progress.minute("elb", 600, 600)
    progress.minute("wiki", 240, 300)
    clock.now = 30.0
    progress.show_if_due()
    assert out.getvalue().splitlines()[2:] == ["wiki: 240 of 300 minutes replayed (80%)"]


def test_a_finished_replay_is_said_once_and_no_late_report_brings_it_back(
    clock: _Clock,
) -> None:
    """A worker's last report can arrive after its result: the replay stays finished, its bar
    full, and it is no longer listed among those still running."""
    progress, bars, out = _progress("elb", "wiki", terminal=False)
    progress.minute("elb", 1, 600)
    progress.minute("wiki", 1, 300)
    progress.finished(SimpleNamespace(name="elb", seconds=12.4))
    progress.minute("elb", 600, 600)
    clock.now = 31.0
    progress.show_if_due()
    assert out.getvalue().splitlines()[2:] == [
        "elb: replayed in 12s",
        "wiki: 1 of 300 minutes replayed (0%)",
    ]
    assert _bar(bars, "elb") == (1, 1)


def test_on_a_terminal_only_the_bars_move(clock: _Clock) -> None:
    """Rich's bars say it all on a terminal: no line is printed, however long it runs."""
    progress, bars, out = _progress("elb", terminal=True)
    progress.minute("elb", 1, 600)
    clock.now = 100.0
    progress.minute("elb", 240, 600)
    progress.show_if_due()
    assert _bar(bars, "elb") == (240, 600)
    progress.finished(SimpleNamespace(name="elb", seconds=3.0))
    assert (out.getvalue(), _bar(bars, "elb")) == ("", (1, 1))


class _Queue:
    def __init__(self) -> None:
        self.items: list[tuple[str, int, int]] = []

    def put(self, item: tuple[str, int, int]) -> None:
        self.items.append(item)


def _replaying(minutes: int) -> Any:
    """A replay that only reports its minutes, one to ``minutes``."""

    def fake(trace: Any, **kwargs: Any) -> str:
        for done in range(1, minutes + 1):
            kwargs["on_minute"](done, minutes)
        return f"run of {trace.name}"

    return fake


def test_a_worker_reports_the_minutes_a_replay_reports_and_stops_when_told(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """From a worker process only the first minute, every fourth hour and the last cross to
    the parent; once another replay failed, the next of those minutes ends this one."""
    monkeypatch.setattr(backtest_command, "replay", _replaying(600))
    trace, queue, stop = SimpleNamespace(name="elb"), _Queue(), threading.Event()
    ran = _run_one(trace, None, "auto", ("tidal",), {}, queue, stop)  # type: ignore[arg-type]
    assert ran == "run of elb"
    assert queue.items == [("elb", 1, 600), ("elb", 240, 600), ("elb", 480, 600), ("elb", 600, 600)]
    stop.set()
    queue.items.clear()
    with pytest.raises(_Stopped):
        _run_one(trace, None, "auto", ("tidal",), {}, queue, stop)  # type: ignore[arg-type]
    assert queue.items == []


@pytest.mark.parametrize(
    ("jobs", "cores", "workers"),
    [
        ("0", 4, 2),
        ("0", 1, 1),
        ("0", None, 1),
        ("2", 1, 2),
        ("3", 1, 2),
        ("40", 4, 2),
        ("1", 4, 1),
        (None, 4, 2),
    ],
    ids=[
        "one-per-trace",
        "one-per-core",
        "cores-unknown",
        "as-asked",
        "asked-more-than-traces",
        "asked-far-more",
        "asked-one",
        "by-default",
    ],
)
def test_the_workers_are_one_per_core_and_no_more_than_the_traces(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    jobs: str | None,
    cores: int | None,
    workers: int,
) -> None:
    """``--jobs 0``, the default: a worker per core (one where the count is unknown); any
    other number as asked. Never more than there are traces, asked for or not (``--jobs 40``
    was 40 for two traces), as ``tidal forecast --jobs`` takes no more than its evaluations.
    One worker replays in this process."""
    seen: list[int] = []

    def parallel(traces: list[Any], runs: dict[str, Any], **kwargs: Any) -> int:
        seen.append(kwargs["jobs"])
        return 7

    def sequential(trace: Any, **kwargs: Any) -> Any:
        seen.append(1)
        raise ValueError("replayed here")

    monkeypatch.setattr(backtest_command.os, "cpu_count", lambda: cores)
    monkeypatch.setattr(backtest_command, "_replay_in_parallel", parallel)
    monkeypatch.setattr(backtest_command, "replay", sequential)
    traces = [str(_trace(tmp_path / f"{name}.csv")) for name in ("a", "b")]
    flags = [] if jobs is None else ["--jobs", jobs]
    code = main(["backtest", *traces, *flags, "--policies", "oracle"])
    assert (seen, code) == ([workers], 7 if workers > 1 else 2)


def test_a_parallel_run_that_succeeds_exits_0_with_every_trace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two traces in two worker processes: both in the report, exit code 0, and the JSON is
    one line ended by a newline, as a shell's pipe expects."""
    traces = [str(_trace(tmp_path / f"{name}.csv")) for name in ("a", "b")]
    argv = ["backtest", *traces, "--jobs", "2", "--policies", "oracle", "--json"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert out.endswith("}\n") and out.count("\n") == 1
    assert set(json.loads(out)["traces"]) == {"a", "b"}
    for name in ("a", "b"):
        assert f"{name}: replayed in " in captured.err


def test_the_pool_is_asked_for_no_more_workers_than_traces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--jobs 40`` on two traces: the process pool itself is made with two workers."""
    asked: list[int | None] = []

    class Pool(ProcessPoolExecutor):
        def __init__(self, max_workers: int | None = None, **kwargs: Any) -> None:
            asked.append(max_workers)
            super().__init__(max_workers, **kwargs)

    monkeypatch.setattr(interrupts, "ProcessPoolExecutor", Pool)  # where the pool is made
    traces = [str(_trace(tmp_path / f"{name}.csv")) for name in ("a", "b")]
    argv = ["backtest", *traces, "--jobs", "40", "--policies", "oracle", "--json"]
    assert main(argv) == 0
    assert asked == [2]
    assert set(json.loads(capsys.readouterr().out)["traces"]) == {"a", "b"}


#: The table's headings, in the report's order.
_HEADINGS = (
    "trace",
    "policy",
    "unserved",
    "minutes short",
    "cloud replica hours",
    "physical replica hours",
    "replicas removed",
)


def test_the_table_heads_each_column() -> None:
    """Every metric under its own heading, in the report's order; the trace and policy to the
    left of their columns, the numbers to the right."""
    lines = _table({"t": {"oracle": _METRICS}})
    header = next(line for line in lines if "policy" in line)
    assert [header.index(name) for name in _HEADINGS] == sorted(map(header.index, _HEADINGS))
    cells = next(line for line in lines if " t " in line).split("│")[1:-1]
    assert [cell.strip() for cell in cells] == ["t", "oracle", "0.10000%", "3", "12", "40", "5"]
    # Names to the left, numbers to the right of their columns.
    assert [cell.lstrip() == cell[1:] for cell in cells[:2]] == [True, True]
    assert [cell.rstrip() == cell[:-1] for cell in cells[2:]] == [True] * 5


def test_a_narrow_terminal_wraps_the_headings_and_the_trace_names_cutting_none() -> None:
    """On 80 columns every heading and every trace's name is there whole, over several lines:
    two traces whose names differ only at the end are told apart, and no figure is cut."""
    names = ("wc98-requests-per-minute", "wc98-requests-per-second")
    lines = _table({name: {"tidal": _METRICS} for name in names}, width=80)
    assert max(len(line) for line in lines) <= 80
    assert "…" not in "\n".join(lines)

    def columns(edge: str, join: str) -> list[str]:
        rows = [line[1:-1].split(edge) for line in lines if line.startswith(edge)]
        return [
            join.join(cell.strip() for cell in column if cell.strip())
            for column in zip(*rows, strict=True)
        ]

    assert columns("┃", " ") == list(_HEADINGS)
    traces, _policy, unserved, *_ = columns("│", "")
    assert traces == "".join(names)
    assert unserved == "0.10000%" * 2


def test_a_narrow_terminal_keeps_every_policy_name_whole() -> None:
    """With all four policies on 80 columns, "predictive" is not cut to "predicti…", and
    nothing else is cut either."""
    policies = ("tidal", "hpa", "oracle", "predictive")
    lines = _table(
        {"nyc-taxi-30min-local": dict.fromkeys(policies, _METRICS)},
        width=80,
    )
    assert max(len(line) for line in lines) <= 80
    assert "…" not in "\n".join(lines)
    rows = [line.split("│") for line in lines if line.startswith("│")]
    assert [row[2].strip() for row in rows if row[2].strip()] == list(policies)


class _Run:
    """A replay's outcome as far as the command reads it before the report."""

    def __init__(self, name: str, share: float) -> None:
        self.name, self.seconds, self.share = name, 1.0, share

    def forecast_gap(self, policy: str = "tidal") -> tuple[float, str | None]:
        # Only tidal ran: no other policy has minutes to count.
        return (self.share, "the history is short") if policy == "tidal" else (0.0, None)


@pytest.mark.parametrize(("missing", "warned"), [(15, False), (16, True)], ids=["5%", "over-5%"])
def test_minutes_without_load_are_warned_about_past_5_percent(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    missing: int,
    warned: bool,
) -> None:
    """Of 300 scored minutes, 15 without a sample (5%) pass; 16 are warned about."""
    path = _trace(tmp_path / "t.csv", missing=range(300, 300 + missing))
    monkeypatch.setattr(backtest_command, "replay", lambda *_a, **_k: _Run("t", 0.0))
    monkeypatch.setattr(backtest_command, "report", lambda *_a, **_k: {"traces": {}})
    argv = ["backtest", str(path), "--jobs", "1", "--json", "--policies", "oracle"]
    assert main([*argv, "--score-from", _minute(300)]) == 0
    err = capsys.readouterr().err
    assert ("of the scored minutes have no load sample" in err) is warned
    if warned:
        assert f"{path}: 5% of the scored minutes have no load sample" in err


@pytest.mark.parametrize(("share", "warned"), [(0.0099, False), (0.01, True)], ids=["under", "1%"])
def test_minutes_sized_without_a_forecast_are_warned_about_from_1_percent(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    share: float,
    warned: bool,
) -> None:
    """A replay where tidal sized 1% of the scored minutes reactively, for want of a forecast,
    says so with the first reason; less passes unsaid."""
    path = _trace(tmp_path / "t[b].csv")
    monkeypatch.setattr(backtest_command, "replay", lambda *_a, **_k: _Run("t[b]", share))
    monkeypatch.setattr(backtest_command, "report", lambda *_a, **_k: {"traces": {}})
    assert main(["backtest", str(path), "--jobs", "1", "--json"]) == 0
    err = capsys.readouterr().err
    said = (
        "tidal backtest: warning: t[b]: tidal had no usable forecast for 1% of the scored minutes "
        "and sized them reactively: the history is short."
    )
    assert (said in err) is warned


def test_the_table_draws_a_line_between_traces() -> None:
    """Each trace's policies are a section of their own."""
    lines = _table({"t1": {"oracle": _METRICS}, "t2": {"oracle": _METRICS}})
    first = next(i for i, line in enumerate(lines) if " t1 " in line)
    assert lines[first + 1].startswith("├") and " t2 " in lines[first + 2]


def test_names_with_brackets_are_printed_as_they_are(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A trace or plot named like console markup (``[b]``) is printed whole in every line
    about it: progress, the missing-load warning, the plot's path, an error."""
    monkeypatch.setattr(backtest_command, "PROGRESS_EVERY", 0.0)
    path = _trace(tmp_path / "r[b]x.csv", missing=range(300, 320))
    plot = tmp_path / "p[b]q.png"
    argv = ["backtest", str(path), "--jobs", "1", "--json", "--policies", "oracle"]
    assert main([*argv, "--score-from", _minute(300), "--plot", str(plot)]) == 0
    err = capsys.readouterr().err
    assert "r[b]x: replaying 300 scored minutes" in err
    assert f"warning: {path}: 7% of the scored minutes have no load sample" in err
    assert f"plot written to {plot}" in err
    assert main(["backtest", str(tmp_path / "[b]gone.csv")]) == 2
    assert f"tidal backtest: {tmp_path / '[b]gone.csv'}: no such file" in capsys.readouterr().err


def test_a_plot_that_fails_on_its_data_keeps_the_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A ValueError from the plotting (data matplotlib cannot draw) is a failed plot, one line
    after the report, as a full disk is."""

    def broken(*_args: Any, **_kwargs: Any) -> Path:
        raise ValueError("cannot draw")

    monkeypatch.setattr("controller.plotting.plot_backtest", broken)
    path = _trace(tmp_path / "t.csv")
    plot = tmp_path / "p.png"
    argv = ["backtest", str(path), "--jobs", "1", "--json", "--policies", "oracle"]
    assert main([*argv, "--score-from", _minute(500), "--plot", str(plot)]) == 2
    captured = capsys.readouterr()
    assert set(json.loads(captured.out)["traces"]["t"]) == {"oracle"}
    assert captured.err.endswith(
        f"--plot {plot}: the report stands, the plot failed: cannot draw\n"
    )


def _worker_dies(trace: Any, *_args: Any) -> Any:
    """A worker's replay that ends its process, as the kernel's OOM killer would."""
    import os

    os._exit(9)


def _worker_breaks(trace: Any, *_args: Any) -> Any:
    """A worker's replay that fails as a bug would, with no input error."""
    raise RuntimeError(f"a bug replaying {trace.name}")


@pytest.mark.parametrize(
    ("worker", "says"),
    [
        (
            _worker_dies,
            "a replay's worker process died (out of memory, or killed) while replaying",
        ),
        (_worker_breaks, ": replay failed: RuntimeError: a bug replaying "),
    ],
    ids=["died", "bug"],
)
def test_a_worker_that_dies_or_breaks_is_exit_code_1_with_one_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    worker: Any,
    says: str,
) -> None:
    """Not the trace's fault, so not exit 2: exit 1, one line, and for a bug the hint that
    ``--jobs 1`` shows where."""
    monkeypatch.setattr(backtest_command, "_run_one", worker)
    traces = [str(_trace(tmp_path / f"{name}.csv")) for name in ("a", "b")]
    assert main(["backtest", *traces, "--jobs", "2", "--policies", "oracle", "--json"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = [line for line in captured.err.splitlines() if line.startswith("tidal backtest:")]
    assert says in line
    if worker is _worker_breaks:
        assert line.endswith("(--jobs 1 shows where)")
    else:
        assert line.endswith("--jobs 1 replays one trace at a time")
