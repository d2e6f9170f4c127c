"""The Kubernetes API emulator, through the official client over HTTP: one test per kmock gap."""

from __future__ import annotations

import queue
import threading
from typing import Any

import kubernetes.client as k8s
import pytest
from kubernetes import config, watch

from tests.support.kube_emulator import KubeEmulatorHandle
from tests.support.kube_patches import json_patch, merge_patch, strategic_merge_patch
from tests.support.kube_selectors import SelectorError, parse_label_selector

GROUP, VERSION, PLURAL = "tidal.dev", "v1alpha1", "gatewayautoscalers"
NS = "chat"


def deployment(name: str = "gateway-eu-west", replicas: int = 2, **labels: str) -> dict[str, Any]:
    labels = {"app": name, **labels}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "gateway", "image": "gateway:1"}]},
            },
        },
    }


def gwa(name: str = "gateway-eu-west") -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "GatewayAutoscaler",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"region": "eu-west", "mode": "Scale"},
    }


def node(name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}}


@pytest.fixture
def api(kube_api: KubeEmulatorHandle) -> k8s.ApiClient:
    return kube_api.api_client()


def test_create_answers_201_with_the_stored_object(api: k8s.ApiClient) -> None:
    """POST answers 201 Created with the object as stored, which the client deserializes."""
    apps = k8s.AppsV1Api(api)
    created, status, _headers = apps.create_namespaced_deployment_with_http_info(NS, deployment())
    assert status == 201
    assert created.metadata.name == "gateway-eu-west"
    assert created.metadata.namespace == NS
    assert created.kind == "Deployment"
    assert created.metadata.creation_timestamp is not None


def test_create_generates_names_and_refuses_duplicates(api: k8s.ApiClient) -> None:
    """generateName gets a suffix (as Events use it); creating an existing name is 409."""
    core = k8s.CoreV1Api(api)
    event = {
        "metadata": {"generateName": "gateway-eu-west."},
        "involvedObject": {"kind": "GatewayAutoscaler", "name": "gateway-eu-west", "namespace": NS},
        "reason": "ScaledOut",
        "message": "physical 40 -> 44",
        "type": "Normal",
    }
    created = core.create_namespaced_event(NS, event)
    assert created.metadata.name.startswith("gateway-eu-west.")
    assert len(core.list_namespaced_event(NS).items) == 1
    k8s.AppsV1Api(api).create_namespaced_deployment(NS, deployment())
    with pytest.raises(k8s.ApiException) as error:
        k8s.AppsV1Api(api).create_namespaced_deployment(NS, deployment())
    assert error.value.status == 409


def test_version_endpoint(api: k8s.ApiClient, kube_api: KubeEmulatorHandle) -> None:
    """/version/ (the client's spelling) answers like a real server."""
    info = k8s.VersionApi(api).get_code()
    assert info.major == "1"
    assert info.git_version.startswith("v1.")
    assert [r.url.path for r in kube_api.requests()] == ["/version/"]


def test_put_replaces_the_whole_object(api: k8s.ApiClient) -> None:
    """PUT replaces: fields left out of the body are gone, and the answer is the new object."""
    apps = k8s.AppsV1Api(api)
    apps.create_namespaced_deployment(NS, deployment(team="chat"))
    current = apps.read_namespaced_deployment("gateway-eu-west", NS)
    current.metadata.labels = {"app": "gateway-eu-west"}
    current.spec.replicas = 9
    replaced = apps.replace_namespaced_deployment("gateway-eu-west", NS, current)
    assert replaced.spec.replicas == 9
    assert replaced.metadata.labels == {"app": "gateway-eu-west"}
    assert apps.read_namespaced_deployment("gateway-eu-west", NS).spec.replicas == 9


def test_put_of_a_missing_object_is_404(api: k8s.ApiClient) -> None:
    """PUT does not create (as for Deployments and Leases on a real server)."""
    with pytest.raises(k8s.ApiException) as error:
        k8s.AppsV1Api(api).replace_namespaced_deployment("absent", NS, deployment("absent"))
    assert error.value.status == 404


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("tidal.dev/pool=physical", {"phys-a", "phys-b"}),
        ("tidal.dev/pool==cloud", {"cloud-a"}),
        ("tidal.dev/pool!=physical", {"cloud-a", "bare"}),
        ("topology.kubernetes.io/region in (eu-west, us-east)", {"phys-a", "cloud-a", "phys-b"}),
        ("topology.kubernetes.io/region notin (eu-west)", {"phys-b", "bare"}),
        ("tidal.dev/pool", {"phys-a", "phys-b", "cloud-a"}),
        ("!tidal.dev/pool", {"bare"}),
        ("tidal.dev/pool=physical,topology.kubernetes.io/region=eu-west", {"phys-a"}),
    ],
    ids=["equals", "double-equals", "not-equals", "in", "notin", "exists", "not-exists", "and"],
)
def test_label_selectors_filter_lists(
    kube_api: KubeEmulatorHandle, api: k8s.ApiClient, selector: str, expected: set[str]
) -> None:
    """labelSelector filters a list with the API server's operators."""
    region = "topology.kubernetes.io/region"
    kube_api.create(node("phys-a", **{"tidal.dev/pool": "physical", region: "eu-west"}))
    kube_api.create(node("phys-b", **{"tidal.dev/pool": "physical", region: "us-east"}))
    kube_api.create(node("cloud-a", **{"tidal.dev/pool": "cloud", region: "eu-west"}))
    kube_api.create(node("bare"))
    nodes = k8s.CoreV1Api(api).list_node(label_selector=selector).items
    assert {n.metadata.name for n in nodes} == expected


def test_field_selectors_filter_pods_by_node(
    kube_api: KubeEmulatorHandle, api: k8s.ApiClient
) -> None:
    """fieldSelector spec.nodeName (and metadata.name) select pods across namespaces."""
    for name, node_name in (("a", "phys-a"), ("b", "phys-b"), ("c", None)):
        pod: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": NS, "labels": {"app": "gw"}},
            "spec": {"containers": [{"name": "c", "image": "x"}]},
            "status": {"phase": "Running"},
        }
        if node_name:
            pod["spec"]["nodeName"] = node_name
        kube_api.create(pod)
    core = k8s.CoreV1Api(api)
    on_a = core.list_pod_for_all_namespaces(field_selector="spec.nodeName=phys-a").items
    assert [p.metadata.name for p in on_a] == ["a"]
    unscheduled = core.list_namespaced_pod(NS, field_selector="spec.nodeName=").items
    assert [p.metadata.name for p in unscheduled] == ["c"]
    named = core.list_namespaced_pod(NS, field_selector="metadata.name!=a,status.phase=Running")
    assert [p.metadata.name for p in named.items] == ["b", "c"]


def test_namespaces_list_and_read(kube_api: KubeEmulatorHandle, api: k8s.ApiClient) -> None:
    """The namespaces collection (which kmock's parser cannot read) lists with selectors."""
    core = k8s.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": NS, "labels": {"team": "chat"}}})
    kube_api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other"}})
    assert [n.metadata.name for n in core.list_namespace().items] == [NS, "other"]
    assert [n.metadata.name for n in core.list_namespace(label_selector="team=chat").items] == [NS]
    assert core.read_namespace("other").metadata.uid


def test_kmock_reactions_still_inject_faults(
    kube_api: KubeEmulatorHandle, api: k8s.ApiClient
) -> None:
    """kmock's DSL keeps priority over the emulation, for outage scenarios."""
    kube_api.create(node("phys-a"))
    kube_api.on_loop(lambda emulator: emulator["get /api/v1/nodes"] << 503)
    with pytest.raises(k8s.ApiException) as error:
        k8s.CoreV1Api(api).list_node()
    assert error.value.status == 503
    assert k8s.CoreV1Api(api).read_node("phys-a").metadata.name == "phys-a"


def test_bad_selector_is_400(api: k8s.ApiClient) -> None:
    """An unparsable selector is refused, not ignored."""
    with pytest.raises(k8s.ApiException) as error:
        k8s.CoreV1Api(api).list_node(label_selector="a in (b")
    assert error.value.status == 400


def test_uid_generation_and_resource_version(api: k8s.ApiClient) -> None:
    """uid is set once; resourceVersion moves on every write; generation only on spec changes."""
    apps = k8s.AppsV1Api(api)
    created = apps.create_namespaced_deployment(NS, deployment())
    uid, rv = created.metadata.uid, int(created.metadata.resource_version)
    assert uid and created.metadata.generation == 1

    relabelled = apps.patch_namespaced_deployment(
        "gateway-eu-west", NS, {"metadata": {"labels": {"tier": "physical"}}}
    )
    assert relabelled.metadata.generation == 1
    assert int(relabelled.metadata.resource_version) > rv

    status = apps.patch_namespaced_deployment_status(
        "gateway-eu-west", NS, {"status": {"readyReplicas": 1}}
    )
    assert status.metadata.generation == 1
    assert int(status.metadata.resource_version) > int(relabelled.metadata.resource_version)

    rescaled = apps.patch_namespaced_deployment("gateway-eu-west", NS, {"spec": {"replicas": 4}})
    assert rescaled.metadata.generation == 2
    assert rescaled.metadata.uid == uid


def test_scale_subresource_drives_spec_replicas(api: k8s.ApiClient) -> None:
    """Reading, patching and replacing deployments/x/scale works on spec.replicas."""
    apps = k8s.AppsV1Api(api)
    apps.create_namespaced_deployment(NS, deployment(replicas=3))
    scale = apps.read_namespaced_deployment_scale("gateway-eu-west", NS)
    assert (scale.kind, scale.spec.replicas, scale.status.selector) == (
        "Scale",
        3,
        "app=gateway-eu-west",
    )

    patched = apps.patch_namespaced_deployment_scale(
        "gateway-eu-west", NS, {"spec": {"replicas": 40}}
    )
    assert patched.spec.replicas == 40
    stored = apps.read_namespaced_deployment("gateway-eu-west", NS)
    assert stored.spec.replicas == 40
    assert stored.metadata.generation == 2
    assert stored.status.ready_replicas == 40  # the simulated Deployment controller

    scale = apps.read_namespaced_deployment_scale("gateway-eu-west", NS)
    scale.spec.replicas = 12
    replaced = apps.replace_namespaced_deployment_scale("gateway-eu-west", NS, scale)
    assert replaced.spec.replicas == 12
    assert replaced.status.replicas == 12
    assert apps.read_namespaced_deployment("gateway-eu-west", NS).spec.replicas == 12


def test_scale_refuses_negative_replicas(api: k8s.ApiClient) -> None:
    """A negative replica count is 422, and the Deployment is left as it was."""
    apps = k8s.AppsV1Api(api)
    apps.create_namespaced_deployment(NS, deployment(replicas=3))
    with pytest.raises(k8s.ApiException) as error:
        apps.patch_namespaced_deployment_scale("gateway-eu-west", NS, {"spec": {"replicas": -1}})
    assert error.value.status == 422
    assert apps.read_namespaced_deployment("gateway-eu-west", NS).spec.replicas == 3


def test_status_subresource_of_the_custom_resource(api: k8s.ApiClient) -> None:
    """/status writes change only the status, main-resource writes never the status."""
    custom = k8s.CustomObjectsApi(api)
    custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, gwa())
    written = custom.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        NS,
        PLURAL,
        "gateway-eu-west",
        {"spec": {"mode": "Paused"}, "status": {"observedGeneration": 1, "desiredReplicas": 51}},
    )
    assert written["status"] == {"observedGeneration": 1, "desiredReplicas": 51}
    assert written["spec"]["mode"] == "Scale"
    assert written["metadata"]["generation"] == 1

    changed = custom.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        NS,
        PLURAL,
        "gateway-eu-west",
        {"spec": {"mode": "ForecastOnly"}, "status": {"desiredReplicas": 0}},
    )
    assert changed["spec"]["mode"] == "ForecastOnly"
    assert changed["status"]["desiredReplicas"] == 51
    assert changed["metadata"]["generation"] == 2

    whole = custom.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "gateway-eu-west")
    whole["status"] = {"desiredReplicas": 7}
    replaced = custom.replace_namespaced_custom_object_status(
        GROUP, VERSION, NS, PLURAL, "gateway-eu-west", whole
    )
    assert replaced["status"] == {"desiredReplicas": 7}
    assert replaced["metadata"]["generation"] == 2


def test_strategic_merge_patch_is_refused_on_custom_resources(api: k8s.ApiClient) -> None:
    """Like a real server: 415 for a strategic merge patch on a custom resource."""
    custom = k8s.CustomObjectsApi(api)
    custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, gwa())
    with pytest.raises(k8s.ApiException) as error:
        custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            NS,
            PLURAL,
            "gateway-eu-west",
            {"spec": {"mode": "Paused"}},
            _content_type="application/strategic-merge-patch+json",
        )
    assert error.value.status == 415


def test_patch_content_types_on_deployments(api: k8s.ApiClient) -> None:
    """Strategic merge merges containers by name, JSON patch applies operations."""
    apps = k8s.AppsV1Api(api)
    apps.create_namespaced_deployment(NS, deployment())
    sidecar = {"name": "sidecar", "image": "proxy:1"}
    patched = apps.patch_namespaced_deployment(
        "gateway-eu-west", NS, {"spec": {"template": {"spec": {"containers": [sidecar]}}}}
    )
    assert [c.name for c in patched.spec.template.spec.containers] == ["gateway", "sidecar"]
    patched = apps.patch_namespaced_deployment(
        "gateway-eu-west",
        NS,
        [
            {"op": "replace", "path": "/spec/replicas", "value": 5},
            {"op": "remove", "path": "/spec/template/spec/containers/1"},
        ],
    )
    assert patched.spec.replicas == 5
    assert [c.name for c in patched.spec.template.spec.containers] == ["gateway"]


def test_lease_optimistic_concurrency(api: k8s.ApiClient) -> None:
    """Lease replace with the current resourceVersion wins; with a stale one it is 409."""
    coordination = k8s.CoordinationV1Api(api)
    lease = k8s.V1Lease(
        metadata=k8s.V1ObjectMeta(name="tidal-leader", namespace=NS),
        spec=k8s.V1LeaseSpec(holder_identity="a", lease_duration_seconds=15),
    )
    coordination.create_namespaced_lease(NS, lease)
    first = coordination.read_namespaced_lease("tidal-leader", NS)
    second = coordination.read_namespaced_lease("tidal-leader", NS)

    first.spec.holder_identity = "a"
    first.spec.lease_transitions = 1
    renewed = coordination.replace_namespaced_lease("tidal-leader", NS, first)
    assert renewed.metadata.resource_version != first.metadata.resource_version

    second.spec.holder_identity = "b"
    with pytest.raises(k8s.ApiException) as error:
        coordination.replace_namespaced_lease("tidal-leader", NS, second)
    assert error.value.status == 409
    assert coordination.read_namespaced_lease("tidal-leader", NS).spec.holder_identity == "a"


def test_watch_streams_changes_of_the_custom_resource(
    kube_api: KubeEmulatorHandle, api: k8s.ApiClient
) -> None:
    """A watch sends the current objects, then changes, and ends at timeoutSeconds."""
    custom = k8s.CustomObjectsApi(api)
    custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, gwa("first"))
    events: queue.Queue[tuple[str, str, int]] = queue.Queue()

    def consume() -> None:
        stream = watch.Watch().stream(
            custom.list_namespaced_custom_object, GROUP, VERSION, NS, PLURAL, timeout_seconds=2
        )
        for event in stream:
            meta = event["object"]["metadata"]
            events.put((event["type"], meta["name"], meta["generation"]))

    consumer = threading.Thread(target=consume, daemon=True)
    consumer.start()
    assert events.get(timeout=5) == ("ADDED", "first", 1)
    custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, gwa("second"))
    assert events.get(timeout=5) == ("ADDED", "second", 1)
    kube_api.patch(
        f"{GROUP}/{VERSION}/{PLURAL}", "first", {"spec": {"mode": "Paused"}}, namespace=NS
    )
    assert events.get(timeout=5) == ("MODIFIED", "first", 2)
    custom.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "second")
    assert events.get(timeout=5)[:2] == ("DELETED", "second")
    consumer.join(10)
    assert not consumer.is_alive()


def test_delete_collects_owned_objects(kube_api: KubeEmulatorHandle, api: k8s.ApiClient) -> None:
    """Deleting an owner garbage-collects the objects whose ownerReferences name it."""
    owner = kube_api.create(gwa())
    placeholder = deployment("gateway-eu-west-placeholder")
    placeholder["metadata"]["ownerReferences"] = [
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "GatewayAutoscaler",
            "name": "gateway-eu-west",
            "uid": owner["metadata"]["uid"],
            "controller": True,
        }
    ]
    kube_api.create(placeholder)
    k8s.CustomObjectsApi(api).delete_namespaced_custom_object(
        GROUP, VERSION, NS, PLURAL, "gateway-eu-west"
    )
    assert not kube_api.exists("apps/v1/deployments", "gateway-eu-west-placeholder", namespace=NS)


def test_kubeconfig_points_at_the_emulator(kube_api: KubeEmulatorHandle, tmp_path: Any) -> None:
    """Code that loads a kubeconfig (``tidal run``) reaches the emulator."""
    kube_api.create(node("phys-a"))
    path = kube_api.write_kubeconfig(tmp_path / "kubeconfig")
    with config.new_client_from_config(config_file=str(path)) as client:
        assert [n.metadata.name for n in k8s.CoreV1Api(client).list_node().items] == ["phys-a"]


def test_handle_helpers_share_the_servers_rules(kube_api: KubeEmulatorHandle) -> None:
    """Seeding, patching and listing through the handle follow the same rules as HTTP."""
    kube_api.create(deployment(replicas=2))
    kube_api.patch(
        "apps/v1/deployments",
        "gateway-eu-west",
        {"status": {"readyReplicas": 1}},
        namespace=NS,
        subresource="status",
    )
    stored = kube_api.get("apps/v1/deployments", "gateway-eu-west", namespace=NS)
    assert stored["status"]["readyReplicas"] == 1
    assert stored["metadata"]["generation"] == 1
    assert kube_api.list("apps/v1/deployments", label_selector="app=gateway-eu-west")
    with pytest.raises(KeyError):
        kube_api.get("apps/v1/deployments", "absent", namespace=NS)


# -- the support modules' pure parts -------------------------------------------------------


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        ({"a": None}, {"b": {"c": 1}}),
        ({"b": {"d": 2}}, {"a": [1, 2], "b": {"c": 1, "d": 2}}),
        ({"a": [3]}, {"a": [3], "b": {"c": 1}}),
    ],
    ids=["null-deletes", "dicts-merge", "lists-replace"],
)
def test_merge_patch(patch: dict[str, Any], expected: dict[str, Any]) -> None:
    """RFC 7386 semantics."""
    assert merge_patch({"a": [1, 2], "b": {"c": 1}}, patch) == expected


def test_strategic_merge_patch_deletes_by_merge_key() -> None:
    """``$patch: delete`` removes a list element by its merge key; finalizers merge as a set."""
    target = {"metadata": {"finalizers": ["a"]}, "containers": [{"name": "x"}, {"name": "y"}]}
    patch = {"metadata": {"finalizers": ["b"]}, "containers": [{"name": "x", "$patch": "delete"}]}
    assert strategic_merge_patch(target, patch) == {
        "metadata": {"finalizers": ["a", "b"]},
        "containers": [{"name": "y"}],
    }


def test_json_patch_test_operation_guards() -> None:
    """A failing ``test`` operation refuses the whole patch."""
    with pytest.raises(ValueError, match="test operation failed"):
        json_patch({"a": 1}, [{"op": "test", "path": "/a", "value": 2}])


def test_selector_syntax_errors() -> None:
    """Unbalanced parentheses are a SelectorError, not a silent match-all."""
    with pytest.raises(SelectorError):
        parse_label_selector("a in (b")
