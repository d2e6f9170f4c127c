"""Benchmark: what a lasting level shift on regular traffic costs, on synthetic traces.

Not a test: it prints what it measured. Each trace is 20 days of a daily sine at one-minute
steps (the load swings between 0.2 and 1.8 times its mean), times a seeded log-normal noise of
0%, 3% or 10%. The shifted traces carry three times the load from day 10 on; the plain ones
carry that higher load all along, so both are scaled alike (the 99th percentile to 100
replicas, the default scenario's peak). The failover traces carry three times the load on
days 10 and 11 only, as a region does while it takes another's users. Scaled the same way,
their 99th percentile falls within those two days, so every other day fits the physical
pool: cloud paid after the failover is what its errors cost. Each runs the default scenario
and the CRD's defaults, as ``tidal backtest`` runs them, with tidal and the HPA only, scored
from day 5. Usage (from the repository root):

    python bench/bench_level_shift.py

For each trace it prints the cloud and unserved ratios and, for tidal, the costliest day's
cloud node-minutes against the mean of the last three days (nan when those paid none), and
its cloud node-hours from day 12 on, two days after the change.
"""

from __future__ import annotations

import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np
from bench_backtest import EPS

from controller.backtest import report, run_trace, unserved_ratio
from controller.simulator import MINUTE, Scenario
from forecasts.base import DAY
from forecasts.series import LoadSeries

DAYS = 20
SHIFT_DAY = 10
#: 2024-01-01T00:00:00Z
START = 1_704_067_200.0
NOISES = (0.0, 0.03, 0.10)


KINDS = ("plain", "shift", "failover")


def synthetic(noise: float, kind: str) -> LoadSeries:
    """The daily sine, with ``noise`` (log-normal spread), changed as ``kind`` says."""
    minutes = np.arange(DAYS * round(DAY / MINUTE))
    days = minutes * MINUTE / DAY
    values = 1000.0 + 800.0 * np.sin(2.0 * np.pi * days)
    if kind == "shift":
        values[days >= SHIFT_DAY] *= 3.0
    elif kind == "failover":
        values[(days >= SHIFT_DAY) & (days < SHIFT_DAY + 2)] *= 3.0
    else:
        values *= 3.0
    if noise:
        values = values * np.random.default_rng(1).lognormal(0.0, noise, values.size)
    return LoadSeries(START, MINUTE, values)


def one(args: tuple[float, str]) -> tuple[str, dict[str, Any], float, float, float]:
    """One synthetic trace's report, tidal's costliest day against its settled days, and its
    cloud node-hours from the second day after the change on."""
    noise, kind = args
    name = f"{kind}-noise-{noise:.0%}"
    scenario = Scenario()
    run = run_trace(
        f"{name}.csv",
        scenario=scenario,
        score_from=START + 5 * DAY,
        policies=("tidal", "hpa"),
        series=synthetic(noise, kind),
        name=name,
    )
    nodes = run.results["tidal"].cloud_nodes
    per_day = nodes[: nodes.size // 1440 * 1440].reshape(-1, 1440).sum(axis=1)
    settled = float(per_day[-3:].mean())
    worst = float(per_day.max()) / settled if settled else float("nan")
    # cloud_nodes starts where the scoring does, on day 5.
    after = float(nodes[(SHIFT_DAY + 2 - 5) * 1440 :].sum()) / 60.0
    return name, report([run], scenario, model="auto")["traces"][name], worst, after, run.seconds


def main(argv: list[str]) -> int:
    if argv:
        print(__doc__.split("\n\n")[-2], file=sys.stderr)
        return 2
    cases = [(noise, kind) for kind in KINDS for noise in NOISES]
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=min(len(cases), os.cpu_count() or 1)) as pool:
        rows = list(pool.map(one, cases))
    wall = time.perf_counter() - started
    print(f"level shift on a daily sine: {len(rows)} synthetic traces, {wall:.0f} s wall time")
    print(
        "| trace | cloud ratio | tidal unserved | hpa unserved | unserved ratio "
        "| tidal's costliest day / settled | tidal's node-hours from day 12 | wall |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, trace, worst, after, seconds in rows:
        tidal, hpa = trace["tidal"], trace["hpa"]
        paid = hpa["cloud_replica_hours"]
        cloud = tidal["cloud_replica_hours"] / paid if paid else float("nan")
        unserved = unserved_ratio(trace, EPS)
        print(
            f"| {name} | {cloud:.3f} | {tidal['unserved_fraction']:.2e} "
            f"| {hpa['unserved_fraction']:.2e} | {unserved:.4f} | {worst:.2f} | {after:.0f} "
            f"| {seconds:.0f} s |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
