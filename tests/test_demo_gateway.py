"""The replayer's reading of a trace, and the history it hands to Prometheus."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from controller.demo_gateway.history import openmetrics_history
from controller.demo_gateway.replayer import TraceReplay, default_start
from forecasts.errors import TraceFormatError
from forecasts.series import LoadSeries

# p99 of [0, 100, ..., 100 x 99, spike] is 100: peak 50 makes 100 -> 50 connections.
VALUES = np.array([0.0, 100.0, math.nan, 100.0, 40.0] + [100.0] * 100 + [1000.0])
TRACE = TraceReplay(LoadSeries(0.0, 60.0, VALUES), peak=50)


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        pytest.param(0.0, 0, id="first-sample"),
        pytest.param(30.0, 25, id="interpolated-between-samples"),
        pytest.param(60.0, 50, id="p99-is-the-peak"),
        pytest.param(150.0, 50, id="gap-holds-last-known"),
        pytest.param(210.0, 35, id="falling"),
        pytest.param(105 * 60.0, 100, id="spike-clipped-at-twice-the-peak"),
    ],
)
def test_connections_follow_the_scaled_trace(when: float, expected: int) -> None:
    """connections_at interpolates, holds across gaps, scales p99 to the peak, clips spikes."""
    assert TRACE.connections_at(when) == expected


def test_before_the_trace_is_an_error() -> None:
    """A time before the trace's first sample is refused, not read as zero."""
    with pytest.raises(ValueError, match="before the trace starts"):
        TRACE.connections_at(-1.0)


def test_default_start_leaves_history_before_it() -> None:
    """The default start is two weeks in, or a quarter of a shorter trace."""
    assert default_start(TRACE.series) == pytest.approx(TRACE.series.end / 4)


def test_history_ends_where_the_replay_begins() -> None:
    """Backfilled samples are the trace before start, shifted to end just before now."""
    lines = list(
        openmetrics_history(
            TRACE, start=300.0, now=10_000.0, span=240.0, step=60.0, labels={"region": "r"}
        )
    )
    assert lines[-1] == "# EOF\n"
    samples = [line.split() for line in lines if not line.startswith("#")]
    assert [s[0] for s in samples] == ['gateway_active_connections{region="r"}'] * 4
    assert [float(s[2]) for s in samples] == [9760.0, 9820.0, 9880.0, 9940.0]
    assert [int(s[1]) for s in samples] == [TRACE.connections_at(t) for t in (60, 120, 180, 240)]


@pytest.mark.parametrize("module", ["history", "replayer"])
def test_a_mistyped_year_is_refused_with_its_line(tmp_path: Path, module: str) -> None:
    """The gateway demo reads its trace with load_trace, as the backtest does: 2204 for 2020
    in the last row is refused naming that row, before a grid of 97 million minutes is made
    (or any connection opened, or any history written)."""
    from controller.demo_gateway import history, replayer

    stamps = [f"2020-01-01T{m // 60:02d}:{m % 60:02d}:00Z" for m in range(1440)]
    stamps[-1] = "2204" + stamps[-1][4:]
    trace = tmp_path / "typo.csv"
    body = "".join(f"{stamp},{100 + i % 7}\n" for i, stamp in enumerate(stamps))
    trace.write_text("timestamp,load\n" + body, encoding="utf-8")
    out = tmp_path / "history.om"
    args = ["--trace", str(trace), "--peak", "100"]
    with pytest.raises(TraceFormatError) as caught:
        if module == "history":
            history.main([*args, "--region", "r", "--out", str(out)])
        else:
            replayer.main([*args, "--url", "ws://127.0.0.1:9/ws"])
    assert str(caught.value).startswith(
        f"{trace}:1441: timestamp 2204-01-01T23:59:00Z is 67,204 days after the row before it "
        "(2020-01-01T23:58:00Z, line 1440)"
    )
    assert not out.exists()
