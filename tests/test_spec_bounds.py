"""The API server (the CRD's schema and CEL rules) and the operator (pydantic) accept and refuse
the same hostile specs, and a refusal names the field.

``admission`` plays the API server offline: unknown fields and nulls of non-nullable fields
are pruned, defaults applied top-down, then the schema and every CEL rule (cel-python) run.
"""

from __future__ import annotations

import copy
from typing import Any

import celpy
import jsonschema
import numpy as np
import pydantic
import pytest

from controller import crd
from controller.planner import forecaster_for
from controller.spec import GatewayAutoscalerSpec, format_validation_error
from forecasts.errors import InsufficientHistory
from forecasts.registry import model_names
from forecasts.series import LoadSeries
from tests.test_crd import MINIMAL_SPEC


def _spec_schema() -> dict[str, Any]:
    root = crd.crd_manifest()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return dict(root["properties"]["spec"])


def _prune_and_default(node: dict[str, Any], value: Any) -> Any:
    if not isinstance(value, dict) or "properties" not in node:
        return value
    out = {
        key: item
        for key, item in value.items()
        if key in node["properties"]
        and (item is not None or node["properties"][key].get("nullable"))
    }
    for key, sub in node["properties"].items():
        if key not in out and "default" in sub:
            out[key] = copy.deepcopy(sub["default"])
        if key in out:
            out[key] = _prune_and_default(sub, out[key])
    return out


def _cel_refusals(node: dict[str, Any], value: Any, path: str) -> list[str]:
    if not isinstance(value, dict):
        return []
    out = []
    for rule in node.get("x-kubernetes-validations", []):
        env = celpy.Environment()
        program = env.program(env.compile(rule["rule"]))
        try:
            admitted = bool(program.evaluate({"self": celpy.json_to_cel(value)}))
        except celpy.CELEvalError as exc:  # the API server refuses on an evaluation error
            admitted, rule = False, {"message": f"evaluation error {exc}"}
        if not admitted:
            out.append(f"{path}: {rule['message']}")
    for key, sub in node.get("properties", {}).items():
        if key in value:
            out.extend(_cel_refusals(sub, value[key], f"{path}.{key}"))
    return out


def admission(spec: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """What the API server stores of ``spec``, and why it refuses it (empty: admitted)."""
    schema = _spec_schema()
    stored = _prune_and_default(schema, spec)
    validator = jsonschema.Draft202012Validator(crd.openapi_to_json_schema(schema))
    refusals = [
        f"spec.{'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(stored)
    ]
    return stored, refusals or _cel_refusals(schema, stored, "spec")


def operator_refusal(spec: dict[str, Any]) -> str | None:
    try:
        GatewayAutoscalerSpec.model_validate(spec)
    except pydantic.ValidationError as exc:
        return format_validation_error(exc)
    return None


def with_field(dotted: str, value: Any) -> dict[str, Any]:
    body = copy.deepcopy(MINIMAL_SPEC)
    node = body
    *parents, leaf = dotted.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value
    return body


def assert_both_refuse(dotted: str, value: Any, *, names: str | None = None) -> None:
    """The API server refuses it naming ``names`` (the field by default), and so does pydantic."""
    _stored, refusals = admission(with_field(dotted, value))
    field = f"spec.{names or dotted}"
    assert refusals, f"the API server admits {dotted}={value!r}"
    assert any(field in refusal for refusal in refusals), refusals
    problem = operator_refusal(with_field(dotted, value))
    assert problem is not None and field in problem and "\n" not in problem, problem


def assert_both_accept(dotted: str, value: Any) -> None:
    stored, refusals = admission(with_field(dotted, value))
    assert refusals == []
    assert operator_refusal(stored) is None


def test_replicas_per_node_is_bounded_on_both_sides() -> None:
    """A huge cloud.replicasPerNode made every plan allocate a float per slot of a node (7.5 GB
    at 10**9): both sides refuse more than a kubelet could ever run."""
    assert_both_accept("cloud.replicasPerNode", 1000)
    for value in (1001, 10_000_000, 10**9):
        assert_both_refuse("cloud.replicasPerNode", value)


@pytest.mark.parametrize("step", ["90s", "45s", "2m", "1.5m", "4m59s", "0m", "0.01m", "0h"])
def test_a_step_the_operator_refuses_is_refused_at_admission(step: str) -> None:
    """A step below 1s written in minutes, or below 5m without dividing it, was admitted by the
    API server and then left the object Ready=False, loop after loop."""
    assert_both_refuse("load.step", step, names="load")
    _stored, refusals = admission(with_field("load.step", step))
    assert any("load.step" in refusal for refusal in refusals), refusals


@pytest.mark.parametrize("step", ["5s", "15s", "2.5s", "1m", "2.5m", "5m", "7m", "1h", "1d"])
def test_a_step_the_operator_accepts_is_admitted(step: str) -> None:
    assert_both_accept("load.step", step)


@pytest.mark.parametrize(
    ("history", "overrides", "says"),
    [
        pytest.param("1d", {}, "auto: it fits on at least 301 samples", id="a-day-for-auto"),
        pytest.param(
            "2d",
            {"forecast": {"model": "holt-winters"}},
            "holt-winters: it fits on at least 589 samples",
            id="two-days-for-holt-winters",
        ),
        pytest.param(
            "2d",
            {"forecast": {"model": "seasonal-naive", "horizon": "1d"}},
            "seasonal-naive: it fits on at least 580 samples",
            id="a-long-horizon",
        ),
        pytest.param(
            "3d", {"cloud": {"nodeLeadTime": "2d"}}, "auto: it fits on at least 871", id="lead"
        ),
    ],
)
def test_a_history_too_short_for_its_model_is_refused(
    history: str, overrides: dict[str, dict[str, str]], says: str
) -> None:
    """A history shorter than forecast.model fits on (a day or two and the forecast's reach)
    failed every fit, loop after loop, as "N usable samples, M are needed", which reads as a
    region whose metrics are young. Refused, naming the field, the model and its need."""
    body = copy.deepcopy(MINIMAL_SPEC)
    body["load"]["history"] = history
    for section, fields in overrides.items():
        body.setdefault(section, {}).update(fields)
    body["cloud"]["deployment"] = MINIMAL_SPEC["cloud"]["deployment"]
    problem = operator_refusal(body)
    assert problem is not None
    assert problem.startswith(f"spec: load.history {history} is too short for forecast.model")
    assert says in problem, problem


@pytest.mark.parametrize("model", model_names())
def test_a_refused_history_fails_every_fit(model: str) -> None:
    """The rule refuses nothing that could be fitted: a history a bucket shorter than the
    least it accepts fails the fit of the planner's forecaster, whatever the model."""
    spec = GatewayAutoscalerSpec.model_validate(
        {**MINIMAL_SPEC, "forecast": {"model": model, "horizon": "2h"}}
    )
    least = None
    for days in np.arange(0.5, 4.0, 5 / 1440):
        body = copy.deepcopy(MINIMAL_SPEC)
        body["load"]["history"] = f"{round(days * 1440)}m"
        body["forecast"] = {"model": model, "horizon": "2h"}
        if operator_refusal(body) is None:
            least = round(days * 1440)
            break
    assert least is not None
    minutes = least - 5  # a bucket short of the least accepted
    times = np.arange(minutes) * 60.0
    history = LoadSeries(0.0, 60.0, 1000.0 + 500.0 * np.sin(times / 86400.0 * 2 * np.pi))
    with pytest.raises(InsufficientHistory):
        forecaster_for(spec).fit(history)


def _least_accepted_minutes(body: dict[str, Any]) -> int:
    """The shortest ``load.history`` (in 5-minute steps) the operator accepts for ``body``."""
    for minutes in range(720, 6 * 1440, 5):
        trial = copy.deepcopy(body)
        trial["load"]["history"] = f"{minutes}m"
        if operator_refusal(trial) is None:
            return minutes
    raise AssertionError("no history up to six days is accepted")


@pytest.mark.parametrize(
    ("model", "overrides"),
    [
        pytest.param("auto", {"cloud": {"nodeLeadTime": "2h"}}, id="auto-long-lead"),
        pytest.param("holt-winters", {"cloud": {"nodeLeadTime": "2h"}}, id="hw-long-lead"),
        pytest.param("mstl", {"cloud": {"nodeLeadTime": "90m"}}, id="mstl-long-lead"),
        pytest.param("seasonal-naive", {"cloud": {"nodeLeadTime": "3h"}}, id="naive-long-lead"),
        pytest.param("auto", {"forecast": {"refit": "1h"}}, id="auto-long-refit"),
    ],
)
def test_the_least_history_accepted_is_one_the_planner_s_forecaster_fits(
    model: str, overrides: dict[str, dict[str, str]]
) -> None:
    """The rule reads the reach the planner fits for: a cloud node's boot, a pod's start, a loop
    and the node's least hold. It read forecast.horizon or cloud.nodeLeadTime alone, so with a
    2-hour lead it accepted 1d2h20m for auto, whose fit then failed every pass ("316 usable
    samples at a 300s step, 607 are needed"; found by a review)."""
    body = copy.deepcopy(MINIMAL_SPEC)
    for section, fields in overrides.items():
        body.setdefault(section, {}).update(fields)
    body.setdefault("forecast", {})["model"] = model
    minutes = _least_accepted_minutes(body)
    body["load"]["history"] = f"{minutes}m"
    spec = GatewayAutoscalerSpec.model_validate(body)
    times = np.arange(minutes) * 60.0
    history = LoadSeries(0.0, 60.0, 1000.0 + 500.0 * np.sin(times / 86400.0 * 2 * np.pi))
    forecaster_for(spec).fit(history)  # no InsufficientHistory
    short = LoadSeries(0.0, 60.0, history.values[5:])  # a bucket less
    need = forecaster_for(spec).least_points(300.0)
    with pytest.raises(InsufficientHistory, match=f" {need} are needed"):
        forecaster_for(spec).fit(short)


def test_a_history_long_enough_for_its_model_is_accepted() -> None:
    body = {**MINIMAL_SPEC, "load": {**MINIMAL_SPEC["load"], "history": "3d"}}
    assert operator_refusal({**body, "forecast": {"horizon": "23h", "refit": "15m"}}) is None


COUNTS = [
    "replicas.min",
    "replicas.max",
    "physical.maxReplicas",
    "cloud.maxReplicas",
    "behavior.scaleDown.maxReplicasPerMinute",
    "behavior.scaleUp.maxReplicasPerMinute",
]


@pytest.mark.parametrize("dotted", COUNTS)
def test_a_count_beyond_a_deployments_int32_is_refused_on_both_sides(dotted: str) -> None:
    """A Deployment's replicas is an int32: pydantic read 2**31 and 10**20 (no int64 holds it,
    the API server stores neither) and planned Deployments the API server then refused."""
    for value in (2**31, 10**20):
        body = with_field(dotted, value)
        body["replicas"] = {"min": 0, "max": 2**31 - 1, **body.get("replicas", {})}
        _stored, refusals = admission(body)
        assert any(f"spec.{dotted}" in refusal for refusal in refusals), refusals
        problem = operator_refusal(body)
        assert problem is not None and problem.startswith(f"spec.{dotted}:"), problem


@pytest.mark.parametrize("dotted", COUNTS)
def test_the_largest_int32_count_is_accepted_on_both_sides(dotted: str) -> None:
    body = with_field(dotted, 2**31 - 1)
    body["replicas"] = {"min": 0, "max": 2**31 - 1, **body.get("replicas", {})}
    stored, refusals = admission(body)
    assert refusals == []
    assert operator_refusal(stored) is None
