"""The ``predictive`` policy of ``tidal backtest``: an HPA with a forecast metric, blind to the
capacity tiers (:class:`controller.simulator.PredictiveHpaPolicy`), and the report and table
that compare tidal with it when it is asked for."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from controller.backtest import KNOWN_POLICIES, POLICIES, backtest_spec, build_policies, summary
from controller.backtest_command import print_table
from controller.cli import main
from controller.planner import target_per_replica
from controller.simulator import (
    HpaPolicy,
    PolicyView,
    PredictiveHpaPolicy,
    Scenario,
    Targets,
)
from forecasts.series import LoadSeries
from tests.support.fixtures import SINE_START

#: The minute of the day the load steps up, and back down an hour later, every day.
STEP_AT = 18 * 60


def _spec(name: str = "predictive"):  # type: ignore[no-untyped-def]
    return backtest_spec(name, scenario=Scenario(), model="seasonal-naive")


def _stepped_days(days: int, per_replica: float) -> np.ndarray:
    """``days`` days a minute apart: 10 replicas' worth of load, 50 from STEP_AT for an hour."""
    minute = np.arange(days * 1440) % 1440
    replicas = np.where((minute >= STEP_AT) & (minute < STEP_AT + 60), 50.0, 10.0)
    return replicas * per_replica


def _view(values: np.ndarray, minute: int, replicas: int) -> PolicyView:
    """The view at ``minute`` (the load seen up to it) with ``replicas`` on the physical pool."""
    return PolicyView(
        now=SINE_START + 60.0 * minute,
        history=LoadSeries(SINE_START, 60.0, values[: minute + 1]),
        physical_replicas=replicas,
        cloud_replicas=0,
        physical_capacity=60,
        reserved=0,
    )


@pytest.mark.parametrize(
    ("before", "least"), [(20, 10), (10, 10), (7, 10), (4, 12), (2, 50), (1, 50)]
)
def test_it_scales_up_before_a_rise_the_forecast_sees_and_the_hpa_does_not(
    before: int, least: int
) -> None:
    """Two days of a daily step from 10 to 50 replicas' worth: on the third, within a node's
    boot and a pod's start of the step, the predictive HPA scales up towards it (the
    forecast's 5-minute buckets read between their points, as tidal reads them) while the
    HPA, which reads only the load now, keeps 10. Further ahead than that it waits, as the
    HPA does."""
    spec = _spec()
    target = target_per_replica(spec)
    values = _stepped_days(3, target)
    minute = 2 * 1440 + STEP_AT - before
    predictive = PredictiveHpaPolicy(spec, Scenario())
    hpa = HpaPolicy(spec)
    view = _view(values, minute, 10)
    assert hpa(minute, view) == Targets(physical=10, cloud=0)
    got = predictive(minute, view)
    if least == 10:
        assert got == Targets(physical=10, cloud=0)
    else:
        assert got.physical >= least and got.cloud == 0, got
    assert predictive.refits == 1


def test_its_forecast_looks_a_node_boot_and_a_pod_start_ahead() -> None:
    """The window follows the scenario: 5 + 1 minutes by default, 10 + 2 with slower nodes
    and pods."""
    assert PredictiveHpaPolicy(_spec(), Scenario()).ahead == 6
    slow = Scenario(node_lead_time=600.0, pod_ready=90.0)
    assert PredictiveHpaPolicy(_spec(), slow).ahead == 12


@pytest.mark.parametrize("replicas", [1, 10, 40, 80])
def test_without_a_forecast_it_is_the_hpa(replicas: int) -> None:
    """Two minutes of history fit no model: every sync recommends what the HPA's does."""
    spec = _spec()
    for load in (0.0, 5.0, 33.0, 120.0):
        values = np.array([load, load]) * target_per_replica(spec)
        view = _view(values, 1, replicas)
        predictive = PredictiveHpaPolicy(spec, Scenario())
        assert predictive(1, view) == HpaPolicy(spec)(1, view)
        assert predictive.fitted is None and predictive.problem


def test_without_a_load_sample_it_changes_nothing() -> None:
    """A missing sample is no metric: the sync changes nothing, whatever the forecast says."""
    spec = _spec()
    values = _stepped_days(3, target_per_replica(spec))
    minute = 2 * 1440 + STEP_AT - 2
    values[minute] = math.nan
    got = PredictiveHpaPolicy(spec, Scenario())(minute, _view(values, minute, 12))
    assert got == Targets(physical=12, cloud=0)


def test_it_is_known_but_not_a_default_policy() -> None:
    assert "predictive" in KNOWN_POLICIES and "predictive" not in POLICIES
    table = build_policies(_spec(), Scenario(), np.zeros(1, dtype=np.int64), ("predictive",))
    assert isinstance(table["predictive"], PredictiveHpaPolicy)


def _metrics(unserved: float, cloud: float, removed: int) -> dict[str, float | int]:
    return {
        "unserved_fraction": unserved,
        "underprovisioned_minutes": 1,
        "cloud_replica_hours": cloud,
        "physical_replica_hours": 10.0,
        "replicas_removed": removed,
    }


TRACES = {
    "a": {
        "tidal": _metrics(0.001, 20.0, 3),
        "hpa": _metrics(0.01, 10.0, 9),
        "predictive": _metrics(0.004, 40.0, 5),
    },
    "b": {
        "tidal": _metrics(0.0, 5.0, 1),
        "hpa": _metrics(0.002, 4.0, 2),
        "predictive": _metrics(0.0005, 5.0, 4),
    },
}


def test_the_summary_compares_tidal_with_the_baseline_it_is_given() -> None:
    report = {"traces": TRACES}
    hpa = summary(report)
    assert hpa["hpa_replicas_removed"] == 11 and "predictive_replicas_removed" not in hpa
    assert hpa["cloud_hours_ratio_geomean"] == pytest.approx(math.sqrt(2.0 * 1.25))
    predictive = summary(report, against="predictive")
    assert predictive["predictive_replicas_removed"] == 9
    assert predictive["tidal_replicas_removed"] == 4
    assert predictive["cloud_hours_ratio_geomean"] == pytest.approx(math.sqrt(0.5 * 1.0))
    worst = (0.0 + 1e-6) / (0.0005 + 1e-6)
    assert predictive["unserved_ratio_max"] == pytest.approx((0.001 + 1e-6) / (0.004 + 1e-6))
    assert predictive["unserved_ratio_geomean"] == pytest.approx(
        math.sqrt(worst * (0.001 + 1e-6) / (0.004 + 1e-6))
    )


def test_the_table_gives_a_line_for_each_baseline_that_ran() -> None:
    console = Console(record=True, width=400)
    print_table({"traces": TRACES}, console)
    lines = console.export_text().splitlines()
    hpa = [line for line in lines if line.startswith("tidal/hpa,")]
    predictive = [line for line in lines if line.startswith("tidal/predictive,")]
    assert len(hpa) == 1 and len(predictive) == 1
    assert "cloud hours 0.71" in predictive[0]
    assert predictive[0].endswith("replicas removed: tidal 4, predictive 9")
    only_hpa = {
        name: {k: v for k, v in t.items() if k != "predictive"} for name, t in TRACES.items()
    }
    console = Console(record=True, width=400)
    print_table({"traces": only_hpa}, console)
    assert "tidal/predictive" not in console.export_text()


def test_an_unknown_policy_names_predictive_among_the_known(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = tmp_path / "t.csv"
    trace.write_text("timestamp,load\n2020-01-01T00:00:00Z,1\n2020-01-01T00:01:00Z,2\n")
    assert main(["backtest", str(trace), "--policies", "tidal,phpa"]) == 2
    err = capsys.readouterr().err
    assert "unknown policy 'phpa'" in err and "predictive" in err


def test_a_backtest_runs_it_when_asked_and_only_then(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Three days of a daily wave with a step: the report holds the predictive policy's
    metrics when it is asked for, and the default policies' otherwise."""
    start = 1_577_836_800
    values = _stepped_days(3, 1.0) * (1 + 0.2 * np.sin(np.arange(3 * 1440) / 200.0))
    rows = [
        f"{np.datetime_as_string(np.datetime64(start + 60 * i, 's'))}Z,{v:.3f}"
        for i, v in enumerate(values)
    ]
    trace = tmp_path / "stepped.csv"
    trace.write_text("timestamp,load\n" + "\n".join(rows) + "\n")
    score_from = f"{np.datetime_as_string(np.datetime64(start + 2 * 86400, 's'))}Z"
    common = ["backtest", str(trace), "--json", "--jobs", "1", "--score-from", score_from]
    assert main([*common, "--policies", "hpa,predictive"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["traces"]["stepped"]) == {"hpa", "predictive"}
    predictive = report["traces"]["stepped"]["predictive"]
    hpa = report["traces"]["stepped"]["hpa"]
    assert set(predictive) == set(hpa)
    # It sees the daily step coming, the HPA does not.
    assert predictive["unserved_fraction"] < hpa["unserved_fraction"]
    assert main(common) == 0
    assert set(json.loads(capsys.readouterr().out)["traces"]["stepped"]) == set(POLICIES)
