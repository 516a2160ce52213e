"""The `ModelDeployment` resource: pydantic models that are the single source of the CRD.

Field names are snake_case in Python and camelCase on the wire (`by_alias`), as Kubernetes expects.
Cross-field rules live twice on purpose: as pydantic validators (the CLI and the local loop reject bad
manifests before anything runs) and as CEL `x-kubernetes-validations` (the API server rejects them on a
real cluster, before the operator ever sees them).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from steward.api.conditions import ConditionStatus, ConditionType, Phase, Reason
from steward.api.monitoring import BreachAction, MonitoringSpec
from steward.api.monitoring_status import MonitoringStatus
from steward.api.retraining import RetrainingSpec, RetrainingStatus
from steward.api.rollout import MAX_ROLLOUT_HISTORY, ActiveRollout, RolloutRecord, RolloutSpec
from steward.api.types import SpecFloat, SpecInt, SpecModel, SpecStr

GROUP = "steward.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "ModelDeployment"
PLURAL = "modeldeployments"
SINGULAR = "modeldeployment"
SHORT_NAMES = ["md"]
# Who changed the resource and why, for the audit trail: set by the steward CLI or anyone acting for someone.
ACTOR_ANNOTATION = "steward.io/actor"
CHANGE_REASON_ANNOTATION = "steward.io/change-reason"
# Who the Kubernetes API server authenticated for the last change of spec or rollout command: set by the
# operator's admission webhook (when enabled), which overwrites any value a client sends: it cannot be forged.
AUTHENTICATED_USER_ANNOTATION = "steward.io/authenticated-user"

# Kubernetes quantity, restricted to the suffixes that make sense for memory.
MEMORY_QUANTITY = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$"
_MEMORY_FACTORS = {
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


def memory_bytes(quantity: str) -> int:
    """`"512Mi"` -> 536870912. The pattern on the field guarantees the shape."""
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)([A-Za-z]*)", quantity)
    if match is None or match.group(2) not in _MEMORY_FACTORS:
        raise ValueError(f"not a memory quantity: {quantity!r} (use e.g. 512Mi or 2Gi)")
    return int(float(match.group(1)) * _MEMORY_FACTORS[match.group(2)])


def _cel(rule: str, message: str) -> dict[str, Any]:
    return {"x-kubernetes-validations": [{"rule": rule, "message": message}]}


class _Wire(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class ModelRef(SpecModel):
    """A model in the MLflow registry, pinned to a version or following an alias."""

    model_config = ConfigDict(
        json_schema_extra=_cel(
            "has(self.version) != has(self.alias)",
            "set exactly one of model.version or model.alias",
        )
    )

    name: Annotated[SpecStr, Field(min_length=1, max_length=256, description="Registered model name.")]
    version: Annotated[
        SpecStr | None,
        Field(pattern=r"^[1-9][0-9]*$", description='Registered model version, e.g. "3".'),
    ] = None
    alias: Annotated[
        SpecStr | None,
        Field(
            pattern=r"^[A-Za-z0-9_-]{1,255}$",
            description='Registry alias to follow, e.g. "champion".',
        ),
    ] = None

    @model_validator(mode="after")
    def _exactly_one_of_version_or_alias(self) -> ModelRef:
        if (self.version is None) == (self.alias is None):
            raise ValueError("set exactly one of model.version or model.alias")
        return self


class Replicas(SpecModel):
    model_config = ConfigDict(
        json_schema_extra=_cel("self.min <= self.max", "replicas.min must be <= replicas.max")
    )

    min: Annotated[SpecInt, Field(ge=0, le=1000, description="Fewest replicas (0 scales to zero).")] = 1
    max: Annotated[SpecInt, Field(ge=1, le=1000, description="Most replicas.")] = 1

    @model_validator(mode="after")
    def _min_not_above_max(self) -> Replicas:
        if self.min > self.max:
            raise ValueError(f"replicas.min ({self.min}) must be <= replicas.max ({self.max})")
        return self


class Resources(SpecModel):
    """Per replica. GPU may be fractional (0.5 packs two replicas on one GPU)."""

    cpu: Annotated[SpecFloat, Field(ge=0, le=512, description="CPUs per replica.")] = 1.0
    gpu: Annotated[SpecFloat, Field(ge=0, le=64, description="GPUs per replica, fractional allowed.")] = 0.0
    memory: Annotated[
        SpecStr | None,
        Field(pattern=MEMORY_QUANTITY, description="Memory per replica, e.g. 2Gi."),
    ] = None


class ServingSpec(SpecModel):
    ray_address: Annotated[
        SpecStr | None,
        Field(
            # Printable ASCII but "/" for the host: `\s` means other characters in Go, Rust and Python.
            pattern=r"^https?://[\x21-\x2e\x30-\x7e]+(:[0-9]+)?/?$",
            description="Ray dashboard URL, e.g. http://ray-head:8265. Default: the operator's.",
        ),
    ] = None
    route_prefix: Annotated[
        SpecStr | None,
        Field(
            pattern=r"^/[A-Za-z0-9/_.-]*$",
            max_length=200,
            description="HTTP route prefix. Default: /<namespace>/<name>.",
        ),
    ] = None
    replicas: Replicas = Replicas()
    target_ongoing_requests: Annotated[
        SpecFloat, Field(gt=0, le=10000, description="Autoscaling target of in-flight requests per replica.")
    ] = 2.0
    max_ongoing_requests: Annotated[
        SpecInt, Field(ge=1, le=10000, description="Requests one replica accepts at once.")
    ] = 5
    resources: Resources = Resources()


class ModelDeploymentSpec(SpecModel):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.rollout) || !has(self.rollout.analysis) || "
                    "!has(self.rollout.analysis.requireMonitors) || "
                    "self.rollout.analysis.requireMonitors.all(n, has(self.monitoring) && "
                    "has(self.monitoring.monitors) && self.monitoring.monitors.exists(m, m.name == n))",
                    "message": "rollout.analysis.requireMonitors names a monitor that "
                    "spec.monitoring.monitors does not define",
                },
                {
                    "rule": "has(self.retraining) || !has(self.monitoring) || !has(self.monitoring.monitors) "
                    "|| !self.monitoring.monitors.exists(m, has(m.onBreach) && m.onBreach == 'retrain')",
                    "message": "a monitor with onBreach: retrain needs spec.retraining",
                },
                {
                    "rule": "!has(self.retraining) || !has(self.model.alias) || "
                    "self.model.alias != (has(self.retraining.challengerAlias) ? "
                    "self.retraining.challengerAlias : 'challenger')",
                    "message": "retraining.challengerAlias must differ from model.alias, the alias a "
                    "candidate earns on promotion",
                },
            ]
        }
    )

    model: ModelRef
    serving: ServingSpec = ServingSpec()
    rollout: RolloutSpec = RolloutSpec()
    monitoring: MonitoringSpec = MonitoringSpec()
    retraining: Annotated[
        RetrainingSpec | None,
        Field(description="Retraining as a Ray Job: by `steward retrain`, or a monitor's onBreach: retrain."),
    ] = None

    @model_validator(mode="after")
    def _retraining_defined(self) -> ModelDeploymentSpec:
        retrain = [m.name for m in self.monitoring.monitors if m.on_breach == BreachAction.RETRAIN]
        if retrain and self.retraining is None:
            raise ValueError(f"monitors {retrain} have onBreach: retrain, which needs spec.retraining")
        return self

    @model_validator(mode="after")
    def _challenger_is_not_the_followed_alias(self) -> ModelDeploymentSpec:
        # Steward would set the followed alias on an unproven candidate: traffic would follow it at once.
        if self.retraining is not None and self.model.alias == self.retraining.challenger_alias:
            raise ValueError(
                f"retraining.challengerAlias {self.retraining.challenger_alias!r} is model.alias, the alias "
                "a candidate earns only on promotion: name another (default: challenger)"
            )
        return self

    @model_validator(mode="after")
    def _required_monitors_exist(self) -> ModelDeploymentSpec:
        defined = {m.name for m in self.monitoring.monitors}
        missing = [n for n in self.rollout.analysis.require_monitors if n not in defined]
        if missing:
            raise ValueError(
                f"rollout.analysis.requireMonitors names {missing}, which spec.monitoring.monitors does not "
                f"define (defined: {sorted(defined) or 'none'})"
            )
        return self


class Condition(_Wire):
    model_config = ConfigDict(extra="ignore")

    type: ConditionType
    status: ConditionStatus
    reason: Reason
    message: str = ""
    last_transition_time: datetime
    observed_generation: int | None = None


class StableVersion(_Wire):
    model_config = ConfigDict(extra="ignore")

    version: str
    model_uri: Annotated[str, Field(description="e.g. models:/credit-risk/3")]
    source: Annotated[str | None, Field(description="Where the registry stores the artifacts.")] = None
    run_id: str | None = None


class AliasTarget(_Wire):
    """What the spec's registry alias named when the operator last looked, and how often it moved."""

    # Each move's audit record is keyed by the count, so a move back to an earlier version is recorded
    # again, and a replayed pass is not.

    model_config = ConfigDict(extra="ignore")

    alias: str
    version: str
    moves: Annotated[int, Field(ge=0)] = 0


class ServeApplicationStatus(_Wire):
    model_config = ConfigDict(extra="ignore")

    name: str
    status: Annotated[str, Field(description="Ray Serve's application status, e.g. RUNNING.")]
    message: str = ""


# Bounded so that status stays well under etcd's object size; the operator makes no change that would
# push the buffer past it (steward.operator.audit_guard).
MAX_BUFFERED_AUDIT_RECORDS = 100


class AuditTrailStatus(_Wire):
    model_config = ConfigDict(extra="ignore")

    recorded_seq: Annotated[int, Field(description="Sequence number of the last record written.")] = 0
    pending: Annotated[int, Field(description="Records buffered because the audit store refused them.")] = 0
    message: str = ""
    buffered: Annotated[
        list[str],
        Field(
            max_length=MAX_BUFFERED_AUDIT_RECORDS,
            description="The buffered records as JSON, so that a restarted operator still writes them.",
        ),
    ] = []


class ModelDeploymentStatus(_Wire):
    model_config = ConfigDict(extra="ignore")

    phase: Phase = Phase.PENDING
    observed_generation: int | None = None
    conditions: Annotated[
        list[Condition],
        Field(
            json_schema_extra={
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["type"],
            }
        ),
    ] = []
    stable: StableVersion | None = None
    alias_target: AliasTarget | None = None
    endpoint: str | None = None
    serve_application: ServeApplicationStatus | None = None
    ready_replicas: int = 0
    audit: AuditTrailStatus | None = None
    rollout: Annotated[
        ActiveRollout | None,
        Field(description="The rollout in progress: new version, step, weight, analysis."),
    ] = None
    rollout_history: Annotated[
        list[RolloutRecord],
        Field(
            max_length=MAX_ROLLOUT_HISTORY, description="Past rollouts, newest last, with outcome and reason."
        ),
    ] = []
    monitoring: MonitoringStatus | None = None
    retraining: RetrainingStatus | None = None


class ObjectMeta(BaseModel):
    """The slice of Kubernetes metadata Steward reads."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    # Both DNS labels, as Kubernetes has them: no dot in either, which keeps Serve application names
    # (`<namespace>.<name>`) one per ModelDeployment.
    name: Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)]
    namespace: Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)] = "default"
    uid: str | None = None
    generation: int | None = None
    annotations: dict[str, str] = {}
    labels: dict[str, str] = {}


class ModelDeployment(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    api_version: Annotated[Literal["steward.io/v1alpha1"], Field(alias="apiVersion")]
    kind: Literal["ModelDeployment"]
    metadata: ObjectMeta
    spec: ModelDeploymentSpec
    status: ModelDeploymentStatus = ModelDeploymentStatus()
    # Never read from the wire: parse_resource sets them when the stored status could not be read whole.
    # Why stable or rollout, the parts decide() acts on, could not be read; None when they could.
    status_unreadable: Annotated[str | None, Field(exclude=True)] = None
    # Other parts of status that were dropped (they are rebuilt), e.g. "conditions.2.reason: ...".
    status_dropped: Annotated[tuple[str, ...], Field(exclude=True)] = ()

    @property
    def key(self) -> str:
        return f"{self.metadata.namespace}/{self.metadata.name}"
