"""The operator when things go wrong: bad objects, Prometheus down, a physical node lost."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from forecasts.series import LoadSeries
from tests.integration.operator_cluster import (
    GWAS,
    NAMESPACE,
    condition,
    gwa_body,
    load_spec,
    replicas,
    running_operator,
    start_region,
    status_of,
    wait_until,
)
from tests.support.kube_emulator import KubeEmulatorHandle
from tests.support.prometheus_server import PrometheusServer

pytestmark = pytest.mark.integration


def ready_false(kube: KubeEmulatorHandle, name: str) -> dict[str, str] | None:
    ready = condition(kube, name, "Ready")
    return ready if ready and ready["status"] == "False" else None


def test_invalid_objects_are_reported_while_a_valid_one_is_served(
    kube_api: KubeEmulatorHandle,
    prometheus_factory: Callable[..., PrometheusServer],
    ramp_history: Callable[..., LoadSeries],
) -> None:
    """perReplica 0, a missing Deployment, an unknown model: Ready=False naming the field."""
    prometheus, per_replica = start_region(kube_api, prometheus_factory, ramp_history)

    def broken(name: str, **spec: object) -> dict[str, object]:
        # Deployments of its own: the region's belong to the valid object, created last, and
        # an object created earlier that named them would hold them (TargetConflict).
        pools = {
            "physical": {"deployment": f"{name}-physical"},
            "cloud": {"deployment": f"{name}-cloud"},
        }
        return gwa_body("eu", name=name, **{**pools, **spec})

    bad_load = load_spec(per_replica) | {"perReplica": 0}
    kube_api.create(broken("zero-per-replica", load=bad_load))
    kube_api.create(
        broken(
            "missing-deployment",
            load=load_spec(per_replica),
            physical={"deployment": "gateway-nowhere"},
        )
    )
    kube_api.create(
        broken("unknown-model", load=load_spec(per_replica), forecast={"model": "crystal-ball"})
    )
    kube_api.create(gwa_body("eu", load=load_spec(per_replica)))

    with running_operator(kube_api, prometheus.url):
        expected = {
            "zero-per-replica": (
                "InvalidSpec",
                "spec.load.perReplica: Input should be greater than 0",
            ),
            "missing-deployment": (
                "TargetMissing",
                "spec.physical.deployment: deployment 'gateway-nowhere'",
            ),
            "unknown-model": ("InvalidSpec", "spec.forecast: forecast.model 'crystal-ball'"),
        }
        for name, (reason, message) in expected.items():
            ready = wait_until(
                lambda name=name: ready_false(kube_api, name),
                timeout=15,
                what=f"{name} Ready=False",
            )
            assert ready["reason"] == reason
            assert ready["message"].startswith(message), ready["message"]

        wait_until(
            lambda: replicas(kube_api, "gateway-eu") == 16,
            timeout=20,
            what="the valid object's physical pool filled",
        )
        wait_until(
            lambda: replicas(kube_api, "gateway-eu-cloud") > 0,
            timeout=20,
            what="the valid object's cloud overflow",
        )
        # Served, not merely once: a spec change is acted on promptly beside the broken objects.
        # replicas.min above anything the load or its forecast asks for.
        kube_api.patch(
            GWAS,
            "gateway-eu",
            {"spec": {"replicas": {"min": 150, "max": 400}}},
            namespace=NAMESPACE,
        )
        wait_until(
            lambda: replicas(kube_api, "gateway-eu-cloud") == 150 - 16,
            timeout=10,
            what="the valid object follows replicas.min 150",
        )
        # The status is written after the Deployments are scaled, in the same pass.
        wait_until(
            lambda: status_of(kube_api, "gateway-eu")["observedGeneration"] == 2,
            timeout=10,
            what="status.observedGeneration 2",
        )
        ready = condition(kube_api, "gateway-eu", "Ready")
        assert ready is not None and ready["status"] == "True"


def test_prometheus_outage_holds_replicas_and_recovers(
    kube_api: KubeEmulatorHandle,
    prometheus_factory: Callable[..., PrometheusServer],
    ramp_history: Callable[..., LoadSeries],
) -> None:
    """Prometheus stopped: no scale-down and a condition naming the query; back: Ready again."""
    prometheus, per_replica = start_region(kube_api, prometheus_factory, ramp_history)
    kube_api.create(gwa_body("eu", load=load_spec(per_replica)))

    with running_operator(kube_api, prometheus.url):
        wait_until(
            lambda: replicas(kube_api, "gateway-eu-cloud") > 0,
            timeout=30,
            what="cloud overflow before the outage",
        )
        wait_until(
            lambda: (
                (condition(kube_api, "gateway-eu", "ForecastReady") or {}).get("status") == "True"
            ),
            timeout=30,
            what="ForecastReady before the outage",
        )
        before = (replicas(kube_api, "gateway-eu"), replicas(kube_api, "gateway-eu-cloud"))

        prometheus.stop()
        ready = wait_until(
            lambda: ready_false(kube_api, "gateway-eu"),
            timeout=15,
            what="Ready=False during the outage",
        )
        assert ready["reason"] == "MetricsUnavailable"
        assert 'gateway_active_connections{region="eu"}' in ready["message"]
        forecast = condition(kube_api, "gateway-eu", "ForecastReady")
        assert forecast is not None and forecast["status"] == "False"
        assert forecast["reason"] == "MetricsUnavailable"
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:  # several loops without data: nothing removed
            now = (replicas(kube_api, "gateway-eu"), replicas(kube_api, "gateway-eu-cloud"))
            assert now[0] >= before[0] and now[1] >= before[1], (before, now)
            time.sleep(0.2)

        prometheus.start()
        wait_until(
            lambda: (condition(kube_api, "gateway-eu", "Ready") or {}).get("status") == "True",
            timeout=30,
            what="Ready=True after Prometheus returned",
        )
        assert (condition(kube_api, "gateway-eu", "ForecastReady") or {}).get("status") == "True"


def test_physical_node_not_ready_moves_replicas_to_cloud(
    kube_api: KubeEmulatorHandle,
    prometheus_factory: Callable[..., PrometheusServer],
    ramp_history: Callable[..., LoadSeries],
) -> None:
    """A physical node goes NotReady: capacity shrinks and cloud takes the difference."""
    prometheus, per_replica = start_region(kube_api, prometheus_factory, ramp_history)
    kube_api.create(gwa_body("eu", load=load_spec(per_replica)))

    with running_operator(kube_api, prometheus.url):
        wait_until(
            lambda: replicas(kube_api, "gateway-eu") == 16,
            timeout=30,
            what="physical at capacity 16",
        )
        cloud_before = wait_until(
            lambda: replicas(kube_api, "gateway-eu-cloud"), timeout=20, what="cloud overflow"
        )
        kube_api.patch(
            "v1/nodes",
            "eu-physical-1",
            {
                "status": {
                    "conditions": [
                        {"type": "Ready", "status": "False", "reason": "KubeletNotReady"}
                    ]
                }
            },
            subresource="status",
        )
        wait_until(
            lambda: replicas(kube_api, "gateway-eu") == 8,
            timeout=20,
            what="physical down to the 8 pods the remaining node holds",
        )
        wait_until(
            lambda: replicas(kube_api, "gateway-eu-cloud") >= cloud_before + 8,
            timeout=20,
            what=f"cloud up by the 8 lost pods from {cloud_before}",
        )
        # The status is written after the Deployments are scaled, in the same pass.
        wait_until(
            lambda: status_of(kube_api, "gateway-eu")["physical"]["capacity"] == 8,
            timeout=10,
            what="status.physical.capacity down to 8",
        )
