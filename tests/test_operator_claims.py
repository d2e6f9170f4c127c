"""Deployments the operator must not touch: one named for both pools, one another
GatewayAutoscaler scales, a placeholder name another object holds; and names too long to label
with. Against the API emulator, a pass at a time, with a load source that never fails."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from controller.operator import Operator, OperatorSettings, claims
from controller.operator.claims import deployment_claims
from controller.operator.kube import placeholder_name
from forecasts.series import LoadSeries
from tests.integration.operator_cluster import (
    DEPLOYMENTS,
    NAMESPACE,
    FlatLoad,
    add_region,
    condition,
    gwa_body,
    replicas,
    status_of,
)
from tests.support.kube_emulator import KubeEmulatorHandle


@pytest.fixture
def operator(cluster: KubeEmulatorHandle) -> Iterator[Operator]:
    """An operator without election; 5000 of load needs 6 replicas at perReplica 1000."""
    settings = OperatorSettings(leader_election=False, metrics_port=0, metrics_address="127.0.0.1")
    built = Operator(settings, api_client=cluster.api_client(), source=FlatLoad(5_000.0))
    try:
        yield built
    finally:
        built.models.shutdown()


def passes(operator: Operator, count: int = 2) -> dict[str, Any]:
    """``count`` passes a little apart (the per-minute limits allow a step each); the last's
    outcomes."""
    outcomes: dict[str, Any] = {}
    for _ in range(count):
        outcomes = operator.run_once()
        time.sleep(0.05)
    return outcomes


def refusal(cluster: KubeEmulatorHandle, outcomes: dict[str, Any], name: str) -> str:
    """The object was refused as InvalidSpec with Ready=False: its condition's message."""
    assert outcomes[f"{NAMESPACE}/{name}"].reason == "InvalidSpec"
    ready = condition(cluster, name, "Ready")
    assert ready is not None and ready["status"] == "False"
    return str(ready["message"])


def next_second() -> None:
    """Wait for the clock's next whole second: creationTimestamp has second precision."""
    second = math.floor(time.time())
    while math.floor(time.time()) == second:
        time.sleep(0.02)


def created(name: str, namespace: str, at: str | None, **spec: Any) -> dict[str, Any]:
    """A valid object naming Deployment ``gw`` for its physical pool (``spec`` overrides)."""
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if at is not None:
        meta["creationTimestamp"] = at
    body = gwa_body("eu", **spec)["spec"]
    body["physical"]["deployment"] = "gw"
    return {"metadata": meta, "spec": body}


@pytest.mark.parametrize(
    ("objects", "owner"),
    [
        pytest.param(
            [
                created("b", "chat", "2024-05-01T10:00:01Z"),
                created("a", "chat", "2024-05-01T10:00:02Z"),
            ],
            "b",
            id="the-first-created-whatever-its-name",
        ),
        pytest.param(
            [
                created("b", "chat", "2024-05-01T10:00:01Z"),
                created("a", "chat", "2024-05-01T10:00:01Z"),
            ],
            "a",
            id="same-second-by-name",
        ),
        pytest.param(
            [created("a", "chat", None), created("b", "chat", "2024-05-01T10:00:01Z")],
            "b",
            id="one-without-a-timestamp-comes-last",
        ),
    ],
)
def test_the_first_created_claims_a_deployment(objects: list[dict[str, Any]], owner: str) -> None:
    """A Deployment named by two objects belongs to the one created first, every time."""
    assert deployment_claims(objects)[("chat", "gw")] == owner
    assert deployment_claims(list(reversed(objects)))[("chat", "gw")] == owner


@pytest.mark.parametrize(
    "older",
    [
        pytest.param(
            created("a", "chat", "2024-05-01T10:00:01Z", mode="ForecastOnly"), id="forecast-only"
        ),
        pytest.param(
            created(
                "a",
                "chat",
                "2024-05-01T10:00:01Z",
                load={"query": "q", "perReplica": 1, "step": "2m"},
            ),
            id="invalid-spec",
        ),
        pytest.param(created("a" * 64, "chat", "2024-05-01T10:00:01Z"), id="name-too-long"),
        # Durations whose sums or multiples no timedelta holds: before MAX_DURATION these
        # escaped the validation as OverflowError and stopped every object's pass.
        *(
            pytest.param(created("a", "chat", "2024-05-01T10:00:01Z", **spec), id=name)
            for name, spec in [
                (
                    "step-doubled-overflows",
                    {"load": {"query": "q", "perReplica": 1, "step": "600000000d"}},
                ),
                (
                    "reach-plus-refit-overflows",
                    {"forecast": {"horizon": "600000000d", "refit": "600000000d"}},
                ),
            ]
        ),
    ],
)
def test_an_object_that_cannot_write_claims_nothing(older: dict[str, Any]) -> None:
    """A ForecastOnly or invalid object, however old, leaves the Deployment to the next one."""
    newer = created("b", "chat", "2024-05-01T10:00:02Z")
    assert deployment_claims([older, newer])[("chat", "gw")] == "b"


def test_whatever_one_spec_raises_the_others_claim(monkeypatch: pytest.MonkeyPatch) -> None:
    """Claims are read for every object before any is reconciled: an error a validator lets
    escape (not a ValidationError) makes that object claim nothing, and stops nobody else's."""
    validate = claims.GatewayAutoscalerSpec.model_validate

    def overflowing(spec: Any) -> Any:
        if spec.get("region") == "broken":
            raise OverflowError("date value out of range")
        return validate(spec)

    monkeypatch.setattr(claims.GatewayAutoscalerSpec, "model_validate", overflowing)
    older = created("a", "chat", "2024-05-01T10:00:01Z")
    older["spec"]["region"] = "broken"
    newer = created("b", "chat", "2024-05-01T10:00:02Z")
    assert deployment_claims([older, newer]) == {
        ("chat", "gw"): "b",
        ("chat", "gateway-eu-cloud"): "b",
    }


def test_a_paused_object_keeps_its_claim() -> None:
    """Paused means "leave it as it is": a newer object does not take the Deployment over."""
    older = created("a", "chat", "2024-05-01T10:00:01Z", mode="Paused")
    newer = created("b", "chat", "2024-05-01T10:00:02Z")
    assert deployment_claims([newer, older])[("chat", "gw")] == "a"


def test_claims_are_per_namespace() -> None:
    """The same Deployment name in two namespaces is two Deployments."""
    objects = [created("a", "chat", "2024-05-01T10:00:01Z"), created("b", "other", None)]
    claims = deployment_claims(objects)
    assert (claims[("chat", "gw")], claims[("other", "gw")]) == ("a", "b")


def test_one_deployment_for_both_pools_is_refused_and_left_alone(
    cluster: KubeEmulatorHandle, operator: Operator
) -> None:
    """physical.deployment == cloud.deployment: Ready=False naming both fields, and the
    Deployment is not flipped between the two pools' counts."""
    add_region(cluster, "eu", replicas=4)
    body = gwa_body("eu")
    body["spec"]["cloud"]["deployment"] = "gateway-eu"
    cluster.create(body)
    outcomes = passes(operator, 3)
    assert "physical.deployment and cloud.deployment" in refusal(cluster, outcomes, "gateway-eu")
    assert replicas(cluster, "gateway-eu") == 4


def test_a_deployment_two_objects_name_is_scaled_by_the_first_created_only(
    cluster: KubeEmulatorHandle, operator: Operator
) -> None:
    """The later object gets Ready=False TargetConflict naming the first and changes nothing;
    the first, and an object elsewhere, are served."""
    add_region(cluster, "eu", replicas=4)
    add_region(cluster, "us", replicas=4)
    cluster.create(gwa_body("eu", name="owner-eu"))
    cluster.create(gwa_body("us"))
    next_second()
    # Sorts before owner-eu by name, and would hold the physical pool at 3 if it acted.
    late = gwa_body("eu", name="a-late", replicas={"min": 1, "max": 3})
    late["spec"]["physical"]["keepWarm"] = False
    cluster.create(late)

    outcomes = passes(operator, 3)

    assert outcomes[f"{NAMESPACE}/a-late"].reason == "TargetConflict"
    ready = condition(cluster, "a-late", "Ready")
    assert ready is not None and (ready["status"], ready["reason"]) == ("False", "TargetConflict")
    assert "'owner-eu'" in ready["message"] and "spec.physical.deployment" in ready["message"]
    for served in ("owner-eu", "gateway-us"):
        assert outcomes[f"{NAMESPACE}/{served}"].ok, outcomes[f"{NAMESPACE}/{served}"]
    # owner-eu keeps its physical pool full (16 slots); a-late never cut it to 3.
    assert replicas(cluster, "gateway-eu") == 16
    assert replicas(cluster, "gateway-us") == 16


class RampAhead:
    """5,000 of load, and 30,000 from 5 to 30 minutes ahead a day ago: seasonal naive sees the
    ramp coming, and the plan reserves cloud nodes for it ahead of the replicas."""

    def __init__(self) -> None:
        self.now = time.time()

    def read_history(self, query: str, *, start: float, end: float, step: float) -> LoadSeries:
        first, last = math.ceil(start / step), math.floor(end / step)
        times = np.arange(first, last + 1) * step
        ahead = times - (self.now - 86_400.0)
        return LoadSeries(first * step, step, np.where((ahead >= 0) & (ahead <= 1_800), 3e4, 5e3))


def operator_with(cluster: KubeEmulatorHandle, source: object) -> Operator:
    settings = OperatorSettings(leader_election=False, metrics_port=0, metrics_address="127.0.0.1")
    return Operator(settings, api_client=cluster.api_client(), source=source)  # type: ignore[arg-type]


@pytest.mark.parametrize("reserve", [True, False])
def test_a_placeholder_name_held_by_another_object_is_never_written(
    cluster: KubeEmulatorHandle, operator: Operator, reserve: bool
) -> None:
    """A Deployment named ``<gwa>-placeholder`` that the GWA does not own is never written and
    never counted as reserved; the gateways are still scaled. With ``cloud.reserve`` the loss
    of the reservation is Ready=False naming it; without, there is nothing to say."""
    add_region(cluster, "eu", replicas=4)
    cluster.create(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": placeholder_name("gateway-eu"), "namespace": NAMESPACE},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "someone-else"}},
                "template": {
                    "metadata": {"labels": {"app": "someone-else"}},
                    "spec": {"containers": [{"name": "app", "image": "app:1"}]},
                },
            },
        }
    )
    body = gwa_body("eu")
    body["spec"]["cloud"]["reserve"] = reserve
    cluster.create(body)
    since = len(cluster.requests())

    ramping = operator_with(cluster, RampAhead())
    try:
        outcomes = passes(ramping)
    finally:
        ramping.models.shutdown()

    ready = condition(cluster, "gateway-eu", "Ready")
    assert ready is not None
    status = status_of(cluster, "gateway-eu")
    # Nothing is reserved beyond the cloud replicas: no placeholder can be written.
    assert status["cloud"]["reserved"] == status["cloud"]["replicas"]
    if reserve:
        assert outcomes[f"{NAMESPACE}/gateway-eu"].reason == "PlaceholderConflict"
        assert (ready["status"], ready["reason"]) == ("False", "PlaceholderConflict")
        assert "'gateway-eu-placeholder'" in ready["message"]
        assert "the gateways are still scaled" in ready["message"]
    else:
        assert outcomes[f"{NAMESPACE}/gateway-eu"].ok
        assert ready["status"] == "True"
    placeholder = cluster.get(DEPLOYMENTS, placeholder_name("gateway-eu"), namespace=NAMESPACE)
    assert placeholder["spec"]["replicas"] == 2
    assert placeholder["spec"]["selector"] == {"matchLabels": {"app": "someone-else"}}
    written = {
        r.url.path.rsplit("/", 1)[-1]
        for r in cluster.requests()[since:]
        if r.method.value.upper() in ("PATCH", "PUT", "POST") and "/deployments" in r.url.path
    }
    assert placeholder_name("gateway-eu") not in written
    # The physical pool is scaled as usual (kept full, 16 slots).
    assert replicas(cluster, "gateway-eu") == 16


def test_a_name_too_long_for_a_label_is_refused(
    cluster: KubeEmulatorHandle, operator: Operator
) -> None:
    """metadata.name labels the placeholder pods: over 63 characters is InvalidSpec naming it."""
    add_region(cluster, "eu", replicas=4)
    name = "g" * 64
    cluster.create(gwa_body("eu", name=name))
    outcomes = passes(operator, 1)
    assert outcomes[f"{NAMESPACE}/{name}"].reason == "InvalidSpec"
    ready = condition(cluster, name, "Ready")
    assert ready is not None and ready["message"].startswith("metadata.name: 64 characters")
    assert not cluster.exists(DEPLOYMENTS, placeholder_name(name), namespace=NAMESPACE)
    assert replicas(cluster, "gateway-eu") == 4


def test_a_duration_too_long_to_hold_is_refused_without_stopping_the_others(
    cluster: KubeEmulatorHandle, operator: Operator
) -> None:
    """A duration the CRD's pattern accepts but no timedelta holds (a typo of many digits) is
    InvalidSpec naming the field; the valid object beside it is still scaled."""
    add_region(cluster, "eu", replicas=2)
    cluster.create(gwa_body("eu"))
    add_region(cluster, "us", replicas=2)
    bad = gwa_body("us")
    bad["spec"]["forecast"]["refit"] = "100000000000000s"
    cluster.create(bad)
    outcomes = passes(operator, 1)
    message = refusal(cluster, outcomes, "gateway-us")
    assert message.startswith("spec.forecast.refit: '100000000000000s'")
    assert outcomes[f"{NAMESPACE}/gateway-eu"].ok
    assert replicas(cluster, "gateway-eu") > 2
    assert replicas(cluster, "gateway-us") == 2
