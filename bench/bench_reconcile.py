"""Reconcile time per object with 50 GatewayAutoscalers against the Kubernetes API emulator.

    python bench/bench_reconcile.py [--objects 50] [--passes 5]

The Kubernetes side is real HTTP to the emulator (tests/support/kube_emulator.py): per object
the three Deployment reads, scale and placeholder writes when they change, the status patch
and Events, plus one node and pod listing per pass shared by all objects. Load comes from an
in-memory source (a daily sine at one-minute steps, 3 days) so that the numbers are the
operator's and the API's, not Prometheus's; fits (seasonal-naive) are finished before timing.
Prints the mean and percentiles per object, and per pass. Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from controller.operator import Operator, OperatorSettings
from forecasts.series import LoadSeries
from tests.integration.operator_cluster import add_region, gwa_body
from tests.support.kube_emulator import running_emulator


class SineSource:
    """A daily sine wave per query (phase from the query text), on the requested grid."""

    def read_history(self, query: str, *, start: float, end: float, step: float) -> LoadSeries:
        first = math.ceil(start / step) * step
        times = np.arange(first, end + 1e-9, step)
        phase = (hash(query) % 24) * 3600
        values = 20_000 + 15_000 * np.sin(2 * np.pi * ((times + phase) % 86400) / 86400)
        return LoadSeries(first, step, values)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=50)
    parser.add_argument("--passes", type=int, default=5)
    args = parser.parse_args()

    with running_emulator() as kube:
        for i in range(args.objects):
            region = f"r{i:02d}"
            add_region(kube, region, physical_nodes=2, cpu="8")
            kube.create(
                gwa_body(
                    region,
                    load={
                        "query": f'sum(gateway_active_connections{{region="{region}"}})',
                        "perReplica": 1000,
                        "step": "1m",
                        "history": "3d",
                    },
                )
            )
        settings = OperatorSettings(leader_election=False, metrics_port=0, loop_interval=60)
        operator = Operator(settings, api_client=kube.api_client(), source=SineSource())

        started = time.perf_counter()
        operator.run_once()  # first pass: creates placeholders, starts every fit
        first_pass = time.perf_counter() - started
        for outcome in operator.run_once().values():
            assert outcome.reason != "InternalError", outcome.message
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            pending = [s for s in operator.models._states.values() if s.fitted is None]
            if not pending:
                break
            time.sleep(0.1)
            operator.run_once()

        per_object: list[float] = []
        per_pass: list[float] = []
        for _ in range(args.passes):
            timings: list[float] = []
            started = time.perf_counter()
            snapshot = operator.kube.snapshot()
            objects = operator.kube.list_autoscalers()
            for obj in objects:
                t0 = time.perf_counter()
                outcome = operator.reconciler.reconcile(obj, snapshot)
                timings.append(time.perf_counter() - t0)
                assert outcome.ok, outcome.message
            per_pass.append(time.perf_counter() - started)
            per_object.extend(timings)
        operator.models.shutdown()

    ms = sorted(t * 1000 for t in per_object)
    q = statistics.quantiles(ms, n=20)
    print(f"objects: {args.objects}, passes timed: {args.passes} (after the fits finished)")
    print(f"first pass (creates placeholders, starts fits): {first_pass:.2f} s")
    print(
        f"reconcile per object: mean {statistics.mean(ms):.1f} ms, "
        f"p50 {statistics.median(ms):.1f} ms, "
        f"p95 {q[18]:.1f} ms, max {ms[-1]:.1f} ms"
    )
    print(
        f"whole pass (list nodes+pods+GWAs, {args.objects} objects): "
        f"mean {statistics.mean(per_pass):.2f} s, max {max(per_pass):.2f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
