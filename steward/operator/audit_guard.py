"""No change that the audit trail could not keep (pure).

Records the store refuses wait in status.audit.buffered, so that a restarted operator still writes them; that
buffer is bounded (MAX_BUFFERED_AUDIT_RECORDS). Rather than drop a record once it is full, decide() makes no
change at all: every record describes a change (or a spec or alias the operator acted on), and status, which
is kept as it was, still says what is left to do, so each record is decided again once the store takes the
backlog. A trail that is merely behind is reported (condition and one Event) but does not stop the operator.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from steward.api.conditions import ConditionStatus, ConditionType, Reason
from steward.api.model_deployment import Condition, ModelDeployment, ModelDeploymentStatus
from steward.audit.records import RecordDraft
from steward.operator.actions import EventType, PostEvent
from steward.operator.observations import AuditBacklog
from steward.operator.status import derive_phase, find, set_condition

AUDIT_REASONS = frozenset({Reason.AUDIT_PENDING, Reason.AUDIT_BLOCKED})


def new_records(backlog: AuditBacklog, drafts: Iterable[RecordDraft]) -> int:
    return len({d.identity for d in drafts} - backlog.causes)


def holds_back(backlog: AuditBacklog | None, drafts: list[RecordDraft]) -> bool:
    """Stop before the buffer would overflow, not once it is full: one pass can draft several records (spec
    change, alias move, rollout step, deployed), so a pass that would take the buffer past the cap makes no
    change, and the buffer never holds more than the cap. Counting this pass's own drafts, rather than
    stopping at a fixed margin below the cap, needs no bound on how many records a pass may draft."""
    if backlog is None or backlog.pending == 0:
        return False
    return backlog.pending + new_records(backlog, drafts) > backlog.cap


def pending_condition(
    backlog: AuditBacklog | None, old: list[Condition], degraded_decided: bool
) -> tuple[ConditionStatus, Reason, str] | None:
    """Degraded for a trail that is behind; cleared once it caught up, unless this pass decided Degraded."""
    if backlog is not None and backlog.pending:
        return (
            ConditionStatus.TRUE,
            Reason.AUDIT_PENDING,
            f"{backlog.pending} audit record(s) not stored yet: {backlog.error}. They wait in "
            f"status.audit and are stored first, in order, once the store takes them; at {backlog.cap} "
            "no change is made",
        )
    was = find(old, ConditionType.DEGRADED)
    if not degraded_decided and was is not None and was.reason in AUDIT_REASONS:
        return ConditionStatus.FALSE, Reason.AS_EXPECTED, "the audit store has taken every record"
    return None


def hold_for_audit(
    md: ModelDeployment, backlog: AuditBacklog, now: datetime
) -> tuple[ModelDeploymentStatus, str]:
    """The status of a pass that makes no change: as it was, but Degraded says why. Returns it and the
    message, which is also why to retry."""
    message = (
        f"{backlog.pending} audit records could not be stored: {backlog.error}; no change is made until "
        "the audit store takes them"
    )
    conditions = set_condition(
        md.status.conditions,
        ConditionType.DEGRADED,
        ConditionStatus.TRUE,
        Reason.AUDIT_BLOCKED,
        message,
        now,
        md.metadata.generation,
    )
    status = md.status.model_copy(update={"conditions": conditions, "phase": derive_phase(conditions)})
    return status, message


def audit_events(old: list[Condition], new: list[Condition]) -> list[PostEvent]:
    """One Event when the trail falls behind, one when changes stop, one when it has caught up; none on
    the passes in between."""
    before, after = find(old, ConditionType.DEGRADED), find(new, ConditionType.DEGRADED)
    was = before.reason if before is not None and before.status == ConditionStatus.TRUE else None
    now = after.reason if after is not None and after.status == ConditionStatus.TRUE else None
    if after is not None and now in AUDIT_REASONS and now != was:
        return [PostEvent(EventType.WARNING, after.reason.value, after.message)]
    if was in AUDIT_REASONS and now not in AUDIT_REASONS:
        return [PostEvent(EventType.NORMAL, "AuditCaughtUp", "the audit store has taken every record")]
    return []
