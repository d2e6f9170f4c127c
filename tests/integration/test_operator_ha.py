"""Two operator instances on one Lease: only the leader writes; the other takes over."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pytest

from forecasts.series import LoadSeries
from tests.integration.operator_cluster import (
    add_region,
    gwa_body,
    replicas,
    running_operator,
    status_of,
    wait_until,
    writes_by,
)
from tests.support.kube_emulator import KubeEmulatorHandle
from tests.support.prometheus_server import PrometheusServer, series_key

pytestmark = pytest.mark.integration

LEASE = "coordination.k8s.io/v1/leases"
LEASE_DURATION = 2.0


def holder(kube: KubeEmulatorHandle) -> str | None:
    if not kube.exists(LEASE, "tidal-operator", namespace="default"):
        return None
    return kube.get(LEASE, "tidal-operator", namespace="default")["spec"].get("holderIdentity")


def test_only_the_leader_writes_and_the_other_takes_over(
    kube_api: KubeEmulatorHandle,
    prometheus_factory: Callable[..., PrometheusServer],
    ramp_history: Callable[..., LoadSeries],
) -> None:
    """A leads and writes; B stands by without a write; A dies; B leads within the lease."""
    history = ramp_history("wc98-requests-per-minute", days=3)
    key = series_key(region="eu")
    latest = float(history.values[np.isfinite(history.values)][-1])
    prometheus = prometheus_factory({key: history}, live={key: latest})
    add_region(kube_api, "eu")
    kube_api.create(
        gwa_body(
            "eu",
            load={
                "query": 'sum(gateway_active_connections{region="eu"})',
                "perReplica": round(latest * 1.1 / 24, 3),
                "step": "1m",
                "history": "3d",
            },
        )
    )
    election = {"leader_election": True, "lease_duration": LEASE_DURATION, "lease_renew": 0.5}

    # B loads a kubeconfig as `tidal run` does; A is handed a client.
    with running_operator(kube_api, prometheus.url, identity="op-a", **election) as a:
        wait_until(lambda: holder(kube_api) == "op-a", timeout=10, what="op-a holds the lease")
        wait_until(lambda: replicas(kube_api, "gateway-eu") == 16, timeout=30, what="op-a scales")
        with running_operator(
            kube_api, prometheus.url, identity="op-b", kubeconfig=True, **election
        ) as b:
            wait_until(lambda: b.loops >= 4, timeout=10, what="op-b running a few loops")
            assert not b.is_leader()
            assert holder(kube_api) == "op-a"
            assert writes_by(kube_api, "op-b") == [], "a follower must not write"
            assert writes_by(kube_api, "op-a"), "the leader writes"

            # A dies without releasing the lease: B must wait for it to expire, no longer.
            a.stop(release=False)
            wait_until(lambda: not a.health, timeout=10, what="op-a stopped")
            stopped = time.monotonic()
            log_mark = len(kube_api.requests())
            wait_until(
                lambda: holder(kube_api) == "op-b",
                timeout=LEASE_DURATION + 3,
                what="op-b takes the lease over",
            )
            took = time.monotonic() - stopped
            assert took <= LEASE_DURATION + 1.5, f"takeover took {took:.1f}s"
            wait_until(
                lambda: writes_by(kube_api, "op-b", since=log_mark),
                timeout=10,
                what="op-b writes as the new leader",
            )
            assert writes_by(kube_api, "op-a", since=log_mark) == []
            status = status_of(kube_api, "gateway-eu")
            assert status["physical"]["replicas"] == 16
            # B has no fit of its own yet, and still holds what runs: no scale-down on takeover.
            assert replicas(kube_api, "gateway-eu") == 16
