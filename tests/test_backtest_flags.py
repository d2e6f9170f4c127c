"""``tidal backtest``'s scenario and spec flags at their edges (controller.backtest_command):
what each accepts at its bound, the minute the simulator ticks, the spec values the boolean
flags set, and the minutes a replay reports its progress on."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from controller.backtest import REPLICA_CAP
from controller.backtest_command import (
    _report_minute,
    add_arguments,
    scenario_from_args,
    spec_overrides_from_args,
)


def parsed(*flags: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(["t.csv", *flags])


@pytest.mark.parametrize(
    ("flags", "field", "value"),
    [
        (["--metric-delay", "0s"], "metric_delay", 0.0),
        (["--metric-delay", "2m"], "metric_delay", 120.0),
        (["--node-lead-time", "7m"], "node_lead_time", 420.0),
        (["--pod-ready", "1m"], "pod_ready", 60.0),
        (["--physical-capacity", "0"], "physical_capacity", 0),
        (["--hpa-min-replicas", str(REPLICA_CAP)], "hpa_min_replicas", REPLICA_CAP),
        (["--replicas-per-node", "1"], "replicas_per_node", 1),
        (["--cloud-scoring", "LeastAllocated"], "cloud_scoring", "LeastAllocated"),
        (["--cloud-scoring", "MostAllocated"], "cloud_scoring", "MostAllocated"),
        (["--scale-down-utilization-threshold", "1"], "scale_down_utilization_threshold", 1.0),
    ],
    ids=[
        "no-metric-age",
        "metric-age",
        "lead-of-7m",
        "pod-of-a-tick",
        "no-physical-pool",
        "cap",
        "one-replica-a-node",
        "spread",
        "pack",
        "any-node-not-full",
    ],
)
def test_a_flag_at_its_bound_is_taken(flags: list[str], field: str, value: Any) -> None:
    """Any whole number of minutes is a lag the simulator can tick (7, not only 5 or 10), a
    metric may be fresh, a region may have no physical pool, the HPA may keep as many
    replicas as the backtest caps a region at, and a cloud node may hold a single gateway."""
    assert getattr(scenario_from_args(parsed(*flags)), field) == value


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--metric-delay", "90s"],
            "--metric-delay must be a whole number of minutes (the simulator's tick), got 90s",
        ),
        (
            ["--pod-ready", "0s"],
            "--pod-ready must be a whole number of minutes (the simulator's tick), at least 1m, "
            "got 0s",
        ),
        (["--hpa-min-replicas", str(REPLICA_CAP + 1)], "--hpa-min-replicas must be at most"),
        *(
            (
                ["--scale-down-utilization-threshold", share],
                f"--scale-down-utilization-threshold must be above 0 and at most 1, got {shown}",
            )
            for share, shown in (("0", "0.0"), ("1.5", "1.5"), ("nan", "nan"))
        ),
    ],
    ids=[
        "metric-age-between-ticks",
        "pod-at-once",
        "above-the-cap",
        "no-share",
        "over-a-node",
        "not-a-share",
    ],
)
def test_a_flag_past_its_bound_says_what_it_may_be(flags: list[str], message: str) -> None:
    """Only the lags that must take a tick say "at least 1m": a metric's age may be none."""
    with pytest.raises(ValueError) as caught:
        scenario_from_args(parsed(*flags))
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize(
    ("flags", "overrides"),
    [
        (["--hold-starting", "false"], {"behavior.scaleDown.holdStarting": False}),
        (["--hold-starting", "true"], {"behavior.scaleDown.holdStarting": True}),
        (["--fill-nodes", "false"], {"cloud.fillNodes": False}),
        ([], {}),
    ],
    ids=["hold-false", "hold-true", "fill-false", "none"],
)
def test_boolean_spec_flags_set_the_value_typed(
    flags: list[str], overrides: dict[str, Any]
) -> None:
    args = parsed(*flags)
    assert spec_overrides_from_args(args, scenario_from_args(args)) == overrides


@pytest.mark.parametrize(
    ("done", "total", "reported"),
    [
        (1, 1000, True),
        (2, 1000, False),
        (239, 1000, False),
        (240, 1000, True),
        (480, 1000, True),
        (999, 1000, False),
        (1000, 1000, True),
        (241, 241, True),
    ],
)
def test_a_replay_reports_its_first_minute_every_fourth_hour_and_its_last(
    done: int, total: int, reported: bool
) -> None:
    assert _report_minute(done, total) is reported
