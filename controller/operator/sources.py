"""Where the operator gets load histories: a :class:`PrometheusLoadSource` built from settings."""

from __future__ import annotations

import base64
from typing import Any, Protocol

from controller.operator.prometheus_source import (
    MetricsUnavailable,
    PrometheusLoadSource,
    QueryError,
)
from controller.operator.settings import OperatorSettings
from forecasts.series import LoadSeries

__all__ = ["LoadSource", "MetricsUnavailable", "QueryError", "make_load_source", "metrics_reason"]


class LoadSource(Protocol):
    def read_history(self, query: str, *, start: float, end: float, step: float) -> LoadSeries: ...


def metrics_reason(exc: MetricsUnavailable) -> str:
    """The condition reason of a metrics failure (``MetricsUnavailable`` or ``QueryError``)."""
    return str(getattr(exc, "reason", "MetricsUnavailable"))


def prometheus_headers(settings: OperatorSettings) -> dict[str, str]:
    """Extra headers plus ``Authorization`` from the bearer token or the basic-auth pair."""
    headers = dict(settings.prometheus_headers)
    if settings.prometheus_token is not None:
        headers["Authorization"] = f"Bearer {settings.prometheus_token.get_secret_value()}"
    elif settings.prometheus_username:
        secret = settings.prometheus_password
        password = secret.get_secret_value() if secret is not None else ""
        pair = f"{settings.prometheus_username}:{password}".encode()
        headers["Authorization"] = f"Basic {base64.b64encode(pair).decode()}"
    return headers


def make_load_source(settings: OperatorSettings) -> LoadSource:
    options: dict[str, Any] = {
        "headers": prometheus_headers(settings) or None,
        "disable_ssl": settings.prometheus_disable_ssl,
        "timeout": settings.prometheus_timeout,
    }
    return PrometheusLoadSource(settings.prometheus_url, **options)
