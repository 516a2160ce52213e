"""What the pure core asks the outside world to do; an executor carries the actions out in order."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from steward.audit.records import RecordDraft


class EventType(StrEnum):
    NORMAL = "Normal"
    WARNING = "Warning"


@dataclass(frozen=True)
class ApplyServeApplications:
    """Deploy these application configs and remove these applications, in one write."""

    ray_address: str
    app_configs: list[dict[str, Any]]
    remove: frozenset[str] = frozenset()


@dataclass(frozen=True)
class DeleteServeApplication:
    """Remove a ModelDeployment's router application and all of its version applications."""

    ray_address: str
    app_name: str


@dataclass(frozen=True)
class SubmitMonitorJob:
    """Run one monitor window as a Ray Job; the submission id makes a replay a no-op."""

    ray_address: str
    submission_id: str
    entrypoint: str
    deployment: str
    num_cpus: float


@dataclass(frozen=True)
class StopMonitorJob:
    ray_address: str
    submission_id: str


@dataclass(frozen=True)
class SubmitTrainingJob:
    """Run one retraining as a Ray Job; its submission id (from the trigger) makes a replay a no-op."""

    ray_address: str
    submission_id: str
    deployment: str
    entrypoint: str
    # The spec's runtime_env with the TrainingJob in it; the executor adds the replicas' credentials.
    runtime_env: dict[str, Any]
    num_cpus: float
    num_gpus: float
    memory_bytes: int | None = None
    # The batch/v1 Job to create instead of a Ray Job (spec.retraining.kubernetesJob); its name is the
    # submission's, so creating it again is a no-op.
    kubernetes_job: dict[str, Any] | None = None


@dataclass(frozen=True)
class StopTrainingJob:
    ray_address: str
    submission_id: str
    # (namespace, name) of the Kubernetes Job to delete instead of a Ray Job to stop.
    kubernetes_job: tuple[str, str] | None = None


@dataclass(frozen=True)
class SetModelAlias:
    """Point a registry alias at a version (idempotent: setting it again changes nothing)."""

    model: str
    alias: str
    version: str


@dataclass(frozen=True)
class DeleteModelAlias:
    """Remove a registry alias if it still names `if_version` (someone may have moved it since)."""

    model: str
    alias: str
    if_version: str


@dataclass(frozen=True)
class PostEvent:
    type: EventType
    reason: str
    message: str


@dataclass(frozen=True)
class RecordAudit:
    """Append to the audit trail; runs before the actions after it and before status is written."""

    draft: RecordDraft


Action = (
    RecordAudit
    | ApplyServeApplications
    | DeleteServeApplication
    | SubmitMonitorJob
    | StopMonitorJob
    | SubmitTrainingJob
    | StopTrainingJob
    | SetModelAlias
    | DeleteModelAlias
    | PostEvent
)
