"""The operator on real components: two regions scaled ahead of their ramps, and ForecastOnly.

A real Prometheus holds two real traces backfilled so that "now" falls shortly before each
one's daily ramp, the Kubernetes API is the emulator over HTTP, and the operator runs its
production loop (``Operator.run_forever``) in a thread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from controller.operator.kube import placeholder_name
from forecasts.registry import model_names
from forecasts.series import LoadSeries
from tests.integration.operator_cluster import (
    DEPLOYMENTS,
    NAMESPACE,
    add_region,
    condition,
    gwa_body,
    last_value,
    replicas,
    running_operator,
    status_of,
    wait_until,
)
from tests.support.kube_emulator import KubeEmulatorHandle
from tests.support.prometheus_server import PrometheusServer, series_key

pytestmark = pytest.mark.integration

#: Peak of each trace in the backfill; with perReplica 1000 the busiest minute needs ~110 pods.
PEAK = 100_000.0


def test_two_regions_fill_physical_then_cloud_and_reserve_ahead(
    kube_api: KubeEmulatorHandle,
    prometheus_factory: Callable[..., PrometheusServer],
    ramp_history: Callable[..., LoadSeries],
) -> None:
    """Physical filled to capacity, the overflow in cloud, placeholders ahead of the ramp."""
    traces = {"eu": "wc98-requests-per-minute", "us": "twitter-amzn-5min"}
    histories = {
        region: ramp_history(trace, days=14, lead=15 * 60) for region, trace in traces.items()
    }
    prometheus = prometheus_factory(
        {series_key(region=r): h for r, h in histories.items()},
        live={series_key(region=r): last_value(h) for r, h in histories.items()},
    )
    for region in traces:
        # Two physical nodes of 8 cpu: 16 gateway pods of 1 cpu.
        add_region(kube_api, region, physical_nodes=2, cpu="8")
        # Sized so that the load at "now" needs about 24 pods: 16 physical and an overflow.
        per_replica = round(last_value(histories[region]) * 1.1 / 24, 3)
        kube_api.create(
            gwa_body(
                region,
                load={
                    "query": f'sum(gateway_active_connections{{region="{region}"}})',
                    "perReplica": per_replica,
                    "step": "1m",
                    "history": "14d",
                },
                # The ramp starts 15 minutes from now and climbs for hours: a node lead time
                # of hours puts the forecast's climb, not only the band, in the reservation.
                cloud={
                    "deployment": f"gateway-{region}-cloud",
                    "maxReplicas": 300,
                    "nodeLeadTime": "4h",
                    "reserve": True,
                    "replicasPerNode": 1,
                },
                # At 0.95, twitter's band a minute ahead reaches as high as its point forecast's
                # climb: whether any placeholder was left then hung on the second the test
                # started (the trace's 5-minute samples against the fit's buckets). At 0.6 the
                # climb stands well above the band in both traces: 24 runs passed, started
                # across a whole 5 minutes.
                forecast={"model": "auto", "horizon": "30m", "quantile": 0.6, "refit": "15m"},
            )
        )

    with running_operator(kube_api, prometheus.url, loop_interval=1.0):
        for region in traces:
            name = f"gateway-{region}"

            def forecasting(name: str = name) -> dict[str, Any] | None:
                ready = condition(kube_api, name, "ForecastReady")
                return ready if ready and ready["status"] == "True" else None

            wait_until(forecasting, timeout=60, what=f"{name} ForecastReady=True")
            wait_until(
                lambda name=name: replicas(kube_api, name) == 16,
                timeout=20,
                what=f"{name} physical at capacity 16",
            )
            wait_until(
                lambda name=name: replicas(kube_api, f"{name}-cloud") > 0,
                timeout=20,
                what=f"{name} cloud overflow",
            )
            wait_until(
                lambda name=name: (
                    kube_api.exists(DEPLOYMENTS, placeholder_name(name), namespace=NAMESPACE)
                    and replicas(kube_api, placeholder_name(name)) > 0
                ),
                timeout=20,
                what=f"{name} placeholders reserved ahead of the ramp",
                explain=lambda name=name: {"cloud": status_of(kube_api, name).get("cloud")},
            )

            status = status_of(kube_api, name)
            assert status["physical"] == {"replicas": 16, "capacity": 16}
            assert status["cloud"]["replicas"] == replicas(kube_api, f"{name}-cloud")
            assert status["cloud"]["reserved"] == (
                status["cloud"]["replicas"] + replicas(kube_api, placeholder_name(name))
            )
            assert status["desiredReplicas"] == 16 + status["cloud"]["replicas"]
            assert status["forecast"]["model"] in model_names()
            assert status["forecast"]["peak"] > status["load"] > 0
            assert status["observedGeneration"] == 1
            assert status["recommendations"], "stabilisation state is kept in status"
            kinds = {c["type"]: c for c in status["conditions"]}
            assert kinds["Ready"]["status"] == "True"
            assert kinds["Bursting"]["status"] == "True"
            assert kinds["Bursting"]["reason"] == "PhysicalCapacityExhausted"

            placeholder = kube_api.get(DEPLOYMENTS, placeholder_name(name), namespace=NAMESPACE)
            pod = placeholder["spec"]["template"]["spec"]
            assert pod["priorityClassName"] == "tidal-placeholder"
            assert pod["containers"][0]["resources"]["requests"] == {"cpu": "1", "memory": "2Gi"}
            assert pod["nodeSelector"]["tidal.dev/pool"] == "cloud"
            owner = placeholder["metadata"]["ownerReferences"][0]
            assert owner["kind"] == "GatewayAutoscaler" and owner["name"] == name

            events = [
                e
                for e in kube_api.list("v1/events", namespace=NAMESPACE)
                if e["involvedObject"]["name"] == name
            ]
            reasons = {e["reason"] for e in events}
            assert "PhysicalCapacityExhausted" in reasons or "Forecast" in reasons, reasons


def test_forecast_only_writes_status_and_touches_nothing(
    kube_api: KubeEmulatorHandle,
    prometheus_factory: Callable[..., PrometheusServer],
    ramp_history: Callable[..., LoadSeries],
) -> None:
    """ForecastOnly: status and Events are written; the Deployments keep their replicas."""
    history = ramp_history("wc98-requests-per-minute", days=3, peak=PEAK)
    key = series_key(region="eu")
    prometheus = prometheus_factory({key: history}, live={key: last_value(history)})
    add_region(kube_api, "eu", replicas=3)
    kube_api.create(gwa_body("eu", mode="ForecastOnly"))

    with running_operator(kube_api, prometheus.url) as operator:
        wait_until(
            lambda: (status_of(kube_api, "gateway-eu").get("forecast") or {}).get("model"),
            timeout=30,
            what="a forecast in status",
        )
        loops = operator.loops
        wait_until(lambda: operator.loops >= loops + 4, timeout=10, what="four more loops")
        status = status_of(kube_api, "gateway-eu")
        ready = condition(kube_api, "gateway-eu", "Ready")
        assert ready is not None and (ready["status"], ready["reason"]) == ("True", "ForecastOnly")
        assert status["desiredReplicas"] > 3, "the plan differs from what runs"
        assert replicas(kube_api, "gateway-eu") == 3
        assert replicas(kube_api, "gateway-eu-cloud") == 0
        assert not kube_api.exists(DEPLOYMENTS, "gateway-eu-placeholder", namespace=NAMESPACE)
        events = kube_api.list("v1/events", namespace=NAMESPACE)
        assert any(e["reason"] == "ForecastOnly" for e in events)
