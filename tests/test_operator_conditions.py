"""Conditions the operator writes for what it does not do: a Paused object, and a plan that
replicas.max holds below what the load needs; and a status write that fails. Against the API
emulator, a pass at a time."""

from __future__ import annotations

import time

from controller.operator import Operator, OperatorSettings
from controller.operator.errors import ClusterUnavailable
from controller.operator.sources import MetricsUnavailable
from forecasts.series import LoadSeries
from tests.integration.operator_cluster import (
    DEPLOYMENTS,
    GWAS,
    NAMESPACE,
    FlatLoad,
    add_region,
    condition,
    gwa_body,
    replicas,
    status_of,
)
from tests.support.kube_emulator import KubeEmulatorHandle


class Outage:
    """Prometheus down: every read fails, and is counted."""

    def __init__(self) -> None:
        self.reads = 0

    def read_history(self, query: str, *, start: float, end: float, step: float) -> LoadSeries:
        self.reads += 1
        raise MetricsUnavailable("connection refused", query=query)


def operator_for(cluster: KubeEmulatorHandle, source: object) -> Operator:
    settings = OperatorSettings(leader_election=False, metrics_port=0, metrics_address="127.0.0.1")
    return Operator(settings, api_client=cluster.api_client(), source=source)  # type: ignore[arg-type]


def test_paused_reads_nothing_fits_nothing_and_says_it_is_paused(
    cluster: KubeEmulatorHandle,
) -> None:
    """Paused during a Prometheus outage: no read, no fit, no write to a Deployment;
    Ready=True with reason Paused (not MetricsUnavailable)."""
    add_region(cluster, "eu", replicas=4)
    cluster.create(gwa_body("eu", mode="Paused"))
    source = Outage()
    operator = operator_for(cluster, source)
    try:
        for _ in range(3):
            outcomes = operator.run_once()
            time.sleep(0.05)
        assert outcomes[f"{NAMESPACE}/gateway-eu"].ok
        assert source.reads == 0
        assert operator.models._states == {}
        ready = condition(cluster, "gateway-eu", "Ready")
        assert ready is not None and (ready["status"], ready["reason"]) == ("True", "Paused")
        forecast = condition(cluster, "gateway-eu", "ForecastReady")
        assert forecast is not None and (forecast["status"], forecast["reason"]) == (
            "False",
            "Paused",
        )
        assert replicas(cluster, "gateway-eu") == 4
        assert replicas(cluster, "gateway-eu-cloud") == 0
        assert "forecast" not in status_of(cluster, "gateway-eu")
    finally:
        operator.models.shutdown()


def test_unpausing_serves_the_object_again(cluster: KubeEmulatorHandle) -> None:
    """Paused, then Scale: the next pass reads, plans and scales as usual."""
    add_region(cluster, "eu", replicas=4)
    cluster.create(gwa_body("eu", mode="Paused"))
    operator = operator_for(cluster, FlatLoad(5_000.0))
    try:
        operator.run_once()
        assert replicas(cluster, "gateway-eu") == 4
        cluster.patch(GWAS, "gateway-eu", {"spec": {"mode": "Scale"}}, namespace=NAMESPACE)
        outcomes = operator.run_once()
        assert outcomes[f"{NAMESPACE}/gateway-eu"].reason == "Reconciled"
        assert replicas(cluster, "gateway-eu") == 16  # the physical pool kept full
        ready = condition(cluster, "gateway-eu", "Ready")
        assert ready is not None and ready["reason"] == "Reconciled"
    finally:
        operator.models.shutdown()


def test_a_paused_status_shows_what_runs_now_and_no_stale_load(
    cluster: KubeEmulatorHandle,
) -> None:
    """Scaled under load, then paused and scaled by hand: the status reports the Deployments as
    they are, no load or forecast from before the pause, no capacity limit, and the stored
    recommendations kept for when it resumes; ``tidal_load`` is withdrawn."""
    add_region(cluster, "eu", replicas=4)
    cluster.create(gwa_body("eu", replicas={"min": 2, "max": 20}))
    operator = operator_for(cluster, FlatLoad(30_000.0))
    try:
        operator.run_once()
        before = status_of(cluster, "gateway-eu")
        assert before["load"] == 30_000.0 and before["desiredReplicas"] == 20
        limited = condition(cluster, "gateway-eu", "CapacityLimited")
        assert limited is not None and limited["status"] == "True"
        cluster.patch(GWAS, "gateway-eu", {"spec": {"mode": "Paused"}}, namespace=NAMESPACE)
        for deployment, count in (("gateway-eu", 3), ("gateway-eu-cloud", 0)):
            cluster.patch(
                DEPLOYMENTS, deployment, {"spec": {"replicas": count}}, namespace=NAMESPACE
            )
        outcomes = operator.run_once()
        assert outcomes[f"{NAMESPACE}/gateway-eu"].reason == "Paused"
        status = status_of(cluster, "gateway-eu")
        assert status["physical"]["replicas"] == 3 and status["cloud"]["replicas"] == 0
        assert status["desiredReplicas"] == 3
        assert "load" not in status and status.get("forecast") is None
        assert status["recommendations"] == before["recommendations"]
        limited = condition(cluster, "gateway-eu", "CapacityLimited")
        assert limited is not None and (limited["status"], limited["reason"]) == ("False", "Paused")
        forecast = condition(cluster, "gateway-eu", "ForecastReady")
        assert forecast is not None and forecast["message"] == "no forecast while paused"
        bursting = condition(cluster, "gateway-eu", "Bursting")
        assert bursting is not None and bursting["status"] == "False"
        assert operator.metrics.load.labels("gateway-eu", NAMESPACE, "eu")._value.get() == 0.0
        assert replicas(cluster, "gateway-eu") == 3  # nothing written
    finally:
        operator.models.shutdown()


def test_replicas_max_cutting_the_load_sets_capacity_limited(
    cluster: KubeEmulatorHandle,
) -> None:
    """22 replicas' worth of load, replicas.max 10: CapacityLimited=True, reason MaxReplicas,
    the message naming replicas.max; the replicas are what replicas.max allows."""
    add_region(cluster, "eu", replicas=4)
    cluster.create(gwa_body("eu", replicas={"min": 2, "max": 10}))
    operator = operator_for(cluster, FlatLoad(20_000.0))
    try:
        operator.run_once()
        limited = condition(cluster, "gateway-eu", "CapacityLimited")
        assert limited is not None
        assert (limited["status"], limited["reason"]) == ("True", "MaxReplicas")
        assert "replicas.max 10" in limited["message"] and "22" in limited["message"]
        assert replicas(cluster, "gateway-eu") + replicas(cluster, "gateway-eu-cloud") == 10
    finally:
        operator.models.shutdown()


def test_a_failed_status_write_keeps_the_recommendation_it_scaled_on(
    cluster: KubeEmulatorHandle,
) -> None:
    """A pass scales up on a spike and then fails to write its status: the next pass, on the
    old load, still holds the spike's replicas through the stabilisation window."""
    add_region(cluster, "eu", replicas=6)
    cluster.create(
        gwa_body(
            "eu",
            physical={
                "deployment": "gateway-eu",
                "keepWarm": False,
                "nodeSelector": {
                    "tidal.dev/pool": "physical",
                    "topology.kubernetes.io/region": "eu",
                },
            },
            behavior={
                "scaleUp": {"maxReplicasPerMinute": 6000},
                "scaleDown": {"stabilization": "10m", "maxReplicasPerMinute": 600},
            },
        )
    )
    source = FlatLoad(5_000.0)
    operator = operator_for(cluster, source)
    clock = [time.time()]
    operator.reconciler.clock = lambda: clock[0]
    patch_status = operator.kube.patch_status

    def total() -> int:
        return replicas(cluster, "gateway-eu") + replicas(cluster, "gateway-eu-cloud")

    def failing(*args: object, **kwargs: object) -> None:
        raise ClusterUnavailable("patch status: 503 etcd leader changed")

    try:
        operator.run_once()
        assert total() == 6
        clock[0] += 60
        source.load = 20_000.0
        operator.kube.patch_status = failing  # type: ignore[method-assign]
        assert not operator.run_once()[f"{NAMESPACE}/gateway-eu"].ok
        assert total() == 22
        clock[0] += 60
        source.load = 5_000.0
        operator.kube.patch_status = patch_status  # type: ignore[method-assign]
        assert operator.run_once()[f"{NAMESPACE}/gateway-eu"].ok
        assert total() == 22
        stored = status_of(cluster, "gateway-eu")["recommendations"]
        assert max(entry["replicas"] for entry in stored) == 22
    finally:
        operator.models.shutdown()
