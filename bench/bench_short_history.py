"""Benchmark: tidal against the HPA in a region's first days, when its history is short.

Not a test: it prints what it measured. Each trace is cut to its first ``history + days`` days;
the first ``history`` days are the policies' history and the next ``days`` are scored, with the
default scenario and the CRD's defaults, as ``tidal backtest`` runs them. Usage (from the
repository root):

    python bench/bench_short_history.py [TRACE.csv ...] [--history DAYS ...] [--days DAYS]

The default backtest scores each trace from two weeks in (or its first quarter), so it never
sees a history this short: a trace of ten days would, and so does a region just installed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from controller.backtest import report, run_trace, summary, unserved_ratio
from controller.simulator import Scenario
from forecasts.base import DAY
from forecasts.series import load_trace

EPS = 1e-6


def one(args: tuple[str, float, float]) -> tuple[str, dict[str, Any], float]:
    """One trace's report with ``history`` days of history and ``days`` scored."""
    path, history, days = args
    scenario = Scenario()
    raw = load_trace(path)
    begin = raw.start + history * DAY
    run = run_trace(
        path,
        scenario=scenario,
        score_from=begin,
        policies=("tidal", "hpa"),
        series=raw.until(begin + days * DAY),
    )
    return run.name, report([run], scenario, model="auto")["traces"][run.name], run.seconds


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("traces", nargs="*", help="trace CSVs (default: ../shared/traces/*.csv)")
    parser.add_argument(
        "--history",
        type=float,
        nargs="+",
        default=[2.0, 2.2, 2.5, 3.0],
        metavar="DAYS",
        help="days of history before the scored part (default: 2 2.2 2.5 3)",
    )
    parser.add_argument("--days", type=float, default=4.0, help="days scored (default: 4)")
    args = parser.parse_args(argv)
    traces = args.traces or sorted(str(p) for p in Path("../shared/traces").glob("*.csv"))
    if not traces:
        print("no traces: pass TRACE.csv files or run from the repository root beside ../shared")
        return 2
    workers = min(len(traces), os.cpu_count() or 1)
    for history in args.history:
        started = time.perf_counter()
        full: dict[str, Any] = {"traces": {}}
        print(f"\n{history:g} days of history, {args.days:g} days scored")
        print(
            "| trace | tidal unserved | hpa unserved | ratio | tidal cloud h | hpa cloud h |",
            end="",
        )
        print(" ratio |")
        print("|---|---|---|---|---|---|---|")
        jobs = [(path, history, args.days) for path in traces]
        with ProcessPoolExecutor(workers) as pool:
            for name, trace, _ in pool.map(one, jobs):
                full["traces"][name] = trace
                t, h = trace["tidal"], trace["hpa"]
                print(
                    f"| {name} | {t['unserved_fraction']:.2e} | {h['unserved_fraction']:.2e} "
                    f"| {unserved_ratio(trace, EPS):.3f} | {t['cloud_replica_hours']:.0f} "
                    f"| {h['cloud_replica_hours']:.0f} "
                    f"| {t['cloud_replica_hours'] / h['cloud_replica_hours']:.2f} |",
                    flush=True,
                )
        s = summary(full, EPS)
        print(
            f"geometric means: unserved {s['unserved_ratio_geomean']:.3f} "
            f"(worst {s['unserved_ratio_max']:.3f}), cloud {s['cloud_hours_ratio_geomean']:.3f}; "
            f"{time.perf_counter() - started:.0f} s"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
