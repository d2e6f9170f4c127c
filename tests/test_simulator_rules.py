"""The simulator's rules, each on a hand-made scenario whose counts follow from the rule.

The cluster model follows Kubernetes (a ReplicaSet deletes unscheduled pods before scheduled
ones) and Cluster Autoscaler (a node unneeded for ``scale-down-unneeded-time`` is given back;
pods on the nodes kept stay where they are); the HPA follows its documented algorithm and
defaults; the default scenario is DESIGN.md's. Expected counts are worked out in the comments,
not taken from a run.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from controller.backtest import backtest_spec, build_policies
from controller.planner import PlannerSettings, forecast_reach, target_per_replica
from controller.simulator import (
    ClusterModel,
    HpaPolicy,
    PolicyResult,
    PolicyView,
    Scenario,
    Targets,
    TidalPolicy,
    minutes_of,
    oracle_need,
    simulate,
)
from forecasts.series import LoadSeries
from tests.support.fixtures import SINE_START, daily_sine_views, seasonal_naive_policy

PER_REPLICA = 5000.0  # the backtest spec's perReplica


def _view(minute: int, load: float, physical: int, cloud: int = 0) -> PolicyView:
    """What a policy sees at ``minute``: one sample of ``load`` and the replicas given."""
    return PolicyView(
        now=60.0 * minute,
        history=LoadSeries(60.0 * minute, 60.0, np.array([load])),
        physical_replicas=physical,
        cloud_replicas=cloud,
        physical_capacity=60,
        reserved=cloud,
    )


# -- the default scenario ------------------------------------------------------------------


def test_the_default_scenario_is_designs() -> None:
    """DESIGN.md: physical capacity 60 replicas, metric delay 1 minute, a pod ready 1 minute
    after it is requested, a cloud node 5 minutes, holding 10 replicas, a loop every minute;
    Cluster Autoscaler's 10 minutes before an unneeded node goes; peaks of 100 replicas."""
    s = Scenario()
    assert s.physical_capacity == 60
    assert s.metric_delay == 60.0
    assert s.pod_ready == 60.0
    assert s.node_lead_time == 300.0
    assert s.replicas_per_node == 10
    assert s.loop_interval == 60.0
    assert s.node_unneeded_time == 600.0
    assert s.peak_replicas == 100


def test_a_lag_is_counted_in_whole_minutes_rounded_up() -> None:
    """90 s is 2 minutes; a lag that is a whole number of minutes but for float rounding
    (3 * 60 s computed as 180.00000000000003) is that number, not one more."""
    assert minutes_of(90.0) == 2
    assert minutes_of(60.0 * (0.1 + 0.2) * 10) == 3
    assert minutes_of(0.0) == 0
    assert minutes_of(0.0, least=1) == 1


# -- the cluster model ---------------------------------------------------------------------


def test_a_new_cluster_holds_nothing() -> None:
    cluster = ClusterModel(Scenario())
    assert cluster.physical_replicas() == 0
    assert cluster.cloud_replicas() == 0
    assert cluster.placeholders == 0
    assert cluster.nodes == []


def test_a_warm_start_has_everything_scheduled_and_ready() -> None:
    """20 cloud replicas and 5 placeholders: 3 nodes, all 20 pods scheduled, none pending."""
    cluster = ClusterModel(Scenario())
    cluster.warm_start(20, 20, 5)
    assert cluster.physical_replicas() == 20
    assert cluster.cloud_replicas() == 20
    assert cluster.cloud_pending == 0
    assert len(cluster.nodes) == 3
    assert cluster.ready(0) == (20, 20)


def test_a_warm_start_holds_no_more_than_the_physical_pool() -> None:
    cluster = ClusterModel(Scenario())
    cluster.warm_start(80, 0, 0)
    assert cluster.physical_replicas() == 60


def test_nothing_is_ready_before_the_next_tick_even_if_asked_to_be_instant() -> None:
    """A tick is the simulator's smallest lag: with pod_ready and nodeLeadTime 0, a pod asked
    for at minute 0 is ready at 1, and so is a node."""
    cluster = ClusterModel(Scenario(pod_ready=0.0, node_lead_time=0.0))
    cluster.apply(0, Targets(physical=5, cloud=3))
    assert cluster.ready(0) == (0, 0)
    assert cluster.ready(1) == (5, 0)
    assert cluster.nodes == [1]


def test_the_physical_pool_holds_no_more_than_its_capacity() -> None:
    """80 physical replicas asked of a 60-replica pool: 60 run. Going to 50 removes 10."""
    cluster = ClusterModel(Scenario())
    cluster.apply(0, Targets(physical=80, cloud=0))
    assert cluster.physical_replicas() == 60
    cluster.apply(1, Targets(physical=50, cloud=0))  # the 60 are ready since minute 1
    assert cluster.physical_replicas() == 50
    assert cluster.removed == 10


def test_a_negative_target_asks_for_nothing() -> None:
    cluster = ClusterModel(Scenario())
    cluster.warm_start(0, 10, 0)
    cluster.apply(0, Targets(physical=-5, cloud=-5, placeholders=-5))
    assert cluster.physical_replicas() == 0
    assert cluster.cloud_replicas() == 0
    assert cluster.placeholders == 0
    assert cluster.removed == 10


def test_pending_pods_are_cancelled_first() -> None:
    """25 cloud pods asked for on an empty pool are all pending (3 nodes booting); going to 5
    cancels 20 pending ones, disconnects nobody, and the 5 start once the nodes are up."""
    cluster = ClusterModel(Scenario())
    cluster.apply(0, Targets(physical=0, cloud=25))
    assert cluster.cloud_pending == 25
    assert len(cluster.nodes) == 3
    cluster.apply(1, Targets(physical=0, cloud=5))
    assert cluster.cloud_replicas() == 5
    assert cluster.removed == 0
    for minute in range(2, 6):
        cluster.apply(minute, Targets(physical=0, cloud=5))
    assert cluster.ready(6) == (0, 5)


def test_a_scale_down_takes_pending_pods_before_scheduled_ones() -> None:
    """10 pods run on one node; 5 more are pending for a second. Going from 15 to 12 cancels 3
    of the pending 5 (a ReplicaSet deletes unscheduled pods first): the 10 keep running."""
    cluster = ClusterModel(Scenario())
    cluster.warm_start(0, 10, 0)
    cluster.apply(0, Targets(physical=0, cloud=15))
    assert cluster.cloud_pending == 5
    assert len(cluster.nodes) == 2  # one more for the 5
    cluster.apply(1, Targets(physical=0, cloud=12))
    assert cluster.cloud_pending == 2
    assert cluster.removed == 0
    assert cluster.ready(2) == (0, 10)


def test_pods_on_the_node_kept_stay_when_unneeded_nodes_go() -> None:
    """25 cloud replicas on 3 nodes go to 5 at minute 0: one node is needed from then on, the
    other two are unneeded for 10 minutes at minute 10 and go then. The 5 pods stay on the
    node kept, ready, and nobody else is disconnected."""
    cluster = ClusterModel(Scenario())
    cluster.warm_start(0, 25, 0)
    for minute in range(10):
        cluster.apply(minute, Targets(physical=0, cloud=5))
        assert len(cluster.nodes) == 3
    assert cluster.removed == 20
    cluster.apply(10, Targets(physical=0, cloud=5))
    assert len(cluster.nodes) == 1
    assert cluster.cloud_replicas() == 5
    assert cluster.cloud_pending == 0
    assert cluster.ready(11) == (0, 5)
    assert cluster.removed == 20


def test_a_node_unneeded_while_it_boots_goes_ten_minutes_after_it_is_ready() -> None:
    """15 replicas on a cluster of 10 ask for a second node at minute 0, ready at minute 5 (the
    default 5-minute boot). At minute 1 the target is 10 again: the node is unneeded from then
    on. Cluster Autoscaler sees it as a candidate only once it is ready, so its 10 minutes run
    from minute 5 to 15, not from 1 to 11."""
    cluster = ClusterModel(Scenario())
    cluster.warm_start(0, 10, 0)
    cluster.apply(0, Targets(physical=0, cloud=15))
    assert cluster.nodes[1] == 5
    for minute in range(1, 15):
        cluster.apply(minute, Targets(physical=0, cloud=10))
        assert len(cluster.nodes) == 2, minute
    cluster.apply(15, Targets(physical=0, cloud=10))
    assert len(cluster.nodes) == 1
    assert cluster.ready(16) == (0, 10)
    assert cluster.removed == 0


def test_a_node_unneeded_after_it_is_ready_goes_ten_minutes_later() -> None:
    """The same node, needed until minute 7 (two minutes after it is ready): unneeded from
    minute 8, it goes at minute 18."""
    cluster = ClusterModel(Scenario())
    cluster.warm_start(0, 10, 0)
    for minute in range(8):
        cluster.apply(minute, Targets(physical=0, cloud=15))
    for minute in range(8, 18):
        cluster.apply(minute, Targets(physical=0, cloud=10))
        assert len(cluster.nodes) == 2, minute
    cluster.apply(18, Targets(physical=0, cloud=10))
    assert len(cluster.nodes) == 1
    assert cluster.removed == 5


def test_only_ready_nodes_go_when_some_still_boot() -> None:
    """Three settled nodes hold 25 replicas; at minute 0 the target goes to 35, which asks for
    a fourth node (ready at 5), and at minute 1 to 5. From minute 11 the two emptied settled
    nodes have been unneeded for 10 minutes and go; the fourth, ready at 5, stays until 15."""
    cluster = ClusterModel(Scenario())
    cluster.warm_start(0, 25, 0)
    cluster.apply(0, Targets(physical=0, cloud=35))
    assert len(cluster.nodes) == 4
    for minute in range(1, 11):
        cluster.apply(minute, Targets(physical=0, cloud=5))
        assert len(cluster.nodes) == 4, minute
    cluster.apply(11, Targets(physical=0, cloud=5))
    assert cluster.nodes == [-(10**6), 5]
    assert cluster.ready(12) == (0, 5)
    for minute in range(12, 15):
        cluster.apply(minute, Targets(physical=0, cloud=5))
        assert len(cluster.nodes) == 2, minute
    cluster.apply(15, Targets(physical=0, cloud=5))
    assert cluster.nodes == [-(10**6)]


# -- the HPA -------------------------------------------------------------------------------


def test_hpa_fills_the_physical_pool_first() -> None:
    """20 replicas' worth of load on 10: the HPA goes to 20 (double), all physical."""
    spec = backtest_spec("hpa", scenario=Scenario())
    hpa = HpaPolicy(spec)
    load = 20 * target_per_replica(spec)
    assert hpa(0, _view(0, load, 10)) == Targets(physical=20, cloud=0)


def test_hpa_never_goes_above_max_replicas() -> None:
    """maxReplicas 70: a load that needs 100 replicas from 60 gets 70 (10 of them cloud)."""
    spec = backtest_spec("hpa", scenario=Scenario(), overrides={"replicas.max": 70})
    hpa = HpaPolicy(spec)
    load = 100 * target_per_replica(spec)
    assert hpa(0, _view(0, load, 60)) == Targets(physical=60, cloud=10)


def test_hpa_adds_four_pods_a_sync_when_that_is_more_than_doubling() -> None:
    """The default scale-up policies: 4 pods or 100% per 15 s, whichever is more. From 2
    replicas, 100 replicas' worth of load gets 2 -> 6 -> 12 -> 24 -> 48 in a minute's four
    syncs; from 1, 1 -> 5 -> 10 -> 20 -> 40."""
    spec = backtest_spec("hpa", scenario=Scenario())
    load = 100 * target_per_replica(spec)
    targets = HpaPolicy(spec)(0, _view(0, load, 2))
    assert targets.physical + targets.cloud == 48
    targets = HpaPolicy(spec)(0, _view(0, load, 1))
    assert targets.physical + targets.cloud == 40


def test_hpa_with_no_replicas_only_raises_them_to_min_replicas() -> None:
    """Scaled to zero, the HPA computes nothing (horizontal.go): the replicas go to
    minReplicas (1), whatever the load."""
    spec = backtest_spec("hpa", scenario=Scenario())
    load = 100 * target_per_replica(spec)
    assert HpaPolicy(spec)(0, _view(0, load, 0)) == Targets(physical=1, cloud=0)


def test_hpa_counts_a_load_of_exactly_n_replicas_as_n() -> None:
    """59 replicas' worth of load (59 * target, which float division reads back a hair above
    59) needs 59 replicas, not 60: from 30 it doubles once and stops at 59."""
    spec = backtest_spec("hpa", scenario=Scenario())
    load = 59 * target_per_replica(spec)
    assert HpaPolicy(spec)(0, _view(0, load, 30)) == Targets(physical=59, cloud=0)


@pytest.mark.parametrize(
    ("per_machine", "current", "ready", "replicas", "expected"),
    [
        # As many a machine as a cloud node (the default): the cloud's pods go first.
        (None, (60, 30), (60, 30), 70, (60, 10)),
        (10, (60, 30), (60, 30), 70, (60, 10)),
        # 30 a machine: two machines, each more crowded than a full cloud node (10) until it
        # holds 10: the physical pool goes down to 20 before the cloud loses a pod.
        (30, (60, 30), (60, 30), 70, (40, 30)),
        (30, (60, 30), (60, 30), 40, (20, 20)),
        # Then the two pools tie, and the cloud's newer pods go before the physical ones.
        (30, (60, 30), (60, 30), 5, (5, 0)),
        # Pods not ready go first: the cloud's 5 starting, then the physical pool's 2.
        (30, (60, 30), (58, 25), 80, (55, 25)),
        # On the way up a new pod takes the physical pool's room first.
        (30, (40, 30), (40, 30), 95, (60, 35)),
        # The same count: no pod moves between the pools.
        (30, (40, 30), (40, 30), 70, (40, 30)),
    ],
    ids=["default", "equal", "down-10", "down-30", "down-65", "starting", "up", "same"],
)
def test_hpa_removes_pods_from_the_more_crowded_machines_first(
    per_machine: int | None,
    current: tuple[int, int],
    ready: tuple[int, int],
    replicas: int,
    expected: tuple[int, int],
) -> None:
    """The ReplicaSet's ranking (controller_utils.go): pods not ready first, then those on
    the nodes holding most of the set's pods, spread over a physical pool of 60."""
    spec = backtest_spec("hpa", scenario=Scenario())
    hpa = HpaPolicy(spec, physical_per_machine=per_machine, replicas_per_node=10)
    view = PolicyView(
        now=0.0,
        history=LoadSeries(0.0, 60.0, np.array([1.0])),
        physical_replicas=current[0],
        cloud_replicas=current[1],
        physical_capacity=60,
        reserved=current[1],
        physical_ready=ready[0],
        cloud_ready=ready[1],
    )
    assert hpa._split(replicas, view) == Targets(physical=expected[0], cloud=expected[1])


def test_hpa_stabilisation_never_raises_the_replicas() -> None:
    """From 10, 400 replicas' worth of load gets 160 in a minute (four doublings); when the
    load falls to 5 replicas' worth the next minute, the window's highest recommendation (400)
    holds the 160, and does not raise them to 400."""
    spec = backtest_spec("hpa", scenario=Scenario())
    hpa = HpaPolicy(spec)
    per = target_per_replica(spec)
    up = hpa(0, _view(0, 400 * per, 10))
    assert up == Targets(physical=60, cloud=100)
    assert hpa(1, _view(1, 5 * per, 60, 100)) == Targets(physical=60, cloud=100)


@pytest.mark.parametrize(
    ("stabilization", "window"),
    [(0.0, 1), (15.0, 1), (16.0, 2), (75.0, 2), (76.0, 3), (300.0, 6)],
)
def test_hpa_window_holds_the_minutes_whose_last_sync_is_younger_than_it(
    stabilization: float, window: int
) -> None:
    """Minute k's last sync is at k:45. At tick m it is (m - k) * 60 - 45 s old, and in the
    window while younger than the stabilisation: with 0 s or 15 s only this minute's syncs
    count, with 16 s the minute before's too, 75 s reaches one minute back and 76 s two."""
    spec = backtest_spec("hpa", scenario=Scenario())
    assert HpaPolicy(spec, stabilization=stabilization).window == window


def test_hpa_without_stabilisation_drops_at_the_first_low_recommendation() -> None:
    """A 0 s window: 40 replicas' worth of load on 40 replicas, then 10's worth. The minute
    the lower load is seen, the HPA goes to 10; nothing holds the minute before's 40."""
    spec = backtest_spec("hpa", scenario=Scenario())
    hpa = HpaPolicy(spec, stabilization=0.0)
    per = target_per_replica(spec)
    assert hpa(0, _view(0, 40 * per, 40)) == Targets(physical=40, cloud=0)
    assert hpa(1, _view(1, 10 * per, 40)) == Targets(physical=10, cloud=0)


def test_hpa_never_goes_below_min_replicas() -> None:
    """No load on 10 replicas: the HPA's first recommendation is minReplicas (1), not 0."""
    spec = backtest_spec("hpa", scenario=Scenario())
    hpa = HpaPolicy(spec)
    targets = hpa(0, _view(0, 0.0, 10))
    assert targets == Targets(physical=1, cloud=0)


# -- the oracle's need -------------------------------------------------------------------


def test_the_need_is_the_load_over_per_replica_rounded_up() -> None:
    """perReplica 5000: 15000 is 3 replicas, even computed as 15000.000000000002; 15001 is 4."""
    spec = backtest_spec("need", scenario=Scenario())
    noisy = 5000.0 * (0.1 + 0.2) * 10
    load = LoadSeries(0.0, 60.0, np.array([noisy, 15001.0, 0.0]))
    assert oracle_need(load, spec).tolist() == [3, 4, 0]


def test_the_need_carries_the_last_known_load_through_gaps() -> None:
    """A gap carries the need seen last (right after the first sample too); a leading gap
    takes the first known need; a trace with no sample at all needs nothing."""
    spec = backtest_spec("need", scenario=Scenario())
    nan = float("nan")
    gaps = LoadSeries(0.0, 60.0, np.array([10 * PER_REPLICA, nan, nan, 30 * PER_REPLICA, nan]))
    assert oracle_need(gaps, spec).tolist() == [10, 10, 10, 30, 30]
    leading = LoadSeries(0.0, 60.0, np.array([nan, nan, 20 * PER_REPLICA]))
    assert oracle_need(leading, spec).tolist() == [20, 20, 20]
    empty = LoadSeries(0.0, 60.0, np.array([nan, nan]))
    assert oracle_need(empty, spec).tolist() == [0, 0]


# -- tidal ---------------------------------------------------------------------------------


def test_tidal_forecasts_as_far_as_the_planner_reads_at_every_minute() -> None:
    """A forecast is reused until the next bucket of its fit step completes: whichever minute
    of the bucket it is read at, it reaches as far ahead of now as the planner reads."""
    policy = seasonal_naive_policy("reach")
    spec = policy.spec
    reads = forecast_reach(spec, policy.settings)
    for minute, view in daily_sine_views(SINE_START, 10):
        policy(minute, view)
        assert policy._forecast is not None
        assert policy._forecast.end >= view.now + reads


def test_tidal_shows_the_forecast_its_last_plan_read_and_none_without_one() -> None:
    """``last_forecast`` is the forecast the plan read (its value a pod start ahead is the
    recorded point), and None once a plan has no forecast: a history of two minutes."""
    policy = seasonal_naive_policy("read")
    start = SINE_START
    for minute, view in daily_sine_views(start, 3):
        policy(minute, view)
        assert policy.last_forecast is policy._forecast
        ahead = view.now + policy.settings.pod_ready
        assert policy.last_forecast.value_at(ahead) == policy.forecast_point[-1]
    short = daily_sine_views(start, 3)[-1][1]
    short = replace(short, now=short.now + 60.0, history=short.history.last(120.0))
    # Make a refit due: fitted on two minutes of history, the model fails.
    policy.fitted_at = -math.inf
    policy(10**6, short)
    assert policy.last_forecast is None
    assert math.isnan(policy.forecast_point[-1])


def test_tidal_plans_with_the_live_staleness_unless_the_delay_is_longer() -> None:
    """The planner's own staleness limit holds at the default delay; a metric delay longer
    than it (6 minutes) is not stale data: its sample, read a loop later, still counts."""
    spec = backtest_spec("stale", scenario=Scenario())
    assert TidalPolicy(spec, Scenario()).settings.stale_after == PlannerSettings.stale_after
    late = Scenario(metric_delay=360.0)
    assert TidalPolicy(spec, late).settings.stale_after == 420.0


def test_tidal_refits_every_refit_period_on_the_minute() -> None:
    """refit 15m: the forecaster is fitted at the first minute and again 15 minutes later,
    not 16; over minutes 0 to 15 that is two fits."""
    policy = seasonal_naive_policy("refit")
    spec = policy.spec
    assert spec.forecast.refit.total_seconds() == 900.0
    fits = []
    for minute, view in daily_sine_views(SINE_START, 16):
        policy(minute, view)
        fits.append(policy.refits)
    assert fits == [1] * 15 + [2]


# -- simulate ------------------------------------------------------------------------------


def _first_state(scenario: Scenario, spike_at: int) -> tuple[int, int]:
    """Physical replicas and cloud nodes at the first scored minute (1), before it acts, when
    the need is 10 replicas but 70 at minute ``spike_at``."""
    spec = backtest_spec("warm", scenario=scenario)
    values = np.full(20, 10 * PER_REPLICA)
    values[spike_at] = 70 * PER_REPLICA
    load = LoadSeries(0.0, 60.0, values)
    need = oracle_need(load, spec)
    policies = build_policies(spec, scenario, need, ("oracle",))
    seen: list[int] = []
    oracle = policies["oracle"]

    def first(minute: int, view: PolicyView) -> Targets:
        seen.append(view.physical_replicas)
        return oracle(minute, view)

    result = simulate(
        load, spec=spec, scenario=scenario, score_from=60.0, policies={"oracle": first}, need=need
    )["oracle"]
    return seen[0], int(result.cloud_nodes[0])


def _simulate(load: LoadSeries, policies: dict[str, object], **kwargs: object) -> dict:
    scenario = Scenario()
    spec = backtest_spec("sim", scenario=scenario)
    need = oracle_need(load, spec)
    return simulate(
        load,
        spec=spec,
        scenario=scenario,
        score_from=60.0,
        policies=policies,  # type: ignore[arg-type]
        need=need,
        **kwargs,  # type: ignore[arg-type]
    )


def test_a_policy_sees_placeholders_as_reserved_cloud() -> None:
    """A policy that holds 5 cloud replicas and 7 placeholders sees 12 reserved the minute
    after, and 5 cloud replicas."""
    seen: list[tuple[int, int]] = []

    def hold(minute: int, view: PolicyView) -> Targets:
        seen.append((view.cloud_replicas, view.reserved))
        return Targets(physical=10, cloud=5, placeholders=7)

    load = LoadSeries(0.0, 60.0, np.full(4, 10 * PER_REPLICA))
    _simulate(load, {"hold": hold})
    assert seen[1:] == [(5, 12), (5, 12)]


def test_progress_counts_every_scored_minute() -> None:
    calls: list[tuple[int, int]] = []
    load = LoadSeries(0.0, 60.0, np.full(5, 10 * PER_REPLICA))
    _simulate(
        load, {"none": lambda m, v: Targets(10, 0)}, on_minute=lambda d, t: calls.append((d, t))
    )
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_tidal_reports_the_first_reason_it_had_no_forecast() -> None:
    """30 minutes are far too short to fit: every minute is planned without a forecast, and
    the reason reported is the first minute's (the same as a run of that minute alone), not
    the last's."""
    scenario = Scenario()
    spec = backtest_spec("short", scenario=scenario)

    def run(minutes: int) -> PolicyResult:
        load = LoadSeries(0.0, 60.0, np.linspace(5000.0, 10000.0, 30)[:minutes])
        need = oracle_need(load, spec)
        policies = build_policies(spec, scenario, need, ("tidal",))
        return simulate(
            load, spec=spec, scenario=scenario, score_from=60.0, policies=policies, need=need
        )["tidal"]

    first = run(2).forecast_problem
    result = run(30)
    assert result.unforecast_minutes == 29
    assert first is not None
    assert result.forecast_problem == first


@pytest.mark.parametrize(
    ("scenario", "lead"),
    [(Scenario(), 6), (Scenario(pod_ready=0.0), 6), (Scenario(node_lead_time=0.0), 2)],
    ids=["default", "instant-pods", "instant-nodes"],
)
def test_the_start_holds_the_need_a_node_boot_and_a_pod_start_ahead(
    scenario: Scenario, lead: int
) -> None:
    """Every policy starts with what perfect foresight has ready at the first scored minute:
    the need up to a node's boot (5 minutes; a tick at least) and a pod's start (1 minute; a
    tick at least) ahead, both included. A spike of 70 at minute 1 + lead starts with the 10
    cloud replicas and their node; one a minute later with 10 physical replicas and nothing
    in the cloud."""
    assert _first_state(scenario, 1 + lead) == (60, 1)
    assert _first_state(scenario, 2 + lead) == (10, 0)


@pytest.mark.parametrize(("delay", "seen_at"), [(60.0, -1), (0.0, 0)], ids=["1m", "none"])
def test_a_policy_sees_the_load_a_metric_delay_late(delay: float, seen_at: int) -> None:
    """Metric delay 1 minute: at minute i the newest sample a policy sees is minute i - 1's;
    with no delay, minute i's."""
    lengths: list[tuple[int, int]] = []

    def spy(minute: int, view: PolicyView) -> Targets:
        lengths.append((minute, len(view.history)))
        return Targets(physical=10, cloud=0)

    scenario = Scenario(metric_delay=delay)
    spec = backtest_spec("delay", scenario=scenario)
    load = LoadSeries(0.0, 60.0, np.full(6, 10 * PER_REPLICA))
    simulate(
        load,
        spec=spec,
        scenario=scenario,
        score_from=60.0,
        policies={"spy": spy},
        need=oracle_need(load, spec),
    )
    assert lengths == [(m, m + 1 + seen_at) for m in range(1, 6)]


@pytest.mark.parametrize(("lead", "asks_node_at"), [(300.0, 4), (60.0, 8)], ids=["5m", "1m"])
def test_the_oracle_asks_exactly_a_pod_start_and_a_node_boot_ahead(
    lead: float, asks_node_at: int
) -> None:
    """Need 10 replicas, 70 from minute 10, 10 again from 20, 5 at the last minute (39): 60
    physical, 10 cloud, one node. The oracle asks for the 60 physical and the 10 cloud pods at
    minute 9 (ready at 10), holds 10 placeholders from a node's boot before that (minute 4 for
    5 minutes, 8 for 1) so that their node is up at 9, lets everything go at minute 20's tick
    (the node goes 10 minutes later), and drops to 5 at the last minute's."""
    scenario = Scenario(node_lead_time=lead)
    spec = backtest_spec("oracle", scenario=scenario)
    values = np.array([10.0] * 10 + [70.0] * 10 + [10.0] * 19 + [5.0]) * PER_REPLICA
    load = LoadSeries(0.0, 60.0, values)
    need = oracle_need(load, spec)
    policies = build_policies(spec, scenario, need, ("oracle",))
    result = simulate(
        load, spec=spec, scenario=scenario, score_from=60.0, policies=policies, need=need
    )["oracle"]
    # Step k is minute k + 1; cloud_nodes and placeholders are counted before its tick acts,
    # ready replicas after it.
    minutes = range(1, 40)
    physical = [60 if 10 <= m < 20 else 5 if m == 39 else 10 for m in minutes]
    assert result.ready_physical.tolist() == physical
    assert result.ready_cloud.tolist() == [10 if 10 <= m < 20 else 0 for m in minutes]
    held = range(asks_node_at + 1, 10)
    assert result.placeholders.tolist() == [10 if m in held else 0 for m in minutes]
    booted = range(asks_node_at + 1, 31)
    assert result.cloud_nodes.tolist() == [1 if m in booted else 0 for m in minutes]
