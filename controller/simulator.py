"""Replays a load trace minute by minute through a simulated two-tier cluster.

Each policy (``tidal``, ``hpa``, ``oracle``) runs on its own copy of the same cluster model:

- a physical pool of fixed capacity; a physical pod is ready ``pod_ready`` after it is created;
- a cloud pool of nodes holding ``replicas_per_node`` replicas each. A node is paid for from the
  minute it is requested and is ready ``node_lead_time`` later. A cloud pod (or placeholder)
  that finds no free slot is pending; pending pods make the cluster autoscaler request nodes, as
  Cluster Autoscaler does. A real pod preempts a placeholder at once (placeholders have the
  lowest priority). A node is given back once it has been unneeded for ``node_unneeded_time``
  (Cluster Autoscaler's ``scale-down-unneeded-time``, 10 minutes by default), counted from
  when it is ready at the earliest: a node still booting is no candidate. How a node becomes
  unneeded is ``cloud_scoring``'s:

  - ``"Packed"`` (the default, the headline's): a node is unneeded once the pods and
    placeholders fit on one node fewer, as if every node's worth of pods removed emptied a
    node and nobody were ever evicted: an idealisation of a pool that packs its pods;
  - ``"MostAllocated"`` and ``"LeastAllocated"``: Cluster Autoscaler's own rule, with each
    node's pods counted. A new pod goes to the most allocated ready node with room (kube-
    scheduler's ``MostAllocated`` scoring) or the least allocated (``LeastAllocated``,
    Kubernetes' default); a ReplicaSet removes pods from the node that holds the most first;
    and a ready node is unneeded while its pods and placeholders take under
    ``scale_down_utilization_threshold`` of it and fit on the other ready nodes. Cluster
    Autoscaler evicts the pods of a node it takes: they start again on the others, and each
    gateway evicted disconnects its users. Tidal's operator marks the cloud gateways on the
    nodes that hold the fewest to go first (``pod-deletion-cost``), so its removals empty
    nodes: its cluster, and the oracle's, take them from the node that holds the fewest;
- the controller sees the load ``metric_delay`` late and acts every minute.

A minute's load is served by what is ready through that minute: the replicas ready at its
tick, less those removed at that tick (a deleted gateway serves nobody; its users reconnect
elsewhere). Replicas asked for at the tick are ready ``pod_ready`` later, at a later tick.

The ``tidal`` policy calls :func:`controller.planner.plan_region`, the same function the live
operator calls: the simulator holds no decision logic of its own.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from controller.planner import (
    Plan,
    PlannerSettings,
    Recommendation,
    RegionState,
    bucket_centres,
    forecast_reach,
    forecaster_for,
    path_max,
    plan_region,
    ready_replicas,
    target_per_replica,
)
from controller.spec import GatewayAutoscalerSpec
from forecasts.base import FittedModel, Forecast
from forecasts.errors import ForecastError
from forecasts.series import LoadSeries

__all__ = [
    "CLOUD_SCORINGS",
    "MINUTE",
    "ClusterModel",
    "HpaPolicy",
    "OraclePolicy",
    "PolicyResult",
    "PolicyView",
    "PredictiveHpaPolicy",
    "Scenario",
    "Targets",
    "TidalPolicy",
    "first_scored",
    "minutes_of",
    "oracle_need",
    "simulate",
]

MINUTE = 60.0
FloatArray = npt.NDArray[np.float64]


def minutes_of(seconds: float, *, least: int = 0) -> int:
    """A lag in whole simulated minutes, rounded up, at least ``least``."""
    return max(least, math.ceil(seconds / MINUTE - 1e-9))


def first_scored(load: LoadSeries, score_from: float) -> int:
    """The index of the first scored minute: ``score_from``'s, and never the very first sample
    (a policy needs one sample of history to look at)."""
    return max(1, load.index_of(score_from))


@dataclass(frozen=True)
class Scenario:
    """The simulated cluster and its lags (DESIGN.md's default scenario)."""

    physical_capacity: int = 60
    metric_delay: float = 60.0
    pod_ready: float = 60.0
    node_lead_time: float = 300.0
    replicas_per_node: int = 10
    loop_interval: float = 60.0
    node_unneeded_time: float = 600.0
    peak_replicas: int = 100
    #: The load one replica serves, in the trace's own unit (``spec.load.perReplica``): given,
    #: a trace is replayed at its real size (its load over this is the replicas it needs) and
    #: ``peak_replicas`` does not count. None: the trace is scaled to ``peak_replicas``.
    per_replica: float | None = None
    #: The HPA's ``minReplicas``: 1, its documented default. Set to the physical capacity, it
    #: keeps the physical pool warm as tidal's ``physical.keepWarm`` does.
    hpa_min_replicas: int = 1
    #: Gateways one physical machine holds, for the order the HPA's ReplicaSet removes pods
    #: in. None: as many as a cloud node, where the newest pods (the cloud's, after a spike)
    #: go first. More: the physical machines are more crowded, and the ReplicaSet removes pods
    #: from the most crowded nodes first (``ActivePodsWithRanks``), physical ones before cloud.
    physical_per_machine: int | None = None
    #: How cloud nodes fill and empty (the module's docstring): ``Packed``, the idealisation
    #: where a node goes once everything fits on one fewer; ``MostAllocated`` or
    #: ``LeastAllocated``, kube-scheduler's scoring with each node's pods counted and Cluster
    #: Autoscaler's utilization rule.
    cloud_scoring: str = "Packed"
    #: Cluster Autoscaler's ``--scale-down-utilization-threshold``: with pods counted per node,
    #: a node whose pods and placeholders take less than this share of it is a candidate.
    scale_down_utilization_threshold: float = 0.5


#: ``Packed``, then the scoring strategies of kube-scheduler's ``NodeResourcesFit`` modelled.
CLOUD_SCORINGS = ("Packed", "MostAllocated", "LeastAllocated")


@dataclass(frozen=True)
class Targets:
    """What a policy asks of the cluster this minute."""

    physical: int
    cloud: int
    placeholders: int = 0


@dataclass
class PolicyResult:
    """Per-minute series of one policy's run, and its totals."""

    name: str
    ready_physical: FloatArray
    ready_cloud: FloatArray
    cloud_nodes: FloatArray
    placeholders: FloatArray
    replicas_removed: int = 0
    refits: int = 0
    fit_seconds: float = 0.0
    reasons: dict[str, int] = field(default_factory=dict)
    #: tidal and predictive: minutes planned without a usable forecast, and the first reason.
    unforecast_minutes: int = 0
    forecast_problem: str | None = None
    #: tidal only: the forecast's point and upper quantile one pod start ahead, each minute.
    forecast_point: FloatArray | None = None
    forecast_upper: FloatArray | None = None


class ClusterModel:
    """One policy's simulated cluster. Times are whole minutes from the start of the run."""

    def __init__(self, scenario: Scenario, *, empties_nodes: bool = False) -> None:
        self.s = scenario
        #: Pods counted per node only: the policy's cloud pods leave the nodes that hold the fewest
        #: first, as tidal's operator has them do with ``pod-deletion-cost``
        #: (:mod:`controller.operator.drain`); else the fullest, the ReplicaSet's own order.
        self.empties_nodes = empties_nodes
        # Whatever is asked for at one tick is ready at the next tick at the earliest.
        self.pod_lag = minutes_of(scenario.pod_ready, least=1)
        self.node_lag = minutes_of(scenario.node_lead_time, least=1)
        self.unneeded = minutes_of(scenario.node_unneeded_time, least=1)
        # The minute each physical pod becomes ready. Pods are added with non-decreasing ready
        # times and removed newest first, so the list stays sorted.
        self.physical: list[int] = []
        # Scheduled cloud pods' ready minutes (sorted, as above), and pods pending for a slot.
        self.cloud: list[int] = []
        self.cloud_pending = 0
        self.placeholders = 0
        # The minute each cloud node becomes ready (sorted).
        self.nodes: list[int] = []
        # Unneeded at every look over the last ``unneeded`` minutes, both ends included.
        self.needed_nodes: deque[int] = deque(maxlen=self.unneeded + 1)
        self.removed = 0
        # Pods counted per node only: for each node (in the order of ``nodes``), the gateway
        # pods and the placeholders scheduled on it, and the minute since which it has been
        # unneeded. New pods go to the fullest node with room, or with ``spread`` the emptiest.
        self.counted = scenario.cloud_scoring != "Packed"
        self.spread = scenario.cloud_scoring == "LeastAllocated"
        self.node_pods: list[int] = []
        self.node_held: list[int] = []
        self.unneeded_since: list[int | None] = []

    # -- state seen by policies ----------------------------------------------------------
    def physical_replicas(self) -> int:
        return len(self.physical)

    def cloud_replicas(self) -> int:
        return len(self.cloud) + self.cloud_pending

    def ready(self, minute: int) -> tuple[int, int]:
        phys = bisect_right(self.physical, minute)
        return min(phys, self.s.physical_capacity), bisect_right(self.cloud, minute)

    def warm_start(self, physical: int, cloud: int, placeholders: int) -> None:
        """Start with everything ready: every policy starts from the same settled state."""
        self.physical = [-(10**6)] * min(physical, self.s.physical_capacity)
        self.cloud = [-(10**6)] * cloud
        self.cloud_pending = 0
        self.placeholders = placeholders
        self.nodes = [-(10**6)] * math.ceil((cloud + placeholders) / self.s.replicas_per_node)
        self.needed_nodes.clear()
        if self.counted:
            count = len(self.nodes)
            self.node_pods = [0] * count
            self.node_held = [0] * count
            self.unneeded_since = [None] * count
            self._place(self.node_pods, cloud, count)
            self._place(self.node_held, placeholders, count)

    # -- acting ------------------------------------------------------------------------
    def apply(self, minute: int, targets: Targets) -> None:
        phys_target = min(max(0, targets.physical), self.s.physical_capacity)
        if phys_target < len(self.physical):
            # Newest (and not-yet-ready) pods go first, as a ReplicaSet scales down. Only ready
            # ones count as removed: a pod still starting has nobody to disconnect.
            self.removed += bisect_right(self.physical, minute, lo=phys_target) - phys_target
            del self.physical[phys_target:]
        else:
            self.physical.extend([minute + self.pod_lag] * (phys_target - len(self.physical)))
        cloud_target = max(0, targets.cloud)
        current = self.cloud_replicas()
        if cloud_target < current:
            # Pending pods go first (nobody is connected to them), then the newest.
            drop = current - cloud_target
            drop_pending = min(drop, self.cloud_pending)
            self.cloud_pending -= drop_pending
            drop -= drop_pending
            if drop:
                keep = len(self.cloud) - drop
                self.removed += bisect_right(self.cloud, minute, lo=keep) - keep
                del self.cloud[keep:]
        else:
            self.cloud_pending += cloud_target - current
        self.placeholders = max(0, targets.placeholders)
        self._schedule_and_autoscale(minute)

    def _schedule_and_autoscale(self, minute: int) -> None:
        if self.counted:
            self._counted_schedule_and_autoscale(minute)
            return
        per_node = self.s.replicas_per_node
        slots = bisect_right(self.nodes, minute) * per_node
        # A real pod takes a free slot, or preempts a placeholder's (placeholders rank lowest).
        start = min(self.cloud_pending, max(0, slots - len(self.cloud)))
        if start:
            self.cloud.extend([minute + self.pod_lag] * start)
            self.cloud_pending -= start
        # Pods and placeholders that find no slot are pending: the autoscaler adds nodes for them.
        needed = math.ceil((self.cloud_replicas() + self.placeholders) / per_node)
        if needed > len(self.nodes):
            self.nodes.extend([minute + self.node_lag] * (needed - len(self.nodes)))
        # Give back nodes unneeded for ``node_unneeded_time`` (the latest-booting first).
        # Cluster Autoscaler takes a node as a candidate only once it is registered and ready,
        # so a node's clock starts when it is ready at the earliest: one still booting, or
        # ready for less than that time, stays.
        self.needed_nodes.append(needed)
        keep = max(self.needed_nodes)
        settled = bisect_right(self.nodes, minute - self.unneeded)
        if len(self.needed_nodes) == self.needed_nodes.maxlen and keep < settled:
            del self.nodes[keep:settled]
            slots = bisect_right(self.nodes, minute) * per_node
            if len(self.cloud) > slots:
                evicted = len(self.cloud) - slots
                del self.cloud[slots:]
                self.cloud_pending += evicted

    # -- pods counted per node (MostAllocated, LeastAllocated) --------------------------------
    def _place(self, counts: list[int], number: int, ready: int) -> int:
        """Put ``number`` pods (or placeholders) on the most allocated of the first ``ready``
        nodes with room, or with ``spread`` the least allocated, the first among equals, one at
        a time; returns how many found no room."""
        per_node = self.s.replicas_per_node
        for placed in range(number):
            best, best_used = -1, per_node if self.spread else -1
            for i in range(ready):
                used = self.node_pods[i] + self.node_held[i]
                if used < per_node and (used < best_used if self.spread else used > best_used):
                    best, best_used = i, used
            if best < 0:
                return number - placed
            counts[best] += 1
        return 0

    @staticmethod
    def _take(counts: list[int], number: int, *, emptiest: bool = False) -> None:
        """Take ``number`` away, one at a time, from the nodes that hold the most, or with
        ``emptiest`` from those that hold the fewest (the first among equals)."""
        for _ in range(number):
            if emptiest:
                counts[min((c, i) for i, c in enumerate(counts) if c > 0)[1]] -= 1
            else:
                counts[counts.index(max(counts))] -= 1

    def _counted_schedule_and_autoscale(self, minute: int) -> None:
        per_node = self.s.replicas_per_node
        ready = bisect_right(self.nodes, minute)
        # Pods the policy removed leave the nodes that hold the most of them (the ReplicaSet
        # ranks pods on crowded nodes first), or the fewest where the policy marks them so;
        # placeholders above their new count leave the most crowded.
        self._take(
            self.node_pods, sum(self.node_pods) - len(self.cloud), emptiest=self.empties_nodes
        )
        self._take(self.node_held, max(0, sum(self.node_held) - self.placeholders))
        # A pending pod goes where the scoring puts it (the fullest node with a free slot, or
        # the emptiest), or else preempts a placeholder where they are most.
        start = min(self.cloud_pending, max(0, ready * per_node - len(self.cloud)))
        if start:
            self.cloud.extend([minute + self.pod_lag] * start)
            self.cloud_pending -= start
            for _ in range(self._place(self.node_pods, start, ready)):
                most = self.node_held.index(max(self.node_held))
                self.node_held[most] -= 1
                self.node_pods[most] += 1
        # Placeholders fill what room is left; those that find none are pending.
        self._place(self.node_held, self.placeholders - sum(self.node_held), ready)
        needed = math.ceil((self.cloud_replicas() + self.placeholders) / per_node)
        if needed > len(self.nodes):
            added = needed - len(self.nodes)
            self.nodes.extend([minute + self.node_lag] * added)
            self.node_pods.extend([0] * added)
            self.node_held.extend([0] * added)
            self.unneeded_since.extend([None] * added)
        self._give_back_underused(minute, ready)

    def _give_back_underused(self, minute: int, ready: int) -> None:
        """Cluster Autoscaler's scale-down, pods counted per node: a ready node is unneeded
        while its pods and placeholders take under ``scale_down_utilization_threshold`` of it
        and fit on the other ready nodes. One unneeded for ``node_unneeded_time`` is drained
        (its pods evicted and started again on the others) and given back, the emptiest first,
        one at a time."""
        per_node = self.s.replicas_per_node
        threshold = self.s.scale_down_utilization_threshold * per_node
        while True:
            used_total = sum(self.node_pods[:ready]) + sum(self.node_held[:ready])
            fits = used_total <= (ready - 1) * per_node
            for i in range(ready):
                used = self.node_pods[i] + self.node_held[i]
                if used < threshold and fits:
                    if self.unneeded_since[i] is None:
                        self.unneeded_since[i] = minute
                else:
                    self.unneeded_since[i] = None
            due = [
                i
                for i in range(ready)
                if (since := self.unneeded_since[i]) is not None and minute - since >= self.unneeded
            ]
            if not due:
                return
            # The emptiest first; among equals, the one that became ready last.
            node = min(due, key=lambda i: (self.node_pods[i] + self.node_held[i], -i))
            pods, held = self.node_pods[node], self.node_held[node]
            for series in (self.nodes, self.node_pods, self.node_held, self.unneeded_since):
                del series[node]
            ready -= 1
            if pods:
                # Evicted gateways drop their users and start again elsewhere: the oldest go, as
                # a node's pods are those that have run longest.
                self.removed += bisect_right(self.cloud, minute, hi=pods)
                del self.cloud[:pods]
                self.cloud.extend([minute + self.pod_lag] * pods)
                self._place(self.node_pods, pods, ready)
            self._place(self.node_held, held, ready)


Policy = Callable[[int, "PolicyView"], Targets]


@dataclass(frozen=True)
class PolicyView:
    """What a policy may look at: delayed history, the cluster's current counts."""

    now: float
    history: LoadSeries
    physical_replicas: int
    cloud_replicas: int
    physical_capacity: int
    reserved: int
    #: Replicas ready now in each pool.
    physical_ready: int | None = None
    cloud_ready: int | None = None


def simulated_settings(scenario: Scenario) -> PlannerSettings:
    """The planner's settings in ``scenario``, for the policies that forecast."""
    # A sample is as old as the metric delay when the planner reads it: that is not stale.
    delayed = minutes_of(scenario.metric_delay) * MINUTE
    return PlannerSettings(
        loop_interval=scenario.loop_interval,
        pod_ready=scenario.pod_ready,
        node_hold=scenario.node_unneeded_time,
        stale_after=max(PlannerSettings.stale_after, delayed + scenario.loop_interval),
    )


class _Refitting:
    """A forecaster refitted every ``spec.forecast.refit`` of simulated time, its forecast
    reused until the next bucket of its fit step completes, as the operator does. For the
    policies that forecast: ``tidal`` and ``predictive``."""

    spec: GatewayAutoscalerSpec

    def _start_refitting(
        self, spec: GatewayAutoscalerSpec, settings: PlannerSettings, reach: float
    ) -> None:
        self.forecaster = forecaster_for(spec, settings)
        self.fitted: FittedModel | None = None
        self.fitted_at = -math.inf
        self.problem: str | None = None
        self.refits = 0
        self.fit_seconds = 0.0
        #: Minutes acted on without a usable forecast, and the first reason, for warnings.
        self.unforecast = 0
        self.first_problem: str | None = None
        self._forecast_key: tuple[FittedModel, int] | None = None
        self._forecast: Forecast | None = None
        #: The reused forecast's times and upper quantile path, read every minute it is reused.
        self._forecast_paths: tuple[FloatArray, FloatArray] | None = None
        # As far as ``reach``, plus one fit step: a forecast is reused until the next bucket
        # completes.
        self.reach = reach + max(300.0, spec.load.step.total_seconds())

    def _current_forecast(self, history: LoadSeries, now: float) -> Forecast | None:
        """The forecast to act on at ``now``: refitted if a refit is due, recomputed if a
        bucket completed since the last one, else the last one; None without a usable fit
        (``problem`` says why)."""
        spec = self.spec
        if now - self.fitted_at >= spec.forecast.refit.total_seconds():
            try:
                self.fitted = self.forecaster.fit(history, previous=self.fitted)
                self.problem = None
            except ForecastError as exc:
                self.fitted, self.problem = None, str(exc)
            self.fitted_at = now
            self.refits += 1
            if self.fitted is not None:
                self.fit_seconds += self.fitted.fit_seconds
        if self.fitted is None:
            return None
        # A forecast changes only when a bucket of the fit step completes, with its last
        # sample (the one before the next bucket's first): reuse it till then.
        completed = math.floor((history.end + history.step) / self.fitted.step + 1e-9)
        # The fit itself, not its id(): a failed refit frees the old fit, and a later one may
        # be given its id.
        last = self._forecast_key
        if last is not None and last[0] is self.fitted and last[1] == completed:
            return self._forecast
        forecast: Forecast | None = None
        try:
            forecast = self.fitted.forecast(history, horizon=self.reach)
        except ForecastError as exc:
            self.problem = str(exc)
        self._forecast_key, self._forecast = (self.fitted, completed), forecast
        self._forecast_paths = (
            None if forecast is None else (forecast.times(), forecast.upper(spec.forecast.quantile))
        )
        return forecast


class HpaPolicy:
    """The Kubernetes HPA algorithm with its documented defaults, on the same metric.

    Source: kubernetes/kubernetes pkg/controller/podautoscaler (replica_calculator.go and
    horizontal.go) and the HPA docs: tolerance 0.1; scale-down stabilisation 300 s; default
    scale-up policies 100% or 4 pods per 15 s, whichever is more (four 15-second syncs per
    simulated minute, each checking the tolerance against the count the one before set);
    scale-down 100% per 15 s. A sync without a metric changes and records nothing. Its pods
    fill the physical pool first and overflow to cloud, where nodes are requested only once
    pods are pending. On the way down its ReplicaSet removes the cloud's pods first (the
    newest), or, with ``physical_per_machine`` above a cloud node's replicas, the physical
    pool's until its machines are no more crowded than a cloud node. It targets the
    per-replica load the planner provisions for, headroom included.
    """

    name = "hpa"

    def __init__(
        self,
        spec: GatewayAutoscalerSpec,
        *,
        tolerance: float = 0.1,
        stabilization: float = 300.0,
        physical_per_machine: int | None = None,
        replicas_per_node: int = 10,
    ) -> None:
        self.spec = spec
        self.tolerance = tolerance
        self.physical_per_machine = physical_per_machine
        self.replicas_per_node = replicas_per_node
        # The minutes whose recommendations are still in the window at a minute's tick, this
        # minute's included. The HPA syncs every 15 s, at 0, 15, 30 and 45 s past the minute,
        # and keeps the recommendations younger than ``stabilization`` (horizontal.go drops
        # those at or before its cutoff). Minute k's last one, at k:45, is in the window at
        # tick m while (m - k) * 60 - 45 < stabilization: 300 s keeps six minutes, 0 s one.
        self.window = max(1, math.ceil((stabilization + 45.0) / MINUTE))
        #: (minute, recommendation): a sync without a metric records none.
        self.recent: deque[tuple[int, int]] = deque()
        self.target = target_per_replica(spec)

    def _recommend(self, load: float, current: int) -> int:
        """One sync's recommendation: the replicas the load needs at target, unless the
        current count is within the tolerance of it (replica_calculator.go compares the usage
        ratio against the current replicas, pending pods included)."""
        ratio = load / (self.target * current)
        desired = (
            current if abs(ratio - 1.0) <= self.tolerance else math.ceil(load / self.target - 1e-9)
        )
        return min(max(desired, self.spec.replicas.min), self.spec.replicas.max)

    def _metric(self, view: PolicyView) -> float:
        """The metric a sync reads: the latest load sample (NaN when there is none)."""
        return float(view.history.values[-1]) if len(view.history) else math.nan

    def __call__(self, minute: int, view: PolicyView) -> Targets:
        current = view.physical_replicas + view.cloud_replicas
        load = self._metric(view)
        if not math.isfinite(load) or current == 0:
            # No metric, or no replicas to scale: the sync ends before a recommendation is
            # computed or recorded (horizontal.go). The replicas stay as they are, raised to
            # replicas.min if they are fewer.
            return self._split(max(current, self.spec.replicas.min), view)
        desired = self._recommend(load, current)
        while self.recent and minute - self.recent[0][0] >= self.window:
            self.recent.popleft()
        self.recent.append((minute, desired))
        if desired < current:
            return self._split(min(current, max(r for _, r in self.recent)), view)
        # Scaling up: each of the minute's four syncs may double the replicas or add 4,
        # whichever is more, and recomputes its recommendation against the count the sync
        # before it set: once that count is within the tolerance, it stays.
        reached = current
        for _ in range(4):
            if desired <= reached:
                break
            reached = min(desired, max(2 * reached, reached + 4))
            desired = self._recommend(load, reached)
        return self._split(reached, view)

    def _split(self, replicas: int, view: PolicyView) -> Targets:
        """Physical first, the overflow to cloud. On the way down, the cloud's pods go first,
        unless the physical machines are the more crowded (``physical_per_machine``)."""
        capacity = view.physical_capacity
        per_machine = self.physical_per_machine
        if per_machine is None or per_machine <= self.replicas_per_node:
            physical = min(replicas, capacity)
            return Targets(physical=physical, cloud=replicas - physical)
        physical, cloud = view.physical_replicas, view.cloud_replicas
        current = physical + cloud
        if replicas >= current:
            # A new pod prefers the physical pool while it has room.
            added = min(replicas - current, max(0, capacity - physical))
            return Targets(physical=physical + added, cloud=cloud + replicas - current - added)
        # The ReplicaSet's ranking (kubernetes pkg/controller/controller_utils.go): pods that
        # are not ready first, the cloud's pending and starting ones before the physical pool's
        # starting ones; then the ready pods on the most crowded nodes. The physical pool's
        # pods, spread over its machines, outrank a full cloud node's until a machine holds no
        # more of them than a cloud node does.
        drop = current - replicas
        starting_cloud = cloud - ready_replicas(view.cloud_ready, cloud)
        starting_physical = physical - ready_replicas(view.physical_ready, physical)
        take = min(drop, starting_cloud)
        cloud, drop = cloud - take, drop - take
        take = min(drop, starting_physical)
        physical, drop = physical - take, drop - take
        machines = math.ceil(capacity / per_machine)
        take = min(drop, max(0, physical - machines * self.replicas_per_node))
        physical, drop = physical - take, drop - take
        take = min(drop, cloud)
        cloud, drop = cloud - take, drop - take
        return Targets(physical=physical - drop, cloud=cloud)


class PredictiveHpaPolicy(_Refitting, HpaPolicy):
    """A predictive autoscaler that knows nothing of the capacity tiers, after Crane's
    Effective HPA and Alibaba's AHPA: the HPA above, with a second metric, the highest upper
    quantile (``spec.forecast.quantile``) the same forecaster as tidal's expects over the next
    ``node_lead_time + pod_ready + loop_interval`` (as far as tidal looks for a node requested
    now), so that pods asked for on a forecast rise have their nodes and are ready in time.
    The HPA takes the larger of its metrics' recommendations. Its pods fill the physical pool
    first, as the HPA's do; a cloud node is requested only once pods are pending (no
    placeholders), and nothing prices a cloud replica above a physical one. Without a usable
    forecast, or without a load sample, it is the HPA.

    Not in the default policies: ``--policies tidal,hpa,oracle,predictive`` adds it.
    """

    name = "predictive"

    def __init__(
        self,
        spec: GatewayAutoscalerSpec,
        scenario: Scenario,
        *,
        physical_per_machine: int | None = None,
        replicas_per_node: int = 10,
    ) -> None:
        super().__init__(
            spec, physical_per_machine=physical_per_machine, replicas_per_node=replicas_per_node
        )
        self.settings = simulated_settings(scenario)
        #: How far ahead the forecast metric looks, in seconds: as far as tidal's planner looks
        #: for a node requested now (a node's boot, a pod's start and a loop).
        self.ahead = scenario.node_lead_time + scenario.pod_ready + scenario.loop_interval
        # The forecast starts at the newest sample the metric delay lets it see.
        self._start_refitting(spec, self.settings, self.ahead + scenario.metric_delay)

    def _metric(self, view: PolicyView) -> float:
        load = super()._metric(view)
        if not math.isfinite(load):
            return load
        history = view.history.last(self.spec.load.history.total_seconds())
        forecast = self._current_forecast(history, view.now)
        if forecast is None or self._forecast_paths is None:
            self.unforecast += 1
            self.first_problem = self.first_problem or self.problem or "no forecast"
            return load
        times, upper = self._forecast_paths
        # Read through the buckets' centres, as the planner reads the same path.
        centres = bucket_centres(times, forecast.step, history.step)
        return max(load, path_max(centres, upper, view.now, view.now + self.ahead))


class OraclePolicy:
    """Perfect foresight: exactly the replicas the load needs, requested exactly in time."""

    name = "oracle"
    #: The floor on cost: its removals empty nodes, as tidal's do.
    empties_nodes = True

    def __init__(self, need: npt.NDArray[np.int64], scenario: Scenario) -> None:
        self.need = need
        self.s = scenario
        self.pod_lag = minutes_of(scenario.pod_ready, least=1)
        self.node_lag = minutes_of(scenario.node_lead_time, least=1)

    def __call__(self, minute: int, view: PolicyView) -> Targets:
        n = self.need.size
        # Pods asked for now are ready after pod_lag: serve the need from then on, and never
        # drop below the need that remains before they are replaced, this minute's included
        # (a pod removed now serves none of it).
        ahead = self.need[min(n - 1, minute) : min(n, minute + 1 + self.pod_lag)]
        total = int(ahead.max()) if ahead.size else 0
        cap = view.physical_capacity
        physical = min(total, cap)
        cloud = total - physical
        # Nodes asked for now are ready after node_lag, their pods pod_lag later.
        window = self.need[
            min(n - 1, minute + 1) : min(n, minute + 1 + self.node_lag + self.pod_lag)
        ]
        cloud_ahead = max(0, int(window.max()) - cap) if window.size else 0
        return Targets(physical=physical, cloud=cloud, placeholders=max(0, cloud_ahead - cloud))


class TidalPolicy(_Refitting):
    """The planner, with a forecaster refitted every ``spec.forecast.refit``."""

    name = "tidal"
    #: The operator marks the cloud gateways on the emptiest nodes to go first.
    empties_nodes = True

    def __init__(self, spec: GatewayAutoscalerSpec, scenario: Scenario) -> None:
        self.spec = spec
        self.settings = simulated_settings(scenario)
        # Forecast as far as the planner reads, plus one fit step: a forecast is reused until
        # the next bucket completes.
        self._start_refitting(spec, self.settings, forecast_reach(spec, self.settings))
        self.recommendations: tuple[Recommendation, ...] = ()
        self.reasons: dict[str, int] = {}
        self.last_plan: Plan | None = None
        #: The forecast the last plan read (None when it planned without one).
        self.last_forecast: Forecast | None = None
        self.forecast_point: list[float] = []
        self.forecast_upper: list[float] = []
        # The controller acts every ``loop_interval``; between its loops the cluster keeps the
        # targets it last wrote.
        self.every = max(1, round(scenario.loop_interval / MINUTE))
        self._acted: tuple[int, Targets] | None = None

    def __call__(self, minute: int, view: PolicyView) -> Targets:
        if self._acted is not None and minute - self._acted[0] < self.every:
            return self._acted[1]
        targets = self._plan(view)
        self._acted = (minute, targets)
        return targets

    def _plan(self, view: PolicyView) -> Targets:
        spec = self.spec
        history = view.history.last(spec.load.history.total_seconds())
        forecast = self._current_forecast(history, view.now)
        self.last_forecast = forecast
        ahead = view.now + self.settings.pod_ready
        if forecast is not None and self._forecast_paths is not None:
            # ``Forecast.value_at``, on the paths computed once per forecast.
            times, upper = self._forecast_paths
            self.forecast_point.append(float(np.interp(ahead, times, forecast.point)))
            self.forecast_upper.append(float(np.interp(ahead, times, upper)))
        else:
            self.forecast_point.append(math.nan)
            self.forecast_upper.append(math.nan)
        plan = plan_region(
            spec,
            history=history,
            forecast=forecast,
            state=RegionState(
                physical_replicas=view.physical_replicas,
                cloud_replicas=view.cloud_replicas,
                physical_capacity=view.physical_capacity,
                cloud_reserved=view.reserved,
                recommendations=self.recommendations,
                physical_ready=view.physical_ready,
                cloud_ready=view.cloud_ready,
            ),
            now=view.now,
            settings=self.settings,
            forecast_problem=self.problem,
        )
        self.recommendations = plan.recommendations
        self.last_plan = plan
        if plan.forecast_problem is not None:
            self.unforecast += 1
            self.first_problem = self.first_problem or plan.forecast_problem
        reason = plan.total.reason.value
        self.reasons[reason] = self.reasons.get(reason, 0) + 1
        return Targets(plan.physical.replicas, plan.cloud.replicas, plan.placeholders)


def simulate(
    load: LoadSeries,
    *,
    spec: GatewayAutoscalerSpec,
    scenario: Scenario,
    score_from: float,
    policies: dict[str, Policy],
    need: npt.NDArray[np.int64],
    on_minute: Callable[[int, int], None] | None = None,
) -> dict[str, PolicyResult]:
    """Run every policy from ``score_from`` to the end of ``load`` (a 1-minute series)."""
    first = first_scored(load, score_from)
    minutes = len(load) - first
    delay = minutes_of(scenario.metric_delay)
    results: dict[str, PolicyResult] = {}
    clusters: dict[str, ClusterModel] = {}
    # Every policy starts from the same settled state: what perfect foresight has ready at the
    # first scored minute, the need up to a node's boot and a pod's start ahead included.
    lead = minutes_of(scenario.node_lead_time, least=1) + minutes_of(scenario.pod_ready, least=1)
    start_need = int(need[first : first + lead + 1].max())
    for name, policy in policies.items():
        cluster = ClusterModel(scenario, empties_nodes=getattr(policy, "empties_nodes", False))
        phys = min(start_need, scenario.physical_capacity)
        cluster.warm_start(phys, start_need - phys, 0)
        clusters[name] = cluster
        results[name] = PolicyResult(
            name=name,
            ready_physical=np.zeros(minutes),
            ready_cloud=np.zeros(minutes),
            cloud_nodes=np.zeros(minutes),
            placeholders=np.zeros(minutes),
        )
    for step in range(minutes):
        index = first + step
        now = load.start + index * load.step
        visible = LoadSeries(load.start, load.step, load.values[: max(0, index + 1 - delay)])
        for name, policy in policies.items():
            cluster = clusters[name]
            phys, cloud = cluster.ready(index)
            result = results[name]
            result.cloud_nodes[step] = len(cluster.nodes)
            result.placeholders[step] = cluster.placeholders
            view = PolicyView(
                now=now,
                history=visible,
                physical_replicas=cluster.physical_replicas(),
                cloud_replicas=cluster.cloud_replicas(),
                physical_capacity=scenario.physical_capacity,
                reserved=cluster.cloud_replicas() + cluster.placeholders,
                physical_ready=phys,
                cloud_ready=cloud,
            )
            cluster.apply(index, policy(index, view))
            # What serves this minute: the replicas removed at its tick serve none of it, and
            # those asked for are not ready before the next tick.
            result.ready_physical[step], result.ready_cloud[step] = cluster.ready(index)
        if on_minute is not None:
            on_minute(step + 1, minutes)
    for name, cluster in clusters.items():
        results[name].replicas_removed = cluster.removed
        policy = policies[name]
        if isinstance(policy, _Refitting):
            results[name].refits = policy.refits
            results[name].fit_seconds = policy.fit_seconds
            results[name].unforecast_minutes = policy.unforecast
            results[name].forecast_problem = policy.first_problem
        if isinstance(policy, TidalPolicy):
            results[name].reasons = dict(policy.reasons)
            results[name].forecast_point = np.asarray(policy.forecast_point)
            results[name].forecast_upper = np.asarray(policy.forecast_upper)
    return results


def oracle_need(load: LoadSeries, spec: GatewayAutoscalerSpec) -> npt.NDArray[np.int64]:
    """Replicas each minute's load needs at ``perReplica`` (no headroom: the cost floor)."""
    values = np.array(load.values, dtype=np.float64)
    known = np.flatnonzero(np.isfinite(values))
    if known.size:
        # A gap in the telemetry is not zero load: the need seen last carries on through it.
        carried = np.maximum.accumulate(np.where(np.isfinite(values), np.arange(values.size), 0))
        values = np.where(np.isfinite(values), values, values[carried])
        values[: known[0]] = values[known[0]]
    values = np.nan_to_num(values, nan=0.0)
    return np.ceil(values / spec.load.per_replica - 1e-9).astype(np.int64)
