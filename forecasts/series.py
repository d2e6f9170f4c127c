"""Load histories on a regular time grid, and the trace CSV format.

A :class:`LoadSeries` is a start time, a step and a float array in which NaN marks a missing
sample. Times are epoch seconds (UTC) so that the pure code never deals with time zones or
clocks; the edges convert.
"""

from __future__ import annotations

import csv
import io
import math
import re
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from forecasts.errors import InvalidHistory, TraceFormatError, TraceWarning

if TYPE_CHECKING:
    import _csv

__all__ = [
    "LoadSeries",
    "TimestampOutOfRange",
    "divides",
    "format_timestamp",
    "grid_step",
    "load_trace",
    "parse_timestamp",
    "trace_time",
]

FloatArray = npt.NDArray[np.float64]

#: The buckets models are fitted on (``forecasts.evaluation.FIT_STEP``): a trace's step below
#: this must divide it, or the trace is put on a step that does (:func:`grid_step`).
FIT_BUCKET = 300.0
#: The steps, in seconds, that divide a minute, and so the 5-minute buckets too (ascending).
MINUTE_DIVISORS = (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60)


@dataclass(frozen=True, eq=False)
class LoadSeries:
    """Samples of one load series at ``start + i * step`` seconds; NaN is a missing sample."""

    start: float
    step: float
    values: FloatArray
    #: Where a local-clock trace's clock went back an hour (summer time's end), as
    #: :func:`load_trace` read it: the local time, read as UTC, of each repeated hour's
    #: first sample. Every sample from an hour after it on was placed an hour later.
    #: Series made from this one (a slice, a resampling) do not carry it.
    clock_folds: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if not self.step > 0:
            raise ValueError(f"step must be positive, got {self.step}")
        values = np.asarray(self.values, dtype=np.float64)
        if values.ndim != 1:
            raise ValueError("values must be one-dimensional")
        object.__setattr__(self, "values", values)

    def __len__(self) -> int:
        return int(self.values.size)

    @property
    def end(self) -> float:
        """Time of the last sample (``start`` for an empty series)."""
        return self.start + self.step * max(len(self) - 1, 0)

    def times(self) -> FloatArray:
        return self.start + self.step * np.arange(len(self), dtype=np.float64)

    def index_of(self, when: float) -> int:
        """Index of the last sample at or before ``when`` (may be -1 or past the end)."""
        return math.floor((when - self.start) / self.step + 1e-9)

    def until(self, when: float) -> LoadSeries:
        """The samples at or before ``when``."""
        stop = max(0, min(len(self), self.index_of(when) + 1))
        return LoadSeries(self.start, self.step, self.values[:stop])

    def since(self, when: float) -> LoadSeries:
        """The samples at or after ``when``."""
        first = max(0, min(len(self), math.ceil((when - self.start) / self.step - 1e-9)))
        return LoadSeries(self.start + first * self.step, self.step, self.values[first:])

    def last(self, duration: float) -> LoadSeries:
        """The samples in the final ``duration`` seconds (inclusive of the last one)."""
        return self.since(self.end - duration + self.step)

    def aggregate(self, step: float) -> LoadSeries:
        """Means over buckets of ``step`` seconds aligned to the epoch.

        A bucket's value is the mean of its non-missing samples and stands at the bucket's
        *end* (a 5-minute mean of 12:00..12:04 is the value at 12:04), so that aggregation never
        moves information backwards in time. A bucket without samples is NaN; an incomplete
        final bucket is dropped, so the result only holds what is fully known.
        """
        if step <= self.step or len(self) == 0:
            return self
        first_end, block = self.buckets(step)
        if not block.size:
            return LoadSeries(self.start, step, np.empty(0))
        with np.errstate(invalid="ignore"), _quiet_nan_warnings():
            means = np.nanmean(block, axis=1)
        return LoadSeries(first_end, step, means)

    def buckets(self, step: float) -> tuple[float, FloatArray]:
        """The samples of each whole bucket of ``step`` seconds (rows, as :meth:`aggregate`
        aligns them) and the time of the first bucket's end.

        ``step`` must be a multiple of the series' step, and longer.
        """
        if not divides(self.step, step):
            raise ValueError(
                f"samples {self.step:g}s apart do not divide the {step:g}s buckets they are "
                f"averaged into; use a step that divides {step:g}s"
            )
        ratio_i = round(step / self.step)
        # Index of the first sample that opens a bucket: a bucket holds the samples in
        # ``[k * step, (k + 1) * step)``, floored as :meth:`index_of` floors, so that samples off
        # the grid (at 53 s past the minute, or half a step) fall in the same bucket whatever
        # slice of the series is cut.
        offset = (-math.floor(self.start / self.step + 1e-9)) % ratio_i
        usable = max(0, (len(self) - offset) // ratio_i * ratio_i)
        block = self.values[offset : offset + usable].reshape(-1, ratio_i)
        return self.start + (offset + ratio_i - 1) * self.step, block

    def resample(self, step: float) -> LoadSeries:
        """Linear interpolation onto a finer grid of ``step`` seconds (coarse traces)."""
        if step >= self.step or len(self) < 2:
            return self
        # Counted, not ``arange``d to ``end``: at epoch seconds a tolerance below a microsecond
        # is lost to rounding, and the last sample with it.
        count = math.floor((self.end - self.start) / step + 1e-6) + 1
        times = self.start + step * np.arange(count)
        known = ~np.isnan(self.values)
        if not known.any():
            return LoadSeries(self.start, step, np.full(times.size, np.nan))
        values = np.interp(times, self.times()[known], self.values[known])
        # Only between two known samples: a gap in the source stays a gap (NaN), not a line.
        position = (times - self.start) / self.step
        below = np.clip(np.floor(position + 1e-9).astype(np.int64), 0, len(self) - 1)
        above = np.clip(np.ceil(position - 1e-9).astype(np.int64), 0, len(self) - 1)
        values[~(known[below] & known[above])] = np.nan
        return LoadSeries(self.start, step, values)


class _quiet_nan_warnings:
    """Silence numpy's 'mean of empty slice' for all-NaN buckets, which become NaN on purpose."""

    def __enter__(self) -> None:
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("ignore", category=RuntimeWarning)

    def __exit__(self, *exc: Any) -> None:
        self._ctx.__exit__(*exc)


def parse_timestamp(text: str) -> float:
    """ISO-8601 to epoch seconds. A timestamp without an offset is read as UTC.

    Traces without an offset are in the source's local time (DESIGN: nyc taxi); reading that
    clock as UTC keeps its daily shape, which is all a forecaster or a planner needs.
    """
    return _parse_timestamp(text)[0]


def trace_time(text: str, series: LoadSeries) -> float:
    """``text`` (ISO-8601) on ``series``' timeline, as its own timestamps were read.

    With an offset, or on a trace without a fold, it is :func:`parse_timestamp`'s. Without an
    offset, on a local-clock trace whose clock went back (:attr:`LoadSeries.clock_folds`), a
    time from an hour after a fold on is placed an hour later, as the trace's rows were; a
    time inside the repeated hour is its first.
    """
    seconds, local = _parse_timestamp(text)
    if not local:
        return seconds
    return seconds + _FOLD * sum(1 for fold in series.clock_folds if fold + _FOLD <= seconds)


def format_timestamp(when: float) -> str:
    """Epoch seconds as the ISO-8601 UTC timestamp a trace writes, to the second."""
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class TimestampOutOfRange(ValueError):
    """An ISO-8601 timestamp outside the years 1 to 9999 once in UTC."""


def _parse_timestamp(text: str) -> tuple[float, bool]:
    """Epoch seconds, and whether the timestamp had no offset (a local clock). ``Z`` or ``z``
    (RFC 3339 allows either) is UTC."""
    stamp = datetime.fromisoformat(re.sub(r"[Zz]$", "+00:00", text.strip()))
    local = stamp.tzinfo is None
    if local:
        stamp = stamp.replace(tzinfo=UTC)
    seconds = stamp.timestamp()
    try:
        datetime.fromtimestamp(seconds, UTC)  # written back in UTC, as reports and errors do
    except (OverflowError, ValueError) as exc:  # 0001-01-01T00:00+01:00 is in year 0 in UTC
        raise TimestampOutOfRange(
            f"{text.strip()!r} is outside the years 1 to 9999 in UTC"
        ) from exc
    return seconds, local


#: A local clock goes back by up to an hour when summer time ends, at most once in a season.
_FOLD = 3600.0
_FOLDS_APART = 150 * 86400.0
#: Summer time ends in the small hours (between midnight and 3 a.m. wherever it is kept).
_FOLD_BEFORE = 4 * 3600.0


#: A trace whose grid would be more than this share gaps, or hold more than this many missing
#: samples, is refused: a mistyped date (2204 for 2024) would make millions of empty steps.
#: Gaps fewer than :data:`FEW_GAP_STEPS` cost nothing, whatever their share: a short trace
#: with an outage (30 one-second rows, two hours out, 30 more) is read.
MOST_GAP_SHARE = 0.99
MOST_GAP_STEPS = 2**24
FEW_GAP_STEPS = 2**20


def load_trace(path: str | Path) -> LoadSeries:
    """Read a ``timestamp,load`` CSV into a regular series at its own (median) step, or at
    :func:`grid_step`'s when that step does not divide the 5-minute buckets models fit on.

    Irregular timestamps are placed on the grid by linear interpolation; a sample that cannot
    be read raises :class:`TraceFormatError` naming the file and line.

    Timestamps without an offset are a local clock, which repeats an hour when summer time
    ends. In such a trace, a step back to before 4 a.m. that an hour on follows the last sample
    as the next one would (one row may be missing at the change) is read as that hour again:
    it and every sample after it are placed an hour later, so that no sample is lost or
    reordered, and a :class:`TraceWarning` names the line. Anything else out of order (a
    repeated row in a trace finer than hourly, a second step back within 150 days, a step back
    of any other size or in the day, any step back with offsets) is refused. So is a load that
    is not a plain finite number (``inf``, ``1_000``); an empty cell or ``nan`` is missing. A
    negative load is no load a gateway can carry (a glitch, or a query that subtracts): it is
    read as missing too, and one :class:`TraceWarning` names the first such line and how many
    there are, so that one bad sample does not lose the whole trace.

    A byte that is not UTF-8 is refused with the line it is on. A median step within half a
    second (and 1%) of a whole number of seconds is that number, as millisecond jitter makes
    a per-minute trace's step 59.963s or 60.037s: see :func:`_on_whole_seconds`. A trace whose
    grid would be mostly gaps (a mistyped date) is refused naming the rows of its longest gap
    (see :data:`MOST_GAP_SHARE` and :data:`MOST_GAP_STEPS`), before the grid is made.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TraceFormatError(f"{path}: cannot read the trace: {exc.strerror}") from exc
    text = _utf8_text(path, data)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        rows = _read_rows(path, reader)
    except csv.Error as exc:  # a stray quote, a cell over the csv module's field limit
        raise TraceFormatError(f"{path}:{reader.line_num}: not a CSV row: {exc}") from exc
    if len(rows.times) < 2:
        raise TraceFormatError(
            f"{path}: a trace needs at least two samples, found {len(rows.times)}"
        )
    t, step, start = _on_whole_seconds(np.asarray(rows.times))
    _check_span(path, rows, t, step)
    y = np.asarray(rows.loads)
    every = grid_step(step)
    grid = np.arange(start, t[-1] + every / 2, every)
    known = ~np.isnan(y)
    if not known.any():
        raise InvalidHistory(f"{path}: the trace has no finite load")
    sampled, loads_known = t[known], y[known]
    values = np.interp(grid, sampled, loads_known)
    # A gap longer than two steps between loads (rows missing, or rows without a load) stays
    # a gap, and so does the time before the first load and after the last: interpolating or
    # holding would invent load.
    before = np.clip(np.searchsorted(sampled, grid, side="right") - 1, 0, sampled.size - 1)
    after = np.minimum(before + 1, sampled.size - 1)
    too_far = (sampled[after] - sampled[before]) > 2.5 * step
    outside = (grid < sampled[0] - every / 2) | (grid > sampled[-1] + every / 2)
    values[(too_far & ~np.isin(grid, sampled)) | outside] = np.nan
    if not np.isfinite(values).any():
        raise InvalidHistory(f"{path}: the trace has no finite load")
    return LoadSeries(float(start), every, values, clock_folds=tuple(rows.folds))


def grid_step(step: float) -> float:
    """The step a trace whose samples are ``step`` seconds apart is put on.

    Its own when it is :data:`FIT_BUCKET` or longer, or divides it and is a minute or longer
    (a backtest interpolates those onto minutes), or divides a minute. Otherwise (samples 59.4s
    apart from a collector a little fast, or 25s, 45s or 2 minutes apart) the longest of
    :data:`MINUTE_DIVISORS` no longer than it, or a minute: the models' 5-minute means and a
    backtest's minutes are then over whole samples, as they must be. The samples are
    interpolated onto it as irregular timestamps are. A step under a second that divides no
    minute is kept, and refused where it is averaged.
    """
    whole = FIT_BUCKET if step >= MINUTE_DIVISORS[-1] else float(MINUTE_DIVISORS[-1])
    if step >= FIT_BUCKET or divides(step, whole):
        return step
    shorter = [d for d in MINUTE_DIVISORS if d <= step]
    return float(shorter[-1]) if shorter else step


def divides(step: float, whole: float) -> bool:
    """Whether ``whole`` holds a whole number of ``step`` (to a billionth of one)."""
    ratio = whole / step
    return abs(ratio - round(ratio)) <= 1e-9


def _utf8_text(path: Path, data: bytes) -> str:
    """The file's text, past a byte order mark (a spreadsheet export); a byte that is not
    UTF-8 is refused with the line it is on.

    Decoded whole, not a block at a time as a text file is read: the line the csv reader had
    reached when a block failed to decode was up to a block's worth of lines before the bad
    byte.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = data[: exc.start].decode("utf-8")
        line = before.replace("\r\n", "\n").replace("\r", "\n").count("\n") + 1
        raise TraceFormatError(
            f"{path}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x}); "
            "save the trace as a UTF-8 CSV"
        ) from None
    return text.removeprefix("\ufeff")


def _on_whole_seconds(times: FloatArray) -> tuple[FloatArray, float, float]:
    """A trace's timestamps, its step and the start of its grid.

    The step is the median of the timestamps' steps. Millisecond jitter makes it 59.963s or
    60.037s for a trace written every minute, which was then refused or accepted by which side
    of 60s the median fell on: a step within half a second (and 1%) of a whole number of
    seconds is that number, and each timestamp is rounded to the second before the grid is
    made, so that a sample on the minute but for jitter is that minute's load, not an
    interpolation between it and its neighbour. Should rounding put two rows on the same
    second (rows less than a second apart), the timestamps are kept and the grid starts on the
    first one's second.
    """
    step = float(np.median(np.diff(times)))
    whole = float(round(step))
    jitter = abs(step - whole)
    if whole < 1 or jitter > min(0.5, 0.01 * whole):
        return times, step, float(times[0])
    rounded = np.round(times)
    if np.all(np.diff(rounded) > 0):
        return rounded, whole, float(rounded[0])
    return times, whole, float(rounded[0])


def _check_span(path: Path, rows: _Rows, times: FloatArray, step: float) -> None:
    """Refuse a trace whose grid at ``step`` would be mostly gaps (see :data:`MOST_GAP_SHARE`,
    :data:`MOST_GAP_STEPS` and :data:`FEW_GAP_STEPS`), naming the rows of its longest gap.

    ``times`` are the rows' timestamps, in order: all of them, or those read before a row out
    of order (which is a mistyped date, if the rows before it already span a grid of gaps).
    """
    count = times.size
    if count < 2 or not step > 0:
        return
    steps = round(float(times[-1] - times[0]) / step) + 1
    gaps = steps - count
    # The share as a quotient of whole numbers: 0.99 / 0.01 rounds below 99 gaps a row, and
    # would refuse a grid of exactly 99% gaps.
    if gaps <= FEW_GAP_STEPS or (gaps <= MOST_GAP_STEPS and gaps / steps <= MOST_GAP_SHARE):
        return
    widest = int(np.argmax(np.diff(times)))
    apart = _span_text(float(times[widest + 1] - times[widest]))
    raise TraceFormatError(
        f"{path}:{rows.lines[widest + 1]}: timestamp {rows.stamps[widest + 1]} is {apart} "
        f"after the row before it ({rows.stamps[widest]}, line {rows.lines[widest]}): "
        f"its {count:,} rows would span {steps:,} samples at the trace's {step:g}s step "
        "(a mistyped date?)"
    )


def _span_text(seconds: float) -> str:
    """A time apart in the largest unit it holds whole: ``67,160 days``, ``2 hours``."""
    for unit, size in (("day", 86400.0), ("hour", 3600.0), ("minute", 60.0)):
        if seconds >= size:
            count = seconds / size
            return f"{count:,.0f} {unit}{'' if round(count) == 1 else 's'}"
    return f"{seconds:g} seconds"


@dataclass
class _Rows:
    """A trace's samples, in order, with the line and the timestamp as written of each."""

    times: list[float] = field(default_factory=list)
    loads: list[float] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    stamps: list[str] = field(default_factory=list)
    #: The local times at which the clock went back (see :attr:`LoadSeries.clock_folds`).
    folds: list[float] = field(default_factory=list)


def _read_rows(path: Path, reader: _csv.Reader) -> _Rows:
    """The samples of a trace's rows, in order: see :func:`load_trace`.

    Lines are the file's own (the csv reader's ``line_num``): a quoted cell that holds a
    newline makes a row of more than one line, and a row's number is its first.
    """
    rows = _Rows()
    clock: tuple[bool, int, str] | None = None  # the first row's: local or not, line, stamp
    times = rows.times
    shift = 0.0  # seconds added to local timestamps since the clock last went back
    folded_at: float | None = None
    first_negative: tuple[int, float] | None = None  # (line, load) of the first negative load
    negatives = 0
    header = next(reader, None)
    if header is None or [h.strip() for h in header[:2]] != ["timestamp", "load"]:
        raise TraceFormatError(f"{path}:1: the header must be 'timestamp,load', got {header}")
    last_line = reader.line_num  # the header's
    for row in reader:
        # A row begins on the line after the one the last row ended on.
        line_no, last_line = last_line + 1, reader.line_num
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) < 2:
            raise TraceFormatError(f"{path}:{line_no}: expected 'timestamp,load', got {row}")
        if any(cell.strip() for cell in row[len(header) :]):
            # Most often a thousands separator: '1,234' would be read as 1.
            raise TraceFormatError(
                f"{path}:{line_no}: {len(row)} cells where the header has {len(header)}, got "
                f"{row} (write 1234, not 1,234)"
            )
        try:
            when, local = _parse_timestamp(row[0])
        except TimestampOutOfRange as exc:
            raise TraceFormatError(f"{path}:{line_no}: timestamp {exc}") from exc
        except ValueError as exc:
            raise TraceFormatError(
                f"{path}:{line_no}: timestamp {row[0]!r} is not ISO-8601"
            ) from exc
        if clock is None:
            clock = (local, line_no, row[0].strip())
        elif local != clock[0]:
            # A local clock and UTC offsets do not mix: a naive 12:00 after 11:00-05:00 may
            # be 5 hours on or back, and read either way it leaves a gap or a clash.
            first = "without" if clock[0] else "with"
            raise TraceFormatError(
                f"{path}:{line_no}: timestamp {row[0].strip()} has {'no ' if local else 'a '}"
                f"UTC offset where the rows before it are {first} one (line {clock[1]}: "
                f"{clock[2]}): write every timestamp one way"
            )
        load = _parse_load(path, line_no, row[1])
        if load < 0:
            first_negative = first_negative or (line_no, load)
            negatives += 1
            load = math.nan
        if local:
            when += shift
            if times and _clock_went_back(times, when, shift, folded_at):
                shift += _FOLD  # summer time ended: the local clock repeats this hour
                when += _FOLD
                folded_at = when
                # The repeated hour from its start, whether its first row is there or not.
                rows.folds.append((when - shift) - (when - shift) % _FOLD)
                warnings.warn(
                    f"{path}:{line_no}: the local clock goes back an hour at {row[0]}: read as "
                    "the hour that summer time's end repeats, and every later sample moved an "
                    "hour on",
                    TraceWarning,
                    stacklevel=3,
                )
        if times and when <= times[-1]:
            # A row far on (a mistyped year) puts every row after it out of order: named
            # as the date it is, if the rows so far would span a grid of gaps.
            if len(times) >= 2:
                so_far = np.asarray(times)
                # The trace's step from every row read, this one too, in order: their median,
                # or with a few rows, where one far row is half of them, their closest two.
                spaced = np.diff(np.sort(np.append(so_far, when)))
                spaced = spaced[spaced > 0]
                if not spaced.size:
                    spaced = np.zeros(1)
                step = float(np.median(spaced) if spaced.size > 3 else spaced.min())
                _check_span(path, rows, so_far, step)
            raise TraceFormatError(
                f"{path}:{line_no}: timestamp {row[0]} is not after the previous one"
            )
        times.append(when)
        rows.loads.append(load)
        rows.lines.append(line_no)
        rows.stamps.append(row[0].strip())
    if first_negative is not None:
        line_no, load = first_negative
        more = f", and {negatives - 1} more negative loads" if negatives > 1 else ""
        warnings.warn(
            f"{path}:{line_no}: load {load:g} is negative: read as missing{more}",
            TraceWarning,
            stacklevel=3,
        )
    return rows


def _parse_load(path: Path, line_no: int, text: str) -> float:
    """One row's load: a finite number (the caller reads a negative one as missing), or NaN
    for an empty cell or ``nan``."""
    if not text.strip():
        return math.nan
    try:
        if "_" in text:
            raise ValueError(text)
        load = float(text)
    except ValueError as exc:
        raise TraceFormatError(f"{path}:{line_no}: load {text!r} is not a number") from exc
    if math.isnan(load):
        return math.nan
    if not math.isfinite(load):
        raise TraceFormatError(f"{path}:{line_no}: load {text!r} is not a finite number")
    return load


def _clock_went_back(
    times: list[float], when: float, shift: float, folded_at: float | None
) -> bool:
    """Whether a local timestamp ``when`` is the hour summer time's end repeats, listed again.

    The clock goes back one hour, so an hour on, the sample follows the last one by a step, or
    by two when one row is missing at the change (within half a step). A step back, to before
    4 a.m., not within 150 days of the last fold, and not the last row again unless the trace
    is hourly or coarser (an hourly trace repeats the hour as the same timestamp).
    """
    if len(times) < 2 or when > times[-1]:
        return False
    step = float(np.median(np.diff(times[-64:])))
    after = when + _FOLD - times[-1]
    return (
        step > 0
        and 0.5 * step <= after <= 2.5 * step
        and (when < times[-1] or step >= _FOLD)
        and (when - shift) % 86400.0 < _FOLD_BEFORE
        and (folded_at is None or when - folded_at >= _FOLDS_APART)
    )
