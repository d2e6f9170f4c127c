"""Table tests of the capacity-tier planner: one rule, one reason per case."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from controller.planner import (
    Decision,
    Plan,
    PlannerSettings,
    Reason,
    Recommendation,
    RegionState,
    _window_max,
    forecast_reach,
    forecaster_for,
    plan_region,
    replicas_for,
)
from controller.spec import GatewayAutoscalerSpec, Mode
from forecasts.base import Calibration, Forecast
from forecasts.series import LoadSeries

NOW = 1_700_000_000.0
PER = 100.0


def make_spec(**overrides: Any) -> GatewayAutoscalerSpec:
    body: dict[str, Any] = {
        "region": "eu-west",
        "load": {"query": "sum(x)", "perReplica": PER},
        "replicas": {"min": 1, "max": 400},
        "headroom": 0.0,
        "physical": {"deployment": "gw", "keepWarm": False},
        "cloud": {
            "deployment": "gw-cloud",
            "maxReplicas": 200,
            "nodeLeadTime": "5m",
            "fillNodes": False,
        },
        "forecast": {"model": "seasonal-naive", "quantile": 0.95},
        "behavior": {
            "scaleDown": {"stabilization": "10m", "maxReplicasPerMinute": 10},
            "scaleUp": {"maxReplicasPerMinute": 100},
        },
    }
    for dotted, value in overrides.items():
        node = body
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node[key]
        node[leaf] = value
    return GatewayAutoscalerSpec.model_validate(body)


def history(load: float, *, age: float = 60.0) -> LoadSeries:
    """Ten minutes of constant per-minute load whose last sample is ``age`` seconds old."""
    return LoadSeries(NOW - age - 540.0, 60.0, np.full(10, load))


def forecast(path: list[float], *, step: float = 60.0, spread: float = 0.0) -> Forecast:
    """A forecast from ``NOW`` whose upper quantile is ``spread`` (relative) above the point."""
    point = np.asarray(path, dtype=float)
    actual = np.full((50, point.size), 1.0 + spread)
    predicted = np.ones((50, point.size))
    calibration = Calibration.from_forecasts(actual, predicted, scale_floor=0.0)
    return Forecast("test", NOW, step, point, calibration)


def state(
    physical: int,
    cloud: int = 0,
    *,
    capacity: int = 60,
    reserved: int = 0,
    recs: tuple[Recommendation, ...] = (),
    ready: tuple[int | None, int | None] = (None, None),
) -> RegionState:
    return RegionState(
        physical_replicas=physical,
        cloud_replicas=cloud,
        physical_capacity=capacity,
        cloud_reserved=reserved,
        recommendations=recs,
        physical_ready=ready[0],
        cloud_ready=ready[1],
    )


def plan(
    spec: GatewayAutoscalerSpec, load: float, fc: Forecast | None, st: RegionState, **kwargs: Any
) -> Plan:
    return plan_region(
        spec,
        history=history(load, age=kwargs.pop("age", 60.0)),
        forecast=fc,
        state=st,
        now=NOW,
        settings=PlannerSettings(),
        **kwargs,
    )


FLAT = [1000.0] * 40  # 10 replicas at PER=100


@pytest.mark.parametrize(
    ("load", "path", "total", "reason"),
    [
        (1000.0, [2000.0] * 40, 20, Reason.FORECAST),
        (3000.0, FLAT, 30, Reason.REACTIVE_FLOOR),
        (0.0, [0.0] * 40, 1, Reason.MIN),
        (90_000.0, FLAT, 400, Reason.MAX),
    ],
    ids=["forecast-above-load", "reactive-floor-above-forecast", "min", "max"],
)
def test_total_and_reason(load: float, path: list[float], total: int, reason: Reason) -> None:
    """The total is the larger of the forecast and the reactive need, within min and max."""
    p = plan(make_spec(), load, forecast(path), state(total, capacity=1000))
    assert (p.total.replicas, p.total.reason) == (total, reason)


def test_headroom_is_provisioned() -> None:
    """Headroom adds its fraction to the load before dividing by perReplica."""
    assert replicas_for(1000.0, make_spec(headroom=0.1)) == 11


def test_forecast_quantile_not_point_is_provisioned() -> None:
    """The plan provisions the upper quantile of the forecast, not its point."""
    p = plan(make_spec(), 1000.0, forecast(FLAT, spread=0.5), state(15, capacity=100))
    assert p.total.replicas == 15


def test_physical_first_then_cloud() -> None:
    """Physical takes up to its capacity, the overflow goes to cloud and says why."""
    p = plan(make_spec(), 8000.0, forecast([8000.0] * 40), state(60, 20))
    assert (p.physical.replicas, p.cloud.replicas) == (60, 20)
    assert p.cloud.reason is Reason.PHYSICAL_CAPACITY_EXHAUSTED
    assert p.bursting


def test_cloud_capacity_exhausted_is_reported() -> None:
    """Beyond physical capacity plus cloud.maxReplicas the plan is capped and says so."""
    p = plan(make_spec(**{"cloud.maxReplicas": 5}), 8000.0, forecast([8000.0] * 40), state(60, 5))
    assert p.cloud.replicas == 5
    assert p.cloud.reason is Reason.CLOUD_CAPACITY_EXHAUSTED
    assert p.capacity_limited and "cloud.maxReplicas" in p.capacity_limited
    assert p.capacity_limit is Reason.CLOUD_CAPACITY_EXHAUSTED


@pytest.mark.parametrize(
    ("load", "fc", "kwargs", "wanted"),
    [
        pytest.param(9000.0, None, {}, 90, id="load-without-forecast"),
        pytest.param(1000.0, forecast([9000.0] * 40), {}, 90, id="forecast-above-load"),
        pytest.param(9000.0, forecast(FLAT), {}, 90, id="load-above-forecast"),
        pytest.param(0.0, forecast([9000.0] * 40), {"age": 3600.0}, 90, id="stale-load-forecast"),
    ],
)
def test_replicas_max_cutting_what_is_wanted_is_capacity_limited(
    load: float, fc: Forecast | None, kwargs: dict[str, Any], wanted: int
) -> None:
    """replicas.max below what the load or the forecast wants: CapacityLimited, by MaxReplicas,
    saying both numbers; the replicas are what they were without the flag."""
    p = plan(make_spec(**{"replicas.max": 50}), load, fc, state(50, capacity=1000), **kwargs)
    assert p.total.replicas == 50
    assert p.capacity_limit is Reason.MAX
    assert p.capacity_limited == f"{wanted} replicas wanted, capped at replicas.max 50"


def test_replicas_max_not_reached_is_not_capacity_limited() -> None:
    """A plan within replicas.max and the pools says nothing is limited."""
    p = plan(make_spec(**{"replicas.max": 50}), 3000.0, forecast(FLAT), state(30, capacity=1000))
    assert p.total.replicas == 30
    assert (p.capacity_limited, p.capacity_limit) == (None, None)


def test_holding_more_than_replicas_max_on_missing_load_is_not_capacity_limited() -> None:
    """Without load the plan holds what runs: a lowered replicas.max cuts nothing wanted."""
    p = plan(make_spec(**{"replicas.max": 50}), 0.0, None, state(80, capacity=1000), age=3600.0)
    assert p.total.reason is Reason.MAX
    assert p.capacity_limited is None


def test_replicas_max_and_cloud_capacity_both_named() -> None:
    """Both bounds cut: the reason is replicas.max's, the message names both."""
    spec = make_spec(**{"replicas.max": 100, "cloud.maxReplicas": 5})
    p = plan(spec, 20_000.0, forecast([20_000.0] * 40), state(60, 5))
    assert p.capacity_limit is Reason.MAX
    assert p.capacity_limited is not None
    assert "replicas.max 100" in p.capacity_limited and "cloud.maxReplicas 5" in p.capacity_limited
    assert (p.physical.replicas, p.cloud.replicas) == (60, 5)


def test_physical_max_replicas_caps_capacity() -> None:
    """physical.maxReplicas caps the capacity computed from the nodes."""
    p = plan(
        make_spec(**{"physical.maxReplicas": 30}), 5000.0, forecast([5000.0] * 40), state(30, 20)
    )
    assert (p.physical_capacity, p.physical.replicas, p.cloud.replicas) == (30, 30, 20)


def test_keep_warm_fills_physical() -> None:
    """With keepWarm the physical pool stays full when load is low."""
    p = plan(make_spec(**{"physical.keepWarm": True}), 1000.0, forecast(FLAT), state(60))
    assert p.physical.replicas == 60
    assert p.physical.reason is Reason.KEEP_WARM
    assert p.cloud.replicas == 0


@pytest.mark.parametrize(
    ("fill", "bounds", "before", "after"),
    [
        # 63 replicas' worth: 3 overflow to cloud, and the one node they need holds 10.
        pytest.param(True, {}, 0, 10, id="fills-the-node"),
        pytest.param(False, {}, 0, 3, id="off"),
        pytest.param(True, {"cloud.maxReplicas": 5}, 0, 5, id="capped-by-cloud-max"),
        pytest.param(True, {"replicas.max": 65}, 0, 5, id="capped-by-replicas-max"),
        # 12 cloud replicas need 2 nodes; the 3 the load needs fit on one, which stays full.
        pytest.param(True, {}, 12, 10, id="down-to-the-node"),
        pytest.param(False, {}, 12, 3, id="down-off"),
    ],
)
def test_fill_nodes(fill: bool, bounds: dict[str, int], before: int, after: int) -> None:
    """cloud.fillNodes: cloud replicas fill every slot of the nodes they need, within
    cloud.maxReplicas and replicas.max; the recommendation itself is unchanged."""
    spec = make_spec(**{"cloud.fillNodes": fill, **bounds})
    p = plan(spec, 6300.0, forecast(FLAT), state(60, before))
    assert p.physical.replicas == 60
    assert p.cloud.replicas == after
    assert p.total.replicas == 63
    assert ("to fill the cloud nodes" in p.cloud.message) == (after > 3)


def test_fill_nodes_leaves_no_cloud_when_physical_holds_the_load() -> None:
    p = plan(make_spec(**{"cloud.fillNodes": True}), 5000.0, forecast(FLAT), state(60))
    assert (p.physical.replicas, p.cloud.replicas) == (50, 0)


@pytest.mark.parametrize(
    ("recs", "expected", "reason"),
    [
        ((Recommendation(NOW - 120, 30),), 30, Reason.STABILIZATION),
        ((Recommendation(NOW - 900, 30),), 20, Reason.RATE_LIMIT),
    ],
    ids=["recent-high-recommendation-holds", "old-recommendation-expired"],
)
def test_scale_down_stabilisation(
    recs: tuple[Recommendation, ...], expected: int, reason: Reason
) -> None:
    """On the way down the highest recommendation of the window holds; older ones are forgotten."""
    spec = make_spec(**{"behavior.scaleDown.limitBy": "Replicas"})
    p = plan(spec, 1000.0, forecast(FLAT), state(30, capacity=100, recs=recs))
    assert p.physical.replicas == expected
    assert p.physical.reason is reason


@pytest.mark.parametrize(
    ("hold", "ready", "load", "after"),
    [
        # 100 replicas asked for, 75 ready (25 cloud starting); the load needs 30 now, 100 was
        # recommended lately.
        pytest.param(True, (60, 15), 3000.0, (60, 40), id="starting-held"),
        pytest.param(False, (60, 15), 3000.0, (60, 15), id="starting-cancelled"),
        pytest.param(False, (60, None), 3000.0, (60, 40), id="readiness-unknown-held"),
        # 38 cloud starting, 62 ready carrying 60 replicas' worth: the rate limit allows 10;
        # the 38 that carry nobody go on top.
        pytest.param(False, (60, 2), 6000.0, (60, 2), id="cancelled-beyond-the-rate-limit"),
    ],
)
def test_hold_starting(
    hold: bool, ready: tuple[int | None, int | None], load: float, after: tuple[int, int]
) -> None:
    """holdStarting: false holds only ready replicas through stabilisation, and cancels the
    ones still starting without counting them against the rate limit."""
    spec = make_spec(**{"behavior.scaleDown.holdStarting": hold})
    recs = (Recommendation(NOW - 120, 100),)
    p = plan(spec, load, forecast(FLAT), state(60, 40, recs=recs, ready=ready))
    assert (p.physical.replicas, p.cloud.replicas) == after
    assert p.total.reason is Reason.STABILIZATION
    assert ("still starting are cancelled" in p.total.message) == (sum(after) < 100)


@pytest.mark.parametrize("hold", [False, True], ids=["cancelling", "holding-starting"])
def test_starting_replicas_of_one_pool_do_not_speed_up_the_other(hold: bool) -> None:
    """10 physical replicas still starting do not let busy cloud replicas go faster: the 90
    ready carry 60 replicas' worth, so 15 cloud replicas may go this minute, not 25; also when
    the starting ones are held (they carry no users either way)."""
    spec = make_spec(**{"behavior.scaleDown.holdStarting": hold})
    p = plan(spec, 6000.0, forecast(FLAT), state(60, 40, ready=(50, 40)))
    assert (p.physical.replicas, p.cloud.replicas) == (60, 25)
    assert p.cloud.reason is Reason.RATE_LIMIT


def test_stabilisation_window_is_trimmed_into_state() -> None:
    """The plan returns only recommendations inside the window, plus its own."""
    recs = (Recommendation(NOW - 900, 30), Recommendation(NOW - 60, 12))
    p = plan(make_spec(), 1000.0, forecast(FLAT), state(12, capacity=100, recs=recs))
    assert [r.at for r in p.recommendations] == [NOW - 60, NOW]


@pytest.mark.parametrize(
    ("limit_by", "load", "after"),
    [
        # 90 replicas, 60 replicas' worth of load: each carries 2/3 of a full one, so 15 of
        # them carry the 10 full replicas' worth of users the limit allows.
        pytest.param("Load", 6000.0, (60, 15), id="load-busy"),
        # 10 replicas' worth of load on 90: removing 80 of them disconnects under 9 replicas'
        # worth, so the plan reaches its target (10, keepWarm off) at once.
        pytest.param("Load", 1000.0, (10, 0), id="load-idle"),
        pytest.param("Replicas", 1000.0, (60, 20), id="replicas"),
        pytest.param("Replicas", 6000.0, (60, 20), id="replicas-busy"),
    ],
)
def test_cloud_removed_first_at_the_rate_limit(
    limit_by: str, load: float, after: tuple[int, int]
) -> None:
    """Scale-down takes cloud replicas first, at most maxReplicasPerMinute, counted as
    limitBy says: by the users the removed replicas carry, or one each."""
    spec = make_spec(**{"behavior.scaleDown.limitBy": limit_by})
    p = plan(spec, load, forecast(FLAT), state(60, 30))
    assert (p.physical.replicas, p.cloud.replicas) == after
    assert p.total.replicas <= 60  # the target has no cloud replica: any left are rate limited
    assert (p.cloud.reason is Reason.RATE_LIMIT) == (after[1] > 0)


def test_load_counted_rate_limit_never_below_the_plain_count() -> None:
    """Replicas fuller than target still go at maxReplicasPerMinute, not slower."""
    spec = make_spec(**{"replicas.max": 70})
    p = plan(spec, 9900.0, forecast(FLAT), state(60, 30))  # 1.1 full replicas' worth each
    assert p.total.replicas == 70
    assert p.cloud.replicas == 20
    assert p.cloud.reason is Reason.RATE_LIMIT


def test_scale_up_rate_limit() -> None:
    """Scale-up adds at most maxReplicasPerMinute."""
    spec = make_spec(**{"behavior.scaleUp.maxReplicasPerMinute": 5})
    p = plan(spec, 3000.0, forecast([3000.0] * 40), state(10, capacity=100))
    assert p.physical.replicas == 15
    assert p.physical.reason is Reason.RATE_LIMIT


def test_lost_physical_capacity_moves_to_cloud_at_once() -> None:
    """When physical nodes fail, physical shrinks to capacity and cloud replaces the loss now."""
    spec = make_spec(**{"behavior.scaleUp.maxReplicasPerMinute": 5})
    p = plan(spec, 6000.0, forecast([6000.0] * 40), state(60, 0, capacity=40))
    assert (p.physical.replicas, p.cloud.replicas) == (40, 20)


def test_reserves_cloud_ahead_of_a_ramp() -> None:
    """A ramp inside the node lead time is reserved with placeholders before pods are needed."""
    ramp = [5000.0] * 4 + [9000.0] * 36
    p = plan(make_spec(), 5000.0, forecast(ramp), state(50, capacity=60))
    assert p.cloud.replicas == 0
    assert p.reserve.replicas == 30
    assert p.placeholders == 30
    assert p.reserve.reason is Reason.FORECAST
    assert "the point forecast needs 90" in p.reserve.message


@pytest.mark.parametrize("fc", [forecast([9000.0] * 40), None], ids=["forecast", "fallback"])
def test_reserves_the_cloud_replicas_the_scale_up_limit_holds_back(fc: Forecast | None) -> None:
    """A spike past the scale-up limit: the replicas it holds back get their nodes now, with or
    without a forecast, while the replicas themselves are added at the limit."""
    spec = make_spec(**{"behavior.scaleUp.maxReplicasPerMinute": 5})
    p = plan(spec, 9000.0, fc, state(60, 0, capacity=60), forecast_problem="no model")
    assert p.cloud.replicas == 5
    assert p.cloud.reason is Reason.RATE_LIMIT
    assert p.reserve.replicas == 30
    assert p.placeholders == 25
    if fc is not None:
        assert p.reserve.reason is Reason.RATE_LIMIT
        assert "25 cloud replicas held back by the scale-up limit" in p.reserve.message


def test_no_reservation_when_disabled() -> None:
    """cloud.reserve false holds no placeholders."""
    ramp = [5000.0] * 4 + [9000.0] * 36
    p = plan(make_spec(**{"cloud.reserve": False}), 5000.0, forecast(ramp), state(50, capacity=60))
    assert p.placeholders == 0
    assert p.reserve.reason is Reason.NOT_RESERVING


def test_fallback_to_reactive_without_forecast() -> None:
    """Without a forecast the plan sizes reactively and names the problem."""
    p = plan(
        make_spec(), 2000.0, None, state(10, capacity=100), forecast_problem="history too short"
    )
    assert p.total.replicas == 20
    assert p.total.reason is Reason.FALLBACK
    assert "history too short" in p.total.message


@pytest.mark.parametrize(
    ("pending", "reserved"),
    [pytest.param(True, 50, id="first-fit-running"), pytest.param(False, 20, id="fit-failed")],
)
def test_a_pending_forecast_keeps_the_reservation(pending: bool, reserved: int) -> None:
    """A restarted operator plans before its first fit ends: the placeholders booked for a ramp
    stay until the forecast comes. A fit that failed lets them go, as a fallback says."""
    p = plan(
        make_spec(),
        8000.0,
        None,
        state(60, 20, reserved=50),
        forecast_problem="the first fit is running",
        forecast_pending=pending,
    )
    assert p.reserve.replicas == reserved
    assert p.reserve.reason is Reason.FALLBACK
    assert p.total.reason is Reason.FALLBACK  # the load needs what runs
    assert ("stay until it comes" in p.reserve.message) == pending


@pytest.mark.parametrize("pending", [True, False], ids=["pending", "fit-failed"])
def test_a_pending_forecast_holds_what_runs(pending: bool) -> None:
    """Restarted during a metrics outage, the operator has no forecast when the load comes
    back, and the outage left only low recommendations in the window. While the forecast is
    on its way, what runs stays (the ramp it was sized for is still ahead); only the load's
    own need is recorded, so that stabilisation is not stretched by the hold once it comes.
    A fit that failed on the model lets the replicas follow the load down."""
    spec = make_spec(**{"behavior.scaleDown.stabilization": "0s"})
    p = plan(
        spec,
        1000.0,
        None,
        state(60, 20, reserved=50),
        forecast_problem="the first fit is running",
        forecast_pending=pending,
    )
    reactive = 10  # 1000 at 100 a replica
    assert p.total.reason is Reason.FALLBACK
    assert p.recommendations[-1].replicas == reactive
    if pending:
        assert (p.total.replicas, p.physical.replicas, p.cloud.replicas) == (80, 60, 20)
        assert "holding 80 replicas until the forecast comes" in p.total.message
    else:
        assert p.total.replicas < 80


def test_a_pending_forecast_keeps_no_more_than_cloud_max_replicas() -> None:
    """A reservation kept for a forecast on its way is still bounded by the spec as it is now."""
    spec = make_spec(**{"cloud.maxReplicas": 30})
    p = plan(spec, 8000.0, None, state(60, 20, reserved=50), forecast_pending=True)
    assert p.reserve.replicas == 30


@pytest.mark.parametrize(
    ("since", "removed"),
    [
        pytest.param(None, 10, id="first-plan"),
        pytest.param(60.0, 10, id="a-loop-ago"),
        pytest.param(600.0, 10, id="long-ago"),
        pytest.param(30.0, 5, id="half-a-loop-ago"),
        pytest.param(3.0, 1, id="an-extra-pass"),
    ],
)
def test_rate_limits_count_the_time_since_the_last_plan(since: float | None, removed: int) -> None:
    """A pass soon after the last one (a watch event, a new leader) gets only the time since:
    maxReplicasPerMinute bounds replicas a minute, not a pass. At least one a pass."""
    spec = make_spec(
        **{"behavior.scaleDown.stabilization": "0s", "behavior.scaleDown.limitBy": "Replicas"}
    )
    recs = () if since is None else (Recommendation(NOW - since, 90),)
    p = plan(spec, 1000.0, forecast(FLAT), state(60, 30, recs=recs))
    assert 90 - (p.physical.replicas + p.cloud.replicas) == removed


def test_stale_forecast_is_not_used() -> None:
    """A forecast that ends before the next pod could start is ignored."""
    p = plan(make_spec(), 2000.0, forecast([9000.0]), state(10, capacity=100))
    assert p.total.reason is Reason.FALLBACK


@pytest.mark.parametrize("age", [600.0, None], ids=["stale-load", "no-load"])
def test_never_scales_down_on_missing_data(age: float | None) -> None:
    """Without a fresh load sample the plan holds every replica and says why."""
    spec = make_spec()
    hist = (
        history(1.0, age=age)
        if age is not None
        else LoadSeries(NOW - 600, 60.0, np.full(10, np.nan))
    )
    p = plan_region(spec, history=hist, forecast=None, state=state(60, 40, reserved=50), now=NOW)
    assert (p.physical.replicas, p.cloud.replicas) == (60, 40)
    assert p.reserve.replicas == 50
    assert p.total.reason is Reason.FALLBACK
    assert p.load is None


def test_a_negative_load_is_no_load_and_never_scales_down() -> None:
    """A query that goes negative (it subtracts, or glitches) is not sized on: sizing on it
    would take the region to replicas.min. The plan holds what runs and says why."""
    p = plan(make_spec(), -500.0, None, state(60, 40, reserved=50), forecast_problem="bad")
    assert (p.physical.replicas, p.cloud.replicas) == (60, 40)
    assert p.reserve.replicas == 50
    assert p.total.reason is Reason.FALLBACK
    assert p.load is None
    assert "negative (-500)" in p.total.message


def test_one_negative_glitch_uses_the_fresh_sample_before_it() -> None:
    """A single negative sample is passed over like a missing one: the one before it is a
    minute older and still fresh, so the plan sizes on it."""
    values = np.full(10, 4000.0)
    values[-1] = -3.0
    hist = LoadSeries(NOW - 60.0 - 540.0, 60.0, values)
    p = plan_region(
        make_spec(), history=hist, forecast=None, state=state(10, capacity=100), now=NOW
    )
    assert p.load == 4000.0
    assert p.total.replicas == 40


def test_an_old_negative_sample_is_reported_as_an_outage() -> None:
    """A negative sample followed by 20 minutes without data: the plan holds, and says how old
    the data is, not that the query is wrong."""
    values = np.concatenate([np.full(5, 4000.0), [-3.0], np.full(20, np.nan)])
    hist = LoadSeries(NOW - 60.0 * 25, 60.0, values)
    p = plan_region(make_spec(), history=hist, forecast=None, state=state(60, 40), now=NOW)
    assert (p.physical.replicas, p.cloud.replicas) == (60, 40)
    assert "old" in p.total.message
    assert "negative" not in p.total.message


def test_forecast_only_plans_but_does_not_act() -> None:
    """ForecastOnly returns the plan with acts False."""
    p = plan(make_spec(mode="ForecastOnly"), 3000.0, forecast(FLAT), state(10, capacity=100))
    assert p.total.replicas == 30
    assert not p.acts


def test_paused_changes_nothing() -> None:
    """Paused keeps every number as it is."""
    p = plan(make_spec(mode="Paused"), 9000.0, forecast(FLAT), state(7, 3, reserved=4))
    assert (p.physical.replicas, p.cloud.replicas, p.reserve.replicas) == (7, 3, 4)
    assert p.total.reason is Reason.PAUSED
    assert p.mode is Mode.PAUSED and not p.acts


def mixed_forecast(level: float, errors: dict[float, int], *, steps: int = 40) -> Forecast:
    """A flat forecast at ``level`` whose past relative errors are ``{error: count}``."""
    column = np.concatenate([np.full(count, 1.0 + error) for error, count in errors.items()])
    actual = np.repeat(column[:, None], steps, axis=1)
    calibration = Calibration.from_forecasts(actual, np.ones_like(actual), scale_floor=0.0)
    return Forecast("test", NOW, 60.0, np.full(steps, level), calibration)


@pytest.mark.parametrize(
    ("spread", "cloud"),
    [(0.08, 0), (0.2, 6)],
    ids=["band-inside-physical-opens-no-node", "band-past-physical-opens-one"],
)
def test_band_certain_to_be_used_opens_a_node(spread: float, cloud: int) -> None:
    """A band every past error reached opens the cloud node it reaches into, and pods fill it."""
    p = plan(make_spec(), 5000.0, forecast([5500.0] * 40, spread=spread), state(60, capacity=60))
    assert (p.cloud.replicas, p.reserve.replicas) == (cloud, 10 if cloud else 0)


def test_rare_spikes_far_above_the_point_buy_no_node() -> None:
    """A q0.95 band made of spikes 7 in 100 forecasts saw is not worth a node held all along."""
    fc = mixed_forecast(3000.0, {0.0: 93, 1.5: 7})
    assert fc.upper(0.95)[0] > 7000.0  # the band itself reaches two nodes past physical
    p = plan(make_spec(), 3000.0, fc, state(60, capacity=60))
    assert (p.cloud.replicas, p.reserve.replicas) == (0, 0)


def test_frequent_excursions_near_capacity_buy_a_node() -> None:
    """Where one forecast in five crossed physical capacity by a node, a node is held for it."""
    fc = mixed_forecast(5500.0, {0.0: 80, 0.3: 20})
    p = plan(make_spec(), 5500.0, fc, state(60, capacity=60))
    assert (p.cloud.replicas, p.reserve.replicas) == (10, 10)


def test_insurance_beyond_the_point_waits_in_placeholders_when_pods_run_below_it() -> None:
    """Nodes held for the band after a node's boot, but not before, are placeholders."""
    path = [5500.0] * 6 + [5800.0] * 34  # the point stays below capacity; the risk rises later
    actual = np.repeat(np.array([1.0] * 80 + [1.3] * 20)[:, None], len(path), axis=1)
    actual[:, :6] = 1.0  # the first minutes never missed
    calibration = Calibration.from_forecasts(actual, np.ones_like(actual), scale_floor=0.0)
    fc = Forecast("test", NOW, 60.0, np.asarray(path), calibration)
    p = plan(make_spec(), 5500.0, fc, state(60, capacity=60))
    assert p.cloud.replicas == 0
    assert p.placeholders == 20  # replicas 61-75 reached one time in five: two nodes
    assert "needs 58 within the node lead time, cloud nodes worth holding bring it to 80" in (
        p.reserve.message
    )


@pytest.mark.parametrize(
    ("quantile", "reserved"), [(0.9, 0), (0.99, 10)], ids=["cheap-insurance", "dear-insurance"]
)
def test_the_quantile_sets_the_price_of_insurance(quantile: float, reserved: int) -> None:
    """Four slots used one time in twenty: worth a node at q0.99, not at q0.9."""
    fc = mixed_forecast(5500.0, {0.0: 95, 0.15: 5})
    p = plan(make_spec(**{"forecast.quantile": quantile}), 5500.0, fc, state(60, capacity=60))
    assert p.reserve.replicas == reserved


def test_a_load_forecast_exactly_buys_no_node_for_rounding() -> None:
    """110 replicas' worth at 5000 each with 10% headroom is 110 replicas, though
    ``110 * 5000 / 1.1`` rounds just below 500000: a forecast that is always exactly right
    holds the five cloud nodes the load needs, not a sixth that is never used."""
    spec = make_spec(**{"load.perReplica": 5000.0, "headroom": 0.1})
    fc = mixed_forecast(500_000.0, {0.0: 100})
    p = plan(spec, 500_000.0, fc, state(60, capacity=60))
    assert p.total.replicas == 110
    assert (p.cloud.replicas, p.reserve.replicas) == (50, 50)


def test_a_longer_node_boot_raises_the_bar() -> None:
    """The boot is paid too: a node worth it with a 5-minute lead is not with a 60-minute one."""
    fc = mixed_forecast(5500.0, {0.0: 90, 0.3: 10}, steps=120)
    quick = plan(make_spec(), 5500.0, fc, state(60, capacity=60))
    slow = plan(make_spec(**{"cloud.nodeLeadTime": "60m"}), 5500.0, fc, state(60, capacity=60))
    assert (quick.reserve.replicas, slow.reserve.replicas) == (10, 0)


def test_band_pods_fill_only_nodes_worth_holding() -> None:
    """Pods run the band on nodes held anyway; a band past them asks for no extra pods."""
    fc = mixed_forecast(6500.0, {0.0: 93, 1.0: 7})
    p = plan(make_spec(), 6500.0, fc, state(60, 5, capacity=60, reserved=10))
    assert fc.upper(0.95)[0] > 10_000.0
    assert p.cloud.replicas == 10  # the point's node, filled; no node for the rare spike
    assert p.reserve.replicas == 10


# Moves between the pools, and capacity that shrinks under replicas that still serve:
# (physical, cloud), capacity, (physical, cloud) ready -> (physical, cloud) planned, for a load
# of 60 replicas' worth.
MOVES = [
    pytest.param((60, 0), 40, (40, 0), (40, 20), id="failed-node-replaced-at-once"),
    pytest.param((60, 0), 40, (60, 0), (60, 5), id="cordoned-node-kept-until-cloud-is-ready"),
    pytest.param((40, 20), 60, (40, 20), (45, 20), id="cloud-kept-until-physical-is-ready"),
    pytest.param((60, 20), 60, (60, 20), (60, 10), id="cloud-goes-once-physical-is-ready"),
]


@pytest.mark.parametrize(("running", "capacity", "ready", "expected"), MOVES)
def test_moves_between_pools_never_drop_ready_replicas_first(
    running: tuple[int, int],
    capacity: int,
    ready: tuple[int, int],
    expected: tuple[int, int],
) -> None:
    """Replicas on a failed node (not ready) are replaced at once; ready ones that a move takes
    away stay until their replacements in the other pool are ready."""
    spec = make_spec(
        **{
            "behavior.scaleUp.maxReplicasPerMinute": 5,
            "behavior.scaleDown.limitBy": "Replicas",
        }
    )
    st = state(*running, capacity=capacity, ready=ready)
    p = plan(spec, 6000.0, forecast([6000.0] * 40), st)
    assert (p.physical.replicas, p.cloud.replicas) == expected


def test_missing_data_does_not_scale_cloud_down_during_a_move() -> None:
    """A stale sample holds the total; moving it back to physical keeps cloud until then."""
    p = plan(make_spec(), 6000.0, None, state(40, 20, ready=(40, 20)), age=900.0)
    assert p.total.reason is Reason.FALLBACK
    assert p.cloud.replicas == 20
    assert "until the physical replicas replacing them are ready" in p.cloud.message


def test_hold_starting_false_counts_starting_replicas_within_capacity() -> None:
    """With 20 of 60 physical replicas above a capacity of 40 and not ready, only those are
    lost: the 40 ready ones go at the scale-down rate, not 30 at once."""
    spec = make_spec(
        **{
            "behavior.scaleDown.holdStarting": False,
            "behavior.scaleDown.limitBy": "Replicas",
        }
    )
    p = plan(spec, 1000.0, forecast([1000.0] * 40), state(60, capacity=40, ready=(40, 0)))
    assert p.physical.replicas == 30


def test_stabilisation_does_not_recreate_lost_replicas() -> None:
    """Replicas lost with a failed node are not held by stabilisation on cloud."""
    recs = (Recommendation(NOW - 120.0, 60),)
    p = plan(
        make_spec(),
        3000.0,
        forecast([3000.0] * 40),
        state(60, capacity=40, ready=(40, 0), recs=recs),
    )
    assert (p.physical.replicas, p.cloud.replicas) == (40, 0)


def test_a_non_finite_forecast_falls_back() -> None:
    path = [5000.0] * 40
    path[1] = float("nan")
    p = plan(make_spec(), 5000.0, forecast(path), state(50))
    assert p.total.reason is Reason.FALLBACK
    assert p.forecast_problem == "the forecast holds non-finite values"


def test_a_load_too_large_to_count_is_capped_not_a_crash() -> None:
    p = plan(make_spec(), 1.7e308, None, state(50))
    assert p.total.replicas == 400
    assert p.total.reason is Reason.MAX


def test_headroom_applies_to_the_forecast() -> None:
    """The forecast's need carries ``headroom`` too, not only the reactive floor."""
    p = plan(make_spec(headroom=0.1), 3000.0, forecast([5000.0] * 40), state(30))
    assert p.total.reason is Reason.FORECAST
    assert p.total.replicas == 55


def test_forecast_peak_is_the_upper_quantile() -> None:
    """The peak reported in status is the band's, the capacity the plan provisions toward."""
    p = plan(make_spec(), 5000.0, forecast([5000.0] * 40, spread=0.2), state(50))
    assert p.forecast_peak == pytest.approx(6000.0)


def test_stabilisation_never_raises_above_what_runs() -> None:
    """A high recommendation in the window holds what runs; it does not add replicas."""
    recs = (Recommendation(NOW - 60.0, 80),)
    p = plan(make_spec(), 2000.0, forecast([2000.0] * 40), state(40, recs=recs))
    assert p.total.reason is Reason.STABILIZATION
    assert p.total.replicas == 40


def test_a_ramp_beyond_the_node_window_reserves_nothing_yet() -> None:
    """A certain rise 20 minutes ahead is beyond a node's boot, pod start and the 10 minutes
    that value it: nothing is paid for it yet."""
    path = [5000.0] * 20 + [9000.0] * 40
    p = plan(make_spec(), 5000.0, forecast(path), state(50))
    assert p.reserve.replicas == 0


@pytest.mark.parametrize(
    ("sample_step", "middle"),
    [(60.0, 480.0), (300.0, 600.0), (15.0, 457.5)],
    ids=["minutes", "one-sample-buckets", "15-second-samples"],
)
def test_the_forecast_path_passes_through_the_middle_of_each_bucket_s_samples(
    sample_step: float, middle: float
) -> None:
    """A 5-minute bucket labelled 600 is the mean of the samples up to 600: with minutes,
    those at 360..600, whose middle is 480, not 450 (the middle of 300..600)."""
    times = np.array([300.0, 600.0, 900.0])
    values = np.array([10.0, 20.0, 30.0])
    at_middle = _window_max(times, values, 300.0, middle, middle, sample_step=sample_step)
    assert at_middle == pytest.approx(20.0)


def test_a_recommendation_dated_ahead_of_now_grants_one_loop_once() -> None:
    """A recommendation from a clock an hour ahead (a former leader's) is dated now: the first
    pass gets a whole loop, the next one five seconds later only its own five seconds."""
    spec = make_spec(
        **{"behavior.scaleDown.limitBy": "Replicas", "behavior.scaleDown.stabilization": "0s"}
    )
    ahead = (Recommendation(NOW + 3600, 10),)
    first = plan(spec, 1000.0, forecast(FLAT), state(60, 30, recs=ahead))
    assert first.physical.replicas + first.cloud.replicas == 80
    assert max(r.at for r in first.recommendations) == NOW
    second = plan_region(
        spec,
        history=history(1000.0),
        forecast=forecast(FLAT),
        state=state(first.physical.replicas, first.cloud.replicas, recs=first.recommendations),
        now=NOW + 5,
    )
    assert second.physical.replicas + second.cloud.replicas == 79


def test_a_recommendation_dated_ahead_of_now_leaves_the_window_a_window_later() -> None:
    """Stabilisation holds a future-dated high recommendation one window from now, no longer."""
    spec = make_spec(**{"behavior.scaleDown.limitBy": "Replicas"})
    ahead = (Recommendation(NOW + 3600, 90),)
    first = plan(spec, 1000.0, forecast(FLAT), state(60, 30, recs=ahead))
    assert first.total.replicas == 90 and first.total.reason is Reason.STABILIZATION
    later = plan_region(
        spec,
        history=history(1000.0, age=60.0 - 660.0),
        forecast=None,
        forecast_problem="none",
        state=state(60, 30, recs=first.recommendations),
        now=NOW + 660,
    )
    assert later.total.replicas < 90


def test_stabilisation_never_holds_above_a_lowered_replicas_max() -> None:
    """replicas.max lowered to 50 while 80 run and 80 was recommended two minutes ago: the
    held total is cut to 50, as it is on a stale sample."""
    spec = make_spec(**{"replicas.max": 50, "behavior.scaleDown.limitBy": "Replicas"})
    recs = (Recommendation(NOW - 120, 80),)
    p = plan(spec, 1000.0, forecast(FLAT), state(60, 20, recs=recs))
    assert p.total.replicas == 50 and p.total.reason is Reason.STABILIZATION


def test_a_move_between_pools_keeps_no_replica_that_is_not_ready() -> None:
    """40 physical ready, 20 cloud replicas whose node still boots, a load of 50 replicas'
    worth: the physical pool takes it, and the cloud replicas, which serve nobody, go."""
    spec = make_spec(**{"behavior.scaleDown.holdStarting": False})
    p = plan(spec, 5000.0, forecast([5000.0] * 40), state(40, 20, ready=(40, 0)))
    assert (p.physical.replicas, p.cloud.replicas) == (50, 0)


# Rules the table tests above leave open: each case names the rule it pins down.


def sampled(values: list[float], *, step: float = 60.0, age: float = 0.0) -> LoadSeries:
    """A history of ``values`` ``step`` apart whose last slot is ``age`` seconds old."""
    return LoadSeries(NOW - age - step * (len(values) - 1), step, np.asarray(values, dtype=float))


def forecast_from(origin: float, path: list[float], *, step: float = 60.0) -> Forecast:
    """A forecast made at ``origin`` (an earlier fit) whose band is its point."""
    point = np.asarray(path, dtype=float)
    calibration = Calibration.from_forecasts(
        np.ones((50, point.size)), np.ones((50, point.size)), scale_floor=0.0
    )
    return Forecast("test", origin, step, point, calibration)


def lead_forecast(path: list[float], errors: list[float]) -> Forecast:
    """A forecast from ``NOW`` every past forecast of which missed step ``i`` by ``errors[i]``
    (relative): its band is certain, and differs with the lead time."""
    point = np.asarray(path, dtype=float)
    actual = np.repeat(1.0 + np.asarray(errors)[None, :], 50, axis=0)
    calibration = Calibration.from_forecasts(actual, np.ones_like(actual), scale_floor=0.0)
    return Forecast("test", NOW, 60.0, point, calibration)


@pytest.mark.parametrize(
    ("overrides", "reach", "fit_step", "max_horizon"),
    [
        # A pod's start, a loop, a node's boot (5m) and its least hold (10m): 17m, under 30m.
        pytest.param({}, 1800.0, 300.0, 3600.0, id="horizon"),
        pytest.param({"cloud.nodeLeadTime": "60m"}, 4320.0, 300.0, 5220.0, id="node-boot"),
        pytest.param({"forecast.horizon": "2h"}, 7200.0, 300.0, 8100.0, id="long-horizon"),
        pytest.param({"load.step": "10m"}, 1800.0, 600.0, 3600.0, id="coarse-load-step"),
    ],
)
def test_the_forecaster_reaches_as_far_as_the_planner_reads(
    overrides: dict[str, Any], reach: float, fit_step: float, max_horizon: float
) -> None:
    """The planner reads the horizon, or a node's boot and least hold after a pod start and a
    loop, whichever is longer; the forecaster is fitted at max(5m, load.step) and calibrated
    that far plus a refit's age (15m), an hour at least."""
    spec = make_spec(**overrides)
    assert forecast_reach(spec) == reach
    forecaster = forecaster_for(spec)
    assert (forecaster.fit_step, forecaster.max_horizon) == (fit_step, max_horizon)


@pytest.mark.parametrize(
    ("load", "headroom", "replicas"),
    [
        # 3000 * 1.1 / 100 is 33.000000000000007 in floating point: 33 replicas, not 34.
        pytest.param(3000.0, 0.1, 33, id="exact-with-headroom"),
        pytest.param(3000.5, 0.0, 31, id="a-fraction-above"),
        pytest.param(-500.0, 0.0, 0, id="below-zero-needs-none"),
    ],
)
def test_replicas_for_counts_whole_replicas(load: float, headroom: float, replicas: int) -> None:
    """A load of exactly n replicas' worth needs n, a hair more needs n + 1, none needs none."""
    assert replicas_for(load, make_spec(headroom=headroom)) == replicas


@pytest.mark.parametrize(
    ("values", "start", "end", "sample_step", "highest"),
    [
        # The path's highest point inside the window, above both its ends.
        pytest.param([10.0, 20.0, 10.0], 350.0, 800.0, 300.0, 20.0, id="peak-inside"),
        # What the path did before the window (a fit some minutes old) is not read.
        pytest.param([50.0, 10.0, 10.0], 650.0, 800.0, 300.0, 10.0, id="before-the-window"),
        # Samples coarser than the step: each bucket is one sample, at its own time.
        pytest.param([10.0, 20.0, 30.0], 600.0, 600.0, 600.0, 20.0, id="coarse-samples"),
    ],
)
def test_the_window_reads_the_path_inside_it(
    values: list[float], start: float, end: float, sample_step: float, highest: float
) -> None:
    times = np.array([300.0, 600.0, 900.0])
    got = _window_max(times, np.asarray(values), 300.0, start, end, sample_step=sample_step)
    assert got == pytest.approx(highest)


NAN = float("nan")


@pytest.mark.parametrize(
    ("values", "step", "load"),
    [
        pytest.param([3000.0] * 9 + [4000.0], 60.0, 4000.0, id="the-newest"),
        pytest.param([3000.0] * 8 + [5000.0, -3.0], 60.0, 5000.0, id="the-one-before-a-glitch"),
        pytest.param([3000.0] * 9 + [float("inf")], 60.0, 3000.0, id="infinity-is-no-sample"),
        # Among the last 32 samples (5 s apart: fresh), no further back.
        pytest.param([NAN] * 9 + [4000.0] + [NAN] * 30, 5.0, 4000.0, id="the-31st-newest"),
        pytest.param([NAN] * 8 + [4000.0] + [NAN] * 31, 5.0, 4000.0, id="the-32nd-newest"),
        pytest.param([NAN] * 7 + [4000.0] + [NAN] * 32, 5.0, None, id="not-the-33rd"),
        pytest.param([4000.0] + [NAN] * 9, 5.0, 4000.0, id="the-first-of-a-short-history"),
    ],
)
def test_the_load_is_the_newest_finite_sample(
    values: list[float], step: float, load: float | None
) -> None:
    p = plan_region(
        make_spec(),
        history=sampled(values, step=step),
        forecast=None,
        state=state(10, capacity=100),
        now=NOW,
    )
    assert p.load == load
    if load is None:
        assert p.total.message.startswith("no load sample: holding 10 replicas")


@pytest.mark.parametrize(
    ("values", "age", "message"),
    [
        pytest.param([2000.0], 300.0, "load 2000 needs 20 now", id="exactly-stale-after-is-fresh"),
        pytest.param(
            [-7.0],
            300.0,
            "the last load sample is negative (-7), no load: the query is wrong: holding 30 "
            "replicas, never scaling down on missing data",
            id="negative-exactly-stale-after",
        ),
        pytest.param(
            [2000.0],
            900.0,
            "the last load sample is 900s old: holding 30 replicas, never scaling down on "
            "missing data",
            id="stale",
        ),
    ],
)
def test_a_sample_is_fresh_up_to_stale_after(values: list[float], age: float, message: str) -> None:
    """A sample older than stale_after (300 s) is stale; one exactly that old is not."""
    p = plan_region(
        make_spec(),
        history=sampled([NAN] * 3 + values, age=age),
        forecast=forecast(FLAT),
        state=state(30, capacity=100),
        now=NOW,
    )
    assert p.total.message == message


@pytest.mark.parametrize(
    ("overrides", "load", "st", "reason"),
    [
        # Exactly replicas.min, exactly replicas.max, exactly the forecast: the load's own reason.
        pytest.param({"replicas.min": 10}, 1000.0, state(10), Reason.REACTIVE_FLOOR, id="min"),
        pytest.param({"replicas.max": 30}, 3000.0, state(30), Reason.REACTIVE_FLOOR, id="max"),
        pytest.param({}, 1000.0, state(10), Reason.REACTIVE_FLOOR, id="forecast-equal-to-load"),
        # The recent recommendations are no higher than this one: nothing is held.
        pytest.param(
            {},
            2000.0,
            state(30, recs=(Recommendation(NOW - 60, 20),)),
            Reason.REACTIVE_FLOOR,
            id="window-no-higher",
        ),
    ],
)
def test_a_bound_reached_exactly_is_not_the_reason(
    overrides: dict[str, Any], load: float, st: RegionState, reason: Reason
) -> None:
    """A bound or a rule that changes nothing is not named: the total keeps its own reason, and
    a replicas.max the plan reaches exactly cuts nothing it wants."""
    spec = make_spec(**{"behavior.scaleDown.limitBy": "Replicas", **overrides})
    p = plan(spec, load, forecast([load] * 40), st)
    assert p.total.replicas == replicas_for(load, spec)
    assert p.total.reason is reason
    assert (p.capacity_limited, p.capacity_limit) == (None, None)


def test_keep_warm_is_not_the_reason_when_the_load_fills_the_pool() -> None:
    p = plan(make_spec(**{"physical.keepWarm": True}), 6000.0, forecast([6000.0] * 40), state(60))
    assert p.physical.replicas == 60
    assert p.physical.reason is Reason.REACTIVE_FLOOR


def test_keep_warm_stays_within_replicas_max() -> None:
    """keepWarm fills the physical pool up to replicas.max, not past it."""
    spec = make_spec(**{"physical.keepWarm": True, "replicas.max": 40})
    p = plan(spec, 1000.0, forecast(FLAT), state(40))
    assert (p.physical.replicas, p.physical.reason) == (40, Reason.KEEP_WARM)


def test_cloud_max_replicas_reached_exactly_is_not_exhausted() -> None:
    p = plan(make_spec(**{"cloud.maxReplicas": 20}), 8000.0, forecast([8000.0] * 40), state(60, 20))
    assert p.cloud.replicas == 20
    assert p.cloud.reason is Reason.PHYSICAL_CAPACITY_EXHAUSTED
    assert p.capacity_limited is None


def test_the_forecast_message_names_its_numbers() -> None:
    """The window read is a pod's start plus one loop: two minutes with the default settings."""
    p = plan(make_spec(), 1000.0, forecast([2000.0] * 40), state(20))
    assert p.total.message == "forecast q0.95 of 2000 by 120s from now needs 20"


@pytest.mark.parametrize(
    ("path", "total"),
    [
        # A rise at the window's end (120 s) is read, one a minute later is not yet.
        pytest.param([1000.0, 3000.0] + [3000.0] * 38, 30, id="rise-at-the-window-end"),
        pytest.param([1000.0] * 2 + [3000.0] * 38, 10, id="rise-after-the-window"),
    ],
)
def test_the_forecast_is_read_over_a_pod_start_and_a_loop(path: list[float], total: int) -> None:
    p = plan(make_spec(), 1000.0, forecast(path), state(10, capacity=100))
    assert p.total.replicas == total


def test_a_forecast_of_no_steps_is_no_forecast() -> None:
    """Dated ahead, a forecast with no step passes the check of its reach: it is refused by
    name and the plan falls back, instead of an interpolation over nothing raising."""
    empty = dataclasses.replace(forecast([1.0]), point=np.empty(0), origin=NOW + 600)
    p = plan(make_spec(), 2000.0, empty, state(10, capacity=100))
    assert (p.total.replicas, p.total.reason) == (20, Reason.FALLBACK)
    assert p.total.message == "reactive sizing for load 2000: the forecast holds no steps"


def test_a_missing_forecast_is_named_when_no_problem_is_given() -> None:
    p = plan(make_spec(), 2000.0, None, state(10, capacity=100))
    assert p.forecast_problem == "no forecast"
    assert p.total.message == "reactive sizing for load 2000: no forecast"


def test_missing_load_still_rises_to_the_forecast() -> None:
    """Without a fresh sample the plan holds what runs, and still adds what the forecast
    needs above it."""
    p = plan(make_spec(), 0.0, forecast([5000.0] * 40), state(30), age=900.0)
    assert (p.total.replicas, p.total.reason) == (50, Reason.FALLBACK)
    assert "holding 50 replicas" in p.total.message


def test_an_outage_records_what_the_forecast_asks_not_what_it_holds() -> None:
    """During a metric outage the plan holds the 50 that run but records only the forecast's
    10, as the HPA records nothing without its metric; once the load is back and the last
    high recommendation is a window old, the plan comes down instead of holding 50 for a
    window more."""
    spec = make_spec(**{"behavior.scaleDown.limitBy": "Replicas"})
    recs = (Recommendation(NOW - 590, 50),)
    held = plan(spec, 0.0, forecast(FLAT), state(50, capacity=100, recs=recs), age=900.0)
    assert (held.total.replicas, held.total.reason) == (50, Reason.FALLBACK)
    assert held.recommendations[-1] == Recommendation(NOW, 10)
    back = plan_region(
        spec,
        history=LoadSeries(NOW + 60 - 600.0, 60.0, np.full(10, 1000.0)),
        forecast=forecast(FLAT),
        state=state(50, capacity=100, recs=held.recommendations),
        now=NOW + 60,
    )
    assert (back.physical.replicas, back.physical.reason) == (40, Reason.RATE_LIMIT)


def test_missing_load_holds_nothing_when_nothing_runs_and_min_is_zero() -> None:
    p = plan(make_spec(**{"replicas.min": 0}), 0.0, None, state(0), age=900.0)
    assert (p.total.replicas, p.physical.replicas, p.cloud.replicas) == (0, 0, 0)
    assert p.total.reason is Reason.FALLBACK


@pytest.mark.parametrize(
    ("physical_max", "capacity", "physical", "cloud"),
    [
        pytest.param(80, 60, 60, 20, id="max-above-the-nodes-capacity"),
        pytest.param(None, 0, 0, 30, id="no-physical-capacity"),
    ],
)
def test_physical_capacity_is_the_lower_of_the_nodes_and_physical_max(
    physical_max: int | None, capacity: int, physical: int, cloud: int
) -> None:
    spec = make_spec(**{"physical.maxReplicas": physical_max})
    load = 100.0 * (physical + cloud)
    p = plan(spec, load, forecast([load] * 40), state(physical, cloud, capacity=capacity))
    assert (p.physical_capacity, p.physical.replicas, p.cloud.replicas) == (
        capacity,
        physical,
        cloud,
    )


def test_one_cloud_replica_fills_its_node() -> None:
    p = plan(make_spec(**{"cloud.fillNodes": True}), 6100.0, forecast([6100.0] * 40), state(60))
    assert (p.physical.replicas, p.cloud.replicas) == (60, 10)


def test_a_forecast_beyond_physical_and_cloud_max_is_capacity_limited() -> None:
    """The point forecast wants 75, more than physical capacity and cloud.maxReplicas hold:
    the plan asks for it and says what holds it back. The band above the point stays off the
    cloud node cloud.maxReplicas cannot hold."""
    spec = make_spec(**{"cloud.maxReplicas": 5})
    p = plan(spec, 6000.0, forecast([7500.0] * 40, spread=0.1), state(60, 5))
    assert (p.total.replicas, p.total.reason) == (75, Reason.FORECAST)
    assert (p.physical.replicas, p.cloud.replicas) == (60, 5)
    assert p.capacity_limit is Reason.CLOUD_CAPACITY_EXHAUSTED
    assert p.capacity_limited == (
        "75 replicas wanted, physical capacity 60 plus cloud.maxReplicas 5 hold 65"
    )


def test_a_cloud_max_short_of_a_whole_node_bounds_the_band() -> None:
    """cloud.maxReplicas 25: the band's third node is held only as far as the 25th replica."""
    spec = make_spec(**{"cloud.maxReplicas": 25})
    p = plan(spec, 8000.0, forecast([8000.0] * 40, spread=0.125), state(60, 20))
    assert (p.physical.replicas, p.cloud.replicas, p.total.replicas) == (60, 25, 85)
    assert p.reserve.replicas == 25


def test_the_band_runs_on_the_physical_pool_when_no_cloud_node_is_worth_it() -> None:
    """Rare spikes buy no cloud node, but the physical pool is paid for: the band runs there."""
    fc = mixed_forecast(3000.0, {0.0: 93, 1.5: 7})
    p = plan(make_spec(), 3000.0, fc, state(60, capacity=60))
    assert (p.total.replicas, p.total.reason) == (60, Reason.FORECAST)
    assert (p.physical.replicas, p.cloud.replicas) == (60, 0)


def test_a_forecast_covering_exactly_the_pod_window_is_used() -> None:
    """Two minute steps reach a pod's start plus one loop: enough to plan on."""
    p = plan(make_spec(), 1000.0, forecast([3000.0, 3000.0]), state(10, capacity=100))
    assert (p.total.replicas, p.total.reason) == (30, Reason.FORECAST)


@pytest.mark.parametrize(
    ("spike", "peak", "peak_at"),
    [
        # The forecast was made two minutes ago; the horizon is 30 minutes from now.
        pytest.param(1, 1000.0, NOW + 60, id="bucket-ending-now-is-past"),
        pytest.param(31, 5000.0, NOW + 1800, id="last-bucket-of-the-horizon"),
        pytest.param(32, 1000.0, NOW + 60, id="first-bucket-past-the-horizon"),
    ],
)
def test_the_reported_peak_is_within_the_horizon_from_now(
    spike: int, peak: float, peak_at: float
) -> None:
    path = [1000.0] * 40
    path[spike] = 5000.0
    p = plan(make_spec(), 1000.0, forecast_from(NOW - 120, path), state(10, capacity=100))
    assert (p.forecast_peak, p.forecast_peak_at) == (peak, peak_at)


@pytest.mark.parametrize(
    ("errors", "total", "cloud", "reserved"),
    [
        # The band crosses capacity by two replicas for the first three minutes, then not
        # until minute 11: worth a node once booted (placeholders), not one now.
        pytest.param([0.12] * 3 + [0.0] * 8 + [0.2] * 29, 60, 0, 10, id="later-risk-waits"),
        # Across capacity from the start: the node is worth holding now, and pods fill it.
        pytest.param([0.2] * 40, 66, 6, 10, id="risk-now-runs"),
    ],
)
def test_band_pods_run_only_on_nodes_worth_holding_now(
    errors: list[float], total: int, cloud: int, reserved: int
) -> None:
    """A node is worth holding for the coming minutes when the band's expected use over a
    pod's start and the hold reaches 1 - q of it; pods run the band only on such nodes, and a
    node worth holding only once a new one would be booted waits in placeholders."""
    p = plan(make_spec(), 5500.0, lead_forecast([5500.0] * 40, errors), state(60))
    assert (p.total.replicas, p.cloud.replicas, p.reserve.replicas) == (total, cloud, reserved)


def test_the_band_runs_on_cloud_nodes_a_point_ramp_buys() -> None:
    """The point forecast rises to 80 in four minutes: its two cloud nodes are bought
    regardless, so the band above the point (75 for the next two minutes) runs on them now."""
    path = [5000.0] * 3 + [8000.0] * 2 + [5000.0] * 35
    p = plan(make_spec(), 5000.0, lead_forecast(path, [0.5] * 2 + [0.0] * 38), state(60))
    assert (p.total.replicas, p.physical.replicas, p.cloud.replicas) == (75, 60, 15)
    assert p.reserve.replicas == 20


def test_a_node_whose_use_reaches_its_price_exactly_is_held() -> None:
    """q0.75: a node is worth it when it serves 1/4 of what it is paid for. Four of its ten
    slots are used all along, 4 x 600 s of the 10 x 960 s paid (a 5-minute boot, a pod start,
    the 10-minute hold): exactly a quarter, which reaches the price."""
    spec = make_spec(**{"forecast.quantile": 0.75})
    p = plan(spec, 5000.0, lead_forecast([5000.0] * 40, [0.28] * 40), state(60))
    assert (p.total.replicas, p.cloud.replicas, p.reserve.replicas) == (64, 4, 10)


@pytest.mark.parametrize(
    ("spikes", "reserved"),
    [
        # Ten slots used 7.75% of the 600 s each: 465 replica-seconds, under 5% of 9600.
        pytest.param(31, 0, id="just-below-the-price"),
        # 8.5%: 510, above it.
        pytest.param(34, 10, id="just-above-the-price"),
    ],
)
def test_a_node_is_paid_from_its_request_to_the_end_of_its_hold(spikes: int, reserved: int) -> None:
    """A cloud node asked for now is paid through its boot (5 minutes), a pod's start on it
    (1 minute) and the 10-minute hold: 960 s for each of its 10 slots."""
    fc = mixed_forecast(5500.0, {0.0: 400 - spikes, 0.27: spikes})
    p = plan(make_spec(), 5500.0, fc, state(60))
    assert p.reserve.replicas == reserved


@pytest.mark.parametrize(
    ("ready", "after"),
    [
        # The physical pool's readiness unknown: every replica is held, as with both unknown.
        pytest.param((None, 15), (60, 40), id="physical-readiness-unknown-held"),
    ],
)
def test_hold_starting_needs_both_pools_readiness(
    ready: tuple[int | None, int | None], after: tuple[int, int]
) -> None:
    spec = make_spec(**{"behavior.scaleDown.holdStarting": False})
    recs = (Recommendation(NOW - 120, 100),)
    p = plan(spec, 3000.0, forecast(FLAT), state(60, 40, recs=recs, ready=ready))
    assert (p.physical.replicas, p.cloud.replicas) == after
    assert p.total.reason is Reason.STABILIZATION
    assert "cancelled" not in p.total.message


def test_physical_replicas_still_starting_are_cancelled_too() -> None:
    """holdStarting false: 20 physical replicas still starting are not held by a recent
    recommendation of 80; the 60 ready ones are."""
    spec = make_spec(**{"behavior.scaleDown.holdStarting": False})
    recs = (Recommendation(NOW - 120, 80),)
    p = plan(spec, 3000.0, forecast(FLAT), state(60, 20, capacity=100, recs=recs, ready=(40, 20)))
    assert (p.total.replicas, p.total.reason) == (60, Reason.STABILIZATION)
    assert "60 are ready, the ones still starting are cancelled" in p.total.message


def test_physical_replicas_starting_are_cancelled_while_the_cloud_drains() -> None:
    """holdStarting false: physical replicas still starting are cancelled at once, outside the
    rate limit, even while the cloud pool is still being drained at it. They were kept until
    the cloud reached its target (60 physical where 50 are ready; found by mutation testing)."""
    spec = make_spec(
        **{"behavior.scaleDown.holdStarting": False, "behavior.scaleDown.limitBy": "Replicas"}
    )
    p = plan(spec, 1000.0, forecast(FLAT), state(60, 30, capacity=100, ready=(50, 30)))
    assert (p.physical.replicas, p.cloud.replicas) == (50, 20)
    assert p.cloud.reason is Reason.RATE_LIMIT


def test_stabilisation_names_the_highest_recommendation_and_what_it_holds() -> None:
    """The message gives the window's highest recommendation (80), and the count held when what
    runs (40) is below it; it gave 40 as the highest recommendation."""
    recs = (Recommendation(NOW - 60.0, 80),)
    p = plan(make_spec(), 2000.0, forecast([2000.0] * 40), state(40, recs=recs))
    assert (p.total.replicas, p.total.reason) == (40, Reason.STABILIZATION)
    assert p.total.message.startswith("highest recommendation of the last 600s is 80;"), (
        p.total.message
    )
    assert "holding the 40 that run" in p.total.message


def test_stabilisation_says_nothing_is_cancelled_when_nothing_starts() -> None:
    recs = (Recommendation(NOW - 60.0, 80),)
    p = plan(make_spec(), 2000.0, forecast([2000.0] * 40), state(40, recs=recs))
    assert (p.total.replicas, p.total.reason) == (40, Reason.STABILIZATION)
    assert "cancelled" not in p.total.message


def test_a_recommendation_a_whole_window_old_is_forgotten() -> None:
    spec = make_spec(**{"behavior.scaleDown.limitBy": "Replicas"})
    recs = (Recommendation(NOW - 600, 30),)
    p = plan(spec, 1000.0, forecast(FLAT), state(30, capacity=100, recs=recs))
    assert (p.physical.replicas, p.physical.reason) == (20, Reason.RATE_LIMIT)
    assert [r.at for r in p.recommendations] == [NOW]


@pytest.mark.parametrize(
    ("st", "hold", "after"),
    [
        # More replicas ready than asked for (a rollout's surge): none is starting, the plan
        # removes them at the rate limit as if exactly as many were ready.
        pytest.param(state(60, capacity=100, ready=(65, 0)), False, (50, 0), id="physical-surge"),
        pytest.param(state(60, 30, ready=(60, 35)), False, (60, 20), id="cloud-surge"),
        # Readiness unknown and capacity down to 40: the 20 above it are lost, the 40 left go
        # at the rate limit (none counts as starting).
        pytest.param(state(60, capacity=40), False, (30, 0), id="lost-readiness-unknown"),
        # 10 physical replicas still starting are cancelled at once, the ready ones at the rate.
        pytest.param(
            state(60, capacity=100, ready=(50, 0)), False, (40, 0), id="physical-starting"
        ),
    ],
)
def test_scale_down_counts_only_ready_replicas_against_the_rate_limit(
    st: RegionState, hold: bool, after: tuple[int, int]
) -> None:
    spec = make_spec(
        **{"behavior.scaleDown.holdStarting": hold, "behavior.scaleDown.limitBy": "Replicas"}
    )
    p = plan(spec, 1000.0, forecast(FLAT), st)
    assert (p.physical.replicas, p.cloud.replicas) == after


@pytest.mark.parametrize(
    "ready",
    [
        pytest.param((30, 0), id="some-starting"),
        pytest.param((45, 0), id="more-ready-than-asked"),
    ],
)
def test_physical_replicas_within_capacity_are_not_lost(ready: tuple[int, int]) -> None:
    """40 physical replicas, capacity 60: replicas still starting are on nodes that hold them,
    not lost, and 45 ready (a rollout's surge) are not 45 running; the pool grows from 40 at
    the scale-up limit."""
    spec = make_spec(**{"behavior.scaleUp.maxReplicasPerMinute": 5})
    p = plan(spec, 6000.0, forecast([6000.0] * 40), state(40, capacity=60, ready=ready))
    assert (p.physical.replicas, p.cloud.replicas) == (45, 0)


def test_starting_cloud_replicas_do_not_speed_up_the_rate_limit() -> None:
    """10 cloud replicas still starting (held: holdStarting true) carry no users: the 90 ready
    carry 60 replicas' worth, so 15 may go this minute, not 16."""
    p = plan(make_spec(), 6000.0, forecast(FLAT), state(60, 40, ready=(60, 30)))
    assert (p.physical.replicas, p.cloud.replicas) == (60, 25)


def test_load_counted_rate_limit_never_below_the_plain_count_when_few_are_ready() -> None:
    """5 ready replicas carry 1 replica's worth: the budget is still 10, not the 5 that carry
    anything (25 cloud replicas starting, held, count against it)."""
    p = plan(make_spec(), 100.0, forecast([100.0] * 40), state(5, 30, ready=(5, 0)))
    assert (p.physical.replicas, p.cloud.replicas) == (5, 20)


def test_load_counted_rate_limit_is_exact_with_headroom() -> None:
    """Headroom 0.1: 2400 is 26.4 full replicas' worth over 66 replicas, so 25 of them carry
    the 10 the limit allows, though 10 * 66 / 26.4 is 24.999999999999996 in floating point."""
    p = plan(make_spec(headroom=0.1), 2400.0, forecast(FLAT), state(66, capacity=100))
    assert p.physical.replicas == 66 - 25


@pytest.mark.parametrize(
    ("recs", "removed"),
    [
        pytest.param((Recommendation(NOW - 45, 90),), 7, id="three-quarters-of-a-minute"),
        pytest.param((Recommendation(NOW, 90),), 0, id="a-pass-at-the-same-instant"),
        pytest.param(
            (Recommendation(NOW - 600, 90), Recommendation(NOW - 30, 90)), 5, id="the-latest-pass"
        ),
    ],
)
def test_scale_down_limit_counts_whole_replicas_since_the_last_plan(
    recs: tuple[Recommendation, ...], removed: int
) -> None:
    """10 a minute: 7.5 in 45 s is 7; the last plan is the latest one; a pass at the same
    instant as the last crosses no tick of the limit and removes none."""
    spec = make_spec(
        **{"behavior.scaleDown.stabilization": "0s", "behavior.scaleDown.limitBy": "Replicas"}
    )
    p = plan(spec, 1000.0, forecast(FLAT), state(60, 30, recs=recs))
    assert 90 - (p.physical.replicas + p.cloud.replicas) == removed


@pytest.mark.parametrize(
    ("since", "added"),
    [
        pytest.param(None, 10, id="first-plan"),
        pytest.param(30.0, 5, id="half-a-loop-ago"),
        pytest.param(45.0, 7, id="three-quarters"),
        # NOW is 1.7e9 s: a tick of 10 a minute (every 6 s) falls 2 s before it.
        pytest.param(3.0, 1, id="an-extra-pass-across-a-tick"),
        pytest.param(1.0, 0, id="an-extra-pass-within-a-tick"),
        pytest.param(0.0, 0, id="same-instant"),
    ],
)
def test_scale_up_limit_counts_whole_replicas_since_the_last_plan(
    since: float | None, added: int
) -> None:
    """maxReplicasPerMinute bounds replicas added a minute, not a pass: a pass under a
    replica's worth adds one only across a tick of the limit (10 a minute: one every 6 s)."""
    spec = make_spec(**{"behavior.scaleUp.maxReplicasPerMinute": 10})
    recs = () if since is None else (Recommendation(NOW - since, 10),)
    p = plan(spec, 6000.0, forecast([6000.0] * 40), state(10, capacity=100, recs=recs))
    assert p.physical.replicas - 10 == added


@pytest.mark.parametrize("direction", ["up", "down"])
@pytest.mark.parametrize("loop", [1.0, 10.0, 25.0, 45.0])
def test_a_fast_loop_keeps_to_the_limit_per_minute(direction: str, loop: float) -> None:
    """Passes every ``loop`` seconds for ten minutes at 1 replica a minute up and 1 down:
    each minute's passes move at most 2 replicas (the limit, and one tick a pass may cross
    into), and the ten minutes 10 or 11, however many passes there were."""
    spec = make_spec(
        **{
            "behavior.scaleDown.stabilization": "0s",
            "behavior.scaleDown.limitBy": "Replicas",
            "behavior.scaleDown.maxReplicasPerMinute": 1,
            "behavior.scaleUp.maxReplicasPerMinute": 1,
        }
    )
    physical = 50 if direction == "down" else 10
    load = 0.0 if direction == "down" else 6000.0
    settings = PlannerSettings(loop_interval=loop)
    recs: tuple[Recommendation, ...] = ()
    counts = [physical]
    for i in range(int(600 / loop)):
        now = NOW + i * loop
        p = plan_region(
            spec,
            history=LoadSeries(now - 540.0, 60.0, np.full(10, load)),
            forecast=None,
            state=state(physical, capacity=60, recs=recs),
            now=now,
            settings=settings,
        )
        physical, recs = p.physical.replicas, p.recommendations
        counts.append(physical)
    per_pass = int(60 / loop)
    minutes = [abs(counts[i + per_pass] - counts[i]) for i in range(len(counts) - per_pass)]
    assert max(minutes) <= 2
    assert abs(counts[-1] - counts[0]) in (10, 11)


def test_a_pass_that_may_add_none_keeps_the_cloud_replicas_it_would_replace() -> None:
    """A pass a second after the last may add no replica (10 a minute: no tick in between):
    the physical replica that would replace the cloud ones is held back, so the cloud keeps
    what the plan needs until it comes, instead of leaving the region with none."""
    spec = make_spec(
        **{"replicas.min": 1, "replicas.max": 1, "behavior.scaleUp.maxReplicasPerMinute": 10}
    )
    recs = (Recommendation(NOW - 1, 1),)  # NOW is 1.7e9: the last tick of 10 a minute 2 s ago
    p = plan(spec, 0.0, None, state(0, 5, capacity=1, recs=recs, ready=(0, 5)))
    assert (p.physical.replicas, p.physical.reason) == (0, Reason.RATE_LIMIT)
    assert p.cloud.replicas == 1


@pytest.mark.parametrize(
    ("overrides", "st", "load", "after"),
    [
        # 5 cloud replicas go first, the 5 left of the budget of 10 from the physical pool.
        pytest.param({}, state(60, 5), 4000.0, (55, 0), id="physical-gets-what-cloud-left"),
        pytest.param({}, state(60, 10), 4000.0, (60, 0), id="cloud-takes-the-whole-budget"),
        # A cordoned node's 20 ready replicas above capacity leave at the rate limit; the 10
        # cloud replicas still starting are cancelled, which costs the budget nothing.
        pytest.param(
            {"behavior.scaleDown.holdStarting": False},
            state(80, 20, ready=(80, 10)),
            7500.0,
            (70, 15),
            id="cancelled-cloud-cost-nothing",
        ),
    ],
)
def test_scale_down_budget_is_shared_cloud_first(
    overrides: dict[str, Any], st: RegionState, load: float, after: tuple[int, int]
) -> None:
    spec = make_spec(**{"behavior.scaleDown.limitBy": "Replicas", **overrides})
    p = plan(spec, load, forecast([load] * 40), st)
    assert (p.physical.replicas, p.cloud.replicas) == after


@pytest.mark.parametrize(
    ("physical", "after"),
    [
        pytest.param(58, (60, 3), id="cloud-gets-what-physical-left"),
        pytest.param(55, (60, 0), id="physical-takes-the-whole-budget"),
    ],
)
def test_scale_up_budget_is_shared_physical_first(physical: int, after: tuple[int, int]) -> None:
    spec = make_spec(**{"behavior.scaleUp.maxReplicasPerMinute": 5})
    p = plan(spec, 8000.0, forecast([8000.0] * 40), state(physical))
    assert (p.physical.replicas, p.cloud.replicas) == after


# More moves, with their load and bounds: (physical, cloud), capacity, ready, load, bounds ->
# (physical, cloud) planned, and the pool kept until its replacements are ready (if any).
MORE_MOVES = [
    # Cloud held back by the scale-up limit: the ready physical ones stay, up to the plan's 80
    # but never above what runs.
    pytest.param((60, 0), 40, (60, 0), 8000.0, {}, (60, 5), "physical", id="kept-no-more-than-run"),
    pytest.param((60, 5), 40, (60, 5), 6000.0, {}, (55, 10), "physical", id="ready-cloud-count"),
    pytest.param((60, 0), 40, (60, 0), 5500.0, {}, (55, 5), "physical", id="kept-to-the-plan"),
    pytest.param((60, 0), 40, (60, 0), 5000.0, {}, (50, 5), None, id="rate-limit-keeps-enough"),
    pytest.param((30, 10), 60, (30, 10), 6000.0, {}, (35, 10), "cloud", id="cloud-never-grows"),
    pytest.param((30, 10), 60, (30, 15), 6000.0, {}, (35, 10), "cloud", id="cloud-surge"),
    pytest.param((40, 20), 60, (40, 10), 6000.0, {}, (45, 15), "cloud", id="plan-total-kept"),
    pytest.param((50, 20), 60, (50, 20), 6000.0, {}, (55, 10), None, id="rate-limit-keeps-cloud"),
    # Lowered pool bounds: replicas above them go at the scale-down rate, wanted or not.
    pytest.param(
        (60, 30), 60, (60, 30), 9000.0, {"cloud.maxReplicas": 10}, (60, 20), None, id="cloud-max"
    ),
    pytest.param(
        (60, 5), 40, (60, 5), 6500.0, {"cloud.maxReplicas": 5}, (50, 5), None, id="cordoned"
    ),
]


@pytest.mark.parametrize(
    ("running", "capacity", "ready", "load", "bounds", "expected", "kept"), MORE_MOVES
)
def test_moves_keep_ready_replicas_and_no_more(
    running: tuple[int, int],
    capacity: int,
    ready: tuple[int, int],
    load: float,
    bounds: dict[str, int],
    expected: tuple[int, int],
    kept: str | None,
) -> None:
    """A move keeps the ready replicas it takes away until their replacements are ready, and
    never fewer than the plan's total less the other pool's new count; never more than run,
    nor more than the plan needs; a pool whose rate limit keeps enough says so."""
    spec = make_spec(
        **{
            "behavior.scaleUp.maxReplicasPerMinute": 5,
            "behavior.scaleDown.limitBy": "Replicas",
            **bounds,
        }
    )
    p = plan(spec, load, forecast([load] * 40), state(*running, capacity=capacity, ready=ready))
    assert (p.physical.replicas, p.cloud.replicas) == expected
    assert ("until the cloud replicas" in p.physical.message) == (kept == "physical")
    assert ("until the physical replicas" in p.cloud.message) == (kept == "cloud")
    if kept == "physical":
        assert p.physical.message == (
            f"keeping {expected[0]} ready physical replicas until the cloud replicas replacing "
            "them are ready"
        )


@pytest.mark.parametrize(
    ("st", "load", "kwargs", "reserved", "stays"),
    [
        # Rate limited down to 20 cloud replicas without a forecast: they stay reserved.
        pytest.param(state(60, 30), 1000.0, {}, 20, False, id="fallback-cloud-still-running"),
        # No forecast pending (the default): the reservation goes down to what runs.
        pytest.param(state(60, 20, reserved=50), 8000.0, {}, 20, False, id="not-pending"),
        pytest.param(
            state(60, 20, reserved=10),
            8000.0,
            {"forecast_pending": True},
            20,
            False,
            id="pending-below-what-runs",
        ),
        pytest.param(
            state(60, 40, reserved=50), 0.0, {"age": 900.0}, 50, False, id="stale-not-pending"
        ),
    ],
)
def test_a_fallback_reservation_holds_what_runs(
    st: RegionState, load: float, kwargs: dict[str, Any], reserved: int, stays: bool
) -> None:
    """Without a forecast the reservation is never below the cloud replicas that run; it
    keeps more only for a forecast on its way, or while the load is missing, and says the
    reservation stays only when it keeps one above them for a forecast on its way."""
    spec = make_spec(**{"behavior.scaleDown.limitBy": "Replicas"})
    p = plan(spec, load, None, st, forecast_problem="no model", **kwargs)
    assert p.reserve.replicas == reserved
    assert p.reserve.reason is Reason.FALLBACK
    assert ("stay until it comes" in p.reserve.message) == stays


def test_no_reservation_beyond_the_cloud_replicas_says_so() -> None:
    p = plan(make_spec(), 8000.0, forecast([8000.0] * 40), state(60, 20))
    assert p.reserve == Decision(
        20, Reason.PHYSICAL_CAPACITY_EXHAUSTED, "no capacity beyond the cloud replicas is needed"
    )


def test_a_ramp_beyond_what_the_scale_up_limit_holds_back_is_reserved_for() -> None:
    """The limit holds back 25 cloud replicas, and the point forecast needs 120 within a node's
    lead time: the reservation is the forecast's 60, not the 30 held back."""
    spec = make_spec(**{"behavior.scaleUp.maxReplicasPerMinute": 5})
    ramp = [9000.0] * 3 + [12000.0] * 37
    p = plan(spec, 9000.0, forecast(ramp), state(60))
    assert p.cloud.replicas == 5
    assert (p.reserve.replicas, p.reserve.reason) == (60, Reason.FORECAST)
    assert p.reserve.message == (
        "the point forecast needs 120 within the node lead time; 55 held by placeholders"
    )


def test_the_reservation_stays_within_cloud_max_replicas() -> None:
    ramp = [9000.0] * 3 + [12000.0] * 37
    p = plan(make_spec(**{"cloud.maxReplicas": 40}), 9000.0, forecast(ramp), state(60, 30))
    assert (p.cloud.replicas, p.reserve.replicas) == (30, 40)


def test_a_ramp_reservation_names_its_numbers() -> None:
    ramp = [5000.0] * 4 + [9000.0] * 36
    p = plan(make_spec(), 5000.0, forecast(ramp), state(50, capacity=60))
    assert p.reserve.message == (
        "the point forecast needs 90 within the node lead time; 30 held by placeholders"
    )


def test_placeholders_and_bursting_count_from_the_state() -> None:
    """A paused region with nothing reserved holds no placeholders, and one cloud replica is
    bursting."""
    st = RegionState(physical_replicas=7, cloud_replicas=1, physical_capacity=60)
    p = plan(make_spec(mode="Paused"), 9000.0, forecast(FLAT), st)
    assert (p.reserve.replicas, p.placeholders, p.bursting) == (0, 0, True)
    assert not plan(make_spec(), 1000.0, forecast(FLAT), state(10)).bursting


def test_starting_counts_replicas_asked_for_and_not_ready() -> None:
    """More ready than asked for (a rollout's surge) is none starting, not fewer than none."""
    st = RegionState(60, 30, 100, physical_ready=65, cloud_ready=25)
    assert st.starting == (0, 5)
    assert RegionState(60, 30, 100, physical_ready=65).starting is None


@pytest.mark.parametrize(
    ("bound", "reserved"),
    [
        pytest.param(50, 0, id="replicas-max-below-the-pool"),
        pytest.param(80, 20, id="replicas-max-20-above-it"),
        pytest.param(400, 30, id="replicas-max-far-above"),
    ],
)
def test_no_cloud_is_reserved_that_replicas_max_would_never_let_run(
    bound: int, reserved: int
) -> None:
    """A ramp to 90 replicas' worth past a pool of 60: placeholders boot nodes only for the
    cloud replicas replicas.max lets run beside the pool, or none where it is below the pool."""
    ramp = [5000.0] * 4 + [9000.0] * 36
    p = plan(make_spec(**{"replicas.max": bound}), 5000.0, forecast(ramp), state(50, capacity=60))
    assert p.reserve.replicas == reserved
    assert p.placeholders == reserved


@pytest.mark.parametrize(
    ("age", "recs", "reason"),
    [
        pytest.param(60.0, (Recommendation(NOW - 120.0, 100),), Reason.STABILIZATION, id="stab"),
        pytest.param(900.0, (), Reason.FALLBACK, id="missing-load"),
    ],
)
def test_cloud_max_below_what_runs_but_not_what_is_wanted_limits_nothing(
    age: float, recs: tuple[Recommendation, ...], reason: Reason
) -> None:
    """100 run (60 physical, 40 cloud), cloud.maxReplicas was lowered to 10 and the load
    wants 20: the bound cuts the cloud replicas held, as the cloud's reason says, but not what
    the load wants, so the plan is not capacity limited (as with a lowered replicas.max)."""
    spec = make_spec(**{"cloud.maxReplicas": 10})
    p = plan(spec, 2000.0, None, state(60, 40, recs=recs), age=age, forecast_problem="none")
    assert p.total.reason is reason
    assert (p.capacity_limit, p.capacity_limited) == (None, None)
    if reason is Reason.STABILIZATION:  # without load they leave at the rate limit, as said
        assert p.cloud.reason is Reason.CLOUD_CAPACITY_EXHAUSTED
        assert p.cloud.message.startswith("100 replicas held, physical capacity 60 plus")
    else:
        assert p.cloud.reason is Reason.RATE_LIMIT


def test_cloud_max_below_what_is_wanted_while_more_is_held_names_what_is_wanted() -> None:
    """Stabilisation holds 100, the load wants 90 and cloud.maxReplicas is 10: limited, by
    what is wanted."""
    spec = make_spec(**{"cloud.maxReplicas": 10})
    recs = (Recommendation(NOW - 120.0, 100),)
    p = plan(spec, 9000.0, None, state(60, 40, recs=recs), forecast_problem="none")
    assert p.capacity_limit is Reason.CLOUD_CAPACITY_EXHAUSTED
    assert p.capacity_limited is not None
    assert p.capacity_limited.startswith("90 replicas wanted, physical capacity 60 plus")


def test_a_window_of_zero_holds_no_recommendation_dated_ahead_of_now() -> None:
    """With stabilization: 0s, a recommendation a second ahead (a former leader's clock) holds
    nothing, as one made now holds nothing."""
    spec = make_spec(**{"behavior.scaleDown.stabilization": "0s"})
    for at in (NOW, NOW + 1.0, NOW + 3600.0):
        st = state(60, 20, recs=(Recommendation(at, 80),))
        p = plan(spec, 2000.0, None, st, forecast_problem="none")
        assert p.total.replicas == 20 and p.total.reason is Reason.FALLBACK
        assert [r.at for r in p.recommendations] == [NOW]


@pytest.mark.parametrize("per_node", [1, 3, 10])
@pytest.mark.parametrize("level", [8000.0, 30_000.0, 60_000.0])
def test_the_nodes_worth_holding_do_not_depend_on_how_many_are_weighed_at_once(
    monkeypatch: pytest.MonkeyPatch, per_node: int, level: float
) -> None:
    """Blocks of four that then double (up to 4,096 slots) hold the nodes one call weighing
    every node up to the ceiling holds: a node's expected use never rises from one node to the
    next, so the first under the price is the same."""
    from controller import planner

    spec = make_spec(
        **{"cloud.replicasPerNode": per_node, "cloud.maxReplicas": 5000, "replicas.max": 10_000}
    )
    errors = {-0.3: 20, 0.0: 40, 0.4: 20, 1.0: 12, 3.0: 8}

    def plans() -> tuple[int, int, int]:
        p = plan(spec, level, mixed_forecast(level, errors), state(60, capacity=60))
        return p.cloud.replicas, p.reserve.replicas, p.total.replicas

    doubling = plans()
    monkeypatch.setattr(planner, "_NODES_PER_BLOCK", 10**6)  # one call, every node at once
    assert plans() == doubling
    assert doubling[1] > 4 * per_node * 2  # the plan weighed more than two blocks
