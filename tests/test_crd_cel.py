"""The CRD's CEL rules, compiled and evaluated by a CEL implementation (cel-python, whose
``matches`` is RE2, as the API server's is). No kube-apiserver runs here, so without this a
syntax slip in a rule, or a rule that disagrees with pydantic, would first show on a cluster,
as a CRD that does not apply or an object refused there and accepted here."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import celpy
import pydantic
import pytest

from controller import crd
from controller.spec import LoadSpec
from tests.test_crd import CEL_COUNTEREXAMPLES, MINIMAL_SPEC, STEP_RULE

#: For each rule, an object it must admit (the counterexamples are in ``tests/test_crd.py``).
ADMITTED: dict[str, dict[str, Any]] = {
    "self.min <= self.max": {"min": 2, "max": 5},
    STEP_RULE: {"query": "q", "perReplica": 1, "step": "1m"},
    "self.physical.deployment != self.cloud.deployment": MINIMAL_SPEC,
    "self.metadata.name.size() <= 63": {"metadata": {"name": "g" * 63}, "spec": MINIMAL_SPEC},
}


def _rules(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, str]]:
    for rule in node.get("x-kubernetes-validations", []):
        yield path or ".", rule["rule"]
    for name, sub in node.get("properties", {}).items():
        yield from _rules(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from _rules(node["items"], f"{path}[]")


RULES = list(_rules(crd.crd_manifest()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]))


def admits(rule: str, value: dict[str, Any]) -> bool:
    env = celpy.Environment()
    program = env.program(env.compile(rule))
    return bool(program.evaluate({"self": celpy.json_to_cel(value)}))


def test_every_rule_has_cases() -> None:
    """A new rule needs a counterexample and an admitted object here, or this fails."""
    assert sorted(rule for _path, rule in RULES) == sorted(CEL_COUNTEREXAMPLES)
    assert sorted(ADMITTED) == sorted(CEL_COUNTEREXAMPLES)


@pytest.mark.parametrize(("path", "rule"), RULES, ids=[path for path, _rule in RULES])
def test_each_rule_compiles_refuses_its_counterexample_and_admits_a_valid_object(
    path: str, rule: str
) -> None:
    _model, counterexample = CEL_COUNTEREXAMPLES[rule]
    assert not admits(rule, counterexample)
    assert admits(rule, ADMITTED[rule])


@pytest.mark.parametrize(
    "step",
    [
        "10ms",
        "999ms",
        "0999ms",
        "999.9ms",
        "0.5s",
        "00.25s",
        "1s",
        "1000ms",
        "01000ms",
        "1.5s",
        "15s",
        "1m",
    ],
)
def test_the_step_rule_refuses_what_pydantic_refuses_as_under_a_second(step: str) -> None:
    """The schema refuses a step under 1s exactly when pydantic does (these all divide 5m)."""
    value = {"query": "q", "perReplica": 1, "step": step}
    try:
        LoadSpec.model_validate({**value, "history": "1h"})
        accepted = True
    except pydantic.ValidationError:
        accepted = False
    assert admits(STEP_RULE, value) is accepted


def test_a_load_without_a_step_is_admitted() -> None:
    """The step has a default; a rule on an absent field must not fail the object."""
    assert admits(STEP_RULE, {"query": "q", "perReplica": 1})
