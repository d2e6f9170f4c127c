"""pytest fixtures around the real components, for the operator's integration tests.

- ``kube_api``: a :class:`~tests.support.kube_emulator.KubeEmulatorHandle` of a fresh API
  emulator served on loopback from its own thread (function scope).
- ``prometheus_factory``: starts real Prometheus servers, each with its own data dir, live
  exporter and backfilled series, and stops them all at teardown.
- ``ramp_history``: a real trace shifted so that "now" falls shortly before its daily ramp.
- ``operator_at``: ``operator_at(load)`` builds an operator on ``cluster`` reading a flat load,
  not yet run; each one's fit pool is shut down at teardown.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from controller.backtest import backtest_spec
from controller.operator import Operator, OperatorSettings
from controller.simulator import PolicyView, Scenario, TidalPolicy
from forecasts.series import LoadSeries, load_trace
from tests.integration.operator_cluster import FlatLoad
from tests.support.kube_emulator import KubeEmulatorHandle, running_emulator
from tests.support.prometheus_server import (
    PrometheusServer,
    ramp_anchor,
    require_prometheus,
    shift_series,
    start_prometheus,
)

__all__ = [
    "TRACES_DIR",
    "clear_operator_environment",
    "daily_sine_views",
    "kube_api",
    "operator_at",
    "prometheus_factory",
    "ramp_history",
]

#: The traces the tests replay: copies bundled with the tests (tests/data/traces), so that they
#: run in a clone anywhere; ``TIDAL_TRACES_DIR`` points them at another folder.
TRACES_DIR = Path(
    os.environ.get("TIDAL_TRACES_DIR", Path(__file__).resolve().parents[1] / "data" / "traces")
)


def clear_operator_environment(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    """No ``TIDAL_*`` variable, no $KUBECONFIG, not in a pod, and ``home`` as $HOME (so no
    ``~/.kube/config`` of the machine's): the operator's settings as a test gives them."""
    for name in list(os.environ):
        if name.startswith("TIDAL_") or name in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(home))


@pytest.fixture
def kube_api() -> Iterator[KubeEmulatorHandle]:
    """A running Kubernetes API emulator; ``.api_client()`` gives an official client for it."""
    with running_emulator() as handle:
        yield handle


@pytest.fixture
def cluster(kube_api: KubeEmulatorHandle) -> KubeEmulatorHandle:
    """The operator tests' name for :func:`kube_api`: a cluster of the test's own, so an
    operator reconciles every object it lists."""
    return kube_api


@pytest.fixture
def operator_at(cluster: KubeEmulatorHandle) -> Iterator[Callable[[float], Operator]]:
    """An operator on ``cluster`` reading a flat load; its fit pool shut down afterwards."""
    built: list[Operator] = []

    def make(load: float) -> Operator:
        settings = OperatorSettings(
            leader_election=False, metrics_port=0, metrics_address="127.0.0.1"
        )
        operator = Operator(settings, api_client=cluster.api_client(), source=FlatLoad(load))
        built.append(operator)
        return operator

    yield make
    for operator in built:
        operator.models.shutdown()


@pytest.fixture
def prometheus_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., PrometheusServer]]:
    """``prometheus_factory(series, live={key: value}, scrape_interval=1.0)`` → a started server.

    ``series`` maps series keys (``series_key(region="eu-west")``) to the history to backfill;
    ``live`` sets exporter values before the first scrape. Skips when Prometheus is missing.
    """
    require_prometheus()
    started: list[PrometheusServer] = []

    def factory(
        series: Mapping[str, LoadSeries] | None = None,
        *,
        live: Mapping[str, float] | None = None,
        **options: Any,
    ) -> PrometheusServer:
        data_dir = tmp_path_factory.mktemp("prometheus")
        server = start_prometheus(series or {}, data_dir, live=(live or {}).items(), **options)
        started.append(server)
        return server

    yield factory
    for server in reversed(started):
        server.close()
        server.exporter.close()


@pytest.fixture
def ramp_history() -> Callable[..., LoadSeries]:
    """``ramp_history("wc98-requests-per-minute", days=14, now=None, peak=None)``.

    The trace's last ``days`` before a moment 45 minutes ahead of its daily ramp, shifted so
    that this moment is ``now`` (default: the current time); scaled so that its maximum is
    ``peak`` when given.
    """

    def history(
        trace: str | Path,
        *,
        days: float = 14,
        now: float | None = None,
        peak: float | None = None,
        lead: float = 45 * 60,
    ) -> LoadSeries:
        path = Path(trace)
        if not path.is_absolute() and not path.exists():
            path = TRACES_DIR / (path.name if path.suffix == ".csv" else f"{path.name}.csv")
        if not path.exists():
            pytest.skip(f"trace {path} is missing (set TIDAL_TRACES_DIR)")
        series = load_trace(path)
        shifted = shift_series(
            series, anchor=ramp_anchor(series, lead=lead), now=time.time() if now is None else now
        )
        result = shifted.last(days * 86400)
        if peak is not None:
            scale = peak / float(np.nanmax(result.values))
            result = LoadSeries(result.start, result.step, result.values * scale)
        return result

    return history


#: Where the sine views start: on a 5-minute boundary, so that the fit's buckets line up.
SINE_START = 1_700_000_100.0 - 1_700_000_100.0 % 300.0


def seasonal_naive_policy(name: str) -> TidalPolicy:
    """Tidal's policy in the default scenario, forecasting by seasonal naive (the cheapest fit);
    its spec is ``policy.spec``."""
    scenario = Scenario()
    return TidalPolicy(backtest_spec(name, scenario=scenario, model="seasonal-naive"), scenario)


def daily_sine_views(start: float, last_minutes: int) -> Sequence[tuple[int, PolicyView]]:
    """``(minute, PolicyView)`` for each of the last ``last_minutes`` minutes of three days of
    a daily sine (50,000 +- 20,000 a minute from ``start``), as a tidal policy on a full
    physical pool of 60 with no cloud sees them."""
    minutes = 3 * 1440
    values = 50_000.0 + 20_000.0 * np.sin(2 * np.pi * np.arange(minutes) / 1440)
    return [
        (
            minute,
            PolicyView(
                now=start + 60.0 * minute,
                history=LoadSeries(start, 60.0, values[: minute + 1]),
                physical_replicas=60,
                cloud_replicas=0,
                physical_capacity=60,
                reserved=0,
            ),
        )
        for minute in range(minutes - last_minutes, minutes)
    ]
