"""Returning traffic to the version before a promoted one (pure), when a `rollback` monitor breaches on the
new stable version within `spec.monitoring.rollbackWindow` of its promotion.

It runs as a rollout with no steps towards the earlier version: that version's application starts at 0% (the
promoted one keeps serving while it warms), then takes all traffic, and the promoted version goes after the
drain. It ends as a rollback of the promoted version, so the history and the trail read like a failed canary,
and the version is not started again by itself until the spec or the alias changes.
"""

from __future__ import annotations

from datetime import datetime

from steward.api.model_deployment import ModelDeployment, StableVersion
from steward.api.rollout import ActiveRollout, Outcome, RolloutRecord, RolloutState, RolloutTarget, Strategy
from steward.audit.records import OPERATOR_ACTOR, AuditAction, ModelVersions, RecordDraft
from steward.operator.actions import EventType, PostEvent
from steward.operator.audit_drafts import deployment_ref
from steward.operator.monitoring import RollbackPromotion


def start_revert(
    md: ModelDeployment, stable: StableVersion, revert: RollbackPromotion, now: datetime
) -> ActiveRollout:
    earlier = revert.to_version
    return ActiveRollout(
        strategy=Strategy.IMMEDIATE,
        # The registry keeps every version: the earlier one is addressed by number, whatever the alias says.
        canary=RolloutTarget(version=earlier, model_uri=f"models:/{md.spec.model.name}/{earlier}"),
        from_version=stable.version,
        state=RolloutState.WARMING,
        message=(
            f"returning to version {earlier} after version {stable.version} was promoted: {revert.reason}"
        ),
        started_at=now,
        generation=md.metadata.generation,
        step_count=0,
        step_started_at=now,
        revert_reason=revert.reason,
    )


def finish_revert(
    md: ModelDeployment, r: ActiveRollout, replaced: StableVersion, now: datetime
) -> tuple[RolloutRecord, list[RecordDraft], list[PostEvent]]:
    """The earlier version serves all traffic again: record it as the rollback of the replaced version."""
    reason = f"rolled back after promotion: {r.revert_reason}"
    record = RolloutRecord(
        from_version=r.canary.version,
        to_version=replaced.version,
        strategy=r.strategy,
        started_at=r.started_at,
        finished_at=now,
        outcome=Outcome.ROLLED_BACK,
        reason=reason,
        generation=md.metadata.generation,
    )
    draft = RecordDraft(
        deployment=deployment_ref(md),
        actor=OPERATOR_ACTOR,
        action=AuditAction.ROLLED_BACK,
        model=ModelVersions(
            name=md.spec.model.name, from_version=r.canary.version, to_version=replaced.version
        ),
        reason=reason,
        evidence={"revert": True, "started_at": r.started_at.isoformat()},
        cause=f"revert:{replaced.version}->{r.canary.version}:{r.started_at.isoformat()}:finished",
    )
    event = PostEvent(
        EventType.WARNING,
        "RolledBack",
        f"version {replaced.version} removed, version {r.canary.version} serves all traffic: {reason}",
    )
    return record, [draft], [event]
