"""Lease-based leader election (controller.operator.leader) against the API emulator."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from kubernetes import client
from structlog.testing import capture_logs

from controller.operator import Operator, OperatorSettings
from controller.operator.errors import Conflict
from controller.operator.kube import ClusterSnapshot, KubeClient
from controller.operator.leader import LeaderElector
from controller.operator.reconcile import Outcome
from tests.integration.operator_cluster import (
    GWAS,
    NAMESPACE,
    FlatLoad,
    add_region,
    gwa_body,
    replicas,
)
from tests.support.kube_emulator import KubeEmulatorHandle, running_emulator

LEASE = "coordination.k8s.io/v1/leases"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def kube() -> Iterator[KubeEmulatorHandle]:
    with running_emulator() as handle:
        yield handle


def elector(
    kube: KubeEmulatorHandle, identity: str, clock: Clock, name: str, **options: Any
) -> LeaderElector:
    return LeaderElector(
        KubeClient(kube.api_client()),
        name=name,
        namespace="default",
        identity=identity,
        lease_duration=10,
        renew_period=2,
        clock=clock,
        **options,
    )


def test_first_candidate_leads_and_the_second_waits(kube: KubeEmulatorHandle) -> None:
    """One lease, one leader: the second candidate sees a live holder and stands by."""
    clock = Clock()
    a, b = elector(kube, "a", clock, "l1"), elector(kube, "b", clock, "l1")
    assert a.try_acquire_or_renew() and a.is_leader
    assert not b.try_acquire_or_renew() and not b.is_leader
    assert kube.get(LEASE, "l1", namespace="default")["spec"]["holderIdentity"] == "a"


def test_takeover_after_the_lease_expires_on_the_observers_clock(kube: KubeEmulatorHandle) -> None:
    """A holder that stops renewing loses the lease once leaseDuration passes unobserved change."""
    clock = Clock()
    a, b = elector(kube, "a", clock, "l2"), elector(kube, "b", clock, "l2")
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()
    clock.now += 9
    assert not b.try_acquire_or_renew()
    clock.now += 2
    assert b.try_acquire_or_renew() and b.is_leader
    lease = kube.get(LEASE, "l2", namespace="default")["spec"]
    assert lease["holderIdentity"] == "b" and lease["leaseTransitions"] == 1
    # The old leader has stepped down by its own deadline and cannot renew over b.
    assert not a.is_leader
    assert not a.try_acquire_or_renew()


def test_leader_steps_down_before_anyone_can_take_over() -> None:
    """Without renewals a leader stops leading at leaseDuration - renewPeriod."""
    clock = Clock()

    class Failing:
        def read_lease(self, *_: object) -> None:
            from controller.operator.errors import ClusterUnavailable

            raise ClusterUnavailable("down")

    e = LeaderElector(
        Failing(),
        name="x",
        namespace="d",
        identity="a",  # type: ignore[arg-type]
        lease_duration=10,
        renew_period=2,
        clock=clock,
    )
    e._leader, e._renewed_at = True, clock.now
    clock.now += 7
    assert e.try_acquire_or_renew()
    clock.now += 1.5
    assert not e.is_leader


def test_stale_resource_version_loses_the_race(kube: KubeEmulatorHandle) -> None:
    """Two renewals from the same read: the second is refused with 409 and does not lead."""
    clock = Clock()
    a = elector(kube, "a", clock, "l3")
    assert a.try_acquire_or_renew()
    lease = kube.get(LEASE, "l3", namespace="default")
    kube.patch(LEASE, "l3", {"spec": {"holderIdentity": "intruder"}}, namespace="default")
    b = elector(kube, "b", clock, "l3")
    patch = {
        "metadata": {"resourceVersion": lease["metadata"]["resourceVersion"]},
        "spec": {"holderIdentity": "b"},
    }
    from controller.operator.errors import OperatorError

    with pytest.raises(OperatorError, match="409"):
        b.kube.patch_lease("default", "l3", patch)


def lease_logs(logs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["log_level"], e["event"]) for e in logs if e["event"].startswith("lease_")]


def test_an_unreachable_api_server_is_logged_once() -> None:
    """Rounds against an API server nobody answers for: one warning, however many rounds."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    configuration = client.Configuration(host=f"http://127.0.0.1:{port}")
    e = LeaderElector(
        KubeClient(client.ApiClient(configuration), timeout=2.0),
        name="l6",
        namespace="default",
        identity="a",
        lease_duration=10,
        renew_period=2,
        clock=Clock(),
    )
    with capture_logs() as logs:
        for _ in range(3):
            assert not e.try_acquire_or_renew()
    assert lease_logs(logs) == [("warning", "lease_unreachable")]
    assert str(port) in logs[0]["error"]


def test_a_lease_outage_and_its_end_are_logged_once_each(kube: KubeEmulatorHandle) -> None:
    """The API server refusing the Lease: lease_unreachable once; when it answers again,
    lease_reachable once, and the candidate leads."""
    e = elector(kube, "a", Clock(), "l7")
    path = "/apis/coordination.k8s.io/v1/namespaces/default/leases/l7"
    kube.refuse("GET", path, 503)
    try:
        with capture_logs() as logs:
            for _ in range(3):
                assert not e.try_acquire_or_renew()
            kube.refuse("GET", path, 0)
            for _ in range(3):
                assert e.try_acquire_or_renew()
    finally:
        kube.refuse("GET", path, 0)
    assert lease_logs(logs) == [("warning", "lease_unreachable"), ("info", "lease_reachable")]
    assert e.is_leader


def test_an_outage_that_changes_kind_is_logged_again(kube: KubeEmulatorHandle) -> None:
    """A 503 that turns into a 403 (RBAC broken mid-outage), then a 401, is a new cause each
    time: logged again, and the repeats of each are not."""
    e = elector(kube, "a", Clock(), "l9")
    path = "/apis/coordination.k8s.io/v1/namespaces/default/leases/l9"
    try:
        with capture_logs() as logs:
            kube.refuse("GET", path, 503)
            for _ in range(2):
                assert not e.try_acquire_or_renew()
            kube.refuse("GET", path, 403)
            for _ in range(2):
                assert not e.try_acquire_or_renew()
            kube.refuse("GET", path, 401)  # the same error type and reason, another status
            for _ in range(2):
                assert not e.try_acquire_or_renew()
    finally:
        kube.refuse("GET", path, 0)
    assert lease_logs(logs) == [("warning", "lease_unreachable")] * 3


def test_a_lost_race_is_not_an_outage(kube: KubeEmulatorHandle) -> None:
    """A 409 from a renewal made on a stale read is the protocol at work: no warning."""

    class Racing(KubeClient):
        def patch_lease(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
            raise Conflict(f"patch lease {namespace}/{name}: 409 the object has been modified")

    e = LeaderElector(
        Racing(kube.api_client()),
        name="l8",
        namespace="default",
        identity="b",
        lease_duration=10,
        renew_period=2,
        clock=Clock(),
    )
    kube.create(
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "l8", "namespace": "default"},
            "spec": {"holderIdentity": "", "leaseDurationSeconds": 10},
        }
    )
    with capture_logs() as logs:
        assert not e.try_acquire_or_renew()
    assert [event for level, event in lease_logs(logs) if level != "debug"] == []


def test_release_hands_over_at_once(kube: KubeEmulatorHandle) -> None:
    """A clean stop clears the holder, so the successor does not wait for expiry."""
    clock = Clock()
    a, b = elector(kube, "a", clock, "l4"), elector(kube, "b", clock, "l4")
    assert a.try_acquire_or_renew()
    a.release()
    assert not a.is_leader
    assert b.try_acquire_or_renew()


def operator_leading(
    kube: KubeEmulatorHandle, clock: Clock, *regions: str
) -> tuple[Operator, LeaderElector]:
    """An operator over a GatewayAutoscaler per region, and its elector (on ``clock``), leading."""
    for region in regions:
        add_region(kube, region, replicas=4)
        kube.create(gwa_body(region))
    settings = OperatorSettings(leader_election=False, metrics_port=0, metrics_address="127.0.0.1")
    operator = Operator(settings, api_client=kube.api_client(), source=FlatLoad(5_000.0))
    operator.elector = elector(kube, "a", clock, "tidal", on_change=operator._leadership_changed)
    assert operator.elector.try_acquire_or_renew()
    return operator, operator.elector


def object_gauges(operator: Operator) -> list[str]:
    """The exported gauge samples that are about one object."""
    return [
        f"{sample.name}{sample.labels}"
        for family in operator.metrics.registry.collect()
        if family.type == "gauge"
        for sample in family.samples
        if "gwa" in sample.labels
    ]


def test_a_follower_exports_no_object_gauges(cluster: KubeEmulatorHandle) -> None:
    """Once another replica holds the lease, this one drops its per-object gauges (a dashboard's
    sum() would count them twice) and keeps saying it does not lead."""
    clock = Clock()
    operator, lease = operator_leading(cluster, clock, "eu")
    try:
        successor = elector(cluster, "b", clock, "tidal")
        assert not successor.try_acquire_or_renew()
        operator.run_once()
        assert any(s.startswith("tidal_planned_replicas") for s in object_gauges(operator))
        assert b"tidal_leader 1.0" in operator.metrics.exposition()
        clock.now += 11
        assert successor.try_acquire_or_renew()
        assert not lease.try_acquire_or_renew()
        assert operator.run_once() == {}
        assert object_gauges(operator) == []
        assert b"tidal_leader 0.0" in operator.metrics.exposition()
    finally:
        operator.models.shutdown()


def test_a_follower_forgets_what_was_deleted_since_it_led(cluster: KubeEmulatorHandle) -> None:
    """A replica that led and then lost the lease keeps the fits of the objects still there
    (it plans from them at once if it leads again) but drops those of objects deleted since,
    and their series, without waiting to lead again."""
    clock = Clock()
    operator, lease = operator_leading(cluster, clock, "eu", "us")
    uid = {
        region: str(cluster.get(GWAS, f"gateway-{region}", namespace=NAMESPACE)["metadata"]["uid"])
        for region in ("eu", "us")
    }
    try:
        operator.run_once()
        assert set(operator.models._states) == set(uid.values())
        assert series_of(operator, "gateway-us")
        successor = elector(cluster, "b", clock, "tidal")
        assert not successor.try_acquire_or_renew()  # it sees the lease held, then expire
        clock.now += 11
        assert successor.try_acquire_or_renew()
        assert not lease.try_acquire_or_renew()
        cluster.delete(GWAS, "gateway-us", namespace=NAMESPACE)
        assert operator.run_once() == {}
        assert set(operator.models._states) == {uid["eu"]}
        assert series_of(operator, "gateway-us") == []
        # The object still there keeps its counters; only the leader exports gauges.
        assert "tidal_reconcile_seconds_count" in series_of(operator, "gateway-eu")
    finally:
        operator.models.shutdown()


def test_a_follower_that_never_led_lists_nothing(cluster: KubeEmulatorHandle) -> None:
    """Forgetting costs a follower one list a pass, and only once it remembers an object."""
    clock = Clock()
    add_region(cluster, "eu", replicas=4)
    cluster.create(gwa_body("eu"))
    holder = elector(cluster, "b", clock, "tidal")
    assert holder.try_acquire_or_renew()
    settings = OperatorSettings(leader_election=False, metrics_port=0, metrics_address="127.0.0.1")
    operator = Operator(settings, api_client=cluster.api_client(), source=FlatLoad(5_000.0))
    operator.elector = elector(cluster, "a", clock, "tidal", on_change=operator._leadership_changed)
    try:
        assert not operator.elector.try_acquire_or_renew()
        before = len(cluster.requests())
        assert operator.run_once() == {}
        assert cluster.requests()[before:] == []
    finally:
        operator.models.shutdown()


def test_a_lease_lost_mid_pass_keeps_the_fits_of_objects_not_reached(
    cluster: KubeEmulatorHandle,
) -> None:
    """The pass stops at the first object after the lease is lost, but the objects it did not
    reach are still there: their fits are kept for when this replica leads again."""
    clock = Clock()
    # The lease goes after the first; the pass notes the second as it stops, not the third.
    regions = ("eu", "us", "ap")
    operator, lease = operator_leading(cluster, clock, *regions)
    uids = {
        str(cluster.get(GWAS, f"gateway-{region}", namespace=NAMESPACE)["metadata"]["uid"])
        for region in regions
    }
    reconcile = operator.reconciler.reconcile

    def reconcile_then_lose_the_lease(obj: Mapping[str, Any], snapshot: ClusterSnapshot) -> Outcome:
        outcome = reconcile(obj, snapshot)
        clock.now += 9  # past leaseDuration - renewPeriod without a renewal
        return outcome

    try:
        operator.run_once()
        assert set(operator.models._states) == uids
        assert lease.try_acquire_or_renew()
        operator.reconciler.reconcile = reconcile_then_lose_the_lease  # type: ignore[method-assign]
        assert len(operator.run_once()) == 1
        assert set(operator.models._states) == uids
        assert object_gauges(operator) == []
    finally:
        operator.models.shutdown()


def test_a_stop_ends_the_pass_at_the_next_object(cluster: KubeEmulatorHandle) -> None:
    """SIGTERM half-way through a pass: the object being planned is finished, the rest wait for
    the next leader, so that a long pass does not outlast the pod's grace period."""
    clock = Clock()
    operator, _ = operator_leading(cluster, clock, "eu", "us", "ap")
    reconcile = operator.reconciler.reconcile

    def reconcile_then_stop(obj: Mapping[str, Any], snapshot: ClusterSnapshot) -> Outcome:
        outcome = reconcile(obj, snapshot)
        operator.stop()
        return outcome

    try:
        operator.reconciler.reconcile = reconcile_then_stop  # type: ignore[method-assign]
        outcomes = operator.run_once()
        assert len(outcomes) == 1 and next(iter(outcomes.values())).ok
    finally:
        operator.models.shutdown()


@pytest.mark.parametrize("checks_before_loss", [1, 2], ids=["before-the-scale", "before-status"])
def test_a_lease_lost_while_an_object_is_planned_writes_nothing_more(
    cluster: KubeEmulatorHandle, checks_before_loss: int
) -> None:
    """The lease goes after the object's first leadership check (while it is planned) or after
    its scale: no Deployment is written after that, and no status, which would overwrite the
    new leader's."""
    clock = Clock()
    operator, _lease = operator_leading(cluster, clock, "eu")
    checks = {"n": 0}

    def leading() -> bool:
        checks["n"] += 1
        return checks["n"] <= checks_before_loss

    try:
        operator.reconciler.is_leader = leading
        outcome = operator.run_once()[f"{NAMESPACE}/gateway-eu"]
        assert outcome.reason == "NotLeader"
        scaled = replicas(cluster, "gateway-eu") != 4
        assert scaled == (checks_before_loss == 2)
        assert "status" not in cluster.get(GWAS, "gateway-eu", namespace=NAMESPACE)
    finally:
        operator.models.shutdown()


def test_an_unexpected_error_in_a_round_does_not_end_the_election(
    kube: KubeEmulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A round that fails with something no API error covers (here the ValueError of a body
    that is not JSON) is logged as a failed round; the thread goes on and leads after it."""
    kube_client = KubeClient(kube.api_client())
    real = kube_client.read_lease
    calls = {"n": 0}

    def flaky(namespace: str, name: str) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ValueError("Expecting value: line 1 column 1 (char 0)")
        return real(namespace, name)

    monkeypatch.setattr(kube_client, "read_lease", flaky)
    e = LeaderElector(
        kube_client,
        name="l12",
        namespace="default",
        identity="a",
        lease_duration=1.0,
        renew_period=0.1,
    )
    with capture_logs() as logs:
        e.start()
        try:
            deadline = time.monotonic() + 5.0
            while not e.is_leader and time.monotonic() < deadline:
                time.sleep(0.05)
            assert e.running and e.is_leader and calls["n"] >= 2
        finally:
            e.stop()
    assert lease_logs(logs)[:2] == [("warning", "lease_unreachable"), ("info", "lease_reachable")]
    assert not e.running


def test_a_stopped_election_thread_makes_the_operator_unhealthy(
    kube: KubeEmulatorHandle,
) -> None:
    """Once started, an election thread that is no longer running fails /healthz: a replica
    that can never lead again must be restarted."""
    settings = OperatorSettings(
        leader_election=True, metrics_port=0, metrics_address="127.0.0.1", lease_name="l13"
    )
    operator = Operator(settings, api_client=kube.api_client(), source=FlatLoad(1.0))
    try:
        assert operator._healthy()[0]
        operator._started_election = True  # as run_forever does once it starts the thread
        assert operator._healthy() == (False, "the leader election thread has stopped")
    finally:
        operator.models.shutdown()


def series_of(operator: Operator, gwa: str) -> list[str]:
    """Every exported sample about the object named ``gwa``: gauges, counters, histograms."""
    return [
        sample.name
        for family in operator.metrics.registry.collect()
        for sample in family.samples
        if sample.labels.get("gwa") == gwa
    ]


def test_a_deleted_object_leaves_no_series_and_one_made_again_keeps_its_own(
    cluster: KubeEmulatorHandle,
) -> None:
    """Deleting an object drops its counters and histograms as well as its gauges; an object
    deleted and made again under the same name (a new uid) keeps the series of its name."""
    clock = Clock()
    operator, _lease = operator_leading(cluster, clock, "eu", "us")
    try:
        operator.run_once()
        assert "tidal_reconcile_seconds_count" in series_of(operator, "gateway-eu")
        cluster.delete(GWAS, "gateway-eu", namespace=NAMESPACE)
        operator.run_once()
        assert series_of(operator, "gateway-eu") == []
        assert "tidal_reconcile_seconds_count" in series_of(operator, "gateway-us")
        cluster.delete(GWAS, "gateway-us", namespace=NAMESPACE)
        cluster.create(gwa_body("us"))  # the same name, a new uid
        operator.run_once()
        assert "tidal_reconcile_seconds_count" in series_of(operator, "gateway-us")
        planned = [n for n in series_of(operator, "gateway-us") if n.startswith("tidal_planned")]
        assert planned
    finally:
        operator.models.shutdown()


def test_a_fit_that_ends_after_its_object_is_deleted_brings_no_series_back(
    cluster: KubeEmulatorHandle,
) -> None:
    """A live object's fit time is exported once its fit is collected; a fit still running
    when its object is deleted (a running future cannot be cancelled) exports nothing when it
    ends."""
    release = threading.Event()

    class SlowFits(FlatLoad):
        def read_history(self, query: str, *, start: float, end: float, step: float) -> Any:
            if threading.current_thread() is not threading.main_thread():
                release.wait(30)  # the fit thread waits; the loop's reads go on
            return super().read_history(query, start=start, end=end, step=step)

    add_region(cluster, "eu", replicas=4)
    add_region(cluster, "us", replicas=4)
    cluster.create(gwa_body("eu"))
    cluster.create(gwa_body("us"))
    settings = OperatorSettings(leader_election=False, metrics_port=0, metrics_address="127.0.0.1")
    operator = Operator(settings, api_client=cluster.api_client(), source=SlowFits(5_000.0))
    try:
        operator.run_once()
        running = [state.running for state in operator.models._states.values()]
        assert len(running) == 2 and all(fit is not None for fit in running)
        cluster.delete(GWAS, "gateway-eu", namespace=NAMESPACE)
        operator.run_once()
        assert series_of(operator, "gateway-eu") == []
        release.set()
        for fit in running:
            assert fit is not None
            fit.exception(timeout=30)  # both fits have ended, the deleted object's too
        operator.run_once()  # collects us's fit
        assert series_of(operator, "gateway-eu") == []
        assert "tidal_fit_seconds_count" in series_of(operator, "gateway-us")
    finally:
        release.set()
        operator.models.shutdown()


def test_a_long_pass_that_gets_on_is_alive_and_a_stuck_object_is_not(
    cluster: KubeEmulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/healthz failed once a pass ran past its limit (3 loops, 180 s by default), though it
    finished an object every 150 s: many regions read slowly (a Prometheus timing out every
    query) made the kubelet restart the operator, fits and all. Now the loop is alive while it
    finishes objects; an object that takes longer than the limit still fails it."""
    from controller.operator import command

    now = {"t": 1000.0}
    monkeypatch.setattr(command.time, "monotonic", lambda: now["t"])
    clock = Clock()
    operator, _lease = operator_leading(cluster, clock, "eu", "us", "ap")
    operator._last_loop = operator._last_progress = now["t"]
    reconcile = operator.reconciler.reconcile
    seen: list[tuple[bool, str]] = []

    def slow(obj: Mapping[str, Any], snapshot: ClusterSnapshot) -> Outcome:
        now["t"] += 150.0 if len(seen) < 3 else 200.0
        seen.append(operator._healthy())
        return reconcile(obj, snapshot)

    try:
        operator.reconciler.reconcile = slow  # type: ignore[method-assign]
        operator.run_once()
        assert [ok for ok, _ in seen] == [True, True, True]  # 450 s into a 180 s limit
        operator.run_once()  # the first object of this pass takes 200 s
        ok, why = seen[3]
        assert not ok and why == (
            "the loop has not completed for 650s, nor finished an object for 200s"
        )
    finally:
        operator.models.shutdown()
