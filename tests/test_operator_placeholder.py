"""The placeholder Deployment and when it is written (controller.operator.kube)."""

from __future__ import annotations

import copy
from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes import client

from controller.operator.capacity import quantity
from controller.operator.kube import KubeClient, placeholder_deployment

GWA = {"metadata": {"name": "gw", "namespace": "chat", "uid": "u1"}}


def cloud(*requests: dict[str, str]) -> dict[str, Any]:
    containers = [
        {"name": f"c{i}", "image": "gateway", "resources": {"requests": dict(r)}}
        for i, r in enumerate(requests)
    ]
    return {"spec": {"template": {"spec": {"containers": containers}}}}


#: A gateway pod of two containers: 750m and 1536Mi in all.
TWO_CONTAINERS = cloud({"cpu": "250m", "memory": "1Gi"}, {"cpu": "500m", "memory": "512Mi"})


class Apps:
    """The AppsV1Api calls apply_placeholder makes, recorded instead of sent."""

    def __init__(self) -> None:
        self.patches: list[dict[str, Any]] = []

    def patch_namespaced_deployment(self, name: str, namespace: str, body: Any, **_: Any) -> Any:
        self.patches.append(body)
        return SimpleNamespace(data=b"{}")


@pytest.fixture
def apps() -> Apps:
    return Apps()


@pytest.fixture
def kube(apps: Apps) -> KubeClient:
    kube = KubeClient(client.ApiClient())
    kube.apps = apps  # type: ignore[assignment]
    return kube


def stored(desired: dict[str, Any], **requests: str) -> dict[str, Any]:
    """The placeholder as the API server returns it: quantities in canonical form."""
    body = copy.deepcopy(desired)
    body["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"] = requests
    body["status"] = {"replicas": 3}
    return body


def test_requests_of_all_containers_add_up() -> None:
    """One pause container asks for what the whole gateway pod asks for."""
    desired = placeholder_deployment(GWA, TWO_CONTAINERS, 3)
    requests = desired["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]
    assert {k: quantity(v) for k, v in requests.items()} == {
        "cpu": quantity("750m"),
        "memory": quantity("1536Mi"),
    }


def test_a_placeholder_the_server_canonicalised_is_not_patched(
    kube: KubeClient, apps: Apps
) -> None:
    """Summed requests are sent as ``0.750`` and stored as ``750m``: the same quantity, so the
    next loop writes nothing, instead of patching the placeholder on every loop."""
    desired = placeholder_deployment(GWA, TWO_CONTAINERS, 3)
    assert not kube.apply_placeholder(desired, stored(desired, cpu="750m", memory="1536Mi"))
    assert apps.patches == []


def test_a_placeholder_with_other_requests_is_patched(kube: KubeClient, apps: Apps) -> None:
    """A real change of the gateway's requests still reaches the placeholder."""
    desired = placeholder_deployment(GWA, TWO_CONTAINERS, 3)
    assert kube.apply_placeholder(desired, stored(desired, cpu="500m", memory="1536Mi"))
    assert len(apps.patches) == 1
