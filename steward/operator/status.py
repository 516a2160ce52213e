"""Conditions and the phase derived from them (pure)."""

from __future__ import annotations

from datetime import datetime

from steward.api.conditions import ConditionStatus, ConditionType, Phase, Reason
from steward.api.model_deployment import Condition

# Reasons that no retry will cure: a person has to change the spec, the registry or the cluster.
PERMANENT_REASONS = frozenset(
    {
        Reason.MODEL_NOT_FOUND,
        Reason.VERSION_NOT_FOUND,
        Reason.ALIAS_NOT_FOUND,
        Reason.DEPLOY_FAILED,
        Reason.RAY_REJECTED,
        Reason.REGISTRY_REJECTED,
        Reason.INVALID_SPEC,
    }
)


def find(conditions: list[Condition], type_: ConditionType) -> Condition | None:
    return next((c for c in conditions if c.type == type_), None)


def set_condition(
    conditions: list[Condition],
    type_: ConditionType,
    status: ConditionStatus,
    reason: Reason,
    message: str,
    now: datetime,
    generation: int | None,
) -> list[Condition]:
    """A new list with one condition set; lastTransitionTime moves only when the status does."""
    old = find(conditions, type_)
    since = old.last_transition_time if old is not None and old.status == status else now
    new = Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=since,
        observed_generation=generation,
    )
    kept = [c for c in conditions if c.type != type_]
    return sorted([*kept, new], key=lambda c: list(ConditionType).index(c.type))


def is_true(conditions: list[Condition], type_: ConditionType) -> bool:
    found = find(conditions, type_)
    return found is not None and found.status == ConditionStatus.TRUE


def derive_phase(conditions: list[Condition], deleting: bool = False) -> Phase:
    if deleting:
        return Phase.DELETING
    ready = find(conditions, ConditionType.READY)
    if is_true(conditions, ConditionType.READY):
        if is_true(conditions, ConditionType.DEGRADED):
            return Phase.DEGRADED
        # Serving, and moving toward something new (a rollout, an update Ray is applying).
        return Phase.PROGRESSING if is_true(conditions, ConditionType.PROGRESSING) else Phase.READY
    if ready is not None and ready.reason in PERMANENT_REASONS:
        return Phase.FAILED
    if is_true(conditions, ConditionType.PROGRESSING):
        return Phase.PROGRESSING
    if is_true(conditions, ConditionType.DEGRADED):
        return Phase.DEGRADED
    return Phase.PENDING
