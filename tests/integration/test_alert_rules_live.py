"""Tidal's alerting rules in the real Prometheus, on the real operator's metrics: Prometheus
loads manifests/prometheus/tidal-rules.yaml, scrapes an operator's ``/metrics`` after passes
against the API emulator, and the rules' expressions match the series the operator exports, so
that an alert goes pending where it should. (Their ``for`` durations and annotations are
promtool's to test: tests/test_alerts.py.)"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from controller.operator.metrics import HealthServer
from controller.operator.sources import MetricsUnavailable
from tests.integration.operator_cluster import (
    DEPLOYMENTS,
    NAMESPACE,
    add_region,
    gwa_body,
)
from tests.support.kube_emulator import KubeEmulatorHandle
from tests.support.prometheus_server import PrometheusServer
from tests.support.repository import REPO

RULES = REPO / "manifests" / "prometheus" / "tidal-rules.yaml"
KEY = f"{NAMESPACE}/gateway-eu"
#: A duration in the rules: a number of minutes or hours.
DURATION = re.compile(r"\b(\d+)([mh])\b")


def compressed(path: Path) -> Path:
    """The rules with their clock sixty times as fast (a minute a second, an hour a minute),
    written beside ``path``'s name in a temporary directory: what they wait for, a test can.
    The one duration in seconds (TidalReconcileStale's 600) is left: no test here waits on it."""
    text = RULES.read_text("utf-8")
    fast = DURATION.sub(lambda m: m.group(1) + {"m": "s", "h": "m"}[m.group(2)], text)
    assert fast != text
    path.write_text(fast, "utf-8")
    return path


class Failing:
    def read_history(self, query: str, *, start: float, end: float, step: float) -> Any:
        raise MetricsUnavailable("connection refused", query=query)


@pytest.fixture
def watched(
    cluster: KubeEmulatorHandle,
    operator_at: Any,
    prometheus_factory: Callable[..., PrometheusServer],
    tmp_path: Path,
) -> Iterator[tuple[Any, PrometheusServer]]:
    """Region eu's operator, its metrics served on loopback, and a Prometheus that scrapes
    them every second and evaluates the rules, their clock 60 times as fast, as often."""
    add_region(cluster, "eu", replicas=4)
    cluster.create(gwa_body("eu"))
    operator = operator_at(5_000.0)
    server = HealthServer(
        operator.metrics,
        address="127.0.0.1",
        port=0,
        healthy=lambda: (True, "ok"),
        ready=lambda: (True, "ok"),
    )
    server.start()
    try:
        prometheus = prometheus_factory(
            rule_files=[compressed(tmp_path / "tidal-rules.yaml")],
            targets={"tidal": f"127.0.0.1:{server.port}"},
        )
        yield operator, prometheus
    finally:
        server.stop()


def alerts(prometheus: PrometheusServer) -> dict[str, dict[str, Any]]:
    """Every alerting rule Prometheus holds, by name."""
    response = requests.get(f"{prometheus.url}/api/v1/rules", timeout=10)
    response.raise_for_status()
    groups = response.json()["data"]["groups"]
    return {rule["name"]: rule for group in groups for rule in group["rules"]}


@contextlib.contextmanager
def passing(operator: Any, every: float = 0.5) -> Iterator[list[Any]]:
    """The operator's passes, one every ``every`` seconds on a thread of their own, as a live
    operator runs them (faster); yields the list their outcomes for gateway-eu go to."""
    outcomes: list[Any] = []
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            outcomes.append(operator.run_once()[KEY])
            stop.wait(every)

    thread = threading.Thread(target=loop, name="passes", daemon=True)
    thread.start()
    try:
        yield outcomes
    finally:
        stop.set()
        thread.join(timeout=30)


def states(prometheus: PrometheusServer) -> dict[str, str]:
    """Each alert's state: inactive, pending or firing."""
    return {name: rule["state"] for name, rule in alerts(prometheus).items()}


def wait_until(check: Callable[[], bool], what: Callable[[], object], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what()
        time.sleep(0.2)


def test_a_healthy_region_raises_nothing(watched: tuple[Any, PrometheusServer]) -> None:
    """The rules load; once the first fit is in, nothing is pending, and nothing goes pending
    over 18 compressed minutes of passes (past TidalReplicasNotReady's 15)."""
    operator, prometheus = watched
    assert set(alerts(prometheus)) == set(re.findall(r"- alert: (\w+)", RULES.read_text("utf-8")))
    wait_until(  # "unknown" until their first evaluation
        lambda: {rule["health"] for rule in alerts(prometheus).values()} == {"ok"},
        lambda: alerts(prometheus),
        timeout=20,
    )
    with passing(operator) as outcomes:
        wait_until(
            lambda: bool(outcomes) and outcomes[-1].plan.total.reason.value != "Fallback",
            lambda: outcomes[-1:],
            timeout=30,
        )
        # TidalOperatorAbsent until the first scrape, TidalReactiveFallback until the fit.
        wait_until(
            lambda: set(states(prometheus).values()) == {"inactive"},
            lambda: states(prometheus),
            timeout=20,
        )
        time.sleep(18)
        assert set(states(prometheus).values()) == {"inactive"}, states(prometheus)
        assert all(outcome.ok for outcome in outcomes)
    prometheus.wait_for("count(tidal_ready_replicas)", lambda n: n == 2, timeout=5)


def test_a_pool_behind_its_deployment_and_a_region_without_load_raise_theirs(
    cluster: KubeEmulatorHandle, watched: tuple[Any, PrometheusServer]
) -> None:
    """Fewer physical gateways ready than asked for, for 20 compressed minutes:
    TidalReplicasNotReady fires, matching the ready and asked-for series of that pool. Then the
    load cannot be read: the plan falls back and the failures are counted, and the alerts on
    those go pending."""
    operator, prometheus = watched
    with passing(operator) as outcomes:
        wait_until(lambda: len(outcomes) >= 2, lambda: outcomes, timeout=20)
        cluster.patch(
            DEPLOYMENTS,
            "gateway-eu",
            {"status": {"replicas": 16, "readyReplicas": 9, "observedGeneration": 2}},
            namespace=NAMESPACE,
            subresource="status",
        )
        prometheus.wait_for('tidal_ready_replicas{pool="physical"}', lambda n: n == 9, timeout=20)
        wait_until(
            lambda: states(prometheus)["TidalReplicasNotReady"] == "firing",
            lambda: states(prometheus),
            timeout=40,
        )
        [behind] = prometheus.query('ALERTS{alertname="TidalReplicasNotReady"}')
        labels = behind["metric"]
        assert (labels["gwa"], labels["namespace"], labels["region"], labels["pool"]) == (
            "gateway-eu",
            NAMESPACE,
            "eu",
            "physical",
        )
        assert labels["alertstate"] == "firing" and labels["severity"] == "warning"

        operator.reconciler.source = Failing()
        wait_until(
            lambda: (
                states(prometheus)["TidalReactiveFallback"] != "inactive"
                and states(prometheus)["TidalReconcileFailing"] != "inactive"
            ),
            lambda: states(prometheus),
            timeout=30,
        )
    failing = prometheus.query('ALERTS{alertname="TidalReconcileFailing"}')
    assert [(f["metric"]["gwa"], f["metric"]["reason"]) for f in failing] == [
        ("gateway-eu", "MetricsUnavailable")
    ]
    [fallback] = prometheus.query('ALERTS{alertname="TidalReactiveFallback"}')
    assert (fallback["metric"]["gwa"], fallback["metric"]["region"]) == ("gateway-eu", "eu")
    quiet = ("TidalOperatorAbsent", "TidalNoLeader", "TidalManyLeaders", "TidalCapacityLimited")
    assert {name: states(prometheus)[name] for name in quiet} == dict.fromkeys(quiet, "inactive")
