"""The operator's log set-up: a traceback in a log line names the frames, never their local
variables, which hold URLs with their passwords, tokens and headers."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from typing import Literal

import pytest
import structlog

from controller.operator.logs import configure_logging


@pytest.fixture(autouse=True)
def logging_restored() -> Iterator[None]:
    """structlog's configuration and the root logger's handlers as they were: the ones made
    here write to this test's captured standard error, closed once it ends."""
    config = structlog.get_config()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.configure(**config)
    for handler in root.handlers:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


#: The password, never written whole in this file: a console traceback shows source lines.
SECRET = "t0p-" + "s3cret"


def _fails_with_a_secret_in_scope() -> None:
    url = f"http://reader:{SECRET}@prometheus:9090"
    raise RuntimeError(f"unreachable: {len(url)} characters")


@pytest.mark.parametrize("log_format", ["json", "console"])
def test_a_logged_traceback_holds_no_local_variable(
    capsys: pytest.CaptureFixture[str], log_format: Literal["json", "console"]
) -> None:
    configure_logging(log_format)
    try:
        _fails_with_a_secret_in_scope()
    except RuntimeError:
        structlog.get_logger().exception("read_failed")
    err = capsys.readouterr().err
    assert "read_failed" in err and "_fails_with_a_secret_in_scope" in err, err
    assert "RuntimeError" in err and "unreachable: 40 characters" in err
    assert SECRET not in err, err


def test_a_library_s_warning_is_a_json_line_among_tidal_s() -> None:
    """urllib3 and the kubernetes client log through the standard library. In a pod their
    warnings (a request retried) were plain ``name: message`` text among the JSON lines, which
    a log collector parses as garbage; they are JSON lines too, naming the library's logger,
    and below a warning they are not written. A fresh process: pytest's own handlers sit on
    the root logger here."""
    script = (
        "import logging\n"
        "from controller.operator.logs import configure_logging\n"
        "configure_logging('json')\n"
        "logging.getLogger('urllib3.connectionpool').warning('Retrying (%s)', 'total=2')\n"
        "logging.getLogger('kubernetes').info('not written')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    assert [(e["event"], e["level"], e["logger"]) for e in lines] == [
        ("Retrying (total=2)", "warning", "urllib3.connectionpool")
    ]
