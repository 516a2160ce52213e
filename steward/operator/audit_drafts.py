"""Which lifecycle transitions become audit records, and with what evidence (pure).

Each draft names its cause, unique within the deployment's trail, so that replaying the same reconcile (after
a restart, a retry, a resync) adds nothing to the trail.
"""

from __future__ import annotations

from datetime import datetime

from steward.api.conditions import ConditionStatus, ConditionType, Reason
from steward.api.model_deployment import (
    ACTOR_ANNOTATION,
    AUTHENTICATED_USER_ANNOTATION,
    CHANGE_REASON_ANNOTATION,
    AliasTarget,
    Condition,
    ModelDeployment,
    ModelDeploymentStatus,
)
from steward.audit.records import OPERATOR_ACTOR, AuditAction, DeploymentRef, ModelVersions, RecordDraft
from steward.operator.observations import ResolvedModel
from steward.operator.status import find


def deployment_ref(md: ModelDeployment) -> DeploymentRef:
    return DeploymentRef(namespace=md.metadata.namespace, name=md.metadata.name, uid=md.metadata.uid)


def requester(md: ModelDeployment) -> str:
    """Who asked: the authenticated user when the admission webhook stamped one, with what the client declared
    when that differs (a CI service account acting for a person)."""
    return actor_of(md, md.metadata.annotations.get(ACTOR_ANNOTATION))


def actor_of(md: ModelDeployment, declared: str | None) -> str:
    authenticated = md.metadata.annotations.get(AUTHENTICATED_USER_ANNOTATION)
    if authenticated is None:
        return declared_actor(declared)
    if declared and declared != authenticated:
        return f"{declared} (authenticated as {authenticated})"
    return authenticated


def declared_actor(declared: str | None) -> str:
    """A name only the client vouches for (anyone who may edit the object can write any name): says so."""
    return f"{declared} (declared)" if declared else "unknown (no steward.io/actor annotation)"


def with_trusted_identity(md: ModelDeployment, stamped_by_webhook: bool) -> ModelDeployment:
    """The resource as the audit trail may read it. Only the admission webhook can vouch for
    `steward.io/authenticated-user` (it overwrites it on every create and update); without the webhook, anyone
    who may edit the object can write it, so it is ignored and records name the declared actor as declared."""
    annotations = md.metadata.annotations
    if stamped_by_webhook or AUTHENTICATED_USER_ANNOTATION not in annotations:
        return md
    kept = {k: v for k, v in annotations.items() if k != AUTHENTICATED_USER_ANNOTATION}
    return md.model_copy(update={"metadata": md.metadata.model_copy(update={"annotations": kept})})


def spec_drafts(md: ModelDeployment) -> list[RecordDraft]:
    """created / spec-changed: the user's intent, recorded when the operator first sees a generation."""
    generation = md.metadata.generation
    created = md.status.observed_generation is None and not md.status.conditions
    if not created and (generation is None or generation == md.status.observed_generation):
        return []
    spec = md.spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    return [
        RecordDraft(
            deployment=deployment_ref(md),
            actor=requester(md),
            action=AuditAction.CREATED if created else AuditAction.SPEC_CHANGED,
            model=ModelVersions(name=md.spec.model.name, to_version=md.spec.model.version),
            reason=md.metadata.annotations.get(CHANGE_REASON_ANNOTATION)
            or ("resource created" if created else "spec changed"),
            evidence={"spec": spec, "generation": generation},
            cause="created" if created else f"spec:generation-{generation}",
        )
    ]


def _alias_move(md: ModelDeployment, model: ResolvedModel) -> tuple[str, str] | None:
    """(from version, cause) when the alias names another version than the operator saw last time."""
    alias, seen, stable = md.spec.model.alias, md.status.alias_target, md.status.stable
    if alias is None:
        return None
    if seen is not None and seen.alias == alias:
        if seen.version == model.version:
            return None
        return seen.version, f"alias:{alias}:move-{seen.moves + 1}:{seen.version}->{model.version}"
    # Not seen under this alias: a new resource (its first version is `created`, not a move), a renamed alias,
    # or a status written before aliasTarget existed; what serves is what the alias named.
    if stable is None or stable.version == model.version:
        return None
    if seen is None:
        # The cause such a move had before aliasTarget existed: an upgrade does not record it twice.
        return stable.version, f"alias:{alias}:{model.version}"
    return stable.version, f"alias:{alias}:move-{seen.moves + 1}:{stable.version}->{model.version}"


def alias_target(md: ModelDeployment, model: ResolvedModel) -> AliasTarget | None:
    """What status remembers of the alias after this pass. Kept while the spec pins a version, so that the
    move count never goes back and a later move cannot reuse an earlier move's cause."""
    alias, seen = md.spec.model.alias, md.status.alias_target
    if alias is None:
        return seen
    moved = _alias_move(md, model) is not None
    moves = (seen.moves if seen is not None else 0) + (1 if moved else 0)
    return AliasTarget(alias=alias, version=model.version, moves=moves)


def alias_drafts(md: ModelDeployment, model: ResolvedModel) -> list[RecordDraft]:
    """alias-moved: the registry, not the resource, changed which version should serve. Once per real move,
    keyed by the move count in status: 3 -> 4 -> 3 is two records, a replayed pass is none."""
    move = _alias_move(md, model)
    alias = md.spec.model.alias
    if move is None or alias is None:
        return []
    from_version, cause = move
    return [
        RecordDraft(
            deployment=deployment_ref(md),
            actor=OPERATOR_ACTOR,
            action=AuditAction.ALIAS_MOVED,
            model=ModelVersions(name=model.name, from_version=from_version, to_version=model.version),
            reason=f"registry alias @{alias} now names version {model.version}",
            evidence={"alias": alias, "model_uri": model.model_uri, "run_id": model.run_id},
            cause=cause,
        )
    ]


def outcome_drafts(
    md: ModelDeployment, new: ModelDeploymentStatus, model: ResolvedModel | None
) -> list[RecordDraft]:
    """deployed / deploy-failed: what Ray Serve did with the spec."""
    old = md.status
    generation = md.metadata.generation
    drafts = []
    # A rollout's promotion is recorded by the rollout itself, with its analysis as evidence.
    promoted = old.rollout is not None
    if (
        not promoted
        and new.stable is not None
        and (old.stable is None or old.stable.version != new.stable.version)
    ):
        drafts.append(
            RecordDraft(
                deployment=deployment_ref(md),
                actor=OPERATOR_ACTOR,
                action=AuditAction.DEPLOYED,
                model=ModelVersions(
                    name=md.spec.model.name,
                    from_version=old.stable.version if old.stable else None,
                    to_version=new.stable.version,
                ),
                reason=f"version {new.stable.version} is serving with {new.ready_replicas} ready replica(s)",
                evidence={
                    "model_uri": new.stable.model_uri,
                    "source": new.stable.source,
                    "run_id": new.stable.run_id,
                    "endpoint": new.endpoint,
                    "serve_application": new.serve_application.name if new.serve_application else None,
                },
                cause=f"deployed:{new.stable.version}:generation-{generation}",
            )
        )
    before, after = find(old.conditions, ConditionType.READY), find(new.conditions, ConditionType.READY)
    if (
        after is not None
        and after.status == ConditionStatus.FALSE
        and after.reason == Reason.DEPLOY_FAILED
        and (before is None or before.reason != Reason.DEPLOY_FAILED)
    ):
        version = model.version if model else None
        drafts.append(
            RecordDraft(
                deployment=deployment_ref(md),
                actor=OPERATOR_ACTOR,
                action=AuditAction.DEPLOY_FAILED,
                model=ModelVersions(name=md.spec.model.name, to_version=version),
                reason=after.message[:500],
                evidence={"message": after.message, "serve_status": "DEPLOY_FAILED"},
                # Keyed by the state it left: failing again after a recovery is another record.
                cause=f"deploy-failed:{version}:generation-{generation}:{_since(before)}",
            )
        )
    return drafts


def _since(condition: Condition | None) -> str:
    return (
        f"from-{condition.reason.value}-{condition.last_transition_time.isoformat()}"
        if condition
        else "first"
    )


def deletion_draft(md: ModelDeployment, requested_at: datetime, leftover: str | None) -> RecordDraft:
    reason = md.metadata.annotations.get(CHANGE_REASON_ANNOTATION) or "resource deleted"
    return RecordDraft(
        deployment=deployment_ref(md),
        # Not the authenticated user: the webhook stamps changes, and a deletion is not one; that annotation
        # names whoever changed the object last. The declared actor is what the deleting client set (the CLI
        # annotates before it deletes).
        actor=declared_actor(md.metadata.annotations.get(ACTOR_ANNOTATION)),
        action=AuditAction.DELETED,
        model=ModelVersions(
            name=md.spec.model.name, from_version=md.status.stable.version if md.status.stable else None
        ),
        reason=f"{reason}; cleanup incomplete: {leftover}" if leftover else reason,
        evidence={"deletion_requested_at": requested_at.isoformat(), "cleanup_complete": leftover is None},
        cause=f"deleted:{requested_at.isoformat()}",
    )
