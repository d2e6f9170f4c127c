"""PrometheusLoadSource's edges: the grid's ends, the chunk limit, instant values, error mapping."""

from __future__ import annotations

import base64
import contextlib
import http.server
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests

from controller.operator.prometheus_source import (
    MAX_POINTS,
    MetricsUnavailable,
    PrometheusLoadSource,
    PrometheusSlow,
    PrometheusUnreachable,
    QueryError,
    plan_chunks,
)
from controller.operator.settings import OperatorSettings
from controller.operator.sources import make_load_source
from forecasts.series import LoadSeries
from tests.integration.test_prometheus_source import (
    GAPPY,
    NOW,
    answering,
    histories,
    prometheus,
    query,
    source,
)

pytestmark = pytest.mark.integration

__all__ = ["histories", "prometheus", "source"]  # fixtures shared with test_prometheus_source


def test_the_chunk_limit_is_prometheus_s_own(
    source: PrometheusLoadSource, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One point more than Prometheus's 11,000 is read as a full chunk and a chunk of one, and
    Prometheus accepts the full one: every grid point comes back."""
    assert MAX_POINTS == 11_000
    sizes: list[int] = []
    original = source._prometheus.custom_query_range

    def spy(q: str, **kwargs: Any) -> Any:
        params = kwargs["params"]
        sizes.append(round((float(params["end"]) - float(params["start"])) / 60) + 1)
        return original(q, **kwargs)

    monkeypatch.setattr(source._prometheus, "custom_query_range", spy)
    got = source.read_history("time()", start=0, end=11_000 * 60, step=60)
    assert sizes == [11_000, 1]
    np.testing.assert_array_equal(got.values, np.arange(11_001) * 60.0)


def test_a_range_wider_than_the_data_starts_at_its_first_sample(
    histories: dict[str, LoadSeries], source: PrometheusLoadSource
) -> None:
    """The grid starts at the first multiple of ``step`` at or after ``start`` and ends at the
    last at or before ``end``; points before the series' first sample are trimmed away."""
    trace = histories[GAPPY]
    got = source.read_history(
        query(GAPPY), start=trace.start - 1830, end=trace.start + 590, step=60
    )
    assert (got.start, got.step, len(got)) == (trace.start, 60, 10)
    np.testing.assert_array_equal(got.values, trace.values[:10])


def test_a_range_without_a_grid_point_is_metrics_unavailable(
    source: PrometheusLoadSource,
) -> None:
    """No grid point between ``start`` and ``end`` reads no data: MetricsUnavailable, not an
    empty series."""
    with pytest.raises(MetricsUnavailable, match="returned no data") as error:
        source.read_history(query(GAPPY), start=NOW - 50, end=NOW - 10, step=60)
    assert not isinstance(error.value, QueryError)


def test_a_single_grid_point_is_read(source: PrometheusLoadSource) -> None:
    """``start == end`` on the grid is a range of one point: a series of one value."""
    got = source.read_history("time()", start=600, end=600, step=60)
    assert (got.start, got.step, len(got)) == (600, 60, 1)
    assert got.values[0] == 600


@pytest.mark.parametrize(
    ("start", "end", "step", "times"),
    [(2.1, 3.0, 0.3, [2.1, 2.4, 2.7, 3.0]), (0.0, 0.3, 0.1, [0.0, 0.1, 0.2, 0.3])],
    ids=["start-a-hair-above-a-multiple", "end-a-hair-below-a-multiple"],
)
def test_a_grid_end_rounded_off_by_floating_point_is_kept(
    source: PrometheusLoadSource, start: float, end: float, step: float, times: list[float]
) -> None:
    """``start`` and ``end`` that are multiples of ``step`` are grid points even when the float
    division misses the integer by a hair (2.1 / 0.3 is 7.000000000000001, 0.3 / 0.1 is
    2.9999999999999996): the read neither drops nor shifts them."""
    got = source.read_history("time()", start=start, end=end, step=step)
    assert got.start == pytest.approx(start)
    assert got.values == pytest.approx(times)


def test_an_end_before_the_start_is_refused(source: PrometheusLoadSource) -> None:
    """``end`` before ``start`` is the caller's mistake: a ValueError, not a Prometheus error."""
    with pytest.raises(ValueError, match="before start"):
        source.read_history(query(GAPPY), start=NOW, end=NOW - 60, step=60)


@pytest.mark.parametrize(
    ("step", "limit"),
    [(0.0, 10), (-60.0, 10), (float("nan"), 10), (float("inf"), 10), (60.0, 0)],
    ids=["zero-step", "negative-step", "nan-step", "infinite-step", "no-points"],
)
def test_plan_chunks_refuses_a_step_or_limit_that_plans_nothing(step: float, limit: int) -> None:
    """The step must be a positive finite number of seconds and a chunk hold at least a point."""
    with pytest.raises(ValueError, match="must be"):
        list(plan_chunks(0, 600, step, limit))


def test_plan_chunks_of_one_point() -> None:
    """A limit of one point is allowed: a chunk per grid point."""
    assert list(plan_chunks(0, 120, 60, 1)) == [(0, 0), (60, 60), (120, 120)]


TWO_SERIES = 'vector(1) or label_replace(vector(2), "copy", "yes", "", "")'


def test_two_series_are_a_query_error(source: PrometheusLoadSource) -> None:
    """Two series are already more than one: a QueryError naming the count, for a range read
    and for an instant value."""
    with pytest.raises(QueryError, match="returned 2 series"):
        source.read_history(TWO_SERIES, start=NOW - 600, end=NOW, step=60)
    with pytest.raises(QueryError, match="returned 2 series"):
        source.current(TWO_SERIES)


def test_no_series_now_is_transient(source: PrometheusLoadSource) -> None:
    """An instant query without a series is MetricsUnavailable, not a QueryError: the series
    may come back."""
    missing = 'sum(gateway_active_connections{region="nowhere"})'
    with pytest.raises(MetricsUnavailable, match="returned no series") as error:
        source.current(missing)
    assert not isinstance(error.value, QueryError)
    assert error.value.transient is True


@pytest.mark.parametrize(
    ("promql", "expected"),
    [("7", 7.0), ("scalar(vector(2.5))", 2.5), ("vector(3)", 3.0)],
    ids=["number", "scalar", "one-series"],
)
def test_current_reads_a_scalar_or_one_series(
    source: PrometheusLoadSource, promql: str, expected: float
) -> None:
    """An instant query's value, whether Prometheus answers a scalar or a one-series vector."""
    assert source.current(promql) == expected


@pytest.mark.parametrize(
    "promql", ["NaN", "vector(1) / 0", "scalar(vector(1)) * -Inf"], ids=["nan", "inf", "-inf"]
)
def test_current_refuses_a_value_that_is_not_finite(
    source: PrometheusLoadSource, promql: str
) -> None:
    """A NaN or infinite value now is no value: MetricsUnavailable naming the query."""
    with pytest.raises(MetricsUnavailable, match="returned") as error:
        source.current(promql)
    assert not isinstance(error.value, QueryError)
    assert error.value.query == promql


@pytest.mark.parametrize(
    "body",
    [
        b'{"status": "success"}',
        b'{"status": "success", "data": {"result": 3}}',
        b'{"status": "success", "data": {"result": [1, 2]}}',
        b"<html>",
    ],
    ids=["no-data", "data-not-a-list", "not-a-list-of-series", "not-json"],
)
def test_an_unreadable_answer_is_transient_not_a_query_error(body: bytes) -> None:
    """An answer that is not Prometheus's (a proxy's page, a half-compatible server) says
    nothing against the query: MetricsUnavailable, transient, never a QueryError."""
    with (
        answering(200, body) as (url, asked),
        PrometheusLoadSource(url, timeout=2) as source,
        pytest.raises(MetricsUnavailable, match=r"unreadable answer to query 'up'") as error,
    ):
        source.read_history("up", start=NOW - 600, end=NOW, step=60)
    assert not isinstance(error.value, QueryError)
    assert error.value.transient is True
    assert len(asked) == 1, asked


PROMETHEUS_ERROR = b'{"status":"error","errorType":"%s","error":"%s here"}'


@pytest.mark.parametrize(
    ("status", "kind", "raised", "asked"),
    [
        (400, b"bad_data", QueryError, 1),
        (422, b"execution", MetricsUnavailable, 1),
        (500, b"internal", MetricsUnavailable, 1),
        (502, b"unavailable", MetricsUnavailable, 2),
        (504, b"unavailable", MetricsUnavailable, 2),
    ],
    ids=["400", "422", "500", "502", "504"],
)
def test_prometheus_s_own_errors_map_to_their_kind(
    status: int, kind: bytes, raised: type[MetricsUnavailable], asked: int
) -> None:
    """Prometheus's 400 is a permanent QueryError; its other errors are transient and not
    "unreachable" (it answered); only 502, 503 and 504 are asked again, once."""
    body = PROMETHEUS_ERROR % (kind, kind)
    with (
        answering(status, body) as (url, asked_for),
        PrometheusLoadSource(url, timeout=2) as source,
        pytest.raises(MetricsUnavailable, match=f"{kind.decode()} here") as error,
    ):
        source.read_history("up", start=NOW - 600, end=NOW, step=60)
    assert type(error.value) is raised
    assert error.value.transient is (raised is not QueryError)
    assert error.value.query == "up"
    assert "unreachable" not in str(error.value)
    assert len(asked_for) == asked, asked_for


@pytest.mark.parametrize("retries", [0, 2], ids=["no-retry", "two-retries"])
def test_a_proxy_s_error_is_asked_again_retries_times(retries: int) -> None:
    """A proxy's own 503 page is asked again ``retries`` times, then is unreachable."""
    with (
        answering(503, b"<html>busy</html>") as (url, asked),
        PrometheusLoadSource(url, timeout=2, retries=retries) as source,
        pytest.raises(PrometheusUnreachable, match="HTTP 503"),
    ):
        source.read_history("up", start=NOW - 600, end=NOW, step=60)
    assert len(asked) == retries + 1, asked


@pytest.fixture
def silent() -> Iterator[tuple[str, list[socket.socket]]]:
    """A loopback server that accepts connections but never answers. Yields its URL and the
    connections it accepted."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    stop = threading.Event()
    held: list[socket.socket] = []

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", held
    finally:
        stop.set()
        thread.join()
        for connection in held:
            connection.close()
        listener.close()


def test_no_answer_within_the_timeout_is_unreachable(
    silent: tuple[str, list[socket.socket]],
) -> None:
    """A Prometheus that accepts the connection and never answers is unreachable, named as no
    answer within the client's timeout, and not waited for again."""
    url, connections = silent
    with PrometheusLoadSource(url, timeout=0.5) as source:
        started = time.monotonic()
        with pytest.raises(PrometheusUnreachable, match=r"no answer within 0\.5s") as error:
            source.read_history("up", start=NOW - 600, end=NOW, step=60)
        assert time.monotonic() - started < 1.5
    assert error.value.transient is True
    assert error.value.reason == "MetricsUnavailable"
    assert len(connections) == 1


def test_a_closed_port_is_unreachable() -> None:
    """Nothing listening: unreachable (transient), chained to the connection's failure, and
    named as that failure, not as a timeout: the refusal comes at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with (
        PrometheusLoadSource(f"http://127.0.0.1:{port}", timeout=1, retries=0) as source,
        pytest.raises(
            PrometheusUnreachable, match=r"unreachable for query 'up': ConnectionError$"
        ) as error,
    ):
        source.read_history("up", start=NOW - 600, end=NOW, step=60)
    assert isinstance(error.value.__cause__, requests.ConnectionError)
    assert error.value.transient is True


@pytest.fixture
def scalar_stub() -> Iterator[tuple[str, list[dict[str, str]]]]:
    """A loopback server that answers every GET with the scalar 4. Yields its URL and the
    headers of each request."""
    seen: list[dict[str, str]] = []
    body = b'{"status":"success","data":{"resultType":"scalar","result":[1,"4"]}}'
    with answering(200, body, seen=seen) as (url, _):
        yield url, seen


def basic(pair: bytes) -> str:
    return "Basic " + base64.b64encode(pair).decode()


@pytest.mark.parametrize(
    ("options", "authorization"),
    [
        ({}, None),
        ({"prometheus_token": "t0k"}, "Bearer t0k"),
        ({"prometheus_username": "alice", "prometheus_password": "s3cret"}, basic(b"alice:s3cret")),
        ({"prometheus_username": "alice"}, basic(b"alice:")),
        ({"prometheus_token": "t0k", "prometheus_username": "alice"}, "Bearer t0k"),
    ],
    ids=["no-auth", "bearer", "basic", "basic-without-password", "bearer-over-basic"],
)
def test_the_settings_credentials_reach_prometheus(
    scalar_stub: tuple[str, list[dict[str, str]]],
    options: dict[str, str],
    authorization: str | None,
) -> None:
    """The operator's source sends the extra headers with every request, plus ``Authorization``
    from the bearer token, else from the basic-auth pair (no password is an empty one)."""
    url, seen = scalar_stub
    settings = OperatorSettings(
        prometheus_url=url, prometheus_headers={"X-Scope-OrgID": "tenant"}, **options
    )
    source = make_load_source(settings)
    assert isinstance(source, PrometheusLoadSource)
    with source:
        assert source.current("up") == 4.0
    assert len(seen) == 1
    assert seen[0]["X-Scope-OrgID"] == "tenant"
    assert seen[0].get("Authorization") == authorization


def test_the_settings_timeout_is_the_source_s(
    scalar_stub: tuple[str, list[dict[str, str]]],
) -> None:
    """``TIDAL_PROMETHEUS_TIMEOUT`` is the client's timeout; Prometheus is told a tenth less."""
    url, _seen = scalar_stub
    source = make_load_source(OperatorSettings(prometheus_url=url, prometheus_timeout=20))
    assert isinstance(source, PrometheusLoadSource)
    with source:
        assert (source.url, source.timeout, source.server_timeout) == (url, 20, 18)


SCALAR_ONE = b'{"status":"success","data":{"resultType":"scalar","result":[1,"1"]}}'


@contextlib.contextmanager
def serving(
    answer: Callable[[http.server.BaseHTTPRequestHandler], None],
    tls: ssl.SSLContext | None = None,
) -> Iterator[str]:
    """A loopback HTTP(S) server whose every GET ``answer`` handles. Yields its URL."""

    class Stub(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            with contextlib.suppress(OSError):
                answer(self)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Stub)
    server.daemon_threads = True
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _send(handler: http.server.BaseHTTPRequestHandler, status: int, body: bytes) -> None:
    handler.send_response(status)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def test_a_query_too_heavy_is_slow_and_prometheus_still_answers() -> None:
    """Prometheus that answers a trivial instant query at once and a heavy range query not
    within the timeout: the read is PrometheusSlow (a kind of unreachable, as a caller that
    cannot tell must take it), and ``answers`` says Prometheus is there."""

    def answer(handler: http.server.BaseHTTPRequestHandler) -> None:
        if handler.path.startswith("/api/v1/query_range"):
            time.sleep(3)
        _send(handler, 200, SCALAR_ONE)

    with serving(answer) as url, PrometheusLoadSource(url, timeout=0.5, retries=0) as source:
        started = time.monotonic()
        with pytest.raises(PrometheusSlow, match=r"no answer within 0\.5s"):
            source.read_history("heavy", start=NOW - 600, end=NOW, step=60)
        assert time.monotonic() - started < 2.0
        assert source.answers() is True


def test_a_prometheus_that_answers_nothing_does_not_answer_the_probe(
    silent: tuple[str, list[socket.socket]],
) -> None:
    url, _ = silent
    with PrometheusLoadSource(url, timeout=0.3, retries=0) as source:
        assert source.answers() is False


def test_an_answer_that_trickles_in_is_given_up_after_twice_the_timeout() -> None:
    """An answer whose every byte comes before the socket's timeout, and whose whole would
    take 40 s: given up once twice the timeout has passed since the request (the per-read
    timeout alone would wait for all of it)."""

    def answer(handler: http.server.BaseHTTPRequestHandler) -> None:
        body = b" " * 200 + SCALAR_ONE
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        for byte in body:
            handler.wfile.write(bytes([byte]))
            handler.wfile.flush()
            time.sleep(0.15)

    with serving(answer) as url, PrometheusLoadSource(url, timeout=0.5, retries=0) as source:
        started = time.monotonic()
        with pytest.raises(PrometheusSlow, match=r"the answer was not whole within 1s"):
            source.read_history("up", start=NOW - 600, end=NOW, step=60)
        assert time.monotonic() - started < 2.5


@pytest.mark.parametrize(
    ("status", "body", "says"),
    [
        (401, b"Unauthorized\n", "refused query 'up' (HTTP 401): Unauthorized; the credentials"),
        (403, b"<html>\n<b>Forbidden</b>\n</html>", "(HTTP 403): <html> <b>Forbidden</b> </html>;"),
        (404, b"404 page not found\n", "(HTTP 404): 404 page not found; a Prometheus served"),
        (400, b"Client sent an HTTP request to an HTTPS server.\n", "HTTP 400"),
    ],
    ids=["401", "403", "404", "400-not-prometheus"],
)
def test_an_answer_not_prometheus_s_names_what_to_fix(status: int, body: bytes, says: str) -> None:
    """A refusal names the variables whose credentials were sent; a 404 that is not
    Prometheus's the URL's path; a 400 that is not Prometheus's own error says nothing against
    the query (no QueryError). None quotes Python's bytes literal."""
    with (
        answering(status, body) as (url, _),
        PrometheusLoadSource(url, timeout=2) as source,
        pytest.raises(MetricsUnavailable) as error,
    ):
        source.read_history("up", start=NOW - 600, end=NOW, step=60)
    assert says in str(error.value), str(error.value)
    assert "b'" not in str(error.value) and "\\n" not in str(error.value)
    assert not isinstance(error.value, QueryError)
    if status in (401, 403):
        assert "TIDAL_PROMETHEUS_TOKEN" in str(error.value)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key (a private CA of one)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed: it makes the test's certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "ca.pem", folder / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


def test_a_private_ca_is_trusted_from_its_file_and_named_when_it_is_not(
    certificate: tuple[Path, Path],
) -> None:
    """HTTPS with a certificate no public CA signed: refused, the TLS library's reason and the
    variable that fixes it named; read with ``ca_file``."""
    cert, key = certificate
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    body = (
        b'{"status":"success","data":{"resultType":"matrix",'
        b'"result":[{"metric":{},"values":[[%d,"5"]]}]}}'
    )

    def answer(handler: http.server.BaseHTTPRequestHandler) -> None:
        _send(handler, 200, body % int(NOW))

    with serving(answer, tls=context) as url:
        with (
            PrometheusLoadSource(url, timeout=2, retries=0) as source,
            pytest.raises(PrometheusUnreachable) as error,
        ):
            source.read_history("up", start=NOW - 60, end=NOW, step=60)
        assert "certificate verify failed" in str(error.value), str(error.value)
        assert "TIDAL_PROMETHEUS_CA_FILE" in str(error.value)
        with PrometheusLoadSource(url, timeout=2, retries=0, ca_file=str(cert)) as source:
            assert list(source.read_history("up", start=NOW - 60, end=NOW, step=60).values) == [5]
