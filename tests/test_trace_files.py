"""Trace files as published: a local clock that repeats an hour, and what stays refused."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from forecasts.errors import TraceFormatError
from forecasts.series import load_trace

FIVE = timedelta(minutes=5)


def write(path: Path, stamps: list[str]) -> Path:
    rows = [f"{stamp},{i + 1}" for i, stamp in enumerate(stamps)]
    path.write_text("timestamp,load\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def local(start: str, count: int) -> list[str]:
    first = datetime.fromisoformat(start)
    return [(first + i * FIVE).isoformat() for i in range(count)]


def test_a_local_clock_that_repeats_an_hour_loses_no_sample(tmp_path: Path) -> None:
    """Summer time ends: 01:00 to 01:55 comes twice in local time. Every row is kept, in
    order, five minutes apart, as an offset-aware file of the same night gives them."""
    night = local("2024-11-03T00:00:00", 24) + local("2024-11-03T01:00:00", 24)
    series = load_trace(write(tmp_path / "local.csv", night))
    assert series.step == 300.0
    assert np.array_equal(series.values, np.arange(1.0, 49.0))

    aware = [f"{stamp}-04:00" for stamp in night[:24]] + [f"{s}-05:00" for s in night[24:36]]
    aware += [f"{stamp}-05:00" for stamp in night[36:]]
    assert np.array_equal(load_trace(write(tmp_path / "aware.csv", aware)).values, series.values)


def test_an_hourly_local_clock_that_repeats_a_timestamp_keeps_both(tmp_path: Path) -> None:
    """An hourly trace shows the repeated hour as the same timestamp twice."""
    stamps = ["2024-11-03T00:00:00", "2024-11-03T01:00:00", "2024-11-03T01:00:00"]
    stamps += ["2024-11-03T02:00:00", "2024-11-03T03:00:00"]
    series = load_trace(write(tmp_path / "hourly.csv", stamps))
    assert series.step == 3600.0
    assert np.array_equal(series.values, np.arange(1.0, 6.0))


@pytest.mark.parametrize(
    ("stamps", "line"),
    [
        pytest.param(
            local("2024-06-01T12:00:00", 6) + local("2024-06-01T12:10:00", 3), 8, id="midday"
        ),
        pytest.param(
            local("2024-11-03T00:00:00", 24)
            + local("2024-11-03T01:00:00", 12)
            + local("2024-11-03T01:30:00", 3),
            38,
            id="twice-in-a-night",
        ),
        pytest.param(
            local("2024-11-03T00:00:00", 24) + local("2024-11-03T00:55:00", 2),
            26,
            id="an-hour-back",
        ),
        pytest.param(
            ["2024-11-03T01:00:00-04:00", "2024-11-03T01:05:00-04:00", "2024-11-03T01:00:00-04:00"],
            4,
            id="with-offsets",
        ),
    ],
)
def test_other_steps_back_are_refused_with_their_line(
    tmp_path: Path, stamps: list[str], line: int
) -> None:
    """Only one step back of under an hour, in the small hours, of a local clock, and not
    again for months, is summer time ending; anything else is a file out of order."""
    path = write(tmp_path / "bad.csv", stamps)
    with pytest.raises(TraceFormatError, match=rf"bad\.csv:{line}: .* is not after the previous"):
        load_trace(path)


def test_a_spreadsheet_export_with_a_byte_order_mark_and_crlf_reads(tmp_path: Path) -> None:
    """Files saved by a spreadsheet start with a BOM and end lines with CRLF."""
    path = tmp_path / "export.csv"
    path.write_bytes(
        "\ufefftimestamp,load\r\n2024-01-01 00:00:00Z,1\r\n2024-01-01 00:05:00Z,2\r\n".encode()
    )
    series = load_trace(path)
    assert series.step == 300.0 and np.array_equal(series.values, [1.0, 2.0])
