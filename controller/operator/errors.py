"""The operator's own errors. Each says whether retrying can help; the edge decides once.

``transient`` failures (an API call that timed out, Prometheus down) are retried on the next
loop with the object's last good state held. Permanent ones (a bad spec, a missing Deployment)
need a human: they are reported in a condition and not retried faster than the loop.
Every error carries the condition ``reason`` it becomes, so the reason is never reconstructed
from the message.
"""

from __future__ import annotations

__all__ = [
    "ClusterUnavailable",
    "Conflict",
    "InvalidSpec",
    "KubeconfigInvalid",
    "OperatorError",
    "PhysicalCapacityUnknown",
    "PlaceholderConflict",
    "TargetConflict",
    "TargetMissing",
]


class OperatorError(Exception):
    """Base of the operator's errors: a condition ``reason`` and whether to retry."""

    reason: str = "Error"
    transient: bool = False


class InvalidSpec(OperatorError):
    """The object's spec fails validation; the message names the field."""

    reason = "InvalidSpec"


class TargetMissing(OperatorError):
    """A Deployment the spec names does not exist; the message names the field and the name."""

    reason = "TargetMissing"


class TargetConflict(OperatorError):
    """Another GatewayAutoscaler, created first, already scales a Deployment this spec names."""

    reason = "TargetConflict"


class PlaceholderConflict(OperatorError):
    """The placeholder Deployment's name is taken by an object this GatewayAutoscaler does not
    own: it is never patched."""

    reason = "PlaceholderConflict"


class PhysicalCapacityUnknown(OperatorError):
    """The physical pool's capacity cannot be computed (no requests on the gateway's pods)."""

    reason = "PhysicalCapacityUnknown"


class ClusterUnavailable(OperatorError):
    """The Kubernetes API failed in a way that may pass (timeouts, 5xx, 429)."""

    reason = "KubernetesUnavailable"
    transient = True


class Conflict(OperatorError):
    """The API refused a write made on a stale read (409): another writer got there first."""

    reason = "Conflict"
    transient = True


class KubeconfigInvalid(OperatorError):
    """No usable cluster configuration: the message names the flag or file at fault."""

    reason = "KubeconfigInvalid"
