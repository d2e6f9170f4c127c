"""A stand-in chat gateway and a replayer that drives it along a real load trace.

- :mod:`controller.demo_gateway.server`: an aiohttp WebSocket server that holds connections and
  exports ``gateway_active_connections{region=...}`` on ``/metrics``.
- :mod:`controller.demo_gateway.replayer`: opens and closes WebSocket connections so that the
  number open follows a trace of ``shared/traces``, scaled to a chosen peak.
- :mod:`controller.demo_gateway.history`: the same trace, before the replay's start, as
  OpenMetrics text for ``promtool tsdb create-blocks-from openmetrics`` (Prometheus history).

They are the e2e tests' workload (and a demo); the operator never imports them.
"""

__all__: list[str] = []
