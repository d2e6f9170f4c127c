"""Kubernetes label and field selectors, for the API emulator.

kmock 0.8 ignores ``labelSelector`` and ``fieldSelector`` on list and watch requests, so an
operator that lists "the nodes of the physical pool of eu-west" would see every node. This
module parses both selector languages the way the API server does, for
:mod:`tests.support.kube_emulator`.

Label selectors (https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/):
``k=v``, ``k==v``, ``k!=v``, ``k in (a,b)``, ``k notin (a,b)``, ``k``, ``!k``, and the
node-affinity style ``k>n``, ``k<n``. ``!=`` and ``notin`` match objects without the label, as
on a real server. Field selectors accept ``path=v``, ``path==v`` and ``path!=v`` on any dotted
path (``metadata.name``, ``spec.nodeName``, ``status.phase``, ``involvedObject.uid``); a missing
field reads as the empty string, so ``spec.nodeName=`` finds unscheduled pods.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["SelectorError", "parse_field_selector", "parse_label_selector"]

Predicate = Callable[[Mapping[str, Any]], bool]

_KEY = r"[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?"
_SET_RE = re.compile(rf"^\s*(?P<key>{_KEY})\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)\s*$")
_EXISTS_RE = re.compile(rf"^\s*(?P<neg>!?)\s*(?P<key>{_KEY})\s*$")
_CMP_RE = re.compile(rf"^\s*(?P<key>{_KEY})\s*(?P<op>==|!=|=|>|<)\s*(?P<value>[^=!<>]*?)\s*$")


class SelectorError(ValueError):
    """A selector that the API server would refuse with 400 Bad Request."""


def _split_requirements(text: str) -> list[str]:
    """Split at the commas that are not inside an ``in (...)`` value list."""
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise SelectorError(f"unbalanced ')' in selector {text!r}")
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    if depth:
        raise SelectorError(f"unbalanced '(' in selector {text!r}")
    parts.append("".join(current))
    return [part for part in parts if part.strip()]


def _labels(obj: Mapping[str, Any]) -> Mapping[str, str]:
    return (obj.get("metadata") or {}).get("labels") or {}


def _label_requirement(text: str) -> Predicate:
    if match := _SET_RE.match(text):
        key = match["key"]
        values = {value.strip() for value in match["values"].split(",") if value.strip()}
        if match["op"] == "in":
            return lambda obj: key in _labels(obj) and _labels(obj)[key] in values
        return lambda obj: key not in _labels(obj) or _labels(obj)[key] not in values
    if match := _CMP_RE.match(text):
        key, op, value = match["key"], match["op"], match["value"]
        if op in ("=", "=="):
            return lambda obj: _labels(obj).get(key) == value
        if op == "!=":
            return lambda obj: _labels(obj).get(key) != value
        try:
            bound = int(value)
        except ValueError as exc:
            raise SelectorError(f"{text!r}: '{op}' needs an integer") from exc
        return lambda obj: _numeric_label(obj, key, op, bound)
    if match := _EXISTS_RE.match(text):
        key = match["key"]
        if match["neg"]:
            return lambda obj: key not in _labels(obj)
        return lambda obj: key in _labels(obj)
    raise SelectorError(f"unable to parse requirement {text!r}")


def _numeric_label(obj: Mapping[str, Any], key: str, op: str, bound: int) -> bool:
    try:
        value = int(_labels(obj)[key])
    except (KeyError, ValueError):
        return False
    return value > bound if op == ">" else value < bound


def parse_label_selector(text: str | None) -> Predicate:
    """A predicate on an object's labels; an empty selector matches everything."""
    requirements = [_label_requirement(part) for part in _split_requirements(text or "")]
    return lambda obj: all(requirement(obj) for requirement in requirements)


def _field_value(obj: Mapping[str, Any], path: str) -> str:
    value: Any = obj
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return ""
        value = value[part]
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _field_requirement(text: str) -> Predicate:
    match = re.match(r"^\s*(?P<path>[A-Za-z0-9_.\-]+)\s*(?P<op>==|!=|=)\s*(?P<value>.*?)\s*$", text)
    if match is None:
        raise SelectorError(f"invalid field selector requirement {text!r}")
    path, op, value = match["path"], match["op"], match["value"]
    if op == "!=":
        return lambda obj: _field_value(obj, path) != value
    return lambda obj: _field_value(obj, path) == value


def parse_field_selector(text: str | None) -> Predicate:
    """A predicate on an object's fields; an empty selector matches everything."""
    requirements = [_field_requirement(part) for part in (text or "").split(",") if part.strip()]
    return lambda obj: all(requirement(obj) for requirement in requirements)
