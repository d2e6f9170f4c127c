"""``tidal backtest``: the simulator on real traces, every scenario number a flag."""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import fields
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from controller.backtest import (
    KNOWN_POLICIES,
    POLICIES,
    REPLICA_CAP,
    PreparedTrace,
    TraceRun,
    backtest_spec,
    load_for_replay,
    replay,
    report,
    summary,
)
from controller.cli import rich_console, timestamp_flag
from controller.durations import parse_duration
from controller.simulator import CLOUD_SCORINGS, Scenario
from controller.spec import MIN_PER_REPLICA, LimitBy, format_validation_error
from forecasts.errors import ForecastError
from forecasts.interrupts import started_workers

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
        help="score only after this time (default: two weeks in or the first quarter, "
        "whichever is sooner; without an offset it is read as UTC, and on a local-clock trace "
        "after summer time's end an hour on, as the trace's own times are)",
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
    parser.add_argument(
        "--stabilization",
        metavar="DURATION",
        default=None,
        help="spec.behavior.scaleDown.stabilization for tidal (default: the CRD default, 10m; "
        "the HPA keeps its own 5 minutes)",
    )
    parser.add_argument(
        "--policies",
        default=",".join(POLICIES),
        help=f"comma-separated policies (default: {','.join(POLICIES)}; also predictive, a "
        "predictive HPA blind to the capacity tiers, after Crane's EHPA and AHPA)",
    )
    parser.add_argument(
        "--jobs", type=int, default=0, help="traces replayed in parallel (default 0: cores)"
    )
    defaults = Scenario()
    parser.add_argument(
        "--peak-replicas",
        type=int,
        default=None,
        help="scale each trace so that its 99th percentile needs this many replicas "
        f"(default {defaults.peak_replicas})",
    )
    parser.add_argument(
        "--per-replica",
        type=float,
        default=None,
        metavar="LOAD",
        help="replay each trace at its own size instead: the load one replica serves, in the "
        "trace's unit (spec.load.perReplica), in place of --peak-replicas",
    )
    parser.add_argument(
        "--physical-capacity",
        type=int,
        default=defaults.physical_capacity,
        help=f"replicas the physical pool holds (default {defaults.physical_capacity})",
    )
    parser.add_argument(
        "--replicas-per-node",
        type=int,
        default=defaults.replicas_per_node,
        help=f"replicas one cloud node holds (default {defaults.replicas_per_node})",
    )
    parser.add_argument(
        "--hpa-min-replicas",
        type=int,
        default=defaults.hpa_min_replicas,
        help="the HPA's minReplicas (default 1, its own default; the physical capacity keeps "
        "the physical pool warm, as tidal does)",
    )
    parser.add_argument(
        "--physical-per-machine",
        type=int,
        default=None,
        help="gateways one physical machine holds, for the order the HPA's ReplicaSet removes "
        "pods in (default: as many as a cloud node, the cloud's go first; more: the physical "
        "machines are the more crowded, and theirs go first)",
    )
    parser.add_argument(
        "--cloud-scoring",
        choices=CLOUD_SCORINGS,
        default=None,
        help="how cloud nodes fill and empty: Packed, an idealisation where a node goes once "
        "the rest fit on one fewer; MostAllocated or LeastAllocated (Kubernetes' default), the "
        "scheduler's scoring, each node's pods counted, and a node going once under the "
        f"threshold below, its pods evicted (default {defaults.cloud_scoring})",
    )
    parser.add_argument(
        "--scale-down-utilization-threshold",
        type=float,
        default=None,
        metavar="SHARE",
        help="with MostAllocated or LeastAllocated, Cluster Autoscaler's threshold: a node "
        "whose pods take less than this share of it is unneeded "
        f"(default {defaults.scale_down_utilization_threshold})",
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
            # The simulator ticks every minute: a lag between ticks would be rounded up there
            # while the report and the planner were told the value typed. Only the metric's
            # age may be none at all.
            least = 0 if f.name == "metric_delay" else 60
            if values[f.name] < least or values[f.name] % 60:
                at_least = "" if least == 0 else ", at least 1m"
                raise ValueError(
                    f"{flag} must be a whole number of minutes (the simulator's tick)"
                    f"{at_least}, got {raw}"
                )
        elif f.name == "cloud_scoring":
            values[f.name] = raw
        elif f.name == "per_replica":
            if not MIN_PER_REPLICA <= raw < math.inf:
                raise ValueError(
                    f"{flag} must be a number of at least {MIN_PER_REPLICA:g} (as "
                    f"spec.load.perReplica), got {raw}"
                )
            if args.peak_replicas is not None:
                raise ValueError(
                    "--per-replica replays a trace at its own size and --peak-replicas scales "
                    "it: give one of them"
                )
            values[f.name] = raw
        elif f.name == "scale_down_utilization_threshold":
            if not 0.0 < raw <= 1.0:
                raise ValueError(f"{flag} must be above 0 and at most 1, got {raw}")
            values[f.name] = raw
        else:
            least = 0 if f.name == "physical_capacity" else 1
            if raw < least:
                raise ValueError(f"{flag} must be at least {least}, got {raw}")
            values[f.name] = raw
    if values.get("hpa_min_replicas", 1) > REPLICA_CAP:
        raise ValueError(
            f"--hpa-min-replicas must be at most {REPLICA_CAP}, got {values['hpa_min_replicas']}"
        )
    return Scenario(**values)


def _a_number(flag: str, value: float) -> None:
    """A ValueError naming ``flag`` for ``nan``, which argparse's float takes: every bound
    compares false with it, and the spec's said only "Input should be less than 1"."""
    if math.isnan(value):
        raise ValueError(f"{flag} must be a number, got {value}")


#: The spec fields that flags set, and the flag that sets each.
_SPEC_FLAGS = {
    "quantile": "forecast.quantile",
    "headroom": "headroom",
    "limit_by": "behavior.scaleDown.limitBy",
    "hold_starting": "behavior.scaleDown.holdStarting",
    "fill_nodes": "cloud.fillNodes",
    "stabilization": "behavior.scaleDown.stabilization",
}


#: The spec fields the scenario's flags set, by where a validation error puts them.
_SCENARIO_FIELDS: dict[tuple[str, ...], str] = {
    ("cloud", "replicasPerNode"): "replicas_per_node",
    ("cloud", "nodeLeadTime"): "node_lead_time",
    ("physical", "maxReplicas"): "physical_capacity",
    ("forecast", "model"): "model",
    ("forecast",): "model",  # the model's own check: a name not in the registry
}


def _flags_behind(error: ValidationError, args: argparse.Namespace) -> str:
    """The flags a refused backtest spec came from, as given: the field's own flag where the
    error names one of theirs, else the two that set the history a fit needs (the model, and
    how far ahead a node's lead time makes it forecast)."""

    def given(name: str) -> str:
        return f"--{name.replace('_', '-')} {getattr(args, name, None)}"

    for item in error.errors():
        loc = tuple(str(part) for part in item["loc"])
        name = _SCENARIO_FIELDS.get(loc[:2]) or _SCENARIO_FIELDS.get(loc[:1])
        if name is not None:
            return given(name)
    return f"{given('model')}, {given('node_lead_time')}"


def spec_overrides_from_args(args: argparse.Namespace, scenario: Scenario) -> dict[str, Any]:
    """The spec fields the flags set, validated; ValueError names the flag and the field."""
    try:
        backtest_spec("check", scenario=scenario, model=args.model)
    except ValidationError as exc:
        raise ValueError(f"{_flags_behind(exc, args)}: {format_validation_error(exc)}") from None
    overrides: dict[str, Any] = {}
    for name, field in _SPEC_FLAGS.items():
        value = getattr(args, name, None)
        if value is None:
            continue
        if name in ("hold_starting", "fill_nodes"):
            value = value == "true"
        elif isinstance(value, float):
            _a_number(f"--{name.replace('_', '-')}", value)
        try:
            backtest_spec("check", scenario=scenario, model=args.model, overrides={field: value})
        except ValidationError as exc:
            flag = f"--{name.replace('_', '-')} {getattr(args, name)}"
            raise ValueError(f"{flag}: {format_validation_error(exc)}") from None
        overrides[field] = value
    return overrides


#: Without a terminal, a line of progress this often, in seconds, so a log shows a long run lives.
PROGRESS_EVERY = 30.0


class _Stopped(Exception):
    """A replay given up because another trace failed."""


def _report_minute(done: int, total: int) -> bool:
    """Whether a replay reports this minute: its first, every fourth hour, and its last."""
    return done == 1 or done % 240 == 0 or done == total


def _run_one(
    trace: PreparedTrace,
    scenario: Scenario,
    model: str,
    policies: tuple[str, ...],
    overrides: dict[str, Any],
    queue: Any,
    stop: Any,
) -> TraceRun:
    def tick(done: int, total: int) -> None:
        if _report_minute(done, total):
            if stop.is_set():
                raise _Stopped
            queue.put((trace.name, done, total))

    return replay(
        trace,
        scenario=scenario,
        model=model,
        policies=policies,
        spec_overrides=overrides,
        on_minute=tick,
    )


class _Progress:
    """Each trace's replay on stderr: rich's bars on a terminal, plain lines otherwise."""

    def __init__(self, bars: Any, err: Any, names: list[str]) -> None:
        self._bars = bars
        self._err = err
        self._tasks = {name: bars.add_task(name, total=None) for name in names}
        self._latest: dict[str, tuple[int, int]] = {}
        self._finished: set[str] = set()
        self._shown = time.monotonic()

    def _line(self, text: str) -> None:
        self._err.print(text, markup=False, highlight=False)

    def minute(self, name: str, done: int, total: int) -> None:
        if name in self._finished:
            return  # a worker's last report can arrive after its result
        self._bars.update(self._tasks[name], completed=done, total=total)
        if self._err.is_terminal:
            return
        if name not in self._latest:
            self._line(f"{name}: replaying {total} scored minutes")
        self._latest[name] = (done, total)
        self.show_if_due()

    def show_if_due(self) -> None:
        """Without a terminal, where every unfinished replay is, every PROGRESS_EVERY."""
        now = time.monotonic()
        if self._err.is_terminal or now - self._shown < PROGRESS_EVERY:
            return
        self._shown = now
        for name, (done, total) in self._latest.items():
            if done < total:
                self._line(f"{name}: {done} of {total} minutes replayed ({done / total:.0%})")

    def finished(self, run: TraceRun) -> None:
        self._finished.add(run.name)
        self._latest.pop(run.name, None)
        self._bars.update(self._tasks[run.name], completed=1, total=1)
        if not self._err.is_terminal:
            self._line(f"{run.name}: replayed in {run.seconds:.0f}s")


#: What a bad trace or spec raises: one line naming the trace, exit 2.
_INPUT_ERRORS = (ForecastError, ValueError, ValidationError)


def _named(trace: PreparedTrace, error: object) -> str:
    """The error, starting with the trace's file."""
    text = str(error)
    return text if text.startswith(f"{trace.path}:") else f"{trace.path}: {text}"


def run(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    err = rich_console(stderr=True, soft_wrap=True)

    def fail(message: str) -> int:
        err.print(f"tidal backtest: {message}", markup=False, highlight=False)
        return 2

    try:
        scenario = scenario_from_args(args)
        overrides = spec_overrides_from_args(args, scenario)
    except ValueError as exc:
        return fail(str(exc))
    if args.jobs < 0:
        return fail(f"--jobs must be 0 (one per core) or more, got {args.jobs}")
    if args.scale_down_utilization_threshold is not None and scenario.cloud_scoring == "Packed":
        err.print(
            "tidal backtest: warning: --scale-down-utilization-threshold counts only with "
            "--cloud-scoring MostAllocated or LeastAllocated: Packed gives a node back once its "
            "pods fit on one fewer",
            markup=False,
            highlight=False,
        )
    policies = tuple(p.strip() for p in args.policies.split(","))
    if not any(policies):
        return fail(
            f"--policies {args.policies!r} names no policy; known: {', '.join(KNOWN_POLICIES)}"
        )
    if "" in policies:
        return fail(f"--policies {args.policies!r} holds an empty name between its commas")
    unknown = [p for p in policies if p not in KNOWN_POLICIES]
    if unknown:
        return fail(
            f"--policies {args.policies!r}: unknown policy {unknown[0]!r}; known: "
            f"{', '.join(KNOWN_POLICIES)}"
        )
    twice = [p for i, p in enumerate(policies) if p in policies[:i]]
    if twice:
        return fail(f"--policies {args.policies!r} names {twice[0]} twice")
    if args.score_from is not None:
        try:
            timestamp_flag("--score-from", args.score_from)  # each trace reads it on its clock
        except ValueError as exc:
            return fail(str(exc))
    plot = None
    if args.plot is not None:
        from controller.plotting import plot_path

        try:
            plot = plot_path(args.plot)
        except ValueError as exc:
            return fail(f"--plot {args.plot or repr(args.plot)}: {exc}")
    seen: dict[str, str] = {}
    for path in args.traces:
        if Path(path).is_dir():
            return fail(f"{path}: a directory, not a trace (give its .csv files)")
        if not Path(path).exists():
            return fail(f"{path}: no such file")
        stem = Path(path).stem
        if stem in seen:
            return fail(f"{seen[stem]} and {path} are both reported as {stem!r}; rename one")
        seen[stem] = path
    # Every trace is read and checked before any replay: bad input fails in seconds, not
    # after the good traces have been replayed.
    traces: list[PreparedTrace] = []
    problems: list[str] = []
    for path in args.traces:
        try:
            traces.append(
                load_for_replay(
                    path,
                    scenario=scenario,
                    score_from=args.score_from,
                    headroom=overrides.get("headroom"),
                )
            )
        except (ForecastError, ValueError) as exc:
            problems.append(str(exc))
    for message in problems:
        fail(message)
    if problems:
        return 2
    for trace in traces:
        missing = trace.missing_share
        if missing > 0.05:
            err.print(
                f"tidal backtest: warning: {trace.path}: {missing:.0%} of the scored minutes "
                "have no load sample; they are scored as no load (nothing to serve), so the "
                "scores say little about them",
                markup=False,
                highlight=False,
            )
    # No more workers than traces, asked for or not: a worker would have nothing to replay.
    jobs = min(args.jobs or os.cpu_count() or 1, len(traces))
    runs: dict[str, TraceRun] = {}
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=err,
        transient=False,
        disable=not err.is_terminal,
    ) as bars:
        progress = _Progress(bars, err, [trace.name for trace in traces])
        if jobs <= 1:
            for trace in traces:

                def tick(done: int, total: int, name: str = trace.name) -> None:
                    if _report_minute(done, total):
                        progress.minute(name, done, total)

                try:
                    runs[trace.name] = replay(
                        trace,
                        scenario=scenario,
                        model=args.model,
                        policies=policies,
                        spec_overrides=overrides,
                        on_minute=tick,
                    )
                except _INPUT_ERRORS as exc:
                    return fail(_named(trace, exc))
                progress.finished(runs[trace.name])
        else:
            code = _replay_in_parallel(
                traces,
                runs,
                progress=progress,
                fail=fail,
                jobs=jobs,
                scenario=scenario,
                model=args.model,
                policies=policies,
                overrides=overrides,
            )
            if code:
                return code
    ordered = [runs[trace.name] for trace in traces]
    for run_ in ordered:
        for policy, fallback in (
            ("tidal", "sized them reactively"),
            ("predictive", "ran as the HPA"),
        ):
            share, problem = run_.forecast_gap(policy)
            if share >= 0.01:
                why = f": {problem}" if problem else ""
                err.print(
                    f"tidal backtest: warning: {run_.name}: {policy} had no usable forecast for "
                    f"{share:.0%} of the scored minutes and {fallback}{why}. "
                    "Give the trace more history before --score-from.",
                    markup=False,
                    highlight=False,
                )
    result = report(ordered, scenario, model=args.model, overrides=overrides)
    if args.json:
        json.dump(result, sys.stdout)
        sys.stdout.write("\n")
    else:
        print_table(result, rich_console())
    if plot is not None:
        from controller.plotting import plot_backtest

        try:
            plot_backtest(ordered, plot)
        except (OSError, ValueError) as exc:
            return fail(f"--plot {plot}: the report stands, the plot failed: {exc}")
        err.print(f"plot written to {plot}", markup=False, highlight=False)
    return 0


def _replay_in_parallel(
    traces: list[PreparedTrace],
    runs: dict[str, TraceRun],
    *,
    progress: _Progress,
    fail: Callable[[str], int],
    jobs: int,
    scenario: Scenario,
    model: str,
    policies: tuple[str, ...],
    overrides: dict[str, Any],
) -> int:
    """Replay ``traces`` in ``jobs`` processes into ``runs``; 0, or the exit code of a failure.

    A replay that fails is reported at once: the work not started is cancelled and the
    replays under way stop at their next report, so the exit does not wait for them. An
    interrupt (Ctrl-C, SIGTERM) ends the workers at once.
    """

    def submit(
        manager: Any, pool: ProcessPoolExecutor
    ) -> tuple[dict[Future[TraceRun], PreparedTrace], Any, Any]:
        queue = manager.Queue()
        stop = manager.Event()
        futures: dict[Future[TraceRun], PreparedTrace] = {}
        for trace in traces:
            work = (trace, scenario, model, policies, overrides, queue, stop)
            futures[pool.submit(_run_one, *work)] = trace
        return futures, queue, stop

    spawned = multiprocessing.get_context("spawn")
    with started_workers(jobs, submit, context=spawned) as (futures, queue, stop):
        return _collect(futures, runs, queue, stop, progress=progress, fail=fail)


def _collect(
    futures: dict[Future[TraceRun], PreparedTrace],
    runs: dict[str, TraceRun],
    queue: Any,
    stop: Any,
    *,
    progress: _Progress,
    fail: Callable[[str], int],
) -> int:
    """The replays of :func:`_replay_in_parallel` into ``runs`` as they finish, their minutes
    shown as they come; 0, or the exit code of the first that fails."""
    pending = set(futures)
    while pending:
        while not queue.empty():
            progress.minute(*queue.get())
        progress.show_if_due()
        for future in [f for f in pending if f.done()]:
            pending.discard(future)
            trace = futures[future]
            try:
                done = future.result()
            except Exception as exc:
                stop.set()
                for other in pending:
                    other.cancel()
                if isinstance(exc, _INPUT_ERRORS):
                    return fail(_named(trace, exc))
                if isinstance(exc, BrokenProcessPool):
                    # Every future gets this error: the process that died is not known.
                    running = ", ".join(sorted(t.name for t in (futures[f] for f in pending)))
                    fail(
                        "a replay's worker process died (out of memory, or killed) while "
                        f"replaying {', '.join(x for x in (trace.name, running) if x)}; "
                        "--jobs 1 replays one trace at a time"
                    )
                    return 1
                why = f"replay failed: {type(exc).__name__}: {exc} (--jobs 1 shows where)"
                fail(_named(trace, why))
                return 1
            runs[done.name] = done
            progress.finished(done)
        if pending:
            wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
    return 0


#: How the table's title names each policy.
_TITLES = {
    "tidal": "tidal",
    "hpa": "the HPA",
    "oracle": "a perfect-foresight oracle",
    "predictive": "a predictive HPA blind to the tiers",
}


def _policies(result: dict[str, Any]) -> list[str]:
    """The policies of a report, in the order they first come."""
    seen: dict[str, None] = {}
    for policies in result["traces"].values():
        seen.update(dict.fromkeys(policies))
    return list(seen)


def print_table(result: dict[str, Any], console: Any) -> None:
    from rich.markup import escape
    from rich.table import Table

    names = _policies(result)
    table = Table(title="Backtest: " + ", ".join(_TITLES.get(p, p) for p in names))
    for column in (
        "trace",
        "policy",
        "unserved",
        "minutes short",
        "cloud replica hours",
        "physical replica hours",
        "replicas removed",
    ):
        table.add_column(
            column,
            justify="right" if column not in ("trace", "policy") else "left",
            # A trace's name wraps whole on a narrow terminal: cut, two traces could look alike.
            overflow="fold" if column == "trace" else "ellipsis",
            # A policy's name is short and never cut: "predictive" is 10 of 80 columns.
            min_width=max(map(len, names), default=None) if column == "policy" else None,
        )
    for trace, policies in result["traces"].items():
        for name, m in policies.items():
            table.add_row(
                escape(trace),
                name,
                f"{m['unserved_fraction']:.5%}",
                str(m["underprovisioned_minutes"]),
                f"{m['cloud_replica_hours']:.0f}",
                f"{m['physical_replica_hours']:.0f}",
                str(m["replicas_removed"]),
            )
        table.add_section()
    console.print(table)
    for against, called in (("hpa", "the HPA"), ("predictive", "the predictive HPA")):
        if not any({"tidal", against} <= set(p) for p in result["traces"].values()):
            continue  # no ratio of tidal to this baseline to give
        s = summary(result, against=against)
        left_out = s["cloud_ratio_left_out"]
        if math.isnan(s["cloud_hours_ratio_geomean"]):  # every trace left out
            cloud = f"cloud hours: no ratio, {called} used no cloud"
        else:
            cloud = f"cloud hours {s['cloud_hours_ratio_geomean']:.2f}"
            if left_out:
                cloud += f" (without the {left_out} trace(s) where {called} used no cloud)"
        console.print(
            f"tidal/{against}, geometric means over traces: unserved "
            f"{s['unserved_ratio_geomean']:.3g} (worst trace {s['unserved_ratio_max']:.3g}), "
            f"{cloud}; replicas removed: tidal {s['tidal_replicas_removed']}, "
            f"{against} {s[f'{against}_replicas_removed']}"
        )
