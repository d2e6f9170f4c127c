"""Conditions, stored recommendations and spec error messages (controller.operator)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from controller.operator.reconcile import format_validation_error
from controller.operator.status import (
    Condition,
    merge_conditions,
    parse_time,
    recommendations_from_status,
    recommendations_to_status,
    rfc3339,
)
from controller.planner import Recommendation
from controller.spec import GatewayAutoscalerSpec

T0 = 1_700_000_000.0


def test_rfc3339_round_trip() -> None:
    """Times go to RFC 3339 UTC text and back to the same second."""
    assert rfc3339(T0) == "2023-11-14T22:13:20Z"
    assert parse_time(rfc3339(T0)) == T0


@pytest.mark.parametrize(
    ("before", "after", "moves"),
    [(True, True, False), (False, False, False), (True, False, True), (False, True, True)],
    ids=["stays-true", "stays-false", "flips-false", "flips-true"],
)
def test_transition_time_moves_only_on_flip(before: bool, after: bool, moves: bool) -> None:
    """lastTransitionTime changes only when the status flips, whatever the reason says."""
    first = merge_conditions([], [Condition("Ready", before, "A", "a")], now=T0, generation=1)
    second = merge_conditions(
        first, [Condition("Ready", after, "B", "b")], now=T0 + 60, generation=2
    )
    expected = rfc3339(T0 + 60) if moves else rfc3339(T0)
    assert second[0]["lastTransitionTime"] == expected
    assert second[0]["reason"] == "B" and second[0]["observedGeneration"] == 2


def test_merge_keeps_untouched_conditions_in_order() -> None:
    """Types not updated are kept; the order is Ready, ForecastReady, Bursting, CapacityLimited."""
    first = merge_conditions(
        [],
        [Condition("CapacityLimited", False, "W", ""), Condition("Bursting", True, "B", "")],
        now=T0,
        generation=1,
    )
    merged = merge_conditions(
        first, [Condition("Ready", False, "InvalidSpec", "x")], now=T0, generation=1
    )
    assert [c["type"] for c in merged] == ["Ready", "Bursting", "CapacityLimited"]
    assert merged[0]["status"] == "False"


def recs(*pairs: tuple[float, int]) -> list[Recommendation]:
    return [Recommendation(T0 + at, replicas) for at, replicas in pairs]


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        (recs((0, 10), (60, 8), (120, 5)), [10, 8, 5]),
        (recs((0, 5), (60, 8), (120, 5)), [8, 5]),
        (recs((0, 5), (60, 5), (120, 5)), [5]),
        (recs((-700, 50), (0, 10)), [10]),
    ],
    ids=["falling-kept", "dominated-dropped", "equal-keeps-latest", "outside-window-dropped"],
)
def test_recommendations_trimmed_to_what_stabilisation_needs(
    given: list[Recommendation], kept: list[int]
) -> None:
    """Only entries that can still be the window's maximum are stored."""
    stored = recommendations_to_status(given, window=600, now=T0 + 120)
    assert [entry["replicas"] for entry in stored] == kept


def test_recommendations_survive_a_round_trip() -> None:
    """What is written is read back as the planner's Recommendations (a restart loses nothing)."""
    given = recs((0, 10), (60, 8))
    stored = recommendations_to_status(given, window=600, now=T0 + 60)
    assert recommendations_from_status({"recommendations": stored}) == tuple(given)


def test_malformed_recommendations_are_skipped() -> None:
    """A hand-edited status with garbage does not break the loop."""
    status: dict[str, Any] = {
        "recommendations": [
            {"at": "yesterday", "replicas": 1},
            {"replicas": 2},
            {"at": rfc3339(T0), "replicas": "3"},
        ]
    }
    assert recommendations_from_status(status) == (Recommendation(T0, 3),)


def base_spec(**changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "region": "eu",
        "load": {"query": "q", "perReplica": 100},
        "physical": {"deployment": "p"},
        "cloud": {"deployment": "c"},
        "forecast": {"model": "seasonal-naive"},
    }
    for path, value in changes.items():
        node = spec
        *parents, leaf = path.split("__")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return spec


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"load__perReplica": 0}, "spec.load.perReplica: Input should be greater than 0"),
        ({"forecast__model": "crystal-ball"}, "spec.forecast: forecast.model 'crystal-ball'"),
        (
            {"replicas__min": 9, "replicas__max": 3},
            "spec.replicas: replicas.min (9) must not exceed",
        ),
        ({"cloud__nodeLeadTime": "soon"}, "spec.cloud.nodeLeadTime: 'soon' is not a duration"),
        ({"physical__extra": 1}, "spec.physical.extra: Extra inputs are not permitted"),
    ],
    ids=["per-replica-zero", "unknown-model", "min-above-max", "bad-duration", "unknown-field"],
)
def test_validation_errors_name_the_field(changes: dict[str, Any], expected: str) -> None:
    """A spec error reads as the camelCase path the user wrote, then what is wrong."""
    with pytest.raises(ValidationError) as caught:
        GatewayAutoscalerSpec.model_validate(base_spec(**changes))
    assert format_validation_error(caught.value).startswith(expected)
