"""Benchmark: the backtest under scenarios other than DESIGN.md's default, one knob at a time.

The planner's rules carry no per-trace or per-scenario constant, so they should keep beating the
HPA when the cluster differs: nodes that boot faster or slower, a smaller or larger physical
pool, smaller or larger nodes, a higher peak. This replays the traces once per scenario with
``tidal backtest --json`` and prints the acceptance ratios of each (tidal over the HPA,
geometric means over the traces), with the oracle's unserved load as a check of the replay.

Not a test: it prints what it measured. Usage (from the repository root):

    python bench/bench_scenarios.py [--max-days N] [--only default,lead-10m,...] [TRACE.csv ...]

``--max-days`` replays only the first N days of longer traces (copies in a temporary
directory): the New York taxi trace's 200 days are most of a replay's time.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from bench_backtest import EPS, backtest_json, shared_traces

from controller.backtest import summary, unserved_ratio
from forecasts.series import load_trace, parse_timestamp

#: (name, tidal backtest flags): DESIGN.md's default scenario, then one knob changed at a time.
SCENARIOS: list[tuple[str, list[str]]] = [
    ("default", []),
    ("lead-2m", ["--node-lead-time", "2m"]),
    ("lead-10m", ["--node-lead-time", "10m"]),
    ("physical-30", ["--physical-capacity", "30"]),
    ("physical-90", ["--physical-capacity", "90"]),
    ("peak-300", ["--peak-replicas", "300"]),
    ("node-4", ["--replicas-per-node", "4"]),
    ("node-20", ["--replicas-per-node", "20"]),
]


def first_days(traces: list[str], days: float, into: Path) -> list[str]:
    """Each trace cut to its first ``days`` days (a copy in ``into``; shorter ones as they are)."""
    out = []
    for name in traces:
        series = load_trace(name)
        if series.end - series.start <= days * 86400.0:
            out.append(name)
            continue
        limit = series.start + days * 86400.0
        kept = []
        with open(name, encoding="utf-8") as source:
            header = source.readline()
            for line in source:
                if not line.strip():
                    continue
                stamp = line.split(",", 1)[0]
                kept.append(line)
                if parse_timestamp(stamp) >= limit:
                    break
        copy = into / Path(name).name
        copy.write_text(header + "".join(kept), encoding="utf-8")
        out.append(str(copy))
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description="The backtest under other scenarios, one knob at a time."
    )
    parser.add_argument("traces", nargs="*", metavar="TRACE.csv")
    parser.add_argument("--max-days", type=float, help="replay only the first N days of a trace")
    parser.add_argument("--only", help="comma-separated scenario names (default: all)")
    args = parser.parse_args(argv)
    traces = args.traces or shared_traces()
    if not traces:
        print("no traces: pass TRACE.csv files or run from the repository root beside ../shared")
        return 2
    chosen = SCENARIOS
    if args.only:
        wanted = [w.strip() for w in args.only.split(",")]
        unknown = sorted(set(wanted) - {name for name, _ in SCENARIOS})
        if unknown:
            known = ", ".join(name for name, _ in SCENARIOS)
            print(f"unknown scenario {', '.join(unknown)}; known: {known}")
            return 2
        chosen = [(name, flags) for name, flags in SCENARIOS if name in wanted]
    with tempfile.TemporaryDirectory() as scratch:
        if args.max_days:
            traces = first_days(traces, args.max_days, Path(scratch))
        print(
            "| scenario | unserved ratio, geometric mean | worst trace | cloud ratio, geometric "
            "mean | removed tidal / hpa | oracle unserved | wall |"
        )
        print("|---|---|---|---|---|---|---|")
        for name, flags in chosen:
            started = time.perf_counter()
            report = json.loads(backtest_json(traces, flags))
            seconds = time.perf_counter() - started
            s = summary(report, EPS)
            worst_name, worst = max(
                ((trace, unserved_ratio(p, EPS)) for trace, p in report["traces"].items()),
                key=lambda item: item[1],
            )
            oracle = max(p["oracle"]["unserved_fraction"] for p in report["traces"].values())
            print(
                f"| {name} | {s['unserved_ratio_geomean']:.3f} | {worst:.3f} ({worst_name}) "
                f"| {s['cloud_hours_ratio_geomean']:.2f} | {s['tidal_replicas_removed']} / "
                f"{s['hpa_replicas_removed']} | {oracle:.1e} | {seconds:.0f} s |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
