"""``tidal run`` at its edges: unusable settings or kubeconfig say so in one line on standard
error and exit 2; ``--once`` that cannot read the cluster exits non-zero."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import yaml
from kubernetes import config
from kubernetes.config import kube_config
from structlog.testing import capture_logs

from controller import cli
from controller.operator import command
from tests.support.kube_emulator import running_emulator


@pytest.fixture(autouse=True)
def no_cluster_around(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Not in a pod, no $KUBECONFIG, a home without ~/.kube, and logging left as the tests
    configure it."""
    for name in ("KUBERNETES_SERVICE_HOST", "KUBECONFIG"):
        monkeypatch.delenv(name, raising=False)
    for name in list(os.environ):
        if name.startswith("TIDAL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    # The client reads $KUBECONFIG once, at import: make its default the plain one.
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", "~/.kube/config")
    monkeypatch.setattr(config, "KUBE_CONFIG_DEFAULT_LOCATION", "~/.kube/config")
    monkeypatch.setattr(command, "configure_logging", lambda *_args, **_kwargs: None)


def kubeconfig(path: Path, server: str, *, context: str = "x") -> Path:
    body = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": context, "context": {"cluster": "c", "user": "u"}}],
        "current-context": context,
    }
    path.write_text(yaml.safe_dump(body), encoding="utf-8")
    return path


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def one_line(text: str) -> str:
    assert text.endswith("\n") and text.count("\n") == 1, text
    assert "Traceback" not in text
    return text.strip()


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(["run", "--metrics-port", "0", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_no_kubeconfig_outside_a_pod(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """No flag, no ~/.kube/config, not in a pod: one line naming the path and --kubeconfig."""
    code, out, err = run(["--once"], capsys)
    assert code == 2 and out == ""
    line = one_line(err)
    assert line.startswith("tidal run: no kubeconfig: ")
    assert str(tmp_path / "home" / ".kube" / "config") in line and "--kubeconfig" in line


def test_missing_kubeconfig_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """--kubeconfig naming no file: the flag and the path."""
    missing = tmp_path / "nowhere" / "config"
    code, out, err = run(["--once", "--kubeconfig", str(missing)], capsys)
    assert code == 2 and out == ""
    assert one_line(err) == f"tidal run: --kubeconfig {missing}: no such file"


def test_kubeconfig_that_is_not_yaml(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A file that does not parse: the flag, the path, and what the parser says, on one line."""
    broken = tmp_path / "config"
    broken.write_text("garbage: [\n", encoding="utf-8")
    code, out, err = run(["--once", "--kubeconfig", str(broken)], capsys)
    assert code == 2 and out == ""
    assert one_line(err).startswith(f"tidal run: --kubeconfig {broken}: not valid YAML: ")


def test_unknown_kube_context(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """--kube-context that the file lacks: the flag, the context and the ones there are."""
    path = kubeconfig(tmp_path / "config", f"http://127.0.0.1:{closed_port()}")
    code, out, err = run(["--once", "--kubeconfig", str(path), "--kube-context", "nope"], capsys)
    assert code == 2 and out == ""
    assert one_line(err) == (
        f"tidal run: --kube-context nope: no such context in --kubeconfig {path} (contexts: x)"
    )


def test_bad_flag_value_names_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    """--loop-interval abc: one line on standard error naming --loop-interval, nothing on
    standard output."""
    code, out, err = run(["--loop-interval", "abc"], capsys)
    assert code == 2 and out == ""
    line = one_line(err)
    assert line.startswith("tidal run: --loop-interval: 'abc' is not a duration"), line
    assert "loop_interval" not in line


def test_bad_environment_value_names_the_variable(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same value from the environment names the variable it came from."""
    monkeypatch.setenv("TIDAL_LOOP_INTERVAL", "abc")
    code, out, err = run([], capsys)
    assert code == 2 and out == ""
    assert one_line(err).startswith("tidal run: TIDAL_LOOP_INTERVAL: 'abc' is not a duration")


def test_a_rule_across_settings_names_each_as_it_was_given(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lease timing rule names the flag given, and the variable for the other."""
    monkeypatch.setenv("TIDAL_LEASE_DURATION", "15")
    code, out, err = run(["--lease-renew", "20"], capsys)
    assert code == 2 and out == ""
    assert one_line(err) == (
        "tidal run: --lease-renew (20s) must be shorter than half TIDAL_LEASE_DURATION (15s)"
    )


def test_a_rule_across_settings_names_a_lower_case_variable_as_given(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """pydantic-settings reads variables without regard to case: one set in lower case is the
    one that counted, and is named, not the flag nobody typed."""
    monkeypatch.delenv("TIDAL_LEASE_DURATION", raising=False)
    monkeypatch.setenv("tidal_lease_duration", "15")
    code, out, err = run(["--lease-renew", "20"], capsys)
    assert code == 2 and out == ""
    assert one_line(err) == (
        "tidal run: --lease-renew (20s) must be shorter than half TIDAL_LEASE_DURATION (15s)"
    )


def test_a_renewal_too_slow_to_lead_throughout_is_refused(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """client-go's renew deadline (10 s of a 15 s lease) is no renewal period here: the leader
    would count as leading for 5 s of every 10, with nobody able to take over."""
    monkeypatch.delenv("TIDAL_LEASE_DURATION", raising=False)
    code, out, err = run(["--lease-renew", "10"], capsys)
    assert code == 2 and out == ""
    assert one_line(err) == (
        "tidal run: --lease-renew (10s) must be shorter than half --lease-duration (15s)"
    )


def test_a_rule_across_settings_names_a_default_by_its_flag(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A setting left at its default is named by its flag, not by a variable nobody set."""
    monkeypatch.delenv("TIDAL_LEASE_DURATION", raising=False)
    code, _out, err = run(["--lease-renew", "20"], capsys)
    assert code == 2
    assert one_line(err) == (
        "tidal run: --lease-renew (20s) must be shorter than half --lease-duration (15s)"
    )


def test_once_without_an_api_server_fails(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """--once against an API server that does not answer reconciled nothing: exit 1, and the
    failure is in the log."""
    path = kubeconfig(tmp_path / "config", f"http://127.0.0.1:{closed_port()}")
    with capture_logs() as logs:
        code, _out, _err = run(["--once", "--kubeconfig", str(path)], capsys)
    assert code == 1
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["cluster_read_failed"]


def test_once_on_an_empty_cluster_succeeds(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """--once against a cluster that answers, with nothing to reconcile: exit 0."""
    with running_emulator() as kube:
        path = kube.write_kubeconfig(tmp_path / "config")
        code, _out, err = run(["--once", "--kubeconfig", str(path)], capsys)
    assert code == 0, err


@pytest.mark.parametrize(("election", "leading"), [(False, b"1.0"), (True, b"0.0")])
def test_without_an_election_the_instance_says_it_leads(
    tmp_path: Path, election: bool, leading: bytes
) -> None:
    """With leader election off (``--once``, a single replica) the instance acts as leader from
    the start, and ``tidal_leader`` says so; with it on, 0 until the lease is won."""
    path = kubeconfig(tmp_path / "config", f"http://127.0.0.1:{closed_port()}")
    settings = command.OperatorSettings(
        kubeconfig=str(path), leader_election=election, metrics_port=0
    )
    operator = command.Operator(settings)
    try:
        assert operator.is_leader() is not election
        assert b"\ntidal_leader " + leading + b"\n" in operator.metrics.exposition()
    finally:
        operator.models.shutdown()
