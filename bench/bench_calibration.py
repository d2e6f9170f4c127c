"""Benchmark: are the odds the planner buys cloud nodes on the odds the trace then had?

Not a test: it prints what it measured. Beyond the nodes its point forecast needs, the planner
holds a cloud node only when the share of the node's replica-time the load is expected to
need, over Cluster Autoscaler's hold once the node is ready, reaches ``1 - quantile`` of what
the node is paid for, boot included (``_cloud_worth_holding`` in ``controller/planner.py``).
The expectation comes from the forecast's calibrated error distribution. If it runs high, the
planner pays for insurance that is never used; if it runs low, it leaves load unserved that it
meant to cover. If it is right on average, a cheaper plan at the same unserved load needs a
sharper forecast, not a better reading of this one.

For every minute tidal plans with a forecast (the default scenario and the CRD's defaults, as
``tidal backtest`` runs them), and for each of the first ``--nodes`` cloud nodes past the
physical pool, it compares the node's expected use over the window the rule reads (from a
node's boot and a pod's start from now, for the autoscaler's hold) with the share of the
node's replicas the trace's load then needed, minute by minute. Usage (from the repository
root):

    python bench/bench_calibration.py [TRACE.csv ...] [--nodes N] [--max-days DAYS]
                                      [--plot FILE.png]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
from bench_backtest import shared_traces

from controller.backtest import backtest_spec, load_for_replay
from controller.planner import _window_weights, target_per_replica
from controller.simulator import (
    MINUTE,
    PolicyView,
    Scenario,
    Targets,
    TidalPolicy,
    oracle_need,
    simulate,
)
from forecasts.base import DAY
from forecasts.errors import ForecastError
from forecasts.series import load_trace

#: Bins of expected use: fine near the price the rule compares against (0.08 by default).
EDGES = np.array([0.0, 0.01, 0.03, 0.05, 0.08, 0.12, 0.2, 0.35, 0.6, 1.0 + 1e-9])
#: As the planner counts a load of exactly ``s`` replicas' worth as needing ``s`` replicas.
TOLERANCE = 1e-9


@dataclass
class Measured:
    """Per planned minute and node: the expected use the rule read, and the use there was."""

    name: str
    expected: np.ndarray  # (minutes, nodes)
    used: np.ndarray  # (minutes, nodes)
    price: float  # the expected use at which the rule holds a node
    seconds: float


class Recorder:
    """Tidal's policy, unchanged, reading the expected use of the nodes past the pool."""

    def __init__(self, policy: TidalPolicy, scenario: Scenario, nodes: int) -> None:
        self.policy = policy
        spec = policy.spec
        self.per_node = spec.cloud.replicas_per_node
        self.to_load = target_per_replica(spec)
        self.lead = spec.cloud.node_lead_time.total_seconds() + policy.settings.pod_ready
        self.hold = policy.settings.node_hold
        self.nodes = nodes
        self.rows: list[tuple[float, int, np.ndarray]] = []

    def __call__(self, minute: int, view: PolicyView) -> Targets:
        targets = self.policy(minute, view)
        plan, forecast = self.policy.last_plan, self.policy.last_forecast
        if plan is None or forecast is None or plan.now != view.now:
            return targets
        start = view.now + self.lead
        steps, seconds = _window_weights(forecast, start, start + self.hold)
        if steps.size:
            slots = plan.physical_capacity + np.arange(self.nodes * self.per_node, dtype=float)
            odds = forecast.exceedance((slots + TOLERANCE) * self.to_load, steps)
            use = (odds @ seconds / seconds.sum()).reshape(self.nodes, self.per_node).mean(axis=1)
            self.rows.append((start, plan.physical_capacity, use))
        return targets


def measure(args: tuple[str, int, float | None]) -> Measured:
    """One trace: tidal replayed, each planned minute's expected use against the trace's."""
    path, nodes, max_days = args
    started = time.perf_counter()
    scenario = Scenario()
    raw = load_trace(path)
    if max_days is not None:
        raw = raw.until(raw.start + max_days * DAY)
    trace = load_for_replay(path, scenario=scenario, series=raw)
    spec = backtest_spec(trace.name, scenario=scenario)
    recorder = Recorder(TidalPolicy(spec, scenario), scenario, nodes)
    simulate(
        trace.load,
        spec=spec,
        scenario=scenario,
        score_from=trace.score_from,
        policies={"tidal": recorder},
        need=oracle_need(trace.load, spec),
    )
    load = trace.load
    values = load.values
    window = round(recorder.hold / MINUTE)
    expected, used = [], []
    for start, capacity, use in recorder.rows:
        # The minutes after ``start``, through the hold, as the rule's window holds them.
        first = int(np.floor((start - load.start) / load.step + 1e-9)) + 1
        seen = values[first : first + window]
        seen = seen[np.isfinite(seen)]
        if seen.size < window:
            continue  # the trace ends (or its metric is missing) inside the window
        slots = capacity + np.arange(nodes * recorder.per_node, dtype=float)
        needed = seen[:, None] > (slots[None, :] + TOLERANCE) * recorder.to_load
        used.append(needed.mean(axis=0).reshape(nodes, recorder.per_node).mean(axis=1))
        expected.append(use)
    price = (1.0 - spec.forecast.quantile) * (recorder.lead + recorder.hold) / recorder.hold
    return Measured(
        trace.name,
        np.asarray(expected).reshape(-1, nodes),
        np.asarray(used).reshape(-1, nodes),
        price,
        time.perf_counter() - started,
    )


def bins_table(expected: np.ndarray, used: np.ndarray) -> list[tuple[str, int, float, float]]:
    """Rows per bin of expected use: its range, minutes x nodes, mean expected and used."""
    rows = []
    which = np.digitize(expected, EDGES) - 1
    for b in range(EDGES.size - 1):
        inside = which == b
        if inside.any():
            label = f"{EDGES[b]:.2f} to {min(EDGES[b + 1], 1.0):.2f}"
            rows.append((label, int(inside.sum()), expected[inside].mean(), used[inside].mean()))
    return rows


def plot(results: list[Measured], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 6))
    ax.plot([1e-4, 1], [1e-4, 1], color="grey", lw=1, label="expected = used")
    for result in results:
        # A bin of a few hundred minutes x nodes is a handful of spikes, and a bin never used
        # has no place on a log scale: neither is drawn.
        rows = [
            r
            for r in bins_table(result.expected.ravel(), result.used.ravel())
            if r[1] >= 500 and r[2] > 0 and r[3] > 0
        ]
        ax.plot([r[2] for r in rows], [r[3] for r in rows], marker="o", label=result.name)
    ax.axvline(results[0].price, color="black", ls=":", lw=1, label="the rule's price")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("expected use of a cloud node past the physical pool (the rule's reading)")
    ax.set_ylabel("use the trace then had")
    ax.set_title("Cloud insurance: expected against actual use (bins of 500 or more)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("traces", nargs="*", help="trace CSVs (default: ../shared/traces/*.csv)")
    parser.add_argument("--nodes", type=int, default=4, help="nodes past the pool (default 4)")
    parser.add_argument("--max-days", type=float, default=None, help="replay the first DAYS")
    parser.add_argument("--plot", default=None, metavar="FILE.png", help="draw the bins")
    args = parser.parse_args(argv)
    if args.nodes < 1:
        parser.error("--nodes must be at least 1")
    traces = args.traces or shared_traces()
    if not traces:
        print("no traces: pass TRACE.csv files or run from the repository root beside ../shared")
        return 2
    jobs = [(path, args.nodes, args.max_days) for path in traces]
    results: list[Measured] = []
    started = time.perf_counter()
    try:
        with ProcessPoolExecutor(min(len(jobs), os.cpu_count() or 1)) as pool:
            for result in pool.map(measure, jobs):
                planned = f"{len(result.expected)} planned minutes"
                print(f"{result.name}: {planned}, {result.seconds:.0f} s")
                if len(result.expected):
                    results.append(result)
                else:
                    print("  left out: no minute planned with a forecast (too short a trace?)")
    except (ForecastError, ValueError) as exc:  # each names its trace
        print(f"error: {exc}")
        return 2
    if not results:
        print("nothing to compare: no trace had a minute planned with a forecast")
        return 1
    print(f"\nThe rule holds a node once its expected use reaches {results[0].price:.3f}.")
    print("\n| trace | node past the pool | expected use | used | used / expected |")
    print("|---|---|---|---|---|")
    for result in results:
        for k in range(args.nodes):
            e, u = result.expected[:, k].mean(), result.used[:, k].mean()
            ratio = f"{u / e:.2f}" if e > 0 else "-"
            print(f"| {result.name} | {k + 1} | {e:.4f} | {u:.4f} | {ratio} |")
    print("\nBy bin of expected use, every node and minute together:")
    print("\n| trace | expected use | minutes x nodes | mean expected | mean used |")
    print("|---|---|---|---|---|")
    for result in results:
        for label, n, e, u in bins_table(result.expected.ravel(), result.used.ravel()):
            print(f"| {result.name} | {label} | {n} | {e:.4f} | {u:.4f} |")
    if args.plot:
        plot(results, args.plot)
        print(f"\nplot: {args.plot}")
    print(f"\n{time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
