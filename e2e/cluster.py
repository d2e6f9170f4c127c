"""The kind cluster of the end-to-end tests (`make e2e`, see e2e/e2e.mk): prerequisites,
kubectl, polling with deadlines, and the per-namespace scenario (samples, backfilled history,
replayers)."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CLUSTER = "tidal-e2e"
CONTEXT = os.environ.get("TIDAL_E2E_CONTEXT", f"kind-{CLUSTER}")
TRACES = Path(os.environ.get("TIDAL_E2E_TRACES", REPO / "tests" / "data" / "traces"))

T = TypeVar("T")


@functools.cache
def missing_prerequisite() -> str | None:
    """What stops the e2e tests from running here, or None."""
    if shutil.which("docker") is None:
        return "docker is not on the PATH"
    try:
        info = subprocess.run(
            ["docker", "info"], capture_output=True, text=True, timeout=20, check=False
        )
    except subprocess.TimeoutExpired:
        return "`docker info` timed out: no Docker engine answers"
    if info.returncode != 0:
        return f"`docker info` failed, no Docker engine: {info.stderr.strip()[:200]}"
    if shutil.which("kind") is None:
        return "kind is not on the PATH"
    if shutil.which("kubectl") is None:
        return "kubectl is not on the PATH"
    try:
        clusters = subprocess.run(
            ["kind", "get", "clusters"], capture_output=True, text=True, timeout=30, check=False
        )
    except subprocess.TimeoutExpired:
        return "`kind get clusters` timed out"
    if clusters.returncode != 0:
        return f"`kind get clusters` failed: {clusters.stderr.strip()[:200]}"
    if CLUSTER not in clusters.stdout.split():
        return f"kind cluster {CLUSTER!r} does not exist: run `make e2e`"
    if not TRACES.is_dir():
        return f"the traces directory {TRACES} is missing"
    return None


def kubectl(*args: str, stdin: str | None = None, check: bool = True, timeout: float = 120) -> str:
    """kubectl against the e2e cluster's context; its standard output."""
    result = subprocess.run(
        ["kubectl", "--context", CONTEXT, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


def kubectl_json(*args: str) -> Any:
    return json.loads(kubectl(*args, "-o", "json"))


def poll(what: str, probe: Callable[[], T | None], *, deadline: float, every: float = 5) -> T:
    """Call ``probe`` until it returns something other than None; fail at the deadline."""
    until = time.monotonic() + deadline
    while True:
        result = probe()
        if result is not None:
            return result
        if time.monotonic() > until:
            pytest.fail(f"timed out after {deadline:.0f}s waiting for {what}")
        time.sleep(every)


@dataclass(frozen=True)
class Region:
    name: str
    trace: str
    start: str  # trace time played now (the replay runs in real time from here)
    peak: int  # connections at the trace's 99th percentile (TraceReplay's scaling)


# The scenarios, here so that tests/test_e2e_scenarios.py checks offline what the replay will
# serve (test_e2e.py runs them). The replay plays trace time at wall-clock speed, so whatever
# the tests wait for must happen in the trace within their deadlines of ``start``. Samples
# serve 20 connections per replica with 10% headroom (manifests/samples), so a replica is
# needed per 18.2 connections; the physical pool is pinned at PHYSICAL_MAX_REPLICAS replicas
# (e2e/manifests/samples/kustomization.yaml), so more than 91 connections need cloud, and a
# cloud node's worth more (4 replicas) is more than 145.
#
# The physical pool's capacity in the e2e samples (spec.physical.maxReplicas). A kind worker's
# allocatable CPU is the host's, so without a pin the overflow would depend on the runner's
# cores; 5 gateways at 250m fit a 2-core worker even with kindnet, both CoreDNS pods,
# Prometheus and both operator replicas on it (600m), so the pin binds on every runner.
# tests/test_e2e_scenarios.py sums those requests from the manifests.
PHYSICAL_MAX_REPLICAS = 5
LOOP = 10  # seconds: TIDAL_LOOP_INTERVAL of the e2e overlay
READY_DEADLINE = 300.0  # seconds the tests wait for a region to be Ready with a forecast
SCALE_DEADLINE = 900.0  # seconds they then wait for the pools to move

RAMP = (
    # An afternoon surge of the World Cup site (peak about 16 UTC): 74-81 connections (5
    # replicas, the physical pool) for three minutes, above 91 (cloud) from 15:36:30, above 145
    # (a cloud node more) from 15:42:30 to 15:48:30 (151-186), and 117-233 until 16:10.
    Region("eu-west", "wc98-requests-per-minute.csv", "1998-05-21T15:33:00Z", 800),
    # AMZN tweets surging at 18 UTC, the US afternoon: 60-73 connections (4-5 replicas) for
    # three minutes, above 91 from 18:03:13, above 145 from 18:04:53 to 18:13:13 (up to 220).
    Region("us-east", "twitter-amzn-5min.csv", "2015-03-26T17:57:53Z", 110),
)
DESCENT = (
    # The end of a six-minute flash crowd on the World Cup site: 153-271 connections (9-15
    # replicas, cloud in use) for three minutes, within the physical pool from 21:08:20, and
    # 18-25 connections (1-2 replicas) for the next 20 minutes.
    Region("eu-west", "wc98-requests-per-minute.csv", "1998-05-19T21:04:00Z", 150),
)


@dataclass(frozen=True)
class Scenario:
    namespace: str
    regions: tuple[Region, ...]

    def gwa(self, region: str) -> dict[str, Any]:
        result: dict[str, Any] = kubectl_json(
            "-n", self.namespace, "get", "gatewayautoscaler", f"gateway-{region}"
        )
        return result

    def status(self, region: str) -> dict[str, Any]:
        return dict(self.gwa(region).get("status") or {})

    def deployment_replicas(self, name: str) -> int | None:
        found = kubectl("-n", self.namespace, "get", "deployment", name, "-o", "json", check=False)
        return int(json.loads(found)["spec"].get("replicas") or 0) if found else None

    def deployment_ready(self, name: str) -> int | None:
        """The Deployment's ready replicas (its status), or None when it does not exist."""
        found = kubectl("-n", self.namespace, "get", "deployment", name, "-o", "json", check=False)
        if not found:
            return None
        status = json.loads(found).get("status") or {}
        return int(status.get("readyReplicas") or 0)


def _sample_docs(namespace: str) -> list[dict[str, Any]]:
    built = subprocess.run(
        ["kubectl", "kustomize", str(REPO / "e2e" / "manifests" / "samples")],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    docs = [d for d in yaml.safe_load_all(built) if d]
    for doc in docs:
        doc["metadata"]["namespace"] = namespace
        if doc["kind"] == "GatewayAutoscaler":
            region = doc["spec"]["region"]
            # Prometheus serves every scenario's gateways: read this namespace's only.
            doc["spec"]["load"]["query"] = (
                f'sum(gateway_active_connections{{namespace="{namespace}", region="{region}"}})'
            )
    return docs


# Prometheus's default lookback (--query.lookback-delta): a series with no staleness marker, as
# a backfilled one, still answers queries this long after its last sample.
LOOKBACK = 300.0


def history_text(namespace: str, region: Region, *, now: float) -> str:
    """Two weeks of the trace before ``region.start`` as OpenMetrics, ``region.start`` at ``now``.

    The history stops one lookback before ``now``: the live series (other labels: pod, pool)
    only begin once the replayer runs, after ``now``, and a history reaching ``now`` would still
    be summed with them for minutes, the region's load counted twice.
    """
    from controller.demo_gateway.history import openmetrics_history
    from controller.demo_gateway.replayer import TraceReplay
    from forecasts.series import load_trace, parse_timestamp

    trace = TraceReplay(load_trace(TRACES / region.trace), region.peak)
    return "".join(
        openmetrics_history(
            trace,
            start=parse_timestamp(region.start) - LOOKBACK,
            now=now - LOOKBACK,
            span=14 * 86400.0,
            step=60.0,
            labels={"namespace": namespace, "region": region.name},
        )
    )


def _backfill(namespace: str, region: Region, *, now: float) -> None:
    """The region's history (:func:`history_text`) into Prometheus."""
    text = history_text(namespace, region, now=now)
    pod = kubectl(
        "-n", "monitoring", "get", "pod", "-l", "app.kubernetes.io/name=prometheus",
        "-o", "jsonpath={.items[0].metadata.name}",
    )  # fmt: skip
    # Blocks are written to a directory of their own and then moved in, as Prometheus's
    # backfill documentation asks: promtool reads its output directory's blocks, which the
    # running server would compact and delete under it. That directory is a dot-directory in
    # the data volume, which the server does not take for a block (its name is no block ID),
    # so each move is a rename that brings a block whole; the server loads it at its next
    # reload.
    work = f"/prometheus/.backfill-{namespace}-{region.name}"
    kubectl(
        "-n", "monitoring", "exec", "-i", pod, "--", "sh", "-c",
        f"rm -rf {work} && mkdir {work} && cat > {work}/history.om", stdin=text,
    )  # fmt: skip
    kubectl(
        "-n", "monitoring", "exec", pod, "--", "sh", "-c",
        f"promtool tsdb create-blocks-from openmetrics {work}/history.om {work}/blocks "
        f"&& mv {work}/blocks/* /prometheus/ && rm -rf {work}",
        timeout=300,
    )  # fmt: skip


def _replayer(namespace: str, region: Region) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": f"replayer-{region.name}", "namespace": namespace},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app.kubernetes.io/name": f"replayer-{region.name}"}},
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/name": f"replayer-{region.name}"}},
                "spec": {
                    # The replayer stands for users: it runs on the control plane, off both pools.
                    "tolerations": [{"operator": "Exists"}],
                    "nodeSelector": {"node-role.kubernetes.io/control-plane": ""},
                    "containers": [
                        {
                            "name": "replayer",
                            "image": "tidal-gateway:e2e",
                            "imagePullPolicy": "Never",
                            "command": ["python", "-m", "controller.demo_gateway.replayer"],
                            "args": [
                                f"--url=ws://gateway-{region.name}.{namespace}.svc/ws",
                                f"--trace={region.trace}",
                                f"--peak={region.peak}",
                                f"--start={region.start}",
                                "--hold",
                            ],
                        }
                    ],
                },
            },
        },
    }


def install_scenario(regions: tuple[Region, ...]) -> Iterator[Scenario]:
    """A fresh namespace with the samples, history backfilled up to a lookback before now, and
    replayers running. The namespace is deleted, and waited for, on the way out: a gateway pod
    still terminating would hold CPU on a physical worker, and the next scenario's pinned
    physical capacity would not fit beside it."""
    namespace = f"e2e-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", namespace)
    try:
        now = time.time()
        for region in regions:
            _backfill(namespace, region, now=now)
        docs = _sample_docs(namespace)
        kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(docs))
        replayers = [_replayer(namespace, region) for region in regions]
        kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(replayers))
        yield Scenario(namespace, regions)
    finally:
        wait = ("--wait=true", "--timeout=300s")
        kubectl("delete", "namespace", namespace, *wait, check=False, timeout=330)
