"""Each field of the GatewayAutoscaler spec, as an SRE writes it: left out, it takes DESIGN.md's
default on both sides (the API server stores it, the operator reads it); written past its
bound, it is refused by the API server and by the operator, naming the field; written at its
bound, it is accepted by both.

``admission`` and the refusal helpers play the API server offline (``tests/test_spec_bounds.py``).
"""

from __future__ import annotations

import copy
from typing import Any

import pydantic
import pytest

from controller.spec import (
    GatewayAutoscaler,
    GatewayAutoscalerSpec,
    LoadSpec,
    Mode,
    format_validation_error,
    name_problem,
)
from tests.test_crd import MINIMAL_SPEC
from tests.test_spec_bounds import admission, operator_refusal, with_field

#: What a minimal object reads as. DESIGN.md's example object gives step 1m, history 14d,
#: replicas.max 400, headroom 0.10, cloud.maxReplicas 200, nodeLeadTime 5m, reserve, model auto,
#: horizon 30m, quantile 0.95, refit 15m, scale-down stabilisation 10m at 10 a minute and
#: scale-up 100 a minute; its default scenario's cloud node holds 10 replicas; the README
#: gives keepWarm, fillNodes, limitBy Load and holdStarting true as the defaults. A region
#: keeps one gateway at least (replicas.min 1), and an object acts unless told otherwise.
DEFAULTED = {
    "region": "eu-west",
    "mode": "Scale",
    "load": {
        "query": MINIMAL_SPEC["load"]["query"],
        "perReplica": 5000,
        "step": "1m",
        "history": "14d",
    },
    "replicas": {"min": 1, "max": 400},
    "headroom": 0.10,
    "physical": {"deployment": "gateway-eu-west", "nodeSelector": {}, "keepWarm": True},
    "cloud": {
        "deployment": "gateway-eu-west-cloud",
        "maxReplicas": 200,
        "nodeLeadTime": "5m",
        "reserve": True,
        "replicasPerNode": 10,
        "fillNodes": True,
    },
    "forecast": {"model": "auto", "horizon": "30m", "quantile": 0.95, "refit": "15m"},
    "behavior": {
        "scaleDown": {
            "stabilization": "10m",
            "maxReplicasPerMinute": 10,
            "limitBy": "Load",
            "holdStarting": True,
        },
        "scaleUp": {"maxReplicasPerMinute": 100},
    },
}


def test_the_operator_reads_a_minimal_object_with_design_s_defaults() -> None:
    """Every field left out reads as its documented default; physical.maxReplicas stays unset
    (computed from the nodes' allocatable)."""
    spec = GatewayAutoscalerSpec.model_validate(MINIMAL_SPEC)
    assert spec.model_dump(mode="json", by_alias=True, exclude_none=True) == DEFAULTED
    assert spec.physical.max_replicas is None
    assert spec.mode is Mode.SCALE


def test_the_api_server_stores_a_minimal_object_with_design_s_defaults() -> None:
    """The CRD's defaults are the same ones: what ``kubectl get -o yaml`` shows is what the
    operator plans with."""
    stored, refusals = admission(copy.deepcopy(MINIMAL_SPEC))
    assert refusals == []
    assert stored == DEFAULTED


def _body(dotted: str, value: Any) -> dict[str, Any]:
    body = with_field(dotted, value)
    # replicas.min 0, so that a bound of replicas.max is the only rule a count can break.
    body["replicas"] = {"min": 0, **body.get("replicas", {})}
    return body


def _both_refuse(body: dict[str, Any], dotted: str) -> None:
    field = f"spec.{dotted}"
    _stored, refusals = admission(body)
    assert any(refusal.startswith(f"{field}:") for refusal in refusals), refusals
    problem = operator_refusal(body)
    assert problem is not None and problem.startswith(f"{field}:"), problem


def _both_accept(body: dict[str, Any]) -> None:
    stored, refusals = admission(body)
    assert refusals == []
    assert operator_refusal(stored) is None
    assert operator_refusal(body) is None


# (field, the least or most value accepted, the nearest refused).
BOUNDS = [
    pytest.param("replicas.min", 0, -1, id="replicas-min-not-negative"),
    pytest.param("replicas.max", 1, 0, id="replicas-max-one-at-least"),
    pytest.param("physical.maxReplicas", 0, -1, id="physical-max-not-negative"),
    pytest.param("cloud.maxReplicas", 0, -1, id="cloud-max-not-negative"),
    pytest.param("cloud.replicasPerNode", 1, 0, id="replicas-per-node-one-at-least"),
    pytest.param("cloud.replicasPerNode", 1000, 1001, id="replicas-per-node-1000-at-most"),
    pytest.param(
        "behavior.scaleDown.maxReplicasPerMinute", 1, 0, id="scale-down-rate-one-at-least"
    ),
    pytest.param("behavior.scaleUp.maxReplicasPerMinute", 1, 0, id="scale-up-rate-one-at-least"),
    pytest.param("headroom", 0.0, -0.01, id="headroom-not-negative"),
    pytest.param("headroom", 4.0, 4.01, id="headroom-4-at-most"),
    pytest.param("forecast.quantile", 0.51, 0.5, id="quantile-above-the-median"),
    pytest.param("forecast.quantile", 0.999, 1.0, id="quantile-below-one"),
    pytest.param("load.perReplica", 0.001, 0, id="per-replica-positive"),
    pytest.param("region", "r", "", id="region-not-empty"),
    pytest.param("load.query", "q", "", id="query-not-empty"),
    pytest.param("physical.deployment", "g", "", id="physical-deployment-not-empty"),
    pytest.param("cloud.deployment", "g", "", id="cloud-deployment-not-empty"),
    pytest.param("physical.deployment", "g" * 253, "g" * 254, id="physical-deployment-253"),
    pytest.param("cloud.deployment", "g" * 253, "g" * 254, id="cloud-deployment-253"),
]


@pytest.mark.parametrize(("dotted", "accepted", "refused"), BOUNDS)
def test_a_field_at_its_bound_is_accepted_and_past_it_refused_naming_it(
    dotted: str, accepted: Any, refused: Any
) -> None:
    """A value just past a field's bound would plan nonsense (a negative count, no replica per
    node, a quantile at or below the point forecast); both sides refuse it naming the field."""
    _both_accept(_body(dotted, accepted))
    _both_refuse(_body(dotted, refused), dotted)


def test_the_quantile_is_refused_at_any_value_below_the_median() -> None:
    """A quantile below the point forecast would provision under it: refused on both sides."""
    for value in (0.0, 0.3):
        _both_refuse(_body("forecast.quantile", value), "forecast.quantile")


@pytest.mark.parametrize(
    ("dotted", "value"),
    [
        pytest.param("replicas.min", -5, id="replicas-min"),
        pytest.param("physical.maxReplicas", -5, id="physical-max"),
        pytest.param("cloud.maxReplicas", -5, id="cloud-max"),
        pytest.param("cloud.replicasPerNode", -5, id="replicas-per-node"),
        pytest.param("behavior.scaleDown.maxReplicasPerMinute", -5, id="scale-down-rate"),
        pytest.param("behavior.scaleUp.maxReplicasPerMinute", -5, id="scale-up-rate"),
        pytest.param("headroom", -1.0, id="headroom"),
    ],
)
def test_a_negative_count_is_refused_naming_the_field(dotted: str, value: float) -> None:
    """No count or rate of the spec is negative, however far below its bound."""
    _both_refuse(_body(dotted, value), dotted)


def test_a_replica_serving_a_millionth_is_the_least_the_operator_accepts() -> None:
    """``load.perReplica`` of a millionth is accepted; below it the forecasts read the load as
    none and every cloud slot looked needed, so the operator refuses it naming the field (the
    schema cannot: YAML tools write 1e-06 as text)."""
    assert operator_refusal(_body("load.perReplica", 1e-6)) is None
    problem = operator_refusal(_body("load.perReplica", 9.9e-7))
    assert problem is not None and problem.startswith("spec.load.perReplica: must be at least")


def test_a_name_of_63_characters_is_accepted_and_64_refused() -> None:
    """metadata.name labels the placeholder pods, and a label value holds 63 characters: the
    longest name that fits is served, one more is refused naming metadata.name."""
    assert name_problem("g" * 63) is None
    GatewayAutoscaler.model_validate({"metadata": {"name": "g" * 63}, "spec": MINIMAL_SPEC})
    problem = name_problem("g" * 64)
    assert problem is not None and problem.startswith("metadata.name: 64 characters")


def test_equal_bounds_pin_the_region_s_replicas() -> None:
    """replicas.min equal to replicas.max pins the count: both sides accept it."""
    _both_accept(with_field("replicas", {"min": 3, "max": 3}))


def test_a_history_of_exactly_500_000_samples_is_accepted_and_one_more_refused() -> None:
    """``load.history / load.step`` at most 500,000, the cap included (README, "What fits in
    memory")."""
    body = with_field("load.step", "1s")
    body["load"]["history"] = "500000s"
    assert operator_refusal(body) is None
    body["load"]["history"] = "500001s"
    problem = operator_refusal(body)
    assert problem is not None and problem.startswith("spec.load: load.history / load.step is")


def test_a_step_of_32_characters_is_accepted_on_both_sides() -> None:
    """The step's text is capped at 32 characters for its CEL rule's cost: a step written in
    32 is still read (33 is refused, ``tests/test_crd.py``)."""
    step = "0" * 30 + "1m"
    assert len(step) == 32
    _both_accept(with_field("load.step", step))


@pytest.mark.parametrize(
    ("step", "history", "accepted"),
    [
        pytest.param("1h", "1h", False, id="one-step"),
        pytest.param("1h", "119m", False, id="just-under-two-steps"),
        pytest.param("1h", "2h", True, id="two-steps"),
        pytest.param("1m", "2m", True, id="two-steps-of-a-minute"),
    ],
)
def test_a_load_history_covers_two_steps_at_least(step: str, history: str, accepted: bool) -> None:
    """LoadSpec alone (the whole spec also asks a history long enough for its model) refuses a
    history shorter than two steps, naming load.history."""
    body = {"query": "q", "perReplica": 1, "step": step, "history": history}
    if accepted:
        LoadSpec.model_validate(body)
        return
    with pytest.raises(pydantic.ValidationError) as caught:
        LoadSpec.model_validate(body)
    problem = format_validation_error(caught.value, prefix="spec.load")
    assert problem == "spec.load: load.history must cover at least two load.step", problem
