"""Tidal on a kind cluster: real connections to real gateway pods, Prometheus scraping them, and
the operator scaling them across the physical and cloud pools (issue 5).

Each test gets its own namespace (samples, two weeks of backfilled history, replayers) and
proceeds in phases, polling the cluster with deadlines. History is shifted so that the live
replay continues it in real time from the scenario's start (RAMP, DESCENT and the physical pool's
pinned capacity are in cluster.py; tests/test_e2e_scenarios.py checks offline that the traces do
within these deadlines what the tests wait for).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from cluster import (
    DESCENT,
    LOOP,
    PHYSICAL_MAX_REPLICAS,
    RAMP,
    READY_DEADLINE,
    SCALE_DEADLINE,
    Scenario,
    install_scenario,
    kubectl,
    kubectl_json,
    poll,
)

pytestmark = pytest.mark.e2e

# RAMP: each region starts at or below the physical pool's pinned capacity (PHYSICAL_MAX_REPLICAS
# replicas, 20 connections each with 10% headroom) and surges past it by more than a cloud node
# within minutes, so it overflows to cloud. DESCENT: eu-west starts on cloud and falls back
# within the physical pool. The figures are in cluster.py.


@pytest.fixture
def ramp() -> Iterator[Scenario]:
    yield from install_scenario(RAMP)


@pytest.fixture
def descent() -> Iterator[Scenario]:
    yield from install_scenario(DESCENT)


def _pools(status: dict[str, Any]) -> tuple[int, int, int, int]:
    physical = status.get("physical") or {}
    cloud = status.get("cloud") or {}
    return (
        int(physical.get("replicas", 0)),
        int(physical.get("capacity", 0)),
        int(cloud.get("replicas", 0)),
        int(cloud.get("reserved", 0)),
    )


def _gateway_replicas(scenario: Scenario, region: str) -> int:
    """The replicas the region's two gateway Deployments ask for, physical and cloud."""
    names = (f"gateway-{region}", f"gateway-{region}-cloud")
    return sum(scenario.deployment_replicas(name) or 0 for name in names)


def _ready(scenario: Scenario, region: str) -> dict[str, Any] | None:
    status = scenario.status(region)
    conditions = {c["type"]: c for c in status.get("conditions") or []}
    ready = conditions.get("Ready", {}).get("status") == "True"
    return status if ready and status.get("forecast") else None


def test_physical_fills_first(ramp: Scenario) -> None:
    """While the physical pool has room, nothing runs on cloud."""
    # Phase 1: the operator forecasts from the backfilled history.
    for region in RAMP:
        poll(
            f"{region.name} Ready with a forecast",
            lambda r=region: _ready(ramp, r.name),
            deadline=READY_DEADLINE,
        )
    # Phase 2: observe the ramp; cloud replicas only once physical is full.
    observations = []

    def overflowed() -> bool | None:
        for region in RAMP:
            physical, capacity, cloud, _ = _pools(ramp.status(region.name))
            observations.append((region.name, physical, capacity, cloud))
            # The pin binds: a worker too small for it would change every figure below.
            assert capacity == PHYSICAL_MAX_REPLICAS, observations[-1]
            assert cloud == 0 or physical >= capacity, observations[-1]
        return True if any(o[3] > 0 for o in observations) else None

    poll("cloud replicas during the ramp", overflowed, deadline=SCALE_DEADLINE, every=LOOP)


def test_cloud_and_placeholders_grow_before_the_load_needs_them(ramp: Scenario) -> None:
    """Cloud capacity is reserved (placeholders, or with cloud.fillNodes gateway replicas
    filling a reserved node) before load exceeds the physical pool."""
    gwa = ramp.gwa("eu-west")
    per_replica = float(gwa["spec"]["load"]["perReplica"])
    first_forecast: list[float] = []  # the load when a forecast first showed in the status

    def reserved() -> dict[str, Any] | None:
        status = ramp.status("eu-west")
        if status.get("forecast") and not first_forecast:
            first_forecast.append(float(status.get("load", 0)))
        return status if _pools(status)[3] > 0 else None

    status = poll(
        "placeholders reserving cloud capacity", reserved, deadline=SCALE_DEADLINE, every=LOOP
    )
    _, capacity, _, _ = _pools(status)
    pool = capacity * per_replica
    came = (
        f"the first forecast came at load {first_forecast[0]:g}"
        if first_forecast
        else "no forecast had come"
    )
    why = (
        " (after the ramp passed the physical pool: the runner fitted too late for this check)"
        if first_forecast and first_forecast[0] > pool
        else ""
    )
    assert float(status.get("load", 0)) <= pool, (
        f"cloud capacity first reserved at load {status.get('load')}, past the physical pool's "
        f"{pool:g}; {came}{why}: {status}"
    )
    placeholders = ramp.deployment_replicas("gateway-eu-west-placeholder") or 0
    cloud = ramp.deployment_replicas("gateway-eu-west-cloud") or 0
    assert placeholders + cloud > 0, (placeholders, cloud, status)


def test_pods_land_on_their_pools(ramp: Scenario) -> None:
    """Gateway pods run on the nodes of their pool and region; placeholders on cloud nodes."""

    def with_cloud_gateway() -> list[dict[str, Any]] | None:
        """The namespace's running pods, once a cloud gateway pod is among them."""
        pods: list[dict[str, Any]] = kubectl_json(
            "-n", ramp.namespace, "get", "pods", "--field-selector", "status.phase=Running"
        )["items"]
        pools = {(p["metadata"].get("labels") or {}).get("tidal.dev/pool") for p in pods}
        return pods if "cloud" in pools else None

    pods = poll(
        "a running cloud gateway pod", with_cloud_gateway, deadline=SCALE_DEADLINE, every=LOOP
    )
    nodes = {
        n["metadata"]["name"]: n["metadata"]["labels"]
        for n in kubectl_json("get", "nodes")["items"]
    }
    checked = 0  # gateway pods and placeholders, a running cloud gateway among them
    for pod in pods:
        labels = pod["metadata"].get("labels") or {}
        node = nodes[pod["spec"]["nodeName"]]
        if "tidal.dev/placeholder-for" in labels:
            assert node.get("tidal.dev/pool") == "cloud", pod["metadata"]["name"]
            checked += 1
        elif "tidal.dev/pool" in labels:
            assert node["tidal.dev/pool"] == labels["tidal.dev/pool"], pod["metadata"]["name"]
            region = labels["tidal.dev/region"]
            assert node["topology.kubernetes.io/region"] == region, pod["metadata"]["name"]
            checked += 1
    assert checked > 0


def test_kubectl_get_gwa_tells_the_story(ramp: Scenario) -> None:
    """`kubectl get gwa` shows region, mode, load, forecast, physical, cloud and age."""
    for region in RAMP:
        poll(f"{region.name} Ready", lambda r=region: _ready(ramp, r.name), deadline=READY_DEADLINE)
    table = kubectl("-n", ramp.namespace, "get", "gwa")
    header, *rows = table.strip().splitlines()
    assert header.split() == [
        "NAME", "REGION", "MODE", "LOAD", "FORECAST", "PHYSICAL", "CLOUD", "AGE",
    ]  # fmt: skip
    assert len(rows) == len(RAMP)
    for row in rows:
        cells = row.split()
        assert cells[2] == "Scale" and all(cell != "<none>" for cell in cells), row


def test_cloud_shrinks_first_on_the_way_down(descent: Scenario) -> None:
    """As load falls, cloud replicas go before any physical replica does."""
    poll("eu-west Ready", lambda: _ready(descent, "eu-west"), deadline=READY_DEADLINE)
    history: list[tuple[int, int]] = []

    def shrunk() -> bool | None:
        physical, _, cloud, _ = _pools(descent.status("eu-west"))
        # One plan may remove the last cloud replicas and then physical ones with the budget
        # left, so the physical pool shrinks only in a status whose cloud is gone. Except for
        # the move rule: a physical pod still starting may be cancelled while a ready cloud
        # replica stays until the physical ones are ready (planner step 6), which needs a
        # physical pod that is not ready.
        if history and physical < history[-1][0] and cloud > 0:
            ready = descent.deployment_ready("gateway-eu-west")
            assert ready is not None and ready < history[-1][0], (
                f"physical shrank to {physical} with {cloud} on cloud and every physical "
                f"replica ready: {history}"
            )
        history.append((physical, cloud))
        # From the most cloud seen: the first loops after Ready may still be scaling up to it.
        most = max(c for _, c in history)
        return True if most > 0 and cloud < most else None

    poll("cloud replicas to shrink", shrunk, deadline=SCALE_DEADLINE, every=LOOP)


def test_prometheus_outage_causes_no_scale_down(ramp: Scenario) -> None:
    """With Prometheus gone, replicas hold and a condition says why; then it recovers."""
    for region in RAMP:
        poll(f"{region.name} Ready", lambda r=region: _ready(ramp, r.name), deadline=READY_DEADLINE)
    before = {r.name: _pools(ramp.status(r.name)) for r in RAMP}
    running_before = {r.name: _gateway_replicas(ramp, r.name) for r in RAMP}
    # Prometheus becomes unreachable (its Service selects nothing) but keeps its data.
    outage = '{"spec": {"selector": {"app.kubernetes.io/name": "prometheus-outage"}}}'
    restore = '{"spec": {"selector": {"app.kubernetes.io/name": "prometheus"}}}'
    kubectl("-n", "monitoring", "patch", "service", "prometheus", "-p", outage)
    try:

        def says_why() -> dict[str, Any] | None:
            status = ramp.status("eu-west")
            for condition in status.get("conditions") or []:
                if condition["status"] == "False" and "rometheus" in condition.get("message", ""):
                    return condition
            return None

        poll("a condition naming Prometheus", says_why, deadline=180, every=LOOP)
        for _ in range(3):  # three loops without metrics: no replica goes
            for region in RAMP:
                physical, _, cloud, _ = _pools(ramp.status(region.name))
                old_physical, _, old_cloud, _ = before[region.name]
                assert physical + cloud >= old_physical + old_cloud, region.name
                # What the Deployments ask for, not only what the status says: they hold too.
                running = _gateway_replicas(ramp, region.name)
                assert running >= running_before[region.name], (region.name, running)
            time.sleep(LOOP)
    finally:
        kubectl("-n", "monitoring", "patch", "service", "prometheus", "-p", restore)
    poll(
        "eu-west Ready again",
        lambda: _ready(ramp, "eu-west"),
        deadline=READY_DEADLINE,
        every=LOOP,
    )
