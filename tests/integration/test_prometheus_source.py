"""PrometheusLoadSource against a real Prometheus with backfilled real traces and live scrapes."""

from __future__ import annotations

import http.server
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest

from controller.operator.prometheus_source import (
    MAX_POINTS,
    MetricsUnavailable,
    PrometheusLoadSource,
    PrometheusUnreachable,
    QueryError,
    plan_chunks,
)
from controller.operator.sources import PassReads
from forecasts.series import LoadSeries, load_trace
from tests.support.fixtures import TRACES_DIR
from tests.support.prometheus_server import (
    PrometheusServer,
    backfilled,
    ramp_anchor,
    series_key,
    shift_series,
)

pytestmark = pytest.mark.integration

EU = series_key(region="eu-west")
US = series_key(region="us-east")
GAPPY = series_key(region="gappy")
NOW = math.floor(time.time() / 60) * 60 - 120  # history ends two minutes ago, on the grid


@pytest.fixture(scope="module", autouse=True)
def _history_ends_now() -> None:
    """NOW again when this module's tests start, not when the suite collected it: in a whole
    run that may be minutes before, and an instant query sees a history that ended more than
    Prometheus' 5-minute lookback ago as no series at all."""
    global NOW
    NOW = math.floor(time.time() / 60) * 60 - 120


def history(trace: str, days: float) -> LoadSeries:
    path = TRACES_DIR / f"{trace}.csv"
    if not path.exists():
        pytest.skip(f"trace {path} is missing")
    series = load_trace(path)
    return shift_series(series, anchor=ramp_anchor(series), now=NOW).last(days * 86400)


def gappy_series() -> LoadSeries:
    """One day at one minute: a 30-minute hole, and a +Inf sample, in the middle."""
    values = np.linspace(100.0, 200.0, 1440)
    values[600:630] = np.nan
    values[900] = np.inf
    return LoadSeries(NOW - 1439 * 60, 60.0, values)


@pytest.fixture(scope="module")
def histories() -> dict[str, LoadSeries]:
    """10 days of wc98 (14,400 minutes, more than one query_range holds), twitter, gappy."""
    return {
        EU: history("wc98-requests-per-minute", days=10),
        US: history("twitter-amzn-5min", days=3),
        GAPPY: gappy_series(),
    }


@pytest.fixture(scope="module")
def prometheus(
    tmp_path_factory: pytest.TempPathFactory, histories: dict[str, LoadSeries]
) -> Iterator[PrometheusServer]:
    """One server for the read-only tests, backfilled with ``histories``."""
    with backfilled(histories, tmp_path_factory.mktemp("prometheus")) as server:
        yield server


@pytest.fixture
def source(prometheus: PrometheusServer) -> Iterator[PrometheusLoadSource]:
    with PrometheusLoadSource(prometheus.url, timeout=5) as source:
        yield source


def query(key: str) -> str:
    return f"sum({key})"


def test_backfilled_trace_reads_back_on_its_grid(
    histories: dict[str, LoadSeries], source: PrometheusLoadSource
) -> None:
    """Two days of a real per-minute trace come back sample for sample, on the same grid."""
    trace = histories[EU]
    expected = trace.last(2 * 86400)
    got = source.read_history(query(EU), start=expected.start, end=expected.end, step=60)
    assert (got.start, got.step, len(got)) == (expected.start, 60, len(expected))
    known = ~np.isnan(expected.values)
    np.testing.assert_array_equal(got.values[known], expected.values[known])


def test_a_coarser_trace_reads_back_at_its_own_step(
    histories: dict[str, LoadSeries], source: PrometheusLoadSource
) -> None:
    """A 5-minute trace read at 5 minutes matches it exactly."""
    trace = histories[US]
    got = source.read_history(query(US), start=trace.start, end=trace.end, step=trace.step)
    assert got.start == trace.start
    known = ~np.isnan(trace.values)
    np.testing.assert_array_equal(got.values[known], trace.values[known])


def test_a_long_range_is_read_in_chunks(
    histories: dict[str, LoadSeries], source: PrometheusLoadSource, monkeypatch: pytest.MonkeyPatch
) -> None:
    """14,400 points (more than Prometheus's 11,000) are read in chunks and joined exactly."""
    trace = histories[EU]
    assert len(trace) > MAX_POINTS
    sizes: list[int] = []
    original = source._prometheus.custom_query_range

    def spy(q: str, **kwargs: Any) -> Any:
        params = kwargs["params"]
        step = float(params["step"])
        sizes.append(round((float(params["end"]) - float(params["start"])) / step) + 1)
        return original(q, **kwargs)

    monkeypatch.setattr(source._prometheus, "custom_query_range", spy)
    got = source.read_history(query(EU), start=trace.start, end=trace.end, step=60)
    assert sizes == [MAX_POINTS, len(trace) - MAX_POINTS]
    assert (got.start, len(got)) == (trace.start, len(trace))
    known = ~np.isnan(trace.values)
    np.testing.assert_array_equal(got.values[known], trace.values[known])


def test_gaps_and_non_finite_samples_are_nan(
    histories: dict[str, LoadSeries], source: PrometheusLoadSource
) -> None:
    """A hole longer than the lookback delta is NaN past it; a +Inf sample is NaN."""
    trace = histories[GAPPY]
    got = source.read_history(query(GAPPY), start=trace.start, end=trace.end, step=60)
    assert len(got) == len(trace)
    # Prometheus carries the last sample forward for its 5-minute lookback, then nothing.
    assert not np.isnan(got.values[600:604]).any()
    assert np.isnan(got.values[606:630]).all()
    assert np.isnan(got.values[900])
    assert got.values[901] == trace.values[901]


def test_a_missing_series_is_metrics_unavailable(source: PrometheusLoadSource) -> None:
    """No series: MetricsUnavailable naming the query, never an empty or zero series."""
    missing = 'sum(gateway_active_connections{region="nowhere"})'
    with pytest.raises(MetricsUnavailable, match="nowhere") as error:
        source.read_history(missing, start=NOW - 3600, end=NOW, step=60)
    assert not isinstance(error.value, QueryError)
    assert error.value.query == missing
    with pytest.raises(MetricsUnavailable, match="nowhere"):
        source.current(missing)


def test_more_than_one_series_is_a_query_error(source: PrometheusLoadSource) -> None:
    """A query that does not aggregate to one series is refused, naming it and the count."""
    with pytest.raises(QueryError, match=r"'gateway_active_connections' returned [3-9] series"):
        source.read_history("gateway_active_connections", start=NOW - 3600, end=NOW, step=60)
    with pytest.raises(QueryError, match=r"returned [3-9] series"):
        source.current("last_over_time(gateway_active_connections[1d])")


def test_invalid_promql_is_a_query_error(source: PrometheusLoadSource) -> None:
    """Prometheus's 400 is a permanent QueryError with its own explanation."""
    with pytest.raises(QueryError, match=r"rejected query 'sum\('") as error:
        source.read_history("sum(", start=NOW - 3600, end=NOW, step=60)
    assert error.value.transient is False


def test_a_rejection_keeps_prometheus_s_whole_explanation(source: PrometheusLoadSource) -> None:
    """Prometheus's error quotes names; the message keeps them and what follows them."""
    with pytest.raises(QueryError) as error:
        source.read_history("rate(gateway_active_connections)", start=NOW - 600, end=NOW, step=60)
    assert 'function "rate", got instant vector' in str(error.value)
    with pytest.raises(QueryError, match='unknown function with name "nosuch"'):
        source.read_history("nosuch(up)", start=NOW - 600, end=NOW, step=60)


def test_a_fractional_timeout_is_one_prometheus_reads(prometheus: PrometheusServer) -> None:
    """A timeout of 2.5 s (TIDAL_PROMETHEUS_TIMEOUT=2500ms) reaches Prometheus as a duration
    it parses: not a 400 that blames the query and stops the region for good."""
    with PrometheusLoadSource(prometheus.url, timeout=2.5) as source:
        got = source.read_history(query(EU), start=NOW - 3600, end=NOW, step=60)
        assert len(got) == 61
        assert source.current(query(EU)) >= 0


def test_a_long_step_is_sent_exactly(source: PrometheusLoadSource) -> None:
    """Prometheus evaluates on the grid asked for, also for a step of more than six digits."""
    step = 1_000_001.0
    got = source.read_history("time()", start=0, end=3 * step, step=step)
    np.testing.assert_array_equal(got.values, [0, step, 2 * step, 3 * step])


def test_live_scraped_values_appear_and_go_stale(
    prometheus: PrometheusServer, source: PrometheusLoadSource
) -> None:
    """A value set on the exporter arrives through a scrape; once gone, the series ends early."""
    live, steady = series_key(region="live"), series_key(region="steady")
    prometheus.exporter.set(live, 4321)
    prometheus.exporter.set(steady, 1)
    assert poll(lambda: source.current(query(live)), lambda v: v == 4321) == 4321
    recent = poll(
        lambda: source.read_history(query(live), start=time.time() - 60, end=time.time(), step=1),
        lambda series: series.values[-1] == 4321,
    )
    assert recent.end > time.time() - 10

    prometheus.exporter.clear(live)
    poll(lambda: stale(source, query(live)), bool)
    stale_at = time.time()
    # Asked until 5 s from now, a series that went stale ends before the staleness, and the
    # caller sees how old its last sample is; a live one would run to the end of the range.
    ended = source.read_history(query(live), start=stale_at - 120, end=stale_at + 5, step=1)
    assert ended.end <= stale_at
    running = source.read_history(query(steady), start=stale_at - 120, end=stale_at + 5, step=1)
    assert running.end == math.floor(stale_at + 5)


def test_a_stopped_server_is_metrics_unavailable_until_it_returns(
    prometheus_factory: Callable[..., PrometheusServer],
) -> None:
    """While Prometheus is down reads raise MetricsUnavailable (chained); after, history is back."""
    day = history("twitter-amzn-5min", days=1)
    server = prometheus_factory({US: day})
    with PrometheusLoadSource(server.url, timeout=2) as source:
        before = source.read_history(query(US), start=day.start, end=day.end, step=day.step)
        server.stop()
        with pytest.raises(MetricsUnavailable, match="unreachable") as error:
            source.read_history(query(US), start=day.start, end=day.end, step=day.step)
        assert error.value.__cause__ is not None
        assert error.value.transient is True
        server.start()
        after = source.read_history(query(US), start=day.start, end=day.end, step=day.step)
    np.testing.assert_array_equal(after.values, before.values)


@pytest.mark.parametrize(
    ("start", "end", "step", "limit", "expected"),
    [
        (0, 600, 60, 11_000, [(0, 600)]),
        (30, 600, 60, 11_000, [(60, 600)]),
        (0, 599, 60, 5, [(0, 240), (300, 540)]),
        (0, 600, 60, 5, [(0, 240), (300, 540), (600, 600)]),
        (10, 50, 60, 5, []),
    ],
    ids=["one-chunk", "aligned-up", "split", "split-remainder", "no-grid-point"],
)
def test_plan_chunks(
    start: float, end: float, step: float, limit: int, expected: list[tuple[float, float]]
) -> None:
    """Chunks are epoch-aligned, contiguous, disjoint and at most ``limit`` points long."""
    assert list(plan_chunks(start, end, step, limit)) == expected


def stale(source: PrometheusLoadSource, promql: str) -> bool:
    try:
        source.current(promql)
    except MetricsUnavailable:
        return True
    return False


def poll(read: Callable[[], Any], done: Callable[[Any], bool], timeout: float = 20.0) -> Any:
    """Call ``read`` until ``done(result)``; MetricsUnavailable counts as not yet."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = read()
        except MetricsUnavailable as exc:
            last = exc
        else:
            if done(last):
                return last
        time.sleep(0.1)
    raise AssertionError(f"condition not met within {timeout}s; last result {last!r}")


@contextmanager
def answering(
    status: int,
    body: bytes,
    headers: dict[str, str] | None = None,
    *,
    seen: list[dict[str, str]] | None = None,
) -> Iterator[tuple[str, list[str]]]:
    """A loopback HTTP server that answers every GET with ``status``, ``body`` (JSON) and
    ``headers``: something other than Prometheus on its port. Yields its URL and the paths
    asked, in order; ``seen``, when given, gets each request's headers."""
    asked: list[str] = []

    class Stub(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            if seen is not None:
                seen.append(dict(self.headers.items()))
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Stub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", asked
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    "body",
    [b'{"status": "success"}', b'{"status": "success", "data": {"result": 3}}', b"<html>"],
    ids=["no-data", "data-not-a-list", "not-json"],
)
def test_an_answer_that_is_not_prometheus_s_is_metrics_unavailable(body: bytes) -> None:
    """Something else on the port (a proxy's page, a half-compatible server): one error naming
    the URL and the query, not a KeyError from deep in the client."""
    with (
        answering(200, body) as (url, _asked),
        PrometheusLoadSource(url, timeout=2) as source,
        pytest.raises(MetricsUnavailable, match=r"unreadable answer to query 'up'"),
    ):
        source.read_history("up", start=NOW - 600, end=NOW, step=60)


@pytest.mark.parametrize("status", [429, 503])
def test_a_retry_after_header_does_not_hold_the_loop(status: int) -> None:
    """A proxy or query frontend in front of Prometheus that answers "busy, retry after 30 s"
    costs a read about its timeout, not the 30 s: the loop and the other regions go on, and
    the next loop retries."""
    body = b'{"status":"error","errorType":"unavailable","error":"busy"}'
    with (
        answering(status, body, {"Retry-After": "30"}) as (url, _asked),
        PrometheusLoadSource(url, timeout=2) as source,
    ):
        started = time.monotonic()
        with pytest.raises(MetricsUnavailable, match=f"HTTP {status}") as error:
            source.read_history("up", start=NOW - 600, end=NOW, step=60)
        assert time.monotonic() - started < 5
        assert error.value.transient is True


# Dozens of cheap terms: Prometheus checks its deadline between them, so it gives up close to
# its timeout; unbounded, the sum takes seconds.
SLOW_QUERY = " + ".join(["count_over_time(vector(1)[20m:10ms])"] * 200)


def test_a_query_too_slow_is_prometheus_s_timeout_not_unreachable(
    prometheus: PrometheusServer,
) -> None:
    """Prometheus is told to give up before the client stops waiting: a query too slow to finish
    comes back as its own "query timed out", within the client's timeout and asked once, not
    as an unreachable Prometheus (which would stop the operator asking for the whole pass)."""
    with PrometheusLoadSource(prometheus.url, timeout=1.0) as source:
        for read in (
            lambda: source.read_history(SLOW_QUERY, start=NOW - 600, end=NOW, step=60),
            lambda: source.current(SLOW_QUERY),
        ):
            started = time.monotonic()
            with pytest.raises(MetricsUnavailable) as error:
                read()
            took = time.monotonic() - started
            message = str(error.value).replace(SLOW_QUERY, "SLOW_QUERY")
            assert "query timed out" in message and "unreachable" not in message, message
            assert "HTTP 503" in message and error.value.transient is True
            assert took < 1.0, f"{took:.2f}s for a client timeout of 1s"


@pytest.mark.parametrize(("timeout", "sent"), [(10.0, 9.0), (2.5, 2.0), (0.4, 0.2)])
def test_prometheus_is_told_a_shorter_timeout_than_the_client_s(
    source: PrometheusLoadSource, monkeypatch: pytest.MonkeyPatch, timeout: float, sent: float
) -> None:
    """A tenth less than the client's timeout, at least half a second less, never under half."""
    seen: list[tuple[str, float]] = []
    with PrometheusLoadSource(source.url, timeout=timeout) as spied:
        for name in ("custom_query", "custom_query_range"):
            original = getattr(spied._prometheus, name)

            def spy(q: str, *, original: Any = original, name: str = name, **kwargs: Any) -> Any:
                seen.append((name, float(kwargs["params"]["timeout"])))
                assert kwargs["timeout"] == timeout
                return original(q, **kwargs)

            monkeypatch.setattr(spied._prometheus, name, spy)
        spied.read_history(query(EU), start=NOW - 600, end=NOW, step=60)
        spied.current(query(EU))
    assert seen == [("custom_query_range", sent), ("custom_query", sent)]


@pytest.mark.parametrize(("kind", "asked"), [("timeout", 1), ("unavailable", 2)])
def test_prometheus_s_own_timeout_is_not_asked_again(kind: str, asked: int) -> None:
    """A 503 is asked once more (a proxy's passing trouble), but not Prometheus's "query timed
    out": the same query would time out again, and the read would cost twice the wait."""
    body = f'{{"status":"error","errorType":"{kind}","error":"{kind} here"}}'.encode()
    with (
        answering(503, body) as (url, asked_for),
        PrometheusLoadSource(url, timeout=2) as source,
        pytest.raises(MetricsUnavailable, match=f"HTTP 503.*{kind} here") as error,
    ):
        source.read_history("up", start=NOW - 600, end=NOW, step=60)
    assert ("timed out" in str(error.value)) is (kind == "timeout")
    assert "unreachable" not in str(error.value)
    assert len(asked_for) == asked, asked_for


@pytest.mark.parametrize("status", [502, 503, 504])
def test_a_proxy_that_cannot_reach_prometheus_costs_the_pass_one_read(status: int) -> None:
    """A proxy's own 502, 503 or 504 page (not Prometheus's JSON error) says Prometheus is out
    of reach: once asked again, it is unreachable, and the pass's other reads are not sent."""
    body = f"<html>{status} from the proxy</html>".encode()
    with answering(status, body) as (url, asked), PrometheusLoadSource(url, timeout=2) as source:
        reads = PassReads(source)
        reads.begin_pass()
        try:
            for name in ("eu", "us", "ap"):
                with pytest.raises(PrometheusUnreachable, match=f"HTTP {status}"):
                    reads.read_history(name, start=NOW - 600, end=NOW, step=60)
        finally:
            reads.end_pass()
    assert len(asked) == 2, asked  # the first read, asked once more; the others not sent
