"""The edges of ``forecasts.series``: the steps a trace is put on, and the grids it refuses."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from forecasts.errors import TraceFormatError, TraceWarning
from forecasts.series import LoadSeries, grid_step, load_trace, parse_timestamp, trace_time

START = datetime(2024, 1, 1, tzinfo=UTC).timestamp()


def at_seconds(path: Path, seconds: list[int] | np.ndarray, load: float = 5.0) -> Path:
    """A trace with one row at each of ``seconds`` after 2024-01-01 UTC, all of ``load``."""
    when = np.datetime64("2024-01-01T00:00:00") + np.asarray(seconds).astype("timedelta64[s]")
    body = "".join(f"{stamp}Z,{load:g}\n" for stamp in np.datetime_as_string(when, unit="s"))
    path.write_text("timestamp,load\n" + body, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("step", "grid"),
    [
        pytest.param(1.7, 1.0, id="1.7s-on-1s"),
        pytest.param(2.7, 2.0, id="2.7s-on-2s"),
        pytest.param(3.5, 3.0, id="3.5s-on-3s"),
        pytest.param(4.5, 4.0, id="4.5s-on-4s"),
        pytest.param(5.5, 5.0, id="5.5s-on-5s"),
        pytest.param(6.5, 6.0, id="6.5s-on-6s"),
        pytest.param(10.5, 10.0, id="10.5s-on-10s"),
        pytest.param(12.5, 12.0, id="12.5s-on-12s"),
        pytest.param(15.5, 15.0, id="15.5s-on-15s"),
        pytest.param(20.5, 20.0, id="20.5s-on-20s"),
        pytest.param(30.5, 30.0, id="30.5s-on-30s"),
    ],
)
def test_a_step_just_over_a_minute_divisor_is_put_on_that_divisor(step: float, grid: float) -> None:
    """A step under a minute that divides no minute is put on the longest step dividing a
    minute (1, 2, 3, 4, 5, 6, 10, 12, 15, 20 or 30 s) no longer than it."""
    assert grid_step(step) == grid


@pytest.mark.parametrize(
    ("seconds", "read"),
    [
        pytest.param([*range(50), *range(1_048_626, 1_048_676)], 1_048_676, id="2**20-gaps"),
        pytest.param([*range(10_000), *range(1_510_000, 1_520_000)], 1_520_000, id="99-gaps-a-row"),
        pytest.param(
            [*range(10_000), *range(1_990_000, 2_000_000)], 2_000_000, id="exactly-99-percent"
        ),
    ],
)
def test_a_grid_of_gaps_within_either_bound_is_read(
    tmp_path: Path, seconds: list[int], read: int
) -> None:
    """2**20 missing one-second samples (1,048,576: not more) cost nothing, whatever their
    share of 100 rows; 1.5 million (over 2**20) are read beside 20,000 rows, under 99 a row
    and under 2**24, and so are 1.98 million, 99 a row and exactly 99% of the grid, which
    only more than 99% is refused: the trace is read, its gap missing."""
    series = load_trace(at_seconds(tmp_path / "outage.csv", seconds))
    assert (series.start, series.step, len(series)) == (START, 1.0, read)
    assert int(np.isfinite(series.values).sum()) == len(seconds)


@pytest.mark.parametrize(
    ("seconds", "line"),
    [
        pytest.param([*range(5_000), *range(1_505_000, 1_510_000)], 5_002, id="over-99-gaps-a-row"),
        pytest.param(
            [*range(10_000), *range(1_990_001, 2_000_001)], 10_002, id="one-gap-over-99-percent"
        ),
        pytest.param(
            [*range(100_000), *range(17_100_000, 17_200_000)], 100_002, id="over-2**24-gaps"
        ),
    ],
)
def test_a_grid_of_gaps_past_either_bound_is_refused_at_its_widest_gap(
    tmp_path: Path, seconds: list[int], line: int
) -> None:
    """Over 2**20 missing samples and either more than 99 for each row (1.5 million for
    10,000 rows) or more than 2**24 (17 million for 200,000 rows): a mistyped date, refused
    naming the row after the widest gap."""
    path = at_seconds(tmp_path / "far.csv", seconds)
    with pytest.raises(TraceFormatError, match=rf"far\.csv:{line}: .*\(a mistyped date\?\)"):
        load_trace(path)


FIVE = timedelta(minutes=5)


def local_night(day: datetime) -> list[str]:
    """Summer time's end on ``day``, as a local clock every 5 minutes writes it: 00:00 to
    01:55, then from 01:00 again to 02:55."""
    first = [day + i * FIVE for i in range(24)]
    again = [day + timedelta(hours=1) + i * FIVE for i in range(24)]
    return [stamp.isoformat() for stamp in first + again]


def numbered(path: Path, stamps: list[str]) -> Path:
    """A trace of ``stamps`` whose loads are 1, 2, 3, ... in row order."""
    body = "".join(f"{stamp},{i + 1}\n" for i, stamp in enumerate(stamps))
    path.write_text("timestamp,load\n" + body, encoding="utf-8")
    return path


def test_a_second_fold_150_days_after_the_first_is_summer_time_ending_again(
    tmp_path: Path,
) -> None:
    """Two nights a clock goes back, 150 days apart: each is read as the hour repeated, every
    row kept in order, the second night two hours on."""
    first = datetime(2024, 11, 3)
    second = first + timedelta(days=150)
    path = numbered(tmp_path / "two.csv", local_night(first) + local_night(second))
    with pytest.warns(TraceWarning, match="the local clock goes back an hour") as caught:
        series = load_trace(path)
    assert len([w for w in caught if issubclass(w.category, TraceWarning)]) == 2
    # The second night's rows from 01:00 (an hour on) to 04:55 (its repeat two hours on).
    assert series.start == first.replace(tzinfo=UTC).timestamp() and series.step == 300.0
    assert len(series) == 150 * 288 + 60
    known = series.values[np.isfinite(series.values)]
    assert np.array_equal(known, np.arange(1.0, 97.0))


@pytest.mark.filterwarnings("ignore::forecasts.errors.TraceWarning")
@pytest.mark.parametrize(
    ("given", "row"),
    [
        pytest.param("2024-11-03T00:30:00", 7, id="before-the-fold"),
        pytest.param("2024-11-03T01:30:00", 19, id="the-repeated-hour-is-its-first"),
        pytest.param("2024-11-03T02:30:00", 43, id="after-the-fold-an-hour-on"),
        pytest.param("2024-11-03T07:30:00Z", None, id="an-offset-is-read-as-it-says"),
    ],
)
def test_a_time_given_for_a_local_clock_trace_is_read_as_its_rows_are(
    tmp_path: Path, given: str, row: int | None
) -> None:
    """A time without an offset on a trace whose clock went back is placed where that row of
    the file was placed: an hour on after the repeated hour, the first of it within it. Before,
    02:30 named the row written 01:30 the second time."""
    path = numbered(tmp_path / "night.csv", local_night(datetime(2024, 11, 3)))
    series = load_trace(path)
    first = datetime(2024, 11, 3, tzinfo=UTC).timestamp()
    assert series.clock_folds == (first + 3600.0,)
    when = trace_time(given, series)
    if row is None:
        assert when == parse_timestamp(given)
    else:
        assert series.values[series.index_of(when)] == row
    assert trace_time(given, LoadSeries(series.start, series.step, series.values)) == (
        parse_timestamp(given)
    )


@pytest.mark.filterwarnings("ignore::forecasts.errors.TraceWarning")
def test_a_fold_whose_first_repeated_row_is_missing_still_starts_on_the_hour(
    tmp_path: Path,
) -> None:
    """The row at 01:00 the second time is missing (the reader allows one): the repeated hour
    is still 01:00 to 02:00, so 02:00 is the row written at 02:00, an hour on."""
    stamps = local_night(datetime(2024, 11, 3))
    del stamps[24]  # the second 01:00
    series = load_trace(numbered(tmp_path / "night.csv", stamps))
    first = datetime(2024, 11, 3, tzinfo=UTC).timestamp()
    assert series.clock_folds == (first + 3600.0,)
    # Rows 25 on are the second 01:05 to 02:55: 02:00 is row 25 + 11.
    assert series.values[series.index_of(trace_time("2024-11-03T02:00:00", series))] == 36


def test_a_second_fold_149_days_after_the_first_is_refused(tmp_path: Path) -> None:
    """A local clock goes back once in a season: a second step back of an hour within 150
    days is a file out of order, named at its row (the second night's repeated 01:00)."""
    first = datetime(2024, 11, 3)
    second = first + timedelta(days=149)
    path = numbered(tmp_path / "two.csv", local_night(first) + local_night(second))
    with (
        pytest.warns(TraceWarning, match=r"two\.csv:26: "),
        pytest.raises(TraceFormatError, match=r"two\.csv:74: .* is not after the previous"),
    ):
        load_trace(path)


@pytest.mark.parametrize(
    ("hour", "folds"),
    [pytest.param(3, True, id="back-to-03:00"), pytest.param(4, False, id="back-to-04:00")],
)
@pytest.mark.filterwarnings("ignore::forecasts.errors.TraceWarning")
def test_a_clock_goes_back_an_hour_only_to_before_4am(
    tmp_path: Path, hour: int, folds: bool
) -> None:
    """Summer time ends in the small hours: an hour repeated from 03:00 is read as the hour
    again, one from 04:00 is a file out of order (the repeat's first row, line 26)."""
    day = datetime(2024, 11, 3, hour - 1)
    stamps = [(day + i * FIVE).isoformat() for i in range(24)]
    stamps += [(day + timedelta(hours=1) + i * FIVE).isoformat() for i in range(24)]
    path = numbered(tmp_path / "night.csv", stamps)
    if folds:
        series = load_trace(path)
        assert series.start == day.replace(tzinfo=UTC).timestamp() and series.step == 300.0
        assert np.array_equal(series.values, np.arange(1.0, 49.0))
    else:
        with pytest.raises(TraceFormatError, match=r"night\.csv:26: .* is not after the previous"):
            load_trace(path)


def at_fractions(path: Path, seconds: list[float], loads: list[float]) -> Path:
    """A trace with rows ``seconds`` after 2024-01-01 UTC (to the millisecond)."""
    first = datetime(2024, 1, 1, tzinfo=UTC)
    body = "".join(
        f"{(first + timedelta(seconds=s)).isoformat(timespec='milliseconds')},{y:g}\n"
        for s, y in zip(seconds, loads, strict=True)
    )
    path.write_text("timestamp,load\n" + body, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("apart", "step", "count"),
    [
        pytest.param(1.004, 1.0, 5, id="1.004s-within-1%-of-1s"),
        pytest.param(100.5, 100.0, 5, id="100.5s-half-a-second-from-100s"),
    ],
)
def test_a_step_within_half_a_second_and_1_percent_of_whole_seconds_is_that_many(
    tmp_path: Path, apart: float, step: float, count: int
) -> None:
    """Rows ``apart`` seconds apart, within half a second and 1% of a whole number of
    seconds (half a second is within), are that many seconds apart: the grid's step."""
    path = at_fractions(tmp_path / "jitter.csv", [apart * i for i in range(5)], [1.0] * 5)
    series = load_trace(path)
    assert (series.start, series.step, len(series)) == (START, step, count)


def test_rows_rounded_to_whole_seconds_are_their_own_loads(tmp_path: Path) -> None:
    """Rows 1.004 s apart are read on whole seconds, each row's load at its own second, not
    a line between it and the next."""
    loads = [10.0, 20.0, 40.0, 80.0, 160.0]
    path = at_fractions(tmp_path / "seconds.csv", [1.004 * i for i in range(5)], loads)
    series = load_trace(path)
    assert series.step == 1.0 and series.values.tolist() == loads


def test_a_jittered_row_is_its_minute_s_load_when_the_median_step_is_whole(
    tmp_path: Path,
) -> None:
    """Rows every minute, one written 0.4 s late: the median step is exactly 60 s, and the late
    row is rounded to its minute like any jittered one, its load that minute's, not a line
    between it and the row before."""
    loads = [10.0, 20.0, 40.0, 80.0, 160.0]
    path = at_fractions(tmp_path / "late.csv", [0.0, 60.0, 120.4, 180.0, 240.0], loads)
    series = load_trace(path)
    assert (series.start, series.step) == (START, 60.0)
    assert series.values.tolist() == loads


def test_rows_rounding_to_one_second_are_interpolated_at_their_own_times(
    tmp_path: Path,
) -> None:
    """Rows 60.1 s apart round to the minute, but two rows 0.1 s apart (180.3 s and 180.4 s)
    would share one: every timestamp is kept as written, and the minutes are the line
    between the rows either side."""
    seconds = [0.0, 60.1, 120.2, 180.3, 180.4, 240.4]
    loads = [10.0, 20.0, 30.0, 40.0, 100.0, 50.0]
    series = load_trace(at_fractions(tmp_path / "close.csv", seconds, loads))
    assert (series.start, series.step, len(series)) == (START, 60.0, 5)
    expected = [
        10.0,
        10.0 + 10.0 * 60.0 / 60.1,
        20.0 + 10.0 * 59.9 / 60.1,
        30.0 + 10.0 * 59.8 / 60.1,
        100.0 + (50.0 - 100.0) * 59.6 / 60.0,
    ]
    assert series.values == pytest.approx(expected, rel=1e-6)  # epoch seconds to ~0.2 us


def minutes_from(start: float, values: list[float]) -> LoadSeries:
    """A 1-minute series of ``values`` from ``start``."""
    return LoadSeries(start, 60.0, np.asarray(values, dtype=np.float64))


@pytest.mark.parametrize(
    ("when", "index"),
    [
        pytest.param(720.0, 2, id="on-a-sample"),
        pytest.param(779.9, 2, id="just-before-the-next"),
        pytest.param(599.9, -1, id="before-the-first"),
        pytest.param(1_500.0, 15, id="past-the-end"),
    ],
)
def test_index_of_is_the_last_sample_at_or_before(when: float, index: int) -> None:
    """``index_of`` is the index of the last sample at or before a time, -1 or past the end
    outside the series."""
    assert minutes_from(600.0, list(range(10))).index_of(when) == index


@pytest.mark.parametrize(
    ("when", "kept"),
    [
        pytest.param(720.0, [0, 1, 2], id="on-a-sample"),
        pytest.param(779.0, [0, 1, 2], id="between-samples"),
        pytest.param(400.0, [], id="minutes-before-the-first"),
        pytest.param(10_600.0, list(range(10)), id="past-the-end"),
    ],
)
def test_until_keeps_the_samples_at_or_before(when: float, kept: list[int]) -> None:
    """``until`` keeps the samples at or before a time, from the same start."""
    cut = minutes_from(600.0, list(range(10))).until(when)
    assert (cut.start, cut.step, cut.values.tolist()) == (600.0, 60.0, kept)


@pytest.mark.parametrize(
    ("when", "start", "kept"),
    [
        pytest.param(720.0, 720.0, [2, 3, 4], id="on-a-sample"),
        pytest.param(721.0, 780.0, [3, 4], id="between-samples"),
        pytest.param(500.0, 600.0, [0, 1, 2, 3, 4], id="before-the-first"),
        pytest.param(1_600.0, 900.0, [], id="past-the-end"),
    ],
)
def test_since_keeps_the_samples_at_or_after(when: float, start: float, kept: list[int]) -> None:
    """``since`` keeps the samples at or after a time, starting at the first of them."""
    cut = minutes_from(600.0, list(range(5))).since(when)
    assert (cut.start, cut.values.tolist()) == (start, kept)


def test_last_keeps_the_final_duration_with_the_last_sample() -> None:
    """``last(180)`` of a 1-minute series is its final three samples, the last one included."""
    cut = minutes_from(600.0, list(range(10))).last(180.0)
    assert (cut.start, cut.values.tolist()) == (1_020.0, [7, 8, 9])


def test_the_end_is_the_last_sample_s_time_or_the_start() -> None:
    """A series ends at its last sample; an empty one at its start."""
    assert minutes_from(100.0, [1.0, 2.0, 3.0]).end == 220.0
    assert minutes_from(100.0, []).end == 100.0


@pytest.mark.parametrize(
    "step",
    [
        pytest.param(0.0, id="zero"),
        pytest.param(-60.0, id="negative"),
        pytest.param(float("nan"), id="nan"),
    ],
)
def test_a_step_that_is_not_positive_is_refused(step: float) -> None:
    """A series' step is a positive number of seconds: zero, negative or NaN is refused."""
    with pytest.raises(ValueError, match="step must be positive"):
        LoadSeries(0.0, step, np.zeros(3))


def test_values_that_are_not_one_dimensional_are_refused() -> None:
    """A series is one row of samples: a table of them is refused."""
    with pytest.raises(ValueError, match="one-dimensional"):
        LoadSeries(0.0, 60.0, np.zeros((2, 3)))


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        pytest.param([0.0, 10.0], [0.0, 2.0, 4.0, 6.0, 8.0, 10.0], id="two-samples"),
        pytest.param(
            [0.0, 10.0, np.nan, 30.0, 40.0],
            [0.0, 2.0, 4.0, 6.0, 8.0, 10.0] + [np.nan] * 9 + [30.0, 32.0, 34.0, 36.0, 38.0, 40.0],
            id="a-gap-stays-a-gap",
        ),
    ],
)
def test_resampling_onto_minutes_is_a_line_between_known_samples(
    values: list[float], expected: list[float]
) -> None:
    """A 5-minute series on minutes: the line between two known samples, each sample kept at
    its own minute, and NaN wherever a neighbour is missing."""
    minutes = LoadSeries(600.0, 300.0, np.asarray(values)).resample(60.0)
    assert (minutes.start, minutes.step) == (600.0, 60.0)
    assert np.allclose(minutes.values, expected, equal_nan=True)


@pytest.mark.parametrize(
    ("method", "step"),
    [
        pytest.param("resample", 300.0, id="resample-to-the-same-step"),
        pytest.param("resample", 600.0, id="resample-to-a-coarser-step"),
        pytest.param("aggregate", 300.0, id="aggregate-to-the-same-step"),
        pytest.param("aggregate", 60.0, id="aggregate-to-a-finer-step"),
    ],
)
def test_a_step_the_method_does_not_move_towards_keeps_the_series(method: str, step: float) -> None:
    """``resample`` only makes a grid finer, ``aggregate`` only makes buckets longer: asked for
    a step the same or the other way, each keeps the series."""
    coarse = LoadSeries(600.0, 300.0, np.asarray([1.0, 2.0, 3.0]))
    kept = getattr(coarse, method)(step)
    assert (kept.start, kept.step, kept.values.tolist()) == (600.0, 300.0, [1.0, 2.0, 3.0])


def test_rows_a_quarter_second_apart_are_read_at_their_own_step(tmp_path: Path) -> None:
    """A step under half a second is no whole number of seconds: a quarter second divides a
    minute and is kept, each row's load at its own time."""
    loads = [1.0, 2.0, 3.0, 4.0, 5.0]
    path = at_fractions(tmp_path / "fine.csv", [0.25 * i for i in range(5)], loads)
    series = load_trace(path)
    assert (series.start, series.step, series.values.tolist()) == (START, 0.25, loads)


def test_one_negative_load_is_named_without_more(tmp_path: Path) -> None:
    """A single negative load is read as missing and named alone: no count of more."""
    path = tmp_path / "one.csv"
    rows = [f"2024-01-01T00:0{m}:00Z,{load}" for m, load in enumerate([5, 6, -3, 8])]
    path.write_text("timestamp,load\n" + "\n".join(rows) + "\n", encoding="utf-8")
    with pytest.warns(TraceWarning) as caught:
        series = load_trace(path)
    messages = [str(w.message) for w in caught if issubclass(w.category, TraceWarning)]
    assert messages == [f"{path}:4: load -3 is negative: read as missing"]
    assert series.values.tolist() == [5.0, 6.0, 7.0, 8.0]


@pytest.mark.parametrize(
    "fourth",
    [
        pytest.param("2024-01-01T00:03:00Z", id="the-next-minute"),
        pytest.param("2024-01-01T00:01:00Z", id="the-second-row-again"),
    ],
)
def test_a_mistyped_year_in_the_third_row_spans_the_grid_at_the_closest_two(
    tmp_path: Path, fourth: str
) -> None:
    """With a few rows the step is their closest two (60 s, not the 120 s between the second
    and fourth rows, nor the 0 s of a repeated row): 3 rows spanning 180 years of minutes."""
    stamps = ["2024-01-01T00:00:00Z", "2024-01-01T00:01:00Z", "2204-01-01T00:02:00Z", fourth]
    path = tmp_path / "typo.csv"
    path.write_text("timestamp,load\n" + "".join(f"{s},5\n" for s in stamps), encoding="utf-8")
    with pytest.raises(TraceFormatError) as caught:
        load_trace(path)
    # 2024-01-01 to 2204-01-01: 180 years of 365 days and 43 leap days (2100 and 2200 are
    # not), 65,743 days; to 00:02 from 00:00, 94,669,922 minutes: a grid of one more.
    assert str(caught.value) == (
        f"{path}:4: timestamp 2204-01-01T00:02:00Z is 65,743 days after the row before it "
        "(2024-01-01T00:01:00Z, line 3): its 3 rows would span 94,669,923 samples at the "
        "trace's 60s step (a mistyped date?)"
    )


def test_an_hourly_local_clock_through_the_small_hours_is_no_fold(tmp_path: Path) -> None:
    """An hourly local trace on a night without summer time's end: each row an hour after
    the last, in the small hours too, is read as written, without a warning."""
    stamps = [f"2024-06-01T{h:02d}:00:00" for h in range(7)]
    with warnings.catch_warnings():
        warnings.simplefilter("error", TraceWarning)
        series = load_trace(numbered(tmp_path / "hourly.csv", stamps))
    assert (series.start, series.step) == (datetime(2024, 6, 1, tzinfo=UTC).timestamp(), 3600.0)
    assert series.values.tolist() == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]


def test_a_line_of_empty_cells_is_no_row(tmp_path: Path) -> None:
    """A line of empty cells (',' as a spreadsheet writes a blank row) is skipped like an
    empty line, not refused as a timestamp."""
    path = tmp_path / "blank.csv"
    path.write_text(
        "timestamp,load\n2024-01-01T00:00:00Z,1\n,\n \t, \n2024-01-01T00:05:00Z,2\n",
        encoding="utf-8",
    )
    series = load_trace(path)
    assert (series.step, series.values.tolist()) == (300.0, [1.0, 2.0])


def test_a_second_fold_is_placed_by_its_local_clock(tmp_path: Path) -> None:
    """The small hours are the local clock's: a second night going back to 02:00 (04:00 once
    the first fold's hour is added) is summer time ending again, placed two hours on."""
    first = datetime(2024, 11, 3)
    second = first + timedelta(days=200, hours=1)  # 01:00 to 02:55, then 02:00 to 03:55
    path = numbered(tmp_path / "two.csv", local_night(first) + local_night(second))
    with pytest.warns(TraceWarning, match="the local clock goes back an hour") as caught:
        series = load_trace(path)
    lines = [str(w.message).split(": ")[0] for w in caught if issubclass(w.category, TraceWarning)]
    assert lines == [f"{path}:26", f"{path}:74"]
    # The second night's rows from 02:00 (an hour on) to 05:55 (its repeat two hours on).
    assert len(series) == 200 * 288 + 72
    known = series.values[np.isfinite(series.values)]
    assert np.array_equal(known, np.arange(1.0, 97.0))


def test_a_trace_of_one_row_is_refused_for_want_of_a_second(tmp_path: Path) -> None:
    """One sample has no step: the trace is refused, saying how many it found."""
    path = at_seconds(tmp_path / "one.csv", [0])
    with pytest.raises(
        TraceFormatError, match=r"one\.csv: a trace needs at least two samples, found 1"
    ):
        load_trace(path)


def test_a_series_with_no_known_sample_resamples_to_a_finer_grid_of_gaps() -> None:
    """Ten minutes at a 10-minute step, both samples missing: a minute's grid over the same
    span (eleven samples), every one missing."""
    finer = LoadSeries(START, 600.0, np.array([np.nan, np.nan])).resample(60.0)
    assert (finer.start, finer.step, len(finer)) == (START, 60.0, 11)
    assert np.isnan(finer.values).all()


@pytest.mark.parametrize(
    ("stamps", "line", "message"),
    [
        pytest.param(
            ["2024-01-01T00:00:00", "2024-01-01T00:01:00", "2024-01-01T00:02:00-05:00"],
            4,
            "timestamp 2024-01-01T00:02:00-05:00 has a UTC offset where the rows before it are "
            "without one (line 2: 2024-01-01T00:00:00)",
            id="local-then-offset",
        ),
        pytest.param(
            ["2024-01-01T00:00:00Z", "2024-01-01T05:01:00", "2024-01-01T05:02:00"],
            3,
            "timestamp 2024-01-01T05:01:00 has no UTC offset where the rows before it are with "
            "one (line 2: 2024-01-01T00:00:00Z)",
            id="utc-then-local",
        ),
    ],
)
def test_a_local_clock_mixed_with_utc_offsets_is_refused_at_the_first_row_that_switches(
    tmp_path: Path, stamps: list[str], line: int, message: str
) -> None:
    """Read as it came, a local 05:01 after 00:00Z would leave a five-hour hole of gaps (or,
    the other way, a clash): the row that switches is named, with the first row's way."""
    path = tmp_path / "mixed.csv"
    path.write_text("timestamp,load\n" + "".join(f"{s},5\n" for s in stamps))
    with pytest.raises(TraceFormatError) as error:
        load_trace(path)
    assert str(error.value) == f"{path}:{line}: {message}: write every timestamp one way"


def test_a_row_after_a_quoted_newline_is_named_by_its_own_line(tmp_path: Path) -> None:
    """A quoted cell holding a newline makes one row of two lines: the rows after it are named
    by the line they are on in the file, not by how many rows came before."""
    path = tmp_path / "quoted.csv"
    path.write_text(
        'timestamp,load\n2024-01-01T00:00:00Z,1\n2024-01-01T00:01:00Z,"5\n"\n\n'
        "2024-01-01T00:02:00Z,abc\n"
    )
    with pytest.raises(TraceFormatError, match=r"quoted\.csv:6: load 'abc' is not a number"):
        load_trace(path)


def test_a_row_outside_the_years_a_datetime_holds_says_so(tmp_path: Path) -> None:
    """0001-01-01T00:30+01:00 is ISO-8601, but in year 0 once in UTC: said so, not called
    a timestamp that is not ISO-8601."""
    path = tmp_path / "early.csv"
    path.write_text("timestamp,load\n0001-01-01T00:30:00+01:00,5\n")
    with pytest.raises(TraceFormatError) as error:
        load_trace(path)
    assert str(error.value) == (
        f"{path}:2: timestamp '0001-01-01T00:30:00+01:00' is outside the years 1 to 9999 in UTC"
    )


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        pytest.param("2014-04-10T00:04:00z", 1397088240.0, id="lower-case-z"),
        pytest.param("2014-04-10t00:04:00z", 1397088240.0, id="lower-case-t-and-z"),
        pytest.param(" 2014-04-10T00:04:00.5z ", 1397088240.5, id="fraction-and-spaces"),
        pytest.param("2014-04-10T00:04:00Z", 1397088240.0, id="upper-case-z"),
    ],
)
def test_utc_is_z_or_lower_case_z_as_rfc_3339_allows(text: str, seconds: float) -> None:
    """RFC 3339 (5.6, "Z" and "z" both) takes a lower-case z for UTC: it was refused as not
    ISO-8601."""
    assert parse_timestamp(text) == seconds


@pytest.mark.parametrize("text", ["2014-04-10T00:04:00+00:00z", "z", "2014-04-10T00:04:00ZZ"])
def test_a_z_that_is_not_the_offset_is_still_refused(text: str) -> None:
    """Only a last Z or z is the offset: one after another offset, or alone, is no timestamp."""
    with pytest.raises(ValueError, match="Invalid isoformat"):
        parse_timestamp(text)


def test_a_trace_in_lower_case_z_reads_as_its_upper_case_twin(tmp_path: Path) -> None:
    """The same rows with z, Z or both are the same series: each is a UTC offset, so a trace
    mixing them is not refused as a local clock mixed with offsets."""
    upper = at_seconds(tmp_path / "upper.csv", [0, 60, 120, 180])
    rows = upper.read_text().splitlines()
    lower = tmp_path / "lower.csv"
    lower.write_text("\n".join(row.replace("Z,", "z,") for row in rows) + "\n")
    mixed = tmp_path / "mixed.csv"
    mixed.write_text("\n".join([*rows[:2], *(r.replace("Z,", "z,") for r in rows[2:])]) + "\n")
    expected = load_trace(upper)
    for path in (lower, mixed):
        read = load_trace(path)
        assert (read.start, read.step) == (expected.start, expected.step)
        np.testing.assert_array_equal(read.values, expected.values)
