"""Conditions, stored recommendations and spec error messages (controller.operator)."""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from controller.operator.reconcile import format_validation_error
from controller.operator.status import (
    MAX_RECOMMENDATIONS,
    Condition,
    merge_conditions,
    parse_time,
    recommendations_from_status,
    recommendations_to_status,
    rfc3339,
)
from controller.planner import Recommendation, RegionState, plan_region
from controller.spec import GatewayAutoscalerSpec
from forecasts.series import LoadSeries

T0 = 1_700_000_000.0


def test_rfc3339_round_trip() -> None:
    """Times go to RFC 3339 UTC text and back to the same second."""
    assert rfc3339(T0) == "2023-11-14T22:13:20Z"
    assert parse_time(rfc3339(T0)) == T0


@pytest.mark.parametrize(
    "text",
    [
        "2023-11-14T22:13:20Z",
        "2023-11-14T23:43:20+01:30",
        "2023-11-14T22:13:20",
        " 2023-11-14T22:13:20Z ",
    ],
    ids=["utc", "offset", "naive", "padded"],
)
def test_parse_time_reads_offsets_and_takes_naive_text_as_utc(
    text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stored time with an offset is that instant; one without is UTC, not the local time of
    the machine the operator runs on (here a zone five hours behind UTC)."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        assert parse_time(text) == T0
    finally:
        monkeypatch.undo()
        time.tzset()


def test_a_condition_message_is_cut_to_the_api_s_limit() -> None:
    """metav1.Condition's message holds at most 32768 characters: a longer one (a forecast error
    quoting a long query, say) is cut to exactly that, so the status write is not refused."""
    long = "x" * 40_000
    (condition,) = merge_conditions(
        [], [Condition("Ready", False, "R", long)], now=T0, generation=1
    )
    assert condition["message"] == "x" * 32768
    (short,) = merge_conditions(
        [], [Condition("Ready", False, "R", "y" * 32768)], now=T0, generation=1
    )
    assert short["message"] == "y" * 32768


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
        (recs((-800, 50), (-700, 10)), [10]),
        (recs((-480, 50), (0, 10)), [10]),
        (recs((-479, 50), (0, 10)), [50, 10]),
    ],
    ids=[
        "falling-kept",
        "dominated-dropped",
        "equal-keeps-latest",
        "outside-window-dropped",
        "newest-kept-for-the-rate-limits",
        "a-window-old-dropped",
        "a-second-less-kept",
    ],
)
def test_recommendations_trimmed_to_what_stabilisation_needs(
    given: list[Recommendation], kept: list[int]
) -> None:
    """Only entries that can still be the window's maximum are stored. One made exactly a
    window ago is out of it, as the planner reads the window (``now - at < window``)."""
    stored = recommendations_to_status(given, window=600, now=T0 + 120)
    assert [entry["replicas"] for entry in stored] == kept


def test_recommendations_survive_a_round_trip() -> None:
    """What is written is read back as the planner's Recommendations (a restart loses nothing)."""
    given = recs((0, 10), (60, 8))
    stored = recommendations_to_status(given, window=600, now=T0 + 60)
    assert recommendations_from_status({"recommendations": stored}) == tuple(given)


def held(recommendations: Sequence[Recommendation], at: float, window: float) -> int:
    """What stabilisation holds at ``at``: the highest recommendation inside the window."""
    return max((r.replicas for r in recommendations if 0 <= at - r.at < window), default=0)


@pytest.mark.parametrize("seed", range(20))
def test_truncated_recommendations_never_hold_less(seed: int) -> None:
    """Past MAX_RECOMMENDATIONS entries, what is read back holds at least as many replicas as
    what was given at every later time of the window, and the newest entry keeps its time."""
    rng = random.Random(seed)
    window, loop = 1800.0, rng.choice([1.0, 5.0, 15.0])
    now = T0 + window - loop
    replicas = [rng.randint(150, 250)]
    for _ in range(int(window / loop) - 1):
        replicas.append(max(0, replicas[-1] + rng.choice([-3, -2, -1, -1, 0, 1, 2])))
    given = [Recommendation(T0 + i * loop, n) for i, n in enumerate(replicas)]
    stored = recommendations_to_status(given, window=window, now=now)
    back = recommendations_from_status({"recommendations": stored})
    assert len(stored) <= MAX_RECOMMENDATIONS
    assert back[-1].at == given[-1].at
    for second in range(int(window) + 1):
        at = now + second
        assert held(back, at, window) >= held(given, at, window), at
    assert stored == recommendations_to_status(given, window=window, now=now)


def test_a_long_decline_keeps_its_top() -> None:
    """A steady fall of one replica a loop over the whole window still holds the top of it."""
    given = recs(*((15 * i, 200 - i) for i in range(120)))
    stored = recommendations_to_status(given, window=1800, now=T0 + 15 * 119)
    assert len(stored) == MAX_RECOMMENDATIONS
    assert max(entry["replicas"] for entry in stored) == 200
    assert stored[-1]["at"] == rfc3339(T0 + 15 * 119)


def test_truncation_merges_the_closest_neighbours() -> None:
    """One entry too many: the pair closest in replicas becomes the higher count at the later
    time, and every other entry is stored as it was."""
    falling = [1000 - 10 * i for i in range(MAX_RECOMMENDATIONS + 1)]
    falling[30] = falling[29] - 1  # entries 29 and 30 differ by one replica, the others by 10
    given = recs(*((60 * i, n) for i, n in enumerate(falling)))
    stored = recommendations_to_status(given, window=86400, now=T0 + 60 * MAX_RECOMMENDATIONS)
    expected = [(60 * i, n) for i, n in enumerate(falling) if i != 29]
    expected[29] = (60 * 30, falling[29])
    assert stored == [{"at": rfc3339(T0 + at), "replicas": n} for at, n in expected]


def _coalesced_one_pair_at_a_time(
    given: Sequence[Recommendation], limit: int
) -> list[Recommendation]:
    """The merge order ``_coalesce`` documents, worked out plainly: while there are too many,
    merge the neighbours closest in replicas (then in time, then the oldest pair) into the
    higher count at the later time."""
    entries = [(r.at, r.replicas) for r in given]
    while len(entries) > limit:
        i = min(
            range(len(entries) - 1),
            key=lambda k: (entries[k][1] - entries[k + 1][1], entries[k + 1][0] - entries[k][0], k),
        )
        entries[i : i + 2] = [(entries[i + 1][0], entries[i][1])]
    return [Recommendation(at, replicas) for at, replicas in entries]


@pytest.mark.parametrize("seed", range(12))
def test_truncation_merges_in_the_documented_order(seed: int) -> None:
    """Past MAX_RECOMMENDATIONS, the stored entries are those of merging one closest pair at a
    time, ties in replicas broken by the shorter gap and then the older pair: steps of 1 to 3
    replicas and gaps of 1 to 3 loops make many ties, and runs of 61 to 400 entries need up to
    340 merges, each of which changes the pairs beside it."""
    rng = random.Random(seed)
    count = rng.randint(MAX_RECOMMENDATIONS + 1, 400)
    at, replicas, given = 0.0, 2000, []
    for _ in range(count):
        given.append(Recommendation(T0 + at, replicas))
        at += 15.0 * rng.randint(1, 3)
        replicas -= rng.randint(1, 3)
    now = given[-1].at
    stored = recommendations_to_status(given, window=at + 60.0, now=now)
    expected = _coalesced_one_pair_at_a_time(given, MAX_RECOMMENDATIONS)
    assert recommendations_from_status({"recommendations": stored}) == tuple(expected)


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
        ({"load__perReplica": 1e-9}, "spec.load.perReplica: must be at least 1e-06 (got 1e-09)"),
        ({"forecast__model": "crystal-ball"}, "spec.forecast: forecast.model 'crystal-ball'"),
        (
            {"replicas__min": 9, "replicas__max": 3},
            "spec.replicas: replicas.min (9) must not exceed",
        ),
        ({"cloud__nodeLeadTime": "soon"}, "spec.cloud.nodeLeadTime: 'soon' is not a duration"),
        ({"physical__extra": 1}, "spec.physical.extra: Extra inputs are not permitted"),
    ],
    ids=[
        "per-replica-zero",
        "per-replica-tiny",
        "unknown-model",
        "min-above-max",
        "bad-duration",
        "unknown-field",
    ],
)
def test_validation_errors_name_the_field(changes: dict[str, Any], expected: str) -> None:
    """A spec error reads as the camelCase path the user wrote, then what is wrong."""
    with pytest.raises(ValidationError) as caught:
        GatewayAutoscalerSpec.model_validate(base_spec(**changes))
    assert format_validation_error(caught.value).startswith(expected)


def test_without_a_stabilisation_window_the_last_plan_s_time_is_kept() -> None:
    """``stabilization: 0s`` stores no entry for stabilisation, but the rate limits still need
    the time of the last plan: a pass seven seconds later removes one replica (it crosses a
    tick of 10 a minute, one every 6 s), not a minute's."""
    spec = GatewayAutoscalerSpec.model_validate(
        {
            "region": "eu",
            "load": {"query": "q", "perReplica": 100},
            "physical": {"deployment": "gw", "keepWarm": False},
            "cloud": {"deployment": "gw-cloud", "fillNodes": False},
            "behavior": {
                "scaleDown": {
                    "stabilization": "0s",
                    "maxReplicasPerMinute": 10,
                    "limitBy": "Replicas",
                }
            },
        }
    )
    stored = recommendations_to_status([Recommendation(T0, 90)], window=0.0, now=T0)
    state = RegionState(
        physical_replicas=60,
        cloud_replicas=30,
        physical_capacity=60,
        recommendations=recommendations_from_status({"recommendations": stored}),
    )
    history = LoadSeries(T0 - 537.0, 60.0, np.full(10, 1000.0))
    plan = plan_region(spec, history=history, forecast=None, state=state, now=T0 + 7.0)
    assert plan.physical.replicas + plan.cloud.replicas == 89


@pytest.mark.parametrize(
    ("refit", "waited", "pending"),
    [
        ("15m", 14 * 60, True),
        ("15m", 16 * 60, False),
        ("0s", 60, True),
        ("0s", 4 * 60, True),
        ("0s", 6 * 60, False),
    ],
)
def test_a_first_fit_keeps_the_reservation_at_least_a_fit_step(
    refit: str, waited: float, pending: bool
) -> None:
    """Until a restart's first fit ends, what is reserved stays, for ``forecast.refit`` and
    never less than a fit step: a ``refit: 0s`` (refit every pass) let it go at the first
    pass."""
    from concurrent.futures import Future

    from controller.operator.fitting import FitState
    from controller.operator.reconcile import _first_fit_pending

    spec = GatewayAutoscalerSpec.model_validate(base_spec(forecast__refit=refit))
    fit = FitState(fingerprint="x", running=Future(), started_at=1000.0)
    assert _first_fit_pending(fit, spec, 1000.0 + waited) is pending
