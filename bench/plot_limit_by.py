"""Draws docs/limit-by.png: cloud nodes paid for around a trace's largest spike, under
``limitBy: Replicas`` and ``limitBy: Load``, with the HPA's for reference.

Not a test and not a benchmark: a picture for docs/backtest.md. Usage (repository root):

    python bench/plot_limit_by.py [TRACE.csv] [OUT.png]

The default trace is World Cup 98 from ../shared/traces; it takes about two minutes.
"""

from __future__ import annotations

import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from bench_backtest import save_figure

from controller.backtest import PER_REPLICA, TraceRun, run_trace
from controller.simulator import Scenario

BEFORE, AFTER = 20, 60  # minutes shown around the largest scored load


def _run(args: tuple[str, str]) -> TraceRun:
    path, limit_by = args
    return run_trace(
        path,
        scenario=Scenario(),
        policies=("tidal", "hpa"),
        spec_overrides={"behavior.scaleDown.limitBy": limit_by},
    )


def main(argv: list[str]) -> int:
    if {"-h", "--help"} & set(argv):
        print(__doc__)
        return 0
    trace = argv[0] if argv else "../shared/traces/wc98-requests-per-minute.csv"
    out = Path(argv[1] if len(argv) > 1 else "docs/limit-by.png")
    with ProcessPoolExecutor(2) as pool:
        replicas, load_counted = pool.map(_run, [(trace, "Replicas"), (trace, "Load")])

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first = replicas.load.index_of(replicas.score_from)
    minutes = replicas.results["tidal"].cloud_nodes.size
    load = np.nan_to_num(replicas.load.values[first : first + minutes]) / PER_REPLICA
    peak = int(np.argmax(load))
    lo, hi = max(0, peak - BEFORE), min(minutes, peak + AFTER)
    x = np.arange(lo, hi) - peak

    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(9, 5.5))
    top.plot(x, load[lo:hi], color="#222222")
    top.set_ylabel("load (replicas' worth)")
    top.set_title(f"{replicas.name}: the largest spike, and the cloud nodes paid for after it")
    series = [
        ("tidal, limitBy: Replicas", replicas.results["tidal"], "#dd8452"),
        ("tidal, limitBy: Load", load_counted.results["tidal"], "#4c72b0"),
        ("hpa", replicas.results["hpa"], "#999999"),
    ]
    for label, result, colour in series:
        nodes = result.cloud_nodes[lo:hi]
        paid = result.cloud_nodes[peak:hi].sum() * replicas.scenario_replicas_per_node / 60.0
        bottom.step(x, nodes, where="post", color=colour, label=f"{label} ({paid:.0f} replica-h)")
    bottom.set_ylabel("cloud nodes paid for")
    bottom.set_xlabel("minutes from the spike's peak")
    bottom.legend(loc="upper right", fontsize="small")
    save_figure(fig, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
