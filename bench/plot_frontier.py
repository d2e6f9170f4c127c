"""Draws docs/frontier.png: the cloud bill against the unserved load, tidal over the HPA, for a
few quantiles with ``holdStarting: true`` and ``false``, and the box the planner issue asks for.

Not a test and not a benchmark: a picture for docs/backtest.md. Each point is one whole
``tidal backtest --json`` over the traces (about seven minutes each on two cores). Usage
(repository root):

    python bench/plot_frontier.py [--cache DIR] [--out OUT.png] [TRACE.csv ...]

With ``--cache``, each report is kept in DIR and read back instead of replayed again.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from bench_backtest import backtest_json, save_figure, shared_traces

from controller.backtest import summary

#: (holdStarting, quantile) pairs drawn; the CRD's defaults are true and 0.95.
POINTS = [("true", 0.9), ("true", 0.95), ("true", 0.96), ("false", 0.95), ("false", 0.96)]
#: The planner issue's acceptance: cloud at most 1.25, unserved at most 0.1 (geometric means).
CLOUD_MAX, UNSERVED_MAX = 1.25, 0.1


def _report(traces: list[str], hold: str, quantile: float, cache: Path | None) -> dict[str, Any]:
    saved = cache / f"hold-{hold}-q{quantile:g}.json" if cache else None
    if saved is not None and saved.is_file():
        report: dict[str, Any] = json.loads(saved.read_text())
        return report
    flags = ["--hold-starting", hold, "--quantile", f"{quantile:g}"]
    print(f"replaying {len(traces)} traces with holdStarting {hold}, quantile {quantile:g}")
    text = backtest_json(traces, flags)
    if saved is not None:
        saved.parent.mkdir(parents=True, exist_ok=True)
        saved.write_text(text)
    report = json.loads(text)
    return report


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("traces", nargs="*")
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=Path("docs/frontier.png"))
    args = parser.parse_args(argv)
    traces = args.traces or shared_traces()
    if not traces:
        print("no traces: pass TRACE.csv files or run from the repository root beside ../shared")
        return 2
    results: dict[str, list[tuple[float, dict[str, float]]]] = {}
    for hold, quantile in POINTS:
        figures = summary(_report(traces, hold, quantile, args.cache))
        results.setdefault(hold, []).append((quantile, figures))
        print(
            f"holdStarting {hold:5s} quantile {quantile:g}: "
            f"cloud {figures['cloud_hours_ratio_geomean']:.3f}, "
            f"unserved {figures['unserved_ratio_geomean']:.4f}, "
            f"worst trace {figures['unserved_ratio_max']:.3f}"
        )

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    xs = [f["cloud_hours_ratio_geomean"] for row in results.values() for _, f in row]
    ys = [f["unserved_ratio_geomean"] for row in results.values() for _, f in row]
    left, right = min([*xs, CLOUD_MAX]) - 0.02, max(xs) + 0.02
    low, high = min([*ys, UNSERVED_MAX]) - 0.002, max(ys) + 0.002
    ax.fill_between([left, CLOUD_MAX], low, UNSERVED_MAX, color="#55a868", alpha=0.15)
    ax.text(left + 0.005, low + 0.0005, "the planner issue's box", color="#2d6a3e", fontsize=9)
    colours = {"true": "#dd8452", "false": "#4c72b0"}
    for hold, row in results.items():
        row.sort()
        x = [f["cloud_hours_ratio_geomean"] for _, f in row]
        y = [f["unserved_ratio_geomean"] for _, f in row]
        label = f"holdStarting: {hold}" + (" (the default)" if hold == "true" else "")
        ax.plot(x, y, "o-", color=colours.get(hold, "#333333"), label=label)
        for (quantile, f), xi, yi in zip(row, x, y, strict=True):
            worst = f["unserved_ratio_max"]
            ax.annotate(
                f"q {quantile:g} (worst {worst:.3f})",
                (xi, yi),
                textcoords="offset points",
                # The default's labels above right, the other line's below left: the two lines
                # meet near the default point, and their labels would overlap.
                xytext=(6, 4) if hold == "true" else (-6, -12),
                horizontalalignment="left" if hold == "true" else "right",
                fontsize=8,
            )
    ax.set_xlim(left, right)
    ax.set_ylim(low, high)
    ax.set_xlabel("cloud replica-hours, tidal / hpa (geometric mean over the traces)")
    ax.set_ylabel("unserved load, tidal / hpa (geometric mean, eps 1e-6)")
    ax.set_title("Cloud bill against unserved load, by quantile")
    ax.legend(loc="upper right")
    save_figure(fig, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
