"""The placeholder Deployment and when it is written (controller.operator.kube)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from controller.operator.capacity import effective_requests, matches_selector, quantity
from controller.operator.kube import (
    PLACEHOLDER_IMAGE,
    KubeClient,
    placeholder_deployment,
    placeholder_name,
)
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


def pod_of(desired: dict[str, Any]) -> dict[str, Any]:
    """The placeholder's pod spec."""
    spec: dict[str, Any] = desired["spec"]["template"]["spec"]
    return spec


def reserved(desired: dict[str, Any]) -> dict[str, Any]:
    """What the scheduler reserves for one placeholder pod, read off its own pod spec."""
    return effective_requests(pod_of(desired))


def server(kube_api: KubeEmulatorHandle, desired: dict[str, Any], **requests: str) -> KubeClient:
    """The placeholder stored as the API server keeps it (its first container's quantities in
    canonical form, which the emulator does not rewrite by itself), and a client to it."""
    body = copy.deepcopy(desired)
    pod_of(body)["containers"][0]["resources"]["requests"] = requests
    kube_api.create(body)
    return KubeClient(kube_api.api_client())


def existing(kube_api: KubeEmulatorHandle, desired: dict[str, Any]) -> dict[str, Any]:
    meta = desired["metadata"]
    return kube_api.get(DEPLOYMENTS, meta["name"], namespace=meta["namespace"])


def patches(kube_api: KubeEmulatorHandle) -> list[str]:
    return [r.url.path for r in kube_api.requests() if r.method.value.upper() == "PATCH"]


def test_a_pause_container_stands_for_each_gateway_container() -> None:
    """Each of the gateway pod's containers has its pause container, of its name and with its
    requests as written; together they reserve what the gateway pod reserves."""
    pod = pod_of(placeholder_deployment(GWA, TWO_CONTAINERS, 3))
    assert [(c["name"], c["image"], c["resources"]) for c in pod["containers"]] == [
        ("c0", PLACEHOLDER_IMAGE, {"requests": {"cpu": "250m", "memory": "1Gi"}}),
        ("c1", PLACEHOLDER_IMAGE, {"requests": {"cpu": "500m", "memory": "512Mi"}}),
    ]
    assert effective_requests(pod) == {"cpu": quantity("750m"), "memory": quantity("1536Mi")}


#: A gateway pod whose quantities the API server stores in another form (``500m``, ``1Gi``).
UNCANONICAL = cloud({"cpu": "0.5", "memory": "1024Mi"})


def test_a_placeholder_the_server_canonicalised_is_not_patched(
    kube_api: KubeEmulatorHandle,
) -> None:
    """Quantities are sent as the gateway wrote them (``0.5``) and stored in canonical form
    (``500m``): the same quantity, so the next loop writes nothing, instead of patching the
    placeholder on every loop."""
    desired = placeholder_deployment(GWA, UNCANONICAL, 3)
    kube = server(kube_api, desired, cpu="500m", memory="1Gi")
    assert not kube.apply_placeholder(desired, existing(kube_api, desired))
    assert patches(kube_api) == []


def test_a_placeholder_with_other_requests_is_patched(kube_api: KubeEmulatorHandle) -> None:
    """A real change of the gateway's requests still reaches the placeholder."""
    desired = placeholder_deployment(GWA, UNCANONICAL, 3)
    kube = server(kube_api, desired, cpu="250m", memory="1Gi")
    assert kube.apply_placeholder(desired, existing(kube_api, desired))
    assert patches(kube_api) == [f"/apis/apps/v1/namespaces/chat/deployments/{PLACEHOLDER}"]
    cpu = pod_of(existing(kube_api, desired))["containers"][0]
    assert quantity(cpu["resources"]["requests"]["cpu"]) == quantity("500m")


def test_placeholders_pass_the_restricted_pod_security_standard() -> None:
    """A gateway namespace that enforces Pod Security "restricted" accepts the Deployment
    whatever its pods say, then refuses each pod: the placeholder's pods must pass it, each
    of their containers, init containers and sidecars included."""
    gateway = with_init(
        TWO_CONTAINERS,
        {"restartPolicy": "Always", "resources": {"requests": {"cpu": "100m"}}},
        {"resources": {"requests": {"cpu": "1"}}},
    )
    pod = pod_of(placeholder_deployment(GWA, gateway, 3))
    security = pod["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] > 0
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    containers = [*pod["containers"], *pod["initContainers"]]
    assert len(containers) == 4
    for container in containers:
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
# with the sidecars started before it), or the pod-level request, plus the RuntimeClass's
# overhead. The placeholder pod has a pause container for each of the gateway pod's containers,
# so the scheduler reserves the same for it.


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
    assert reserved(placeholder_deployment(GWA, gateway, 3)) == {
        "cpu": quantity("2"),
        "memory": quantity("1536Mi"),
        "ephemeral-storage": quantity("1Gi"),
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
    assert reserved(placeholder_deployment(GWA, gateway, 3)) == {
        "cpu": quantity("1.1"),
        "memory": quantity("1664Mi"),  # 1536Mi + the sidecar's 128Mi
    }
    # A sidecar larger than any init phase: the running sum wins.
    sidecar = with_init(
        TWO_CONTAINERS,
        {"restartPolicy": "Always", "resources": {"requests": {"cpu": "500m"}}},
        {"resources": {"requests": {"cpu": "1"}}},
    )
    assert reserved(placeholder_deployment(GWA, sidecar, 3)) == {
        "cpu": quantity("1.5"),
        "memory": quantity("1536Mi"),
    }


def test_init_pause_containers_exit_and_sidecars_keep_running() -> None:
    """A pause container never exits by itself: one in place of an ordinary init container
    would hold the pod in its init phase for good. It runs ``pause -v``, which prints the
    version and exits, so the init containers run in turn as the gateway's do; a sidecar's
    keeps running (``restartPolicy: Always``), as the app containers' do."""
    gateway = with_init(
        TWO_CONTAINERS,
        {"resources": {"requests": {"cpu": "1"}}},
        {"restartPolicy": "Always", "resources": {"requests": {"cpu": "0.2"}}},
        {},
    )
    pod = pod_of(placeholder_deployment(GWA, gateway, 3))
    assert [(c["name"], c.get("args"), c.get("restartPolicy")) for c in pod["initContainers"]] == [
        ("init0", ["-v"], None),
        ("init1", None, "Always"),
        ("init2", ["-v"], None),
    ]
    assert "resources" not in pod["initContainers"][2]  # the gateway's asks for nothing
    assert all("args" not in c and "restartPolicy" not in c for c in pod["containers"])


def test_limits_stand_for_the_requests_a_container_leaves_out() -> None:
    """A container with a limit and no request is given the limit as its request when its pod is
    created (a Deployment's template keeps only the limit): its pause container has the same
    limit, and no request."""
    gateway = cloud({"cpu": "250m"})
    gateway["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"] = {
        "cpu": "1",
        "memory": "1Gi",
    }
    gateway = with_init(gateway, {"resources": {"limits": {"memory": "2Gi"}}})
    desired = placeholder_deployment(GWA, gateway, 3)
    assert reserved(desired) == {"cpu": quantity("250m"), "memory": quantity("2Gi")}
    assert pod_of(desired)["initContainers"][0]["resources"] == {"limits": {"memory": "2Gi"}}


def test_pod_level_requests_are_what_the_placeholder_reserves() -> None:
    """A gateway pod with pod-level requests (Kubernetes 1.32+) reserves those for cpu and
    memory, whatever its containers ask for inside them: so does its placeholder, which has
    the same pod-level resources over the same containers."""
    gateway = copy.deepcopy(TWO_CONTAINERS)  # 750m, 1536Mi in its containers
    pod_level = {"requests": {"cpu": "2"}, "limits": {"cpu": "4", "memory": "4Gi"}}
    gateway["spec"]["template"]["spec"]["resources"] = pod_level
    desired = placeholder_deployment(GWA, gateway, 3)
    assert reserved(desired) == {"cpu": quantity("2"), "memory": quantity("1536Mi")}
    assert pod_of(desired)["resources"] == pod_level


def test_pod_level_resources_the_gateway_dropped_leave_the_placeholder_too(
    kube_api: KubeEmulatorHandle,
) -> None:
    """A placeholder that kept pod-level requests the gateway no longer has would go on
    reserving them."""
    gateway = copy.deepcopy(TWO_CONTAINERS)
    gateway["spec"]["template"]["spec"]["resources"] = {"requests": {"cpu": "2"}}
    kube = KubeClient(kube_api.api_client())
    assert kube.apply_placeholder(placeholder_deployment(GWA, gateway, 3), None)
    desired = placeholder_deployment(GWA, TWO_CONTAINERS, 3)
    assert kube.apply_placeholder(desired, existing(kube_api, desired))
    assert reserved(existing(kube_api, desired)) == {
        "cpu": quantity("750m"),
        "memory": quantity("1536Mi"),
    }
    assert not kube.apply_placeholder(desired, existing(kube_api, desired))


def test_the_gateway_runtime_class_brings_its_overhead_to_the_placeholder() -> None:
    """A pod's overhead comes from its RuntimeClass, set on each pod at admission (not on a
    Deployment's template): the placeholder runs under the gateway's RuntimeClass, so its pods
    are given the same overhead (and the class's node selector and tolerations), and its
    containers do not ask for the overhead a second time."""
    gateway = copy.deepcopy(TWO_CONTAINERS)
    gateway["spec"]["template"]["spec"]["runtimeClassName"] = "kata"
    gateway["spec"]["template"]["spec"]["overhead"] = {"cpu": "250m", "memory": "160Mi"}
    desired = placeholder_deployment(GWA, gateway, 3)
    pod = pod_of(desired)
    assert pod["runtimeClassName"] == "kata"
    assert "overhead" not in pod  # admission sets it; one that differs is refused
    assert reserved(desired) == {"cpu": quantity("750m"), "memory": quantity("1536Mi")}


def test_a_runtime_class_the_gateway_dropped_leaves_the_placeholder_too(
    kube_api: KubeEmulatorHandle,
) -> None:
    old = copy.deepcopy(TWO_CONTAINERS)
    old["spec"]["template"]["spec"]["runtimeClassName"] = "kata"
    kube_api.create(placeholder_deployment(GWA, old, 3))
    kube = KubeClient(kube_api.api_client())
    desired = placeholder_deployment(GWA, TWO_CONTAINERS, 3)
    assert kube.apply_placeholder(desired, existing(kube_api, desired))
    assert "runtimeClassName" not in pod_of(existing(kube_api, desired))
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


def limits_of(desired: dict[str, Any]) -> list[dict[str, Any]]:
    """Each placeholder container's limits, by value."""
    return [
        {k: quantity(v) for k, v in ((c.get("resources") or {}).get("limits") or {}).items()}
        for c in pod_of(desired)["containers"]
    ]


def test_an_extended_resource_is_limited_to_its_request() -> None:
    """Extended resources (and hugepages) cannot be overcommitted: the API server refuses a
    container that requests one without a limit equal to the request. Each pause container
    has its gateway container's, and CPU and memory stay without the limit the gateway's
    containers do not set."""
    desired = placeholder_deployment(GWA, GPUS, 3)
    assert reserved(desired) == {
        "cpu": quantity("1.5"),
        "memory": quantity("3Gi"),
        "nvidia.com/gpu": quantity("2"),
        "hugepages-2Mi": quantity("512Mi"),
    }
    assert limits_of(desired) == [
        {"nvidia.com/gpu": quantity("1"), "hugepages-2Mi": quantity("512Mi")},
        {"nvidia.com/gpu": quantity("1")},
    ]


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
    stored = existing(kube_api, desired)
    assert reserved(stored) == {
        "cpu": quantity("1.5"),
        "memory": quantity("3Gi"),
        "hugepages-2Mi": quantity("512Mi"),
    }
    assert limits_of(stored) == [{"hugepages-2Mi": quantity("512Mi")}, {}]
    assert not kube.apply_placeholder(desired, existing(kube_api, desired))


def test_containers_the_gateway_dropped_leave_the_placeholder_too(
    kube_api: KubeEmulatorHandle,
) -> None:
    """The gateway loses an init container and a container's limit: so does the placeholder
    (a merge patch keeps a field it does not name, and lets a field the API server added
    pass), and it is in step afterwards."""
    gateway = with_init(TWO_CONTAINERS, {"resources": {"requests": {"cpu": "2"}}})
    gateway["spec"]["template"]["spec"]["containers"][1]["resources"]["limits"] = {"memory": "1Gi"}
    kube = KubeClient(kube_api.api_client())
    assert kube.apply_placeholder(placeholder_deployment(GWA, gateway, 3), None)
    desired = placeholder_deployment(GWA, TWO_CONTAINERS, 3)
    assert kube.apply_placeholder(desired, existing(kube_api, desired))
    pod = pod_of(existing(kube_api, desired))
    assert "initContainers" not in pod
    assert "limits" not in pod["containers"][1]["resources"]
    assert reserved(existing(kube_api, desired)) == reserved(desired)
    assert not kube.apply_placeholder(desired, existing(kube_api, desired))


# --- admitted wherever the gateway pod is -----------------------------------------------------
#
# A LimitRange acts on each container: it gives a container without a limit the default limit,
# and one without a request (or a limit standing for it) the default request, then refuses a
# container whose request is above its limit or below the minimum, whose limit is above the
# maximum, or whose limit is more than maxLimitRequestRatio times its request.


def admitted(pod: dict[str, Any], limits: dict[str, dict[str, str]]) -> dict[str, Any] | None:
    """``pod`` as a ``Container`` LimitRange item leaves it, or None when it refuses it."""
    pod = copy.deepcopy(pod)
    for container in [*pod["containers"], *(pod.get("initContainers") or [])]:
        written = container.get("resources") or {}
        limit = {**limits.get("default", {}), **(written.get("limits") or {})}
        request = {
            **limits.get("defaultRequest", {}),
            **(written.get("limits") or {}),
            **(written.get("requests") or {}),
        }
        container["resources"] = {"requests": request, "limits": limit}
        for key, value in request.items():
            if key in limit and quantity(value) > quantity(limit[key]):
                return None
        for key, least in limits.get("min", {}).items():
            if key not in request or quantity(request[key]) < quantity(least):
                return None
        for key, most in limits.get("max", {}).items():
            if key not in limit or quantity(limit[key]) > quantity(most):
                return None
        for key, ratio in limits.get("maxLimitRequestRatio", {}).items():
            if key not in limit or not quantity(request.get(key, 0)):
                return None
            if quantity(limit[key]) > quantity(ratio) * quantity(request[key]):
                return None
    return pod


#: A namespace's bounds on each container: a memory limit of 1Gi (default and maximum) and
#: room above every request the shapes below make.
LIMIT_RANGE = {
    "default": {"cpu": "2", "memory": "1Gi"},
    "defaultRequest": {"cpu": "100m", "memory": "128Mi"},
    "max": {"memory": "1Gi"},
    "min": {"memory": "64Mi"},
    "maxLimitRequestRatio": {"cpu": "20"},
}


def container(name: str, **resources: dict[str, str]) -> dict[str, Any]:
    return {"name": name, "image": "gateway", "resources": resources}


def gateway_of(*containers: dict[str, Any], **pod: Any) -> dict[str, Any]:
    return {"spec": {"template": {"spec": {"containers": list(containers), **pod}}}}


SHAPES = {
    # 1280Mi in all, each container within the 1Gi limit.
    "two-containers": gateway_of(
        container("app", requests={"cpu": "250m", "memory": "768Mi"}, limits={"memory": "1Gi"}),
        container("log", requests={"cpu": "500m", "memory": "512Mi"}),
    ),
    # The init phase (1 cpu and 1Gi beside the sidecar's 100m and 256Mi) tops the running sum.
    "sidecar-and-init": gateway_of(
        container("app", requests={"cpu": "500m", "memory": "512Mi"}),
        initContainers=[
            {
                **container("mesh", requests={"cpu": "100m", "memory": "256Mi"}),
                "restartPolicy": "Always",
            },
            container("migrate", requests={"cpu": "1", "memory": "1Gi"}),
            container("wait"),
        ],
    ),
    # Limits standing for requests: 1.2 cpu, 1.5Gi.
    "limits-only": gateway_of(
        container("app", limits={"cpu": "1", "memory": "1Gi"}),
        container("log", requests={"cpu": "200m"}, limits={"memory": "512Mi"}),
    ),
    # Pod-level requests over containers inside them.
    "pod-level": gateway_of(
        container("app", requests={"cpu": "500m", "memory": "512Mi"}),
        container("log", requests={"memory": "512Mi"}),
        resources={"requests": {"cpu": "2", "memory": "1536Mi"}, "limits": {"memory": "2Gi"}},
    ),
}


@pytest.mark.parametrize("gateway", list(SHAPES.values()), ids=list(SHAPES))
def test_a_placeholder_is_admitted_wherever_the_gateway_pod_is(gateway: dict[str, Any]) -> None:
    """A LimitRange whose default container limit (1Gi of memory) is below the gateway pod's
    total, but above each of its containers, admits the gateway's pods: it admits the
    placeholder's, whose containers are the gateway's, and the scheduler reserves the same for
    both, as written and once the LimitRange filled in its defaults."""
    template = gateway["spec"]["template"]["spec"]
    pod = pod_of(placeholder_deployment(GWA, gateway, 3))
    assert effective_requests(pod) == effective_requests(template)
    gateway_pod, placeholder_pod = admitted(template, LIMIT_RANGE), admitted(pod, LIMIT_RANGE)
    assert gateway_pod is not None, "the shape is meant to be admitted"
    assert placeholder_pod is not None, (
        "the placeholder is refused where the gateway pod is admitted"
    )
    assert effective_requests(placeholder_pod) == effective_requests(gateway_pod)
    assert effective_requests(template)["memory"] > quantity(LIMIT_RANGE["default"]["memory"])


# --- keeping placeholders apart as the gateway keeps its pods apart ---------------------------

HOST = "kubernetes.io/hostname"


def apart(key: str, selector: dict[str, Any], **more: Any) -> dict[str, Any]:
    """A pod (anti-)affinity term."""
    return {"labelSelector": selector, "topologyKey": key, **more}


def labelled(labels: dict[str, str], **pod: Any) -> dict[str, Any]:
    """A cloud gateway whose pod template carries ``labels``."""
    body = shaped({}, **pod)
    body["spec"]["template"]["metadata"] = {"labels": labels}
    return body


def test_one_gateway_per_node_makes_one_placeholder_per_node() -> None:
    """The gateway keeps its pods one per node (required) and away from a database
    (preferred, and required in a zone). The placeholder keeps every term as it is, and gains
    a twin of each term over gateway pods that selects placeholders: two placeholders on one
    node would hold room for one gateway. The terms over other workloads get no twin."""
    own = {"matchExpressions": [{"key": "app", "operator": "In", "values": ["gateway"]}]}
    db = {"matchLabels": {"app": "db"}}
    affinity = {
        "podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [apart(ZONE, db)]},
        "podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                apart(HOST, own, matchLabelKeys=["pod-template-hash"]),
                apart(ZONE, db),
            ],
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 40, "podAffinityTerm": apart(HOST, db)},
                {"weight": 70, "podAffinityTerm": apart(ZONE, own)},
            ],
        },
    }
    gateway = labelled({"app": "gateway", "tier": "edge"}, affinity=copy.deepcopy(affinity))
    desired = placeholder_deployment(GWA, gateway, 4)
    ours = desired["spec"]["selector"]
    got = pod_of(desired)["affinity"]
    assert got["podAffinity"] == affinity["podAffinity"]
    anti = got["podAntiAffinity"]
    assert anti["requiredDuringSchedulingIgnoredDuringExecution"] == [
        apart(HOST, own, matchLabelKeys=["pod-template-hash"]),
        apart(ZONE, db),
        apart(HOST, ours),
    ]
    assert anti["preferredDuringSchedulingIgnoredDuringExecution"] == [
        {"weight": 40, "podAffinityTerm": apart(HOST, db)},
        {"weight": 70, "podAffinityTerm": apart(ZONE, own)},
        {"weight": 70, "podAffinityTerm": apart(ZONE, ours)},
    ]
    # The twin selects the placeholder pods, and the gateway's template is left as it was.
    assert matches_selector(desired["spec"]["template"]["metadata"]["labels"], ours)
    assert gateway["spec"]["template"]["spec"]["affinity"] == affinity


@pytest.mark.parametrize(
    "term",
    [
        apart(HOST, {"matchLabels": {"app": "chat-gateway"}}),  # another workload
        apart(HOST, {}),  # every pod: placeholders already count
        apart(HOST, {"matchLabels": {"app": "gateway"}}, namespaces=["edge"]),
        apart(
            HOST, {"matchLabels": {"app": "gateway"}}, namespaceSelector={"matchLabels": {"a": "b"}}
        ),
    ],
    ids=["other-app", "empty-selector", "namespaces", "namespace-labels"],
)
def test_terms_not_over_the_gateways_own_pods_get_no_twin(term: dict[str, Any]) -> None:
    """Only a term over the gateway's pods in its own namespace is the gateway keeping its pods
    apart; any other is copied alone."""
    affinity = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}
    gateway = labelled({"app": "gateway"}, affinity=copy.deepcopy(affinity))
    assert pod_of(placeholder_deployment(GWA, gateway, 2))["affinity"] == affinity


def test_a_placeholder_follows_the_gateway_dropping_its_anti_affinity(
    kube_api: KubeEmulatorHandle,
) -> None:
    """The twin comes and goes with the gateway's term: the placeholder written with it is
    patched once the gateway drops it, and left alone when nothing changed."""
    kube = KubeClient(kube_api.api_client())
    one_per_node = {
        "podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                apart(HOST, {"matchLabels": {"app": "gateway"}})
            ]
        }
    }
    desired = placeholder_deployment(GWA, labelled({"app": "gateway"}, affinity=one_per_node), 3)
    assert kube.apply_placeholder(desired, None)
    assert not kube.apply_placeholder(desired, existing(kube_api, desired))
    stored = existing(kube_api, desired)["spec"]["template"]["spec"]["affinity"]
    assert len(stored["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]) == 2
    desired = placeholder_deployment(GWA, labelled({"app": "gateway"}), 3)
    assert kube.apply_placeholder(desired, existing(kube_api, desired))
    assert "affinity" not in existing(kube_api, desired)["spec"]["template"]["spec"]


def test_a_gateway_on_a_host_port_has_placeholders_on_it_too(
    kube_api: KubeEmulatorHandle,
) -> None:
    """A gateway container binding host port 443 runs one per node (the scheduler's NodePorts
    filter): its pause container asks for the same port, so placeholders go one per node too.
    A port not bound on the node is left out. The placeholder follows the gateway when it
    drops the host port."""
    gateway = shaped({})
    gateway["spec"]["template"]["spec"]["containers"][0]["ports"] = [
        {"name": "wss", "containerPort": 8443, "hostPort": 443},
        {"name": "metrics", "containerPort": 9090},
        {"containerPort": 5000, "hostPort": 5000, "protocol": "UDP", "hostIP": "10.0.0.1"},
    ]
    desired = placeholder_deployment(GWA, gateway, 2)
    assert pod_of(desired)["containers"][0]["ports"] == [
        {"containerPort": 8443, "hostPort": 443, "protocol": "TCP"},
        {"containerPort": 5000, "hostPort": 5000, "protocol": "UDP", "hostIP": "10.0.0.1"},
    ]
    kube = KubeClient(kube_api.api_client())
    assert kube.apply_placeholder(desired, None)
    assert not kube.apply_placeholder(desired, existing(kube_api, desired))
    desired = placeholder_deployment(GWA, shaped({}), 2)
    assert "ports" not in pod_of(desired)["containers"][0]
    assert kube.apply_placeholder(desired, existing(kube_api, desired))
    stored = existing(kube_api, desired)["spec"]["template"]["spec"]["containers"][0]
    assert "ports" not in stored


@pytest.mark.parametrize(
    "term",
    [
        apart(HOST, {"matchLabels": {"app": "gateway"}}, namespaces=["edge", "chat"]),
        apart(HOST, {"matchLabels": {"app": "gateway"}}, namespaceSelector={}),
        apart(
            HOST,
            {"matchLabels": {"app": "gateway"}},
            namespaces=["chat"],
            namespaceSelector={"matchLabels": {"a": "b"}},
        ),
        apart(HOST, {"matchLabels": {"app": "gateway"}}, namespaceSelector={"matchLabels": {}}),
    ],
    ids=["listing-its-own", "every-namespace", "listed-and-labelled", "empty-match-labels"],
)
def test_a_term_reaching_the_gateways_namespace_gets_a_twin(term: dict[str, Any]) -> None:
    """A term's namespaces are those it lists and those its namespace selector matches (all,
    when empty): one that reaches the gateway's own keeps the gateway's pods apart."""
    affinity = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}
    gateway = labelled({"app": "gateway"}, affinity=copy.deepcopy(affinity))
    gateway["metadata"] = {"namespace": "chat"}
    desired = placeholder_deployment(GWA, gateway, 2)
    terms = pod_of(desired)["affinity"]["podAntiAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]
    assert terms == [term, apart(HOST, desired["spec"]["selector"])]


def test_a_gateway_on_the_host_network_has_placeholders_on_its_ports() -> None:
    """A ``hostNetwork`` template's container ports carry no ``hostPort`` (the API server sets
    it in pods, not templates), yet each is bound on the node: the placeholder, on the pod
    network, asks for each as a host port. An ordinary init container's port is left out (it
    holds none once the pod runs); a sidecar's is kept."""
    gateway = shaped({}, hostNetwork=True)
    gateway["spec"]["template"]["spec"]["containers"][0]["ports"] = [{"containerPort": 8080}]
    gateway["spec"]["template"]["spec"]["initContainers"] = [
        {"name": "setup", "image": "i", "ports": [{"containerPort": 9000}]},
        {
            "name": "proxy",
            "image": "p",
            "restartPolicy": "Always",
            "ports": [{"containerPort": 80}],
        },
    ]
    pod = pod_of(placeholder_deployment(GWA, gateway, 2))
    assert "hostNetwork" not in pod
    assert pod["containers"][0]["ports"] == [
        {"containerPort": 8080, "hostPort": 8080, "protocol": "TCP"}
    ]
    setup, proxy = pod["initContainers"]
    assert "ports" not in setup
    assert proxy["ports"] == [{"containerPort": 80, "hostPort": 80, "protocol": "TCP"}]


# --- mutation-tested edges of the placeholder's anti-affinity twins ---------------------------


def test_a_term_without_a_label_selector_gets_no_twin() -> None:
    """In kube-scheduler a nil ``labelSelector`` selects no pod, so such a term keeps no
    gateway pods apart: it is copied alone, 1 term and no twin."""
    affinity = {
        "podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [{"topologyKey": HOST}]
        }
    }
    gateway = labelled({"app": "gateway"}, affinity=copy.deepcopy(affinity))
    assert pod_of(placeholder_deployment(GWA, gateway, 2))["affinity"] == affinity


def test_a_gateway_only_preferring_its_pods_apart_has_placeholders_prefer_it_too() -> None:
    """A preferred term over the gateway's own pods makes the scheduler score nodes holding
    them lower; with no required terms the placeholder keeps that 1 term and gains 1 twin of
    the same weight over placeholders, and no required list."""
    preferred = [
        {"weight": 50, "podAffinityTerm": apart(HOST, {"matchLabels": {"app": "gateway"}})}
    ]
    affinity = {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": preferred}}
    gateway = labelled({"app": "gateway"}, affinity=copy.deepcopy(affinity))
    desired = placeholder_deployment(GWA, gateway, 2)
    twin = {"weight": 50, "podAffinityTerm": apart(HOST, desired["spec"]["selector"])}
    assert pod_of(desired)["affinity"] == {
        "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [*preferred, twin]}
    }


def test_the_placeholder_image_is_a_setting(
    monkeypatch: pytest.MonkeyPatch, cluster: KubeEmulatorHandle
) -> None:
    """A cluster that cannot pull from registry.k8s.io (air-gapped, or behind a mirror) names
    its pause image in TIDAL_PLACEHOLDER_IMAGE: every placeholder container, init ones too,
    runs it, and the operator writes it."""
    from controller.operator import Operator, OperatorSettings
    from controller.operator import reconcile as reconcile_module
    from tests.integration.operator_cluster import FlatLoad, add_region, gwa_body

    mirror = "mirror.internal/pause:3.9"
    template = {**TWO_CONTAINERS}
    spec = template["spec"]["template"]["spec"]
    with_init = {**spec, "initContainers": [{"name": "setup", "image": "busybox"}]}
    cloud_init = {**template, "spec": {**template["spec"], "template": {"spec": with_init}}}
    pod = pod_of(placeholder_deployment(GWA, cloud_init, 2, image=mirror))
    images = {c["image"] for c in pod["containers"] + pod["initContainers"]}
    assert images == {mirror}

    monkeypatch.setenv("TIDAL_PLACEHOLDER_IMAGE", mirror)
    settings = OperatorSettings(leader_election=False, metrics_port=0, metrics_address="127.0.0.1")
    assert settings.placeholder_image == mirror
    written: list[str] = []
    real = reconcile_module.placeholder_deployment

    def recorded(*args: Any, image: str, **kwargs: Any) -> Any:
        written.append(image)
        return real(*args, image=image, **kwargs)

    monkeypatch.setattr(reconcile_module, "placeholder_deployment", recorded)
    add_region(cluster, "eu", replicas=4)
    cluster.create(gwa_body("eu"))
    operator = Operator(settings, api_client=cluster.api_client(), source=FlatLoad(5_000.0))
    try:
        operator.run_once()
    finally:
        operator.models.shutdown()
    assert written and set(written) == {mirror}
