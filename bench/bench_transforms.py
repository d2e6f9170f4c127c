"""Benchmark: tidal against the HPA on the traces changed the way unseen traffic may differ.

Not a test: it prints what it measured. The planner is judged on traces nobody here has, so
each trace is replayed again with one change a region's traffic may well have (all from 60% of
the trace on, where a change falls inside the scored part):

- ``growth``: the load grows by 2% of its first day's a day, all along;
- ``boom``: the load grows to ten times over ten days, by the same factor each day, and stays
  there (a launch, or a tournament's first days);
- ``shift``: 1.6 times the load from then on (another region's users moved here);
- ``surge``: 3 times the load from then on (a launch, or two regions' users moved here);
- ``drop``: 0.6 times the load from then on (users moved away);
- ``holiday``: half the load for three days, then back;
- ``outage``: a tenth of the load for a day, then back (the service down upstream, or a
  blizzard's travel ban);
- ``gap``: the metric missing for six hours, and at 80% for a whole day (a Prometheus outage);
- ``noise``: each sample multiplied by a log-normal factor of 15% spread (seeded);
- ``spring``: the daily cycle an hour earlier from then on, as when the region's users move
  their clocks forward for summer time and the metrics keep UTC (an hour of the trace is
  skipped);
- ``fall``: the daily cycle an hour later from then on, as when the clocks go back (an hour of
  the trace is replayed).

Each run is the default scenario and the CRD's defaults, as ``tidal backtest`` runs them, with
tidal and the HPA only. Usage (from the repository root):

    python bench/bench_transforms.py [TRACE.csv ...] [--changes NAME ...] [--max-days DAYS]

``--max-days`` keeps each trace's first DAYS (the New York taxi trace is 200 days long).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np
from bench_backtest import EPS, shared_traces

from controller.backtest import report, run_trace, summary, unserved_ratio
from controller.simulator import Scenario
from forecasts.base import DAY
from forecasts.series import LoadSeries, load_trace

#: Where a change starts, as a share of the trace (past the two weeks of history of most).
AT = 0.6


def _growth(values: np.ndarray, per_day: float) -> np.ndarray:
    days = np.arange(values.size) / per_day
    return values * (1.0 + 0.02 * days)


def _boom(values: np.ndarray, per_day: float) -> np.ndarray:
    begin = int(values.size * AT)
    days = (np.arange(values.size) - begin) / per_day
    return values * 10.0 ** np.clip(days / 10.0, 0.0, 1.0)


def _scaled_after(factor: float) -> Callable[[np.ndarray, float], np.ndarray]:
    def change(values: np.ndarray, per_day: float) -> np.ndarray:
        out = values.copy()
        out[int(values.size * AT) :] *= factor
        return out

    return change


def _holiday(values: np.ndarray, per_day: float) -> np.ndarray:
    out = values.copy()
    begin = int(values.size * AT)
    out[begin : begin + int(3 * per_day)] *= 0.5
    return out


def _outage(values: np.ndarray, per_day: float) -> np.ndarray:
    out = values.copy()
    begin = int(values.size * AT)
    out[begin : begin + int(per_day)] *= 0.1
    return out


def _gap(values: np.ndarray, per_day: float) -> np.ndarray:
    out = values.copy()
    begin = int(values.size * AT)
    out[begin : begin + int(per_day / 4)] = np.nan
    later = int(values.size * 0.8)
    out[later : later + int(per_day)] = np.nan
    return out


def _noise(values: np.ndarray, per_day: float) -> np.ndarray:
    return values * np.random.default_rng(1).lognormal(0.0, 0.15, values.size)


def _clocks(hours: int) -> Callable[[np.ndarray, float], np.ndarray]:
    """The daily cycle ``hours`` earlier (positive) or later from the change on: an hour of the
    trace is skipped, or replayed. At least one step, on an hourly trace or coarser."""

    def change(values: np.ndarray, per_day: float) -> np.ndarray:
        begin = int(values.size * AT)
        moved = max(1, round(abs(hours) * per_day / 24.0))
        resumed = begin + moved if hours > 0 else begin - moved
        return np.concatenate([values[:begin], values[resumed:]])

    return change


CHANGES: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "growth": _growth,
    "boom": _boom,
    "shift": _scaled_after(1.6),
    "surge": _scaled_after(3.0),
    "drop": _scaled_after(0.6),
    "holiday": _holiday,
    "outage": _outage,
    "gap": _gap,
    "noise": _noise,
    "spring": _clocks(1),
    "fall": _clocks(-1),
}


def one(args: tuple[str, str, float | None]) -> tuple[str, str, dict[str, Any], float]:
    """One trace's report with ``change`` applied (``none``: as it is)."""
    path, change, max_days = args
    raw = load_trace(path)
    if max_days is not None:
        raw = raw.until(raw.start + max_days * DAY)
    values = raw.values
    if change != "none":
        values = CHANGES[change](values, DAY / raw.step)
    series = LoadSeries(raw.start, raw.step, values)
    scenario = Scenario()
    run = run_trace(path, scenario=scenario, policies=("tidal", "hpa"), series=series)
    return change, run.name, report([run], scenario, model="auto")["traces"][run.name], run.seconds


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("traces", nargs="*", help="trace CSVs (default: ../shared/traces/*.csv)")
    parser.add_argument(
        "--changes",
        nargs="+",
        default=["none", *CHANGES],
        choices=["none", *CHANGES],
        metavar="NAME",
        help=f"changes to replay (default: none {' '.join(CHANGES)})",
    )
    parser.add_argument("--max-days", type=float, default=44.0, help="days kept (default: 44)")
    args = parser.parse_args(argv)
    traces = args.traces or shared_traces()
    if not traces:
        print("no traces: pass TRACE.csv files or run from the repository root beside ../shared")
        return 2
    workers = min(len(traces), os.cpu_count() or 1)
    print("| change | trace | unserved ratio | cloud ratio | removed tidal / hpa | wall |")
    print("|---|---|---|---|---|---|")
    for change in args.changes:
        started = time.perf_counter()
        full: dict[str, Any] = {"traces": {}}
        jobs = [(path, change, args.max_days) for path in traces]
        with ProcessPoolExecutor(workers) as pool:
            for _, name, trace, seconds in pool.map(one, jobs):
                full["traces"][name] = trace
                t, h = trace["tidal"], trace["hpa"]
                cloud = (
                    f"{t['cloud_replica_hours'] / h['cloud_replica_hours']:.3f}"
                    if h["cloud_replica_hours"] > 0
                    else "n/a (no hpa cloud)"
                )
                print(
                    f"| {change} | {name} | {unserved_ratio(trace, EPS):.4f} | {cloud} "
                    f"| {t['replicas_removed']} / {h['replicas_removed']} | {seconds:.0f} s |",
                    flush=True,
                )
        s = summary(full, EPS)
        print(
            f"| {change} | geometric mean | {s['unserved_ratio_geomean']:.4f} "
            f"(worst {s['unserved_ratio_max']:.3f}) | {s['cloud_hours_ratio_geomean']:.3f} | "
            f"| {time.perf_counter() - started:.0f} s |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
