"""``tidal demo`` end to end on its bundled trace, shortened to a quarter of a day."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

from controller.cli import main
from controller.demo import REGIONS


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, str, Path]:
    plot = tmp_path_factory.mktemp("demo") / "demo.png"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COLUMNS", "200")  # rich wraps at the terminal's width
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            code = main(["demo", "--days", "0.25", "--every", "2", "--plot", str(plot)])
    return code, buffer.getvalue(), plot


def test_demo_replays_every_region_and_compares(demo_run: tuple[int, str, Path]) -> None:
    """Each region shows the planner's decisions, then one table row per region and policy."""
    code, out, _ = demo_run
    assert code == 0
    for region, _ahead in REGIONS:
        assert f"{region} (its day runs" in out
        for policy in ("tidal", "hpa", "oracle"):
            assert re.search(rf"{region}\s*│\s*{policy}\s*│", out), (region, policy)
    # A decision line: the load the planner saw in thousands of connections, then the replicas.
    decisions = re.findall(
        r"load (\d+\.\dk|-)\s+peak (\d+\.\dk|-) → physical (\d+), cloud (\d+), reserved (\d+)", out
    )
    assert len(decisions) >= 2 * len(REGIONS)
    for _load, _peak, physical, cloud, reserved in decisions:
        assert int(physical) <= 60  # the default scenario's physical pool
        assert int(reserved) >= int(cloud)
    assert "Across regions, tidal leaves" in out


def test_demo_oracle_serves_everything(demo_run: tuple[int, str, Path]) -> None:
    """The comparison comes from the simulation: the oracle's rows show no unserved load."""
    _, out, _ = demo_run
    rows = re.findall(r"│\s*oracle\s*│\s*([\d.]+)%\s*│\s*(\d+)\s*│", out)
    assert len(rows) == len(REGIONS)
    assert all(float(share) == 0.0 and int(minutes) == 0 for share, minutes in rows)


def test_demo_writes_its_plot(demo_run: tuple[int, str, Path]) -> None:
    _, out, plot = demo_run
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"Plot: {plot.resolve()}" in out


#: What the bundled trace holds, which a --start outside it is told.
AVAILABLE = "the bundled trace runs from 2014-07-01 00:00 to 2015-01-16 23:30"


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--days", "0.1"], "--days"),
        (["--start", "yesterday"], "--start"),
        (["--start", "2030-01-01"], f"--start 2030-01-01: {AVAILABLE}"),
        (["--start", "2014-06-30"], f"--start 2014-06-30: {AVAILABLE}"),
        (
            ["--start", "2015-01-10", "--days", "5"],
            f"{AVAILABLE}: for 14 days of history and 5 days replayed, --start can be from "
            "2014-07-01 00:00 to 2014-12-28 13:00",
        ),
        (["--start", "2015-01-01", "--days", "3"], "--start can be from"),
        (["--model", "bogus"], "--model bogus: spec.forecast"),
        (["--plot", "/nonexistent/x.png"], "--plot /nonexistent/x.png: no folder /nonexistent"),
        (["--plot", "out.txt"], "--plot out.txt: the plot is a PNG, not .txt"),
        (["--every", "nan"], "--every must be a positive number of hours, got nan"),
        (["--every", "inf"], "--every must be a positive number of hours, got inf"),
    ],
    ids=[
        "too-short",
        "bad-start",
        "after-the-trace",
        "before-the-trace",
        "past-the-end",
        "partly-past-the-end",
        "unknown-model",
        "no-folder",
        "not-png",
        "every-nan",
        "every-inf",
    ],
)
def test_demo_refuses_bad_options(
    argv: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad option is named on stderr, in one line, and the exit code is 2, before any work."""
    assert main(["demo", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("tidal demo: ") and captured.err.count("\n") == 1
    assert named in captured.err
    assert "Tidal demo" not in captured.out


def test_demo_plot_that_fails_keeps_the_comparison(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The comparison is printed before the plot is drawn; a failing plot is one line, exit 2."""

    def broken(*_args: object, **_kwargs: object) -> Path:
        raise OSError("disk full")

    monkeypatch.setattr("controller.plotting.plot_backtest", broken)
    monkeypatch.setenv("COLUMNS", "200")
    plot = tmp_path / "demo.png"
    assert main(["demo", "--days", "0.25", "--every", "6", "--plot", str(plot)]) == 2
    captured = capsys.readouterr()
    assert "Across regions, tidal leaves" in captured.out
    assert captured.err == (
        f"tidal demo: --plot {plot}: the comparison stands, the plot failed: disk full\n"
    )
