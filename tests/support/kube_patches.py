"""The three PATCH flavours of the Kubernetes API, for the API emulator.

kmock 0.8 applies every PATCH as a recursive dict merge whatever its ``Content-Type``, which
breaks on a JSON patch (a list of operations) and cannot delete list items. The official
Python client sends ``application/strategic-merge-patch+json`` for a dict body on built-in
resources, ``application/json-patch+json`` for a list body, and
``application/merge-patch+json`` on custom objects
(https://kubernetes.io/docs/reference/using-api/api-concepts/#patch-and-apply).

- :func:`merge_patch` is RFC 7386: dicts merge, ``null`` deletes, anything else replaces.
- :func:`strategic_merge_patch` adds what Deployments and Pods need: lists of dicts merge by
  their patch merge key (``containers`` by ``name``, ``conditions`` by ``type``...), ``finalizers``
  merge as a set, and the ``$patch: replace|delete`` directives. Other ``$`` directives
  (``$setElementOrder``, ``$retainKeys``) are accepted and ignored.
- :func:`json_patch` is RFC 6902 (add, remove, replace, move, copy, test).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

__all__ = ["PatchError", "json_patch", "merge_patch", "strategic_merge_patch"]

# Patch merge keys of the built-in types that an operator's patch plausibly touches
# (from the `x-kubernetes-patch-merge-key` markers of the Kubernetes OpenAPI schema).
MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "env": "name",
    "imagePullSecrets": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "ports": "containerPort",
    "conditions": "type",
    "ownerReferences": "uid",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
}
SET_LISTS = {"finalizers"}


class PatchError(ValueError):
    """A patch the API server would refuse (422 Unprocessable Entity)."""


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch; returns a new object."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge_patch(target: Any, patch: Any, *, field: str | None = None) -> Any:
    """A strategic merge patch, good enough for Deployments, Pods and Nodes."""
    if isinstance(patch, list):
        return _strategic_list(target, patch, field)
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if not k.startswith("$")}
    if directive == "delete":
        return None
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        if value is None:
            result.pop(key, None)
            continue
        merged = strategic_merge_patch(result.get(key), value, field=key)
        if merged is None:
            result.pop(key, None)
        else:
            result[key] = merged
    return result


def _strategic_list(target: Any, patch: list[Any], field: str | None) -> list[Any]:
    current = list(target) if isinstance(target, list) else []
    if field in SET_LISTS:
        return current + [item for item in patch if item not in current]
    merge_key = MERGE_KEYS.get(field or "")
    if merge_key is None or not all(isinstance(item, Mapping) for item in patch):
        return copy.deepcopy(patch)
    result = [copy.deepcopy(item) for item in current]
    for item in patch:
        if item.get("$patch") == "replace" and len(item) == 1:
            return []
        key = item.get(merge_key)
        index = next(
            (
                i
                for i, old in enumerate(result)
                if isinstance(old, Mapping) and old.get(merge_key) == key
            ),
            None,
        )
        if item.get("$patch") == "delete":
            if index is not None:
                del result[index]
        elif index is None:
            result.append(strategic_merge_patch(None, item))
        else:
            result[index] = strategic_merge_patch(result[index], item)
    return result


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"JSON pointer {path!r} must start with '/'")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _parent(doc: Any, parts: list[str], path: str) -> tuple[Any, str]:
    node = doc
    for part in parts[:-1]:
        try:
            node = node[int(part)] if isinstance(node, list) else node[part]
        except (KeyError, IndexError, ValueError, TypeError) as exc:
            raise PatchError(f"path {path!r} does not exist") from exc
    return node, parts[-1]


def _index(container: list[Any], token: str, path: str, *, insert: bool) -> int:
    if insert and token == "-":
        return len(container)
    try:
        index = int(token)
    except ValueError as exc:
        raise PatchError(f"{path!r}: {token!r} is not an array index") from exc
    limit = len(container) if insert else len(container) - 1
    if not 0 <= index <= limit:
        raise PatchError(f"{path!r}: index {index} is out of range")
    return index


def _get(doc: Any, path: str) -> Any:
    parts = _pointer(path)
    if not parts:
        return doc
    parent, token = _parent(doc, parts, path)
    if isinstance(parent, list):
        return parent[_index(parent, token, path, insert=False)]
    if not isinstance(parent, dict) or token not in parent:
        raise PatchError(f"path {path!r} does not exist")
    return parent[token]


def _add(doc: Any, path: str, value: Any) -> Any:
    parts = _pointer(path)
    if not parts:
        return value
    parent, token = _parent(doc, parts, path)
    if isinstance(parent, list):
        parent.insert(_index(parent, token, path, insert=True), value)
    elif isinstance(parent, dict):
        parent[token] = value
    else:
        raise PatchError(f"path {path!r}: the parent is not a container")
    return doc


def _remove(doc: Any, path: str) -> Any:
    parts = _pointer(path)
    if not parts:
        raise PatchError("cannot remove the whole document")
    parent, token = _parent(doc, parts, path)
    if isinstance(parent, list):
        del parent[_index(parent, token, path, insert=False)]
    elif isinstance(parent, dict) and token in parent:
        del parent[token]
    else:
        raise PatchError(f"path {path!r} does not exist")
    return doc


def json_patch(target: Any, operations: Any) -> Any:
    """RFC 6902 JSON patch; returns a new object, the target is left untouched."""
    if not isinstance(operations, list):
        raise PatchError("a JSON patch must be a list of operations")
    doc = copy.deepcopy(target)
    for operation in operations:
        if not isinstance(operation, Mapping) or "op" not in operation or "path" not in operation:
            raise PatchError(f"invalid JSON patch operation {operation!r}")
        op, path = operation["op"], operation["path"]
        if op == "add":
            doc = _add(doc, path, copy.deepcopy(operation.get("value")))
        elif op == "remove":
            doc = _remove(doc, path)
        elif op == "replace":
            _get(doc, path)  # must exist
            doc = _add(_remove(doc, path), path, copy.deepcopy(operation.get("value")))
        elif op in ("move", "copy"):
            value = copy.deepcopy(_get(doc, operation.get("from", "")))
            if op == "move":
                doc = _remove(doc, operation["from"])
            doc = _add(doc, path, value)
        elif op == "test":
            if _get(doc, path) != operation.get("value"):
                raise PatchError(f"test operation failed at {path!r}")
        else:
            raise PatchError(f"unknown JSON patch operation {op!r}")
    return doc
