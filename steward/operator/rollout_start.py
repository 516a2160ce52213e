"""How a rollout begins (pure): its first state, the identity its start is recorded under, what the start
record carries as evidence, and whether an earlier failure of the same version blocks it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from steward.api.model_deployment import ModelDeployment, StableVersion
from steward.api.rollout import ActiveRollout, Outcome, RolloutRecord, RolloutState, RolloutTarget
from steward.operator.observations import ResolvedModel
from steward.operator.rollout_plan import command_id


def canary_target(model: ResolvedModel) -> RolloutTarget:
    return RolloutTarget(
        version=model.version, model_uri=model.model_uri, source=model.source, run_id=model.run_id
    )


def start_rollout(
    md: ModelDeployment, target: ResolvedModel, stable: StableVersion, now: datetime
) -> ActiveRollout:
    spec = md.spec.rollout
    return ActiveRollout(
        strategy=spec.strategy,
        canary=canary_target(target),
        from_version=stable.version,
        state=RolloutState.WARMING,
        message=f"starting version {target.version}; it gets no traffic until it is RUNNING",
        started_at=now,
        generation=md.metadata.generation,
        step_count=len(spec.effective_steps),
        step_started_at=now,
        # A command written before this rollout began belongs to an earlier one.
        handled_command=command_id(md),
    )


def start_identity(md: ModelDeployment, r: ActiveRollout) -> str:
    """Which rollout this is, from the status it starts from, not the clock: a pass replayed after a crash
    (the trail written, the status not) names the same rollout, so its start is recorded once. Two real
    starts differ, as a rollout must end, and join the history, before the next begins."""
    history = md.status.rollout_history
    after = history[-1].finished_at.isoformat() if history else "none"
    return f"rollout:{r.from_version}->{r.canary.version}:generation-{r.generation}:after-{after}"


def blocking_record(md: ModelDeployment, target: ResolvedModel) -> RolloutRecord | None:
    """A rollout of this very version failed under this very spec: do not start it again by itself."""
    history = md.status.rollout_history
    last = history[-1] if history else None
    if (
        last is not None
        and last.to_version == target.version
        and last.outcome in (Outcome.ROLLED_BACK, Outcome.ABORTED)
        and last.generation == md.metadata.generation
    ):
        return last
    return None


def start_evidence(md: ModelDeployment, target: ResolvedModel) -> dict[str, Any]:
    """What the start record shows an auditor: the steps and gates the version will be judged by."""
    rollout = md.spec.rollout
    return {
        "steps": [
            s.model_dump(mode="json", by_alias=True, exclude_none=True) for s in rollout.effective_steps
        ],
        "analysis": rollout.analysis.model_dump(mode="json", by_alias=True, exclude_none=True),
        "model_uri": target.model_uri,
        "run_id": target.run_id,
    }
