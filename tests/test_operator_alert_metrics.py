"""The series the alerting rules read (manifests/prometheus/tidal-rules.yaml), as one reconcile
pass at a time exports them against the API emulator: the plan's reasons, the ready replicas,
whether the bounds cut the plan, and the time of the last success."""

from __future__ import annotations

import re
from typing import Any

import pytest

from controller.operator.metrics import OperatorMetrics
from controller.operator.sources import MetricsUnavailable
from tests.integration.operator_cluster import (
    DEPLOYMENTS,
    NAMESPACE,
    FlatLoad,
    add_region,
    gwa_body,
)
from tests.support.kube_emulator import KubeEmulatorHandle

KEY = f"{NAMESPACE}/gateway-eu"
SAMPLE = re.compile(r"^(\w+)\{(.*)\} (\S+)$")


def series(metrics: OperatorMetrics, name: str) -> dict[frozenset[tuple[str, str]], float]:
    """``name``'s samples: their labels (as pairs) and values."""
    found = {}
    for line in metrics.exposition().decode().splitlines():
        match = SAMPLE.match(line)
        if match and match.group(1) == name:
            labels = frozenset(re.findall(r'(\w+)="([^"]*)"', match.group(2)))
            found[labels] = float(match.group(3))
    return found


def reasons(metrics: OperatorMetrics) -> dict[str, str]:
    """``tidal_plan_reason`` of gateway-eu: decision -> reason, each exported as 1."""
    out: dict[str, str] = {}
    for labels, value in series(metrics, "tidal_plan_reason").items():
        named = dict(labels)
        assert named["gwa"] == "gateway-eu" and value == 1.0
        assert named["decision"] not in out, f"two reasons for {named['decision']}"
        out[named["decision"]] = named["reason"]
    return out


def one(metrics: OperatorMetrics, name: str, **labels: str) -> float | None:
    hits = [v for k, v in series(metrics, name).items() if set(labels.items()) <= k]
    assert len(hits) <= 1
    return hits[0] if hits else None


def test_the_plan_s_reasons_are_exported_one_per_decision(
    cluster: KubeEmulatorHandle, operator_at: Any
) -> None:
    """Each of the four decisions exports the reason the plan gives it, and only that one: a
    reason that changes takes its series with it."""
    add_region(cluster, "eu", replicas=4)
    cluster.create(gwa_body("eu"))
    operator = operator_at(5_000.0)
    plan = operator.run_once()[KEY].plan
    assert plan is not None
    expected = {
        "total": plan.total.reason.value,
        "physical": plan.physical.reason.value,
        "cloud": plan.cloud.reason.value,
        "reserve": plan.reserve.reason.value,
    }
    assert reasons(operator.metrics) == expected
    # Past the physical pool: the cloud's reason changes, and the old series goes.
    operator.reconciler.source = FlatLoad(40_000.0)
    plan = operator.run_once()[KEY].plan
    assert plan is not None and plan.cloud.reason.value != expected["cloud"]
    assert reasons(operator.metrics)["cloud"] == plan.cloud.reason.value


def test_ready_replicas_are_exported_as_the_deployments_report_them(
    cluster: KubeEmulatorHandle, operator_at: Any
) -> None:
    """``status.readyReplicas`` as the pass read it (before it scaled), and no series for a
    Deployment with no status yet."""
    add_region(cluster, "eu", replicas=4)
    cluster.create(gwa_body("eu"))
    operator = operator_at(5_000.0)
    operator.run_once()  # the emulator's Deployment controller made the 4 ready
    assert one(operator.metrics, "tidal_ready_replicas", pool="physical") == 4.0
    assert one(operator.metrics, "tidal_actual_replicas", pool="physical") == 16.0
    cluster.patch(
        DEPLOYMENTS,
        "gateway-eu",
        {"status": {"replicas": 16, "readyReplicas": 9, "observedGeneration": 2}},
        namespace=NAMESPACE,
        subresource="status",
    )
    cluster.patch(
        DEPLOYMENTS, "gateway-eu-cloud", {"status": None}, namespace=NAMESPACE, subresource="status"
    )
    operator.run_once()
    assert one(operator.metrics, "tidal_ready_replicas", pool="physical") == 9.0
    assert one(operator.metrics, "tidal_ready_replicas", pool="cloud") is None
    assert one(operator.metrics, "tidal_actual_replicas", pool="cloud") == 0.0


@pytest.mark.parametrize(("load", "limited"), [(5_000.0, 0.0), (900_000.0, 1.0)])
def test_capacity_limited_says_whether_the_bounds_cut_the_plan(
    cluster: KubeEmulatorHandle, operator_at: Any, load: float, limited: float
) -> None:
    """900 replicas' worth against replicas.max 400: the plan is cut, as CapacityLimited says."""
    add_region(cluster, "eu", replicas=4)
    cluster.create(gwa_body("eu"))
    operator = operator_at(load)
    plan = operator.run_once()[KEY].plan
    assert plan is not None and bool(plan.capacity_limited) is bool(limited)
    assert one(operator.metrics, "tidal_capacity_limited", gwa="gateway-eu") == limited


class Failing:
    def read_history(self, query: str, *, start: float, end: float, step: float) -> Any:
        raise MetricsUnavailable("connection refused", query=query)


def test_the_last_success_moves_only_on_a_success(
    cluster: KubeEmulatorHandle, operator_at: Any
) -> None:
    """A pass that fails keeps the time of the last one that did not; the plan it holds on is
    a fallback, as TidalReactiveFallback reads it."""
    add_region(cluster, "eu", replicas=4)
    cluster.create(gwa_body("eu"))
    operator = operator_at(5_000.0)
    clock = [1_000_000.0]
    operator.reconciler.clock = lambda: clock[0]
    assert operator.run_once()[KEY].ok
    stamp = {("gwa", "gateway-eu"), ("namespace", NAMESPACE)}
    assert series(operator.metrics, "tidal_last_success_timestamp_seconds") == {
        frozenset(stamp): 1_000_000.0
    }
    operator.reconciler.source = Failing()
    clock[0] += 60.0
    assert not operator.run_once()[KEY].ok
    assert one(operator.metrics, "tidal_last_success_timestamp_seconds") == 1_000_000.0
    assert reasons(operator.metrics)["total"] == "Fallback"
    operator.reconciler.source = FlatLoad(5_000.0)
    clock[0] += 60.0
    assert operator.run_once()[KEY].ok
    assert one(operator.metrics, "tidal_last_success_timestamp_seconds") == 1_000_120.0


def test_a_follower_withdraws_the_new_gauges_too(
    cluster: KubeEmulatorHandle, operator_at: Any
) -> None:
    """Without the lease no object series is left, whatever gauge it is; tidal_leader stays."""
    add_region(cluster, "eu", replicas=4)
    cluster.create(gwa_body("eu"))
    operator = operator_at(5_000.0)
    operator.run_once()
    before = operator.metrics.exposition().decode()
    for name in ("tidal_plan_reason", "tidal_capacity_limited", "tidal_last_success_timestamp"):
        assert f"\n{name}" in before
    operator.is_leader = lambda: False
    assert operator.run_once() == {}
    left = [x for x in operator.metrics.exposition().decode().splitlines() if 'gwa="' in x]
    # Counters and histograms tell what this replica did, and stay.
    assert all(x.startswith(("tidal_reconcile_", "tidal_fit_")) for x in left), left
    # Back to leading: the reasons come back, not doubled.
    operator.is_leader = lambda: True
    operator.run_once()
    assert len(reasons(operator.metrics)) == 4
