"""Which cloud gateways a scale-down marks to go first (controller.operator.drain).

A ReplicaSet removes pods not ready first, then the lowest ``pod-deletion-cost``, then those
on the nodes holding the most of its pods. The operator marks the ready gateways on the
nodes holding the fewest, so that a scale-down empties whole nodes.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from structlog.testing import capture_logs

from controller.operator.capacity import PLACEHOLDER_LABEL
from controller.operator.drain import (
    DELETION_COST,
    LOWEST_COST,
    Marks,
    marks_for_scale_down,
    marks_for_scale_downs,
)
from controller.operator.errors import ClusterUnavailable
from controller.operator.kube import KubeClient, placeholder_deployment
from tests.integration.operator_cluster import (
    DEPLOYMENTS,
    NAMESPACE,
    add_region,
    gwa_body,
    replicas,
)
from tests.support.kube_emulator import KubeEmulatorHandle

KEY = f"{NAMESPACE}/gateway-eu"

SELECTOR = {"matchLabels": {"app": "gateway-eu-cloud"}}


def pod(
    name: str,
    node: str | None,
    *,
    ready: bool = True,
    phase: str = "Running",
    created: str = "2026-12-01T10:00:00Z",
    labels: dict[str, str] | None = None,
    namespace: str = "chat",
    cost: str | None = None,
    terminating: bool = False,
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": {"app": "gateway-eu-cloud"} if labels is None else labels,
        "creationTimestamp": created,
    }
    if cost is not None:
        meta["annotations"] = {DELETION_COST: cost}
    if terminating:
        meta["deletionTimestamp"] = "2026-12-01T10:05:00Z"
    return {
        "metadata": meta,
        "spec": {"nodeName": node} if node else {},
        "status": {
            "phase": phase,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def marks(
    pods: list[dict[str, Any]],
    keep: int,
    selector: Any = SELECTOR,
    sharing: Any = None,
) -> Marks:
    return marks_for_scale_down(
        pods, namespace="chat", selector=selector, keep=keep, sharing=sharing
    )


def three_nodes() -> list[dict[str, Any]]:
    """Node a holds 3 gateways, b 1 and c 2."""
    return [
        pod("a1", "a"),
        pod("a2", "a"),
        pod("a3", "a"),
        pod("b1", "b"),
        pod("c1", "c", created="2026-12-01T09:00:00Z"),
        pod("c2", "c", created="2026-12-01T11:00:00Z"),
    ]


@pytest.mark.parametrize(
    ("keep", "marked"),
    [
        (6, ()),
        (5, ("b1",)),
        (4, ("b1", "c2")),  # c's newest first
        (3, ("b1", "c1", "c2")),
        (0, ("a1", "a2", "a3", "b1", "c1", "c2")),
        (-1, ("a1", "a2", "a3", "b1", "c1", "c2")),
    ],
)
def test_the_gateways_on_the_emptiest_nodes_are_marked(keep: int, marked: tuple[str, ...]) -> None:
    """Down to ``keep`` of six: node b (one gateway) is emptied first, then c (two), then a."""
    assert marks(three_nodes(), keep) == Marks(mark=marked, going=marked)


def test_pods_the_replicaset_removes_first_are_counted_not_marked() -> None:
    """An unscheduled pod, a pending one and one not ready go first anyway: down to 4 of
    seven, those three go, and one more, from the emptiest node."""
    pods = [
        *three_nodes()[:4],
        pod("new", None, phase="Pending", ready=False),
        pod("pulling", "a", phase="Pending", ready=False),
        pod("warming", "a", ready=False),
    ]
    assert marks(pods, 3) == Marks(mark=("b1",), going=("b1",))
    assert marks(pods, 4) == Marks()


def test_other_pods_and_terminating_ones_are_left_alone() -> None:
    """Pods of another Deployment, of another namespace, or already terminating are neither
    counted nor marked: node b's own gateway is terminating, so c is the emptiest."""
    pods = [
        *three_nodes(),
        pod("other", "b", labels={"app": "gateway-eu"}),
        pod("elsewhere", "b", namespace="games"),
        pod("b2", "b", terminating=True),
    ]
    assert marks(pods, 5) == Marks(mark=("b1",), going=("b1",))
    pods[3] = pod("b1", "b", terminating=True)
    assert marks(pods, 4) == Marks(mark=("c2",), going=("c2",))


def test_a_selector_without_requirements_marks_nothing() -> None:
    assert marks(three_nodes(), 0, selector={}) == Marks()


def test_marks_already_there_are_kept_and_stale_ones_taken_away() -> None:
    """b1 already carries the lowest cost: it is not patched again. a1 carries it from an
    earlier pass that did not scale: it is taken away, so a1 does not go in c2's place. A
    cost the team set itself (100 on a2) is not touched."""
    pods = three_nodes()
    pods[3] = pod("b1", "b", cost=LOWEST_COST)
    pods[0] = pod("a1", "a", cost=LOWEST_COST)
    pods[1] = pod("a2", "a", cost="100")
    assert marks(pods, 4) == Marks(mark=("c2",), unmark=("a1",), going=("b1", "c2"))
    assert marks(pods, 6) == Marks(unmark=("a1", "b1"))


def test_ties_between_nodes_go_by_name() -> None:
    """Two nodes of one gateway each: the first by name goes first, pass after pass."""
    pods = [pod("y1", "y"), pod("x1", "x"), pod("z1", "z"), pod("z2", "z")]
    assert marks(pods, 3) == Marks(mark=("x1",), going=("x1",))


PLACEHOLDERS = {"matchLabels": {PLACEHOLDER_LABEL: "gateway-eu"}}


def placeholder(name: str, node: str | None, **kwargs: Any) -> dict[str, Any]:
    return pod(name, node, labels={PLACEHOLDER_LABEL: "gateway-eu"}, **kwargs)


def test_the_other_deployments_pods_fill_a_node_too() -> None:
    """Node b's one gateway shares b with four placeholders, c's two gateways are alone: b is
    the fuller node, so c's gateways go first; the placeholders themselves are never marked."""
    pods = [*three_nodes(), *(placeholder(f"h{i}", "b") for i in range(4))]
    assert marks(pods, 4) == Marks(mark=("b1", "c2"), going=("b1", "c2"))
    shared = marks(pods, 4, sharing=PLACEHOLDERS)
    assert shared == Marks(mark=("c1", "c2"), going=("c1", "c2"))


def test_placeholders_go_from_the_nodes_the_gateways_leave_emptiest() -> None:
    """Shrinking the placeholders, the gateways count: p1 shares a with three gateways, p2 and
    p3 have d to themselves, p4 shares b with b1; p5 is pending, so it goes first anyway. Down
    to two placeholders, d's go and d is empty; taking p4 would leave b to b1. Down to three,
    no node can go whole, and p4 goes (b, as full as d, comes first by name)."""
    pods = [
        *three_nodes(),
        placeholder("p1", "a"),
        placeholder("p2", "d", created="2026-12-01T09:00:00Z"),
        placeholder("p3", "d", created="2026-12-01T11:00:00Z"),
        placeholder("p4", "b"),
        placeholder("p5", None, phase="Pending", ready=False),
    ]
    assert marks(pods, 2, selector=PLACEHOLDERS, sharing=SELECTOR) == Marks(
        mark=("p2", "p3"), going=("p2", "p3")
    )
    assert marks(pods, 3, selector=PLACEHOLDERS, sharing=SELECTOR).going == ("p4",)


def both(pods: list[dict[str, Any]], gateways: int | None, placeholders: int | None) -> Any:
    return marks_for_scale_downs(
        pods, namespace="chat", shrinking=[(SELECTOR, gateways), (PLACEHOLDERS, placeholders)]
    )


def test_gateways_and_placeholders_shrinking_together_empty_the_same_nodes() -> None:
    """Node x holds 4 gateways, y one gateway and 3 placeholders, z 3 gateways. Four gateways
    and all three placeholders go: z and y go whole (x, as full as y, cannot), not z and one of
    x's, which would empty z alone."""
    pods = [
        *(pod(f"x{i}", "x") for i in range(4)),
        pod("y0", "y"),
        *(placeholder(f"h{i}", "y") for i in range(3)),
        *(pod(f"z{i}", "z") for i in range(3)),
    ]
    gateways, placeholders = both(pods, 4, 0)
    assert gateways == Marks(mark=("y0", "z0", "z1", "z2"), going=("y0", "z0", "z1", "z2"))
    assert placeholders == Marks(mark=("h0", "h1", "h2"), going=("h0", "h1", "h2"))
    # Placeholders that stay keep y full: z's three and the first of x's go.
    gateways, placeholders = both(pods, 4, None)
    assert gateways.going == ("x0", "z0", "z1", "z2") and placeholders == Marks()
    # Neither shrinks: nothing is marked, and a stale mark is taken away.
    pods[4] = pod("y0", "y", cost=LOWEST_COST)
    assert both(pods, None, None) == (Marks(unmark=("y0",)), Marks())


def test_what_no_node_can_give_whole_comes_from_the_emptiest() -> None:
    """Nodes of 1, 2 and 3 gateways, and 4 to go: b and c go whole, and a gives its newest."""
    pods = [
        pod("a1", "a", created="2026-12-01T09:00:00Z"),
        pod("a2", "a", created="2026-12-01T11:00:00Z"),
        pod("a3", "a", created="2026-12-01T10:00:00Z"),
        pod("b1", "b"),
        pod("c1", "c"),
        pod("c2", "c"),
    ]
    assert marks(pods, 2).going == ("a2", "b1", "c1", "c2")


# ---------------------------------------------------------------------------------------------
# A reconcile pass, against the API emulator


def _cloud_pods(cluster: KubeEmulatorHandle, placed: dict[str, int]) -> None:
    """Ready gateways of gateway-eu-cloud, ``placed[node]`` on each cloud node, and the cloud
    Deployment asking for all of them, its status written."""
    total = 0
    for node, count in placed.items():
        for i in range(count):
            body = pod(f"{node}-{i}", node, labels={"app": "gateway-eu-cloud"})
            cluster.create({"apiVersion": "v1", "kind": "Pod", **body})
            total += 1
    cluster.patch(
        DEPLOYMENTS, "gateway-eu-cloud", {"spec": {"replicas": total}}, namespace=NAMESPACE
    )
    cluster.patch(
        DEPLOYMENTS,
        "gateway-eu-cloud",
        {"status": {"replicas": total, "readyReplicas": total, "observedGeneration": 1}},
        namespace=NAMESPACE,
        subresource="status",
    )


def _costs(cluster: KubeEmulatorHandle) -> dict[str, str]:
    found = {}
    for item in cluster.list("v1/pods", namespace=NAMESPACE):
        cost = (item["metadata"].get("annotations") or {}).get(DELETION_COST)
        if cost is not None:
            found[item["metadata"]["name"]] = cost
    return found


def _fitted(operator: Any) -> Any:
    """``operator`` a few minutes after it started: its first pass made two minutes ago (so
    that the scale-down limit of the next is a whole minute's), and its first fit done. Until
    its first forecast an operator holds what runs, and these tests are about scale-downs."""
    reconciler = operator.reconciler
    reconciler.clock = lambda: time.time() - 120.0
    try:
        operator.run_once()
    finally:
        reconciler.clock = time.time
    for uid in list(operator.models._states):
        operator.models.wait(uid, timeout=120)
    return operator


def test_a_cloud_scale_down_marks_the_emptiest_nodes_gateways_before_it_scales(
    cluster: KubeEmulatorHandle, operator_at: Any
) -> None:
    """Eight cloud gateways, 4 on x, 1 on y and 3 on z; the load wants 16 physical and 4
    cloud. The four that go are y's and z's, marked before the scale is written, so the
    ReplicaSet empties y and z and leaves x whole."""
    add_region(cluster, "eu", replicas=16)
    cluster.create(gwa_body("eu"))
    operator = _fitted(operator_at(18_000.0))
    _cloud_pods(cluster, {"x": 4, "y": 1, "z": 3})
    order: list[str] = []
    scale, mark = operator.kube.scale_deployment, operator.kube.set_deletion_cost
    operator.kube.scale_deployment = lambda *a: (order.append(f"scale {a[1]} {a[2]}"), scale(*a))[1]
    operator.kube.set_deletion_cost = lambda *a: (order.append(f"mark {a[1]}"), mark(*a))[1]
    outcome = operator.run_once()[KEY]
    assert outcome.ok and outcome.plan is not None and outcome.plan.cloud.replicas == 4
    assert replicas(cluster, "gateway-eu-cloud") == 4
    assert _costs(cluster) == {name: LOWEST_COST for name in ("y-0", "z-0", "z-1", "z-2")}
    assert order == ["mark y-0", "mark z-0", "mark z-1", "mark z-2", "scale gateway-eu-cloud 4"]


def test_placeholders_shrinking_with_the_gateways_are_marked_from_the_same_nodes(
    cluster: KubeEmulatorHandle, operator_at: Any
) -> None:
    """The same eight gateways, and three placeholders of the object's own on y, which
    cloud.reserve false gives back. The gateways that go are y's and z's, as before, and y's
    placeholders go with them, so y and z are both left empty; every mark goes out before the
    write of the Deployment it guides."""
    add_region(cluster, "eu", replicas=16)
    body = gwa_body("eu")
    body["spec"]["cloud"]["reserve"] = False
    gwa = cluster.create(body)
    operator = _fitted(operator_at(18_000.0))
    cloud = cluster.get(DEPLOYMENTS, "gateway-eu-cloud", namespace=NAMESPACE)
    cluster.create(placeholder_deployment(gwa, cloud, 3))
    for i in range(3):
        held = placeholder(f"h{i}", "y")
        held["metadata"]["namespace"] = NAMESPACE
        cluster.create({"apiVersion": "v1", "kind": "Pod", **held})
    _cloud_pods(cluster, {"x": 4, "y": 1, "z": 3})
    order: list[str] = []
    scale, mark = operator.kube.scale_deployment, operator.kube.set_deletion_cost
    apply = operator.kube.apply_placeholder
    operator.kube.scale_deployment = lambda *a: (order.append(f"scale {a[1]} {a[2]}"), scale(*a))[1]
    operator.kube.set_deletion_cost = lambda *a: (order.append(f"mark {a[1]}"), mark(*a))[1]
    operator.kube.apply_placeholder = lambda *a: (order.append("placeholders"), apply(*a))[1]
    outcome = operator.run_once()[KEY]
    assert outcome.ok and outcome.plan is not None and outcome.plan.cloud.replicas == 4
    gone = ("y-0", "z-0", "z-1", "z-2", "h0", "h1", "h2")
    assert _costs(cluster) == dict.fromkeys(gone, LOWEST_COST)
    assert order == [
        *(f"mark {name}" for name in gone[:4]),
        "scale gateway-eu-cloud 4",
        *(f"mark {name}" for name in gone[4:]),
        "placeholders",
    ]
    found = cluster.get(DEPLOYMENTS, "gateway-eu-placeholder", namespace=NAMESPACE)
    assert found["spec"]["replicas"] == 0


def test_a_mark_that_fails_is_logged_and_the_scale_down_goes_ahead(
    cluster: KubeEmulatorHandle, operator_at: Any
) -> None:
    add_region(cluster, "eu", replicas=16)
    cluster.create(gwa_body("eu"))
    operator = _fitted(operator_at(18_000.0))
    _cloud_pods(cluster, {"x": 4, "y": 1, "z": 3})

    def refused(*_args: Any) -> None:
        raise ClusterUnavailable("patch pod: 503")

    operator.kube.set_deletion_cost = refused
    with capture_logs() as logs:
        outcome = operator.run_once()[KEY]
    assert outcome.ok and replicas(cluster, "gateway-eu-cloud") == 4
    warned = [e for e in logs if e["event"].startswith("pods not marked for removal")]
    assert [(e["deployment"], e["error"]) for e in warned] == [
        ("gateway-eu-cloud", "ClusterUnavailable: patch pod: 503")
    ]


def test_a_cloud_scale_up_marks_nothing(cluster: KubeEmulatorHandle, operator_at: Any) -> None:
    add_region(cluster, "eu", replicas=16)
    cluster.create(gwa_body("eu"))
    _cloud_pods(cluster, {"x": 2})
    operator = operator_at(22_000.0)
    assert operator.run_once()[KEY].ok
    assert replicas(cluster, "gateway-eu-cloud") > 2
    assert _costs(cluster) == {}


def test_a_physical_scale_down_marks_nothing(cluster: KubeEmulatorHandle, operator_at: Any) -> None:
    """Physical machines are paid for, full or not: emptying one saves nothing, so the
    physical pool's gateways are left to their ReplicaSet's own order."""
    add_region(cluster, "eu", replicas=16)
    body = gwa_body("eu")
    body["spec"]["physical"]["keepWarm"] = False
    cluster.create(body)
    for i in range(16):
        gateway = pod(f"p-{i}", f"eu-physical-{i % 2}", labels={"app": "gateway-eu"})
        cluster.create({"apiVersion": "v1", "kind": "Pod", **gateway})
    operator = _fitted(operator_at(5_000.0))
    assert operator.run_once()[KEY].ok
    assert replicas(cluster, "gateway-eu") < 16
    assert _costs(cluster) == {}


def test_the_kube_client_sets_and_takes_away_the_cost(cluster: KubeEmulatorHandle) -> None:
    """A merge patch of the one annotation; a pod gone meanwhile is no error."""
    cluster.create({"apiVersion": "v1", "kind": "Pod", **pod("p", "x")})
    kube = KubeClient(cluster.api_client())
    kube.set_deletion_cost("chat", "p", LOWEST_COST)
    assert _costs(cluster) == {"p": LOWEST_COST}
    kube.set_deletion_cost("chat", "p", None)
    assert _costs(cluster) == {}
    kube.set_deletion_cost("chat", "gone", LOWEST_COST)
