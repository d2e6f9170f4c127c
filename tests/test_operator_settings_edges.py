"""The operator's settings at the edges a review found: a Prometheus URL the client cannot use
(refused by the settings and by the source itself, so ``tidal forecast`` says so too), durations
given as plain numbers past the ten years any duration may be, a blank identity (two replicas
would both lead), and how a setting refused after it was read is named: as it was given."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest
from pydantic import ValidationError

from controller import cli
from controller.durations import MAX_DURATION
from controller.operator import command
from controller.operator.prometheus_source import (
    MetricsUnavailable,
    PrometheusLoadSource,
    PrometheusUnreachable,
    shown_url,
)
from controller.operator.settings import OperatorSettings
from tests.support.fixtures import clear_operator_environment

#: The longest duration a setting takes, in seconds (ten years).
LONGEST = int(MAX_DURATION.total_seconds())

UNUSABLE_URLS = [
    pytest.param("", "is empty", id="empty"),
    pytest.param("   ", "is empty", id="blank"),
    pytest.param("127.0.0.1:9090", "is not an http or https URL", id="no-scheme"),
    pytest.param("localhost:9090", "is not an http or https URL", id="host-as-scheme"),
    pytest.param("ftp://127.0.0.1:9", "is not an http or https URL", id="ftp"),
    pytest.param("http://[::1", "Invalid IPv6 URL", id="unclosed-ipv6"),
    pytest.param("http://127.0.0.1:99999", "Port out of range", id="port-too-big"),
    pytest.param("http://127.0.0.1:abc", "could not be cast to integer", id="port-not-a-number"),
    pytest.param("http://127.0.0.1:0", "has port 0", id="port-zero"),
    pytest.param("http://:9090", "has no host", id="no-host"),
    pytest.param("http:127.0.0.1:9090", "has no host", id="no-slashes"),
    pytest.param("http://127.0.0.1:9090\n", "whitespace", id="trailing-newline"),
    pytest.param("http://*prometheus:9090", "invalid label", id="bad-label"),
    pytest.param("http://127.0.0.1:9090/prom?x=1", "has a query or fragment", id="query"),
]


@pytest.fixture(autouse=True)
def no_settings_around(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No ``TIDAL_*`` variable, no $KUBECONFIG and not in a pod; logging left alone."""
    clear_operator_environment(monkeypatch, tmp_path / "home")
    monkeypatch.setattr(command, "configure_logging", lambda *_args, **_kwargs: None)


def refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> str:
    """The message of the settings read with ``TIDAL_<NAME>=value``, which must be refused."""
    monkeypatch.setenv(f"TIDAL_{name.upper()}", value)
    with pytest.raises(ValidationError) as caught:
        OperatorSettings()
    return str(caught.value)


def one_line(text: str) -> str:
    assert text.endswith("\n") and text.count("\n") == 1, text
    assert "Traceback" not in text
    return text.strip()


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- the Prometheus URL --------------------------------------------------------------------------


@pytest.mark.parametrize(("url", "why"), UNUSABLE_URLS)
def test_a_prometheus_url_the_client_cannot_use_is_refused_naming_it(
    monkeypatch: pytest.MonkeyPatch, url: str, why: str
) -> None:
    """Refused when read, naming the setting, the URL and what is wrong with it, instead of
    each pass blaming every object's query for a Prometheus it calls unreachable."""
    message = refused(monkeypatch, "prometheus_url", url)
    assert "prometheus_url" in message and repr(url) in message and why in message


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9090",
        "https://prometheus.monitoring.svc:9090/prometheus/",
        "HTTP://127.0.0.1:9090",
        "http://[::1]:9090",
        "http://user:secret@127.0.0.1",
    ],
)
def test_a_usable_prometheus_url_is_kept_as_given(url: str) -> None:
    assert OperatorSettings(prometheus_url=url).prometheus_url == url


@pytest.mark.parametrize(("url", "why"), UNUSABLE_URLS)
def test_the_source_refuses_a_url_it_cannot_use_as_metrics_unavailable(url: str, why: str) -> None:
    """Made with such a URL, the source raises a MetricsUnavailable naming the URL (never a
    ValueError from deep in urllib), which asking again cannot mend."""
    with pytest.raises(MetricsUnavailable) as caught:
        PrometheusLoadSource(url)
    message = str(caught.value)
    assert message.startswith(f"Prometheus URL {url!r} ") and why in message
    assert "\n" not in message and caught.value.transient is False


@pytest.mark.parametrize(
    ("environment", "argv", "line"),
    [
        (
            {"TIDAL_PROMETHEUS_URL": "http://[::1"},
            ["--once"],
            "TIDAL_PROMETHEUS_URL: 'http://[::1' is not a URL (Invalid IPv6 URL)",
        ),
        ({"TIDAL_PROMETHEUS_URL": ""}, [], "TIDAL_PROMETHEUS_URL: '' is empty"),
        (
            {"TIDAL_PROMETHEUS_URL": "http://127.0.0.1:9090"},
            ["--prometheus-url", "ftp://127.0.0.1:9"],
            "--prometheus-url: 'ftp://127.0.0.1:9' is not an http or https URL",
        ),
    ],
    ids=["malformed-variable", "empty-variable", "ftp-flag"],
)
def test_tidal_run_refuses_an_unusable_prometheus_url_in_one_line(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    environment: dict[str, str],
    argv: list[str],
    line: str,
) -> None:
    """Exit 2 and one line naming the flag or variable given, before any cluster is asked."""
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert cli.main(["run", "--metrics-port", "0", *argv]) == 2
    out, err = capsys.readouterr()
    assert out == "" and one_line(err).startswith(f"tidal run: {line}"), err


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://[::1", "is not a URL (Invalid IPv6 URL)"),
        ("127.0.0.1:9", "is not an http or https URL"),
    ],
    ids=["malformed", "no-scheme"],
)
def test_tidal_forecast_refuses_an_unusable_prometheus_url_in_one_line(
    capsys: pytest.CaptureFixture[str], url: str, why: str
) -> None:
    """``tidal forecast --prometheus-url`` with such a URL: exit 2, the URL and what is wrong."""
    assert cli.main(["forecast", "--prometheus-url", url, "--query", "up"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert one_line(err).startswith(f"tidal forecast: error: Prometheus URL {url!r} {why}"), err


# --- durations as plain numbers ------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["loop_interval", "prometheus_timeout", "watch_poll", "lease_duration", "node_hold"]
)
@pytest.mark.parametrize("text", [str(LONGEST + 1), "10000000000", "99999999999.5"])
def test_a_number_of_seconds_past_ten_years_is_refused_as_its_text_is(
    monkeypatch: pytest.MonkeyPatch, name: str, text: str
) -> None:
    """Digits are held to the same ten years as ``315360001s``, in the same words, so that no
    wait or timeout overflows later."""
    message = refused(monkeypatch, name, text)
    assert name in message
    assert f"{text!r} is not a duration Tidal can hold (at most 3650 days)" in message
    assert "is not a duration Tidal can hold (at most 3650 days)" in refused(
        monkeypatch, name, f"{text}s"
    )


@pytest.mark.parametrize("value", [float(LONGEST + 1), 1e11, float("inf")])
def test_a_number_past_ten_years_given_in_code_is_refused(value: float) -> None:
    with pytest.raises(ValidationError) as caught:
        OperatorSettings(loop_interval=value)
    assert "at most 3650 days" in str(caught.value)


def test_ten_years_exactly_is_taken_and_can_be_waited_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """The longest taken is a wait the loop can make and a timeout a read can use: a read from
    a closed port is unreachable, not an OverflowError. One second more is refused."""
    monkeypatch.setenv("TIDAL_LOOP_INTERVAL", str(LONGEST))
    monkeypatch.setenv("TIDAL_PROMETHEUS_TIMEOUT", str(LONGEST))
    settings = OperatorSettings()
    assert settings.loop_interval == settings.prometheus_timeout == LONGEST
    assert settings.loop_interval <= threading.TIMEOUT_MAX
    url = f"http://127.0.0.1:{closed_port()}"
    with (
        pytest.raises(PrometheusUnreachable),
        PrometheusLoadSource(url, timeout=settings.prometheus_timeout, retries=0) as source,
    ):
        source.read_history("up", start=0.0, end=60.0, step=60.0)
    assert "at most 3650 days" in refused(monkeypatch, "loop_interval", str(LONGEST + 1))


def test_tidal_run_refuses_a_loop_interval_past_ten_years_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TIDAL_LOOP_INTERVAL", "10000000000")
    assert cli.main(["run", "--no-leader-election", "--metrics-port", "0"]) == 2
    assert one_line(capsys.readouterr().err) == (
        "tidal run: TIDAL_LOOP_INTERVAL: '10000000000' is not a duration Tidal can hold "
        "(at most 3650 days)"
    )


# --- the identity --------------------------------------------------------------------------------


@pytest.mark.parametrize("identity", ["", "   ", "\t"], ids=["empty", "spaces", "tab"])
def test_a_blank_identity_is_refused(monkeypatch: pytest.MonkeyPatch, identity: str) -> None:
    """A lease held by a blank identity reads as held by nobody: two replicas would lead."""
    message = refused(monkeypatch, "identity", identity)
    assert "identity" in message and f"{identity!r} is blank" in message


@pytest.mark.parametrize(
    ("environment", "argv", "where"),
    [({"TIDAL_IDENTITY": ""}, [], "TIDAL_IDENTITY"), ({}, ["--identity", " "], "--identity")],
    ids=["variable", "flag"],
)
def test_tidal_run_refuses_a_blank_identity_naming_it_as_given(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    environment: dict[str, str],
    argv: list[str],
    where: str,
) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert cli.main(["run", "--metrics-port", "0", *argv]) == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith(f"tidal run: {where}: ") and "is blank" in line, line


def test_an_identity_of_its_own_is_kept() -> None:
    assert OperatorSettings(identity="tidal-0").identity == "tidal-0"


# --- how a setting is named once read ------------------------------------------------------------


@pytest.mark.parametrize(
    ("passed", "variable", "expected"),
    [
        (True, False, "--metrics-port"),
        (False, True, "TIDAL_METRICS_PORT"),
        (True, True, "--metrics-port"),
        (False, False, "--metrics-port"),
    ],
    ids=["flag", "variable", "flag-over-variable", "default"],
)
def test_a_setting_is_named_as_it_was_given(
    monkeypatch: pytest.MonkeyPatch, passed: bool, variable: bool, expected: str
) -> None:
    """Its flag when passed in (``tidal run``'s flags are), its variable when the environment
    gave it, and its flag when left at its default, as ``tidal run`` names what it refuses."""
    if variable:
        monkeypatch.setenv("TIDAL_METRICS_PORT", "9000")
    settings = OperatorSettings(**({"metrics_port": 9100} if passed else {}))
    assert settings.named("metrics_port") == expected
    assert settings.named("metrics_address") == "--metrics-address"


def test_a_variable_set_in_lower_case_is_named_by_its_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """pydantic-settings reads ``tidal_metrics_port`` as ``TIDAL_METRICS_PORT``: it is the
    variable that gave the value, not the flag nobody typed."""
    monkeypatch.setenv("tidal_metrics_port", "9000")
    settings = OperatorSettings()
    assert settings.metrics_port == 9000
    assert settings.named("metrics_port") == "TIDAL_METRICS_PORT"


def test_a_rule_across_settings_names_the_flag_given_over_its_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Both the variable and the flag set the renewal: the flag won, and is named."""
    monkeypatch.setenv("TIDAL_LEASE_RENEW", "2")
    assert cli.main(["run", "--metrics-port", "0", "--lease-renew", "20"]) == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith("tidal run: --lease-renew (20s) must be shorter than half"), line


# --- a password in the URL ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://reader:s3cret@prometheus:9090", "http://reader:***@prometheus:9090"),
        ("https://reader:a:b@prometheus/prom", "https://reader:***@prometheus/prom"),
        ("reader:s3cret@prometheus:9090", "reader:***@prometheus:9090"),
        ("http://reader@prometheus:9090", "http://reader@prometheus:9090"),
        ("http://admin:hunter2@xyz@127.0.0.1:9", "http://admin:***@127.0.0.1:9"),
        ("http://admin:s3cr#et@127.0.0.1:9", "http://admin:***@127.0.0.1:9"),
        ("http://admin:hun/ter2@127.0.0.1:9", "http://admin:***@127.0.0.1:9"),
        ("http://admin:a?b@127.0.0.1:9", "http://admin:***@127.0.0.1:9"),
        ("http://prometheus/at@sign", "http://prometheus/at@sign"),
        ("http://prometheus:9090/at@sign", "http://prometheus:***@sign"),
        ("http://prometheus:9090", "http://prometheus:9090"),
    ],
    ids=[
        "password",
        "colon-in-password",
        "no-scheme",
        "user-alone",
        "at-in-password",
        "hash-in-password",
        "slash-in-password",
        "question-in-password",
        "at-in-path",
        "at-in-path-after-a-port-hidden-too",
        "plain",
    ],
)
def test_a_urls_password_is_shown_as_stars(url: str, shown: str) -> None:
    assert shown_url(url) == shown


def test_a_password_in_a_refused_url_is_not_printed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The one line ``tidal run`` prints for a URL without a scheme names the variable and
    shows the URL, its password as ***: the line lands in a pod's log."""
    monkeypatch.setenv("TIDAL_PROMETHEUS_URL", "reader:s3cret@prometheus:9090")
    assert cli.main(["run", "--metrics-port", "0"]) == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith("tidal run: TIDAL_PROMETHEUS_URL: 'reader:***@prometheus:9090' "), line
    assert "s3cret" not in line


#: Each part of these passwords is distinctive: no piece of one may be printed.
PASSWORDS = ["hunter2#xyzzy", "hunter2/xyzzy", "hunter2@xyzzy", "hunter2?xyzzy", "hunter2:xyzzy"]


@pytest.mark.parametrize("password", PASSWORDS)
def test_a_password_of_any_characters_in_a_refused_url_is_not_printed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], password: str
) -> None:
    """A password with ``#``, ``/``, ``@``, ``?`` or ``:`` in it is still the password: the URL
    is refused or read, and no piece of the password is in the line either way (the URL
    parser's own reason quoted the part before the ``/``, as a port it could not read)."""
    pieces = ("hunter2", "xyzzy")
    monkeypatch.setenv("TIDAL_PROMETHEUS_URL", f"admin:{password}@127.0.0.1:9")
    assert cli.main(["run", "--metrics-port", "0"]) == 2
    line = one_line(capsys.readouterr().err)
    assert "admin:***@127.0.0.1:9" in line, line
    assert not any(piece in line for piece in pieces), line
    for url in (
        f"http://admin:{password}@127.0.0.1:{closed_port()}",
        f"http://admin:{password}@127.0.0.1:99999",
    ):
        assert cli.main(["forecast", "--prometheus-url", url, "--query", "up"]) == 2
        err = capsys.readouterr().err
        assert "admin:***@127.0.0.1" in err, err
        assert not any(piece in err for piece in pieces), err


def test_a_password_in_the_url_is_not_in_a_read_error() -> None:
    """Read errors reach an object's status, its Events and the logs: the URL is shown with its
    password as ***, though the client sends it (basic auth)."""
    url = f"http://reader:s3cret@127.0.0.1:{closed_port()}"
    with (
        pytest.raises(PrometheusUnreachable) as caught,
        PrometheusLoadSource(url, timeout=2.0, retries=0) as source,
    ):
        source.read_history("up", start=0.0, end=60.0, step=60.0)
    assert "reader:***@127.0.0.1" in str(caught.value)
    assert "s3cret" not in str(caught.value)


def test_a_password_in_the_url_is_not_in_tidal_forecasts_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"http://reader:s3cret@127.0.0.1:{closed_port()}"
    assert cli.main(["forecast", "--prometheus-url", url, "--query", "up"]) == 2
    err = capsys.readouterr().err
    assert "reader:***@127.0.0.1" in err and "s3cret" not in err, err


# --- TLS files ---------------------------------------------------------------------------------


def test_tls_files_are_refused_by_their_variable_when_they_cannot_be_read(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A CA file or client certificate that is no file is one line naming its variable, before
    any read; a key without its certificate is named too."""
    monkeypatch.setenv("TIDAL_PROMETHEUS_CA_FILE", str(tmp_path / "missing.pem"))
    assert cli.main(["run", "--metrics-port", "0"]) == 2
    line = one_line(capsys.readouterr().err)
    assert "TIDAL_PROMETHEUS_CA_FILE" in line and "missing.pem' is not a file" in line, line

    monkeypatch.delenv("TIDAL_PROMETHEUS_CA_FILE")
    key = tmp_path / "key.pem"
    key.write_text("not checked here\n")
    monkeypatch.setenv("TIDAL_PROMETHEUS_CLIENT_KEY", str(key))
    with pytest.raises(ValidationError, match="TIDAL_PROMETHEUS_CLIENT_KEY is set without"):
        OperatorSettings()
    monkeypatch.setenv("TIDAL_PROMETHEUS_CLIENT_CERT", str(key))
    settings = OperatorSettings()
    assert (settings.prometheus_client_cert, settings.prometheus_client_key) == (str(key),) * 2


def test_a_password_in_the_url_beside_a_token_is_refused_naming_both(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The HTTP client sends a URL's password in place of the token's header: both given is
    refused in one line naming both, not a token silently never sent."""
    monkeypatch.setenv("TIDAL_PROMETHEUS_URL", "http://reader:s3cret@127.0.0.1:9090")
    monkeypatch.setenv("TIDAL_PROMETHEUS_TOKEN", "t0k")
    assert cli.main(["run", "--metrics-port", "0"]) == 2
    line = one_line(capsys.readouterr().err)
    assert "TIDAL_PROMETHEUS_URL holds a user and password" in line, line
    assert "TIDAL_PROMETHEUS_TOKEN is set too" in line and "s3cret" not in line
    monkeypatch.delenv("TIDAL_PROMETHEUS_TOKEN")
    assert OperatorSettings().prometheus_url == "http://reader:s3cret@127.0.0.1:9090"
