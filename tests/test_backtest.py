"""The simulator's cluster model, and ``tidal backtest`` end to end on a short real trace."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from controller.backtest import backtest_spec, build_policies
from controller.cli import main
from controller.simulator import ClusterModel, Scenario, Targets, oracle_need, simulate
from forecasts.series import LoadSeries

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
    ],
)
def test_spec_flags_reach_tidal_spec(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    flags: list[str],
    overrides: dict[str, object],
) -> None:
    """--limit-by and --hold-starting set tidal's spec, and the report says so."""
    with resources.as_file(resources.files("controller.data") / "nyc-taxi-30min-local.csv") as p:
        trace = tmp_path / "nyc-day.csv"
        trace.write_text(Path(p).read_text())
    argv = ["backtest", str(trace), "--json", "--jobs", "1", "--policies", "tidal"]
    argv += ["--score-from", "2015-01-16T00:00:00", *flags]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["scenario"]["spec_overrides"] == overrides
    assert set(report["traces"]["nyc-day"]) == {"tidal"}


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
        (["--physical-capacity", "-1"], "--physical-capacity must be at least 0"),
        (["--node-lead-time", "5x"], "--node-lead-time: '5x' is not a duration"),
        (["--quantile", "1.5"], "--quantile 1.5: spec.forecast.quantile:"),
        (["--headroom", "-0.1"], "--headroom -0.1: spec.headroom:"),
        (["--model", "prophet"], "--model prophet: spec.forecast:"),
    ],
    ids=["peak", "physical", "lead", "quantile", "headroom", "model"],
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
