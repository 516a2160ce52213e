"""Retraining: `spec.retraining` (the training job and its guardrails), `status.retraining`, the command
annotation; the two JSON documents a training job exchanges with the operator are in steward.api.training_job.

One contract for three parties that never import each other: the operator decides when a run is due and
submits it as a Ray Job (or, with `kubernetesJob`, a Kubernetes Job) with a `TrainingJob` in its
environment; the job (any entrypoint; the example is `steward.retraining.example_train`) trains, registers a
candidate version in MLflow and writes a `TrainingResult` to the monitoring store; the operator reads it and
judges the candidate against the margins of `spec.retraining.evaluation`.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from steward.api.kubernetes_job import KubernetesJob
from steward.api.rollout import DURATION, ROLLOUT_COMMAND_ANNOTATION
from steward.api.types import SpecFloat, SpecInt, SpecModel, SpecStr

# Who asks for a run or approves one: the CLI writes a RetrainingCommand here, the operator acts on it once.
RETRAINING_COMMAND_ANNOTATION = "steward.io/retraining-command"
# A person's commands, as annotations: each is a change the admission webhook stamps with its author and
# a pass acts on at once.
COMMAND_ANNOTATIONS = (ROLLOUT_COMMAND_ANNOTATION, RETRAINING_COMMAND_ANNOTATION)
# The environment variable that carries the TrainingJob (JSON) into the job.
TRAINING_JOB_ENV = "STEWARD_TRAINING_JOB"
# Kubernetes memory quantity. The same pattern as serving.resources.memory (model_deployment imports this
# module, so it cannot be imported from there; a unit test keeps the two equal).
MEMORY_PATTERN = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$"
# status.retraining.runs keeps this many finished runs; maxRunsPerDay cannot exceed it, or the daily budget
# could not be counted from status alone.
MAX_RUNS_IN_STATUS = 10
MAX_LOG_TAIL_CHARS = 2000
# An MLflow registry alias: letters, digits, '_' and '-' (MLflow refuses `v<number>` and `latest`).
ALIAS_PATTERN = r"^[A-Za-z_][A-Za-z0-9_-]{0,99}$"


class Approval(StrEnum):
    AUTOMATIC = "automatic"
    # The run waits for `steward retrain approve NAME --reason ...` (human oversight, recorded with who).
    MANUAL = "manual"


class QualityMetric(StrEnum):
    ACCURACY = "accuracy"
    PRECISION = "precision"
    RECALL = "recall"
    F1 = "f1"
    ROC_AUC = "roc_auc"


class RuntimeEnv(SpecModel):
    """The part of Ray's runtime_env a training job may set (a typed subset, so the CRD stays strict)."""

    env_vars: Annotated[dict[str, SpecStr], Field(description="Environment variables of the job.")] = {}
    pip: Annotated[
        list[Annotated[SpecStr, Field(min_length=1, max_length=500)]],
        Field(max_length=100, description="pip requirements installed for the job."),
    ] = []
    working_dir: Annotated[
        SpecStr | None,
        Field(min_length=1, max_length=2000, description="A URI Ray downloads as the job's working dir."),
    ] = None


class OfflineEvaluation(SpecModel):
    """How a candidate is judged before any traffic: on a holdout of the labelled production data, against
    the serving version on the same rows."""

    holdout_fraction: Annotated[
        SpecFloat,
        Field(gt=0, le=0.9, description="Share of labelled rows held out from training, e.g. 0.3."),
    ] = 0.3
    metric: Annotated[QualityMetric, Field(description="The quality figure compared.")] = (
        QualityMetric.ACCURACY
    )
    max_quality_drop: Annotated[
        SpecFloat,
        Field(
            ge=0, le=1, description="Largest drop of `metric` below the serving version's (0.01: a point)."
        ),
    ] = 0.0
    max_fairness_drop: Annotated[
        SpecFloat,
        Field(
            ge=0,
            le=1,
            description="Largest drop of the demographic parity ratio (per sensitive feature of "
            "spec.monitoring.capture) below the serving version's.",
        ),
    ] = 0.02
    favourable_outcome: Annotated[
        SpecStr,
        Field(min_length=1, max_length=100, description="The prediction that is good for the person."),
    ] = "0"
    min_labelled_rows: Annotated[
        SpecInt, Field(ge=10, le=100_000_000, description="Fewer labelled rows than this: no training.")
    ] = 200


class RetrainingSpec(SpecModel):
    """The training job (a Ray Job on the serving Ray cluster, or a Kubernetes Job) and its guardrails."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.kubernetesJob) || !has(self.runtimeEnv) || "
                    "((!has(self.runtimeEnv.pip) || size(self.runtimeEnv.pip) == 0) && "
                    "!has(self.runtimeEnv.workingDir))",
                    "message": "runtimeEnv.pip and runtimeEnv.workingDir are Ray's: with kubernetesJob the "
                    "image must hold the trainer's code and dependencies",
                }
            ]
        }
    )

    entrypoint: Annotated[
        SpecStr,
        Field(
            min_length=1,
            max_length=4000,
            description="Shell command of the job, e.g. python -m steward.retraining.example_train.",
        ),
    ]
    runtime_env: RuntimeEnv = RuntimeEnv()
    kubernetes_job: Annotated[
        KubernetesJob | None,
        Field(description="Run the training as a Kubernetes Job in this namespace instead of a Ray Job."),
    ] = None
    entrypoint_num_cpus: Annotated[SpecFloat, Field(ge=0, le=512)] = 1.0
    entrypoint_num_gpus: Annotated[SpecFloat, Field(ge=0, le=64)] = 0.0
    entrypoint_memory: Annotated[
        SpecStr | None, Field(pattern=MEMORY_PATTERN, description="Memory reserved for the job, e.g. 2Gi.")
    ] = None
    data_window: Annotated[
        SpecStr,
        Field(pattern=DURATION, description="Captured traffic (with its outcomes) the job trains on."),
    ] = "168h"
    cooldown: Annotated[
        SpecStr, Field(pattern=DURATION, description="No run starts within this long of the last start.")
    ] = "6h"
    max_runs_per_day: Annotated[
        SpecInt, Field(ge=1, le=MAX_RUNS_IN_STATUS, description="Runs started in any 24 hours, at most.")
    ] = 3
    timeout: Annotated[
        SpecStr, Field(pattern=DURATION, description="A job running longer is stopped and failed.")
    ] = "2h"
    approval: Annotated[Approval, Field(description="manual: a run waits for `steward retrain approve`.")] = (
        Approval.MANUAL
    )
    evaluation: OfflineEvaluation = OfflineEvaluation()
    challenger_alias: Annotated[
        SpecStr,
        Field(
            pattern=ALIAS_PATTERN,
            description="Registry alias Steward sets on a passing candidate while it is canaried (the "
            "followed alias of spec.model moves to it only when it is promoted).",
        ),
    ] = "challenger"

    @model_validator(mode="after")
    def _ray_only_fields(self) -> RetrainingSpec:
        if self.kubernetes_job is not None and (self.runtime_env.pip or self.runtime_env.working_dir):
            raise ValueError(
                "runtimeEnv.pip and runtimeEnv.workingDir are Ray's: with kubernetesJob the image must hold "
                "the trainer's code and dependencies"
            )
        return self


# --- the command annotation ---------------------------------------------------------------------------


class RetrainingCommandKind(StrEnum):
    RETRAIN = "retrain"
    APPROVE = "approve"


class _Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class RetrainingCommand(_Wire):
    """The value of the `steward.io/retraining-command` annotation; acted on once, by id."""

    id: Annotated[str, Field(min_length=1, max_length=100)]
    command: RetrainingCommandKind
    actor: str | None = None
    reason: Annotated[str | None, Field(max_length=1000)] = None


# --- status.retraining ------------------------------------------------------------------------------


class _Status(BaseModel):
    # Status written by a newer operator must still parse in an older CLI.
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)


class RetrainingState(StrEnum):
    IDLE = "Idle"
    # Requested; waiting for the audit trail to store the request (its hash goes to the job).
    REQUESTED = "Requested"
    AWAITING_APPROVAL = "AwaitingApproval"
    APPROVED = "Approved"
    RUNNING = "Running"


class TriggerKind(StrEnum):
    BREACH = "breach"
    MANUAL = "manual"


class RetrainingTrigger(_Status):
    """Why a run was asked for: a monitor's breach (which window) or a person (who and why)."""

    kind: TriggerKind
    # The audit cause of the `retraining-requested` record: unique in the trail, so the run's id.
    cause: str
    reason: str
    monitor: str | None = None
    version: str | None = None
    monitor_submission_id: str | None = None
    report_uri: str | None = None
    actor: str | None = None
    # The stored record: its sequence number and hash (known once the trail has taken it).
    record_seq: int | None = None
    record_hash: str | None = None


class RetrainingRun(_Status):
    """The run in progress."""

    submission_id: str
    trigger: RetrainingTrigger
    requested_at: datetime
    parent_version: str | None = None
    approved_by: str | None = None
    approval_reason: str | None = None
    submitted_at: datetime | None = None
    # Submissions made: a job Ray lost (its cluster restarted) is submitted again under the same id.
    attempts: int = 0
    # The Kubernetes Job's name when the run was submitted as one (None: a Ray Job). Kept here so that the
    # run is followed where it runs even if spec.retraining changes meanwhile.
    kubernetes_job: str | None = None
    result_uri: str
    message: str = ""


class RunOutcome(StrEnum):
    CANDIDATE_PASSED = "CandidatePassed"
    CANDIDATE_REJECTED = "CandidateRejected"
    FAILED = "Failed"
    TIMED_OUT = "TimedOut"


class CandidateOutcome(StrEnum):
    """What became of a passing candidate that Steward rolls out (a followed alias, not a pinned version)."""

    PROMOTED = "Promoted"
    ROLLED_BACK = "RolledBack"
    ABORTED = "Aborted"
    # A person moved the followed alias, or pinned a version, before the candidate was promoted.
    SUPERSEDED = "Superseded"
    # Never canaried: what it was compared with no longer serves, or a rollout of it failed before.
    DROPPED = "Dropped"
    # Promoted, then a `rollback` monitor returned traffic to the version before it.
    REVERTED = "Reverted"


class CandidateRolloutState(StrEnum):
    # Passed offline; its canary starts in a pass where no other rollout runs.
    PENDING = "Pending"
    # Its rollout (spec.rollout) runs; the challenger alias names it.
    CANARY = "Canary"


class CandidateRollout(_Status):
    """The passing candidate Steward is rolling out."""

    submission_id: str
    version: str
    run_id: str | None = None
    # The version it was compared with offline, serving when it passed; it replaces that one only.
    from_version: str
    # The followed alias (spec.model.alias), moved to the candidate only on promotion.
    alias: str
    challenger_alias: str
    state: CandidateRolloutState
    since: datetime
    message: str = ""


class RetrainingRunRecord(_Status):
    """A finished run."""

    submission_id: str
    trigger: RetrainingTrigger
    requested_at: datetime
    started_at: datetime | None = None
    finished_at: datetime
    outcome: RunOutcome
    parent_version: str | None = None
    candidate_version: str | None = None
    message: str = ""
    log_tail: Annotated[str | None, Field(description="The job's last output, when it failed.")] = None
    # For a passing candidate Steward rolls out: what became of it, and why.
    rollout: CandidateOutcome | None = None
    rollout_message: str | None = None


class RetrainingStatus(_Status):
    state: RetrainingState = RetrainingState.IDLE
    current: RetrainingRun | None = None
    candidate_rollout: Annotated[
        CandidateRollout | None,
        Field(description="A passing candidate waiting for, or in, its canary."),
    ] = None
    runs: Annotated[
        list[RetrainingRunRecord], Field(max_length=MAX_RUNS_IN_STATUS, description="Newest last.")
    ] = []
    # The id of the last command acted on (also one refused), so none is applied twice.
    handled_command: str | None = None
    message: str = ""

    @property
    def candidate(self) -> str | None:
        """The newest candidate that passed its offline evaluation."""
        return next(
            (r.candidate_version for r in reversed(self.runs) if r.outcome == RunOutcome.CANDIDATE_PASSED),
            None,
        )
