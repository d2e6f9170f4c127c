"""Leader election on a ``coordination.k8s.io/v1`` Lease, as client-go's ``leaderelection`` does it.

Why not ``kubernetes.leaderelection`` from the official client: it builds its API objects on the
library's *global* configuration (two operators in one process could not point at different
clusters, and the operator never touches the global one), its ``run()`` blocks forever with no
way to stop or release, it exits the process (``sys.exit``) on a bad config, and it takes
whole seconds only. This one is small:

- **acquire/renew**: read the Lease; if it is ours, or free, or its holder has not renewed it
  for ``leaseDurationSeconds`` *as observed on our own clock* (client-go's rule: compare
  observation times, never two machines' clocks), patch it with ``metadata.resourceVersion``
  as a precondition, so that of two candidates racing only one wins (the other gets 409);
- **step down**: a leader that could not renew within ``lease_duration - renew_period``
  stops writing before anyone else may take over;
- **release** on a clean stop: the holder is cleared, so a successor need not wait.

A round that cannot reach the Lease (the API server down, RBAC) is logged once when the
failures start or change kind (``lease_unreachable``) and once when a round gets through again
(``lease_reachable``); a lost race (409) is part of the protocol and logged at debug only.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import structlog

from controller.operator.errors import Conflict, OperatorError
from controller.operator.kube import KubeClient

__all__ = ["LeaderElector", "micro_time"]

log = structlog.get_logger("tidal.leader")


def micro_time(when: float) -> str:
    """``metav1.MicroTime`` text."""
    return datetime.fromtimestamp(when, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(
        self,
        kube: KubeClient,
        *,
        name: str,
        namespace: str,
        identity: str,
        lease_duration: float,
        renew_period: float,
        on_change: Callable[[bool], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if 2 * renew_period >= lease_duration:
            # ``is_leader`` holds for the duration less one renewal after each renewal.
            raise ValueError("the renew period must be shorter than half the lease duration")
        if not identity.strip():
            # A Lease whose holder is blank reads as held by nobody: a second replica would lead.
            raise ValueError("the identity must not be blank: each replica holds the lease by name")
        self.kube = kube
        self.name = name
        self.namespace = namespace
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_period = renew_period
        self.on_change = on_change
        self._clock = clock
        self._wall = wall
        self._leader = False
        self._renewed_at = -math.inf
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = -math.inf
        #: Why the Lease could not be reached since the last round that got through, or None.
        self._failure: str | None = None
        #: The failing round's error type, reason and HTTP status: a new kind (a 503 turning
        #: into a 403, a 403 into a 404) is logged again.
        self._failure_kind: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def is_leader(self) -> bool:
        """Leader, and renewed recently enough that nobody else can have taken over."""
        deadline = self.lease_duration - self.renew_period
        return self._leader and self._clock() - self._renewed_at < deadline

    def _set_leader(self, leader: bool) -> None:
        if leader != self._leader:
            self._leader = leader
            log.info("leadership_changed", leader=leader, identity=self.identity, lease=self.name)
            if self.on_change is not None:
                self.on_change(leader)

    def try_acquire_or_renew(self) -> bool:
        """One round; returns whether this instance leads afterwards."""
        try:
            leads = self._round()
        except Conflict as exc:
            # A lost race: another candidate wrote first. Not leading this round.
            log.debug("lease_round_lost", error=str(exc), identity=self.identity)
            self._reached()
            if not self.is_leader:
                self._set_leader(False)
            return self.is_leader
        except OperatorError as exc:
            # An API outage: not leading this round. A leader keeps its standing until the
            # renew deadline (``is_leader``), as client-go's does.
            status = getattr(exc.__cause__, "status", None)  # the API's HTTP status, if any
            return self._failed(exc, f"{type(exc).__name__}/{exc.reason}/{status}", exc.transient)
        except Exception as exc:
            # Anything else (a body that is not JSON, a credential refresh that failed) is a
            # failed round too, and the next one tries again: a round never ends the thread.
            return self._failed(exc, type(exc).__name__, True)
        self._reached()
        return leads

    def _failed(self, exc: Exception, kind: str, transient: bool) -> bool:
        """A round that got no usable answer: log it once per kind; lead until the deadline."""
        if self._failure is None or kind != self._failure_kind:
            log.warning(
                "lease_unreachable",
                error=str(exc) or type(exc).__name__,
                identity=self.identity,
                lease=self.name,
                namespace=self.namespace,
                transient=transient,
            )
        self._failure, self._failure_kind = str(exc), kind
        if not self.is_leader:
            self._set_leader(False)
        return self.is_leader

    def _reached(self) -> None:
        """A round got an answer from the API server: say so once after failures."""
        if self._failure is not None:
            log.info(
                "lease_reachable",
                previous=self._failure,
                identity=self.identity,
                lease=self.name,
                namespace=self.namespace,
            )
            self._failure = self._failure_kind = None

    def _round(self) -> bool:
        """One round, its API errors raised (``try_acquire_or_renew`` handles them)."""
        lease = self.kube.read_lease(self.namespace, self.name)
        now = self._wall()
        seconds = max(1, math.ceil(self.lease_duration))
        if lease is None:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": {
                    "holderIdentity": self.identity,
                    "leaseDurationSeconds": seconds,
                    "acquireTime": micro_time(now),
                    "renewTime": micro_time(now),
                    "leaseTransitions": 0,
                },
            }
            self.kube.create_lease(self.namespace, body)
            self._renewed_at = self._clock()
            self._set_leader(True)
            return True
        spec = lease.get("spec") or {}
        meta = lease.get("metadata") or {}
        holder = spec.get("holderIdentity") or ""
        record = (holder, spec.get("renewTime"), meta.get("resourceVersion"))
        if record != self._observed:
            self._observed, self._observed_at = record, self._clock()
        duration = float(spec.get("leaseDurationSeconds") or seconds)
        if holder and holder != self.identity and self._clock() - self._observed_at < duration:
            self._set_leader(False)
            return False
        patch: dict[str, Any] = {
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": seconds,
                "renewTime": micro_time(now),
            }
        }
        if meta.get("resourceVersion"):
            patch["metadata"] = {"resourceVersion": meta["resourceVersion"]}
        if holder != self.identity:
            patch["spec"]["acquireTime"] = micro_time(now)
            patch["spec"]["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
        self.kube.patch_lease(self.namespace, self.name, patch)
        self._renewed_at = self._clock()
        self._set_leader(True)
        return True

    def release(self) -> None:
        """Give the lease up (a clean stop), so that a successor takes over at once."""
        if not self._leader:
            return
        try:
            lease = self.kube.read_lease(self.namespace, self.name)
            if lease and (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                patch: dict[str, Any] = {
                    "spec": {
                        "holderIdentity": None,
                        "leaseDurationSeconds": 1,
                        "renewTime": micro_time(self._wall()),
                    },
                }
                rv = (lease.get("metadata") or {}).get("resourceVersion")
                if rv:
                    patch["metadata"] = {"resourceVersion": rv}
                self.kube.patch_lease(self.namespace, self.name, patch)
        except OperatorError as exc:
            log.warning("lease_release_failed", error=str(exc), identity=self.identity)
        self._set_leader(False)

    # --- the background thread -----------------------------------------------------------

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="tidal-leader", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.try_acquire_or_renew()
            self._stop.wait(self.renew_period)

    @property
    def running(self) -> bool:
        """Whether the background thread runs its rounds (False before ``start``)."""
        return self._thread is not None and self._thread.is_alive()

    def stop(self, *, release: bool = True) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(5.0, self.renew_period * 2))
            self._thread = None
        if release:
            self.release()
        else:
            self._leader = False
