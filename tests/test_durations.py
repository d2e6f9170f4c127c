"""Kubernetes-style durations: text read, text refused naming what it got, and the shortest text
written back."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from controller.durations import format_duration, parse_duration
from controller.spec import CloudSpec, GatewayAutoscalerSpec


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("5m", 300),
        ("1h30m", 5400),
        ("14d", 14 * 86400),
        ("2w", 14 * 86400),
        ("3650d", 3650 * 86400),  # MAX_DURATION, the longest taken
        ("250ms", 0.25),
        ("0", 0),  # as Go's time.ParseDuration: no unit needed for no time
        ("0s", 0),
        ("1.5h", 5400),
        (" 5m ", 300),
        (45, 45),
        (2.5, 2.5),
    ],
)
def test_a_duration_is_read_from_text_or_seconds(text: Any, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("5x", "'5x' is not a duration such as '90s'"),
        ("5", "'5' is not a duration"),
        ("00", "'00' is not a duration"),
        ("m5", "'m5' is not a duration"),
        ("", "'' is not a duration"),
        ("5 m", "'5 m' is not a duration"),
        ([5], "a duration is text such as '5m' or '14d', got list"),
        (True, "not a boolean"),
        ("1000000000d", "'1000000000d' is not a duration Tidal can hold (at most 3650 days)"),
        ("3651d", "'3651d' is not a duration Tidal can hold (at most 3650 days)"),
        (timedelta(days=3651), "datetime.timedelta(days=3651) is not a duration Tidal can hold"),
        (-math.inf, "-inf is not a duration Tidal can hold"),
        (math.inf, "inf is not a duration Tidal can hold"),
        (math.nan, "nan is not a duration Tidal can hold"),
    ],
)
def test_what_is_no_duration_is_a_value_error_saying_what_it_got(value: Any, message: str) -> None:
    """A typo is never read as no time at all, and what no timedelta holds (too long, not a
    number) is a ValueError too, not an OverflowError escaping the validation."""
    with pytest.raises(ValueError) as error:
        parse_duration(value)
    assert type(error.value) is ValueError
    assert message in str(error.value)


@pytest.mark.parametrize("value", ["5x", [5], "1000000000d"])
def test_a_bad_duration_in_the_spec_names_its_field(value: Any) -> None:
    """Through the custom resource's model: a validation error naming the field, which only a
    ValueError from the parser gives (a TypeError or an OverflowError would escape it)."""
    with pytest.raises(ValidationError) as error:
        CloudSpec.model_validate({"deployment": "gw-cloud", "nodeLeadTime": value})
    assert error.value.errors()[0]["loc"] == ("nodeLeadTime",)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.4, "0s"),
        (1, "1s"),
        (59, "59s"),
        (60, "1m"),
        (3599, "59m59s"),
        (3600, "1h"),
        (5400, "1h30m"),
        (7200, "2h"),
        (86399, "23h59m59s"),
        (86400, "1d"),
        (14 * 86400 + 3661, "14d1h1m1s"),
    ],
)
def test_a_duration_is_written_as_its_shortest_text(seconds: float, text: str) -> None:
    """Whole seconds, each unit once, units of nothing left out; no time is ``0s``. What is
    written reads back as the same duration."""
    written = format_duration(timedelta(seconds=seconds))
    assert written == text
    assert parse_duration(written) == timedelta(seconds=round(seconds))


@pytest.mark.parametrize(
    ("section", "fields", "field"),
    [
        ("load", {"step": "600000000d"}, ("load", "step")),
        ("forecast", {"horizon": "600000000d", "refit": "600000000d"}, ("forecast", "horizon")),
    ],
)
def test_durations_whose_sums_no_timedelta_holds_are_refused_by_field(
    section: str, fields: dict[str, str], field: tuple[str, ...]
) -> None:
    """Each duration alone fits a timedelta, but the spec doubles a step and adds a refit to a
    forecast's reach: MAX_DURATION refuses them by field, before any such sum overflows."""
    spec: dict[str, Any] = {
        "region": "eu",
        "load": {"query": "q", "perReplica": 10},
        "physical": {"deployment": "gw"},
        "cloud": {"deployment": "gw-cloud"},
    }
    spec[section] = {**spec.get(section, {}), **fields}
    with pytest.raises(ValidationError) as error:
        GatewayAutoscalerSpec.model_validate(spec)
    assert error.value.errors()[0]["loc"] == field
