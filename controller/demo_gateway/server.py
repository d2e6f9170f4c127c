"""A stand-in chat gateway: holds WebSocket connections and counts them for Prometheus.

``python -m controller.demo_gateway.server --region eu-west --port 8081`` serves

- ``/ws``: a WebSocket that stays open until either side closes it (text messages are echoed);
- ``/metrics``: ``gateway_active_connections{region}`` and ``gateway_connections_total{region}``;
- ``/healthz``: 200 while serving.

On SIGTERM it closes every WebSocket with 1001 (going away), as a real gateway does when its pod
is removed, so that clients reconnect elsewhere.
"""

from __future__ import annotations

import argparse
import asyncio
import weakref
from collections.abc import Sequence

from aiohttp import WSCloseCode, WSMsgType, web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)

__all__ = ["CONNECTIONS_METRIC", "build_app", "main"]

CONNECTIONS_METRIC = "gateway_active_connections"

_REGION = web.AppKey("region", str)
_OPEN = web.AppKey("open", Gauge)
_TOTAL = web.AppKey("total", Counter)
_REGISTRY = web.AppKey("registry", CollectorRegistry)
_SOCKETS: web.AppKey[weakref.WeakSet[web.WebSocketResponse]] = web.AppKey("sockets")


async def _websocket(request: web.Request) -> web.WebSocketResponse:
    app = request.app
    ws = web.WebSocketResponse(heartbeat=30.0)
    await ws.prepare(request)
    region = app[_REGION]
    app[_SOCKETS].add(ws)
    app[_OPEN].labels(region=region).inc()
    app[_TOTAL].labels(region=region).inc()
    try:
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                await ws.send_str(message.data)
    finally:
        app[_OPEN].labels(region=region).dec()
        app[_SOCKETS].discard(ws)
    return ws


async def _metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[_REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def _close_sockets(app: web.Application) -> None:
    held: weakref.WeakSet[web.WebSocketResponse] = app[_SOCKETS]
    sockets = list(held)
    await asyncio.gather(
        *(ws.close(code=WSCloseCode.GOING_AWAY, message=b"shutting down") for ws in sockets),
        return_exceptions=True,
    )


def build_app(region: str, *, registry: CollectorRegistry | None = None) -> web.Application:
    """The gateway's application; each app counts into its own registry unless given one."""
    registry = registry if registry is not None else CollectorRegistry()
    app = web.Application()
    app[_REGION] = region
    app[_REGISTRY] = registry
    app[_SOCKETS] = weakref.WeakSet()
    app[_OPEN] = Gauge(
        CONNECTIONS_METRIC, "WebSocket connections open now", ["region"], registry=registry
    )
    app[_TOTAL] = Counter(
        "gateway_connections", "WebSocket connections accepted", ["region"], registry=registry
    )
    # Export the series at 0 from the start: "no connections" is a value, not a missing series.
    app[_OPEN].labels(region=region).set(0)
    app[_TOTAL].labels(region=region)
    app.router.add_get("/ws", _websocket)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/healthz", _healthz)
    app.on_shutdown.append(_close_sockets)
    return app


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m controller.demo_gateway.server")
    parser.add_argument("--region", required=True, help="value of the region label")
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (all, in a pod)")
    parser.add_argument("--port", type=int, default=8081)
    args = parser.parse_args(argv)
    web.run_app(
        build_app(args.region),
        host=args.host,
        port=args.port,
        access_log=None,
        print=lambda text: print(text, flush=True),
    )


if __name__ == "__main__":
    main()
