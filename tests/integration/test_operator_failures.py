"""The operator when things go wrong: bad objects, Prometheus down, a physical node lost."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from controller.operator import Operator, OperatorSettings
from forecasts.series import LoadSeries
from tests.integration.operator_cluster import (
    GWAS,
    NAMESPACE,
    add_region,
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


@contextlib.contextmanager
def silent_prometheus() -> Iterator[str]:
    """A Prometheus URL on loopback whose socket accepts connections and never answers, as a
    partitioned or overloaded server does (a refused connection fails at once)."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=64)
    listener.settimeout(0.1)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            held.append(conn)

    thread = threading.Thread(target=accept, name="silent-prometheus", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()
        for conn in held:
            conn.close()


def pools(kube: KubeEmulatorHandle, region: str) -> tuple[int, int]:
    """The physical and cloud replicas of ``add_region``'s Deployments."""
    return replicas(kube, f"gateway-{region}"), replicas(kube, f"gateway-{region}-cloud")


def test_a_prometheus_that_never_answers_costs_a_pass_one_timeout(
    kube_api: KubeEmulatorHandle,
) -> None:
    """Prometheus accepts connections and never answers: the first object's read costs one
    timeout and the pass's other objects are told at once that it is unreachable, so a pass of
    many regions stays well inside the liveness limit. Each holds its replicas with
    Ready=False (MetricsUnavailable) naming its own query; the next pass asks again."""
    regions = [f"r{i}" for i in range(5)]
    for region in regions:
        add_region(kube_api, region)
        kube_api.create(gwa_body(region))
    timeout = 1.0
    with silent_prometheus() as url:
        settings = OperatorSettings(
            prometheus_url=url,
            prometheus_timeout=timeout,
            leader_election=False,
            metrics_port=0,
            fit_retry=60,
        )
        operator = Operator(settings, api_client=kube_api.api_client())
        scaled: list[list[tuple[int, int]]] = []
        try:
            for _ in range(2):
                started = time.monotonic()
                outcomes = operator.run_once()
                took = time.monotonic() - started
                # One timeout, not one per object (five would take at least 5 s).
                assert timeout <= took < 2.5 * timeout, f"a pass took {took:.1f}s"
                assert sorted(outcomes) == [f"{NAMESPACE}/gateway-{r}" for r in regions]
                messages = [outcomes[f"{NAMESPACE}/gateway-{r}"].message for r in regions]
                assert all(not o.ok for o in outcomes.values())
                assert {o.reason for o in outcomes.values()} == {"MetricsUnavailable"}
                assert all(f"no answer within {timeout:g}s" in m for m in messages), messages
                asked = [m for m in messages if "was not sent: earlier in this pass" not in m]
                assert len(asked) == 1, messages
                scaled.append([pools(kube_api, r) for r in regions])
        finally:
            operator.models.shutdown()
    for region in regions:
        ready = condition(kube_api, f"gateway-{region}", "Ready")
        assert ready is not None and ready["status"] == "False"
        assert ready["reason"] == "MetricsUnavailable"
        assert f'gateway_active_connections{{region="{region}"}}' in ready["message"]
        assert "unreachable" in ready["message"] and "no scale-down" in ready["message"]
    # Nothing taken away (the physical pool is kept warm, as with any missing data), and held.
    assert scaled[0] == scaled[1]
    assert all(physical >= 2 for physical, _cloud in scaled[1]), scaled
