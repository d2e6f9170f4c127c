"""``tidal run`` and its :class:`Operator` at their edges: the production loop in a thread
against the API emulator (what wakes it, readiness and health over real HTTP, the lease taken
and given back, a stop that ends every thread it started), the flags and the settings they
make, ``--once``'s exit codes, the signals that stop it, and the log format it configures."""

from __future__ import annotations

import argparse
import contextlib
import http.client
import io
import itertools
import json
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from pydantic import ValidationError
from structlog.testing import capture_logs

from controller import cli
from controller.operator import command
from controller.operator.logs import configure_logging, use_json
from controller.operator.prometheus_source import PrometheusUnreachable
from controller.operator.settings import OperatorSettings
from tests.integration.operator_cluster import (
    GWAS,
    NAMESPACE,
    FlatLoad,
    add_region,
    gwa_body,
    wait_until,
)
from tests.support.fixtures import clear_operator_environment
from tests.support.kube_emulator import KubeEmulatorHandle

LEASES = "coordination.k8s.io/v1/leases"
#: Threads the operator starts, each of which a stop must end.
OWN_THREADS = ("tidal-watch", "tidal-health", "tidal-leader", "tidal-fit")
#: Names of the objects made to end a watch's read once the operator is stopped.
STOPS = itertools.count()


@pytest.fixture(autouse=True)
def no_settings_around(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No ``TIDAL_*`` variable, no $KUBECONFIG and not in a pod, unless a test says so."""
    clear_operator_environment(monkeypatch, tmp_path / "home")


def eventually(check: Callable[[], Any], what: str) -> Any:
    return wait_until(check, timeout=15.0, what=what, every=0.02)


def settings(**options: Any) -> OperatorSettings:
    """One replica, a loop that only runs when woken, a watch that is not re-opened in a test."""
    values: dict[str, Any] = {
        "leader_election": False,
        "metrics_port": 0,
        "metrics_address": "127.0.0.1",
        "loop_interval": 3600.0,
        "watch_poll": 30.0,
        "lease_namespace": "default",
        "identity": "edge-a",
    }
    values.update(options)
    return OperatorSettings(**values)


class Wakes(threading.Event):
    """The loop's wake-up event, counting who set it."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self._count_lock = threading.Lock()

    def set(self) -> None:
        with self._count_lock:
            self.count += 1
        super().set()


def paused(region: str, *, name: str | None = None, namespace: str = NAMESPACE) -> dict[str, Any]:
    """A GatewayAutoscaler that reads nothing (``mode: Paused``) but is reconciled all the same."""
    body = gwa_body(region, name=name, mode="Paused")
    body["metadata"]["namespace"] = namespace
    return body


def own_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith(OWN_THREADS)}


@contextlib.contextmanager
def operating(
    operator: command.Operator, kube: KubeEmulatorHandle, *, release: bool = True
) -> Iterator[threading.Thread]:
    """``run_forever`` in a thread; on exit stop it and see every thread it started end.

    A watch blocked in a read ends at its next event: one is made in each watched namespace.
    """
    before = own_threads()
    thread = threading.Thread(target=operator.run_forever, name="edge-operator", daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        operator.stop(release=release)
        for namespace in operator.settings.namespaces or ["tidal-stop"]:
            kube.create(paused("zz", name=f"stop-{next(STOPS)}", namespace=namespace))
        thread.join(timeout=15)
        started = own_threads() - before
        for leftover in started:
            leftover.join(timeout=10)
        assert not thread.is_alive(), "run_forever did not return"
        assert [t.name for t in started if t.is_alive()] == []


def probe(port: int, path: str) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def refused(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


# --- the loop and what wakes it ------------------------------------------------------------------


def test_the_watch_wakes_the_loop_for_what_changes_the_plan_only(
    cluster: KubeEmulatorHandle,
) -> None:
    """A new object, a spec change and a deletion each wake the loop once; a status write, a
    label, and a watch that lists the same objects again do not. Another object with the same
    spec is another object. What the loop keeps of deleted objects goes with them."""
    operator = command.Operator(settings(), api_client=cluster.api_client(), source=FlatLoad(1.0))
    wakes = operator._wake = Wakes()
    with operating(operator, cluster):
        eventually(lambda: operator.loops == 1, "the first pass")
        cluster.create(paused("eu"))
        eventually(lambda: wakes.count == 1, "a wake for the new object")
        eventually(lambda: operator.loops == 2, "the pass it woke")
        eventually(lambda: "status" in cluster.get(GWAS, "gateway-eu", namespace=NAMESPACE), "")
        cluster.patch(
            GWAS, "gateway-eu", {"status": {"note": "x"}}, namespace=NAMESPACE, subresource="status"
        )
        cluster.patch(GWAS, "gateway-eu", {"metadata": {"labels": {"a": "b"}}}, namespace=NAMESPACE)
        # Events come in order: once the twin's wake is counted, the two above were seen.
        cluster.create(paused("eu", name="gateway-eu-twin"))
        eventually(lambda: wakes.count >= 2, "a wake for the twin")
        assert wakes.count == 2
        cluster.patch(GWAS, "gateway-eu", {"spec": {"headroom": 0.3}}, namespace=NAMESPACE)
        eventually(lambda: wakes.count >= 3, "a wake for the spec change")
        cluster.delete(GWAS, "gateway-eu", namespace=NAMESPACE)
        eventually(lambda: wakes.count >= 4, "a wake for the deletion")
        cluster.create(paused("eu", name="gateway-eu-third"))
        eventually(lambda: wakes.count >= 5, "a wake for the third")
        assert wakes.count == 5
        uids = {
            str(cluster.get(GWAS, name, namespace=NAMESPACE)["metadata"]["uid"])
            for name in ("gateway-eu-twin", "gateway-eu-third")
        }
        assert set(operator._specs) == uids
        eventually(lambda: operator.loops >= 3, "a pass after the changes")


def test_a_deletion_the_watch_missed_leaves_no_digest_after_a_pass(
    cluster: KubeEmulatorHandle,
) -> None:
    """A watch re-opened afresh never hears of an object deleted between its streams: the
    pass's list of the objects drops its spec digest; the live object's stays."""
    operator = command.Operator(settings(), api_client=cluster.api_client(), source=FlatLoad(1.0))
    cluster.create(paused("eu"))
    uid = str(cluster.get(GWAS, "gateway-eu", namespace=NAMESPACE)["metadata"]["uid"])
    operator._specs.update({uid: "live", "deleted-unheard": "stale"})
    operator.run_once()
    assert operator._specs == {uid: "live"}


def test_a_namespaced_watch_sees_its_own_namespace_only(cluster: KubeEmulatorHandle) -> None:
    """With ``namespaces`` set, an object elsewhere does not wake the loop."""
    operator = command.Operator(
        settings(namespaces=[NAMESPACE]), api_client=cluster.api_client(), source=FlatLoad(1.0)
    )
    wakes = operator._wake = Wakes()
    with operating(operator, cluster):
        eventually(lambda: operator.loops == 1, "the first pass")
        cluster.create(paused("us", namespace="elsewhere"))
        cluster.create(paused("eu"))
        eventually(lambda: wakes.count >= 1, "a wake for the watched namespace's object")
        assert wakes.count == 1
    watched = {r.url.path for r in cluster.requests() if r.params.get("watch") == "true"}
    assert watched == {f"/apis/tidal.dev/v1alpha1/namespaces/{NAMESPACE}/gatewayautoscalers"}


def test_a_watch_that_times_out_is_opened_again_and_still_wakes_the_loop(
    cluster: KubeEmulatorHandle,
) -> None:
    """After ``watch_poll`` without events the watch is re-opened (a debug line says so); the
    objects it lists again wake nothing, a new one does."""
    cluster.create(paused("eu"))
    operator = command.Operator(
        settings(watch_poll=0.3), api_client=cluster.api_client(), source=FlatLoad(1.0)
    )
    wakes = operator._wake = Wakes()
    with capture_logs() as logs, operating(operator, cluster):
        eventually(lambda: wakes.count == 1, "a wake for the object there")
        eventually(
            lambda: sum(e["event"] == "watch_reopened" for e in logs) >= 2, "two re-opened watches"
        )
        cluster.create(paused("eu", name="gateway-eu-twin"))
        eventually(lambda: wakes.count >= 2, "a wake for the new object")
        assert wakes.count == 2
    reopened = [e for e in logs if e["event"] == "watch_reopened"]
    assert {e["log_level"] for e in reopened} == {"debug"}
    assert all(e["error"] for e in reopened)


def test_a_stopped_operator_runs_again(cluster: KubeEmulatorHandle) -> None:
    """``run_forever`` after a ``stop`` starts afresh: a new port, and passes again."""
    operator = command.Operator(settings(), api_client=cluster.api_client(), source=FlatLoad(1.0))
    for passes in (1, 2):
        with operating(operator, cluster):
            eventually(lambda n=passes: operator.loops >= n, "a pass")
            assert operator.health is not None
            port = operator.health.port
            assert probe(port, "/readyz") == (200, "leader\n")
        assert operator.health is None and refused(port)


def test_a_stop_asked_before_the_start_is_kept(cluster: KubeEmulatorHandle) -> None:
    """A SIGTERM can come between ``run`` setting its handlers and ``run_forever`` starting:
    the stop is kept, no pass runs and every thread started ends; a later run starts afresh."""
    operator = command.Operator(settings(), api_client=cluster.api_client(), source=FlatLoad(1.0))
    before = own_threads()
    operator.stop()
    thread = threading.Thread(target=operator.run_forever, name="edge-operator", daemon=True)
    thread.start()
    thread.join(timeout=15)
    assert not thread.is_alive(), "run_forever did not return"
    assert (operator.loops, operator.health) == (0, None)
    started = own_threads() - before
    for leftover in started:
        leftover.join(timeout=10)
    assert [t.name for t in started if t.is_alive()] == []
    with operating(operator, cluster):
        eventually(lambda: operator.loops >= 1, "a pass after the stop was carried out")


def test_a_failing_pass_is_logged_and_the_loop_goes_on(cluster: KubeEmulatorHandle) -> None:
    """Something no API error covers, raised by a pass, is logged with its traceback; the
    loop counts the pass and runs the next one when woken."""
    operator = command.Operator(settings(), api_client=cluster.api_client(), source=FlatLoad(1.0))
    read = operator.kube.snapshot
    calls = {"n": 0}

    def broken_once(namespaces: list[str]) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("a bug")
        return read(namespaces)

    operator.kube.snapshot = broken_once  # type: ignore[method-assign]
    with capture_logs() as logs, operating(operator, cluster):
        eventually(lambda: operator.loops == 1, "the failed pass counted")
        cluster.create(paused("eu"))
        eventually(lambda: operator.loops == 2, "the next pass")
        eventually(lambda: "status" in cluster.get(GWAS, "gateway-eu", namespace=NAMESPACE), "")
    failed = [e for e in logs if e["event"] == "loop_failed"]
    assert len(failed) == 1 and failed[0]["log_level"] == "error" and failed[0]["exc_info"]


def test_start_and_stop_are_logged_with_what_the_operator_runs(
    cluster: KubeEmulatorHandle,
) -> None:
    """``operator_started`` names the identity, the port it serves, the namespaces (``all``
    when none is set) and whether it elects a leader; ``operator_stopped`` follows. The watch
    runs in a daemon thread, and the fit threads end with the operator."""
    add_region(cluster, "eu", replicas=4)
    cluster.create(gwa_body("eu"))
    operator = command.Operator(settings(), api_client=cluster.api_client(), source=FlatLoad(5e3))
    with capture_logs() as logs, operating(operator, cluster):
        eventually(lambda: operator.loops >= 1, "the first pass")
        assert any(t.name.startswith("tidal-fit") for t in threading.enumerate())
        assert operator.health is not None
        port = operator.health.port
        assert [t.daemon for t in threading.enumerate() if t.name == "tidal-watch"] == [True]
    lines = [e for e in logs if e["event"] in ("operator_started", "operator_stopped")]
    assert lines == [
        {
            "event": "operator_started",
            "log_level": "info",
            "identity": "edge-a",
            "metrics_port": port,
            "namespaces": "all",
            "leader_election": False,
        },
        {"event": "operator_stopped", "log_level": "info", "identity": "edge-a"},
    ]


# --- readiness, health and the lease -------------------------------------------------------------


def test_ready_after_the_first_pass_and_closed_once_stopped(cluster: KubeEmulatorHandle) -> None:
    """Until its first pass ends the operator is alive but not ready ("starting"); then ready
    as the leader. Once stopped its port is closed."""
    operator = command.Operator(settings(), api_client=cluster.api_client(), source=FlatLoad(1.0))
    entered, release = threading.Event(), threading.Event()
    read = operator.kube.snapshot

    def held(namespaces: list[str]) -> Any:
        entered.set()
        release.wait(15)
        return read(namespaces)

    operator.kube.snapshot = held  # type: ignore[method-assign]
    try:
        with operating(operator, cluster):
            assert entered.wait(15)
            assert operator.health is not None
            port = operator.health.port
            assert probe(port, "/readyz") == (503, "starting\n")
            assert probe(port, "/healthz") == (200, "ok\n")
            assert "\ntidal_leader 1.0\n" in probe(port, "/metrics")[1]
            release.set()
            eventually(lambda: operator.loops == 1, "the first pass")
            assert probe(port, "/readyz") == (200, "leader\n")
    finally:
        release.set()
    assert refused(port)


def lease_holder(kube: KubeEmulatorHandle, name: str) -> str | None:
    try:
        lease = kube.get(LEASES, name, namespace="default")
    except KeyError:
        return None
    return (lease.get("spec") or {}).get("holderIdentity")


@pytest.mark.parametrize(
    ("release", "holder_after"),
    [(None, None), (True, None), (False, "edge-a")],
    ids=["default", "released", "kept"],
)
def test_an_elected_operator_acts_at_once_and_gives_the_lease_back(
    cluster: KubeEmulatorHandle, release: bool | None, holder_after: str | None
) -> None:
    """With an election, winning the lease wakes the loop at once (not a loop interval later):
    the pass runs as leader and readiness says so. A stop gives the lease back unless told to
    leave it as a crash would."""
    cluster.create(paused("eu"))
    operator = command.Operator(
        settings(leader_election=True, lease_name="edge"),
        api_client=cluster.api_client(),
        source=FlatLoad(1.0),
    )
    assert "\ntidal_leader 0.0\n" in operator.metrics.exposition().decode()
    thread = threading.Thread(target=operator.run_forever, name="edge-operator", daemon=True)
    before = own_threads()
    thread.start()
    try:
        eventually(lambda: lease_holder(cluster, "edge") == "edge-a", "the lease won")
        eventually(lambda: "status" in cluster.get(GWAS, "gateway-eu", namespace=NAMESPACE), "")
        eventually(lambda: operator.loops >= 2, "the pass as leader")
        assert operator.health is not None
        port = operator.health.port
        assert probe(port, "/readyz") == (200, "leader\n")
        assert probe(port, "/healthz") == (200, "ok\n")
        assert "\ntidal_leader 1.0\n" in probe(port, "/metrics")[1]
    finally:
        if release is None:
            operator.stop()
        else:
            operator.stop(release=release)
        cluster.create(paused("zz", name=f"stop-{next(STOPS)}", namespace="tidal-stop"))
        thread.join(timeout=15)
        for leftover in own_threads() - before:
            leftover.join(timeout=10)
    assert not thread.is_alive()
    assert [t.name for t in own_threads() - before if t.is_alive()] == []
    assert (lease_holder(cluster, "edge") or None) == holder_after


def test_a_follower_is_ready_as_standby_and_dies_with_its_election(
    cluster: KubeEmulatorHandle,
) -> None:
    """Another replica holds the lease: this one passes without acting, is ready as
    "standby" and alive. Its election thread ending makes /healthz fail."""
    cluster.create(
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "edge", "namespace": "default"},
            "spec": {"holderIdentity": "edge-b", "leaseDurationSeconds": 15},
        }
    )
    cluster.create(paused("eu"))
    operator = command.Operator(
        settings(leader_election=True, lease_name="edge"),
        api_client=cluster.api_client(),
        source=FlatLoad(1.0),
    )
    with operating(operator, cluster):
        eventually(lambda: operator.loops >= 1, "a pass")
        assert operator.health is not None and operator.elector is not None
        port = operator.health.port
        assert probe(port, "/readyz") == (200, "standby\n")
        assert probe(port, "/healthz") == (200, "ok\n")
        assert "\ntidal_leader 0.0\n" in probe(port, "/metrics")[1]
        operator.elector.stop(release=False)
        assert probe(port, "/healthz") == (503, "the leader election thread has stopped\n")
    assert "status" not in cluster.get(GWAS, "gateway-eu", namespace=NAMESPACE)
    assert lease_holder(cluster, "edge") == "edge-b"


@pytest.mark.parametrize(
    ("loop_interval", "age", "healthy"),
    [
        (60.0, 180.0, True),  # three loops: the limit itself is still alive
        (60.0, 180.5, False),
        (1.0, 59.0, True),  # a short loop is given a minute at least
        (1.0, 61.0, False),
        (30.0, 89.0, True),
        (30.0, 91.0, False),
    ],
)
def test_the_liveness_limit_is_three_loops_and_a_minute_at_least(
    cluster: KubeEmulatorHandle,
    monkeypatch: pytest.MonkeyPatch,
    loop_interval: float,
    age: float,
    healthy: bool,
) -> None:
    """/healthz fails once neither a pass nor an object has finished for longer than
    max(3 loop intervals, 60 s); at exactly the limit it is still alive."""
    now = {"t": 500.0}
    monkeypatch.setattr(command, "time", argparse.Namespace(monotonic=lambda: now["t"]))
    operator = command.Operator(
        settings(loop_interval=loop_interval),
        api_client=cluster.api_client(),
        source=FlatLoad(1.0),
    )
    try:
        now["t"] += age
        assert operator._healthy()[0] is healthy
    finally:
        operator.models.shutdown()


def test_a_finished_pass_keeps_the_operator_alive(
    cluster: KubeEmulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pass over no object at all still counts: the loop is alive a limit after it."""
    now = {"t": 0.0}
    clock = argparse.Namespace(monotonic=lambda: now["t"])
    monkeypatch.setattr(command, "time", clock)
    operator = command.Operator(settings(), api_client=cluster.api_client(), source=FlatLoad(1.0))
    now["t"] = 10_000.0
    with operating(operator, cluster):
        eventually(lambda: operator.loops == 1, "the first pass")
        now["t"] += 3 * 3600.0
        assert operator._healthy() == (True, "ok")
        now["t"] += 1.0
        healthy, why = operator._healthy()
        assert not healthy and why.startswith("the loop has not completed for 10801s")


@pytest.mark.parametrize(
    ("loops", "leading", "expected"),
    [(0, True, (False, "starting")), (1, True, (True, "leader")), (3, False, (True, "standby"))],
)
def test_readiness_by_passes_and_leadership(
    cluster: KubeEmulatorHandle, loops: int, leading: bool, expected: tuple[bool, str]
) -> None:
    """Not ready before the first pass; then ready, as leader or as a standby follower."""
    operator = command.Operator(settings(), api_client=cluster.api_client(), source=FlatLoad(1.0))
    try:
        assert operator.loops == 0
        operator.loops = loops
        operator.is_leader = lambda: leading  # type: ignore[method-assign]
        assert operator._ready() == expected
    finally:
        operator.models.shutdown()


# --- one pass ------------------------------------------------------------------------------------


def test_a_cluster_read_failure_is_logged_once_until_it_ends(
    cluster: KubeEmulatorHandle,
) -> None:
    """The API server refusing the nodes: one warning however many passes, nothing reconciled;
    once it answers the failure is over, and a new one is logged again."""
    cluster.create(paused("eu"))
    operator = command.Operator(settings(), api_client=cluster.api_client(), source=FlatLoad(1.0))
    try:
        with capture_logs() as logs:
            cluster.refuse("GET", "/api/v1/nodes", 503)
            assert operator.run_once() == {} and operator.run_once() == {}
            failure = operator.cluster_failure
            assert failure is not None and "503" in failure
            cluster.refuse("GET", "/api/v1/nodes", 0)
            assert list(operator.run_once()) == [f"{NAMESPACE}/gateway-eu"]
            assert operator.cluster_failure is None
            cluster.refuse("GET", "/api/v1/nodes", 503)
            assert operator.run_once() == {}
    finally:
        cluster.refuse("GET", "/api/v1/nodes", 0)
        operator.models.shutdown()
    warned = [e for e in logs if e["event"] == "cluster_read_failed"]
    assert [(e["log_level"], e["transient"]) for e in warned] == [("warning", True)] * 2
    # Every failed pass is counted, logged or not: TidalClusterReadFailing reads the count.
    counted = operator.metrics.registry.get_sample_value(
        "tidal_cluster_read_errors_total", {"reason": "KubernetesUnavailable"}
    )
    assert counted == 3


def test_the_operator_tells_the_api_server_who_it_is(cluster: KubeEmulatorHandle) -> None:
    """Every request carries ``tidal-operator (<identity>)`` as its user agent."""
    add_region(cluster, "eu")
    cluster.create(paused("eu"))
    operator = command.Operator(
        settings(identity="edge-ua"), api_client=cluster.api_client(), source=FlatLoad(1.0)
    )
    try:
        assert operator.run_once()[f"{NAMESPACE}/gateway-eu"].ok
    finally:
        operator.models.shutdown()
    agents = {r.headers.get("User-Agent") for r in cluster.requests()}
    assert agents == {"tidal-operator (edge-ua)"}


def test_a_replica_that_does_not_lead_withdraws_its_object_gauges_before_passing(
    cluster: KubeEmulatorHandle,
) -> None:
    """A pass begun without the lease reads nothing but the list of autoscalers (to forget
    those deleted since it led) and leaves no per-object gauge behind from when it led;
    ``tidal_leader`` stays."""
    add_region(cluster, "eu", replicas=4)
    cluster.create(gwa_body("eu"))
    operator = command.Operator(settings(), api_client=cluster.api_client(), source=FlatLoad(5e3))
    try:
        operator.run_once()
        assert b"\ntidal_planned_replicas{" in operator.metrics.exposition()
        operator.is_leader = lambda: False  # type: ignore[method-assign]
        seen = len(cluster.requests())
        assert operator.run_once() == {}
        read = [(r.method, r.url.path) for r in cluster.requests()[seen:]]
        assert read == [("GET", "/apis/tidal.dev/v1alpha1/gatewayautoscalers")]
        text = operator.metrics.exposition().decode()
        assert "\ntidal_planned_replicas{" not in text and "\ntidal_leader 1.0\n" in text
    finally:
        operator.models.shutdown()


class Unanswered:
    """A Prometheus that does not answer; counts the reads the loop's thread sends it."""

    def __init__(self) -> None:
        self.loop_reads = 0

    def read_history(self, query: str, *, start: float, end: float, step: float) -> Any:
        if not threading.current_thread().name.startswith("tidal-fit"):
            self.loop_reads += 1
        raise PrometheusUnreachable("no answer within 10s", query=query)


def test_a_prometheus_that_does_not_answer_costs_a_pass_one_read(
    cluster: KubeEmulatorHandle,
) -> None:
    """Two objects, Prometheus silent: each pass sends it one read (the second object is told
    at once), and the next pass asks again; both objects hold as MetricsUnavailable."""
    for region in ("eu", "us"):
        add_region(cluster, region, replicas=4)
        cluster.create(gwa_body(region))
    source = Unanswered()
    operator = command.Operator(settings(), api_client=cluster.api_client(), source=source)
    try:
        for passes in (1, 2):
            outcomes = operator.run_once()
            assert [o.reason for o in outcomes.values()] == ["MetricsUnavailable"] * 2
            assert source.loop_reads == passes
    finally:
        operator.models.shutdown()


# --- flags and settings --------------------------------------------------------------------------


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    return parser.parse_args(argv)


@pytest.mark.parametrize(
    ("argv", "env", "field", "expected"),
    [
        ([], {}, "leader_election", True),
        (["--once"], {}, "leader_election", False),
        (["--once", "--leader-election"], {}, "leader_election", False),
        (["--no-leader-election"], {}, "leader_election", False),
        (["--leader-election"], {"TIDAL_LEADER_ELECTION": "false"}, "leader_election", True),
        ([], {"TIDAL_LEADER_ELECTION": "false"}, "leader_election", False),
        (["--loop-interval", "90s"], {}, "loop_interval", 90.0),
        (["--loop-interval", "5"], {"TIDAL_LOOP_INTERVAL": "7"}, "loop_interval", 5.0),
        ([], {"TIDAL_LOOP_INTERVAL": "7"}, "loop_interval", 7.0),
        (["--namespaces", "a, b"], {}, "namespaces", ["a", "b"]),
        (["--prometheus-disable-ssl"], {}, "prometheus_disable_ssl", True),
    ],
)
def test_flags_win_over_the_environment(
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    env: dict[str, str],
    field: str,
    expected: object,
) -> None:
    """Each setting is a flag; booleans have a ``--no-`` form; a flag given wins over its
    variable, which wins over the default; ``--once`` never elects a leader."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert getattr(command.settings_from_args(parse(argv)), field) == expected


def test_arguments_without_once_elect_a_leader() -> None:
    """Arguments from another parser, without ``--once``: the flags they have, and the
    election left on."""
    made = command.settings_from_args(argparse.Namespace(loop_interval="5"))
    assert made.leader_election is True and made.loop_interval == 5.0


def test_every_flag_says_what_it_sets_its_default_and_its_variable() -> None:
    """The help of a flag is its setting's description, then its choices, its default (a
    duration as one, a switch as the flag that keeps it) and its variable; a setting without
    a default shows none."""
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    helps = {a.dest: a.help for a in parser._actions}
    assert helps["loop_interval"] == (
        "Reconcile every object this often (default 1m; env TIDAL_LOOP_INTERVAL)"
    )
    assert helps["node_hold"].endswith("(default 10m; env TIDAL_NODE_HOLD)")
    assert helps["lease_name"] == "The Lease's name (default tidal-operator; env TIDAL_LEASE_NAME)"
    assert helps["leader_election"] == (
        "Elect a leader on a Lease (default --leader-election; env TIDAL_LEADER_ELECTION)"
    )
    assert helps["prometheus_disable_ssl"].endswith(
        "(default --no-prometheus-disable-ssl; env TIDAL_PROMETHEUS_DISABLE_SSL)"
    )
    assert helps["log_level"].endswith(
        "(one of debug, info, warning, error; default info; env TIDAL_LOG_LEVEL)"
    )
    assert helps["fit_workers"].endswith("(default 2; env TIDAL_FIT_WORKERS)")
    for unset in ("prometheus_token", "kubeconfig", "namespaces", "identity"):
        assert "default " not in helps[unset].split("(")[-1], helps[unset]
    assert set(helps) >= set(OperatorSettings.model_fields) | {"once"}


@pytest.mark.parametrize(
    ("argv", "env", "line"),
    [
        (
            ["--loop-interval", "abc", "--watch-poll", "0"],
            {},
            "--loop-interval: 'abc' is not a duration such as '90s', '5m', '1h30m' or '14d'; "
            "--watch-poll: Input should be greater than 0",
        ),
        (
            ["--prometheus-headers", '{"X-Org": 1}'],
            {},
            "--prometheus-headers: Input should be a valid string",
        ),
        (
            [],
            {"TIDAL_PROMETHEUS_HEADERS": '{"X-Org": 1}'},
            "TIDAL_PROMETHEUS_HEADERS: Input should be a valid string",
        ),
        (
            [],
            {"TIDAL_LEASE_RENEW": "8", "TIDAL_LEASE_DURATION": "15"},
            "TIDAL_LEASE_RENEW (8s) must be shorter than half TIDAL_LEASE_DURATION (15s)",
        ),
    ],
    ids=["two-flags", "a-header-flag", "a-header-variable", "two-variables"],
)
def test_each_setting_at_fault_is_named_as_it_was_given(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], env: dict[str, str], line: str
) -> None:
    """Every fault, in one line: a field's error under its flag or variable, also for an error
    inside it (a header's value); a rule across settings with each named as given."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    args = parse(argv)
    with pytest.raises(ValidationError) as caught:
        command.settings_from_args(args)
    assert command._settings_problem(caught.value, args) == line


# --- ``tidal run`` -------------------------------------------------------------------------------


@pytest.fixture
def logged(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """What ``tidal run`` asked of the log configuration; the log itself stays captured."""
    asked: list[tuple[str, str]] = []
    monkeypatch.setattr(command, "configure_logging", lambda *args: asked.append(args))
    return asked


@pytest.mark.parametrize(
    ("objects", "code"),
    [
        ({"gateway-eu": "Paused"}, 0),
        ({"gateway-eu": "Scale"}, 1),
        ({"gateway-eu": "Paused", "gateway-us": "Scale"}, 1),
    ],
    ids=["all-ok", "one-failed", "one-of-two-failed"],
)
def test_once_exits_by_the_objects_outcomes(
    cluster: KubeEmulatorHandle,
    tmp_path: Path,
    logged: list[tuple[str, str]],
    capsys: pytest.CaptureFixture[str],
    objects: dict[str, str],
    code: int,
) -> None:
    """``--once`` reconciles each object, logs its outcome, and exits 1 if any failed (here,
    Prometheus does not answer), 0 when all went well; nothing of it keeps running."""
    for name, mode in objects.items():
        add_region(cluster, name.removeprefix("gateway-"))
        cluster.create(gwa_body(name.removeprefix("gateway-"), mode=mode))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        prometheus = f"http://127.0.0.1:{sock.getsockname()[1]}"
    kubeconfig = cluster.write_kubeconfig(tmp_path / "config")
    argv = ["run", "--once", "--kubeconfig", str(kubeconfig), "--prometheus-url", prometheus]
    argv += ["--metrics-port", "0", "--log-format", "json", "--log-level", "warning"]
    before = own_threads()
    with capture_logs() as logs:
        assert cli.main(argv) == code, capsys.readouterr().err
    assert logged == [("json", "warning")]
    reconciled = {e["object"]: e["ok"] for e in logs if e["event"] == "reconciled"}
    assert reconciled == {f"{NAMESPACE}/{name}": mode == "Paused" for name, mode in objects.items()}
    assert all(e["log_level"] == "info" and e["reason"] for e in logs if e["event"] == "reconciled")
    # A fit already running ends with its read; none waits for more work.
    for leftover in own_threads() - before:
        leftover.join(timeout=10)
    assert [t.name for t in own_threads() - before if t.is_alive()] == []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_the_operator_cleanly(
    cluster: KubeEmulatorHandle,
    tmp_path: Path,
    logged: list[tuple[str, str]],
    signum: signal.Signals,
) -> None:
    """SIGTERM (the kubelet) or SIGINT (a terminal) while it runs: the operator stops, closes
    its port, and ``tidal run`` exits 0."""
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    kubeconfig = cluster.write_kubeconfig(tmp_path / "config")
    argv = ["run", "--no-leader-election", "--kubeconfig", str(kubeconfig)]
    argv += ["--metrics-port", "0", "--metrics-address", "127.0.0.1", "--loop-interval", "1h"]
    done = threading.Event()

    def signal_once_it_runs() -> None:
        def listed() -> bool:
            return any(r.url.path.endswith("/gatewayautoscalers") for r in cluster.requests())

        try:
            eventually(listed, "a pass")
        finally:
            if not done.is_set():
                os.kill(os.getpid(), signum)

    sender = threading.Thread(target=signal_once_it_runs, name="edge-signal")
    before = own_threads()
    try:
        with capture_logs() as logs:
            sender.start()
            try:
                code = cli.main(argv)
            finally:
                done.set()
                sender.join(timeout=20)
    finally:
        for number, handler in handlers.items():
            signal.signal(number, handler)
        cluster.create(paused("zz", name=f"stop-{next(STOPS)}", namespace="tidal-stop"))
        for leftover in own_threads() - before:
            leftover.join(timeout=10)
    assert [t.name for t in own_threads() - before if t.is_alive()] == []
    assert code == 0
    assert logged == [("auto", "info")]
    started = [e for e in logs if e["event"] == "operator_started"]
    assert len(started) == 1 and refused(started[0]["metrics_port"])
    received = [e["signal"] for e in logs if e["event"] == "signal_received"]
    assert received == [signum.name]
    assert [e["event"] for e in logs if e["log_level"] != "debug"][-1] == "operator_stopped"


#: An address of TEST-NET-1 (RFC 5737), assigned to no interface here: binding it is refused
#: at once, and nothing is sent anywhere.
ELSEWHERE = "192.0.2.1"


def bindable(address: str) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((address, 0))
        except OSError:
            return False
    return True


@contextlib.contextmanager
def port_in_use() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_an_operator_that_cannot_listen_names_the_settings_and_the_address(
    cluster: KubeEmulatorHandle,
) -> None:
    """``start`` on an address no interface has: a ValueError (the settings are unusable, as a
    bad value is) naming the flags, the address and the system's reason; nothing is started."""
    if bindable(ELSEWHERE):
        pytest.skip(f"{ELSEWHERE} is assigned here")
    options = {"metrics_address": ELSEWHERE, "metrics_port": 9}
    operator = command.Operator(
        settings(**options), api_client=cluster.api_client(), source=FlatLoad(1.0)
    )
    before = own_threads()
    try:
        with pytest.raises(ValueError) as caught:
            operator.start()
    finally:
        operator.models.shutdown()
    assert str(caught.value) == (
        f"--metrics-address/--metrics-port {ELSEWHERE}:9: Cannot assign requested address"
    )
    assert operator.health is None and own_threads() - before == set()


@pytest.mark.parametrize("given", ["flags", "variables"])
def test_a_metrics_port_that_cannot_be_bound_is_one_line_and_exit_2(
    cluster: KubeEmulatorHandle,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    logged: list[tuple[str, str]],
    capsys: pytest.CaptureFixture[str],
    given: str,
) -> None:
    """A port in use (or an address not here) makes ``tidal run`` exit 2, as any unusable
    setting does, with one line naming the settings as given, the address and the reason; it
    takes no signal over and leaves no thread behind."""
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    kubeconfig = cluster.write_kubeconfig(tmp_path / "config")
    argv = ["run", "--no-leader-election", "--kubeconfig", str(kubeconfig)]
    before = own_threads()
    with port_in_use() as port:
        if given == "flags":
            argv += ["--metrics-address", "127.0.0.1", "--metrics-port", str(port)]
            line = f"--metrics-address/--metrics-port 127.0.0.1:{port}: Address already in use"
        else:
            if bindable(ELSEWHERE):
                pytest.skip(f"{ELSEWHERE} is assigned here")
            monkeypatch.setenv("TIDAL_METRICS_ADDRESS", ELSEWHERE)
            monkeypatch.setenv("TIDAL_METRICS_PORT", str(port))
            line = (
                f"TIDAL_METRICS_ADDRESS/TIDAL_METRICS_PORT {ELSEWHERE}:{port}: "
                "Cannot assign requested address"
            )
        code = cli.main(argv)
    out, err = capsys.readouterr()
    assert (code, out, err) == (2, "", f"tidal run: {line}\n")
    assert {s: signal.getsignal(s) for s in handlers} == handlers
    for leftover in own_threads() - before:
        leftover.join(timeout=10)
    assert [t.name for t in own_threads() - before if t.is_alive()] == []


def test_a_metrics_address_the_resolver_cannot_encode_is_one_line_and_exit_2(
    cluster: KubeEmulatorHandle,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    logged: list[tuple[str, str]],
) -> None:
    """A name with a label over 63 characters fails to encode before any lookup (a
    ValueError, not an OSError): one line naming the settings, exit 2, not a traceback."""
    kubeconfig = cluster.write_kubeconfig(tmp_path / "config")
    argv = ["run", "--no-leader-election", "--kubeconfig", str(kubeconfig)]
    code = cli.main([*argv, "--metrics-address", "a" * 64, "--metrics-port", "0"])
    out, err = capsys.readouterr()
    assert (code, out) == (2, ""), err
    assert err.count("\n") == 1, err
    assert err.startswith(f"tidal run: --metrics-address/--metrics-port {'a' * 64}:0: "), err
    assert "label too long" in err, err


def test_a_kubeconfig_from_the_environment_is_named_by_its_variable(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    logged: list[tuple[str, str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """TIDAL_KUBECONFIG naming no file: the variable and the path, not ``--kubeconfig``."""
    missing = tmp_path / "nowhere" / "config"
    monkeypatch.setenv("TIDAL_KUBECONFIG", str(missing))
    assert cli.main(["run", "--metrics-port", "0"]) == 2
    assert capsys.readouterr().err == f"tidal run: TIDAL_KUBECONFIG {missing}: no such file\n"


# --- the log format ------------------------------------------------------------------------------


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class NoIsatty:
    """A stream without ``isatty``: nothing says it is a terminal."""


@pytest.mark.parametrize(
    ("log_format", "stream", "expected"),
    [
        ("json", Terminal(), True),
        ("console", io.StringIO(), False),
        ("auto", Terminal(), False),
        ("auto", io.StringIO(), True),
        ("auto", NoIsatty(), True),
    ],
    ids=["json-on-a-terminal", "console-in-a-pipe", "auto-terminal", "auto-pipe", "auto-unknown"],
)
def test_json_unless_asked_otherwise_or_on_a_terminal(
    log_format: Any, stream: object, expected: bool
) -> None:
    """``json`` and ``console`` mean what they say; ``auto`` is JSON unless the stream is a
    terminal."""
    assert use_json(log_format, stream=stream) is expected


@pytest.mark.parametrize(("stderr", "expected"), [(Terminal(), False), (io.StringIO(), True)])
def test_auto_looks_at_standard_error(
    monkeypatch: pytest.MonkeyPatch, stderr: io.StringIO, expected: bool
) -> None:
    """Without a stream, ``auto`` asks standard error whether it is a terminal."""
    monkeypatch.setattr("sys.stderr", stderr)
    assert use_json("auto") is expected


@pytest.fixture
def fresh_logging() -> Iterator[None]:
    """structlog as the tests had it, after a test configures it for the process."""
    saved = structlog.get_config()
    try:
        yield
    finally:
        structlog.configure(**saved)


@contextlib.contextmanager
def bare_root_logger() -> Iterator[None]:
    """The root logger without handlers, as a program starts, and as it was afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    for handler in handlers:
        root.removeHandler(handler)
    try:
        yield
    finally:
        for handler in root.handlers[:]:
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)


@pytest.mark.usefixtures("fresh_logging")
def test_json_lines_with_a_utc_time_and_the_level_asked(capsys: pytest.CaptureFixture[str]) -> None:
    """JSON: one object a line with the event, its fields, its level and an ISO time in UTC;
    below the level nothing; an exception as structured frames; the standard library's
    warnings (urllib3's retries) as JSON lines naming their logger, not the plain
    ``name: message`` they were among the JSON; its info not at all."""
    with bare_root_logger():
        configure_logging("json", "info")
        log = structlog.get_logger("edge")
        log.info("hello", n=1)
        log.debug("hidden")
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed")
        logging.getLogger("urllib3.pool").warning("pool is full")
        logging.getLogger("urllib3.pool").info("quiet")
    lines = capsys.readouterr().err.splitlines()
    first = json.loads(lines[0])
    assert {k: first[k] for k in ("event", "n", "level")} == {
        "event": "hello",
        "n": 1,
        "level": "info",
    }
    assert first["timestamp"].endswith("Z") and "T" in first["timestamp"]
    failed = json.loads(lines[1])
    assert failed["event"] == "failed" and failed["level"] == "error"
    assert failed["exception"][0]["exc_type"] == "ValueError"
    library = [json.loads(line) for line in lines[2:]]
    assert [(e["event"], e["level"], e["logger"]) for e in library] == [
        ("pool is full", "warning", "urllib3.pool")
    ]
    assert library[0]["timestamp"].endswith("Z")


@pytest.mark.usefixtures("fresh_logging")
def test_console_lines_on_a_terminal_and_a_level_changed_later(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``auto`` on a terminal: readable, coloured lines, not JSON; configuring again (a warning
    level) applies to loggers already used."""
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    log = structlog.get_logger("edge")
    configure_logging("auto", "debug")
    log.debug("first", n=1)
    configure_logging("console", "warning")
    log.info("second")
    log.warning("third")
    lines = terminal.getvalue().splitlines()
    assert len(lines) == 2, lines
    assert "first" in lines[0] and "\x1b[" in lines[0] and not lines[0].startswith("{")
    assert "third" in lines[1] and "warning" in lines[1]
