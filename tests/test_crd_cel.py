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
from controller.durations import parse_duration
from controller.spec import LoadSpec
from tests.test_crd import CEL_COUNTEREXAMPLES, MINIMAL_SPEC, STEP_DIVIDES_RULE, STEP_RULE

#: For each rule, an object it must admit (the counterexamples are in ``tests/test_crd.py``).
ADMITTED: dict[str, dict[str, Any]] = {
    "self.min <= self.max": {"min": 2, "max": 5},
    STEP_RULE: {"query": "q", "perReplica": 1, "step": "1m"},
    STEP_DIVIDES_RULE: {"query": "q", "perReplica": 1, "step": "15s"},
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
        "0.01m",
        "0m",
        "0h",
        "500ms400ms",
        "1s",
        "1000ms",
        "01000ms",
        "500ms500ms",
        "1.5s",
        "1.2s",
        "1.0001s",
        "7s",
        "15s",
        "45s",
        "90s",
        "1.5m",
        "1m",
        "2m",
        "2.5m",
        "4m59s",
        "5m",
        "5m0.5s",
        "7m",
        "1h",
        "1h30m",
        "9999h",
    ],
)
def test_the_step_rules_refuse_exactly_what_pydantic_refuses(step: str) -> None:
    """A step written as a Go duration is refused by the schema exactly when pydantic refuses it:
    below 1s, or below 5m without dividing it (the forecasts fit 5-minute means). The history
    is two steps, the least pydantic takes, so that it stays within MAX_DURATION."""
    value = {"query": "q", "perReplica": 1, "step": step}
    try:
        LoadSpec.model_validate({**value, "history": parse_duration(step) * 2})
        accepted = True
    except pydantic.ValidationError:
        accepted = False
    assert (admits(STEP_RULE, value) and admits(STEP_DIVIDES_RULE, value)) is accepted


@pytest.mark.parametrize("step", ["1d", "0.0001d", "1w", "123456s", "99999h"])
def test_a_step_cel_cannot_read_is_left_to_pydantic(step: str) -> None:
    """``d``, ``w`` and numbers of six digits or more are not Go durations CEL reads safely;
    a step past MAX_DURATION (ten years: 99999h) is pydantic's to refuse, as a history is."""
    value = {"query": "q", "perReplica": 1, "step": step}
    assert admits(STEP_RULE, value) and admits(STEP_DIVIDES_RULE, value)


def test_a_load_without_a_step_is_admitted() -> None:
    """The step has a default; a rule on an absent field must not fail the object."""
    assert admits(STEP_RULE, {"query": "q", "perReplica": 1})
    assert admits(STEP_DIVIDES_RULE, {"query": "q", "perReplica": 1})
