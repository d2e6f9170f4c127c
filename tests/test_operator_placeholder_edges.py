"""The placeholder's edges (controller.operator.kube): which ownerReferences make a GWA its owner,
how owners are named, the fields that let a preempted placeholder go at once and be collected
with its GWA, pause containers that run until preempted, a selector the API server would refuse,
a cloud Deployment read without its namespace, and a node selector key the gateway dropped."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from controller.operator.kube import (
    KubeClient,
    owned_by,
    owner_names,
    placeholder_deployment,
)
from controller.spec import GROUP, KIND, VERSION
from tests.support.kube_emulator import KubeEmulatorHandle

DEPLOYMENTS = "apps/v1/deployments"
GWA = {"metadata": {"name": "gw", "namespace": "chat", "uid": "u1"}}
HOST = "kubernetes.io/hostname"


def ref(**changes: Any) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "name": "gw", "uid": "u1", **changes}


def held_by(*refs: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"ownerReferences": list(refs)}}


@pytest.mark.parametrize(
    ("obj", "gwa", "owned"),
    [
        (held_by(ref()), GWA, True),
        (held_by(ref(uid="u0")), GWA, False),
        (held_by(ref(kind="Deployment")), GWA, False),
        (held_by(ref(apiVersion="apps/v1")), GWA, False),
        (held_by(ref(kind="ReplicaSet"), ref()), GWA, True),
        (held_by(ref(uid="u0")), {"metadata": {"name": "gw"}}, True),
        (held_by(ref(name="other")), {"metadata": {"name": "gw"}}, False),
        ({"metadata": {}}, GWA, False),
    ],
    ids=[
        "same-uid",
        "same-name-earlier-uid",
        "other-kind",
        "other-group",
        "second-reference",
        "read-without-uid-by-name",
        "read-without-uid-other-name",
        "no-owner",
    ],
)
def test_a_gwa_owns_what_its_reference_names_by_uid(
    obj: dict[str, Any], gwa: dict[str, Any], owned: bool
) -> None:
    """A placeholder left by a GWA deleted and made again under the same name is not the new
    one's (another uid); a reference of another kind or group never counts; a GWA read without
    a uid is matched by name."""
    assert owned_by(obj, gwa) is owned


def test_owners_are_named_kind_and_name() -> None:
    """A Deployment someone else owns is named so in the message: each owner, or none."""
    both = held_by(ref(kind="Rollout", name="gw-rollout"), ref())
    assert owner_names(both) == f"Rollout/gw-rollout, {KIND}/gw"
    assert owner_names({"metadata": {}}) == "no owner"


def _cloud(**pod: Any) -> dict[str, Any]:
    spec = {"containers": [{"name": "gateway", "resources": {"requests": {"cpu": "1"}}}], **pod}
    return {
        "metadata": {"name": "gw-cloud", "namespace": "chat"},
        "spec": {"template": {"metadata": {"labels": {"app": "gateway"}}, "spec": spec}},
    }


def test_a_placeholder_goes_at_once_and_with_its_gwa() -> None:
    """A preempted placeholder frees its room at once (no grace period), and its Deployment
    is the GWA's controller-owned child, which garbage collection removes with it."""
    desired = placeholder_deployment(GWA, _cloud(), 3)
    assert desired["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 0
    (owner,) = desired["metadata"]["ownerReferences"]
    assert owner == {**ref(), "controller": True, "blockOwnerDeletion": True}


def test_app_pause_containers_run_until_preempted() -> None:
    """Only an ordinary init container's pause exits (``-v``); the app containers' pauses run,
    so the pod stays and holds its room."""
    init = {"name": "setup", "resources": {"requests": {"cpu": "100m"}}}
    pod = placeholder_deployment(GWA, _cloud(initContainers=[init]), 1)["spec"]["template"]["spec"]
    assert [c.get("args") for c in pod["containers"]] == [None]
    assert [c.get("args") for c in pod["initContainers"]] == [["-v"]]


def test_a_selector_the_api_server_refuses_gets_no_twin_and_breaks_nothing() -> None:
    """A gateway anti-affinity term whose selector no API server admits (an unknown operator)
    is copied as it is, with no twin, and building the placeholder does not fail."""
    bad = {"matchExpressions": [{"key": "app", "operator": "Near", "values": ["gateway"]}]}
    term = {"labelSelector": bad, "topologyKey": HOST}
    affinity = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}
    pod = placeholder_deployment(GWA, _cloud(affinity=copy.deepcopy(affinity)), 2)
    assert pod["spec"]["template"]["spec"]["affinity"] == affinity


def test_a_cloud_deployment_read_without_its_namespace_is_taken_in_the_gwa_s() -> None:
    """A term over the gateway's pods naming the GWA's namespace is the gateway's own even when
    the cloud Deployment at hand carries no namespace: its placeholders get their twin."""
    own = {"matchLabels": {"app": "gateway"}}
    term = {"labelSelector": own, "topologyKey": HOST, "namespaces": ["chat"]}
    affinity = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}
    cloud = _cloud(affinity=affinity)
    del cloud["metadata"]
    desired = placeholder_deployment(GWA, cloud, 2)
    required = desired["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]
    assert required == [term, {"labelSelector": desired["spec"]["selector"], "topologyKey": HOST}]


def test_a_node_selector_key_the_gateway_dropped_is_dropped_from_the_placeholder(
    kube_api: KubeEmulatorHandle,
) -> None:
    """The gateway's node selector loses one key and nothing else changes: the placeholder
    still holds every key the gateway asks for, but also one it no longer does, which would
    keep booting nodes of a kind the gateway may not need. It is patched to the gateway's."""
    old = placeholder_deployment(
        GWA, _cloud(nodeSelector={"pool": "cloud", "instance-type": "m5"}), 4
    )
    kube_api.create(copy.deepcopy(old))
    kube = KubeClient(kube_api.api_client())
    desired = placeholder_deployment(GWA, _cloud(nodeSelector={"pool": "cloud"}), 4)

    def stored() -> dict[str, Any]:
        meta = desired["metadata"]
        return kube_api.get(DEPLOYMENTS, meta["name"], namespace=meta["namespace"])

    assert kube.apply_placeholder(desired, stored())
    assert stored()["spec"]["template"]["spec"]["nodeSelector"] == {"pool": "cloud"}
    assert not kube.apply_placeholder(desired, stored())
