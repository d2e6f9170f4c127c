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


@pytest.mark.parametrize(
    ("argv", "named"),
    [(["--days", "0.1"], "--days"), (["--start", "yesterday"], "--start")],
    ids=["too-short", "bad-start"],
)
def test_demo_refuses_bad_options(
    argv: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad option is named and the exit code is 2, before any work."""
    assert main(["demo", *argv]) == 2
    assert named in capsys.readouterr().out
