"""The placeholder Deployment and when it is written (controller.operator.kube)."""

from __future__ import annotations

import copy
import re
from typing import Any

from controller.operator.capacity import matches_selector, quantity
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
        shaped(
            {"tidal.dev/pool": "cloud", "node.kubernetes.io/instance-type": "m5"}, affinity=ZONE_A
        ),
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


def spread(key: str, when: str, skew: int = 1, **more: Any) -> dict[str, Any]:
    """A topology spread constraint over the gateway's own pods (``app: gateway``)."""
    return {
        "topologyKey": key,
        "whenUnsatisfiable": when,
        "maxSkew": skew,
        "labelSelector": {"matchLabels": {"app": "gateway"}},
        **more,
    }


ZONE = "topology.kubernetes.io/zone"


def test_placeholders_spread_among_themselves_as_the_gateway_pods_do() -> None:
    """The gateway spreads its pods over zones (DoNotSchedule) and hosts (ScheduleAnyway), each
    constraint selecting its own pods, which no placeholder matches: the placeholders carry
    each constraint with its selector made theirs, so they are counted and spread over the
    same domains with the same skew, and reserve nodes in every zone the gateway grows in."""
    gateway = shaped(
        {"tidal.dev/pool": "cloud"},
        topologySpreadConstraints=[
            spread(
                ZONE,
                "DoNotSchedule",
                minDomains=3,
                nodeAffinityPolicy="Honor",
                nodeTaintsPolicy="Honor",
                matchLabelKeys=["pod-template-hash"],
            ),
            spread("kubernetes.io/hostname", "ScheduleAnyway", 2),
        ],
    )
    desired = placeholder_deployment(GWA, gateway, 6)
    template = desired["spec"]["template"]
    constraints = template["spec"]["topologySpreadConstraints"]
    ours = desired["spec"]["selector"]
    assert matches_selector(template["metadata"]["labels"], ours)
    assert not matches_selector({"app": "gateway"}, ours)
    assert constraints == [
        {
            "topologyKey": ZONE,
            "whenUnsatisfiable": "DoNotSchedule",
            "maxSkew": 1,
            "minDomains": 3,
            "nodeAffinityPolicy": "Honor",
            "nodeTaintsPolicy": "Honor",
            "labelSelector": ours,
        },
        {
            "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "ScheduleAnyway",
            "maxSkew": 2,
            "labelSelector": ours,
        },
    ]
    # The gateway's template is left as it was.
    assert gateway["spec"]["template"]["spec"]["topologySpreadConstraints"][0]["labelSelector"] == {
        "matchLabels": {"app": "gateway"}
    }


def test_constraints_alike_once_rewritten_are_one_at_the_smaller_skew() -> None:
    """Two zone constraints over two sets of the gateway's pods select the same placeholders
    once rewritten; the API server refuses a topology key and ``whenUnsatisfiable`` twice."""
    other = spread(ZONE, "DoNotSchedule", 3)
    other["labelSelector"] = {"matchLabels": {"tier": "edge"}}
    gateway = shaped({}, topologySpreadConstraints=[other, spread(ZONE, "DoNotSchedule", 1)])
    (constraint,) = placeholder_deployment(GWA, gateway, 6)["spec"]["template"]["spec"][
        "topologySpreadConstraints"
    ]
    assert constraint["maxSkew"] == 1


def test_spread_constraints_the_gateway_dropped_leave_the_placeholder_too(
    kube_api: KubeEmulatorHandle,
) -> None:
    """The placeholder follows the gateway's constraints as they change, and loses them when
    the gateway does (a merge patch keeps a field it does not name)."""
    kube = KubeClient(kube_api.api_client())
    zones = shaped({}, topologySpreadConstraints=[spread(ZONE, "DoNotSchedule")])
    desired = placeholder_deployment(GWA, zones, 3)
    assert kube.apply_placeholder(desired, None)
    assert not kube.apply_placeholder(desired, existing(kube_api, desired))
    looser = shaped({}, topologySpreadConstraints=[spread(ZONE, "DoNotSchedule", 2)])
    desired = placeholder_deployment(GWA, looser, 3)
    assert kube.apply_placeholder(desired, existing(kube_api, desired))
    pod = existing(kube_api, desired)["spec"]["template"]["spec"]
    assert [c["maxSkew"] for c in pod["topologySpreadConstraints"]] == [2]
    desired = placeholder_deployment(GWA, shaped({}), 3)
    assert kube.apply_placeholder(desired, existing(kube_api, desired))
    assert (
        "topologySpreadConstraints" not in existing(kube_api, desired)["spec"]["template"]["spec"]
    )
    assert not kube.apply_placeholder(desired, existing(kube_api, desired))


# --- the gateway pod's effective request ------------------------------------------------------
#
# The scheduler reserves, per resource, the larger of the running containers' sum (app containers
# and restartable "sidecar" init containers) and each init container's phase (the init container
# with the sidecars started before it), plus the RuntimeClass's overhead. One pause container
# stands in for all of it.


def resources_of(desired: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The placeholder container's requests and limits, by value."""
    pod = desired["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    resources = container["resources"]
    return {
        kind: {k: quantity(v) for k, v in (resources.get(kind) or {}).items()}
        for kind in ("requests", "limits")
    }


def with_init(body: dict[str, Any], *init: dict[str, Any]) -> dict[str, Any]:
    body = copy.deepcopy(body)
    body["spec"]["template"]["spec"]["initContainers"] = [
        {"name": f"init{i}", "image": "init", **container} for i, container in enumerate(init)
    ]
    return body


def test_an_init_container_larger_than_the_app_containers_sets_the_request() -> None:
    """An init container runs alone, before the app containers: the pod reserves the larger of
    it and the app containers' sum, resource by resource."""
    gateway = with_init(
        TWO_CONTAINERS,
        {"resources": {"requests": {"cpu": "2", "memory": "256Mi"}}},
        {"resources": {"requests": {"cpu": "1500m", "ephemeral-storage": "1Gi"}}},
    )
    assert resources_of(placeholder_deployment(GWA, gateway, 3)) == {
        "requests": {
            "cpu": quantity("2"),
            "memory": quantity("1536Mi"),
            "ephemeral-storage": quantity("1Gi"),
        },
        "limits": {},
    }


def test_a_sidecar_init_container_runs_beside_the_app_containers() -> None:
    """A restartable init container (``restartPolicy: Always``) keeps running: it adds to the app
    containers' sum, and to each init container started after it (not before it)."""
    gateway = with_init(
        TWO_CONTAINERS,  # 750m, 1536Mi
        {"resources": {"requests": {"cpu": "1"}}},  # alone: 1
        {"restartPolicy": "Always", "resources": {"requests": {"cpu": "0.2", "memory": "128Mi"}}},
        {"resources": {"requests": {"cpu": "900m", "memory": "64Mi"}}},  # with the sidecar: 1.1
    )
    assert resources_of(placeholder_deployment(GWA, gateway, 3))["requests"] == {
        "cpu": quantity("1.1"),
        "memory": quantity("1664Mi"),  # 1536Mi + the sidecar's 128Mi
    }
    # A sidecar larger than any init phase: the running sum wins.
    sidecar = with_init(
        TWO_CONTAINERS,
        {"restartPolicy": "Always", "resources": {"requests": {"cpu": "500m"}}},
        {"resources": {"requests": {"cpu": "1"}}},
    )
    assert resources_of(placeholder_deployment(GWA, sidecar, 3))["requests"] == {
        "cpu": quantity("1.5"),
        "memory": quantity("1536Mi"),
    }


def test_limits_stand_for_the_requests_a_container_leaves_out() -> None:
    """A container with a limit and no request is given the limit as its request when its pod is
    created (a Deployment's template keeps only the limit)."""
    gateway = cloud({"cpu": "250m"})
    gateway["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"] = {
        "cpu": "1",
        "memory": "1Gi",
    }
    gateway = with_init(gateway, {"resources": {"limits": {"memory": "2Gi"}}})
    assert resources_of(placeholder_deployment(GWA, gateway, 3))["requests"] == {
        "cpu": quantity("250m"),
        "memory": quantity("2Gi"),
    }


def test_pod_level_requests_are_what_the_placeholder_reserves() -> None:
    """A gateway pod with pod-level requests (Kubernetes 1.32+) reserves those for cpu and
    memory, whatever its containers ask for inside them: so does its placeholder, the
    quantities written as the gateway wrote them."""
    gateway = copy.deepcopy(TWO_CONTAINERS)  # 750m, 1536Mi in its containers
    gateway["spec"]["template"]["spec"]["resources"] = {
        "requests": {"cpu": "2"},
        "limits": {"cpu": "4", "memory": "4Gi"},
    }
    desired = placeholder_deployment(GWA, gateway, 3)
    assert resources_of(desired)["requests"] == {"cpu": quantity("2"), "memory": quantity("1536Mi")}
    written = desired["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]
    assert written["cpu"] == "2"


def test_the_gateway_runtime_class_brings_its_overhead_to_the_placeholder() -> None:
    """A pod's overhead comes from its RuntimeClass, set on each pod at admission (not on a
    Deployment's template): the placeholder runs under the gateway's RuntimeClass, so its pods
    are given the same overhead (and the class's node selector and tolerations), and its
    container does not ask for the overhead a second time."""
    gateway = copy.deepcopy(TWO_CONTAINERS)
    gateway["spec"]["template"]["spec"]["runtimeClassName"] = "kata"
    gateway["spec"]["template"]["spec"]["overhead"] = {"cpu": "250m", "memory": "160Mi"}
    desired = placeholder_deployment(GWA, gateway, 3)
    pod = desired["spec"]["template"]["spec"]
    assert pod["runtimeClassName"] == "kata"
    assert "overhead" not in pod  # admission sets it; one that differs is refused
    assert resources_of(desired)["requests"] == {
        "cpu": quantity("750m"),
        "memory": quantity("1536Mi"),
    }


def test_a_runtime_class_the_gateway_dropped_leaves_the_placeholder_too(
    kube_api: KubeEmulatorHandle,
) -> None:
    old = copy.deepcopy(TWO_CONTAINERS)
    old["spec"]["template"]["spec"]["runtimeClassName"] = "kata"
    kube_api.create(placeholder_deployment(GWA, old, 3))
    kube = KubeClient(kube_api.api_client())
    desired = placeholder_deployment(GWA, TWO_CONTAINERS, 3)
    assert kube.apply_placeholder(desired, existing(kube_api, desired))
    assert "runtimeClassName" not in existing(kube_api, desired)["spec"]["template"]["spec"]
    assert not kube.apply_placeholder(desired, existing(kube_api, desired))


def limited(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` with a limit equal to each request but CPU's and memory's, as the API server
    requires of extended resources and hugepages."""
    for container in body["spec"]["template"]["spec"]["containers"]:
        requests = container["resources"]["requests"]
        container["resources"]["limits"] = {
            k: v for k, v in requests.items() if k not in ("cpu", "memory")
        }
    return body


#: A gateway pod with a GPU in each of two containers and hugepages in one.
GPUS = limited(
    cloud(
        {"cpu": "1", "memory": "2Gi", "nvidia.com/gpu": "1", "hugepages-2Mi": "512Mi"},
        {"cpu": "500m", "memory": "1Gi", "nvidia.com/gpu": "1"},
    )
)


def test_an_extended_resource_is_limited_to_its_request() -> None:
    """Extended resources (and hugepages) cannot be overcommitted: the API server refuses a
    container that requests one without a limit equal to the request. CPU and memory stay
    without a limit: the placeholder's pause container uses next to nothing."""
    assert resources_of(placeholder_deployment(GWA, GPUS, 3)) == {
        "requests": {
            "cpu": quantity("1.5"),
            "memory": quantity("3Gi"),
            "nvidia.com/gpu": quantity("2"),
            "hugepages-2Mi": quantity("512Mi"),
        },
        "limits": {"nvidia.com/gpu": quantity("2"), "hugepages-2Mi": quantity("512Mi")},
    }


def test_an_extended_resource_the_gateway_dropped_leaves_the_placeholder_too(
    kube_api: KubeEmulatorHandle,
) -> None:
    """The placeholder is written with its limits, kept while they hold, and loses the limit
    with the request when the gateway stops asking for a GPU."""
    kube = KubeClient(kube_api.api_client())
    desired = placeholder_deployment(GWA, GPUS, 3)
    assert kube.apply_placeholder(desired, None)
    assert not kube.apply_placeholder(desired, existing(kube_api, desired))
    fewer = copy.deepcopy(GPUS)
    for container in fewer["spec"]["template"]["spec"]["containers"]:
        for kind in ("requests", "limits"):
            container["resources"][kind].pop("nvidia.com/gpu")
    desired = placeholder_deployment(GWA, fewer, 3)
    assert kube.apply_placeholder(desired, existing(kube_api, desired))
    assert resources_of(existing(kube_api, desired)) == {
        "requests": {
            "cpu": quantity("1.5"),
            "memory": quantity("3Gi"),
            "hugepages-2Mi": quantity("512Mi"),
        },
        "limits": {"hugepages-2Mi": quantity("512Mi")},
    }
    assert not kube.apply_placeholder(desired, existing(kube_api, desired))


#: A Kubernetes quantity: a decimal number and an optional binary, decimal or exponent suffix.
QUANTITY = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([KMGTPE]i|[numkMGTPE]|[eE][+-]?\d+)?")


def test_summed_quantities_are_written_as_plain_decimals() -> None:
    """Sums of any quantity form are sent as plain decimal text, which the API server reads
    whatever the size; a single term is sent as the gateway wrote it."""
    gateway = cloud(
        {"cpu": "1.5", "memory": "1e3", "example.com/foo": "1k"},
        {"cpu": "500m", "memory": "1e3", "example.com/foo": "1k"},
        {"cpu": "100n", "ephemeral-storage": "1Gi"},
    )
    requests = resources_of(placeholder_deployment(GWA, gateway, 3))["requests"]
    assert requests == {
        "cpu": quantity("2.0000001"),
        "memory": quantity("2000"),
        "example.com/foo": quantity("2000"),
        "ephemeral-storage": quantity("1Gi"),
    }
    container = placeholder_deployment(GWA, gateway, 3)["spec"]["template"]["spec"]["containers"][0]
    written = container["resources"]["requests"]
    assert written["ephemeral-storage"] == "1Gi"
    for value in (*written.values(), *(container["resources"].get("limits") or {}).values()):
        assert re.fullmatch(r"\d+(\.\d+)?", value) or value == "1Gi", value
        assert QUANTITY.fullmatch(value), value
