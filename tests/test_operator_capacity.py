"""Physical capacity from nodes and pods (controller.operator.capacity)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from controller.operator.capacity import (
    effective_requests,
    gateway_pod_requests,
    matches_selector,
    node_is_schedulable,
    physical_capacity,
    pod_requests,
    quantity,
    selector_misses_running_gateways,
    tolerates,
)

POOL = {"tidal.dev/pool": "physical"}


def node(
    name: str,
    *,
    cpu: str = "8",
    memory: str = "32Gi",
    pods: str = "110",
    ready: bool = True,
    labels: dict[str, str] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": POOL if labels is None else labels},
        "spec": spec,
        "status": {
            "allocatable": {"cpu": cpu, "memory": memory, "pods": pods},
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def pod(
    node_name: str,
    *,
    cpu: str = "0",
    memory: str = "0",
    phase: str = "Running",
    namespace: str = "other",
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "namespace": namespace, "labels": labels or {}},
        "spec": {
            "nodeName": node_name,
            "containers": [
                {"name": "c", "resources": {"requests": {"cpu": cpu, "memory": memory}}}
            ],
        },
        "status": {"phase": phase},
    }


def gateway(
    *,
    cpu: str | None = "1",
    memory: str | None = "2Gi",
    tolerations: Any = None,
    selector: dict[str, Any] | None = None,
) -> dict[str, Any]:
    requests = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v is not None}
    template: dict[str, Any] = {"containers": [{"name": "gw", "resources": {"requests": requests}}]}
    if tolerations:
        template["tolerations"] = tolerations
    return {
        "metadata": {"name": "gw", "namespace": "chat"},
        "spec": {
            "selector": selector or {"matchLabels": {"app": "gw"}},
            "template": {"metadata": {"labels": {"app": "gw"}}, "spec": template},
        },
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("250m", Decimal("0.25")),
        ("2", Decimal(2)),
        ("1Gi", Decimal(2**30)),
        ("1k", Decimal(1000)),
        (3, Decimal(3)),
    ],
    ids=["millicores", "cores", "binary-suffix", "decimal-suffix", "number"],
)
def test_quantity(text: Any, expected: Decimal) -> None:
    """Kubernetes quantities parse to exact decimals."""
    assert quantity(text) == expected


def test_quantity_rejects_garbage() -> None:
    """A value that is no quantity raises ValueError."""
    with pytest.raises(ValueError):
        quantity("lots")


def test_pod_requests_sum_containers_and_floor_by_init() -> None:
    """Containers add up; an init container raises the floor, it does not add."""
    spec = {
        "containers": [
            {"resources": {"requests": {"cpu": "500m"}}},
            {"resources": {"requests": {"cpu": "250m", "memory": "1Gi"}}},
        ],
        "initContainers": [{"resources": {"requests": {"cpu": "2"}}}],
    }
    assert pod_requests(spec) == {"cpu": Decimal(2), "memory": Decimal(2**30)}


def test_pod_requests_count_sidecars_and_limits_as_the_scheduler_does() -> None:
    """A sidecar (an init container with ``restartPolicy: Always``) keeps running beside the
    app containers, so it adds to them; a limit stands for a request left out. The physical
    pool's capacity and the placeholder read one rule."""
    spec = {
        "containers": [{"resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}],
        "initContainers": [
            {"restartPolicy": "Always", "resources": {"requests": {"cpu": "500m"}}},
            {"resources": {"requests": {"cpu": "1200m", "memory": "512Mi"}}},
        ],
    }
    # Running: 1 + 0.5 cpu, 1Gi. The plain init container runs beside the sidecar: 1.7 cpu.
    assert pod_requests(spec) == {"cpu": Decimal("1.7"), "memory": Decimal(2**30)}


def pod_level(
    requests: dict[str, str] | None = None,
    limits: dict[str, str] | None = None,
    *containers: dict[str, Any],
) -> dict[str, Any]:
    """A pod spec with pod-level ``resources`` over ``containers`` (their ``resources``)."""
    resources = {k: v for k, v in (("requests", requests), ("limits", limits)) if v is not None}
    return {
        "resources": resources,
        "containers": [{"name": f"c{i}", "resources": r} for i, r in enumerate(containers)],
    }


APP = {"requests": {"cpu": "500m", "memory": "1Gi"}}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        pytest.param(
            pod_level({"cpu": "2", "memory": "3Gi"}, None, APP, APP),
            {"cpu": Decimal(2), "memory": Decimal(3 * 2**30)},
            id="pod-requests-over-the-containers",
        ),
        pytest.param(
            pod_level({"cpu": "2"}, None, APP),
            {"cpu": Decimal(2), "memory": Decimal(2**30)},
            id="pod-requests-one-resource-the-containers-the-other",
        ),
        pytest.param(
            pod_level(None, {"cpu": "4", "memory": "8Gi"}, {"requests": {"cpu": "500m"}}),
            {"cpu": Decimal("0.5"), "memory": Decimal(8 * 2**30)},
            id="pod-limit-stands-for-a-request-no-container-makes",
        ),
        pytest.param(
            pod_level({"memory": "2Gi"}, {"cpu": "1", "memory": "4Gi"}),
            {"cpu": Decimal(1), "memory": Decimal(2 * 2**30)},
            id="pod-limit-not-over-a-pod-request",
        ),
        pytest.param(
            pod_level({}, {}, APP),
            {"cpu": Decimal("0.5"), "memory": Decimal(2**30)},
            id="empty-pod-resources",
        ),
    ],
)
def test_pod_level_resources_take_the_place_of_the_containers(
    spec: dict[str, Any], expected: dict[str, Decimal]
) -> None:
    """Pod-level requests (Kubernetes 1.32+) are what the scheduler reserves for cpu and
    memory, the containers' inside them; a pod-level limit stands for a pod-level request
    left out where no container asks for the resource, as the API server defaults it."""
    assert pod_requests(spec) == expected


def test_pod_level_hugepages_limit_is_the_request() -> None:
    """Hugepages are never overcommitted: the pod-level limit is the pod's request, the
    containers' inside it; resources a pod cannot name at pod level stay the containers'."""
    spec = pod_level(
        None,
        {"hugepages-2Mi": "1Gi", "ephemeral-storage": "9Gi"},
        {
            "requests": {"cpu": "1", "ephemeral-storage": "1Gi"},
            "limits": {"hugepages-2Mi": "512Mi"},
        },
    )
    assert effective_requests(spec) == {
        "cpu": Decimal(1),
        "hugepages-2Mi": Decimal(2**30),
        "ephemeral-storage": Decimal(2**30),
    }


def test_capacity_counts_pod_level_requests() -> None:
    """Both the gateway's pod-level requests and another pod's take their room: a gateway of
    one 1-cpu container inside a 2-cpu pod fits 4 times on 8 cpus, 3 times beside a pod of
    1.5 cpus at pod level over a container of none."""
    gw = gateway()
    gw["spec"]["template"]["spec"]["resources"] = {"requests": {"cpu": "2"}}
    assert physical_capacity([node("a")], [], node_selector=POOL, gateway=gw) == 4
    other = pod("a")
    other["spec"]["resources"] = {"requests": {"cpu": "1500m"}}
    assert physical_capacity([node("a")], [other], node_selector=POOL, gateway=gw) == 3


@pytest.mark.parametrize(
    ("toleration", "taint", "expected"),
    [
        ({"key": "k", "operator": "Exists"}, {"key": "k", "effect": "NoSchedule"}, True),
        ({"key": "k", "value": "v"}, {"key": "k", "value": "v", "effect": "NoSchedule"}, True),
        ({"key": "k", "value": "x"}, {"key": "k", "value": "v", "effect": "NoSchedule"}, False),
        ({"operator": "Exists"}, {"key": "any", "effect": "NoExecute"}, True),
        (
            {"key": "k", "operator": "Exists", "effect": "NoExecute"},
            {"key": "k", "effect": "NoSchedule"},
            False,
        ),
    ],
    ids=["exists", "equal", "other-value", "wildcard", "other-effect"],
)
def test_tolerates(toleration: dict[str, str], taint: dict[str, str], expected: bool) -> None:
    """Tolerations match taints by key, value and effect as the scheduler does."""
    assert tolerates([toleration], taint) is expected


@pytest.mark.parametrize(
    ("the_node", "expected"),
    [
        (node("a"), True),
        (node("a", ready=False), False),
        (node("a", unschedulable=True), False),
        (node("a", taints=[{"key": "maint", "effect": "NoSchedule"}]), False),
        (node("a", taints=[{"key": "soft", "effect": "PreferNoSchedule"}]), True),
    ],
    ids=["ready", "not-ready", "cordoned", "tainted", "prefer-no-schedule"],
)
def test_node_is_schedulable(the_node: dict[str, Any], expected: bool) -> None:
    """Only Ready, uncordoned nodes without an untolerated hard taint count."""
    assert node_is_schedulable(the_node) is expected


CASES = [
    ("two-nodes-cpu-bound", [node("a"), node("b")], [], None, 16),
    ("memory-bound", [node("a", memory="8Gi")], [], None, 4),
    ("other-pods-take-room", [node("a")], [pod("a", cpu="3")], None, 5),
    (
        "gateway-pods-are-room",
        [node("a")],
        [pod("a", cpu="1", namespace="chat", labels={"app": "gw"})] * 3,
        None,
        8,
    ),
    ("terminated-pods-free", [node("a")], [pod("a", cpu="7", phase="Succeeded")], None, 8),
    ("not-ready-node-excluded", [node("a"), node("b", ready=False)], [], None, 8),
    (
        "other-pool-excluded",
        [node("a"), node("c", labels={"tidal.dev/pool": "cloud"})],
        [],
        None,
        8,
    ),
    ("pod-count-limit", [node("a", pods="3")], [pod("a"), pod("a")], None, 1),
    ("overcommitted-node-is-zero", [node("a", cpu="2")], [pod("a", cpu="4")], None, 0),
    ("max-replicas-caps", [node("a"), node("b")], [], 10, 10),
]


@pytest.mark.parametrize(
    ("nodes", "pods", "max_replicas", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_physical_capacity(nodes: Any, pods: Any, max_replicas: int | None, expected: int) -> None:
    """floor((allocatable - other pods' requests) / gateway requests), summed over nodes."""
    assert (
        physical_capacity(
            nodes, pods, node_selector=POOL, gateway=gateway(), max_replicas=max_replicas
        )
        == expected
    )


def test_capacity_respects_tolerations() -> None:
    """A tainted node counts when the gateway tolerates its taint."""
    tainted = node("a", taints=[{"key": "dedicated", "value": "gw", "effect": "NoSchedule"}])
    tolerant = gateway(tolerations=[{"key": "dedicated", "value": "gw", "effect": "NoSchedule"}])
    assert physical_capacity([tainted], [], node_selector=POOL, gateway=tolerant) == 8
    assert physical_capacity([tainted], [], node_selector=POOL, gateway=gateway()) == 0


def test_capacity_without_requests_needs_a_cap() -> None:
    """No requests: maxReplicas is the capacity, and without it the error says what to set."""
    bare = gateway(cpu=None, memory=None)
    assert physical_capacity([node("a")], [], node_selector=POOL, gateway=bare, max_replicas=7) == 7
    with pytest.raises(ValueError, match="maxReplicas"):
        physical_capacity([node("a")], [], node_selector=POOL, gateway=bare)


def expression(key: str, operator: str, *values: str) -> dict[str, Any]:
    return {"key": key, "operator": operator, "values": list(values)}


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ({"matchLabels": {"app": "gw"}}, True),
        ({"matchLabels": {"app": "gw", "tier": "edge"}}, False),
        ({"matchExpressions": [expression("app", "In", "gw", "api")]}, True),
        ({"matchExpressions": [expression("app", "In", "api")]}, False),
        ({"matchExpressions": [expression("app", "NotIn", "api")]}, True),
        ({"matchExpressions": [expression("tier", "NotIn", "edge")]}, True),
        ({"matchExpressions": [expression("app", "NotIn", "gw")]}, False),
        ({"matchExpressions": [expression("app", "Exists")]}, True),
        ({"matchExpressions": [expression("tier", "Exists")]}, False),
        ({"matchExpressions": [expression("tier", "DoesNotExist")]}, True),
        ({"matchExpressions": [expression("app", "DoesNotExist")]}, False),
        (
            {"matchLabels": {"app": "gw"}, "matchExpressions": [expression("tier", "Exists")]},
            False,
        ),
        ({}, True),
    ],
    ids=[
        "labels",
        "labels-missing-key",
        "in",
        "in-other-value",
        "notin",
        "notin-missing-key",
        "notin-own-value",
        "exists",
        "exists-missing-key",
        "does-not-exist",
        "does-not-exist-present",
        "labels-and-expressions-both-hold",
        "empty-matches-all",
    ],
)
def test_matches_selector(selector: dict[str, Any], expected: bool) -> None:
    """matchLabels and matchExpressions together, read as the API server reads a selector."""
    assert matches_selector({"app": "gw"}, selector) is expected


def test_matches_selector_refuses_an_unknown_operator() -> None:
    """An operator the API would refuse is an error, not a guess."""
    with pytest.raises(ValueError, match="Gt"):
        matches_selector({"app": "gw"}, {"matchExpressions": [expression("app", "Gt", "1")]})


@pytest.mark.parametrize(
    ("selector", "with_canary"),
    [
        ({"matchLabels": {"app": "gw"}}, 8),
        ({"matchExpressions": [expression("app", "In", "gw")]}, 8),
        (
            {
                "matchLabels": {"app": "gw"},
                "matchExpressions": [expression("canary", "DoesNotExist")],
            },
            7,
        ),
    ],
    ids=["match-labels", "match-expressions", "both"],
)
def test_gateway_pods_are_room_whatever_the_selector_form(
    selector: dict[str, Any], with_canary: int
) -> None:
    """The gateway's own pods are told apart by its whole selector, not matchLabels alone: a
    pool full of them leaves the capacity where it is, and a pod the selector excludes (a
    canary of another Deployment) takes room."""
    own = [pod(name, cpu="1", namespace="chat", labels={"app": "gw"}) for name in "aabb" * 4]
    canary = pod("a", cpu="1", namespace="chat", labels={"app": "gw", "canary": "yes"})
    gw = gateway(selector=selector)
    assert physical_capacity([node("a"), node("b")], own, node_selector=POOL, gateway=gw) == 16
    assert physical_capacity([node("a")], [canary], node_selector=POOL, gateway=gw) == with_canary


def pinned_gateway(**template: Any) -> dict[str, Any]:
    """:func:`gateway` with ``template`` merged into its pod spec (a node selector, affinity)."""
    body = gateway()
    body["spec"]["template"]["spec"].update(template)
    return body


CLOUD = {"tidal.dev/pool": "cloud"}


def required(*terms: dict[str, Any]) -> dict[str, Any]:
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": list(terms)}
        }
    }


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        pytest.param({}, 16, id="no-pin-every-node"),
        pytest.param({"nodeSelector": POOL}, 8, id="node-selector"),
        pytest.param(
            {
                "affinity": required(
                    {
                        "matchExpressions": [
                            {"key": "tidal.dev/pool", "operator": "NotIn", "values": ["cloud"]}
                        ]
                    }
                )
            },
            8,
            id="affinity-not-in",
        ),
        pytest.param(
            {
                "affinity": required(
                    {"matchExpressions": [{"key": "gen", "operator": "Gt", "values": ["5"]}]},
                    {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["p"]}]},
                )
            },
            16,
            id="terms-are-ored",
        ),
        pytest.param(
            {
                "affinity": required(
                    {"matchExpressions": [{"key": "gen", "operator": "Lt", "values": ["5"]}]}
                )
            },
            8,
            id="lt-on-an-integer-label",
        ),
        pytest.param({"affinity": required({})}, 0, id="an-empty-term-matches-nothing"),
    ],
)
def test_capacity_counts_only_nodes_the_gateway_pods_may_go_to(
    template: dict[str, Any], expected: int
) -> None:
    """An empty physical.nodeSelector (the default) matches every node, a cloud node too:
    the gateway's own node selector and required node affinity still keep its pods off the
    nodes they may not go to, and those nodes are no room for it."""
    nodes = [
        node("p", labels={**POOL, "gen": "4"}),
        node("c", labels={**CLOUD, "gen": "6"}),
    ]
    assert (
        physical_capacity(nodes, [], node_selector={}, gateway=pinned_gateway(**template))
        == expected
    )


# Rules the mutation run over capacity.py found open (tests/test_operator_capacity.py alone).


@pytest.mark.parametrize("value", [True, False, None, [1]], ids=["true", "false", "null", "list"])
def test_quantity_rejects_what_is_no_quantity_as_value_error(value: Any) -> None:
    """A quantity is a string or a number; a boolean is neither (though Python's bool is an
    int), and every bad value is the ValueError capacity's callers handle."""
    with pytest.raises(ValueError):
        quantity(value)


@pytest.mark.parametrize(
    ("labels", "selector", "expected"),
    [
        ({"app": "gw"}, {"matchExpressions": [expression("tier", "In", "edge")]}, False),
        (None, {"matchExpressions": [expression("tier", "In", "edge")]}, False),
        (None, {"matchExpressions": [expression("tier", "NotIn", "edge")]}, True),
        (None, {"matchExpressions": [expression("tier", "DoesNotExist")]}, True),
        ({"app": "gw"}, {"matchExpressions": [{"key": "app", "operator": "Exists"}]}, True),
        (
            {"app": "gw"},
            {"matchExpressions": [{"key": "app", "operator": "DoesNotExist"}]},
            False,
        ),
    ],
    ids=[
        "in-missing-key",
        "in-no-labels",
        "notin-no-labels",
        "does-not-exist-no-labels",
        "exists-values-omitted",
        "does-not-exist-values-omitted",
    ],
)
def test_matches_selector_on_objects_as_the_api_serves_them(
    labels: dict[str, str] | None, selector: dict[str, Any], expected: bool
) -> None:
    """``In`` needs the key (apimachinery's Requirement.Matches); an object without labels
    and an Exists/DoesNotExist requirement without ``values`` (both omitted when empty in the
    API's JSON) are read as empty, not refused."""
    assert matches_selector(labels, selector) is expected


def test_exists_toleration_matches_any_value() -> None:
    """``operator: Exists`` is a wildcard for the taint's value (v1.Toleration.ToleratesTaint)."""
    taint = {"key": "dedicated", "value": "gw", "effect": "NoSchedule"}
    assert tolerates([{"key": "dedicated", "operator": "Exists"}], taint) is True
    assert tolerates([{"key": "other", "operator": "Exists"}], taint) is False


def conditioned(*conditions: tuple[str, str]) -> dict[str, Any]:
    """:func:`node` with ``status.conditions`` replaced (none at all when empty: omitted)."""
    body = node("a")
    if conditions:
        body["status"]["conditions"] = [{"type": t, "status": s} for t, s in conditions]
    else:
        del body["status"]["conditions"]
    return body


@pytest.mark.parametrize(
    ("the_node", "expected"),
    [
        (conditioned(), False),
        (conditioned(("Ready", "False"), ("MemoryPressure", "True")), False),
        (conditioned(("MemoryPressure", "False"), ("Ready", "True")), True),
    ],
    ids=["no-conditions-yet", "another-condition-true", "ready-among-others"],
)
def test_only_the_ready_condition_makes_a_node_ready(
    the_node: dict[str, Any], expected: bool
) -> None:
    """A node is Ready by its ``Ready`` condition alone; one that has reported no condition
    yet (the list omitted) is not."""
    assert node_is_schedulable(the_node) is expected


def bare_node(name: str, allocatable: dict[str, str] | None) -> dict[str, Any]:
    """A Ready node as the API serves it with nothing optional set: no labels, and
    ``allocatable`` only when given (omitted when empty)."""
    status: dict[str, Any] = {"conditions": [{"type": "Ready", "status": "True"}]}
    if allocatable is not None:
        status["allocatable"] = allocatable
    return {"metadata": {"name": name}, "spec": {}, "status": status}


def unlabelled_pod(node_name: str, namespace: str, cpu: str) -> dict[str, Any]:
    body = pod(node_name, cpu=cpu, namespace=namespace)
    del body["metadata"]["labels"]
    return body


SPARSE_CASES = [
    ("max-replicas-above-the-room", [node("a")], [], {}, 10, 8),
    ("pod-count-full", [node("a", pods="2")], [pod("a"), pod("a")], {}, None, 0),
    (
        "pods-beyond-the-count-cost-only-their-node",
        [node("a", pods="2"), node("b")],
        [pod("a")] * 3,
        {},
        None,
        8,
    ),
    (
        "no-cpu-allocatable-holds-nothing",
        [bare_node("a", {"memory": "32Gi", "pods": "110"})],
        [],
        {},
        None,
        0,
    ),
    ("no-allocatable-holds-nothing", [bare_node("a", None), node("b")], [], {}, None, 8),
    (
        "unlabelled-node-under-an-empty-selector",
        [bare_node("a", {"cpu": "4", "memory": "32Gi", "pods": "110"})],
        [],
        {},
        None,
        4,
    ),
    (
        "unlabelled-node-outside-a-selector",
        [bare_node("a", {"cpu": "4", "memory": "32Gi", "pods": "110"}), node("b")],
        [],
        POOL,
        None,
        8,
    ),
    (
        "gateway-labels-in-another-namespace-take-room",
        [node("a")],
        [pod("a", cpu="1", namespace="other", labels={"app": "gw"})] * 3,
        POOL,
        None,
        5,
    ),
    (
        "unlabelled-pod-takes-room",
        [node("a")],
        [unlabelled_pod("a", "chat", "2")],
        POOL,
        None,
        6,
    ),
]


@pytest.mark.parametrize(
    ("nodes", "pods", "node_selector", "max_replicas", "expected"),
    [case[1:] for case in SPARSE_CASES],
    ids=[case[0] for case in SPARSE_CASES],
)
def test_physical_capacity_on_sparse_and_full_nodes(
    nodes: Any, pods: Any, node_selector: dict[str, str], max_replicas: int | None, expected: int
) -> None:
    """maxReplicas only caps; a node holds no more pods than its ``allocatable.pods`` and a
    node past it takes nothing from the others; a resource a node does not report is none
    (the scheduler's NodeInfo reads a missing allocatable as zero); an empty physical
    nodeSelector takes a node without labels; a Deployment's selector owns pods of its own
    namespace only. The gateway's selector here is matchExpressions alone."""
    gw = gateway(selector={"matchExpressions": [expression("app", "In", "gw")]})
    assert (
        physical_capacity(
            nodes, pods, node_selector=node_selector, gateway=gw, max_replicas=max_replicas
        )
        == expected
    )


def sized(name: str, cpu: str, **labels: str) -> dict[str, Any]:
    """A pool node named ``name`` holding ``cpu`` gateway pods of 1 cpu, with ``labels``."""
    return node(name, cpu=cpu, labels={**POOL, **labels})


def term(**parts: Any) -> dict[str, Any]:
    return {"affinity": required(parts)}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        pytest.param(term(matchExpressions=[expression("gen", "Gt", "5")]), 4, id="gt-strict"),
        pytest.param(term(matchExpressions=[expression("gen", "Lt", "5")]), 1, id="lt-strict"),
        pytest.param(
            term(matchExpressions=[expression("gen", "Gt", "-1")]),
            7,
            id="gt-skips-missing-and-non-integer-labels",
        ),
        pytest.param(
            term(matchFields=[expression("metadata.name", "In", "g5")]), 2, id="match-fields"
        ),
        pytest.param(
            term(matchFields=[expression("metadata.name", "NotIn", "g5", "text")]),
            13,
            id="match-fields-not-in",
        ),
        pytest.param(
            term(
                matchExpressions=[expression("gen", "Exists")],
                matchFields=[expression("metadata.name", "In", "g4", "none")],
            ),
            1,
            id="expressions-and-fields-both-hold",
        ),
    ],
)
def test_node_affinity_operators_as_the_scheduler_reads_them(
    template: dict[str, Any], expected: int
) -> None:
    """``Gt``/``Lt`` compare the node's label, parsed as an integer, strictly with the one
    value; a node without the label, or with one that is no integer, matches neither
    (apimachinery's Requirement.Matches). ``matchFields`` selects by ``metadata.name``, and a
    term needs all its expressions and fields. Each node holds a different count, so the sum
    names the nodes chosen: g4 1, g5 2, g6 4, none 8, text 16."""
    nodes = [
        sized("g4", "1", gen="4"),
        sized("g5", "2", gen="5"),
        sized("g6", "4", gen="6"),
        sized("none", "8"),
        sized("text", "16", gen="new"),
    ]
    assert (
        physical_capacity(nodes, [], node_selector=POOL, gateway=pinned_gateway(**template))
        == expected
    )


def test_gateway_pod_requests_reads_the_deployment_template() -> None:
    """One pod of the Deployment's template: its requests, cpu and memory."""
    assert gateway_pod_requests(gateway(cpu="1500m", memory="3Gi")) == {
        "cpu": Decimal("1.5"),
        "memory": Decimal(3 * 2**30),
    }
    assert gateway_pod_requests(gateway(cpu="2", memory=None)) == {
        "cpu": Decimal(2),
        "memory": Decimal(0),
    }


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        pytest.param(
            {"containers": [{"name": "bare"}, {"name": "app", "resources": APP}]},
            {"cpu": Decimal("0.5"), "memory": Decimal(2**30)},
            id="container-without-resources-asks-nothing",
        ),
        pytest.param(
            pod_level(None, {"ephemeral-storage": "9Gi"}, {"requests": {"cpu": "1"}}),
            {"cpu": Decimal(1)},
            id="pod-level-limit-of-an-unsupported-resource-is-no-request",
        ),
    ],
)
def test_effective_requests_edges(spec: dict[str, Any], expected: dict[str, Decimal]) -> None:
    """A container that sets no resources reserves nothing; the scheduler's PodRequests
    takes pod-level values only for what a pod may name there (cpu, memory, hugepages), so a
    pod-level limit of anything else stands for no request."""
    assert effective_requests(spec) == expected


@pytest.mark.parametrize(
    ("label", "counted"),
    [
        pytest.param("6", True, id="an-integer"),
        pytest.param("+6", True, id="a-signed-integer"),
        pytest.param("1_0", False, id="digits-with-an-underscore"),
        pytest.param(" 10", False, id="a-space"),
        pytest.param("99999999999999999999", False, id="beyond-int64"),
        pytest.param("9223372036854775807", True, id="the-largest-int64"),
    ],
)
def test_gt_reads_a_label_as_the_scheduler_parses_it(label: str, counted: bool) -> None:
    """``Gt``/``Lt`` parse a label as Go's ``ParseInt(value, 10, 64)`` does: Python's ``int``
    also took ``1_0`` and integers past int64, which the scheduler matches with neither, so
    such a node was counted as room for the gateway (found by mutation testing)."""
    gw = pinned_gateway(**term(matchExpressions=[expression("gen", "Gt", "5")]))
    nodes = [sized("n", "8", gen=label)]
    assert physical_capacity(nodes, [], node_selector=POOL, gateway=gw) == (8 if counted else 0)


@pytest.mark.parametrize(
    ("operator", "expected"),
    [
        pytest.param("Equal", True, id="equal"),
        pytest.param("Gt", False, id="alpha-gt"),
        pytest.param("Equals", False, id="a-typo"),
    ],
)
def test_a_toleration_of_another_operator_tolerates_nothing(operator: str, expected: bool) -> None:
    """``Exists`` and ``Equal`` are the operators a toleration matches by here; any other was
    read as ``Equal``, though ``ToleratesTaint`` refuses an operator it does not know, and the
    alpha ``Gt`` compares numbers (5 is not greater than 5)."""
    taint = {"key": "k", "value": "5", "effect": "NoSchedule"}
    assert tolerates([{"key": "k", "operator": operator, "value": "5"}], taint) is expected


# --- a gateway that keeps its pods apart ---------------------------------------------------

HOST = "kubernetes.io/hostname"
ZONE = "topology.kubernetes.io/zone"


def apart(*terms: dict[str, Any]) -> dict[str, Any]:
    """The default gateway (1 CPU, 2Gi) with required pod anti-affinity ``terms``."""
    body = gateway()
    body["spec"]["template"]["spec"]["affinity"] = {
        "podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": list(terms)}
    }
    return body


def anti_term(key: str, selector: dict[str, Any] | None = None, **more: Any) -> dict[str, Any]:
    return {
        "labelSelector": {"matchLabels": {"app": "gw"}} if selector is None else selector,
        "topologyKey": key,
        **more,
    }


def zoned(name: str, zone: str | None, **more: Any) -> dict[str, Any]:
    labels = {**POOL, HOST: name}
    if zone is not None:
        labels[ZONE] = zone
    return node(name, labels=labels, **more)


def test_one_gateway_per_node_counts_each_node_with_room_once() -> None:
    """Three 8-CPU nodes hold 8, 8 and 0 gateways by resources (the third is full); one per
    node makes that 1, 1 and 0."""
    nodes = [zoned("a", "z1"), zoned("b", "z1"), zoned("c", "z2")]
    pods = [pod("c", cpu="8")]
    assert physical_capacity(nodes, pods, node_selector=POOL, gateway=gateway()) == 16
    assert physical_capacity(nodes, pods, node_selector=POOL, gateway=apart(anti_term(HOST))) == 2


def test_one_gateway_per_zone_counts_each_zone_with_room_once() -> None:
    """Zones z1 (two nodes) and z2 (one, full) and a node without a zone label, which no
    zone term constrains: 1 + 0 + 8."""
    nodes = [zoned("a", "z1"), zoned("b", "z1"), zoned("c", "z2"), zoned("d", None)]
    pods = [pod("c", cpu="8")]
    got = physical_capacity(nodes, pods, node_selector=POOL, gateway=apart(anti_term(ZONE)))
    assert got == 1 + 0 + 8


def test_a_gateway_pod_already_in_a_zone_is_its_one() -> None:
    """The gateway's own pod on node b takes the room it uses as the gateway's: zone z1 still
    holds one gateway pod, counted once."""
    nodes = [zoned("a", "z1"), zoned("b", "z1")]
    own = pod("b", cpu="1", memory="2Gi", namespace="chat", labels={"app": "gw"})
    assert physical_capacity(nodes, [own], node_selector=POOL, gateway=apart(anti_term(ZONE))) == 1


def test_another_pod_the_term_selects_takes_its_domain() -> None:
    """A pod of another Deployment with the gateway's labels (so the term selects it) sits on
    node b: b's host holds no gateway. One on a node outside the pool, in zone z1, takes z1
    for a zone term. The same pod in another namespace is not selected."""
    nodes = [zoned("a", "z1"), zoned("b", "z2"), node("cloud", labels={HOST: "cloud", ZONE: "z1"})]
    stray = pod("b", namespace="chat", labels={"app": "gw", "track": "canary"})
    canary = apart(anti_term(HOST))
    canary["spec"]["selector"] = {"matchLabels": {"app": "gw", "track": "stable"}}
    canary["spec"]["template"]["metadata"]["labels"] = {"app": "gw", "track": "stable"}
    assert physical_capacity(nodes, [stray], node_selector=POOL, gateway=canary) == 1
    outside = pod("cloud", namespace="chat", labels={"app": "gw", "track": "canary"})
    by_zone = apart(anti_term(ZONE))
    by_zone["spec"]["selector"] = canary["spec"]["selector"]
    by_zone["spec"]["template"]["metadata"]["labels"] = {"app": "gw", "track": "stable"}
    assert physical_capacity(nodes, [outside], node_selector=POOL, gateway=by_zone) == 1
    elsewhere = pod("b", namespace="other", labels={"app": "gw", "track": "canary"})
    assert physical_capacity(nodes, [elsewhere], node_selector=POOL, gateway=canary) == 2


@pytest.mark.parametrize(
    "other",
    [
        anti_term(HOST, {"matchLabels": {"app": "db"}}),  # apart from another workload
        anti_term(HOST, namespaces=["edge"]),  # the gateway's labels, another namespace
        anti_term(HOST, namespaceSelector={"matchLabels": {"team": "chat"}}),  # not read here
    ],
    ids=["other-app", "other-namespace", "namespace-labels"],
)
def test_terms_not_over_the_gateways_own_pods_leave_the_count(other: dict[str, Any]) -> None:
    """Only a term over the gateway's own pods, in its namespace, limits how many of them a
    domain holds."""
    nodes = [zoned("a", "z1"), zoned("b", "z1")]
    assert physical_capacity(nodes, [], node_selector=POOL, gateway=apart(other)) == 16


@pytest.mark.parametrize(
    "own",
    [
        anti_term(HOST, namespaces=["chat", "edge"]),
        anti_term(HOST, namespaceSelector={}),
        anti_term(HOST, namespaces=["chat"], namespaceSelector={"matchLabels": {"team": "x"}}),
        anti_term(HOST, {}),
    ],
    ids=["namespaces-listing-its-own", "every-namespace", "listed-and-labelled", "every-pod"],
)
def test_a_term_reaching_the_gateways_namespace_keeps_its_pods_apart(own: dict[str, Any]) -> None:
    """A term's namespaces are those it lists and those its namespace selector matches (all,
    when empty): listing the gateway's own is enough. An empty label selector selects every
    pod, the gateway's own among them (a nil one selects none)."""
    nodes = [zoned("a", "z1"), zoned("b", "z1")]
    assert physical_capacity(nodes, [], node_selector=POOL, gateway=apart(own)) == 2


def test_nodes_and_pods_may_be_read_once() -> None:
    """Iterators work as lists do: the anti-affinity rule reads the pods a second time."""
    nodes = [zoned("a", "z1"), zoned("b", "z1")]
    stray = pod("a", namespace="chat", labels={"app": "gw", "track": "canary"})
    canary = apart(anti_term(HOST))
    canary["spec"]["selector"] = {"matchLabels": {"app": "gw", "track": "stable"}}
    canary["spec"]["template"]["metadata"]["labels"] = {"app": "gw", "track": "stable"}
    got = physical_capacity(iter(nodes), iter([stray]), node_selector=POOL, gateway=canary)
    assert got == 1


def on_port(body: dict[str, Any], *ports: dict[str, Any]) -> dict[str, Any]:
    body["spec"]["template"]["spec"]["containers"][0]["ports"] = list(ports)
    return body


def test_a_gateway_on_a_host_port_counts_one_per_node() -> None:
    """Three nodes with room for 8 gateways each by resources. The gateway binds host port 443:
    one per node. Another pod binds 443 on node b (no IP: every IP): b holds none. One on
    node c binds 443 on one IP only, where the gateway binds every IP: they clash too. A pod
    with UDP 443, or 443 on another IP than the gateway's own, does not clash."""
    nodes = [zoned("a", "z1"), zoned("b", "z1"), zoned("c", "z1")]
    gw = on_port(gateway(), {"containerPort": 8443, "hostPort": 443})
    assert physical_capacity(nodes, [], node_selector=POOL, gateway=gw) == 3

    def binding(node_name: str, **port: Any) -> dict[str, Any]:
        body = pod(node_name)
        body["spec"]["containers"][0]["ports"] = [{"containerPort": 1, **port}]
        return body

    pods = [binding("b", hostPort=443), binding("c", hostPort=443, hostIP="10.0.0.3")]
    assert physical_capacity(nodes, pods, node_selector=POOL, gateway=gw) == 1
    apart_ok = [binding("b", hostPort=443, protocol="UDP"), binding("c", hostPort=8443)]
    assert physical_capacity(nodes, apart_ok, node_selector=POOL, gateway=gw) == 3
    one_ip = on_port(gateway(), {"containerPort": 8443, "hostPort": 443, "hostIP": "10.0.0.1"})
    assert physical_capacity(nodes, pods[1:], node_selector=POOL, gateway=one_ip) == 3
    own = binding("a", hostPort=443)
    own["metadata"].update(namespace="chat", labels={"app": "gw"})
    assert physical_capacity(nodes, [own], node_selector=POOL, gateway=gw) == 3


def test_an_empty_label_selector_takes_any_pods_domain() -> None:
    """An anti-affinity term with an empty label selector keeps the gateway off any node with
    a pod of its namespace: node a holds another pod of ``chat``, so only b has room."""
    nodes = [zoned("a", "z1"), zoned("b", "z1")]
    neighbour = pod("a", namespace="chat", labels={"app": "cache"})
    got = physical_capacity(
        nodes, [neighbour], node_selector=POOL, gateway=apart(anti_term(HOST, {}))
    )
    assert got == 1


def test_a_sidecars_host_port_counts_as_the_gateways() -> None:
    """The scheduler counts the host ports of app containers and of sidecars (init containers
    that run throughout), not of ordinary init containers: a sidecar on host port 80 makes
    the gateway one per node; another pod's sidecar on 80 takes its node."""
    nodes = [zoned("a", "z1"), zoned("b", "z1")]
    gw = gateway()
    gw["spec"]["template"]["spec"]["initContainers"] = [
        {
            "name": "proxy",
            "restartPolicy": "Always",
            "ports": [{"containerPort": 80, "hostPort": 80}],
        }
    ]
    assert physical_capacity(nodes, [], node_selector=POOL, gateway=gw) == 2
    other = pod("a")
    other["spec"]["initContainers"] = [
        {
            "name": "proxy",
            "restartPolicy": "Always",
            "ports": [{"containerPort": 80, "hostPort": 80}],
        }
    ]
    assert physical_capacity(nodes, [other], node_selector=POOL, gateway=gw) == 1
    plain = gateway()
    plain["spec"]["template"]["spec"]["initContainers"] = [
        {"name": "setup", "ports": [{"containerPort": 80, "hostPort": 80}]}
    ]
    assert physical_capacity(nodes, [], node_selector=POOL, gateway=plain) == 16


def test_a_gateway_on_the_host_network_binds_its_container_ports() -> None:
    """A ``hostNetwork`` template carries no ``hostPort`` (the API server sets it in pods, not
    in templates since Kubernetes 1.28): each container port is bound on the node all the
    same, so one gateway per node."""
    nodes = [zoned("a", "z1"), zoned("b", "z1")]
    gw = on_port(gateway(), {"containerPort": 8080})
    assert physical_capacity(nodes, [], node_selector=POOL, gateway=gw) == 16
    gw["spec"]["template"]["spec"]["hostNetwork"] = True
    assert physical_capacity(nodes, [], node_selector=POOL, gateway=gw) == 2


# --- required pod affinity and anti-affinity with other workloads ---------------------------


def with_affinity(kind: str, *terms: dict[str, Any]) -> dict[str, Any]:
    body = gateway()
    body["spec"]["template"]["spec"]["affinity"] = {
        kind: {"requiredDuringSchedulingIgnoredDuringExecution": list(terms)}
    }
    return body


DB = {"matchLabels": {"app": "db"}}
CACHE = {"matchLabels": {"app": "cache"}}


def test_a_gateway_kept_away_from_another_workload_has_no_room_beside_it() -> None:
    """The gateway keeps off any zone with a database pod of its namespace: zone z1 holds one
    (on a node outside the pool), so z1's two nodes hold none; z2's node holds 8. A database
    pod in another namespace does not count."""
    nodes = [zoned("a", "z1"), zoned("b", "z1"), zoned("c", "z2"), node("x", labels={ZONE: "z1"})]
    gw = with_affinity("podAntiAffinity", anti_term(ZONE, DB))
    db = pod("x", namespace="chat", labels={"app": "db"})
    assert physical_capacity(nodes, [db], node_selector=POOL, gateway=gw) == 8
    elsewhere = pod("x", namespace="data", labels={"app": "db"})
    assert physical_capacity(nodes, [elsewhere], node_selector=POOL, gateway=gw) == 24


def test_a_pod_that_keeps_gateways_away_takes_its_node() -> None:
    """A database pod on node a keeps gateways (``app: gw`` in ``chat``) off its host: a holds
    none, b holds 8. Its term over another namespace's gateways keeps nothing off."""
    nodes = [zoned("a", "z1"), zoned("b", "z1")]
    db = pod("a", namespace="data", labels={"app": "db"})
    db["spec"]["affinity"] = {
        "podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                anti_term(HOST, {"matchLabels": {"app": "gw"}}, namespaces=["chat"])
            ]
        }
    }
    assert physical_capacity(nodes, [db], node_selector=POOL, gateway=gateway()) == 8
    term = db["spec"]["affinity"]["podAntiAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]
    term[0]["namespaces"] = ["edge"]
    assert physical_capacity(nodes, [db], node_selector=POOL, gateway=gateway()) == 16


def test_a_gateway_that_must_sit_by_a_cache_has_room_only_in_its_zones() -> None:
    """The gateway must share a zone with a cache pod of its namespace: one runs in z2, so only
    z2's node holds gateways (8); a pool node without a zone label holds none. With no cache
    pod anywhere, none."""
    nodes = [zoned("a", "z1"), zoned("b", "z2"), zoned("d", None)]
    gw = with_affinity("podAffinity", anti_term(ZONE, CACHE))
    cache = pod("b", namespace="chat", labels={"app": "cache"})
    assert physical_capacity(nodes, [cache], node_selector=POOL, gateway=gw) == 8
    assert physical_capacity(nodes, [], node_selector=POOL, gateway=gw) == 0


def test_gateways_kept_together_follow_the_first() -> None:
    """A term that keeps the gateway's pods in one zone: with none placed, the first may go
    anywhere and the rest follow it, so the count is the zone with most room (z1: 16, z2: 8).
    With a gateway pod already in z2, z2's room (8) is all."""
    nodes = [zoned("a", "z1"), zoned("b", "z1"), zoned("c", "z2")]
    gw = with_affinity("podAffinity", anti_term(ZONE))
    assert physical_capacity(nodes, [], node_selector=POOL, gateway=gw) == 16
    own = pod("c", cpu="1", memory="2Gi", namespace="chat", labels={"app": "gw"})
    assert physical_capacity(nodes, [own], node_selector=POOL, gateway=gw) == 8


# --- mutation-tested edges of the inter-pod and host port rules ------------------------------


def canary_apart(key: str) -> dict[str, Any]:
    """A stable gateway kept one per ``key`` from every ``app: gw`` pod, canaries included."""
    body = apart(anti_term(key))
    body["spec"]["selector"] = {"matchLabels": {"app": "gw", "track": "stable"}}
    body["spec"]["template"]["metadata"]["labels"] = {"app": "gw", "track": "stable"}
    return body


def unbound(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` as a pod the scheduler has not bound yet (no ``nodeName``)."""
    del body["spec"]["nodeName"]
    body["status"]["phase"] = "Pending"
    return body


def test_only_bound_unfinished_pods_take_a_domain() -> None:
    """kube-scheduler's cache holds the pods bound to a node, less the Succeeded and Failed
    ones (its pod informer filters them out): a finished canary on a, a failed one on b and
    one not yet bound take no node, so one gateway per node gives 1 + 1 = 2."""
    nodes = [zoned("a", "z1"), zoned("b", "z1")]
    labels = {"app": "gw", "track": "canary"}
    pods = [
        pod("a", phase="Succeeded", namespace="chat", labels=labels),
        pod("b", phase="Failed", namespace="chat", labels=labels),
        unbound(pod("a", namespace="chat", labels=labels)),
    ]
    assert physical_capacity(nodes, pods, node_selector=POOL, gateway=canary_apart(HOST)) == 2


def test_only_bound_unfinished_pods_hold_a_host_port() -> None:
    """NodePorts reads the ports of the pods the scheduler's cache holds on the node: a
    finished pod on a and a pod not yet bound hold no port 443. Node c is full by CPU, and
    one pod per node never makes room where resources have none: a 1 + b 1 + c 0 = 2."""
    nodes = [zoned("a", "z1"), zoned("b", "z1"), zoned("c", "z1")]
    gw = on_port(apart(anti_term(HOST)), {"containerPort": 8443, "hostPort": 443})

    def binding(body: dict[str, Any]) -> dict[str, Any]:
        body["spec"]["containers"][0]["ports"] = [{"containerPort": 1, "hostPort": 443}]
        return body

    pods = [
        binding(pod("a", phase="Succeeded")),
        binding(unbound(pod("b"))),
        pod("c", cpu="8"),
    ]
    assert physical_capacity(nodes, pods, node_selector=POOL, gateway=gw) == 2


def test_host_ports_clash_on_one_ip_and_the_default_protocol() -> None:
    """NodePorts: two pods clash on one protocol and port when they bind the same IP or one
    binds every IP; a port without ``protocol`` is TCP (the API server's default). The
    gateway binds TCP 443 on 10.0.0.1; a pod binding TCP 443 on 10.0.0.1 takes node a: 1."""
    from controller.operator.capacity import _ports_clash

    nodes = [zoned("a", "z1"), zoned("b", "z1")]
    gw = on_port(gateway(), {"containerPort": 8443, "hostPort": 443, "hostIP": "10.0.0.1"})
    other = pod("a")
    other["spec"]["containers"][0]["ports"] = [
        {"containerPort": 1, "hostPort": 443, "hostIP": "10.0.0.1", "protocol": "TCP"}
    ]
    assert physical_capacity(nodes, [other], node_selector=POOL, gateway=gw) == 1
    tcp, udp = ("10.0.0.1", "TCP", 443), ("10.0.0.1", "UDP", 443)
    assert _ports_clash({tcp}, {tcp})
    assert not _ports_clash({tcp}, {udp})
    assert _ports_clash({tcp}, {("0.0.0.0", "TCP", 443)})
    assert not _ports_clash({tcp}, {("10.0.0.2", "TCP", 443)})


def test_a_term_without_a_label_selector_selects_no_pod() -> None:
    """In kube-scheduler a nil ``labelSelector`` selects no pod (an empty one selects all):
    neither the gateway's term nor another pod's term without one keeps anything apart, so
    two 8-CPU nodes hold 8 + 8 = 16."""
    nodes = [zoned("a", "z1"), zoned("b", "z1")]
    gw = apart({"topologyKey": HOST})
    assert physical_capacity(nodes, [], node_selector=POOL, gateway=gw) == 16
    db = pod("a", namespace="chat", labels={"app": "db"})
    db["spec"]["affinity"] = {
        "podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [{"topologyKey": HOST}]
        }
    }
    assert physical_capacity(nodes, [db], node_selector=POOL, gateway=gateway()) == 16


def test_a_namespace_selector_by_expressions_reaches_only_matching_namespaces() -> None:
    """A ``namespaceSelector`` with ``matchExpressions`` only selects the namespaces whose
    labels match; namespace chat carries no ``team`` label here, so the term does not keep
    the gateway's pods apart: 8 + 8 = 16."""
    nodes = [zoned("a", "z1"), zoned("b", "z1")]
    chooser = {"matchExpressions": [{"key": "team", "operator": "In", "values": ["chat"]}]}
    gw = apart(anti_term(HOST, namespaceSelector=chooser))
    assert physical_capacity(nodes, [], node_selector=POOL, gateway=gw) == 16


def test_another_pods_term_without_namespaces_covers_its_own_namespace() -> None:
    """A term listing no namespaces and no namespace selector selects pods in its own pod's
    namespace: a database pod in chat keeping ``app: gw`` off its host takes node a: 0 + 8."""
    nodes = [zoned("a", "z1"), zoned("b", "z1")]
    db = pod("a", namespace="chat", labels={"app": "db"})
    db["spec"]["affinity"] = {
        "podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [anti_term(HOST)]}
    }
    assert physical_capacity(nodes, [db], node_selector=POOL, gateway=gateway()) == 8


def test_a_pod_on_a_node_without_the_topology_label_is_in_no_domain() -> None:
    """kube-scheduler counts a pod in a term's domain only when its node has the term's
    topology label. A database pod sits on node d (no zone label): the gateway's zone term
    against it, and its zone term against the gateway, keep nothing off, so three 8-CPU pool
    nodes hold 24."""
    nodes = [zoned("a", "z1"), zoned("b", "z2"), zoned("d", None)]
    away = {
        "podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                anti_term(ZONE, {"matchLabels": {"app": "gw"}}, namespaces=["chat"])
            ]
        }
    }
    db = pod("d", namespace="chat", labels={"app": "db"})
    db["spec"]["affinity"] = away
    gw = with_affinity("podAntiAffinity", anti_term(ZONE, DB))
    assert physical_capacity(nodes, [db], node_selector=POOL, gateway=gw) == 24


def test_gateways_kept_together_follow_the_zone_with_most_room_wherever_it_is_listed() -> None:
    """With no gateway pod placed, the first may go to any zone and the rest must follow it:
    the count is the zone with most room, z1 (a 8 + b 8 = 16), although z2 (c, 8) is listed
    first."""
    nodes = [zoned("c", "z2"), zoned("a", "z1"), zoned("b", "z1")]
    gw = with_affinity("podAffinity", anti_term(ZONE))
    assert physical_capacity(nodes, [], node_selector=POOL, gateway=gw) == 16


def test_one_gateway_per_zone_counts_a_node_with_room_for_exactly_one() -> None:
    """One gateway per zone: node a (1 CPU) holds exactly one 1-CPU gateway, so zone z1 holds
    one gateway, whichever node it lands on: 1."""
    nodes = [zoned("a", "z1", cpu="1"), zoned("b", "z1")]
    assert physical_capacity(nodes, [], node_selector=POOL, gateway=apart(anti_term(ZONE))) == 1


def test_a_placeholder_carrying_the_gateways_terms_closes_no_zone() -> None:
    """A placeholder in zone z1 carries the cloud gateway's "one per zone" term, which selects
    gateway pods, as does the gateway on a node of its own. The scheduler preempts the
    placeholder (the lowest priority) for a gateway, so z1 still holds one physical gateway:
    1 + 1. Another workload's pod with the same term closes z1: 1."""
    nodes = [zoned("a", "z1"), zoned("b", "z2"), node("x", labels={HOST: "x", ZONE: "z1"})]
    keep_apart = {
        "podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                anti_term(ZONE, {"matchLabels": {"app": "gw"}})
            ]
        }
    }
    placeholder = pod("x", namespace="chat", labels={"tidal.dev/placeholder-for": "gw"})
    placeholder["spec"]["affinity"] = keep_apart
    gw = apart(anti_term(ZONE))
    assert physical_capacity(nodes, [placeholder], node_selector=POOL, gateway=gw) == 2
    other = pod("x", namespace="chat", labels={"app": "cache"})
    other["spec"]["affinity"] = keep_apart
    assert physical_capacity(nodes, [other], node_selector=POOL, gateway=gw) == 1


GATEWAY_POD = {"namespace": "chat", "labels": {"app": "gw"}}


@pytest.mark.parametrize(
    ("nodes", "pods", "selector", "named"),
    [
        pytest.param(
            [node("a")],
            [pod("a", **GATEWAY_POD)],
            {"tidal.dev/pool": "physcial"},
            "no node has the labels tidal.dev/pool=physcial, yet the physical gateway runs on a",
            id="typo-while-gateways-run",
        ),
        pytest.param(
            [node("a", ready=False)], [pod("a", **GATEWAY_POD)], POOL, None, id="pool-not-ready"
        ),
        pytest.param([], [], POOL, None, id="pool-gone-with-its-gateways"),
        pytest.param(
            [node("a")],
            [pod("a", phase="Pending", **GATEWAY_POD), pod("a", labels={"app": "gw"})],
            {"tidal.dev/pool": "physcial"},
            None,
            id="only-pending-or-other-pods",
        ),
        pytest.param([node("a")], [pod("a", **GATEWAY_POD)], {}, None, id="no-selector"),
        pytest.param(
            [node(f"n{i}") for i in range(5)],
            [pod(f"n{i}", **GATEWAY_POD) for i in range(5)],
            {"pool": "x"},
            "yet the physical gateway runs on n0, n1, n2 and 2 more: ",
            id="hosts-cut-to-three",
        ),
    ],
)
def test_a_node_selector_that_misses_the_running_gateways_is_named(
    nodes: Any, pods: Any, selector: dict[str, str], named: str | None
) -> None:
    """A physical nodeSelector no node has, while the gateway's pods run on nodes, is a typo,
    not a pool gone: it is named, so that the pool is not drained as if its capacity were 0. A
    pool whose nodes are gone or not ready, without running gateways on matching nodes, is no
    mistake."""
    said = selector_misses_running_gateways(nodes, pods, node_selector=selector, gateway=gateway())
    if named is None:
        assert said is None
    else:
        assert said is not None and named in said
