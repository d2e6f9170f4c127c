"""A password in the Prometheus URL is never in a read error, whatever went wrong: each kind of
answer that is not Prometheus's own, from a server on loopback that stands in for a proxy or
a broken exporter. Read errors reach an object's status, its Events and the logs."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from controller.operator.prometheus_source import MetricsUnavailable, PrometheusLoadSource

#: The password, never written whole in a message.
SECRET = "s3cret-" + "xyzzy"

#: What the server answers to every query, by the case's name: status, content type, body.
ANSWERS = {
    "gateway-502": (502, "text/plain", b"bad gateway"),
    "gateway-504": (504, "text/html", b"<html>gateway timeout</html>"),
    "not-json": (200, "text/html", b"<html>a login page</html>"),
    "no-data": (200, "application/json", b'{"status": "success"}'),
    "result-not-a-list": (
        200,
        "application/json",
        b'{"status": "success", "data": {"resultType": "matrix", "result": {}}}',
    ),
}


@pytest.fixture
def answering() -> Iterator[tuple[int, dict[str, str]]]:
    """A loopback server answering as ``state["case"]`` says; its port and that state."""
    state = {"case": "gateway-502"}

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            status, ctype, body = ANSWERS[state["case"]]
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1]), state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.parametrize("case", sorted(ANSWERS))
def test_no_read_error_holds_the_password(answering: tuple[int, dict[str, str]], case: str) -> None:
    port, state = answering
    state["case"] = case
    url = f"http://reader:{SECRET}@127.0.0.1:{port}"
    with (
        pytest.raises(MetricsUnavailable) as caught,
        PrometheusLoadSource(url, timeout=5.0, retries=0) as source,
    ):
        source.read_history("up", start=0.0, end=600.0, step=60.0)
    message = str(caught.value)
    assert f"Prometheus at http://reader:***@127.0.0.1:{port} " in message, message
    assert SECRET not in message and "xyzzy" not in message, message
