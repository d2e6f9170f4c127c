"""The operator's one port over real HTTP on loopback: ``/metrics`` for Prometheus, ``/healthz``
(and ``/livez``) and ``/readyz`` for the kubelet's probes, what each answers and when, and a
port that is closed once stopped."""

from __future__ import annotations

import http.client
import socket
from collections.abc import Iterator

import pytest

from controller.operator.metrics import HealthServer, OperatorMetrics


class Probe:
    """A health or readiness answer the test sets."""

    def __init__(self) -> None:
        self.answer = (True, "ok")

    def __call__(self) -> tuple[bool, str]:
        return self.answer


@pytest.fixture
def served() -> Iterator[tuple[HealthServer, Probe, Probe]]:
    metrics = OperatorMetrics()
    metrics.leader.set(1)
    metrics.load.labels("gwa", "ns", "eu").set(42.5)
    healthy, ready = Probe(), Probe()
    server = HealthServer(metrics, address="127.0.0.1", port=0, healthy=healthy, ready=ready)
    server.start()
    try:
        yield server, healthy, ready
    finally:
        server.stop()


def get(server: HealthServer, path: str) -> tuple[int, str, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        assert int(response.getheader("Content-Length") or -1) == len(body)
        return response.status, response.getheader("Content-Type") or "", body
    finally:
        connection.close()


def test_metrics_are_served_in_prometheus_text(served: tuple[HealthServer, Probe, Probe]) -> None:
    """``/metrics`` answers 200 in Prometheus's text format, with the registry's series."""
    server, _, _ = served
    status, ctype, body = get(server, "/metrics")
    assert status == 200 and ctype.startswith("text/plain; version=")
    text = body.decode()
    assert "tidal_leader 1.0" in text
    assert 'tidal_load{gwa="gwa",namespace="ns",region="eu"} 42.5' in text


@pytest.mark.parametrize("path", ["/healthz", "/livez", "/healthz?verbose=1"])
def test_liveness_answers_what_the_loop_says(
    served: tuple[HealthServer, Probe, Probe], path: str
) -> None:
    """Liveness (either name, a query string ignored) is 200 while the loop is healthy, and 503
    with the reason as the body once it is not, so ``kubectl describe pod`` says why."""
    server, healthy, _ = served
    assert get(server, path)[0::2] == (200, b"ok\n")
    healthy.answer = (False, "the loop has not completed for 200s")
    status, ctype, body = get(server, path)
    assert status == 503 and ctype.startswith("text/plain")
    assert body == b"the loop has not completed for 200s\n"


def test_readiness_answers_what_the_operator_says(
    served: tuple[HealthServer, Probe, Probe],
) -> None:
    """Readiness is the operator's own answer, apart from liveness: 503 while starting, 200
    once it has run a pass, leader or standby."""
    server, healthy, ready = served
    ready.answer = (False, "starting")
    assert get(server, "/readyz")[0::2] == (503, b"starting\n")
    healthy.answer = (False, "stuck")  # readiness does not read liveness
    ready.answer = (True, "standby")
    assert get(server, "/readyz")[0::2] == (200, b"standby\n")


@pytest.mark.parametrize("path", ["/", "/metricsz", "/ready", "/healthz/extra"])
def test_any_other_path_is_not_found(served: tuple[HealthServer, Probe, Probe], path: str) -> None:
    server, _, _ = served
    assert get(server, path)[0::2] == (404, b"not found\n")


def test_a_stopped_server_closes_its_port() -> None:
    """``stop`` closes the port: nothing answers there any more."""
    server = HealthServer(
        OperatorMetrics(),
        address="127.0.0.1",
        port=0,
        healthy=lambda: (True, "ok"),
        ready=lambda: (True, "leader"),
    )
    server.start()
    port = server.port
    assert get(server, "/healthz")[0] == 200
    server.stop()
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port)):
        pass


def _ipv6_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_available(), reason="this system has no IPv6 to bind")
def test_the_ipv6_wildcard_is_bound_as_ipv6_and_serves_ipv4_too() -> None:
    """``--metrics-address ::`` (an IPv6-only or dual-stack cluster probes the pod's IPv6
    address) was refused: the server only knew IPv4. It is bound as IPv6, and, where the
    system allows dual stack, answers on IPv4 loopback too."""
    healthy = Probe()
    server = HealthServer(OperatorMetrics(), address="::", port=0, healthy=healthy, ready=Probe())
    server.start()
    try:
        listening = server._server.socket
        assert listening.family == socket.AF_INET6
        if listening.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 0:
            assert get(server, "/healthz")[:1] == (200,)
    finally:
        server.stop()


@pytest.mark.parametrize("address", ["127.0.0.1", "localhost", "0.0.0.0", ""])
def test_an_ipv4_address_or_a_name_with_one_is_bound_as_ipv4(address: str) -> None:
    """As before IPv6 was served: ``localhost`` stays IPv4 loopback wherever /etc/hosts lists
    ``::1`` first, so a probe of 127.0.0.1 still reaches it; an empty address is every IPv4
    interface, as ``0.0.0.0``."""
    server = HealthServer(
        OperatorMetrics(), address=address, port=0, healthy=Probe(), ready=Probe()
    )
    server.start()
    try:
        assert server._server.socket.family == socket.AF_INET
        assert get(server, "/healthz")[0] == 200
    finally:
        server.stop()
