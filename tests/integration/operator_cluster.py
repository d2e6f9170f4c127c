"""A small region-shaped cluster for the operator's integration scenarios.

Builds, on the API emulator, what a region looks like to the operator (physical nodes,
the physical and cloud gateway Deployments, a GatewayAutoscaler), runs the real
:class:`~controller.operator.Operator` in a thread, and polls cluster state with deadlines.
"""

from __future__ import annotations

import contextlib
import math
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import numpy as np

from controller.operator import Operator, OperatorSettings
from forecasts.series import LoadSeries
from tests.support.kube_emulator import KubeEmulatorHandle
from tests.support.prometheus_server import PrometheusServer, series_key

__all__ = [
    "DEPLOYMENTS",
    "GWAS",
    "NAMESPACE",
    "add_region",
    "condition",
    "gwa_body",
    "last_value",
    "load_spec",
    "replicas",
    "running_operator",
    "start_region",
    "status_of",
    "wait_until",
    "writes_by",
]

NAMESPACE = "chat"
GWAS = "tidal.dev/v1alpha1/gatewayautoscalers"
DEPLOYMENTS = "apps/v1/deployments"
T = TypeVar("T")


def wait_until(
    check: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    every: float = 0.2,
    explain: Callable[[], Any] | None = None,
) -> T:
    """Poll ``check`` until it returns something truthy; fail with ``what``, the last value and,
    when given, what ``explain`` returns then (the status that says why, say)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except KeyError as exc:  # not created yet
            last = exc
        else:
            if last:
                return last
        time.sleep(every)
    message = f"timed out after {timeout}s waiting for {what}; last: {last!r}"
    if explain is not None:
        try:
            message += f"; {explain()!r}"
        except Exception as exc:  # the explanation must not hide the timeout
            message += f"; explaining failed: {exc!r}"
    raise AssertionError(message)


def _node(name: str, region: str, pool: str, *, cpu: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {"tidal.dev/pool": pool, "topology.kubernetes.io/region": region},
        },
        "spec": {},
        "status": {
            "allocatable": {"cpu": cpu, "memory": "64Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def _deployment(name: str, region: str, pool: str, replicas: int) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "nodeSelector": {
                        "tidal.dev/pool": pool,
                        "topology.kubernetes.io/region": region,
                    },
                    "tolerations": [
                        {"key": "tidal.dev/pool", "value": pool, "effect": "NoSchedule"}
                    ],
                    "containers": [
                        {
                            "name": "gateway",
                            "image": "gateway:test",
                            "resources": {"requests": {"cpu": "1", "memory": "2Gi"}},
                        }
                    ],
                },
            },
        },
    }


def add_region(
    kube: KubeEmulatorHandle,
    region: str,
    *,
    physical_nodes: int = 2,
    cpu: str = "8",
    replicas: int = 2,
) -> None:
    """Physical nodes (``cpu`` gateway pods each) and the two gateway Deployments of a region."""
    for i in range(physical_nodes):
        kube.create(_node(f"{region}-physical-{i}", region, "physical", cpu=cpu))
    kube.create(_node(f"{region}-cloud-0", region, "cloud", cpu="16"))
    kube.create(_deployment(f"gateway-{region}", region, "physical", replicas))
    kube.create(_deployment(f"gateway-{region}-cloud", region, "cloud", 0))


def gwa_body(
    region: str, *, name: str | None = None, query: str | None = None, **spec: Any
) -> dict[str, Any]:
    """A GatewayAutoscaler for ``add_region``'s Deployments; ``spec`` keys override the defaults."""
    body: dict[str, Any] = {
        "region": region,
        "mode": "Scale",
        "load": {
            "query": query or f'sum(gateway_active_connections{{region="{region}"}})',
            "perReplica": 1000,
            "step": "1m",
            "history": "3d",
        },
        "replicas": {"min": 2, "max": 400},
        "headroom": 0.1,
        "physical": {
            "deployment": f"gateway-{region}",
            "nodeSelector": {"tidal.dev/pool": "physical", "topology.kubernetes.io/region": region},
        },
        "cloud": {
            "deployment": f"gateway-{region}-cloud",
            "maxReplicas": 300,
            "nodeLeadTime": "5m",
            "reserve": True,
            # Replica counts in these tests are exact: no rounding up to whole cloud nodes.
            "replicasPerNode": 1,
        },
        "forecast": {"model": "seasonal-naive", "horizon": "30m", "quantile": 0.95, "refit": "15m"},
        # Loops of a second: per-minute rates must allow a whole step per loop.
        "behavior": {
            "scaleUp": {"maxReplicasPerMinute": 6000},
            "scaleDown": {"stabilization": "10m", "maxReplicasPerMinute": 600},
        },
    }
    body.update(spec)
    return {
        "apiVersion": "tidal.dev/v1alpha1",
        "kind": "GatewayAutoscaler",
        "metadata": {"name": name or f"gateway-{region}", "namespace": NAMESPACE},
        "spec": body,
    }


def last_value(series: LoadSeries) -> float:
    """The newest known sample of a history."""
    return float(series.values[np.isfinite(series.values)][-1])


def start_region(
    kube: KubeEmulatorHandle,
    prometheus_factory: Callable[..., PrometheusServer],
    ramp_history: Callable[..., LoadSeries],
    *,
    pods_now: float = 24,
) -> tuple[PrometheusServer, float]:
    """Region ``eu`` on wc98: 16 physical pods of room; returns Prometheus and perReplica."""
    history = ramp_history("wc98-requests-per-minute", days=3)
    key = series_key(region="eu")
    prometheus = prometheus_factory({key: history}, live={key: last_value(history)})
    add_region(kube, "eu", physical_nodes=2, cpu="8")
    return prometheus, round(last_value(history) * 1.1 / pods_now, 3)


def load_spec(per_replica: float) -> dict[str, object]:
    """Region ``eu``'s load section for ``start_region``'s series."""
    return {
        "query": 'sum(gateway_active_connections{region="eu"})',
        "perReplica": per_replica,
        "step": "1m",
        "history": "3d",
    }


def status_of(kube: KubeEmulatorHandle, name: str) -> dict[str, Any]:
    return kube.get(GWAS, name, namespace=NAMESPACE).get("status") or {}


def condition(kube: KubeEmulatorHandle, name: str, kind: str) -> dict[str, Any] | None:
    for item in status_of(kube, name).get("conditions") or []:
        if item.get("type") == kind:
            return dict(item)
    return None


def replicas(kube: KubeEmulatorHandle, deployment: str) -> int:
    return int(kube.get(DEPLOYMENTS, deployment, namespace=NAMESPACE)["spec"]["replicas"])


def writes_by(kube: KubeEmulatorHandle, identity: str, *, since: int = 0) -> list[str]:
    """Writes (not Lease renewals) by the operator with this identity, from the request log."""
    found = []
    for request in kube.requests()[since:]:
        agent = request.headers.get("User-Agent", "")
        method = request.method.value.upper()
        path = request.url.path
        if (
            f"({identity})" in agent
            and method in ("POST", "PUT", "PATCH", "DELETE")
            and "/leases" not in path
        ):
            found.append(f"{method} {path}")
    return found


@contextlib.contextmanager
def running_operator(
    kube: KubeEmulatorHandle, prometheus_url: str, **options: Any
) -> Iterator[Operator]:
    """The operator's production entry point (``run_forever``) in a thread, stopped on exit.

    ``options`` are :class:`OperatorSettings` fields; ``kubeconfig=True`` makes the operator
    load a kubeconfig file as ``tidal run`` does instead of being handed a client.
    """
    settings: dict[str, Any] = {
        "prometheus_url": prometheus_url,
        "loop_interval": 0.5,
        "metrics_port": 0,
        "metrics_address": "127.0.0.1",
        "leader_election": False,
        "lease_namespace": "default",
        "watch_poll": 2.0,
        "prometheus_timeout": 3.0,
        "fit_retry": 2.0,
    }
    settings.update(options)
    api_client = None
    with tempfile.TemporaryDirectory(prefix="tidal-kubeconfig-") as folder:
        if settings.get("kubeconfig") is True:
            settings["kubeconfig"] = str(kube.write_kubeconfig(f"{folder}/config"))
        else:
            api_client = kube.api_client()
        operator = Operator(OperatorSettings(**settings), api_client=api_client)
        thread = threading.Thread(target=operator.run_forever, name="operator", daemon=True)
        thread.start()
        try:
            yield operator
        finally:
            operator.stop()
            thread.join(timeout=15)
            assert not thread.is_alive(), "the operator did not stop"


class FlatLoad:
    """A load source that has always read ``load`` (the operator's ``LoadSource``)."""

    def __init__(self, load: float) -> None:
        self.load = load

    def read_history(self, query: str, *, start: float, end: float, step: float) -> LoadSeries:
        first, last = math.ceil(start / step), math.floor(end / step)
        return LoadSeries(first * step, step, np.full(last - first + 1, self.load))
