"""Trace files as published: a local clock that repeats an hour, and what stays refused."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from forecasts.errors import InvalidHistory, TraceFormatError, TraceWarning
from forecasts.series import LoadSeries, load_trace

FIVE = timedelta(minutes=5)


def write(path: Path, stamps: list[str]) -> Path:
    rows = [f"{stamp},{i + 1}" for i, stamp in enumerate(stamps)]
    path.write_text("timestamp,load\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def local(start: str, count: int) -> list[str]:
    first = datetime.fromisoformat(start)
    return [(first + i * FIVE).isoformat() for i in range(count)]


def test_a_local_clock_that_repeats_an_hour_loses_no_sample(tmp_path: Path) -> None:
    """Summer time ends: 01:00 to 01:55 comes twice in local time. Every row is kept, in
    order, five minutes apart, as an offset-aware file of the same night gives them."""
    night = local("2024-11-03T00:00:00", 24) + local("2024-11-03T01:00:00", 24)
    with pytest.warns(TraceWarning, match=r"local\.csv:26: the local clock goes back an hour"):
        series = load_trace(write(tmp_path / "local.csv", night))
    assert series.step == 300.0
    assert np.array_equal(series.values, np.arange(1.0, 49.0))

    aware = [f"{stamp}-04:00" for stamp in night[:24]] + [f"{s}-05:00" for s in night[24:36]]
    aware += [f"{stamp}-05:00" for stamp in night[36:]]
    assert np.array_equal(load_trace(write(tmp_path / "aware.csv", aware)).values, series.values)


def test_an_hourly_local_clock_that_repeats_a_timestamp_keeps_both(tmp_path: Path) -> None:
    """An hourly trace shows the repeated hour as the same timestamp twice."""
    stamps = ["2024-11-03T00:00:00", "2024-11-03T01:00:00", "2024-11-03T01:00:00"]
    stamps += ["2024-11-03T02:00:00", "2024-11-03T03:00:00"]
    with pytest.warns(TraceWarning, match=r"hourly\.csv:4: "):
        series = load_trace(write(tmp_path / "hourly.csv", stamps))
    assert series.step == 3600.0
    assert np.array_equal(series.values, np.arange(1.0, 6.0))


@pytest.mark.parametrize(
    "dropped",
    [
        pytest.param(23, id="the-first-pass-s-last-row"),
        pytest.param(24, id="the-repeat-s-first-row"),
    ],
)
def test_a_row_missing_where_the_clock_goes_back_is_a_gap_not_an_error(
    tmp_path: Path, dropped: int
) -> None:
    """01:55 or the repeated 01:00 missing: still summer time's end, the missing sample
    bridged as any single missing row is."""
    night = local("2024-11-03T00:00:00", 24) + local("2024-11-03T01:00:00", 24)
    del night[dropped]
    with pytest.warns(TraceWarning, match="the local clock goes back an hour"):
        series = load_trace(write(tmp_path / "gap.csv", night))
    assert series.step == 300.0 and len(series) == 48
    assert np.all(np.isfinite(series.values)) and np.all(np.diff(series.values) > 0)


@pytest.mark.parametrize(
    ("stamps", "line"),
    [
        pytest.param(
            local("2024-06-01T12:00:00", 6) + local("2024-06-01T12:10:00", 3), 8, id="midday"
        ),
        pytest.param(
            local("2024-11-03T00:00:00", 24)
            + local("2024-11-03T01:00:00", 12)
            + local("2024-11-03T01:30:00", 3),
            38,
            id="twice-in-a-night",
        ),
        pytest.param(
            local("2024-11-03T00:00:00", 24) + local("2024-11-03T00:55:00", 2),
            26,
            id="an-hour-back",
        ),
        pytest.param(
            local("2024-04-06T00:00:00", 25) + local("2024-04-06T02:00:00", 3),
            27,
            id="a-row-written-twice-at-night",
        ),
        pytest.param(
            [f"2024-06-02T0{h}:{m}:00" for h in range(3) for m in ("00", "30")]
            + ["2024-06-02T02:30:00", "2024-06-02T03:00:00"],
            8,
            id="a-half-hourly-row-written-twice",
        ),
        pytest.param(
            [
                "2024-11-03T00:00:00",
                "2024-11-03T01:00:00",
                "2024-11-03T02:00:00",
                "2024-11-03T01:15:00",
                "2024-11-03T02:15:00",
            ],
            5,
            id="hourly-back-45-minutes",
        ),
        pytest.param(
            ["2024-11-03T01:00:00-04:00", "2024-11-03T01:05:00-04:00", "2024-11-03T01:00:00-04:00"],
            4,
            id="with-offsets",
        ),
    ],
)
@pytest.mark.filterwarnings("ignore::forecasts.errors.TraceWarning")
def test_other_steps_back_are_refused_with_their_line(
    tmp_path: Path, stamps: list[str], line: int
) -> None:
    """Only one step back of under an hour, in the small hours, of a local clock, and not
    again for months, is summer time ending; anything else is a file out of order."""
    path = write(tmp_path / "bad.csv", stamps)
    with pytest.raises(TraceFormatError, match=rf"bad\.csv:{line}: .* is not after the previous"):
        load_trace(path)


def test_a_spreadsheet_export_with_a_byte_order_mark_and_crlf_reads(tmp_path: Path) -> None:
    """Files saved by a spreadsheet start with a BOM and end lines with CRLF."""
    path = tmp_path / "export.csv"
    path.write_bytes(
        "\ufefftimestamp,load\r\n2024-01-01 00:00:00Z,1\r\n2024-01-01 00:05:00Z,2\r\n".encode()
    )
    series = load_trace(path)
    assert series.step == 300.0 and np.array_equal(series.values, [1.0, 2.0])


def rows(path: Path, loads: list[str]) -> Path:
    stamps = local("2024-01-01T00:00:00", len(loads))
    body = "".join(f"{stamp}Z,{load}\n" for stamp, load in zip(stamps, loads, strict=True))
    path.write_text("timestamp,load\n" + body, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("load", "line"),
    [("inf", 3), ("-Infinity", 3), ("1_000", 3), ("1e999", 3)],
)
def test_a_load_that_is_not_a_plain_finite_number_is_refused_with_its_line(
    tmp_path: Path, load: str, line: int
) -> None:
    """``float()`` takes all of these; a load sample is none of them."""
    path = rows(tmp_path / "odd.csv", ["1", load, "3"])
    with pytest.raises(TraceFormatError, match=rf"odd\.csv:{line}: load .* not a "):
        load_trace(path)


def test_negative_loads_are_missing_samples_with_one_warning(tmp_path: Path) -> None:
    """A negative load is read as missing, and one warning names the first line and how many
    more there are: one bad sample does not lose the trace."""
    trace = tmp_path / "neg.csv"
    rows = [f"2020-01-01T00:{m:02d}:00Z,{v}" for m, v in enumerate([5, -1, 7, 8, -2.5, 9])]
    trace.write_text("timestamp,load\n" + "\n".join(rows) + "\n")
    with pytest.warns(
        TraceWarning,
        match=r"neg\.csv:3: load -1 is negative: read as missing, "
        r"and 1 more negative loads",
    ) as caught:
        series = load_trace(trace)
    assert len([w for w in caught if issubclass(w.category, TraceWarning)]) == 1
    # One missing sample between two known ones is interpolated, as a gap within two steps is.
    assert series.values.tolist() == [5.0, 6.0, 7.0, 8.0, 8.5, 9.0]


def test_empty_and_nan_loads_are_missing_samples(tmp_path: Path) -> None:
    series = load_trace(rows(tmp_path / "gaps.csv", ["1", "", "nan", "NaN", "5"]))
    assert series.values[0] == 1.0 and series.values[-1] == 5.0
    assert len(series) == 5


def test_a_trace_without_any_load_names_the_file(tmp_path: Path) -> None:
    """Every load missing: refused by name, not as an interpolation of nothing."""
    with pytest.raises(InvalidHistory, match=r"none\.csv: the trace has no finite load"):
        load_trace(rows(tmp_path / "none.csv", ["nan", "", "nan"]))


def test_a_trace_that_is_not_utf8_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes("timestamp,load\n2024-01-01T00:00:00Z,1\n".encode("utf-16"))
    with pytest.raises(TraceFormatError, match=r"latin\.csv:1: not UTF-8 text \(byte 0xff\)"):
        load_trace(path)


def test_rows_without_a_load_stay_a_gap_beyond_two_steps(tmp_path: Path) -> None:
    """A row without a load is as missing as a missing row: one is bridged, more are a gap,
    and nothing is held before the first load or after the last."""
    loads = ["", "2", "", "4", "", "", "", "8", "", ""]
    series = load_trace(rows(tmp_path / "holes.csv", loads))
    expected = [np.nan, 2.0, 3.0, 4.0, np.nan, np.nan, np.nan, 8.0, np.nan, np.nan]
    assert np.array_equal(series.values, expected, equal_nan=True)


def test_a_last_row_a_little_early_keeps_its_sample(tmp_path: Path) -> None:
    """Jitter in the last timestamp (20 s early on a 5-minute step) loses no sample."""
    path = tmp_path / "jitter.csv"
    path.write_text(
        "timestamp,load\n2024-01-01T00:00:00Z,1\n2024-01-01T00:05:00Z,2\n"
        "2024-01-01T00:10:00Z,3\n2024-01-01T00:14:40Z,4\n",
        encoding="utf-8",
    )
    assert np.all(np.isfinite(load_trace(path).values))


def test_the_command_line_prints_a_fold_as_one_line(tmp_path: Path) -> None:
    """``tidal`` shows the warning as one line naming file and line, without Python's source
    line; the run goes on (here to refuse a trace too short to evaluate)."""
    night = local("2024-11-03T00:00:00", 24) + local("2024-11-03T01:00:00", 24)
    path = write(tmp_path / "night.csv", night)
    done = subprocess.run(
        [sys.executable, "-m", "controller", "forecast", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = done.stderr.splitlines()
    folds = [line for line in lines if "the local clock goes back an hour" in line]
    assert len(folds) == 1 and folds[0].startswith("tidal forecast: warning: ")
    assert "night.csv:26: " in folds[0]
    assert not any("warnings.warn(" in line for line in lines)


@pytest.mark.parametrize(
    ("row", "line", "says"),
    [
        pytest.param('2024-01-01T00:10:00,"12', 4, "load '12", id="stray-quote"),
        pytest.param("2024-01-01T00:10:00,1" + "0" * 140_000, 4, "not a CSV row", id="huge-cell"),
        pytest.param("2024-01-01T00:10:00,1,234", 4, "3 cells where the header has 2", id="1,234"),
    ],
)
def test_a_row_the_csv_reader_cannot_split_is_refused_with_its_line(
    tmp_path: Path, row: str, line: int, says: str
) -> None:
    """A stray quote (its cell runs on to the end of the file), a cell past the csv module's
    limit, or a thousands separator that makes a third cell: a TraceFormatError naming the
    line, not a traceback and not a load of 1."""
    rows = ["2024-01-01T00:00:00,10", "2024-01-01T00:05:00,11", row, "2024-01-01T00:15:00,12"]
    path = tmp_path / "bad.csv"
    path.write_text("timestamp,load\n" + "\n".join(rows) + "\n", encoding="utf-8")
    with pytest.raises(TraceFormatError, match=rf"bad\.csv:{line}: {says}"):
        load_trace(path)


def test_a_coarse_trace_resampled_to_minutes_keeps_its_last_sample() -> None:
    """At epoch seconds the minute grid reaches the last 5-minute sample, which it once lost to
    rounding: the replay ran to 23:54 of a trace that ends at 23:55."""
    coarse = LoadSeries(1_704_067_200.0 + 7 * 300.0, 300.0, np.arange(288.0))
    minutes = coarse.resample(60.0)
    assert minutes.end == coarse.end
    assert minutes.values[-1] == coarse.values[-1]


def minutes(count: int) -> list[str]:
    """``count`` per-minute timestamps from 2024-01-01, UTC."""
    first = datetime.fromisoformat("2024-01-01T00:00:00+00:00")
    return [(first + timedelta(minutes=i)).strftime("%Y-%m-%dT%H:%M:%SZ") for i in range(count)]


@pytest.mark.parametrize("newline", ["\n", "\r\n"], ids=["lf", "crlf"])
@pytest.mark.parametrize("line", [2, 300, 3001])
@pytest.mark.parametrize("command", ["backtest", "forecast"])
def test_a_byte_that_is_not_utf8_is_reported_on_its_own_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, line: int, newline: str
) -> None:
    """The csv reader decodes its file a block at a time, so the line it had reached when a
    block would not decode was up to a block's worth of lines early (207 for 300, and 0 for
    the first block): the error names the bad byte's own line."""
    from controller.cli import main

    body = [b"timestamp,load"] + [
        f"{stamp},{100 + i % 7}".encode() for i, stamp in enumerate(minutes(3100))
    ]
    body[line - 1] = body[line - 1].replace(b",", b",\xff", 1)
    path = tmp_path / "latin.csv"
    path.write_bytes(newline.encode().join(body) + newline.encode())
    assert main([command, str(path), "--jobs", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"{path}:{line}: not UTF-8 text (byte 0xff); save the trace as a UTF-8 CSV" in err


@pytest.mark.parametrize("sign", [1, -1], ids=["late", "early"])
def test_millisecond_jitter_in_a_per_minute_trace_is_read_as_minutes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], sign: int
) -> None:
    """Timestamps up to 0.4 s late (or early) make the median step 60.037 s (or 59.963 s): the
    backtest accepted one and refused the other, and tidal forecast refused both. Either is a
    per-minute trace, read as the same minutes as the trace without jitter."""
    from controller.cli import main

    first = datetime.fromisoformat("2024-01-01T00:00:00+00:00")
    loads = [100 + 50 * np.sin(2 * np.pi * i / 1440) for i in range(3 * 1440)]
    clean, jittered = tmp_path / "clean.csv", tmp_path / "jittered.csv"
    for path, jitter in ((clean, 0), (jittered, sign)):
        late = [jitter * (i * 37 % 400) for i in range(len(loads))]
        stamps = [first + timedelta(minutes=i, milliseconds=ms) for i, ms in enumerate(late)]
        body = "".join(f"{t.isoformat()},{y}\n" for t, y in zip(stamps, loads, strict=True))
        path.write_text("timestamp,load\n" + body, encoding="utf-8")
    read, expected = load_trace(jittered), load_trace(clean)
    assert (read.start, read.step, len(read)) == (expected.start, 60.0, len(expected))
    assert np.allclose(read.values, expected.values, atol=0.1)
    assert main(["backtest", str(jittered), "--jobs", "1", "--json", "--policies", "oracle"]) == 0
    argv = ["forecast", str(jittered), "--jobs", "1", "--json", "--models", "seasonal-naive"]
    assert main(argv) == 0
    assert "jittered" in json.loads(capsys.readouterr().out.splitlines()[-1])["traces"]


def _jittered_minutes(path: Path, loads: list[float], sign: int) -> Path:
    """A per-minute trace of ``loads`` from 2024-01-01, each row up to 0.4 s late (or early)."""
    first = datetime.fromisoformat("2024-01-01T00:00:00+00:00")
    stamps = [
        first + timedelta(minutes=i, milliseconds=sign * (i * 37 % 400)) for i in range(len(loads))
    ]
    body = "".join(f"{t.isoformat()},{y:g}\n" for t, y in zip(stamps, loads, strict=True))
    path.write_text("timestamp,load\n" + body, encoding="utf-8")
    return path


@pytest.mark.parametrize("sign", [1, -1], ids=["late", "early"])
def test_a_one_minute_spike_in_a_jittered_per_minute_trace_keeps_its_height(
    tmp_path: Path, sign: int
) -> None:
    """Each timestamp is rounded to the second before the grid is made, so the spike's minute
    is its own load: the grid at the jittered step (60.037 s), interpolated again onto whole
    minutes, took a share of its neighbours' load into it, and some of it into theirs."""
    from controller.backtest import prepare_trace
    from controller.simulator import Scenario

    loads = [100.0] * 600
    loads[300] = 1000.0  # its row is 0.3 s off the minute
    series = load_trace(_jittered_minutes(tmp_path / "spike.csv", loads, sign))
    assert (series.start, series.step) == (datetime(2024, 1, 1, tzinfo=UTC).timestamp(), 60.0)
    assert np.array_equal(series.values, loads)
    minute = prepare_trace(series, Scenario())
    assert minute.values.max() == pytest.approx(10.0 * np.median(minute.values), rel=1e-12)
    assert int(np.argmax(minute.values)) == 300


def test_rows_less_than_a_second_apart_keep_their_timestamps(tmp_path: Path) -> None:
    """Rounding would put two rows on the same second: the timestamps are kept (interpolated
    onto the whole minutes), not reordered or merged."""
    path = _jittered_minutes(tmp_path / "close.csv", [100.0 + i % 7 for i in range(600)], 1)
    lines = path.read_text(encoding="utf-8").splitlines()
    lines.insert(102, "2024-01-01T01:40:00.600000+00:00,150")  # 0.5 s after row 100's 0.1 s
    lines[103] = "2024-01-01T01:40:01.400000+00:00,150"  # that row moved 0.8 s on
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    series = load_trace(path)
    assert (series.start, series.step, len(series)) == (
        datetime(2024, 1, 1, tzinfo=UTC).timestamp(),
        60.0,
        600,
    )
    assert np.isfinite(series.values).all()


@pytest.mark.parametrize(
    ("row", "says"),
    [
        (
            999,
            ":1001: timestamp 2204-01-01T16:39:00Z is 65,743 days after the row before it "
            "(2024-01-01T16:38:00Z, line 1000)",
        ),
        (
            1,
            ":3: timestamp 2204-01-01T00:01:00Z is 65,743 days after the row before it "
            "(2024-01-01T00:00:00Z, line 2)",
        ),
        (
            2,
            ":4: timestamp 2204-01-01T00:02:00Z is 65,743 days after the row before it "
            "(2024-01-01T00:01:00Z, line 3)",
        ),
    ],
    ids=["row-1000", "row-2", "row-3"],
)
def test_a_mistyped_year_in_the_middle_is_named_as_the_date_it_is(
    tmp_path: Path, row: int, says: str
) -> None:
    """2204 for 2024 in a row puts every row after it out of order: the rows before it would
    span a grid of a hundred million minutes, and that is what is named, at its line, rather
    than the row after it as out of order. In the second or third row too, where the far row is
    half of those read and their median step is no step of the trace."""
    stamps = minutes(3000)
    stamps[row] = "2204" + stamps[row][4:]
    path = tmp_path / "typo.csv"
    path.write_text(
        "timestamp,load\n" + "".join(f"{s},{100 + i % 7}\n" for i, s in enumerate(stamps)),
        encoding="utf-8",
    )
    with pytest.raises(TraceFormatError) as caught:
        load_trace(path)
    assert str(caught.value).startswith(f"{path}{says}")


def test_a_short_trace_with_an_outage_is_no_mistyped_date(tmp_path: Path) -> None:
    """Thirty one-second rows, two hours out, thirty more: 99% of the grid is the gap, but a
    grid of 7,260 seconds costs nothing, so the trace is read, its gap missing."""
    start = datetime(2024, 1, 1, tzinfo=UTC).timestamp()
    seconds = [*range(30), *range(7200, 7230)]
    path = tmp_path / "outage.csv"
    path.write_text(
        "timestamp,load\n"
        + "".join(
            f"{datetime.fromtimestamp(start + s, UTC).strftime('%Y-%m-%dT%H:%M:%SZ')},5\n"
            for s in seconds
        ),
        encoding="utf-8",
    )
    series = load_trace(path)
    assert (series.step, len(series), int(np.isfinite(series.values).sum())) == (1.0, 7230, 60)


@pytest.mark.parametrize(
    ("step", "grid"),
    [
        (60.0, 60.0),
        (300.0, 300.0),
        (1800.0, 1800.0),
        (75.0, 75.0),
        (150.0, 150.0),
        (15.0, 15.0),
        (59.4, 30.0),
        (61.0, 60.0),
        (45.0, 30.0),
        (7.0, 6.0),
        (90.0, 60.0),
        (120.0, 60.0),
        (299.0, 60.0),
        (0.7, 0.7),
        (0.5, 0.5),
        (7.5, 7.5),
        (25.0, 20.0),
        (50.0, 30.0),
        (100.0, 100.0),
    ],
)
def test_a_step_that_does_not_divide_five_minutes_is_put_on_one_that_does(
    step: float, grid: float
) -> None:
    """A step dividing a minute, or from a minute up dividing the 5-minute fit buckets, or
    that long or longer, is kept; any other is the longest step dividing a minute no longer
    than it, or a minute (under a second: kept, and refused where it is averaged)."""
    from forecasts.series import grid_step

    assert grid_step(step) == grid


def _spaced(path: Path, step: float, count: int) -> tuple[Path, np.ndarray]:
    """``count`` rows ``step`` seconds apart from 2024-01-01 (timestamps to the millisecond),
    a daily cycle of loads; the loads are returned with the file."""
    first = datetime.fromisoformat("2024-01-01T00:00:00+00:00")
    seconds = step * np.arange(count)
    loads = 100.0 + 50.0 * np.sin(2 * np.pi * seconds / 86400.0)
    body = "".join(
        f"{(first + timedelta(seconds=float(s))).isoformat(timespec='milliseconds')},{float(y)!r}\n"
        for s, y in zip(seconds, loads, strict=True)
    )
    path.write_text("timestamp,load\n" + body, encoding="utf-8")
    return path, loads


@pytest.mark.parametrize(
    ("step", "grid"), [(59.4, 30.0), (45.0, 30.0), (25.0, 20.0), (120.0, 60.0)]
)
def test_samples_a_minute_cannot_divide_are_replayed_and_forecast(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], step: float, grid: float
) -> None:
    """A collector a little fast (rows 59.4 s apart), or one every 45 s or 2 minutes: each was
    refused, by the backtest as 'samples 59s apart do not divide the 60s buckets' and by tidal
    forecast as a step that does not divide five minutes. The samples are interpolated onto a
    step that divides both, and the load between them is a line."""
    from controller.cli import main

    path, loads = _spaced(tmp_path / "spaced.csv", step, round(3 * 86400 / step))
    series = load_trace(path)
    assert (series.start, series.step) == (datetime(2024, 1, 1, tzinfo=UTC).timestamp(), grid)
    at = np.arange(len(series)) * grid
    assert series.values.max() <= loads.max() + 1e-9
    # Each timestamp to the second first, as for millisecond jitter (59.4 s is within it of 59).
    sampled = np.round(step * np.arange(loads.size))
    assert np.allclose(series.values, np.interp(at, sampled, loads))
    argv = ["backtest", str(path), "--jobs", "1", "--json", "--policies", "oracle"]
    assert main(argv) == 0
    argv = ["forecast", str(path), "--jobs", "1", "--json", "--models", "seasonal-naive"]
    assert main(argv) == 0
    assert "spaced" in json.loads(capsys.readouterr().out.splitlines()[-1])["traces"]


def test_samples_under_a_second_that_divide_no_minute_are_refused_naming_the_step(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No step under a second is interpolated onto (each sample would be a line on its own):
    a 0.7 s step is refused with its step, as one line."""
    from controller.cli import main

    path, _ = _spaced(tmp_path / "fine.csv", 0.7, 6000)
    assert main(["backtest", str(path), "--jobs", "1", "--json", "--policies", "oracle"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "samples 0.7s apart do not divide the 60s buckets" in err
