"""``tidal run``: the operator's loop, and the :class:`Operator` that tests run in a thread.

Every ``loop_interval`` the leader reads the cluster once (nodes and pods, shared by every
object) and reconciles each GatewayAutoscaler in turn; a failing object costs only its own
turn. A spec change is acted on promptly: a watch on the CRs wakes the loop when an object
appears or its ``spec`` changes (compared by content, so status writes never wake it, whatever
the API server does with ``metadata.generation``). The watch is re-opened every ``watch_poll``
seconds, which also bounds how long a stop waits for it. A Prometheus that does not answer costs
a pass one timeout, not one per object: once a read of the pass finds it unreachable, the
pass's other objects are told so at once (:class:`~controller.operator.sources.PassReads`) and
hold their replicas, so a partition cannot stretch a pass past the liveness limit.

``tidal run`` exits 2, with one line on standard error naming the flag (or environment
variable, or file) at fault, when its settings or its kubeconfig are unusable, or when its
metrics port cannot be bound (an address that does not resolve, a port in use); ``--once``
exits 1 when an object failed, or when the cluster could not be read at all.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import signal
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import replace
from datetime import timedelta
from types import FrameType
from typing import Any, Literal, get_args, get_origin

import structlog
from kubernetes import client, watch
from pydantic import ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from controller.durations import format_duration
from controller.operator.claims import deployment_claims
from controller.operator.errors import KubeconfigInvalid, OperatorError
from controller.operator.fitting import ModelStore
from controller.operator.kube import KubeClient, api_client_from_settings
from controller.operator.leader import LeaderElector
from controller.operator.logs import configure_logging
from controller.operator.metrics import HealthServer, OperatorMetrics
from controller.operator.reconcile import Outcome, Reconciler
from controller.operator.settings import (
    OperatorSettings,
    SettingsUnusable,
    flag_of,
    holds_seconds,
    in_environment,
    variable_of,
)
from controller.operator.sources import LoadSource, PassReads, make_load_source
from controller.spec import GROUP, PLURAL, VERSION

__all__ = ["Operator", "add_arguments", "run", "settings_from_args"]

log = structlog.get_logger("tidal.operator")


def _live_keys(objects: list[dict[str, Any]]) -> set[str]:
    """The keys the reconciler remembers objects by: each one's uid (its name without one)."""
    keys: set[str] = set()
    for obj in objects:
        meta = obj.get("metadata") or {}
        keys.add(str(meta.get("uid") or f"{meta.get('namespace')}/{meta.get('name')}"))
    return keys


def _spec_hash(obj: Mapping[str, Any]) -> str:
    text = json.dumps(obj.get("spec"), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class Operator:
    """The operator: ``run_forever()`` in production, ``run_once()``/``stop()`` in tests too."""

    def __init__(
        self,
        settings: OperatorSettings,
        *,
        api_client: client.ApiClient | None = None,
        source: LoadSource | None = None,
    ) -> None:
        self.settings = settings
        self.kube = KubeClient(api_client or api_client_from_settings(settings))
        # Audit logs (and the HA tests) tell the replicas apart by user agent.
        self.kube.api_client.user_agent = f"tidal-operator ({settings.identity})"
        self.source = source if source is not None else make_load_source(settings)
        # A Prometheus that does not answer costs a pass one timeout, not one per object.
        self.reads = PassReads(self.source)
        self.metrics = OperatorMetrics()
        self.models = ModelStore(workers=settings.fit_workers, retry=settings.fit_retry)
        self.elector: LeaderElector | None = None
        if settings.leader_election:
            self.elector = LeaderElector(
                self.kube,
                name=settings.lease_name,
                namespace=settings.resolved_lease_namespace(),
                identity=settings.identity,
                lease_duration=settings.lease_duration,
                renew_period=settings.lease_renew,
                on_change=self._leadership_changed,
            )
        self.reconciler = Reconciler(
            self.kube, self.reads, self.models, self.metrics, settings, is_leader=self.is_leader
        )
        self.health: HealthServer | None = None
        self.loops = 0
        self._stop = threading.Event()
        #: A stop asked for and not yet carried out: one that comes before ``start`` (a SIGTERM
        #: as the operator starts) is kept, not cleared with the last run's.
        self._stop_pending = False
        self._wake = threading.Event()
        self._specs: dict[str, str] = {}
        self._last_loop = time.monotonic()
        #: When the loop last finished an object: a long pass that gets on is alive.
        self._last_progress = self._last_loop
        self._started_election = False
        self._loop_failure: str | None = None
        self._threads: list[threading.Thread] = []
        if self.elector is None:
            self.metrics.leader.set(1)  # without an election this instance always leads

    # --- leadership and health -------------------------------------------------------------

    def is_leader(self) -> bool:
        return self.elector is None or self.elector.is_leader

    @property
    def cluster_failure(self) -> str | None:
        """Why the last pass could not read the cluster (and so reconciled nothing), or None."""
        return self._loop_failure

    def _leadership_changed(self, leader: bool) -> None:
        self.metrics.leader.set(1 if leader else 0)
        # A new leader acts at once instead of after a whole interval; one that lost the lease
        # withdraws its per-object gauges at once (``run_once``).
        self._wake.set()

    def _withdraw_object_gauges(self) -> None:
        """Stop exporting the per-object gauges: only the leader says what an object looks like.

        A replica that lost the lease would otherwise export its last values forever, beside
        the new leader's, and a dashboard's ``sum()`` over replicas would count them twice.
        ``tidal_leader`` stays, and so do the counters and histograms (they tell what this
        replica did, and the rate of a counter that stops is zero). Fits and per-object memory
        stay as well, for the objects that are still there (:meth:`_forget_deleted`): a
        replica that wins the lease back plans from its fits at once.
        """
        self.metrics.withdraw_objects()

    def _forget_deleted(self) -> None:
        """A follower that once led drops the fits, memory and series of the objects deleted
        since: they would otherwise stay until it leads again, which may be never. One list of
        the autoscalers a pass, and none while it remembers nothing; a failed list waits for
        the next pass."""
        if not self.reconciler.remembers_any():
            return
        try:
            objects = self.kube.list_autoscalers(self.settings.namespaces)
        except OperatorError as exc:
            log.debug("follower_list_failed", error=str(exc))
            return
        self.reconciler.forget(_live_keys(objects))

    def _healthy(self) -> tuple[bool, str]:
        if self.elector is not None and self._started_election and not self.elector.running:
            return False, "the leader election thread has stopped"
        now = time.monotonic()
        age = now - max(self._last_loop, self._last_progress)
        limit = max(3 * self.settings.loop_interval, 60.0)
        if age > limit:
            return False, (
                f"the loop has not completed for {now - self._last_loop:.0f}s, nor finished "
                f"an object for {age:.0f}s"
            )
        return True, "ok"

    def _ready(self) -> tuple[bool, str]:
        # A follower is ready too: it serves /metrics and stands by to take over.
        if self.loops == 0:
            return False, "starting"
        return True, "leader" if self.is_leader() else "standby"

    # --- the loop --------------------------------------------------------------------------

    def run_once(self) -> dict[str, Outcome]:
        """One pass over every object (only as leader). Returns outcomes by ``namespace/name``."""
        outcomes: dict[str, Outcome] = {}
        if not self.is_leader():
            self._withdraw_object_gauges()
            self._forget_deleted()
            return outcomes
        try:
            snapshot = self.kube.snapshot(self.settings.namespaces)
            objects = self.kube.list_autoscalers(self.settings.namespaces)
        except OperatorError as exc:
            message = str(exc)
            self.metrics.cluster_read_errors.labels(exc.reason).inc()
            if self._loop_failure != message:
                log.warning("cluster_read_failed", error=message, transient=exc.transient)
                self._loop_failure = message
            return outcomes
        self._loop_failure = None
        snapshot = replace(snapshot, claims=deployment_claims(objects))
        # Every listed object is live, reached in this pass or not: a lease lost half-way must
        # not cost the rest their fits.
        live = _live_keys(objects)
        named: list[tuple[str, dict[str, Any]]] = []
        for obj in objects:
            meta = obj.get("metadata") or {}
            named.append((f"{meta.get('namespace')}/{meta.get('name')}", obj))
        self.reads.begin_pass()
        try:
            for key, obj in named:
                # A stop (SIGTERM) ends the pass at the next object, not after every one: a pass
                # longer than the pod's grace period would end in SIGKILL, its lease held until
                # it expires. The objects not reached are the next leader's first pass.
                if self._stop.is_set() or not self.is_leader():
                    break
                outcomes[key] = self.reconciler.reconcile(obj, snapshot)
                # Alive while it gets on: a pass over many objects, each read slowly (a
                # Prometheus that times out every query), is slow, not stuck.
                self._last_progress = time.monotonic()
        finally:
            self.reads.end_pass()
        self.reconciler.forget(live)
        # A deletion the watch missed (between two of its streams, which start afresh) leaves
        # a spec digest behind: the pass's list of the objects is the truth.
        for key in set(self._specs) - live:
            self._specs.pop(key, None)
        if not self.is_leader():
            self._withdraw_object_gauges()
        return outcomes

    def start(self) -> None:
        """Start the health server, the election and the watch (``run_forever`` calls this).

        A stop asked for before this is kept: ``run_forever`` then runs no pass, and shuts down.
        """
        if not self._stop_pending:
            self._stop.clear()  # the last run's stop, carried out
        health = self.listen()
        if self.elector is not None:
            self.elector.start()
            self._started_election = True
        namespaces: list[str | None] = list(self.settings.namespaces) or [None]
        for namespace in namespaces:
            thread = threading.Thread(
                target=self._watch, args=(namespace,), name="tidal-watch", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        log.info(
            "operator_started",
            identity=self.settings.identity,
            metrics_port=health.port,
            namespaces=self.settings.namespaces or "all",
            leader_election=self.elector is not None,
        )

    def listen(self) -> HealthServer:
        """Serve ``/metrics`` and the probes (``start`` does, unless done already).

        An address or port that cannot be bound is a :class:`SettingsUnusable` naming both
        settings as given, the address and the system's reason, on one line.
        """
        if self.health is not None:
            return self.health
        address, port = self.settings.metrics_address, self.settings.metrics_port
        try:
            health = HealthServer(
                self.metrics, address=address, port=port, healthy=self._healthy, ready=self._ready
            )
        except (OSError, ValueError) as exc:  # ValueError: a name the resolver cannot encode
            named = self.settings.named
            host = f"[{address}]" if ":" in address else address
            reason = (exc.strerror if isinstance(exc, OSError) else None) or str(exc)
            raise SettingsUnusable(
                f"{named('metrics_address')}/{named('metrics_port')} {host}:{port}: "
                + " ".join(reason.split())
            ) from exc
        health.start()
        self.health = health
        return health

    def run_forever(self) -> None:
        self.start()
        try:
            while not self._stop.is_set():
                try:
                    self.run_once()
                except Exception:  # the loop's own edge: a bug must not end the operator
                    log.exception("loop_failed")
                self.loops += 1
                self._last_loop = time.monotonic()
                self._wake.wait(self.settings.loop_interval)
                self._wake.clear()
        finally:
            self._shutdown()

    def stop(self, *, release: bool = True) -> None:
        """Ask ``run_forever`` to return; ``release=False`` leaves the lease as a crash would."""
        self._release = release
        self._stop_pending = True
        self._stop.set()
        self._wake.set()

    def _shutdown(self) -> None:
        if self.elector is not None:
            self.elector.stop(release=getattr(self, "_release", True))
        for thread in self._threads:
            # A watch blocked in a read ends at its next time-out; it is a daemon: do not wait.
            thread.join(timeout=0.5)
        self._threads.clear()
        if self.health is not None:
            self.health.stop()
            self.health = None
        self.models.shutdown()
        self._stop_pending = False
        log.info("operator_stopped", identity=self.settings.identity)

    def _watch(self, namespace: str | None) -> None:
        """Wake the loop when an object appears, changes its spec, or goes away."""
        custom = self.kube.custom
        while not self._stop.is_set():
            stream = watch.Watch()  # type: ignore[no-untyped-call]
            try:
                if namespace is None:
                    events = stream.stream(  # type: ignore[no-untyped-call]
                        custom.list_cluster_custom_object,
                        GROUP,
                        VERSION,
                        PLURAL,
                        _request_timeout=self.settings.watch_poll,
                    )
                else:
                    events = stream.stream(  # type: ignore[no-untyped-call]
                        custom.list_namespaced_custom_object,
                        GROUP,
                        VERSION,
                        namespace,
                        PLURAL,
                        _request_timeout=self.settings.watch_poll,
                    )
                for event in events:
                    if self._stop.is_set():
                        break
                    obj = event.get("object") or {}
                    if not isinstance(obj, dict):
                        continue
                    meta = obj.get("metadata") or {}
                    key = str(meta.get("uid") or f"{meta.get('namespace')}/{meta.get('name')}")
                    if event.get("type") == "DELETED":
                        self._specs.pop(key, None)
                        self._wake.set()
                        continue
                    digest = _spec_hash(obj)
                    if self._specs.get(key) != digest:
                        self._specs[key] = digest
                        self._wake.set()
            except Exception as exc:  # read time-outs end every idle stream: re-open it
                log.debug("watch_reopened", error=type(exc).__name__)
            finally:
                stream.stop()  # type: ignore[no-untyped-call]
            self._stop.wait(0.2)


# --- the command line ------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per setting (``--loop-interval`` for ``TIDAL_LOOP_INTERVAL``); flags win."""
    for name, info in OperatorSettings.model_fields.items():
        flag = flag_of(name)
        text = f"{info.description or ''} ({_help_tail(name, info)})".strip()
        if info.annotation is bool:
            parser.add_argument(
                flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=text
            )
        else:
            parser.add_argument(flag, dest=name, default=None, help=text)
    parser.add_argument(
        "--once", action="store_true", help="reconcile every object once, then exit (no election)"
    )


def _help_tail(name: str, info: FieldInfo) -> str:
    """What a flag's help ends with: its choices, its default and its variable."""
    parts = []
    if get_origin(info.annotation) is Literal:
        parts.append("one of " + ", ".join(str(choice) for choice in get_args(info.annotation)))
    default = info.default
    if info.default_factory is None and default not in (None, PydanticUndefined):
        if info.annotation is bool:
            shown = flag_of(name) if default else "--no-" + flag_of(name)[2:]
        elif holds_seconds(info):
            shown = format_duration(timedelta(seconds=float(default)))
        else:
            shown = str(default)
        parts.append(f"default {shown}")
    parts.append(f"env {variable_of(name)}")
    return "; ".join(parts)


def settings_from_args(args: argparse.Namespace) -> OperatorSettings:
    overrides = {
        name: getattr(args, name)
        for name in OperatorSettings.model_fields
        if getattr(args, name, None) is not None
    }
    if getattr(args, "once", False):
        overrides["leader_election"] = False
    return OperatorSettings(**overrides)


def _settings_problem(exc: ValidationError, args: argparse.Namespace) -> str:
    """One line naming each setting at fault as it was given: its flag, else its variable."""
    parts = []
    for error in exc.errors():
        message = str(error["msg"]).removeprefix("Value error, ")
        name = error["loc"][0] if error["loc"] else None
        if isinstance(name, str) and name in OperatorSettings.model_fields:
            given_as_flag = getattr(args, name, None) is not None
            where = flag_of(name) if given_as_flag else variable_of(name)
            parts.append(f"{where}: {message}")
        else:
            # A rule across settings names them as flags: name the variables given instead.
            for field in OperatorSettings.model_fields:
                flag = flag_of(field)
                from_variable = getattr(args, field, None) is None and in_environment(field)
                if flag in message and from_variable:
                    message = re.sub(rf"{re.escape(flag)}\b", variable_of(field), message)
            parts.append(message)
    return "; ".join(" ".join(part.split()) for part in parts)


def run(args: argparse.Namespace) -> int:
    """``tidal run``: 0 on a clean stop (SIGTERM, SIGINT), 2 on bad settings or kubeconfig, or a
    metrics port it cannot listen on; with ``--once``, 1 if the cluster could not be read or an
    object failed."""
    try:
        settings = settings_from_args(args)
    except ValidationError as exc:
        print(f"tidal run: {_settings_problem(exc, args)}", file=sys.stderr)
        return 2
    configure_logging(settings.log_format, settings.log_level)
    try:
        operator = Operator(settings)
    except KubeconfigInvalid as exc:
        print(f"tidal run: {exc}", file=sys.stderr)
        return 2
    if getattr(args, "once", False):
        outcomes = operator.run_once()
        for key, outcome in outcomes.items():
            log.info("reconciled", object=key, ok=outcome.ok, reason=outcome.reason)
        operator.models.shutdown()
        if operator.cluster_failure is not None:
            return 1  # nothing was reconciled: all() over no outcomes is not a success
        return 0 if all(o.ok for o in outcomes.values()) else 1

    try:
        operator.listen()  # before the signals are taken over: nothing to stop yet
    except SettingsUnusable as exc:
        operator.models.shutdown()
        print(f"tidal run: {exc}", file=sys.stderr)
        return 2

    def _stop(signum: int, _frame: FrameType | None) -> None:
        log.info("signal_received", signal=signal.Signals(signum).name)
        operator.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    operator.run_forever()
    return 0
