"""The trace before the replay's start, as Prometheus history (OpenMetrics text).

``python -m controller.demo_gateway.history --trace wc98-requests-per-minute.csv --peak 200
--start 1998-05-20T12:00:00Z --region eu-west --span 14d --out eu-west.om`` writes
``gateway_active_connections{region="eu-west"}`` for the ``--span`` of trace time before
``--start``, shifted so that ``--start`` is *now* (or ``--now``). A replayer started at the same
moment with the same trace, peak and start then continues the series in real time, and
``promtool tsdb create-blocks-from openmetrics eu-west.om /prometheus`` turns the file into
blocks that Prometheus serves as the two weeks before the live scrape.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from controller.demo_gateway.replayer import TraceReplay, default_start, resolve_trace
from controller.demo_gateway.server import CONNECTIONS_METRIC
from controller.durations import parse_duration
from forecasts.series import load_trace, parse_timestamp

__all__ = ["main", "openmetrics_history"]


def openmetrics_history(
    trace: TraceReplay,
    *,
    start: float,
    now: float,
    span: float,
    step: float,
    labels: dict[str, str],
    metric: str = CONNECTIONS_METRIC,
) -> Iterator[str]:
    """OpenMetrics lines for trace time ``[start - span, start)`` placed at ``now - span ...``.

    Samples are ``step`` seconds apart on the wall clock (the replayer's interpolation of the
    trace, so history and live replay agree where they meet); times before the trace begins are
    left out.
    """
    label_text = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    yield f"# HELP {metric} WebSocket connections open now (backfilled from a trace)\n"
    yield f"# TYPE {metric} gauge\n"
    first = max(trace.series.start, start - span)
    count = math.floor((start - first) / step)
    for i in range(count, 0, -1):
        offset = i * step
        connections = trace.connections_at(start - offset)
        yield f"{metric}{{{label_text}}} {connections} {now - offset:.3f}\n"
    yield "# EOF\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m controller.demo_gateway.history")
    parser.add_argument("--trace", required=True)
    parser.add_argument("--peak", type=int, required=True, help="connections at the trace's p99")
    parser.add_argument("--cap", type=int, help="never more connections (default: 2 x peak)")
    parser.add_argument("--start", help="trace time that becomes now (ISO-8601)")
    parser.add_argument("--region", required=True)
    parser.add_argument("--span", default="14d", help="history length, e.g. 14d")
    parser.add_argument("--step", default="1m", help="sample spacing")
    parser.add_argument("--now", type=float, help="epoch seconds of now (default: the clock)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    series = load_trace(resolve_trace(args.trace))
    start = parse_timestamp(args.start) if args.start else default_start(series)
    lines = openmetrics_history(
        TraceReplay(series, args.peak, args.cap),
        start=start,
        now=args.now if args.now is not None else time.time(),
        span=parse_duration(args.span).total_seconds(),
        step=parse_duration(args.step).total_seconds(),
        labels={"region": args.region},
    )
    with args.out.open("w", encoding="utf-8") as out:
        out.writelines(lines)


if __name__ == "__main__":
    main()
