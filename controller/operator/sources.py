"""Where the operator gets load histories: a :class:`PrometheusLoadSource` built from settings,
read through a :class:`PassReads` so that a Prometheus that does not answer costs a pass one
timeout, not one per object."""

from __future__ import annotations

import base64
import os
import threading
from typing import Any, Protocol
from urllib.parse import urlsplit

from pydantic import ValidationError

from controller.operator.prometheus_source import (
    MetricsUnavailable,
    PrometheusLoadSource,
    PrometheusSlow,
    PrometheusUnreachable,
    QueryError,
    prometheus_url_problem,
    shown_url,
)
from controller.operator.settings import PrometheusSettings, variable_of
from forecasts.series import LoadSeries

__all__ = [
    "LoadSource",
    "MetricsUnavailable",
    "PassReads",
    "PrometheusUnreachable",
    "QueryError",
    "live_load_source",
    "make_load_source",
    "metrics_reason",
]


class LoadSource(Protocol):
    def read_history(self, query: str, *, start: float, end: float, step: float) -> LoadSeries: ...


class PassReads:
    """``source`` read by the loop one pass at a time: unreachable once, unreachable for the pass.

    Each object's history is read on the loop, one after another. A Prometheus that accepts
    connections and never answers (a partition, an overload) would cost every object a whole
    timeout, and a pass of a few regions would outlast the liveness probe. Between
    :meth:`begin_pass` and :meth:`end_pass`, once a read on the loop's thread raised
    :class:`PrometheusUnreachable`, the pass's other reads raise it at once, naming their own
    query and the first failure: those objects hold their replicas as for any missing data
    (``Ready=False``, reason ``MetricsUnavailable``). The next pass asks Prometheus again.
    A read that connected and got no answer in time (:class:`PrometheusSlow`) marks the pass
    only when Prometheus does not answer a query that costs it nothing either (the source's
    ``answers``, where it has one): a query too heavy for the timeout fails its own object,
    not every object after it.

    Reads from other threads (the fits, off the loop) go straight to ``source`` and do not
    mark the pass.
    """

    def __init__(self, source: LoadSource) -> None:
        self.source = source
        self._loop: int | None = None
        self._down: PrometheusUnreachable | None = None

    def begin_pass(self) -> None:
        """The calling thread starts a pass: Prometheus is asked again."""
        self._loop, self._down = threading.get_ident(), None

    def end_pass(self) -> None:
        self._loop, self._down = None, None

    def read_history(self, query: str, *, start: float, end: float, step: float) -> LoadSeries:
        on_loop = self._loop is not None and threading.get_ident() == self._loop
        down = self._down if on_loop else None
        if down is not None:
            raise PrometheusUnreachable(
                f"query {query!r} was not sent: earlier in this pass, {down}", query=query
            )
        try:
            return self.source.read_history(query, start=start, end=end, step=step)
        except PrometheusSlow as exc:
            if not on_loop:
                raise
            answers = getattr(self.source, "answers", None)
            if answers is None or not answers():
                self._down = exc
                raise
            # Prometheus answers a query that costs it nothing: this one is too heavy for the
            # timeout, and the pass's other objects are still read.
            raise MetricsUnavailable(
                f"{exc}; Prometheus answers other queries, so this one is too slow for "
                f"{variable_of('prometheus_timeout')}: make it cheaper (a recording rule) or "
                "raise the timeout",
                query=query,
            ) from exc
        except PrometheusUnreachable as exc:
            if on_loop:
                self._down = exc
            raise


def metrics_reason(exc: MetricsUnavailable) -> str:
    """The condition reason of a metrics failure (``MetricsUnavailable`` or ``QueryError``)."""
    return str(getattr(exc, "reason", "MetricsUnavailable"))


def prometheus_headers(settings: PrometheusSettings) -> dict[str, str]:
    """Extra headers plus ``Authorization`` from the bearer token or the basic-auth pair."""
    headers = dict(settings.prometheus_headers)
    if settings.prometheus_token is not None:
        headers["Authorization"] = f"Bearer {settings.prometheus_token.get_secret_value()}"
    elif settings.prometheus_username:
        secret = settings.prometheus_password
        password = secret.get_secret_value() if secret is not None else ""
        pair = f"{settings.prometheus_username}:{password}".encode()
        headers["Authorization"] = f"Basic {base64.b64encode(pair).decode()}"
    return headers


def make_load_source(settings: PrometheusSettings) -> PrometheusLoadSource:
    options: dict[str, Any] = {
        "headers": prometheus_headers(settings) or None,
        "disable_ssl": settings.prometheus_disable_ssl,
        "timeout": settings.prometheus_timeout,
        "ca_file": settings.prometheus_ca_file,
        "client_cert": settings.prometheus_client_cert,
        "client_key": settings.prometheus_client_key,
    }
    return PrometheusLoadSource(settings.prometheus_url, **options)


def live_load_source(url: str) -> PrometheusLoadSource:
    """The source ``tidal trace`` and the live ``tidal forecast`` read from: ``url`` (their
    ``--prometheus-url``) reached as ``tidal run`` reaches Prometheus, with the token, basic
    auth, headers, TLS and timeout of the ``TIDAL_PROMETHEUS_*`` variables.

    A ValueError names what is at fault in one line: the URL, or each variable.
    """
    problem = prometheus_url_problem(url)
    if problem is not None:  # as PrometheusLoadSource names it
        raise ValueError(f"Prometheus URL {problem}")
    try:
        settings = PrometheusSettings(prometheus_url=url)
    except ValidationError as exc:
        parts = []
        for error in exc.errors():
            message = str(error["msg"]).removeprefix("Value error, ")
            if not error["loc"]:  # a rule across settings: its message names them
                parts.append(message.replace(variable_of("prometheus_url"), "--prometheus-url"))
                continue
            name = error["loc"][0]
            where = "--prometheus-url" if name == "prometheus_url" else variable_of(str(name))
            parts.append(f"{where}: {message}")
        raise ValueError("; ".join(parts)) from None
    credentials = (
        settings.prometheus_token is not None
        or bool(settings.prometheus_username)
        or bool(settings.prometheus_headers)
        or settings.prometheus_client_cert is not None
    )
    home = os.environ.get(variable_of("prometheus_url"))
    if credentials and home and _origin(home) != _origin(url):
        # In an operator's pod, the variables hold that Prometheus's credentials: a URL typed
        # on the command line does not get them.
        raise ValueError(
            f"--prometheus-url {shown_url(url)} is not the Prometheus of "
            f"{variable_of('prometheus_url')} ({shown_url(home)}), and the credentials of the "
            "TIDAL_PROMETHEUS_* variables are sent only there: give its URL, or unset "
            f"{variable_of('prometheus_url')} to send them to this one"
        )
    return make_load_source(settings)


def _origin(url: str) -> tuple[str, str, int | None]:
    """Scheme, host and port, the port a scheme's default when not given."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    default = {"http": 80, "https": 443}.get(scheme)
    return scheme, (parts.hostname or "").lower(), port if port is not None else default
