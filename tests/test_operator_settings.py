"""The operator's settings (controller.operator.settings) as a Deployment's environment gives
them: the defaults that matter to a cluster, each bound, durations, headers and namespaces as
text, the lease timing rule at its edge, and where the lease's namespace comes from."""

from __future__ import annotations

import io
from typing import Any

import pytest
from pydantic import ValidationError

from controller.operator import settings as settings_module
from controller.operator.settings import OperatorSettings


@pytest.fixture(autouse=True)
def no_tidal_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test reads only the variables it sets."""
    for name in OperatorSettings.model_fields:
        monkeypatch.delenv(f"TIDAL_{name.upper()}", raising=False)


def refused(monkeypatch: pytest.MonkeyPatch, **variables: str) -> str:
    for name, value in variables.items():
        monkeypatch.setenv(f"TIDAL_{name.upper()}", value)
    with pytest.raises(ValidationError) as caught:
        OperatorSettings()
    return str(caught.value)


def read(monkeypatch: pytest.MonkeyPatch, **variables: str) -> OperatorSettings:
    for name, value in variables.items():
        monkeypatch.setenv(f"TIDAL_{name.upper()}", value)
    return OperatorSettings()


def test_defaults_that_a_cluster_depends_on() -> None:
    """Left unset: TLS is verified, a leader is elected (two replicas never both write), the
    probes' port listens beyond loopback for the kubelet, on the port the manifest exposes, and
    a node bought is priced as held for Cluster Autoscaler's default 10 unneeded minutes."""
    settings = OperatorSettings()
    assert settings.prometheus_disable_ssl is False
    assert settings.leader_election is True
    assert settings.metrics_address == "0.0.0.0" and settings.metrics_port == 8080
    assert settings.node_hold == 600.0
    assert 2 * settings.lease_renew < settings.lease_duration
    assert settings.namespaces == [] and settings.prometheus_headers == {}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("prometheus_timeout", 0.0),
        ("loop_interval", 0.0),
        ("watch_poll", 0.0),
        ("fit_retry", 0.0),
        ("lease_duration", 0.0),
        ("lease_renew", 0.0),
        ("fit_workers", 0),
        ("metrics_port", -1),
        ("metrics_port", 65536),
        ("pod_ready", -0.5),
        ("node_hold", -0.5),
    ],
)
def test_a_value_past_its_bound_is_refused_naming_the_setting(name: str, value: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        OperatorSettings(**{name: value})
    assert name in str(caught.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("pod_ready", 0.0),
        ("node_hold", 0.0),
        ("metrics_port", 0),
        ("metrics_port", 65535),
        ("fit_workers", 1),
        ("prometheus_timeout", 0.5),
        ("loop_interval", 0.5),
        ("watch_poll", 0.5),
        ("fit_retry", 0.5),
        ("lease_renew", 0.5),
    ],
)
def test_a_value_at_its_bound_is_accepted(name: str, value: Any) -> None:
    """A pod ready at once and no hold are legal (a test cluster); port 0 takes any free one;
    every time that must be positive may be under a second."""
    assert getattr(OperatorSettings(**{name: value}), name) == value


def test_a_lease_under_a_second_is_accepted() -> None:
    settings = OperatorSettings(lease_duration=0.5, lease_renew=0.2)
    assert (settings.lease_duration, settings.lease_renew) == (0.5, 0.2)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90.0), ("1m", 60.0), ("1h30m", 5400.0), ("45", 45.0), ("2.5", 2.5), (" 90 ", 90.0)],
)
def test_durations_are_seconds_or_kubernetes_text(
    monkeypatch: pytest.MonkeyPatch, text: str, seconds: float
) -> None:
    assert read(monkeypatch, loop_interval=text).loop_interval == seconds


@pytest.mark.parametrize("text", ["1.2.3", "ninety", "5 minutes"])
def test_a_duration_that_is_neither_is_refused(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    assert "loop_interval" in refused(monkeypatch, loop_interval=text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("X-Scope-OrgID: tenant-a, X-Team: chat", {"X-Scope-OrgID": "tenant-a", "X-Team": "chat"}),
        (
            "X-Scope-OrgID: tenant-a\nX-Team: chat\n",
            {"X-Scope-OrgID": "tenant-a", "X-Team": "chat"},
        ),
        ("X-Url:  http://127.0.0.1:9090 ", {"X-Url": "http://127.0.0.1:9090"}),
        ('{"X-Scope-OrgID": "tenant-a"}', {"X-Scope-OrgID": "tenant-a"}),
        ("", {}),
    ],
    ids=["commas", "lines", "colon-in-value", "json", "empty"],
)
def test_headers_are_name_value_pairs(
    monkeypatch: pytest.MonkeyPatch, text: str, expected: dict[str, str]
) -> None:
    """Pairs split at their first colon, names and values trimmed; a JSON object works too."""
    assert read(monkeypatch, prometheus_headers=text).prometheus_headers == expected


def test_a_header_without_a_colon_is_refused_by_its_place(monkeypatch: pytest.MonkeyPatch) -> None:
    """Named by its place, not its text: a comma inside a secret value splits it, and the
    part after the comma would be shown."""
    monkeypatch.setenv("TIDAL_PROMETHEUS_HEADERS", "Authorization: Bearer abc,SECRETPART")
    with pytest.raises(ValidationError) as caught:
        OperatorSettings()
    (error,) = caught.value.errors()
    assert error["loc"] == ("prometheus_headers",)
    assert "the 2nd header is not 'Name: value'" in error["msg"] and "JSON" in error["msg"]
    assert "SECRETPART" not in error["msg"] and "abc" not in error["msg"]


@pytest.mark.parametrize(
    ("variables", "refusal"),
    [
        ({"prometheus_token": "abc\ndef"}, "holds a control character"),
        ({"prometheus_token": "SECRET\u20ac"}, "outside Latin-1"),
        ({"prometheus_token": "  \n"}, "is blank"),
        ({"prometheus_headers": '{"X-Key": "SECRET\\u0007"}'}, "the value of header 'X-Key'"),
        ({"prometheus_headers": '{"X Key": "v"}'}, "a header name is empty or holds a space"),
    ],
    ids=["newline-inside", "euro-sign", "blank", "bell-in-value", "space-in-name"],
)
def test_what_no_http_header_can_carry_is_refused_unshown(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], refusal: str
) -> None:
    """Refused when read, naming the setting and never its value: the HTTP client would refuse
    it only when sending, reported as a Prometheus unreachable."""
    for name, value in variables.items():
        monkeypatch.setenv(f"TIDAL_{name.upper()}", value)
    with pytest.raises(ValidationError) as caught:
        OperatorSettings()
    (error,) = caught.value.errors()
    assert error["loc"] == (next(iter(variables)),) and refusal in error["msg"]
    assert "SECRET" not in error["msg"] and "abc" not in error["msg"]


def test_a_token_read_from_a_file_loses_its_newline(monkeypatch: pytest.MonkeyPatch) -> None:
    token = read(monkeypatch, prometheus_token="s3cret\n").prometheus_token
    assert token is not None and token.get_secret_value() == "s3cret"


def test_namespaces_are_a_comma_separated_list(monkeypatch: pytest.MonkeyPatch) -> None:
    """Spaces and empty items (a trailing comma) are dropped."""
    assert read(monkeypatch, namespaces="chat-eu, chat-us,,").namespaces == ["chat-eu", "chat-us"]


@pytest.mark.parametrize(
    ("renew", "election", "accepted"),
    [("7.5", "true", False), ("7.4", "true", True), ("20", "false", True)],
    ids=["half", "under-half", "no-election"],
)
def test_the_lease_renews_in_under_half_its_duration(
    monkeypatch: pytest.MonkeyPatch, renew: str, election: str, accepted: bool
) -> None:
    """Renewing at exactly half a 15 s lease is refused, just under it is not; without an
    election there is no lease to renew, and the rule does not apply."""
    variables = {"lease_duration": "15", "lease_renew": renew, "leader_election": election}
    if accepted:
        assert read(monkeypatch, **variables).lease_renew == float(renew)
    else:
        assert "must be shorter than half" in refused(monkeypatch, **variables)


def test_settings_cannot_change_once_read() -> None:
    """The loop, the election and the health server share one settings object: frozen."""
    settings = OperatorSettings()
    with pytest.raises(ValidationError):
        settings.loop_interval = 1.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("given", "file", "expected"),
    [
        ("chat", "other\n", "chat"),
        (None, "chat-system\n", "chat-system"),
        (None, "  \n", "default"),
        (None, None, "default"),
    ],
    ids=["set", "pod-s-namespace", "empty-file", "outside-a-pod"],
)
def test_the_lease_namespace_is_set_or_the_pod_s_own(
    monkeypatch: pytest.MonkeyPatch, given: str | None, file: str | None, expected: str
) -> None:
    """Set, it wins; unset, the pod's namespace from its service account; outside a pod (or
    from an empty file), ``default``."""
    path = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

    def fake_open(name: str, *args: Any, **kwargs: Any) -> io.StringIO:
        if name != path or file is None:
            raise FileNotFoundError(name)
        return io.StringIO(file)

    monkeypatch.setattr(settings_module, "open", fake_open, raising=False)
    settings = OperatorSettings(lease_namespace=given)
    assert settings.resolved_lease_namespace() == expected
