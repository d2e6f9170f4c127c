"""The simulator's cluster model, and ``tidal backtest`` end to end on a short real trace."""

from __future__ import annotations

import argparse
import json
import math
import warnings
from dataclasses import asdict
from datetime import UTC, timedelta
from importlib import resources
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from controller.backtest import (
    REPLICA_CAP,
    TraceRun,
    backtest_spec,
    build_policies,
    default_score_from,
    hpa_spec,
    load_for_replay,
    prepare_trace,
    replay,
    report,
    run_trace,
    score,
    summary,
    unserved_ratio,
)
from controller.backtest_command import add_arguments, scenario_from_args, spec_overrides_from_args
from controller.cli import main
from controller.planner import target_per_replica
from controller.simulator import (
    ClusterModel,
    HpaPolicy,
    PolicyResult,
    PolicyView,
    Scenario,
    Targets,
    oracle_need,
    simulate,
)
from forecasts.series import LoadSeries
from tests.forecast_series import local_clock_trace
from tests.support.fixtures import SINE_START, daily_sine_views, seasonal_naive_policy

METRICS = {
    "unserved_fraction",
    "underprovisioned_minutes",
    "cloud_replica_hours",
    "physical_replica_hours",
    "replicas_removed",
}


def test_physical_pod_is_ready_one_minute_after_it_is_requested() -> None:
    """A physical pod asked for at minute 0 serves from minute 1."""
    cluster = ClusterModel(Scenario())
    cluster.apply(0, Targets(physical=5, cloud=0))
    assert cluster.ready(0) == (0, 0)
    assert cluster.ready(1) == (5, 0)


def test_cloud_pod_waits_for_a_node() -> None:
    """A cloud pod without a free slot waits for a node (5 min) and then for itself (1 min)."""
    cluster = ClusterModel(Scenario())
    cluster.apply(0, Targets(physical=0, cloud=3))
    assert len(cluster.nodes) == 1
    for minute in range(1, 5):
        cluster.apply(minute, Targets(physical=0, cloud=3))
        assert cluster.ready(minute) == (0, 0)
    cluster.apply(5, Targets(physical=0, cloud=3))
    assert cluster.ready(5) == (0, 0)
    assert cluster.ready(6) == (0, 3)


def test_placeholder_slot_is_taken_by_a_gateway_at_once() -> None:
    """Placeholders keep a node; a gateway pod preempts one and is ready a minute later."""
    cluster = ClusterModel(Scenario())
    cluster.apply(0, Targets(physical=0, cloud=0, placeholders=10))
    for minute in range(1, 6):
        cluster.apply(minute, Targets(physical=0, cloud=0, placeholders=10))
    cluster.apply(6, Targets(physical=0, cloud=4, placeholders=6))
    assert len(cluster.nodes) == 1
    assert cluster.ready(7) == (0, 4)


def test_unneeded_node_is_given_back_after_ten_minutes() -> None:
    """A node nobody needs is kept for node_unneeded_time, then given back."""
    cluster = ClusterModel(Scenario())
    cluster.warm_start(0, 10, 0)
    for minute in range(10):
        cluster.apply(minute, Targets(physical=0, cloud=0))
        assert len(cluster.nodes) == 1
    cluster.apply(10, Targets(physical=0, cloud=0))
    assert cluster.nodes == []
    assert cluster.removed == 10


@pytest.fixture(scope="module")
def backtest_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """``tidal backtest --json`` on the bundled New York taxi trace, scoring its last two days."""
    out = tmp_path_factory.mktemp("backtest")
    with resources.as_file(resources.files("controller.data") / "nyc-taxi-30min-local.csv") as p:
        trace = out / "nyc-short.csv"
        trace.write_text(Path(p).read_text())
    plot = out / "backtest.png"
    stdout = out / "stdout.json"
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = main(
            [
                "backtest",
                str(trace),
                "--json",
                "--jobs",
                "1",
                "--score-from",
                "2015-01-15T00:00:00",
                "--plot",
                str(plot),
            ]
        )
    assert code == 0
    stdout.write_text(buffer.getvalue())
    report: dict[str, object] = json.loads(buffer.getvalue())
    report["_plot"] = str(plot)
    return report


def test_report_has_the_design_shape(backtest_report: dict[str, object]) -> None:
    """The report holds the scenario and, per trace and policy, exactly DESIGN.md's metrics."""
    assert isinstance(backtest_report["scenario"], dict)
    traces = backtest_report["traces"]
    assert isinstance(traces, dict) and list(traces) == ["nyc-short"]
    assert set(traces["nyc-short"]) == {"tidal", "hpa", "oracle"}
    for metrics in traces["nyc-short"].values():
        assert set(metrics) == METRICS


def test_oracle_never_leaves_load_unserved(backtest_report: dict[str, object]) -> None:
    """Perfect foresight through the same lagged cluster serves every minute."""
    oracle = backtest_report["traces"]["nyc-short"]["oracle"]  # type: ignore[index]
    assert oracle["unserved_fraction"] == 0.0
    assert oracle["underprovisioned_minutes"] == 0


def test_oracle_pays_no_more_cloud_than_the_others(backtest_report: dict[str, object]) -> None:
    """The oracle is the floor on cloud cost."""
    policies = backtest_report["traces"]["nyc-short"]  # type: ignore[index]
    floor = policies["oracle"]["cloud_replica_hours"]
    assert floor <= policies["tidal"]["cloud_replica_hours"]
    assert floor <= policies["hpa"]["cloud_replica_hours"]


def test_plot_is_written(backtest_report: dict[str, object]) -> None:
    """--plot writes a PNG."""
    plot = Path(str(backtest_report["_plot"]))
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_trace_is_named_with_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A malformed trace fails with the file and line, not a traceback."""
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,load\n2020-01-01T00:00:00Z,1\n2020-01-01T00:01:00Z,many\n")
    assert main(["backtest", str(bad), "--jobs", "1"]) == 2
    assert "bad.csv:3" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "overrides"),
    [
        (["--limit-by", "Replicas"], {"behavior.scaleDown.limitBy": "Replicas"}),
        (["--hold-starting", "false"], {"behavior.scaleDown.holdStarting": False}),
        (["--stabilization", "5m"], {"behavior.scaleDown.stabilization": "5m"}),
    ],
)
def test_spec_flags_reach_tidal_spec(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    flags: list[str],
    overrides: dict[str, object],
) -> None:
    """--limit-by, --hold-starting and --stabilization set tidal's spec, and the report says
    so."""
    with resources.as_file(resources.files("controller.data") / "nyc-taxi-30min-local.csv") as p:
        trace = tmp_path / "nyc-day.csv"
        trace.write_text(Path(p).read_text())
    argv = ["backtest", str(trace), "--json", "--jobs", "1", "--policies", "tidal"]
    argv += ["--score-from", "2015-01-16T00:00:00", *flags]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["scenario"]["spec_overrides"] == overrides
    assert set(report["traces"]["nyc-day"]) == {"tidal"}


def test_stabilization_flag_sets_the_window_tidal_plans_with() -> None:
    """--stabilization 5m reaches the spec the planner is given, as a duration; the HPA's
    window is its own."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["t.csv", "--stabilization", "5m"])
    scenario = scenario_from_args(args)
    overrides = spec_overrides_from_args(args, scenario)
    spec = backtest_spec("r", scenario=scenario, overrides=overrides)
    assert spec.behavior.scale_down.stabilization == timedelta(minutes=5)
    assert backtest_spec("r", scenario=scenario).behavior.scale_down.stabilization == timedelta(
        minutes=10
    )
    hpa = build_policies(spec, scenario, np.zeros(1, dtype=np.int64), ("hpa",))["hpa"]
    assert hpa.window == 5 + 1  # HpaPolicy's own 300 s, whatever tidal's spec says


def _idle_view(*, physical: int, cloud: int) -> PolicyView:
    """What a policy sees with no load, ``physical`` and ``cloud`` replicas running."""
    return PolicyView(
        now=0.0,
        history=LoadSeries(0.0, 60.0, np.array([0.0])),
        physical_replicas=physical,
        cloud_replicas=cloud,
        physical_capacity=60,
        reserved=cloud,
    )


def test_hpa_min_replicas_flag_keeps_the_hpas_physical_pool_warm() -> None:
    """--hpa-min-replicas 60 reaches the HPA alone: with no load, it keeps 60 replicas (the
    physical pool, warm), where its default minReplicas of 1 lets the pool go; tidal's spec
    keeps its own minimum. The report's scenario says which was used."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert scenario_from_args(parser.parse_args(["t.csv"])).hpa_min_replicas == 1
    scenario = scenario_from_args(parser.parse_args(["t.csv", "--hpa-min-replicas", "60"]))
    spec = backtest_spec("r", scenario=scenario)
    assert spec.replicas.min == 1
    need = np.zeros(1, dtype=np.int64)
    idle = _idle_view(physical=60, cloud=0)
    warm = build_policies(spec, scenario, need, ("hpa",))["hpa"]
    assert warm(0, idle) == Targets(physical=60, cloud=0)
    cold = build_policies(spec, Scenario(), need, ("hpa",))["hpa"]
    assert cold(0, idle) == Targets(physical=1, cloud=0)


def test_physical_per_machine_flag_reaches_the_hpa_and_the_report() -> None:
    """--physical-per-machine 30: the HPA removes the physical pool's pods first (its two
    machines are more crowded than a 10-replica cloud node); without it, the cloud's."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert scenario_from_args(parser.parse_args(["t.csv"])).physical_per_machine is None
    scenario = scenario_from_args(parser.parse_args(["t.csv", "--physical-per-machine", "30"]))
    assert asdict(scenario)["physical_per_machine"] == 30
    spec = backtest_spec("r", scenario=scenario)
    need = np.zeros(1, dtype=np.int64)
    idle = _idle_view(physical=60, cloud=20)
    crowded = build_policies(spec, scenario, need, ("hpa",))["hpa"]
    assert crowded._split(70, idle) == Targets(physical=50, cloud=20)
    even = build_policies(spec, Scenario(), need, ("hpa",))["hpa"]
    assert even._split(70, idle) == Targets(physical=60, cloud=10)


@pytest.mark.parametrize("flags", [["--limit-by", "Pods"], ["--hold-starting", "maybe"]])
def test_spec_flags_refuse_unknown_values(flags: list[str]) -> None:
    """Only the CRD's values are accepted."""
    with pytest.raises(SystemExit) as exit_info:
        main(["backtest", "x.csv", *flags])
    assert exit_info.value.code == 2


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--peak-replicas", "0"], "--peak-replicas must be at least 1"),
        (["--per-replica", "0"], "--per-replica must be a number of at least 1e-06"),
        (["--per-replica", "nan"], "--per-replica must be a number of at least 1e-06"),
        (["--per-replica", "inf"], "--per-replica must be a number of at least 1e-06"),
        (
            ["--per-replica", "5000", "--peak-replicas", "100"],
            "--per-replica replays a trace at its own size and --peak-replicas scales it",
        ),
        (["--physical-capacity", "-1"], "--physical-capacity must be at least 0"),
        (["--node-lead-time", "5x"], "--node-lead-time: '5x' is not a duration"),
        (["--metric-delay", "30s"], "--metric-delay must be a whole number of minutes"),
        (["--pod-ready", "0s"], "--pod-ready must be a whole number of minutes (the simulator's"),
        (["--node-lead-time", "90s"], "--node-lead-time must be a whole number of minutes"),
        (["--quantile", "1.5"], "--quantile 1.5: spec.forecast.quantile:"),
        (["--headroom", "-0.1"], "--headroom -0.1: spec.headroom:"),
        (["--model", "prophet"], "--model prophet: spec.forecast:"),
        (["--stabilization", "soon"], "--stabilization soon: spec.behavior.scaleDown"),
        (["--hpa-min-replicas", "0"], "--hpa-min-replicas must be at least 1"),
        (["--hpa-min-replicas", "100001"], "--hpa-min-replicas must be at most 100000"),
        (["--physical-per-machine", "0"], "--physical-per-machine must be at least 1"),
        (["--replicas-per-node", "1001"], "--replicas-per-node 1001: spec.cloud.replicasPerNode"),
        (["--node-lead-time", "30d"], "--model auto, --node-lead-time 30d: spec: load.history"),
        (
            ["--physical-capacity", "3000000000"],
            "--physical-capacity 3000000000: spec.physical.maxReplicas",
        ),
    ],
    ids=[
        "peak",
        "per-replica-zero",
        "per-replica-nan",
        "per-replica-inf",
        "per-replica-and-peak",
        "physical",
        "lead",
        "delay-under-a-tick",
        "instant-pods",
        "lead-between-ticks",
        "quantile",
        "headroom",
        "model",
        "stabilization",
        "hpa-min-none",
        "hpa-min-above-the-cap",
        "physical-per-machine",
        "replicas-per-node-above-the-crd",
        "lead-beyond-the-history",
        "physical-above-the-crd",
    ],
)
def test_bad_flags_are_named_before_any_replay(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], named: str
) -> None:
    """A wrong scenario or spec flag exits 2 with the flag and, for the spec, the field."""
    trace = tmp_path / "t.csv"
    trace.write_text("timestamp,load\n2020-01-01T00:00:00Z,1\n2020-01-01T00:05:00Z,2\n")
    assert main(["backtest", str(trace), "--jobs", "1", *flags]) == 2
    captured = capsys.readouterr()
    assert named in captured.err
    assert "replayed" not in captured.err


def test_short_trace_warns_and_the_oracle_still_serves_everything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A trace too short to forecast is replayed reactively, with a warning that says why.

    Its load climbs from its first minute, faster than a node boots: every policy starts with
    what perfect foresight would have ready, so the oracle still leaves nothing unserved.
    """
    trace = tmp_path / "short.csv"
    trace.write_text(
        "timestamp,load\n2020-01-01T00:00:00Z,1\n2020-01-01T00:05:00Z,2\n2020-01-01T00:10:00Z,1.5\n"
    )
    assert main(["backtest", str(trace), "--jobs", "1", "--json"]) == 0
    captured = capsys.readouterr()
    oracle = json.loads(captured.out)["traces"]["short"]["oracle"]
    assert oracle["unserved_fraction"] == 0.0
    assert "warning: short: tidal had no usable forecast for 100% of the scored minutes" in (
        captured.err
    )


@pytest.mark.parametrize("minutes", [1, 5])
def test_tidal_acts_once_per_loop_interval(minutes: int) -> None:
    """The controller plans every ``loop_interval``; between loops the cluster keeps its targets."""
    scenario = Scenario(loop_interval=60.0 * minutes)
    values = np.linspace(1.0, 400_000.0, 120)  # a climb out of the physical pool
    load = LoadSeries(0.0, 60.0, values)
    spec = backtest_spec("loop", scenario=scenario)
    need = oracle_need(load, spec)
    policies = build_policies(spec, scenario, need, ("tidal",))
    result = simulate(
        load, spec=spec, scenario=scenario, score_from=60.0 * 20, policies=policies, need=need
    )["tidal"]
    scored = result.ready_physical.size
    assert sum(result.reasons.values()) == -(-scored // minutes)
    # Physical capacity grows only a pod start after a loop acted.
    changes = np.flatnonzero(np.diff(result.ready_physical)) + 1
    assert changes.size and all((m - 1) % minutes == 0 for m in changes.tolist())


def test_loop_interval_must_be_whole_minutes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backtest", "x.csv", "--loop-interval", "90s"]) == 2
    assert "--loop-interval must be a whole number of minutes" in capsys.readouterr().err


def _climb_and_fall(minutes: int = 240) -> LoadSeries:
    """Out of the physical pool and back: 30 replicas' worth, 90 at the middle, 30 again."""
    t = np.arange(minutes, dtype=np.float64)
    values = 150_000.0 + 300_000.0 * np.exp(-(((t - minutes / 2) / 30.0) ** 2))
    return LoadSeries(0.0, 60.0, values)


def _run(
    load: LoadSeries, scenario: Scenario, names: tuple[str, ...], score_from: float
) -> dict[str, PolicyResult]:
    spec = backtest_spec("sim", scenario=scenario)
    need = oracle_need(load, spec)
    policies = build_policies(spec, scenario, need, names)
    return simulate(
        load, spec=spec, scenario=scenario, score_from=score_from, policies=policies, need=need
    )


def test_a_long_metric_delay_is_not_missing_data() -> None:
    """Samples as old as the metric delay are what the controller has: tidal still scales
    down after the peak instead of holding as it does when data is missing."""
    result = _run(_climb_and_fall(), Scenario(metric_delay=360.0), ("tidal",), 600.0)["tidal"]
    ready = result.ready_physical + result.ready_cloud
    assert ready[-1] < ready.max()
    assert result.replicas_removed > 0


@pytest.mark.parametrize(
    "scenario",
    [Scenario(pod_ready=0.0), Scenario(node_lead_time=0.0), Scenario(pod_ready=90.0)],
    ids=["instant-pods", "instant-nodes", "90s-pods"],
)
def test_oracle_serves_everything_whatever_the_lags(scenario: Scenario) -> None:
    """A tick is the simulator's smallest lag: what is asked for is ready at the next one at
    the earliest, and the oracle plans with the lags the cluster applies."""
    load = _climb_and_fall()
    result = _run(load, scenario, ("oracle",), 60.0)["oracle"]
    values = load.values[1 : 1 + result.ready_physical.size] / 5000.0
    ready = result.ready_physical + result.ready_cloud
    assert np.all(np.ceil(values - 1e-9) <= ready)


def test_scoring_starts_where_the_replay_starts(tmp_path: Path) -> None:
    """A --score-from inside the first minute is scored from the first replayed minute."""
    trace = tmp_path / "early.csv"
    rows = [f"2020-01-01T00:{m:02d}:00Z,{v}" for m, v in enumerate([1, 1, 5, 9, 9, 9, 3, 1])]
    trace.write_text("timestamp,load\n" + "\n".join(rows) + "\n")
    run = run_trace(trace, scenario=Scenario(), score_from=1577836800.0 + 30.0)
    oracle = report([run], Scenario(), model="auto")["traces"]["early"]["oracle"]
    assert oracle["unserved_fraction"] == 0.0


def test_the_plot_starts_where_the_scoring_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A --score-from inside the first minute is scored from the second (the first scored
    minute needs one of history): the plot drew each policy's first minute at the trace's
    first, a minute early, against the load of the minute before."""
    import matplotlib.pyplot as plt

    from controller.plotting import plot_backtest

    drawn: list[object] = []
    monkeypatch.setattr(plt, "close", drawn.append)  # keep the figure to look at
    start = 1577836800.0
    series = LoadSeries(start, 60.0, np.array([1.0, 1, 5, 9, 9, 9, 3, 1]))
    run = run_trace("early.csv", scenario=Scenario(), score_from=start + 30.0, series=series)
    plot_backtest([run], tmp_path / "early.png")
    (figure,) = drawn
    axes = figure.axes[0]  # type: ignore[attr-defined]
    (load,) = [line for line in axes.get_lines() if line.get_label().startswith("load")]
    first = np.datetime64(int((start + 60.0) * 1000), "ms")
    assert load.get_xdata()[0] == first
    assert np.array_equal(load.get_ydata(), run.load.values[1:] / 5000)
    monkeypatch.undo()
    plt.close(figure)  # type: ignore[arg-type]


def test_policies_never_see_the_future() -> None:
    """With a metric delay longer than the history before the first scored minute, a policy
    sees nothing rather than samples from later in the trace."""
    load = _climb_and_fall(60)
    seen: list[tuple[int, int]] = []

    def spy(minute: int, view: PolicyView) -> Targets:
        seen.append((minute, len(view.history)))
        return Targets(physical=60, cloud=0)

    scenario = Scenario(metric_delay=300.0)
    spec = backtest_spec("sim", scenario=scenario)
    simulate(
        load,
        spec=spec,
        scenario=scenario,
        score_from=60.0,
        policies={"spy": spy},
        need=oracle_need(load, spec),
    )
    assert all(length <= max(0, minute + 1 - 5) for minute, length in seen)


def test_only_ready_pods_count_as_removed() -> None:
    """A pod cancelled before it was ready disconnects nobody."""
    cluster = ClusterModel(Scenario())
    cluster.apply(0, Targets(physical=30, cloud=0))
    cluster.apply(0, Targets(physical=0, cloud=0))  # cancelled within the tick: never ready
    assert cluster.removed == 0
    cluster.apply(1, Targets(physical=30, cloud=0))
    cluster.apply(2, Targets(physical=10, cloud=0))  # ready since minute 2
    assert cluster.removed == 20


class _Scripted:
    """A policy that asks for the physical replicas its script gives for each minute."""

    name = "scripted"

    def __init__(self, physical: dict[int, int]) -> None:
        self.physical = physical
        self.last = 0

    def __call__(self, minute: int, view: PolicyView) -> Targets:
        self.last = self.physical.get(minute, self.last)
        return Targets(physical=self.last, cloud=0)


def test_replicas_removed_at_a_tick_serve_none_of_its_minute() -> None:
    """A minute is served by what is ready through it: replicas removed at its tick are gone
    for all of it, replicas asked for then are ready only at the next tick."""
    spec = backtest_spec("t", scenario=Scenario())
    load = LoadSeries(0.0, 60.0, np.full(8, 100_000.0))
    policy = _Scripted({1: 40, 4: 10, 6: 30})
    results = simulate(
        load,
        spec=spec,
        scenario=Scenario(),
        score_from=60.0,
        policies={"scripted": policy},
        need=oracle_need(load, spec),
    )
    # Scored from minute 1, warm with the 20 replicas the load needs: 40 asked at 1 are ready
    # at 2; 30 removed at 4 are gone for minute 4; 20 added at 6 are ready at 7.
    assert results["scripted"].ready_physical.tolist() == [20, 40, 40, 10, 10, 10, 30]


def test_the_oracle_keeps_this_minutes_need_through_a_fall() -> None:
    """The need falls from 30 to 5 replicas at minute 4: the oracle removes the 25 at minute
    5's tick, not 4's, and serves every minute."""
    scenario = Scenario()
    spec = backtest_spec("t", scenario=scenario)
    values = np.array([30.0] * 5 + [5.0] * 5) * 5000.0
    load = LoadSeries(0.0, 60.0, values)
    need = oracle_need(load, spec)
    policies = build_policies(spec, scenario, need, ("oracle",))
    results = simulate(
        load, spec=spec, scenario=scenario, score_from=60.0, policies=policies, need=need
    )
    served = results["oracle"].ready_physical
    assert served.tolist() == [30, 30, 30, 30, 5, 5, 5, 5, 5]
    assert (served * 5000.0 >= values[1:]).all()


def test_a_gap_in_a_coarse_trace_stays_a_gap() -> None:
    """Interpolating a 30-minute trace to minutes does not invent load across missing samples,
    and the oracle carries the last need through the gap instead of dropping to zero."""
    coarse = LoadSeries(0.0, 1800.0, np.array([1.0, 2.0, np.nan, np.nan, 3.0, 4.0]))
    minute = prepare_trace(coarse, Scenario())
    assert np.isnan(minute.values[31:119]).all()
    assert np.isfinite(minute.values[:31]).all() and np.isfinite(minute.values[120:]).all()
    need = oracle_need(minute, backtest_spec("gap", scenario=Scenario()))
    assert need[31:119].min() == need[30]


def test_two_traces_with_one_name_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for folder in ("a", "b"):
        (tmp_path / folder / "x.csv").write_text("timestamp,load\n2020-01-01T00:00:00Z,1\n")
    argv = ["backtest", str(tmp_path / "a" / "x.csv"), str(tmp_path / "b" / "x.csv")]
    assert main(argv) == 2
    assert "are both reported as 'x'" in capsys.readouterr().err


def _hpa_view(minute: int, values: npt.NDArray[np.float64], replicas: int) -> PolicyView:
    return PolicyView(
        now=60.0 * minute,
        history=LoadSeries(0.0, 60.0, values[: minute + 1]),
        physical_replicas=min(replicas, 60),
        cloud_replicas=max(0, replicas - 60),
        physical_capacity=60,
        reserved=max(0, replicas - 60),
    )


def test_hpa_scales_down_five_minutes_after_it_sees_the_load_fall() -> None:
    """The HPA syncs every 15 s and keeps the highest recommendation of the last 300 s: the
    last high one before a drop is seen is under 15 s old then, so the drop is acted on at
    the fifth minute's tick after the first low sample, not the fourth."""
    spec = backtest_spec("hpa", scenario=Scenario())
    hpa = HpaPolicy(spec)
    values = np.array([400_000.0] * 10 + [100_000.0] * 10)  # seen low from minute 10
    replicas = 0
    first_down = None
    for minute in range(values.size):
        targets = hpa(minute, _hpa_view(minute, values, replicas))
        total = targets.physical + targets.cloud
        if minute >= 10 and total < replicas and first_down is None:
            first_down = minute
        replicas = total
    assert first_down == 15


@pytest.mark.parametrize(
    ("needed", "reached"),
    [(43.5, 40), (45.0, 45), (400.0, 160)],
    ids=["stops-within-tolerance", "reaches-the-need", "four-doublings"],
)
def test_hpa_scale_up_checks_its_tolerance_at_every_sync(needed: float, reached: int) -> None:
    """From 10 replicas, the minute's four 15-second syncs double the count at most each; a
    sync that finds the load within 10% of what the sync before it set adds nothing more."""
    spec = backtest_spec("hpa", scenario=Scenario())
    hpa = HpaPolicy(spec)
    values = np.array([needed * target_per_replica(spec)])
    targets = hpa(0, _hpa_view(0, values, 10))
    assert targets.physical + targets.cloud == reached


def test_hpa_records_no_recommendation_without_a_metric() -> None:
    """Minutes without a load sample leave the replicas as they are and record nothing, so
    the high recommendations before a gap age out of the 300 s window on time."""
    spec = backtest_spec("hpa", scenario=Scenario())
    hpa = HpaPolicy(spec)
    per = target_per_replica(spec)
    values = np.array([80 * per] * 3 + [math.nan] * 3 + [20 * per] * 6)
    replicas = 80
    totals = []
    for minute in range(values.size):
        targets = hpa(minute, _hpa_view(minute, values, replicas))
        replicas = targets.physical + targets.cloud
        totals.append(replicas)
    assert totals[:6] == [80] * 6  # held through the gap
    # The last recommendation of 80 was at minute 2: it leaves the window at minute 8.
    assert totals[6:] == [80, 80, 20, 20, 20, 20]


@pytest.mark.parametrize("offset", [0.0, 53.0], ids=["on-the-minute", "53s"])
def test_tidal_forecasts_from_a_bucket_as_soon_as_its_last_sample_is_seen(offset: float) -> None:
    """The policy reuses a forecast until a bucket of the fit step completes: at the minute
    that bucket's last sample arrives, as the live operator would, not a minute later. Also
    for samples off the minute, as the tweets trace's are (at 53 s)."""
    policy = seasonal_naive_policy("fresh")
    start = SINE_START + offset
    origins = []
    for minute, view in daily_sine_views(start, 10):
        policy(minute, view)
        assert policy._forecast is not None
        origins.append(policy._forecast.origin - view.history.end)
    # The last whole bucket ends at the latest sample every fifth minute: 0 s old there.
    assert origins.count(0.0) == 2
    assert all(-240.0 <= age <= 0.0 for age in origins)


# --- The report's figures, and the cross-trace summary, on hand-made inputs. ---


def _scored_run(values: list[float], score_from: float, result: PolicyResult) -> TraceRun:
    """A one-policy run over a per-minute load starting at 0."""
    load = LoadSeries(0.0, 60.0, np.array(values, dtype=np.float64))
    return TraceRun("t", load, score_from, {result.name: result}, 0.0)


def _result(
    physical: list[int], cloud: list[int], nodes: list[int], removed: int = 0
) -> PolicyResult:
    return PolicyResult(
        "p",
        np.array(physical, dtype=np.float64),
        np.array(cloud, dtype=np.float64),
        np.array(nodes, dtype=np.float64),
        np.zeros(len(physical)),
        replicas_removed=removed,
    )


def _policy(
    unserved: float,
    cloud: float,
    removed: int = 0,
    *,
    short: int = 0,
    physical: float = 1.0,
) -> dict[str, float | int]:
    """One policy's metrics, as ``score`` reports them."""
    return {
        "unserved_fraction": unserved,
        "underprovisioned_minutes": short,
        "cloud_replica_hours": cloud,
        "physical_replica_hours": physical,
        "replicas_removed": removed,
    }


@pytest.mark.parametrize(
    ("values", "result", "expected"),
    [
        (
            # Minute 0 is history (an enormous load nobody is scored on); the missing sample
            # at minute 3 is no load; minute 2 lacks one replica; at minute 4 the cloud
            # replica completes the capacity.
            [1e9, 10_000.0, 10_000.0, math.nan, 20_000.0, 0.0],
            _result([2, 1, 1, 3, 0], [0, 0, 0, 1, 0], [0, 0, 1, 1, 1], removed=7),
            _policy(5_000.0 / 40_000.0, 3 * 4 / 60.0, 7, short=1, physical=7 / 60.0),
        ),
        (
            [0.0, 0.0, 0.0],
            _result([1, 1], [0, 0], [0, 0]),
            _policy(0.0, 0.0, physical=2 / 60.0),
        ),
        (
            # Half a billionth of a replica above one replica: the oracle's ceil rounds it away.
            [0.0, 5_000.0 * (1 + 5e-10), 5_000.0],
            _result([1, 1], [0, 0], [0, 0]),
            _policy(0.0, 0.0, physical=2 / 60.0),
        ),
        (
            [0.0, 0.25, 0.25],
            _result([0, 0], [0, 0], [0, 0]),
            _policy(1.0, 0.0, short=2, physical=0.0),
        ),
    ],
    ids=["by-hand", "no-load-no-ratio", "oracle-rounding-forgiven", "light-load-none-served"],
)
def test_score_gives_design_metrics_by_hand(
    values: list[float], result: PolicyResult, expected: dict[str, float | int]
) -> None:
    """Each metric of one policy on a tiny run, counted by hand from the scored minutes on."""
    metrics = score(_scored_run(values, 60.0, result), result, Scenario(replicas_per_node=4))
    assert metrics == pytest.approx(expected, rel=1e-12, abs=0.0)
    assert isinstance(metrics["underprovisioned_minutes"], int)
    assert isinstance(metrics["replicas_removed"], int)


def test_report_names_each_trace_and_policy_and_the_scenario() -> None:
    """The JSON holds the scenario with the model and overrides, and each trace's policies."""
    result = _result([1, 1], [0, 0], [0, 0], removed=2)
    run = _scored_run([0.0, 5_000.0, 5_000.0], 60.0, result)
    out = report([run], Scenario(), model="mstl", overrides={"headroom": 0.2})
    assert out["scenario"] == {
        **asdict(Scenario()),
        "model": "mstl",
        "spec_overrides": {"headroom": 0.2},
    }
    assert list(out["traces"]) == ["t"] and list(out["traces"]["t"]) == ["p"]
    assert out["traces"]["t"]["p"]["replicas_removed"] == 2


@pytest.mark.parametrize(
    ("tidal", "hpa", "expected"),
    [(0.0, 0.0, 1.0), (0.0, 1e-6, 0.5), (3e-6, 0.0, 4.0), (0.02, 0.01, 0.020001 / 0.010001)],
    ids=["both-serve-all", "hpa-misses-epsilon", "tidal-misses", "both-miss"],
)
def test_unserved_ratio_adds_epsilon_to_each_side(
    tidal: float, hpa: float, expected: float
) -> None:
    """Tidal's unserved fraction over the HPA's, each with 1e-6 added, so 0/0 is 1."""
    trace = {"tidal": _policy(tidal, 1.0), "hpa": _policy(hpa, 1.0)}
    assert unserved_ratio(trace) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    ("traces", "expected"),
    [
        (
            {
                "a": {"tidal": _policy(0.0, 2.0, 3), "hpa": _policy(1e-6, 4.0, 10)},
                "b": {"tidal": _policy(7e-6, 8.0, 4), "hpa": _policy(0.0, 1.0, 20)},
            },
            (2.0, 8.0, 2.0, 0, 7, 30),
        ),
        (
            {
                "a": {"tidal": _policy(0.0, 2.0), "hpa": _policy(1e-6, 4.0)},
                "b": {"tidal": _policy(0.0, 8.0), "hpa": _policy(0.0, 0.0)},
            },
            (math.sqrt(0.5), 1.0, 0.5, 1, 0, 0),
        ),
        (
            {
                "a": {"tidal": _policy(0.0, 0.0), "hpa": _policy(0.0, 4.0)},
                "b": {"tidal": _policy(0.0, 8.0), "hpa": _policy(0.0, 1.0)},
            },
            (1.0, 1.0, 0.0, 0, 0, 0),
        ),
        (
            {
                "a": {"tidal": _policy(3e-6, 1.0, 5), "hpa": _policy(0.0, 2.0, 6)},
                "b": {"tidal": _policy(0.5, 9.0, 100), "oracle": _policy(0.0, 1.0, 100)},
            },
            (4.0, 4.0, 0.5, 0, 5, 6),
        ),
        (
            {"a": {"oracle": _policy(0.0, 1.0, 9)}},
            (math.nan, math.nan, math.nan, 0, 0, 0),
        ),
    ],
    ids=[
        "two-traces",
        "hpa-paid-no-cloud",
        "tidal-paid-no-cloud",
        "no-hpa-trace",
        "nothing-compares",
    ],
)
def test_summary_compares_tidal_with_the_hpa_across_traces(
    traces: dict[str, dict[str, dict[str, float | int]]], expected: tuple[float, ...]
) -> None:
    """Geometric means and worst ratio over traces both ran; no cloud ratio where hpa paid none."""
    keys = (
        "unserved_ratio_geomean",
        "unserved_ratio_max",
        "cloud_hours_ratio_geomean",
        "cloud_ratio_left_out",
        "tidal_replicas_removed",
        "hpa_replicas_removed",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy noise (log of 0, mean of nothing) on stderr
        got = summary({"traces": traces})
    assert set(got) == set(keys)
    assert [got[k] for k in keys] == pytest.approx(list(expected), rel=1e-9, nan_ok=True)


def _tidal(minutes: int, unforecast: int) -> PolicyResult:
    empty = [0] * minutes
    result = _result(empty, empty, empty)
    result.name = "tidal"
    result.unforecast_minutes = unforecast
    result.forecast_problem = "too short" if unforecast else None
    return result


@pytest.mark.parametrize(
    ("results", "expected"),
    [
        (
            {"tidal": _tidal(12, 3), "hpa": _result([1] * 12, [0] * 12, [0] * 12)},
            (0.25, "too short"),
        ),
        ({"tidal": _tidal(12, 0)}, (0.0, None)),
        ({"hpa": _result([1] * 12, [0] * 12, [0] * 12)}, (0.0, None)),
        ({"tidal": _tidal(0, 0)}, (0.0, None)),
    ],
    ids=["a-quarter-unforecast", "always-forecast", "no-tidal", "nothing-scored"],
)
def test_forecast_gap_is_the_share_of_scored_minutes_without_a_forecast(
    results: dict[str, PolicyResult], expected: tuple[float, str | None]
) -> None:
    """Minutes tidal planned without a forecast over the minutes scored, and the first reason."""
    run = TraceRun("t", LoadSeries(0.0, 60.0, np.ones(13)), 60.0, results, 0.0)
    assert run.forecast_gap() == expected


def _p99_trace(top: float) -> LoadSeries:
    """201 minutes: 198 of load 1, one of 2 (the 99th percentile, exactly), two of ``top``."""
    values = np.array([1.0] * 99 + [top, 2.0] + [1.0] * 99 + [top])
    return LoadSeries(0.0, 60.0, values)


def test_the_99th_percentile_needs_peak_replicas() -> None:
    """The minute at the trace's 99th percentile needs exactly --peak-replicas replicas."""
    scaled = prepare_trace(_p99_trace(10.0), Scenario(peak_replicas=100))
    assert scaled.start == 0.0 and scaled.step == 60.0 and len(scaled) == 201
    assert scaled.values[100] == pytest.approx(100 * 5000.0)
    assert scaled.values[0] == pytest.approx(50 * 5000.0)
    assert scaled.values[99] == pytest.approx(500 * 5000.0)


def test_per_replica_replays_a_trace_at_its_own_size() -> None:
    """With --per-replica, a minute's load over it is the replicas that minute needs, whatever
    the 99th percentile; --peak-replicas does not count."""
    trace = _p99_trace(10.0)
    scaled = prepare_trace(trace, Scenario(peak_replicas=7, per_replica=0.5))
    np.testing.assert_allclose(scaled.values / 5000.0, trace.values / 0.5)


def test_per_replica_replays_a_trace_with_no_peak_to_scale() -> None:
    """A trace idle 99% of the time has no 99th percentile to scale to; at its own size it is
    replayed."""
    values = np.zeros(200)
    values[50] = 30.0
    with pytest.raises(ValueError, match="99th percentile is zero"):
        prepare_trace(LoadSeries(0.0, 60.0, values), Scenario())
    scaled = prepare_trace(LoadSeries(0.0, 60.0, values), Scenario(per_replica=10.0))
    assert scaled.values[50] / 5000.0 == pytest.approx(3.0)


def test_per_replica_names_itself_at_the_replica_cap() -> None:
    with pytest.raises(
        ValueError,
        match="200,000 replicas with --headroom 0 at --per-replica 5e-05, more than the 100,000",
    ) as info:
        prepare_trace(_p99_trace(10.0), Scenario(per_replica=5e-5), headroom=0.0)
    assert "a higher --per-replica" in str(info.value)


def test_the_report_gives_per_replica_and_no_peak_it_did_not_use(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """At its own size, the oracle's replica-hours are the load's over --per-replica, headroom
    on top; the scenario gives --per-replica and a null --peak-replicas."""
    trace = tmp_path / "flat.csv"
    rows = [
        f"2020-01-01T{h:02d}:{m:02d}:00Z,{800 + (h % 2) * 400}" for h in range(4) for m in (0, 30)
    ]
    trace.write_text("timestamp,load\n" + "\n".join(rows) + "\n")
    argv = ["backtest", str(trace), "--jobs", "1", "--json", "--policies", "oracle"]
    assert main([*argv, "--per-replica", "100", "--headroom", "0"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["scenario"]["per_replica"] == 100.0
    assert report["scenario"]["peak_replicas"] is None
    # 8 to 12 replicas at their own size: under the 60 physical ones, none on cloud.
    oracle = report["traces"]["flat"]["oracle"]
    assert oracle["cloud_replica_hours"] == 0.0
    assert 8.0 <= oracle["physical_replica_hours"] / (len(rows) * 0.5 - 0.5) <= 12.0
    assert main([*argv]) == 0
    scaled = json.loads(capsys.readouterr().out)
    assert scaled["scenario"]["per_replica"] is None
    assert scaled["scenario"]["peak_replicas"] == 100


@pytest.mark.parametrize(
    ("headroom", "refused"),
    [(0.0, None), (0.1, "needs 110,000 replicas with --headroom 0.1"), (None, "110,000 replicas")],
    ids=["exactly-the-cap", "headroom-above-it", "crd-default-headroom"],
)
def test_the_replica_cap_holds_a_peak_that_needs_exactly_it(
    headroom: float | None, refused: str | None
) -> None:
    """A peak twice the p99, at --peak-replicas 50000, needs 100,000 replicas plus headroom."""
    trace, scenario = _p99_trace(4.0), Scenario(peak_replicas=50_000)
    if refused is None:
        assert np.nanmax(prepare_trace(trace, scenario, headroom=headroom).values) == 5e8
        return
    with pytest.raises(ValueError, match=refused):
        prepare_trace(trace, scenario, headroom=headroom)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([5.0], "holds 1 whole minute"),
        ([math.nan, math.nan, math.nan], "no whole minute with a load sample"),
        ([0.0] * 200 + [1.0], "99th percentile is zero"),
    ],
    ids=["one-minute", "no-sample", "p99-zero"],
)
def test_a_trace_that_cannot_be_scaled_says_why(values: list[float], message: str) -> None:
    """Too short, empty and flat traces are refused with their own reason."""
    with pytest.raises(ValueError, match=message):
        prepare_trace(LoadSeries(0.0, 60.0, np.array(values)), Scenario())


@pytest.mark.parametrize(
    ("least", "refused"),
    [(0, True), (1, False), (REPLICA_CAP, False), (REPLICA_CAP + 1, True)],
    ids=["zero", "one", "the-cap", "above-the-cap"],
)
def test_hpa_min_replicas_must_lie_within_the_spec(least: int, refused: bool) -> None:
    """--hpa-min-replicas from 1 to replicas.max becomes the HPA's minReplicas; others fail."""
    scenario = Scenario(hpa_min_replicas=least)
    spec = backtest_spec("r", scenario=Scenario())
    if refused:
        with pytest.raises(ValueError, match="--hpa-min-replicas must be 1 to 100000"):
            hpa_spec(spec, scenario)
    else:
        assert hpa_spec(spec, scenario).replicas.min == least


@pytest.mark.parametrize(
    ("days", "scored_after"),
    [(8, 2 * 86400.0), (100, 14 * 86400.0), (56, 14 * 86400.0)],
    ids=["short-quarter", "long-two-weeks", "both-equal"],
)
def test_default_scoring_starts_at_two_weeks_or_a_quarter(days: int, scored_after: float) -> None:
    """Two weeks into the trace or its first quarter, whichever is shorter."""
    series = LoadSeries(1000.0, 3600.0, np.ones(days * 24 + 1))
    assert default_score_from(series) == 1000.0 + scored_after


@pytest.mark.parametrize(
    ("score_from", "outcome"),
    [
        (0.0, "falls outside the trace"),
        (60.0, 3 / 8),
        (120.0, 3 / 7),
        (480.0, "falls outside the trace"),
        (420.0, "no load sample in the scored minutes"),
    ],
    ids=["at-start", "three-of-eight-missing", "three-of-seven-missing", "at-end", "all-missing"],
)
def test_load_for_replay_checks_where_scoring_starts(
    score_from: float, outcome: float | str
) -> None:
    """Scoring needs history before it and load after it; the share of missing minutes is kept."""
    values = np.array([1.0, 1.0, 1.0, 1.0, math.nan, 1.0, 1.0, math.nan, math.nan])
    series = LoadSeries(0.0, 60.0, values)
    if isinstance(outcome, str):
        with pytest.raises(ValueError, match=outcome):
            load_for_replay("x.csv", scenario=Scenario(), score_from=score_from, series=series)
        return
    trace = load_for_replay("dir/x.csv", scenario=Scenario(), score_from=score_from, series=series)
    assert (trace.name, trace.score_from) == ("x", score_from)
    assert trace.missing_share == pytest.approx(outcome)


def test_a_two_minute_trace_is_long_enough_to_scale() -> None:
    """Two whole minutes are the least a replay needs: they are scaled, not refused."""
    scaled = prepare_trace(LoadSeries(0.0, 60.0, np.array([1.0, 2.0])), Scenario(peak_replicas=99))
    # The 99th percentile of 1 and 2 is 1.99: it needs 99 replicas.
    assert scaled.values.tolist() == pytest.approx([99 * 5000.0 / 1.99, 2 * 99 * 5000.0 / 1.99])


@pytest.mark.parametrize("prepared", [0.0, 100.0], ids=["fresh", "slow-to-read"])
def test_a_replay_reports_the_seconds_it_took_reading_included(prepared: float) -> None:
    """'replayed in Ns' counts reading the trace and replaying it: seconds, not a clock reading."""
    series = LoadSeries(0.0, 60.0, np.full(30, 5_000.0))
    trace = load_for_replay("t.csv", scenario=Scenario(), series=series)
    assert 0.0 <= trace.seconds < 60.0
    trace.seconds = prepared
    run = replay(trace, scenario=Scenario(), policies=("oracle",))
    assert prepared <= run.seconds < prepared + 60.0
    # 29 minutes long: scored from a quarter in (7.25 minutes), minutes 7 to 29.
    assert list(run.results) == ["oracle"] and run.results["oracle"].ready_physical.size == 23


@pytest.mark.parametrize("names", [("bogus",), ("oracle", "HPA")], ids=["unknown", "wrong-case"])
def test_an_unknown_policy_is_refused_naming_the_known_ones(names: tuple[str, ...]) -> None:
    """build_policies knows tidal, hpa and oracle, and says so for anything else."""
    spec = backtest_spec("r", scenario=Scenario())
    with pytest.raises(ValueError, match="known: tidal, hpa, oracle"):
        build_policies(spec, Scenario(), np.zeros(3, dtype=np.int64), names)


@pytest.mark.filterwarnings("ignore::forecasts.errors.TraceWarning")
def test_score_from_on_a_local_clock_is_read_as_the_trace_s_rows(tmp_path: Path) -> None:
    """--score-from without an offset, on a trace whose local clock went back an hour, names
    the row the file writes at that time: an hour on after the fold, as the rows were placed
    (before, the row written an hour earlier). With an offset it is read as it says."""
    from datetime import datetime

    path = local_clock_trace(tmp_path / "local.csv", first_load=100)
    six = datetime(2024, 11, 3, 6).replace(tzinfo=UTC).timestamp()
    local = load_for_replay(path, scenario=Scenario(), score_from="2024-11-03T06:00:00")
    assert local.score_from == six + 3600.0
    given = load_for_replay(path, scenario=Scenario(), score_from="2024-11-03T06:00:00Z")
    assert given.score_from == six
