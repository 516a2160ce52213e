"""The audit records of monitoring (pure): every run is a `monitor-run`, every breach a `policy-action`.

Both are keyed by the job's submission id (which names the deployment's uid, monitor, version and window), so
a replayed pass adds nothing to the trail.
"""

from __future__ import annotations

from steward.api.model_deployment import ModelDeployment
from steward.api.monitor_results import MonitorResult
from steward.api.monitoring import MonitorSpec
from steward.api.monitoring_status import MonitorResultSummary
from steward.audit.records import AuditAction, ModelVersions, RecordDraft
from steward.operator.audit_drafts import deployment_ref


def run_draft(md: ModelDeployment, s: MonitorResultSummary, full: MonitorResult | None) -> RecordDraft:
    checks = [c.model_dump(mode="json") for c in (full.checks if full else s.breached)]
    return RecordDraft(
        deployment=deployment_ref(md),
        action=AuditAction.MONITOR_RUN,
        model=ModelVersions(name=md.spec.model.name, to_version=s.version),
        reason=f"monitor {s.monitor} on version {s.version}: {s.verdict.value}"
        + (f": {s.summary}" if s.summary else ""),
        evidence={
            "monitor": s.monitor,
            "kind": full.kind.value if full else None,
            "version": s.version,
            "window": {"start": s.window_start.isoformat(), "end": s.window_end.isoformat()},
            "rows": s.rows,
            "labelled_rows": s.labelled_rows,
            "verdict": s.verdict.value,
            "checks": checks,
            "report_uri": s.report_uri,
            "report_sha256": s.report_sha256,
            "reference_uri": full.reference_uri if full else None,
            "reference_sha256": s.reference_sha256,
            "submission_id": s.submission_id,
            "attempt": s.attempt,
        },
        cause=f"monitor-run:{s.submission_id}",
    )


def figures(s: MonitorResultSummary) -> str:
    parts = [
        f"{c.name} {c.value:.4g} (threshold {c.op} {c.threshold:.4g})"
        if c.value is not None and c.threshold is not None
        else c.name
        for c in s.breached
    ]
    return ", ".join(parts) or s.summary


def policy_draft(md: ModelDeployment, spec: MonitorSpec, s: MonitorResultSummary, action: str) -> RecordDraft:
    return RecordDraft(
        deployment=deployment_ref(md),
        action=AuditAction.POLICY_ACTION,
        model=ModelVersions(name=md.spec.model.name, from_version=s.version),
        reason=f"{action}: monitor {s.monitor} breached on version {s.version}: {figures(s)}"[:1000],
        evidence={
            "policy": spec.on_breach.value,
            "action": action,
            "monitor": s.monitor,
            "version": s.version,
            "breached": [c.model_dump(mode="json") for c in s.breached],
            "report_uri": s.report_uri,
            "report_sha256": s.report_sha256,
            "submission_id": s.submission_id,
            "rollback_window": md.spec.monitoring.rollback_window,
        },
        cause=f"policy-action:{s.submission_id}",
    )
