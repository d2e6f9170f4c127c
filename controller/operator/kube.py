"""The Kubernetes adapter: the only module of the operator that talks to the API server.

Everything is read and written as plain JSON (``_preload_content=False``): the operator needs a
handful of fields, and skipping the typed models keeps a list of every pod in a large cluster
cheap and tolerant of fields the client's models do not know.

API errors are translated here, once: 404 on a read is ``None``; timeouts, 429 and 5xx become
:class:`ClusterUnavailable` (transient); 409 is a :class:`Conflict` (a write on a stale read);
any other refusal (403 from RBAC, 422) is a permanent :class:`OperatorError` naming the call.
A kubeconfig that cannot be loaded is a :class:`KubeconfigInvalid` naming the flag (or the
variable that gave it) or file.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import urllib3
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from controller.operator.capacity import (
    PLACEHOLDER_LABEL,
    bound_port,
    matches_selector,
    quantity,
    term_covers,
)
from controller.operator.drain import DELETION_COST
from controller.operator.errors import (
    ClusterUnavailable,
    Conflict,
    KubeconfigInvalid,
    OperatorError,
)
from controller.operator.settings import PLACEHOLDER_IMAGE, OperatorSettings
from controller.spec import GROUP, KIND, PLURAL, VERSION

__all__ = [
    "MERGE_PATCH",
    "PLACEHOLDER_IMAGE",
    "PLACEHOLDER_PRIORITY_CLASS",
    "ClusterSnapshot",
    "KubeClient",
    "api_client_from_settings",
    "owned_by",
    "owner_names",
    "placeholder_deployment",
    "placeholder_name",
]

Obj = dict[str, Any]
MERGE_PATCH = "application/merge-patch+json"
PLACEHOLDER_PRIORITY_CLASS = "tidal-placeholder"
#: The pause image's own user ("nobody"): placeholders run as non-root.
PLACEHOLDER_USER = 65535
MANAGED_BY = {"app.kubernetes.io/managed-by": "tidal"}
#: The keys under which a pod spec holds Kubernetes quantities (``resources``).
_QUANTITIES = frozenset({"requests", "limits"})

#: Pods listed a request at a time: the page the API server returns whole, as text and parsed.
POD_PAGE = 500
#: What a pod carries that nothing in Tidal reads, and that makes most of its size: the
#: managed fields, ``kubectl apply``'s copy of the object, volumes, each container's
#: environment, command and probes, and the containers' statuses (readiness is the pod's
#: Ready condition). At tens of kilobytes a pod, a cluster of 25,000 would otherwise hold a
#: gigabyte for every pass.
_POD_UNREAD = {
    "metadata": ("managedFields",),
    "spec": ("volumes",),
    "status": ("containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses"),
}
_CONTAINER_UNREAD = (
    "env",
    "envFrom",
    "volumeMounts",
    "volumeDevices",
    "command",
    "args",
    "livenessProbe",
    "readinessProbe",
    "startupProbe",
    "lifecycle",
)
_LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def slim_pod(pod: Obj) -> Obj:
    """``pod`` without what Tidal never reads (:data:`_POD_UNREAD`), changed in place."""
    for part, keys in _POD_UNREAD.items():
        section = pod.get(part)
        if isinstance(section, dict):
            for key in keys:
                section.pop(key, None)
    annotations = (pod.get("metadata") or {}).get("annotations")
    if isinstance(annotations, dict):
        annotations.pop(_LAST_APPLIED, None)
    spec = pod.get("spec")
    if isinstance(spec, dict):
        for kind in ("containers", "initContainers", "ephemeralContainers"):
            for container in spec.get(kind) or ():
                if isinstance(container, dict):
                    for key in _CONTAINER_UNREAD:
                        container.pop(key, None)
    return pod


def api_client_from_settings(settings: OperatorSettings) -> client.ApiClient:
    """In-cluster config in a pod (unless a kubeconfig is given), else the kubeconfig.

    The configuration is built for this client only, never the library's global default, so
    that two operators in one process (the HA tests) do not share one. A configuration that
    cannot be loaded is a :class:`KubeconfigInvalid` whose one-line message names the flag (or
    the variable, ``TIDAL_KUBECONFIG``, when that gave it) or file at fault (the client's own
    errors name neither ``--kubeconfig`` nor the default path).
    """
    configuration = client.Configuration()
    in_pod = "KUBERNETES_SERVICE_HOST" in os.environ and not settings.kubeconfig
    try:
        if in_pod:
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        else:
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=settings.kubeconfig,
                context=settings.kube_context,
                client_configuration=configuration,
            )
    except (ConfigException, yaml.YAMLError, OSError) as exc:
        raise KubeconfigInvalid(_kubeconfig_problem(settings, exc, in_pod=in_pod)) from exc
    except (TypeError, AttributeError, KeyError, ValueError) as exc:
        # The client reads a document of the wrong shape (a list, a number, a list where a
        # mapping belongs) without checking it, and fails on it as on a bug of its own.
        shape = ValueError(f"not a kubeconfig: {_one_line(exc)}")
        raise KubeconfigInvalid(_kubeconfig_problem(settings, shape, in_pod=in_pod)) from exc
    return client.ApiClient(configuration)


def _kubeconfig_problem(settings: OperatorSettings, exc: Exception, *, in_pod: bool) -> str:
    """One line that names where the configuration came from and what is wrong with it."""
    if in_pod:
        return f"in-cluster config (KUBERNETES_SERVICE_HOST is set): {_one_line(exc)}"
    if settings.kubeconfig:
        # Its flag, or TIDAL_KUBECONFIG when the environment gave it.
        where = f"{settings.named('kubeconfig')} {settings.kubeconfig}"
        paths = [settings.kubeconfig]
    elif os.environ.get("KUBECONFIG"):
        value = os.environ["KUBECONFIG"]
        where, paths = f"KUBECONFIG {value}", [p for p in value.split(os.pathsep) if p]
    else:
        # The client's default: ~/.kube/config, or $KUBECONFIG as it was when it was imported.
        default = str(config.KUBE_CONFIG_DEFAULT_LOCATION)
        paths = [os.path.expanduser(p) for p in default.split(os.pathsep) if p]
        if not any(os.path.isfile(p) for p in paths):
            return (
                f"no kubeconfig: {', '.join(paths)} does not exist and this is not a pod "
                "(KUBERNETES_SERVICE_HOST is unset); pass --kubeconfig PATH"
            )
        where = f"kubeconfig {default}"
    missing = [p for p in paths if not os.path.isfile(os.path.expanduser(p))]
    if len(missing) == len(paths):
        return f"{where}: no such file"
    if isinstance(exc, yaml.YAMLError):
        return f"{where}: not valid YAML: {_one_line(exc)}"
    context = settings.kube_context
    if context and context not in _context_names(paths):
        known = ", ".join(_context_names(paths)) or "none"
        return (
            f"{settings.named('kube_context')} {context}: no such context in {where} "
            f"(contexts: {known})"
        )
    return f"{where}: {_one_line(exc)}"


def _context_names(paths: list[str]) -> list[str]:
    names: list[str] = []
    for path in paths:
        try:
            with open(os.path.expanduser(path), encoding="utf-8") as handle:
                document = yaml.safe_load(handle) or {}
        except (OSError, yaml.YAMLError):
            continue
        for item in (document.get("contexts") or []) if isinstance(document, dict) else []:
            if isinstance(item, dict) and item.get("name"):
                names.append(str(item["name"]))
    return names


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


@dataclass(frozen=True)
class ClusterSnapshot:
    """Nodes, non-terminated pods and Deployments, read once per loop and shared by every object.

    One list per kind per loop instead of three reads per object: the same trade an informer
    cache makes (what an object sees may be a loop old; each object only writes its own
    Deployments, so nothing in one pass depends on another object's writes).
    """

    nodes: list[Obj]
    pods: list[Obj]
    deployments: dict[tuple[str, str], Obj] = field(default_factory=dict)
    #: Which GatewayAutoscaler scales each Deployment named by one
    #: (:func:`controller.operator.claims.deployment_claims` over the objects listed this loop).
    claims: Mapping[tuple[str, str], str] = field(default_factory=dict)

    def deployment(self, namespace: str, name: str) -> Obj | None:
        return self.deployments.get((namespace, name))

    def claimant(self, namespace: str, deployment: str) -> str | None:
        """The GatewayAutoscaler that scales ``deployment``, when one of them names it."""
        return self.claims.get((namespace, deployment))


def placeholder_name(gwa_name: str) -> str:
    return f"{gwa_name}-placeholder"


def owned_by(obj: Mapping[str, Any], gwa: Mapping[str, Any]) -> bool:
    """Whether ``obj``'s ownerReferences name the GatewayAutoscaler ``gwa`` (by uid; by name
    only for a GWA read without one)."""
    meta = gwa.get("metadata") or {}
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("kind") != KIND or not str(ref.get("apiVersion", "")).startswith(f"{GROUP}/"):
            continue
        if meta.get("uid") and ref.get("uid") == meta.get("uid"):
            return True
        if not meta.get("uid") and ref.get("name") == meta.get("name"):
            return True
    return False


def owner_names(obj: Mapping[str, Any]) -> str:
    """``Kind/name`` of each owner of ``obj``, for a message ("no owner" when it has none)."""
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return ", ".join(f"{ref.get('kind')}/{ref.get('name')}" for ref in refs) or "no owner"


def placeholder_deployment(
    gwa: Mapping[str, Any],
    cloud: Mapping[str, Any],
    replicas: int,
    *,
    image: str = PLACEHOLDER_IMAGE,
) -> Obj:
    """The placeholder Deployment: pause pods shaped like a cloud gateway pod, owned by the GWA.

    Low priority (``tidal-placeholder``, below every real workload) so that the scheduler
    evicts them as soon as a gateway needs the room, while the nodes they made the cluster
    autoscaler boot stay.

    A placeholder pod has a pause container for each of the gateway pod's containers, init
    containers and sidecars included, in their order and with their requests and limits as
    written, and the gateway pod's pod-level ``resources``. The scheduler so reserves for it
    what it reserves for a gateway pod (:func:`~controller.operator.capacity.effective_requests`
    reads the same numbers), and whatever acts on each container acts alike on both: a
    LimitRange's default limit or request, its min, max and ratio. One pause container asking
    for the whole pod would be refused in a namespace whose default container limit is below
    that total, where the gateway's smaller containers are admitted, and nothing would be
    reserved. A pause container that stands for an ordinary init container exits at once
    (``pause -v`` prints its version), so that the pod starts as the gateway's does.
    """
    meta = gwa.get("metadata") or {}
    name = placeholder_name(str(meta.get("name")))
    template = ((cloud.get("spec") or {}).get("template") or {}).get("spec") or {}
    labels = {**MANAGED_BY, PLACEHOLDER_LABEL: str(meta.get("name"))}
    host_network = bool(template.get("hostNetwork"))
    containers = [
        _pause(c, image=image, host_network=host_network) for c in template.get("containers") or []
    ]
    pod_spec: Obj = {
        "priorityClassName": PLACEHOLDER_PRIORITY_CLASS,
        "terminationGracePeriodSeconds": 0,
        # Pod Security "restricted": a gateway namespace that enforces it would otherwise
        # accept the Deployment and refuse every pod, and nothing would be reserved.
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": PLACEHOLDER_USER,
            "runAsGroup": PLACEHOLDER_USER,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": containers or [_pause({"name": "pause"}, image=image)],
    }
    init = [
        _pause(c, image=image, init=True, host_network=host_network)
        for c in template.get("initContainers") or []
    ]
    if init:
        pod_spec["initContainers"] = init
    for key in _COPIED:
        if template.get(key):
            pod_spec[key] = template[key]
    selector = {"matchLabels": {PLACEHOLDER_LABEL: str(meta.get("name"))}}
    spread = _spread_among_placeholders(template.get("topologySpreadConstraints"), selector)
    if spread:
        pod_spec["topologySpreadConstraints"] = spread
    gateway_labels = (((cloud.get("spec") or {}).get("template") or {}).get("metadata") or {}).get(
        "labels"
    ) or {}
    gateway_namespace = str((cloud.get("metadata") or {}).get("namespace") or meta.get("namespace"))
    affinity = _apart_like_the_gateway(
        template.get("affinity"), gateway_labels, gateway_namespace, selector
    )
    if affinity:
        pod_spec["affinity"] = affinity
    body: Obj = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": meta.get("namespace"), "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": selector,
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }
    if meta.get("uid"):
        body["metadata"]["ownerReferences"] = [
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": KIND,
                "name": meta.get("name"),
                "uid": meta["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
    return body


def _spread_among_placeholders(constraints: Any, selector: Mapping[str, Any]) -> list[Obj]:
    """The gateway's topology spread constraints, each spreading the placeholder pods among
    themselves (``selector``, the placeholder Deployment's) instead of the gateway's pods.

    A gateway constraint selects the gateway's pods, which placeholders do not match: copied
    as it is, it would count no placeholder, so every placeholder could go to (and have the
    cluster autoscaler boot nodes in) one zone, where the gateway pods that will preempt them
    may not all go. Spread like the gateway's pods (the same topology key, skew,
    ``whenUnsatisfiable``, ``minDomains`` and node affinity and taint policies, so over the
    same domains), the placeholders hold room in every domain as evenly as the gateway's
    constraint makes its own pods spread when it grows. What this does not follow: a gateway
    already uneven across domains fills the emptier ones first. No selector counts gateway
    pods and placeholders together unless placeholders carry the gateway's labels, and with
    them its Services' traffic. ``matchLabelKeys`` is left out: its keys name the gateway
    pods' labels, and placeholders of every revision hold room alike. Constraints that become
    alike (one topology key and ``whenUnsatisfiable``, which the API server refuses twice)
    are one, at the smaller skew.
    """
    spread: dict[tuple[object, object], Obj] = {}
    for constraint in constraints or []:
        own = {k: v for k, v in constraint.items() if k not in ("labelSelector", "matchLabelKeys")}
        own["labelSelector"] = dict(selector)
        key = (own.get("topologyKey"), own.get("whenUnsatisfiable"))
        if key not in spread or own.get("maxSkew", 1) < spread[key].get("maxSkew", 1):
            spread[key] = own
    return list(spread.values())


def _apart_like_the_gateway(
    affinity: Any, gateway_labels: Mapping[str, str], namespace: str, selector: Mapping[str, Any]
) -> Any:
    """The gateway's affinity, with each pod anti-affinity term that keeps gateway pods apart
    (its selector matches their labels in their ``namespace``) given a twin that keeps
    placeholders apart alike (``selector``, the placeholder Deployment's, same topology key
    and, for a preferred term, weight).

    Copied alone, a term "one gateway per node" selects gateway pods only: a placeholder
    avoids nodes holding a gateway, where no gateway could go anyway, but several share one
    node, which then holds room for a single gateway. With the twin, each placeholder holds a
    node of its own, as each gateway pod the placeholders stand for would need. Gateway pods
    do not count placeholders, so one still preempts a placeholder on a node without a
    gateway. Other terms (apart from other workloads, together with them) are kept as they
    are. ``matchLabelKeys`` and ``mismatchLabelKeys`` are left out of a twin: their keys
    name the gateway pods' labels.
    """
    if not isinstance(affinity, Mapping):
        return affinity
    anti = affinity.get("podAntiAffinity")
    if not isinstance(anti, Mapping):
        return affinity

    def twin(term: Mapping[str, Any]) -> Obj | None:
        if not term_covers(term, namespace, namespace):
            return None  # other namespaces than the gateway's own: not the gateway's term
        try:
            ours = matches_selector(gateway_labels, term.get("labelSelector") or {})
        except ValueError:
            return None  # the API server refuses such a selector: nothing to follow
        if not term.get("labelSelector") or not ours:
            return None
        return {"labelSelector": dict(selector), "topologyKey": term.get("topologyKey")}

    rewritten = dict(anti)
    required = list(anti.get("requiredDuringSchedulingIgnoredDuringExecution") or [])
    twins: list[Obj] = []
    for t in map(twin, required):
        if t and t not in twins:  # two terms over the gateway on one key: one twin
            twins.append(t)
    if twins:
        rewritten["requiredDuringSchedulingIgnoredDuringExecution"] = [*required, *twins]
    preferred = list(anti.get("preferredDuringSchedulingIgnoredDuringExecution") or [])
    weighted = []
    for entry in preferred:
        term = twin(entry.get("podAffinityTerm") or {})
        if term:
            weighted.append({"weight": entry.get("weight"), "podAffinityTerm": term})
    if weighted:
        rewritten["preferredDuringSchedulingIgnoredDuringExecution"] = [*preferred, *weighted]
    return {**affinity, "podAntiAffinity": rewritten}


def _pause(
    container: Mapping[str, Any],
    *,
    image: str = PLACEHOLDER_IMAGE,
    init: bool = False,
    host_network: bool = False,
) -> Obj:
    """A pause container in place of ``container``: its name, requests and limits as written
    (quantities, which the API server canonicalises, are compared by value, see
    :func:`_contains`), its ``restartPolicy`` when it is a sidecar. One for an ordinary init
    container exits at once (``-v``): it would otherwise hold the pod in its init phase."""
    resources = container.get("resources") or {}
    own: Obj = {
        "name": container.get("name"),
        "image": image,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    kept = {kind: dict(resources[kind]) for kind in ("requests", "limits") if resources.get(kind)}
    if kept:
        own["resources"] = kept
    sidecar = init and container.get("restartPolicy") == "Always"
    # Only the containers that run throughout hold a port as the scheduler counts it.
    ports = _host_ports(container, host_network=host_network) if sidecar or not init else []
    if ports:
        own["ports"] = ports
    if sidecar:
        own["restartPolicy"] = "Always"
    elif init:
        own["args"] = ["-v"]
    return own


def _host_ports(container: Mapping[str, Any], *, host_network: bool = False) -> list[Obj]:
    """The container's ports bound on the node, as the placeholder declares them: those with a
    ``hostPort``, and with ``hostNetwork`` every one (the API server sets ``hostPort`` to the
    container port in a pod, not in a Deployment's template). The placeholder itself is no
    ``hostNetwork`` pod: it asks for the same host ports.

    The scheduler's NodePorts filter keeps two pods asking for one host port off one node: a
    gateway with a host port runs one per node, and so must its placeholders, or several of
    them share a node that holds room for one gateway. Preemption frees the port for the
    gateway. The pause container binds nothing; other ports do not affect scheduling and are
    left out."""
    kept = []
    for port in container.get("ports") or []:
        host = bound_port(port, host_network=host_network)
        if not host:
            continue
        own = {
            "containerPort": port.get("containerPort"),
            "hostPort": host,
            "protocol": port.get("protocol") or "TCP",
        }
        if port.get("hostIP"):
            own["hostIP"] = port["hostIP"]
        kept.append(own)
    return kept


@contextmanager
def _api(what: str, *, missing_ok: bool = False) -> Iterator[list[bool]]:
    """Translate the client's errors for ``what``; yields a flag list set when 404 was swallowed."""
    missing = [False]
    try:
        yield missing
    except ApiException as exc:
        if exc.status == 404 and missing_ok:
            missing[0] = True
            return
        detail = _api_message(exc)
        if exc.status == 409:
            raise Conflict(f"{what}: {exc.status} {detail}") from exc
        if exc.status in (408, 429) or (exc.status or 0) >= 500 or not exc.status:
            raise ClusterUnavailable(f"{what}: {exc.status} {detail}") from exc
        raise OperatorError(f"{what}: {exc.status} {detail}") from exc
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise ClusterUnavailable(f"{what}: {exc}") from exc


def _api_message(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "{}").get("message") or exc.reason)
    except (ValueError, AttributeError):
        return str(exc.reason)


class KubeClient:
    """The calls the operator makes, each returning plain JSON."""

    def __init__(self, api_client: client.ApiClient, *, timeout: float = 10.0) -> None:
        self.api_client = api_client
        self.timeout = timeout
        self.core = client.CoreV1Api(api_client)
        self.apps = client.AppsV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self.coordination = client.CoordinationV1Api(api_client)

    def _json(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Obj:
        response = call(*args, _preload_content=False, _request_timeout=self.timeout, **kwargs)
        data = response.data
        return json.loads(data) if data else {}

    # --- GatewayAutoscalers --------------------------------------------------------------

    def list_autoscalers(self, namespaces: list[str] | tuple[str, ...] = ()) -> list[Obj]:
        items: list[Obj] = []
        if not namespaces:
            with _api("list gatewayautoscalers"):
                found = self._json(self.custom.list_cluster_custom_object, GROUP, VERSION, PLURAL)
            return list(found.get("items") or [])
        for namespace in namespaces:
            with _api(f"list gatewayautoscalers in {namespace}"):
                found = self._json(
                    self.custom.list_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL
                )
                items.extend(found.get("items") or [])
        return items

    def patch_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        with _api(f"patch status of gatewayautoscaler {namespace}/{name}", missing_ok=True):
            self._json(
                self.custom.patch_namespaced_custom_object_status,
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                {"status": dict(status)},
                _content_type=MERGE_PATCH,
            )

    # --- The cluster ---------------------------------------------------------------------

    def snapshot(self, namespaces: list[str] | tuple[str, ...] = ()) -> ClusterSnapshot:
        """Nodes and pods cluster-wide (capacity counts every pod); Deployments where watched."""
        with _api("list nodes"):
            nodes = self._json(self.core.list_node).get("items") or []
        with _api("list pods"):
            pods = self._list_pods()
        deployments: list[Obj] = []
        if not namespaces:
            with _api("list deployments"):
                found = self._json(self.apps.list_deployment_for_all_namespaces)
                deployments.extend(found.get("items") or [])
        for namespace in namespaces:
            with _api(f"list deployments in {namespace}"):
                found = self._json(self.apps.list_namespaced_deployment, namespace)
                deployments.extend(found.get("items") or [])
        by_name = {
            (str(d["metadata"].get("namespace")), str(d["metadata"].get("name"))): d
            for d in deployments
            if d.get("metadata")
        }
        return ClusterSnapshot(list(nodes), list(pods), by_name)

    def _list_pods(self) -> list[Obj]:
        """Every pod not ended, cluster-wide, a page at a time and each slimmed as it comes: a
        large cluster's pods are never held whole as text or with what Tidal never reads."""
        pods: list[Obj] = []
        token: str | None = None
        seen: set[str] = set()
        while True:
            extra: dict[str, Any] = {"_continue": token} if token else {}
            page = self._json(
                self.core.list_pod_for_all_namespaces,
                field_selector="status.phase!=Succeeded,status.phase!=Failed",
                limit=POD_PAGE,
                **extra,
            )
            pods.extend(slim_pod(pod) for pod in page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue") or None
            if token is None:
                return pods
            if token in seen:  # a server or proxy that pages in a circle: never-ending
                raise ClusterUnavailable(f"list pods: continue token {token!r} came twice")
            seen.add(token)

    def scale_deployment(self, namespace: str, name: str, replicas: int) -> None:
        with _api(f"scale deployment {namespace}/{name} to {replicas}"):
            self._json(
                self.apps.patch_namespaced_deployment_scale,
                name,
                namespace,
                {"spec": {"replicas": replicas}},
                _content_type=MERGE_PATCH,
            )

    def set_deletion_cost(self, namespace: str, name: str, cost: str | None) -> None:
        """Set a pod's ``controller.kubernetes.io/pod-deletion-cost`` (None takes it away)."""
        action = "mark" if cost is not None else "unmark"
        with _api(f"{action} pod {namespace}/{name} for removal", missing_ok=True):
            self._json(
                self.core.patch_namespaced_pod,
                name,
                namespace,
                {"metadata": {"annotations": {DELETION_COST: cost}}},
                _content_type=MERGE_PATCH,
            )

    def apply_placeholder(self, desired: Obj, existing: Obj | None) -> bool:
        """Create the placeholder Deployment, or patch it where it differs. True if it wrote."""
        meta = desired["metadata"]
        where = f"{meta['namespace']}/{meta['name']}"
        if existing is None:
            with _api(f"create placeholder deployment {where}"):
                self._json(self.apps.create_namespaced_deployment, meta["namespace"], desired)
            return True
        if _contains(existing, desired) and not _stale_copies(existing, desired):
            return False
        spec = json.loads(json.dumps(desired["spec"]))
        pod, had = spec["template"]["spec"], _pod_spec(existing)
        for key in (*_TAKEN, "initContainers"):
            # A merge patch keeps what it does not name: null out what the gateway dropped.
            if had.get(key) is not None or pod.get(key) is not None:
                pod[key] = _replacing(had.get(key), pod.get(key))
        patch = {"metadata": {"labels": meta["labels"]}, "spec": spec}
        if "ownerReferences" in meta:
            patch["metadata"]["ownerReferences"] = meta["ownerReferences"]
        with _api(f"patch placeholder deployment {where}"):
            self._json(
                self.apps.patch_namespaced_deployment,
                meta["name"],
                meta["namespace"],
                patch,
                _content_type=MERGE_PATCH,
            )
        return True

    def create_event(
        self,
        gwa: Mapping[str, Any],
        *,
        reason: str,
        message: str,
        warning: bool = False,
        component: str = "tidal-operator",
        instance: str = "",
    ) -> None:
        meta = gwa.get("metadata") or {}
        now = time.time()
        from controller.operator.status import rfc3339

        stamp = rfc3339(now)
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{meta.get('name')}.{time.time_ns():x}",
                "namespace": meta.get("namespace"),
            },
            "involvedObject": {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": KIND,
                "name": meta.get("name"),
                "namespace": meta.get("namespace"),
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "reason": reason,
            "message": message[:1024],
            "type": "Warning" if warning else "Normal",
            "source": {"component": component},
            "reportingComponent": f"{GROUP}/operator",
            "reportingInstance": instance,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        with _api(f"create event for {meta.get('namespace')}/{meta.get('name')}"):
            self._json(self.core.create_namespaced_event, meta.get("namespace"), body)

    # --- Leases (leader election) --------------------------------------------------------

    def read_lease(self, namespace: str, name: str) -> Obj | None:
        with _api(f"read lease {namespace}/{name}", missing_ok=True) as missing:
            found = self._json(self.coordination.read_namespaced_lease, name, namespace)
        return None if missing[0] else found

    def create_lease(self, namespace: str, body: Obj) -> Obj:
        with _api(f"create lease {namespace}/{body['metadata']['name']}"):
            return self._json(self.coordination.create_namespaced_lease, namespace, body)
        raise AssertionError("unreachable")  # pragma: no cover

    def patch_lease(self, namespace: str, name: str, patch: Obj) -> Obj:
        """A merge patch; a ``metadata.resourceVersion`` in it is a precondition (409 if stale)."""
        with _api(f"patch lease {namespace}/{name}"):
            return self._json(
                self.coordination.patch_namespaced_lease,
                name,
                namespace,
                patch,
                _content_type=MERGE_PATCH,
            )
        raise AssertionError("unreachable")  # pragma: no cover


#: Pod-spec fields the placeholder copies from the cloud gateway's template, or leaves out. The
#: RuntimeClass brings the pod overhead (set on each pod at admission) and its own scheduling;
#: ``resources`` holds the pod-level requests and limits (Kubernetes 1.32+).
_COPIED = ("nodeSelector", "tolerations", "affinity", "runtimeClassName", "resources")
#: Pod-spec fields the placeholder takes from the template, copied or rewritten
#: (:func:`_spread_among_placeholders`): it keeps none that the template dropped.
_TAKEN = (*_COPIED, "topologySpreadConstraints")


def _pod_spec(deployment: Mapping[str, Any]) -> Mapping[str, Any]:
    template = (deployment.get("spec") or {}).get("template") or {}
    return template.get("spec") or {}


def _same(a: Any, b: Any, *, quantities: bool = False) -> bool:
    return _contains(a, b, quantities=quantities) and _contains(b, a, quantities=quantities)


def _stale_copies(existing: Mapping[str, Any], desired: Mapping[str, Any]) -> bool:
    """Whether the placeholder holds a copied field, or a container, request or limit, that
    the gateway's template no longer has (:func:`_contains` lets extra fields pass: the API
    server adds its defaults, to containers too, but adds none to these)."""
    have, want = _pod_spec(existing), _pod_spec(desired)
    if any(not _same(have.get(key) or None, want.get(key) or None) for key in _TAKEN):
        return True

    def shapes(pod: Mapping[str, Any]) -> list[Any]:
        """Each container as the placeholder writes it, nothing the API server adds."""
        containers = [*(pod.get("containers") or []), *(pod.get("initContainers") or [])]
        return [
            {
                "init": index >= len(pod.get("containers") or []),
                "name": c.get("name"),
                "image": c.get("image"),
                "args": c.get("args") or None,
                "restartPolicy": c.get("restartPolicy"),
                "ports": c.get("ports") or None,
                "resources": {
                    kind: (c.get("resources") or {}).get(kind) or None
                    for kind in ("requests", "limits")
                },
            }
            for index, c in enumerate(containers)
        ]

    return not _same(shapes(have), shapes(want))


def _replacing(old: Any, new: Any) -> Any:
    """A merge-patch value that leaves ``new`` in place of ``old``: keys of ``old`` that ``new``
    lacks are set to null, at every depth of a map."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        return {key: _replacing(old.get(key), value) for key, value in new.items()} | {
            key: None for key in old if key not in new
        }
    return new


def _contains(existing: Any, desired: Any, *, quantities: bool = False) -> bool:
    """Whether ``existing`` already holds every value of ``desired`` (extra fields are fine).

    Resource requests and limits (``quantities``) are compared by value: the API server keeps a
    quantity in canonical form, so text that differs from what was sent (``0.750`` is stored
    as ``750m``) would otherwise read as a change on every loop, and be patched on every loop.
    """
    if isinstance(desired, Mapping):
        return isinstance(existing, Mapping) and all(
            _contains(existing.get(k), v, quantities=quantities or k in _QUANTITIES)
            for k, v in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(existing, list)
            and len(existing) == len(desired)
            and all(
                _contains(e, d, quantities=quantities)
                for e, d in zip(existing, desired, strict=True)
            )
        )
    if quantities and existing != desired:
        try:
            return quantity(existing) == quantity(desired)
        except ValueError:
            return False
    return bool(existing == desired)
