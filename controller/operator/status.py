"""The CR's status: conditions with honest transition times, and the state kept across restarts.

Pure: dicts in, dicts out, ``now`` an argument. Conditions follow the Kubernetes API conventions
(``metav1.Condition``): ``lastTransitionTime`` moves only when ``status`` flips, so that
``kubectl describe`` says since when an object has been unready, not when it was last looked at.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from controller.planner import Recommendation

__all__ = [
    "CONDITION_TYPES",
    "MAX_RECOMMENDATIONS",
    "Condition",
    "merge_conditions",
    "parse_time",
    "recommendations_from_status",
    "recommendations_to_status",
    "rfc3339",
]

CONDITION_TYPES = ("Ready", "ForecastReady", "Bursting", "CapacityLimited")
#: Upper bound on stored recommendations, whatever the window: status must stay small.
MAX_RECOMMENDATIONS = 60


@dataclass(frozen=True)
class Condition:
    type: str
    status: bool
    reason: str
    message: str

    def as_status(
        self, *, now: float, generation: int | None, previous: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        text = "True" if self.status else "False"
        since = rfc3339(now)
        if (
            previous is not None
            and previous.get("status") == text
            and previous.get("lastTransitionTime")
        ):
            since = str(previous["lastTransitionTime"])
        result: dict[str, Any] = {
            "type": self.type,
            "status": text,
            "reason": self.reason,
            # The API's limit on a condition message (metav1.Condition: maxLength 32768).
            "message": self.message[:32768],
            "lastTransitionTime": since,
        }
        if generation is not None:
            result["observedGeneration"] = generation
        return result


def rfc3339(when: float) -> str:
    """Epoch seconds as RFC 3339 UTC text with second precision (``metav1.Time``)."""
    return datetime.fromtimestamp(math.floor(when), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> float:
    """RFC 3339 text to epoch seconds (``Z`` or an offset; naive text is UTC)."""
    stamp = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp.timestamp()


def merge_conditions(
    previous: Iterable[Mapping[str, Any]] | None,
    updates: Iterable[Condition],
    *,
    now: float,
    generation: int | None,
) -> list[dict[str, Any]]:
    """New conditions over the previous ones: updated types replaced, others kept as they were.

    The result is ordered as :data:`CONDITION_TYPES`, then any other type by name.
    """
    by_type: dict[str, dict[str, Any]] = {
        str(c.get("type")): dict(c) for c in previous or () if c.get("type")
    }
    for condition in updates:
        by_type[condition.type] = condition.as_status(
            now=now, generation=generation, previous=by_type.get(condition.type)
        )
    order = {name: i for i, name in enumerate(CONDITION_TYPES)}
    return [by_type[k] for k in sorted(by_type, key=lambda k: (order.get(k, len(order)), k))]


def recommendations_to_status(
    recommendations: Sequence[Recommendation], *, window: float, now: float
) -> list[dict[str, Any]]:
    """The recommendations stabilisation still needs, as ``[{at, replicas}]``, oldest first.

    Stabilisation takes the highest recommendation inside the window, so an entry that a later
    entry with at least as many replicas outlives can never be that highest: it is dropped.
    What remains falls in replicas as it goes forward in time, which keeps status small even
    with a loop every second. Past :data:`MAX_RECOMMENDATIONS`, neighbours are coalesced
    (:func:`_coalesce`) rather than the oldest dropped: the oldest are the highest, and losing
    them would release replicas before the window has passed.

    The newest entry is kept even outside the window (``stabilization: 0s``): its time is that
    of the last plan, from which the rate limits count (``planner._seconds_since_last_plan``).
    """
    ordered = sorted(recommendations, key=lambda r: r.at)
    recent = [r for r in ordered if now - r.at < window] or ordered[-1:]
    kept: list[Recommendation] = []
    for rec in recent:
        # Same-second entries would look identical in RFC 3339: keep the later (higher or
        # equal) one.
        while kept and kept[-1].replicas <= rec.replicas:
            kept.pop()
        kept.append(rec)
    kept = _coalesce(kept, MAX_RECOMMENDATIONS)
    return [{"at": rfc3339(r.at), "replicas": r.replicas} for r in kept]


def _coalesce(falling: list[Recommendation], limit: int) -> list[Recommendation]:
    """At most ``limit`` of ``falling`` (replicas falling as time goes on), never holding less.

    Neighbours ``(a, r_a)`` and ``(b, r_b)``, ``a < b`` and ``r_a > r_b``, become ``(b, r_a)``:
    the higher count until the later one expires. Whenever either was inside the window the
    merged entry is too, so the window's maximum can only rise; it rises by ``r_a - r_b`` for
    ``b - a`` seconds. Each step merges the pair with the smallest difference in replicas (then
    the shortest gap, then the oldest), so the status holds as little extra as it can, and the
    same input always gives the same output. A merge keeps the later time, so the newest
    entry's time, which the planner reads as that of the last plan, is never moved.

    A heap of candidate pairs keeps this ``O(n log n)``: a status written with a loop every
    second over a long window is thousands of entries on its first truncation.
    """
    if len(falling) <= limit:
        return falling
    count = len(falling)
    at = [r.at for r in falling]
    replicas = [r.replicas for r in falling]
    before = list(range(-1, count - 1))
    after = list(range(1, count + 1))
    alive = [True] * count

    def pair(left: int, right: int) -> tuple[int, float, int, int]:
        return (replicas[left] - replicas[right], at[right] - at[left], left, right)

    candidates = [pair(i, i + 1) for i in range(count - 1)]
    heapq.heapify(candidates)
    remaining = count
    while remaining > limit:
        difference, _, left, right = heapq.heappop(candidates)
        # A pair is stale once either side was merged away or ``left`` took a higher count.
        if not alive[left] or after[left] != right:
            continue
        if replicas[left] - replicas[right] != difference:
            continue
        replicas[right] = replicas[left]
        alive[left] = False
        remaining -= 1
        before[right] = before[left]
        if before[right] >= 0:
            after[before[right]] = right
            heapq.heappush(candidates, pair(before[right], right))
        if after[right] < count:
            heapq.heappush(candidates, pair(right, after[right]))
    return [Recommendation(at[i], replicas[i]) for i in range(count) if alive[i]]


def recommendations_from_status(status: Mapping[str, Any] | None) -> tuple[Recommendation, ...]:
    """Read back what :func:`recommendations_to_status` wrote; malformed entries are skipped."""
    result = []
    for entry in (status or {}).get("recommendations") or []:
        try:
            result.append(Recommendation(parse_time(str(entry["at"])), int(entry["replicas"])))
        except (KeyError, TypeError, ValueError):
            continue
    return tuple(sorted(result, key=lambda r: r.at))
