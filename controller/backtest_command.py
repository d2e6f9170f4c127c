"""``tidal backtest``: the simulator on real traces, every scenario number a flag."""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import fields
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from controller.backtest import POLICIES, TraceRun, backtest_spec, report, run_trace, summary
from controller.durations import parse_duration
from controller.simulator import Scenario
from controller.spec import LimitBy, format_validation_error
from forecasts.errors import ForecastError
from forecasts.series import parse_timestamp

__all__ = ["add_arguments", "run", "scenario_from_args"]

_DURATION_KNOBS = {
    "metric_delay": "the load the controller sees is this old",
    "pod_ready": "a gateway pod is ready this long after it is requested",
    "node_lead_time": "a cloud node is ready this long after it is requested",
    "loop_interval": "the controller acts this often, in whole minutes (the simulator's tick)",
    "node_unneeded_time": "a cloud node unneeded this long is given back (Cluster Autoscaler)",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("traces", nargs="+", metavar="TRACE.csv", help="timestamp,load CSV files")
    parser.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    parser.add_argument("--plot", metavar="FILE.png", help="draw load against ready capacity")
    parser.add_argument(
        "--score-from",
        metavar="TIMESTAMP",
        help="score only after this time (default: two weeks in or the first quarter)",
    )
    parser.add_argument("--model", default="auto", help="forecast model for tidal (default: auto)")
    parser.add_argument(
        "--quantile",
        type=float,
        default=None,
        help="spec.forecast.quantile for tidal (default: the CRD default, 0.95)",
    )
    parser.add_argument(
        "--headroom",
        type=float,
        default=None,
        help="spec.headroom for tidal and the HPA target (default: the CRD default, 0.10)",
    )
    parser.add_argument(
        "--limit-by",
        choices=[choice.value for choice in LimitBy],
        default=None,
        help="spec.behavior.scaleDown.limitBy for tidal (default: the CRD default, Load)",
    )
    parser.add_argument(
        "--hold-starting",
        choices=["true", "false"],
        default=None,
        help="spec.behavior.scaleDown.holdStarting for tidal (default: the CRD default, true)",
    )
    parser.add_argument(
        "--fill-nodes",
        choices=["true", "false"],
        default=None,
        help="spec.cloud.fillNodes for tidal (default: the CRD default, true)",
    )
    parser.add_argument("--policies", default=",".join(POLICIES), help="comma-separated policies")
    parser.add_argument(
        "--jobs", type=int, default=0, help="traces replayed in parallel (default: cores)"
    )
    defaults = Scenario()
    parser.add_argument(
        "--peak-replicas",
        type=int,
        default=defaults.peak_replicas,
        help="scale each trace so that its 99th percentile needs this many replicas",
    )
    parser.add_argument(
        "--physical-capacity",
        type=int,
        default=defaults.physical_capacity,
        help="replicas the physical pool holds",
    )
    parser.add_argument(
        "--replicas-per-node",
        type=int,
        default=defaults.replicas_per_node,
        help="replicas one cloud node holds",
    )
    for name, help_text in _DURATION_KNOBS.items():
        seconds = getattr(defaults, name)
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            default=f"{seconds:.0f}s",
            metavar="DURATION",
            help=f"{help_text} (default {seconds:.0f}s)",
        )


def scenario_from_args(args: argparse.Namespace) -> Scenario:
    """The scenario the flags describe; ValueError names the flag that is wrong."""
    values: dict[str, Any] = {}
    for f in fields(Scenario):
        raw = getattr(args, f.name, None)
        if raw is None:
            continue
        flag = f"--{f.name.replace('_', '-')}"
        if f.name in _DURATION_KNOBS:
            try:
                values[f.name] = parse_duration(raw).total_seconds()
            except ValueError as exc:
                raise ValueError(f"{flag}: {exc}") from None
            if f.name == "loop_interval" and (values[f.name] < 60 or values[f.name] % 60):
                raise ValueError(f"{flag} must be a whole number of minutes, got {raw}")
        else:
            least = 0 if f.name == "physical_capacity" else 1
            if raw < least:
                raise ValueError(f"{flag} must be at least {least}, got {raw}")
            values[f.name] = raw
    return Scenario(**values)


#: The spec fields that flags set, and the flag that sets each.
_SPEC_FLAGS = {
    "quantile": "forecast.quantile",
    "headroom": "headroom",
    "limit_by": "behavior.scaleDown.limitBy",
    "hold_starting": "behavior.scaleDown.holdStarting",
    "fill_nodes": "cloud.fillNodes",
}


def spec_overrides_from_args(args: argparse.Namespace, scenario: Scenario) -> dict[str, Any]:
    """The spec fields the flags set, validated; ValueError names the flag and the field."""
    try:
        backtest_spec("check", scenario=scenario, model=args.model)
    except ValidationError as exc:
        raise ValueError(f"--model {args.model}: {format_validation_error(exc)}") from None
    overrides: dict[str, Any] = {}
    for name, field in _SPEC_FLAGS.items():
        value = getattr(args, name, None)
        if value is None:
            continue
        if name in ("hold_starting", "fill_nodes"):
            value = value == "true"
        try:
            backtest_spec("check", scenario=scenario, model=args.model, overrides={field: value})
        except ValidationError as exc:
            flag = f"--{name.replace('_', '-')} {getattr(args, name)}"
            raise ValueError(f"{flag}: {format_validation_error(exc)}") from None
        overrides[field] = value
    return overrides


def _run_one(
    path: str,
    scenario: Scenario,
    model: str,
    score_from: float | None,
    policies: tuple[str, ...],
    overrides: dict[str, Any],
    queue: Any,
) -> TraceRun:
    name = Path(path).stem

    def tick(done: int, total: int) -> None:
        if queue is not None and (done % 240 == 0 or done == total):
            queue.put((name, done, total))

    return run_trace(
        path,
        scenario=scenario,
        model=model,
        score_from=score_from,
        policies=policies,
        spec_overrides=overrides,
        on_minute=tick,
    )


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    err = Console(stderr=True, soft_wrap=True)
    try:
        scenario = scenario_from_args(args)
        overrides = spec_overrides_from_args(args, scenario)
    except ValueError as exc:
        err.print(f"tidal backtest: {exc}", markup=False, highlight=False)
        return 2
    policies = tuple(p.strip() for p in args.policies.split(",") if p.strip())
    unknown = [p for p in policies if p not in POLICIES]
    if unknown:
        err.print(f"tidal backtest: unknown policy {unknown[0]!r}; known: {', '.join(POLICIES)}")
        return 2
    score_from = None
    if args.score_from:
        try:
            score_from = parse_timestamp(args.score_from)
        except ValueError:
            err.print(
                f"tidal backtest: --score-from {args.score_from!r} is not an ISO-8601 timestamp"
            )
            return 2
    seen: dict[str, str] = {}
    for path in args.traces:
        if not Path(path).is_file():
            err.print(f"tidal backtest: {path}: no such file")
            return 2
        stem = Path(path).stem
        if stem in seen:
            err.print(
                f"tidal backtest: {seen[stem]} and {path} are both reported as {stem!r}; "
                "rename one",
                markup=False,
                highlight=False,
            )
            return 2
        seen[stem] = path
    jobs = args.jobs or min(len(args.traces), os.cpu_count() or 1)
    runs: dict[str, TraceRun] = {}
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=err,
        transient=False,
        disable=not err.is_terminal,
    ) as progress:
        tasks = {Path(p).stem: progress.add_task(Path(p).stem, total=None) for p in args.traces}
        try:
            if jobs <= 1:
                for path in args.traces:
                    name = Path(path).stem

                    def tick(done: int, total: int, name: str = name) -> None:
                        if done % 240 == 0 or done == total:
                            progress.update(tasks[name], completed=done, total=total)

                    runs[name] = run_trace(
                        path,
                        scenario=scenario,
                        model=args.model,
                        score_from=score_from,
                        policies=policies,
                        spec_overrides=overrides,
                        on_minute=tick,
                    )
                    if not err.is_terminal:
                        err.print(f"{name}: replayed in {runs[name].seconds:.0f}s")
            else:
                ctx = multiprocessing.get_context("spawn")
                with ctx.Manager() as manager, ProcessPoolExecutor(jobs, mp_context=ctx) as pool:
                    queue = manager.Queue()
                    futures = {
                        pool.submit(
                            _run_one,
                            p,
                            scenario,
                            args.model,
                            score_from,
                            policies,
                            overrides,
                            queue,
                        ): p
                        for p in args.traces
                    }
                    pending = set(futures)
                    while pending:
                        while not queue.empty():
                            name, done, total = queue.get()
                            progress.update(tasks[name], completed=done, total=total)
                        finished = [f for f in pending if f.done()]
                        for future in finished:
                            pending.discard(future)
                            done = future.result()
                            runs[done.name] = done
                            progress.update(tasks[done.name], completed=1, total=1)
                            if not err.is_terminal:
                                err.print(f"{done.name}: replayed in {done.seconds:.0f}s")
                        if pending:
                            wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
        except (ForecastError, ValueError, ValidationError) as exc:
            err.print(f"tidal backtest: {exc}")
            return 2
    ordered = [runs[Path(p).stem] for p in args.traces]
    for run_ in ordered:
        share, problem = run_.forecast_gap()
        if share >= 0.01:
            why = f": {problem}" if problem else ""
            err.print(
                f"tidal backtest: warning: {run_.name}: tidal had no usable forecast for "
                f"{share:.0%} of the scored minutes and sized them reactively{why}. "
                "Give the trace more history before --score-from.",
                markup=False,
                highlight=False,
            )
    result = report(ordered, scenario, model=args.model, overrides=overrides)
    if args.json:
        json.dump(result, sys.stdout)
        sys.stdout.write("\n")
    else:
        print_table(result, Console())
    if args.plot:
        from controller.plotting import plot_backtest

        plot_backtest(ordered, args.plot)
        err.print(f"plot written to {args.plot}")
    return 0


def print_table(result: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    table = Table(title="Backtest: tidal against the HPA and a perfect-foresight oracle")
    for column in (
        "trace",
        "policy",
        "unserved",
        "under-prov. min",
        "cloud replica-h",
        "physical replica-h",
        "replicas removed",
    ):
        table.add_column(column, justify="right" if column not in ("trace", "policy") else "left")
    for trace, policies in result["traces"].items():
        for name, m in policies.items():
            table.add_row(
                trace,
                name,
                f"{m['unserved_fraction']:.5%}",
                str(m["underprovisioned_minutes"]),
                f"{m['cloud_replica_hours']:.0f}",
                f"{m['physical_replica_hours']:.0f}",
                str(m["replicas_removed"]),
            )
        table.add_section()
    console.print(table)
    s = summary(result)
    console.print(
        f"tidal/hpa, geometric means over traces: unserved {s['unserved_ratio_geomean']:.3f} "
        f"(worst trace {s['unserved_ratio_max']:.3f}), "
        f"cloud hours {s['cloud_hours_ratio_geomean']:.2f}; "
        f"replicas removed: tidal {s['tidal_replicas_removed']}, hpa {s['hpa_replicas_removed']}"
    )
