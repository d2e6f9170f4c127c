"""Offline checks of the kind e2e scenarios (e2e/cluster.py): what the replay will serve.

The e2e tests (e2e/test_e2e.py) need Docker and kind, and wait with deadlines for the operator
to overflow to cloud (RAMP) or to shrink cloud first (DESCENT). The replay plays its trace in
real time from each region's ``start``, so whether the scenario can pass at all is decided by
the trace, the peak and the physical pool's pinned capacity. This computes, with the replayer's
own scaling (TraceReplay) and the planner's own sizing (replicas_for, from the samples the e2e
tests install), the replicas each region needs over the tests' windows.
"""

from __future__ import annotations

import functools
import math
from decimal import Decimal
from typing import Any

import numpy as np
import pytest

from controller.demo_gateway.replayer import TraceReplay
from controller.operator.capacity import pod_requests, quantity
from controller.planner import replicas_for
from controller.spec import GatewayAutoscaler, GatewayAutoscalerSpec
from forecasts.series import LoadSeries, format_timestamp, load_trace, parse_timestamp
from tests.support.repository import e2e_cluster, kustomize

#: The first seconds of a scenario, while the operator fits its first forecast and runs its
#: first loops: a RAMP region stays within the physical pool through them (placeholders must be
#: reserved before the load needs cloud), a DESCENT region stays above it (cloud in use).
SETTLE = 180.0
#: What separates the trace from the status the tests read: the replayer pod starting after
#: the history's ``now``, a 15s scrape, the operator's 1m load step and 10s loop, a pod start.
LAG = 120.0
#: How long a RAMP region's load stays a cloud node above capacity once it gets there.
SUSTAIN = 180.0
#: Seconds between the points the replay is read at (the replayer resizes every second; the
#: traces are per minute and per 5 minutes, read by linear interpolation).
TICK = 10.0
#: A kind node's allocatable CPU is the host's: the smallest runner the pin must fit.
RUNNER_CPU = quantity("2")
#: kind's own pods that request CPU and may run on a physical worker: kindnet (a DaemonSet,
#: 100m) and the two CoreDNS replicas (100m each). Prometheus and the operator are read from
#: their manifests.
KIND_SYSTEM_CPU = quantity("100m") + 2 * quantity("100m")


cluster = e2e_cluster()


def _autoscaler(region: str) -> GatewayAutoscaler:
    """The region's GatewayAutoscaler as the e2e tests install it."""
    [doc] = [
        d
        for d in kustomize("e2e/manifests/samples")
        if d["kind"] == "GatewayAutoscaler" and d["spec"]["region"] == region
    ]
    return GatewayAutoscaler.model_validate(doc)


@functools.cache
def _trace(name: str) -> LoadSeries:
    if not cluster.TRACES.is_dir():
        pytest.skip(f"the traces directory {cluster.TRACES} is missing")
    return load_trace(cluster.TRACES / name)


def _needs(region: Any, spec: GatewayAutoscalerSpec, seconds: float) -> np.ndarray:
    """Replicas the region needs every TICK over ``seconds`` from its start: the replayer's
    connections (TraceReplay, the same trace, peak and start), sized as the planner sizes the
    load (perReplica and headroom of the installed sample)."""
    replay = TraceReplay(_trace(region.trace), region.peak)
    start = parse_timestamp(region.start)
    offsets = np.arange(0.0, seconds + TICK / 2, TICK)
    return np.array([replicas_for(replay.connections_at(start + t), spec) for t in offsets])


def _first_held(held: np.ndarray, ticks: int) -> float | None:
    """Seconds from the start to the first point from which ``held`` is true for ``ticks``
    more ticks (the end of the series counts as held), or None."""
    for i in range(held.size):
        if held[i : i + ticks + 1].all():
            return i * TICK
    return None


def _describe(needs: np.ndarray) -> str:
    per_minute = ", ".join(str(int(n)) for n in needs[:: int(60 / TICK)])
    return f"replicas needed minute by minute: {per_minute}"


def _region_id(kind: str, region: Any) -> str:
    return f"{kind}-{region.name}-{region.start}"


RAMP = [pytest.param(r, id=_region_id("ramp", r)) for r in cluster.RAMP]
DESCENT = [pytest.param(r, id=_region_id("descent", r)) for r in cluster.DESCENT]


def test_samples_pin_the_physical_capacity_the_scenarios_assume() -> None:
    """Every e2e GatewayAutoscaler caps its physical pool at PHYSICAL_MAX_REPLICAS."""
    autoscalers = [
        d for d in kustomize("e2e/manifests/samples") if d["kind"] == "GatewayAutoscaler"
    ]
    regions = {r.name for r in (*cluster.RAMP, *cluster.DESCENT)}
    assert regions <= {d["spec"]["region"] for d in autoscalers}
    for doc in autoscalers:
        pinned = GatewayAutoscaler.model_validate(doc).spec.physical.max_replicas
        assert pinned == cluster.PHYSICAL_MAX_REPLICAS, doc["metadata"]["name"]


def test_a_two_core_worker_holds_the_pinned_physical_pool() -> None:
    """The pin, not the runner, sets the physical capacity: PHYSICAL_MAX_REPLICAS gateways fit
    one kind physical worker of a 2-core host beside every other pod that may land there."""
    samples = kustomize("e2e/manifests/samples")
    others = KIND_SYSTEM_CPU
    for path in ("e2e/manifests/prometheus", "manifests/overlays/e2e"):
        for doc in kustomize(path):
            if doc["kind"] == "Deployment":
                replicas = int(doc["spec"].get("replicas", 1))
                template = doc["spec"]["template"]["spec"]
                others += replicas * pod_requests(template).get("cpu", Decimal(0))
    for doc in samples:
        if doc["kind"] != "Deployment" or doc["metadata"]["labels"]["tidal.dev/pool"] != "physical":
            continue
        gateway = pod_requests(doc["spec"]["template"]["spec"])["cpu"]
        assert gateway > 0, doc["metadata"]["name"]
        fits = math.floor((RUNNER_CPU - others) / gateway)
        assert fits >= cluster.PHYSICAL_MAX_REPLICAS, (doc["metadata"]["name"], fits, others)


@pytest.mark.parametrize("region", [*RAMP, *DESCENT])
def test_two_weeks_of_history_precede_the_start(region: Any) -> None:
    """The backfill (cluster.history_text: load.history of trace before the start, ending a
    lookback before it) lies inside the trace, with hardly a missing sample."""
    series = _trace(region.trace)
    spec = _autoscaler(region.name).spec
    end = parse_timestamp(region.start) - cluster.LOOKBACK
    first = end - spec.load.history.total_seconds()
    assert first >= series.start, (
        f"{region.start}: the history would begin at {format_timestamp(first)}, before the "
        f"trace does ({format_timestamp(series.start)})"
    )
    window = series.values[series.index_of(first) : series.index_of(end) + 1]
    assert np.isnan(window).mean() < 0.01


@pytest.mark.parametrize("region", RAMP)
def test_ramp_overflows_to_cloud_within_the_deadline(region: Any) -> None:
    """Within the physical pool through SETTLE, then a cloud node's worth above it (held for
    SUSTAIN) early enough for the tests to see cloud replicas before SCALE_DEADLINE."""
    spec = _autoscaler(region.name).spec
    capacity = cluster.PHYSICAL_MAX_REPLICAS
    needs = _needs(region, spec, cluster.SCALE_DEADLINE + SUSTAIN)
    settle = needs[: int(SETTLE / TICK) + 1]
    assert settle.max() <= capacity, f"above {capacity} at the start: {_describe(needs)}"
    above = needs >= capacity + spec.cloud.replicas_per_node
    reached = _first_held(above, int(SUSTAIN / TICK))
    assert reached is not None and reached <= cluster.SCALE_DEADLINE - LAG, (
        f"never {capacity} + {spec.cloud.replicas_per_node} replicas for {SUSTAIN:.0f}s by "
        f"{cluster.SCALE_DEADLINE - LAG:.0f}s: {_describe(needs)}"
    )


@pytest.mark.parametrize("region", DESCENT)
def test_descent_leaves_cloud_within_the_deadline(region: Any) -> None:
    """Above the physical pool (cloud in use) through SETTLE, then within it for the rest of
    the tests' window, early enough that a scale-down stabilisation later cloud has shrunk."""
    spec = _autoscaler(region.name).spec
    capacity = cluster.PHYSICAL_MAX_REPLICAS
    window = cluster.READY_DEADLINE + cluster.SCALE_DEADLINE
    needs = _needs(region, spec, window)
    settle = needs[: int(SETTLE / TICK) + 1]
    assert settle.min() > capacity, f"not above {capacity} at the start: {_describe(needs)}"
    fell = _first_held(needs <= capacity, needs.size)
    stabilization = spec.behavior.scale_down.stabilization.total_seconds()
    latest = cluster.SCALE_DEADLINE - stabilization - LAG
    assert fell is not None and fell <= latest, (
        f"not within {capacity} replicas from {latest:.0f}s to {window:.0f}s: {_describe(needs)}"
    )


@pytest.mark.parametrize("region", RAMP)
def test_ramp_regions_surge_at_different_hours(region: Any) -> None:
    """Regions stand for different time zones: no two RAMP regions start in the same UTC hour
    of the day."""
    hours = [int(r.start[11:13]) for r in cluster.RAMP]
    assert hours.count(int(region.start[11:13])) == 1, hours
