"""How the operator writes a plan: in a safe order, through a refused write or event, and
across a restart that leaves it without a forecast for a while."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from controller.operator.kube import placeholder_name
from forecasts.series import LoadSeries
from tests.integration.operator_cluster import (
    DEPLOYMENTS,
    GWAS,
    NAMESPACE,
    add_region,
    condition,
    gwa_body,
    last_value,
    load_spec,
    replicas,
    running_operator,
    start_region,
    status_of,
    wait_until,
)
from tests.support.kube_emulator import KubeEmulatorHandle
from tests.support.prometheus_server import PrometheusServer, series_key

pytestmark = pytest.mark.integration

NAME = "gateway-eu"
SCALE = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{{}}/scale"


def writes(kube: KubeEmulatorHandle, identity: str, since: int) -> list[tuple[str, Any]]:
    """``(path, body)`` of the PATCH and POST requests the operator ``identity`` sent."""
    found = []
    for request in kube.requests()[since:]:
        agent = request.headers.get("User-Agent", "")
        method = request.method.value.upper()
        if f"({identity})" in agent and method in ("PATCH", "POST"):
            found.append((request.url.path, request.data))
    return found


def two_pools(
    kube: KubeEmulatorHandle,
    prometheus_factory: Callable[..., PrometheusServer],
    ramp_history: Callable[..., LoadSeries],
    *,
    stabilization: str = "0s",
) -> tuple[PrometheusServer, float]:
    """Region ``eu`` on wc98 with 16 physical slots and a load of 24 pods' worth: 8 in cloud.
    The physical pool is not kept warm, so a fall in the load takes replicas from both."""
    prometheus, per_replica = start_region(kube, prometheus_factory, ramp_history)
    body = gwa_body(
        "eu",
        load=load_spec(per_replica),
        physical={
            "deployment": NAME,
            "nodeSelector": {"tidal.dev/pool": "physical", "topology.kubernetes.io/region": "eu"},
            "keepWarm": False,
        },
        behavior={
            "scaleUp": {"maxReplicasPerMinute": 6000},
            "scaleDown": {"stabilization": stabilization, "maxReplicasPerMinute": 6000},
        },
    )
    kube.create(body)
    return prometheus, per_replica


def fall_to_a_tenth(kube: KubeEmulatorHandle, per_replica: float) -> None:
    """Each replica now carries ten times the load: both pools have too many."""
    spec = kube.get(GWAS, NAME, namespace=NAMESPACE)["spec"]
    load = dict(spec["load"], perReplica=round(per_replica * 10, 3))
    kube.patch(GWAS, NAME, {"spec": {"load": load}}, namespace=NAMESPACE)


def test_cloud_is_given_back_before_physical(
    kube_api: KubeEmulatorHandle,
    prometheus_factory: Callable[..., PrometheusServer],
    ramp_history: Callable[..., LoadSeries],
) -> None:
    """Both pools shrink in one pass: the cloud Deployment is written first."""
    prometheus, per_replica = two_pools(kube_api, prometheus_factory, ramp_history)
    with running_operator(kube_api, prometheus.url, identity="op"):
        wait_until(lambda: replicas(kube_api, f"{NAME}-cloud") > 0, timeout=30, what="overflow")
        since = len(kube_api.requests())
        fall_to_a_tenth(kube_api, per_replica)
        wait_until(
            lambda: replicas(kube_api, NAME) < 16 and replicas(kube_api, f"{NAME}-cloud") == 0,
            timeout=30,
            what="both pools shrunk",
        )
    paths = [path for path, _ in writes(kube_api, "op", since)]
    cloud, physical = SCALE.format(f"{NAME}-cloud"), SCALE.format(NAME)
    assert cloud in paths and physical in paths, paths
    assert paths.index(cloud) < paths.index(physical), paths


def test_a_refused_cloud_write_leaves_physical_alone_and_keeps_the_recommendation(
    kube_api: KubeEmulatorHandle,
    prometheus_factory: Callable[..., PrometheusServer],
    ramp_history: Callable[..., LoadSeries],
) -> None:
    """The cloud scale fails pass after pass: physical is not cut, Ready=False names the
    failure, and each pass still stores its recommendation for stabilisation."""
    prometheus, per_replica = two_pools(
        kube_api, prometheus_factory, ramp_history, stabilization="2s"
    )
    with running_operator(kube_api, prometheus.url, identity="op"):
        wait_until(lambda: replicas(kube_api, f"{NAME}-cloud") > 0, timeout=30, what="overflow")
        wait_until(lambda: replicas(kube_api, NAME) == 16, timeout=30, what="physical full")
        kube_api.refuse("PATCH", SCALE.format(f"{NAME}-cloud"))
        since = len(kube_api.requests())
        fall_to_a_tenth(kube_api, per_replica)
        ready = wait_until(
            lambda: (
                (condition(kube_api, NAME, "Ready") or {}).get("status") == "False"
                and condition(kube_api, NAME, "Ready")
            ),
            timeout=30,
            what="Ready=False for the refused write",
        )
        failing_since = newest_recommendation(kube_api)["at"]
        later = wait_until(
            lambda: (
                newest_recommendation(kube_api)
                if newest_recommendation(kube_api)["at"] > failing_since
                else None
            ),
            timeout=10,
            what="a recommendation stored by a failing pass",
        )
        status = status_of(kube_api, NAME)
        kinds = {c["type"]: c for c in status["conditions"]}
        assert kinds["Ready"]["status"] == "False"
        assert {"ForecastReady", "Bursting", "CapacityLimited"} <= set(kinds), kinds
        # The status keeps the plan, and Ready says what runs: the cloud write did not go through.
        running = replicas(kube_api, f"{NAME}-cloud")
        assert running > status["cloud"]["replicas"], (running, status["cloud"])
        assert f"ask for physical 16, cloud {running}" in kinds["Ready"]["message"], kinds
        assert replicas(kube_api, NAME) == 16
    assert ready["reason"] == "KubernetesUnavailable", ready
    assert "gateway-eu-cloud" in ready["message"], ready
    assert later["replicas"] < 16, later  # the fallen need, not the 24 before
    physical = SCALE.format(NAME)
    assert all(path != physical for path, _ in writes(kube_api, "op", since))


def newest_recommendation(kube: KubeEmulatorHandle) -> dict[str, Any]:
    return max(status_of(kube, NAME)["recommendations"], key=lambda r: r["at"])


def test_refused_events_do_not_stop_the_scaling(
    kube_api: KubeEmulatorHandle,
    prometheus_factory: Callable[..., PrometheusServer],
    ramp_history: Callable[..., LoadSeries],
) -> None:
    """The Events API answers 429 to every event: the pass that scales both pools writes them
    both and its status, and nothing is reported as failed."""
    kube_api.refuse("POST", f"/api/v1/namespaces/{NAMESPACE}/events", 429)
    prometheus, _ = two_pools(kube_api, prometheus_factory, ramp_history)
    since = len(kube_api.requests())
    with running_operator(kube_api, prometheus.url, identity="op"):
        wait_until(lambda: replicas(kube_api, NAME) == 16, timeout=30, what="physical full")
        wait_until(lambda: replicas(kube_api, f"{NAME}-cloud") > 0, timeout=30, what="overflow")
        wait_until(
            lambda: (condition(kube_api, NAME, "Ready") or {}).get("status") == "True",
            timeout=30,
            what="Ready=True with events refused",
        )
    assert not kube_api.list("v1/events", namespace=NAMESPACE)
    sent = writes(kube_api, "op", since)
    first_status = next(i for i, (path, _) in enumerate(sent) if path.endswith("/status"))
    scaled = [path for path, _ in sent[:first_status] if path.endswith("/scale")]
    assert scaled == [SCALE.format(NAME), SCALE.format(f"{NAME}-cloud")], sent[:first_status]
    ready = [
        c
        for path, body in sent
        if path.endswith("/status")
        for c in (body or {}).get("status", {}).get("conditions") or []
        if c["type"] == "Ready"
    ]
    assert ready and all(c["status"] == "True" for c in ready), ready


def test_a_restarted_operator_keeps_the_reservation_until_its_first_forecast(
    kube_api: KubeEmulatorHandle,
    prometheus_factory: Callable[..., PrometheusServer],
    ramp_history: Callable[..., LoadSeries],
) -> None:
    """Placeholders booked ahead of a ramp stay through a restart: the new process plans
    without a forecast until its first fit ends, and must not give the nodes back meanwhile."""
    history = ramp_history("wc98-requests-per-minute", days=14, lead=15 * 60)
    key = series_key(region="eu")
    prometheus = prometheus_factory({key: history}, live={key: last_value(history)})
    add_region(kube_api, "eu", physical_nodes=2, cpu="8")
    kube_api.create(
        gwa_body(
            "eu",
            load={
                "query": 'sum(gateway_active_connections{region="eu"})',
                "perReplica": round(last_value(history) * 1.1 / 24, 3),
                "step": "1m",
                "history": "14d",
            },
            # As in test_operator_scale: a lead time of hours puts the ramp in the reservation.
            cloud={
                "deployment": f"{NAME}-cloud",
                "maxReplicas": 300,
                "nodeLeadTime": "4h",
                "reserve": True,
                "replicasPerNode": 1,
            },
            forecast={"model": "auto", "horizon": "30m", "quantile": 0.6, "refit": "15m"},
        )
    )
    placeholder = placeholder_name(NAME)
    with running_operator(kube_api, prometheus.url, loop_interval=1.0, identity="op-a"):
        wait_until(
            lambda: (
                kube_api.exists(DEPLOYMENTS, placeholder, namespace=NAMESPACE)
                and replicas(kube_api, placeholder) > 0
            ),
            timeout=60,
            what="placeholders reserved ahead of the ramp",
        )
    booked = replicas(kube_api, placeholder)
    since = len(kube_api.requests())
    with running_operator(kube_api, prometheus.url, loop_interval=1.0, identity="op-b"):
        wait_until(
            lambda: any(
                path.endswith(f"/gatewayautoscalers/{NAME}/status") and _forecast_ready(body)
                for path, body in writes(kube_api, "op-b", since)
            ),
            timeout=60,
            what="op-b's first forecast",
        )
    sent = writes(kube_api, "op-b", since)
    first_forecast = next(
        i
        for i, (path, body) in enumerate(sent)
        if path.endswith("/status") and _forecast_ready(body)
    )
    before = sent[:first_forecast]
    statuses = [
        (body or {}).get("status", body)
        for path, body in before
        if path.endswith(f"/{NAME}/status")
    ]
    assert statuses, "op-b planned at least once before its first fit ended"
    assert all(body["cloud"]["reserved"] >= booked for body in statuses), (booked, statuses)
    held = [
        body["spec"]["replicas"]
        for path, body in before
        if path.endswith(f"/deployments/{placeholder}") and "replicas" in body.get("spec", {})
    ]
    assert all(count >= booked for count in held), (booked, held)


def _forecast_ready(status_body: Any) -> bool:
    conditions = (status_body or {}).get("status", status_body or {}).get("conditions") or []
    return any(c.get("type") == "ForecastReady" and c.get("status") == "True" for c in conditions)
