"""Physical capacity from the cluster's nodes and pods, as plain API dicts in, a count out.

Pure functions over the JSON the API server returns, so that they are table-tested without a
cluster. The rule (issue 4): over the nodes that match the physical ``nodeSelector``, that the
gateway's pods may go to (their own node selector and required node affinity), and are Ready
and schedulable, the sum of ``floor((allocatable - requests of other pods) / gateway pod
requests)``, the minimum over cpu, memory and the pod count. The gateway's own pods are not
"other": the room they use is room the gateway has.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from kubernetes.utils import parse_quantity

__all__ = [
    "PLACEHOLDER_LABEL",
    "RESOURCES",
    "bound_port",
    "container_requests_text",
    "effective_requests",
    "gateway_pod_requests",
    "is_gateway_pod",
    "matches_labels",
    "matches_selector",
    "node_admits",
    "node_is_schedulable",
    "physical_capacity",
    "pod_requests",
    "quantity",
    "term_covers",
    "tolerates",
]

Obj = Mapping[str, Any]
#: The label of Tidal's placeholder pods (its value names their GatewayAutoscaler).
PLACEHOLDER_LABEL = "tidal.dev/placeholder-for"
#: The resources capacity is computed over; the pod count is handled beside them.
RESOURCES = ("cpu", "memory")
_TERMINATED = frozenset({"Succeeded", "Failed"})
_OPERATORS = "In, NotIn, Exists, DoesNotExist"


def quantity(value: object) -> Decimal:
    """A Kubernetes quantity (``250m``, ``1Gi``, ``2``) as a Decimal (ValueError if bad)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return Decimal(str(value))
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a Kubernetes quantity")
    return Decimal(parse_quantity(value))  # type: ignore[no-untyped-call]


def matches_labels(labels: Mapping[str, str] | None, selector: Mapping[str, str]) -> bool:
    """Equality selector: every key of ``selector`` has that value in ``labels``."""
    labels = labels or {}
    return all(labels.get(key) == value for key, value in selector.items())


def matches_selector(labels: Mapping[str, str] | None, selector: Mapping[str, Any]) -> bool:
    """A ``metav1.LabelSelector``: every ``matchLabels`` pair and every ``matchExpressions``
    requirement holds (``In``, ``NotIn``, ``Exists``, ``DoesNotExist``).

    As on the API server, ``NotIn`` and ``DoesNotExist`` match objects without the key, and an
    empty selector matches everything. An unknown operator raises ValueError: the API server
    refuses such a selector, so guessing would only hide a bad object.
    """
    labels = labels or {}
    if not matches_labels(labels, selector.get("matchLabels") or {}):
        return False
    for requirement in selector.get("matchExpressions") or []:
        key, operator = requirement.get("key"), requirement.get("operator")
        values = set(requirement.get("values") or ())
        if operator == "In":
            held = key in labels and labels[key] in values
        elif operator == "NotIn":
            held = key not in labels or labels[key] not in values
        elif operator == "Exists":
            held = key in labels
        elif operator == "DoesNotExist":
            held = key not in labels
        else:
            raise ValueError(f"selector operator {operator!r} is none of {_OPERATORS}")
        if not held:
            return False
    return True


def tolerates(tolerations: Iterable[Obj], taint: Obj) -> bool:
    """Whether any toleration matches the taint (``v1.Toleration.ToleratesTaint``).

    ``Exists`` matches any value, ``Equal`` (the default) the taint's own. Any other operator
    (the alpha ``Gt`` and ``Lt``, or a typo) tolerates nothing here: a node is then counted as
    no room, never as room the scheduler may refuse.
    """
    for toleration in tolerations:
        effect = toleration.get("effect")
        if effect and effect != taint.get("effect"):
            continue
        operator = toleration.get("operator", "Equal")
        key = toleration.get("key")
        if not key:
            if operator == "Exists":
                return True
            continue
        if key != taint.get("key"):
            continue
        if operator == "Exists":
            return True
        if operator in ("", "Equal") and toleration.get("value", "") == taint.get("value", ""):
            return True
    return False


def node_is_schedulable(node: Obj, tolerations: Iterable[Obj] = ()) -> bool:
    """Ready, not cordoned, and no NoSchedule/NoExecute taint the gateway does not tolerate."""
    spec = node.get("spec") or {}
    if spec.get("unschedulable"):
        return False
    conditions = (node.get("status") or {}).get("conditions") or []
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    if not ready:
        return False
    tolerations = list(tolerations)
    for taint in spec.get("taints") or []:
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not tolerates(tolerations, taint):
            return False
    return True


def node_admits(node: Obj, pod_spec: Mapping[str, Any]) -> bool:
    """Whether the scheduler may place a pod of ``pod_spec`` on ``node`` by its labels: the
    pod's ``nodeSelector``, and its required node affinity (any of its ``nodeSelectorTerms``,
    each with all of its ``matchExpressions`` and ``matchFields``).

    A node that the gateway's own pods cannot go to is no room for them, whatever
    ``physical.nodeSelector`` says (an empty one, the default, matches every node). An unknown
    operator raises ValueError, as :func:`matches_selector` does.
    """
    meta = node.get("metadata") or {}
    labels = meta.get("labels") or {}
    if not matches_labels(labels, pod_spec.get("nodeSelector") or {}):
        return False
    required = ((pod_spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    )
    if not required:
        return True
    fields = {"metadata.name": str(meta.get("name", ""))}
    return any(
        (term.get("matchExpressions") or term.get("matchFields"))
        and all(_node_requirement(labels, r) for r in term.get("matchExpressions") or [])
        and all(_node_requirement(fields, r) for r in term.get("matchFields") or [])
        for term in required.get("nodeSelectorTerms") or []
    )


def _node_requirement(labels: Mapping[str, str], requirement: Mapping[str, Any]) -> bool:
    """One ``NodeSelectorRequirement``: a label selector's operators, and ``Gt``/``Lt``, which
    compare the label as an integer (a label that is none matches neither)."""
    operator = requirement.get("operator")
    if operator not in ("Gt", "Lt"):
        return matches_selector(labels, {"matchExpressions": [requirement]})
    key, values = str(requirement.get("key")), list(requirement.get("values") or [])
    have = _int64(labels.get(key))
    bound = _int64(values[0]) if values else None
    if have is None or bound is None:
        return False
    return have > bound if operator == "Gt" else have < bound


_INTEGER = re.compile(r"[+-]?[0-9]+")


def _int64(text: object) -> int | None:
    """``text`` as the scheduler reads a ``Gt``/``Lt`` operand (Go's ``ParseInt(text, 10,
    64)``): decimal digits with an optional sign, within int64; otherwise None, which matches
    neither. Python's ``int`` also takes ``1_0``, spaces and any size."""
    if not isinstance(text, str) or not _INTEGER.fullmatch(text):
        return None
    value = int(text)
    return value if -(2**63) <= value < 2**63 else None


def effective_requests(pod_spec: Mapping[str, Any]) -> dict[str, Decimal]:
    """What the scheduler reserves on a node for one pod of ``pod_spec``, per resource named.

    The running containers add up: the app containers and the restartable init containers
    (``restartPolicy: Always``, sidecars), which keep running. Each other init container runs
    alone, beside the sidecars started before it. The pod asks for the larger of the two. A
    container's limit stands for a request it leaves out, as the API server defaults a pod's
    (not a Deployment template's). Pod overhead, which admission adds from the RuntimeClass,
    is not counted.

    Pod-level resources (``spec.resources``: Kubernetes 1.32+, beta and on by default from
    1.34) take the place of the containers' total for what a pod may name there (cpu and
    memory, and hugepages where the cluster allows them): the pod reserves its pod-level
    request, the containers' fitting inside it. A pod-level limit stands for a pod-level
    request left out, as the API server defaults a pod's (below).
    """
    running: dict[str, Decimal] = {}
    for container in pod_spec.get("containers") or []:
        _add_to(running, _container_requests(container))
    sidecars: dict[str, Decimal] = {}
    init: dict[str, Decimal] = {}
    for container in pod_spec.get("initContainers") or []:
        own = _container_requests(container)
        if container.get("restartPolicy") == "Always":
            _add_to(running, own)
            _add_to(sidecars, own)
            _max_to(init, sidecars)
        else:
            _max_to(init, _add_to(dict(sidecars), own))
    total = _max_to(running, init)
    resources = pod_spec.get("resources") or {}
    requests = resources.get("requests") or {}
    for key, value in (resources.get("limits") or {}).items():
        # The API server defaults a missing pod-level request of cpu or memory to the
        # containers' total when they name it, else to the pod-level limit; of hugepages,
        # which are never overcommitted, to the pod-level limit.
        hugepages = key.startswith("hugepages-")
        if _pod_level(key) and key not in requests and (hugepages or key not in total):
            total[key] = quantity(value)
    for key, value in requests.items():
        if _pod_level(key):
            total[key] = quantity(value)
    return total


def _pod_level(resource: str) -> bool:
    """Whether a pod may name ``resource`` at pod level: cpu, memory and hugepages."""
    return resource in RESOURCES or resource.startswith("hugepages-")


def container_requests_text(container: Mapping[str, Any]) -> dict[str, object]:
    """A container's requests as written, its limits standing for the requests it leaves out."""
    resources = container.get("resources") or {}
    return {**(resources.get("limits") or {}), **(resources.get("requests") or {})}


def _container_requests(container: Mapping[str, Any]) -> dict[str, Decimal]:
    return {key: quantity(value) for key, value in container_requests_text(container).items()}


def _add_to(total: dict[str, Decimal], more: Mapping[str, Decimal]) -> dict[str, Decimal]:
    for key, value in more.items():
        total[key] = total.get(key, Decimal(0)) + value
    return total


def _max_to(peak: dict[str, Decimal], other: Mapping[str, Decimal]) -> dict[str, Decimal]:
    for key, value in other.items():
        peak[key] = max(peak.get(key, value), value)
    return peak


def pod_requests(pod_spec: Obj) -> dict[str, Decimal]:
    """The cpu and memory one pod of ``pod_spec`` reserves (:func:`effective_requests`)."""
    requests = effective_requests(pod_spec)
    return {name: requests.get(name, Decimal(0)) for name in RESOURCES}


def gateway_pod_requests(deployment: Obj) -> dict[str, Decimal]:
    """Requests of one pod of a Deployment's template."""
    template = ((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}
    return pod_requests(template)


def is_gateway_pod(pod: Obj, *, namespace: str, selector: Mapping[str, Any]) -> bool:
    """Whether the Deployment's selector claims the pod, as its ReplicaSets do.

    The snapshot holds no ReplicaSets to follow ``ownerReferences`` through, and the API server
    requires a Deployment's selector to match its template, so the selector is the ownership.
    A selector with no requirement at all owns nothing here (not everything, as the API reads
    it): counting a pod as "other" can only make the capacity smaller.
    """
    meta = pod.get("metadata") or {}
    return (
        bool(selector.get("matchLabels") or selector.get("matchExpressions"))
        and meta.get("namespace") == namespace
        and matches_selector(meta.get("labels"), selector)
    )


def selector_misses_running_gateways(
    nodes: Iterable[Obj], pods: Iterable[Obj], *, node_selector: Mapping[str, str], gateway: Obj
) -> str | None:
    """Why ``node_selector`` cannot be the physical pool's, or None: no node has its labels,
    yet the physical gateway's pods run on nodes (a typo in a label, not a pool gone).

    A pool whose nodes are all gone takes its gateways with it, and its capacity is then 0
    indeed; a selector that names no node while the gateways run would drain a healthy pool.
    """
    nodes = list(nodes)
    if not node_selector or any(
        matches_labels((node.get("metadata") or {}).get("labels"), node_selector) for node in nodes
    ):
        return None
    spec = gateway.get("spec") or {}
    namespace = (gateway.get("metadata") or {}).get("namespace", "")
    selector = spec.get("selector") or {}
    hosts = sorted(
        {
            str((pod.get("spec") or {}).get("nodeName"))
            for pod in pods
            if (pod.get("spec") or {}).get("nodeName")
            and (pod.get("status") or {}).get("phase") == "Running"
            and is_gateway_pod(pod, namespace=namespace, selector=selector)
        }
    )
    if not hosts:
        return None
    shown = ", ".join(hosts[:3]) + (f" and {len(hosts) - 3} more" if len(hosts) > 3 else "")
    labels = ", ".join(f"{key}={value}" for key, value in sorted(node_selector.items()))
    return (
        f"no node has the labels {labels}, yet the physical gateway runs on {shown}: the "
        "pool's capacity is not taken as 0 and nothing is changed until the selector names "
        "its nodes"
    )


def physical_capacity(
    nodes: Iterable[Obj],
    pods: Iterable[Obj],
    *,
    node_selector: Mapping[str, str],
    gateway: Obj,
    max_replicas: int | None = None,
) -> int:
    """Gateway replicas the physical pool holds; raises ValueError when it cannot be known.

    ``gateway`` is the physical Deployment: its pod template gives the requests, the nodes its
    pods may go to (:func:`node_admits`) and the taints they tolerate; its ``spec.selector``
    (``matchLabels`` and ``matchExpressions``) and namespace tell its own pods apart. Required
    pod affinity and anti-affinity count as the scheduler counts them (:func:`_inter_pod`):
    a term keeping the gateway's pods apart (one per node, or per zone) lets each domain hold
    one of them at most. A host port (``hostPort``) lets each node hold one, and none where
    another pod holds that port.
    """
    nodes, pods = list(nodes), list(pods)
    spec = gateway.get("spec") or {}
    namespace = (gateway.get("metadata") or {}).get("namespace", "")
    selector = spec.get("selector") or {}
    template = (spec.get("template") or {}).get("spec") or {}
    tolerations = template.get("tolerations") or []
    per_pod = pod_requests(template)
    if not any(per_pod.values()):
        if max_replicas is not None:
            return max_replicas
        raise ValueError(
            "the gateway's pod template requests neither cpu nor memory, so the physical "
            "pool's capacity cannot be computed; set requests or spec.physical.maxReplicas"
        )
    eligible: dict[str, Obj] = {
        str((node.get("metadata") or {}).get("name")): node
        for node in nodes
        if matches_labels((node.get("metadata") or {}).get("labels"), node_selector)
        and node_admits(node, template)
        and node_is_schedulable(node, tolerations)
    }
    used: dict[str, dict[str, Decimal]] = {
        name: dict.fromkeys(RESOURCES, Decimal(0)) for name in eligible
    }
    pod_counts = dict.fromkeys(eligible, 0)
    for pod in pods:
        node_name = str((pod.get("spec") or {}).get("nodeName"))
        if node_name not in eligible:
            continue
        if (pod.get("status") or {}).get("phase") in _TERMINATED:
            continue
        if is_gateway_pod(pod, namespace=namespace, selector=selector):
            continue
        pod_counts[node_name] += 1
        for name, value in pod_requests(pod.get("spec") or {}).items():
            used[node_name][name] += value
    room: dict[str, int] = {}
    for name, node in eligible.items():
        allocatable = (node.get("status") or {}).get("allocatable") or {}
        fits = math.inf
        for resource in RESOURCES:
            need = per_pod[resource]
            if not need:
                continue
            free = quantity(allocatable.get(resource, 0)) - used[name][resource]
            fits = min(fits, max(0, math.floor(free / need)))
        if "pods" in allocatable:
            fits = min(fits, max(0, int(quantity(allocatable["pods"])) - pod_counts[name]))
        room[name] = int(fits)
    wanted = _host_ports(template)
    if wanted:
        _one_per_node_on_host_ports(room, wanted, pods, namespace=namespace, selector=selector)
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    _inter_pod(
        room, nodes, pods, template=template, labels=labels, namespace=namespace, selector=selector
    )
    total = sum(room.values())
    if max_replicas is not None:
        total = min(total, max_replicas)
    return total


def term_covers(term: Mapping[str, Any], own: str, namespace: str) -> bool:
    """Whether a pod (anti-)affinity term of a pod in namespace ``own`` selects pods in
    ``namespace``: the union of those ``namespaces`` lists and those ``namespaceSelector``
    matches (every namespace when it is empty), or ``own`` when the term has neither.

    Namespaces' labels are not read here: a labelled ``namespaceSelector`` adds none, so a
    pod it would select in an unlisted namespace is not counted."""
    listed = term.get("namespaces") or []
    chooser = term.get("namespaceSelector")
    if namespace in listed:
        return True
    if chooser is not None:
        return not (chooser.get("matchLabels") or chooser.get("matchExpressions"))
    return not listed and namespace == own


def _inter_pod(
    room: dict[str, int],
    nodes: list[Obj],
    pods: list[Obj],
    *,
    template: Mapping[str, Any],
    labels: Mapping[str, str],
    namespace: str,
    selector: Mapping[str, Any],
) -> None:
    """Apply the scheduler's InterPodAffinity filter to ``room`` (the eligible nodes' free
    slots, in order), in place. Only required terms; ``nodes`` are all of the cluster's, so a
    pod on a node outside the pool still counts in its domain (the nodes sharing the value of
    the term's ``topologyKey``).

    - The gateway's pod anti-affinity: no room in a domain holding a pod the term selects
      other than the gateway's own; a term that selects the gateway's own pods lets each
      domain hold one (its first node with room takes it; a gateway pod already there is
      that one). A node without the topology label is in no domain: the term does not hold
      there.
    - Other pods' anti-affinity that selects the gateway's pods: no room in their domains.
    - The gateway's pod affinity: room only in the domains holding a pod the term selects. A
      term over the gateway's own pods, none of them placed, lets the first go anywhere and
      the rest follow it: the room of the one domain with most.

    Tidal's placeholder pods count for none of these: they carry the cloud gateway's terms,
    and the scheduler preempts them for a gateway.

    With two terms whose domains do not nest, this can count fewer than fit, never more.
    """
    node_labels: dict[str, Mapping[str, str]] = {
        str((node.get("metadata") or {}).get("name")): (node.get("metadata") or {}).get("labels")
        or {}
        for node in nodes
    }
    placed: list[tuple[Obj, Mapping[str, str]]] = []
    for pod in pods:
        where = node_labels.get(str((pod.get("spec") or {}).get("nodeName")))
        if where is None or (pod.get("status") or {}).get("phase") in _TERMINATED:
            continue
        if PLACEHOLDER_LABEL in ((pod.get("metadata") or {}).get("labels") or {}):
            continue  # the lowest priority: the scheduler preempts it for a gateway
        placed.append((pod, where))

    def required(affinity: Any, kind: str) -> list[Obj]:
        terms = ((affinity or {}).get(kind) or {}).get(
            "requiredDuringSchedulingIgnoredDuringExecution"
        ) or []
        # A nil label selector selects no pod; an empty one selects every pod.
        return [t for t in terms if t.get("labelSelector") is not None and t.get("topologyKey")]

    def selects_gateway(term: Obj, own: str) -> bool:
        return term_covers(term, own, namespace) and matches_selector(labels, term["labelSelector"])

    def domains(term: Obj, *, own_too: bool) -> set[str]:
        key = term["topologyKey"]
        found = set()
        for pod, where in placed:
            meta = pod.get("metadata") or {}
            if key not in where or not term_covers(term, namespace, str(meta.get("namespace"))):
                continue
            if not own_too and is_gateway_pod(pod, namespace=namespace, selector=selector):
                continue
            if matches_selector(meta.get("labels"), term["labelSelector"]):
                found.add(where[key])
        return found

    def shut(key: str, values: set[str]) -> None:
        for name in room:
            if node_labels[name].get(key) in values:
                room[name] = 0

    affinity = template.get("affinity")
    apart = required(affinity, "podAntiAffinity")
    for term in apart:
        shut(term["topologyKey"], domains(term, own_too=False))
    for pod, where in placed:
        if is_gateway_pod(pod, namespace=namespace, selector=selector):
            continue  # its terms are the template's, read above
        own = str((pod.get("metadata") or {}).get("namespace"))
        for term in required((pod.get("spec") or {}).get("affinity"), "podAntiAffinity"):
            if term["topologyKey"] in where and selects_gateway(term, own):
                shut(term["topologyKey"], {where[term["topologyKey"]]})
    for term in required(affinity, "podAffinity"):
        key = term["topologyKey"]
        near = domains(term, own_too=True)
        if not near and selects_gateway(term, namespace):
            totals: dict[str, int] = {}
            for name, slots in room.items():
                if key in node_labels[name]:
                    value = node_labels[name][key]
                    totals[value] = totals.get(value, 0) + slots
            if totals:
                near = {max(totals, key=lambda value: totals[value])}
        for name in room:
            if node_labels[name].get(key) not in near:
                room[name] = 0
    for term in apart:
        if not selects_gateway(term, namespace):
            continue
        key, taken = term["topologyKey"], set()
        for name in room:
            if key not in node_labels[name]:
                continue
            if node_labels[name][key] in taken:
                room[name] = 0
            elif room[name] > 0:
                room[name] = 1
                taken.add(node_labels[name][key])


def _host_ports(pod_spec: Mapping[str, Any]) -> set[tuple[str, str, int]]:
    """(host IP, protocol, port) of each port the pod binds on the node, as the scheduler's
    NodePorts filter reads them: its app containers' and sidecars' (init containers that
    run throughout). No IP is every IP. A ``hostNetwork`` pod binds each container port: the
    API server sets ``hostPort`` so in a pod, but not in a Deployment's template."""
    containers = [
        *(pod_spec.get("containers") or []),
        *(c for c in pod_spec.get("initContainers") or [] if c.get("restartPolicy") == "Always"),
    ]
    host_network = bool(pod_spec.get("hostNetwork"))
    bound = set()
    for container in containers:
        for port in container.get("ports") or []:
            host = bound_port(port, host_network=host_network)
            if host:
                ip = str(port.get("hostIP") or "0.0.0.0")
                bound.add((ip, str(port.get("protocol") or "TCP"), int(host)))
    return bound


def bound_port(port: Mapping[str, Any], *, host_network: bool) -> Any:
    """The node port a container port binds, or None: its ``hostPort``, and with
    ``hostNetwork`` its ``containerPort`` (the API server writes that into pods, not into a
    Deployment's template)."""
    return port.get("hostPort") or (port.get("containerPort") if host_network else None)


def _ports_clash(a: set[tuple[str, str, int]], b: set[tuple[str, str, int]]) -> bool:
    """Whether two pods' host ports cannot share a node: one protocol and port, on one IP or
    on every IP."""
    return any(
        pa == pb and qa == qb and (ia == ib or "0.0.0.0" in (ia, ib))
        for ia, pa, qa in a
        for ib, pb, qb in b
    )


def _one_per_node_on_host_ports(
    room: dict[str, int],
    wanted: set[tuple[str, str, int]],
    pods: list[Obj],
    *,
    namespace: str,
    selector: Mapping[str, Any],
) -> None:
    """Cap ``room`` at one gateway pod per node, none on a node where another pod binds a port
    the gateway binds, in place. A gateway pod already there holds its own port."""
    for name in room:
        room[name] = min(room[name], 1)
    for pod in pods:
        node_name = str((pod.get("spec") or {}).get("nodeName"))
        if node_name not in room or (pod.get("status") or {}).get("phase") in _TERMINATED:
            continue
        if is_gateway_pod(pod, namespace=namespace, selector=selector):
            continue
        if _ports_clash(wanted, _host_ports(pod.get("spec") or {})):
            room[node_name] = 0
