"""Conditions the operator writes for what it does not do: a Paused object, and a plan that
replicas.max holds below what the load needs; and a status write that fails. Against the API
emulator, a pass at a time."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

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


class StoppedLoad(FlatLoad):
    """``load`` until ``stopped`` (epoch seconds), then no sample: an exporter gone away while
    Prometheus is up, or a series that turned NaN; ``down``: Prometheus itself is down."""

    def __init__(self, load: float) -> None:
        super().__init__(load)
        self.stopped = float("inf")
        self.down = False

    def read_history(self, query: str, *, start: float, end: float, step: float) -> LoadSeries:
        if self.down:
            raise MetricsUnavailable("connection refused", query=query)
        series = super().read_history(query, start=start, end=end, step=step)
        values = np.where(series.times() > self.stopped, np.nan, series.values)
        return LoadSeries(series.start, series.step, values)


def _events(cluster: KubeEmulatorHandle, reason: str) -> list[dict[str, Any]]:
    return [e for e in cluster.list("v1/events", namespace=NAMESPACE) if e["reason"] == reason]


def test_a_load_gone_stale_is_not_ready_and_warns_once(cluster: KubeEmulatorHandle) -> None:
    """Prometheus answers, but the load's last sample is 20 minutes old. The plan holds what
    runs (never scaling down on missing data), and the object says so: Ready=False,
    ``LoadMissing``, naming spec.load.query and the sample's age, one Warning Event (not one a
    pass), a reconcile error counted. Before, it said Ready=True Reconciled. Prometheus then
    down turns the reason to MetricsUnavailable, with its own Event."""
    add_region(cluster, "eu", replicas=4)
    cluster.create(gwa_body("eu", replicas={"min": 2, "max": 20}))
    source = StoppedLoad(15_000.0)
    operator = operator_for(cluster, source)
    try:
        operator.run_once()
        ready = condition(cluster, "gateway-eu", "Ready")
        assert ready is not None and ready["status"] == "True"
        running = replicas(cluster, "gateway-eu") + replicas(cluster, "gateway-eu-cloud")
        source.stopped = time.time() - 20 * 60
        for _ in range(2):
            outcome = operator.run_once()[f"{NAMESPACE}/gateway-eu"]
            assert (outcome.ok, outcome.reason) == (False, "LoadMissing")
        ready = condition(cluster, "gateway-eu", "Ready")
        assert ready is not None and (ready["status"], ready["reason"]) == ("False", "LoadMissing")
        assert ready["message"].startswith("spec.load.query: the last load sample is ")
        assert f"holding {running} replicas, no scale-down" in ready["message"]
        assert status_of(cluster, "gateway-eu")["load"] == 15_000.0  # the last one read
        assert replicas(cluster, "gateway-eu") + replicas(cluster, "gateway-eu-cloud") == running
        exported = operator.metrics.registry.get_sample_value(
            "tidal_load", {"gwa": "gateway-eu", "namespace": NAMESPACE, "region": "eu"}
        )
        assert exported is None  # withdrawn, not the last value drawn as the current one
        warned = _events(cluster, "LoadMissing")
        assert len(warned) == 1 and warned[0]["type"] == "Warning"
        errors = operator.metrics.reconcile_errors.labels("gateway-eu", NAMESPACE, "LoadMissing")
        assert errors._value.get() == 2
        labels = {"gwa": "gateway-eu", "namespace": NAMESPACE, "region": "eu"}
        sample = operator.metrics.registry.get_sample_value
        assert sample("tidal_forecast_peak", labels) is not None
        assert sample("tidal_forecast_ready", labels) == 1
        source.down = True
        operator.run_once()
        ready = condition(cluster, "gateway-eu", "Ready")
        assert ready is not None and ready["reason"] == "MetricsUnavailable"
        assert len(_events(cluster, "MetricsUnavailable")) == 1
        # No forecast this pass: its gauges go rather than show the last one as today's, and
        # tidal_forecast_ready, which TidalReactiveFallback reads, says so.
        assert sample("tidal_forecast_peak", labels) is None
        assert sample("tidal_forecast_upper", labels) is None
        assert sample("tidal_forecast_ready", labels) == 0
    finally:
        operator.models.shutdown()


def test_a_restart_in_an_outage_scales_nothing_down_when_the_metrics_return(
    cluster: KubeEmulatorHandle,
) -> None:
    """Restarted while Prometheus is down, the operator's first fit fails for want of data,
    and its passes record no recommendation worth holding. When Prometheus answers again, the
    fit's retry is on its way: what runs stays until the forecast comes, and the reservation
    with it. Before, the failed fit counted as a model's failure and the cloud gateways went
    down at the rate limit, to come back once the fit landed."""
    add_region(cluster, "eu", replicas=16)
    cluster.create(gwa_body("eu", replicas={"min": 2, "max": 40}))
    cluster.patch(DEPLOYMENTS, "gateway-eu-cloud", {"spec": {"replicas": 12}}, namespace=NAMESPACE)
    source = StoppedLoad(5_000.0)
    source.down = True
    operator = operator_for(cluster, source)
    try:
        operator.run_once()
        for uid in list(operator.models._states):  # the first fit fails on the outage
            operator.models.wait(uid, timeout=60)
        operator.run_once()
        source.down = False
        outcome = operator.run_once()[f"{NAMESPACE}/gateway-eu"]
        assert outcome.ok and outcome.plan is not None
        assert "until the forecast comes" in outcome.plan.total.message
        assert (replicas(cluster, "gateway-eu"), replicas(cluster, "gateway-eu-cloud")) == (16, 12)
    finally:
        operator.models.shutdown()
