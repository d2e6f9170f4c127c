"""The Kubernetes adapter's own calls (controller.operator.kube) against the API emulator: where a
client's configuration comes from and what a kubeconfig that cannot be loaded says, how each API
refusal is translated, and what each call reads or writes."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config
from kubernetes.config import kube_config

from controller.operator import kube as kube_module
from controller.operator.errors import (
    ClusterUnavailable,
    Conflict,
    KubeconfigInvalid,
    OperatorError,
)
from controller.operator.kube import (
    KubeClient,
    api_client_from_settings,
    placeholder_deployment,
    slim_pod,
)
from controller.operator.settings import OperatorSettings
from controller.spec import GROUP, KIND, VERSION
from tests.support.kube_emulator import KubeEmulatorHandle, TidalKubeEmulator

GWAS = f"{GROUP}/{VERSION}/gatewayautoscalers"
DEPLOYMENTS = "apps/v1/deployments"
LEASES = "coordination.k8s.io/v1/leases"
EVENTS = "v1/events"
GWAS_PATH = f"/apis/{GROUP}/{VERSION}/gatewayautoscalers"


@pytest.fixture(autouse=True)
def no_cluster_around(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Not in a pod, no $KUBECONFIG or ``TIDAL_*`` variable, and a home without ~/.kube (the
    client's default path is read once, at import: make it the plain one)."""
    for name in ("KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT", "KUBECONFIG"):
        monkeypatch.delenv(name, raising=False)
    for name in list(os.environ):
        if name.startswith("TIDAL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    default_location(monkeypatch, "~/.kube/config")


def default_location(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    """The client's default kubeconfig path(s), as $KUBECONFIG at import would have set them."""
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", value)
    monkeypatch.setattr(config, "KUBE_CONFIG_DEFAULT_LOCATION", value)


def kubeconfig_body(server: str = "http://127.0.0.1:1", **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    body.update(changes)
    return body


def write(path: Path, body: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body if isinstance(body, str) else yaml.safe_dump(body), encoding="utf-8")
    return path


def problem(**settings: Any) -> str:
    """The message of the KubeconfigInvalid that loading ``settings`` raises (one line)."""
    with pytest.raises(KubeconfigInvalid) as error:
        api_client_from_settings(OperatorSettings(**settings))
    message = str(error.value)
    assert "\n" not in message
    return message


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def gwa(name: str, namespace: str, **status: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"region": "eu"},
    }
    if status:
        body["status"] = status
    return body


def deployment(name: str, namespace: str, replicas: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "gateway"}]},
            },
        },
    }


def pod(name: str, phase: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "chat"},
        "spec": {"containers": [{"name": "c", "image": "gateway"}]},
        "status": {"phase": phase},
    }


def lease(name: str, holder: str) -> dict[str, Any]:
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15},
    }


def answer(kube: KubeEmulatorHandle, route: str, *reply: Any) -> None:
    """Make the emulator answer ``route`` (``"get /api/v1/nodes"``) with ``reply`` (a status,
    then a body) from now on."""

    def inject(emulator: TidalKubeEmulator) -> None:
        reaction = emulator[route]
        for part in reply:
            reaction = reaction << part

    kube.on_loop(inject)


# --- Where the configuration comes from -----------------------------------------------------


@pytest.mark.parametrize("in_pod", [False, True], ids=["outside-a-pod", "in-a-pod"])
def test_a_kubeconfig_points_the_client_at_its_server(
    kube_api: KubeEmulatorHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, in_pod: bool
) -> None:
    """--kubeconfig is loaded into the client's own configuration, also in a pod (the flag wins
    over the in-cluster config); the library's global default is left alone."""
    if in_pod:
        monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    kube_api.create(gwa("gw", "chat"))
    path = kube_api.write_kubeconfig(tmp_path / "config")
    api = api_client_from_settings(OperatorSettings(kubeconfig=str(path)))
    try:
        assert api.configuration.host == kube_api.url
        assert [o["metadata"]["name"] for o in KubeClient(api).list_autoscalers()] == ["gw"]
        assert client.Configuration.get_default_copy().host != kube_api.url
    finally:
        api.close()


def test_in_a_pod_without_a_kubeconfig_the_in_cluster_config_is_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """KUBERNETES_SERVICE_HOST set and no --kubeconfig: the in-cluster config is what is loaded,
    and what it lacks is said so."""
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    message = problem()
    assert message.startswith("in-cluster config (KUBERNETES_SERVICE_HOST is set): "), message


def test_kubeconfig_paths_all_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """$KUBECONFIG naming files none of which exists: the variable and its value."""
    value = os.pathsep.join([str(tmp_path / "a"), "", str(tmp_path / "b")])
    monkeypatch.setenv("KUBECONFIG", value)
    default_location(monkeypatch, value)
    assert problem() == f"KUBECONFIG {value}: no such file"


def test_contexts_are_read_from_the_kubeconfig_paths_that_exist(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """$KUBECONFIG with a missing file first and a real one after: an unknown context lists the
    contexts of the file there is."""
    there = write(tmp_path / "there", kubeconfig_body())
    value = os.pathsep.join([str(tmp_path / "missing"), str(there)])
    monkeypatch.setenv("KUBECONFIG", value)
    default_location(monkeypatch, value)
    assert problem(kube_context="nope") == (
        f"--kube-context nope: no such context in KUBECONFIG {value} (contexts: x)"
    )


def test_the_default_kubeconfig_that_is_not_yaml(tmp_path: Path) -> None:
    """No flag, no variable, a ~/.kube/config that does not parse: the default path, named as
    the client spells it, and the parser's complaint."""
    write(tmp_path / "home" / ".kube" / "config", "garbage: [\n")
    assert problem().startswith("kubeconfig ~/.kube/config: not valid YAML: ")


@pytest.mark.parametrize(
    ("changes", "context", "expected"),
    [
        ({"current-context": None}, None, "current-context"),
        ({"contexts": [{"name": "x", "context": {"cluster": "zz", "user": "u"}}]}, "x", "zz"),
    ],
    ids=["no-current-context", "context-naming-no-cluster"],
)
def test_a_kubeconfig_the_client_refuses_is_named_with_its_reason(
    tmp_path: Path, changes: dict[str, Any], context: str | None, expected: str
) -> None:
    """A file that parses but that the client cannot use, with no context asked or the one
    asked present: the flag and path, then the client's reason (not a context problem)."""
    path = write(tmp_path / "config", kubeconfig_body(**changes))
    message = problem(kubeconfig=str(path), kube_context=context)
    assert message.startswith(f"--kubeconfig {path}: "), message
    assert expected in message and "--kube-context" not in message


@pytest.mark.parametrize(
    "document",
    ["- 1\n", "hello\n", "5\n", "contexts: 5\n", "current-context: 5\ncontexts: [1]\n"],
    ids=["a-list", "a-word", "a-number", "contexts-a-number", "contexts-of-numbers"],
)
def test_a_yaml_document_that_is_no_kubeconfig_is_one_line_naming_the_flag(
    tmp_path: Path, document: str
) -> None:
    """Valid YAML of the wrong shape, which the client fails on with a TypeError of its own:
    refused as a kubeconfig that cannot be loaded, naming the flag and path, not a traceback."""
    path = write(tmp_path / "config", document)
    message = problem(kubeconfig=str(path))
    assert message.startswith(f"--kubeconfig {path}: not a kubeconfig: "), message


@pytest.mark.parametrize(
    ("contexts", "known"),
    [
        ([], "none"),
        (["junk", {"context": {}}, {"name": "x", "context": {"cluster": "c", "user": "u"}}], "x"),
    ],
    ids=["no-contexts", "unnamed-entries-skipped"],
)
def test_an_unknown_context_lists_the_named_ones(
    tmp_path: Path, contexts: list[Any], known: str
) -> None:
    """The contexts listed are the entries with a name; none at all says ``none``."""
    path = write(tmp_path / "config", kubeconfig_body(contexts=contexts))
    assert problem(kubeconfig=str(path), kube_context="nope") == (
        f"--kube-context nope: no such context in --kubeconfig {path} (contexts: {known})"
    )


@pytest.mark.parametrize(
    ("document", "ending"),
    [(None, "no such file"), ("garbage: [\n", "not valid YAML: ")],
    ids=["missing", "not-yaml"],
)
def test_a_kubeconfig_from_the_environment_is_named_by_its_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, document: str | None, ending: str
) -> None:
    """TIDAL_KUBECONFIG is named as the variable it was given as, not as a flag nobody typed;
    the same path passed in (``--kubeconfig``, which wins over the variable) is the flag."""
    path = tmp_path / "config"
    if document is not None:
        write(path, document)
    monkeypatch.setenv("TIDAL_KUBECONFIG", str(path))
    assert problem().startswith(f"TIDAL_KUBECONFIG {path}: {ending}")
    assert problem(kubeconfig=str(path)).startswith(f"--kubeconfig {path}: {ending}")


def test_a_context_from_the_environment_is_named_by_its_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """TIDAL_KUBE_CONTEXT that the file lacks: the variable, and the kubeconfig as given."""
    path = write(tmp_path / "config", kubeconfig_body())
    monkeypatch.setenv("TIDAL_KUBECONFIG", str(path))
    monkeypatch.setenv("TIDAL_KUBE_CONTEXT", "nope")
    assert problem() == (
        f"TIDAL_KUBE_CONTEXT nope: no such context in TIDAL_KUBECONFIG {path} (contexts: x)"
    )
    assert problem(kube_context="nope", kubeconfig=str(path)) == (
        f"--kube-context nope: no such context in --kubeconfig {path} (contexts: x)"
    )


# --- How refusals are translated ------------------------------------------------------------

LIST = "list gatewayautoscalers"


@pytest.mark.parametrize(
    ("reply", "kind", "message"),
    [
        ((408, {"message": "too slow"}), ClusterUnavailable, f"{LIST}: 408 too slow"),
        ((429, {"message": "slow down"}), ClusterUnavailable, f"{LIST}: 429 slow down"),
        ((500, {"message": "etcd gone"}), ClusterUnavailable, f"{LIST}: 500 etcd gone"),
        ((502, b"<html>bad gateway</html>"), ClusterUnavailable, f"{LIST}: 502 Bad Gateway"),
        ((409, {"message": "modified"}), Conflict, f"{LIST}: 409 modified"),
        ((403, {"message": "RBAC says no"}), OperatorError, f"{LIST}: 403 RBAC says no"),
        ((403, b""), OperatorError, f"{LIST}: 403 Forbidden"),
        ((403, {"kind": "Status"}), OperatorError, f"{LIST}: 403 Forbidden"),
        ((400, [1, 2]), OperatorError, f"{LIST}: 400 Bad Request"),
        ((404, {"message": "no such kind"}), OperatorError, f"{LIST}: 404 no such kind"),
        ((407, {"message": "proxy"}), OperatorError, f"{LIST}: 407 proxy"),
        ((499, {"message": "closed"}), OperatorError, f"{LIST}: 499 closed"),
    ],
    ids=[
        "408",
        "429",
        "500",
        "502-not-json",
        "409",
        "403",
        "403-no-body",
        "403-no-message",
        "400-not-an-object",
        "404",
        "407",
        "499",
    ],
)
def test_refusals_are_translated_by_status(
    kube_api: KubeEmulatorHandle,
    reply: tuple[Any, ...],
    kind: type[OperatorError],
    message: str,
) -> None:
    """Timeouts, 429 and 5xx may pass (transient); 409 is a Conflict; any other refusal is a
    permanent error. Each names the call, the status, and the server's message (its reason when
    the body has none)."""
    answer(kube_api, f"get {GWAS_PATH}", *reply)
    with pytest.raises(OperatorError) as error:
        KubeClient(kube_api.api_client()).list_autoscalers()
    assert type(error.value) is kind
    assert str(error.value) == message
    assert error.value.transient is (kind is not OperatorError)


def test_an_api_server_that_does_not_answer_is_transient() -> None:
    """Nothing listening: the call fails as ClusterUnavailable, naming it."""
    configuration = client.Configuration()
    configuration.host = f"http://127.0.0.1:{closed_port()}"
    configuration.retries = 0
    kube = KubeClient(client.ApiClient(configuration), timeout=2.0)
    with pytest.raises(ClusterUnavailable, match=r"^read lease default/l: "):
        kube.read_lease("default", "l")


def test_a_missing_object_is_none_only_where_the_call_allows_it(
    kube_api: KubeEmulatorHandle,
) -> None:
    """A Lease or a GWA status gone is no error; scaling a Deployment that is not there is a
    permanent one; a 503 is never taken for a missing object."""
    kube = KubeClient(kube_api.api_client())
    assert kube.read_lease("default", "nobody") is None
    kube.patch_status("chat", "gone", {"phase": "x"})
    assert not kube_api.exists(GWAS, "gone", namespace="chat")
    with pytest.raises(OperatorError, match=r"^scale deployment chat/gw to 3: 404 ") as error:
        kube.scale_deployment("chat", "gw", 3)
    assert type(error.value) is OperatorError
    kube_api.refuse("GET", "/apis/coordination.k8s.io/v1/namespaces/default/leases/nobody")
    with pytest.raises(ClusterUnavailable, match=r"^read lease default/nobody: 503 "):
        kube.read_lease("default", "nobody")


# --- What each call reads and writes --------------------------------------------------------


def test_autoscalers_are_listed_cluster_wide_or_from_each_namespace(
    kube_api: KubeEmulatorHandle,
) -> None:
    """No namespaces: every GWA; namespaces given: theirs only, namespace by namespace."""
    for name, namespace in [("a1", "a"), ("b1", "b"), ("c1", "c"), ("a2", "a")]:
        kube_api.create(gwa(name, namespace))
    kube = KubeClient(kube_api.api_client())

    def names(found: list[dict[str, Any]]) -> list[str]:
        return [o["metadata"]["name"] for o in found]

    assert sorted(names(kube.list_autoscalers())) == ["a1", "a2", "b1", "c1"]
    assert names(kube.list_autoscalers(["b", "a"])) == ["b1", "a1", "a2"]
    assert names(kube.list_autoscalers(("empty",))) == []


@pytest.mark.parametrize(
    ("namespaces", "route"),
    [
        ((), f"get {GWAS_PATH}"),
        (("a",), f"get /apis/{GROUP}/{VERSION}/namespaces/a/gatewayautoscalers"),
    ],
    ids=["cluster-wide", "namespaced"],
)
def test_an_empty_answer_is_an_empty_list(
    kube_api: KubeEmulatorHandle, namespaces: tuple[str, ...], route: str
) -> None:
    """A 200 without a body lists nothing rather than failing to parse."""
    answer(kube_api, route, 200, b"")
    assert KubeClient(kube_api.api_client()).list_autoscalers(namespaces) == []


def test_status_is_merge_patched(kube_api: KubeEmulatorHandle) -> None:
    """patch_status writes the keys it names and keeps the others and the spec."""
    kube_api.create(gwa("gw", "chat", observedGeneration=1, phase="Old"))
    KubeClient(kube_api.api_client()).patch_status("chat", "gw", {"phase": "New"})
    stored = kube_api.get(GWAS, "gw", namespace="chat")
    assert stored["status"] == {"observedGeneration": 1, "phase": "New"}
    assert stored["spec"] == {"region": "eu"}


@pytest.mark.parametrize(
    ("namespaces", "deployments"),
    [
        ((), [("chat", "gw"), ("other", "gw"), ("third", "x")]),
        (("other", "chat"), [("chat", "gw"), ("other", "gw")]),
    ],
    ids=["cluster-wide", "watched-namespaces"],
)
def test_a_snapshot_reads_nodes_running_pods_and_deployments(
    kube_api: KubeEmulatorHandle,
    namespaces: tuple[str, ...],
    deployments: list[tuple[str, str]],
) -> None:
    """Nodes and pods cluster-wide, finished pods left out; Deployments where watched, by
    namespace and name."""
    kube_api.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}})
    for name, phase in [
        ("p1", "Running"),
        ("p2", "Pending"),
        ("p3", "Succeeded"),
        ("p4", "Failed"),
    ]:
        kube_api.create(pod(name, phase))
    for namespace, name in [("chat", "gw"), ("other", "gw"), ("third", "x")]:
        kube_api.create(deployment(name, namespace))
    snap = KubeClient(kube_api.api_client()).snapshot(namespaces)
    assert [n["metadata"]["name"] for n in snap.nodes] == ["n1"]
    assert sorted(p["metadata"]["name"] for p in snap.pods) == ["p1", "p2"]
    assert sorted(snap.deployments) == deployments
    for namespace, name in deployments:
        found = snap.deployment(namespace, name)
        assert found is not None and found["metadata"]["namespace"] == namespace


def test_pods_are_read_a_page_at_a_time_and_all_of_them_kept(
    kube_api: KubeEmulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A large cluster's pods come in pages that follow the API server's continue token to
    the end: none lost, none read twice, and finished ones still left out."""
    monkeypatch.setattr(kube_module, "POD_PAGE", 2)
    names = [f"p{i}" for i in range(7)]
    for name in names:
        kube_api.create(pod(name, "Running"))
    kube_api.create(pod("done", "Succeeded"))
    snap = KubeClient(kube_api.api_client()).snapshot()
    assert sorted(p["metadata"]["name"] for p in snap.pods) == names
    pages = [r for r in kube_api.requests() if r.method == "GET" and r.url.path == "/api/v1/pods"]
    assert [r.params.get("limit") for r in pages] == ["2"] * 4
    assert [r.params.get("continue") for r in pages] == [None, "2", "4", "6"]


def test_a_continue_token_given_twice_ends_the_read(kube_api: KubeEmulatorHandle) -> None:
    """A server or proxy that answers a page with a token it gave before would page forever,
    the pods growing in memory: the read stops at the repeat and says so (the pass retries)."""
    kube = KubeClient(kube_api.api_client())
    pages: list[dict[str, Any]] = []

    class Response:
        def __init__(self, body: dict[str, Any]) -> None:
            self.data = json.dumps(body).encode()

    def list_pods(**kwargs: Any) -> Response:
        pages.append(kwargs)
        token = "b" if kwargs.get("_continue") == "a" else "a"
        return Response({"metadata": {"continue": token}, "items": [pod("p", "Running")]})

    kube.core = type("Core", (), {"list_pod_for_all_namespaces": staticmethod(list_pods)})()
    with pytest.raises(ClusterUnavailable, match="list pods: continue token 'a' came twice"):
        kube._list_pods()
    assert [page.get("_continue") for page in pages] == [None, "a", "b"]


def test_a_listed_pod_keeps_what_tidal_reads_and_drops_the_rest() -> None:
    """What capacity, drain and the placeholders read stays (requests, ports, affinity, node,
    labels, the deletion cost, readiness, owner and deletion marks); managed fields, volumes,
    environments, probes, container statuses and kubectl's last applied copy go."""
    kept_container = {
        "name": "gw",
        "image": "gateway:1",
        "resources": {"requests": {"cpu": "1"}, "limits": {"memory": "1Gi"}},
        "ports": [{"containerPort": 8080, "hostPort": 8080}],
    }
    heavy = {
        "env": [{"name": "A", "value": "b"}],
        "envFrom": [{"configMapRef": {"name": "c"}}],
        "volumeMounts": [{"name": "v", "mountPath": "/v"}],
        "command": ["gw"],
        "args": ["--x"],
        "livenessProbe": {"httpGet": {"port": 8080}},
        "readinessProbe": {"httpGet": {"port": 8080}},
        "startupProbe": {"httpGet": {"port": 8080}},
        "lifecycle": {"preStop": {"exec": {"command": ["sleep"]}}},
    }
    kept_meta = {
        "name": "p",
        "namespace": "chat",
        "labels": {"app": "gw"},
        "ownerReferences": [{"kind": "ReplicaSet", "name": "gw-1", "uid": "u"}],
        "deletionTimestamp": "2024-05-01T10:00:00Z",
        "creationTimestamp": "2024-05-01T09:00:00Z",
    }
    kept_status = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
    full = {
        "metadata": {
            **kept_meta,
            "annotations": {
                "controller.kubernetes.io/pod-deletion-cost": "-5",
                "kubectl.kubernetes.io/last-applied-configuration": "{...}",
            },
            "managedFields": [{"manager": "kubectl"}],
        },
        "spec": {
            "nodeName": "n1",
            "affinity": {"podAntiAffinity": {}},
            "overhead": {"cpu": "100m"},
            "containers": [{**kept_container, **heavy}],
            "initContainers": [{**kept_container, **heavy}],
            "volumes": [{"name": "v", "emptyDir": {}}],
        },
        "status": {
            **kept_status,
            "containerStatuses": [{"name": "gw", "ready": True}],
            "initContainerStatuses": [{"name": "gw", "ready": True}],
        },
    }
    assert slim_pod(full) == {
        "metadata": {
            **kept_meta,
            "annotations": {"controller.kubernetes.io/pod-deletion-cost": "-5"},
        },
        "spec": {
            "nodeName": "n1",
            "affinity": {"podAntiAffinity": {}},
            "overhead": {"cpu": "100m"},
            "containers": [kept_container],
            "initContainers": [kept_container],
        },
        "status": kept_status,
    }
    assert slim_pod({"metadata": None, "spec": {"containers": None}}) == {
        "metadata": None,
        "spec": {"containers": None},
    }


@pytest.mark.parametrize(
    "route",
    ["get /api/v1/nodes", "get /api/v1/pods", "get /apis/apps/v1/deployments"],
    ids=["nodes", "pods", "deployments"],
)
def test_an_empty_read_in_a_snapshot_is_nothing(kube_api: KubeEmulatorHandle, route: str) -> None:
    """A list answered with an object without items is an empty list."""
    kube_api.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}})
    kube_api.create(pod("p1", "Running"))
    kube_api.create(deployment("gw", "chat"))
    answer(kube_api, route, {"kind": "List", "items": None})
    snap = KubeClient(kube_api.api_client()).snapshot()
    counts = {
        "nodes": len(snap.nodes),
        "pods": len(snap.pods),
        "deployments": len(snap.deployments),
    }
    assert sorted(k for k, v in counts.items() if v == 0) == [route.rsplit("/", 1)[1]]


def test_scaling_writes_the_replicas(kube_api: KubeEmulatorHandle) -> None:
    """scale_deployment sets spec.replicas through the scale subresource."""
    kube_api.create(deployment("gw", "chat", replicas=2))
    KubeClient(kube_api.api_client()).scale_deployment("chat", "gw", 5)
    assert kube_api.get(DEPLOYMENTS, "gw", namespace="chat")["spec"]["replicas"] == 5


EVENT_SOURCE = {
    "metadata": {"name": "gw", "namespace": "chat", "uid": "u1", "resourceVersion": "7"}
}


def events(kube: KubeEmulatorHandle) -> list[dict[str, Any]]:
    return kube.list(EVENTS, namespace="chat")


def test_an_event_names_its_object_once(kube_api: KubeEmulatorHandle) -> None:
    """A Normal event by default, counted once, about the GWA (kind, uid, resourceVersion), in
    its namespace, from the component and instance given."""
    kube = KubeClient(kube_api.api_client())
    kube.create_event(EVENT_SOURCE, reason="Scaled", message="to 5", instance="op-a")
    (event,) = events(kube_api)
    assert event["metadata"]["name"].startswith("gw.")
    assert event["involvedObject"] == {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "name": "gw",
        "namespace": "chat",
        "uid": "u1",
        "resourceVersion": "7",
    }
    assert (event["type"], event["reason"], event["message"], event["count"]) == (
        "Normal",
        "Scaled",
        "to 5",
        1,
    )
    assert event["source"] == {"component": "tidal-operator"}
    assert (event["reportingComponent"], event["reportingInstance"]) == (
        f"{GROUP}/operator",
        "op-a",
    )
    assert event["firstTimestamp"] == event["lastTimestamp"]


@pytest.mark.parametrize(
    ("length", "kept"), [(1023, 1023), (1024, 1024), (1025, 1024), (5000, 1024)]
)
def test_an_event_message_is_cut_at_1024(
    kube_api: KubeEmulatorHandle, length: int, kept: int
) -> None:
    """A long message is cut to its first 1024 characters; a warning says so in its type."""
    message = "".join(str(i % 10) for i in range(length))
    KubeClient(kube_api.api_client()).create_event(
        EVENT_SOURCE, reason="Failed", message=message, warning=True
    )
    (event,) = events(kube_api)
    assert (event["type"], event["message"]) == ("Warning", message[:kept])


def test_leases_are_read_created_and_patched(kube_api: KubeEmulatorHandle) -> None:
    """read_lease gives the stored Lease; create_lease and patch_lease give what the server
    stored; a patch on a stale resourceVersion is a Conflict."""
    kube = KubeClient(kube_api.api_client())
    created = kube.create_lease("default", lease("l", "a"))
    assert created["spec"]["holderIdentity"] == "a" and created["metadata"]["resourceVersion"]
    read = kube.read_lease("default", "l")
    assert read is not None and read["metadata"]["uid"] == created["metadata"]["uid"]
    patched = kube.patch_lease(
        "default",
        "l",
        {
            "metadata": {"resourceVersion": created["metadata"]["resourceVersion"]},
            "spec": {"holderIdentity": "b"},
        },
    )
    assert patched["spec"] == {"holderIdentity": "b", "leaseDurationSeconds": 15}
    assert kube_api.get(LEASES, "l", namespace="default")["spec"]["holderIdentity"] == "b"
    stale = {"metadata": {"resourceVersion": created["metadata"]["resourceVersion"]}}
    with pytest.raises(Conflict, match=r"^patch lease default/l: 409 "):
        kube.patch_lease("default", "l", {**stale, "spec": {"holderIdentity": "c"}})
    with pytest.raises(Conflict, match=r"^create lease default/l: 409 "):
        kube.create_lease("default", lease("l", "c"))


CLOUD = {
    "metadata": {"name": "gw-cloud", "namespace": "chat"},
    "spec": {
        "template": {
            "metadata": {"labels": {"app": "gateway"}},
            "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}]},
        }
    },
}


@pytest.mark.parametrize(
    ("first_uid", "then_uid", "owner"),
    [(None, "u1", "u1"), ("u1", None, "u1"), (None, None, None)],
    ids=["reference-added", "reference-kept", "never-referenced"],
)
def test_a_patched_placeholder_carries_the_owner_reference_it_is_given(
    kube_api: KubeEmulatorHandle, first_uid: str | None, then_uid: str | None, owner: str | None
) -> None:
    """A placeholder written for a GWA read without a uid, then with one, gets the reference
    (and is collected with its GWA); one written without a reference keeps whatever it has."""

    def desired(uid: str | None, replicas: int) -> dict[str, Any]:
        meta = {"name": "gw", "namespace": "chat", **({"uid": uid} if uid else {})}
        return placeholder_deployment({"metadata": meta}, CLOUD, replicas)

    kube = KubeClient(kube_api.api_client())
    assert kube.apply_placeholder(desired(first_uid, 2), None)
    stored = kube_api.get(DEPLOYMENTS, "gw-placeholder", namespace="chat")
    assert kube.apply_placeholder(desired(then_uid, 3), stored)
    stored = kube_api.get(DEPLOYMENTS, "gw-placeholder", namespace="chat")
    assert stored["spec"]["replicas"] == 3
    refs = stored["metadata"].get("ownerReferences") or []
    assert [r["uid"] for r in refs] == ([owner] if owner else [])
