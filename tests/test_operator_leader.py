"""Lease-based leader election (controller.operator.leader) against the API emulator."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from controller.operator.kube import KubeClient
from controller.operator.leader import LeaderElector
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


def elector(kube: KubeEmulatorHandle, identity: str, clock: Clock, name: str) -> LeaderElector:
    return LeaderElector(
        KubeClient(kube.api_client()),
        name=name,
        namespace="default",
        identity=identity,
        lease_duration=10,
        renew_period=2,
        clock=clock,
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


def test_release_hands_over_at_once(kube: KubeEmulatorHandle) -> None:
    """A clean stop clears the holder, so the successor does not wait for expiry."""
    clock = Clock()
    a, b = elector(kube, "a", clock, "l4"), elector(kube, "b", clock, "l4")
    assert a.try_acquire_or_renew()
    a.release()
    assert not a.is_leader
    assert b.try_acquire_or_renew()
