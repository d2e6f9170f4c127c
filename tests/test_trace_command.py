"""``tidal trace`` without a Prometheus: its flags refused before any query, and the file it
writes read back by the trace reader as the series it was given."""

from __future__ import annotations

import base64
import http.server
import io
import json
import math
import os
import stat
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from controller.cli import main
from controller.trace_command import MOST_SAMPLES, write_trace
from forecasts.series import LoadSeries, TraceWarning, format_timestamp, load_trace

#: Nothing listens on port 1 of the loopback: a flag that passed its checks would end in
#: "unreachable", which none of the expected messages below says.
NOWHERE = "http://127.0.0.1:1"


@pytest.fixture(autouse=True)
def _no_tidal_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine's own ``TIDAL_*`` variables (a token, a timeout) do not reach these tests."""
    for name in list(os.environ):
        if name.upper().startswith("TIDAL_"):
            monkeypatch.delenv(name)


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
        pytest.param(
            [*BASE, "--step", "45s"], "--step 45s would be read back on a 30s grid", id="45s"
        ),
        pytest.param([*BASE, "--step", "7s"], "--step 7s would be read back on a 6s grid", id="7s"),
        pytest.param(
            [*BASE, "--step", "90s"], "--step 90s would be read back on a 60s grid", id="90s"
        ),
        pytest.param(
            [*BASE, "--step", "2m"], "--step 2m would be read back on a 60s grid", id="2m"
        ),
        pytest.param(
            [*BASE, "--end", "1970-01-02T00:00:00Z"],
            "--end 1970-01-02T00:00:00Z less --history 28d is before 1970",
            id="before-1970",
        ),
        pytest.param(
            [*BASE, "-o", "/tmp/newdir/"],
            "--output /tmp/newdir/: a directory, not a file",
            id="trailing-slash",
        ),
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
        pytest.param([*BASE, "-o", "/tmp/newdir/."], "a directory, not a file", id="slash-dot"),
        pytest.param([*BASE, "-o", "/tmp/gone/.."], "a directory, not a file", id="slash-dots"),
        pytest.param(
            [*BASE, "-o", "/proc/self/fd/0/x.csv"], "--output /proc/self/fd/0/x.csv: ", id="odd"
        ),
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
    """Every finite load is written as the same float, a NaN as an empty load, each on its
    own minute."""
    values = np.array([0.1, 1e-300, 123456789.123456789, math.nan, 7.0, 2.0 / 3.0, 1e300, 5.0])
    series = LoadSeries(1_700_000_040.0, 60.0, values)
    out = io.StringIO()
    assert write_trace(series, out) == len(values)
    rows = out.getvalue().splitlines()
    assert rows[0] == "timestamp,load" and len(rows) == len(values) + 1
    assert rows[1] == "2023-11-14T22:14:00Z,0.1" and rows[4] == "2023-11-14T22:17:00Z,"
    for row, when, value in zip(rows[1:], series.times(), values, strict=True):
        stamp, load = row.split(",")
        assert stamp == format_timestamp(when)
        assert (load == "") if math.isnan(value) else (float(load) == value)


@pytest.mark.parametrize("step", [1.0, 15.0, 30.0, 60.0, 300.0, 420.0, 3600.0])
def test_every_step_taken_reads_back_on_its_own_grid(tmp_path: Path, step: float) -> None:
    """The steps --step takes are the ones the trace reader keeps: the file reads back as the
    series written, on the same epoch-aligned grid, with no value interpolated."""
    rng = np.random.default_rng(int(step))
    values = rng.lognormal(5.0, 1.0, 400)
    series = LoadSeries(math.ceil(1_700_000_000 / step) * step, step, values)
    path = tmp_path / "t.csv"
    with path.open("w") as out:
        write_trace(series, out)
    read = load_trace(path)
    assert (read.start, read.step) == (series.start, series.step)
    np.testing.assert_array_equal(read.values, series.values)


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


# --- the output, with the read stubbed: what a Prometheus answered is written or refused -----


@pytest.fixture
def answered(monkeypatch: pytest.MonkeyPatch) -> list[LoadSeries]:
    """What the stubbed read returns: the first series in the list (set by the test)."""
    from controller.operator import prometheus_source

    given: list[LoadSeries] = []

    def read_history(self: object, query: str, **_: object) -> LoadSeries:
        return given[0]

    monkeypatch.setattr(prometheus_source.PrometheusLoadSource, "read_history", read_history)
    return given


TWO_DAYS = LoadSeries(1_700_000_040.0, 60.0, np.arange(1.0, 2881.0))


def test_one_sample_is_refused_and_nothing_written(
    answered: list[LoadSeries], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    answered.append(LoadSeries(1_700_000_040.0, 60.0, np.array([5.0])))
    out = tmp_path / "x.csv"
    assert _trace(*BASE, "-o", str(out)) == 2
    err = capsys.readouterr().err
    assert "one sample (2023-11-14T22:14:00Z)" in err and "a trace needs at least two" in err
    assert list(tmp_path.iterdir()) == []


def test_a_symlink_is_written_through_and_its_file_keeps_its_mode(
    answered: list[LoadSeries], tmp_path: Path
) -> None:
    answered.append(TWO_DAYS)
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "eu-west.csv"
    target.write_text("old\n")
    target.chmod(0o640)
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    assert _trace(*BASE, "-o", str(link)) == 0
    assert link.is_symlink() and target.stat().st_mode & 0o777 == 0o640
    assert len(load_trace(target)) == len(TWO_DAYS)
    assert sorted(p.name for p in (tmp_path / "real").iterdir()) == ["eu-west.csv"]


def test_a_new_file_gets_what_the_umask_gives(answered: list[LoadSeries], tmp_path: Path) -> None:
    answered.append(TWO_DAYS)
    previous = os.umask(0o027)
    try:
        assert _trace(*BASE, "-o", str(tmp_path / "new.csv")) == 0
    finally:
        os.umask(previous)
    assert (tmp_path / "new.csv").stat().st_mode & 0o777 == 0o640


def test_a_fifo_is_written_as_it_is(answered: list[LoadSeries], tmp_path: Path) -> None:
    answered.append(TWO_DAYS)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()))
    reader.start()
    assert _trace(*BASE, "-o", str(fifo)) == 0
    reader.join(timeout=30)
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert got and got[0].startswith("timestamp,load\n") and got[0].count("\n") == 2881


def test_a_write_that_fails_leaves_the_old_file_and_no_temporary(
    answered: list[LoadSeries],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Interrupted half way through the rows: exit 130, the file as it was, nothing beside it."""
    from controller import trace_command

    answered.append(TWO_DAYS)
    out = tmp_path / "eu-west.csv"
    out.write_text("old\n")

    def half_then_interrupted(series: LoadSeries, sink: io.TextIOBase) -> int:
        sink.write("timestamp,load\n2023-11-14T22:14:00Z,1.0\n")
        raise KeyboardInterrupt

    monkeypatch.setattr(trace_command, "write_trace", half_then_interrupted)
    assert _trace(*BASE, "-o", str(out)) == 130
    assert out.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["eu-west.csv"]
    assert capsys.readouterr().err.strip().splitlines()[-1] == "interrupted"


# --- Prometheus reached as the operator reaches it: the TIDAL_PROMETHEUS_* variables ---------


class _Recorder(http.server.BaseHTTPRequestHandler):
    """A Prometheus stand-in on loopback: records each request's headers and answers every
    query_range with a load of 7 at each grid point asked for."""

    seen: ClassVar[list[dict[str, str]]] = []

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        query = urllib.parse.urlsplit(self.path).query
        params = urllib.parse.parse_qs(query + "&" + body)
        type(self).seen.append(dict(self.headers.items()))
        first, last = float(params["start"][0]), float(params["end"][0])
        step = float(params["step"][0].rstrip("s"))
        points = [[first + i * step, "7"] for i in range(round((last - first) / step) + 1)]
        answer = {
            "status": "success",
            "data": {"resultType": "matrix", "result": [{"metric": {}, "values": points}]},
        }
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = _answer
    do_POST = _answer

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[str]:
    _Recorder.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_the_variables_of_tidal_run_reach_prometheus(
    recorder: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bearer token and extra headers set for the operator are sent by ``tidal trace`` too."""
    monkeypatch.setenv("TIDAL_PROMETHEUS_TOKEN", "s3cret")
    monkeypatch.setenv("TIDAL_PROMETHEUS_HEADERS", "X-Scope-OrgID: chat-eu")
    out = tmp_path / "t.csv"
    argv = ["--prometheus-url", recorder, "--query", "sum(up)", "--history", "1h", "-o", str(out)]
    assert _trace(*argv) == 0
    assert _Recorder.seen
    for headers in _Recorder.seen:
        assert headers.get("Authorization") == "Bearer s3cret"
        assert headers.get("X-Scope-OrgID") == "chat-eu"
    read = load_trace(out)
    assert len(read) in (60, 61) and (read.values == 7.0).all()  # 61 when now is on the minute


def test_basic_auth_from_the_variables(
    recorder: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TIDAL_PROMETHEUS_USERNAME", "ops")
    monkeypatch.setenv("TIDAL_PROMETHEUS_PASSWORD", "hunter2")
    argv = ["--prometheus-url", recorder, "--query", "sum(up)", "--history", "1h"]
    assert _trace(*argv, "-o", str(tmp_path / "t.csv")) == 0
    expected = "Basic " + base64.b64encode(b"ops:hunter2").decode()
    assert {h.get("Authorization") for h in _Recorder.seen} == {expected}


@pytest.mark.parametrize("command", ["trace", "forecast"])
def test_a_bad_variable_is_named_in_one_line(
    command: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Refused before any query, naming the variable, as ``tidal run`` names it."""
    monkeypatch.setenv("TIDAL_PROMETHEUS_TIMEOUT", "0")
    monkeypatch.setenv("TIDAL_PROMETHEUS_HEADERS", "no colon here")
    assert main([command, *BASE]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"tidal {command}: error: ")
    assert "TIDAL_PROMETHEUS_HEADERS: the 1st header is not 'Name: value'" in lines[0]
    assert "no colon here" not in lines[0]
    assert "TIDAL_PROMETHEUS_TIMEOUT: " in lines[0] and "unreachable" not in lines[0].lower()


def test_a_symlink_loop_is_refused_before_the_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    loop = tmp_path / "loop.csv"
    loop.symlink_to(loop)
    assert _trace(*BASE, "-o", str(loop)) == 2
    assert "Too many levels of symbolic links" in capsys.readouterr().err
    assert loop.is_symlink()


def test_set_user_id_is_not_kept_and_root_keeps_the_owner(
    answered: list[LoadSeries], tmp_path: Path
) -> None:
    answered.append(TWO_DAYS)
    out = tmp_path / "t.csv"
    out.write_text("old\n")
    out.chmod(0o4755)
    if os.geteuid() == 0:
        os.chown(out, 65534, 65534)
    assert _trace(*BASE, "-o", str(out)) == 0
    info = out.stat()
    assert info.st_mode & 0o7777 == 0o755
    if os.geteuid() == 0:
        assert (info.st_uid, info.st_gid) == (65534, 65534)


def test_another_users_file_in_a_sticky_directory_is_refused_before_the_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file of another user in /tmp-like directory cannot be renamed over, even with write
    access to both: refused at once, not after the read."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    out = shared / "t.csv"
    out.write_text("old\n")
    monkeypatch.setattr(os, "geteuid", lambda: 54321)  # neither the file's nor the directory's
    assert _trace(*BASE, "-o", str(out)) == 2
    assert "is another user's in a sticky directory" in capsys.readouterr().err


def test_dev_stdout_is_written_as_it_is_open(recorder: str, tmp_path: Path) -> None:
    """``-o /dev/stdout`` with standard output appending to a log: the log keeps its lines and
    gains the trace's, where reopening or renaming over it would lose them."""
    log = tmp_path / "log.txt"
    log.write_text("IMPORTANT LOG LINE\n")
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("TIDAL_")}
    argv = ["--prometheus-url", recorder, "--query", "sum(up)", "--history", "1h"]
    with log.open("a") as sink:
        done = subprocess.run(
            [sys.executable, "-m", "controller", "trace", *argv, "-o", "/dev/stdout"],
            stdout=sink,
            stderr=subprocess.PIPE,
            env=env,
            check=False,
            timeout=120,
        )
    assert done.returncode == 0, done.stderr
    lines = log.read_text().splitlines()
    assert lines[0] == "IMPORTANT LOG LINE" and lines[1] == "timestamp,load"
    assert len(lines) in (62, 63)


def test_credentials_go_only_to_the_prometheus_they_are_for(
    recorder: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """In an operator's pod the variables hold its Prometheus's token: a URL typed on the command
    line is refused before anything is sent, unless it is that Prometheus."""
    monkeypatch.setenv("TIDAL_PROMETHEUS_URL", "https://prometheus.monitoring.svc:9090")
    monkeypatch.setenv("TIDAL_PROMETHEUS_TOKEN", "s3cret")
    argv = ["--query", "sum(up)", "--history", "1h", "-o", str(tmp_path / "t.csv")]
    assert _trace("--prometheus-url", recorder, *argv) == 2
    err = capsys.readouterr().err
    assert "is not the Prometheus of TIDAL_PROMETHEUS_URL" in err and "s3cret" not in err
    assert _Recorder.seen == []
    monkeypatch.setenv("TIDAL_PROMETHEUS_URL", recorder.upper().replace("HTTP://", "http://") + "/")
    assert _trace("--prometheus-url", recorder, *argv) == 0
    assert {h.get("Authorization") for h in _Recorder.seen} == {"Bearer s3cret"}


def test_the_live_forecast_sends_the_variables_too(
    recorder: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``tidal forecast --prometheus-url`` reads through the same source: the token reaches
    Prometheus, and the flat load read back is forecast flat."""
    monkeypatch.setenv("TIDAL_PROMETHEUS_TOKEN", "s3cret")
    argv = ["--prometheus-url", recorder, "--query", "sum(up)", "--step", "5m", "--json"]
    assert main(["forecast", *argv, "--history", "3d", "--model", "seasonal-naive"]) == 0
    assert _Recorder.seen and {h.get("Authorization") for h in _Recorder.seen} == {"Bearer s3cret"}
    shown = json.loads(capsys.readouterr().out)
    assert {row["point"] for row in shown["forecast"]} == {7.0}


def test_a_file_its_permissions_keep_from_writing_is_not_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """As a shell's ``>`` would refuse it (root may write anything, so access is stubbed)."""
    out = tmp_path / "t.csv"
    out.write_text("old\n")
    out.chmod(0o444)
    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda p, mode: False if Path(p) == out else real_access(p, mode)
    )
    assert _trace(*BASE, "-o", str(out)) == 2
    assert "t.csv cannot be written (its permissions)" in capsys.readouterr().err
    assert out.read_text() == "old\n"
