"""``tidal demo`` in detail: the view of the bundled trace each region replays, the decision
lines at every --every hours and the load they show, a table and a summary that are the
simulation's scores, the bounds of its options, and its errors printed as they are written."""

from __future__ import annotations

import argparse
import contextlib
import io
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from controller import demo
from controller.backtest import summary
from controller.cli import main
from controller.simulator import Scenario
from forecasts.base import DAY
from forecasts.series import LoadSeries, parse_timestamp

#: The regions the demo replays and how many hours each one's day runs ahead of New York's.
REGIONS = [("us-east", 0.0), ("eu-west", 6.0), ("ap-south", 10.5)]
START = "2014-11-01T00:00:00"  # the default --start
DAYS = 0.25
EVERY_MINUTES = 120  # --every 2


class Reached(Exception):
    """Raised by a stand-in once the demo got past its checks to the replay."""


def _clock(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%a %H:%M")


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One short demo, with what it handed to the trace preparation, the simulator and the
    report recorded on the way (the real ones still do the work)."""
    seen: dict[str, Any] = {"raw": [], "loads": [], "simulated": [], "runs": None, "result": None}
    real_prepare, real_simulate, real_report = demo.prepare_trace, demo.simulate, demo.report

    def prepare(raw: LoadSeries, scenario: Scenario) -> LoadSeries:
        seen["raw"].append(raw)
        load = real_prepare(raw, scenario)
        seen["loads"].append(load)
        return load

    def simulate(load: LoadSeries, **kwargs: Any) -> Any:
        results = real_simulate(load, **kwargs)
        seen["simulated"].append((load, kwargs["score_from"], results))
        return results

    def report(runs: list[Any], scenario: Scenario, *, model: str) -> dict[str, Any]:
        seen["runs"] = runs
        seen["result"] = real_report(runs, scenario, model=model)
        return seen["result"]

    plot = tmp_path_factory.mktemp("demo-edges") / "demo.png"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COLUMNS", "200")
        patch.setattr(demo, "prepare_trace", prepare)
        patch.setattr(demo, "simulate", simulate)
        patch.setattr(demo, "report", report)
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            code = main(["demo", "--days", str(DAYS), "--every", "2", "--plot", str(plot)])
    seen["code"], seen["out"] = code, buffer.getvalue()
    return seen


def _sections(out: str) -> dict[str, str]:
    """Each region's part of the output, by the region its rule names."""
    parts = re.split(r"─+ (\S+) \(its day runs ([\d.]+) h ahead of New York\) ─+\n", out)
    return {parts[i]: parts[i + 2] for i in range(1, len(parts) - 2, 3)}


def test_the_header_describes_the_run(recorded: dict[str, Any]) -> None:
    """The first lines say what is replayed and the scenario each region runs on."""
    assert recorded["code"] == 0
    s = Scenario()
    assert recorded["out"].startswith(
        "Tidal demo: 3 regions of New York taxi demand read as gateway load, 14 days of "
        f"history, {DAYS:g} days replayed minute by minute.\n"
        f"Each region: physical pool {s.physical_capacity} replicas, cloud nodes of "
        f"{s.replicas_per_node} replicas ready {s.node_lead_time / 60:.0f} min after request"
    )
    assert re.search(r"\nFinished in \d+ s\.\n$", recorded["out"])


def test_each_region_replays_the_trace_shifted_by_its_hours(recorded: dict[str, Any]) -> None:
    """A region whose day runs H hours ahead sees at each time what New York saw H hours
    later: 14 days of history and the replayed days from --start, in the regions' order."""
    trace = demo._bundled_trace()
    start = parse_timestamp(START)
    sections = _sections(recorded["out"])
    assert list(sections) == [region for region, _ahead in REGIONS]
    assert len(recorded["raw"]) == len(REGIONS)
    for (region, ahead), raw in zip(REGIONS, recorded["raw"], strict=True):
        assert f"{region} (its day runs {ahead:g} h ahead of New York)" in recorded["out"]
        assert raw.step == trace.step
        assert (raw.start, raw.end) == (start, start + (14 + DAYS) * DAY), region
        first = round((start + ahead * 3600 - trace.start) / trace.step)
        assert list(raw.values) == list(trace.values[first : first + len(raw)]), region


def test_the_last_fourteen_days_are_history_and_the_rest_is_scored(
    recorded: dict[str, Any],
) -> None:
    """The simulator scores from 14 days into each region's load, and the report is given
    each region's replay under its name."""
    assert len(recorded["simulated"]) == len(REGIONS)
    for (load, score_from, _results), prepared in zip(
        recorded["simulated"], recorded["loads"], strict=True
    ):
        assert load is prepared
        assert score_from == load.start + 14 * DAY
    runs = recorded["runs"]
    assert [run.name for run in runs] == [region for region, _ahead in REGIONS]
    for run, (load, score_from, results) in zip(runs, recorded["simulated"], strict=True):
        assert (run.load, run.score_from, run.results) == (load, score_from, results)


def test_a_decision_line_every_few_hours_and_at_the_end(recorded: dict[str, Any]) -> None:
    """With --every 2, a region prints the planner's decision at every two hours of replay
    and at its last minute, each with the load the planner saw (one minute late) and why."""
    delay = Scenario().metric_delay
    line = re.compile(
        r"  (\w{3} \d\d:\d\d)  load (\S+)  peak (\S+) → physical \d+, cloud \d+, "
        r"reserved \d+\n {13}\w+: \S.*\n"
    )
    sections = _sections(recorded["out"])
    for (region, _ahead), (load, score_from, _results) in zip(
        REGIONS, recorded["simulated"], strict=True
    ):
        total = round((load.end - score_from) / 60) + 1
        shown = [d for d in range(1, total + 1) if d % EVERY_MINUTES == 0 or d == total]
        assert len(shown) == 4  # 120, 240, 360 and the last of 361 minutes
        decisions = line.findall(sections[region])
        assert [clock for clock, _load, _peak in decisions] == [
            _clock(score_from + (d - 1) * 60) for d in shown
        ], region
        for d, (_when, seen, _peak) in zip(shown, decisions, strict=True):
            now = score_from + (d - 1) * 60
            value = load.values[round((now - delay - load.start) / load.step)]
            assert seen == f"{value / 1000:.1f}k", (region, d)


def test_the_table_and_the_summary_are_the_simulations_scores(recorded: dict[str, Any]) -> None:
    """Under its headings, one row per region and policy, in order, with the report's figures
    for it, a rule between regions; then the summary line of the same report."""
    result = recorded["result"]
    out = recorded["out"]
    assert re.search(
        r"┃ region\s*┃ policy\s*┃ unserved load ┃ minutes short ┃ cloud replica hours ┃ "
        r"replicas removed ┃",
        out,
    )
    assert len(re.findall(r"^├[─┼]+┤$", out, re.MULTILINE)) == len(REGIONS) - 1
    row = re.compile(r"│ (\S+)\s*│ (\w+)\s*│\s*([\d.]+%) │\s*(\d+) │\s*(\d+) │\s*(\d+) │")
    expected = [
        (
            region,
            name,
            f"{m['unserved_fraction']:.4%}",
            str(m["underprovisioned_minutes"]),
            f"{m['cloud_replica_hours']:.0f}",
            str(m["replicas_removed"]),
        )
        for region, policies in result["traces"].items()
        for name, m in policies.items()
    ]
    assert [(region, name) for region, name, *_ in expected] == [
        (region, name) for region, _ahead in REGIONS for name in ("tidal", "hpa", "oracle")
    ]
    assert row.findall(out) == expected
    # The figures are not the same for every region (the shift matters).
    assert len({cells[2:] for cells in expected if cells[1] == "tidal"}) > 1
    s = summary(result)
    assert (
        f"Across regions, tidal leaves {s['unserved_ratio_geomean']:.3f}× the unserved load of "
        f"the HPA for {s['cloud_hours_ratio_geomean']:.2f}× its cloud hours, and removes "
        f"{s['tidal_replicas_removed']} replicas against the HPA's "
        f"{s['hpa_replicas_removed']}."
    ) in out


def test_on_80_columns_the_headings_wrap_and_nothing_is_cut(recorded: dict[str, Any]) -> None:
    """A terminal of 80 columns, the usual: each heading is there whole over a few lines, and
    no heading or figure ends in an ellipsis."""
    from rich.console import Console

    console = Console(record=True, width=80)
    demo._print_comparison(console, recorded["result"])
    lines = console.export_text().splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "…" not in "\n".join(lines)
    rows = [line[1:-1].split("┃") for line in lines if line.startswith("┃")]
    heads = [" ".join(c.strip() for c in column if c.strip()) for column in zip(*rows, strict=True)]
    assert heads == [
        "region",
        "policy",
        "unserved load",
        "minutes short",
        "cloud replica hours",
        "replicas removed",
    ]


def test_the_defaults_are_those_the_help_gives(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without options: three days from 2014-11-01 on the auto model, a decision line every
    three hours, the plot in ./tidal-demo.png; the replay gets 14 + 3 days of each region."""
    parser = argparse.ArgumentParser()
    demo.add_arguments(parser)
    args = parser.parse_args([])
    assert (args.days, args.start, args.model, args.plot, args.every) == (
        3.0,
        START,
        "auto",
        "tidal-demo.png",
        3.0,
    )
    raws: list[LoadSeries] = []

    def prepare(raw: LoadSeries, scenario: Scenario) -> LoadSeries:
        raws.append(raw)
        raise Reached

    monkeypatch.setattr(demo, "prepare_trace", prepare)
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(Reached):
        main(["demo"])
    assert raws[0].end - raws[0].start == 17 * DAY
    assert "14 days of history, 3 days replayed" in capsys.readouterr().out


def _stop_at_the_replay(monkeypatch: pytest.MonkeyPatch) -> None:
    def prepare(raw: LoadSeries, scenario: Scenario) -> LoadSeries:
        raise Reached

    monkeypatch.setattr(demo, "prepare_trace", prepare)


@pytest.mark.parametrize(
    "argv",
    [
        ["--days", "0.25"],
        ["--days", "30"],
        ["--every", "0.5"],
        ["--start", "2014-07-01T00:00:00"],
        ["--start", "2014-12-30T13:00:00"],
    ],
    ids=["fewest-days", "most-days", "half-an-hour", "earliest-start", "latest-start"],
)
def test_options_at_their_bounds_are_taken(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The bounds themselves are valid: the demo goes on to replay the regions."""
    _stop_at_the_replay(monkeypatch)
    with pytest.raises(Reached):
        main(["demo", *argv])
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--days", "30.5"], "--days must be between 0.25 and 30"),
        (["--days", "0.24"], "--days must be between 0.25 and 30"),
        (["--every", "0"], "--every must be a positive number of hours, got 0"),
        (["--every", "-1"], "--every must be a positive number of hours, got -1"),
        (
            ["--start", "2014-12-30T13:30:00"],
            "--start can be from 2014-07-01 00:00 to 2014-12-30 13:00",
        ),
        (["--start", "2014-06-30T23:30:00"], "--start can be from 2014-07-01 00:00 to"),
        (
            ["--start", "9999-12-31T23:30:00-01:00"],
            "--start '9999-12-31T23:30:00-01:00' is outside the years 1 to 9999 in UTC",
        ),
    ],
    ids=[
        "days-above",
        "days-below",
        "every-zero",
        "every-negative",
        "start-after-latest",
        "start-before-earliest",
        "start-in-year-10000-in-utc",
    ],
)
def test_options_past_their_bounds_are_refused(
    argv: list[str], says: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Just past a bound, the option is refused in one line on stderr, exit 2, no replay."""
    _stop_at_the_replay(monkeypatch)
    assert main(["demo", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tidal demo: ") and err.count("\n") == 1
    assert says in err


@pytest.mark.parametrize(
    ("every", "minutes"),
    [
        # Shorter than a minute: a decision line every minute, not a division by zero.
        pytest.param("0.001", [0, 1, 2, 3], id="tiny"),
        # 1e307 hours is finite, but its minutes are no integer: a line at the replay's end
        # only, not an OverflowError.
        pytest.param("1e307", [3], id="past-the-replay"),
    ],
)
def test_every_prints_a_decision_line_at_the_minutes_it_names(
    every: str,
    minutes: list[int],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The first region's replay is cut to its first four scored minutes; --every picks the
    minutes that get a decision line."""
    real_simulate = demo.simulate
    seen: list[float] = []

    def simulate(load: LoadSeries, *, score_from: float, **kwargs: Any) -> Any:
        seen.append(score_from)
        real_simulate(load.until(score_from + 3 * 60), score_from=score_from, **kwargs)
        raise Reached

    monkeypatch.setattr(demo, "simulate", simulate)
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(Reached):
        main(["demo", "--every", every, "--days", "0.25"])
    clocks = re.findall(r"  (\w{3} \d\d:\d\d)  load ", capsys.readouterr().out)
    assert clocks == [_clock(seen[0] + 60 * minute) for minute in minutes]


def test_a_plot_refused_by_the_plotter_keeps_the_comparison(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A ValueError from drawing the plot is reported as an OSError is: one line, exit 2."""

    def refuse(*_args: object, **_kwargs: object) -> Path:
        raise ValueError("nothing to draw")

    monkeypatch.setattr(demo, "simulate", lambda *_args, **_kwargs: {})
    monkeypatch.setattr("controller.plotting.plot_backtest", refuse)
    plot = tmp_path / "demo.png"
    assert main(["demo", "--days", "0.25", "--plot", str(plot)]) == 2
    captured = capsys.readouterr()
    assert "Across regions, tidal leaves" in captured.out
    assert captured.err == (
        f"tidal demo: --plot {plot}: the comparison stands, the plot failed: nothing to draw\n"
    )


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--start", "[red]noon"], "--start '[red]noon' is not an ISO-8601 timestamp"),
        (["--model", "[bold]x"], "--model [bold]x: "),
    ],
    ids=["markup-in-start", "markup-in-model"],
)
def test_an_error_is_printed_as_written(
    argv: list[str], says: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Square brackets in what the user typed are shown, not taken for rich markup; the line
    is plain text where colours are on, and a narrow terminal does not wrap it."""
    monkeypatch.setenv("COLUMNS", "30")
    monkeypatch.setenv("FORCE_COLOR", "1")
    assert main(["demo", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "\x1b" not in err
    assert err.startswith(f"tidal demo: {says}")
