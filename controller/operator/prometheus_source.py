"""Load histories from Prometheus: the operator's metrics adapter.

:class:`PrometheusLoadSource` reads one region's load with ``prometheus-api-client`` and returns
a :class:`~forecasts.series.LoadSeries` on a regular grid, which is all the pure core sees.

What the caller can rely on:

- **The grid.** Samples stand at multiples of ``step`` seconds since the epoch, from the first
  grid point at or after ``start`` to the last at or before ``end``. Aligning to the epoch,
  rather than to ``start``, keeps consecutive reads on the same grid and matches
  :meth:`LoadSeries.aggregate`.
- **Long ranges are split.** Prometheus refuses a ``query_range`` of more than 11,000 points
  per series (``exceeded maximum resolution``); 14 days at one minute is 20,160, so the range is
  read in chunks of at most :data:`MAX_POINTS` points and joined.
- **Gaps are NaN; so is anything non-finite.** A grid point Prometheus returns nothing for is
  NaN, as is a ``NaN`` or ``±Inf`` sample. Prometheus carries a sample forward for up to its
  lookback delta (5 minutes by default) only while no staleness marker ends it: a failed scrape,
  or a series gone from its target's page, is marked stale at once, so a gap of one step can
  reach us (a backfilled series has no markers, and its holes shrink by the lookback).
- **Staleness shows as a short series.** The series is trimmed to the first and last grid
  points that have a value: if the series was marked stale, or its newest sample is older than
  the lookback delta (the exporter is stuck), ``series.end`` is earlier than ``end`` and the
  caller decides how stale is too stale (compare ``end - series.end`` with a few steps).
  Nothing is extrapolated.
- **No password shown.** A URL's password (``http://user:secret@prometheus``, which the HTTP
  client sends as basic auth) is ``***`` in every message, and so in the status, Events and
  logs the messages reach (:func:`shown_url`).
- **A usable URL or nothing.** A base URL that is not ``http`` or ``https`` with a host (empty,
  no scheme, a bad port) is refused when the source is made (:class:`PrometheusUrlInvalid`,
  naming it), not at every read as if Prometheus were down (:func:`prometheus_url_problem`).
- **Errors, never placeholder numbers.** No series at all, or Prometheus unreachable, timing out
  or answering 5xx, raises :class:`MetricsUnavailable` (transient: retry next loop). A query
  Prometheus rejects (400: bad PromQL) or one that returns more than one series raises
  :class:`QueryError` (permanent: the spec must change). Both messages name the query. The
  ``reason`` and ``transient`` attributes follow ``controller.operator.errors``; ``QueryError``
  subclasses ``MetricsUnavailable`` so that a caller catching the latter never misses one.
- **Slow is not unreachable.** Prometheus is told to give up on a query (its ``timeout``
  parameter) a little before the client stops waiting (:func:`server_timeout`), so a query too
  slow to finish comes back as Prometheus's own "query timed out", named as such and not asked
  again. Only a Prometheus that does not answer at all, cannot be connected to, or stands
  behind a proxy that says so (its own 502, 503 or 504, not Prometheus's error) raises
  :class:`PrometheusUnreachable` (a ``MetricsUnavailable``, same reason): the operator then
  stops asking it for the rest of its pass. Prometheus checks its own timeout only between
  steps of an evaluation, so a heavy query can outlast it: a connection made and no answer
  within the client's timeout is :class:`PrometheusSlow`, and :meth:`PrometheusLoadSource.answers`
  tells a slow query from a Prometheus that answers nothing.
- **An answer arrives whole within twice the timeout, or not at all.** The client's timeout
  bounds each wait on the socket, so an answer that trickles in (a proxy that drips, a link
  that all but stalls) would be waited for without end; the whole answer, from the request on,
  gets at most :data:`WHOLE_ANSWER_TIMEOUTS` timeouts, then is :class:`PrometheusSlow`.
- **Your CA, or none.** ``ca_file`` names the certificates that verify Prometheus's (a private
  CA's); ``client_cert`` and ``client_key`` are presented where it asks for one (mutual TLS).
"""

from __future__ import annotations

import ast
import json
import math
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3 import exceptions as urllib3_exceptions
from urllib3.util.retry import Retry

from forecasts.series import LoadSeries, format_timestamp

__all__ = [
    "MAX_POINTS",
    "WHOLE_ANSWER_TIMEOUTS",
    "MetricsUnavailable",
    "PrometheusLoadSource",
    "PrometheusSlow",
    "PrometheusUnreachable",
    "PrometheusUrlInvalid",
    "QueryError",
    "plan_chunks",
    "prometheus_url_problem",
    "server_timeout",
    "shown_url",
]

# Prometheus's hard limit per series in one query_range
# (https://github.com/prometheus/prometheus/blob/v2.42.0/web/api/v1/api.go: "exceeded maximum
# resolution of 11,000 points per timeseries").
MAX_POINTS = 11_000

_STATUS_RE = re.compile(r"HTTP Status Code (\d{3})")
_BODY_RE = re.compile(r"^HTTP Status Code \d{3} \((b(?:'.*'|\".*\"))\)$", re.DOTALL)


class MetricsUnavailable(Exception):
    """Prometheus has no answer for a query right now: unreachable, failing, or no series."""

    reason = "MetricsUnavailable"
    transient = True

    def __init__(self, message: str, *, query: str) -> None:
        super().__init__(message)
        self.query = query


class QueryError(MetricsUnavailable):
    """The query itself is wrong: Prometheus rejects it, or it yields more than one series."""

    reason = "QueryError"
    transient = False


class PrometheusUnreachable(MetricsUnavailable):
    """Prometheus did not answer: no connection, no reply within the client's timeout, or a
    502, 503 or 504 that is not Prometheus's own error (a proxy in front of it that could not
    reach it), still so when asked again.

    Its reason stays ``MetricsUnavailable``; the type tells a caller that asking again at once,
    for another query, would most likely cost another whole timeout.
    """


class PrometheusSlow(PrometheusUnreachable):
    """A connection was made, and no whole answer came within the time allowed: Prometheus may
    be down behind an open port, or only this query may be too heavy.
    :meth:`PrometheusLoadSource.answers` tells which."""


class PrometheusUrlInvalid(MetricsUnavailable):
    """The base URL cannot be used at all (no http or https URL with a host): asking again will
    not help, the URL must change. Raised when a :class:`PrometheusLoadSource` is made."""

    transient = False


#: What a usable base URL looks like, for the messages that refuse one.
_URL_EXAMPLE = "an http or https URL such as http://prometheus:9090"


def shown_url(url: str) -> str:
    """``url`` as messages show it: the password of its user info, if any, as ``***``.

    The password runs from the first ``:`` after the scheme to the last ``@`` (the HTTP client
    splits the user info at its last ``@``), whatever it holds (``@``, ``/``, ``#``): a URL with
    a ``:`` before an ``@`` in its path is shown with more hidden than needed, never less.
    """
    head, sep, rest = url.partition("://")
    prefix, rest = (head + sep, rest) if sep else ("", url)
    at = rest.rfind("@")
    colon = rest.find(":")
    if at < 0 or colon < 0 or colon > at:
        return url  # no user info, or a user without a password
    return f"{prefix}{rest[: colon + 1]}***{rest[at:]}"


def _reason(exc: Exception, url: str) -> str:
    """`` (the parser's reason)`` for a message refusing ``url``, or nothing where ``url`` has
    user info: a parser quotes what it could not read (``Port could not be cast to integer
    value as 'hunter2'``), and that may be part of the password."""
    if shown_url(url) != url:
        return ""
    return f" ({' '.join(str(exc).split())})"


def prometheus_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be Prometheus's base URL, starting with its ``repr`` (its password
    shown as ``***``, :func:`shown_url`); None if it can.

    Usable is ``http`` or ``https`` with a host and, if given, a port from 1 to 65535, with
    nothing the HTTP client refuses to send (no whitespace or control character in it).
    """
    shown = repr(shown_url(url))
    if not url.strip():
        return f"{shown} is empty: give {_URL_EXAMPLE}"
    if any(char.isspace() or not char.isprintable() for char in url):
        return f"{shown} has whitespace or a control character in it: give {_URL_EXAMPLE}"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:  # an unclosed IPv6 bracket, a port out of range or not a number
        return f"{shown} is not a URL{_reason(exc, url)}: give {_URL_EXAMPLE}"
    if parts.scheme not in ("http", "https"):
        return f"{shown} is not {_URL_EXAMPLE}"
    if not parts.hostname:
        return f"{shown} has no host: give {_URL_EXAMPLE}"
    if port == 0:
        return f"{shown} has port 0: give {_URL_EXAMPLE}"
    if parts.query or parts.fragment:
        # The API's paths go after the base URL: ``?x=1/api/v1/query`` reaches no API.
        return (
            f"{shown} has a query or fragment ('?', '#'; in a password, write them "
            f"percent-encoded, %3F and %23): give {_URL_EXAMPLE}"
        )
    try:
        requests.PreparedRequest().prepare_url(url, None)  # a host IDNA refuses (``*prom``)
    except (requests.RequestException, ValueError) as exc:
        reason = _reason(exc, url)
        return f"{shown} is not a URL the HTTP client can use{reason}: give {_URL_EXAMPLE}"
    return None


def server_timeout(timeout: float) -> float:
    """The ``timeout`` Prometheus is sent when the client waits ``timeout`` seconds.

    A tenth less, and at least half a second less, so that Prometheus's own "query timed out"
    reaches the client before the client gives up (it would otherwise read as unreachable);
    never less than half the client's timeout.
    """
    return max(timeout - max(0.1 * timeout, 0.5), 0.5 * timeout)


def plan_chunks(
    start: float, end: float, step: float, max_points: int = MAX_POINTS
) -> Iterator[tuple[float, float]]:
    """``(first, last)`` evaluation times of each query_range, both on the epoch-aligned grid.

    Every chunk holds at most ``max_points`` grid points; chunks are contiguous and disjoint.
    Nothing is yielded when no grid point lies in ``[start, end]``.
    """
    if not step > 0 or not math.isfinite(step):
        raise ValueError(f"step must be a positive number of seconds, got {step}")
    if max_points < 1:
        raise ValueError(f"max_points must be at least 1, got {max_points}")
    first_index = math.ceil(start / step - 1e-9)
    last_index = math.floor(end / step + 1e-9)
    index = first_index
    while index <= last_index:
        chunk_last = min(last_index, index + max_points - 1)
        yield index * step, chunk_last * step
        index = chunk_last + 1


#: How many client timeouts a whole answer may take, from the request to its last byte: the
#: wait for the first byte is one timeout at most, and the rest of the answer another.
WHOLE_ANSWER_TIMEOUTS = 2


class _Trickled(requests.Timeout):
    """The answer began, and was still not whole when its time was up."""


class _WholeAnswerSession(requests.Session):
    """A session that reads every answer whole within ``limit`` seconds of sending its request,
    or raises :class:`_Trickled` (a ``requests.Timeout``): requests' own timeout bounds only
    each wait on the socket."""

    def __init__(self, limit: float) -> None:
        super().__init__()
        self.limit = limit

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        started = time.monotonic()
        kwargs["stream"] = True
        response = super().send(request, **kwargs)
        raw = response.raw
        # One read of the socket at a time (read1), so that the time is looked at as bytes
        # come: a read of a given size waits until it has them all.
        read = getattr(raw, "read1", None) or raw.read
        body = bytearray()
        try:
            while chunk := _read_some(read, request):
                body += chunk
                if time.monotonic() - started > self.limit:
                    raise _Trickled(
                        f"the answer was not whole within {self.limit:g}s", response=response
                    )
        finally:
            response.close()
        response._content = bytes(body)  # what ``response.content`` and ``.json()`` read
        return response


def _read_some(read: Callable[..., bytes], request: requests.PreparedRequest) -> bytes:
    """The next bytes of an answer, decoded; urllib3's failures as the requests exceptions
    that requests itself raises for them while reading a body."""
    try:
        return read(_CHUNK, decode_content=True)
    except urllib3_exceptions.ReadTimeoutError as exc:
        raise requests.exceptions.ConnectionError(exc, request=request) from exc
    except urllib3_exceptions.SSLError as exc:
        raise requests.exceptions.SSLError(exc, request=request) from exc
    except urllib3_exceptions.DecodeError as exc:
        raise requests.exceptions.ContentDecodingError(exc, request=request) from exc
    except (urllib3_exceptions.ProtocolError, OSError) as exc:
        raise requests.exceptions.ChunkedEncodingError(exc, request=request) from exc


#: The most one read of an answer takes.
_CHUNK = 64 * 1024


class PrometheusLoadSource:
    """Reads a region's load from Prometheus over its HTTP API.

    ``retries`` more connection attempts are made per request, with a short backoff, so that a
    Prometheus that is down costs a loop about ``timeout`` seconds, not minutes; an answer that
    does not come within ``timeout`` is not waited for again. A 502, 503 or 504 is asked again
    ``retries`` times at once, except Prometheus's own "query timed out" (the same query would
    time out again). A ``Retry-After`` header (429 or 503 from a proxy or a query frontend) is
    not obeyed: the next loop retries.
    """

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        disable_ssl: bool = False,
        timeout: float = 10.0,
        retries: int = 1,
        ca_file: str | None = None,
        client_cert: str | None = None,
        client_key: str | None = None,
    ) -> None:
        problem = prometheus_url_problem(url)
        if problem is not None:
            raise PrometheusUrlInvalid(f"Prometheus URL {problem}", query="")
        self.url = url.rstrip("/")
        #: The URL as messages show it (:func:`shown_url`).
        self.shown_url = shown_url(self.url)
        self.timeout = timeout
        #: What Prometheus is told to spend on a query at most (:func:`server_timeout`).
        self.server_timeout = server_timeout(timeout)
        self.retries = retries
        # Connections only: 5xx answers are retried by ``_call``, which reads their body.
        retry = Retry(
            total=retries,
            connect=retries,
            read=0,
            status=0,
            backoff_factor=0.2,
            allowed_methods=("GET", "POST"),
            raise_on_status=False,
            # A proxy's or query frontend's "Retry-After: 600" would hold the loop that long.
            respect_retry_after_header=False,
        )
        session = _WholeAnswerSession(WHOLE_ANSWER_TIMEOUTS * timeout)
        session.verify = False if disable_ssl else (ca_file or True)
        if client_cert is not None:
            session.cert = client_cert if client_key is None else (client_cert, client_key)
        self._prometheus = PrometheusConnect(
            url=self.url, headers=dict(headers or {}) or None, retry=retry, session=session
        )

    def close(self) -> None:
        self._prometheus.close()

    def __enter__(self) -> PrometheusLoadSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def read_history(
        self,
        query: str,
        *,
        start: float,
        end: float,
        step: float,
        on_chunk: Callable[[], None] | None = None,
    ) -> LoadSeries:
        """The load of ``query`` from ``start`` to ``end`` (epoch seconds) every ``step`` seconds.

        The series starts at the first grid point with a value and ends at the last one; gaps
        inside are NaN. Raises :class:`MetricsUnavailable` or :class:`QueryError`.
        ``on_chunk`` is called once each query of :func:`plan_chunks` has answered (progress).
        """
        if end < start:
            raise ValueError(f"end ({end}) is before start ({start})")
        grid_start = math.ceil(start / step - 1e-9) * step
        count = math.floor(end / step + 1e-9) - math.ceil(start / step - 1e-9) + 1
        values = np.full(max(count, 0), np.nan)
        labelsets: set[tuple[tuple[str, str], ...]] = set()
        for first, last in plan_chunks(start, end, step):
            chunk = self._query_range(query, first, last, step)
            if on_chunk is not None:
                on_chunk()
            labelsets.update(tuple(sorted((s.get("metric") or {}).items())) for s in chunk)
            if len(labelsets) > 1:
                raise QueryError(
                    f"query {query!r} returned {len(labelsets)} series; it must return one "
                    "(aggregate it, for example with sum())",
                    query=query,
                )
            for series in chunk:
                for stamp, text in series.get("values") or ():
                    index = round((float(stamp) - grid_start) / step)
                    if 0 <= index < values.size:
                        values[index] = _finite_or_nan(text)
        known = np.flatnonzero(~np.isnan(values))
        if known.size == 0:
            raise MetricsUnavailable(
                f"query {query!r} returned no data between {format_timestamp(start)} and "
                f"{format_timestamp(end)}",
                query=query,
            )
        head, tail = int(known[0]), int(known[-1])
        return LoadSeries(grid_start + head * step, step, values[head : tail + 1])

    def current(self, query: str) -> float:
        """The value of ``query`` now (an instant query); raises rather than guess."""
        result = self._call(
            query,
            lambda: self._prometheus.custom_query(
                query, params={"timeout": _seconds(self.server_timeout)}, timeout=self.timeout
            ),
        )
        if isinstance(result, Sequence) and len(result) == 2 and not isinstance(result[0], Mapping):
            samples = [result]  # a scalar result: [time, "value"]
        else:
            if len(result) > 1:
                raise QueryError(
                    f"query {query!r} returned {len(result)} series; it must return "
                    "one (aggregate it, for example with sum())",
                    query=query,
                )
            samples = [series["value"] for series in result]
        if not samples:
            raise MetricsUnavailable(f"query {query!r} returned no series", query=query)
        value = _finite_or_nan(samples[0][1])
        if math.isnan(value):
            raise MetricsUnavailable(f"query {query!r} returned {samples[0][1]!r}", query=query)
        return value

    def answers(self) -> bool:
        """Whether Prometheus answers a query that costs it nothing (``1``) within the timeout:
        after a :class:`PrometheusSlow`, it tells a query too heavy from a Prometheus down."""
        try:
            self._prometheus.custom_query(
                "1", params={"timeout": _seconds(self.server_timeout)}, timeout=self.timeout
            )
        except (requests.RequestException, PrometheusApiClientException, ValueError, KeyError):
            return False
        return True

    def _query_range(self, query: str, first: float, last: float, step: float) -> list[Any]:
        # The client rounds its datetimes to whole seconds; the exact grid goes in ``params``,
        # which it sends in their place.
        params = {
            "start": f"{first:.3f}",
            "end": f"{last:.3f}",
            "step": _seconds(step),
            "timeout": _seconds(self.server_timeout),
        }
        result: list[Any] = self._call(
            query,
            lambda: self._prometheus.custom_query_range(
                query,
                start_time=_datetime(first),
                end_time=_datetime(last),
                step=params["step"],
                params=params,
                timeout=self.timeout,
            ),
        )
        if not isinstance(result, list) or not all(isinstance(x, Mapping) for x in result):
            raise MetricsUnavailable(
                f"Prometheus at {self.shown_url} sent an unreadable answer to query {query!r}: "
                f"a range result must be a list of series, got {type(result).__name__}",
                query=query,
            )
        return result

    def _call(self, query: str, request: Any) -> Any:
        attempt = 0
        while True:
            try:
                return self._call_once(query, request)
            except _Failed as failed:
                if attempt >= self.retries or failed.timed_out:
                    raise failed.error from failed.__cause__
                attempt += 1

    def _call_once(self, query: str, request: Any) -> Any:
        try:
            return request()
        except requests.JSONDecodeError as exc:  # reached, but not Prometheus (a proxy's page)
            raise MetricsUnavailable(
                f"Prometheus at {self.shown_url} sent an unreadable answer to query {query!r}",
                query=query,
            ) from exc
        except requests.RequestException as exc:
            if _connected_then_waited(exc):
                raise PrometheusSlow(
                    f"Prometheus at {self.shown_url} is slow or unreachable for query {query!r}: "
                    f"{self._no_answer(exc)}",
                    query=query,
                ) from exc
            raise PrometheusUnreachable(
                f"Prometheus at {self.shown_url} is unreachable for query {query!r}: "
                f"{self._no_answer(exc)}",
                query=query,
            ) from exc
        except PrometheusApiClientException as exc:
            match = _STATUS_RE.search(str(exc))
            status = int(match.group(1)) if match else None
            error, kind = _error_fields(exc)
            if status == 400 and kind is not None:
                raise QueryError(
                    f"Prometheus rejected query {query!r}: {error}", query=query
                ) from exc
            problem: MetricsUnavailable
            if status in (401, 403):
                problem = MetricsUnavailable(
                    f"Prometheus at {self.shown_url} refused query {query!r} (HTTP {status}): "
                    f"{error}; the credentials sent are those of TIDAL_PROMETHEUS_TOKEN, or "
                    "TIDAL_PROMETHEUS_USERNAME and TIDAL_PROMETHEUS_PASSWORD",
                    query=query,
                )
            elif status == 404 and kind is None:
                problem = MetricsUnavailable(
                    f"no Prometheus API at {self.shown_url} for query {query!r} (HTTP 404): "
                    f"{error}; a Prometheus served under a path needs it in the URL "
                    "(http://host:9090/prometheus)",
                    query=query,
                )
            elif status in _RETRIED and kind is None:
                # Not Prometheus's own error: a proxy or gateway in front of it that could not
                # reach it, or got no answer in time (a 504 comes after that wait).
                problem = PrometheusUnreachable(
                    f"Prometheus at {self.shown_url} is unreachable for query {query!r}: HTTP "
                    f"{status} from what stands in front of it: {error}",
                    query=query,
                )
            elif kind == "timeout":
                problem = MetricsUnavailable(
                    f"Prometheus timed out on query {query!r} after "
                    f"{self.server_timeout:g}s (HTTP {status}): {error}",
                    query=query,
                )
            else:
                problem = MetricsUnavailable(
                    f"Prometheus failed query {query!r} (HTTP {status}): {error}", query=query
                )
            if status in _RETRIED:
                raise _Failed(problem, timed_out=kind == "timeout") from exc
            raise problem from exc
        except (ValueError, KeyError, TypeError) as exc:
            # A body that is not the JSON Prometheus sends (``{"status": "success"}`` without
            # ``data``, say): the operator and ``tidal forecast`` say so instead of crashing.
            raise MetricsUnavailable(
                f"Prometheus at {self.shown_url} sent an unreadable answer to query {query!r}",
                query=query,
            ) from exc

    def _no_answer(self, exc: requests.RequestException) -> str:
        """No answer within the timeout (requests words a read timeout that urllib3 gave up
        retrying as a ``ConnectionError``), else the exception's type. A refused connection is
        no timeout, although urllib3 makes its error a ``ConnectTimeoutError`` too."""
        if isinstance(exc, _Trickled):
            return str(exc)
        wrapped = exc.args[0] if exc.args else None
        reason = getattr(wrapped, "reason", wrapped)
        if isinstance(exc, requests.exceptions.SSLError):
            return (
                f"TLS failed ({_tls_problem(exc)}): a private CA's certificate goes in "
                "TIDAL_PROMETHEUS_CA_FILE"
            )
        if isinstance(reason, urllib3_exceptions.NewConnectionError):
            return type(exc).__name__
        if isinstance(exc, requests.Timeout) or isinstance(reason, urllib3_exceptions.TimeoutError):
            return f"no answer within {self.timeout:g}s"
        return type(exc).__name__


def _connected_then_waited(exc: requests.RequestException) -> bool:
    """Whether the connection was made and the answer did not come (whole) in time, rather
    than no connection at all: requests words a read timeout that urllib3 gave up retrying as
    a ``ConnectionError``."""
    if isinstance(exc, _Trickled | requests.ReadTimeout):
        return True
    wrapped = exc.args[0] if exc.args else None
    return isinstance(getattr(wrapped, "reason", wrapped), urllib3_exceptions.ReadTimeoutError)


def _tls_problem(exc: requests.exceptions.SSLError) -> str:
    """The TLS library's own words for why the handshake failed (``certificate verify failed:
    self-signed certificate in certificate chain``), out of the layers requests wraps them in."""
    text = str(exc)
    match = re.search(r"SSLError\(\d*,? ?'?\[SSL: [A-Z_]+\] ([^(']+)", text) or re.search(
        r"\[SSL[^\]]*\] ([^(']+)", text
    )
    return match.group(1).strip() if match else "see the certificate Prometheus serves"


#: Statuses asked again (a proxy's or a query frontend's passing trouble).
_RETRIED = frozenset({502, 503, 504})


class _Failed(Exception):
    """A 5xx answer that ``_call`` may ask again; ``error`` is what to raise if it does not."""

    def __init__(self, error: MetricsUnavailable, *, timed_out: bool) -> None:
        super().__init__(str(error))
        self.error = error
        self.timed_out = timed_out


def _seconds(value: float) -> str:
    """Seconds as Prometheus reads a duration parameter (``step``, ``timeout``): a plain float.

    Its duration syntax takes whole units only (``2.5s`` is a 400, ``bad_data``), and ``%g``
    keeps six digits (a step of 1000001 s would be sent as ``1e+06``); ``repr`` is exact.
    """
    return repr(float(value))


def _finite_or_nan(text: Any) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return math.nan
    return value if math.isfinite(value) else math.nan


def _error_fields(exc: Exception) -> tuple[str, str | None]:
    """Prometheus's own ``error`` and ``errorType`` out of the client's exception text.

    The client puts ``repr(response.content)`` in its message (``HTTP Status Code 400
    (b'{...}')``): the body is read back from that literal and decoded as JSON, so that an
    error quoting a name (``unknown function with name "foo"``) keeps its quotes and its end.
    Without a Prometheus body, the exception's text and no type.
    """
    text = str(exc)
    match = _BODY_RE.search(text)
    if match is not None:
        body: Any = None
        try:
            body = ast.literal_eval(match.group(1))
            fields = json.loads(body) if isinstance(body, bytes) else None
        except (ValueError, SyntaxError, UnicodeDecodeError):
            fields = None
        if isinstance(fields, dict):
            error, kind = fields.get("error"), fields.get("errorType")
            if isinstance(error, str) and error:
                return error, kind if isinstance(kind, str) else None
        if isinstance(body, bytes):
            # Not Prometheus's JSON (a proxy's page, "Unauthorized"): its text, on one line
            # and cut short, not Python's bytes literal.
            shown = " ".join(body.decode("utf-8", "replace").split()) or "an empty answer"
            return (shown[:_SHOWN_BODY] + "...") if len(shown) > _SHOWN_BODY else shown, None
    return text, None


#: How much of an answer that is not Prometheus's own error a message quotes.
_SHOWN_BODY = 200


def _datetime(when: float) -> datetime:
    return datetime.fromtimestamp(when, tz=UTC)
