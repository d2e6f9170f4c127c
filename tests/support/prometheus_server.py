"""A real Prometheus server for tests, with a backfilled history and a live exporter.

The operator reads load from Prometheus, and a fake of Prometheus would encode our own reading
of its semantics (lookback, staleness, the 11,000-point limit, restarts). This module runs the
Debian package's ``/usr/bin/prometheus`` on a free loopback port with a temporary data dir:

- **History** comes from real traces: :func:`write_openmetrics` writes the series with
  ``# EOF`` and ``promtool tsdb create-blocks-from openmetrics`` turns them into blocks in the
  data dir *before* Prometheus starts. promtool cuts 2-hour blocks by default (a 40-day trace
  becomes 480 blocks and takes seconds to write and to open); the hidden
  ``--max-block-duration`` flag makes a few large blocks instead. Backfilling up to "now" is
  safe only because the head is empty when the blocks are written; on start Prometheus sets the
  head's lower bound to the newest block's end, so live samples must be newer than the last
  backfilled one (they are: the history ends at ``now``, scrapes come after).
- **Live samples** come through a real scrape of a ``prometheus_client`` exporter on another
  loopback port (:class:`LoadExporter`), every ``scrape_interval`` (1 s by default). The scrape
  job relabels ``instance`` to a constant, and the backfill adds the same ``job`` and
  ``instance`` labels, so a region's history and its live samples are one series.
- **Now before a ramp**: :func:`ramp_anchor` finds, in a trace, the time 45 minutes (by
  default) before the steepest rise of the average day, and :func:`shift_series` moves the trace
  so that this moment is the real current time; the operator then faces the ramp live.
- **Outage**: :meth:`PrometheusServer.stop` and :meth:`PrometheusServer.start` reuse the same
  data dir and port, so a test can take Prometheus away and bring it back with its history.

Every wait polls with a deadline. :func:`require_prometheus` skips the test with a message
when the binaries are missing.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import requests
import yaml
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.metrics_core import Metric

from forecasts.series import LoadSeries

__all__ = [
    "DEFAULT_METRIC",
    "SCRAPE_INSTANCE",
    "SCRAPE_JOB",
    "LoadExporter",
    "PrometheusServer",
    "ramp_anchor",
    "require_prometheus",
    "series_key",
    "shift_series",
    "start_prometheus",
    "write_openmetrics",
]

DEFAULT_METRIC = "gateway_active_connections"
SCRAPE_JOB = "gateway"
SCRAPE_INSTANCE = "exporter"
PROMETHEUS = os.environ.get("TIDAL_TEST_PROMETHEUS", "/usr/bin/prometheus")
PROMTOOL = os.environ.get("TIDAL_TEST_PROMTOOL", "/usr/bin/promtool")

_KEY_RE = re.compile(r"^\s*(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?:\{(?P<labels>.*)\})?\s*$")
_LABEL_RE = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')


def require_prometheus() -> None:
    """Skip the calling test when the Prometheus server or promtool is not installed."""
    import pytest

    missing = [path for path in (PROMETHEUS, PROMTOOL) if shutil.which(path) is None]
    if missing:
        pytest.skip(
            f"Prometheus is not installed ({', '.join(missing)} missing): "
            "apt-get install prometheus"
        )


def free_port() -> int:
    """A loopback port that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def series_key(metric: str = DEFAULT_METRIC, **labels: str) -> str:
    """``series_key(region="eu-west")`` is ``'gateway_active_connections{region="eu-west"}'``."""
    inner = ",".join(f'{name}="{_escape(value)}"' for name, value in sorted(labels.items()))
    return f"{metric}{{{inner}}}"


def parse_series_key(key: str) -> tuple[str, dict[str, str]]:
    """``'m{a="b"}'`` to ``("m", {"a": "b"})``."""
    match = _KEY_RE.match(key)
    if match is None:
        raise ValueError(f'not a series selector: {key!r} (expected metric{{label="value"}})')
    labels: dict[str, str] = {}
    text = match["labels"] or ""
    position = 0
    while position < len(text.rstrip()):
        label = _LABEL_RE.match(text, position)
        if label is None:
            raise ValueError(f"cannot parse the labels of {key!r} at {text[position:]!r}")
        labels[label[1]] = label[2].replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")
        position = label.end()
    return match["name"], labels


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _with_scrape_labels(labels: Mapping[str, str]) -> dict[str, str]:
    return {"job": SCRAPE_JOB, "instance": SCRAPE_INSTANCE, **labels}


# -- history -----------------------------------------------------------------------------


def ramp_anchor(series: LoadSeries, *, lead: float = 45 * 60, window: float = 60 * 60) -> float:
    """When, in ``series``, a test's "now" should fall: ``lead`` seconds before the daily ramp.

    The average day is the mean of the trace by time of day (UTC); the ramp is where its
    moving mean over ``window`` rises fastest. The answer is the *last* time in the trace that
    is ``lead`` before that time of day and still has ``lead + window`` of trace after it, so
    that the ramp that follows is real data too (a test can replay it through the exporter).
    """
    day = 86400.0
    bins = max(1, round(day / series.step))
    phase = np.floor(((series.times() % day) / day) * bins).astype(int) % bins
    known = ~np.isnan(series.values)
    sums = np.bincount(phase[known], weights=series.values[known], minlength=bins)
    counts = np.bincount(phase[known], minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        profile = _fill_circular(sums / counts)
    width = max(1, round(window / series.step))
    padded = np.concatenate([profile[-width:], profile, profile[:width]])
    smooth = np.convolve(padded, np.ones(width) / width, mode="same")[width:-width]
    half = max(1, width // 2)
    rise = np.roll(smooth, -half) - np.roll(smooth, half)
    steepest = (int(np.argmax(rise)) + 0.5) * day / bins  # seconds after midnight
    target = (steepest - lead) % day
    latest = series.end - window - lead
    candidate = math.floor((latest - target) / day) * day + target
    candidate = series.start + math.floor((candidate - series.start) / series.step) * series.step
    if candidate <= series.start:
        raise ValueError("the trace is shorter than a day: it has no daily ramp to aim at")
    return float(candidate)


def _fill_circular(profile: np.ndarray) -> np.ndarray:
    """Fill the empty time-of-day bins of a coarse trace by circular interpolation."""
    known = ~np.isnan(profile)
    if known.all():
        return profile
    index = np.arange(profile.size)
    filled: np.ndarray = np.interp(index, index[known], profile[known], period=profile.size)
    return filled


def shift_series(series: LoadSeries, *, anchor: float, now: float) -> LoadSeries:
    """Move ``series`` so that its sample at ``anchor`` stands at ``now`` (floored to the step),
    and cut it there: the result is the history as it would be at ``now``."""
    aligned_now = math.floor(now / series.step) * series.step
    shifted_start = series.start + (aligned_now - anchor)
    return LoadSeries(shifted_start, series.step, series.values).until(aligned_now)


def write_openmetrics(series: Mapping[str, LoadSeries], path: Path) -> Path:
    """The series as an OpenMetrics file for promtool; NaN samples are left out (gaps), and
    ±Inf is kept (to test how readers treat non-finite samples)."""
    families: dict[str, list[tuple[dict[str, str], LoadSeries]]] = {}
    for key, values in series.items():
        name, labels = parse_series_key(key)
        families.setdefault(name, []).append((_with_scrape_labels(labels), values))
    with path.open("w", encoding="utf-8") as out:
        for name, members in families.items():
            out.write(f"# TYPE {name} gauge\n")
            for labels, values in members:  # each series contiguous, in time order
                label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
                prefix = f"{name}{{{label_text}}} "
                known = ~np.isnan(values.values)
                out.writelines(
                    f"{prefix}{_number(value)} {stamp:.3f}\n"
                    for stamp, value in zip(
                        values.times()[known].tolist(), values.values[known].tolist(), strict=True
                    )
                )
        out.write("# EOF\n")
    return path


def _number(value: float) -> str:
    """OpenMetrics spells infinities ``+Inf`` and ``-Inf``."""
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


# -- the live exporter -------------------------------------------------------------------


class _SampleCollector:
    def __init__(self) -> None:
        self.samples: dict[str, float] = {}
        self.lock = threading.Lock()

    def collect(self) -> Iterator[Metric]:
        with self.lock:
            samples = dict(self.samples)
        families: dict[str, Metric] = {}
        for key, value in samples.items():
            name, labels = parse_series_key(key)
            family = families.setdefault(name, Metric(name, f"{name} (test exporter)", "gauge"))
            family.add_sample(name, labels, value)
        yield from families.values()


class LoadExporter:
    """A ``prometheus_client`` exporter on a loopback port whose gauges the test sets."""

    def __init__(self, *, port: int | None = None) -> None:
        self._collector = _SampleCollector()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self._collector)
        self.port = port or free_port()
        self._server, self._thread = start_http_server(
            self.port, addr="127.0.0.1", registry=self.registry
        )

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def set(self, key: str, value: float) -> None:
        """Expose ``value`` for the series ``key`` (``'metric{label="v"}'``) from now on."""
        parse_series_key(key)
        with self._collector.lock:
            self._collector.samples[key] = float(value)

    def set_load(self, region: str, value: float, *, metric: str = DEFAULT_METRIC) -> None:
        """The current load of a region, as ``metric{region="..."}``."""
        self.set(series_key(metric, region=region), value)

    def clear(self, key: str | None = None) -> None:
        """Stop exposing one series (or all): Prometheus marks it stale on the next scrape."""
        with self._collector.lock:
            if key is None:
                self._collector.samples.clear()
            else:
                self._collector.samples.pop(key, None)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


# -- the server ----------------------------------------------------------------------------


class PrometheusServer:
    """A Prometheus process on 127.0.0.1 scraping a :class:`LoadExporter`.

    ``backfill()`` before ``start()``; ``stop()`` and ``start()`` again keep the data dir and
    the port. Use as a context manager or call :meth:`close`.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        exporter: LoadExporter,
        scrape_interval: float = 1.0,
        retention: str = "3650d",
        lookback_delta: str | None = None,
        port: int | None = None,
        rule_files: Iterable[Path] = (),
        targets: Mapping[str, str] | None = None,
    ) -> None:
        """``rule_files``: rule files Prometheus loads (evaluated every ``scrape_interval``);
        ``targets``: more jobs to scrape, job name -> ``host:port``, on 127.0.0.1 only."""
        self.data_dir = Path(data_dir)
        self.exporter = exporter
        self.rule_files = [Path(path).resolve() for path in rule_files]
        self.targets = dict(targets or {})
        for target in self.targets.values():
            if not target.startswith("127.0.0.1:"):
                raise ValueError(f"a test scrapes loopback only, not {target}")
        self.scrape_interval = scrape_interval
        self.retention = retention
        self.lookback_delta = lookback_delta
        self.port = port or free_port()
        self._process: subprocess.Popen[bytes] | None = None
        self._log_path = self.data_dir / "prometheus.log"
        (self.data_dir / "tsdb").mkdir(parents=True, exist_ok=True)
        self._config_path = self._write_config()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _write_config(self) -> Path:
        interval = f"{self.scrape_interval:g}s"
        config = {
            "global": {
                "scrape_interval": interval,
                "scrape_timeout": interval,
                "evaluation_interval": interval,
            },
            "scrape_configs": [
                {
                    "job_name": SCRAPE_JOB,
                    "scrape_interval": interval,
                    "scrape_timeout": interval,
                    "static_configs": [{"targets": [self.exporter.target]}],
                    # One constant instance label, the same as the backfilled history's.
                    "relabel_configs": [
                        {"target_label": "instance", "replacement": SCRAPE_INSTANCE}
                    ],
                },
                *(
                    {
                        "job_name": job,
                        "scrape_interval": interval,
                        "scrape_timeout": interval,
                        "static_configs": [{"targets": [target]}],
                    }
                    for job, target in self.targets.items()
                ),
            ],
        }
        if self.rule_files:
            config["rule_files"] = [str(path) for path in self.rule_files]
        path = self.data_dir / "prometheus.yml"
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        return path

    def backfill(self, series: Mapping[str, LoadSeries], *, timeout: float = 120.0) -> None:
        """Write ``series`` into the data dir as TSDB blocks (Prometheus must be stopped)."""
        if self.running:
            raise RuntimeError("backfill needs Prometheus stopped: the head would overlap")
        if not series:
            return
        source = write_openmetrics(series, self.data_dir / "backfill.om")
        span = max(s.end for s in series.values()) - min(s.start for s in series.values())
        # A handful of large blocks instead of one per 2 hours: faster to write and to open.
        hours = max(2, math.ceil(span / 3600) + 2)
        result = subprocess.run(
            [
                PROMTOOL,
                "tsdb",
                "create-blocks-from",
                "openmetrics",
                "--quiet",
                f"--max-block-duration={hours}h",
                str(source),
                str(self.data_dir / "tsdb"),
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        source.unlink()
        if result.returncode != 0:
            raise RuntimeError(f"promtool failed ({result.returncode}): {result.stderr.strip()}")

    def start(self, *, timeout: float = 60.0) -> None:
        """Start (or restart) Prometheus and wait until it answers ``/-/ready``."""
        if self.running:
            return
        args = [
            PROMETHEUS,
            f"--config.file={self._config_path}",
            f"--storage.tsdb.path={self.data_dir / 'tsdb'}",
            f"--storage.tsdb.retention.time={self.retention}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--web.enable-admin-api",
            "--log.level=warn",
        ]
        if self.lookback_delta:
            args.append(f"--query.lookback-delta={self.lookback_delta}")
        log = self._log_path.open("ab")
        try:
            self._process = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"Prometheus exited with {self._process.returncode}:\n{self.log_tail()}"
                )
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"Prometheus was not ready within {timeout}s:\n{self.log_tail()}")

    def stop(self, *, timeout: float = 20.0, kill: bool = False) -> None:
        """Stop Prometheus (SIGTERM, or SIGKILL for a crash) and wait for it to exit."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)

    def close(self) -> None:
        self.stop()

    def __enter__(self) -> PrometheusServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self._log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    # -- queries, for tests --------------------------------------------------------------

    def query(self, promql: str, *, at: float | None = None) -> list[dict[str, Any]]:
        """The raw result of an instant query (a list of ``{"metric", "value"}``)."""
        params: dict[str, Any] = {"query": promql}
        if at is not None:
            params["time"] = at
        response = requests.get(f"{self.url}/api/v1/query", params=params, timeout=10)
        response.raise_for_status()
        return response.json()["data"]["result"]  # type: ignore[no-any-return]

    def wait_for(
        self,
        promql: str,
        predicate: Callable[[float], bool] = lambda _: True,
        *,
        timeout: float = 20.0,
    ) -> float:
        """Poll an instant query until its single value satisfies ``predicate``; return it."""
        deadline = time.monotonic() + timeout
        seen: Any = None
        while time.monotonic() < deadline:
            with contextlib.suppress(requests.RequestException):
                result = self.query(promql)
                seen = result
                if len(result) == 1:
                    value = float(result[0]["value"][1])
                    if predicate(value):
                        return value
            time.sleep(0.1)
        raise TimeoutError(
            f"{promql!r} did not satisfy the condition within {timeout}s (last result: {seen!r})"
        )

    def wait_for_scrape(self, *, timeout: float = 20.0) -> None:
        """Wait until the exporter has been scraped successfully."""
        self.wait_for(f'up{{job="{SCRAPE_JOB}"}}', lambda up: up == 1, timeout=timeout)


def start_prometheus(
    series: Mapping[str, LoadSeries],
    data_dir: Path,
    *,
    exporter: LoadExporter | None = None,
    live: Iterable[tuple[str, float]] = (),
    **options: Any,
) -> PrometheusServer:
    """Backfill ``series`` into ``data_dir``, start a live exporter and Prometheus."""
    exporter = exporter or LoadExporter()
    for key, value in live:
        exporter.set(key, value)
    server = PrometheusServer(data_dir, exporter=exporter, **options)
    try:
        server.backfill(series)
        server.start()
    except BaseException:
        server.stop()
        exporter.close()
        raise
    return server


@contextmanager
def backfilled(series: Mapping[str, LoadSeries], data_dir: Path) -> Iterator[PrometheusServer]:
    """A Prometheus holding ``series`` and scraping nothing live, for a module's read-only
    tests; skips where Prometheus is missing, and is stopped, with its exporter, on leaving."""
    require_prometheus()
    server = start_prometheus(series, data_dir)
    try:
        yield server
    finally:
        server.close()
        server.exporter.close()
