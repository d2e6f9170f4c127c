"""Offline checks of manifests/: what `kubectl kustomize` builds is valid Kubernetes, the samples
are valid GatewayAutoscalers, and the RBAC rules are exactly the operator's API calls."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from controller import crd
from controller.spec import GatewayAutoscaler
from tests.support.repository import e2e_cluster, kustomize

REPO = Path(__file__).resolve().parents[1]
MANIFESTS = REPO / "manifests"
KUSTOMIZATIONS = [
    "base",
    "overlays/servicemonitor",
    "overlays/alerts",
    "overlays/e2e",
    "overlays/namespaced",
    "samples",
    "../e2e/manifests/samples",
    "../e2e/manifests/prometheus",
]
KUBERNETES_VERSION = "1.30.0"
# Kinds kubernetes-validate has no schema for, and what checks them instead.
CUSTOM_KINDS = {
    ("tidal.dev/v1alpha1", "GatewayAutoscaler"): "the generated CRD (test_sample_autoscalers_*)",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "test_service_monitor_selects_metrics",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "test_alerts.py",
}
METRICS = {
    "tidal_load",
    "tidal_forecast_peak",
    "tidal_forecast_upper",
    "tidal_planned_replicas",
    "tidal_actual_replicas",
    "tidal_reserved_replicas",
    "tidal_physical_capacity",
    "tidal_ready_replicas",
    "tidal_plan_reason",
}
CLOUD_TAINT = {
    "key": "tidal.dev/pool",
    "operator": "Equal",
    "value": "cloud",
    "effect": "NoSchedule",
}


def _build(path: str) -> tuple[dict[str, Any], ...]:
    """A directory of manifests/, built by kustomize."""
    return kustomize(f"manifests/{path}")


def _find(docs: tuple[dict[str, Any], ...], kind: str, name: str | None = None) -> list[Any]:
    return [
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]


def _one(docs: tuple[dict[str, Any], ...], kind: str, name: str | None = None) -> Any:
    [found] = _find(docs, kind, name)
    return found


# --- kubectl kustomize | kubernetes-validate --strict ---------------------------------------


@pytest.mark.parametrize("path", KUSTOMIZATIONS)
def test_kustomization_is_valid_kubernetes(path: str) -> None:
    """Each object built is valid for kubernetes-validate --strict, or a known custom kind."""
    for doc in _build(path):
        key = (doc["apiVersion"], doc["kind"])
        if key in CUSTOM_KINDS:
            continue
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{path}: {doc['kind']}/{doc['metadata']['name']}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError:
            pytest.fail(f"{path}: no schema for {key} and no check of it in CUSTOM_KINDS")


def test_base_holds_the_generated_crd() -> None:
    """The CRD that `kubectl apply -k manifests/base` installs is `tidal crd`'s, unchanged."""
    built = _one(_build("base"), "CustomResourceDefinition")
    expected = crd.crd_manifest()
    # kustomize adds its common labels; everything else is as generated.
    built["metadata"]["labels"] = expected["metadata"]["labels"] = {}
    assert built == expected


def test_service_monitor_selects_metrics() -> None:
    """The ServiceMonitor selects the metrics Service by its labels and port name."""
    docs = _build("overlays/servicemonitor")
    monitor = _one(docs, "ServiceMonitor")
    service = _one(docs, "Service", "tidal-metrics")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == [service["metadata"]["namespace"]]
    ports = {p["name"] for p in service["spec"]["ports"]}
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= ports
    # The series' own `namespace` label (the GatewayAutoscaler's) must survive the scrape: the
    # dashboard's namespace variable reads it.
    assert all(e.get("honorLabels") is True for e in monitor["spec"]["endpoints"])


# --- the operator's Deployment ---------------------------------------------------------------


def test_operator_deployment_is_hardened() -> None:
    """Two replicas, non-root, read-only root, resources, probes on the metrics port."""
    docs = _build("base")
    deployment = _one(docs, "Deployment", "tidal-operator")
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert deployment["spec"]["replicas"] == 2
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] > 0
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    [port] = container["ports"]
    assert (port["name"], port["containerPort"]) == ("metrics", 8080)
    assert pod["serviceAccountName"] == _one(docs, "ServiceAccount")["metadata"]["name"]
    # A node drain takes one replica at a time: the other holds or takes over the Lease.
    budget = _one(docs, "PodDisruptionBudget", "tidal-operator")
    assert budget["spec"]["maxUnavailable"] == 1
    assert (
        budget["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    )
    service = _one(docs, "Service", "tidal-metrics")
    assert (
        service["spec"]["selector"].items()
        <= deployment["spec"]["template"]["metadata"]["labels"].items()
    )


def test_operator_env_names_are_settings() -> None:
    """Every TIDAL_* variable of the Deployment is a setting the operator reads (no typos)."""
    settings = pytest.importorskip("controller.operator.settings")
    known = {f"TIDAL_{name.upper()}" for name in settings.OperatorSettings.model_fields}
    for path in ("base", "overlays/e2e"):
        deployment = _one(_build(path), "Deployment", "tidal-operator")
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        names = {e["name"] for e in container["env"] if e["name"].startswith("TIDAL_")}
        assert names <= known, f"{path}: not operator settings: {sorted(names - known)}"
        settings_port = {e["name"]: e.get("value") for e in container["env"]}["TIDAL_METRICS_PORT"]
        assert int(settings_port) == container["ports"][0]["containerPort"]


def test_e2e_overlay_uses_the_kind_loaded_image() -> None:
    """The e2e overlay runs the image `kind load` put on the nodes, and loops quickly."""
    deployment = _one(_build("overlays/e2e"), "Deployment", "tidal-operator")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "tidal:e2e"
    assert container["imagePullPolicy"] == "Never"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["TIDAL_LOOP_INTERVAL"] == "10s"


def test_placeholder_priority_is_preemptible_and_not_expendable() -> None:
    """Below gateways (0) so they preempt placeholders; not below the CA's cut-off (-10)."""
    priority = _one(_build("base"), "PriorityClass", "tidal-placeholder")
    assert -10 <= priority["value"] < 0
    assert priority.get("globalDefault", False) is False
    operator_kube = pytest.importorskip("controller.operator.kube")
    assert priority["metadata"]["name"] == operator_kube.PLACEHOLDER_PRIORITY_CLASS


# --- samples ------------------------------------------------------------------------------------


def _sample_autoscalers() -> list[dict[str, Any]]:
    return _find(_build("samples"), "GatewayAutoscaler")


def test_sample_autoscalers_validate_against_crd_schema() -> None:
    """Each sample GatewayAutoscaler is valid under the CRD's openAPIV3Schema."""
    schema = crd.crd_manifest()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    validator = jsonschema.Draft202012Validator(crd.openapi_to_json_schema(schema))
    samples = _sample_autoscalers()
    assert len(samples) == 2
    for sample in samples:
        errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(sample)]
        assert not errors, (sample["metadata"]["name"], errors)
        replicas = sample["spec"]["replicas"]
        assert replicas["min"] <= replicas["max"]  # the CEL rule jsonschema cannot run


def test_sample_autoscalers_validate_with_pydantic() -> None:
    """Each sample GatewayAutoscaler is accepted by the operator's own model."""
    for sample in _sample_autoscalers():
        GatewayAutoscaler.model_validate(sample)


def test_samples_put_each_pool_on_its_nodes() -> None:
    """Per region: the physical Deployment matches the GWA's physical nodeSelector, the cloud
    one selects and tolerates the cloud pool, both have pod requests (capacity needs them)."""
    docs = _build("samples")
    regions = set()
    for gwa in _sample_autoscalers():
        spec = gwa["spec"]
        region = spec["region"]
        regions.add(region)
        assert f'region="{region}"' in spec["load"]["query"]
        physical = _one(docs, "Deployment", spec["physical"]["deployment"])["spec"]["template"]
        cloud = _one(docs, "Deployment", spec["cloud"]["deployment"])["spec"]["template"]
        assert physical["spec"]["nodeSelector"] == spec["physical"]["nodeSelector"]
        assert physical["spec"]["nodeSelector"] == {
            "tidal.dev/pool": "physical",
            "topology.kubernetes.io/region": region,
        }
        assert cloud["spec"]["nodeSelector"] == {
            "tidal.dev/pool": "cloud",
            "topology.kubernetes.io/region": region,
        }
        assert CLOUD_TAINT in cloud["spec"]["tolerations"]
        assert "tolerations" not in physical["spec"]
        for template in (physical, cloud):
            [container] = template["spec"]["containers"]
            assert container["resources"]["requests"]["cpu"]
            assert ["--region", region] == container["args"][:2]
    assert len(regions) == 2


def test_kind_config_has_both_pools_of_both_regions() -> None:
    """e2e/kind-config.yaml: each sample region has physical and tainted cloud workers."""
    config = yaml.safe_load((REPO / "e2e" / "kind-config.yaml").read_text(encoding="utf-8"))
    workers = [n for n in config["nodes"] if n["role"] == "worker"]
    regions = {g["spec"]["region"] for g in _sample_autoscalers()}
    for region in regions:
        for pool in ("physical", "cloud"):
            nodes = [
                n
                for n in workers
                if n["labels"].get("tidal.dev/pool") == pool
                and n["labels"].get("topology.kubernetes.io/region") == region
            ]
            assert nodes, (region, pool)
            for node in nodes:
                taints = node.get("taints") or _kubeadm_taints(node)
                assert (CLOUD_TAINT_TEXT in taints) == (pool == "cloud"), (region, pool, taints)


CLOUD_TAINT_TEXT = "tidal.dev/pool=cloud:NoSchedule"


def _kubeadm_taints(node: dict[str, Any]) -> list[str]:
    """Taints registered through the kubeadm JoinConfiguration patch of a kind node."""
    taints = []
    for patch in node.get("kubeadmConfigPatches") or []:
        doc = yaml.safe_load(patch)
        for taint in (doc.get("nodeRegistration") or {}).get("taints") or []:
            taints.append(f"{taint['key']}={taint['value']}:{taint['effect']}")
    return taints


# --- Grafana ---------------------------------------------------------------------------------


def test_grafana_dashboard_uses_the_operator_metrics() -> None:
    """The dashboard queries exactly the agreed metrics, and the operator exports them all."""
    dashboard = json.loads((MANIFESTS / "grafana" / "tidal-dashboard.json").read_text("utf-8"))
    exprs = [
        target["expr"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        if "expr" in target
    ]
    used = {name for expr in exprs for name in re.findall(r"\btidal_[a-z_]+", expr)}
    assert used == METRICS
    metrics = pytest.importorskip("controller.operator.metrics")
    text = metrics.OperatorMetrics().exposition().decode()
    exported = set(re.findall(r"^# TYPE (\w+) ", text, flags=re.M))
    assert exported >= METRICS, sorted(METRICS - exported)


def test_grafana_panels_have_ids_and_places_of_their_own() -> None:
    """Grafana keeps one panel of two with the same id, and draws overlapping ones on top of
    each other."""
    dashboard = json.loads((MANIFESTS / "grafana" / "tidal-dashboard.json").read_text("utf-8"))
    panels = dashboard["panels"]
    assert len({panel["id"] for panel in panels}) == len(panels)
    cells = [
        (panel["id"], x, y)
        for panel in panels
        for x in range(panel["gridPos"]["x"], panel["gridPos"]["x"] + panel["gridPos"]["w"])
        for y in range(panel["gridPos"]["y"], panel["gridPos"]["y"] + panel["gridPos"]["h"])
    ]
    assert all(0 <= x < 24 for _, x, _ in cells)
    assert len({(x, y) for _, x, y in cells}) == len(cells)


def test_a_deleted_object_leaves_no_series() -> None:
    """forget_object drops all of a deleted object's series, counters and histograms too, and
    nothing of another object; forget (a region changed, a pause) keeps its counters."""
    metrics = pytest.importorskip("controller.operator.metrics")
    m = metrics.OperatorMetrics()
    for gwa in ("gone", "kept"):
        m.load.labels(gwa, "chat", "eu-west").set(1)
        m.planned.labels(gwa, "chat", "eu-west", "cloud").set(2)
        m.fit_seconds.labels(gwa, "chat", "auto").observe(0.3)
        m.fit_seconds.labels(gwa, "chat", "mstl").observe(0.3)
        m.reconcile_seconds.labels(gwa, "chat").observe(0.01)
        m.reconcile_errors.labels(gwa, "chat", "MetricsUnavailable").inc()
        m.ready.labels(gwa, "chat", "eu-west", "cloud").set(2)
        m.capacity_limited.labels(gwa, "chat", "eu-west").set(0)
        m.set_reasons(gwa, "chat", "eu-west", {"total": "Forecast", "cloud": "RateLimit"})
        m.last_success.labels(gwa, "chat").set(1e9)

    def lines(gwa: str) -> list[str]:
        return [x for x in m.exposition().decode().splitlines() if f'gwa="{gwa}"' in x]

    kept = lines("kept")
    m.forget("gone", "chat", "eu-west")
    assert any(x.startswith("tidal_reconcile_errors_total{") for x in lines("gone"))
    # forget keeps what is the object's and not its region's: its last success too.
    names = {x.split("{")[0] for x in lines("gone")}
    assert "tidal_last_success_timestamp_seconds" in names
    region_gauges = {"tidal_load", "tidal_planned_replicas", "tidal_ready_replicas"}
    assert not names & (region_gauges | {"tidal_plan_reason", "tidal_capacity_limited"})
    m.forget_object("gone", "chat", "eu-west")
    assert lines("gone") == []
    assert lines("kept") == kept
    m.forget_object("kept", "chat")  # an object refused before its region was known
    assert 'tidal_reconcile_seconds_count{gwa="kept"' not in m.exposition().decode()


# --- RBAC: the ClusterRole and Role are exactly the operator's API calls ---------------------

# The official client's method name -> (apiGroup, resource, verb). Custom objects are the
# GatewayAutoscalers: the operator owns no other custom resource.
_VERBS = {
    "read": "get",
    "get": "get",
    "list": "list",
    "create": "create",
    "patch": "patch",
    "replace": "update",
    "delete": "delete",
}
_KINDS = {
    "pod": ("", "pods"),
    "node": ("", "nodes"),
    "event": ("", "events"),
    "config_map": ("", "configmaps"),
    "secret": ("", "secrets"),
    "deployment": ("apps", "deployments"),
    "lease": ("coordination.k8s.io", "leases"),
    "custom_object": ("tidal.dev", "gatewayautoscalers"),
}
_METHOD = re.compile(
    r"^(?P<verb>read|get|list|create|patch|replace|delete)_"
    r"(?:namespaced_|cluster_)?(?P<kind>[a-z_]+?)"
    r"(?:_for_all_namespaces)?(?P<sub>_status|_scale)?$"
)


def _permission(method: str, *, events_api: bool) -> tuple[str, str, str] | None:
    match = _METHOD.match(method)
    if match is None or match["kind"] not in _KINDS:
        return None
    group, resource = _KINDS[match["kind"]]
    if match["kind"] == "event" and events_api:
        group = "events.k8s.io"
    sub = match["sub"]
    if sub:
        resource = f"{resource}/{sub.lstrip('_')}"
    return group, resource, _VERBS[match["verb"]]


def _operator_calls() -> dict[tuple[str, str, str], set[str]]:
    """(group, resource, verb) -> where in controller/operator/ the code needs it."""
    calls: dict[tuple[str, str, str], set[str]] = {}
    for path in sorted((REPO / "controller" / "operator").glob("*.py")):
        source = path.read_text(encoding="utf-8")
        tree = ast.parse(source)
        events_api = "EventsV1Api" in source
        watched: set[int] = set()
        for node in ast.walk(tree):
            # watch.Watch().stream(api.list_x, ...) is a watch, not a list.
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "stream"
                and node.args
                and isinstance(node.args[0], ast.Attribute)
            ):
                watched.add(id(node.args[0]))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute):
                continue
            permission = _permission(node.attr, events_api=events_api)
            if permission is None:
                continue
            group, resource, verb = permission
            if id(node) in watched:
                verb = "watch"
            where = f"{path.name}:{node.lineno} {node.attr}"
            calls.setdefault((group, resource, verb), set()).add(where)
        if "blockOwnerDeletion" in source:
            # Setting blockOwnerDeletion on an ownerReference needs update on the owner's
            # finalizers where OwnerReferencesPermissionEnforcement is on.
            key = ("tidal.dev", "gatewayautoscalers/finalizers", "update")
            calls.setdefault(key, set()).add(f"{path.name}: blockOwnerDeletion")
    return calls


def _granted(
    docs: tuple[dict[str, Any], ...] | None = None, kinds: tuple[str, ...] = ("ClusterRole", "Role")
) -> dict[tuple[str, str, str], str]:
    docs = _build("base") if docs is None else docs
    granted: dict[tuple[str, str, str], str] = {}
    for kind in kinds:
        for role in _find(docs, kind):
            for rule in role["rules"]:
                assert not rule.get("resourceNames"), "resourceNames would need per-name calls"
                for group in rule["apiGroups"]:
                    for resource in rule["resources"]:
                        for verb in rule["verbs"]:
                            assert "*" not in (group, resource, verb), "no wildcards"
                            granted[(group, resource, verb)] = f"{kind}/{role['metadata']['name']}"
    return granted


def test_rbac_mapping_reads_client_method_names() -> None:
    """The method-name mapping understands the official client's names."""
    cases = {
        "read_namespaced_deployment_scale": ("apps", "deployments/scale", "get"),
        "patch_namespaced_custom_object_status": (
            "tidal.dev",
            "gatewayautoscalers/status",
            "patch",
        ),
        "list_cluster_custom_object": ("tidal.dev", "gatewayautoscalers", "list"),
        "list_pod_for_all_namespaces": ("", "pods", "list"),
        "replace_namespaced_lease": ("coordination.k8s.io", "leases", "update"),
        "create_namespaced_event": ("", "events", "create"),
        "list_node": ("", "nodes", "list"),
    }
    for method, expected in cases.items():
        assert _permission(method, events_api=False) == expected, method
    assert _permission("sanitize_for_serialization", events_api=False) is None


def test_rbac_is_exactly_the_operator_calls() -> None:
    """Every API call of controller/operator/ is allowed, and every granted verb is used."""
    calls = _operator_calls()
    if not calls:
        pytest.skip("controller/operator/ makes no official-client calls yet: nothing to compare")
    granted = _granted()
    missing = {k: sorted(v) for k, v in calls.items() if k not in granted}
    unused = {k: v for k, v in granted.items() if k not in calls}
    assert not missing, f"calls the RBAC of manifests/base/rbac.yaml does not allow: {missing}"
    assert not unused, f"granted but never called (least privilege): {unused}"


def test_the_namespaced_overlay_grants_the_same_calls_in_its_namespaces_only() -> None:
    """overlays/namespaced: cluster-wide, only the list of nodes and pods that the physical
    pool's capacity needs; everything else the base grants, by a Role bound in each namespace
    TIDAL_NAMESPACES lists (and the Lease's in the operator's own), and no namespace listed
    without its Role."""
    docs = _build("overlays/namespaced")
    assert set(_granted(docs, ("ClusterRole",))) == {("", "nodes", "list"), ("", "pods", "list")}
    operator = _one(docs, "Deployment", "tidal-operator")
    [container] = operator["spec"]["template"]["spec"]["containers"]
    [listed] = [e["value"] for e in container["env"] if e["name"] == "TIDAL_NAMESPACES"]
    namespaces = {n.strip() for n in listed.split(",") if n.strip()}
    assert namespaces, "the overlay must list the namespaces it grants"
    own = operator["metadata"]["namespace"]
    for namespace in namespaces:
        roles = tuple(d for d in docs if d["metadata"].get("namespace") in (namespace, own))
        bound = {
            b["roleRef"]["name"]
            for b in _find(roles, "RoleBinding")
            if {"kind": "ServiceAccount", "name": "tidal", "namespace": own} in b["subjects"]
        }
        roles = tuple(d for d in roles if d["kind"] != "Role" or d["metadata"]["name"] in bound)
        usable = set(_granted(roles, ("Role",))) | set(_granted(docs, ("ClusterRole",)))
        assert usable == set(_granted()), namespace
    granted_in = {
        d["metadata"]["namespace"]
        for d in _find(docs, "RoleBinding")
        if d["roleRef"]["name"] == "tidal-operator"
    }
    assert granted_in == namespaces


def test_lease_permission_is_namespaced() -> None:
    """Leader election touches one namespace: its Lease rights are a Role, not a ClusterRole."""
    granted = _granted()
    lease_rules = {k: v for k, v in granted.items() if k[1] == "leases"}
    assert lease_rules and all(v.startswith("Role/") for v in lease_rules.values())


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.parametrize(
    ("docker", "missing"),
    [
        pytest.param("#!/bin/sh\nexit 1\n", "the docker engine is not running", id="no-engine"),
        pytest.param(None, "docker is not on the PATH", id="no-docker"),
        pytest.param(
            '#!/bin/sh\n[ "$1" = info ]\n',
            "docker buildx (BuildKit) is not installed: the Dockerfile needs it",
            id="no-buildx",
        ),
    ],
)
def test_make_e2e_skips_without_docker(tmp_path: Path, docker: str | None, missing: str) -> None:
    """Without Docker `make e2e` says what is missing and exits 0: a skip, as `pytest e2e`'s."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    path = str(bin_dir)
    if docker is not None:
        (bin_dir / "docker").write_text(docker, encoding="utf-8")
        (bin_dir / "docker").chmod(0o755)
        path += os.pathsep + os.environ.get("PATH", "")
    result = subprocess.run(
        [str(shutil.which("make")), "--no-print-directory", "-C", str(REPO), "e2e"],
        env={**os.environ, "PATH": path},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == f"e2e skipped: e2e needs Docker, kind and kubectl: {missing}"


def _make_dry_run(*args: str) -> str:
    """`make -n ARGS` in the repository: the commands it would run, continuations joined."""
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    result = subprocess.run(
        [make, "--no-print-directory", "-n", "-C", str(REPO), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return re.sub(r"\\\n\s*", "", result.stdout)


def test_make_e2e_test_runs_the_makefile_python() -> None:
    """`make e2e-test` runs pytest with the interpreter `make deps` installed Tidal into."""
    interpreter = "/opt/tidal-venv/bin/python3"
    commands = _make_dry_run("e2e-test", f"PYTHON={interpreter}")
    assert f"{interpreter} -m pytest e2e" in commands, commands


def test_make_e2e_images_load_into_kind() -> None:
    """Both images are built without a provenance attestation, which `docker save` (Docker's
    containerd image store) leaves out and `kind load docker-image` then fails to import."""
    builds = [line for line in _make_dry_run("e2e-images").splitlines() if "docker build" in line]
    assert len(builds) == 2, builds
    assert all("--provenance=false" in line.split() for line in builds), builds
    # buildx's own command: before Docker 23 `docker build` is the legacy builder, which knows
    # neither --provenance nor --build-context; --load puts the image where kind loads from.
    assert all(line.split()[:3] == ["docker", "buildx", "build"] for line in builds), builds
    assert all("--load" in line.split() for line in builds), builds


def test_make_e2e_skips_without_the_traces(tmp_path: Path) -> None:
    """With Docker, kind and kubectl there but no traces directory, `make e2e` says so and
    exits 0, before any image is built (the gateway image copies the traces)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("docker", "kind", "kubectl"):
        (bin_dir / tool).write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
        (bin_dir / tool).chmod(0o755)
    missing = tmp_path / "no-traces"
    result = subprocess.run(
        [str(shutil.which("make") or "make"), "--no-print-directory", "-C", str(REPO), "e2e",
         f"E2E_TRACES={missing}"],
        env={**os.environ, "PATH": str(bin_dir) + os.pathsep + os.environ.get("PATH", "")},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == (
        "e2e skipped: e2e needs Docker, kind and kubectl: "
        f"the traces directory {missing} is missing"
    )


def test_e2e_history_ends_a_lookback_before_now() -> None:
    """The backfilled history stops 5 minutes (Prometheus's lookback) before the live replay
    starts, so that sum() over it and the live series never counts the load twice, and it
    stays aligned: the sample at wall time t is the trace at region.start + (t - now)."""
    cluster = e2e_cluster()
    if not cluster.TRACES.is_dir():
        pytest.skip(f"the traces directory {cluster.TRACES} is missing")
    from controller.demo_gateway.replayer import TraceReplay
    from forecasts.series import load_trace, parse_timestamp

    region = cluster.RAMP[0]
    now = 1_700_000_000.0
    samples = [
        line.split()
        for line in cluster.history_text("e2e-test", region, now=now).splitlines()
        if line and not line.startswith("#")
    ]
    assert len(samples) > 13 * 24 * 60
    last = float(samples[-1][-1])
    assert last <= now - 300, now - last
    trace = TraceReplay(load_trace(cluster.TRACES / region.trace), region.peak)
    start = parse_timestamp(region.start)
    for _, value, stamp in (samples[0], samples[len(samples) // 2], samples[-1]):
        assert int(value) == trace.connections_at(start + float(stamp) - now), stamp
