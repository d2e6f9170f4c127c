"""Which cloud pods a scale-down takes: those on the nodes that hold the fewest.

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

The placeholder Deployment is shrunk by the same rule, and together with the gateways: a node
is paid for while it holds gateways or placeholders, so nodes are ranked by all of the region's
cloud pods on them (a node with two gateways and eight placeholders is not nearly empty), and a
pass that shrinks both takes both from the same emptiest nodes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from controller.operator.capacity import is_gateway_pod

__all__ = ["DELETION_COST", "LOWEST_COST", "Marks", "marks_for_scale_down", "marks_for_scale_downs"]

#: The annotation a ReplicaSet reads when it chooses which pods to remove.
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
#: The lowest cost the annotation takes (an int32): nothing is removed after a pod marked so.
LOWEST_COST = str(-(2**31))


@dataclass(frozen=True)
class Marks:
    """The pods to give the lowest deletion cost, and those whose earlier mark to take away;
    ``going`` names every ready pod the scale-down takes, marked now or before."""

    mark: tuple[str, ...] = ()
    unmark: tuple[str, ...] = ()
    going: tuple[str, ...] = ()


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
    sharing: Mapping[str, Any] | None = None,
) -> Marks:
    """The marks that make a scale-down to ``keep`` pods take those on the emptiest nodes.

    ``sharing`` selects the pods of another Deployment that keep the same nodes paid for and
    stay: they count towards how full a node is, and are never marked. The rest is
    :func:`marks_for_scale_downs`, for one Deployment.
    """
    shrinking: list[tuple[Mapping[str, Any], int | None]] = [(selector, keep)]
    if sharing is not None:
        shrinking.append((sharing, None))
    return marks_for_scale_downs(pods, namespace=namespace, shrinking=shrinking)[0]


def marks_for_scale_downs(
    pods: Iterable[Mapping[str, Any]],
    *,
    namespace: str,
    shrinking: Sequence[tuple[Mapping[str, Any], int | None]],
) -> tuple[Marks, ...]:
    """The marks that make Deployments sharing the cloud nodes, each scaled down to its
    ``keep``, take their pods from the emptiest nodes; one :class:`Marks` per Deployment.

    ``shrinking`` gives each Deployment's selector and the pods it keeps (None: it does not
    shrink, but its pods fill their nodes). ``pods`` may hold any pods: a Deployment's are those
    in ``namespace`` that its selector matches, the first that does (a selector without
    requirements matches none here, as in :mod:`~controller.operator.capacity`). Pods already
    terminating are neither counted nor marked; pods not ready go first anyway, so they are
    counted against ``keep`` and not marked. The ready pods of every Deployment fill their
    nodes, and the nodes holding the fewest come first: each node whose pods the scale-downs
    can all take goes whole, and what they still have to give comes from the nodes left, in
    the same order, a node's newest pods first. Ties between nodes go by the node's name, so
    that a pass repeated marks the same pods.
    """
    live = [pod for pod in pods if not (pod.get("metadata") or {}).get("deletionTimestamp")]
    owned: list[list[Mapping[str, Any]]] = [[] for _ in shrinking]
    for pod in live:
        for index, (selector, _keep) in enumerate(shrinking):
            if is_gateway_pod(pod, namespace=namespace, selector=selector):
                owned[index].append(pod)
                break
    ready = [[pod for pod in pods_of if _ready(pod)] for pods_of in owned]
    # Each ReplicaSet removes the pods beyond ``keep``, those not ready first: of the ready
    # ones, all but ``keep`` go.
    left = [
        0 if keep is None else max(0, len(ready_of) - keep)
        for (_selector, keep), ready_of in zip(shrinking, ready, strict=True)
    ]
    ranked = [(index, pod) for index, ready_of in enumerate(ready) for pod in ready_of]
    on_node = Counter(_node(pod) for _index, pod in ranked)

    def newest_first(entry: tuple[int, Mapping[str, Any]]) -> str:
        # RFC 3339 times in UTC sort as text; the inverse order comes from the sort below.
        return str((entry[1].get("metadata") or {}).get("creationTimestamp") or "")

    ranked.sort(key=newest_first, reverse=True)
    ranked.sort(key=lambda entry: (on_node[_node(entry[1])], _node(entry[1])))
    by_node: dict[str, list[tuple[int, Mapping[str, Any]]]] = {}
    for index, pod in ranked:
        by_node.setdefault(_node(pod), []).append((index, pod))
    going: list[list[Mapping[str, Any]]] = [[] for _ in shrinking]
    # First the nodes the scale-downs can empty whole, fewest pods first; then, with what they
    # still have to give, the nodes left, in the same order, a node's newest pods first.
    for whole in (True, False):
        for node, node_pods in list(by_node.items()):
            need = Counter(index for index, _pod in node_pods)
            if whole and any(count > left[index] for index, count in need.items()):
                continue
            for index, pod in node_pods:
                if left[index] > 0:
                    going[index].append(pod)
                    left[index] -= 1
            del by_node[node]
    return tuple(
        _marks(owned_of, going_of) for owned_of, going_of in zip(owned, going, strict=True)
    )


def _node(pod: Mapping[str, Any]) -> str:
    return str(pod["spec"]["nodeName"])


def _name(pod: Mapping[str, Any]) -> str:
    return str(pod["metadata"].get("name"))


def _marks(owned: Iterable[Mapping[str, Any]], going: Iterable[Mapping[str, Any]]) -> Marks:
    """The patches that leave exactly ``going`` of ``owned`` with the lowest cost."""

    def cost(pod: Mapping[str, Any]) -> Any:
        return ((pod.get("metadata") or {}).get("annotations") or {}).get(DELETION_COST)

    names = {_name(pod) for pod in going}
    return Marks(
        mark=tuple(sorted(_name(pod) for pod in going if cost(pod) != LOWEST_COST)),
        unmark=tuple(
            sorted(
                _name(pod) for pod in owned if cost(pod) == LOWEST_COST and _name(pod) not in names
            )
        ),
        going=tuple(sorted(names)),
    )
