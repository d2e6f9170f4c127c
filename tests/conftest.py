"""Fixtures shared by the whole test suite: the real components of :mod:`tests.support`, and
structlog's configuration put back after each test."""

from collections.abc import Iterator

import pytest
import structlog

from tests.support.fixtures import (
    cluster,
    kube_api,
    operator_at,
    prometheus_factory,
    ramp_history,
)

__all__ = [
    "cluster",
    "kube_api",
    "operator_at",
    "prometheus_factory",
    "ramp_history",
    "structlog_put_back",
]


@pytest.fixture(autouse=True)
def structlog_put_back() -> Iterator[None]:
    """A test that runs ``configure_logging`` (``tidal run`` does) points structlog at its own
    captured standard error, closed once it ends: every later log line then fails with "I/O
    operation on closed file". The configuration before the test is put back after it."""
    config = structlog.get_config()
    yield
    structlog.configure(**config)
