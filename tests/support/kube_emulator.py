"""A Kubernetes API server for tests: kmock's emulator with the gaps a real client hits fixed.

No kube-apiserver can run on the CI machines, so the operator's integration tests talk to
kmock's :class:`~kmock.KubernetesEmulator` over real HTTP with the official ``kubernetes``
client. kmock 0.8 is a mock first and an API server second; the official client trips on:

- create answers 200 where the client expects 201 Created;
- ``GET /version/`` (the client's spelling, with the slash) is 404;
- there is no PUT (replace), so ``replace_*`` and Lease-based leader election fail;
- ``labelSelector`` and ``fieldSelector`` are ignored, so every list returns everything;
- objects get no ``uid``, ``generation`` or ``resourceVersion``, so ``observedGeneration``
  and optimistic concurrency (a stale Lease renewal must get 409 Conflict) cannot work;
- every PATCH is a dict merge whatever its Content-Type (a JSON patch, a list, breaks it);
- subresources are not modelled: ``deployments/x/scale`` returns the Deployment, not a
  Scale, and a write to ``.../status`` can change the spec.

:class:`TidalKubeEmulator` keeps kmock's object store (``emulator.objects``), request log
(``emulator.requests``) and DSL (``emulator['get /api/v1/nodes'] << 500`` still injects faults,
ahead of the emulation), and replaces the request handling for resource URLs: uid,
creationTimestamp and a global resourceVersion on every write; ``generation`` bumps when
anything but metadata and status changes; the status subresource (writes to the main resource
keep the stored status, writes to ``/status`` change only the status); the scale subresource of
Deployments, ReplicaSets and StatefulSets; PUT with 409 on a stale resourceVersion; the three
PATCH flavours (:mod:`tests.support.kube_patches`) plus an approximate server-side apply;
label and field selectors (:mod:`tests.support.kube_selectors`); finalizers; garbage collection
of dependents through ownerReferences; and watches that honour selectors, ``resourceVersion``
(replay from a bounded event log, 410 Gone when too old) and ``timeoutSeconds``.

With ``simulate_deployments`` (the default) the emulator also plays the Deployment controller:
whenever a Deployment's generation changes, its status reports ``spec.replicas`` replicas as
ready. A test that wants slow or stuck pods turns it off and writes ``/status`` itself.

kmock's handlers are asyncio, and calling the synchronous client from inside an async fixture
on the same loop deadlocks, so :func:`running_emulator` serves the emulator from its own thread
and event loop on 127.0.0.1 and a free port. The aiohttp server is started directly rather than
through ``kmock.Server``, which patches aiohttp's resolver process-wide and fails when two
servers do not stop in LIFO order.
"""

from __future__ import annotations

import asyncio
import builtins
import collections
import contextlib
import copy
import json
import random
import socket
import string
import threading
import uuid
from collections.abc import Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import aiohttp.web
import attrs
import kmock
import kubernetes.client
import yaml
from kmock._internal.filtering import FnCriteria
from kmock._internal.rendering import Request, Response

from tests.support.kube_patches import PatchError, json_patch, merge_patch, strategic_merge_patch
from tests.support.kube_selectors import SelectorError, parse_field_selector, parse_label_selector

T = TypeVar("T")

__all__ = [
    "KubeEmulatorHandle",
    "ResourceType",
    "TidalKubeEmulator",
    "running_emulator",
]


@dataclass(frozen=True)
class ResourceType:
    """What the emulator knows of a resource: enough for discovery, scoping and subresources."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    subresources: frozenset[str] = frozenset()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def builtin(self) -> bool:
        """Built-in types accept strategic merge patches; custom resources answer 415."""
        return "." not in self.group or self.group.endswith(".k8s.io")


def _rt(
    group: str, version: str, plural: str, kind: str, namespaced: bool, *subs: str
) -> ResourceType:
    return ResourceType(group, version, plural, kind, namespaced, frozenset(subs))


KNOWN_RESOURCES: tuple[ResourceType, ...] = (
    _rt("", "v1", "pods", "Pod", True, "status"),
    _rt("", "v1", "nodes", "Node", False, "status"),
    _rt("", "v1", "namespaces", "Namespace", False, "status"),
    _rt("", "v1", "events", "Event", True),
    _rt("", "v1", "configmaps", "ConfigMap", True),
    _rt("", "v1", "services", "Service", True, "status"),
    _rt("apps", "v1", "deployments", "Deployment", True, "status", "scale"),
    _rt("apps", "v1", "replicasets", "ReplicaSet", True, "status", "scale"),
    _rt("apps", "v1", "statefulsets", "StatefulSet", True, "status", "scale"),
    _rt("coordination.k8s.io", "v1", "leases", "Lease", True),
    _rt("events.k8s.io", "v1", "events", "Event", True),
    _rt("scheduling.k8s.io", "v1", "priorityclasses", "PriorityClass", False),
    _rt(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        False,
        "status",
    ),
    _rt("tidal.dev", "v1alpha1", "gatewayautoscalers", "GatewayAutoscaler", True, "status"),
)

# Keys that a client cannot change by a write (the server owns them).
_SERVER_OWNED_META = (
    "uid",
    "creationTimestamp",
    "generation",
    "deletionTimestamp",
    "name",
    "namespace",
)


# A path segment no object can have (names are DNS labels), standing for the namespaces list.
_NAMESPACES_MARKER = "~namespaces~"


@dataclass(frozen=True)
class _Route:
    group: str
    version: str
    plural: str | None
    namespace: str | None
    name: str | None
    subresource: str | None


def _parse_route(path: str) -> _Route | None:
    """Split a resource URL; kmock's own parser misreads ``/api/v1/namespaces/NAME``."""
    parts = [part for part in path.strip("/").split("/") if part]
    if len(parts) >= 2 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    if rest == ["namespaces", _NAMESPACES_MARKER]:
        return _Route(group, version, "namespaces", None, None, None)
    namespace = None
    if len(rest) >= 3 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    plural = rest[0] if rest else None
    name = rest[1] if len(rest) > 1 else None
    subresource = "/".join(rest[2:]) or None
    return _Route(group, version, plural, namespace, name, subresource)


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _error(status: int, reason: str, message: str, **details: Any) -> kmock.KubernetesError:
    return kmock.KubernetesError(status=status, reason=reason, message=message, details=details)


def _meta(obj: Mapping[str, Any]) -> dict[str, Any]:
    return dict(obj.get("metadata") or {})


def _spec_part(obj: Mapping[str, Any]) -> dict[str, Any]:
    """Everything that bumps ``generation`` when it changes: all but metadata and status."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


@dataclass
class _Outcome:
    status: int = 200
    payload: Any = None
    watch: _WatchPlan | None = None


@dataclass
class _WatchPlan:
    rtype: ResourceType
    namespace: str | None
    name: str | None
    matches: Callable[[Mapping[str, Any]], bool]
    since: int | None
    timeout: float | None


@dataclass
class _LogEntry:
    rv: int
    rtype: ResourceType
    namespace: str | None
    name: str
    type: str
    obj: dict[str, Any] = field(repr=False)


@attrs.define(kw_only=True)
class TidalKubeEmulator(kmock.KubernetesEmulator):
    """kmock's Kubernetes emulator behaving enough like an API server for the official client."""

    simulate_deployments: bool = True
    extra_resources: tuple[ResourceType, ...] = ()
    event_log_size: int = 10_000
    server_version: Mapping[str, str] = attrs.field(
        factory=lambda: {
            "major": "1",
            "minor": "30",
            "gitVersion": "v1.30.0+tidal-emulator",
            "gitCommit": "0" * 40,
            "gitTreeState": "clean",
            "buildDate": "2024-04-17T00:00:00Z",
            "goVersion": "go1.22.2",
            "compiler": "gc",
            "platform": "linux/amd64",
        }
    )

    _types: dict[tuple[str, str, str], ResourceType] = attrs.field(factory=dict, init=False)
    _rv: int = attrs.field(default=1000, init=False)
    _outcomes: dict[Request, _Outcome] = attrs.field(factory=dict, init=False)
    _log: collections.deque[_LogEntry] = attrs.field(init=False)
    _log_floor: int = attrs.field(default=0, init=False)
    _changed: asyncio.Condition | None = attrs.field(default=None, init=False)
    _closing: bool = attrs.field(default=False, init=False)
    #: ``(METHOD, path)`` answered with this status before the emulation runs (``refuse``).
    refusals: dict[tuple[str, str], int] = attrs.field(factory=dict, init=False)

    def __attrs_post_init__(self) -> None:
        self._log = collections.deque(maxlen=self.event_log_size)
        # Registered before kmock's own fallbacks, so that at the same (lowest) priority this one
        # answers every resource request the emulator has already decided; user reactions still
        # come first.
        (
            self.fallback[FnCriteria(lambda request: request in self._outcomes)]
            << self._serve_outcome
        )
        super().__attrs_post_init__()
        self.fallback["get /version/"] << self._serve_server_version
        for rtype in (*KNOWN_RESOURCES, *self.extra_resources):
            self.register(rtype)

    def register(self, rtype: ResourceType) -> None:
        """Make a resource known (for lists, discovery and scoping)."""
        self._types[rtype.group, rtype.version, rtype.plural] = rtype
        self.resources[f"{rtype.group}/{rtype.version}/{rtype.plural}"] = kmock.ResourceInfo(
            kind=rtype.kind,
            namespaced=rtype.namespaced,
            subresources=set(rtype.subresources),
            verbs={"create", "get", "list", "watch", "update", "patch", "delete"},
        )

    def resource_type(self, resource: str) -> ResourceType:
        """``"apps/v1/deployments"`` or ``"v1/pods"`` to its :class:`ResourceType`."""
        parts = resource.strip("/").split("/")
        group, version, plural = ("", *parts) if len(parts) == 2 else parts
        try:
            return self._types[group, version, plural]
        except KeyError:
            raise KeyError(f"unknown resource {resource!r}; register() it first") from None

    def resource_type_of(self, obj: Mapping[str, Any]) -> ResourceType:
        """The resource of an object, from its apiVersion and kind."""
        api_version, kind = obj.get("apiVersion", ""), obj.get("kind", "")
        group, _, version = api_version.rpartition("/")
        for rtype in self._types.values():
            if (rtype.group, rtype.version, rtype.kind) == (group, version, kind):
                return rtype
        raise KeyError(f"unknown kind {kind!r} in {api_version!r}; register() it first")

    async def _serve_server_version(self, request: Request) -> Any:
        return dict(self.server_version)

    # -- request handling --------------------------------------------------------------------

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        # kmock's request parser raises on the namespaces collection (/api/v1/namespaces), before
        # any handler runs: give it a path it can parse, which _parse_route maps back.
        if raw_request.path.rstrip("/") == "/api/v1/namespaces":
            url = raw_request.rel_url.with_path(f"/api/v1/namespaces/{_NAMESPACES_MARKER}")
            url = url.with_query(raw_request.rel_url.query)
            raw_request = raw_request.clone(rel_url=url)
        return await super().__call__(raw_request)

    async def _handle(self, request: Request) -> aiohttp.web.StreamResponse:
        route = _parse_route(request.url.path)
        if route is None or route.plural is None:  # discovery, /version, non-Kubernetes paths
            return await kmock.RawHandler._handle(self, request)
        if self._changed is None:
            self._changed = asyncio.Condition()
        refused = self.refusals.get((request.method.value.upper(), request.url.path))
        if refused is not None:  # a write refused is not applied, unlike a DSL reaction's
            raise _error(refused, "ServiceUnavailable", "refused by the test")
        async with self._lock:
            outcome = self._execute(route, request)
        if request.method.value.upper() != "GET":
            await self._notify()
        self._outcomes[request] = outcome
        try:
            return await kmock.RawHandler._handle(self, request)
        finally:
            self._outcomes.pop(request, None)

    async def _serve_outcome(self, request: Request) -> Any:
        outcome = self._outcomes[request]
        if outcome.watch is not None:
            return self._watch_stream(outcome.watch)
        return Response(status=outcome.status, payload=outcome.payload)

    def _execute(self, route: _Route, request: Request) -> _Outcome:
        rtype = self._types.get((route.group, route.version, route.plural or ""))
        if rtype is None:
            raise _error(404, "NotFound", "the server could not find the requested resource")
        namespace = route.namespace if rtype.namespaced else None
        method = request.method.value.upper()
        params = request.params
        if route.name is None:
            if method == "GET" and params.get("watch") in ("true", "1"):
                return _Outcome(watch=self._watch_plan(rtype, namespace, None, params))
            if method == "GET":
                return _Outcome(payload=self._list(rtype, namespace, params))
            if method == "POST":
                body = self._body(request)
                return _Outcome(201, self._create(rtype, namespace, body))
            if method == "DELETE":
                return _Outcome(payload=self._delete_collection(rtype, namespace, params))
            raise _error(405, "MethodNotAllowed", f"{method} is not supported on a collection")
        if route.subresource not in (None, *rtype.subresources):
            raise _error(
                404, "NotFound", f"{rtype.plural} has no subresource {route.subresource!r}"
            )
        key = self._key(rtype, namespace, route.name)
        if method == "GET" and params.get("watch") in ("true", "1"):
            return _Outcome(watch=self._watch_plan(rtype, namespace, route.name, params))
        if method == "GET":
            obj = self._require(rtype, key)
            return _Outcome(payload=self._scale_of(obj) if route.subresource == "scale" else obj)
        if method == "PUT":
            return _Outcome(
                payload=self._replace(rtype, key, self._body(request), route.subresource)
            )
        if method == "PATCH":
            return self._patch(rtype, key, request, route.subresource)
        if method == "DELETE" and route.subresource is None:
            return _Outcome(payload=self._delete(rtype, key))
        raise _error(405, "MethodNotAllowed", f"{method} is not supported here")

    @staticmethod
    def _body(request: Request) -> Any:
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        try:
            if content_type.endswith("yaml"):
                return yaml.safe_load(request.body.decode() or "null")
            return json.loads(request.body.decode() or "null")
        except (ValueError, yaml.YAMLError) as exc:
            raise _error(400, "BadRequest", f"the request body is not valid: {exc}") from exc

    # -- the store -----------------------------------------------------------------------

    @staticmethod
    def _key(rtype: ResourceType, namespace: str | None, name: str) -> tuple[Any, str | None, str]:
        resource = kmock.resource(group=rtype.group, version=rtype.version, plural=rtype.plural)
        return (resource, namespace if rtype.namespaced else None, name)

    def _stored(self, key: tuple[Any, str | None, str]) -> dict[str, Any] | None:
        if key not in self._objects or self._objects[key].deleted:
            return None
        return copy.deepcopy(self._objects[key].raw)

    def _require(self, rtype: ResourceType, key: tuple[Any, str | None, str]) -> dict[str, Any]:
        obj = self._stored(key)
        if obj is None:
            raise _error(
                404,
                "NotFound",
                f'{rtype.plural}.{rtype.group or "core"} "{key[2]}" not found',
                name=key[2],
                kind=rtype.plural,
            )
        return obj

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def _record(self, rtype: ResourceType, event_type: str, obj: dict[str, Any]) -> None:
        if len(self._log) == self._log.maxlen:
            self._log_floor = self._log[0].rv
        meta = _meta(obj)
        self._log.append(
            _LogEntry(
                int(meta["resourceVersion"]),
                rtype,
                meta.get("namespace"),
                meta["name"],
                event_type,
                copy.deepcopy(obj),
            )
        )

    def _save(self, key: tuple[Any, str | None, str], obj: dict[str, Any]) -> None:
        if key in self._objects:
            self._objects[key].history.append(copy.deepcopy(obj))
        else:
            self._objects[key] = copy.deepcopy(obj)

    async def _notify(self) -> None:
        assert self._changed is not None
        async with self._changed:
            self._changed.notify_all()

    # -- writes --------------------------------------------------------------------------

    def _create(self, rtype: ResourceType, namespace: str | None, body: Any) -> dict[str, Any]:
        if not isinstance(body, Mapping):
            raise _error(400, "BadRequest", "the body of a create must be an object")
        obj = copy.deepcopy(dict(body))
        meta = _meta(obj)
        if rtype.namespaced:
            body_ns = meta.get("namespace")
            if namespace and body_ns and body_ns != namespace:
                raise _error(
                    400,
                    "BadRequest",
                    "the namespace of the provided object does not "
                    "match the namespace sent on the request",
                )
            meta["namespace"] = namespace or body_ns or "default"
        else:
            meta.pop("namespace", None)
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise _error(
                    422,
                    "Invalid",
                    "metadata.name: Required value: name or generateName is required",
                )
            meta["name"] = meta["generateName"] + "".join(
                random.choices(string.ascii_lowercase + string.digits, k=5)
            )
        key = self._key(rtype, meta.get("namespace"), meta["name"])
        if self._stored(key) is not None:
            raise _error(
                409,
                "AlreadyExists",
                f'{rtype.plural} "{meta["name"]}" already exists',
                name=meta["name"],
                kind=rtype.plural,
            )
        for server_owned in ("deletionTimestamp", "resourceVersion"):
            meta.pop(server_owned, None)
        meta.update(
            uid=str(uuid.uuid4()),
            creationTimestamp=_now_iso(),
            generation=1,
            resourceVersion=self._next_rv(),
        )
        obj.update(apiVersion=rtype.api_version, kind=rtype.kind, metadata=meta)
        if rtype.plural == "deployments":
            obj.setdefault("spec", {}).setdefault("replicas", 1)
        self._simulate_controller(rtype, obj)
        self._save(key, obj)
        self._record(rtype, "ADDED", obj)
        return obj

    def _commit(
        self,
        rtype: ResourceType,
        key: tuple[Any, str | None, str],
        old: dict[str, Any],
        new: dict[str, Any],
        *,
        subresource: str | None,
    ) -> dict[str, Any]:
        """Store ``new`` in place of ``old`` with the server's rules for owned fields."""
        new = copy.deepcopy(new)
        if subresource == "status":  # a status write changes the status only
            status = new.get("status")
            new = copy.deepcopy(old)
            if status is None:
                new.pop("status", None)
            else:
                new["status"] = status
        elif "status" in rtype.subresources:  # a main-resource write keeps the stored status
            new.pop("status", None)
            if "status" in old:
                new["status"] = copy.deepcopy(old["status"])
        old_meta, meta = _meta(old), _meta(new)
        sent_rv = meta.get("resourceVersion")
        if sent_rv and sent_rv != old_meta.get("resourceVersion"):
            raise _error(
                409,
                "Conflict",
                f"Operation cannot be fulfilled on {rtype.plural} "
                f'"{key[2]}": the object has been modified; please apply your changes '
                "to the latest version and try again",
                name=key[2],
                kind=rtype.plural,
            )
        for owned in _SERVER_OWNED_META:
            if owned in old_meta:
                meta[owned] = old_meta[owned]
            else:
                meta.pop(owned, None)
        if _spec_part(new) != _spec_part(old):
            meta["generation"] = int(old_meta.get("generation", 1)) + 1
        meta["resourceVersion"] = self._next_rv()
        new.update(apiVersion=rtype.api_version, kind=rtype.kind, metadata=meta)
        if meta.get("generation") != old_meta.get("generation"):
            self._simulate_controller(rtype, new)
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            self._remove(rtype, key, new)
            return new
        self._save(key, new)
        self._record(rtype, "MODIFIED", new)
        return new

    def _simulate_controller(self, rtype: ResourceType, obj: dict[str, Any]) -> None:
        """Play the Deployment controller: every requested replica is instantly ready."""
        if rtype.plural != "deployments" or not self.simulate_deployments:
            return
        replicas = int((obj.get("spec") or {}).get("replicas", 1))
        status = dict(obj.get("status") or {})
        status.update(
            replicas=replicas,
            readyReplicas=replicas,
            availableReplicas=replicas,
            updatedReplicas=replicas,
            observedGeneration=_meta(obj)["generation"],
        )
        obj["status"] = status

    def _replace(
        self,
        rtype: ResourceType,
        key: tuple[Any, str | None, str],
        body: Any,
        subresource: str | None,
    ) -> dict[str, Any]:
        if not isinstance(body, Mapping):
            raise _error(400, "BadRequest", "the body of a replace must be an object")
        old = self._require(rtype, key)
        name = _meta(body).get("name")
        if name and name != key[2]:
            raise _error(
                400,
                "BadRequest",
                f"the name of the object ({name}) does not match the name on the URL ({key[2]})",
            )
        if subresource == "scale":
            return self._write_scale(rtype, key, old, body)
        return self._commit(rtype, key, old, dict(body), subresource=subresource)

    def _patch(
        self,
        rtype: ResourceType,
        key: tuple[Any, str | None, str],
        request: Request,
        subresource: str | None,
    ) -> _Outcome:
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        body = self._body(request)
        old = self._stored(key)
        if content_type.startswith("application/apply-patch"):
            if old is None:  # server-side apply creates; field ownership is not modelled
                return _Outcome(201, self._create(rtype, key[1], body))
            content_type = "application/merge-patch+json"
        if old is None:
            old = self._require(rtype, key)
        base = self._scale_of(old) if subresource == "scale" else old
        try:
            if content_type == "application/json-patch+json":
                patched = json_patch(base, body)
            elif content_type == "application/merge-patch+json":
                patched = merge_patch(base, body)
            elif content_type == "application/strategic-merge-patch+json":
                if not rtype.builtin:
                    raise _error(
                        415,
                        "UnsupportedMediaType",
                        "the body of the request was in an "
                        "unknown format - accepted media types include: "
                        "application/json-patch+json, application/merge-patch+json, "
                        "application/apply-patch+yaml",
                    )
                patched = strategic_merge_patch(base, body)
            else:
                raise _error(
                    415, "UnsupportedMediaType", f"unsupported patch type {content_type!r}"
                )
        except PatchError as exc:
            raise _error(422, "Invalid", str(exc)) from exc
        if not isinstance(patched, dict):
            raise _error(422, "Invalid", "the patch does not produce an object")
        if subresource == "scale":
            return _Outcome(payload=self._write_scale(rtype, key, old, patched))
        if isinstance(body, Mapping) and not _meta(body).get("resourceVersion"):
            _meta_patched = patched.setdefault("metadata", {})
            _meta_patched.pop("resourceVersion", None)  # a patch without one is unconditional
        return _Outcome(payload=self._commit(rtype, key, old, patched, subresource=subresource))

    def _scale_of(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        meta = _meta(obj)
        labels = ((obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        return {
            "apiVersion": "autoscaling/v1",
            "kind": "Scale",
            "metadata": {
                k: meta[k]
                for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                if k in meta
            },
            "spec": {"replicas": int((obj.get("spec") or {}).get("replicas", 1))},
            "status": {
                "replicas": int((obj.get("status") or {}).get("replicas", 0)),
                "selector": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
            },
        }

    def _write_scale(
        self,
        rtype: ResourceType,
        key: tuple[Any, str | None, str],
        old: dict[str, Any],
        scale: Mapping[str, Any],
    ) -> dict[str, Any]:
        replicas = (scale.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise _error(
                422,
                "Invalid",
                f"spec.replicas: Invalid value: {replicas!r}: must be greater than or equal to 0",
            )
        new = copy.deepcopy(old)
        new.setdefault("spec", {})["replicas"] = replicas
        new["metadata"]["resourceVersion"] = _meta(scale).get("resourceVersion")
        return self._scale_of(self._commit(rtype, key, old, new, subresource=None))

    def _delete(self, rtype: ResourceType, key: tuple[Any, str | None, str]) -> dict[str, Any]:
        obj = self._require(rtype, key)
        meta = obj["metadata"]
        if meta.get("finalizers"):
            if not meta.get("deletionTimestamp"):
                meta.update(deletionTimestamp=_now_iso(), resourceVersion=self._next_rv())
                self._save(key, obj)
                self._record(rtype, "MODIFIED", obj)
            return obj
        self._remove(rtype, key, obj)
        return {
            "apiVersion": "v1",
            "kind": "Status",
            "metadata": {},
            "status": "Success",
            "details": {
                "name": key[2],
                "group": rtype.group,
                "kind": rtype.plural,
                "uid": meta.get("uid"),
            },
        }

    def _remove(
        self, rtype: ResourceType, key: tuple[Any, str | None, str], obj: dict[str, Any]
    ) -> None:
        obj["metadata"]["resourceVersion"] = self._next_rv()
        self._objects[key].delete()
        self._record(rtype, "DELETED", obj)
        self._collect_dependents(obj["metadata"].get("uid"))

    def _collect_dependents(self, owner_uid: str | None) -> None:
        """Garbage-collect objects whose ownerReferences name a deleted owner (background GC)."""
        if not owner_uid:
            return
        for key, stored in list(self._objects.items()):
            if stored.deleted:
                continue
            refs = (stored.raw.get("metadata") or {}).get("ownerReferences") or []
            if any(ref.get("uid") == owner_uid for ref in refs):
                resource = key[0]
                rtype = self._types.get(
                    (str(resource.group), str(resource.version), str(resource.plural))
                )
                if rtype is not None:
                    self._delete(rtype, key)

    def _delete_collection(
        self, rtype: ResourceType, namespace: str | None, params: Mapping[str, str]
    ) -> dict[str, Any]:
        for obj in self._select(rtype, namespace, params):
            meta = obj["metadata"]
            self._delete(rtype, self._key(rtype, meta.get("namespace"), meta["name"]))
        return {"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Success"}

    # -- reads ---------------------------------------------------------------------------

    def _matcher(self, params: Mapping[str, str]) -> Callable[[Mapping[str, Any]], bool]:
        try:
            labels = parse_label_selector(params.get("labelSelector"))
            fields = parse_field_selector(params.get("fieldSelector"))
        except SelectorError as exc:
            raise _error(400, "BadRequest", str(exc)) from exc
        return lambda obj: labels(obj) and fields(obj)

    def _select(
        self, rtype: ResourceType, namespace: str | None, params: Mapping[str, str]
    ) -> list[dict[str, Any]]:
        matches = self._matcher(params)
        found = []
        for (resource, obj_ns, _name), stored in self._objects.items():
            if stored.deleted or (resource.group, resource.version, resource.plural) != (
                rtype.group,
                rtype.version,
                rtype.plural,
            ):
                continue
            if namespace is not None and obj_ns != namespace:
                continue
            if matches(stored.raw):
                found.append(copy.deepcopy(stored.raw))
        return sorted(found, key=lambda o: (_meta(o).get("namespace") or "", _meta(o)["name"]))

    def _list(
        self, rtype: ResourceType, namespace: str | None, params: Mapping[str, str]
    ) -> dict[str, Any]:
        items = self._select(rtype, namespace, params)
        meta: dict[str, Any] = {"resourceVersion": str(self._rv)}
        # Pages as the API server gives them: ``limit`` items, and a ``continue`` token for the
        # rest (here the offset of the next item, the API server's is opaque).
        try:
            limit = int(params.get("limit") or 0)
            start = int(params.get("continue") or 0)
        except ValueError as exc:
            raise _error(400, "BadRequest", f"invalid list parameter: {exc}") from exc
        if limit > 0:
            if start + limit < len(items):
                meta["continue"] = str(start + limit)
            items = items[start : start + limit]
        return {
            "apiVersion": rtype.api_version,
            "kind": f"{rtype.kind}List",
            "metadata": meta,
            "items": items,
        }

    def _watch_plan(
        self,
        rtype: ResourceType,
        namespace: str | None,
        name: str | None,
        params: Mapping[str, str],
    ) -> _WatchPlan:
        since_text = params.get("resourceVersion", "")
        try:
            since = int(since_text) if since_text not in ("", "0") else None
            timeout = float(params["timeoutSeconds"]) if params.get("timeoutSeconds") else None
        except ValueError as exc:
            raise _error(400, "BadRequest", f"invalid watch parameter: {exc}") from exc
        return _WatchPlan(rtype, namespace, name, self._matcher(params), since, timeout)

    def _watched(self, plan: _WatchPlan, entry: _LogEntry) -> bool:
        return (
            entry.rtype == plan.rtype
            and (plan.namespace is None or entry.namespace == plan.namespace)
            and (plan.name is None or entry.name == plan.name)
            and plan.matches(entry.obj)
        )

    async def _watch_stream(self, plan: _WatchPlan) -> Any:
        yield b""  # send the headers now, even if nothing happens for a while
        loop = asyncio.get_running_loop()
        deadline = None if plan.timeout is None else loop.time() + plan.timeout
        async with self._lock:
            if plan.since is None:
                initial = [
                    {"type": "ADDED", "object": obj}
                    for obj in self._select(plan.rtype, plan.namespace, {})
                    if (plan.name is None or obj["metadata"]["name"] == plan.name)
                    and plan.matches(obj)
                ]
                last = self._rv
            elif plan.since < self._log_floor:
                yield {
                    "type": "ERROR",
                    "object": {
                        "apiVersion": "v1",
                        "kind": "Status",
                        "metadata": {},
                        "status": "Failure",
                        "code": 410,
                        "reason": "Expired",
                        "message": f"too old resource version: {plan.since} ({self._log_floor})",
                    },
                }
                return
            else:
                initial = [
                    {"type": e.type, "object": e.obj}
                    for e in self._log
                    if e.rv > plan.since and self._watched(plan, e)
                ]
                last = self._rv
        for event in initial:
            yield event
        assert self._changed is not None
        while not self._closing:
            async with self._changed:
                pending = [e for e in self._log if e.rv > last]
                if not pending:
                    remaining = None if deadline is None else deadline - loop.time()
                    if remaining is not None and remaining <= 0:
                        return
                    try:
                        await asyncio.wait_for(self._changed.wait(), remaining)
                    except TimeoutError:
                        return
                    continue
            for entry in pending:
                last = entry.rv
                if self._watched(plan, entry):
                    yield {"type": entry.type, "object": entry.obj}

    async def close_watches(self) -> None:
        """End every open watch stream, so that the server can stop without waiting."""
        self._closing = True
        if self._changed is not None:
            await self._notify()

    # -- direct access for the test thread (run on the emulator's loop) ------------------

    async def seed(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Create an object as given (status included), as a controller or kubelet would."""
        rtype = self.resource_type_of(obj)
        if self._changed is None:
            self._changed = asyncio.Condition()
        async with self._lock:
            created = self._create(rtype, _meta(obj).get("namespace"), obj)
        await self._notify()
        return created

    async def merge(
        self,
        resource: str,
        name: str,
        patch: Mapping[str, Any],
        *,
        namespace: str | None = None,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        """Apply a JSON merge patch as a client would (``subresource='status'`` for status)."""
        rtype = self.resource_type(resource)
        key = self._key(rtype, namespace, name)
        if self._changed is None:
            self._changed = asyncio.Condition()
        async with self._lock:
            old = self._require(rtype, key)
            if subresource == "scale":
                result = self._write_scale(rtype, key, old, merge_patch(self._scale_of(old), patch))
            else:
                result = self._commit(
                    rtype, key, old, merge_patch(old, patch), subresource=subresource
                )
        await self._notify()
        return result

    async def remove(self, resource: str, name: str, *, namespace: str | None = None) -> None:
        rtype = self.resource_type(resource)
        if self._changed is None:
            self._changed = asyncio.Condition()
        async with self._lock:
            self._delete(rtype, self._key(rtype, namespace, name))
        await self._notify()

    async def fetch(
        self, resource: str, name: str, *, namespace: str | None = None
    ) -> dict[str, Any] | None:
        rtype = self.resource_type(resource)
        async with self._lock:
            return self._stored(self._key(rtype, namespace, name))

    async def select(
        self,
        resource: str,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[dict[str, Any]]:
        rtype = self.resource_type(resource)
        params = {
            k: v
            for k, v in (("labelSelector", label_selector), ("fieldSelector", field_selector))
            if v
        }
        async with self._lock:
            return self._select(rtype, namespace, params)


class KubeEmulatorHandle:
    """The test thread's view of an emulator running in its own thread.

    Resources are named ``"group/version/plural"`` (``"apps/v1/deployments"``,
    ``"v1/nodes"``, ``"tidal.dev/v1alpha1/gatewayautoscalers"``). Every helper runs on the
    emulator's loop and goes through the same code as an HTTP request (resourceVersion,
    generation, watch events), without the HTTP.
    """

    def __init__(
        self, emulator: TidalKubeEmulator, loop: asyncio.AbstractEventLoop, url: str
    ) -> None:
        self.emulator = emulator
        self.url = url
        self._loop = loop
        self._clients: list[kubernetes.client.ApiClient] = []

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def configuration(self) -> kubernetes.client.Configuration:
        """A client configuration for this server: plain HTTP, no authentication."""
        configuration = kubernetes.client.Configuration()
        configuration.host = self.url
        return configuration

    def api_client(self) -> kubernetes.client.ApiClient:
        """A new official client for this server; closed when the emulator stops."""
        client = kubernetes.client.ApiClient(self.configuration())
        self._clients.append(client)
        return client

    def write_kubeconfig(self, path: str | Path, *, namespace: str = "default") -> Path:
        """A kubeconfig pointing at this server, for code that loads one (``tidal run``)."""
        path = Path(path)
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "emulator", "cluster": {"server": self.url}}],
            "users": [{"name": "tester", "user": {}}],
            "contexts": [
                {
                    "name": "emulator",
                    "context": {"cluster": "emulator", "user": "tester", "namespace": namespace},
                }
            ],
            "current-context": "emulator",
        }
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        return path

    def create(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Seed an object (status kept as given); the resource comes from apiVersion and kind."""
        return self._call(self.emulator.seed(obj))

    def get(self, resource: str, name: str, *, namespace: str | None = None) -> dict[str, Any]:
        """The stored object; KeyError if absent."""
        obj = self._call(self.emulator.fetch(resource, name, namespace=namespace))
        if obj is None:
            raise KeyError(f"{resource} {namespace}/{name} does not exist")
        return obj

    def exists(self, resource: str, name: str, *, namespace: str | None = None) -> bool:
        return self._call(self.emulator.fetch(resource, name, namespace=namespace)) is not None

    def list(
        self,
        resource: str,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[dict[str, Any]]:
        return self._call(
            self.emulator.select(
                resource,
                namespace=namespace,
                label_selector=label_selector,
                field_selector=field_selector,
            )
        )

    def patch(
        self,
        resource: str,
        name: str,
        patch: Mapping[str, Any],
        *,
        namespace: str | None = None,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        """JSON-merge-patch an object; ``subresource="status"`` to change its status."""
        return self._call(
            self.emulator.merge(resource, name, patch, namespace=namespace, subresource=subresource)
        )

    def delete(self, resource: str, name: str, *, namespace: str | None = None) -> None:
        self._call(self.emulator.remove(resource, name, namespace=namespace))

    def on_loop(self, fn: Callable[[TidalKubeEmulator], T]) -> T:
        """Run ``fn(emulator)`` on the emulator's loop: kmock's DSL is not thread-safe, so
        inject faults this way, e.g. ``handle.on_loop(lambda e: e["get /api/v1/nodes"] << 500)``."""
        return self._call(self._apply(fn))

    async def _apply(self, fn: Callable[[TidalKubeEmulator], T]) -> T:
        return fn(self.emulator)

    def refuse(self, method: str, path: str, status: int = 503) -> None:
        """Answer ``method`` on ``path`` with ``status`` and change nothing, until
        ``refuse(..., status=0)``. kmock's DSL reactions answer after the emulation has run, so a
        write they fail is still applied (a response lost, not a write refused)."""

        def change(emulator: TidalKubeEmulator) -> None:
            if status:
                emulator.refusals[method.upper(), path] = status
            else:
                emulator.refusals.pop((method.upper(), path), None)

        self.on_loop(change)

    def requests(self) -> builtins.list[Request]:
        """Every request served so far (kmock's request log: method, url, params, headers, data)."""
        return self._call(self._snapshot_requests())

    async def _snapshot_requests(self) -> builtins.list[Request]:
        return list(self.emulator)

    def close_clients(self) -> None:
        for client in self._clients:
            with contextlib.suppress(Exception):
                client.close()  # type: ignore[no-untyped-call]
        self._clients.clear()


class _EmulatorThread(threading.Thread):
    def __init__(self, emulator_options: Mapping[str, Any]) -> None:
        super().__init__(name="kube-emulator", daemon=True)
        self._options = dict(emulator_options)
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._stop_event: asyncio.Event | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.handle: KubeEmulatorHandle | None = None

    def run(self) -> None:
        self.loop = asyncio.new_event_loop()
        try:
            self.loop.run_until_complete(self._serve())
        except BaseException as exc:
            self._failure = exc
        finally:
            self._ready.set()
            self.loop.close()

    async def _serve(self) -> None:
        self._stop_event = asyncio.Event()
        emulator = TidalKubeEmulator(**self._options)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        async with emulator:
            runner = aiohttp.web.ServerRunner(aiohttp.web.Server(emulator), shutdown_timeout=2.0)
            await runner.setup()
            try:
                await aiohttp.web.SockSite(runner, sock).start()
                assert self.loop is not None
                self.handle = KubeEmulatorHandle(emulator, self.loop, f"http://127.0.0.1:{port}")
                self._ready.set()
                await self._stop_event.wait()
                await emulator.close_watches()
            finally:
                await runner.cleanup()

    def wait_ready(self, timeout: float) -> KubeEmulatorHandle:
        if not self._ready.wait(timeout):
            raise TimeoutError(f"the Kubernetes emulator did not start within {timeout}s")
        if self._failure is not None or self.handle is None:
            raise RuntimeError("the Kubernetes emulator failed to start") from self._failure
        return self.handle

    def shutdown(self, timeout: float) -> None:
        if self.loop is not None and self._stop_event is not None and not self.loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                self.loop.call_soon_threadsafe(self._stop_event.set)
        self.join(timeout)


@contextlib.contextmanager
def running_emulator(
    *,
    simulate_deployments: bool = True,
    extra_resources: tuple[ResourceType, ...] = (),
    startup_timeout: float = 10.0,
) -> Iterator[KubeEmulatorHandle]:
    """Serve a :class:`TidalKubeEmulator` on 127.0.0.1 from its own thread and event loop."""
    thread = _EmulatorThread(
        {"simulate_deployments": simulate_deployments, "extra_resources": tuple(extra_resources)}
    )
    thread.start()
    try:
        handle = thread.wait_ready(startup_timeout)
        try:
            yield handle
        finally:
            handle.close_clients()
    finally:
        thread.shutdown(timeout=10.0)
