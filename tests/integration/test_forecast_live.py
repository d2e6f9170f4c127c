"""``tidal forecast --prometheus-url``: the live mode against a real Prometheus.

Three days of a noisy daily cycle at five minutes are backfilled up to just before now; the
command reads them back through the operator's reader, fits once and shows the forecast.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from controller.cli import main
from forecasts.registry import model_names
from forecasts.series import LoadSeries
from tests.forecast_series import seasonal
from tests.support.prometheus_server import (
    PrometheusServer,
    backfilled,
    series_key,
)

pytestmark = pytest.mark.integration

STEP = 300.0
NOW = math.floor(time.time() / STEP) * STEP - STEP  # history ends before now, on the grid


@pytest.fixture(scope="module", autouse=True)
def _history_ends_now() -> None:
    """NOW again when this module's tests start, not when the suite collected it (minutes
    before, in a whole run): the live reads end at the real now."""
    global NOW
    NOW = math.floor(time.time() / STEP) * STEP - STEP


LOAD = series_key(region="eu-west")
OTHER = series_key(region="us-east")
QUERY = f"sum({LOAD})"


@pytest.fixture(scope="module")
def history() -> LoadSeries:
    """Three days at five minutes, ending at NOW."""
    cycle = seasonal(days=3)
    return LoadSeries(NOW - STEP * (len(cycle) - 1), STEP, cycle.values)


@pytest.fixture(scope="module")
def prometheus(
    tmp_path_factory: pytest.TempPathFactory, history: LoadSeries
) -> Iterator[PrometheusServer]:
    """One server for the module: ``history`` and a second region, nothing scraped live."""
    backfill = {LOAD: history, OTHER: history.last(86400)}
    with backfilled(backfill, tmp_path_factory.mktemp("prometheus")) as server:
        yield server


def _iso(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _forecast(prometheus: PrometheusServer, *argv: str) -> int:
    return main(["forecast", "--prometheus-url", prometheus.url, *argv])


def test_live_json_is_a_forecast_fitted_on_the_query(
    prometheus: PrometheusServer, history: LoadSeries, capsys: pytest.CaptureFixture[str]
) -> None:
    """--json: the model auto chose, fitted on the history read back, 30 minutes of steps."""
    argv = ["--query", QUERY, "--step", "5m", "--history", "4d", "--json"]
    assert _forecast(prometheus, *argv) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["source"] == {"prometheus_url": prometheus.url, "query": QUERY}
    assert shown["model"] == "auto" and shown["chosen_model"] in model_names()
    # Prometheus may carry the last sample forward for its lookback: same load, later time.
    last = shown["last_observed"]
    assert last["load"] == round(float(history.values[-1]), 4)
    assert _iso(NOW) <= last["time"] <= _iso(NOW + STEP)
    assert shown["fitted_until"] == last["time"]
    rows = shown["forecast"]
    assert len(rows) == 6 and shown["step_seconds"] == STEP
    assert rows[0]["time"] > shown["fitted_until"]
    points = np.array([row["point"] for row in rows])
    uppers = np.array([row["upper"] for row in rows])
    assert (uppers >= points).all()
    # The cycle runs between about 125 and 275: a forecast read from it stays in that range.
    assert np.nanmin(history.values) - 25 < points.min() <= points.max() < np.nanmax(history.values)
    assert shown["peak_upper"]["load"] == uppers.max()


def test_live_table_and_plot(
    prometheus: PrometheusServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --json: the URL and query, the model, the table and the band's peak; a PNG."""
    plot = tmp_path / "live.png"
    argv = ["--query", QUERY, "--model", "holt-winters", "--plot", str(plot)]
    assert _forecast(prometheus, *argv) == 0
    out = capsys.readouterr().out
    assert prometheus.url in out and "model holt-winters, fitted until" in out
    assert "upper q=0.95" in out and "peak of the upper 0.95 quantile" in out
    assert plot.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        pytest.param(["--query", "sum("], "rejected query 'sum('", id="bad-promql"),
        pytest.param(
            ["--query", 'sum(gateway_active_connections{region="nowhere"})'],
            "returned no data",
            id="empty-result",
        ),
        pytest.param(
            ["--query", "gateway_active_connections"], "returned 2 series", id="not-aggregated"
        ),
        pytest.param(
            ["--query", QUERY, "--history", "6h"], "usable samples", id="too-little-history"
        ),
    ],
)
def test_a_failed_read_or_fit_is_one_line_naming_url_and_query(
    prometheus: PrometheusServer,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    expected: str,
) -> None:
    """Bad PromQL, no data, two series, too little history: exit 2, one line naming the URL
    and the query."""
    assert _forecast(prometheus, *argv, "--json") == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1, captured.err
    assert prometheus.url in captured.err and expected in captured.err
    assert repr(argv[1]) in captured.err
    assert "Traceback" not in captured.err
