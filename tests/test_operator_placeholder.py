"""The placeholder Deployment and when it is written (controller.operator.kube)."""

from __future__ import annotations

import copy
from typing import Any

from controller.operator.capacity import quantity
from controller.operator.kube import KubeClient, placeholder_deployment, placeholder_name
from tests.support.kube_emulator import KubeEmulatorHandle

DEPLOYMENTS = "apps/v1/deployments"
PLACEHOLDER = placeholder_name("gw")

GWA = {"metadata": {"name": "gw", "namespace": "chat", "uid": "u1"}}


def cloud(*requests: dict[str, str]) -> dict[str, Any]:
    containers = [
        {"name": f"c{i}", "image": "gateway", "resources": {"requests": dict(r)}}
        for i, r in enumerate(requests)
    ]
    return {"spec": {"template": {"spec": {"containers": containers}}}}


#: A gateway pod of two containers: 750m and 1536Mi in all.
TWO_CONTAINERS = cloud({"cpu": "250m", "memory": "1Gi"}, {"cpu": "500m", "memory": "512Mi"})


def server(kube_api: KubeEmulatorHandle, desired: dict[str, Any], **requests: str) -> KubeClient:
    """The placeholder stored as the API server keeps it (quantities in canonical form, which
    the emulator does not rewrite by itself), and a client to the emulator."""
    body = copy.deepcopy(desired)
    body["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"] = requests
    kube_api.create(body)
    return KubeClient(kube_api.api_client())


def existing(kube_api: KubeEmulatorHandle, desired: dict[str, Any]) -> dict[str, Any]:
    meta = desired["metadata"]
    return kube_api.get(DEPLOYMENTS, meta["name"], namespace=meta["namespace"])


def patches(kube_api: KubeEmulatorHandle) -> list[str]:
    return [r.url.path for r in kube_api.requests() if r.method.value.upper() == "PATCH"]


def test_requests_of_all_containers_add_up() -> None:
    """One pause container asks for what the whole gateway pod asks for."""
    desired = placeholder_deployment(GWA, TWO_CONTAINERS, 3)
    requests = desired["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]
    assert {k: quantity(v) for k, v in requests.items()} == {
        "cpu": quantity("750m"),
        "memory": quantity("1536Mi"),
    }


def test_a_placeholder_the_server_canonicalised_is_not_patched(
    kube_api: KubeEmulatorHandle,
) -> None:
    """Summed requests are sent as ``0.750`` and stored as ``750m``: the same quantity, so the
    next loop writes nothing, instead of patching the placeholder on every loop."""
    desired = placeholder_deployment(GWA, TWO_CONTAINERS, 3)
    kube = server(kube_api, desired, cpu="750m", memory="1536Mi")
    assert not kube.apply_placeholder(desired, existing(kube_api, desired))
    assert patches(kube_api) == []


def test_a_placeholder_with_other_requests_is_patched(kube_api: KubeEmulatorHandle) -> None:
    """A real change of the gateway's requests still reaches the placeholder."""
    desired = placeholder_deployment(GWA, TWO_CONTAINERS, 3)
    kube = server(kube_api, desired, cpu="500m", memory="1536Mi")
    assert kube.apply_placeholder(desired, existing(kube_api, desired))
    assert patches(kube_api) == [f"/apis/apps/v1/namespaces/chat/deployments/{PLACEHOLDER}"]
    cpu = existing(kube_api, desired)["spec"]["template"]["spec"]["containers"][0]
    assert quantity(cpu["resources"]["requests"]["cpu"]) == quantity("750m")


def test_placeholders_pass_the_restricted_pod_security_standard() -> None:
    """A gateway namespace that enforces Pod Security "restricted" accepts the Deployment
    whatever its pods say, then refuses each pod: the placeholder's pods must pass it."""
    pod = placeholder_deployment(GWA, TWO_CONTAINERS, 3)["spec"]["template"]["spec"]
    security = pod["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] > 0
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in pod["containers"]:
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"]["drop"] == ["ALL"]
        assert not context.get("privileged")
    assert not any(key in pod for key in ("hostNetwork", "hostPID", "hostIPC", "volumes"))


ZONE_A = {
    "nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [
                {
                    "matchExpressions": [
                        {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["a"]}
                    ]
                }
            ]
        }
    }
}


def shaped(node_selector: dict[str, str], **pod: Any) -> dict[str, Any]:
    """A cloud gateway of one container with a node selector and other pod fields."""
    body = cloud({"cpu": "1"})
    body["spec"]["template"]["spec"].update(nodeSelector=node_selector, **pod)
    return body


def test_fields_the_gateway_dropped_leave_the_placeholder_too(
    kube_api: KubeEmulatorHandle,
) -> None:
    """The gateway's template loses a node selector key, its affinity and a request: the
    placeholder is patched to match, with the dropped keys nulled out (a merge patch keeps
    what it does not name), so its nodes are of the kind the gateway now runs on."""
    old = placeholder_deployment(
        GWA,
        shaped({"tidal.dev/pool": "cloud", "node.kubernetes.io/instance-type": "m5"}, affinity=ZONE_A),
        5,
    )
    old["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["memory"] = "1Gi"
    kube_api.create(copy.deepcopy(old))
    kube = KubeClient(kube_api.api_client())
    desired = placeholder_deployment(GWA, shaped({"tidal.dev/pool": "cloud"}), 5)
    assert kube.apply_placeholder(desired, existing(kube_api, desired))
    pod = existing(kube_api, desired)["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"tidal.dev/pool": "cloud"}
    assert "affinity" not in pod
    assert set(pod["containers"][0]["resources"]["requests"]) == {"cpu"}
    # Now in step: the next loop writes nothing.
    assert not kube.apply_placeholder(desired, existing(kube_api, desired))
