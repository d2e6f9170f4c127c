"""Rules of one reconcile pass (controller.operator.reconcile) that the scenario tests leave
loose: how a failed Deployment write is reported, which Events a pass records and how often, when
a first fit still holds the reservation, and what a deleted object leaves behind. Against the API
emulator, a pass at a time."""

from __future__ import annotations

import json
import threading
from concurrent.futures import Future
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import structlog
from structlog.testing import capture_logs

from controller.operator import Operator, OperatorSettings
from controller.operator.errors import ClusterUnavailable
from controller.operator.fitting import FitState
from controller.operator.kube import placeholder_deployment
from controller.operator.reconcile import Reconciler, _first_fit_pending, _Memory, _replicas
from controller.operator.sources import MetricsUnavailable, QueryError
from controller.operator.status import parse_time, rfc3339
from controller.planner import Reason
from controller.spec import GatewayAutoscalerSpec
from forecasts.base import Calibration, Forecast
from forecasts.errors import (
    FitFailed,
    ForecastError,
    InsufficientHistory,
    InvalidHistory,
    UnknownModel,
)
from forecasts.series import LoadSeries
from tests.integration.operator_cluster import (
    DEPLOYMENTS,
    GWAS,
    NAMESPACE,
    FlatLoad,
    add_region,
    condition,
    gwa_body,
    replicas,
    status_of,
)
from tests.support.kube_emulator import KubeEmulatorHandle, running_emulator

KEY = f"{NAMESPACE}/gateway-eu"


def an_eu_region(cluster: KubeEmulatorHandle, operator_at: Any, *, load: float = 5_000.0) -> Any:
    """Region ``eu`` of four physical replicas and its GatewayAutoscaler, and an operator
    reading ``load``, not yet run."""
    add_region(cluster, "eu", replicas=4)
    cluster.create(gwa_body("eu"))
    return operator_at(load)


def stated(cluster: KubeEmulatorHandle, kind: str) -> tuple[str, str, str]:
    """gateway-eu's ``kind`` condition: its status, reason and message."""
    found = condition(cluster, "gateway-eu", kind)
    assert found is not None, f"no {kind} condition"
    return found["status"], found["reason"], found["message"]


def events(cluster: KubeEmulatorHandle) -> list[dict[str, Any]]:
    return list(cluster.list("v1/events", namespace=NAMESPACE))


@pytest.mark.parametrize(
    ("write", "error", "reason", "message", "asked"),
    [
        pytest.param(
            "scale_deployment",
            ClusterUnavailable("scale: 503 etcd leader changed"),
            "KubernetesUnavailable",
            "scale: 503 etcd leader changed",
            (16, 0),
            id="cloud-scale-operator-error",
        ),
        pytest.param(
            "scale_deployment",
            RuntimeError("boom"),
            "InternalError",
            "RuntimeError: boom",
            (16, 0),
            id="cloud-scale-other-error",
        ),
        pytest.param(
            "apply_placeholder",
            ClusterUnavailable("placeholder: 503"),
            "KubernetesUnavailable",
            "placeholder: 503",
            (16, 6),
            id="placeholder-operator-error",
        ),
    ],
)
def test_a_failed_write_is_reported_with_what_the_deployments_ask_for(
    cluster: KubeEmulatorHandle,
    operator_at: Any,
    write: str,
    error: Exception,
    reason: str,
    message: str,
    asked: tuple[int, int],
) -> None:
    """22 replicas' worth of load on 16 physical slots, and the cloud or placeholder write fails:
    the other writes still go out; the outcome and Ready=False name the failure (an operator
    error by its own reason, anything else as InternalError with its type, logged once as
    write_failed), Ready's message says what each Deployment asks for, and
    tidal_reconcile_errors_total counts it under that reason."""
    operator = an_eu_region(cluster, operator_at, load=20_000.0)
    original = getattr(operator.kube, write)

    def failing(*args: Any) -> Any:
        if write == "apply_placeholder" or args[1] == "gateway-eu-cloud":
            raise error
        return original(*args)

    setattr(operator.kube, write, failing)
    with capture_logs() as logs:
        outcome = operator.run_once()[KEY]
    assert (outcome.ok, outcome.reason, outcome.message) == (False, reason, message)
    assert outcome.plan is not None and outcome.plan.cloud.replicas == 6
    assert (replicas(cluster, "gateway-eu"), replicas(cluster, "gateway-eu-cloud")) == asked
    ready = condition(cluster, "gateway-eu", "Ready")
    assert ready is not None and (ready["status"], ready["reason"]) == ("False", reason)
    assert ready["message"].startswith(f"{message}; planned physical 16/16, cloud 6, reserved ")
    assert ready["message"].endswith(
        f"the Deployments ask for physical {asked[0]}, cloud {asked[1]}"
    )
    errors = operator.metrics.reconcile_errors.labels("gateway-eu", NAMESPACE, reason)
    assert errors._value.get() == 1.0
    logged = [e["event"] for e in logs if e["event"] in ("write_failed", "reconcile_degraded")]
    expected = ["reconcile_degraded"]
    if reason == "InternalError":
        expected = ["write_failed", "reconcile_degraded"]
    assert logged == expected


def test_a_scale_is_recorded_once_as_an_event(
    cluster: KubeEmulatorHandle, operator_at: Any
) -> None:
    """A pass that scales records a Normal Event saying from what to what, and logs it (for
    whoever reads the operator's logs, not the Events); a pass that changes nothing records and
    logs none."""
    operator = an_eu_region(cluster, operator_at)
    with capture_logs() as logs:
        assert operator.run_once()[KEY].reason == "Reconciled"
    scaled = [e for e in logs if e["event"] == "scaled"]
    assert len(scaled) == 1, logs
    assert {k: scaled[0][k] for k in ("object", "pool", "deployment")} == {
        "object": KEY,
        "pool": "physical",
        "deployment": "gateway-eu",
    }
    assert (scaled[0]["replicas_from"], scaled[0]["replicas_to"]) == (4, 16)
    assert scaled[0]["reason"] == "KeepWarm"
    assert replicas(cluster, "gateway-eu") == 16
    told = [(e["type"], e["message"].split(":")[0]) for e in events(cluster)]
    assert told == [("Normal", "scaled physical deployment gateway-eu from 4 to 16")]
    # Nothing was reserved before and there is no forecast yet: nothing is reserved.
    assert status_of(cluster, "gateway-eu")["cloud"] == {"replicas": 0, "reserved": 0}
    with capture_logs() as logs:
        assert operator.run_once()[KEY].reason == "Reconciled"
    assert [e for e in logs if e["event"] in ("scaled", "reserved")] == []
    assert len([e for e in events(cluster) if e["message"].startswith("scaled ")]) == 1


@pytest.mark.parametrize(
    ("pool", "reason", "message"),
    [
        pytest.param(
            "physical",
            "TargetMissing",
            "spec.physical.deployment: deployment 'gateway-eu-gone' not found in namespace 'chat'",
            id="physical-missing",
        ),
        pytest.param(
            "cloud",
            "TargetMissing",
            "spec.cloud.deployment: deployment 'gateway-eu-gone' not found in namespace 'chat'",
            id="cloud-missing",
        ),
        pytest.param(
            "both",
            "TargetMissing",
            "spec.physical.deployment: deployment 'gateway-eu-gone' and spec.cloud.deployment: "
            "deployment 'gateway-eu-cloud-gone' not found in namespace 'chat'",
            id="both-missing-both-named",
        ),
    ],
)
def test_a_lasting_failure_is_one_warning_event(
    cluster: KubeEmulatorHandle, operator_at: Any, pool: str, reason: str, message: str
) -> None:
    """A Deployment that is not there fails every pass the same way: Ready=False naming the
    field, and one Warning Event with the failure's reason, not one a pass."""
    add_region(cluster, "eu", replicas=4)
    body = gwa_body("eu")
    gone = {"physical": "gateway-eu-gone", "cloud": "gateway-eu-gone"}
    if pool == "both":
        gone["cloud"] = "gateway-eu-cloud-gone"
    for named in ("physical", "cloud") if pool == "both" else (pool,):
        body["spec"][named]["deployment"] = gone[named]
    cluster.create(body)
    operator = operator_at(5_000.0)
    for _ in range(3):
        outcome = operator.run_once()[KEY]
        assert (outcome.ok, outcome.reason, outcome.message) == (False, reason, message)
    assert stated(cluster, "Ready") == ("False", reason, message)
    stored = cluster.get(GWAS, "gateway-eu", namespace=NAMESPACE)
    assert stored["status"]["observedGeneration"] == stored["metadata"]["generation"]
    warnings = [(e["type"], e["reason"], e["message"]) for e in events(cluster)]
    assert warnings == [("Warning", reason, message)]
    errors = operator.metrics.reconcile_errors.labels("gateway-eu", NAMESPACE, reason)
    assert errors._value.get() == 3.0


def test_a_deleted_object_leaves_no_fit_state(
    cluster: KubeEmulatorHandle, operator_at: Any
) -> None:
    """Deleting a GatewayAutoscaler drops its fit state at the next pass."""
    operator = an_eu_region(cluster, operator_at)
    operator.run_once()
    assert len(operator.models._states) == 1
    cluster.delete(GWAS, "gateway-eu", namespace=NAMESPACE)
    operator.run_once()
    assert operator.models._states == {}


def fit_state(
    *,
    fitted: bool = False,
    problem: bool | str = False,
    running: bool = True,
    started: float | None,
) -> FitState:
    state = FitState(fingerprint="f", started_at=started)
    state.fitted = object() if fitted else None  # type: ignore[assignment]
    reason = problem if isinstance(problem, str) else "FitFailed"
    state.problem = (reason, "x") if problem else None
    state.running = Future() if running else None
    return state


T0 = 1_700_000_000.0


@pytest.mark.parametrize(
    ("refit", "state", "age", "pending"),
    [
        pytest.param("15m", fit_state(started=T0), 60.0, True, id="running-young"),
        pytest.param("15m", fit_state(started=T0), 899.0, True, id="just-inside-refit"),
        pytest.param("15m", fit_state(started=T0), 900.0, False, id="refit-elapsed"),
        pytest.param("0s", fit_state(started=T0), 299.0, True, id="never-shorter-than-a-step"),
        pytest.param("0s", fit_state(started=T0), 300.0, False, id="a-step-elapsed"),
        pytest.param("15m", fit_state(fitted=True, started=T0), 60.0, False, id="has-a-model"),
        pytest.param("15m", fit_state(problem=True, started=T0), 60.0, False, id="fit-failed"),
        pytest.param("15m", fit_state(running=False, started=T0), 60.0, False, id="not-running"),
        pytest.param("15m", fit_state(started=None), 60.0, False, id="never-started"),
        pytest.param(
            "15m",
            fit_state(problem="MetricsUnavailable", running=False, started=T0),
            3600.0,
            True,
            id="failed-on-metrics-retry-due",
        ),
        pytest.param(
            "15m",
            fit_state(problem="MetricsUnavailable", started=T0),
            60.0,
            True,
            id="failed-on-metrics-retrying",
        ),
        pytest.param(
            "15m",
            fit_state(problem="MetricsUnavailable", fitted=True, started=T0),
            60.0,
            False,
            id="failed-on-metrics-has-a-model",
        ),
        pytest.param(
            "15m", fit_state(problem="QueryError", started=T0), 60.0, False, id="query-refused"
        ),
    ],
)
def test_first_fit_pending(refit: str, state: FitState, age: float, pending: bool) -> None:
    """Until the first forecast the reservation stays, while a first fit runs, for at most
    forecast.refit and never less than a fit step (5m); a fit that failed lets it go, unless
    it failed because Prometheus could not be read (a restart in an outage): then it stays
    for a refit from when the metrics came back (here a minute ago). A query Prometheus
    refuses is no outage."""
    spec = GatewayAutoscalerSpec.model_validate(
        dict(gwa_body("eu")["spec"], forecast={"model": "seasonal-naive", "refit": refit})
    )
    assert spec.forecast.refit == timedelta(seconds=0 if refit == "0s" else 900)
    assert _first_fit_pending(state, spec, T0 + age, T0 + age - 60.0) is pending


@pytest.mark.parametrize(
    ("back", "pending"),
    [
        pytest.param(899.0, True, id="back-within-a-refit"),
        pytest.param(900.0, False, id="back-a-refit-ago"),
        pytest.param(None, False, id="still-failing"),
    ],
)
def test_a_fit_failed_on_metrics_is_awaited_a_refit_from_their_return(
    back: float | None, pending: bool
) -> None:
    """A history that keeps failing while the load is read (a range too long for Prometheus)
    does not hold what runs for ever: a refit after the metrics came back, the plan sizes on
    the load again. Before, a fit failed on the metrics was on its way with no end."""
    spec = GatewayAutoscalerSpec.model_validate(
        dict(gwa_body("eu")["spec"], forecast={"model": "seasonal-naive", "refit": "15m"})
    )
    state = fit_state(problem="MetricsUnavailable", started=T0)
    now = T0 + 4 * 3600.0
    assert _first_fit_pending(state, spec, now, None if back is None else now - back) is pending


@pytest.mark.parametrize(
    ("error", "reason", "message"),
    [
        pytest.param(
            MetricsUnavailable("refused", query="q"), "MetricsUnavailable", "refused", id="metrics"
        ),
        pytest.param(QueryError("two series", query="q"), "QueryError", "two series", id="query"),
        pytest.param(InsufficientHistory("2h"), "InsufficientHistory", "2h", id="insufficient"),
        pytest.param(InvalidHistory("nan"), "InvalidHistory", "nan", id="invalid"),
        pytest.param(UnknownModel("prophet"), "UnknownModel", "prophet", id="unknown-model"),
        pytest.param(FitFailed("singular"), "FitFailed", "singular", id="fit-failed"),
        pytest.param(ForecastError("odd"), "ForecastError", "odd", id="forecast-error"),
        pytest.param(MemoryError("big"), "FitFailed", "MemoryError: big", id="other-by-type"),
    ],
)
def test_a_failed_fit_is_named_by_its_kind(error: Exception, reason: str, message: str) -> None:
    """A fit's failure becomes ForecastReady's reason and message: a metrics failure by its own
    reason, a forecast error by its kind, anything else as FitFailed named by its type."""
    classify = Reconciler._classify_fit(structlog.get_logger("test"), _Memory())
    assert classify(error) == (reason, message)


def test_a_fit_failure_that_lasts_is_logged_once_until_it_changes_or_a_fit_succeeds() -> None:
    """A young region's fit is retried every pass, its history a sample longer each time: one
    warning, not one a pass; another failure is logged; after a fit that succeeded (the memory
    cleared, as the pass does), the same failure is logged again."""
    memory = _Memory()
    classify = Reconciler._classify_fit(structlog.get_logger("test"), memory)
    with capture_logs() as logs:
        for usable in (24, 25, 26):
            classify(InsufficientHistory(f"history has {usable} usable samples; 301 are needed"))
        classify(FitFailed("singular matrix"))
        classify(FitFailed("singular matrix"))
        memory.fit_failure = None
        classify(InsufficientHistory("history has 27 usable samples; 301 are needed"))
        classify(RuntimeError("bug"))
        classify(RuntimeError("bug"))
    logged = [(e["log_level"], e["reason"], e["error"]) for e in logs if e["event"] == "fit_failed"]
    assert logged == [
        ("warning", "InsufficientHistory", "history has 24 usable samples; 301 are needed"),
        ("warning", "FitFailed", "singular matrix"),
        ("warning", "InsufficientHistory", "history has 27 usable samples; 301 are needed"),
        ("error", "FitFailed", "RuntimeError('bug')"),
    ]


def test_a_lasting_failure_is_logged_once_and_its_end_once(
    cluster: KubeEmulatorHandle, operator_at: Any
) -> None:
    """A failure is logged when it first appears, not at every pass; its end is logged once
    when the object is served again."""
    add_region(cluster, "eu", replicas=4)
    body = gwa_body("eu")
    body["spec"]["cloud"]["deployment"] = "gateway-eu-gone"
    cluster.create(body)
    operator = operator_at(5_000.0)
    with capture_logs() as logs:
        for _ in range(3):
            assert operator.run_once()[KEY].reason == "TargetMissing"
        spec = dict(body["spec"], cloud=dict(body["spec"]["cloud"], deployment="gateway-eu-cloud"))
        cluster.patch(GWAS, "gateway-eu", {"spec": spec}, namespace=NAMESPACE)
        for _ in range(2):
            assert operator.run_once()[KEY].reason == "Reconciled"
    events = [e["event"] for e in logs if e["event"].startswith("reconcile_")]
    assert events == ["reconcile_failed", "reconcile_recovered"]


def test_a_region_renamed_drops_the_old_regions_series(
    cluster: KubeEmulatorHandle, operator_at: Any
) -> None:
    """spec.region changed: the object's gauges under the old region go, the new one's come."""
    operator = an_eu_region(cluster, operator_at)
    operator.run_once()

    def regions() -> set[str]:
        text = operator.metrics.exposition().decode()
        lines = [line for line in text.splitlines() if line.startswith("tidal_load{")]
        return {line.split('region="')[1].split('"')[0] for line in lines}

    assert regions() == {"eu"}
    cluster.patch(GWAS, "gateway-eu", {"spec": {"region": "west"}}, namespace=NAMESPACE)
    assert operator.run_once()[KEY].reason == "Reconciled"
    assert regions() == {"west"}


class Failing:
    """Prometheus failing every read with ``error``."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def read_history(self, query: str, *, start: float, end: float, step: float) -> LoadSeries:
        raise self.error


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        pytest.param(MetricsUnavailable("connection refused", query="q"), "MetricsUnavailable"),
        pytest.param(QueryError("connection refused", query="q"), "QueryError"),
    ],
    ids=["unavailable", "query-error"],
)
def test_no_metrics_holds_and_says_why(
    cluster: KubeEmulatorHandle, operator_at: Any, error: Exception, reason: str
) -> None:
    """No load to read: the replicas are held, the outcome and Ready=False name the metrics
    failure and the query field, ForecastReady says the same, and the failure is counted."""
    add_region(cluster, "eu", replicas=16)
    cluster.create(gwa_body("eu"))
    operator = operator_at(0.0)
    operator.reconciler.source = Failing(error)
    message = "spec.load.query: connection refused"
    outcome = operator.run_once()[KEY]
    assert (outcome.ok, outcome.reason, outcome.message) == (False, reason, message)
    assert (replicas(cluster, "gateway-eu"), replicas(cluster, "gateway-eu-cloud")) == (16, 0)
    assert "load" not in status_of(cluster, "gateway-eu")  # none read, and none known before
    assert stated(cluster, "Ready") == (
        "False",
        reason,
        f"{message}; holding 16 replicas, no scale-down",
    )
    assert stated(cluster, "ForecastReady") == (
        "False",
        reason,
        message,
    )
    errors = operator.metrics.reconcile_errors.labels("gateway-eu", NAMESPACE, reason)
    assert errors._value.get() == 1.0


def test_a_finished_fit_forecasts_and_is_timed_once(
    cluster: KubeEmulatorHandle, operator_at: Any
) -> None:
    """The pass that collects a fit forecasts with it (ForecastReady=True, the status naming the
    model and when it was fitted) and observes the fit's duration; later passes do not again."""
    operator = an_eu_region(cluster, operator_at)
    clock = [1_700_000_000.0]
    operator.reconciler.clock = lambda: clock[0]
    operator.run_once()
    forecast = condition(cluster, "gateway-eu", "ForecastReady")
    assert forecast is not None and (forecast["status"], forecast["reason"]) == ("False", "Fitting")
    assert forecast["message"] == "the first fit of seasonal-naive is running"
    (uid,) = operator.models._states
    operator.models.wait(uid, timeout=30)
    timed = operator.metrics.fit_seconds.labels("gateway-eu", NAMESPACE, "seasonal-naive")
    for _ in range(2):
        clock[0] += 60
        assert operator.run_once()[KEY].reason == "Reconciled"
        forecast = condition(cluster, "gateway-eu", "ForecastReady")
        assert forecast is not None
        assert (forecast["status"], forecast["reason"]) == ("True", "Forecasting")
        assert forecast["message"].startswith("seasonal-naive forecasting to ")
        # A flat load is forecast without error in the fit's own backtest.
        assert forecast["message"].endswith(", backtest error 0.000")
        status = status_of(cluster, "gateway-eu")["forecast"]
        assert (status["model"], status["quantile"], status["error"]) == (
            "seasonal-naive",
            0.95,
            0.0,
        )
        assert status["fittedAt"] == rfc3339(1_700_000_060.0)
        assert clock[0] <= parse_time(status["peakAt"])
        # Seasonal-naive on a flat load forecasts that load; the gauges follow the plan.
        assert gauge(operator, "forecast_peak") == 5_000.0
        assert gauge(operator, "forecast_upper") == pytest.approx(status["peak"], abs=1e-3)
        assert timed._sum.get() > 0
        count = [s.value for s in timed.collect()[0].samples if s.name.endswith("_count")]
        assert count == [1.0]


@pytest.mark.parametrize(
    ("start", "scaled"), [(4, True), (16, False)], ids=["scales", "nothing-to-scale"]
)
def test_last_scale_time_is_the_pass_that_scaled(
    cluster: KubeEmulatorHandle, operator_at: Any, start: int, scaled: bool
) -> None:
    """lastScaleTime is written by a pass that scales a Deployment, at that pass's time, and
    is kept by the passes that do not."""
    add_region(cluster, "eu", replicas=start)
    cluster.create(gwa_body("eu"))
    operator = operator_at(5_000.0)
    clock = [1_700_000_000.0]
    operator.reconciler.clock = lambda: clock[0]
    for _ in range(2):
        assert operator.run_once()[KEY].reason == "Reconciled"
        assert replicas(cluster, "gateway-eu") == 16
        stamp = status_of(cluster, "gateway-eu").get("lastScaleTime")
        assert stamp == (rfc3339(1_700_000_000.0) if scaled else None)
        clock[0] += 60


def placeholder_pods(cluster: KubeEmulatorHandle) -> int:
    found = cluster.get(DEPLOYMENTS, "gateway-eu-placeholder", namespace=NAMESPACE)
    return int(found["spec"]["replicas"])


@pytest.mark.parametrize(
    ("cloud_fails", "left", "told"),
    [(False, 0, ["placeholder pods 3 -> 0"]), (True, 3, [])],
    ids=["given-back", "kept-after-a-failed-write"],
)
def test_placeholders_are_given_back_unless_a_write_failed(
    cluster: KubeEmulatorHandle, operator_at: Any, cloud_fails: bool, left: int, told: list[str]
) -> None:
    """cloud.reserve off, three placeholder pods of the object's own: a pass gives them back
    (one Event and one log line saying so, none when nothing changes), except after a failed
    write, when nothing is taken away."""
    add_region(cluster, "eu", replicas=4)
    body = gwa_body("eu")
    body["spec"]["cloud"]["reserve"] = False
    gwa = cluster.create(body)
    cloud = cluster.get(DEPLOYMENTS, "gateway-eu-cloud", namespace=NAMESPACE)
    cluster.create(placeholder_deployment(gwa, cloud, 3))
    operator = operator_at(20_000.0)
    if cloud_fails:
        scale = operator.kube.scale_deployment

        def failing_cloud(namespace: str, name: str, count: int) -> None:
            if name == "gateway-eu-cloud":
                raise ClusterUnavailable("scale: 503")
            scale(namespace, name, count)

        operator.kube.scale_deployment = failing_cloud
    with capture_logs() as logs:
        for _ in range(2):
            outcome = operator.run_once()[KEY]
            assert outcome.reason == ("KubernetesUnavailable" if cloud_fails else "Reconciled")
            assert placeholder_pods(cluster) == left
            assert replicas(cluster, "gateway-eu") == 16
    messages = [e["message"].split(" (")[0] for e in events(cluster)]
    assert [m for m in messages if m.startswith("placeholder pods")] == told
    reserved = [
        f"placeholder pods {e['placeholders_from']} -> {e['placeholders_to']}"
        for e in logs
        if e["event"] == "reserved" and e["object"] == KEY
    ]
    assert reserved == told


class Broken:
    """A load source with a bug: every read raises something no one expects."""

    def read_history(self, query: str, *, start: float, end: float, step: float) -> LoadSeries:
        raise RuntimeError("client bug")


def test_an_unexpected_error_is_an_internal_error(
    cluster: KubeEmulatorHandle, operator_at: Any
) -> None:
    """An error of no operator kind ends at the edge: Ready=False, reason InternalError, the
    message naming its type; counted; logged once, with its traceback."""
    operator = an_eu_region(cluster, operator_at, load=0.0)
    operator.reconciler.source = Broken()
    with capture_logs() as logs:
        for _ in range(2):
            outcome = operator.run_once()[KEY]
            assert (outcome.ok, outcome.reason, outcome.message) == (
                False,
                "InternalError",
                "RuntimeError: client bug",
            )
    assert stated(cluster, "Ready") == (
        "False",
        "InternalError",
        "RuntimeError: client bug",
    )
    errors = operator.metrics.reconcile_errors.labels("gateway-eu", NAMESPACE, "InternalError")
    assert errors._value.get() == 2.0
    failed = [e for e in logs if e["event"] == "reconcile_failed"]
    assert [(e["log_level"], e["transient"], e.get("exc_info")) for e in failed] == [
        ("error", True, True)
    ]


@pytest.mark.parametrize(
    ("leading", "scaled"),
    [(0, 4), (1, 4), (2, 16)],
    ids=["not-leading", "lost-before-the-writes", "lost-during-the-writes"],
)
def test_only_the_leader_writes(
    cluster: KubeEmulatorHandle, operator_at: Any, leading: int, scaled: int
) -> None:
    """Not the leader, or no longer once the object is planned or its Deployments written:
    what is left (scale, status) is the new leader's, and that is no failure."""
    operator = an_eu_region(cluster, operator_at)
    asked = [0]

    def is_leader() -> bool:
        asked[0] += 1
        return asked[0] <= leading

    operator.reconciler.is_leader = is_leader
    (obj,) = operator.kube.list_autoscalers()
    outcome = operator.reconciler.reconcile(obj, operator.kube.snapshot())
    assert (outcome.ok, outcome.reason) == (True, "NotLeader")
    assert status_of(cluster, "gateway-eu") == {}
    assert replicas(cluster, "gateway-eu") == scaled


def test_a_foreign_placeholder_is_a_failed_pass_that_still_scales(
    cluster: KubeEmulatorHandle, operator_at: Any
) -> None:
    """A Deployment of the placeholder's name that the object does not own (cloud.reserve on):
    the gateways are scaled, and the pass is a PlaceholderConflict failure, counted."""
    add_region(cluster, "eu", replicas=4)
    cloud = cluster.get(DEPLOYMENTS, "gateway-eu-cloud", namespace=NAMESPACE)
    foreign = dict(cloud, metadata={"name": "gateway-eu-placeholder", "namespace": NAMESPACE})
    cluster.create(foreign)
    cluster.create(gwa_body("eu"))
    operator = operator_at(5_000.0)
    outcome = operator.run_once()[KEY]
    assert (outcome.ok, outcome.reason) == (False, "PlaceholderConflict")
    assert replicas(cluster, "gateway-eu") == 16
    errors = operator.metrics.reconcile_errors.labels(
        "gateway-eu", NAMESPACE, "PlaceholderConflict"
    )
    assert errors._value.get() == 1.0


def test_forecast_only_says_what_it_would_run(
    cluster: KubeEmulatorHandle, operator_at: Any
) -> None:
    """ForecastOnly: the Deployments keep their replicas; Ready=True (reason ForecastOnly) and
    one Event say what would run."""
    add_region(cluster, "eu", replicas=4)
    cluster.create(gwa_body("eu", mode="ForecastOnly"))
    operator = operator_at(5_000.0)
    assert operator.run_once()[KEY].ok
    assert (replicas(cluster, "gateway-eu"), replicas(cluster, "gateway-eu-cloud")) == (4, 0)
    ready = condition(cluster, "gateway-eu", "Ready")
    assert ready is not None and (ready["status"], ready["reason"]) == ("True", "ForecastOnly")
    assert ready["message"].startswith("ForecastOnly: planned physical 16/16, cloud 0, reserved")
    assert "lastScaleTime" not in status_of(cluster, "gateway-eu")
    told = [(e["reason"], e["message"]) for e in events(cluster)]
    assert len(told) == 1 and told[0][0] == "ForecastOnly"
    assert told[0][1].startswith("would run physical 16 (")
    assert told[0][1].endswith("; nothing is changed in ForecastOnly mode")


@pytest.mark.parametrize(
    ("region", "kept"), [("eu", {"eu"}), ("west", {"west"})], ids=["same-region", "new-region"]
)
def test_an_object_made_again_under_its_name(
    cluster: KubeEmulatorHandle, operator_at: Any, region: str, kept: set[str]
) -> None:
    """Deleted and made again under its name (a new uid): the name's series stay, and only a
    region it no longer has goes."""
    operator = an_eu_region(cluster, operator_at)
    operator.run_once()
    cluster.delete(GWAS, "gateway-eu", namespace=NAMESPACE)
    again = gwa_body("eu")
    again["spec"]["region"] = region
    cluster.create(again)
    assert operator.run_once()[KEY].reason == "Reconciled"
    text = operator.metrics.exposition().decode()
    lines = [line for line in text.splitlines() if line.startswith("tidal_load{")]
    assert {line.split('region="')[1].split('"')[0] for line in lines} == kept


class ShortHistory(FlatLoad):
    """Prometheus that keeps only the last half hour: enough for a pass, too little to fit."""

    def read_history(self, query: str, *, start: float, end: float, step: float) -> LoadSeries:
        return super().read_history(query, start=max(start, end - 1800.0), end=end, step=step)


def test_a_failed_first_fit_says_why_in_forecast_ready(
    cluster: KubeEmulatorHandle, operator_at: Any
) -> None:
    """The first fit fails for too little history: the next pass still serves the load (Ready)
    and ForecastReady=False carries the fit's reason."""
    operator = an_eu_region(cluster, operator_at)
    operator.reconciler.source = ShortHistory(5_000.0)
    operator.run_once()
    (uid,) = operator.models._states
    operator.models.wait(uid, timeout=30)
    assert operator.run_once()[KEY].reason == "Reconciled"
    forecast = condition(cluster, "gateway-eu", "ForecastReady")
    assert forecast is not None
    assert (forecast["status"], forecast["reason"]) == ("False", "InsufficientHistory")
    assert replicas(cluster, "gateway-eu") == 16


def test_an_unreadable_physical_capacity_is_named(
    cluster: KubeEmulatorHandle, operator_at: Any
) -> None:
    """A physical gateway whose CPU request is no quantity: Ready=False, reason
    PhysicalCapacityUnknown, the message naming spec.physical.deployment."""
    add_region(cluster, "eu", replicas=4)
    template = cluster.get(DEPLOYMENTS, "gateway-eu", namespace=NAMESPACE)["spec"]["template"]
    template["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "lots"
    cluster.patch(DEPLOYMENTS, "gateway-eu", {"spec": {"template": template}}, namespace=NAMESPACE)
    cluster.create(gwa_body("eu"))
    operator = operator_at(5_000.0)
    outcome = operator.run_once()[KEY]
    assert (outcome.ok, outcome.reason) == (False, "PhysicalCapacityUnknown")
    assert outcome.message.startswith("spec.physical.deployment: ")
    ready = condition(cluster, "gateway-eu", "Ready")
    assert ready is not None and (ready["status"], ready["reason"]) == (
        "False",
        "PhysicalCapacityUnknown",
    )
    assert replicas(cluster, "gateway-eu") == 4


def test_a_physical_node_selector_naming_no_node_drains_nothing(
    cluster: KubeEmulatorHandle, operator_at: Any
) -> None:
    """A typo in spec.physical.nodeSelector while the physical gateways run: no node matches,
    so the pool's capacity would read 0 and every gateway would move to cloud. Instead nothing
    is changed, and Ready=False names the field, as for a capacity that cannot be read."""
    add_region(cluster, "eu", replicas=4)
    cluster.create(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "gateway-eu-0",
                "namespace": NAMESPACE,
                "labels": {"app": "gateway-eu"},
            },
            "spec": {"nodeName": "eu-physical-0", "containers": [{"name": "gw", "image": "gw"}]},
            "status": {"phase": "Running"},
        }
    )
    body = gwa_body("eu")
    body["spec"]["physical"]["nodeSelector"] = {"tidal.dev/pool": "physcial"}
    cluster.create(body)
    operator = operator_at(5_000.0)
    outcome = operator.run_once()[KEY]
    assert (outcome.ok, outcome.reason) == (False, "PhysicalCapacityUnknown")
    assert outcome.message.startswith(
        "spec.physical.nodeSelector: no node has the labels tidal.dev/pool=physcial, yet the "
        "physical gateway runs on eu-physical-0"
    )
    assert replicas(cluster, "gateway-eu") == 4
    assert [e["type"] for e in events(cluster) if e["reason"] == "PhysicalCapacityUnknown"] == [
        "Warning"
    ]


class Unforecastable:
    """A fitted model whose forecasts fail with ``error``; the rest is the model's."""

    def __init__(self, model: Any, error: Exception) -> None:
        self.model, self.error = model, error

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    def forecast(self, history: LoadSeries, *, horizon: float) -> Any:
        raise self.error


@pytest.mark.parametrize(
    "error",
    [ForecastError("history ends before the fit"), ValueError("history ends before the fit")],
    ids=["forecast-error", "value-error"],
)
def test_a_failed_forecast_is_named_and_the_load_still_served(
    cluster: KubeEmulatorHandle, operator_at: Any, error: Exception
) -> None:
    """A fitted model that cannot forecast: ForecastReady=False, reason ForecastError, the
    message saying the forecast failed; the pass still serves the load (Ready=True)."""
    operator = an_eu_region(cluster, operator_at)
    clock = [1_700_000_000.0]
    operator.reconciler.clock = lambda: clock[0]
    operator.run_once()
    (uid,) = operator.models._states
    operator.models.wait(uid, timeout=30)
    clock[0] += 60
    operator.run_once()
    state = operator.models._states[uid]
    assert state.fitted is not None
    state.fitted = Unforecastable(state.fitted, error)  # type: ignore[assignment]
    clock[0] += 60
    assert operator.run_once()[KEY].reason == "Reconciled"
    assert stated(cluster, "ForecastReady") == (
        "False",
        "ForecastError",
        "forecast failed: history ends before the fit",
    )
    assert status_of(cluster, "gateway-eu")["physical"]["replicas"] == 16


class Overflowing(Unforecastable):
    """A fitted model whose forecasts hold an infinite point (a load near a float's largest)."""

    def forecast(self, history: LoadSeries, *, horizon: float) -> Any:
        made = self.model.forecast(history, horizon=horizon)
        point = made.point.copy()
        point[-1] = np.inf
        return Forecast(made.model, made.origin, made.step, point, made.calibration)


def test_a_forecast_that_is_not_finite_is_a_forecast_error_not_a_nan_in_the_status(
    cluster: KubeEmulatorHandle, operator_at: Any
) -> None:
    """A forecast whose path or band overflowed plans nothing and writes no NaN (which an API
    server refuses as JSON): ForecastReady=False, ForecastError; the load is still served."""
    operator = an_eu_region(cluster, operator_at)
    clock = [1_700_000_000.0]
    operator.reconciler.clock = lambda: clock[0]
    operator.run_once()
    (uid,) = operator.models._states
    operator.models.wait(uid, timeout=30)
    clock[0] += 60
    operator.run_once()
    state = operator.models._states[uid]
    assert state.fitted is not None
    state.fitted = Overflowing(state.fitted, ValueError())  # type: ignore[assignment]
    clock[0] += 60
    assert operator.run_once()[KEY].reason == "Reconciled"
    reason = stated(cluster, "ForecastReady")
    assert reason[:2] == ("False", "ForecastError") and "not a finite number" in reason[2]
    status = status_of(cluster, "gateway-eu")
    assert "nan" not in json.dumps(status).lower() and "infinity" not in json.dumps(status).lower()
    assert status["physical"]["replicas"] == 16


class Recording(FlatLoad):
    """A flat load that notes the window of each read made by the pass (not by a fit)."""

    def __init__(self, load: float) -> None:
        super().__init__(load)
        self.windows: list[tuple[float, float]] = []

    def read_history(self, query: str, *, start: float, end: float, step: float) -> LoadSeries:
        if threading.current_thread() is threading.main_thread():
            self.windows.append((start, end))
        return super().read_history(query, start=start, end=end, step=step)


@pytest.mark.parametrize(
    ("step", "recent"), [(60.0, 30 * 60.0), (10.0, 600.0)], ids=["30-steps", "10-minutes"]
)
def test_a_pass_reads_since_the_fit_ended_within_the_history(step: float, recent: float) -> None:
    """A pass reads the last 30 steps (at least 10 minutes) and, once a model is fitted, from
    one of the model's steps before the fit's end, to advance it; never further back than
    load.history."""
    with running_emulator() as cluster:
        add_region(cluster, "eu", replicas=4)
        body = gwa_body("eu")
        body["spec"]["load"]["step"] = f"{step:.0f}s"
        cluster.create(body)
        settings = OperatorSettings(
            leader_election=False, metrics_port=0, metrics_address="127.0.0.1"
        )
        source = Recording(5_000.0)
        operator = Operator(settings, api_client=cluster.api_client(), source=source)
        try:
            t0 = 1_700_000_000.0
            clock = [t0]
            operator.reconciler.clock = lambda: clock[0]
            operator.run_once()
            assert source.windows == [(t0 - recent, t0)]
            (uid,) = operator.models._states
            operator.models.wait(uid, timeout=30)
            for later in (2 * 3600.0, 4 * 86400.0):
                clock[0] = t0 + later
                source.windows.clear()
                operator.run_once()
                fitted = operator.models._states[uid].fitted
                assert fitted is not None
                since = max(fitted.fitted_until - fitted.step, t0 + later - 3 * 86400.0)
                assert source.windows == [(since, t0 + later)]
            assert since == t0 + 86400.0
        finally:
            operator.models.shutdown()


def gauge(operator: Operator, name: str, *labels: str) -> float:
    value: float = getattr(operator.metrics, name).labels("gateway-eu", NAMESPACE, "eu", *labels)
    return value._value.get()  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("load", "physical", "cloud", "bursting"),
    [(5_000.0, 16, 0, False), (20_000.0, 16, 6, True)],
    ids=["physical-holds-it", "bursting"],
)
def test_a_served_pass_reports_its_plan_in_status_and_gauges(
    cluster: KubeEmulatorHandle,
    operator_at: Any,
    load: float,
    physical: int,
    cloud: int,
    bursting: bool,
) -> None:
    """The status carries the plan's numbers (desiredReplicas their sum, the pools' replicas,
    capacity and reservation), Bursting says whether cloud is used, CapacityLimited that the
    plan fits; the gauges say the same, and what the Deployments ask for."""
    operator = an_eu_region(cluster, operator_at, load=load)
    assert operator.run_once()[KEY].reason == "Reconciled"
    status = status_of(cluster, "gateway-eu")
    reserved = status["cloud"]["reserved"]
    assert status["load"] == load
    assert status["desiredReplicas"] == physical + cloud
    assert status["physical"] == {"replicas": physical, "capacity": 16}
    assert status["cloud"]["replicas"] == cloud and reserved >= cloud
    stored = cluster.get(GWAS, "gateway-eu", namespace=NAMESPACE)
    assert status["observedGeneration"] == stored["metadata"]["generation"]
    assert stated(cluster, "Ready") == (
        "True",
        "Reconciled",
        f"physical {physical}/16, cloud {cloud}, reserved {reserved}",
    )
    burst = condition(cluster, "gateway-eu", "Bursting")
    assert burst is not None and burst["status"] == ("True" if bursting else "False")
    if not bursting:
        assert (burst["reason"], burst["message"]) == (
            "PhysicalSufficient",
            "physical capacity 16 holds the plan",
        )
    assert stated(cluster, "CapacityLimited") == (
        "False",
        "WithinCapacity",
        "the plan fits the pools",
    )
    assert gauge(operator, "load") == load
    assert gauge(operator, "planned", "physical") == physical
    assert gauge(operator, "planned", "cloud") == cloud
    assert gauge(operator, "actual", "physical") == physical
    assert gauge(operator, "actual", "cloud") == cloud
    assert gauge(operator, "reserved") == reserved
    assert gauge(operator, "physical_capacity") == 16
    timed = operator.metrics.reconcile_seconds.labels("gateway-eu", NAMESPACE)
    samples = {x.name.rsplit("_", 1)[-1]: x.value for x in timed.collect()[0].samples}
    assert samples["count"] == 1.0 and 0.0 < samples["sum"] < 60.0  # a pass, in seconds


@pytest.mark.parametrize(
    ("step", "horizon", "reach", "stale"),
    [
        # the horizon beyond a node's boot and hold (60s loop + 60s pod + 5m lead + 10m hold)
        pytest.param("1m", "2h", 7200.0 + 60.0, 300.0, id="horizon-reaches-further"),
        pytest.param("1m", "10m", 1020.0 + 60.0, 300.0, id="a-node-reaches-further"),
        pytest.param("5m", "2h", 7200.0 + 300.0, 600.0, id="stale-after-two-steps"),
    ],
)
def test_what_the_planner_is_given(step: str, horizon: str, reach: float, stale: float) -> None:
    """A pass forecasts as far as the planner reads plus one load step, and calls a load stale
    after two steps, never under 5 minutes; loop, pod-ready and node-hold times are the
    operator's settings."""
    body = gwa_body("eu")["spec"]
    spec = GatewayAutoscalerSpec.model_validate(
        dict(
            body,
            load=dict(body["load"], step=step),
            forecast=dict(body["forecast"], horizon=horizon),
        )
    )
    settings = OperatorSettings(leader_election=False, metrics_port=0)
    assert (settings.loop_interval, settings.node_hold) == (60.0, 600.0)
    reconciler = Reconciler(
        kube=None,  # type: ignore[arg-type]
        source=FlatLoad(1.0),
        models=None,  # type: ignore[arg-type]
        metrics=None,  # type: ignore[arg-type]
        settings=settings,
    )
    assert reconciler._horizon(spec) == reach
    planner = reconciler._planner_settings(spec)
    assert (planner.loop_interval, planner.pod_ready, planner.node_hold) == (60.0, 60.0, 600.0)
    assert planner.stale_after == stale


def test_the_reservation_stays_until_the_first_forecast(
    cluster: KubeEmulatorHandle, operator_at: Any
) -> None:
    """Three placeholder pods of the object's own and no model yet (a restart): they stay while
    the first fit runs; the first forecast (a flat load that physical holds) gives them back."""
    add_region(cluster, "eu", replicas=16)
    gwa = cluster.create(gwa_body("eu"))
    cloud = cluster.get(DEPLOYMENTS, "gateway-eu-cloud", namespace=NAMESPACE)
    cluster.create(placeholder_deployment(gwa, cloud, 3))
    operator = operator_at(5_000.0)
    clock = [1_700_000_000.0]
    operator.reconciler.clock = lambda: clock[0]
    assert operator.run_once()[KEY].reason == "Reconciled"
    assert placeholder_pods(cluster) == 3
    assert status_of(cluster, "gateway-eu")["cloud"] == {"replicas": 0, "reserved": 3}
    (uid,) = operator.models._states
    operator.models.wait(uid, timeout=30)
    clock[0] += 60
    assert operator.run_once()[KEY].reason == "Reconciled"
    assert placeholder_pods(cluster) == 0
    assert status_of(cluster, "gateway-eu")["cloud"] == {"replicas": 0, "reserved": 0}


def test_pausing_keeps_ready_since_it_became_true(
    cluster: KubeEmulatorHandle, operator_at: Any
) -> None:
    """Ready stays True from Scale to Paused: a paused pass merges its conditions into the stored
    ones, so Ready's lastTransitionTime is still the pass that made it True."""
    add_region(cluster, "eu", replicas=16)
    cluster.create(gwa_body("eu"))
    operator = operator_at(5_000.0)
    clock = [1_700_000_000.0]
    operator.reconciler.clock = lambda: clock[0]
    assert operator.run_once()[KEY].reason == "Reconciled"
    cluster.patch(GWAS, "gateway-eu", {"spec": {"mode": "Paused"}}, namespace=NAMESPACE)
    clock[0] += 60
    assert operator.run_once()[KEY].reason == "Paused"
    ready = condition(cluster, "gateway-eu", "Ready")
    assert ready is not None and (ready["status"], ready["reason"]) == ("True", "Paused")
    assert ready["message"] == (
        "Paused: no metric is read, no model fitted and nothing changed until spec.mode is "
        "changed; running physical 16, cloud 0"
    )
    assert ready["lastTransitionTime"] == rfc3339(1_700_000_000.0)
    # Nothing was scaled, and nothing read while paused: no scale time, no load series.
    assert "lastScaleTime" not in status_of(cluster, "gateway-eu")
    assert 'tidal_load{gwa="gateway-eu"' not in operator.metrics.exposition().decode()


@pytest.mark.parametrize(
    ("deployment", "expected"),
    [
        pytest.param({"spec": {"replicas": 3}}, 3, id="as-written"),
        pytest.param({"spec": {}}, 1, id="unset-is-the-apis-default-of-one"),
        pytest.param({"spec": {"replicas": 0}}, 0, id="zero"),
    ],
)
def test_replicas_a_deployment_asks_for(deployment: dict[str, Any], expected: int) -> None:
    """spec.replicas, or 1 where it is unset (the API's default)."""
    assert _replicas(deployment) == expected


def test_the_forecast_peak_gauge_is_the_highest_point_within_the_horizon(
    operator_at: Any,
) -> None:
    """tidal_forecast_peak is the point forecast's highest value from now to
    ``forecast.horizon`` ahead (30 minutes here): a peak of 70 twenty minutes on counts, a
    higher one of 99 an hour on does not."""
    operator = operator_at(0.0)
    spec = GatewayAutoscalerSpec.model_validate(gwa_body("eu")["spec"])
    now = 1_700_000_000.0
    point = np.full(24, 10.0)  # two hours at a 5-minute step
    point[3] = 70.0  # at now + 20 minutes
    point[11] = 99.0  # at now + 60 minutes
    errors = np.zeros((1, point.size))
    forecast = Forecast(
        "m", now, 300.0, point, Calibration.from_forecasts(errors, errors, scale_floor=1.0)
    )
    none = SimpleNamespace(replicas=0, reason=Reason.FORECAST)
    plan = SimpleNamespace(
        load=None,
        now=now,
        forecast_peak=None,
        forecast_problem=None,
        total=none,
        physical=none,
        cloud=none,
        reserve=none,
        physical_capacity=16,
        capacity_limited=None,
    )
    operator.reconciler._observe(
        "gateway-eu", NAMESPACE, spec, plan, forecast, actual=(0, 0), ready=(0, 0)
    )
    assert gauge(operator, "forecast_peak") == 70.0


def test_another_writer_scaling_the_deployments_is_warned_of_once(
    cluster: KubeEmulatorHandle, operator_at: Any
) -> None:
    """An HPA or a script scaling a Deployment Tidal scales: each pass sets the plan again, and
    the tug of war was silent. The pass after another writer's change warns once, naming the
    Deployment and what it found, and not again at each pass of the next 10 minutes."""
    add_region(cluster, "eu", replicas=16)
    cluster.create(gwa_body("eu"))
    operator = operator_at(18_000.0)
    operator.run_once()
    assert not [e for e in events(cluster) if e["reason"] == "ScaledByAnother"]
    asked = replicas(cluster, "gateway-eu-cloud")
    for _ in range(2):
        cluster.patch(
            DEPLOYMENTS, "gateway-eu-cloud", {"spec": {"replicas": 40}}, namespace=NAMESPACE
        )
        with capture_logs() as logs:
            assert operator.run_once()[KEY].ok
    warned = [e for e in events(cluster) if e["reason"] == "ScaledByAnother"]
    assert [(e["type"], e["message"].split(" since")[0]) for e in warned] == [
        ("Warning", f"another writer scaled cloud deployment gateway-eu-cloud from {asked} to 40")
    ]
    assert not [e for e in logs if e["event"] == "scaled_by_another"]  # the second pass: quiet


@pytest.mark.parametrize("pool", ["physical", "cloud"])
def test_a_spec_naming_another_deployment_is_no_other_writer(
    cluster: KubeEmulatorHandle, operator_at: Any, pool: str
) -> None:
    """The spec edited to name a new Deployment (of 0 replicas) of a pool: the pass that scales
    it finds other replicas than the last pass left in the old one, and that is no other
    writer. Another writer of the new Deployment is still warned of."""
    add_region(cluster, "eu", replicas=16)
    cluster.create(gwa_body("eu"))
    operator = operator_at(18_000.0)
    operator.run_once()
    old = "gateway-eu" if pool == "physical" else "gateway-eu-cloud"
    copy = cluster.get(DEPLOYMENTS, old, namespace=NAMESPACE)
    copy = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": f"{old}-v2",
            "namespace": NAMESPACE,
            "labels": copy["metadata"].get("labels", {}),
        },
        "spec": dict(copy["spec"], replicas=0),
    }
    cluster.create(copy)
    cluster.patch(
        GWAS, "gateway-eu", {"spec": {pool: {"deployment": f"{old}-v2"}}}, namespace=NAMESPACE
    )
    assert operator.run_once()[KEY].ok
    assert replicas(cluster, f"{old}-v2") > 0
    assert not [e for e in events(cluster) if e["reason"] == "ScaledByAnother"]
    cluster.patch(DEPLOYMENTS, f"{old}-v2", {"spec": {"replicas": 77}}, namespace=NAMESPACE)
    assert operator.run_once()[KEY].ok
    warned = [e["message"] for e in events(cluster) if e["reason"] == "ScaledByAnother"]
    assert len(warned) == 1 and f"deployment {old}-v2 from " in warned[0], warned


def test_a_hand_scale_while_paused_is_no_other_writer(
    cluster: KubeEmulatorHandle, operator_at: Any
) -> None:
    """Paused, then scaled by hand, then back to Scale within a minute: what a person did while
    Tidal stood aside is not another writer fighting it."""
    add_region(cluster, "eu", replicas=16)
    cluster.create(gwa_body("eu"))
    operator = operator_at(18_000.0)
    operator.run_once()
    for mode, scaled in (("Paused", True), ("Scale", False)):
        cluster.patch(GWAS, "gateway-eu", {"spec": {"mode": mode}}, namespace=NAMESPACE)
        if scaled:
            cluster.patch(
                DEPLOYMENTS, "gateway-eu-cloud", {"spec": {"replicas": 40}}, namespace=NAMESPACE
            )
        operator.run_once()
    assert not [e for e in events(cluster) if e["reason"] == "ScaledByAnother"]
