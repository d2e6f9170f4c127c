"""Kubernetes-style durations (``90s``, ``5m``, ``1h30m``, ``14d``) for the custom resource.

The CRD stores durations as strings so that ``kubectl`` users write what they would write in any
other Kubernetes object; inside Tidal they are :class:`datetime.timedelta`.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

__all__ = ["DURATION_PATTERN", "MAX_DURATION", "Duration", "format_duration", "parse_duration"]

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
#: A bare ``0`` is taken too, as Go's ``time.ParseDuration`` takes it: no unit is needed for no
#: time. Any other number needs its unit, so that ``5`` is never read as seconds by mistake.
DURATION_PATTERN = r"^(0|([0-9]+(\.[0-9]+)?(ms|s|m|h|d|w))+)$"
#: The longest duration Tidal takes: ten years, far beyond any window, history or lead time a
#: region needs, and short enough that the spec's sums and multiples of durations (two steps,
#: a forecast's reach plus a refit) and a history counted back from now stay within what a
#: ``datetime`` holds. Longer text is a typo, refused with its field's name.
MAX_DURATION = timedelta(days=3650)


def parse_duration(value: Any) -> timedelta:
    """Parse ``1h30m``-style text (or pass a timedelta / a number of seconds through)."""
    if isinstance(value, timedelta):
        return _held(value.total_seconds(), value)
    if isinstance(value, bool):
        raise ValueError("a duration is text such as '5m' or '14d', not a boolean")
    if isinstance(value, int | float):
        return _held(float(value), value)
    if not isinstance(value, str):
        raise ValueError(f"a duration is text such as '5m' or '14d', got {type(value).__name__}")
    text = value.strip()
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"{value!r} is not a duration such as '90s', '5m', '1h30m' or '14d'")
    return _held(sum(float(n) * _UNITS[unit] for n, unit in _PART.findall(text)), value)


def _held(seconds: float, value: Any) -> timedelta:
    """``seconds`` as a timedelta; a ValueError (which names the field in a validation error)
    for what is longer than :data:`MAX_DURATION` or not a number, so that one object's typo
    never escapes as an OverflowError, here or in arithmetic on the durations later."""
    if not abs(seconds) <= MAX_DURATION.total_seconds():  # NaN and infinities too
        raise ValueError(
            f"{value!r} is not a duration Tidal can hold (at most {MAX_DURATION.days} days)"
        )
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """The shortest ``1h30m``-style text for a duration (whole seconds)."""
    seconds = round(value.total_seconds())
    if seconds == 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema({"type": "string", "pattern": DURATION_PATTERN}),
]
