"""``tidal demo``: three regions of a bundled real trace through the planner, HPA and an oracle.

No cluster is needed: the regions run on the simulator, which calls the same planner the
operator does. The bundled trace is New York taxi demand (``controller/data``), read as gateway
load and shifted by a few hours per region so that the regions peak at different hours.
"""

from __future__ import annotations

import argparse
import math
import time
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from pydantic import ValidationError

from controller.backtest import (
    PER_REPLICA,
    TraceRun,
    backtest_spec,
    build_policies,
    prepare_trace,
    report,
    summary,
)
from controller.cli import rich_console, timestamp_flag
from controller.simulator import Scenario, TidalPolicy, oracle_need, simulate
from controller.spec import format_validation_error
from forecasts.base import DAY
from forecasts.series import LoadSeries, load_trace

__all__ = ["REGIONS", "add_arguments", "run"]

#: Region name and how many hours its day runs ahead of New York's.
REGIONS: tuple[tuple[str, float], ...] = (("us-east", 0.0), ("eu-west", 6.0), ("ap-south", 10.5))
HISTORY_DAYS = 14
TRACE = "nyc-taxi-30min-local.csv"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--days", type=float, default=3.0, help="days replayed and scored (default 3)"
    )
    parser.add_argument(
        "--start",
        default="2014-11-01T00:00:00",
        help="first day of the two weeks of history (default 2014-11-01)",
    )
    parser.add_argument("--model", default="auto", help="forecast model (default auto)")
    parser.add_argument(
        "--plot",
        default="tidal-demo.png",
        metavar="FILE.png",
        help="where to write the picture (default ./tidal-demo.png)",
    )
    parser.add_argument(
        "--every",
        type=float,
        default=3.0,
        metavar="HOURS",
        help="print what the planner does every this many simulated hours (default 3)",
    )


def _bundled_trace() -> LoadSeries:
    with resources.as_file(resources.files("controller.data") / TRACE) as path:
        return load_trace(path)


def _region_series(trace: LoadSeries, ahead_hours: float, start: float, days: float) -> LoadSeries:
    """The trace seen by a region whose clock runs ``ahead_hours`` ahead of New York's."""
    shift = ahead_hours * 3600.0
    shifted = LoadSeries(trace.start - shift, trace.step, trace.values)
    window = shifted.since(start).until(start + (HISTORY_DAYS + days) * DAY)
    return window


def _starts(trace: LoadSeries, days: float) -> tuple[float, float]:
    """The first and last ``--start`` whose history and replayed days every region's view
    of the trace holds whole (see :func:`_region_series`)."""
    ahead = [hours * 3600.0 for _region, hours in REGIONS]
    return trace.start - min(ahead), trace.end - max(ahead) - (HISTORY_DAYS + days) * DAY


def _day(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M")


def _connections(value: float | None) -> str:
    """A load in connections, as the planner's messages give it, in thousands."""
    return "-" if value is None else f"{value / 1000:.1f}k"


def _clock(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%a %H:%M")


def run(args: argparse.Namespace) -> int:
    console = rich_console()
    err = rich_console(stderr=True, soft_wrap=True)

    def fail(message: str) -> int:
        err.print(f"tidal demo: {message}", markup=False, highlight=False)
        return 2

    started = time.perf_counter()
    scenario = Scenario()
    try:
        start = timestamp_flag("--start", args.start)
    except ValueError as exc:
        return fail(str(exc))
    if not 0.25 <= args.days <= 30:
        return fail("--days must be between 0.25 and 30")
    if not 0 < args.every < math.inf:
        return fail(f"--every must be a positive number of hours, got {args.every:g}")
    try:
        backtest_spec("check", scenario=scenario, model=args.model)
    except ValidationError as exc:
        return fail(f"--model {args.model}: {format_validation_error(exc)}")
    from controller.plotting import plot_backtest, plot_path

    try:
        plot = plot_path(args.plot)
    except ValueError as exc:
        return fail(f"--plot {args.plot or repr(args.plot)}: {exc}")
    trace = _bundled_trace()
    earliest, latest = _starts(trace, args.days)
    if not earliest <= start <= latest:
        return fail(
            f"--start {args.start}: the bundled trace runs from {_day(trace.start)} to "
            f"{_day(trace.end)}: for {HISTORY_DAYS} days of history and {args.days:g} days "
            f"replayed, --start can be from {_day(earliest)} to {_day(latest)}"
        )
    console.print(
        f"[bold]Tidal demo[/bold]: {len(REGIONS)} regions of New York taxi demand read as "
        "gateway load, "
        f"{HISTORY_DAYS} days of history, {args.days:g} days replayed minute by minute.\n"
        f"Each region: physical pool {scenario.physical_capacity} replicas, cloud nodes of "
        f"{scenario.replicas_per_node} replicas ready {scenario.node_lead_time / 60:.0f} min after "
        f"request, pods ready {scenario.pod_ready / 60:.0f} min after request, load seen "
        f"{scenario.metric_delay / 60:.0f} min late. A gateway replica serves "
        f"{PER_REPLICA:g} connections. Each line gives the load the planner saw, the peak of "
        "the forecast's upper quantile over its horizon, the replicas it asks for and "
        "the cloud replicas' worth of nodes it holds, then why.\n"
    )
    runs: list[TraceRun] = []
    # Past the replay's length it prints only at the end (and 1e307 hours is no integer).
    every = max(1, round(min(args.every, 24.0 * 366) * 60))
    for region, ahead in REGIONS:
        raw = _region_series(trace, ahead, start, args.days)
        load = prepare_trace(raw, scenario)
        score_from = load.start + HISTORY_DAYS * DAY
        spec = backtest_spec(region, scenario=scenario, model=args.model)
        need = oracle_need(load, spec)
        policies = build_policies(spec, scenario, need, ("tidal", "hpa", "oracle"))
        tidal = policies["tidal"]
        assert isinstance(tidal, TidalPolicy)
        console.rule(f"{region} (its day runs {ahead:g} h ahead of New York)")

        def show(
            done: int,
            total: int,
            tidal: TidalPolicy = tidal,
        ) -> None:
            if done % every and done != total:
                return
            plan = tidal.last_plan
            if plan is None:
                return
            console.print(
                f"  {_clock(plan.now)}  load {_connections(plan.load)}  "
                f"peak {_connections(plan.forecast_peak)} → physical {plan.physical.replicas}, "
                f"cloud {plan.cloud.replicas}, reserved {plan.reserve.replicas}\n"
                f"             [dim]{plan.total.reason.value}: {plan.total.message}[/dim]"
            )

        t0 = time.perf_counter()
        results = simulate(
            load,
            spec=spec,
            scenario=scenario,
            score_from=score_from,
            policies=policies,
            need=need,
            on_minute=show,
        )
        runs.append(
            TraceRun(
                region,
                load,
                score_from,
                results,
                time.perf_counter() - t0,
                scenario.replicas_per_node,
            )
        )
    result = report(runs, scenario, model=args.model)
    _print_comparison(console, result)
    try:
        out = plot_backtest(runs, plot, per_replica=PER_REPLICA)
    except (OSError, ValueError) as exc:
        return fail(f"--plot {plot}: the comparison stands, the plot failed: {exc}")
    console.print(f"\nPlot: {out.resolve()}")
    console.print(f"Finished in {time.perf_counter() - started:.0f} s.")
    return 0


def _print_comparison(console: Any, result: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title="\nTidal against the HPA and a perfect-foresight oracle")
    for column in (
        "region",
        "policy",
        "unserved load",
        "minutes short",
        "cloud replica hours",  # words, so that a narrow terminal wraps it rather than cut
        "replicas removed",
    ):
        table.add_column(column, justify="left" if column in ("region", "policy") else "right")
    for region, policies in result["traces"].items():
        for name, m in policies.items():
            table.add_row(
                region,
                name,
                f"{m['unserved_fraction']:.4%}",
                str(m["underprovisioned_minutes"]),
                f"{m['cloud_replica_hours']:.0f}",
                str(m["replicas_removed"]),
            )
        table.add_section()
    console.print(table)
    s = summary(result)
    console.print(
        f"Across regions, tidal leaves {s['unserved_ratio_geomean']:.3f}× the unserved load of the "
        f"HPA for {s['cloud_hours_ratio_geomean']:.2f}× its cloud hours, and removes "
        f"{s['tidal_replicas_removed']} replicas against the HPA's {s['hpa_replicas_removed']}."
    )
