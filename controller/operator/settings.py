"""Operator settings: ``TIDAL_*`` environment variables, overridden by ``tidal run`` flags.

Durations are seconds (floats) or Kubernetes-style text (``90s``, ``1m``), as in the CR, at
most ten years either way. Flags win over the environment, which wins over the defaults: a
Deployment sets the environment, a person at a terminal types flags. What is refused later (a
kubeconfig, a port that cannot be bound) is named as it was given (:meth:`OperatorSettings.named`).
"""

from __future__ import annotations

import os
import socket
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BeforeValidator,
    Field,
    PrivateAttr,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from controller.durations import MAX_DURATION, parse_duration
from controller.operator.prometheus_source import prometheus_url_problem

#: The placeholder pods' image unless ``placeholder_image`` says otherwise: a pause container,
#: which holds a node's resources and does nothing else.
PLACEHOLDER_IMAGE = "registry.k8s.io/pause:3.9"

__all__ = [
    "OperatorSettings",
    "PrometheusSettings",
    "SettingsUnusable",
    "default_identity",
    "flag_of",
    "in_environment",
    "variable_of",
]


def flag_of(field: str) -> str:
    """The ``tidal run`` flag that sets ``field``: ``--kube-context``."""
    return "--" + field.replace("_", "-")


def variable_of(field: str) -> str:
    """The variable that sets ``field``: ``TIDAL_KUBE_CONTEXT``."""
    return f"TIDAL_{field.upper()}"


def in_environment(field: str) -> bool:
    """Whether the environment sets ``field``, its variable read without regard to case, as
    pydantic-settings reads it."""
    return variable_of(field) in {name.upper() for name in os.environ}


class SettingsUnusable(ValueError):
    """Settings that are valid as values but that cannot be used where they are run (a port in
    use, an address that does not resolve); the one-line message names them as given."""


def _seconds(value: object) -> object:
    """Seconds as a number or as digits (``90``, ``1.5``), or duration text (``90s``): at most
    :data:`~controller.durations.MAX_DURATION` either way, so that no wait or timeout later
    overflows. Anything else is left to pydantic's own check of a float."""
    if isinstance(value, str) and value.strip().replace(".", "", 1).isdigit():
        seconds = float(value)
        if not seconds <= MAX_DURATION.total_seconds():
            raise ValueError(
                f"{value!r} is not a duration Tidal can hold (at most {MAX_DURATION.days} days)"
            )
        return seconds
    if isinstance(value, str | int | float):  # a bool too: parse_duration refuses it
        return parse_duration(value).total_seconds()
    return value


def _csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _headers(value: object) -> object:
    """``Name: value`` pairs separated by commas or newlines (a JSON object also works)."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            import json

            return json.loads(text)
        pairs = [p for chunk in text.splitlines() for p in chunk.split(",") if p.strip()]
        headers: dict[str, str] = {}
        for number, pair in enumerate(pairs, 1):
            name, sep, val = pair.partition(":")
            if not sep:
                # Its text is not shown: it may be a secret, or part of one a comma split.
                raise ValueError(
                    f"the {_ordinal(number)} header is not 'Name: value' (headers are separated "
                    "by commas or newlines; a value holding a comma goes in a JSON object, "
                    '{"Name": "value"})'
                )
            headers[name.strip()] = val.strip()
        return headers
    return value


def _ordinal(number: int) -> str:
    suffix = (
        "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    )
    return f"{number}{suffix}"


def _unsendable(text: str) -> bool:
    """Whether ``text`` cannot go in an HTTP header as it is: a control character (a newline
    in a token read from a file) or one outside Latin-1, which the HTTP client refuses only
    when the request is sent, and then as if Prometheus were unreachable."""
    return any(ord(c) < 0x20 or ord(c) == 0x7F or ord(c) > 0xFF for c in text)


Seconds = Annotated[float, BeforeValidator(_seconds)]


def holds_seconds(info: FieldInfo) -> bool:
    """Whether a settings field is :data:`Seconds` (its value a duration, in seconds)."""
    return any(getattr(meta, "func", None) is _seconds for meta in info.metadata)


def default_identity() -> str:
    """Host name and process id: unique per pod (the host name) and per process in a test."""
    return f"{socket.gethostname()}-{os.getpid()}"


class PrometheusSettings(BaseSettings):
    """How to reach Prometheus: ``TIDAL_PROMETHEUS_*`` in the environment. ``tidal run`` reads
    them (as part of :class:`OperatorSettings`), and so do ``tidal trace`` and the live
    ``tidal forecast``, so that one environment reaches one Prometheus, however it is secured."""

    model_config = SettingsConfigDict(env_prefix="TIDAL_", extra="ignore", frozen=True)

    #: The fields read from the environment: not passed in (``tidal run``'s flags are), and
    #: their variable set.
    _from_environment: frozenset[str] = PrivateAttr(default=frozenset())

    def __init__(self, **values: Any) -> None:
        super().__init__(**values)
        self._from_environment = frozenset(
            name for name in type(self).model_fields if name not in values and in_environment(name)
        )

    def named(self, field: str) -> str:
        """``field`` as it was given: its variable (``TIDAL_KUBECONFIG``) when it was read from
        the environment, else its flag (``--kubeconfig``), also for a default, as
        ``tidal run`` names the settings it refuses."""
        return variable_of(field) if field in self._from_environment else flag_of(field)

    # Prometheus
    prometheus_url: str = Field(default="http://127.0.0.1:9090", description="Prometheus base URL")
    prometheus_token: SecretStr | None = Field(default=None, description="Bearer token")
    prometheus_username: str | None = Field(default=None, description="Basic auth user")
    prometheus_password: SecretStr | None = Field(default=None, description="Basic auth password")
    prometheus_headers: Annotated[dict[str, str], NoDecode, BeforeValidator(_headers)] = Field(
        default_factory=dict, description="Extra HTTP headers, 'Name: value, Name: value'"
    )
    prometheus_disable_ssl: bool = Field(default=False, description="Skip TLS verification")
    prometheus_ca_file: str | None = Field(
        default=None,
        description="PEM file of the CA certificates that verify Prometheus's (a private CA's)",
    )
    prometheus_client_cert: str | None = Field(
        default=None,
        description="PEM file of the client certificate Prometheus asks for (mutual TLS); "
        "it may hold the key too",
    )
    prometheus_client_key: str | None = Field(
        default=None, description="PEM file of that certificate's key, where it is apart"
    )
    prometheus_timeout: Seconds = Field(
        default=10.0,
        gt=0,
        description="Per-request timeout; Prometheus is told to give up on a query a tenth "
        "(at least 0.5s) sooner",
    )

    @field_validator("prometheus_token", mode="before")
    @classmethod
    def _sendable_token(cls, value: object) -> object:
        # A token read from a file (kubectl create secret --from-file) ends in a newline.
        if isinstance(value, str):
            value = value.strip()
            if not value:
                raise ValueError("is blank")
            if _unsendable(value):  # the token itself is never shown
                raise ValueError(
                    "holds a control character or one outside Latin-1: no HTTP header can carry it"
                )
        return value

    @field_validator("prometheus_headers")
    @classmethod
    def _sendable_headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not name or _unsendable(name) or any(c in name for c in " \t:"):
                raise ValueError(
                    "a header name is empty or holds a space, a colon or a control character"
                )
            if _unsendable(text):  # the value is never shown: it may be a secret
                raise ValueError(
                    f"the value of header {name!r} holds a control character or one outside "
                    "Latin-1: no HTTP header can carry it"
                )
        return value

    @field_validator("prometheus_ca_file", "prometheus_client_cert", "prometheus_client_key")
    @classmethod
    def _readable_file(cls, value: str | None) -> str | None:
        # Refused here, by its name, not at every read as a Prometheus that cannot be reached.
        if value is None:
            return None
        if not value.strip():
            raise ValueError("is blank")
        if not os.path.isfile(value):
            raise ValueError(f"{value!r} is not a file")
        if not os.access(value, os.R_OK):
            raise ValueError(f"{value!r} cannot be read")
        return value

    @model_validator(mode="after")
    def _one_kind_of_credentials(self) -> PrometheusSettings:
        # The HTTP client sends a URL's user and password in place of any Authorization
        # header: a token beside them would never be sent, and nothing would say so.
        try:
            in_url = urlsplit(self.prometheus_url).username is not None
        except ValueError:
            in_url = False
        given = [
            variable_of(name)
            for name in ("prometheus_token", "prometheus_username")
            if getattr(self, name) is not None
        ]
        if in_url and given:
            raise ValueError(
                f"{variable_of('prometheus_url')} holds a user and password, and "
                f"{' and '.join(given)} is set too: the URL's would be sent and the other "
                "never; give one of them"
            )
        return self

    @model_validator(mode="after")
    def _key_with_its_cert(self) -> PrometheusSettings:
        if self.prometheus_client_key is not None and self.prometheus_client_cert is None:
            raise ValueError(
                f"{variable_of('prometheus_client_key')} is set without "
                f"{variable_of('prometheus_client_cert')}: a key is sent with its certificate"
            )
        return self

    @field_validator("prometheus_url")
    @classmethod
    def _usable_url(cls, value: str) -> str:
        # Refused here, by its name, not at every read as a Prometheus down for each object.
        problem = prometheus_url_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value


class OperatorSettings(PrometheusSettings):
    """Everything ``tidal run`` can be told; each field is ``TIDAL_<NAME>`` in the environment.
    The Prometheus fields (:class:`PrometheusSettings`) come first."""

    # The loop
    loop_interval: Seconds = Field(
        default=60.0, gt=0, description="Reconcile every object this often"
    )
    watch_poll: Seconds = Field(
        default=5.0, gt=0, description="Re-open the CR watch after this long without events"
    )
    pod_ready: Seconds = Field(default=60.0, ge=0, description="A new gateway pod's time to ready")
    placeholder_image: str = Field(
        default=PLACEHOLDER_IMAGE,
        min_length=1,
        description="The placeholder pods' image: a pause image (a mirror of it where the "
        "cluster cannot pull from registry.k8s.io)",
    )
    node_hold: Seconds = Field(
        default=600.0,
        ge=0,
        description="How long the cluster autoscaler keeps an unneeded cloud node "
        "(its --scale-down-unneeded-time): the least a node bought is paid for once ready",
    )
    fit_workers: int = Field(default=2, ge=1, description="Threads that fit models off the loop")
    fit_retry: Seconds = Field(
        default=30.0,
        gt=0,
        description="Wait before retrying a failed fit, at most forecast.refit",
    )
    namespaces: Annotated[list[str], NoDecode, BeforeValidator(_csv)] = Field(
        default_factory=list, description="Namespaces to watch (comma separated); empty: all"
    )

    # Metrics and health
    metrics_port: int = Field(
        default=8080, ge=0, le=65535, description="Port of /metrics, /healthz and /readyz"
    )
    metrics_address: str = Field(default="0.0.0.0", description="Bind address of that port")

    # Leader election
    leader_election: bool = Field(default=True, description="Elect a leader on a Lease")
    lease_name: str = Field(default="tidal-operator", description="The Lease's name")
    lease_namespace: str | None = Field(
        default=None, description="Default: the pod's namespace, else 'default'"
    )
    lease_duration: Seconds = Field(
        default=15.0, gt=0, description="How long a leader that stops renewing keeps the lease"
    )
    lease_renew: Seconds = Field(
        default=5.0, gt=0, description="Renew the lease this often, under half the duration"
    )
    identity: str = Field(
        default_factory=default_identity,
        description="Who holds the lease; default: the host name and process id",
    )

    # Logs and the cluster
    log_format: Literal["json", "console", "auto"] = Field(
        default="auto",
        description="auto: console when standard error is a terminal, else JSON lines",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="The least level logged"
    )
    kubeconfig: str | None = Field(
        default=None, description="Path; default: in-cluster config in a pod, else ~/.kube/config"
    )
    kube_context: str | None = Field(
        default=None, description="The kubeconfig's context; default: its current one"
    )

    @field_validator("identity")
    @classmethod
    def _some_identity(cls, value: str) -> str:
        # A lease held by an empty identity reads as held by nobody: two replicas would lead.
        if not value.strip():
            raise ValueError(
                f"{value!r} is blank: each replica needs a name of its own to hold the lease by "
                "(default: the host name and process id)"
            )
        return value

    @model_validator(mode="after")
    def _lease_timing(self) -> OperatorSettings:
        # A leader counts as leading for the duration less one renewal after each renewal
        # (``LeaderElector.is_leader``): renewing less than twice a duration leaves it not
        # leading, with nobody else able to take over, for part of every renewal.
        if self.leader_election and 2 * self.lease_renew >= self.lease_duration:
            raise ValueError(
                f"--lease-renew ({self.lease_renew:g}s) must be shorter than half "
                f"--lease-duration ({self.lease_duration:g}s)"
            )
        return self

    def resolved_lease_namespace(self) -> str:
        if self.lease_namespace:
            return self.lease_namespace
        path = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
        try:
            with open(path, encoding="utf-8") as handle:
                return handle.read().strip() or "default"
        except OSError:
            return "default"
