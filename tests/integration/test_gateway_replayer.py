"""The sample gateway, driven by the trace replayer and scraped by a real Prometheus, reports the
connection count the trace says (issue 5, without kind). Everything listens on 127.0.0.1."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest

from forecasts.series import load_trace, parse_timestamp
from tests.support.fixtures import TRACES_DIR
from tests.support.prometheus_server import free_port

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TRACE = TRACES_DIR / "twitter-amzn-5min.csv"
# A US afternoon ramp; five 5-minute samples played at 2 s each.
START = "2015-03-10T13:02:53Z"
STEPS = 5
SPEED = 150.0
PEAK = 200
REGION = "ci"

T = TypeVar("T")


def _poll(what: str, probe: Callable[[], T | None], *, deadline: float) -> T:
    """Call ``probe`` until it returns something other than None, or fail at the deadline."""
    until = time.monotonic() + deadline
    last_error: Exception | None = None
    while time.monotonic() < until:
        try:
            result = probe()
        except OSError as exc:  # not listening yet
            last_error = exc
            result = None
        if result is not None:
            return result
        time.sleep(0.2)
    pytest.fail(f"timed out after {deadline:.0f}s waiting for {what} (last error: {last_error})")


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=2) as response:
        return bytes(response.read())


def _query(prometheus: str, promql: str) -> list[dict[str, Any]]:
    url = f"{prometheus}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
    body = json.loads(_get(url))
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def _expected_connections() -> list[int]:
    """Connections at each played trace sample, computed from the trace itself."""
    series = load_trace(TRACE)
    scale = PEAK / float(np.nanpercentile(series.values, 99))
    first = series.index_of(parse_timestamp(START))
    return [min(round(series.values[first + k] * scale), 2 * PEAK) for k in range(STEPS + 1)]


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in reversed(started):
        process.terminate()
    for process in started:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _start(processes: list[subprocess.Popen[bytes]], *args: str, log: Path) -> None:
    handle = log.open("wb")
    processes.append(subprocess.Popen(args, stdout=handle, stderr=subprocess.STDOUT, cwd=REPO))


def test_prometheus_sees_the_trace_through_gateway_and_replayer(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    """Prometheus's gateway_active_connections equals the trace's scaled load after a replay."""
    prometheus_bin = shutil.which("prometheus")
    if prometheus_bin is None:
        pytest.skip("the prometheus binary is not installed (Debian package 'prometheus')")
    if not TRACE.exists():
        pytest.skip(f"trace {TRACE} is missing (set TIDAL_TRACES_DIR)")
    expected = _expected_connections()
    assert max(expected) <= 2 * PEAK

    gateway_port, prometheus_port = free_port(), free_port()
    gateway = f"127.0.0.1:{gateway_port}"
    prometheus = f"http://127.0.0.1:{prometheus_port}"
    python = sys.executable
    _start(
        processes,
        python, "-m", "controller.demo_gateway.server",
        "--region", REGION, "--host", "127.0.0.1", "--port", str(gateway_port),
        log=tmp_path / "gateway.log",
    )  # fmt: skip
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: gateway\n    static_configs: [{{targets: ['{gateway}']}}]\n",
        encoding="utf-8",
    )
    _start(
        processes,
        prometheus_bin,
        f"--config.file={tmp_path / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{prometheus_port}",
        log=tmp_path / "prometheus.log",
    )
    _poll("the gateway", lambda: _get(f"http://{gateway}/healthz") or None, deadline=15)
    _poll("Prometheus", lambda: _get(f"{prometheus}/-/ready") or None, deadline=15)
    metric = f'gateway_active_connections{{region="{REGION}"}}'
    _poll("the first scrape", lambda: _query(prometheus, metric) or None, deadline=15)

    duration_s = STEPS * 300
    began = time.monotonic()
    _start(
        processes,
        python, "-m", "controller.demo_gateway.replayer",
        "--url", f"ws://{gateway}/ws", "--trace", str(TRACE), "--peak", str(PEAK),
        "--start", START, "--speed", str(SPEED), "--duration", f"{duration_s}s",
        "--tick", "0.2", "--hold",
        log=tmp_path / "replayer.log",
    )  # fmt: skip

    # The replay ends duration / speed seconds after it starts (plus its own start-up); from
    # then on it holds the final sample, which Prometheus must report exactly.
    time.sleep(max(0.0, duration_s / SPEED - (time.monotonic() - began)))

    def final_value() -> float | None:
        result = _query(prometheus, metric)
        value = float(result[0]["value"][1]) if result else math.nan
        return value if value == expected[-1] else None

    assert _poll(f"{metric} == {expected[-1]}", final_value, deadline=20) == expected[-1]

    # On the way it followed the trace: it moved, within the trace's bounds.
    window = f"{int(time.monotonic() - began) + 2}s"
    seen = _query(prometheus, f"max_over_time({metric}[{window}])")
    assert float(seen[0]["value"][1]) <= max(expected)
    changes = _query(prometheus, f"changes({metric}[{window}])")
    assert float(changes[0]["value"][1]) >= 3
    assert processes[-1].poll() is None, (tmp_path / "replayer.log").read_text()
