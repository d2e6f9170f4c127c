"""Benchmark: what a lasting level shift on regular traffic costs, on synthetic traces.

Not a test: it prints what it measured. Each trace is 20 days of a daily sine at one-minute
steps (the load swings between 0.2 and 1.8 times its mean), times a seeded log-normal noise of
0%, 3% or 10%. The shifted traces carry three times the load from day 10 on; the plain ones
carry that higher load all along, so both are scaled alike (the 99th percentile to 100
replicas, the default scenario's peak). Each runs the default scenario and the CRD's defaults,
as ``tidal backtest`` runs them, with tidal and the HPA only, scored from day 5. Usage (from
the repository root):

    python bench/bench_level_shift.py

For each trace it prints the cloud and unserved ratios, and, for tidal, the costliest day's
cloud node-minutes against the mean of the last three days, when the shift is long settled.
"""

from __future__ import annotations

import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np
from bench_backtest import EPS

from controller.backtest import report, run_trace
from controller.simulator import MINUTE, Scenario
from forecasts.base import DAY
from forecasts.series import LoadSeries

DAYS = 20
SHIFT_DAY = 10
#: 2024-01-01T00:00:00Z
START = 1_704_067_200.0
NOISES = (0.0, 0.03, 0.10)


def synthetic(noise: float, shifted: bool) -> LoadSeries:
    """The daily sine, with ``noise`` (log-normal spread) and the shift when ``shifted``."""
    minutes = np.arange(DAYS * round(DAY / MINUTE))
    days = minutes * MINUTE / DAY
    values = 1000.0 + 800.0 * np.sin(2.0 * np.pi * days)
    if shifted:
        values[days >= SHIFT_DAY] *= 3.0
    else:
        values *= 3.0
    if noise:
        values = values * np.random.default_rng(1).lognormal(0.0, noise, values.size)
    return LoadSeries(START, MINUTE, values)


def one(args: tuple[float, bool]) -> tuple[str, dict[str, Any], float, float]:
    """One synthetic trace's report, and tidal's costliest day against its settled days."""
    noise, shifted = args
    name = f"{'shift' if shifted else 'plain'}-noise-{noise:.0%}"
    scenario = Scenario()
    run = run_trace(
        f"{name}.csv",
        scenario=scenario,
        score_from=START + 5 * DAY,
        policies=("tidal", "hpa"),
        series=synthetic(noise, shifted),
        name=name,
    )
    nodes = run.results["tidal"].cloud_nodes
    per_day = nodes[: nodes.size // 1440 * 1440].reshape(-1, 1440).sum(axis=1)
    settled = float(per_day[-3:].mean())
    worst = float(per_day.max()) / settled if settled else float("nan")
    return name, report([run], scenario, model="auto")["traces"][name], worst, run.seconds


def main(argv: list[str]) -> int:
    if argv:
        print(__doc__.split("\n\n")[-2], file=sys.stderr)
        return 2
    cases = [(noise, shifted) for shifted in (False, True) for noise in NOISES]
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=min(len(cases), os.cpu_count() or 1)) as pool:
        rows = list(pool.map(one, cases))
    wall = time.perf_counter() - started
    print(f"level shift on a daily sine: {len(rows)} synthetic traces, {wall:.0f} s wall time")
    print(
        "| trace | cloud ratio | tidal unserved | hpa unserved | unserved ratio "
        "| tidal's costliest day / settled | wall |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, trace, worst, seconds in rows:
        tidal, hpa = trace["tidal"], trace["hpa"]
        paid = hpa["cloud_replica_hours"]
        cloud = tidal["cloud_replica_hours"] / paid if paid else float("nan")
        unserved = (tidal["unserved_fraction"] + EPS) / (hpa["unserved_fraction"] + EPS)
        print(
            f"| {name} | {cloud:.3f} | {tidal['unserved_fraction']:.2e} "
            f"| {hpa['unserved_fraction']:.2e} | {unserved:.4f} | {worst:.2f} | {seconds:.0f} s |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
