"""The ``GatewayAutoscaler`` CustomResourceDefinition, generated from :mod:`controller.spec`.

The pydantic models are the single source of the spec's schema: this module converts their JSON
schema into a Kubernetes *structural* schema (``apiextensions.k8s.io/v1``) and adds what only the
CRD can say: the status subresource, printer columns and CEL validation rules.

The conversion, and why each step is needed (see
https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#specifying-a-structural-schema):

- ``$ref`` is not allowed in a CRD schema: every reference is inlined.
- ``anyOf: [X, null]`` becomes ``X`` with ``nullable: true``; a ``null`` default is dropped
  (an absent field already means "unset").
- ``title`` is noise in ``kubectl explain``; ``additionalProperties: false`` is forbidden beside
  ``properties`` (the API server prunes unknown fields instead).
- JSON Schema 2020's numeric ``exclusiveMinimum: 0.5`` is OpenAPI v3.0's
  ``minimum: 0.5, exclusiveMinimum: true``.
- ``additionalProperties: true`` (a ``dict[str, Any]``) becomes
  ``x-kubernetes-preserve-unknown-fields: true``.
- Durations are strings with the pattern of :mod:`controller.durations`, and their defaults are
  written the way a user writes them (``5m``, not pydantic's ISO ``PT5M``).
- A field whose pydantic default comes from a factory (``replicas``, ``forecast``, ...) gets the
  factory's value, usually ``{}``, so that the API server applies the nested defaults even when
  the user leaves the whole section out.

The allowed ``forecast.model`` names are read from :func:`forecasts.registry.model_names` each
time the CRD is generated, never from a list frozen at import time.

``python -m controller.crd > manifests/base/crd.yaml`` regenerates the committed manifest
(``tidal crd`` prints the same text).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import timedelta
from typing import Any, cast

import yaml
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema
from pydantic_core import core_schema

from controller.durations import format_duration
from controller.spec import (
    GROUP,
    KIND,
    MAX_NAME_LENGTH,
    MIN_FIT_STEP,
    MIN_STEP,
    PLURAL,
    VERSION,
    GatewayAutoscaler,
    GatewayAutoscalerSpec,
)
from forecasts.registry import model_names

__all__ = [
    "CONDITION_TYPES",
    "SHORT_NAME",
    "crd_manifest",
    "openapi_to_json_schema",
    "render_crd",
    "spec_schema",
    "status_schema",
]

SHORT_NAME = "gwa"
SINGULAR = "gatewayautoscaler"
CONDITION_TYPES = ("Ready", "ForecastReady", "Bursting", "CapacityLimited")

# CEL rules for what a per-field schema cannot say, keyed by the pydantic model they belong to.
# Each mirrors a validator of that model in controller/spec.py, so that the API server refuses
# at admission what pydantic would refuse later; tests/test_crd.py checks that pydantic rejects
# each rule's counterexample. A model may also carry its own rules in
# ``json_schema_extra={"x-kubernetes-validations": [...]}``; those are kept as they are.
#
# ``load.history / load.step`` (at most MAX_HISTORY_POINTS samples) has no rule: CEL's
# ``duration()`` reads Go durations, which have no ``d`` or ``w``, and a history is written in
# days; pydantic refuses it and the object gets ``Ready=False``.
# The step rules read a step written as a Go duration (``ms``, ``s``, ``m``, ``h``; at most five
# digits before a point, so that Go's parser cannot overflow): at least 1s, and below 5m a
# divisor of 5m in whole milliseconds, as pydantic's LoadSpec says. A step written with ``d`` or
# ``w``, or a longer number, is left to pydantic, and so is any duration past MAX_DURATION
# (ten years), which a Go duration of five digits of hours can pass.
_GO_DURATION = "^(0*[0-9]{1,5}([.][0-9]+)?(ms|s|m|h))+$"
_STEP = "duration(self.step)"
_STEP_MS = f"{_STEP}.getMilliseconds()"
_FIT_MS = round(MIN_FIT_STEP.total_seconds() * 1000)
_MIN_STEP_TEXT = format_duration(MIN_STEP)
_FIT_TEXT = format_duration(MIN_FIT_STEP)
_CEL_RULES: dict[str, list[dict[str, str]]] = {
    "ReplicaBounds": [
        {"rule": "self.min <= self.max", "message": "replicas.min must not exceed replicas.max"},
    ],
    "LoadSpec": [
        {
            "rule": f"!has(self.step) || !self.step.matches('{_GO_DURATION}') || "
            f"{_STEP} >= duration('{_MIN_STEP_TEXT}')",
            "message": f"load.step must be at least {_MIN_STEP_TEXT}",
        },
        {
            "rule": f"!has(self.step) || !self.step.matches('{_GO_DURATION}') || "
            f"{_STEP} < duration('{_MIN_STEP_TEXT}') || {_STEP} >= duration('{_FIT_TEXT}') || "
            f"({_FIT_MS} % {_STEP_MS} == 0 && duration(string({_STEP_MS}) + 'ms') == {_STEP})",
            "message": f"load.step below {_FIT_TEXT} must divide {_FIT_TEXT} (the forecasts fit "
            f"{_FIT_TEXT} means of whole samples): 15s, 30s or 1m, for example",
        },
    ],
    "GatewayAutoscalerSpec": [
        {
            "rule": "self.physical.deployment != self.cloud.deployment",
            "message": "physical.deployment and cloud.deployment must name two Deployments",
        },
    ],
    # The object itself: its name is the value of the placeholder pods' label.
    "GatewayAutoscaler": [
        {
            "rule": f"self.metadata.name.size() <= {MAX_NAME_LENGTH}",
            "message": f"metadata.name must be at most {MAX_NAME_LENGTH} characters: it is the "
            "value of the placeholder pods' label tidal.dev/placeholder-for",
        },
    ],
}

# Keys a structural schema node may carry after conversion; anything else in pydantic's output
# is an error naming the key, rather than a CRD the API server refuses at apply time.
_ALLOWED_KEYS = frozenset(
    {
        "type",
        "description",
        "properties",
        "required",
        "items",
        "additionalProperties",
        "enum",
        "default",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "minLength",
        "maxLength",
        "minItems",
        "maxItems",
        "pattern",
        "format",
        "nullable",
    }
)
_KEY_ORDER = (
    "type",
    "format",
    "description",
    "nullable",
    "enum",
    "default",
    "minimum",
    "exclusiveMinimum",
    "maximum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "required",
    "properties",
    "additionalProperties",
    "items",
)


class SchemaConversionError(ValueError):
    """pydantic produced a schema construct that has no structural-schema equivalent."""


class _CrdJsonSchema(GenerateJsonSchema):
    """pydantic's JSON schema with defaults written the way a CRD user writes them."""

    def encode_default(self, dft: Any) -> Any:
        if isinstance(dft, timedelta):
            return format_duration(dft)
        return super().encode_default(dft)

    def default_schema(self, schema: core_schema.WithDefaultSchema) -> dict[str, Any]:
        json_schema = super().default_schema(schema)
        factory = schema.get("default_factory")
        if factory is not None and "default" not in json_schema:
            if schema.get("default_factory_takes_data"):
                return json_schema
            if isinstance(factory, type) and issubclass(factory, BaseModel):
                # A section made of its fields' defaults: {} lets the API server fill each
                # nested default itself (and needs no instance, whose validators may refuse).
                json_schema["default"] = {}
            else:
                make = cast(Callable[[], Any], factory)
                json_schema["default"] = self.encode_default(make())
        return json_schema


def _ordered(node: dict[str, Any]) -> dict[str, Any]:
    rank = {key: i for i, key in enumerate(_KEY_ORDER)}
    return dict(sorted(node.items(), key=lambda item: (rank.get(item[0], len(rank)), item[0])))


def _convert(node: dict[str, Any], defs: dict[str, Any], *, where: str) -> dict[str, Any]:
    """One pydantic JSON-schema node as a structural-schema node (recursively)."""
    node = dict(node)
    rules: list[dict[str, str]] = []
    ref = node.pop("$ref", None)
    if ref is not None:
        name = ref.rsplit("/", 1)[-1]
        # Siblings of $ref (a default, a description) override the referenced definition.
        node = {**defs[name], **node}
        rules.extend(_CEL_RULES.get(name, []))
    any_of = node.pop("anyOf", None)
    if any_of is not None:
        variants = [v for v in any_of if v.get("type") != "null"]
        if len(variants) != 1:
            raise SchemaConversionError(
                f"{where}: a union of {len(variants)} non-null types has no structural schema"
            )
        node = {**variants[0], **node}
        if len(variants) < len(any_of):
            node["nullable"] = True
            if node.get("default", ...) is None:
                del node["default"]
    node.pop("title", None)
    node.pop("$defs", None)
    if "const" in node:
        node["enum"] = [node.pop("const")]
    for bound, flag in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        value = node.get(bound)
        if value is not None and not isinstance(value, bool):
            node[flag] = value
            node[bound] = True
    extra = node.pop("additionalProperties", None)
    if extra is True:
        node["x-kubernetes-preserve-unknown-fields"] = True
    elif isinstance(extra, dict):
        node["additionalProperties"] = _convert(extra, defs, where=f"{where}.*")
    if "properties" in node:
        node["properties"] = {
            key: _convert(value, defs, where=f"{where}.{key}")
            for key, value in node["properties"].items()
        }
    if "items" in node:
        node["items"] = _convert(node["items"], defs, where=f"{where}[]")
    if "description" in node:
        # One line, and no reStructuredText literals: ``kubectl explain`` shows plain text.
        node["description"] = " ".join(str(node["description"]).replace("``", "").split())
    rules = [*node.pop("x-kubernetes-validations", []), *rules]
    unknown = {k for k in node if k not in _ALLOWED_KEYS and not k.startswith("x-kubernetes-")}
    if unknown:
        raise SchemaConversionError(
            f"{where}: no structural-schema equivalent for {sorted(unknown)}"
        )
    if "type" not in node and not node.get("x-kubernetes-preserve-unknown-fields"):
        raise SchemaConversionError(f"{where}: a structural schema needs a type")
    node = _ordered(node)
    if rules:
        node["x-kubernetes-validations"] = rules
    return node


def spec_schema() -> dict[str, Any]:
    """The structural schema of ``spec``, converted from :class:`GatewayAutoscalerSpec`."""
    raw = GatewayAutoscalerSpec.model_json_schema(
        by_alias=True, mode="validation", schema_generator=_CrdJsonSchema
    )
    defs = raw.pop("$defs", {})
    schema = _convert(raw, defs, where="spec")
    # The root is no $ref: its rules are added here.
    rules = _CEL_RULES.get(GatewayAutoscalerSpec.__name__, [])
    if rules:
        schema["x-kubernetes-validations"] = [*schema.get("x-kubernetes-validations", []), *rules]
    # The registry is read now: models registered after import (auto, mstl, ...) are included.
    model = schema["properties"]["forecast"]["properties"]["model"]
    model["enum"] = model_names()
    return schema


def _obj(description: str, properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "object", "description": description, **extra, "properties": properties}


def _num(description: str, **extra: Any) -> dict[str, Any]:
    return {"type": "number", "description": description, **extra}


def _nullable(node: dict[str, Any]) -> dict[str, Any]:
    """A field the operator writes as null while it is unknown (before the first fit)."""
    return {**node, "nullable": True}


def _int(description: str, **extra: Any) -> dict[str, Any]:
    return {"type": "integer", "format": "int32", "description": description, "minimum": 0, **extra}


def _time(description: str) -> dict[str, Any]:
    return {"type": "string", "format": "date-time", "description": description}


def _str(description: str, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "description": description, **extra}


def status_schema() -> dict[str, Any]:
    """The structural schema of ``status``, written by the operator (DESIGN.md, "status")."""
    condition = _obj(
        "A condition in the Kubernetes API conventions (metav1.Condition).",
        {
            "type": _str(
                f"Condition type: {', '.join(CONDITION_TYPES)}.", minLength=1, maxLength=316
            ),
            "status": _str("True, False or Unknown.", enum=["True", "False", "Unknown"]),
            "reason": _str(
                "CamelCase reason of the last transition, from the plan's decision.",
                maxLength=1024,
                pattern="^([A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?)?$",
            ),
            "message": _str("Human-readable detail; names the field or query at fault."),
            "lastTransitionTime": _time("When status last changed."),
            "observedGeneration": {
                "type": "integer",
                "format": "int64",
                "description": "metadata.generation the condition was computed from.",
                "minimum": 0,
            },
        },
        required=["type", "status"],
    )
    return _obj(
        "Observed state, written by the operator.",
        {
            "observedGeneration": {
                "type": "integer",
                "format": "int64",
                "description": "metadata.generation of the spec this status reflects.",
                "minimum": 0,
            },
            "load": _num("Current load, as returned by spec.load.query.", minimum=0),
            "forecast": _nullable(
                _obj(
                    "The latest forecast over spec.forecast.horizon; null until there is one.",
                    {
                        "peak": _nullable(
                            _num("Forecast peak load at the configured quantile.", minimum=0)
                        ),
                        "peakAt": _nullable(_time("When the forecast peak falls.")),
                        "model": _str(
                            "The model that produced the forecast (auto resolves to one)."
                        ),
                        "quantile": _num(
                            "The quantile of the forecast band used for the peak.",
                            minimum=0,
                            maximum=1,
                        ),
                        "fittedAt": _nullable(_time("When the model was last fitted.")),
                        "error": _nullable(
                            _num("Relative backtest error of the fitted model.", minimum=0)
                        ),
                    },
                )
            ),
            "desiredReplicas": _int("Total replicas the plan asks for (physical plus cloud)."),
            "physical": _obj(
                "The gateway on the physical pool.",
                {
                    "replicas": _int("Replicas planned on the physical pool."),
                    "capacity": _int("Replicas the physical pool's Ready nodes can hold."),
                },
            ),
            "cloud": _obj(
                "The gateway on the cloud pool.",
                {
                    "replicas": _int("Replicas planned on the cloud pool."),
                    "reserved": _int(
                        "Replicas' worth of cloud capacity held: the cloud gateways and the "
                        "placeholders together."
                    ),
                },
            ),
            "lastScaleTime": _time("When a Deployment's scale was last changed."),
            "conditions": {
                "type": "array",
                "description": f"Conditions: {', '.join(CONDITION_TYPES)}.",
                "items": condition,
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["type"],
            },
            "recommendations": {
                "type": "array",
                "description": (
                    "Recent recommendations that scale-down stabilisation still needs, oldest "
                    "first: planner state that must survive a restart, trimmed to its window."
                ),
                "maxItems": 1000,
                "items": _obj(
                    "One recommendation of the planner.",
                    {
                        "at": _time("When it was made."),
                        "replicas": _int("Total replicas it recommended."),
                    },
                    required=["at", "replicas"],
                ),
                "x-kubernetes-list-type": "atomic",
            },
        },
    )


def _printer_columns() -> list[dict[str, Any]]:
    def column(name: str, kind: str, path: str, description: str, **extra: Any) -> dict[str, Any]:
        return {"name": name, "type": kind, "jsonPath": path, "description": description, **extra}

    return [
        column("Region", "string", ".spec.region", "Region served"),
        column("Mode", "string", ".spec.mode", "Scale, ForecastOnly or Paused"),
        column("Load", "number", ".status.load", "Current load"),
        column("Forecast", "number", ".status.forecast.peak", "Forecast peak over the horizon"),
        column("Physical", "integer", ".status.physical.replicas", "Replicas on the physical pool"),
        column("Cloud", "integer", ".status.cloud.replicas", "Replicas on the cloud pool"),
        column(
            "Reserved",
            "integer",
            ".status.cloud.reserved",
            "Cloud capacity held by the cloud gateways and the placeholders",
            priority=1,
        ),
        column(
            "Ready",
            "string",
            '.status.conditions[?(@.type=="Ready")].status',
            "Ready condition",
            priority=1,
        ),
        column("Age", "date", ".metadata.creationTimestamp", "Age"),
    ]


def crd_manifest() -> dict[str, Any]:
    """The CustomResourceDefinition as a dict, ready to serialise."""
    schema = {
        "type": "object",
        "description": "Predictive scaling of one region's chat gateways across a physical "
        "and a cloud pool.",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec_schema(),
            "status": status_schema(),
        },
        "x-kubernetes-validations": _CEL_RULES[GatewayAutoscaler.__name__],
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{PLURAL}.{GROUP}",
            "labels": {"app.kubernetes.io/name": "tidal", "app.kubernetes.io/part-of": "tidal"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": [SHORT_NAME],
                "categories": ["tidal"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": copy.deepcopy(schema)},
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": _printer_columns(),
                }
            ],
        },
    }


def openapi_to_json_schema(node: dict[str, Any]) -> dict[str, Any]:
    """A CRD's OpenAPI v3.0 schema as JSON Schema 2020-12, to validate objects offline.

    What the API server would refuse, the result refuses too, except the CEL rules (dropped:
    they need a CEL evaluator) and formats (not asserted by default). Unknown fields are
    refused, as ``kubectl apply`` does with its default strict field validation.
    """
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key.startswith("x-kubernetes-") or key in {"nullable", "default", "description"}:
            continue
        if key == "properties":
            out[key] = {name: openapi_to_json_schema(sub) for name, sub in value.items()}
        elif key in {"items", "additionalProperties"} and isinstance(value, dict):
            out[key] = openapi_to_json_schema(value)
        elif key in {"exclusiveMinimum", "exclusiveMaximum"}:
            bound = "minimum" if key == "exclusiveMinimum" else "maximum"
            if value is True:
                out[key] = node[bound]
        elif key in {"minimum", "maximum"}:
            if node.get(f"exclusive{key.capitalize()}") is not True:
                out[key] = value
        else:
            out[key] = value
    if node.get("nullable"):
        out["type"] = [node["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    if (
        out.get("type") == "object"
        and "properties" in out
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


class _Dumper(yaml.SafeDumper):
    """Block-style YAML without aliases (the same list object is never written as ``*id001``)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def render_crd() -> str:
    """The CRD as YAML text: what ``tidal crd`` prints and ``manifests/base/crd.yaml`` holds."""
    header = "# Generated by `tidal crd` from controller/spec.py; do not edit by hand.\n"
    body = yaml.dump(
        crd_manifest(), Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=100
    )
    return header + str(body)


if __name__ == "__main__":
    print(render_crd(), end="")
