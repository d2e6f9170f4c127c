"""The capacity-tier planner: one region's spec, load, forecast and state in; a plan out.

Pure: no I/O, no clock (``now`` is an argument), no Kubernetes. The live operator and the
simulator call this very function; there is no second copy of the decision.

The rules, in order:

1. **Need now** (the reactive floor): the replicas the latest load needs at target, headroom
   included. The plan never provisions less, whatever the forecast says.
2. **Forecast**: the highest upper quantile of the forecast over the time a new pod needs to
   become ready plus one loop, headroom on top, on the capacity worth holding (below).
3. **Bounds**: ``replicas.min``/``replicas.max``.
4. **Stabilisation** on the way down: the highest recommendation of the last
   ``behavior.scaleDown.stabilization`` (the HPA's rule: kubernetes/kubernetes
   pkg/controller/podautoscaler/horizontal.go, ``stabilizeRecommendation``). With
   ``holdStarting: false`` only replicas that are ready are held: the ones a spike asked for
   that have not started are cancelled once the recommendation falls, and their nodes go back.
5. **Physical first**: the physical pool takes replicas up to its capacity; the overflow goes
   to cloud, up to ``cloud.maxReplicas``. With ``physical.keepWarm`` the physical pool stays
   full: its machines are paid for, and a warm gateway there absorbs what no model foresaw.
   With ``cloud.fillNodes`` the cloud replicas fill every slot of the nodes they need (a
   multiple of ``cloud.replicasPerNode``): those nodes are paid whole either way.
6. **Rate limits**: at most ``scaleUp.maxReplicasPerMinute`` added and
   ``scaleDown.maxReplicasPerMinute`` removed per minute, cloud removed before physical. The
   scale-down limit bounds the users disconnected per minute: with ``limitBy: Load`` (the
   default) a replica counts for the load it carries against a full one, so the idle replicas a
   passed spike leaves go sooner (``_scale_down_budget``).
7. **Reservation**: cloud capacity is held ahead by placeholders for the point forecast over
   the cloud node's lead time plus pod start, and for the cloud nodes worth holding once a node
   requested now would be ready, so nodes are booted before the ramp needs them; never for
   more cloud replicas than can run (``cloud.maxReplicas``, and ``replicas.max`` less the
   physical pool).

Cloud nodes are bought whole and held: above the point forecast's nodes, the band buys another
node only when the load it is expected to serve, from the forecast's calibrated distribution,
is worth what it costs at the price the quantile implies (``_cloud_worth_holding``). Within the
physical pool and the nodes held, replicas run the band itself (those are paid for anyway).

Without fresh load the plan holds what runs (it never scales down for missing data); without a
usable forecast it sizes reactively and says so.
"""

from __future__ import annotations

import enum
import math
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from controller.spec import MIN_FIT_STEP as SPEC_MIN_FIT_STEP
from controller.spec import GatewayAutoscalerSpec, LimitBy, Mode
from forecasts.base import Forecast, Forecaster
from forecasts.registry import create
from forecasts.series import LoadSeries

FloatArray = npt.NDArray[np.float64]

__all__ = [
    "Decision",
    "Plan",
    "PlannerSettings",
    "Reason",
    "Recommendation",
    "RegionState",
    "bucket_centres",
    "forecaster_for",
    "path_max",
    "plan_region",
    "ready_replicas",
    "replicas_for",
    "target_per_replica",
]


class Reason(enum.StrEnum):
    """Why a number in a plan is what it is; becomes a condition reason and an event."""

    FORECAST = "Forecast"
    REACTIVE_FLOOR = "ReactiveFloor"
    MIN = "MinReplicas"
    MAX = "MaxReplicas"
    PHYSICAL_CAPACITY_EXHAUSTED = "PhysicalCapacityExhausted"
    CLOUD_CAPACITY_EXHAUSTED = "CloudCapacityExhausted"
    STABILIZATION = "Stabilization"
    RATE_LIMIT = "RateLimit"
    FALLBACK = "Fallback"
    KEEP_WARM = "KeepWarm"
    NOT_RESERVING = "NotReserving"
    PAUSED = "Paused"


@dataclass(frozen=True)
class Decision:
    replicas: int
    reason: Reason
    message: str


@dataclass(frozen=True)
class Recommendation:
    """A past raw recommendation (total replicas), kept in status for stabilisation."""

    at: float
    replicas: int


@dataclass(frozen=True)
class RegionState:
    """What runs now, and what the recent past recommended (from the CR's status)."""

    physical_replicas: int
    cloud_replicas: int
    physical_capacity: int
    cloud_reserved: int = 0
    recommendations: tuple[Recommendation, ...] = ()
    #: Replicas ready now in each pool (None: unknown). They tell the replicas still starting
    #: (``holdStarting: false`` cancels them) and, of the physical replicas above capacity,
    #: the ready ones, which still carry users, from those lost with their node (all of them,
    #: when unknown: their replacements are started at once).
    physical_ready: int | None = None
    cloud_ready: int | None = None

    @property
    def starting(self) -> tuple[int, int] | None:
        """Physical and cloud replicas asked for that are not ready yet (pending or starting),
        when both pools' readiness is known."""
        if self.physical_ready is None or self.cloud_ready is None:
            return None
        return (
            max(0, self.physical_replicas - self.physical_ready),
            max(0, self.cloud_replicas - self.cloud_ready),
        )

    @property
    def total_replicas(self) -> int:
        return self.physical_replicas + self.cloud_replicas


@dataclass(frozen=True)
class PlannerSettings:
    """Facts about the driver and the cluster, not about a region."""

    loop_interval: float = 60.0
    pod_ready: float = 60.0
    #: A load sample older than this is stale: the plan holds instead of trusting it.
    stale_after: float = 300.0
    #: How long a cloud node stays once unneeded: Cluster Autoscaler's
    #: ``--scale-down-unneeded-time`` (10 minutes by default). A node bought is paid this long.
    node_hold: float = 600.0


@dataclass(frozen=True)
class Plan:
    mode: Mode
    now: float
    load: float | None
    total: Decision
    physical: Decision
    cloud: Decision
    reserve: Decision
    physical_capacity: int
    forecast_model: str | None = None
    forecast_peak: float | None = None
    forecast_peak_at: float | None = None
    forecast_problem: str | None = None
    #: Why the plan has no load (no sample, a stale or a negative one), when it has none and
    #: is not paused: it then holds what runs.
    load_problem: str | None = None
    #: Why the plan holds less than the load or the forecast wants (a message), or None; and
    #: the bound that cuts it (``capacity_limit``): ``MaxReplicas`` when ``replicas.max`` does,
    #: else ``CloudCapacityExhausted`` (physical capacity plus ``cloud.maxReplicas``).
    capacity_limited: str | None = None
    capacity_limit: Reason | None = None
    recommendations: tuple[Recommendation, ...] = field(default=())

    @property
    def acts(self) -> bool:
        """Whether a driver should write this plan (only in ``Scale`` mode)."""
        return self.mode is Mode.SCALE

    @property
    def placeholders(self) -> int:
        return max(0, self.reserve.replicas - self.cloud.replicas)

    @property
    def bursting(self) -> bool:
        return self.cloud.replicas > 0


#: Models are fitted on means over at least this step (``controller.spec.MIN_FIT_STEP``).
MIN_FIT_STEP = SPEC_MIN_FIT_STEP.total_seconds()


def forecast_reach(
    spec: GatewayAutoscalerSpec, settings: PlannerSettings = PlannerSettings()
) -> float:
    """How far past ``now`` the planner reads the forecast: the horizon, and a cloud node's
    boot and the least time it is then held."""
    return max(
        spec.forecast.horizon.total_seconds(),
        settings.loop_interval
        + settings.pod_ready
        + spec.cloud.node_lead_time.total_seconds()
        + settings.node_hold,
    )


def forecaster_for(
    spec: GatewayAutoscalerSpec, settings: PlannerSettings = PlannerSettings()
) -> Forecaster:
    """The region's forecaster: ``forecast.model`` fitted at ``max(5m, load.step)``, its
    calibration reaching as far as the planner reads (a refit's age included)."""
    reach = forecast_reach(spec, settings) + spec.forecast.refit.total_seconds()
    return create(
        spec.forecast.model,
        fit_step=max(MIN_FIT_STEP, spec.load.step.total_seconds()),
        max_horizon=max(reach, 3600.0),
    )


#: Beyond any ``replicas.max``: what a load too large to count (or not a number) needs.
_MOST_REPLICAS = 10**12


def target_per_replica(spec: GatewayAutoscalerSpec) -> float:
    """The load one replica carries at target: ``perReplica`` less ``headroom``."""
    return spec.load.per_replica / (1.0 + spec.headroom)


#: Replicas' worth of rounding forgiven when a load is counted in replicas.
_REPLICA_TOLERANCE = 1e-9


def replicas_for(load: float, spec: GatewayAutoscalerSpec) -> int:
    """Replicas that serve ``load`` at ``perReplica`` with ``headroom`` to spare."""
    exact = load * (1.0 + spec.headroom) / spec.load.per_replica
    if not exact < _MOST_REPLICAS:  # overflow or NaN: more than any cluster holds
        return _MOST_REPLICAS
    return max(0, math.ceil(exact - _REPLICA_TOLERANCE))


def _window_max(
    times: FloatArray,
    values: FloatArray,
    step: float,
    start: float,
    end: float,
    *,
    sample_step: float,
) -> float:
    """Highest value over ``[start, end]`` of the path through the forecast's bucket centres.

    A forecast step is the mean of the samples (``sample_step`` apart) of the bucket that ends
    with the last of them at its time, so it stands for their middle; between middles the path
    is linear. A coarse model (30-minute buckets) then moves the plan a minute at a time
    instead of a bucket at a time.
    """
    return path_max(bucket_centres(times, step, sample_step), values, start, end)


def bucket_centres(times: FloatArray, step: float, sample_step: float) -> FloatArray:
    """Where the path of :func:`_window_max` passes through each forecast step's value."""
    return times - (step - min(sample_step, step)) / 2.0


def path_max(centres: FloatArray, values: FloatArray, start: float, end: float) -> float:
    """Highest value over ``[start, end]`` of the path through ``values`` at ``centres``."""
    edges = np.interp([start, end], centres, values)
    # The centres rise (as a forecast's times do), so the ones inside the window are a run of
    # them, ``(start, end)`` both ends excluded: a slice, cheaper than a mask of every one.
    # A NaN end leaves it empty, as the mask's comparisons would.
    rising = centres.tolist()
    inside = values[bisect_right(rising, start) : bisect_left(rising, end)]
    if inside.size:
        return float(max(edges.max(), inside.max()))
    return float(edges.max())


def _newest(
    history: LoadSeries, accept: Callable[[float], bool] = lambda value: True
) -> tuple[float, float] | None:
    """The newest finite sample among the last 32 that ``accept`` takes, and its time."""
    values = history.values
    for i in range(values.size - 1, max(-1, values.size - 33), -1):
        if math.isfinite(values[i]) and accept(float(values[i])):
            return history.start + i * history.step, float(values[i])
    return None


def _latest(history: LoadSeries) -> tuple[float, float] | None:
    """The newest sample that is a load (finite, not negative), and its time.

    A negative value is no load a gateway carries: a glitch, or a query that subtracts. Sizing
    on it would scale down on bad data, so it is passed over as a missing sample is.
    """
    return _newest(history, lambda value: value >= 0)


def _window_weights(
    forecast: Forecast, start: float, end: float, *, times: FloatArray | None = None
) -> tuple[npt.NDArray[np.int64], FloatArray]:
    """The forecast steps whose buckets overlap ``[start, end]``, and the seconds of overlap.

    Each forecast step stands for the bucket that ends at its time. ``times``: the forecast's
    ``times()``, when the caller has them already.
    """
    if times is None:
        times = forecast.times()
    lo = np.maximum(times - forecast.step, start)
    hi = np.minimum(times, end)
    steps = np.flatnonzero(hi > lo)
    return steps, np.asarray((hi - lo)[steps], dtype=np.float64)


def _whole_nodes(replicas: int, per_node: int) -> int:
    """``replicas`` rounded up to whole cloud nodes of ``per_node`` replicas."""
    return -(-replicas // per_node) * per_node


#: Nodes weighed per call: most plans stop within a few, and one call per node costs more.
#: Past the first two blocks each is twice the last (a band wide in replicas took one call per
#: four nodes: 18 s a plan at a million replicas' worth, one replica a node), up to
#: :data:`_MOST_SLOTS_PER_BLOCK` slots a call; past one such block, a search that weighs a
#: node a step (blocks of the widest alone still took 11 s there). A node's expected use never
#: rises from one node to the next, so the first node under the price is the same whatever the
#: blocks or the search.
_NODES_PER_BLOCK = 4
_MOST_SLOTS_PER_BLOCK = 4096


def _cloud_ceiling(spec: GatewayAutoscalerSpec, capacity: int) -> int:
    """The most cloud replicas a plan can run: ``cloud.maxReplicas``, and no more than
    ``replicas.max`` leaves above the physical pool's ``capacity``, which fills first."""
    return min(spec.cloud.max_replicas, max(0, spec.replicas.max - capacity))


def _cloud_floor(spec: GatewayAutoscalerSpec, capacity: int, floor: int) -> int:
    """The cloud replicas held whatever the band: the whole nodes ``floor`` replicas need,
    within :func:`_cloud_ceiling`. :func:`_cloud_worth_holding` never returns fewer."""
    whole = _whole_nodes(max(0, floor), spec.cloud.replicas_per_node)
    return min(_cloud_ceiling(spec, capacity), whole)


def _cloud_worth_holding(
    forecast: Forecast,
    spec: GatewayAutoscalerSpec,
    *,
    capacity: int,
    floor: int,
    now: float,
    ready: float,
    hold: float,
    times: FloatArray | None = None,
) -> int:
    """Cloud replicas worth holding, node by node: the quantile read as a price.

    Provisioning the ``q`` quantile a minute at a time buys each replica that the load needs
    with probability at least ``1 - q``: a paid replica-minute is worth ``1 - q`` served ones.
    A cloud node is bought whole and for a while: paid from its request, through its boot
    (``ready - now``), and then for at least ``hold`` (the cluster autoscaler keeps a node that
    long after it was last needed). Each node above ``floor`` (the point forecast's, always
    held) is held only when the replica-seconds it is expected to serve over that first
    ``hold``, from the forecast's calibrated distribution, reach ``1 - q`` of the
    replica-seconds it is paid for. A band made of rare spikes then buys nothing while the load
    sits far below capacity, and buys nodes where the forecast nears the edge of what is held:
    the insurance goes where the risk is. Ramps are the point forecast's, bought regardless.
    ``times``: the forecast's ``times()``, when the caller has them already.
    """
    q = spec.forecast.quantile
    per_node = spec.cloud.replicas_per_node
    limit = _cloud_ceiling(spec, capacity)
    price = 1.0 - q
    paid = (ready - now) + hold
    cloud = _cloud_floor(spec, capacity, floor)
    to_load = target_per_replica(spec)
    steps, seconds = _window_weights(forecast, ready, ready + hold, times=times)
    if not steps.size:
        return cloud
    need = price * per_node * paid

    def node_uses(first: int, nodes: int) -> list[float]:
        """The expected use of ``nodes`` whole nodes, the first holding cloud slot ``first``."""
        # Replica ``s`` (1-based) is needed once the load exceeds ``(s - 1)`` replicas' worth;
        # a replica's expected use is the seconds of the window it is needed, summed per node.
        slots = capacity + first + np.arange(nodes * per_node, dtype=np.float64)
        # With ``replicas_for``'s tolerance: a load of exactly ``s`` replicas' worth needs ``s``
        # replicas, though ``s * to_load`` may round a hair below it.
        thresholds = (slots + _REPLICA_TOLERANCE) * to_load
        used = (forecast.exceedance(thresholds, steps) @ seconds).reshape(nodes, per_node)
        return list(used.sum(axis=1).tolist())

    block, calls = _NODES_PER_BLOCK, 0
    widest = max(_NODES_PER_BLOCK, _MOST_SLOTS_PER_BLOCK // per_node)
    while cloud < limit:
        calls += 1
        if calls > 2:
            block = min(2 * block, widest)
        nodes = min(block, -(-(limit - cloud) // per_node))
        for node_use in node_uses(cloud, nodes):
            if node_use < need:
                return cloud
            cloud = min(limit, cloud + per_node)
        if nodes == widest:
            break
    # A whole block of the widest held: the band reaches far past it. Node ``k`` past ``cloud``
    # is held only if every node before it is (their use never rises), so the first node under
    # the price is found by doubling a stride, one node weighed a step, then halving.
    stride = widest
    while cloud < limit:
        left = -(-(limit - cloud) // per_node)
        probe = min(stride, left) - 1
        if node_uses(cloud + probe * per_node, 1)[0] >= need:
            cloud = min(limit, cloud + (probe + 1) * per_node)
            stride *= 2
            continue
        held, short = 0, probe  # nodes below ``held`` are worth it; node ``short`` is not
        while held < short:
            middle = (held + short) // 2
            if node_uses(cloud + middle * per_node, 1)[0] < need:
                short = middle
            else:
                held = middle + 1
        return cloud + held * per_node
    return cloud


def _fill_nodes(spec: GatewayAutoscalerSpec, cloud: int, capacity: int) -> int:
    """Cloud replicas that fill the nodes ``cloud`` replicas need (``cloud.fillNodes``).

    A cloud node is paid whole, so a slot left empty on it is capacity paid for and idle; a
    gateway replica there serves the next spike without waiting for a pod to start. Never
    beyond ``cloud.maxReplicas`` or, with the physical pool full, ``replicas.max``.
    """
    if not spec.cloud.fill_nodes or cloud <= 0:
        return cloud
    whole = _whole_nodes(cloud, spec.cloud.replicas_per_node)
    return max(cloud, min(whole, _cloud_ceiling(spec, capacity)))


def ready_replicas(known: int | None, current: int) -> int:
    """Replicas ready in a pool: as reported, or all of them when the status does not say."""
    return current if known is None else min(known, current)


def _rate_budget(per_minute: int, seconds: float, now: float) -> int:
    """Whole replicas a ``per_minute`` limit grants a plan ``seconds`` after the last one.

    A replica or more: the whole ones in ``per_minute * seconds / 60``. Less than one (passes
    more often than the limit adds a replica: a loop of 10 s at 1 a minute, or a pass right
    after another): one replica when the pass crosses a tick of the limit's grid on the
    clock (``per_minute`` ticks a minute), else none. The passes of a minute then grant at
    most one replica more than the limit, however many there are.
    """
    exact = per_minute * seconds / 60.0
    if exact >= 1.0:
        return math.floor(exact)
    ticks = math.floor(per_minute * now / 60.0) - math.floor(per_minute * (now - seconds) / 60.0)
    return 1 if ticks > 0 else 0


def _scale_down_budget(
    spec: GatewayAutoscalerSpec, load: float | None, replicas: int, budget: int
) -> int:
    """Replicas that may be removed this loop, from the plain count ``budget``.

    ``maxReplicasPerMinute`` full replicas' worth of users. With ``limitBy: Load``, the load is
    taken as spread evenly over the replicas that run, and a replica counts for its share
    against a full one (``perReplica`` less headroom, what the planner sizes for): replicas at
    target count as one each, the idle ones a passed spike leaves behind as a fraction. The
    budget is never below the plain count, and without a fresh load sample it is the plain
    count.
    """
    behavior = spec.behavior.scale_down
    if behavior.limit_by is not LimitBy.LOAD or load is None or replicas <= 0:
        return budget
    carried = max(0.0, load) / target_per_replica(spec)  # full replicas' worth of users
    if carried <= budget:
        return max(budget, replicas)  # everything that runs carries less than the budget
    return max(budget, math.floor(budget * replicas / carried + 1e-9))


def _seconds_since_last_plan(state: RegionState, now: float, settings: PlannerSettings) -> float:
    """Seconds the rate limits grant this plan: since the last plan (its recommendation's
    time), at most one loop.

    A driver may plan more often than once a loop (a watch event, a new leader's first pass):
    each extra pass gets only the time since the one before, so the limits bound replicas per
    minute, not per pass (:func:`_rate_budget` grants a pass under a replica's worth one
    replica only where it crosses a tick of the limit). Without a recommendation dated up to
    ``now`` (a first plan, or only ones from another leader's clock ahead of this one), a whole
    loop; ``plan_region`` then dates those ``now``, so the passes after it get their own time.
    """
    past = [r.at for r in state.recommendations if r.at <= now]
    return min(settings.loop_interval, now - max(past)) if past else settings.loop_interval


def plan_region(
    spec: GatewayAutoscalerSpec,
    *,
    history: LoadSeries,
    forecast: Forecast | None,
    state: RegionState,
    now: float,
    settings: PlannerSettings = PlannerSettings(),
    forecast_problem: str | None = None,
    forecast_pending: bool = False,
) -> Plan:
    """Plan one region. ``forecast_problem`` says why ``forecast`` is None, when it is.

    ``forecast_pending``: a forecast is on its way (a restarted operator's first fit, or one
    after a spec edit, or one retried once the metrics are back), not failed. Until it comes,
    what runs stays, and so does the cloud capacity reserved: they were sized ahead of a ramp
    the new fit is about to see again.
    """
    capacity = state.physical_capacity
    if spec.physical.max_replicas is not None:
        capacity = min(capacity, spec.physical.max_replicas)
    capacity = max(0, capacity)

    if spec.mode is Mode.PAUSED:
        hold = "paused: nothing is changed"
        return Plan(
            mode=spec.mode,
            now=now,
            load=None,
            total=Decision(state.total_replicas, Reason.PAUSED, hold),
            physical=Decision(state.physical_replicas, Reason.PAUSED, hold),
            cloud=Decision(state.cloud_replicas, Reason.PAUSED, hold),
            reserve=Decision(state.cloud_reserved, Reason.PAUSED, hold),
            physical_capacity=capacity,
            recommendations=state.recommendations,
        )

    window = spec.behavior.scale_down.stabilization.total_seconds()
    q = spec.forecast.quantile
    latest = _latest(history)
    load: float | None = None
    if latest is not None and now - latest[0] <= settings.stale_after:
        load = latest[1]

    usable = forecast
    problem = forecast_problem
    if usable is not None and usable.end < now + settings.pod_ready + settings.loop_interval:
        usable, problem = None, "the forecast does not reach past the next pod start"
    if usable is not None and not usable.point.size:
        usable, problem = None, "the forecast holds no steps"
    if usable is not None and not np.isfinite(usable.point).all():
        usable, problem = None, "the forecast holds non-finite values"
    if usable is None and problem is None:
        problem = "no forecast"

    peak = peak_at = None
    forecast_need = node_need = point_node_need = 0
    pod_window = now + settings.pod_ready + settings.loop_interval
    if usable is not None:
        # One quantile path per plan; every window below is a slice of it.
        upper = usable.upper(q)
        times = usable.times()
        centres = bucket_centres(times, usable.step, history.step)  # as _window_max reads
        forecast_load = path_max(centres, upper, now, pod_window)
        node_window = pod_window + spec.cloud.node_lead_time.total_seconds()
        point_need = replicas_for(path_max(centres, usable.point, now, pod_window), spec)
        point_node_need = replicas_for(path_max(centres, usable.point, now, node_window), spec)
        # Cloud nodes worth holding: for a node requested now, over the time it would serve
        # once booted (placeholders hold them); and for the coming minutes, on nodes already
        # running. Replicas run the band above the point only on nodes worth both: the
        # physical pool and those. Capacity held for a later ramp waits in placeholders.
        cloud_held = _cloud_worth_holding(
            usable,
            spec,
            capacity=capacity,
            floor=max(point_node_need, point_need) - capacity,
            now=now,
            ready=now + spec.cloud.node_lead_time.total_seconds() + settings.pod_ready,
            hold=settings.node_hold,
            times=times,
        )
        upper_need = replicas_for(forecast_load, spec)
        # The nodes worth holding for the coming minutes are never fewer than the point
        # forecast's: they count only when the band and ``cloud_held`` both reach past those.
        # Weighing them is a plan's dearest step, so it is skipped when they would not count.
        cloud_now = _cloud_floor(spec, capacity, point_need - capacity)
        if min(upper_need - capacity, cloud_held) > cloud_now:
            cloud_now = _cloud_worth_holding(
                usable,
                spec,
                capacity=capacity,
                floor=point_need - capacity,
                now=now,
                ready=now + settings.pod_ready,
                hold=settings.node_hold,
                times=times,
            )
        forecast_need = max(point_need, min(upper_need, capacity + min(cloud_held, cloud_now)))
        node_need = max(point_node_need, capacity + cloud_held)
        # The peak among the steps whose buckets end after now and start within the horizon:
        # a run of them, since the times rise.
        rising = times.tolist()
        first = bisect_right(rising, now)
        last = bisect_left(
            rising, now + spec.forecast.horizon.total_seconds(), key=lambda t: t - usable.step
        )
        if first < last:
            best = first + int(upper[first:last].argmax())
            peak, peak_at = float(upper[best]), rising[best]

    # 1-3: the raw recommendation; ``wanted``, what the load and the forecast ask for.
    load_problem: str | None = None
    if load is None:
        age = (
            "no load sample"
            if latest is None
            else f"the last load sample is {now - latest[0]:.0f}s old"
        )
        bad = _newest(history)
        if bad is not None and bad[1] < 0 and now - bad[0] <= settings.stale_after:
            age = f"the last load sample is negative ({bad[1]:g}), no load: the query is wrong"
        load_problem = age
        raw = max(state.total_replicas, forecast_need)
        wanted = forecast_need  # what runs is held, not wanted
        total = Decision(
            raw,
            Reason.FALLBACK,
            f"{age}: holding {raw} replicas, never scaling down on missing data",
        )
    else:
        reactive = replicas_for(load, spec)
        seen = f"load {load:g}"
        if usable is None and forecast_pending and state.total_replicas > reactive:
            # The first forecast is on its way (a restart, a spec edit, a fit retried once the
            # metrics are back): what runs is held until it comes, as on missing data, since
            # the ramp it was sized for is still ahead. Only the reactive need is recorded.
            total = Decision(
                state.total_replicas,
                Reason.FALLBACK,
                f"{seen} needs {reactive}: holding {state.total_replicas} replicas until the "
                f"forecast comes ({problem})",
            )
        elif usable is None:
            total = Decision(reactive, Reason.FALLBACK, f"reactive sizing for {seen}: {problem}")
        elif forecast_need > reactive:
            total = Decision(
                forecast_need,
                Reason.FORECAST,
                f"forecast q{q:g} of {forecast_load:.0f} by {pod_window - now:.0f}s from now "
                f"needs {forecast_need}",
            )
        else:
            total = Decision(reactive, Reason.REACTIVE_FLOOR, f"{seen} needs {reactive} now")
        wanted = reactive if usable is None else total.replicas
    if total.replicas < spec.replicas.min:
        total = Decision(
            spec.replicas.min, Reason.MIN, f"raised to replicas.min {spec.replicas.min}"
        )
    elif total.replicas > spec.replicas.max:
        total = Decision(
            spec.replicas.max, Reason.MAX, f"capped at replicas.max {spec.replicas.max}"
        )
    raw_total = total.replicas

    # 4: stabilisation on the way down (not when holding for missing data: that already holds).
    # With ``holdStarting: false`` it holds only replicas that are ready: the ones still
    # starting are cancelled (a ReplicaSet removes those first) and not rate limited.
    # Physical replicas above capacity: the ones not ready are lost (a failed node); ready ones
    # (a cordoned node, say) still carry users and leave at the scale-down rate.
    over = max(0, state.physical_replicas - capacity)
    lost = over
    if state.physical_ready is not None:
        lost = min(over, max(0, state.physical_replicas - state.physical_ready))
    live_physical = state.physical_replicas - lost
    live_total = live_physical + state.cloud_replicas
    # A recommendation dated after ``now`` (another leader's clock ahead, or this one stepped
    # back) counts as made now: it leaves the window a window from now, not later, and a window
    # of 0 holds it no more than one made now. The others are kept as they are.
    recent = tuple(
        r if r.at <= now else Recommendation(now, r.replicas)
        for r in state.recommendations
        if now - min(r.at, now) < window
    )
    # Without a load sample, what runs is held, not recommended: as the HPA records nothing
    # when its metric is missing, only what the forecast asks for is kept. Recording the hold
    # would stretch stabilisation by a whole window after a short outage.
    holding = load is None or (usable is None and forecast_pending)
    recorded = min(spec.replicas.max, max(spec.replicas.min, wanted)) if holding else raw_total
    recommendations = (*recent, Recommendation(now, recorded))
    # Replicas not ready carry no users (the lost ones are not starting). ``holdStarting: true``
    # holds them all the same: then none counts as starting, to be cancelled.
    not_ready_physical, not_ready_cloud = state.starting or (0, 0)
    not_ready_physical = max(0, not_ready_physical - lost)
    carrying = live_total - not_ready_physical - not_ready_cloud
    starting_physical, starting_cloud = (
        (0, 0) if spec.behavior.scale_down.hold_starting else (not_ready_physical, not_ready_cloud)
    )
    running = live_total - starting_physical - starting_cloud
    if load is not None and raw_total < live_total:
        # Bounds after stabilisation, as the HPA applies them: a lowered replicas.max holds.
        highest = max(r.replicas for r in recommendations)
        held = min(live_total, spec.replicas.max, highest)
        # Held is never below raw_total (it is one of the recommendations, within the bounds).
        stable = max(raw_total, min(held, running))
        if stable > raw_total:
            message = f"highest recommendation of the last {window:.0f}s is {highest}"
            if held < highest:
                message += (
                    f"; holding the {held} that run"
                    if held == live_total
                    else f"; holding replicas.max {held}"
                )
            if stable < held:
                message += f"; {stable} are ready, the ones still starting are cancelled"
            total = Decision(stable, Reason.STABILIZATION, message)

    # 5: physical first, cloud takes the overflow.
    want = total.replicas
    physical_target = min(want, capacity)
    physical_reason, physical_message = total.reason, total.message
    if spec.physical.keep_warm:
        warm = min(capacity, spec.replicas.max)
        if warm > physical_target:
            physical_target = warm
            physical_reason, physical_message = (
                Reason.KEEP_WARM,
                f"physical pool kept full at {warm}",
            )
    overflow = max(0, want - capacity)
    cloud_target = min(overflow, spec.cloud.max_replicas)
    cloud_reason, cloud_message = (
        (Reason.PHYSICAL_CAPACITY_EXHAUSTED, f"{overflow} above physical capacity {capacity}")
        if overflow
        else (total.reason, total.message)
    )
    filled = _fill_nodes(spec, cloud_target, capacity)
    if filled > cloud_target:
        cloud_message += f"; raised to {filled} to fill the cloud nodes they need"
        cloud_target = filled
    limits: list[str] = []
    capacity_limit = None
    if wanted > spec.replicas.max:
        capacity_limit = Reason.MAX
        limits.append(f"{wanted} replicas wanted, capped at replicas.max {spec.replicas.max}")
    if overflow > spec.cloud.max_replicas:
        # What runs may be held above what is wanted (stabilisation, missing data): the bound
        # then cuts what is held, and limits the plan only if it also cuts what is wanted.
        cloud_reason = Reason.CLOUD_CAPACITY_EXHAUSTED
        bound = (
            f"physical capacity {capacity} plus cloud.maxReplicas {spec.cloud.max_replicas} "
            f"hold {capacity + spec.cloud.max_replicas}"
        )
        desired = max(wanted, spec.replicas.min)
        cloud_message = f"{want} replicas {'held' if desired < want else 'wanted'}, {bound}"
        if desired - capacity > spec.cloud.max_replicas:
            capacity_limit = capacity_limit or Reason.CLOUD_CAPACITY_EXHAUSTED
            limits.append(f"{min(desired, want)} replicas wanted, {bound}")
    capacity_limited = "; ".join(limits) or None

    # 6: rate limits, cloud removed first. Physical above capacity cannot run: dropped at once.
    seconds = _seconds_since_last_plan(state, now, settings)
    up_budget = _rate_budget(spec.behavior.scale_up.max_replicas_per_minute, seconds, now)
    # Replicas still starting carry no users: cancelling them is not limited (a ReplicaSet
    # removes them first), and the load's users are spread over the ready ones alone.
    down_budget = _scale_down_budget(
        spec,
        load,
        carrying,
        _rate_budget(spec.behavior.scale_down.max_replicas_per_minute, seconds, now),
    )
    cur_physical = live_physical
    cur_cloud = state.cloud_replicas
    physical_new, cloud_new = physical_target, cloud_target
    if cloud_target < cur_cloud:
        cloud_new = max(cloud_target, cur_cloud - starting_cloud - down_budget)
        down_budget -= max(0, cur_cloud - cloud_new - starting_cloud)
    if physical_target < cur_physical:
        if cloud_new > cloud_target:
            # The cloud goes first: the physical pool only loses the replicas still starting,
            # cancelled outside the limit (none with ``holdStarting: true``).
            physical_new = max(physical_target, cur_physical - starting_physical)
        else:
            physical_new = max(
                physical_target, cur_physical - starting_physical - max(0, down_budget)
            )
    if physical_target > cur_physical:
        physical_new = min(physical_target, cur_physical + up_budget)
        up_budget -= physical_new - cur_physical
    if cloud_target > cur_cloud:
        # Replicas that left a failed physical node are replaced at once, not rate limited.
        cloud_new = min(cloud_target, cur_cloud + max(0, up_budget) + lost)
    # A move between pools keeps the ready replicas it takes away until their replacements in
    # the other pool are ready: users are never left with less than the plan while it moves.
    ready_physical = min(physical_new, ready_replicas(state.physical_ready, cur_physical))
    ready_cloud = min(cloud_new, ready_replicas(state.cloud_ready, cur_cloud))
    moving = ""
    # Kept: the ready ones the replacements stand in for, and never fewer than the plan's
    # total less the other pool's new count (the scale-up limit may hold that back).
    # (The limit may add none this pass: the replacements held back count as not ready.)
    if cloud_new < cur_cloud and (physical_new > ready_physical or physical_new < physical_target):
        kept = max(
            cloud_new,
            min(cur_cloud, want - physical_new),
            min(ready_replicas(state.cloud_ready, cur_cloud), want - ready_physical),
        )
        if kept > cloud_new:
            cloud_new, moving = kept, "cloud"
    if physical_new < cur_physical and (cloud_new > ready_cloud or cloud_new < cloud_target):
        kept = max(
            physical_new,
            min(cur_physical, want - cloud_new),
            min(ready_replicas(state.physical_ready, cur_physical), want - ready_cloud),
        )
        if kept > physical_new:
            physical_new, moving = kept, "physical"
    if physical_new != physical_target:
        physical_reason = Reason.RATE_LIMIT
        physical_message = f"moving from {cur_physical} towards {physical_target} at the rate limit"
        if moving == "physical":
            physical_message = (
                f"keeping {physical_new} ready physical replicas until the cloud replicas "
                "replacing them are ready"
            )
    if cloud_new != cloud_target:
        cloud_reason = Reason.RATE_LIMIT
        cloud_message = f"moving from {cur_cloud} towards {cloud_target} at the rate limit"
        if moving == "cloud":
            cloud_message = (
                f"keeping {cloud_new} cloud replicas until the physical replicas replacing "
                "them are ready"
            )

    # 7: reserve cloud capacity ahead of the forecast. The scale-up limit paces the replicas
    # started, not the nodes asked for: the cloud replicas it holds back this loop are reserved
    # now, since their nodes take a node's lead time to boot whenever they are asked for.
    held_back = max(cloud_new, cloud_target)
    if not spec.cloud.reserve:
        reserve = Decision(cloud_new, Reason.NOT_RESERVING, "cloud.reserve is false")
    elif usable is None:
        keep = load is None or forecast_pending
        kept = min(state.cloud_reserved, _cloud_ceiling(spec, capacity))
        held = max(held_back, kept) if keep else held_back
        message = f"no forecast to reserve for: {problem}"
        if forecast_pending and held > held_back:
            message += f"; the {held} cloud replicas reserved stay until it comes"
        reserve = Decision(held, Reason.FALLBACK, message)
    elif held_back > cloud_new and held_back >= node_need - capacity:
        reserve = Decision(
            held_back,
            Reason.RATE_LIMIT,
            f"{held_back - cloud_new} cloud replicas held back by the scale-up limit are "
            "reserved now, so that their nodes boot while the replicas are added",
        )
    else:
        ahead_cloud = min(_cloud_ceiling(spec, capacity), max(0, node_need - capacity))
        if ahead_cloud > cloud_new:
            insured = (
                f", cloud nodes worth holding bring it to {node_need}"
                if node_need > point_node_need
                else ""
            )
            reserve = Decision(
                ahead_cloud,
                Reason.FORECAST,
                f"the point forecast needs {point_node_need} within the node lead time"
                f"{insured}; {ahead_cloud - cloud_new} held by placeholders",
            )
        else:
            reserve = Decision(
                cloud_new, cloud_reason, "no capacity beyond the cloud replicas is needed"
            )

    plan = Plan(
        mode=spec.mode,
        now=now,
        load=load,
        total=total,
        physical=Decision(physical_new, physical_reason, physical_message),
        cloud=Decision(cloud_new, cloud_reason, cloud_message),
        reserve=reserve,
        physical_capacity=capacity,
        forecast_model=usable.model if usable is not None else None,
        forecast_peak=peak,
        forecast_peak_at=peak_at,
        forecast_problem=problem if usable is None else None,
        load_problem=load_problem,
        capacity_limited=capacity_limited,
        capacity_limit=capacity_limit,
        recommendations=recommendations,
    )
    return plan
