"""Which GatewayAutoscaler scales a Deployment that two of them name.

Two objects sizing one Deployment would each write their own count on every loop, and the
Deployment would flip between them. The first one created keeps it (``creationTimestamp``,
then the name for two created in the same second): the rule needs nothing written anywhere,
gives the same answer on every replica and after every restart, and never moves a Deployment
from an object that was serving it to one created later.

Only an object that could write a Deployment claims one: a valid spec (its name included) in
mode ``Scale`` or ``Paused`` (paused means "leave it as it is", which another object would
not). A ``ForecastOnly`` object writes nothing, so it neither claims nor is refused, and a shadow
object can forecast a Deployment another one scales; an invalid object claims nothing until it
is fixed. One consequence: editing an older object to name a Deployment a newer one serves
moves that Deployment to the older one at its next pass, and the newer one says so
(``TargetConflict``).

Pure: objects in, claims out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from controller.spec import GatewayAutoscalerSpec, Mode, name_problem

__all__ = ["POOLS", "Claims", "deployment_claims"]

#: ``(namespace, deployment)`` to the name of the GatewayAutoscaler that scales it.
Claims = Mapping[tuple[str, str], str]
POOLS = ("physical", "cloud")


def _creation_order(obj: Mapping[str, Any]) -> tuple[bool, str, str]:
    meta = obj.get("metadata") or {}
    created = meta.get("creationTimestamp")
    # RFC 3339 text in UTC with second precision (the API's form) sorts as time does.
    return created is None, str(created or ""), str(meta.get("name") or "")


def _writer_spec(obj: Mapping[str, Any]) -> GatewayAutoscalerSpec | None:
    """The object's spec when it is valid and its mode could write a Deployment, else None."""
    meta = obj.get("metadata") or {}
    if name_problem(str(meta.get("name") or "")) is not None:
        return None
    try:
        spec = GatewayAutoscalerSpec.model_validate(obj.get("spec") or {})
    except (ValueError, ArithmeticError):  # a ValidationError is a ValueError
        # Claims are read for every object before any is reconciled: an object whose spec
        # cannot be read claims nothing, and its own reconcile says why. Whatever the
        # validation raises (an OverflowError a validator let through, say), it must not stop
        # the pass for the others.
        return None
    return None if spec.mode is Mode.FORECAST_ONLY else spec


def deployment_claims(objects: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], str]:
    """Each Deployment a writing GatewayAutoscaler names, and the first created that names it."""
    claims: dict[tuple[str, str], str] = {}
    for obj in sorted(objects, key=_creation_order):
        spec = _writer_spec(obj)
        if spec is None:
            continue
        meta = obj.get("metadata") or {}
        for pool in POOLS:
            target = str(getattr(spec, pool).deployment)
            claims.setdefault((str(meta.get("namespace")), target), str(meta.get("name")))
    return claims
