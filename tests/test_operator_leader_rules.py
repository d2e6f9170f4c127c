"""The leader election's rules one by one, against the API emulator: the renew period's bound,
writes conditional on the Lease read, what a takeover and a release write, the holder's own
duration, both deadlines to the second, leadership changes reported, and the background
thread's start and stop."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from structlog.testing import capture_logs

from controller.operator.errors import Conflict
from controller.operator.kube import KubeClient
from controller.operator.leader import LeaderElector, micro_time
from tests.support.kube_emulator import KubeEmulatorHandle, running_emulator
from tests.test_operator_leader import Clock

LEASE = "coordination.k8s.io/v1/leases"
WALL = 1_800_000_000.0


@pytest.fixture(scope="module")
def kube() -> Iterator[KubeEmulatorHandle]:
    with running_emulator() as handle:
        yield handle


def elector(
    kube: KubeEmulatorHandle,
    identity: str,
    name: str,
    *,
    clock: Callable[[], float] = time.monotonic,
    client: KubeClient | None = None,
    **options: Any,
) -> LeaderElector:
    settings: dict[str, Any] = {"lease_duration": 10, "renew_period": 2, **options}
    return LeaderElector(
        client or KubeClient(kube.api_client()),
        name=name,
        namespace="default",
        identity=identity,
        clock=clock,
        wall=lambda: WALL,
        **settings,
    )


def held_by(kube: KubeEmulatorHandle, name: str) -> str | None:
    return kube.get(LEASE, name, namespace="default")["spec"].get("holderIdentity")


def lease_of(kube: KubeEmulatorHandle, name: str, holder: str, seconds: int) -> None:
    kube.create(
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": seconds},
        }
    )


@pytest.mark.parametrize(
    ("renew", "refused"),
    [(5.0, True), (6.0, True), (4.9, False)],
    ids=["half", "above-half", "under-half"],
)
def test_the_renew_period_must_be_under_half_the_lease(
    kube: KubeEmulatorHandle, renew: float, refused: bool
) -> None:
    """A leader counts itself one for the lease less a renew period after each renewal: with a
    renew period of half the lease or more, one missed renewal would already end it."""
    if refused:
        with pytest.raises(ValueError, match="renew period must be shorter than half"):
            elector(kube, "a", "r0", renew_period=renew)
    else:
        assert elector(kube, "a", "r0", renew_period=renew).renew_period == renew


@pytest.mark.parametrize("identity", ["", "   ", "\t"], ids=["empty", "spaces", "tab"])
def test_a_blank_identity_is_refused(kube: KubeEmulatorHandle, identity: str) -> None:
    """A Lease whose holder is blank reads as held by nobody, so a second replica would take it
    while the first still leads: an elector is never made with one."""
    with pytest.raises(ValueError, match="identity must not be blank"):
        elector(kube, identity, "r0")
    assert elector(kube, "a", "r0").identity == "a"


class Intruding(KubeClient):
    """Reads the Lease, then lets ``intrude`` write to it before this client's own write."""

    intrude: Callable[[], None] | None = None

    def read_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        lease = super().read_lease(namespace, name)
        if self.intrude is not None:
            self.intrude()
        return lease


def test_a_renewal_is_written_only_over_the_lease_it_read(kube: KubeEmulatorHandle) -> None:
    """Another candidate writes between a leader's read and its renewal: the renewal carries
    the resourceVersion it read, is refused, and the other's write stands. A leader that lost
    its race keeps standing until its deadline, as for an outage."""
    clock = Clock()
    client = Intruding(kube.api_client())
    a = elector(kube, "a", "r1", clock=clock, client=client)
    assert a.try_acquire_or_renew()
    client.intrude = lambda: kube.patch(
        LEASE, "r1", {"spec": {"holderIdentity": "b"}}, namespace="default"
    )
    assert a.try_acquire_or_renew()  # not renewed, but within its deadline
    assert held_by(kube, "r1") == "b"
    clock.now += 8
    assert not a.is_leader


def test_a_release_is_written_only_over_the_lease_it_read(kube: KubeEmulatorHandle) -> None:
    """A release races another candidate's takeover: it carries the resourceVersion it read,
    is refused, the taker keeps the lease, and the releasing leader stops leading all the
    same."""
    client = Intruding(kube.api_client())
    a = elector(kube, "a", "r2", client=client)
    assert a.try_acquire_or_renew()
    client.intrude = lambda: kube.patch(
        LEASE, "r2", {"spec": {"holderIdentity": "b"}}, namespace="default"
    )
    a.release()
    assert held_by(kube, "r2") == "b" and not a.is_leader
    assert kube.get(LEASE, "r2", namespace="default")["spec"]["leaseDurationSeconds"] == 10


def test_a_release_clears_the_holder_for_a_second(kube: KubeEmulatorHandle) -> None:
    """A clean release leaves no holder and a one-second lease, so that a successor that
    reads it takes over at once."""
    a = elector(kube, "a", "r3")
    assert a.try_acquire_or_renew()
    a.release()
    lease = kube.get(LEASE, "r3", namespace="default")["spec"]
    assert not lease.get("holderIdentity") and lease["leaseDurationSeconds"] == 1


def test_a_release_the_api_refuses_is_logged_and_ends_leadership(
    kube: KubeEmulatorHandle,
) -> None:
    """A release whose write the API server refuses (a 503 on shutdown) does not raise: it is
    logged, and the instance stops leading; the lease then expires as for a crash."""
    a = elector(kube, "a", "r4")
    assert a.try_acquire_or_renew()
    path = "/apis/coordination.k8s.io/v1/namespaces/default/leases/r4"
    kube.refuse("PATCH", path, 503)
    try:
        with capture_logs() as logs:
            a.release()
    finally:
        kube.refuse("PATCH", path, 0)
    assert not a.is_leader and held_by(kube, "r4") == "a"
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["lease_release_failed"]


def test_a_release_leaves_someone_else_s_lease_alone(kube: KubeEmulatorHandle) -> None:
    """A leader whose lease was taken meanwhile does not clear the new holder's on release."""
    clock = Clock()
    a = elector(kube, "a", "r5", clock=clock)
    assert a.try_acquire_or_renew()
    kube.patch(LEASE, "r5", {"spec": {"holderIdentity": "b"}}, namespace="default")
    a.release()
    assert held_by(kube, "r5") == "b" and not a.is_leader


def test_a_takeover_stamps_its_acquisition_and_counts_a_transition(
    kube: KubeEmulatorHandle,
) -> None:
    """Taking over a released lease writes the new holder, its acquireTime and one more
    transition; a renewal by the same holder changes neither."""
    a, b = elector(kube, "a", "r6"), elector(kube, "b", "r6")
    assert a.try_acquire_or_renew()
    a.release()
    assert b.try_acquire_or_renew()
    lease = kube.get(LEASE, "r6", namespace="default")["spec"]
    assert lease["holderIdentity"] == "b" and lease["leaseTransitions"] == 1
    assert lease["acquireTime"] == micro_time(WALL)
    b._wall = lambda: WALL + 5
    assert b.try_acquire_or_renew()
    again = kube.get(LEASE, "r6", namespace="default")["spec"]
    assert again["acquireTime"] == micro_time(WALL) and again["leaseTransitions"] == 1
    assert again["renewTime"] == micro_time(WALL + 5)


@pytest.mark.parametrize(
    ("duration", "seconds"),
    [(0.5, 1), (10.0, 10), (15.2, 16)],
    ids=["under-a-second", "whole", "fraction"],
)
def test_the_lease_states_its_duration_in_whole_seconds_rounded_up(
    kube: KubeEmulatorHandle, duration: float, seconds: int
) -> None:
    """leaseDurationSeconds is whole: rounded up, so that no candidate takes over before this
    leader's own deadline, and never below one second."""
    name = f"r7-{seconds}"
    e = elector(kube, "a", name, lease_duration=duration, renew_period=duration / 5)
    assert e.try_acquire_or_renew()
    assert kube.get(LEASE, name, namespace="default")["spec"]["leaseDurationSeconds"] == seconds


@pytest.mark.parametrize(
    ("name", "seconds", "just_under"),
    [("r8", 60, 59.5), ("r9", 10, 9.999)],
    ids=["the-holder-s-own-60s", "to-the-second"],
)
def test_a_holder_is_live_until_its_own_duration_has_passed_unchanged(
    kube: KubeEmulatorHandle, name: str, seconds: int, just_under: float
) -> None:
    """A lease unchanged for just under the duration it states is still its holder's, even a
    60-second one where this candidate's own lease would be 10 (the lease says how long its
    holder may go quiet); at exactly that duration it is free to take."""
    lease_of(kube, name, "other", seconds)
    clock = Clock()
    b = elector(kube, "b", name, clock=clock)
    assert not b.try_acquire_or_renew()
    clock.now += just_under
    assert not b.try_acquire_or_renew()
    clock.now = 1000.0 + seconds
    assert b.try_acquire_or_renew() and held_by(kube, name) == "b"


def test_a_leader_leads_until_just_before_its_renew_deadline(kube: KubeEmulatorHandle) -> None:
    """After a renewal an instance leads for the lease less one renew period (8 s of 10 less
    2), and not at the deadline itself: by then a renewal should have come."""
    clock = Clock()
    a = elector(kube, "a", "r10", clock=clock)
    assert a.try_acquire_or_renew()
    clock.now += 7.999
    assert a.is_leader
    clock.now += 0.001
    assert not a.is_leader


def test_leadership_changes_are_reported_once_each(kube: KubeEmulatorHandle) -> None:
    """``on_change`` hears True on the first acquisition, nothing on renewals, and False on
    release; each change is logged."""
    heard: list[bool] = []
    a = elector(kube, "a", "r11", on_change=heard.append)
    with capture_logs() as logs:
        for _ in range(3):
            assert a.try_acquire_or_renew()
        a.release()
    assert heard == [True, False]
    changes = [e["leader"] for e in logs if e["event"] == "leadership_changed"]
    assert changes == [True, False]


def test_a_leader_cut_off_hears_it_has_lost_at_its_deadline(kube: KubeEmulatorHandle) -> None:
    """A leader whose rounds fail (the API server down) keeps leading until its deadline and
    then hears False, once: it must stop writing before anyone else may take over."""
    heard: list[bool] = []
    clock = Clock()
    a = elector(kube, "a", "r12", clock=clock, on_change=heard.append)
    assert a.try_acquire_or_renew()
    path = "/apis/coordination.k8s.io/v1/namespaces/default/leases/r12"
    kube.refuse("GET", path, 503)
    try:
        clock.now += 7
        assert a.try_acquire_or_renew() and heard == [True]
        clock.now += 1
        assert not a.try_acquire_or_renew() and heard == [True, False]
        assert not a.try_acquire_or_renew() and heard == [True, False]
    finally:
        kube.refuse("GET", path, 0)


class Losing(KubeClient):
    """Every write of the Lease loses its race once ``losing`` is set."""

    losing = False

    def patch_lease(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        if self.losing:
            raise Conflict(f"patch lease {namespace}/{name}: 409 the object has been modified")
        return super().patch_lease(namespace, name, patch)


def test_a_leader_that_keeps_losing_races_hears_it_has_lost_at_its_deadline(
    kube: KubeEmulatorHandle,
) -> None:
    """Lost races are not an outage, but a leader that cannot renew through them stops
    leading at its deadline all the same, and hears False once."""
    heard: list[bool] = []
    clock = Clock()
    client = Losing(kube.api_client())
    a = elector(kube, "a", "r13", clock=clock, client=client, on_change=heard.append)
    assert a.try_acquire_or_renew()
    client.losing = True
    clock.now += 7
    assert a.try_acquire_or_renew() and heard == [True]
    clock.now += 1
    assert not a.try_acquire_or_renew() and heard == [True, False]


def test_a_lost_race_after_an_outage_ends_the_outage(kube: KubeEmulatorHandle) -> None:
    """A 409 is an answer from the API server: after an outage, it is logged as the lease
    reachable again, so the warning does not stand for an outage that is over."""
    clock = Clock()
    client = Losing(kube.api_client())
    a = elector(kube, "a", "r14", clock=clock, client=client)
    assert a.try_acquire_or_renew()
    path = "/apis/coordination.k8s.io/v1/namespaces/default/leases/r14"
    with capture_logs() as logs:
        kube.refuse("GET", path, 503)
        try:
            a.try_acquire_or_renew()
        finally:
            kube.refuse("GET", path, 0)
        client.losing = True
        a.try_acquire_or_renew()
    events = [e["event"] for e in logs if e["event"].startswith("lease_")]
    assert events == ["lease_unreachable", "lease_round_lost", "lease_reachable"]


def _until(condition: Callable[[], bool], seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


@pytest.mark.parametrize("release", [None, True, False], ids=["default", "released", "kept"])
def test_the_election_thread_starts_renews_and_stops(
    kube: KubeEmulatorHandle, release: bool | None
) -> None:
    """``start`` runs rounds every renew period in a thread, which renews the lease; ``stop``
    ends the thread and, unless told not to, releases the lease. Either way the instance no
    longer leads, and it can be started again."""
    name = f"r15-{release}"
    a = elector(kube, "a", name, lease_duration=1.0, renew_period=0.05)
    assert not a.running
    a.start()
    try:
        assert _until(lambda: a.is_leader) and a.running
        first = kube.get(LEASE, name, namespace="default")["metadata"]["resourceVersion"]
        assert _until(
            lambda: (
                kube.get(LEASE, name, namespace="default")["metadata"]["resourceVersion"] != first
            )
        ), "the thread did not renew the lease"
    finally:
        if release is None:
            a.stop()
        else:
            a.stop(release=release)
    assert not a.running and not a.is_leader
    assert held_by(kube, name) == ("a" if release is False else None)
    # Stopped means stopped: the lease is not renewed any more.
    stopped = kube.get(LEASE, name, namespace="default")["metadata"]["resourceVersion"]
    time.sleep(0.2)
    assert kube.get(LEASE, name, namespace="default")["metadata"]["resourceVersion"] == stopped
    a.start()
    try:
        assert _until(lambda: a.is_leader), "started again, the thread ran no round"
    finally:
        a.stop()


def test_the_thread_waits_a_renew_period_between_rounds(kube: KubeEmulatorHandle) -> None:
    """Rounds come once a renew period, not back to back: over half a second at 0.1 s, a
    handful of renewals (a loop without the wait would send hundreds)."""
    a = elector(kube, "a", "r16", lease_duration=1.0, renew_period=0.1)
    path = "/apis/coordination.k8s.io/v1/namespaces/default/leases/r16"

    def writes() -> int:
        return sum(1 for r in kube.requests() if r.method == "PATCH" and r.url.path == path)

    a.start()
    try:
        assert _until(lambda: a.is_leader)
        before = writes()
        time.sleep(0.5)
        during = writes() - before
    finally:
        a.stop()
    assert 1 <= during <= 10, during


def test_an_ended_election_thread_is_not_running(kube: KubeEmulatorHandle) -> None:
    """``running`` says whether rounds are still made: a thread whose loop has ended, though
    nobody called ``stop``, is not running."""
    a = elector(kube, "a", "r17", lease_duration=1.0, renew_period=0.05)

    def last_round() -> bool:
        a._stop.set()  # the loop ends after this round, as if the thread had died
        return False

    a.try_acquire_or_renew = last_round  # type: ignore[method-assign]
    a.start()
    try:
        assert _until(lambda: not a.running), "the ended thread is still reported running"
    finally:
        a.stop(release=False)
