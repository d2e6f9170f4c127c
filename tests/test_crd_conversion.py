"""What the CRD's schema says beyond the spec's bounds: the spec's free-form fields and DESIGN.md's
example as an SRE writes them, the status a quiet region's operator writes, plain-text
descriptions, the command that regenerates the manifest, and the conversion's rules for what
today's spec does not use yet (a list, a literal, a free-form dict, a union, an unknown key)."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Literal

import jsonschema
import pydantic
import pytest

from controller import crd
from controller.spec import GatewayAutoscalerSpec
from tests.test_spec_bounds import assert_both_refuse

REPO = Path(__file__).resolve().parents[1]

#: DESIGN.md's example object's spec, as written there.
DESIGN_SPEC: dict[str, Any] = {
    "region": "eu-west",
    "mode": "Scale",
    "load": {
        "query": 'sum(gateway_active_connections{region="eu-west"})',
        "perReplica": 5000,
        "step": "1m",
        "history": "14d",
    },
    "replicas": {"min": 2, "max": 400},
    "headroom": 0.10,
    "physical": {
        "deployment": "gateway-eu-west",
        "nodeSelector": {"tidal.dev/pool": "physical", "topology.kubernetes.io/region": "eu-west"},
        "maxReplicas": None,
    },
    "cloud": {
        "deployment": "gateway-eu-west-cloud",
        "maxReplicas": 200,
        "nodeLeadTime": "5m",
        "reserve": True,
    },
    "forecast": {"model": "auto", "horizon": "30m", "quantile": 0.95, "refit": "15m"},
    "behavior": {
        "scaleDown": {"stabilization": "10m", "maxReplicasPerMinute": 10},
        "scaleUp": {"maxReplicasPerMinute": 100},
    },
}


def _validator(node: dict[str, Any]) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(crd.openapi_to_json_schema(node))


def _errors(node: dict[str, Any], value: Any) -> list[str]:
    return [
        f"{'.'.join(map(str, e.path))}: {e.message}" for e in _validator(node).iter_errors(value)
    ]


def test_design_s_example_is_valid_as_written() -> None:
    """DESIGN.md's example, ``maxReplicas: null`` included, passes the schema without the API
    server pruning anything, and the operator reads the values written."""
    assert _errors(crd.spec_schema(), DESIGN_SPEC) == []
    spec = GatewayAutoscalerSpec.model_validate(DESIGN_SPEC)
    assert spec.physical.max_replicas is None
    assert spec.physical.node_selector == DESIGN_SPEC["physical"]["nodeSelector"]


def test_node_selector_keeps_every_label_and_refuses_a_non_string_value() -> None:
    """physical.nodeSelector is a map of strings: a schema object with neither properties nor
    additionalProperties would have its keys pruned by the API server, leaving no selector."""
    node = crd.spec_schema()["properties"]["physical"]["properties"]["nodeSelector"]
    assert node["type"] == "object"
    assert node["additionalProperties"] == {"type": "string"}
    assert_both_refuse("physical.nodeSelector", {"tidal.dev/pool": 5})


def test_descriptions_are_one_line_of_plain_text() -> None:
    """``kubectl explain`` shows descriptions as written: no reStructuredText literals, no line
    breaks of a docstring."""
    spec = crd.spec_schema()
    assert spec["description"] == "spec of one region's GatewayAutoscaler."
    todo = [spec]
    while todo:
        node = todo.pop()
        text = node.get("description", "")
        assert "``" not in text and "\n" not in text and "  " not in text, text
        todo.extend(node.get("properties", {}).values())


#: What the operator writes for a region with no load: nothing planned, nothing forecast above 0.
QUIET_STATUS: dict[str, Any] = {
    "observedGeneration": 1,
    "load": 0,
    "forecast": {
        "peak": 0,
        "peakAt": "2024-05-01T04:00:00Z",
        "model": "seasonal-naive",
        "quantile": 0.95,
        "fittedAt": "2024-05-01T03:30:00Z",
        "error": 0,
    },
    "desiredReplicas": 0,
    "physical": {"replicas": 0, "capacity": 0},
    "cloud": {"replicas": 0, "reserved": 0},
    "conditions": [
        {
            "type": "Ready",
            "status": "True",
            "reason": "Planned",
            "message": "",
            "lastTransitionTime": "2024-05-01T03:30:00Z",
            "observedGeneration": 0,
        }
    ],
    "recommendations": [{"at": "2024-05-01T03:30:00Z", "replicas": 0}],
}


def _with(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    status = copy.deepcopy(QUIET_STATUS)
    node: Any = status
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return status


def test_a_quiet_region_s_status_is_accepted() -> None:
    """No load, a forecast peak of 0, no replica anywhere: a status the API server must take,
    or the operator's status writes fail while the region is idle."""
    assert _errors(crd.status_schema(), QUIET_STATUS) == []


@pytest.mark.parametrize(
    "path",
    [
        ("observedGeneration",),
        ("load",),
        ("forecast", "peak"),
        ("forecast", "error"),
        ("desiredReplicas",),
        ("physical", "replicas"),
        ("physical", "capacity"),
        ("cloud", "replicas"),
        ("cloud", "reserved"),
        ("conditions", 0, "observedGeneration"),
        ("recommendations", 0, "replicas"),
    ],
    ids=lambda path: ".".join(map(str, path)),
)
def test_a_negative_status_count_is_refused(path: tuple[Any, ...]) -> None:
    """Loads, replica counts and generations are never negative."""
    errors = _errors(crd.status_schema(), _with(path, -1))
    assert errors and errors[0].startswith(".".join(map(str, path)) + ":"), errors


@pytest.mark.parametrize(
    "path", [("conditions", 0, "extra"), ("recommendations", 0, "extra")], ids=str
)
def test_an_unknown_field_in_a_status_list_item_is_refused(path: tuple[Any, ...]) -> None:
    """openapi_to_json_schema refuses unknown fields at every depth, list items included, as
    strict field validation does."""
    assert _errors(crd.status_schema(), _with(path, 1))


def test_python_m_controller_crd_prints_the_manifest() -> None:
    """The command test_committed_manifest_is_generated tells a developer to run prints the CRD."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "controller.crd"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert done.stdout == crd.render_crd()


class _Item(pydantic.BaseModel):
    size: int = pydantic.Field(ge=0)


class _Future(pydantic.BaseModel):
    """A model using what the spec does not use yet."""

    items: list[_Item] = pydantic.Field(default_factory=list)
    kind: Literal["One"] = "One"
    extra: dict[str, Any] = pydantic.Field(default_factory=dict)


def _convert(model: type[pydantic.BaseModel]) -> dict[str, Any]:
    raw = model.model_json_schema(
        by_alias=True, mode="validation", schema_generator=crd._CrdJsonSchema
    )
    return crd._convert(raw, raw.pop("$defs", {}), where="spec")


def test_lists_literals_and_free_form_maps_convert_to_structural_nodes() -> None:
    """A list of a model is inlined (no $ref), a literal is a one-value enum, and a dict of
    anything keeps its unknown fields."""
    schema = _convert(_Future)["properties"]
    assert schema["items"]["items"] == {
        "type": "object",
        "required": ["size"],
        "properties": {"size": {"type": "integer", "minimum": 0}},
    }
    assert schema["kind"]["enum"] == ["One"]
    assert "const" not in schema["kind"]
    assert schema["extra"]["x-kubernetes-preserve-unknown-fields"] is True
    assert "additionalProperties" not in schema["extra"]


class _Union(pydantic.BaseModel):
    value: int | str = 1


class _MultipleOf(pydantic.BaseModel):
    value: int = pydantic.Field(default=5, multiple_of=5)


class _Untyped(pydantic.BaseModel):
    value: Any = None


@pytest.mark.parametrize(
    ("model", "says"),
    [
        pytest.param(_Union, "spec.value: a union of 2 non-null types", id="union"),
        pytest.param(_MultipleOf, "spec.value: no structural-schema equivalent for", id="key"),
        pytest.param(_Untyped, "spec.value: a structural schema needs a type", id="untyped"),
    ],
)
def test_a_field_with_no_structural_schema_is_an_error_naming_it(
    model: type[pydantic.BaseModel], says: str
) -> None:
    """Rather than a CRD the API server refuses at apply time, generating it fails, naming
    the field."""
    with pytest.raises(crd.SchemaConversionError, match=says):
        _convert(model)
