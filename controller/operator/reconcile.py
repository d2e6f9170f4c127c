"""One GatewayAutoscaler, one pass: validate, read, forecast, plan, apply, report.

A ``Paused`` object reads no metric, fits no model and writes nothing but its own status, which
reports what its Deployments run (from the loop's cluster snapshot; a Deployment gone is
``Ready=False`` as for any object). An object that names a Deployment another GatewayAutoscaler,
created first, already scales (:mod:`controller.operator.claims`) changes nothing and says so in
``Ready=False``. One whose placeholder name is taken by a Deployment it does not own still
scales its gateways, but reserves nothing ahead and never writes that Deployment; ``Ready=False``
says so.

:meth:`Reconciler.reconcile` is the edge: every failure of one object ends there, becomes a
``Ready=False`` condition naming its cause, counts in ``tidal_reconcile_errors_total``, and is
logged once (when it first appears or changes), never re-raised, so that it cannot touch
another object. Whether a failure is transient is decided there, once, from the error type.

The decision itself is :func:`controller.planner.plan_region`, called exactly as the simulator
calls it.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import structlog
from pydantic import ValidationError

from controller.operator.capacity import physical_capacity, selector_misses_running_gateways
from controller.operator.claims import POOLS
from controller.operator.drain import LOWEST_COST, Marks, marks_for_scale_downs
from controller.operator.errors import (
    InvalidSpec,
    OperatorError,
    PhysicalCapacityUnknown,
    PlaceholderConflict,
    TargetConflict,
    TargetMissing,
)
from controller.operator.fitting import FitState, ModelStore, fit_error, spec_fingerprint
from controller.operator.kube import (
    ClusterSnapshot,
    KubeClient,
    owned_by,
    owner_names,
    placeholder_deployment,
    placeholder_name,
)
from controller.operator.metrics import OperatorMetrics
from controller.operator.settings import OperatorSettings
from controller.operator.sources import LoadSource, MetricsUnavailable, metrics_reason
from controller.operator.status import (
    Condition,
    merge_conditions,
    recommendations_from_status,
    recommendations_to_status,
    rfc3339,
)
from controller.planner import (
    Plan,
    PlannerSettings,
    Reason,
    Recommendation,
    RegionState,
    forecast_reach,
    forecaster_for,
    plan_region,
)
from controller.spec import (
    MIN_FIT_STEP,
    GatewayAutoscalerSpec,
    Mode,
    format_validation_error,
    name_problem,
)
from forecasts.base import FittedModel, Forecast
from forecasts.errors import (
    FitFailed,
    ForecastError,
    InsufficientHistory,
    InvalidHistory,
    UnknownModel,
)
from forecasts.series import LoadSeries

__all__ = ["Outcome", "Reconciler", "format_validation_error"]

log = structlog.get_logger("tidal.reconcile")


@dataclass(frozen=True)
class Outcome:
    """What one reconcile came to (for tests, the bench and the loop's own bookkeeping)."""

    ok: bool
    reason: str
    message: str = ""
    plan: Plan | None = None


@dataclass
class _Memory:
    """Per-object facts that dedupe logs and events, and the recommendations a failed status
    write did not store: losing them on restart is harmless (the status has the rest)."""

    name: str = ""
    namespace: str = ""
    region: str | None = None
    failure: str | None = None
    last_event: str | None = None
    generation: int | None = None
    #: The last plan's recommendations while no status write has stored them.
    unsaved: tuple[Recommendation, ...] = ()
    #: When this process last scaled the object's Deployments (Scale mode), the replicas each
    #: then asked for, and their names: a pass that finds others in a Deployment of the same
    #: name was preceded by another writer (a spec edit that names another one is not).
    written: tuple[float, int, int, str, str] | None = None
    #: The first pass of the current run of passes that read the metrics (None while they
    #: fail): a fit that failed for want of them is awaited for a refit from then.
    metrics_back: float | None = None
    #: When another writer was last warned of (one Warning Event in 10 minutes at most).
    other_writer_warned: float = -float("inf")
    #: The fit failure last logged, its numbers aside (None once a fit succeeds): a failure
    #: that lasts (a history still too short, retried every pass) is logged once.
    fit_failure: str | None = None


@dataclass
class _Read:
    """What one loop read about an object's targets."""

    physical: dict[str, Any]
    cloud: dict[str, Any]
    placeholder: dict[str, Any] | None
    capacity: int
    #: A Deployment of the placeholder's name that this object does not own: never written,
    #: and the reservation is left out (``cloud.reserve`` only).
    placeholder_conflict: PlaceholderConflict | None = None


def _failure(exc: BaseException) -> tuple[str, str]:
    """A failure's condition reason and message: the operator's own errors say both; anything
    else is an internal error named by its type."""
    if isinstance(exc, OperatorError):
        return exc.reason, str(exc)
    return "InternalError", f"{type(exc).__name__}: {exc}"


def _replicas(deployment: Mapping[str, Any] | None) -> int:
    if not deployment:
        return 0
    value = (deployment.get("spec") or {}).get("replicas")
    return 1 if value is None else int(value)  # the API's default for spec.replicas


def _numbers_aside(message: str | None) -> str | None:
    """``message`` without its numbers: a failure that lasts (a load sample ever older, a
    metrics read over a window that moves) is logged once, not at every pass."""
    return None if message is None else re.sub(r"\d+(?:\.\d+)?", "#", message)


def _first_fit_pending(
    fit: FitState, spec: GatewayAutoscalerSpec, now: float, metrics_back: float | None = None
) -> bool:
    """Whether the object's first fit is on its way: until its first forecast, what runs and
    what is reserved stay (a restart or a spec edit starts the fit afresh).

    A fit that fails, or runs longer than ``forecast.refit`` (stuck, or queued behind others),
    lets them go. Never a wait shorter than a fit step: a forecast changes no more often than
    that, and a ``refit`` of ``0s`` (refit every pass) would otherwise let them go at the
    first pass of every restart. A fit that failed because Prometheus could not be read did
    not fail on the model: its retry is on its way, for as long again from when the metrics
    came back (``metrics_back``), so that nothing goes for want of data. A history that keeps
    failing while the load is read (a range too long for Prometheus) lets them go then.
    """
    window = max(spec.forecast.refit, MIN_FIT_STEP).total_seconds()
    if fit.fitted is not None:
        return False
    if fit.problem is not None:
        return (
            fit.problem[0] == MetricsUnavailable.reason
            and metrics_back is not None
            and now - metrics_back < window
        )
    return fit.running is not None and fit.started_at is not None and now - fit.started_at < window


def _ready(deployment: Mapping[str, Any] | None) -> int | None:
    """``status.readyReplicas`` (the API omits it at zero, and ``status.replicas`` too at a
    Deployment of none); None when the Deployment controller has not written a status yet:
    then nothing counts as starting, and stabilisation holds every replica."""
    if not deployment:
        return 0
    status = deployment.get("status") or {}
    if not any(key in status for key in ("replicas", "readyReplicas", "observedGeneration")):
        return None
    return int(status.get("readyReplicas") or 0)


@dataclass
class Reconciler:
    kube: KubeClient
    source: LoadSource
    models: ModelStore
    metrics: OperatorMetrics
    settings: OperatorSettings
    is_leader: Callable[[], bool] = lambda: True
    clock: Callable[[], float] = time.time
    _memory: dict[str, _Memory] = field(default_factory=dict)

    # --- the edge ------------------------------------------------------------------------

    def reconcile(self, obj: Mapping[str, Any], snapshot: ClusterSnapshot) -> Outcome:
        meta = obj.get("metadata") or {}
        name, namespace = str(meta.get("name")), str(meta.get("namespace"))
        key = str(meta.get("uid") or f"{namespace}/{name}")
        memory = self._memory.setdefault(key, _Memory(name=name, namespace=namespace))
        bound = log.bind(gwa=name, namespace=namespace)
        started = time.perf_counter()
        try:
            problem = name_problem(name)
            if problem is not None:
                raise InvalidSpec(problem)
            try:
                spec = GatewayAutoscalerSpec.model_validate(obj.get("spec") or {})
            except ValidationError as exc:
                raise InvalidSpec(format_validation_error(exc)) from exc
            bound = bound.bind(region=spec.region, model=spec.forecast.model)
            if memory.region not in (None, spec.region):
                self.metrics.forget(name, namespace, memory.region)
            memory.region = spec.region
            outcome = self._reconcile(obj, spec, snapshot, memory, bound)
            if outcome.ok and outcome.reason != "NotLeader":
                self.metrics.last_success.labels(name, namespace).set(self.clock())
            if outcome.ok and memory.failure is not None:
                bound.info("reconcile_recovered", previous=memory.failure)
                memory.failure = None
            elif not outcome.ok and _numbers_aside(memory.failure) != _numbers_aside(
                outcome.message
            ):
                memory.failure = outcome.message
                bound.warning("reconcile_degraded", reason=outcome.reason, error=outcome.message)
            return outcome
        except Exception as exc:  # the edge: nothing escapes to the other objects
            error = exc if isinstance(exc, OperatorError) else None
            reason = error.reason if error else "InternalError"
            transient = error.transient if error else True
            message = str(exc) if error else f"{type(exc).__name__}: {exc}"
            self.metrics.reconcile_errors.labels(name, namespace, reason).inc()
            if memory.failure != message:
                memory.failure = message
                if error is None:
                    bound.exception("reconcile_failed", reason=reason, transient=transient)
                else:
                    bound.warning(
                        "reconcile_failed", reason=reason, error=message, transient=transient
                    )
            self._report_failure(obj, reason=reason, message=message, memory=memory, log=bound)
            return Outcome(False, reason, message)
        finally:
            self.metrics.reconcile_seconds.labels(name, namespace).observe(
                time.perf_counter() - started
            )

    def remembers_any(self) -> bool:
        """Whether any object has memory or a fit here (what :meth:`forget` would drop)."""
        return bool(self._memory) or self.models.holds_any()

    def forget(self, live: set[str]) -> None:
        """Drop memory of objects that are gone (by uid), and their metrics."""
        for key in set(self._memory) - live:
            memory = self._memory.pop(key)
            # An object deleted and made again under its name (a new uid) keeps the series the
            # name labels; only a region it no longer has goes.
            again = [
                m
                for k, m in self._memory.items()
                if k in live and (m.name, m.namespace) == (memory.name, memory.namespace)
            ]
            if not again:
                self.metrics.forget_object(memory.name, memory.namespace, memory.region)
            elif memory.region is not None and all(m.region != memory.region for m in again):
                self.metrics.forget(memory.name, memory.namespace, memory.region)
        self.models.prune(live)

    def _report_failure(
        self, obj: Mapping[str, Any], *, reason: str, message: str, memory: _Memory, log: Any
    ) -> None:
        if not self.is_leader():
            return
        meta = obj.get("metadata") or {}
        previous = obj.get("status") or {}
        now = self.clock()
        try:
            conditions = merge_conditions(
                previous.get("conditions"),
                [Condition("Ready", False, reason, message)],
                now=now,
                generation=meta.get("generation"),
            )
            status: dict[str, Any] = {"conditions": conditions}
            if meta.get("generation") is not None:
                status["observedGeneration"] = meta["generation"]
            self.kube.patch_status(str(meta.get("namespace")), str(meta.get("name")), status)
            self._event(obj, memory, reason=reason, message=message, warning=True)
        except Exception as exc:  # the API itself is failing: the loop retries; say it once
            log.debug("status_write_failed", error=str(exc))

    def _event(
        self,
        obj: Mapping[str, Any],
        memory: _Memory,
        *,
        reason: str,
        message: str,
        warning: bool = False,
    ) -> None:
        """Record an event, best effort: an Events API that refuses (a quota, a 429) must not
        stop the writes that follow it, nor the status."""
        key = f"{reason}:{message}"
        if memory.last_event == key:
            return
        try:
            self.kube.create_event(
                obj,
                reason=reason,
                message=message,
                warning=warning,
                instance=self.settings.identity,
            )
        except Exception as exc:
            log.debug("event_write_failed", reason=reason, error=str(exc))
            return
        memory.last_event = key

    def _warn_when_ready_turns(
        self,
        obj: Mapping[str, Any],
        memory: _Memory,
        previous: Mapping[str, Any],
        reason: str,
        message: str,
    ) -> None:
        """A Warning Event when ``Ready`` turns False for ``reason`` (the metrics or the load
        missing), for ``kubectl describe``; not again at each pass it stays so, whose messages
        differ only by the time read."""
        ready = next(
            (c for c in previous.get("conditions") or () if c.get("type") == "Ready"), None
        )
        if ready is not None and (ready.get("status"), ready.get("reason")) == ("False", reason):
            return
        self._event(obj, memory, reason=reason, message=message, warning=True)

    def _other_writer(
        self,
        obj: Mapping[str, Any],
        spec: GatewayAutoscalerSpec,
        memory: _Memory,
        now: float,
        found: tuple[int, int],
        log: Any,
    ) -> None:
        """Warn when a Deployment asks for other replicas than this process left it asking for
        a pass ago: another writer (an HPA on it, a person, a CI job) is scaling it too, and
        each pass sets it back. One Warning Event and log line in 10 minutes at most."""
        written = memory.written
        if written is None or now - written[0] > 3 * max(self.settings.loop_interval, 1.0):
            return  # no pass of this process just before (a restart, a leader again)
        names = (spec.physical.deployment, spec.cloud.deployment)
        changed = [
            f"{pool} deployment {name} from {before} to {after}"
            for pool, before, after, was, name in zip(
                ("physical", "cloud"), written[1:3], found, written[3:5], names, strict=True
            )
            if before != after and was == name
        ]
        if not changed or now - memory.other_writer_warned < 600.0:
            return
        memory.other_writer_warned = now
        message = (
            f"another writer scaled {' and '.join(changed)} since the last pass; Tidal sets "
            "the plan again each pass: remove the other writer (an HPA, a script), or set "
            "spec.mode to ForecastOnly or Paused"
        )
        log.warning("scaled_by_another", message=message)
        self._event(obj, memory, reason="ScaledByAnother", message=message, warning=True)

    # --- one valid object ----------------------------------------------------------------

    def _read_targets(
        self, obj: Mapping[str, Any], spec: GatewayAutoscalerSpec, snapshot: ClusterSnapshot
    ) -> _Read:
        namespace = str((obj.get("metadata") or {}).get("namespace"))
        physical = snapshot.deployment(namespace, spec.physical.deployment)
        cloud = snapshot.deployment(namespace, spec.cloud.deployment)
        missing = [
            f"spec.{pool}.deployment: deployment {getattr(spec, pool).deployment!r}"
            for pool, found in (("physical", physical), ("cloud", cloud))
            if found is None
        ]
        if missing:
            # Both named when both are missing, so that one fix is not followed by another.
            raise TargetMissing(f"{' and '.join(missing)} not found in namespace {namespace!r}")
        assert physical is not None and cloud is not None
        name = str((obj.get("metadata") or {}).get("name"))
        placeholder = snapshot.deployment(namespace, placeholder_name(name))
        conflict: PlaceholderConflict | None = None
        if placeholder is not None and not owned_by(placeholder, obj):
            # Someone else's Deployment: never written, never counted as reserved. The gateways
            # are still scaled; only the reservation ahead of a ramp is lost, and Ready says so.
            if spec.cloud.reserve:
                conflict = PlaceholderConflict(
                    f"metadata.name: deployment {placeholder_name(name)!r}, this object's "
                    f"placeholder, exists and is not owned by it ({owner_names(placeholder)}): "
                    "it is left untouched and no cloud capacity is reserved ahead; delete it, "
                    "or rename this GatewayAutoscaler"
                )
            placeholder = None
        misses = selector_misses_running_gateways(
            snapshot.nodes,
            snapshot.pods,
            node_selector=spec.physical.node_selector,
            gateway=physical,
        )
        if misses is not None:
            raise PhysicalCapacityUnknown(f"spec.physical.nodeSelector: {misses}")
        try:
            capacity = physical_capacity(
                snapshot.nodes,
                snapshot.pods,
                node_selector=spec.physical.node_selector,
                gateway=physical,
                max_replicas=spec.physical.max_replicas,
            )
        except ValueError as exc:
            raise PhysicalCapacityUnknown(f"spec.physical.deployment: {exc}") from exc
        return _Read(physical, cloud, placeholder, capacity, conflict)

    @staticmethod
    def _check_claims(
        spec: GatewayAutoscalerSpec, name: str, namespace: str, snapshot: ClusterSnapshot
    ) -> None:
        """Refuse, before anything is read or written, a Deployment that another object,
        created first, names too (:mod:`controller.operator.claims`)."""
        for pool in POOLS:
            deployment = str(getattr(spec, pool).deployment)
            owner = snapshot.claimant(namespace, deployment)
            if owner is not None and owner != name:
                raise TargetConflict(
                    f"spec.{pool}.deployment: deployment {deployment!r} is also named by "
                    f"GatewayAutoscaler {owner!r}, created first, which alone may scale it; "
                    "this object changes nothing until one of them names another Deployment"
                )

    def _paused(
        self,
        obj: Mapping[str, Any],
        spec: GatewayAutoscalerSpec,
        state: RegionState,
        memory: _Memory,
    ) -> Outcome:
        """``Paused``: no Prometheus read, no fit, no write but this status, which reports what
        the Deployments run now (from the loop's cluster snapshot) and keeps the stored
        recommendations for when the object is resumed."""
        meta = obj.get("metadata") or {}
        name, namespace = str(meta.get("name")), str(meta.get("namespace"))
        now = self.clock()
        plan = plan_region(
            spec,
            history=LoadSeries(now, spec.load.step.total_seconds(), np.empty(0)),
            forecast=None,
            state=state,
            now=now,
            settings=self._planner_settings(spec),
            forecast_problem="no forecast while paused",
        )
        status = self._status(
            spec,
            plan,
            meta=meta,
            previous=obj.get("status") or {},
            fit=FitState(fingerprint=""),
            forecast=None,
            forecast_reason=Mode.PAUSED.value,
            metrics_problem=None,
            metrics_failure="",
            scaled=False,
        )
        status["load"] = None  # nothing is read: an old load would pass for the current one
        self.kube.patch_status(namespace, name, status)
        self.metrics.forget(name, namespace, spec.region)
        self._observe(
            name,
            namespace,
            spec,
            plan,
            None,
            actual=(state.physical_replicas, state.cloud_replicas),
            ready=(state.physical_ready, state.cloud_ready),
        )
        message = (
            "Paused: no metric is read, no model fitted and nothing changed until spec.mode is "
            "changed"
        )
        self._event(obj, memory, reason=Mode.PAUSED.value, message=message)
        return Outcome(True, Mode.PAUSED.value, message, plan)

    def _horizon(self, spec: GatewayAutoscalerSpec) -> float:
        """As far as the planner reads (the horizon, or a node's boot and first hold), one load
        step on top."""
        return forecast_reach(spec, self._planner_settings(spec)) + spec.load.step.total_seconds()

    def _planner_settings(self, spec: GatewayAutoscalerSpec) -> PlannerSettings:
        return PlannerSettings(
            loop_interval=self.settings.loop_interval,
            pod_ready=self.settings.pod_ready,
            stale_after=max(300.0, 2 * spec.load.step.total_seconds()),
            node_hold=self.settings.node_hold,
        )

    def _fit_job(self, spec: GatewayAutoscalerSpec) -> Callable[[FittedModel | None], FittedModel]:
        step = spec.load.step.total_seconds()

        def job(previous: FittedModel | None) -> FittedModel:
            end = self.clock()
            history = self.source.read_history(
                spec.load.query, start=end - spec.load.history.total_seconds(), end=end, step=step
            )
            return forecaster_for(spec, self._planner_settings(spec)).fit(
                history, previous=previous
            )

        return job

    @staticmethod
    def _classify_fit(bound: Any, memory: _Memory) -> Callable[[BaseException], tuple[str, str]]:
        """The condition reason and message of a failed fit, logged when the failure starts or
        changes, not at each retry of one that lasts (its numbers aside: a history a sample
        longer each time)."""

        def first(reason: str, message: str) -> bool:
            key = f"{reason}:{_numbers_aside(message)}"
            if memory.fit_failure == key:
                return False
            memory.fit_failure = key
            return True

        def classify(exc: BaseException) -> tuple[str, str]:
            if isinstance(exc, MetricsUnavailable):
                if first(metrics_reason(exc), str(exc)):
                    bound.warning("fit_failed", reason=metrics_reason(exc), error=str(exc))
                return metrics_reason(exc), str(exc)
            for kind, reason in (
                (InsufficientHistory, "InsufficientHistory"),
                (InvalidHistory, "InvalidHistory"),
                (UnknownModel, "UnknownModel"),
                (FitFailed, "FitFailed"),
                (ForecastError, "ForecastError"),
            ):
                if isinstance(exc, kind):
                    if first(reason, str(exc)):
                        bound.warning("fit_failed", reason=reason, error=str(exc))
                    return reason, str(exc)
            message = f"{type(exc).__name__}: {exc}"
            if first("FitFailed", message):
                bound.error("fit_failed", reason="FitFailed", error=repr(exc), exc_info=exc)
            return "FitFailed", message

        return classify

    def _recent_history(self, spec: GatewayAutoscalerSpec, fit: FitState, now: float) -> LoadSeries:
        """The samples this loop needs: since the fit ended (to advance it), and the latest load."""
        step = spec.load.step.total_seconds()
        start = now - max(30 * step, 600.0)
        if fit.fitted is not None:
            start = min(start, fit.fitted.fitted_until - fit.fitted.step)
        start = max(start, now - spec.load.history.total_seconds())
        return self.source.read_history(spec.load.query, start=start, end=now, step=step)

    def _reconcile(
        self,
        obj: Mapping[str, Any],
        spec: GatewayAutoscalerSpec,
        snapshot: ClusterSnapshot,
        memory: _Memory,
        bound: Any,
    ) -> Outcome:
        if not self.is_leader():
            return Outcome(True, "NotLeader")
        meta = obj.get("metadata") or {}
        name, namespace = str(meta.get("name")), str(meta.get("namespace"))
        if spec.mode is not Mode.FORECAST_ONLY:  # ForecastOnly writes no Deployment
            self._check_claims(spec, name, namespace, snapshot)
        uid = str(meta.get("uid") or f"{namespace}/{name}")
        previous_status: Mapping[str, Any] = obj.get("status") or {}
        now = self.clock()
        read = self._read_targets(obj, spec, snapshot)
        physical_now, cloud_now = _replicas(read.physical), _replicas(read.cloud)
        placeholders_now = _replicas(read.placeholder) if read.placeholder else 0
        state = RegionState(
            physical_replicas=physical_now,
            cloud_replicas=cloud_now,
            physical_capacity=read.capacity,
            cloud_reserved=cloud_now + placeholders_now,
            recommendations=tuple(
                sorted(
                    set(recommendations_from_status(previous_status)) | set(memory.unsaved),
                    key=lambda r: r.at,
                )
            ),
            physical_ready=_ready(read.physical),
            cloud_ready=_ready(read.cloud),
        )
        if spec.mode is not Mode.SCALE:
            memory.written = None  # what a person does meanwhile is theirs to do
        if spec.mode is Mode.PAUSED:
            return self._paused(obj, spec, state, memory)

        # The forecast: from the last fit, advanced over what arrived since.
        fit = self.models.current(
            uid,
            fingerprint=spec_fingerprint(spec),
            now=now,
            refit=spec.forecast.refit.total_seconds(),
            fit=self._fit_job(spec),
            classify=self._classify_fit(bound, memory),
        )
        if fit.fitted is not None and fit.fitted_at == now:
            memory.fit_failure = None
            # Collected in this pass: observed here, on the loop, while the object is known. A
            # fit thread observing it would bring the series of a deleted object back.
            self.metrics.fit_seconds.labels(name, namespace, spec.forecast.model).observe(
                fit.fitted.fit_seconds
            )
        metrics_problem: str | None = None
        metrics_failure = "MetricsUnavailable"
        forecast: Forecast | None = None
        forecast_problem: str | None = None
        forecast_reason = "Fitting"
        step = spec.load.step.total_seconds()
        try:
            history = self._recent_history(spec, fit, now)
        except MetricsUnavailable as exc:
            metrics_problem = f"spec.load.query: {exc}"
            metrics_failure = metrics_reason(exc)
            history = LoadSeries(now, step, np.empty(0))
        if metrics_problem is not None:
            forecast_reason, forecast_problem = metrics_failure, metrics_problem
        elif fit.fitted is not None:
            try:
                forecast = fit.fitted.forecast(history, horizon=self._horizon(spec))
            except (ForecastError, ValueError) as exc:
                forecast_reason, forecast_problem = "ForecastError", f"forecast failed: {exc}"
            else:
                with np.errstate(over="ignore", invalid="ignore"):
                    band = forecast.upper(spec.forecast.quantile)
                if not (np.isfinite(forecast.point).all() and np.isfinite(band).all()):
                    # Loads near the largest number a float holds overflow the band: no plan,
                    # and no NaN in a status the API server would refuse as JSON.
                    forecast = None
                    forecast_reason, forecast_problem = (
                        "ForecastError",
                        "forecast failed: its path or band is not a finite number (a load "
                        "near the largest a float holds?)",
                    )
        elif fit.problem is not None:
            forecast_reason, forecast_problem = fit.problem
        else:
            forecast_problem = f"the first fit of {spec.forecast.model} is running"
        if metrics_problem is not None:
            memory.metrics_back = None
        elif memory.metrics_back is None:
            memory.metrics_back = now
        pending = metrics_problem is None and _first_fit_pending(
            fit, spec, now, memory.metrics_back
        )

        planner_settings = self._planner_settings(spec)
        plan_spec = spec
        if read.placeholder_conflict is not None:
            # No placeholder can be written: plan, report and export no reservation either.
            plan_spec = spec.model_copy(
                update={"cloud": spec.cloud.model_copy(update={"reserve": False})}
            )
        plan = plan_region(
            plan_spec,
            history=history,
            forecast=forecast,
            state=state,
            now=now,
            settings=planner_settings,
            forecast_problem=forecast_problem,
            forecast_pending=pending,
        )

        # Apply: Scale mode only, and only what changed.
        scaled = False
        failed: Exception | None = None
        running = (physical_now, cloud_now)
        if not self.is_leader():
            # The lease went while this object was planned: the new leader writes, status too.
            return Outcome(True, "NotLeader")
        if plan.acts:
            self._other_writer(obj, spec, memory, now, (physical_now, cloud_now), bound)
            scaled, failed, running = self._apply(
                obj,
                spec,
                plan,
                read,
                memory,
                physical_now,
                cloud_now,
                placeholders_now,
                pods=snapshot.pods,
            )
            memory.written = (now, *running, spec.physical.deployment, spec.cloud.deployment)
        elif plan.mode is Mode.FORECAST_ONLY:
            self._event(
                obj,
                memory,
                reason=plan.mode.value,
                message=(
                    f"would run physical {plan.physical.replicas} ({plan.physical.reason.value}), "
                    f"cloud {plan.cloud.replicas} ({plan.cloud.reason.value}), "
                    f"reserve {plan.reserve.replicas}; nothing is changed in ForecastOnly mode"
                ),
            )

        status = self._status(
            spec,
            plan,
            meta=meta,
            previous=previous_status,
            fit=fit,
            forecast=forecast,
            forecast_reason=forecast_reason,
            metrics_problem=metrics_problem,
            metrics_failure=metrics_failure,
            scaled=scaled,
            write_failure=failed,
            running=running if plan.acts else None,
            placeholder_conflict=read.placeholder_conflict,
        )
        if not self.is_leader():
            # Lost during the writes: a status from here would overwrite the new leader's.
            memory.unsaved = plan.recommendations
            return Outcome(True, "NotLeader")
        try:
            self.kube.patch_status(namespace, name, status)
        except Exception:
            # The Deployments may have been scaled on this pass's recommendation: keep it for
            # the next pass, or stabilisation would forget it and scale down inside its window.
            memory.unsaved = plan.recommendations
            raise
        memory.unsaved = ()
        self._observe(
            name,
            namespace,
            spec,
            plan,
            forecast,
            actual=running,
            ready=(state.physical_ready, state.cloud_ready),
        )
        if failed is not None:
            # One status above says it all (this pass's recommendation kept, Ready=False); the
            # edge would write a second one from the old conditions.
            reason, text = _failure(failed)
            self.metrics.reconcile_errors.labels(name, namespace, reason).inc()
            if not isinstance(failed, OperatorError) and memory.failure != text:
                bound.error("write_failed", reason=reason, error=text, exc_info=failed)
            return Outcome(False, reason, text, plan)
        missing = (
            (metrics_failure, metrics_problem)
            if metrics_problem is not None
            else ("LoadMissing", f"spec.load.query: {plan.load_problem}")
            if plan.load_problem is not None
            else None
        )
        if missing is not None:
            reason, text = missing
            self.metrics.reconcile_errors.labels(name, namespace, reason).inc()
            self._warn_when_ready_turns(obj, memory, previous_status, reason, text)
            # Served (held, never scaled down) but not healthy: say so in the outcome too.
            return Outcome(False, reason, text, plan)
        conflict = read.placeholder_conflict
        if conflict is not None and plan.acts:
            self.metrics.reconcile_errors.labels(name, namespace, conflict.reason).inc()
            return Outcome(False, conflict.reason, str(conflict), plan)
        return Outcome(True, "Reconciled", plan=plan)

    def _apply(
        self,
        obj: Mapping[str, Any],
        spec: GatewayAutoscalerSpec,
        plan: Plan,
        read: _Read,
        memory: _Memory,
        physical_now: int,
        cloud_now: int,
        placeholders_now: int,
        *,
        pods: Iterable[Mapping[str, Any]],
    ) -> tuple[bool, Exception | None, tuple[int, int]]:
        """Write the plan's replicas and placeholders; whether anything was scaled, the first
        write that failed, and the physical and cloud replicas the Deployments now ask for.

        Before the cloud Deployment or the placeholders are scaled down, their pods on the cloud
        nodes that hold the fewest are marked to go first (:mod:`~controller.operator.drain`),
        so that the nodes they leave are empty; a mark that fails is logged, and the scale-down
        goes ahead.

        Additions go first, physical before cloud (the physical pool is filled first); then
        removals, cloud before physical (cloud is given back first). Once a write has failed,
        nothing more is taken away in this loop, so a half-applied plan never leaves fewer
        replicas than either pool's old or new count would; additions still go out, since the
        load they are for does not wait. The placeholders come last, grown or shrunk the same
        way.
        """
        namespace = str((obj.get("metadata") or {}).get("namespace"))
        key = f"{namespace}/{(obj.get('metadata') or {}).get('name')}"
        pools = [
            ("physical", spec.physical.deployment, physical_now, plan.physical),
            ("cloud", spec.cloud.deployment, cloud_now, plan.cloud),
        ]
        ups = [p for p in pools if p[3].replicas > p[2]]
        downs = [p for p in reversed(pools) if p[3].replicas < p[2]]
        scaled = False
        failed: Exception | None = None
        running = {"physical": physical_now, "cloud": cloud_now}
        reserving = read.placeholder_conflict is None and (
            spec.cloud.reserve or read.placeholder is not None
        )
        wanted = plan.placeholders if spec.cloud.reserve else 0
        marks = self._removals(
            namespace,
            read,
            pods,
            cloud=plan.cloud.replicas if plan.cloud.replicas < cloud_now else None,
            placeholders=wanted if reserving and wanted < placeholders_now else None,
        )
        for pool, deployment, current, decision in (*ups, *downs):
            if failed is not None and decision.replicas < current:
                continue
            if pool == "cloud" and decision.replicas < current:
                self._mark(namespace, read.cloud, marks[0])
            try:
                self.kube.scale_deployment(namespace, deployment, decision.replicas)
            except Exception as exc:
                failed = failed or exc
                continue
            scaled = True
            running[pool] = decision.replicas
            log.info(
                "scaled",
                object=key,
                pool=pool,
                deployment=deployment,
                replicas_from=current,
                replicas_to=decision.replicas,
                reason=decision.reason.value,
            )
            self._event(
                obj,
                memory,
                reason=decision.reason.value,
                message=(
                    f"scaled {pool} deployment {deployment} from {current} to "
                    f"{decision.replicas}: {decision.message}"
                ),
            )
        after = (running["physical"], running["cloud"])
        if not reserving:
            return scaled, failed, after
        if failed is not None and wanted < placeholders_now:
            return scaled, failed, after
        desired = placeholder_deployment(
            obj, read.cloud, wanted, image=self.settings.placeholder_image
        )
        if read.placeholder is not None and wanted < placeholders_now:
            self._mark(namespace, read.placeholder, marks[1])
        try:
            wrote = self.kube.apply_placeholder(desired, read.placeholder)
        except Exception as exc:
            return scaled, failed or exc, after
        if wrote and wanted != placeholders_now:
            log.info(
                "reserved",
                object=key,
                placeholders_from=placeholders_now,
                placeholders_to=wanted,
                reserved_replicas=plan.reserve.replicas,
                reason=plan.reserve.reason.value,
            )
            self._event(
                obj,
                memory,
                reason=plan.reserve.reason.value,
                message=(
                    f"placeholder pods {placeholders_now} -> {wanted} "
                    f"(cloud reserved {plan.reserve.replicas}): {plan.reserve.message}"
                ),
            )
        return scaled, failed, after

    @staticmethod
    def _removals(
        namespace: str,
        read: _Read,
        pods: Iterable[Mapping[str, Any]],
        *,
        cloud: int | None,
        placeholders: int | None,
    ) -> tuple[Marks | None, Marks | None]:
        """The marks that make the cloud gateways and the placeholders, each shrunk to the count
        given (None: not shrinking), go from the same emptiest cloud nodes; None for a
        Deployment that does not shrink, or for both when they cannot be worked out."""
        if cloud is None and placeholders is None:
            return None, None

        def selector(obj: Mapping[str, Any] | None) -> Mapping[str, Any]:
            return ((obj or {}).get("spec") or {}).get("selector") or {}

        try:
            gateways, reserved = marks_for_scale_downs(
                pods,
                namespace=namespace,
                shrinking=[
                    (selector(read.cloud), cloud),
                    (selector(read.placeholder), placeholders),
                ],
            )
        except Exception as exc:
            log.warning(
                "pods not marked for removal: the scale-down goes ahead, but the cloud nodes "
                "it leaves may not be empty",
                namespace=namespace,
                deployment=(read.cloud.get("metadata") or {}).get("name"),
                error=f"{type(exc).__name__}: {exc}",
            )
            return None, None
        return (
            gateways if cloud is not None else None,
            reserved if placeholders is not None else None,
        )

    def _mark(self, namespace: str, deployment: Mapping[str, Any], marks: Marks | None) -> None:
        """Patch the deletion costs ``marks`` gives the Deployment's pods, before it shrinks."""
        if marks is None:
            return
        try:
            for name in marks.unmark:
                self.kube.set_deletion_cost(namespace, name, None)
            for name in marks.mark:
                self.kube.set_deletion_cost(namespace, name, LOWEST_COST)
        except Exception as exc:
            log.warning(
                "pods not marked for removal: the scale-down goes ahead, but the cloud nodes "
                "it leaves may not be empty",
                namespace=namespace,
                deployment=(deployment.get("metadata") or {}).get("name"),
                error=f"{type(exc).__name__}: {exc}",
            )

    # --- status and metrics --------------------------------------------------------------

    def _status(
        self,
        spec: GatewayAutoscalerSpec,
        plan: Plan,
        *,
        meta: Mapping[str, Any],
        previous: Mapping[str, Any],
        fit: FitState,
        forecast: Forecast | None,
        forecast_reason: str,
        metrics_problem: str | None,
        metrics_failure: str,
        scaled: bool,
        write_failure: Exception | None = None,
        running: tuple[int, int] | None = None,
        placeholder_conflict: PlaceholderConflict | None = None,
    ) -> dict[str, Any]:
        """The status of one pass: the plan's numbers (as the CRD describes them). After a failed
        write, ``Ready=False`` names it and says what each Deployment asks for (``running``)."""
        now = plan.now
        generation = meta.get("generation")
        physical, cloud = running or (plan.physical.replicas, plan.cloud.replicas)
        held = (
            f"physical {plan.physical.replicas}/{plan.physical_capacity}, "
            f"cloud {plan.cloud.replicas}, reserved {plan.reserve.replicas}"
        )
        if write_failure is not None:
            reason, text = _failure(write_failure)
            ready = Condition(
                "Ready",
                False,
                reason,
                f"{text}; planned {held}, the Deployments ask for physical {physical}, "
                f"cloud {cloud}",
            )
        elif metrics_problem is not None:
            ready = Condition(
                "Ready",
                False,
                metrics_failure,
                f"{metrics_problem}; holding {plan.total.replicas} replicas, no scale-down",
            )
        elif plan.load_problem is not None:
            ready = Condition(
                "Ready",
                False,
                "LoadMissing",
                f"spec.load.query: {plan.load_problem}; "
                + (
                    f"holding {plan.total.replicas} replicas, no scale-down"
                    if plan.mode is Mode.SCALE
                    else f"the plan holds {plan.total.replicas} replicas"
                )
                + ("; the load shown is the last one read" if "load" in previous else ""),
            )
        elif placeholder_conflict is not None and plan.mode is Mode.SCALE:
            ready = Condition(
                "Ready",
                False,
                placeholder_conflict.reason,
                f"{placeholder_conflict}; the gateways are still scaled: {held}",
            )
        elif plan.mode is Mode.SCALE:
            ready = Condition("Ready", True, "Reconciled", held)
        elif plan.mode is Mode.PAUSED:
            ready = Condition(
                "Ready",
                True,
                plan.mode.value,
                "Paused: no metric is read, no model fitted and nothing changed until spec.mode "
                "is changed; "
                f"running physical {plan.physical.replicas}, cloud {plan.cloud.replicas}",
            )
        else:
            ready = Condition("Ready", True, plan.mode.value, f"{plan.mode.value}: planned {held}")
        if forecast is not None:
            fitted = fit.fitted
            error = fit_error(fitted) if fitted is not None else None
            text = f"{forecast.model} forecasting to {rfc3339(forecast.end)}"
            if error is not None:
                text += f", backtest error {error:.3f}"
            forecast_ready = Condition("ForecastReady", True, "Forecasting", text)
        elif plan.mode is Mode.PAUSED:
            forecast_ready = Condition(
                "ForecastReady", False, Mode.PAUSED.value, "no forecast while paused"
            )
        else:
            forecast_ready = Condition(
                "ForecastReady",
                False,
                forecast_reason,
                plan.forecast_problem or "no forecast",
            )
        bursting = (
            Condition("Bursting", True, plan.cloud.reason.value, plan.cloud.message)
            if plan.bursting
            else Condition(
                "Bursting",
                False,
                "PhysicalSufficient",
                f"physical capacity {plan.physical_capacity} holds the plan",
            )
        )
        limited = (
            Condition(
                "CapacityLimited",
                True,
                (plan.capacity_limit or Reason.CLOUD_CAPACITY_EXHAUSTED).value,
                plan.capacity_limited,
            )
            if plan.capacity_limited
            else Condition("CapacityLimited", False, "Paused", "no plan while paused")
            if plan.mode is Mode.PAUSED
            else Condition("CapacityLimited", False, "WithinCapacity", "the plan fits the pools")
        )
        conditions = [ready, forecast_ready, bursting, limited]
        forecast_status: dict[str, Any] | None = None
        if forecast is not None:
            fitted = fit.fitted
            error = fit_error(fitted) if fitted is not None else None
            forecast_status = {
                "peak": None if plan.forecast_peak is None else round(plan.forecast_peak, 3),
                "peakAt": None if plan.forecast_peak_at is None else rfc3339(plan.forecast_peak_at),
                "model": forecast.model,
                "quantile": spec.forecast.quantile,
                "fittedAt": None if fit.fitted_at is None else rfc3339(fit.fitted_at),
                "error": None if error is None else round(error, 4),
            }
        status: dict[str, Any] = {
            "observedGeneration": generation,
            "load": None if plan.load is None else plan.load,
            "forecast": forecast_status,
            "desiredReplicas": plan.physical.replicas + plan.cloud.replicas,
            "physical": {"replicas": plan.physical.replicas, "capacity": plan.physical_capacity},
            "cloud": {"replicas": plan.cloud.replicas, "reserved": plan.reserve.replicas},
            "conditions": merge_conditions(
                previous.get("conditions"), conditions, now=now, generation=generation
            ),
            "recommendations": recommendations_to_status(
                plan.recommendations,
                window=spec.behavior.scale_down.stabilization.total_seconds(),
                now=now,
            ),
        }
        if scaled:
            status["lastScaleTime"] = rfc3339(now)
        if status["load"] is None:
            # Keep the last known load visible rather than erasing it during an outage.
            status.pop("load")
        return status

    def _observe(
        self,
        name: str,
        namespace: str,
        spec: GatewayAutoscalerSpec,
        plan: Plan,
        forecast: Forecast | None,
        *,
        actual: tuple[int, int],
        ready: tuple[int | None, int | None],
    ) -> None:
        """Export the plan. ``actual``: the replicas each pool's Deployment now asks for;
        ``ready``: those ready when the pass read them (None: not reported yet)."""
        labels = (name, namespace, spec.region)
        m = self.metrics
        if plan.load is not None:
            m.load.labels(*labels).set(plan.load)
        else:
            # No fresh sample: the gauge goes, so that a dashboard does not draw the last one
            # as the current load (the status keeps it, with Ready=False saying it is old).
            with contextlib.suppress(KeyError):
                m.load.remove(*labels)
        if forecast is not None:
            end = plan.now + spec.forecast.horizon.total_seconds()
            m.forecast_peak.labels(*labels).set(forecast.max_between(plan.now, end))
        else:
            with contextlib.suppress(KeyError):
                m.forecast_peak.remove(*labels)  # an old forecast is not drawn as today's
        if plan.forecast_peak is not None:
            m.forecast_upper.labels(*labels).set(plan.forecast_peak)
        else:
            with contextlib.suppress(KeyError):
                m.forecast_upper.remove(*labels)
        m.forecast_ready.labels(*labels).set(0 if plan.forecast_problem is not None else 1)
        m.planned.labels(*labels, "physical").set(plan.physical.replicas)
        m.planned.labels(*labels, "cloud").set(plan.cloud.replicas)
        m.actual.labels(*labels, "physical").set(actual[0])
        m.actual.labels(*labels, "cloud").set(actual[1])
        for pool, count in zip(("physical", "cloud"), ready, strict=True):
            if count is None:
                with contextlib.suppress(KeyError):
                    m.ready.remove(*labels, pool)
            else:
                m.ready.labels(*labels, pool).set(count)
        m.set_reasons(
            *labels,
            {
                "total": plan.total.reason.value,
                "physical": plan.physical.reason.value,
                "cloud": plan.cloud.reason.value,
                "reserve": plan.reserve.reason.value,
            },
        )
        m.reserved.labels(*labels).set(plan.reserve.replicas)
        m.physical_capacity.labels(*labels).set(plan.physical_capacity)
        m.capacity_limited.labels(*labels).set(1 if plan.capacity_limited else 0)
