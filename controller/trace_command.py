"""``tidal trace``: a region's load read from Prometheus and written as a trace file.

``tidal trace --prometheus-url URL --query PROMQL [--step 1m] [--history 28d] [--end TIME]
[--output FILE.csv]`` reads the load as the operator reads it
(:class:`~controller.operator.prometheus_source.PrometheusLoadSource`: the epoch-aligned grid,
long ranges split into queries Prometheus accepts, one series or an error naming the query)
and writes the ``timestamp,load`` CSV that ``tidal backtest`` and ``tidal forecast`` read. So a
team replays its own regions' traffic, not only the shared traces::

    tidal trace --prometheus-url http://prometheus:9090 \\
        --query 'sum(gateway_active_connections{region="eu-west"})' --output eu-west.csv
    tidal backtest eu-west.csv --per-replica 5000 --physical-capacity 40

What the file holds:

- one row per grid point from the first sample Prometheus has to the last: timestamps in UTC
  (``Z``) to the second, loads as Python writes a float, to the last digit, so that the trace
  reader reads back the samples written, on the same grid. ``--step`` is therefore one the
  reader keeps: one that divides a minute, or 5 minutes or more (a 45s or 2m step would be
  read back interpolated onto 30s or 1m);
- a grid point Prometheus has no sample for inside that span is a row with an empty load. The
  trace reader interpolates over one such row and keeps two or more as a gap. Prometheus itself
  carries a sample forward over its lookback (5 minutes by default) unless a staleness marker
  ends it, so a scrape that failed once usually leaves no empty row, and an outage shows a
  little shorter than it was;
- the load as Prometheus gives it: a negative value (a query that subtracts) is written as it
  is, and the trace reader reads it as missing with a warning naming the line. A non-finite
  value (``NaN``, ``+Inf``) is an empty load, as the operator reads it.

``--output`` is written to a temporary file beside it and renamed over it only once every
query has answered and every row is written: a failed or interrupted read or write leaves an
existing file as it was. The file keeps an existing file's permission bits and, written by
root, its owner; a new one gets what the umask gives; a symlink is written through to its
file. A path that names standard output or error (``/dev/stdout``, or the file output was
redirected to) is written as it is open, appending where it appends; a FIFO or a terminal is
written as it is. What cannot be written (a directory, a directory that does not exist or that
cannot be written, another user's file in a sticky directory, a symlink loop) is refused before
the read, and so is a file its permissions keep from writing. Without ``--output`` the CSV goes
to standard output.

Prometheus is reached as ``tidal run`` reaches it, with the ``TIDAL_PROMETHEUS_*`` variables'
token, basic auth, headers, TLS and timeout
(:func:`controller.operator.sources.live_load_source`); where ``TIDAL_PROMETHEUS_URL`` names
another Prometheus, those credentials are not sent to ``--prometheus-url``'s.

A summary goes to standard error: how many samples, from when to when, and how many are gaps;
and a warning when Prometheus holds less than was asked for (its retention is shorter than
``--history``, or the series began later), or when its last sample is well before ``--end``.
On a terminal, a read of many queries shows its progress.

Bad input (a flag, a URL that is not http or https, a step the reader would not keep) and a
failed read (Prometheus unreachable, a query it rejects, more than one series, no data or a
single sample) are one line on standard error naming the flag, or the URL and query, and exit
code 2.
"""

from __future__ import annotations

import argparse
import math
import os
import stat
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, TextIO

import numpy as np

from controller.cli import rich_console, timestamp_flag
from controller.durations import parse_duration
from controller.files import creation_problem, written_whole
from forecasts.series import LoadSeries, format_timestamp, grid_step

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

__all__ = ["DEFAULT_HISTORY", "DEFAULT_STEP", "MOST_SAMPLES", "add_arguments", "run", "write_trace"]

EXIT_USAGE = 2
DEFAULT_STEP = "1m"
#: Four weeks: a backtest's default scores what comes after the first quarter of a trace (or
#: two weeks, whichever is sooner), so four weeks leave three scored after one of history.
DEFAULT_HISTORY = "28d"
#: The most grid points one trace holds: nearly two years at one minute, 91 queries of
#: Prometheus's 11,000 points. A ``--step 1s --history 365d`` is a typo, not a trace.
MOST_SAMPLES = 1_000_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--prometheus-url", metavar="URL", help="Prometheus to read the load from (required)"
    )
    parser.add_argument(
        "--query", metavar="PROMQL", help="PromQL returning one series: the load (required)"
    )
    parser.add_argument(
        "--step", default=DEFAULT_STEP, help=f"time between samples (default {DEFAULT_STEP})"
    )
    parser.add_argument(
        "--history",
        default=DEFAULT_HISTORY,
        help=f"how far back from --end to read (default {DEFAULT_HISTORY})",
    )
    parser.add_argument(
        "--end",
        metavar="TIMESTAMP",
        help="read up to this time, ISO-8601, UTC unless it gives an offset (default: now)",
    )
    parser.add_argument(
        "--output",
        "-o",
        metavar="FILE.csv",
        help="write the trace here (default: standard output); an existing file is replaced "
        "only once the whole trace is read",
    )


def _fail(message: str) -> int:
    print(f"tidal trace: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _seconds(flag: str, text: str) -> float:
    """``text`` as a positive duration in seconds; a ValueError naming ``flag``."""
    try:
        seconds = parse_duration(text).total_seconds()
    except ValueError as exc:
        raise ValueError(f"{flag}: {exc}") from None
    if not seconds > 0:
        raise ValueError(f"{flag} must be positive, got {text}")
    return seconds


def _window(args: argparse.Namespace) -> tuple[float, float, float]:
    """``(start, end, step)`` the flags ask for; a ValueError naming the flag that is wrong."""
    step = _seconds("--step", args.step)
    if step != round(step):
        # The trace's timestamps are written to the second, as the shared traces' are.
        raise ValueError(f"--step must be a whole number of seconds, got {args.step}")
    if grid_step(step) != step:
        # The trace reader would put the file on a finer grid by interpolation: the samples
        # read back would not be the samples written.
        raise ValueError(
            f"--step {args.step} would be read back on a {grid_step(step):g}s grid, "
            "interpolated: give a step that divides a minute, or 5 minutes or more"
        )
    span = _seconds("--history", args.history)
    if span < step:
        raise ValueError(f"--history {args.history} must cover at least one --step ({args.step})")
    samples = math.floor(span / step) + 1
    if samples > MOST_SAMPLES:
        raise ValueError(
            f"--history {args.history} at --step {args.step} is {samples:,} samples, at most "
            f"{MOST_SAMPLES:,}: a longer --step or a shorter --history"
        )
    end = time.time() if args.end is None else timestamp_flag("--end", args.end)
    if end - span < 0:
        raise ValueError(
            f"--end {args.end or 'now'} less --history {args.history} is before 1970, "
            "before any Prometheus sample"
        )
    return end - span, end, step


def run(args: argparse.Namespace) -> int:
    from controller.operator.prometheus_source import MetricsUnavailable, plan_chunks, shown_url
    from controller.operator.sources import live_load_source

    if not args.prometheus_url or not args.query:
        missing = "--prometheus-url" if not args.prometheus_url else "--query"
        return _fail(f"{missing} is required (and not empty)")
    try:
        start, end, step = _window(args)
    except ValueError as exc:
        return _fail(str(exc))
    output = None if args.output is None else Path(args.output)
    if args.output is not None:
        problem = _output_problem(args.output)
        if problem is not None:
            return _fail(f"--output {args.output or repr(args.output)}: {problem}")
    url, query = args.prometheus_url, args.query
    named = shown_url(url)  # its password, if any, as ***
    chunks = sum(1 for _ in plan_chunks(start, end, step))
    err = rich_console(stderr=True, soft_wrap=True)
    try:
        reader = live_load_source(url)
    except ValueError as exc:
        return _fail(str(exc))
    try:
        with reader as source, _progress(err, chunks) as advance:
            series = source.read_history(query, start=start, end=end, step=step, on_chunk=advance)
    except MetricsUnavailable as exc:
        message = str(exc)
        return _fail(message if named.rstrip("/") in message else f"{named}: {message}")
    if len(series) < 2:
        return _fail(
            f"{named}, query {query!r}: one sample ({format_timestamp(series.start)}) between "
            f"{format_timestamp(start)} and {format_timestamp(end)}; a trace needs at least two "
            "(a longer --history or a shorter --step)"
        )
    if output is None:
        write_trace(series, sys.stdout)
        sys.stdout.flush()
    else:
        _write_output(series, output)
    _summarise(series, start=start, end=end, where=output)
    return 0


def write_trace(series: LoadSeries, out: IO[str]) -> int:
    """Write ``series`` as a ``timestamp,load`` CSV; returns the rows written.

    A missing sample (NaN) is a row with an empty load; every other load is written as Python
    writes the float, which reads back as the same number.
    """
    out.write("timestamp,load\n")
    times = series.times()
    for when, load in zip(times.tolist(), series.values.tolist(), strict=True):
        out.write(f"{format_timestamp(when)},{'' if math.isnan(load) else repr(load)}\n")
    return len(times)


def _output_problem(text: str) -> str | None:
    """Why the trace cannot be written to ``text``, or None; checked before any query, so that
    a read of minutes is not lost to a path that was wrong from the start."""
    if text == "":
        return "an empty path"
    if text.split(os.sep)[-1] in ("", ".", ".."):
        return "a directory, not a file"
    path = Path(text)
    try:
        if _open_stream(path) is not None:
            return None
        if path.is_dir():
            return "a directory, not a file"
        info = _stat_or_none(path)
        if info is not None and not stat.S_ISREG(info.st_mode):
            if stat.S_ISFIFO(info.st_mode) or stat.S_ISCHR(info.st_mode):
                return None  # written as it is (see _write_output)
            return "not a regular file, a FIFO or a terminal"
        target = Path(os.path.realpath(path))
        parent = target.parent
        if not parent.is_dir():
            return f"no such directory: {parent}"
        refused = creation_problem(parent)
        if refused is not None:
            return (
                f"cannot write to the directory {parent} ({refused}; the trace is written "
                "beside the file, then renamed over it)"
            )
        if info is not None and not os.access(target, os.W_OK):
            return f"{target} cannot be written (its permissions), so it is not replaced"
        if info is not None:
            held = parent.stat()
            euid = os.geteuid()
            if held.st_mode & stat.S_ISVTX and euid not in (0, info.st_uid, held.st_uid):
                return f"{target} is another user's in a sticky directory: it cannot be replaced"
    except OSError as exc:  # a symlink loop, a name too long, a directory not searchable
        return exc.strerror or str(exc)
    return None


def _stat_or_none(path: Path) -> os.stat_result | None:
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None


def _open_stream(path: Path) -> TextIO | None:
    """Standard output or error when ``path`` is the very file it is open on (``/dev/stdout``,
    ``/dev/fd/2``, or the file standard output was redirected to): it is written there, as it
    is open (appending, in a pipe), never opened again, truncated or renamed over."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    for fd, stream in ((1, sys.stdout), (2, sys.stderr)):
        try:
            held = os.fstat(fd)
        except OSError:
            continue
        if (held.st_dev, held.st_ino) == (info.st_dev, info.st_ino):
            return stream
    return None


def _write_output(series: LoadSeries, path: Path) -> None:
    """Write the trace to ``path``: whole or not at all, as
    :func:`~controller.files.written_whole` writes. Standard output or error named by a path
    is written as it is open."""
    stream = _open_stream(path)
    if stream is not None:
        write_trace(series, stream)
        stream.flush()
        return
    with written_whole(path, prefix=".tidal-trace-", text=True) as out:
        write_trace(series, out)


class _progress:
    """A context whose value is called once per query answered: a bar on a terminal when the
    read takes more than one query, nothing otherwise (a pipe, a log, a single query)."""

    def __init__(self, err: Console, chunks: int) -> None:
        self._err = err
        self._chunks = chunks
        self._bar: Progress | None = None

    def __enter__(self) -> Callable[[], None]:
        if self._chunks < 2 or not self._err.is_terminal:
            return lambda: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        bar = Progress(
            TextColumn("reading"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("queries"),
            console=self._err,
            transient=True,
        )
        bar.start()
        task = bar.add_task("read", total=self._chunks)
        self._bar = bar
        return lambda: bar.advance(task)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


def _summarise(series: LoadSeries, *, start: float, end: float, where: Path | None) -> None:
    gaps = int(np.count_nonzero(np.isnan(series.values)))
    into = "standard output" if where is None else str(where)
    step = series.step
    print(
        f"tidal trace: wrote {len(series):,} samples, {format_timestamp(series.start)} to "
        f"{format_timestamp(series.end)} every {step:g}s, to {into}"
        + (f"; {gaps:,} of them gaps (empty loads)" if gaps else ""),
        file=sys.stderr,
    )
    late = series.start - start
    if late > max(step, 3600.0):
        print(
            f"tidal trace: warning: the query has no data before {format_timestamp(series.start)},"
            f" {late / 86400:.1f} days after the --history asked for: Prometheus's retention "
            "is shorter, or the series began later",
            file=sys.stderr,
        )
    early = end - series.end
    if early > max(2 * step, 600.0):
        print(
            f"tidal trace: warning: the query's last sample is at {format_timestamp(series.end)},"
            f" {early / 60:.0f} minutes before --end: the series stopped, or --end is ahead of "
            "what Prometheus has",
            file=sys.stderr,
        )
