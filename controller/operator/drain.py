"""Which cloud gateways a scale-down takes: those on the nodes that hold the fewest.

A ReplicaSet that scales down removes first the pods that are unscheduled, not running or not
ready; among the rest, those with the lowest ``controller.kubernetes.io/pod-deletion-cost``;
then those on the nodes that hold the most of its pods (kubernetes
``pkg/controller/controller_utils.go``, ``ActivePodsWithRanks``). Left to that last rule, the
gateways that stay are spread over every cloud node, and a node goes back only once Cluster
Autoscaler finds it under its utilization threshold, evicting the gateways still on it. The
planner prices a cloud node as paid only while it holds gateways or placeholders: for that to
hold, removing a node's worth of gateways must empty a node.

So before it scales the cloud Deployment down, the operator gives the gateways it would have go,
those on the nodes with the fewest of them, the lowest deletion cost. The ReplicaSet then
empties whole nodes, which Cluster Autoscaler gives back without evicting anyone. Pods the
ReplicaSet removes first anyway are counted and left unmarked. A mark left by an earlier pass
on a pod not chosen now is taken away, so that it does not go in a chosen one's place.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from controller.operator.capacity import is_gateway_pod

__all__ = ["DELETION_COST", "LOWEST_COST", "Marks", "marks_for_scale_down"]

#: The annotation a ReplicaSet reads when it chooses which pods to remove.
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
#: The lowest cost the annotation takes (an int32): nothing is removed after a pod marked so.
LOWEST_COST = str(-(2**31))


@dataclass(frozen=True)
class Marks:
    """The pods to give the lowest deletion cost, and those whose earlier mark to take away."""

    mark: tuple[str, ...] = ()
    unmark: tuple[str, ...] = ()


def _ready(pod: Mapping[str, Any]) -> bool:
    """Scheduled, running and ready: a pod the ReplicaSet ranks by cost and by node."""
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    return (
        bool(spec.get("nodeName"))
        and status.get("phase") == "Running"
        and any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in status.get("conditions") or []
        )
    )


def marks_for_scale_down(
    pods: Iterable[Mapping[str, Any]],
    *,
    namespace: str,
    selector: Mapping[str, Any],
    keep: int,
) -> Marks:
    """The marks that make a scale-down to ``keep`` gateways take those on the emptiest nodes.

    ``pods`` may hold any pods: the Deployment's are those in ``namespace`` that ``selector``
    matches (a selector without requirements matches none here, as in
    :mod:`~controller.operator.capacity`). Pods already terminating are neither counted nor
    marked. Among ready pods, the nodes holding the fewest of them come first, and a node's
    own pods go newest first; ties between nodes go by the node's name, so that a pass
    repeated marks the same pods.
    """
    gateways = [
        pod
        for pod in pods
        if is_gateway_pod(pod, namespace=namespace, selector=selector)
        and not (pod.get("metadata") or {}).get("deletionTimestamp")
    ]
    ready = [pod for pod in gateways if _ready(pod)]
    # The ReplicaSet removes the pods beyond ``keep``, those not ready first: of the ready
    # ones, all but ``keep`` go.
    left = max(0, len(ready) - keep)
    on_node = Counter(str(pod["spec"]["nodeName"]) for pod in ready)

    def newest_first(pod: Mapping[str, Any]) -> str:
        # RFC 3339 times in UTC sort as text; the inverse order comes from the sort below.
        return str((pod.get("metadata") or {}).get("creationTimestamp") or "")

    ready.sort(key=newest_first, reverse=True)
    ready.sort(key=lambda pod: (on_node[str(pod["spec"]["nodeName"])], pod["spec"]["nodeName"]))
    chosen = {str(pod["metadata"].get("name")) for pod in ready[:left]}

    def cost(pod: Mapping[str, Any]) -> Any:
        return ((pod.get("metadata") or {}).get("annotations") or {}).get(DELETION_COST)

    mark = tuple(
        sorted(str(pod["metadata"].get("name")) for pod in ready[:left] if cost(pod) != LOWEST_COST)
    )
    unmark = tuple(
        sorted(
            str(pod["metadata"].get("name"))
            for pod in gateways
            if cost(pod) == LOWEST_COST and str(pod["metadata"].get("name")) not in chosen
        )
    )
    return Marks(mark=mark, unmark=unmark)
