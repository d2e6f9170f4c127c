"""``/metrics``, ``/healthz`` and ``/readyz`` on one port.

Served by the standard library's ``ThreadingHTTPServer`` in a daemon thread: the operator is
synchronous (the official client is), so an aiohttp server would need an event loop of its own
for three tiny handlers, and ``prometheus_client.start_http_server`` serves metrics only. Each
:class:`OperatorMetrics` has its own registry, so two operators in one process (the HA tests)
do not collide.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

__all__ = ["HealthServer", "OperatorMetrics"]

OBJECT = ("gwa", "namespace", "region")


class OperatorMetrics:
    """The operator's metrics, one series per object (labels ``gwa``, ``namespace``, ``region``)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.load = Gauge("tidal_load", "Latest load sample", OBJECT, registry=r)
        self.forecast_peak = Gauge(
            "tidal_forecast_peak", "Peak of the point forecast over the horizon", OBJECT, registry=r
        )
        self.forecast_upper = Gauge(
            "tidal_forecast_upper",
            "Peak of the forecast's upper quantile (spec.forecast.quantile) over the horizon",
            OBJECT,
            registry=r,
        )
        self.forecast_ready = Gauge(
            "tidal_forecast_ready",
            "1 while the plan has a usable forecast, 0 while it sizes without one (its "
            "ForecastReady condition says why)",
            OBJECT,
            registry=r,
        )
        self.planned = Gauge(
            "tidal_planned_replicas", "Replicas the plan wants", (*OBJECT, "pool"), registry=r
        )
        self.actual = Gauge(
            "tidal_actual_replicas", "Replicas the Deployment has", (*OBJECT, "pool"), registry=r
        )
        self.reserved = Gauge(
            "tidal_reserved_replicas",
            "Cloud replicas held by gateways and placeholders",
            OBJECT,
            registry=r,
        )
        self.physical_capacity = Gauge(
            "tidal_physical_capacity",
            "Gateway replicas the physical pool holds",
            OBJECT,
            registry=r,
        )
        self.fit_seconds = Histogram(
            "tidal_fit_seconds",
            "Time to fit a forecasting model",
            ("gwa", "namespace", "model"),
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            registry=r,
        )
        self.reconcile_seconds = Histogram(
            "tidal_reconcile_seconds",
            "Time to reconcile one object",
            ("gwa", "namespace"),
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.reconcile_errors = Counter(
            "tidal_reconcile_errors_total",
            "Failed reconciles by reason",
            ("gwa", "namespace", "reason"),
            registry=r,
        )
        self.cluster_read_errors = Counter(
            "tidal_cluster_read_errors_total",
            "Passes that could not read the cluster (nodes, pods, Deployments or the "
            "GatewayAutoscalers) and so reconciled nothing, by reason",
            ("reason",),
            registry=r,
        )
        self.leader = Gauge(
            "tidal_leader",
            "1 while this instance leads: holds the lease, or runs without leader election",
            registry=r,
        )
        self.ready = Gauge(
            "tidal_ready_replicas",
            "Ready replicas of the pool's Deployment (status.readyReplicas), once it reports",
            (*OBJECT, "pool"),
            registry=r,
        )
        self.plan_reason = Gauge(
            "tidal_plan_reason",
            "1 for the reason behind each number of the last plan (decision: total, physical, "
            "cloud, reserve); only the current reason is exported",
            (*OBJECT, "decision", "reason"),
            registry=r,
        )
        self.capacity_limited = Gauge(
            "tidal_capacity_limited",
            "1 while the plan holds fewer replicas than the load or the forecast wants: "
            "replicas.max, or the physical capacity plus cloud.maxReplicas, cut it",
            OBJECT,
            registry=r,
        )
        self.last_success = Gauge(
            "tidal_last_success_timestamp_seconds",
            "When the object was last reconciled without error (Unix time)",
            ("gwa", "namespace"),
            registry=r,
        )
        #: The reason each ``(gwa, namespace, region, decision)`` exports, to drop it once
        #: another takes its place.
        self._reasons: dict[tuple[str, str, str, str], str] = {}
        self._lock = threading.Lock()

    def object_gauges(self) -> tuple[Gauge, ...]:
        """The gauges that say what an object looks like now: only the leader exports them."""
        return (
            self.load,
            self.forecast_peak,
            self.forecast_upper,
            self.forecast_ready,
            self.planned,
            self.actual,
            self.ready,
            self.reserved,
            self.physical_capacity,
            self.capacity_limited,
            self.plan_reason,
            self.last_success,
        )

    def withdraw_objects(self) -> None:
        """Stop exporting every object's gauges (:meth:`object_gauges`)."""
        with self._lock:
            for gauge in self.object_gauges():
                gauge.clear()
            self._reasons.clear()

    def set_reasons(self, gwa: str, namespace: str, region: str, reasons: dict[str, str]) -> None:
        """Export ``reasons`` (decision -> reason) as ``tidal_plan_reason``: 1 for each, and
        no series for a reason a decision no longer has."""
        with self._lock:
            for decision, reason in reasons.items():
                key = (gwa, namespace, region, decision)
                before = self._reasons.get(key)
                if before is not None and before != reason:
                    with contextlib.suppress(KeyError):
                        self.plan_reason.remove(*key, before)
                self._reasons[key] = reason
                self.plan_reason.labels(*key, reason).set(1)

    def forget(self, gwa: str, namespace: str, region: str) -> None:
        """Drop an object's per-object gauges (it was deleted or its region changed)."""
        labels = (gwa, namespace, region)
        for gauge in (
            self.load,
            self.forecast_peak,
            self.forecast_upper,
            self.forecast_ready,
            self.reserved,
            self.physical_capacity,
            self.capacity_limited,
        ):
            with contextlib.suppress(KeyError):
                gauge.remove(*labels)
        for gauge in (self.planned, self.actual, self.ready):
            for pool in ("physical", "cloud"):
                with contextlib.suppress(KeyError):
                    gauge.remove(*labels, pool)
        with self._lock:
            for key in [k for k in self._reasons if k[:3] == labels]:
                with contextlib.suppress(KeyError):
                    self.plan_reason.remove(*key, self._reasons.pop(key))

    def forget_object(self, gwa: str, namespace: str, region: str | None = None) -> None:
        """Drop every series of a deleted object: its gauges (as :meth:`forget`, when its
        region is known), the time of its last success, and its counters and histograms,
        whatever their ``model`` or ``reason``, so that objects come and go without the series
        piling up.

        :meth:`forget` keeps the counters and histograms, for a region that changed or an
        object that was paused: the object lives on, and its counters must not restart.
        """
        if region is not None:
            self.forget(gwa, namespace, region)
        with contextlib.suppress(KeyError):
            self.last_success.remove(gwa, namespace)
        for metric, names in (
            (self.fit_seconds, ("gwa", "namespace", "model")),
            (self.reconcile_seconds, ("gwa", "namespace")),
            (self.reconcile_errors, ("gwa", "namespace", "reason")),
        ):
            children = {
                tuple(sample.labels[name] for name in names)
                for family in metric.collect()
                for sample in family.samples
                if sample.labels.get("gwa") == gwa and sample.labels.get("namespace") == namespace
            }
            for labels in children:
                with contextlib.suppress(KeyError):
                    metric.remove(*labels)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def _http_server(
    address: str, port: int, handler: type[BaseHTTPRequestHandler]
) -> ThreadingHTTPServer:
    """A server bound to ``address`` in the family it resolves to: ``0.0.0.0`` or an IPv4
    address, IPv4; ``::`` or an IPv6 address, IPv6, and with ``::`` IPv4 too where the system
    allows dual stack (an IPv6-only cluster probes the pod's IPv6 address). A name that
    resolves to IPv4 is bound as IPv4, as before IPv6 was served (``localhost`` stays
    127.0.0.1); one with IPv6 addresses alone, as IPv6. Errors are the system's
    (:class:`OSError`)."""
    # An empty address is every IPv4 interface, as the socket module binds it.
    found = socket.getaddrinfo(
        address or "0.0.0.0", port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    families = [entry[0] for entry in found]
    family = socket.AF_INET if socket.AF_INET in families else families[0]

    class Server(ThreadingHTTPServer):
        address_family = family

        def server_bind(self) -> None:
            if family == socket.AF_INET6:
                with contextlib.suppress(OSError):  # a system without dual stack: IPv6 alone
                    self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            super().server_bind()

    return Server((address, port), handler)


class HealthServer:
    """One port: ``/metrics``, ``/healthz`` (the loop is alive), ``/readyz`` (ready to serve)."""

    def __init__(
        self,
        metrics: OperatorMetrics,
        *,
        address: str,
        port: int,
        healthy: Callable[[], tuple[bool, str]],
        ready: Callable[[], tuple[bool, str]],
    ) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._reply(200, owner.metrics.exposition(), CONTENT_TYPE_LATEST)
                elif path in ("/healthz", "/livez"):
                    ok, why = owner.healthy()
                    self._reply(200 if ok else 503, why.encode() + b"\n")
                elif path == "/readyz":
                    ok, why = owner.ready()
                    self._reply(200 if ok else 503, why.encode() + b"\n")
                else:
                    self._reply(404, b"not found\n")

            def _reply(
                self, code: int, body: bytes, ctype: str = "text/plain; charset=utf-8"
            ) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return  # probes every few seconds are not worth a log line

        self.metrics = metrics
        self.healthy = healthy
        self.ready = ready
        self._server = _http_server(address, port, Handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="tidal-health", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
