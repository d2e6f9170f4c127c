"""The generated GatewayAutoscaler CRD: committed as generated, structural, valid, and in step
with the pydantic spec and the forecasting registry."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import numpy as np
import pydantic
import pytest
import yaml

from controller import crd
from controller.planner import MIN_FIT_STEP
from controller.spec import (
    AUTO_MODEL,
    GatewayAutoscaler,
    GatewayAutoscalerSpec,
    LoadSpec,
    ReplicaBounds,
    format_validation_error,
)
from forecasts.registry import model_names
from forecasts.series import LoadSeries

REPO = Path(__file__).resolve().parents[1]
COMMITTED = REPO / "manifests" / "base" / "crd.yaml"
# The oldest Kubernetes version whose CEL validation rules are GA (1.29) plus one.
KUBERNETES_VERSION = "1.30.0"

# Until forecasts/ registers "auto", the spec's own default is outside the enum: the API server
# would refuse such a CRD. These tests turn green by themselves once it is registered.
auto_pending = pytest.mark.xfail(
    AUTO_MODEL not in model_names(),
    reason=f"forecast.model default {AUTO_MODEL!r} is not in forecasts.registry yet",
    strict=True,
)

MINIMAL_SPEC = {
    "region": "eu-west",
    "load": {"query": 'sum(gateway_active_connections{region="eu-west"})', "perReplica": 5000},
    "physical": {"deployment": "gateway-eu-west"},
    "cloud": {"deployment": "gateway-eu-west-cloud"},
}

# A step written as a Go duration (CEL's ``duration()`` reads no ``d`` or ``w``) is read by the
# API server: at least 1s, and below 5m a divisor of 5m in whole milliseconds.
GO_STEP = "!has(self.step) || !self.step.matches('^(0*[0-9]{1,5}([.][0-9]+)?(ms|s|m|h))+$')"
STEP_RULE = f"{GO_STEP} || duration(self.step) >= duration('1s')"
STEP_DIVIDES_RULE = (
    f"{GO_STEP} || duration(self.step) < duration('1s') || duration(self.step) >= duration('5m')"
    " || (300000 % duration(self.step).getMilliseconds() == 0 && "
    "duration(string(duration(self.step).getMilliseconds()) + 'ms') == duration(self.step))"
)

# One object that breaks each CEL rule; pydantic must refuse it too (the rule mirrors it).
CEL_COUNTEREXAMPLES: dict[str, tuple[type[pydantic.BaseModel], dict[str, Any]]] = {
    "self.min <= self.max": (ReplicaBounds, {"min": 5, "max": 2}),
    STEP_RULE: (LoadSpec, {"query": "q", "perReplica": 1, "step": "10ms"}),
    STEP_DIVIDES_RULE: (LoadSpec, {"query": "q", "perReplica": 1, "step": "90s"}),
    "self.physical.deployment != self.cloud.deployment": (
        GatewayAutoscalerSpec,
        {**MINIMAL_SPEC, "cloud": {"deployment": "gateway-eu-west"}},
    ),
    "self.metadata.name.size() <= 63": (
        GatewayAutoscaler,
        {"metadata": {"name": "g" * 64}, "spec": MINIMAL_SPEC},
    ),
}


def _schema() -> dict[str, Any]:
    return crd.crd_manifest()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def _nodes(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path or ".", node
    for name, sub in node.get("properties", {}).items():
        yield from _nodes(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from _nodes(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _nodes(node["additionalProperties"], f"{path}.*")


def _apply_defaults(node: dict[str, Any], value: Any) -> Any:
    """Default an object the way the API server does: top-down, ``default`` then recurse."""
    if not isinstance(value, dict):
        return value
    out = dict(value)
    for name, sub in node.get("properties", {}).items():
        if name not in out and "default" in sub:
            out[name] = sub["default"]
        if name in out:
            out[name] = _apply_defaults(sub, out[name])
    return out


def test_committed_manifest_is_generated() -> None:
    """manifests/base/crd.yaml holds exactly what `tidal crd` prints."""
    assert COMMITTED.read_text(encoding="utf-8") == crd.render_crd(), (
        "manifests/base/crd.yaml drifted from controller/spec.py or forecasts.registry; "
        "regenerate it with: python -m controller.crd > manifests/base/crd.yaml"
    )


def test_render_is_one_yaml_document_of_the_manifest() -> None:
    """The YAML text parses back to crd_manifest()."""
    assert yaml.safe_load(crd.render_crd()) == crd.crd_manifest()


def test_model_enum_is_the_registry() -> None:
    """spec.forecast.model accepts exactly the registered forecasting models."""
    model = _schema()["properties"]["spec"]["properties"]["forecast"]["properties"]["model"]
    assert model["enum"] == model_names()


def test_model_enum_follows_registrations_after_import(monkeypatch: pytest.MonkeyPatch) -> None:
    """A model registered after import appears in the CRD: the enum is read at call time."""
    from forecasts import registry

    monkeypatch.setitem(registry.MODELS, "test-only-model", registry.MODELS[model_names()[0]])
    model = crd.spec_schema()["properties"]["forecast"]["properties"]["model"]
    assert "test-only-model" in model["enum"]


def test_passes_kubernetes_validate_strict() -> None:
    """The CRD object is valid apiextensions.k8s.io/v1 for kubernetes-validate --strict."""
    kubernetes_validate.validate(crd.crd_manifest(), KUBERNETES_VERSION, strict=True)


def test_schema_is_structural() -> None:
    """Every node has a type (unless it preserves unknown fields) and no non-structural key."""
    forbidden = {"$ref", "$defs", "anyOf", "oneOf", "allOf", "not", "title", "const"}
    for path, node in _nodes(_schema()):
        assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), path
        assert not forbidden & node.keys(), (path, forbidden & node.keys())
        assert not ("properties" in node and "additionalProperties" in node), path
        for bound in ("exclusiveMinimum", "exclusiveMaximum"):
            assert node.get(bound, True) is True, f"{path}: {bound} must be a boolean"


def test_no_field_preserves_unknown_fields() -> None:
    """Everything, the planner state included, is typed: the API server prunes the rest."""
    opaque = [p for p, n in _nodes(_schema()) if n.get("x-kubernetes-preserve-unknown-fields")]
    assert opaque == []


def test_recommendations_fit_what_the_operator_keeps() -> None:
    """status.recommendations holds at least as many entries as the operator ever writes."""
    status = pytest.importorskip("controller.operator.status")
    schema = _schema()["properties"]["status"]["properties"]["recommendations"]
    assert schema["maxItems"] >= status.MAX_RECOMMENDATIONS


def test_subresources_names_and_versions() -> None:
    """Namespaced, short name gwa, one served storage version with a status subresource."""
    spec = crd.crd_manifest()["spec"]
    assert spec["scope"] == "Namespaced"
    assert spec["group"] == "tidal.dev"
    assert "gwa" in spec["names"]["shortNames"]
    [version] = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}


def test_printer_columns_point_at_typed_fields() -> None:
    """kubectl get gwa shows Region, Mode, Load, Forecast, Physical, Cloud, Age, each typed."""
    columns = crd.crd_manifest()["spec"]["versions"][0]["additionalPrinterColumns"]
    default_view = [c["name"] for c in columns if c.get("priority", 0) == 0]
    assert default_view == ["Region", "Mode", "Load", "Forecast", "Physical", "Cloud", "Age"]
    schema = _schema()
    for column in columns:
        path = column["jsonPath"]
        if path.startswith(".metadata") or "[" in path:
            continue
        node = schema
        for part in path.strip(".").split("."):
            node = node["properties"][part]
        assert node["type"] == column["type"], column["name"]


def test_status_conditions_follow_api_conventions() -> None:
    """Conditions are a map list keyed by type with the metav1.Condition fields."""
    conditions = _schema()["properties"]["status"]["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert set(conditions["items"]["properties"]) == {
        "type",
        "status",
        "reason",
        "message",
        "lastTransitionTime",
        "observedGeneration",
    }


def test_design_status_validates() -> None:
    """The status example of DESIGN.md, with the operator's recommendations, is valid."""
    status = {
        "observedGeneration": 3,
        "load": 182000,
        "forecast": {
            "peak": 231000,
            "peakAt": "2024-05-01T18:00:00Z",
            "model": "mstl",
            "quantile": 0.95,
            "fittedAt": "2024-05-01T17:30:00Z",
            "error": 0.043,
        },
        "desiredReplicas": 51,
        "physical": {"replicas": 40, "capacity": 40},
        "cloud": {"replicas": 11, "reserved": 14},
        "lastScaleTime": "2024-05-01T17:31:00Z",
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Planned",
                "message": "",
                "lastTransitionTime": "2024-05-01T17:00:00Z",
                "observedGeneration": 3,
            }
        ],
        "recommendations": [{"at": "2024-05-01T17:30:00Z", "replicas": 50}],
    }
    schema = crd.openapi_to_json_schema(crd.status_schema())
    jsonschema.validate(status, schema)
    # Before the first fit the operator writes what it does not know as null.
    unknown = {"peak": None, "peakAt": None, "model": "auto", "fittedAt": None, "error": None}
    jsonschema.validate({**status, "forecast": unknown}, schema)


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        pytest.param({**MINIMAL_SPEC, "mode": "Sometimes"}, "mode", id="unknown-mode"),
        pytest.param(
            {**MINIMAL_SPEC, "load": {**MINIMAL_SPEC["load"], "perReplica": 0}},
            "perReplica",
            id="per-replica-zero",
        ),
        pytest.param(
            {**MINIMAL_SPEC, "load": {**MINIMAL_SPEC["load"], "step": "1 minute"}},
            "step",
            id="bad-duration",
        ),
        pytest.param({**MINIMAL_SPEC, "forecast": {"model": "prophet"}}, "model", id="bad-model"),
        pytest.param({**MINIMAL_SPEC, "forecast": {"quantile": 1.0}}, "quantile", id="quantile-1"),
        pytest.param({**MINIMAL_SPEC, "replicaz": {}}, "replicaz", id="unknown-field"),
    ],
)
def test_schema_refuses_what_pydantic_refuses(spec: dict[str, Any], field: str) -> None:
    """An invalid spec is refused by both the CRD schema and the pydantic model."""
    validator = jsonschema.Draft202012Validator(
        crd.openapi_to_json_schema(_schema()["properties"]["spec"])
    )
    errors = list(validator.iter_errors(spec))
    assert errors and any(field in str(e.path) + e.message for e in errors)
    with pytest.raises(pydantic.ValidationError):
        GatewayAutoscalerSpec.model_validate(spec)


@pytest.mark.parametrize(
    "rule", [r["rule"] for rules in crd._CEL_RULES.values() for r in rules], ids=str
)
def test_cel_rules_mirror_pydantic(rule: str) -> None:
    """Each CEL rule's counterexample is refused by pydantic as well."""
    model, value = CEL_COUNTEREXAMPLES[rule]
    with pytest.raises(pydantic.ValidationError):
        model.model_validate(value)


@auto_pending
def test_defaults_are_valid() -> None:
    """Every default validates against its own node (the API server refuses the CRD otherwise)."""
    for path, node in _nodes(_schema()):
        if "default" in node:
            errors = jsonschema.Draft202012Validator(crd.openapi_to_json_schema(node)).iter_errors(
                node["default"]
            )
            assert not [e.message for e in errors], path


@auto_pending
def test_crd_defaults_equal_pydantic_defaults() -> None:
    """A minimal object defaulted by the API server reads back as pydantic's defaults."""
    defaulted = _apply_defaults(_schema()["properties"]["spec"], MINIMAL_SPEC)
    from_pydantic = GatewayAutoscalerSpec.model_validate(MINIMAL_SPEC).model_dump(
        mode="json", by_alias=True, exclude_none=True
    )
    assert defaulted == from_pydantic


def _rules(node: dict[str, Any]) -> list[str]:
    return [r["rule"] for r in node.get("x-kubernetes-validations", [])]


def test_spec_rule_refuses_one_deployment_for_both_pools() -> None:
    """The API server refuses physical.deployment == cloud.deployment at admission."""
    spec = _schema()["properties"]["spec"]
    assert "self.physical.deployment != self.cloud.deployment" in _rules(spec)
    for pool in ("physical", "cloud"):
        assert spec["properties"][pool]["properties"]["deployment"]["maxLength"] == 253


def test_root_rule_caps_the_name_at_a_label_value() -> None:
    """metadata.name is a label value of the placeholder pods: at most 63 characters."""
    assert "self.metadata.name.size() <= 63" in _rules(_schema())


def test_step_rule_bounds_its_string() -> None:
    """The step's CEL rule, and the length that keeps its estimated cost within budget."""
    load = _schema()["properties"]["spec"]["properties"]["load"]
    assert _rules(load) == [STEP_RULE, STEP_DIVIDES_RULE]
    assert load["properties"]["step"]["maxLength"] == 32


@pytest.mark.parametrize(
    ("load", "message"),
    [
        pytest.param(
            {"step": "10ms", "history": "14d"},
            "spec.load: load.step must be at least 1s, got 0.01s",
            id="step-10ms",
        ),
        pytest.param(
            {"step": "1s", "history": "14d"},
            "spec.load: load.history / load.step is 1,209,600 samples, at most 500,000",
            id="14d-at-1s",
        ),
        pytest.param(
            {"step": "1m", "history": "100w"},
            "spec.load: load.history / load.step is 1,008,000 samples, at most 500,000",
            id="100w-at-1m",
        ),
        pytest.param({"step": "1" * 33 + "s"}, "spec.load.step: at most 32 characters", id="long"),
    ],
)
def test_history_too_large_for_memory_is_refused(load: dict[str, str], message: str) -> None:
    """A step below 1s, or more than 500,000 samples of history: refused, with the numbers."""
    body = {**MINIMAL_SPEC, "load": {**MINIMAL_SPEC["load"], **load}}
    with pytest.raises(pydantic.ValidationError) as caught:
        GatewayAutoscalerSpec.model_validate(body)
    assert format_validation_error(caught.value).startswith(message)


@pytest.mark.parametrize(
    "load",
    [
        pytest.param({"step": "1s", "history": "5d"}, id="5d-at-1s"),
        pytest.param({"step": "5s", "history": "14d"}, id="14d-at-5s"),
        pytest.param({"step": "1m", "history": "14d"}, id="the-default"),
    ],
)
def test_history_within_the_sample_cap_is_accepted(load: dict[str, str]) -> None:
    """Up to 500,000 samples, at 1s or coarser, is accepted."""
    GatewayAutoscalerSpec.model_validate({**MINIMAL_SPEC, "load": {**MINIMAL_SPEC["load"], **load}})


@pytest.mark.parametrize("step", ["2m", "7s", "45s", "4m"])
def test_a_step_that_does_not_divide_the_fit_step_is_refused(step: str) -> None:
    """Forecasts fit 5-minute means of whole samples: a finer step must divide 5 minutes, or
    every fit would fail, loop after loop, with an error that does not name the field."""
    body = {**MINIMAL_SPEC, "load": {**MINIMAL_SPEC["load"], "step": step}}
    with pytest.raises(pydantic.ValidationError) as caught:
        GatewayAutoscalerSpec.model_validate(body)
    assert format_validation_error(caught.value).startswith(f"spec.load: load.step {step} must")


@pytest.mark.parametrize("step", ["1s", "15s", "30s", "1m", "2.5m", "5m", "7m", "1h"])
def test_a_step_that_divides_the_fit_step_or_exceeds_it_is_accepted(step: str) -> None:
    spec = GatewayAutoscalerSpec.model_validate(
        {**MINIMAL_SPEC, "load": {**MINIMAL_SPEC["load"], "step": step, "history": "5d"}}
    )
    step_s = spec.load.step.total_seconds()
    history = LoadSeries(0.0, step_s, np.ones(int(3600 / step_s) * 2 + 2))
    assert len(history.aggregate(max(MIN_FIT_STEP, step_s))) >= 1  # the fit's buckets


def test_one_deployment_for_both_pools_names_both_fields() -> None:
    """pydantic refuses physical.deployment == cloud.deployment, naming both fields."""
    body = {**MINIMAL_SPEC, "cloud": {"deployment": "gateway-eu-west"}}
    with pytest.raises(pydantic.ValidationError) as caught:
        GatewayAutoscalerSpec.model_validate(body)
    assert format_validation_error(caught.value).startswith(
        "spec: physical.deployment and cloud.deployment both name 'gateway-eu-west'"
    )
