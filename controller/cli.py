"""``tidal``: the one entry point (run, demo, backtest, forecast, trace, crd)."""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from rich.console import Console

    from forecasts.series import LoadSeries

__all__ = ["Terminated", "main", "rich_console", "timestamp_flag"]


def rich_console(**options: Any) -> Console:
    """A rich console (``Console(**options)``) whose broken pipe :func:`main` handles.

    Rich's own handling ends the program with exit code 1, so a report piped to ``head``
    would look like a failure.
    """
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            self.quiet = True  # nothing more is written to a reader that has gone
            raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))

    return _Console(**options)


def timestamp_flag(flag: str, text: str, series: LoadSeries | None = None) -> float:
    """``text``, given to ``flag``, as epoch seconds (on ``series``' timeline, given one: see
    :func:`~forecasts.series.trace_time`); a ValueError naming the flag and what is wrong: not
    ISO-8601, or outside the years a UTC timestamp can be written in."""
    from forecasts.series import TimestampOutOfRange, parse_timestamp, trace_time

    try:
        return parse_timestamp(text) if series is None else trace_time(text, series)
    except TimestampOutOfRange as exc:
        raise ValueError(f"{flag} {exc}") from None
    except ValueError:
        raise ValueError(f"{flag} {text!r} is not an ISO-8601 timestamp") from None


def _reader_gone() -> int:
    """Exit code 0, quietly, when the reader of the output has gone (``tidal ... | head -1``).

    As ``head`` asks, the rest of the output is not written: the command did what it was
    asked up to where the reader stopped, so it is not a failure (Python ignores SIGPIPE,
    so there is no 141 to keep), and ``set -o pipefail`` scripts are not failed by it.
    Standard output goes to /dev/null so that Python's flush at exit fails no second time
    with "Exception ignored ... BrokenPipeError" and exit code 120.
    """
    _to_devnull(sys.stdout)  # not a file (a test's capture): nothing is flushed at exit
    return 0


def _to_devnull(stream: Any) -> bool:
    """Point the file under ``stream`` at /dev/null; False when it is no file."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return False
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)
    return True


class _ErrorsToNoReader:
    """Standard error that, once its reader has gone (``tidal backtest 2>&1 >report.json |
    head -1``), goes to /dev/null instead of raising BrokenPipeError.

    What goes there (progress, warnings, a summary) is not the output: the command still does
    its work and writes its report to standard output. :func:`main` ends quietly on a broken
    pipe only when standard output's reader has gone.
    """

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        #: Set once the reader has gone from a stream that is no file (a test's capture).
        self._nowhere = False

    def write(self, text: str) -> int:
        if self._nowhere:
            return len(text)
        try:
            written = self._stream.write(text)
        except BrokenPipeError:
            self._gone()
            return len(text)
        return len(text) if written is None else int(written)

    def flush(self) -> None:
        if self._nowhere:
            return
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._gone()

    def _gone(self) -> None:
        if not _to_devnull(self._stream):
            self._nowhere = True
            return
        with suppress(OSError):
            self._stream.flush()  # what was buffered, now to /dev/null

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread as Ctrl-C's KeyboardInterrupt is, so that it takes
    the same way out: the worker processes and their Manager are ended, not left behind."""


#: Exit code for SIGTERM: 128 + 15, what a shell, ``kubectl`` and CI runners read as "ended by
#: SIGTERM", and what they read before tidal caught it (when it died of the signal itself).
EXIT_TERMINATED = 128 + signal.SIGTERM
#: The commands that run worker processes, or minutes of work, in the foreground: SIGTERM (from
#: ``timeout``, a CI cancel, a Kubernetes Job's end) ends them as Ctrl-C does. ``run`` has its
#: own (a clean stop, exit code 0).
_TERMINABLE = frozenset({"backtest", "demo", "forecast", "trace"})


@contextmanager
def _sigterm_as_interrupt(command: str) -> Iterator[None]:
    """While the block runs, SIGTERM raises :class:`Terminated` in this process, and SIGINT its
    KeyboardInterrupt, both held while worker processes start
    (:func:`forecasts.interrupts.held_interrupts`) so that none is left half started.

    SIGTERM once: a second one ends the process at once, as it did before; a second SIGINT is
    raised at once, held or not (a start that hangs still ends). SIGINT only when
    Python's own handler has it (not where it is ignored, as in a background job). A process
    forked from this one (a worker) gets SIGTERM's default, so that ``terminate()`` ends it,
    and SIGINT's KeyboardInterrupt at once, as before."""
    if command not in _TERMINABLE or threading.current_thread() is not threading.main_thread():
        yield
        return
    from forecasts.interrupts import interrupt

    pid = os.getpid()

    def terminated(signum: int, _frame: FrameType | None) -> None:
        signal.signal(signum, signal.SIG_DFL)
        if os.getpid() != pid:  # a forked child: the signal's default, ending it
            os.kill(os.getpid(), signum)
            return
        interrupt(Terminated())

    def interrupted(_signum: int, _frame: FrameType | None) -> None:
        if os.getpid() != pid:
            raise KeyboardInterrupt
        interrupt(KeyboardInterrupt())

    previous = signal.signal(signal.SIGTERM, terminated)
    previous_int = signal.getsignal(signal.SIGINT)
    if previous_int is signal.default_int_handler:
        signal.signal(signal.SIGINT, interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        if previous_int is signal.default_int_handler:
            signal.signal(signal.SIGINT, previous_int)


class _Parser(argparse.ArgumentParser):
    """A bad flag is one line, as every other error of tidal's is: argparse's usage, a dozen
    lines above it, is left to --help. Exit code 2, as argparse's."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _build_parser() -> argparse.ArgumentParser:
    from controller import backtest_command, demo, forecast_command, trace_command
    from controller.operator import command as operator_command

    parser = _Parser(
        prog="tidal",
        description="Predictive, capacity-tier aware autoscaling of chat gateways.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run the operator (in a pod or against the kubeconfig)")
    operator_command.add_arguments(run)
    run.set_defaults(handler=operator_command.run)

    demo_parser = commands.add_parser(
        "demo", help="replay a bundled real trace for three regions and compare with HPA"
    )
    demo.add_arguments(demo_parser)
    demo_parser.set_defaults(handler=demo.run)

    bt = commands.add_parser(
        "backtest", help="replay traces through the planner, HPA and an oracle"
    )
    backtest_command.add_arguments(bt)
    bt.set_defaults(handler=backtest_command.run)

    fc = commands.add_parser(
        "forecast", help="forecast accuracy on traces, or one forecast (--show, --prometheus-url)"
    )
    forecast_command.add_arguments(fc)
    fc.set_defaults(handler=forecast_command.run)

    tr = commands.add_parser(
        "trace", help="write a region's load from Prometheus as a trace for backtest and forecast"
    )
    trace_command.add_arguments(tr)
    tr.set_defaults(handler=trace_command.run)

    crd = commands.add_parser("crd", help="print the CRD generated from the pydantic models")
    crd.set_defaults(handler=_print_crd)
    return parser


def _print_crd(_args: argparse.Namespace) -> int:
    from controller.crd import render_crd

    sys.stdout.write(render_crd())
    return 0


def _one_line(command: str) -> Callable[..., str]:
    """Warnings as one line naming the command, as its errors are (``tidal backtest: warning:
    ...``), not Python's two with a line of source."""

    def format_warning(message: Warning | str, *_: object, **__: object) -> str:
        return f"tidal {command}: warning: {message}\n"

    return format_warning


def main(argv: Sequence[str] | None = None) -> int:
    try:
        # The commands' modules (statsmodels, the kubernetes client) take seconds to import:
        # a Ctrl-C in them ends tidal as one later does, not with an import's traceback.
        parser = _build_parser()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    words = list(sys.argv[1:] if argv is None else argv)
    args, unknown = parser.parse_known_args(words)
    if unknown:
        # Named by what they were given to: tidal itself before the command's name, the
        # command after it.
        at = words.index(args.command)
        given = words[:at] if any(word in unknown for word in words[:at]) else None
        prog = parser.prog if given else f"{parser.prog} {args.command}"
        _Parser(prog=prog).error(f"unrecognized arguments: {' '.join(given or unknown)}")
    formatted = warnings.formatwarning
    warnings.formatwarning = _one_line(args.command)
    stderr = sys.stderr
    sys.stderr = _ErrorsToNoReader(stderr)
    try:
        with _sigterm_as_interrupt(args.command):
            code = int(args.handler(args))
            sys.stdout.flush()  # output still buffered meets a reader gone here, not at exit
        return code
    except Terminated:
        print("terminated", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return _reader_gone()
    except OSError as exc:
        # What the machine refuses (a full disk under the output, a device that fails): one
        # line, as tidal's other errors, not a traceback. What was written is kept; only when
        # the output itself refuses it does it go to /dev/null, so that the flush at exit
        # does not fail a second time.
        print(f"tidal {args.command}: {exc}", file=sys.stderr)
        try:
            sys.stdout.flush()
        except OSError:
            _reader_gone()
        return 1
    finally:
        warnings.formatwarning = formatted
        sys.stderr = stderr


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
