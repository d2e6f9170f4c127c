"""The demo gateway's edges: the trace's scaling at its ends and gaps, the backfilled history's
lines, the gateway's HTTP and WebSocket answers, and the replayer's connections, ticks, stop and
command line, against a real gateway served on 127.0.0.1 from a thread of the test."""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import math
import os
import select
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiohttp import WSCloseCode, WSMsgType, web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge

from controller.demo_gateway import history, replayer, server
from controller.demo_gateway.history import openmetrics_history
from controller.demo_gateway.replayer import (
    ConnectionPool,
    TraceReplay,
    default_start,
    replay,
    resolve_trace,
)
from forecasts.series import LoadSeries, parse_timestamp
from tests.support.prometheus_server import free_port

REPO = Path(__file__).resolve().parents[1]
REGION = "edge"
DAY = 86400.0

# Ten minutes from 2020-01-01T00:00:00Z. The two highest samples are equal, so the p99 is 100
# and peak 10 reads each load as load / 10 connections.
MINUTES = [10, 20, 30, 40, 50, 60, 70, 80, 100, 100]
T0 = parse_timestamp("2020-01-01T00:00:00Z")


def _write_trace(path: Path, values: list[int] = MINUTES) -> Path:
    rows = "".join(f"2020-01-01T00:{m:02d}:00Z,{v}\n" for m, v in enumerate(values))
    path.write_text("timestamp,load\n" + rows, encoding="utf-8")
    return path


class _Gateway:
    """build_app served on 127.0.0.1 from its own thread and event loop, with its registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self.port = 0

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=10)

    async def _serve(self) -> int:
        self._runner = web.AppRunner(server.build_app(REGION, registry=self.registry))
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        return int(self._runner.addresses[0][1])

    def start(self) -> None:
        self._thread.start()
        self.port = self._call(self._serve())

    def stop(self) -> None:
        if self._runner is not None:
            self._call(self._runner.cleanup())
            self._runner = None
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop.close()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def open(self) -> float | None:
        return self.registry.get_sample_value("gateway_active_connections", {"region": REGION})

    def total(self) -> float | None:
        return self.registry.get_sample_value("gateway_connections_total", {"region": REGION})


@pytest.fixture
def gateway() -> Iterator[_Gateway]:
    served = _Gateway()
    served.start()
    yield served
    served.stop()


def _settled(probe: Callable[[], object], expected: object) -> bool:
    """Whether ``probe()`` comes to equal ``expected`` within about five seconds."""
    for _ in range(500):
        if probe() == expected:
            return True
        time.sleep(0.01)
    return probe() == expected


async def _settles(probe: Callable[[], object], expected: object) -> bool:
    """:func:`_settled` for async tests: waits without blocking the test's event loop."""
    for _ in range(500):
        if probe() == expected:
            return True
        await asyncio.sleep(0.01)
    return probe() == expected


# --- TraceReplay: scaling, interpolation, gaps and ends ------------------------------------


def test_the_99th_percentile_not_another_becomes_the_peak() -> None:
    """Loads 0..100: the p99 is 99 (the p98 98, the maximum 100), so peak 99 keeps 98 as 98."""
    trace = TraceReplay(LoadSeries(0.0, 60.0, np.arange(101.0)), peak=99)
    assert trace.scale == pytest.approx(1.0)
    assert trace.connections_at(98 * 60.0) == 98
    assert trace.connections_at(100 * 60.0) == 100


@pytest.mark.parametrize(
    ("cap", "limit", "spike"),
    [
        pytest.param(None, 20, 20, id="default-twice-the-peak"),
        pytest.param(13, 13, 13, id="explicit-cap"),
        pytest.param(50, 50, 30, id="cap-above-the-spike"),
    ],
)
def test_spikes_are_clipped_at_the_cap(cap: int | None, limit: int, spike: int) -> None:
    """A spike of 3 x the p99 (p99 -> 10) is clipped at the cap, twice the peak by default."""
    values = np.array([100.0] * 200 + [300.0])
    trace = TraceReplay(LoadSeries(0.0, 60.0, values), peak=10, cap=cap)
    assert trace.limit == limit
    assert trace.connections_at(200 * 60.0) == spike
    assert trace.connections_at(0.0) == 10


# Starts at a real epoch (not 0), so that times are read relative to the trace's start.
EPOCH = 1_600_000_000.0
GAPPY = TraceReplay(
    LoadSeries(
        EPOCH,
        60.0,
        np.array([math.nan, 40.0, 10.0, 20.0, 30.0, math.nan, 60.0] + [100.0] * 8 + [80.0]),
    ),
    peak=10,
)


@pytest.mark.parametrize(
    ("offset", "expected"),
    [
        pytest.param(0.0, 0, id="leading-gap-is-no-load"),
        pytest.param(30.0, 0, id="leading-gap-is-not-interpolated"),
        pytest.param(60.0, 4, id="first-known-sample"),
        pytest.param(80.0, 3, id="a-third-of-the-way-down"),
        pytest.param(120.0 + 45.0, 2, id="three-quarters-up"),
        pytest.param(300.0, 3, id="gap-holds-the-latest-known-not-an-earlier-one"),
        pytest.param(330.0, 3, id="gap-is-not-interpolated-towards-the-next"),
        pytest.param(360.0, 6, id="after-the-gap"),
        pytest.param(14 * 60.0 + 30.0, 9, id="last-interval-is-interpolated"),
        pytest.param(15 * 60.0, 8, id="last-sample"),
        pytest.param(15 * 60.0 + 1.0, 8, id="just-after-the-end"),
        pytest.param(20 * DAY, 8, id="long-after-the-end-holds-the-last"),
    ],
)
def test_connections_at_gaps_and_ends(offset: float, expected: int) -> None:
    """Before any known sample there is no load; a gap holds the latest known value (30, not
    the 10 or 20 before it); the last interval is interpolated like any other, and past the
    last sample the last value is held."""
    assert GAPPY.connections_at(EPOCH + offset) == expected


def test_before_the_trace_is_a_value_error_naming_the_time() -> None:
    """The refusal names the trace time asked for, in ISO-8601 UTC."""
    with pytest.raises(ValueError, match=r"trace time 2020-09-13T12:26:39Z is before"):
        GAPPY.connections_at(EPOCH - 1.0)


@pytest.mark.parametrize(
    ("days", "expected_days"),
    [
        pytest.param(100.0, 14.0, id="long-trace-two-weeks-in"),
        pytest.param(56.0, 14.0, id="exactly-four-weeks"),
        pytest.param(40.0, 10.0, id="short-trace-a-quarter-in"),
    ],
)
def test_default_start_counts_from_the_trace_start(days: float, expected_days: float) -> None:
    """Two weeks or a quarter in, counted from the trace's first sample (not from epoch 0)."""
    series = LoadSeries(EPOCH, DAY, np.ones(int(days) + 1))
    assert default_start(series) == EPOCH + expected_days * DAY


def test_a_trace_is_found_as_given_or_else_in_the_traces_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An existing path (relative or absolute) and any absolute path are kept; only a relative
    name that does not exist here is looked up in the image's traces directory."""
    monkeypatch.chdir(tmp_path)
    _write_trace(tmp_path / "here.csv")
    monkeypatch.setattr(replayer, "TRACES_DIR", tmp_path / "image")
    assert resolve_trace("here.csv") == Path("here.csv")
    assert resolve_trace(str(tmp_path / "here.csv")) == tmp_path / "here.csv"
    assert resolve_trace("/nowhere/t.csv") == Path("/nowhere/t.csv")
    assert resolve_trace("wc98.csv") == tmp_path / "image" / "wc98.csv"


# --- history: the OpenMetrics lines ---------------------------------------------------------


def test_history_lines_name_the_metric_with_sorted_labels() -> None:
    """HELP and TYPE lines (gauge) come first, labels are sorted, ``# EOF`` ends the text."""
    lines = list(
        openmetrics_history(
            GAPPY,
            start=EPOCH + 180.0,
            now=5000.0,
            span=60.0,
            step=60.0,
            labels={"region": "r", "namespace": "n"},
            metric="m",
        )
    )
    assert lines == [
        "# HELP m WebSocket connections open now (backfilled from a trace)\n",
        "# TYPE m gauge\n",
        'm{namespace="n",region="r"} 1 4940.000\n',
        "# EOF\n",
    ]


def test_history_starts_at_the_trace_start_when_the_span_reaches_before_it() -> None:
    """A span longer than the trace before start keeps only the samples inside the trace; the
    wall-clock times are shifted by now - start and written with milliseconds."""
    lines = openmetrics_history(
        GAPPY, start=EPOCH + 240.0, now=1000.25, span=14 * DAY, step=60.0, labels={}
    )
    samples = [line.split() for line in lines if not line.startswith("#")]
    assert [s[2] for s in samples] == ["760.250", "820.250", "880.250", "940.250"]
    assert [int(s[1]) for s in samples] == [0, 4, 1, 2]
    assert {s[0] for s in samples} == {"gateway_active_connections{}"}


def test_history_steps_finer_than_the_trace_interpolate() -> None:
    """Steps of 20 s read the trace between its samples, as the live replay does."""
    lines = openmetrics_history(
        GAPPY, start=EPOCH + 180.0, now=0.0, span=60.0, step=20.0, labels={"region": "r"}
    )
    samples = [line.split() for line in lines if not line.startswith("#")]
    assert [(s[1], s[2]) for s in samples] == [("1", "-60.000"), ("1", "-40.000"), ("2", "-20.000")]


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        pytest.param(
            ["--start", "2020-01-01T00:06:00Z", "--span", "4m", "--now", "1000"],
            [("3", "760.000"), ("4", "820.000"), ("5", "880.000"), ("6", "940.000")],
            id="start-span-now",
        ),
        pytest.param(
            ["--start", "2020-01-01T00:06:00Z", "--span", "4m", "--now", "1000", "--cap", "5"],
            [("3", "760.000"), ("4", "820.000"), ("5", "880.000"), ("5", "940.000")],
            id="cap",
        ),
        pytest.param(
            ["--start", "2020-01-01T00:06:00Z", "--span", "1m", "--step", "20s", "--now", "0"],
            [("6", "-60.000"), ("6", "-40.000"), ("7", "-20.000")],
            id="step",
        ),
        pytest.param(
            ["--now", "0"],
            [("1", "-120.000"), ("2", "-60.000")],
            id="default-start-a-quarter-in-and-default-span",
        ),
    ],
)
def test_history_command_writes_the_file(
    tmp_path: Path, extra: list[str], expected: list[tuple[str, str]]
) -> None:
    """``history --out`` writes the samples for the trace time, span, step, cap and now given
    (the default start of this ten-minute trace is 00:02:15, a quarter in)."""
    out = tmp_path / "eu.om"
    args = ["--trace", str(_write_trace(tmp_path / "t.csv")), "--peak", "10"]
    history.main([*args, "--region", "eu", "--out", str(out), *extra])
    text = out.read_text(encoding="utf-8")
    assert text.startswith("# HELP gateway_active_connections ")
    assert text.endswith("# EOF\n")
    samples = [line.split() for line in text.splitlines() if not line.startswith("#")]
    assert {s[0] for s in samples} == {'gateway_active_connections{region="eu"}'}
    assert [(s[1], s[2]) for s in samples] == expected


def test_history_command_places_start_at_the_clock_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --now the history ends one step before the current time."""
    monkeypatch.setattr(time, "time", lambda: 7200.0)
    out = tmp_path / "eu.om"
    trace = str(_write_trace(tmp_path / "t.csv"))
    history.main(["--trace", trace, "--peak", "10", "--region", "eu", "--out", str(out)])
    stamps = [line.split()[2] for line in out.read_text().splitlines() if line[0] != "#"]
    assert stamps == ["7080.000", "7140.000"]


@pytest.mark.parametrize("missing", ["--trace", "--peak", "--region", "--out"])
def test_history_command_requires_its_arguments(
    tmp_path: Path, missing: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each of --trace, --peak, --region and --out is required (usage error, exit 2)."""
    given = {
        "--trace": str(_write_trace(tmp_path / "t.csv")),
        "--peak": "10",
        "--region": "eu",
        "--out": str(tmp_path / "eu.om"),
    }
    argv = [word for flag, value in given.items() if flag != missing for word in (flag, value)]
    with pytest.raises(SystemExit) as exited:
        history.main(argv)
    assert exited.value.code == 2
    assert missing in capsys.readouterr().err
    assert not (tmp_path / "eu.om").exists()


def test_history_runs_as_a_module(tmp_path: Path) -> None:
    """``python -m controller.demo_gateway.history`` writes its file."""
    out = tmp_path / "eu.om"
    trace = str(_write_trace(tmp_path / "t.csv"))
    subprocess.run(
        [sys.executable, "-m", "controller.demo_gateway.history", "--trace", trace,
         "--peak", "10", "--region", "eu", "--out", str(out), "--now", "0"],
        cwd=REPO, check=True, timeout=60,
    )  # fmt: skip
    assert out.read_text(encoding="utf-8").endswith('{region="eu"} 2 -60.000\n# EOF\n')


# --- the gateway: HTTP and WebSocket ---------------------------------------------------------


async def test_gateway_exports_zero_series_before_any_connection(gateway: _Gateway) -> None:
    """/metrics has both series at 0 for the region before any client connects, in the
    Prometheus text format; /healthz answers ok."""
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{gateway.base}/metrics") as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == CONTENT_TYPE_LATEST
            body = await response.text()
        async with session.get(f"{gateway.base}/healthz") as response:
            assert (response.status, await response.text()) == (200, "ok\n")
    assert f'gateway_active_connections{{region="{REGION}"}} 0.0' in body.splitlines()
    assert f'gateway_connections_total{{region="{REGION}"}} 0.0' in body.splitlines()


async def test_gateway_counts_open_and_accepted_and_echoes_text(gateway: _Gateway) -> None:
    """Each WebSocket counts as open until it closes and as accepted for good; text is echoed,
    binary messages are not."""
    async with aiohttp.ClientSession() as session:
        first = await session.ws_connect(gateway.ws_url)
        second = await session.ws_connect(gateway.ws_url)
        assert await _settles(gateway.open, 2.0)
        await first.send_bytes(b"\x00binary")
        await first.send_str("hello")
        message = await first.receive(timeout=5)
        assert (message.type, message.data) == (WSMsgType.TEXT, "hello")
        await first.close()
        assert await _settles(gateway.open, 1.0)
        assert gateway.total() == 2.0
        await second.close()
        assert await _settles(gateway.open, 0.0)
    assert gateway.total() == 2.0


async def test_gateway_shutdown_closes_sockets_as_going_away(gateway: _Gateway) -> None:
    """On shutdown every open WebSocket is closed with 1001 (going away), so clients reconnect."""
    async with aiohttp.ClientSession() as session:
        sockets = [await session.ws_connect(gateway.ws_url) for _ in range(2)]
        assert await _settles(gateway.open, 2.0)
        stopping = asyncio.create_task(asyncio.to_thread(gateway.stop))
        for ws in sockets:
            message = await ws.receive(timeout=5)
            assert message.type == WSMsgType.CLOSE
            assert message.data == WSCloseCode.GOING_AWAY
            assert message.extra == "shutting down"
        await stopping
    assert await _settles(gateway.open, 0.0)


def test_each_gateway_counts_into_its_own_registry() -> None:
    """Two apps without a registry do not clash; one given a registry counts into it."""
    server.build_app("a")
    server.build_app("a")
    registry = CollectorRegistry()
    server.build_app("b", registry=registry)
    assert registry.get_sample_value("gateway_active_connections", {"region": "b"}) == 0.0
    assert registry.get_sample_value("gateway_connections_total", {"region": "b"}) == 0.0


def test_gateway_command_listens_on_all_addresses_port_8081_by_default(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The gateway listens on 0.0.0.0:8081 unless told otherwise, without an access log, and
    requires --region."""
    calls: list[tuple[web.Application, dict[str, Any]]] = []
    monkeypatch.setattr(web, "run_app", lambda app, **kw: calls.append((app, kw)))
    server.main(["--region", "eu"])
    server.main(["--region", "us", "--host", "127.0.0.1", "--port", "9"])
    assert [(kw["host"], kw["port"], kw["access_log"]) for _, kw in calls] == [
        ("0.0.0.0", 8081, None),
        ("127.0.0.1", 9, None),
    ]
    calls[0][1]["print"]("listening")
    assert capsys.readouterr().out == "listening\n"
    with pytest.raises(SystemExit):
        server.main([])


def _unbuffered_env() -> dict[str, str]:
    """The environment without PYTHONUNBUFFERED, so that a line shows only if it is flushed."""
    return {key: value for key, value in os.environ.items() if key != "PYTHONUNBUFFERED"}


def _printed_line(process: subprocess.Popen[bytes]) -> str:
    """The next line a running process has printed to its pipe (empty if none within 10 s)."""
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], 10)
    return process.stdout.readline().decode() if ready else ""


def test_gateway_runs_as_a_module() -> None:
    """``python -m controller.demo_gateway.server`` serves /healthz until terminated, and says
    where it listens at once (flushed: a pod's log shows it while it runs)."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "controller.demo_gateway.server", "--region", "eu",
         "--host", "127.0.0.1", "--port", str(port)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=_unbuffered_env(),
    )  # fmt: skip
    try:

        def healthy() -> bool:
            if process.poll() is not None:
                return True
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                    return bool(r.status == 200)
            except OSError:
                return False

        deadline = time.monotonic() + 20
        while not healthy() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert process.poll() is None, process.communicate()[0]
        assert healthy()
        assert f"Running on http://127.0.0.1:{port}" in _printed_line(process)
    finally:
        process.terminate()
        process.communicate(timeout=20)


# --- the replayer: pool, ticks, stop ---------------------------------------------------------


async def test_pool_opens_and_closes_to_the_target(gateway: _Gateway) -> None:
    """resize opens what is missing, keeps what is open when the count is right, and closes
    the extra; close() closes them all."""
    async with aiohttp.ClientSession() as session:
        pool = ConnectionPool(session, gateway.ws_url)
        await pool.resize(3)
        assert len(pool) == 3
        assert await _settles(gateway.open, 3.0)
        await pool.resize(3)
        await pool.resize(4)
        assert len(pool) == 4
        assert await _settles(gateway.open, 4.0)
        assert gateway.total() == 4.0
        await pool.resize(3)
        assert len(pool) == 3
        assert await _settles(gateway.open, 3.0)
        await pool.resize(1)
        assert len(pool) == 1
        assert await _settles(gateway.open, 1.0)
        await pool.close()
        assert len(pool) == 0
        assert await _settles(gateway.open, 0.0)
    assert gateway.total() == 4.0
    assert pool.failures == 0


async def test_pool_closes_the_extra_without_errors_in_its_readers(
    gateway: _Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    """A scale-down's closed connections end their readers quietly: no task fails with an
    exception that asyncio would log as never retrieved."""
    caplog.set_level(logging.WARNING, logger="asyncio")
    async with aiohttp.ClientSession() as session:
        pool = ConnectionPool(session, gateway.ws_url)
        await pool.resize(3)
        await pool.resize(1)
        await pool.close()
    gc.collect()
    assert [record.getMessage() for record in caplog.records] == []


async def test_pool_counts_connections_it_cannot_open() -> None:
    """Refused connections are counted as failures, not held; each resize tries again."""
    async with aiohttp.ClientSession() as session:
        pool = ConnectionPool(session, f"ws://127.0.0.1:{free_port()}/ws")
        await pool.resize(3)
        assert (len(pool), pool.failures) == (0, 3)
        await pool.resize(2)
        assert (len(pool), pool.failures) == (0, 5)
        await pool.close()


async def test_pool_forgets_connections_the_gateway_drops(gateway: _Gateway) -> None:
    """Connections the gateway closes (its pod going away) leave the pool, so that the next
    resize reopens them."""
    async with aiohttp.ClientSession() as session:
        pool = ConnectionPool(session, gateway.ws_url)
        await pool.resize(2)
        await asyncio.to_thread(gateway.stop)
        assert await _settles(lambda: len(pool), 0)
        await pool.resize(2)
        assert pool.failures == 2
        await pool.close()


class _Recorder(replayer._Progress):
    """A progress that records each report and can ask the replay to stop soon after one."""

    def __init__(self, stop: asyncio.Event | None = None, *, stop_after: int = 0) -> None:
        super().__init__()
        self.reports: list[tuple[int, int, float]] = []
        self._stop = stop
        self._stop_after = stop_after

    def report(self, target: int, opened: int, when: float) -> None:
        self.reports.append((target, opened, when))
        if self._stop is not None and len(self.reports) == self._stop_after:
            # Soon, not now: the replay must yield while it waits for its next tick.
            asyncio.get_running_loop().call_soon(self._stop.set)


def _clock(*readings: float) -> Callable[[], float]:
    """A monotonic clock that reads ``readings`` in turn and fails if read once more."""
    it = iter(readings)

    def clock() -> float:
        try:
            return next(it)
        except StopIteration:
            raise AssertionError("the replay read the clock after its last tick") from None

    return clock


# 1, 2, 4, 4, 3 connections (peak 4, p99 40) at one-minute samples.
PLAY = TraceReplay(LoadSeries(EPOCH, 60.0, np.array([10.0, 20.0, 40.0, 40.0, 30.0])), peak=4)


@pytest.mark.parametrize(
    ("kwargs", "readings", "offsets", "targets"),
    [
        pytest.param(
            {"speed": 60.0},
            (500.0, 500.0, 501.0, 502.0, 503.0, 504.0),
            [0.0, 60.0, 120.0, 180.0, 240.0],
            [1, 2, 4, 4, 3],
            id="to-the-trace-end",
        ),
        pytest.param(
            {"duration": 120.0},
            (500.0, 500.0, 560.0, 620.0),
            [0.0, 60.0, 120.0],
            [1, 2, 4],
            id="default-speed-is-real-time",
        ),
        pytest.param(
            {"speed": 20.0, "duration": 60.0},
            (500.0, 500.0, 501.0, 502.0, 503.0),
            [0.0, 20.0, 40.0, 60.0],
            [1, 1, 2, 2],
            id="duration-ends-early-interpolating",
        ),
        pytest.param(
            {"speed": 60.0, "duration": 3600.0},
            (500.0, 500.0, 502.5, 510.0),
            [0.0, 150.0, 240.0],
            [1, 4, 3],
            id="duration-past-the-end-stops-at-the-end",
        ),
    ],
)
async def test_replay_follows_the_trace_tick_by_tick(
    gateway: _Gateway,
    kwargs: dict[str, float],
    readings: tuple[float, ...],
    offsets: list[float],
    targets: list[int],
) -> None:
    """Each tick plays trace time start + elapsed x speed (up to the end or start + duration),
    opens the connections it asks for, reports them, and stops at the end by itself."""
    recorder = _Recorder()
    final = await replay(
        PLAY,
        gateway.ws_url,
        start=EPOCH,
        tick=0.01,
        clock=_clock(*readings),
        progress=recorder,
        **kwargs,  # type: ignore[arg-type]
    )
    assert [when - EPOCH for _, _, when in recorder.reports] == offsets
    assert [target for target, _, _ in recorder.reports] == targets
    assert [opened for _, opened, _ in recorder.reports] == targets
    assert final == targets[-1]
    assert await _settles(gateway.open, 0.0)


async def test_replay_holds_the_final_count_until_stopped(gateway: _Gateway) -> None:
    """With hold the replay keeps ticking at the end, the last count open, until stop is set
    (which it notices while it waits for the next tick)."""
    stop = asyncio.Event()
    recorder = _Recorder(stop, stop_after=4)
    final = await replay(
        PLAY,
        gateway.ws_url,
        start=EPOCH + 120.0,
        speed=60.0,
        tick=0.05,
        hold=True,
        stop=stop,
        clock=_clock(0.0, 0.0, 2.0, 3.0, 4.0),
        progress=recorder,
    )
    assert recorder.reports == [
        (4, 4, EPOCH + 120.0),
        (3, 3, EPOCH + 240.0),
        (3, 3, EPOCH + 240.0),
        (3, 3, EPOCH + 240.0),
    ]
    assert final == 3
    assert await _settles(gateway.open, 0.0)
    assert gateway.total() == 4.0


async def test_replay_stops_mid_trace_when_asked(gateway: _Gateway) -> None:
    """A stop set during the replay ends it after that tick, with the target of that tick,
    without waiting out the (here long) tick."""
    stop = asyncio.Event()
    recorder = _Recorder(stop, stop_after=1)
    final = await replay(
        PLAY,
        gateway.ws_url,
        start=EPOCH,
        speed=60.0,
        tick=30.0,
        stop=stop,
        clock=_clock(0.0, 0.0),
        progress=recorder,
    )
    assert recorder.reports == [(1, 1, EPOCH)]
    assert final == 1


async def test_replay_stopped_before_it_starts_opens_nothing(gateway: _Gateway) -> None:
    """A stop already set returns 0 without a tick or a connection."""
    stop = asyncio.Event()
    stop.set()
    recorder = _Recorder()
    final = await replay(
        PLAY, gateway.ws_url, start=EPOCH, stop=stop, clock=_clock(0.0), progress=recorder
    )
    assert (final, recorder.reports, gateway.total()) == (0, [], 0.0)


def test_progress_sets_the_replayer_gauges() -> None:
    """The replayer's gauges report target, open and trace time; without gauges nothing is
    reported (and nothing fails)."""
    registry = CollectorRegistry()
    progress = replayer._Progress(
        Gauge("t", "target", registry=registry),
        Gauge("o", "open", registry=registry),
        Gauge("w", "when", registry=registry),
    )
    progress.report(5, 4, 1234.5)
    assert [registry.get_sample_value(name) for name in "tow"] == [5.0, 4.0, 1234.5]
    replayer._Progress().report(5, 4, 1234.5)


# --- the replayer's command line -------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "header", "final"),
    [
        pytest.param(
            ["--start", "2020-01-01T00:03:20Z", "--duration", "0s"],
            "from 2020-01-01T00:03:20Z x1.0",
            4,
            id="start-and-zero-duration",
        ),
        pytest.param(
            ["--start", "2020-01-01T00:06:00Z", "--duration", "0s", "--cap", "5"],
            "from 2020-01-01T00:06:00Z x1.0",
            5,
            id="cap",
        ),
        pytest.param(
            ["--speed", "1e9", "--tick", "0.01"],
            "from 2020-01-01T00:02:15Z x1000000000.0",
            10,
            id="default-start-a-quarter-in-to-the-end",
        ),
    ],
)
def test_replayer_command_plays_and_says_so(
    gateway: _Gateway,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    header: str,
    final: int,
) -> None:
    """The replayer prints what it plays from where at what speed, and the final count."""
    trace = str(_write_trace(tmp_path / "t.csv"))
    replayer.main(["--url", gateway.ws_url, "--trace", trace, "--peak", "10", *extra])
    assert capsys.readouterr().out.splitlines() == [
        f"replaying {trace} {header} to {gateway.ws_url}",
        f"done: {final} connections at the end",
    ]
    assert _settled(gateway.open, 0.0)
    assert gateway.total() == final


def test_replayer_command_serves_its_gauges_on_the_metrics_port(
    gateway: _Gateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--metrics-port serves replayer_target_connections, replayer_open_connections and
    replayer_trace_time_seconds, which end at the final tick."""
    registry = CollectorRegistry()
    served: list[int] = []
    monkeypatch.setattr(replayer, "start_http_server", served.append)
    monkeypatch.setattr(replayer, "Gauge", functools.partial(Gauge, registry=registry))
    trace = str(_write_trace(tmp_path / "t.csv"))
    replayer.main(
        ["--url", gateway.ws_url, "--trace", trace, "--peak", "10", "--metrics-port", "9",
         "--start", "2020-01-01T00:04:00Z", "--duration", "0s"]
    )  # fmt: skip
    assert served == [9]
    values = [
        registry.get_sample_value(name)
        for name in (
            "replayer_target_connections",
            "replayer_open_connections",
            "replayer_trace_time_seconds",
        )
    ]
    assert values == [5.0, 5.0, T0 + 240.0]


@pytest.mark.parametrize("missing", ["--url", "--trace", "--peak"])
def test_replayer_command_requires_its_arguments(
    tmp_path: Path, missing: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each of --url, --trace and --peak is required (usage error, exit 2)."""
    given = {
        "--url": "ws://127.0.0.1:9/ws",
        "--trace": str(_write_trace(tmp_path / "t.csv")),
        "--peak": "10",
    }
    argv = [word for flag, value in given.items() if flag != missing for word in (flag, value)]
    with pytest.raises(SystemExit) as exited:
        replayer.main(argv)
    assert exited.value.code == 2
    assert missing in capsys.readouterr().err


def test_replayer_module_ends_cleanly_on_sigterm(gateway: _Gateway, tmp_path: Path) -> None:
    """``python -m controller.demo_gateway.replayer --hold`` says what it replays at once
    (flushed), holds the final count until SIGTERM, then closes its connections, reports and
    exits 0."""
    trace = str(_write_trace(tmp_path / "t.csv"))
    process = subprocess.Popen(
        [sys.executable, "-m", "controller.demo_gateway.replayer", "--url", gateway.ws_url,
         "--trace", trace, "--peak", "10", "--speed", "1e9", "--tick", "0.05", "--hold"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=_unbuffered_env(),
    )  # fmt: skip
    try:
        assert _printed_line(process).startswith(f"replaying {trace} from ")
        deadline = time.monotonic() + 20
        while gateway.open() != 10.0 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert gateway.open() == 10.0
        assert process.poll() is None
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, output.decode()
    assert output.decode().splitlines()[-1] == "done: 10 connections at the end"
    assert _settled(gateway.open, 0.0)
