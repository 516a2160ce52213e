"""Rebuild stable and rollout from what Ray serves when the stored status cannot be read (pure).

The router's deployed `user_config` says who gets traffic now. A version with all of it is stable; two
versions sharing it, one of them the spec's, are a rollout, recovered paused so that only a person (resume,
promote, abort) moves traffic again. Anything else is held as it is, with a condition that says why.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pydantic import ValidationError

from steward.api.conditions import ConditionStatus, ConditionType, Reason
from steward.api.model_deployment import ModelDeployment, ModelDeploymentStatus, StableVersion
from steward.api.rollout import ActiveRollout, RolloutCommand, RolloutState, RolloutTarget
from steward.api.serve_app import VersionArgs
from steward.operator.actions import EventType, PostEvent
from steward.operator.observations import Observations, Problem, ResolvedModel, ServeApps
from steward.operator.rollout_plan import pending_command, router_weights
from steward.operator.status import derive_phase, find, set_condition


@dataclass(frozen=True)
class Recovery:
    # False: nothing could be rebuilt; decide() holds again next pass.
    recovered: bool
    message: str
    stable: StableVersion | None = None
    rollout: ActiveRollout | None = None
    # Ray could not be asked: try again soon rather than at the next resync.
    temporary: bool = False


def held_because(md: ModelDeployment) -> str | None:
    """Why decide() must not act on status: it was just read unreadable, or an earlier pass could not
    rebuild it (the condition it left is the only trace, since it wrote back what it could read)."""
    if md.status_unreadable is not None:
        return md.status_unreadable
    degraded = find(md.status.conditions, ConditionType.DEGRADED)
    if (
        degraded is not None
        and degraded.status == ConditionStatus.TRUE
        and degraded.reason == Reason.STATUS_UNREADABLE
    ):
        return degraded.message
    return None


def _model_uri(serve: ServeApps, version: str) -> str | None:
    state = serve.versions.get(version)
    args = (state.deployed_config or {}).get("args") if state is not None else None
    try:
        return VersionArgs.model_validate(args).model_uri if args is not None else None
    except ValidationError:
        return None


def _stable(md: ModelDeployment, version: str, model_uri: str) -> StableVersion:
    old = md.status.stable
    if old is not None and old.version == version and old.model_uri == model_uri:
        return old
    return StableVersion(version=version, model_uri=model_uri)


def _step_after(md: ModelDeployment, weight: int) -> int:
    """The step to resume at: after the last weight step that the current weight already reached."""
    index = 0
    for i, step in enumerate(md.spec.rollout.effective_steps):
        if step.set_weight is not None and step.set_weight <= weight:
            index = i + 1
    return index


def recover(
    md: ModelDeployment, model: ResolvedModel | Problem, serve: ServeApps | Problem, now: datetime
) -> Recovery:
    if isinstance(serve, Problem):
        return Recovery(
            False, f"cannot see what Ray Serve serves: {serve.message}", temporary=serve.temporary
        )
    if serve.router is None:
        # Nothing of ours takes traffic: deploying afresh moves no caller.
        return Recovery(True, "no router application of this deployment runs on Ray Serve")
    weights = router_weights(serve)
    if weights is None:
        return Recovery(
            False,
            "the router's traffic weights cannot be read from Ray Serve; delete the router application by "
            "hand to deploy afresh",
        )
    live = {v: w for v, w in sorted(weights.items()) if w > 0}
    uris = {v: _model_uri(serve, v) for v in live}
    missing = sorted(v for v, uri in uris.items() if uri is None)
    if missing:
        return Recovery(False, f"Ray Serve does not say which model version(s) {missing} serve")
    if len(live) == 1:
        ((version, uri),) = uris.items()
        assert uri is not None  # checked above: none is missing
        return Recovery(
            True,
            f"version {version} takes all traffic: it is stable",
            stable=_stable(md, version, uri),
        )
    target = model.version if isinstance(model, ResolvedModel) else None
    if len(live) == 2 and target in live and isinstance(model, ResolvedModel):
        (old,) = (v for v in live if v != target)
        old_uri, new_uri = uris[old], uris[target]
        assert old_uri is not None and new_uri is not None  # checked above: none is missing
        rollout = ActiveRollout(
            strategy=md.spec.rollout.strategy,
            canary=RolloutTarget(version=target, model_uri=new_uri, source=model.source, run_id=model.run_id),
            from_version=old,
            state=RolloutState.PAUSED,
            message=f"recovered from Ray Serve at {live[target]}% of traffic: `steward resume` continues, "
            "`steward abort` returns all traffic to stable",
            started_at=now,
            generation=md.metadata.generation,
            step_index=_step_after(md, live[target]),
            step_count=len(md.spec.rollout.effective_steps),
            step_started_at=now,
            weight=live[target],
            # A command written before the status was lost belongs to the rollout that was lost with it.
            handled_command=command.id
            if isinstance(command := pending_command(md, None), RolloutCommand)
            else None,
        )
        return Recovery(
            True,
            f"versions {old} and {target} share traffic ({live}): the rollout of {target} is paused",
            stable=_stable(md, old, old_uri),
            rollout=rollout,
        )
    return Recovery(
        False,
        f"traffic is split as {live} and the spec's version {target} is not one of two sharing it: "
        "name one of the served versions in spec.model to resume",
    )


def hold_unreadable(
    md: ModelDeployment, obs: Observations, now: datetime, why: str
) -> tuple[ModelDeploymentStatus, list[PostEvent], str]:
    """decide() for a status it cannot act on: no action on Ray, only a status rebuilt from what Ray serves.

    Returns the status, the Events to post and, when Ray could not be asked, why to retry soon.
    """
    old = md.status
    recovery = recover(md, obs.model, obs.serve, now)
    degraded = find(old.conditions, ConditionType.DEGRADED)
    fresh = md.status_unreadable is not None
    said_why = f"status could not be read ({why})" if fresh else "status could not be read earlier"
    if recovery.recovered:
        message = f"{said_why}; rebuilt from Ray Serve: {recovery.message}"
        reason, flag, stable, rollout = (
            Reason.STATUS_RECOVERED,
            ConditionStatus.FALSE,
            recovery.stable,
            recovery.rollout,
        )
    else:
        # Held again: keep the first pass's words, which say what was unreadable, rather than nest them.
        message = (
            f"{said_why}; nothing changes on Ray Serve until it can be rebuilt: {recovery.message}"
            if fresh or degraded is None
            else degraded.message
        )
        reason, flag, stable, rollout = (
            Reason.STATUS_UNREADABLE,
            ConditionStatus.TRUE,
            old.stable,
            old.rollout,
        )
    conditions = set_condition(
        old.conditions, ConditionType.DEGRADED, flag, reason, message, now, md.metadata.generation
    )
    if not recovery.recovered:
        conditions = set_condition(
            conditions,
            ConditionType.PROGRESSING,
            ConditionStatus.FALSE,
            reason,
            message,
            now,
            md.metadata.generation,
        )
    status = old.model_copy(
        update={
            "conditions": conditions,
            "phase": derive_phase(conditions),
            "stable": stable,
            "rollout": rollout,
        }
    )
    said = degraded is not None and (degraded.reason, degraded.message) == (reason, message)
    events = [] if said else [PostEvent(EventType.WARNING, reason.value, message)]
    return status, events, recovery.message if recovery.temporary else ""
