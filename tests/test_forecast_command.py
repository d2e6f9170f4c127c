"""``tidal forecast``: the JSON report, the table, the plot, and one-line errors with exit 2."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from controller import forecast_command
from tests.forecast_series import seasonal


def _run(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    forecast_command.add_arguments(parser)
    return forecast_command.run(parser.parse_args(list(argv)))


@pytest.fixture(scope="module")
def trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("traces") / "synthetic-5min.csv"
    history = seasonal(days=8)
    lines = ["timestamp,load"]
    for when, load in zip(history.times(), history.values, strict=True):
        stamp = datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        lines.append(f"{stamp},{load:.3f}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_json_prints_exactly_the_report(trace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--json prints one JSON object on stdout, keyed by the trace's stem."""
    assert _run(str(trace), "--json", "--models", "seasonal-naive", "--jobs", "1") == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) == {"horizon_minutes", "quantile", "traces"}
    assert list(report["traces"]) == ["synthetic-5min"]
    assert set(report["traces"]["synthetic-5min"]["models"]["seasonal-naive"]) == {
        "mase",
        "coverage",
        "pinball",
        "fit_seconds",
    }


def test_horizon_and_quantile_options_reach_the_report(
    trace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--horizon 1h and --quantile 0.9 are reported back."""
    argv = [str(trace), "--json", "--models", "seasonal-naive", "--jobs", "1", "--horizon", "1h"]
    assert _run(*argv, "--quantile", "0.9") == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["horizon_minutes"], report["quantile"]) == (60, 0.9)


def test_table_and_plot_without_json(
    trace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --json a table names each model, and --plot writes a PNG."""
    plot = tmp_path / "forecast.png"
    assert _run(str(trace), "--models", "seasonal-naive", "--jobs", "1", "--plot", str(plot)) == 0
    assert "seasonal-naive" in capsys.readouterr().out
    assert plot.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param("time,load\n", ":1:", id="bad-header"),
        pytest.param(
            "timestamp,load\n2020-01-01T00:00:00Z,1\nnot-a-time,2\n", ":3:", id="bad-timestamp"
        ),
        pytest.param(
            "timestamp,load\n2020-01-01T00:00:00Z,1\n2020-01-01T00:05:00Z,x\n", ":3:", id="bad-load"
        ),
    ],
)
def test_malformed_csv_is_one_line_naming_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, expected: str
) -> None:
    """A malformed trace exits 2 with one line naming the file and the line, no traceback."""
    path = tmp_path / "bad.csv"
    path.write_text(content)
    assert _run(str(path), "--json") == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert f"{path}{expected}" in captured.err
    assert "Traceback" not in captured.err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        pytest.param(["missing.csv"], "missing.csv", id="missing-file"),
        pytest.param(["{trace}", "--horizon", "soon"], "--horizon", id="bad-horizon"),
        pytest.param(["{trace}", "--models", "prophet"], "'prophet'", id="unknown-model"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(
    trace: Path, capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    """A missing file, a bad duration or an unknown model exit 2 with a one-line error."""
    assert _run(*[a.format(trace=trace) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err
