"""The backtest picture: what ``plot_backtest`` draws (stacked ready capacity, the paid-for line,
the load, the forecast's upper quantile, the unserved load, titles, axes, legend, the PNG) and
which names ``plot_path`` accepts for it."""

from __future__ import annotations

import itertools
import os
import shutil
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.colors import to_rgba

from controller.backtest import PER_REPLICA, TraceRun
from controller.plotting import CLOUD, LOAD, PHYSICAL, plot_backtest, plot_path, save_png
from controller.simulator import PolicyResult
from forecasts.series import LoadSeries

START = 1577836800.0  # 2020-01-01T00:00:00Z, a midnight
DAY = 86400.0

# ---------------------------------------------------------------------------------------------
# plot_path


@pytest.mark.parametrize(
    ("name", "written"),
    [
        pytest.param("pic", "pic.png", id="no-suffix-gets-png"),
        pytest.param("pic.png", "pic.png", id="png"),
        pytest.param("pic.PNG", "pic.PNG", id="upper-case-png"),
        pytest.param("a.b", None, id="other-suffix"),
    ],
)
def test_plot_path_names_the_png_written(tmp_path: Path, name: str, written: str | None) -> None:
    """A name without a suffix gets ``.png``, a ``.png`` in any case is kept as given, and any
    other suffix is refused, naming it."""
    if written is None:
        with pytest.raises(ValueError, match=r"^the plot is a PNG, not \.b: name the file \.png$"):
            plot_path(tmp_path / name)
    else:
        assert plot_path(tmp_path / name) == tmp_path / written
        assert plot_path(str(tmp_path / name)) == tmp_path / written


@pytest.mark.parametrize("text", ["", "   ", "\t"], ids=["empty", "spaces", "tab"])
def test_plot_path_refuses_a_blank_name(text: str) -> None:
    """A name of nothing or of blanks names no file."""
    with pytest.raises(ValueError, match=r"^names no file: give the \.png file to write$"):
        plot_path(text)


def test_plot_path_refuses_folders(tmp_path: Path) -> None:
    """A folder, existing or only named by a trailing slash, is refused as such; so is a name
    whose ``.png`` is an existing folder."""
    with pytest.raises(ValueError, match=r"^is a folder: give the \.png file to write"):
        plot_path(tmp_path)
    with pytest.raises(ValueError, match=r"^names a folder: give the \.png file to write"):
        plot_path(f"{tmp_path}/new/")
    (tmp_path / "pic.png").mkdir()
    with pytest.raises(ValueError, match=rf"^{tmp_path / 'pic.png'} is a folder$"):
        plot_path(tmp_path / "pic")


def test_plot_path_refuses_a_missing_folder(tmp_path: Path) -> None:
    """The folder the plot goes in must exist: it is not created."""
    with pytest.raises(ValueError, match=rf"^no folder {tmp_path / 'missing'}$"):
        plot_path(tmp_path / "missing" / "pic.png")
    assert not (tmp_path / "missing").exists()


def _verdict_as(uid: int | None, path: Path) -> str:
    """What ``plot_path`` says of ``path`` ("accepted", or its error), asked by this process, or
    by a child of it that has dropped to ``uid`` first."""
    if uid is None:
        try:
            plot_path(path)
        except ValueError as error:
            return str(error)
        return "accepted"
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child, reported through the pipe
        os.close(read)
        try:
            os.setgid(uid)
            os.setuid(uid)
            plot_path(path)
            said = "accepted"
        except ValueError as error:
            said = str(error)
        except BaseException as error:  # the parent reports whatever it was
            said = f"{type(error).__name__}: {error}"
        os.write(write, said.encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        said = pipe.read().decode()
    os.waitpid(child, 0)
    return said


@pytest.fixture
def shared_folder(tmp_path: Path) -> Iterator[Path]:
    """A folder every user may enter: ``tmp_path`` for a user, a fresh one in the system's
    temporary folder for root (pytest keeps root's own folders to root)."""
    if os.geteuid() != 0:
        yield tmp_path
        return
    folder = Path(tempfile.mkdtemp(prefix="tidal-plot-"))
    folder.chmod(0o755)
    if any(parent.stat().st_mode & 0o001 == 0 for parent in folder.parents):
        shutil.rmtree(folder)
        pytest.skip(f"{folder.parent} is not open to other users, so no user but root can test")
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_plot_path_refuses_a_folder_it_cannot_write_in(shared_folder: Path) -> None:
    """A folder without write permission is refused before any replay, and the same folder is
    accepted once it may be written in. Root may write in any folder, so as root the check runs
    as ``nobody`` (uid 65534)."""
    uid = 65534 if os.geteuid() == 0 else None
    folder = shared_folder / "locked"
    folder.mkdir(mode=0o555)
    folder.chmod(0o555)  # mkdir's mode is cut by the umask
    try:
        refused = f"cannot write in {folder}: Permission denied"
        assert _verdict_as(uid, folder / "pic.png") == refused
        folder.chmod(0o777)
        assert _verdict_as(uid, folder / "pic.png") == "accepted"
    finally:
        folder.chmod(0o700)


def test_plot_path_tries_the_folder_as_the_write_will(tmp_path: Path) -> None:
    """The folder is tried by creating a file in it, which a permission check does not do:
    as root, ``os.access`` says yes in ``/sys``, where no file can be created. The file tried
    is removed."""
    if not Path("/sys").is_dir():
        pytest.skip("no /sys here")
    with pytest.raises(ValueError, match=r"^cannot write in /sys: "):
        plot_path("/sys/tidal.png")
    assert plot_path(tmp_path / "pic.png") == tmp_path / "pic.png"
    assert list(tmp_path.iterdir()) == []


def _figure() -> Any:
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [1, 0])
    return fig


def test_a_plot_replaces_the_old_one_whole_keeping_its_mode(tmp_path: Path) -> None:
    """A new picture takes the old one's place in one rename, with its permission bits, and
    leaves no temporary file beside it."""
    out = tmp_path / "pic.png"
    out.write_bytes(b"old")
    out.chmod(0o640)
    fig = _figure()
    try:
        save_png(fig, out)
    finally:
        plt.close(fig)
    assert out.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert out.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["pic.png"]


def test_a_failed_plot_leaves_the_old_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write that fails part way (a full disk, a file size limit) leaves the picture that was
    there, not the first bytes of a new one, and removes what it wrote."""
    out = tmp_path / "pic.png"
    fig = _figure()
    try:
        save_png(fig, out)
        before = out.read_bytes()

        def fails(target: Any, **_: Any) -> None:
            target.write(b"\x89PNG\r\n\x1a\n cut short")
            raise OSError(27, "File too large")

        monkeypatch.setattr(fig, "savefig", fails)
        with pytest.raises(OSError, match="File too large"):
            save_png(fig, out)
    finally:
        plt.close(fig)
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["pic.png"]


# ---------------------------------------------------------------------------------------------
# plot_backtest


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """The figures plot_backtest draws, kept open to look at and closed afterwards."""
    figures: list[Any] = []
    monkeypatch.setattr(plt, "close", figures.append)
    yield figures
    monkeypatch.undo()
    for figure in figures:
        plt.close(figure)


def _result(
    phys: list[float],
    cloud: list[float],
    nodes: list[float],
    upper: list[float] | None = None,
) -> PolicyResult:
    return PolicyResult(
        "p",
        np.asarray(phys, dtype=float),
        np.asarray(cloud, dtype=float),
        np.asarray(nodes, dtype=float),
        np.zeros(len(phys)),
        forecast_upper=None if upper is None else np.asarray(upper, dtype=float),
    )


def _flat_run(name: str, n: int, *, step: float = 60.0, level: float = 5.0) -> TraceRun:
    """``n`` scored samples ``step`` apart from START + step, all served."""
    load = LoadSeries(START, step, np.full(n + 1, level))
    flat = _result([level] * n, [0.0] * n, [0.0] * n)
    return TraceRun(name, load, START, {"tidal": flat}, 1.0)


#: North is short of capacity at two minutes (load 9 against 6, load 5 against 3 for hpa); south
#: serves everything. Tidal has a forecast, hpa has none.
LOAD_VALUES = [0.0, 3, 4, 6, 9, 5, 2, 1, 1]
NORTH_TIDAL = _result(
    [3, 3, 4, 4, 4, 4, 2, 2],
    [0, 1, 1, 2, 2, 1, 0, 0],
    [0, 1, 1, 1, 1, 1, 0, 0],
    [3, 4, 5, 6, 6, 5, 3, 2],
)
NORTH_HPA = _result([3] * 8, [0] * 8, [0] * 8)
SOUTH = _result([9] * 8, [0] * 8, [0] * 8, [9] * 7)  # a forecast of the wrong length is not drawn


def _runs(scale: float = 1.0) -> list[TraceRun]:
    load = LoadSeries(START, 60.0, np.array(LOAD_VALUES) * scale)
    north = TraceRun("north", load, START, {"tidal": NORTH_TIDAL, "hpa": NORTH_HPA}, 1.0)
    south = TraceRun("south", load, START, {"tidal": SOUTH, "hpa": SOUTH}, 1.0, 4)
    return [north, south]


def _minutes(first: int, n: int, step: float = 60.0) -> Any:
    return np.array([int((START + (first + i) * step) * 1000) for i in range(n)], "datetime64[ms]")


def _lines(ax: Any) -> dict[str, Any]:
    return {line.get_label(): line for line in ax.get_lines()}


def _areas(ax: Any) -> dict[str, Any]:
    return {area.get_label(): area for area in ax.collections}


def _heights(area: Any) -> set[float]:
    (path,) = area.get_paths()
    return {float(y) for y in path.vertices[:, 1]}


def test_one_panel_per_trace_and_policy_titled_by_both(tmp_path: Path, drawn: list[Any]) -> None:
    """A row per trace, a column per policy in the first trace's order, each panel titled
    ``trace: policy``; only the first column says its unit; the figure is closed once saved."""
    assert plot_backtest(_runs(), str(tmp_path / "p.png"), per_replica=1.0) == tmp_path / "p.png"
    (figure,) = drawn
    assert [ax.get_title() for ax in figure.axes] == [
        "north: tidal",
        "north: hpa",
        "south: tidal",
        "south: hpa",
    ]
    assert {ax.title.get_fontsize() for ax in figure.axes} == {9.0}
    assert [ax.get_ylabel() for ax in figure.axes] == ["replicas", "", "replicas", ""]


def test_ready_capacity_is_stacked_physical_under_cloud(tmp_path: Path, drawn: list[Any]) -> None:
    """Physical ready replicas fill from zero, cloud ready ones on top of them, in their colours,
    across the scored minutes."""
    plot_backtest(_runs(), tmp_path / "p.png", per_replica=1.0)
    (figure,) = drawn
    areas = _areas(figure.axes[0])
    physical, cloud = areas["physical ready"], areas["cloud ready"]
    assert _heights(physical) == {0.0, 2.0, 3.0, 4.0}
    phys, ready = NORTH_TIDAL.ready_physical, NORTH_TIDAL.ready_physical + NORTH_TIDAL.ready_cloud
    assert _heights(cloud) == {float(v) for v in [*phys, *ready]}
    when = mdates.date2num(_minutes(1, 8))
    for area, colour in ((physical, PHYSICAL), (cloud, CLOUD)):
        xs = area.get_paths()[0].vertices[:, 0]
        assert (xs.min(), xs.max()) == pytest.approx((when[0], when[-1]))
        assert tuple(area.get_facecolor()[0]) == pytest.approx(to_rgba(colour, 0.85))


def test_lines_show_load_paid_capacity_and_the_forecast(tmp_path: Path, drawn: list[Any]) -> None:
    """The load in replicas (per replica), physical plus every paid cloud node's replicas, and
    the forecast's upper quantile where the policy has one for every minute, all drawn from the
    first scored minute."""
    plot_backtest(_runs(scale=7.0), tmp_path / "p.png", per_replica=7.0)
    (figure,) = drawn
    when = _minutes(1, 8)
    tidal, hpa, south, _ = (_lines(ax) for ax in figure.axes)

    load = tidal["load (replicas needed)"]
    assert np.array_equal(load.get_xdata(), when)
    assert np.array_equal(load.get_ydata(), LOAD_VALUES[1:])
    assert (load.get_color(), load.get_linewidth()) == (LOAD, 0.6)

    paid = tidal["physical + cloud nodes paid for"]
    assert np.array_equal(paid.get_xdata(), when)
    assert np.array_equal(paid.get_ydata(), [3, 13, 14, 14, 14, 14, 2, 2])
    assert (paid.get_color(), paid.get_linewidth(), paid.get_linestyle()) == (CLOUD, 0.5, ":")
    # South's nodes hold 4 replicas each; it pays for none.
    assert np.array_equal(south["physical + cloud nodes paid for"].get_ydata(), [9] * 8)

    forecast = tidal["forecast, upper quantile"]
    assert np.array_equal(forecast.get_ydata(), np.array([3, 4, 5, 6, 6, 5, 3, 2]) / 7.0)
    assert (forecast.get_linewidth(), forecast.get_linestyle()) == (0.7, "--")
    assert "forecast, upper quantile" not in hpa  # none at all
    assert "forecast, upper quantile" not in south  # not one for every minute


def test_paid_capacity_counts_the_runs_replicas_per_node(tmp_path: Path, drawn: list[Any]) -> None:
    """A paid cloud node adds the run's replicas per node to the paid-for line."""
    (north, _) = _runs()
    north.scenario_replicas_per_node = 3
    plot_backtest([north], tmp_path / "p.png", per_replica=1.0)
    (figure,) = drawn
    paid = _lines(figure.axes[0])["physical + cloud nodes paid for"]
    assert np.array_equal(paid.get_ydata(), [3, 6, 7, 7, 7, 7, 2, 2])


def test_the_load_is_in_replicas_of_the_default_size(tmp_path: Path, drawn: list[Any]) -> None:
    """Without a size per replica the load is divided by the backtest's."""
    plot_backtest(_runs(scale=PER_REPLICA), tmp_path / "p.png")
    (figure,) = drawn
    load = _lines(figure.axes[0])["load (replicas needed)"]
    assert np.array_equal(load.get_ydata(), LOAD_VALUES[1:])


def test_unserved_load_is_filled_between_ready_and_load(tmp_path: Path, drawn: list[Any]) -> None:
    """Where the load is above the ready replicas, the gap between them is filled in red; a
    panel that serves every minute has no such fill."""
    plot_backtest(_runs(), tmp_path / "p.png", per_replica=1.0)
    (figure,) = drawn
    tidal, hpa, south, _ = (_areas(ax) for ax in figure.axes)
    # Tidal is short at one minute (load 9, ready 6), hpa at three (load 4, 6, 9, 5 over 3).
    assert _heights(tidal["unserved"]) >= {6.0, 9.0}
    assert _heights(tidal["unserved"]) <= {5.0, 6.0, 9.0}
    assert _heights(hpa["unserved"]) >= {3.0, 4.0, 6.0, 9.0, 5.0}
    assert _heights(hpa["unserved"]) <= {3.0, 4.0, 5.0, 6.0, 9.0}
    assert tuple(tidal["unserved"].get_facecolor()[0]) == pytest.approx(to_rgba("red", 0.6))
    assert "unserved" not in south


@pytest.mark.parametrize(
    ("above", "unserved"),
    [
        pytest.param(0.0, False, id="exactly-served"),
        pytest.param(0.5e-9, False, id="rounding-above"),
        pytest.param(1e-9, False, id="by-the-rounding"),
        pytest.param(1.2e-9, True, id="just-above"),
        pytest.param(1e-3, True, id="above"),
    ],
)
def test_only_load_above_rounding_is_unserved(
    tmp_path: Path, drawn: list[Any], above: float, unserved: bool
) -> None:
    """A load above the ready replicas by no more than rounding (1e-9 replica) is served."""
    load = LoadSeries(START, 60.0, np.array([2.0, 2.0, 2.0 + above, 2.0]))
    result = _result([2, 2, 2], [0, 0, 0], [0, 0, 0])
    plot_backtest(
        [TraceRun("t", load, START, {"tidal": result}, 1.0)], tmp_path / "p.png", per_replica=1.0
    )
    (figure,) = drawn
    assert ("unserved" in _areas(figure.axes[0])) is unserved


def test_the_legend_names_each_series_once_in_one_row(tmp_path: Path, drawn: list[Any]) -> None:
    """One figure legend at the top centre names every series drawn in the first row once, in
    the order drawn, all in one row of small text."""
    plot_backtest(_runs(), tmp_path / "p.png", per_replica=1.0)
    (figure,) = drawn
    (legend,) = figure.legends
    texts = legend.get_texts()
    assert [text.get_text() for text in texts] == [
        "physical ready",
        "cloud ready",
        "physical + cloud nodes paid for",
        "load (replicas needed)",
        "forecast, upper quantile",
        "unserved",
    ]
    assert len(legend.legend_handles) == 6
    assert {text.get_fontsize() for text in texts} == {8.0}
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    assert len({round(text.get_window_extent(renderer).y0, 3) for text in texts}) == 1
    box = legend.get_window_extent(renderer)
    assert (box.x0 + box.x1) / 2 == pytest.approx(figure.bbox.width / 2, abs=2)
    assert box.y1 == pytest.approx(figure.bbox.height, abs=0.05 * figure.bbox.height)


def test_the_legend_comes_from_the_first_row(tmp_path: Path, drawn: list[Any]) -> None:
    """A series drawn only below the first row is not in the legend."""
    north, south = _runs()
    plot_backtest([south, north], tmp_path / "p.png", per_replica=1.0)
    (figure,) = drawn
    names = [text.get_text() for text in figure.legends[0].get_texts()]
    assert names == [
        "physical ready",
        "cloud ready",
        "physical + cloud nodes paid for",
        "load (replicas needed)",
    ]


def test_the_panels_fill_the_figure_below_the_legend(tmp_path: Path, drawn: list[Any]) -> None:
    """The panels, with their titles and tick labels, sit inside the figure and below the
    legend's strip (the top 4%), filling most of it."""
    plot_backtest(_runs(), tmp_path / "p.png", per_replica=1.0)
    (figure,) = drawn
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    width, height = figure.bbox.width, figure.bbox.height
    boxes = [ax.get_tightbbox(renderer) for ax in figure.axes]
    assert 0 <= min(box.x0 for box in boxes) < 0.05 * width
    assert 0.95 * width < max(box.x1 for box in boxes) <= width
    assert 0 <= min(box.y0 for box in boxes) < 0.05 * height
    assert 0.9 * height < max(box.y1 for box in boxes) <= 0.96 * height


@pytest.mark.parametrize(
    ("rows", "columns"),
    [pytest.param(1, 2, id="one-trace"), pytest.param(2, 1, id="one-policy")],
)
def test_the_png_is_sized_by_panels(tmp_path: Path, rows: int, columns: int) -> None:
    """The PNG is 5.5 by 2.8 inches per panel at 110 dots per inch, written where asked; the
    figure is closed."""
    north, south = _runs()
    if columns == 1:
        north.results.pop("hpa")
    before = plt.get_fignums()
    out = plot_backtest([north, south][:rows], tmp_path / "p.png", per_replica=1.0)
    assert plt.get_fignums() == before
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (round(605 * columns), round(308 * rows))


# ---------------------------------------------------------------------------------------------
# days, and the time axis


@pytest.mark.parametrize(
    ("days", "kept"),
    [
        pytest.param(None, 2000, id="all"),
        pytest.param(1.0, 1440, id="one-day"),
        pytest.param(0.5, 720, id="half-a-day"),
        pytest.param(10.0, 2000, id="more-than-run"),
    ],
)
def test_days_keeps_the_last_minutes(
    tmp_path: Path, drawn: list[Any], days: float | None, kept: int
) -> None:
    """``days`` keeps only the last days of each panel, 1440 minutes a day; more days than the
    run has keep it all."""
    run = _flat_run("t", 2000)
    plot_backtest([run], tmp_path / "p.png", days=days, per_replica=1.0)
    (figure,) = drawn
    line = _lines(figure.axes[0])["load (replicas needed)"]
    assert np.array_equal(line.get_xdata(), _minutes(1, 2000)[2000 - kept :])
    assert line.get_ydata().size == kept


def _ticks(ax: Any) -> list[Any]:
    return [mdates.num2date(tick) for tick in ax.get_xticks()]


@pytest.mark.parametrize("span", [1.0, 4.0], ids=["one-day", "four-days"])
def test_up_to_four_days_tick_at_midnight_and_noon(
    tmp_path: Path, drawn: list[Any], span: float
) -> None:
    """A panel of up to four days has a tick every twelve hours, at midnight and noon, with
    concise date labels in small type."""
    step = 864.0  # a hundredth of a day
    plot_backtest([_flat_run("t", round(span * 100) + 1, step=step)], tmp_path / "p.png")
    (figure,) = drawn
    ax = figure.axes[0]
    ticks = _ticks(ax)
    assert {(t.hour, t.minute) for t in ticks} == {(0, 0), (12, 0)}
    assert len(ticks) >= 2 * span
    assert isinstance(ax.xaxis.get_major_formatter(), mdates.ConciseDateFormatter)
    figure.canvas.draw()
    assert {tick.label1.get_fontsize() for tick in ax.xaxis.get_major_ticks()} == {7.0}


@pytest.mark.parametrize(
    ("span", "every"),
    [
        pytest.param(4.2, 1, id="just-over-four-days"),
        pytest.param(24.0, 4, id="24-days"),
        pytest.param(60.0, 10, id="60-days"),
    ],
)
def test_longer_panels_tick_at_midnights_about_six_times(
    tmp_path: Path, drawn: list[Any], span: float, every: int
) -> None:
    """A panel longer than four days ticks at midnights, every span/6 days rounded (at least
    one)."""
    step = 0.05 * DAY
    plot_backtest([_flat_run("t", round(span * 20) + 1, step=step)], tmp_path / "p.png")
    (figure,) = drawn
    ticks = _ticks(figure.axes[0])
    assert len(ticks) >= 3
    assert {(t.hour, t.minute) for t in ticks} == {(0, 0)}
    assert {(b - a).days for a, b in itertools.pairwise(ticks)} == {every}


def test_the_span_is_measured_between_the_first_and_last_minute(
    tmp_path: Path, drawn: list[Any]
) -> None:
    """Two samples five days apart span five days, so the ticks are daily, not twice a day."""
    plot_backtest([_flat_run("t", 2, step=5 * DAY)], tmp_path / "p.png")
    (figure,) = drawn
    ticks = _ticks(figure.axes[0])
    assert ticks and {(t.hour, t.minute) for t in ticks} == {(0, 0)}


def test_the_plot_is_drawn_off_screen(tmp_path: Path, drawn: list[Any]) -> None:
    """Whatever backend was chosen before (an interactive one on a desktop), the plot is drawn
    with Agg, which needs no display."""
    previous = matplotlib.get_backend()
    matplotlib.use("svg")
    try:
        plot_backtest([_flat_run("t", 3)], tmp_path / "p.png")
        assert matplotlib.get_backend().lower() == "agg"
    finally:
        matplotlib.use(previous)
