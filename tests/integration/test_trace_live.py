"""``tidal trace``: a region's load read from a real Prometheus, written as a trace file that
``tidal backtest`` replays.

Three days of a noisy daily cycle at five minutes, with a two-hour outage, are backfilled up to
just before now.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from controller.cli import main
from controller.operator.prometheus_source import PrometheusLoadSource
from forecasts.series import LoadSeries, format_timestamp, load_trace
from tests.forecast_series import seasonal
from tests.support.prometheus_server import (
    PrometheusServer,
    backfilled,
    series_key,
)

pytestmark = pytest.mark.integration

STEP = 300.0
NOW = math.floor(time.time() / STEP) * STEP - STEP


@pytest.fixture(scope="module", autouse=True)
def _history_ends_now() -> None:
    global NOW
    NOW = math.floor(time.time() / STEP) * STEP - STEP


LOAD = series_key(region="eu-west")
OTHER = series_key(region="us-east")
QUERY = f"sum({LOAD})"
OUTAGE_HOURS = 2


@pytest.fixture(scope="module")
def history() -> LoadSeries:
    """Three days at five minutes ending at NOW, two hours of them missing on the second."""
    cycle = seasonal(days=3)
    values = cycle.values.copy()
    first = len(values) // 2
    values[first : first + OUTAGE_HOURS * 12] = np.nan
    return LoadSeries(NOW - STEP * (len(values) - 1), STEP, values)


@pytest.fixture(scope="module")
def prometheus(
    tmp_path_factory: pytest.TempPathFactory, history: LoadSeries
) -> Iterator[PrometheusServer]:
    backfill = {LOAD: history, OTHER: history.last(86400)}
    with backfilled(backfill, tmp_path_factory.mktemp("prometheus")) as server:
        yield server


def _trace(prometheus: PrometheusServer, *argv: str) -> int:
    return main(["trace", "--prometheus-url", prometheus.url, *argv])


def test_the_file_holds_what_prometheus_holds(
    prometheus: PrometheusServer,
    history: LoadSeries,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Read back by the trace reader, the file is the operator's own read of the query, sample
    for sample, its outage included as a gap; the summary names the samples and the gaps."""
    out = tmp_path / "eu-west.csv"
    end = NOW + 60
    argv = [
        "--query",
        QUERY,
        "--step",
        "5m",
        "--history",
        "3d",
        "--end",
        format_timestamp(end),
        "-o",
        str(out),
    ]
    assert _trace(prometheus, *argv) == 0
    with PrometheusLoadSource(prometheus.url) as source:
        read = source.read_history(QUERY, start=end - 3 * 86400, end=end, step=STEP)
    written = load_trace(out)
    assert (written.start, written.step, len(written)) == (read.start, read.step, len(read))
    np.testing.assert_array_equal(written.values, read.values)  # NaN where NaN, else exact
    gaps = int(np.isnan(read.values).sum())
    # Prometheus's 5-minute lookback carries a sample into the outage's first step: the gap
    # it leaves is at most the outage, and most of it.
    assert OUTAGE_HOURS * 12 - 2 <= gaps <= OUTAGE_HOURS * 12
    known = ~np.isnan(written.values)
    assert np.isin(written.values[known], history.values).all()
    rows = out.read_text().splitlines()
    assert rows[0] == "timestamp,load" and len(rows) == len(read) + 1
    assert sum(row.endswith(",") for row in rows) == gaps
    err = capsys.readouterr().err
    assert f"wrote {len(read):,} samples" in err and f"{gaps:,} of them gaps" in err
    assert str(out) in err and "warning" not in err


def test_standard_output_and_a_backtest_of_it(
    prometheus: PrometheusServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --output the CSV goes to standard output, and ``tidal backtest`` replays it."""
    assert _trace(prometheus, "--query", QUERY, "--history", "3d") == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("timestamp,load\n")
    assert "to standard output" in captured.err
    path = tmp_path / "eu-west.csv"
    path.write_text(captured.out)
    # At one minute: the 5-minute samples, each carried forward over its lookback.
    assert load_trace(path).step == 60.0
    argv = [str(path), "--json", "--model", "seasonal-naive", "--policies", "hpa,oracle"]
    assert main(["backtest", *argv]) == 0
    result = json.loads(capsys.readouterr().out)["traces"]["eu-west"]
    assert result["oracle"]["unserved_fraction"] == 0.0
    assert result["hpa"]["cloud_replica_hours"] > 0


def test_less_history_than_asked_is_written_with_a_warning(
    prometheus: PrometheusServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ten days asked of three held: the three are written, and a warning says from when."""
    out = tmp_path / "short.csv"
    assert _trace(prometheus, "--query", QUERY, "--step", "5m", "-o", str(out)) == 0
    err = capsys.readouterr().err
    assert "warning: the query has no data before" in err and "retention" in err
    assert len(load_trace(out)) < 3 * 288 + 2


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        pytest.param("sum(", "rejected query 'sum('", id="bad-promql"),
        pytest.param("gateway_active_connections", "returned 2 series", id="not-aggregated"),
        pytest.param(
            'sum(gateway_active_connections{region="nowhere"})',
            "returned no data",
            id="empty-result",
        ),
    ],
)
def test_a_failed_read_leaves_the_file_as_it_was(
    prometheus: PrometheusServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    query: str,
    expected: str,
) -> None:
    """Exit 2 and one line naming the URL and the query; the existing file is untouched and no
    temporary file is left beside it."""
    out = tmp_path / "eu-west.csv"
    out.write_text("timestamp,load\n2026-01-01T00:00:00Z,1\n")
    assert _trace(prometheus, "--query", query, "--history", "1d", "-o", str(out)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0]
    assert err[0].startswith("tidal trace: error: ") and query in err[0]
    assert out.read_text() == "timestamp,load\n2026-01-01T00:00:00Z,1\n"
    assert [p.name for p in tmp_path.iterdir()] == ["eu-west.csv"]
