"""Fixtures shared by the whole test suite: the real components of :mod:`tests.support`."""

from tests.support.fixtures import (
    cluster,
    kube_api,
    operator_at,
    prometheus_factory,
    ramp_history,
)

__all__ = ["cluster", "kube_api", "operator_at", "prometheus_factory", "ramp_history"]
