"""``tidal`` itself, around its commands: the CRD it prints, an interrupt, a reader gone, and the
warnings' format handed back."""

from __future__ import annotations

import argparse
import errno
import io
import os
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller import cli
from controller.crd import render_crd

FORMATTED: list[str] = []


def _open_descriptors() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.fixture
def crd_command(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[BaseException | None]]:
    """``tidal crd`` made to raise what the test puts in the list (nothing when it is None);
    otherwise it formats a warning as the warnings module would, into :data:`FORMATTED`."""
    raised: list[BaseException | None] = [None]

    def command(_args: argparse.Namespace) -> int:
        if raised[0] is not None:
            raise raised[0]
        FORMATTED.append(warnings.formatwarning(UserWarning("look"), UserWarning, "f.py", 1))
        return 0

    monkeypatch.setattr(cli, "_print_crd", command)
    yield raised


def test_tidal_crd_prints_the_generated_crd(capsys: pytest.CaptureFixture[str]) -> None:
    """Exactly what :func:`render_crd` gives, and exit code 0."""
    assert cli.main(["crd"]) == 0
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == (render_crd(), "")


def test_an_interrupt_is_one_line_and_exit_code_130(
    crd_command: list[BaseException | None], capsys: pytest.CaptureFixture[str]
) -> None:
    """Ctrl-C ends the command as a shell expects (128 + SIGINT), saying so, without a
    traceback."""
    crd_command[0] = KeyboardInterrupt()
    assert cli.main(["crd"]) == 130
    assert capsys.readouterr().err == "interrupted\n"


def test_an_interrupt_while_the_commands_import_is_one_line_too(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The commands' modules take seconds to import, before any command runs: a Ctrl-C there
    ends tidal the same way, not with the import's traceback."""

    def importing() -> argparse.ArgumentParser:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_build_parser", importing)
    assert cli.main(["backtest", "trace.csv"]) == 130
    assert capsys.readouterr().err == "interrupted\n"


class _NotCaught(Exception):
    """SIGTERM reached the test's own handler: the command did not take it."""


def _raise_not_caught(_signum: int, _frame: object) -> None:
    raise _NotCaught


@pytest.fixture
def sigterm_guard() -> Iterator[None]:
    """SIGTERM raises :class:`_NotCaught` where the command under test leaves it alone (it
    would otherwise end the test run); the handler before is put back after."""
    before = signal.signal(signal.SIGTERM, _raise_not_caught)
    yield
    signal.signal(signal.SIGTERM, before)


@pytest.mark.parametrize("command", ["backtest", "forecast", "demo"])
def test_sigterm_is_one_line_and_exit_code_143_as_an_interrupt_is(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    sigterm_guard: None,
    command: str,
) -> None:
    """SIGTERM (timeout, a CI cancel, a Kubernetes Job) is raised as a KeyboardInterrupt, so it
    leaves as Ctrl-C does, workers ended; the exit code is 143, 128 + SIGTERM, as a shell
    reports a process SIGTERM ended. The handler is the caller's again after."""
    from controller import backtest_command, demo, forecast_command

    seen: list[BaseException] = []

    def terminated(_args: argparse.Namespace) -> int:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(100):  # the handler runs between two bytecodes
                time.sleep(0.01)
        except BaseException as exc:
            seen.append(exc)
            raise
        return 0

    module = {"backtest": backtest_command, "forecast": forecast_command, "demo": demo}[command]
    monkeypatch.setattr(module, "run", terminated)
    argv = [command] if command == "demo" else [command, "t.csv"]
    assert cli.main(argv) == 143
    assert capsys.readouterr().err == "terminated\n"
    assert len(seen) == 1 and isinstance(seen[0], KeyboardInterrupt)
    assert signal.getsignal(signal.SIGTERM) is _raise_not_caught


@pytest.mark.parametrize(
    ("signum", "code", "line"),
    [(signal.SIGTERM, 143, "terminated\n"), (signal.SIGINT, 130, "interrupted\n")],
    ids=["sigterm", "sigint"],
)
def test_a_signal_while_workers_start_is_raised_once_they_have(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    sigterm_guard: None,
    signum: int,
    code: int,
    line: str,
) -> None:
    """A signal that lands while a Manager or a pool starts (forecasts.interrupts) is raised
    where that ends, so that what was started is ended with the rest: the Manager's process
    printed a traceback when its parent went mid-start."""
    from controller import backtest_command
    from forecasts.interrupts import held_interrupts

    reached: list[str] = []

    def starting(_args: argparse.Namespace) -> int:
        with held_interrupts():
            os.kill(os.getpid(), signum)
            for _ in range(30):  # the handler runs between two bytecodes, here held
                time.sleep(0.01)
            reached.append("started")
        reached.append("ran")
        return 0

    monkeypatch.setattr(backtest_command, "run", starting)
    # Ctrl-C as a foreground shell has it, even where the tests run with it ignored.
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        assert cli.main(["backtest", "t.csv"]) == code
    finally:
        assert signal.signal(signal.SIGINT, before) is signal.default_int_handler
    assert capsys.readouterr().err == line
    assert reached == ["started"]


def test_a_forked_worker_dies_of_sigterm_as_it_would_have(
    monkeypatch: pytest.MonkeyPatch, sigterm_guard: None
) -> None:
    """A process forked while the command runs (a worker, the Manager) keeps the handler:
    there SIGTERM is its default again, so that ``terminate()`` ends it and nothing in it is
    raised."""
    from controller import forecast_command

    statuses: list[int] = []

    def forks(_args: argparse.Namespace) -> int:
        # Held until the child is inside its try: whatever SIGTERM does there, it goes no
        # further than the child's exit status.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        child = os.fork()
        if child == 0:  # pragma: no cover - the child's end is its exit status
            try:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
                time.sleep(30)
            finally:
                os._exit(3)  # reached only if SIGTERM raised in the child
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        os.kill(child, signal.SIGTERM)
        statuses.append(os.waitpid(child, 0)[1])
        return 0

    monkeypatch.setattr(forecast_command, "run", forks)
    assert cli.main(["forecast", "t.csv"]) == 0
    assert os.WIFSIGNALED(statuses[0]) and os.WTERMSIG(statuses[0]) == signal.SIGTERM


def test_the_crd_leaves_sigterm_as_it_was(
    monkeypatch: pytest.MonkeyPatch, sigterm_guard: None
) -> None:
    """Only the commands that run for long take SIGTERM as an interrupt (``run`` has its own
    clean stop); another is not touched."""
    handlers: list[object] = []

    def command(_args: argparse.Namespace) -> int:
        handlers.append(signal.getsignal(signal.SIGTERM))
        return 0

    monkeypatch.setattr(cli, "_print_crd", command)
    assert cli.main(["crd"]) == 0
    assert handlers == [_raise_not_caught]


def test_the_warnings_format_is_the_command_s_only_while_it_runs(
    crd_command: list[BaseException | None],
) -> None:
    """A warning is one line naming the command while it runs; after it, and after a command
    that failed, Python's own format is back for whoever called ``main``."""
    before = warnings.formatwarning
    FORMATTED.clear()
    assert cli.main(["crd"]) == 0
    assert FORMATTED == ["tidal crd: warning: look\n"]
    assert warnings.formatwarning is before
    crd_command[0] = RuntimeError("broke")
    with pytest.raises(RuntimeError, match="broke"):
        cli.main(["crd"])
    assert warnings.formatwarning is before


def test_output_the_machine_refuses_is_one_line_and_exit_code_1(
    crd_command: list[BaseException | None], capsys: pytest.CaptureFixture[str]
) -> None:
    """A full disk under the output (`tidal backtest --json > /dev/full`) is an error of one
    line naming the command, not a traceback."""
    crd_command[0] = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert cli.main(["crd"]) == 1
    assert capsys.readouterr().err == "tidal crd: [Errno 28] No space left on device\n"


def test_an_os_error_elsewhere_keeps_what_was_written(tmp_path: Path) -> None:
    """An OSError not from the output (a file refused) leaves what the command wrote before it
    in its output, flushed, and says what failed in one line."""
    script = (
        "import sys\n"
        "from controller import cli\n"
        "def handler(args):\n"
        "    sys.stdout.write('x' * 3000)\n"
        "    raise PermissionError(13, 'Permission denied', '/etc/shadow')\n"
        "cli._print_crd = handler\n"
        "sys.exit(cli.main(['crd']))\n"
    )
    out = tmp_path / "out"
    with out.open("w") as sink:
        done = subprocess.run(
            [sys.executable, "-c", script],
            stdout=sink,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            env={**os.environ, "PYTHONUNBUFFERED": ""},
        )
    assert done.returncode == 1
    assert done.stderr == "tidal crd: [Errno 13] Permission denied: '/etc/shadow'\n"
    assert out.read_text() == "x" * 3000


def test_a_full_device_as_standard_output_is_one_line(tmp_path: Path) -> None:
    """Through a real process and /dev/full: the report cannot be written, and says so."""
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this machine")
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [sys.executable, "-m", "controller", "crd"],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    assert (done.returncode, done.stderr) == (1, "tidal crd: [Errno 28] No space left on device\n")


def test_a_reader_gone_from_a_captured_output_is_exit_code_0(
    crd_command: list[BaseException | None], capsys: pytest.CaptureFixture[str]
) -> None:
    """Output that is no file (a test's capture) has nothing to flush at exit: still 0."""
    crd_command[0] = BrokenPipeError()
    assert cli.main(["crd"]) == 0
    assert capsys.readouterr().err == ""


def test_a_reader_gone_from_a_closed_output_is_exit_code_0(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A standard output already closed says so with a ValueError from ``fileno()``: nothing to
    flush there either, and no error."""
    closed = (tmp_path / "out").open("w")
    closed.close()
    monkeypatch.setattr("sys.stdout", closed)
    assert cli._reader_gone() == 0


def test_a_reader_gone_sends_the_output_to_dev_null_and_leaks_no_descriptor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The output's descriptor is pointed at /dev/null, so the flush at exit writes nowhere
    rather than failing again; the descriptor opened for it is closed."""
    read, write = os.pipe()
    os.close(read)
    out = io.TextIOWrapper(io.FileIO(write, "w", closefd=True))
    monkeypatch.setattr("sys.stdout", out)
    before = _open_descriptors()
    try:
        assert cli._reader_gone() == 0
        assert _open_descriptors() == before
        assert os.readlink(f"/proc/self/fd/{write}") == os.devnull
        out.write("x" * 100_000)
        out.flush()  # no BrokenPipeError: the reader's place is /dev/null's now
    finally:
        out.close()


def test_rich_output_to_a_reader_gone_stops_writing_and_raises() -> None:
    """Rich's own broken-pipe handling exits with 1; tidal's console goes quiet and raises
    BrokenPipeError, which ``main`` turns into exit code 0."""
    console = cli.rich_console(file=io.StringIO())
    with pytest.raises(BrokenPipeError):
        console.on_broken_pipe()
    assert console.quiet is True


def test_standard_error_that_counts_nothing_written_still_takes_the_text() -> None:
    """A stream whose ``write`` returns None (some wrappers do) behind tidal's standard error:
    the text is taken, not a TypeError."""
    taken: list[str] = []

    class Quiet:
        def write(self, text: str) -> None:
            taken.append(text)

        def flush(self) -> None:
            pass

    stream = cli._ErrorsToNoReader(Quiet())
    assert stream.write("progress\n") == len("progress\n")
    assert taken == ["progress\n"]
