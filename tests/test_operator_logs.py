"""The operator's log set-up: a traceback in a log line names the frames, never their local
variables, which hold URLs with their passwords, tokens and headers."""

from __future__ import annotations

import logging
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
