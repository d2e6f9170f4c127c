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
from controller.planner import bucket_centres, path_max, target_per_replica
from controller.simulator import (
    HpaPolicy,
    PolicyView,
    PredictiveHpaPolicy,
    Scenario,
    Targets,
    TidalPolicy,
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
    ("before", "least"), [(20, 10), (12, 10), (10, 10), (8, 26), (6, 40), (5, 50), (1, 50)]
)
def test_it_scales_up_before_a_rise_the_forecast_sees_and_the_hpa_does_not(
    before: int, least: int
) -> None:
    """Two days of a daily step from 10 to 50 replicas' worth: on the third, within a node's
    boot, a pod's start and a loop of the step (7 minutes), the predictive HPA scales up
    towards it (the forecast's 5-minute buckets read through their centres, as the planner
    reads them) while the HPA, which reads only the load now, keeps 10. Further ahead than
    that it waits, as the HPA does."""
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
    assert predictive.refits == 1 and predictive.unforecast == 0


@pytest.mark.parametrize("before", [5, 3, 1, 0])
def test_a_short_rise_anywhere_in_the_window_counts(before: int) -> None:
    """A daily rise of one 5-minute bucket: from 5 minutes before it to its start, the
    highest value over the window is the rise's, wherever in the window it falls."""
    spec = _spec()
    target = target_per_replica(spec)
    minute_of_day = np.arange(3 * 1440) % 1440
    values = np.where((minute_of_day >= STEP_AT) & (minute_of_day < STEP_AT + 5), 50.0, 10.0)
    minute = 2 * 1440 + STEP_AT - before
    metric = PredictiveHpaPolicy(spec, Scenario())._metric(_view(values * target, minute, 10))
    assert metric == pytest.approx(50 * target)


def test_a_load_above_the_forecast_is_served_as_the_hpa_serves_it() -> None:
    """A surge the forecast did not see (40 replicas' worth where the days before had 10):
    the load now is the larger metric, and the policy scales to it."""
    spec = _spec()
    target = target_per_replica(spec)
    values = _stepped_days(3, target)
    minute = 2 * 1440 + STEP_AT - 60
    values[minute] = 40 * target
    policy = PredictiveHpaPolicy(spec, Scenario())
    assert policy(minute, _view(values, minute, 10)) == Targets(physical=40, cloud=0)


def test_it_reads_the_forecast_s_upper_quantile_not_its_point() -> None:
    """On a noisy daily cycle the band is wider than the point: the metric is the upper
    quantile's highest value over the window, above the point's."""
    spec = _spec()
    target = target_per_replica(spec)
    rng = np.random.default_rng(7)
    minutes = np.arange(4 * 1440)
    values = (30 + 10 * np.sin(2 * np.pi * minutes / 1440)) * target
    values *= 1 + 0.2 * rng.standard_normal(minutes.size)
    minute = minutes.size - 1
    view = _view(values, minute, 30)
    policy = PredictiveHpaPolicy(spec, Scenario())
    metric = policy._metric(view)
    forecast = policy._forecast
    assert forecast is not None
    centres = bucket_centres(forecast.times(), forecast.step, 60.0)
    end = view.now + policy.ahead
    upper = path_max(centres, forecast.upper(spec.forecast.quantile), view.now, end)
    point = path_max(centres, forecast.point, view.now, end)
    assert metric == max(upper, float(values[-1])) and upper > 1.1 * point


def test_it_refits_every_refit_period() -> None:
    """refit 15m: fitted at the first sync with a metric and again 15 minutes later."""
    spec = _spec()
    values = _stepped_days(3, target_per_replica(spec))
    policy = PredictiveHpaPolicy(spec, Scenario())
    first = 2 * 1440 + 100
    for minute in range(first, first + 20):
        policy(minute, _view(values, minute, 10))
    assert policy.refits == 2 and policy.fitted is not None


def test_its_forecast_looks_as_far_as_tidal_looks_for_a_node() -> None:
    """The window follows the scenario: a node's boot, a pod's start and a loop (5 + 1 + 1
    minutes by default); the forecast reaches past it by the metric's delay."""
    default = PredictiveHpaPolicy(_spec(), Scenario())
    assert default.ahead == 420.0
    slow = Scenario(node_lead_time=600.0, pod_ready=90.0, metric_delay=600.0)
    late = PredictiveHpaPolicy(_spec(), slow)
    assert late.ahead == 750.0
    assert late.reach >= 750.0 + 600.0


def test_its_forecaster_is_tidal_s_in_the_scenario() -> None:
    """The same planner settings as tidal's, a longer node hold and metric delay included."""
    scenario = Scenario(node_unneeded_time=3000.0, metric_delay=420.0)
    spec = _spec()
    assert PredictiveHpaPolicy(spec, scenario).settings == TidalPolicy(spec, scenario).settings


@pytest.mark.parametrize("replicas", [1, 10, 40, 80])
def test_without_a_forecast_it_is_the_hpa(replicas: int) -> None:
    """Two minutes of history fit no model: every sync recommends what the HPA's does."""
    spec = _spec()
    for load in (0.0, 5.0, 33.0, 120.0):
        values = np.array([load, load]) * target_per_replica(spec)
        view = _view(values, 1, replicas)
        predictive = PredictiveHpaPolicy(spec, Scenario())
        assert predictive(1, view) == HpaPolicy(spec)(1, view)
        assert predictive.fitted is None and predictive.unforecast == 1
        assert predictive.first_problem == predictive.problem and predictive.problem


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


def _write_trace(path: Path, values: np.ndarray, score_after: int) -> tuple[Path, str]:
    """``values`` a minute apart from 2020-01-01 as a trace at ``path``, and the timestamp
    ``score_after`` seconds into it."""
    start = 1_577_836_800

    def stamp(seconds: int) -> str:
        return f"{np.datetime_as_string(np.datetime64(start + seconds, 's'))}Z"

    rows = [f"{stamp(60 * i)},{v:.3f}" for i, v in enumerate(values)]
    path.write_text("timestamp,load\n" + "\n".join(rows) + "\n")
    return path, stamp(score_after)


def test_a_backtest_runs_it_when_asked_and_only_then(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Three days of a daily wave with a step: the report holds the predictive policy's
    metrics when it is asked for, and the default policies' otherwise."""
    values = _stepped_days(3, 1.0) * (1 + 0.2 * np.sin(np.arange(3 * 1440) / 200.0))
    trace, score_from = _write_trace(tmp_path / "stepped.csv", values, score_after=2 * 86400)
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


def test_the_table_s_title_names_the_policies_that_ran() -> None:
    console = Console(record=True, width=400)
    only = {name: {k: t[k] for k in ("hpa", "predictive")} for name, t in TRACES.items()}
    print_table({"traces": only}, console)
    title = console.export_text().splitlines()[0].strip()
    assert title == "Backtest: the HPA, a predictive HPA blind to the tiers"


def test_a_predictive_run_without_a_forecast_is_warned_of(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Scored from the trace's second hour, no model has the history it needs: the warning
    names each forecasting policy that ran, and what it did instead."""
    trace, score_from = _write_trace(tmp_path / "young.csv", _stepped_days(2, 1.0), 3600)
    argv = ["backtest", str(trace), "--json", "--jobs", "1", "--score-from", score_from]
    assert main([*argv, "--policies", "hpa,predictive"]) == 0
    err = capsys.readouterr().err
    assert "young: predictive had no usable forecast for" in err and "ran as the HPA" in err
    assert "tidal had no usable forecast" not in err
