"""Backtests: replay real traces through the simulator and score each policy (DESIGN.md report)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from controller.simulator import (
    MINUTE,
    HpaPolicy,
    OraclePolicy,
    Policy,
    PolicyResult,
    PredictiveHpaPolicy,
    Scenario,
    TidalPolicy,
    first_scored,
    oracle_need,
    simulate,
)
from controller.spec import GatewayAutoscalerSpec
from forecasts.base import DAY
from forecasts.series import LoadSeries, format_timestamp, load_trace, trace_time

__all__ = [
    "KNOWN_POLICIES",
    "POLICIES",
    "REPLICA_CAP",
    "PreparedTrace",
    "TraceRun",
    "backtest_spec",
    "build_policies",
    "default_score_from",
    "hpa_spec",
    "load_for_replay",
    "prepare_trace",
    "replay",
    "report",
    "run_trace",
    "score",
    "summary",
    "unserved_ratio",
]

POLICIES = ("tidal", "hpa", "oracle")
#: Every policy a backtest can run: the default ones, and ``predictive``, a tier-blind
#: predictive HPA (:class:`~controller.simulator.PredictiveHpaPolicy`), run when asked for.
KNOWN_POLICIES = (*POLICIES, "predictive")
PER_REPLICA = 5000.0
#: ``replicas.max`` and ``cloud.maxReplicas`` of the spec a backtest plans with: far above any
#: trace it replays (:func:`prepare_trace` refuses one that needs more), so no cap hides a spike.
REPLICA_CAP = 100_000


def backtest_spec(
    region: str, *, scenario: Scenario, model: str = "auto", overrides: dict[str, Any] | None = None
) -> GatewayAutoscalerSpec:
    """The spec a backtest plans with: DESIGN.md's sample, no replica cap hiding spikes."""
    body: dict[str, Any] = {
        "region": region,
        "load": {"query": f"trace:{region}", "perReplica": PER_REPLICA},
        "replicas": {"min": 1, "max": REPLICA_CAP},
        "physical": {"deployment": f"gateway-{region}", "maxReplicas": scenario.physical_capacity},
        "cloud": {
            "deployment": f"gateway-{region}-cloud",
            "maxReplicas": REPLICA_CAP,
            "nodeLeadTime": f"{scenario.node_lead_time:.0f}s",
            "replicasPerNode": scenario.replicas_per_node,
        },
        "forecast": {"model": model},
    }
    for dotted, value in (overrides or {}).items():
        node = body
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return GatewayAutoscalerSpec.model_validate(body)


#: The most minutes a backtest replays, about 32 years: a coarse trace with a mistyped date
#: would otherwise be interpolated onto a grid of a hundred million minutes.
MOST_MINUTES = 2**24


def prepare_trace(
    series: LoadSeries, scenario: Scenario, *, headroom: float | None = None
) -> LoadSeries:
    """Per-minute load (coarser traces interpolated); its p99 needs ``peak_replicas``, or with
    ``per_replica`` its load over that is the replicas it needs.

    ``headroom`` is the spec's (None: the CRD default): the replicas the peak needs are
    counted with it, as the planner and the HPA count them, against :data:`REPLICA_CAP`.
    ValueError says why a trace cannot be replayed; the caller names the trace.
    """
    minutes = math.floor((series.end - series.start) / MINUTE + 1e-6) + 1
    if minutes > MOST_MINUTES:
        raise ValueError(
            f"the trace runs from {format_timestamp(series.start)} to "
            f"{format_timestamp(series.end)}: {minutes:,} minutes, more than the "
            f"{MOST_MINUTES:,} a backtest replays (a mistyped date?)"
        )
    minute = series.resample(MINUTE) if series.step > MINUTE else series
    if minute.step != MINUTE:
        minute = minute.aggregate(MINUTE)
    values = minute.values
    if len(minute) < 2:
        raise ValueError(f"the trace holds {len(minute)} whole minute(s): too short to replay")
    if not np.isfinite(values).any():
        raise ValueError("the trace has no whole minute with a load sample")
    if scenario.per_replica is not None:
        # The trace's own unit: PER_REPLICA, which the spec a backtest plans with serves per
        # replica, stands for per_replica of it.
        factor = PER_REPLICA / scenario.per_replica
        scaled_how = f"at --per-replica {scenario.per_replica:g}"
        too_large = f"too large at --per-replica {scenario.per_replica:g}"
        remedy = "a higher --per-replica or a lower --headroom"
    else:
        p99 = float(np.nanpercentile(values, 99))
        if not p99 > 0:
            raise ValueError(
                "the load's 99th percentile is zero (at least 99% of the samples are 0): "
                "there is no peak to scale to --peak-replicas (--per-replica takes the "
                "trace at its own size)"
            )
        factor = scenario.peak_replicas * PER_REPLICA / p99
        if not math.isfinite(factor):
            raise ValueError(
                f"the load's 99th percentile ({p99:g}) is too close to zero to scale to "
                "--peak-replicas: multiply the trace's loads by a constant"
            )
        scaled_how = f"once its 99th percentile needs --peak-replicas {scenario.peak_replicas}"
        too_large = f"too far above the 99th percentile ({p99:g}) to scale"
        remedy = "a lower --peak-replicas or --headroom"
    with np.errstate(over="ignore"):
        scaled = values * factor
    if np.isinf(scaled).any():
        raise ValueError(f"a load of {np.nanmax(values):g} is {too_large}")
    if headroom is None:
        headroom = float(GatewayAutoscalerSpec.model_fields["headroom"].default)
    # As the planner's replicas_for counts them: tidal and the HPA size for the load with
    # headroom on top, and capped, they would hold less than they were asked for.
    need = float(np.nanmax(scaled)) * (1.0 + headroom) / PER_REPLICA
    if need - 1e-9 > REPLICA_CAP:
        replicas = f"{math.ceil(need - 1e-9):,}" if need < 1e12 else f"{need:.3g}"
        raise ValueError(
            f"its highest load ({np.nanmax(values):g}) needs {replicas} replicas with "
            f"--headroom {headroom:g} {scaled_how}, more than the {REPLICA_CAP:,} a "
            f"backtest can hold: {remedy}, or a glitch to fix"
        )
    return LoadSeries(minute.start, MINUTE, scaled)


def default_score_from(series: LoadSeries) -> float:
    """Two weeks into the trace or its first quarter, whichever is shorter."""
    span = series.end - series.start
    return series.start + min(14 * DAY, span / 4)


@dataclass
class TraceRun:
    name: str
    load: LoadSeries
    score_from: float
    results: dict[str, PolicyResult]
    seconds: float
    scenario_replicas_per_node: int = 10

    def forecast_gap(self, policy: str = "tidal") -> tuple[float, str | None]:
        """The share of scored minutes ``policy`` (tidal, or predictive) acted on without a
        usable forecast, and why first."""
        result = self.results.get(policy)
        if result is None or not result.ready_physical.size:
            return 0.0, None
        return result.unforecast_minutes / result.ready_physical.size, result.forecast_problem


def hpa_spec(spec: GatewayAutoscalerSpec, scenario: Scenario) -> GatewayAutoscalerSpec:
    """The spec the HPA runs with: tidal's (the same target per replica), with the scenario's
    ``minReplicas``."""
    least = scenario.hpa_min_replicas
    if not 1 <= least <= spec.replicas.max:
        raise ValueError(f"--hpa-min-replicas must be 1 to {spec.replicas.max}, got {least}")
    return spec.model_copy(update={"replicas": spec.replicas.model_copy(update={"min": least})})


def build_policies(
    spec: GatewayAutoscalerSpec, scenario: Scenario, need: np.ndarray, names: tuple[str, ...]
) -> dict[str, Policy]:
    table: dict[str, Policy] = {}
    for policy in names:
        if policy == "tidal":
            table[policy] = TidalPolicy(spec, scenario)
        elif policy == "hpa":
            table[policy] = HpaPolicy(
                hpa_spec(spec, scenario),
                physical_per_machine=scenario.physical_per_machine,
                replicas_per_node=scenario.replicas_per_node,
            )
        elif policy == "oracle":
            table[policy] = OraclePolicy(need, scenario)
        elif policy == "predictive":
            table[policy] = PredictiveHpaPolicy(
                hpa_spec(spec, scenario),
                scenario,
                physical_per_machine=scenario.physical_per_machine,
                replicas_per_node=scenario.replicas_per_node,
            )
        else:
            raise ValueError(f"unknown policy {policy!r}; known: {', '.join(KNOWN_POLICIES)}")
    return table


@dataclass
class PreparedTrace:
    """A trace read, scaled to the scenario and checked: everything a replay starts from."""

    name: str
    path: str
    load: LoadSeries
    score_from: float
    seconds: float
    #: The share of scored minutes with no load sample, whose load the scores make up.
    missing_share: float


def _missing_share(load: LoadSeries, first: int) -> float:
    """The share of ``load``'s minutes from ``first`` on without a load sample (NaN)."""
    missing = np.isnan(load.values[first:])
    return float(missing.mean()) if missing.size else 0.0


def load_for_replay(
    path: str | Path,
    *,
    scenario: Scenario,
    score_from: float | str | None = None,
    series: LoadSeries | None = None,
    name: str | None = None,
    headroom: float | None = None,
) -> PreparedTrace:
    """Read, scale and check one trace, so that bad input fails before any replay starts.

    ``score_from`` as text (``--score-from``'s) is read on the trace's own clock
    (:func:`~forecasts.series.trace_time`). ``headroom`` is the spec's (None: the CRD
    default), for :func:`prepare_trace`. Every error names the file: :class:`ForecastError`
    from reading it, ValueError otherwise.
    """
    started = time.perf_counter()
    label = str(Path(path))
    raw = series if series is not None else load_trace(path)
    if isinstance(score_from, str):
        score_from = trace_time(score_from, raw)
    try:
        load = prepare_trace(raw, scenario, headroom=headroom)
    except ValueError as exc:
        raise ValueError(f"{label}: {exc}") from exc
    begin = default_score_from(load) if score_from is None else score_from
    if not load.start < begin < load.end:
        span = f"the trace runs from {format_timestamp(load.start)} to {format_timestamp(load.end)}"
        if score_from is None:
            raise ValueError(f"{label}: {span}: too short to replay")
        raise ValueError(
            f"{label}: --score-from {format_timestamp(begin)} falls outside the trace: {span}, "
            "and scoring needs history before it"
        )
    missing = _missing_share(load, first_scored(load, begin))
    if missing >= 1.0:
        raise ValueError(
            f"{label}: no load sample in the scored minutes, {format_timestamp(begin)} to "
            f"{format_timestamp(load.end)}: nothing to score (an earlier --score-from?)"
        )
    return PreparedTrace(
        name or Path(path).stem, label, load, begin, time.perf_counter() - started, missing
    )


def replay(
    trace: PreparedTrace,
    *,
    scenario: Scenario,
    model: str = "auto",
    policies: tuple[str, ...] = POLICIES,
    spec_overrides: dict[str, Any] | None = None,
    on_minute: Callable[[int, int], None] | None = None,
) -> TraceRun:
    """Every policy on one prepared trace, from its ``score_from`` to its end."""
    started = time.perf_counter()
    spec = backtest_spec(trace.name, scenario=scenario, model=model, overrides=spec_overrides)
    need = oracle_need(trace.load, spec)
    table = build_policies(spec, scenario, need, policies)
    results = simulate(
        trace.load,
        spec=spec,
        scenario=scenario,
        score_from=trace.score_from,
        policies=table,
        need=need,
        on_minute=on_minute,
    )
    return TraceRun(
        trace.name,
        trace.load,
        trace.score_from,
        results,
        trace.seconds + time.perf_counter() - started,
        scenario.replicas_per_node,
    )


def run_trace(
    path: str | Path,
    *,
    scenario: Scenario,
    model: str = "auto",
    score_from: float | None = None,
    policies: tuple[str, ...] = POLICIES,
    spec_overrides: dict[str, Any] | None = None,
    on_minute: Callable[[int, int], None] | None = None,
    series: LoadSeries | None = None,
    name: str | None = None,
) -> TraceRun:
    """:func:`load_for_replay`, then :func:`replay`."""
    trace = load_for_replay(
        path,
        scenario=scenario,
        score_from=score_from,
        series=series,
        name=name,
        headroom=(spec_overrides or {}).get("headroom"),
    )
    return replay(
        trace,
        scenario=scenario,
        model=model,
        policies=policies,
        spec_overrides=spec_overrides,
        on_minute=on_minute,
    )


def score(run: TraceRun, result: PolicyResult, scenario: Scenario) -> dict[str, float | int]:
    """The DESIGN.md metrics of one policy on one trace."""
    first = first_scored(run.load, run.score_from)
    load = np.nan_to_num(run.load.values[first : first + result.ready_physical.size], nan=0.0)
    capacity = (result.ready_physical + result.ready_cloud) * PER_REPLICA
    short = np.maximum(load - capacity, 0.0)
    # The oracle sizes with ceil(load / perReplica - 1e-9): forgive that rounding, not more.
    short[short < 1e-6 * PER_REPLICA] = 0.0
    total = float(load.sum())
    return {
        "unserved_fraction": float(short.sum() / total) if total > 0 else 0.0,
        "underprovisioned_minutes": int((short > 0).sum()),
        "cloud_replica_hours": float(result.cloud_nodes.sum() * scenario.replicas_per_node / 60.0),
        "physical_replica_hours": float(result.ready_physical.sum() / 60.0),
        "replicas_removed": int(result.replicas_removed),
    }


def report(
    runs: list[TraceRun], scenario: Scenario, *, model: str, overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The JSON object of ``tidal backtest --json``."""
    return {
        "scenario": {
            **_scenario_fields(scenario),
            "model": model,
            "spec_overrides": dict(overrides or {}),
        },
        "traces": {
            run.name: {name: score(run, result, scenario) for name, result in run.results.items()}
            for run in runs
        },
    }


def unserved_ratio(trace: dict[str, Any], eps: float = 1e-6, *, against: str = "hpa") -> float:
    """Tidal's unserved fraction over ``against``'s (the HPA's) on one trace of a report,
    ``eps`` added to each."""
    return float(
        (trace["tidal"]["unserved_fraction"] + eps) / (trace[against]["unserved_fraction"] + eps)
    )


def summary(
    report_: dict[str, Any], eps: float = 1e-6, *, against: str = "hpa"
) -> dict[str, float]:
    """Acceptance-style ratios of tidal against ``against`` (the HPA) across the traces
    (geometric means), over the traces that ran both."""
    unserved, cloud = [], []
    removed = {"tidal": 0, against: 0}
    left_out = 0  # traces without a cloud ratio: the baseline paid no cloud there
    for trace in report_["traces"].values():
        if "tidal" not in trace or against not in trace:
            continue
        unserved.append(unserved_ratio(trace, eps, against=against))
        base_cloud = trace[against]["cloud_replica_hours"]
        if base_cloud > 0:
            cloud.append(trace["tidal"]["cloud_replica_hours"] / base_cloud)
        else:
            left_out += 1
        for name in removed:
            removed[name] += trace[name]["replicas_removed"]

    def geo(values: list[float]) -> float:
        if not values:
            return math.nan
        if min(values) <= 0.0:
            return 0.0  # a trace where tidal paid nothing: the product, and so the mean, is 0
        return float(math.exp(np.mean(np.log(values))))

    return {
        "unserved_ratio_geomean": geo(unserved),
        "unserved_ratio_max": max(unserved) if unserved else math.nan,
        "cloud_hours_ratio_geomean": geo(cloud),
        "cloud_ratio_left_out": left_out,
        "tidal_replicas_removed": removed["tidal"],
        f"{against}_replicas_removed": removed[against],
    }


def _scenario_fields(scenario: Scenario) -> dict[str, Any]:
    """The scenario as the report gives it: ``peak_replicas`` null where ``per_replica``
    replayed the traces at their own size, so that no figure says what did not count."""
    fields = asdict(scenario)
    if scenario.per_replica is not None:
        fields["peak_replicas"] = None
    return fields
