"""Fixtures shared by the whole test suite: the real components of :mod:`tests.support`."""

from tests.support.fixtures import kube_api, prometheus_factory, ramp_history

__all__ = ["kube_api", "prometheus_factory", "ramp_history"]
