"""Open and close WebSocket connections so that the number open follows a real load trace.

``python -m controller.demo_gateway.replayer --url ws://gateway-eu-west/ws
--trace wc98-requests-per-minute.csv --peak 200 --start 1998-05-20T12:00:00Z``

- The trace is scaled so that its 99th percentile is ``--peak`` connections, clipped at ``--cap``
  (default twice the peak), and read by linear interpolation between samples; a gap holds the
  last known value.
- Trace time ``--start`` is played at the moment the replayer starts, and trace time then runs
  ``--speed`` times faster than the wall clock (1 in the e2e tests, where Prometheus history is
  backfilled up to ``--start``; larger in CI to see several samples in seconds).
- It stops after ``--duration`` of trace time, or at the trace's end; with ``--hold`` it keeps
  the final number open (reconnecting dropped connections) until it is terminated.
- Connections the gateway drops (a pod removed by a scale-down) are reopened at the next tick, as
  real clients reconnect; they then land wherever the Service sends them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import numpy as np
from prometheus_client import Gauge, start_http_server

from controller.durations import parse_duration
from forecasts.series import LoadSeries, load_trace, parse_timestamp

__all__ = ["ConnectionPool", "TraceReplay", "default_start", "main", "replay"]

# Where the gateway image keeps the traces (Dockerfile); a relative --trace is looked up here.
TRACES_DIR = Path(os.environ.get("TIDAL_TRACES", "/opt/tidal/traces"))


@dataclass(frozen=True)
class TraceReplay:
    """A trace scaled to connections: ``connections_at(trace_time)``.

    ``peak`` is what the trace's 99th percentile becomes, as in the simulator (DESIGN.md): real
    traces have spikes far above their usual daily peak, and scaling the highest spike to the
    peak would flatten every ordinary day. Spikes are clipped at ``cap`` connections (by default
    twice the peak) so that a test cluster is never asked for an unbounded number.
    """

    series: LoadSeries
    peak: int
    cap: int | None = None

    @property
    def scale(self) -> float:
        return self.peak / float(np.nanpercentile(self.series.values, 99))

    @property
    def limit(self) -> int:
        return self.cap if self.cap is not None else 2 * self.peak

    def _connections(self, load: float) -> int:
        return min(round(load * self.scale), self.limit)

    def connections_at(self, when: float) -> int:
        """Connections the trace asks for at trace time ``when`` (epoch seconds)."""
        series = self.series
        known = series.until(when)
        if len(known) == 0:
            raise ValueError(f"trace time {_iso(when)} is before the trace starts")
        index = len(known) - 1
        value = known.values[index]
        nxt = series.values[index + 1] if index + 1 < len(series) else math.nan
        if math.isnan(value):
            previous = known.values[~np.isnan(known.values)]
            return self._connections(float(previous[-1])) if previous.size else 0
        if not math.isnan(nxt):
            frac = (when - (series.start + index * series.step)) / series.step
            value = value + (nxt - value) * min(max(frac, 0.0), 1.0)
        return self._connections(float(value))


def default_start(series: LoadSeries) -> float:
    """Two weeks into the trace or its first quarter, whichever is shorter (DESIGN.md)."""
    return series.start + min(14 * 86400.0, (series.end - series.start) / 4)


def resolve_trace(name: str) -> Path:
    """A trace path as given, or else by name in the image's traces directory."""
    path = Path(name)
    if path.exists() or path.is_absolute():
        return path
    return TRACES_DIR / name


class ConnectionPool:
    """WebSocket connections to one URL, resized to a target count."""

    def __init__(self, session: aiohttp.ClientSession, url: str, *, concurrency: int = 50) -> None:
        self._session = session
        self._url = url
        self._open: list[aiohttp.ClientWebSocketResponse] = []
        self._readers: set[asyncio.Task[None]] = set()
        self._limit = asyncio.Semaphore(concurrency)
        self.failures = 0

    def __len__(self) -> int:
        return len(self._open)

    async def _open_one(self) -> None:
        async with self._limit:
            try:
                ws = await self._session.ws_connect(self._url, heartbeat=30.0)
            except (TimeoutError, aiohttp.ClientError, OSError):
                self.failures += 1
                return
        self._open.append(ws)
        reader = asyncio.create_task(self._read(ws))
        self._readers.add(reader)
        reader.add_done_callback(self._readers.discard)

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        # Reading is what notices a close from the gateway; the slot is then free to reopen.
        try:
            async for _ in ws:
                pass
        finally:
            with contextlib.suppress(ValueError):
                self._open.remove(ws)

    async def resize(self, target: int) -> None:
        """Open or close connections (newest first) until ``target`` are open."""
        missing = target - len(self._open)
        if missing > 0:
            await asyncio.gather(*(self._open_one() for _ in range(missing)))
        elif missing < 0:
            extra = self._open[missing:]
            del self._open[missing:]
            await asyncio.gather(*(ws.close() for ws in extra), return_exceptions=True)

    async def close(self) -> None:
        await self.resize(0)
        for reader in list(self._readers):
            reader.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)


@dataclass
class _Progress:
    target: Gauge | None = None
    open: Gauge | None = None
    trace_time: Gauge | None = None

    def report(self, target: int, opened: int, when: float) -> None:
        if self.target is not None and self.open is not None and self.trace_time is not None:
            self.target.set(target)
            self.open.set(opened)
            self.trace_time.set(when)


async def replay(
    trace: TraceReplay,
    url: str,
    *,
    start: float,
    speed: float = 1.0,
    duration: float | None = None,
    tick: float = 1.0,
    hold: bool = False,
    stop: asyncio.Event | None = None,
    clock: Callable[[], float] = time.monotonic,
    progress: _Progress | None = None,
) -> int:
    """Drive connections along ``trace`` from trace time ``start``; returns the final target."""
    end = trace.series.end if duration is None else min(trace.series.end, start + duration)
    stop = stop if stop is not None else asyncio.Event()
    progress = progress if progress is not None else _Progress()
    began = clock()
    target = 0
    # Each WebSocket holds its connection for good: no pool limit (aiohttp's default is 100).
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        pool = ConnectionPool(session, url)
        try:
            while not stop.is_set():
                when = min(start + (clock() - began) * speed, end)
                target = trace.connections_at(when)
                await pool.resize(target)
                progress.report(target, len(pool), when)
                if when >= end and not hold:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=tick)
        finally:
            await pool.close()
    return target


def _iso(when: float) -> str:
    return datetime.fromtimestamp(when, tz=UTC).isoformat().replace("+00:00", "Z")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m controller.demo_gateway.replayer")
    parser.add_argument("--url", required=True, help="gateway WebSocket URL, e.g. ws://host/ws")
    parser.add_argument("--trace", required=True, help="trace CSV (path, or name in the image)")
    parser.add_argument("--peak", type=int, required=True, help="connections at the trace's p99")
    parser.add_argument("--cap", type=int, help="never more connections (default: 2 x peak)")
    parser.add_argument(
        "--start", help="trace time played first (ISO-8601); default: two weeks in or a quarter"
    )
    parser.add_argument("--speed", type=float, default=1.0, help="trace seconds per wall second")
    parser.add_argument("--duration", help="trace time to play, e.g. 6h (default: to the end)")
    parser.add_argument("--tick", type=float, default=1.0, help="wall seconds between resizes")
    parser.add_argument("--hold", action="store_true", help="keep the final count open")
    parser.add_argument("--metrics-port", type=int, help="serve replayer_* metrics on this port")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    series = load_trace(resolve_trace(args.trace))
    start = parse_timestamp(args.start) if args.start else default_start(series)
    duration = parse_duration(args.duration).total_seconds() if args.duration else None
    trace = TraceReplay(series, args.peak, args.cap)
    progress = _Progress()
    if args.metrics_port is not None:
        start_http_server(args.metrics_port)
        progress = _Progress(
            Gauge("replayer_target_connections", "Connections the trace asks for now"),
            Gauge("replayer_open_connections", "Connections the replayer holds open"),
            Gauge("replayer_trace_time_seconds", "Trace time being played (epoch seconds)"),
        )
    print(f"replaying {args.trace} from {_iso(start)} x{args.speed} to {args.url}", flush=True)

    async def run() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        return await replay(
            trace,
            args.url,
            start=start,
            speed=args.speed,
            duration=duration,
            tick=args.tick,
            hold=args.hold,
            stop=stop,
            progress=progress,
        )

    final = asyncio.run(run())
    print(f"done: {final} connections at the end", flush=True)


if __name__ == "__main__":
    main()
