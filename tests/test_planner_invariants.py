"""Invariants of the planner, checked on seeded random regions.

Distilled from a randomised review of :func:`controller.planner.plan_region`: a throwaway
harness drew some 11,000 specs, loads, states and forecasts (none, stubs, NaN, fitted) and
planned each several ways, and closed loops fed each plan back as the next state at a
constant load. What it checked is kept here as a fast, deterministic net: ``CASES`` regions
drawn from ``SEED`` are planned once, and each test checks one rule the planner's docstring,
the spec or the README promises on every one of them. A failure names the rule, the case
(``_draw(index)`` rebuilds it) and the numbers that break it.

The review's four findings each have a test here: placeholders for cloud replicas
``replicas.max`` never lets run (the reservation's ceiling), CapacityLimited for replicas
held rather than wanted, a zero stabilisation window holding a recommendation dated ahead
(the window and the total's reason), and a ``load.perReplica`` below a millionth (refused by
the spec; the sample plans at exactly that minimum).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import itertools
import math
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import pydantic
import pytest

from controller.planner import (
    Decision,
    Plan,
    PlannerSettings,
    Reason,
    Recommendation,
    RegionState,
    plan_region,
    replicas_for,
    target_per_replica,
)
from controller.spec import MAX_REPLICAS, MIN_PER_REPLICA, GatewayAutoscalerSpec, LimitBy, Mode
from forecasts.base import Forecast
from forecasts.registry import create
from forecasts.series import LoadSeries
from tests.forecast_series import flat, seasonal
from tests.test_planner import NOW, forecast, make_spec, mixed_forecast, state

SEED = 20261130
#: Regions drawn for the single-plan invariants, and closed loops of ``LOOP_STEPS`` plans.
CASES = 1200
LOOPS = 120
LOOP_STEPS = 30
#: Violations quoted in a failure message.
QUOTED = 5
BIG = MAX_REPLICAS

T = TypeVar("T")
Inputs = tuple[LoadSeries, Forecast | None, RegionState]


def _pick(rng: np.random.Generator, options: Sequence[T]) -> T:
    return options[int(rng.integers(len(options)))]


@functools.cache
def _fitted() -> tuple[Forecast, ...]:
    """Seasonal-naive forecasts fitted on three days of per-minute load (a real calibration)."""
    out = []
    for history in (seasonal(days=3, step=60.0, seed=3), flat(days=3, level=50.0, step=60.0)):
        model = create("seasonal-naive", fit_step=300.0, max_horizon=7200.0).fit(history)
        out.append(model.forecast(history, horizon=7200.0))
    return tuple(out)


@dataclass(frozen=True)
class Case:
    """One drawn region: the planner's inputs, and the overrides of ``make_spec`` they came
    from (to plan the same region in another mode or without rate limits)."""

    index: int
    overrides: dict[str, Any]
    spec: GatewayAutoscalerSpec
    history: LoadSeries
    forecast: Forecast | None
    state: RegionState
    now: float
    settings: PlannerSettings
    forecast_problem: str | None
    forecast_pending: bool
    summary: str

    def inputs(self) -> Inputs:
        """Copies of the inputs: a plan that changed them would change no other plan."""
        return copy.deepcopy((self.history, self.forecast, self.state))

    def plan(self, spec: GatewayAutoscalerSpec | None = None, inputs: Inputs | None = None) -> Plan:
        history, fc, st = self.inputs() if inputs is None else inputs
        return plan_region(
            self.spec if spec is None else spec,
            history=history,
            forecast=fc,
            state=st,
            now=self.now,
            settings=self.settings,
            forecast_problem=self.forecast_problem,
            forecast_pending=self.forecast_pending,
        )

    def respec(self, **changes: Any) -> GatewayAutoscalerSpec:
        return make_spec(**{**self.overrides, **changes})


def _draw_spec(rng: np.random.Generator) -> dict[str, Any]:
    """``make_spec`` overrides for a region in Scale mode (the modes are checked by replanning
    the same region)."""
    top = _pick(rng, [1, 2, 5, 20, 60, 150, 400, 400, 1000, 1000, BIG, BIG])
    low = _pick(rng, [0, 1, 1, int(rng.integers(0, top + 1)) if top < BIG else 3, top])
    overrides: dict[str, Any] = {
        "mode": "Scale",
        "replicas": {"min": min(low, top), "max": top},
        "headroom": _pick(rng, [0.0, 0.1, 0.25, 1.0, 4.0, float(rng.uniform(0, 4))]),
        # The least perReplica the spec accepts is drawn too (below it: the spec test).
        "load.perReplica": _pick(rng, [100.0, 1.0, MIN_PER_REPLICA, 1e6, 37.3]),
        "physical.keepWarm": bool(rng.random() < 0.5),
        "cloud.maxReplicas": _pick(rng, [0, 0, 5, 25, 100, 200, 300, BIG]),
        "cloud.replicasPerNode": _pick(rng, [1, 1, 3, 10, 10, 32, 110]),
        "cloud.nodeLeadTime": _pick(rng, ["0s", "30s", "2m", "5m", "15m", "60m"]),
        "cloud.reserve": bool(rng.random() < 0.7),
        "cloud.fillNodes": bool(rng.random() < 0.5),
        "forecast.model": _pick(rng, ["seasonal-naive", "auto", "holt-winters"]),
        "forecast.quantile": _pick(rng, [0.5000001, 0.6, 0.75, 0.9, 0.95, 0.99, 0.999999]),
        "forecast.horizon": _pick(rng, ["5m", "30m", "2h"]),
        "behavior.scaleDown.stabilization": _pick(rng, ["0s", "30s", "1m", "5m", "10m", "30m"]),
        "behavior.scaleDown.maxReplicasPerMinute": _pick(rng, [1, 2, 5, 10, 100, BIG]),
        "behavior.scaleDown.limitBy": _pick(rng, ["Load", "Replicas"]),
        "behavior.scaleDown.holdStarting": bool(rng.random() < 0.5),
        "behavior.scaleUp.maxReplicasPerMinute": _pick(rng, [1, 3, 5, 10, 100, BIG]),
    }
    if rng.random() < 0.3:
        overrides["physical.maxReplicas"] = int(rng.integers(0, 250))
    return overrides


def _draw_settings(rng: np.random.Generator) -> PlannerSettings:
    if rng.random() < 0.8:
        return PlannerSettings()
    return PlannerSettings(
        loop_interval=_pick(rng, [15.0, 30.0, 60.0, 120.0, 300.0]),
        pod_ready=_pick(rng, [0.0, 10.0, 60.0, 180.0]),
        stale_after=_pick(rng, [60.0, 300.0, 900.0]),
        node_hold=_pick(rng, [0.0, 60.0, 600.0, 1200.0]),
    )


def _ready(rng: np.random.Generator, asked: int) -> int | None:
    """Replicas ready of ``asked``: unknown, all, or any number (a surge may exceed it)."""
    draw = rng.random()
    if draw < 0.4:
        return None
    return asked if draw < 0.6 else int(rng.integers(0, asked + 4))


def _history(rng: np.random.Generator, load: float, now: float) -> tuple[LoadSeries, str]:
    """Samples of ``load``, some of them missing, negative, huge or old; and what was drawn."""
    size = _pick(rng, [1, 2, 10, 40])
    step = _pick(rng, [60.0, 60.0, 15.0, 300.0])
    age = _pick(rng, [0.0, 30.0, 60.0, 60.0, 60.0, 299.0, 300.0, 301.0, 900.0, -60.0])
    kind = _pick(
        rng, ["normal"] * 6 + ["nan", "negative", "allnan", "inf", "huge", "tiny", "empty"]
    )
    values = np.full(size, load)
    if rng.random() < 0.3:
        values = values * rng.uniform(0.5, 1.5, size)
    if kind == "nan":
        values[-1] = np.nan
    elif kind == "negative":
        values[-1] = -5.0
    elif kind == "allnan":
        values[:] = np.nan
    elif kind == "inf":
        values[-1] = np.inf
    elif kind == "huge":
        values[-1] = 1e300
    elif kind == "tiny":
        values[-1] = 1e-300
    elif kind == "empty":
        values = np.empty(0)
    start = now - age - step * max(0, values.size - 1)
    drawn = f"history {kind} x{values.size} at {step:g}s {age:g}s old"
    return LoadSeries(start, step, values), drawn


def _forecast(
    rng: np.random.Generator, kind: str, per: float, now: float, load_replicas: float
) -> Forecast | None:
    """A stub forecast (flat, ramp, spike or drop; a band from one error or a mix of them),
    one holding a NaN, one too short to use, or None."""
    if kind not in ("stub", "mixed", "nan", "short"):
        return None
    steps = 1 if kind == "short" else _pick(rng, [40, 40, 3, 200])
    level = _pick(rng, [load_replicas, float(rng.uniform(0, 300)), 0.0]) * per
    to = float(rng.uniform(0, 400)) * per
    shape = _pick(rng, ["flat", "ramp", "spike", "drop"])
    path = np.full(steps, level)
    if shape == "ramp":
        path = np.linspace(level, to, steps)
    elif shape == "spike" and steps > 3:
        path[steps // 4 : steps // 4 + 2] = to
    elif shape == "drop":
        path[steps // 3 :] = to
    if kind == "nan":
        path[min(1, steps - 1)] = np.nan
    step = _pick(rng, [60.0, 300.0])
    origin = now - _pick(rng, [0.0, 0.0, 60.0, 600.0])
    # Errors for the first leads only, the last reused beyond (as a calibration may be): a
    # row a lead is what a cold plan spends its time on.
    leads = min(steps, 12)
    if kind == "mixed":
        errors = {
            _pick(rng, [0.0, -0.2]): int(rng.integers(50, 400)),
            _pick(rng, [0.3, 1.5, 20.0]): int(rng.integers(1, 100)),
        }
        fc = mixed_forecast(0.0, errors, steps=leads)
    else:
        fc = forecast([0.0] * leads, step=step, spread=_pick(rng, [0.0, 0.1, 0.5, 3.0]))
    return dataclasses.replace(fc, origin=origin, point=path, step=step)


def _draw(index: int) -> Case:
    """Case ``index`` of the sample: the same region on every run."""
    rng = np.random.default_rng([SEED, index])
    overrides = _draw_spec(rng)
    settings = _draw_settings(rng)
    now = NOW + _pick(rng, [0.0, 0.5, 17.0, 3600.0 * 24 * 365])
    fc_kind = _pick(rng, ["none", "none", "stub", "stub", "stub", "stub", "mixed", "nan", "short"])
    fc_kind = "fitted" if rng.random() < 0.08 else fc_kind
    fitted = _fitted()[int(rng.integers(len(_fitted())))]
    if fc_kind == "fitted":
        # perReplica puts the fitted forecast's level at a few to a few hundred replicas.
        headroom = float(overrides["headroom"])
        replicas = _pick(rng, [1.0, 20.0, 70.0, 250.0])
        overrides["load.perReplica"] = float(np.mean(fitted.point)) * (1 + headroom) / replicas
        now = fitted.origin + _pick(rng, [0.0, 30.0, 120.0, 1200.0, 7000.0])
    spec = make_spec(**overrides)
    per = target_per_replica(spec)

    capacity = _pick(rng, [0, 1, 10, 60, 100, 200, int(rng.integers(0, 201))])
    physical = _pick(
        rng,
        [
            0,
            capacity,
            int(rng.integers(0, capacity + 1)),
            capacity + int(rng.integers(1, 40)),  # a pool that lost nodes
            int(rng.integers(0, 300)),
        ],
    )
    cloud_max = min(spec.cloud.max_replicas, 400)
    cloud = _pick(
        rng,
        [
            0,
            0,
            int(rng.integers(0, cloud_max + 1)),
            cloud_max + int(rng.integers(1, 30)),  # above a lowered cloud.maxReplicas
            int(rng.integers(0, 400)),
        ],
    )
    ready = (_ready(rng, physical), _ready(rng, cloud))
    reserved = _pick(rng, [0, cloud, int(rng.integers(0, 400))])
    recs = []
    for _ in range(_pick(rng, [0, 0, 1, 2, 4])):
        when = rng.random()
        if when < 0.7:
            at = now - float(rng.uniform(0, 2400))
        elif when < 0.85:
            at = now - _pick(rng, [0.0, 1.0, 30.0, 60.0, 600.0])
        else:
            at = now + float(rng.uniform(0, 3600))  # another leader's clock ahead
        recs.append(
            Recommendation(at, _pick(rng, [0, physical + cloud, int(rng.integers(0, 500))]))
        )
    st = state(
        physical,
        cloud,
        capacity=capacity,
        reserved=reserved,
        recs=tuple(sorted(recs, key=lambda r: r.at)),
        ready=ready,
    )

    load_replicas = _pick(
        rng,
        [
            0.0,
            float(rng.uniform(0, 50)),
            float(rng.uniform(0, 50)),
            float(rng.uniform(0, 300)),
            float(rng.integers(0, 300)),
            5e3,
        ],
    )
    history, drawn_history = _history(rng, load_replicas * per, now)
    fc = fitted if fc_kind == "fitted" else _forecast(rng, fc_kind, per, now, load_replicas)
    problem = _pick(rng, [None, "no model"]) if fc is None else None
    pending = bool(rng.random() < 0.2) if fc is None else False
    summary = (
        f"case {index} (_draw({index})): load {load_replicas:.4g} replicas' worth, "
        f"{drawn_history}; forecast {fc_kind}{', pending' if pending else ''}; "
        f"running {physical} physical (ready {ready[0]}, capacity {capacity}) + {cloud} cloud "
        f"(ready {ready[1]}), reserved {reserved}, {len(recs)} recommendations; "
        f"replicas {spec.replicas.min}..{spec.replicas.max}, physical.maxReplicas "
        f"{spec.physical.max_replicas}, cloud.maxReplicas {spec.cloud.max_replicas}, "
        f"keepWarm {spec.physical.keep_warm}, fillNodes {spec.cloud.fill_nodes} "
        f"x{spec.cloud.replicas_per_node}, reserve {spec.cloud.reserve}, window "
        f"{spec.behavior.scale_down.stabilization.total_seconds():g}s"
    )
    return Case(index, overrides, spec, history, fc, st, now, settings, problem, pending, summary)


@dataclass(frozen=True)
class Outcome:
    case: Case
    plan: Plan | None
    error: str | None
    #: The inputs the plan was made from, as it left them.
    inputs: Inputs


@pytest.fixture(scope="module")
def outcomes() -> list[Outcome]:
    out = []
    for index in range(CASES):
        case = _draw(index)
        inputs = case.inputs()
        try:
            out.append(Outcome(case, case.plan(inputs=inputs), None, inputs))
        except Exception:
            out.append(Outcome(case, None, traceback.format_exc(limit=4), inputs))
    return out


def _planned(outcomes: list[Outcome]) -> Iterator[tuple[Case, Plan]]:
    for outcome in outcomes:
        if outcome.plan is not None:
            yield outcome.case, outcome.plan


def _check(
    outcomes: list[Outcome], rule: str, problems: Callable[[Case, Plan], Iterator[str]]
) -> None:
    """Assert ``rule`` holds for every planned case: ``problems`` yields what breaks it."""
    broken = [
        f"{case.summary}\n    -> {problem}"
        for case, plan in _planned(outcomes)
        for problem in problems(case, plan)
    ]
    assert not broken, f"{rule}: broken {len(broken)} times, first:\n" + "\n".join(broken[:QUOTED])


def _numbers(plan: Plan) -> str:
    return (
        f"plan total {plan.total.replicas} ({plan.total.reason}), physical "
        f"{plan.physical.replicas} ({plan.physical.reason}), cloud {plan.cloud.replicas} "
        f"({plan.cloud.reason}), reserve {plan.reserve.replicas} ({plan.reserve.reason})"
    )


def _capacity(case: Case) -> int:
    """The physical pool's capacity: the nodes', capped by physical.maxReplicas."""
    return max(0, _capacity_of(case.spec, case.state.physical_capacity))


def _live(case: Case) -> tuple[int, int, int]:
    """Physical replicas lost (above capacity and not ready), the physical ones left, and the
    total left: physical replicas above capacity that are ready still carry users."""
    st = case.state
    over = max(0, st.physical_replicas - _capacity(case))
    lost = (
        over if st.physical_ready is None else min(over, st.physical_replicas - st.physical_ready)
    )
    lost = max(0, lost)
    live_physical = st.physical_replicas - lost
    return lost, live_physical, live_physical + st.cloud_replicas


def _expected_load(case: Case) -> float | None:
    """The newest of the last 32 samples that is a load (finite, not negative), if fresh."""
    values = case.history.values
    for i in range(values.size - 1, max(-1, values.size - 33), -1):
        value = float(values[i])
        if math.isfinite(value) and value >= 0:
            at = case.history.start + i * case.history.step
            return value if case.now - at <= case.settings.stale_after else None
    return None


def _rate_limited(plan: Plan) -> bool:
    return Reason.RATE_LIMIT in (plan.physical.reason, plan.cloud.reason)


def _decisions(plan: Plan) -> dict[str, Decision]:
    return {
        "total": plan.total,
        "physical": plan.physical,
        "cloud": plan.cloud,
        "reserve": plan.reserve,
    }


def _same(a: object, b: object) -> bool:
    """Equal, field by field, arrays by value (NaN equal to NaN), caches left out."""
    if isinstance(a, np.ndarray):
        return (
            isinstance(b, np.ndarray)
            and a.shape == b.shape
            and bool(np.array_equal(a, b, equal_nan=a.dtype.kind == "f"))
        )
    if dataclasses.is_dataclass(a) and not isinstance(a, type):
        return type(a) is type(b) and all(
            _same(getattr(a, f.name), getattr(b, f.name))
            for f in dataclasses.fields(a)
            if f.compare
        )
    if isinstance(a, tuple | list):
        return (
            isinstance(b, type(a))
            and len(a) == len(b)
            and all(_same(x, y) for x, y in zip(a, b, strict=True))
        )
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def test_every_case_plans_without_an_exception(outcomes: list[Outcome]) -> None:
    failed = [f"{o.case.summary}\n{o.error}" for o in outcomes if o.error is not None]
    assert not failed, f"{len(failed)} cases raised, first:\n" + "\n".join(failed[:QUOTED])


def test_counts_are_non_negative_integers(outcomes: list[Outcome]) -> None:
    def problems(case: Case, plan: Plan) -> Iterator[str]:
        for name, decision in _decisions(plan).items():
            if type(decision.replicas) is not int or decision.replicas < 0:
                yield f"{name} is {decision.replicas!r}"
        if plan.placeholders < 0:
            yield f"placeholders {plan.placeholders}"

    _check(outcomes, "every count is an int of at least 0", problems)


def test_every_reason_is_a_reason_member(outcomes: list[Outcome]) -> None:
    def problems(case: Case, plan: Plan) -> Iterator[str]:
        for name, decision in _decisions(plan).items():
            if not isinstance(decision.reason, Reason):
                yield f"{name} reason {decision.reason!r}"
            if not isinstance(decision.message, str) or not decision.message:
                yield f"{name} message {decision.message!r}"
        if plan.capacity_limit is not None and not isinstance(plan.capacity_limit, Reason):
            yield f"capacity_limit {plan.capacity_limit!r}"

    _check(outcomes, "reasons are Reason members, with a message", problems)


def test_physical_stays_within_its_capacity(outcomes: list[Outcome]) -> None:
    """Within the pool's capacity; ready replicas already above a lowered capacity (a cordoned
    node) leave at the scale-down rate, and then say RateLimit."""

    def problems(case: Case, plan: Plan) -> Iterator[str]:
        capacity = _capacity(case)
        _, live_physical, _ = _live(case)
        physical = plan.physical
        if plan.physical_capacity != capacity:
            yield f"physical_capacity {plan.physical_capacity}, expected {capacity}"
        # Ready replicas above a lowered capacity leave at the scale-down rate (rule 6).
        if physical.replicas > capacity and (
            physical.replicas > live_physical or physical.reason is not Reason.RATE_LIMIT
        ):
            yield f"physical {physical.replicas} above capacity {capacity}: {_numbers(plan)}"

    _check(outcomes, "physical replicas stay within capacity", problems)


def test_cloud_stays_within_cloud_max_replicas(outcomes: list[Outcome]) -> None:
    """Within cloud.maxReplicas; replicas already running above a lowered bound leave at the
    scale-down rate, and then say RateLimit."""

    def problems(case: Case, plan: Plan) -> Iterator[str]:
        bound, cloud = case.spec.cloud.max_replicas, plan.cloud
        # Replicas above a lowered cloud.maxReplicas leave at the scale-down rate (rule 6).
        if cloud.replicas > bound and (
            cloud.replicas > case.state.cloud_replicas or cloud.reason is not Reason.RATE_LIMIT
        ):
            yield f"cloud {cloud.replicas} above cloud.maxReplicas {bound}: {_numbers(plan)}"

    _check(outcomes, "cloud replicas stay within cloud.maxReplicas", problems)


def test_the_total_and_the_pools_stay_within_replicas_bounds(outcomes: list[Outcome]) -> None:
    def problems(case: Case, plan: Plan) -> Iterator[str]:
        low, top = case.spec.replicas.min, case.spec.replicas.max
        pools = plan.physical.replicas + plan.cloud.replicas
        if not low <= plan.total.replicas <= top:
            yield f"total outside {low}..{top}: {_numbers(plan)}"
        # The rate limits pace a pool towards the bounds; the pools hold at most capacity
        # plus cloud.maxReplicas.
        floor = min(low, _capacity(case) + case.spec.cloud.max_replicas)
        if not _rate_limited(plan) and not floor <= pools <= top:
            yield f"physical + cloud {pools} outside {floor}..{top}: {_numbers(plan)}"

    _check(outcomes, "the plan stays within replicas.min..replicas.max", problems)


def test_never_below_the_reactive_need(outcomes: list[Outcome]) -> None:
    """Never less than the latest load needs, unless replicas.max, the pools' capacity or a
    rate limit (which says RateLimit) holds it back."""

    def problems(case: Case, plan: Plan) -> Iterator[str]:
        if plan.load is None:
            return
        need = replicas_for(plan.load, case.spec)
        top = case.spec.replicas.max
        if plan.total.replicas < min(need, top):
            yield f"total below the need {need}: {_numbers(plan)}"
        # replicas.max and the pools bound what runs; the scale-up limit paces it (rule 6).
        held = min(need, top, _capacity(case) + case.spec.cloud.max_replicas)
        pools = plan.physical.replicas + plan.cloud.replicas
        if pools < held and not _rate_limited(plan):
            yield f"physical + cloud {pools} below the need {need} (bounded {held})"

    _check(outcomes, "the plan covers the reactive need", problems)


def test_the_reserve_covers_the_cloud_and_stays_under_its_ceiling(
    outcomes: list[Outcome],
) -> None:
    """Placeholders hold no cloud replica that can never run: the reservation is at most
    cloud.maxReplicas and replicas.max less the physical pool, unless more cloud replicas
    still run (leaving at the rate limit)."""

    def problems(case: Case, plan: Plan) -> Iterator[str]:
        spec = case.spec
        reserve, cloud = plan.reserve.replicas, plan.cloud.replicas
        ceiling = min(spec.cloud.max_replicas, max(0, spec.replicas.max - _capacity(case)))
        if reserve < cloud:
            yield f"reserve below the cloud replicas: {_numbers(plan)}"
        # Cloud replicas above a lowered ceiling still run until the rate limit removes them.
        if reserve > max(ceiling, cloud):
            yield f"reserve above the ceiling {ceiling}: {_numbers(plan)}"
        if not spec.cloud.reserve and (
            reserve != cloud or plan.reserve.reason is not Reason.NOT_RESERVING
        ):
            yield f"cloud.reserve false but {_numbers(plan)}"

    _check(outcomes, "the reservation stays between the cloud and its ceiling", problems)


def test_paused_changes_nothing(outcomes: list[Outcome]) -> None:
    def problems(case: Case, plan: Plan) -> Iterator[str]:
        st, paused = case.state, case.plan(case.respec(mode="Paused"))
        numbers = (paused.physical.replicas, paused.cloud.replicas, paused.reserve.replicas)
        if numbers != (st.physical_replicas, st.cloud_replicas, st.cloud_reserved):
            yield f"paused plans {numbers}: {_numbers(paused)}"
        if paused.total.replicas != st.total_replicas:
            yield f"paused total {paused.total.replicas}, running {st.total_replicas}"
        if paused.recommendations != st.recommendations:
            yield f"paused recommendations {paused.recommendations}"
        if any(d.reason is not Reason.PAUSED for d in _decisions(paused).values()):
            yield f"paused reasons: {_numbers(paused)}"
        if paused.acts or paused.mode is not Mode.PAUSED:
            yield f"paused plan in mode {paused.mode} acts {paused.acts}"

    _check(outcomes, "Paused changes nothing", problems)


def test_forecast_only_plans_as_scale_does_and_does_not_act(outcomes: list[Outcome]) -> None:
    def problems(case: Case, plan: Plan) -> Iterator[str]:
        only = case.plan(case.respec(mode="ForecastOnly"))
        if not plan.acts or only.acts or only.mode is not Mode.FORECAST_ONLY:
            yield f"Scale acts {plan.acts}, ForecastOnly acts {only.acts} (mode {only.mode})"
        for name in ("total", "physical", "cloud", "reserve", "recommendations"):
            if getattr(only, name) != getattr(plan, name):
                yield f"{name}: ForecastOnly {getattr(only, name)}, Scale {getattr(plan, name)}"
        for name in ("load", "capacity_limited", "capacity_limit", "forecast_peak"):
            if getattr(only, name) != getattr(plan, name):
                yield f"{name}: ForecastOnly {getattr(only, name)}, Scale {getattr(plan, name)}"

    _check(outcomes, "ForecastOnly plans what Scale plans, and does not act", problems)


def test_missing_load_never_scales_down(outcomes: list[Outcome]) -> None:
    """Without a fresh load sample the plan holds what runs, but for a lowered replicas.max,
    cloud.maxReplicas, or physical replicas lost with their nodes."""

    def problems(case: Case, plan: Plan) -> Iterator[str]:
        expected = _expected_load(case)
        if plan.load != expected:
            yield f"load {plan.load}, expected {expected}"
        if plan.load is not None:
            return
        st, top = case.state, case.spec.replicas.max
        _, _, live_total = _live(case)
        if plan.total.replicas < min(st.total_replicas, top):
            yield f"total below the {st.total_replicas} running: {_numbers(plan)}"
        pools = plan.physical.replicas + plan.cloud.replicas
        # Lowered bounds, and physical replicas lost with a failed node, are not held.
        held = min(live_total, top, _capacity(case) + case.spec.cloud.max_replicas)
        if pools < held:
            yield f"physical + cloud {pools} below {held} of {live_total} running"

    _check(outcomes, "missing or stale load never scales down", problems)


def test_plans_are_deterministic_and_leave_their_inputs_alone(outcomes: list[Outcome]) -> None:
    by_index = {o.case.index: o for o in outcomes}

    def problems(case: Case, plan: Plan) -> Iterator[str]:
        after = by_index[case.index].inputs
        for name, then, now in zip(
            ("history", "forecast", "state"),
            (case.history, case.forecast, case.state),
            after,
            strict=True,
        ):
            if not _same(now, then):
                yield f"plan_region changed its {name}"
        again = case.plan()
        if not _same(again, plan):
            yield f"planned again: {_numbers(again)}; first: {_numbers(plan)}"

    # Planned again in the reverse order: a plan that read what an earlier one left behind
    # (module state) would now read another's.
    rule = "a plan depends on its inputs only, and changes none"
    _check(outcomes[::-1], rule, problems)


def test_capacity_limited_only_when_a_bound_cuts_what_is_wanted(outcomes: list[Outcome]) -> None:
    """CapacityLimited names replicas.max when it cuts what the load or the forecast wants,
    else physical capacity plus cloud.maxReplicas when they cut it; what stabilisation or
    missing data hold above what is wanted is not wanted. What is wanted is at least the
    load's need, and at most the higher of that and the forecast's peak (exactly the load's
    need, or nothing without load, when no forecast is used)."""

    def problems(case: Case, plan: Plan) -> Iterator[str]:
        spec = case.spec
        low, top = spec.replicas.min, spec.replicas.max
        pools = _capacity(case) + spec.cloud.max_replicas
        least = replicas_for(plan.load, spec) if plan.load is not None else 0
        most = least
        if plan.forecast_model is not None:
            assert case.forecast is not None
            fc = case.forecast
            peak = max(float(fc.point.max()), float(fc.upper(spec.forecast.quantile).max()))
            most = max(least, replicas_for(peak, spec))
        limited, limit = plan.capacity_limited, plan.capacity_limit
        wants = f"wanted {least}..{most}, limited {limited!r} by {limit}"
        if (limited is None) != (limit is None):
            yield f"capacity_limited and capacity_limit disagree: {wants}"
        if least > top and limit is not Reason.MAX:
            yield f"replicas.max {top} cuts what is wanted: {wants}"
        if most <= top and limit is Reason.MAX:
            yield f"replicas.max {top} cuts nothing wanted: {wants}"
        if min(max(least, low), top) > pools and limited is None:
            yield f"the pools' {pools} cut what is wanted: {wants}"
        if most <= top and min(max(most, low), top) <= pools and limited is not None:
            yield f"no bound (max {top}, pools {pools}) cuts what is wanted: {wants}"

    _check(outcomes, "CapacityLimited only when a bound cuts what is wanted", problems)


def test_recommendations_stay_within_the_stabilisation_window(outcomes: list[Outcome]) -> None:
    """The plan keeps this plan's raw recommendation, dated now, and those of the state still
    within the window; one dated ahead of now counts as made now (a window of 0 keeps none)."""

    def problems(case: Case, plan: Plan) -> Iterator[str]:
        now, spec = case.now, case.spec
        window = spec.behavior.scale_down.stabilization.total_seconds()
        *kept, raw = plan.recommendations
        if raw.at != now or not spec.replicas.min <= raw.replicas <= spec.replicas.max:
            yield f"last recommendation {raw}, not now's within the bounds"
        expected = [
            Recommendation(min(r.at, now), r.replicas)
            for r in case.state.recommendations
            if now - min(r.at, now) < window
        ]
        if kept != expected:
            yield f"kept {kept} of {case.state.recommendations}, window {window:g}s"

    _check(outcomes, "only recommendations within the window are kept", problems)


def test_scale_down_holds_the_highest_recent_recommendation(outcomes: list[Outcome]) -> None:
    """With a fresh load, the total falls no lower than the highest recommendation of the
    stabilisation window, as far as replicas.max and the replicas that run allow (only the
    ready ones with holdStarting false; not the physical ones lost with their nodes)."""

    def problems(case: Case, plan: Plan) -> Iterator[str]:
        if plan.load is None:  # missing load holds what runs: test_missing_load_...
            return
        st, now = case.state, case.now
        window = case.spec.behavior.scale_down.stabilization.total_seconds()
        raw = plan.recommendations[-1].replicas
        highest = max(
            [raw, *(r.replicas for r in st.recommendations if now - min(r.at, now) < window)]
        )
        lost, _, live_total = _live(case)
        starting_physical, starting_cloud = st.starting or (0, 0)
        running = live_total
        if not case.spec.behavior.scale_down.hold_starting:
            running -= max(0, starting_physical - lost) + starting_cloud
        held = min(highest, live_total, running, case.spec.replicas.max)
        if plan.total.replicas < held:
            yield f"highest {highest}, running {live_total} ({running}): {_numbers(plan)}"

    _check(outcomes, "scale-down is stabilised over the window", problems)


def test_the_total_reason_matches_its_number(outcomes: list[Outcome]) -> None:
    def problems(case: Case, plan: Plan) -> Iterator[str]:
        spec, total = case.spec, plan.total
        need = replicas_for(plan.load, spec) if plan.load is not None else None
        raw = plan.recommendations[-1].replicas
        window = spec.behavior.scale_down.stabilization.total_seconds()
        in_window = [
            r.replicas
            for r in case.state.recommendations
            if case.now - min(r.at, case.now) < window
        ]
        _, _, live_total = _live(case)
        wrong = {
            Reason.MIN: total.replicas != spec.replicas.min,
            Reason.MAX: total.replicas != spec.replicas.max,
            Reason.REACTIVE_FLOOR: total.replicas != need,
            Reason.FORECAST: (
                need is None or total.replicas <= need or plan.forecast_model is None
            ),
            Reason.FALLBACK: need is not None and plan.forecast_model is not None,
            # Stabilisation holds a recent recommendation above this one, no more than runs.
            Reason.STABILIZATION: (
                total.replicas <= raw
                or total.replicas > max([*in_window, raw])
                or total.replicas > live_total
            ),
        }.get(total.reason, True)
        if wrong:
            yield f"load need {need}, raw {raw}, window {in_window}: {_numbers(plan)}"

    _check(outcomes, "the total's reason says why it is what it is", problems)


def test_physical_fills_first_and_keep_warm_keeps_it_full(outcomes: list[Outcome]) -> None:
    """Rule 5: cloud grows only once the physical pool is full; with keepWarm the pool stays
    full (within replicas.max), and KeepWarm is the reason only when that is what raised it."""

    def problems(case: Case, plan: Plan) -> Iterator[str]:
        capacity, spec = _capacity(case), case.spec
        physical, cloud = plan.physical, plan.cloud
        if cloud.replicas > case.state.cloud_replicas and physical.replicas < capacity:
            yield f"cloud grows with physical below capacity {capacity}: {_numbers(plan)}"
        warm = min(capacity, spec.replicas.max)
        # The scale-up limit may pace the pool to full (it then says RateLimit).
        keeping = spec.physical.keep_warm and physical.reason is not Reason.RATE_LIMIT
        if keeping and physical.replicas < warm:
            yield f"keepWarm below {warm}: {_numbers(plan)}"
        if physical.reason is Reason.KEEP_WARM and (
            not spec.physical.keep_warm or physical.replicas != warm
        ):
            yield f"KeepWarm reason without keeping {warm} warm: {_numbers(plan)}"

    _check(outcomes, "physical first, full with keepWarm", problems)


def _minutes(case: Case) -> float:
    """Minutes the rate limits grant: since the last plan's recommendation, at most a loop."""
    past = [r.at for r in case.state.recommendations if r.at <= case.now]
    loop = case.settings.loop_interval
    return (min(loop, case.now - max(past)) if past else loop) / 60.0


def _granted(per_minute: int, minutes: float, now: float) -> int:
    """The most a per-minute limit lets one plan move: the whole replicas of its minutes, or,
    under one, a replica where the minutes cross a tick of the limit's grid on the clock."""
    whole = math.floor(per_minute * minutes)
    crossed = math.floor(per_minute * now / 60) > math.floor(per_minute * (now / 60 - minutes))
    return whole if whole >= 1 else int(crossed)


def test_rate_limits_hold_back_only_what_says_rate_limit(outcomes: list[Outcome]) -> None:
    """At most maxReplicasPerMinute added (and replicas lost with their nodes replaced) and
    removed (counted by the load they carry with limitBy Load; replicas still starting and
    cancelled with holdStarting false are not counted); a pool the limits hold says RateLimit,
    and the limits never change the total."""

    def problems(case: Case, plan: Plan) -> Iterator[str]:
        spec, st = case.spec, case.state
        lost, live_physical, live_total = _live(case)
        physical, cloud = plan.physical.replicas, plan.cloud.replicas
        minutes = _minutes(case)
        up = _granted(spec.behavior.scale_up.max_replicas_per_minute, minutes, case.now)
        down = _granted(spec.behavior.scale_down.max_replicas_per_minute, minutes, case.now)
        added = max(0, physical - live_physical) + max(0, cloud - st.cloud_replicas)
        # Replicas lost with a failed physical node are replaced at once, outside the limit.
        if added > up + lost:
            yield f"added {added}, limit {up} + {lost} lost: {_numbers(plan)}"
        starting_physical, starting_cloud = st.starting or (0, 0)
        starting_physical = max(0, starting_physical - lost)
        carrying = live_total - starting_physical - starting_cloud
        # With holdStarting false, replicas still starting are cancelled outside the limit.
        if spec.behavior.scale_down.hold_starting:
            starting_physical = starting_cloud = 0
        removed = max(0, live_physical - physical - starting_physical) + max(
            0, st.cloud_replicas - cloud - starting_cloud
        )
        within = removed <= down
        by_load = spec.behavior.scale_down.limit_by is LimitBy.LOAD
        # limitBy Load: a removed replica counts for its share of the load the ready carry.
        if not within and by_load and plan.load is not None and carrying > 0:
            carried = plan.load / target_per_replica(spec)  # full replicas' worth
            within = carried <= down or removed * carried / carrying <= down * (1 + 1e-9)
        if not within:
            yield f"removed {removed}, limit {down} (carrying {carrying}): {_numbers(plan)}"

        free = case.plan(
            case.respec(
                **{
                    "behavior.scaleUp.maxReplicasPerMinute": BIG,
                    "behavior.scaleDown.maxReplicasPerMinute": BIG,
                }
            )
        )
        if free.total != plan.total:
            yield f"the rate limits changed the total: {_numbers(plan)}; free {_numbers(free)}"
        for name in ("physical", "cloud"):
            held, unheld = getattr(plan, name), getattr(free, name)
            if held.replicas != unheld.replicas and held.reason is not Reason.RATE_LIMIT:
                yield f"{name} {held.replicas} ({held.reason}), {unheld.replicas} unlimited"

    _check(outcomes, "the rate limits, and only they, say RateLimit", problems)


def test_a_per_replica_below_a_millionth_is_refused() -> None:
    """In smaller units every cloud slot looked needed (the forecasts' error scale has an
    absolute floor): the spec refuses them, and accepts the least it names."""
    rng = np.random.default_rng([SEED, 1])
    below = [MIN_PER_REPLICA * (1 - 1e-9), 1e-9, 1e-300, *(10 ** rng.uniform(-300, -6, 20))]
    for value in below:
        with pytest.raises(pydantic.ValidationError, match="at least 1e-06"):
            make_spec(**{"load.perReplica": float(value)})
    for value in [MIN_PER_REPLICA, *(10 ** rng.uniform(-6, 6, 20))]:
        assert make_spec(**{"load.perReplica": float(value)}).load.per_replica == value


def _reversals(values: list[int]) -> int:
    moves = [b - a for a, b in itertools.pairwise(values) if b != a]
    return sum(1 for a, b in itertools.pairwise(moves) if (a > 0) != (b > 0))


def _closed_loop(index: int) -> tuple[str, list[tuple[int, int, int]]]:
    """A region at a constant load, each plan fed back as the next loop's state (readiness a
    few loops late, an extra pass a second or five later in some), from a consistent start:
    pools within their bounds, no recommendation. The plans' (physical, cloud, reserve)."""
    rng = np.random.default_rng([SEED, 2, index])
    overrides = _draw_spec(rng)
    overrides["load.perReplica"] = _pick(rng, [100.0, 37.3, 1.0])
    spec = make_spec(**overrides)
    settings = PlannerSettings()
    if rng.random() < 0.3:
        settings = PlannerSettings(
            loop_interval=_pick(rng, [30.0, 60.0, 120.0]),
            pod_ready=_pick(rng, [0.0, 60.0, 180.0]),
            node_hold=_pick(rng, [0.0, 600.0]),
        )
    per = target_per_replica(spec)
    load = _pick(rng, [0.0, float(rng.uniform(0, 50)), float(rng.uniform(0, 300))]) * per
    fc_kind = _pick(rng, ["none", "stub", "mixed"])
    spread = _pick(rng, [0.0, 0.1, 0.3, 1.0])
    errors = {_pick(rng, [0.0, -0.2]): int(rng.integers(50, 400)), 1.5: int(rng.integers(1, 100))}
    lag = (_pick(rng, [0, 0, 1, 3]), _pick(rng, [0, 1, 3, 6]))
    known = bool(rng.random() < 0.7)
    extra = _pick(rng, [0.0, 0.0, 0.0, 1.0, 5.0])
    capacity = _pick(rng, [0, 1, 10, 60, 100, 200])
    physical = min(int(rng.integers(0, 300)), _capacity_of(spec, capacity))
    cloud = min(int(rng.integers(0, 400)), spec.cloud.max_replicas)
    reserved = _pick(rng, [0, cloud, int(rng.integers(0, 400))])
    recs: tuple[Recommendation, ...] = ()
    asked = ([physical], [cloud])
    now = NOW
    summary = (
        f"loop {index} (_closed_loop({index})): load {load / per:.4g} replicas' worth, forecast "
        f"{fc_kind}, start {physical} physical (capacity {capacity}) + {cloud} cloud, "
        f"readiness {'known' if known else 'unknown'} {lag} loops late, extra pass {extra:g}s; "
        f"replicas {spec.replicas.min}..{spec.replicas.max}, cloud.maxReplicas "
        f"{spec.cloud.max_replicas}, keepWarm {spec.physical.keep_warm}, fillNodes "
        f"{spec.cloud.fill_nodes} x{spec.cloud.replicas_per_node}"
    )

    def ready(pool: int) -> int | None:
        if not known:
            return None
        return min(asked[pool][-1 - lag[pool] :])

    flat_forecast = None
    if fc_kind == "stub":
        flat_forecast = forecast([load] * 60, spread=spread)
    elif fc_kind == "mixed":
        flat_forecast = mixed_forecast(load, errors, steps=60)
    out = []
    for _ in range(LOOP_STEPS):
        for at in (now, now + extra) if extra else (now,):
            st = RegionState(physical, cloud, capacity, reserved, recs, ready(0), ready(1))
            fc = None
            if flat_forecast is not None:  # the same forecast, made at this pass
                fc = dataclasses.replace(flat_forecast, origin=at)
            history = LoadSeries(at - 60.0 * 40, 60.0, np.full(40, load))
            plan = plan_region(
                spec, history=history, forecast=fc, state=st, now=at, settings=settings
            )
            physical, cloud = plan.physical.replicas, plan.cloud.replicas
            reserved, recs = plan.reserve.replicas, plan.recommendations
            asked[0].append(physical)
            asked[1].append(cloud)
            out.append((physical, cloud, reserved))
        now += settings.loop_interval
    return summary, out


def _capacity_of(spec: GatewayAutoscalerSpec, nodes: int) -> int:
    bound = spec.physical.max_replicas
    return nodes if bound is None else min(nodes, bound)


def test_a_closed_loop_at_constant_load_never_reverses_twice() -> None:
    """Fed its own plans at a constant load, no pool, nor their sum, nor the reservation, goes
    up then down then up again (or down, up, down): the plan settles, it does not oscillate."""
    broken = []
    for index in range(LOOPS):
        summary, plans = _closed_loop(index)
        physical, cloud, reserve = (list(series) for series in zip(*plans, strict=True))
        pools = [p + c for p, c in zip(physical, cloud, strict=True)]
        for name, series in (
            ("physical", physical),
            ("cloud", cloud),
            ("physical + cloud", pools),
            ("reserve", reserve),
        ):
            if _reversals(series) >= 2:
                broken.append(f"{summary}\n    -> {name} reverses: {series}")
    assert not broken, f"{len(broken)} loops oscillate, first:\n" + "\n".join(broken[:QUOTED])
