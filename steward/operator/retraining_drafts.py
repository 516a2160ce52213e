"""The audit records of retraining (pure): requested, approved, started, finished, candidate-evaluated.

Each is keyed by what it is about: the request by its trigger (a monitor's job id or a command id), the
others by the run's submission id, which is derived from that trigger; a replayed pass adds nothing.
"""

from __future__ import annotations

from steward.api.model_deployment import ModelDeployment
from steward.api.monitor_results import Check
from steward.api.monitoring_status import MonitorResultSummary
from steward.api.retraining import (
    OfflineEvaluation,
    RetrainingRun,
    RetrainingRunRecord,
    RetrainingSpec,
    RetrainingTrigger,
    TriggerKind,
)
from steward.api.training_job import TrainingJob, TrainingResult
from steward.audit.records import OPERATOR_ACTOR, AuditAction, ModelVersions, RecordDraft
from steward.operator.audit_drafts import deployment_ref


def _trigger(trigger: RetrainingTrigger) -> dict[str, object]:
    return trigger.model_dump(mode="json", exclude_none=True)


def requested_draft(
    md: ModelDeployment,
    spec: RetrainingSpec,
    trigger: RetrainingTrigger,
    breach: MonitorResultSummary | None,
    refusal: str | None,
) -> RecordDraft:
    """The request, accepted or refused by a guardrail (then with why): every breach asking for a run is
    accounted for."""
    serving = md.status.stable.version if md.status.stable else None
    reason = trigger.reason if refusal is None else f"{trigger.reason}; refused: {refusal}"
    return RecordDraft(
        deployment=deployment_ref(md),
        actor=trigger.actor if trigger.kind == TriggerKind.MANUAL and trigger.actor else OPERATOR_ACTOR,
        action=AuditAction.RETRAINING_REQUESTED,
        model=ModelVersions(name=md.spec.model.name, from_version=serving),
        reason=reason[:1000],
        evidence={
            "trigger": _trigger(trigger),
            "accepted": refusal is None,
            "refused_because": refusal,
            "policy": {
                "on_breach": "retrain" if breach is not None else None,
                "approval": spec.approval.value,
                "cooldown": spec.cooldown,
                "max_runs_per_day": spec.max_runs_per_day,
            },
            "breached": [c.model_dump(mode="json") for c in breach.breached] if breach else [],
            "report_uri": breach.report_uri if breach else None,
            "report_sha256": breach.report_sha256 if breach else None,
        },
        cause=trigger.cause,
    )


def approved_draft(md: ModelDeployment, run: RetrainingRun) -> RecordDraft:
    return RecordDraft(
        deployment=deployment_ref(md),
        actor=run.approved_by or OPERATOR_ACTOR,
        action=AuditAction.RETRAINING_APPROVED,
        model=ModelVersions(name=md.spec.model.name, from_version=run.parent_version),
        reason=f"run {run.submission_id} approved: {run.approval_reason}"[:1000],
        evidence={
            "submission_id": run.submission_id,
            "trigger": _trigger(run.trigger),
            "approved_by": run.approved_by,
        },
        cause=f"retraining-approved:{run.submission_id}",
    )


def started_draft(
    md: ModelDeployment, run: RetrainingRun, spec: RetrainingSpec, job: TrainingJob
) -> RecordDraft:
    return RecordDraft(
        deployment=deployment_ref(md),
        action=AuditAction.RETRAINING_STARTED,
        model=ModelVersions(name=md.spec.model.name, from_version=run.parent_version),
        reason=f"training job {run.submission_id} submitted to Ray",
        evidence={
            "submission_id": run.submission_id,
            "entrypoint": spec.entrypoint,
            "resources": {
                "num_cpus": spec.entrypoint_num_cpus,
                "num_gpus": spec.entrypoint_num_gpus,
                "memory": spec.entrypoint_memory,
            },
            "trigger": _trigger(run.trigger),
            "data": {
                "capture_uris": job.capture_uris,
                "outcomes_uri": job.outcomes_uri,
                "window_start": job.window_start.isoformat(),
                "window_end": job.window_end.isoformat(),
            },
            "result_uri": run.result_uri,
        },
        cause=f"retraining-started:{run.submission_id}",
    )


def finished_draft(
    md: ModelDeployment, record: RetrainingRunRecord, result: TrainingResult | None
) -> RecordDraft:
    return RecordDraft(
        deployment=deployment_ref(md),
        action=AuditAction.RETRAINING_FINISHED,
        model=ModelVersions(
            name=md.spec.model.name, from_version=record.parent_version, to_version=record.candidate_version
        ),
        reason=f"run {record.submission_id}: {record.outcome.value}: {record.message}"[:1000],
        evidence={
            "submission_id": record.submission_id,
            "outcome": record.outcome.value,
            "candidate_version": record.candidate_version,
            "candidate_run_id": result.candidate_run_id if result else None,
            "lineage": dict(result.lineage) if result else {},
            "data_uris": list(result.data_uris) if result else [],
            "rows": result.rows if result else None,
            "labelled_rows": result.labelled_rows if result else None,
            "log_tail": record.log_tail,
            "trigger": _trigger(record.trigger),
        },
        cause=f"retraining-finished:{record.submission_id}",
    )


def evaluated_draft(
    md: ModelDeployment,
    record: RetrainingRunRecord,
    result: TrainingResult,
    margins: OfflineEvaluation,
    checks: list[Check],
    decision: str,
) -> RecordDraft:
    return RecordDraft(
        deployment=deployment_ref(md),
        action=AuditAction.CANDIDATE_EVALUATED,
        model=ModelVersions(
            name=md.spec.model.name, from_version=record.parent_version, to_version=record.candidate_version
        ),
        reason=decision[:1000],
        evidence={
            "submission_id": record.submission_id,
            "passed": all(c.passed for c in checks),
            "checks": [c.model_dump(mode="json") for c in checks],
            "margins": margins.model_dump(mode="json", by_alias=True),
            "candidate": result.candidate.model_dump(mode="json"),
            "serving": result.serving.model_dump(mode="json"),
            "holdout_rows": result.holdout_rows,
            "training_rows": result.training_rows,
            "pinned_version": md.spec.model.version,
            "trigger_cause": record.trigger.cause,
        },
        cause=f"candidate-evaluated:{record.submission_id}",
    )
