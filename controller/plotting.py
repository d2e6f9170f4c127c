"""Pictures of backtests: load against ready capacity, physical and cloud stacked."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from controller.files import creation_problem, written_whole

if TYPE_CHECKING:
    from controller.backtest import TraceRun

__all__ = ["plot_backtest", "plot_path", "save_png"]

PHYSICAL = "#4c72b0"
CLOUD = "#dd8452"
RESERVED = "#f2c9a9"
LOAD = "#222222"


def plot_path(text: str | Path) -> Path:
    """Where a plot goes, checked before any replay so that a long run does not end in an error.

    The plot is a PNG: a name without a suffix gets ``.png`` (as matplotlib would add, unsaid),
    and any other suffix is refused. A folder is refused too, not written beside as
    ``FOLDER.png``: the name of the file is the caller's to give. ValueError says what is wrong
    with the name.
    """
    if not str(text).strip():
        raise ValueError("names no file: give the .png file to write")
    if Path(text).is_dir() or str(text).endswith(("/", os.sep)):
        what = "is" if Path(text).is_dir() else "names"
        raise ValueError(f"{what} a folder: give the .png file to write, in it or elsewhere")
    path = Path(text)
    if not path.suffix:
        path = path.with_name(path.name + ".png")
    elif path.suffix.lower() != ".png":
        raise ValueError(f"the plot is a PNG, not {path.suffix}: name the file .png")
    folder = path.parent
    if not folder.is_dir():
        raise ValueError(f"no folder {folder}")
    if path.is_dir():
        raise ValueError(f"{path} is a folder")
    refused = creation_problem(folder)
    if refused is not None:
        raise ValueError(f"cannot write in {folder}: {refused}")
    return path


def plot_backtest(
    runs: list[TraceRun],
    path: str | Path,
    *,
    days: float | None = None,
    per_replica: float | None = None,
) -> Path:
    """One row per trace, one column per policy; ``days`` keeps only the last days of each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    from controller.backtest import PER_REPLICA
    from controller.simulator import first_scored

    per = per_replica or PER_REPLICA
    policies = list(runs[0].results)
    fig, axes = plt.subplots(
        len(runs),
        len(policies),
        figsize=(5.5 * len(policies), 2.8 * len(runs)),
        squeeze=False,
        sharey="row",
    )
    for row, run in enumerate(runs):
        first = first_scored(run.load, run.score_from)  # where the results start
        for col, name in enumerate(policies):
            result = run.results[name]
            n = result.ready_physical.size
            keep = slice(0, n) if days is None else slice(max(0, n - int(days * 1440)), n)
            times = (run.load.start + (first + np.arange(n)) * run.load.step)[keep]
            when = np.array(times * 1000, dtype="datetime64[ms]")
            load = run.load.values[first : first + n][keep] / per
            phys = result.ready_physical[keep]
            cloud = result.ready_cloud[keep]
            paid = phys + result.cloud_nodes[keep] * run.scenario_replicas_per_node
            ax = axes[row][col]
            ax.stackplot(
                when,
                phys,
                cloud,
                colors=[PHYSICAL, CLOUD],
                labels=["physical ready", "cloud ready"],
                alpha=0.85,
                step="post",
            )
            ax.plot(
                when,
                paid,
                color=CLOUD,
                linewidth=0.5,
                linestyle=":",
                label="physical + cloud nodes paid for",
            )
            ax.plot(when, load, color=LOAD, linewidth=0.6, label="load (replicas needed)")
            if result.forecast_upper is not None and result.forecast_upper.size == n:
                ax.plot(
                    when,
                    result.forecast_upper[keep] / per,
                    color="#2a9d8f",
                    linewidth=0.7,
                    linestyle="--",
                    label="forecast, upper quantile",
                )
            short = load > phys + cloud + 1e-9
            if short.any():
                ax.fill_between(
                    when,
                    phys + cloud,
                    load,
                    where=short,
                    color="red",
                    alpha=0.6,
                    step="post",
                    label="unserved",
                )
            ax.set_title(f"{run.name}: {name}", fontsize=9)
            span_days = float(times[-1] - times[0]) / 86400.0 if times.size > 1 else 1.0
            locator = (
                mdates.HourLocator(byhour=range(0, 24, 12))  # type: ignore[no-untyped-call]
                if span_days <= 4
                else mdates.DayLocator(interval=max(1, round(span_days / 6)))  # type: ignore[no-untyped-call]
            )
            ax.xaxis.set_major_locator(locator)
            ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
            ax.tick_params(labelsize=7)
            if col == 0:
                ax.set_ylabel("replicas")
    handles: list[Any] = []
    labels: list[str] = []
    for ax in axes[0]:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    fig.legend(handles, labels, loc="upper center", ncol=6, fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    out = Path(path)
    try:
        save_png(fig, out)
    finally:
        plt.close(fig)
    return out


def save_png(fig: Any, path: Path) -> None:
    """Write ``fig`` as a PNG to ``path`` whole or not at all: a failed write (a full disk, an
    interrupt) leaves the picture that was there, not half of a new one."""
    with written_whole(path, prefix=".tidal-plot-", text=False) as out:
        fig.savefig(out, dpi=110, format="png")
