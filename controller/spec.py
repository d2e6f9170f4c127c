"""The ``GatewayAutoscaler`` custom resource (``tidal.dev/v1alpha1``) as pydantic models.

These models are the single source of the CRD schema (``tidal crd``) and the boundary where
user input is validated: inside the planner the types are trusted. Field names follow
DESIGN.md; Python attributes are snake_case and the wire names camelCase.
"""

from __future__ import annotations

import enum
from datetime import timedelta
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from controller.durations import Duration, format_duration
from forecasts.registry import model_names

__all__ = [
    "AUTO_MODEL",
    "MAX_HISTORY_POINTS",
    "MAX_NAME_LENGTH",
    "MAX_REPLICAS",
    "MAX_REPLICAS_PER_NODE",
    "MAX_STEP_TEXT",
    "MIN_PER_REPLICA",
    "MIN_STEP",
    "Behavior",
    "CloudSpec",
    "ForecastSpec",
    "GatewayAutoscaler",
    "GatewayAutoscalerSpec",
    "LimitBy",
    "LoadSpec",
    "Mode",
    "PhysicalSpec",
    "ReplicaBounds",
    "ScaleDownBehavior",
    "ScaleUpBehavior",
    "forecast_model_names",
    "format_validation_error",
    "name_problem",
]

GROUP = "tidal.dev"
VERSION = "v1alpha1"
KIND = "GatewayAutoscaler"
PLURAL = "gatewayautoscalers"
AUTO_MODEL = "auto"

#: The finest ``load.step``: Prometheus scrapes every 15s to 1m; a finer step only repeats samples.
MIN_STEP = timedelta(seconds=1)
#: At most this many samples in ``load.history / load.step``. The operator holds a history, and
#: a fit's copies of it, in memory: 500,000 float64 samples are 4 MB each, where ``step: 10ms,
#: history: 14d`` (121 million, about 1 GB) would take the operator's whole memory limit and stop
#: every other object with it. 14d at 5s is 241,920.
MAX_HISTORY_POINTS = 500_000
#: Models are fitted on means over at least this step: per-minute noise carries no signal for a
#: 30-minute horizon, and fitting 14 days at one minute costs ten times more (issue 2's figures).
#: A finer ``load.step`` must divide it, so that every mean is over whole samples.
MIN_FIT_STEP = timedelta(minutes=5)
#: Longest ``load.step`` text the CRD accepts: it bounds the cost of the step's CEL rule, which
#: the API server estimates from the longest string the field may hold.
MAX_STEP_TEXT = 32
#: Most replicas any count of the spec may say: a Deployment's ``spec.replicas`` is an int32, so
#: a plan above it is refused by the API server loop after loop (and a number beyond int64,
#: which pydantic reads, is no number the API server stores).
MAX_REPLICAS = 2**31 - 1
#: Most ``cloud.replicasPerNode``. A kubelet runs 110 pods by default and about 750 at most on
#: the largest cloud instances; the planner weighs a cloud node slot by slot (an array of
#: ``replicasPerNode`` floats a node), so ``10000000`` took 5 s and 1.2 GB a plan and
#: ``1000000000`` asked for 7.5 GB, stopping the operator and every other object with it.
MAX_REPLICAS_PER_NODE = 1000
#: Least ``load.perReplica``. The forecasts read any load under about 1e-9 as none (their error
#: scale has that floor), so in units where a replica serves less than this every cloud slot
#: looked likely to be needed: the plan reserved ``cloud.maxReplicas`` for a small load and,
#: with a large one, weighed slot after slot for seconds. No unit a gateway's load is counted
#: in (connections, requests a second, cores, even millions of connections) puts a replica
#: below a millionth.
MIN_PER_REPLICA = 1e-6
#: Longest ``metadata.name``: the name is the value of the placeholder pods' label
#: ``tidal.dev/placeholder-for``, and a label value holds at most 63 characters.
MAX_NAME_LENGTH = 63


def name_problem(name: str) -> str | None:
    """Why ``metadata.name`` cannot name a GatewayAutoscaler, or None."""
    if len(name) > MAX_NAME_LENGTH:
        return (
            f"metadata.name: {len(name)} characters, at most {MAX_NAME_LENGTH}: it is the "
            "value of the placeholder pods' label tidal.dev/placeholder-for"
        )
    return None


def forecast_model_names() -> list[str]:
    """The names ``spec.forecast.model`` accepts: the registry's keys (``auto`` is one of them)."""
    return model_names()


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )


class Mode(enum.StrEnum):
    """``Scale`` acts; ``ForecastOnly`` plans and reports only; ``Paused`` does nothing."""

    SCALE = "Scale"
    FORECAST_ONLY = "ForecastOnly"
    PAUSED = "Paused"


class LoadSpec(_Model):
    """Where the region's load comes from and how much of it one replica serves."""

    query: str = Field(min_length=1, description="PromQL returning one series: the region's load")
    per_replica: float = Field(gt=0, description="Load one ready replica serves at target")
    step: Duration = Field(
        default=timedelta(minutes=1),
        description="Resolution of the history, at least 1s",
        json_schema_extra={"maxLength": MAX_STEP_TEXT},
    )
    history: Duration = Field(
        default=timedelta(days=14),
        description=f"How much history to read: at most {MAX_HISTORY_POINTS:,} load.step samples",
    )

    @field_validator("per_replica")
    @classmethod
    def _a_replica_a_millionth_or_more(cls, value: float) -> float:
        # Not the schema's ``minimum``: a YAML tool writes 1e-06 as text and not as a number.
        if value < MIN_PER_REPLICA:
            raise ValueError(
                f"must be at least {MIN_PER_REPLICA:g} (got {value:g}): count the load in a "
                "unit in which a replica serves a millionth or more"
            )
        return value

    @field_validator("step", mode="before")
    @classmethod
    def _short_step_text(cls, value: object) -> object:
        if isinstance(value, str) and len(value) > MAX_STEP_TEXT:
            raise ValueError(f"at most {MAX_STEP_TEXT} characters")
        return value

    @model_validator(mode="after")
    def _positive_durations(self) -> LoadSpec:
        if self.step < MIN_STEP:
            raise ValueError(
                f"load.step must be at least {format_duration(MIN_STEP)}, "
                f"got {self.step.total_seconds():g}s"
            )
        ratio = MIN_FIT_STEP / self.step
        if self.step < MIN_FIT_STEP and abs(ratio - round(ratio)) > 1e-9:
            raise ValueError(
                f"load.step {format_duration(self.step)} must divide "
                f"{format_duration(MIN_FIT_STEP)} (the forecasts fit "
                f"{format_duration(MIN_FIT_STEP)} means of whole samples): 15s, 30s or 1m, "
                f"for example, or {format_duration(MIN_FIT_STEP)} or more"
            )
        if self.history < self.step * 2:
            raise ValueError("load.history must cover at least two load.step")
        points = self.history / self.step
        if points > MAX_HISTORY_POINTS:
            raise ValueError(
                f"load.history / load.step is {points:,.0f} samples, at most "
                f"{MAX_HISTORY_POINTS:,} (the operator holds them in memory): a longer step "
                f"or a shorter history"
            )
        return self


class ReplicaBounds(_Model):
    """Bounds on the region's total replicas (physical plus cloud)."""

    min: int = Field(default=1, ge=0, le=MAX_REPLICAS)
    max: int = Field(default=400, ge=1, le=MAX_REPLICAS)

    @model_validator(mode="after")
    def _ordered(self) -> ReplicaBounds:
        if self.min > self.max:
            raise ValueError(f"replicas.min ({self.min}) must not exceed replicas.max ({self.max})")
        return self


class PhysicalSpec(_Model):
    """The gateway on the owned, fixed-size pool, filled first."""

    deployment: str = Field(min_length=1, max_length=253)  # a Kubernetes object name
    node_selector: dict[str, str] = Field(default_factory=dict)
    max_replicas: int | None = Field(
        default=None,
        ge=0,
        le=MAX_REPLICAS,
        description="Cap; by default computed from the nodes' allocatable",
    )
    keep_warm: bool = Field(
        default=True,
        description=(
            "Keep the physical pool's replicas running when load falls: the machines are paid "
            "for, an idle gateway on them costs nothing, and removing it disconnects users"
        ),
    )


class CloudSpec(_Model):
    """The gateway on rented cloud nodes, which takes the overflow."""

    deployment: str = Field(min_length=1, max_length=253)  # a Kubernetes object name
    max_replicas: int = Field(default=200, ge=0, le=MAX_REPLICAS)
    node_lead_time: Duration = Field(
        default=timedelta(minutes=5), description="A new cloud node's time to become schedulable"
    )
    reserve: bool = Field(
        default=True, description="Request nodes ahead of time with low-priority placeholder pods"
    )
    replicas_per_node: int = Field(
        default=10,
        ge=1,
        le=MAX_REPLICAS_PER_NODE,
        description="Gateway replicas one cloud node holds (placeholder rounding), at most "
        f"{MAX_REPLICAS_PER_NODE}",
    )
    fill_nodes: bool = Field(
        default=True,
        description=(
            "Run a gateway replica in every slot of the cloud nodes the plan needs: a node is "
            "paid whole, and a replica already running on it serves a spike at once"
        ),
    )


class ForecastSpec(_Model):
    model: str = Field(
        default=AUTO_MODEL,
        description="Forecasting model: a name from the registry (the CRD lists them)",
    )
    horizon: Duration = Field(default=timedelta(minutes=30))
    quantile: float = Field(
        default=0.95,
        gt=0.5,
        lt=1.0,
        description="Upper quantile provisioned on capacity paid for anyway (the physical pool, "
        "cloud nodes held). It is also the price of insurance: a cloud node beyond the point "
        "forecast's is bought only when it is expected to serve at least 1 - quantile of the "
        "replica-minutes it is paid for.",
    )
    refit: Duration = Field(default=timedelta(minutes=15))

    @model_validator(mode="after")
    def _known_model(self) -> ForecastSpec:
        if self.model not in forecast_model_names():
            raise ValueError(
                f"forecast.model {self.model!r} is not one of {', '.join(forecast_model_names())}"
            )
        return self


class LimitBy(enum.StrEnum):
    """What ``scaleDown.maxReplicasPerMinute`` counts."""

    #: A removed replica counts for the share of a full replica's load it carries: the limit
    #: bounds the users disconnected per minute.
    LOAD = "Load"
    #: Every removed replica counts as one, busy or idle (the HPA's ``Pods`` policy).
    REPLICAS = "Replicas"


class ScaleDownBehavior(_Model):
    stabilization: Duration = Field(default=timedelta(minutes=10))
    max_replicas_per_minute: int = Field(
        default=10,
        ge=1,
        le=MAX_REPLICAS,
        description="Replicas removed per minute at most, counted as limitBy says",
    )
    limit_by: LimitBy = Field(
        default=LimitBy.LOAD,
        description=(
            "Load: a removed replica counts for the load it carries against a full replica "
            "(perReplica less headroom), so replicas left idle by a spike that has passed go "
            "sooner, and busy ones no faster than maxReplicasPerMinute. Replicas: every "
            "replica counts as one"
        ),
    )
    hold_starting: bool = Field(
        default=True,
        description=(
            "true (the HPA's behaviour): stabilisation also holds replicas that have not "
            "started. false: when the recommendation falls, replicas still starting are "
            "cancelled at once (they serve nobody and disconnect nobody), so the cloud nodes "
            "booted for a spike that has already passed go back sooner"
        ),
    )


class ScaleUpBehavior(_Model):
    max_replicas_per_minute: int = Field(
        default=100,
        ge=1,
        le=MAX_REPLICAS,
        description=(
            "Replicas added per minute at most. The cloud nodes for the replicas it holds back "
            "are asked for at once: a node takes its lead time to boot whenever it is asked for"
        ),
    )


class Behavior(_Model):
    scale_down: ScaleDownBehavior = Field(default_factory=ScaleDownBehavior)
    scale_up: ScaleUpBehavior = Field(default_factory=ScaleUpBehavior)


class GatewayAutoscalerSpec(_Model):
    """``spec`` of one region's GatewayAutoscaler."""

    region: str = Field(min_length=1)
    mode: Mode = Mode.SCALE
    load: LoadSpec
    replicas: ReplicaBounds = Field(default_factory=ReplicaBounds)
    headroom: float = Field(default=0.10, ge=0.0, le=4.0)
    physical: PhysicalSpec
    cloud: CloudSpec
    forecast: ForecastSpec = Field(default_factory=ForecastSpec)
    behavior: Behavior = Field(default_factory=Behavior)

    @model_validator(mode="after")
    def _two_deployments(self) -> GatewayAutoscalerSpec:
        # One Deployment sized as both pools is scaled to each pool's count in turn, every loop.
        if self.physical.deployment == self.cloud.deployment:
            raise ValueError(
                f"physical.deployment and cloud.deployment both name "
                f"{self.physical.deployment!r}: each pool needs a Deployment of its own"
            )
        return self

    @model_validator(mode="after")
    def _history_fits_the_model(self) -> GatewayAutoscalerSpec:
        # A history too short for forecast.model fails every fit, loop after loop, as "N usable
        # samples, M are needed", which reads as a region whose metrics are young. The need is
        # that of the forecaster the planner fits (a day or two and a lead, at the fit step),
        # with the driver's defaults: its forecasts reach forecast.horizon, or a cloud node's
        # boot (cloud.nodeLeadTime, a loop and a pod's start) and the least time the node is
        # then held, whichever is longer, from a fit up to forecast.refit old.
        from controller.planner import forecast_reach, forecaster_for  # planner imports spec

        fit_step = max(MIN_FIT_STEP, self.load.step)
        need = forecaster_for(self).least_points(fit_step.total_seconds())
        if self.load.history / fit_step < need:
            reach = timedelta(seconds=forecast_reach(self)) + self.forecast.refit
            raise ValueError(
                f"load.history {format_duration(self.load.history)} is too short for "
                f"forecast.model {self.forecast.model}: it fits on at least {need} samples at "
                f"its {format_duration(fit_step)} step, {format_duration(need * fit_step)} of "
                f"history, for forecasts {format_duration(max(reach, timedelta(hours=1)))} "
                f"ahead (an hour at least; forecast.horizon "
                f"{format_duration(self.forecast.horizon)}, or cloud.nodeLeadTime "
                f"{format_duration(self.cloud.node_lead_time)} and a node's least hold, from "
                f"a fit up to forecast.refit {format_duration(self.forecast.refit)} old)"
            )
        return self


class GatewayAutoscaler(_Model):
    """The whole object as read from the API; status is handled as plain data by the operator."""

    api_version: Literal["tidal.dev/v1alpha1"] = "tidal.dev/v1alpha1"
    kind: Literal["GatewayAutoscaler"] = "GatewayAutoscaler"
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: GatewayAutoscalerSpec
    status: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _label_safe_name(self) -> GatewayAutoscaler:
        problem = name_problem(str(self.metadata.get("name") or ""))
        if problem is not None:
            raise ValueError(problem)
        return self


def format_validation_error(exc: ValidationError, *, prefix: str = "spec") -> str:
    """``spec.load.perReplica: Input should be greater than 0``: camelCase paths, as written."""
    parts = []
    for error in exc.errors():
        path = prefix
        for item in error["loc"]:
            path += f"[{item}]" if isinstance(item, int) else f".{item}"
        message = str(error["msg"]).removeprefix("Value error, ")
        parts.append(f"{path}: {message}")
    return "; ".join(parts)
