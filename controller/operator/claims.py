"""Which GatewayAutoscaler scales a Deployment that two of them name.

Two objects sizing one Deployment would each write their own count on every loop, and the
Deployment would flip between them. The first one created keeps it (``creationTimestamp``,
then the name for two created in the same second): the rule needs nothing written anywhere,
gives the same answer on every replica and after every restart, and never moves a Deployment
from an object that was serving it to one created later. Every listed object claims the
Deployments its spec names, whatever its mode and even when its spec is otherwise invalid: a
claim is about the names a person wrote, and until one of the two objects names another
Deployment, the later one changes nothing.

Pure: objects in, claims out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["POOLS", "Claims", "deployment_claims"]

#: ``(namespace, deployment)`` to the name of the GatewayAutoscaler that scales it.
Claims = Mapping[tuple[str, str], str]
POOLS = ("physical", "cloud")


def _creation_order(obj: Mapping[str, Any]) -> tuple[bool, str, str]:
    meta = obj.get("metadata") or {}
    created = meta.get("creationTimestamp")
    # RFC 3339 text in UTC with second precision (the API's form) sorts as time does.
    return created is None, str(created or ""), str(meta.get("name") or "")


def deployment_claims(objects: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], str]:
    """Each Deployment a GatewayAutoscaler's spec names, and the first created that names it."""
    claims: dict[tuple[str, str], str] = {}
    for obj in sorted(objects, key=_creation_order):
        meta = obj.get("metadata") or {}
        spec = obj.get("spec")
        if not isinstance(spec, Mapping):
            continue
        for pool in POOLS:
            section = spec.get(pool)
            target = section.get("deployment") if isinstance(section, Mapping) else None
            if isinstance(target, str) and target:
                claims.setdefault((str(meta.get("namespace")), target), str(meta.get("name")))
    return claims
