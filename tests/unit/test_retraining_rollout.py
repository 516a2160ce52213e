"""A passing candidate through decide(): queued, canaried by the rollout machine with spec.rollout's gates,
and the registry kept consistent with what serves (challenger set at the canary's start, the followed alias
moved only on promotion, never left on a rolled-back candidate); a pinned version is never replaced."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from builders import CONFIG, resolved
from world import Behaviour, World, settled

from steward.api.model_deployment import StableVersion
from steward.api.retraining import (
    RETRAINING_COMMAND_ANNOTATION,
    CandidateOutcome,
    CandidateRolloutState,
    RunOutcome,
)
from steward.api.rollout import Outcome, RolloutRecord, Strategy
from steward.api.training_job import Figures, TrainingResult
from steward.audit.records import AuditAction
from steward.operator.actions import ApplyServeApplications, DeleteModelAlias, RecordAudit, SetModelAlias
from steward.operator.core import Decision
from steward.operator.monitor_jobs import JobState
from steward.operator.retraining_observation import (
    RetrainingObservation,
    StoredRecord,
    TrainingJobObservation,
)
from steward.operator.retraining_rollout import candidate_step
from steward.operator.rollout import RolloutDecision
from steward.operator.serve_config import TrafficPlan

STORED = StoredRecord(seq=4, hash="cd" * 32)
GOOD = Figures(quality={"accuracy": 0.80}, parity_ratio={"gender": 0.90})
BASE = Figures(quality={"accuracy": 0.75}, parity_ratio={"gender": 0.91})


def _spec(pinned: bool = False) -> dict[str, Any]:
    model = {"version": "3"} if pinned else {"alias": "champion"}
    return {
        "model": {"name": "credit-risk", **model},
        "rollout": {
            "steps": [{"setWeight": 50}, {"analysis": {}}],
            "analysis": {"interval": "10s", "minRequests": 5},
        },
        "monitoring": {"capture": {"sensitiveFeatures": ["gender"]}},
        "retraining": {"entrypoint": "python -m steward.retraining.example_train", "approval": "automatic"},
    }


class Registry(World):
    """The world, with a registry whose aliases the operator's SetModelAlias / DeleteModelAlias change."""

    aliases: dict[str, str]

    def step(self, seconds: float = 2.0, **observed: Any) -> Decision:
        decision = super().step(seconds, **observed)
        for action in decision.actions:
            if isinstance(action, SetModelAlias):
                self.aliases[action.alias] = action.version
            elif isinstance(action, DeleteModelAlias) and self.aliases.get(action.alias) == action.if_version:
                del self.aliases[action.alias]
        if "champion" in self.aliases:
            self.model = resolved(self.aliases["champion"])
        return decision


def _world(pinned: bool = False) -> Registry:
    base = settled(_spec(pinned))
    world = Registry(base.resource, resolved("3"))
    world.__dict__.update({k: v for k, v in base.__dict__.items() if k != "decisions"})
    world.decisions = []
    world.aliases = {} if pinned else {"champion": "3"}
    world.config = dataclasses.replace(CONFIG, monitoring_uri="/var/steward/monitoring")
    return world


def _trained(world: Registry, candidate: Figures = GOOD) -> None:
    """A retrain command, its run submitted, and its job's result read: the run ends in this last pass."""
    command = json.dumps({"id": "c1", "command": "retrain", "actor": "alice", "reason": "CR-9"})
    world.annotate(RETRAINING_COMMAND_ANNOTATION, command)
    world.step(retraining=RetrainingObservation())
    world.step(retraining=RetrainingObservation(trigger_record=STORED))
    run = world.resource.status.retraining.current  # type: ignore[union-attr]
    result = TrainingResult(
        submission_id=run.submission_id,
        deployment="risk/credit",
        model_name="credit-risk",
        parent_version="3",
        candidate_version="4",
        candidate_run_id="run4",
        candidate=candidate,
        serving=BASE,
    )
    world.step(retraining=RetrainingObservation(job=TrainingJobObservation(JobState.SUCCEEDED, result)))


def _registry_writes(world: Registry) -> list[SetModelAlias | DeleteModelAlias]:
    return [a for d in world.decisions for a in d.actions if isinstance(a, (SetModelAlias, DeleteModelAlias))]


def _records(world: Registry, action: AuditAction) -> list[Any]:
    return [d for d in world.drafts() if d.action == action]


def test_a_passing_candidate_is_canaried_then_promoted_and_the_alias_moves_only_then() -> None:
    world = _world()
    _trained(world)
    status = world.resource.status.retraining
    assert status is not None and status.runs[-1].outcome == RunOutcome.CANDIDATE_PASSED
    # The run ended in this pass, and its candidate's canary started in the same pass (nothing else rolls).
    started = world.decisions[-1]
    assert status.candidate_rollout is not None
    assert status.candidate_rollout.state == CandidateRolloutState.CANARY
    assert world.rollout is not None and world.rollout.canary.version == "4"
    assert _registry_writes(world) == [SetModelAlias("credit-risk", "challenger", "4")]
    assert world.aliases == {"champion": "3", "challenger": "4"}
    [canary] = _records(world, AuditAction.CANDIDATE_ROLLOUT)
    assert canary.evidence["step"] == "canary-started" and canary.cause.endswith(":canary-started")
    assert canary.evidence["trigger_cause"] == "retraining-requested:command:c1"
    assert [d.action for d in world.drafts()].count(AuditAction.ROLLOUT_STARTED) == 1
    assert any(isinstance(a, ApplyServeApplications) for a in started.actions)
    # The run's end, then the rollout it starts, in the trail's order.
    order = [a.draft.action for a in started.actions if isinstance(a, RecordAudit)]
    assert (
        order.index(AuditAction.RETRAINING_FINISHED)
        < order.index(AuditAction.CANDIDATE_EVALUATED)
        < order.index(AuditAction.ROLLOUT_STARTED)
        < order.index(AuditAction.CANDIDATE_ROLLOUT)
    )

    # Through the steps and the analysis window: champion stays on 3 until the promotion.
    while world.rollout is not None:
        assert world.aliases["champion"] == "3"
        world.step()
    assert world.stable_version == "4"
    assert world.aliases == {"champion": "4"}
    promoted = next(d for d in world.decisions if SetModelAlias("credit-risk", "champion", "4") in d.actions)
    kinds = [type(a).__name__ for a in promoted.actions]
    # The registry moves before the serve change that removes version 3, and before the records.
    assert kinds[:2] == ["SetModelAlias", "DeleteModelAlias"]
    assert kinds.index("ApplyServeApplications") > 1 and kinds.index("RecordAudit") > 1
    [moved] = _records(world, AuditAction.ALIAS_MOVED)
    assert (moved.model.from_version, moved.model.to_version) == ("3", "4")  # type: ignore[union-attr]
    assert moved.cause == "alias:champion:move-1:3->4"
    steps = [d.evidence["step"] for d in _records(world, AuditAction.CANDIDATE_ROLLOUT)]
    assert steps == ["canary-started", "promoted"]
    status = world.resource.status.retraining
    assert status is not None and status.candidate_rollout is None
    assert status.runs[-1].rollout == CandidateOutcome.PROMOTED
    assert world.resource.status.alias_target is not None
    assert world.resource.status.alias_target.version == "4"

    # The next passes observe @champion on 4: no second alias-moved record, no new rollout.
    world.run(20)
    assert len(_records(world, AuditAction.ALIAS_MOVED)) == 1 and world.rollout is None


def test_a_candidate_that_fails_its_canary_is_rolled_back_and_the_alias_never_names_it() -> None:
    world = _world()
    _trained(world)
    world.behaviour["4"] = Behaviour(error_share=0.5)
    assert world.aliases["challenger"] == "4"
    world.until(lambda w: w.rollout is None, limit_s=300)
    assert world.stable_version == "3" and world.aliases == {"champion": "3"}
    assert SetModelAlias("credit-risk", "champion", "4") not in _registry_writes(world)
    assert DeleteModelAlias("credit-risk", "challenger", "4") in _registry_writes(world)
    assert world.resource.status.rollout_history[-1].outcome == Outcome.ROLLED_BACK
    status = world.resource.status.retraining
    assert status is not None and status.candidate_rollout is None
    assert status.runs[-1].rollout == CandidateOutcome.ROLLED_BACK
    [ended] = [
        d for d in _records(world, AuditAction.CANDIDATE_ROLLOUT) if d.evidence["step"] != "canary-started"
    ]
    assert ended.evidence["step"] == "rolledback" and ended.evidence["aliases"]["champion"] == "3"
    assert _records(world, AuditAction.ALIAS_MOVED) == []
    # Not started again by itself.
    world.run(30)
    assert world.rollout is None and world.stable_version == "3"


def test_a_pinned_version_is_never_replaced_by_a_passing_candidate() -> None:
    world = _world(pinned=True)
    _trained(world)
    status = world.resource.status.retraining
    assert status is not None and status.runs[-1].outcome == RunOutcome.CANDIDATE_PASSED
    assert status.candidate_rollout is None and "recommended, not deployed" in status.runs[-1].message
    world.run(30)
    assert world.rollout is None and world.stable_version == "3" and _registry_writes(world) == []
    assert any(e.reason == "CandidateRecommended" for e in world.events())


def test_a_rejected_candidate_is_never_canaried() -> None:
    world = _world()
    _trained(world, candidate=Figures(quality={"accuracy": 0.60}, parity_ratio={"gender": 0.90}))
    status = world.resource.status.retraining
    assert status is not None and status.runs[-1].outcome == RunOutcome.CANDIDATE_REJECTED
    assert status.candidate_rollout is None
    world.run(30)
    assert world.rollout is None and _registry_writes(world) == []


def test_a_person_moving_the_alias_during_the_canary_supersedes_the_candidate() -> None:
    world = _world()
    _trained(world)
    assert world.rollout is not None and world.rollout.canary.version == "4"
    world.aliases["champion"] = "5"
    world.model = resolved("5")
    world.until(lambda w: w.resource.status.retraining.candidate_rollout is None, limit_s=60)  # type: ignore[union-attr]
    status = world.resource.status.retraining
    assert status is not None and status.runs[-1].rollout == CandidateOutcome.SUPERSEDED
    assert world.aliases == {"champion": "5"}  # the person's move stands; the challenger is cleared
    assert SetModelAlias("credit-risk", "champion", "4") not in _registry_writes(world)
    world.until(lambda w: w.stable_version == "5", limit_s=300)


def test_a_new_run_is_refused_while_a_candidate_is_being_rolled_out() -> None:
    world = _world()
    _trained(world)
    command = json.dumps({"id": "c2", "command": "retrain", "actor": "bob", "reason": "again"})
    world.annotate(RETRAINING_COMMAND_ANNOTATION, command)
    world.step()
    [second] = [d for d in _records(world, AuditAction.RETRAINING_REQUESTED) if "c2" in d.cause]
    assert second.evidence["accepted"] is False
    assert "candidate 4" in second.evidence["refused_because"]


def test_a_promotion_pass_replayed_after_a_crash_writes_and_records_nothing_twice() -> None:
    world = _world()
    _trained(world)
    # Stop just before the pass that promotes: the rollout drains with all traffic on 4.
    while world.rollout is not None:
        before, aliases, apps = world.resource, dict(world.aliases), dict(world.apps)
        world.step()
    first = world.decisions[-1]
    assert SetModelAlias("credit-risk", "champion", "4") in first.actions
    # A crash right after the registry writes: neither the serve change nor the status happened. The same
    # pass again, from the old status, with the registry as the writes left it.
    world.resource, world.apps = before, apps
    world.aliases = {k: v for k, v in aliases.items() if k != "challenger"} | {"champion": "4"}
    world.model = resolved("4")
    replay = world.step(0.0)
    assert not any(isinstance(a, SetModelAlias) for a in replay.actions)
    causes = {a.draft.cause for a in first.actions if isinstance(a, RecordAudit)}
    replayed = {a.draft.cause for a in replay.actions if isinstance(a, RecordAudit)}
    # Every record of the replay has the cause of a record already written: the trail skips them.
    assert replayed <= causes, replayed - causes
    assert world.stable_version == "4" and world.resource.status.retraining.candidate_rollout is None  # type: ignore[union-attr]


def test_a_promoted_candidate_that_a_monitor_reverts_takes_the_alias_back_with_it() -> None:
    """The revert itself is the rollout machine's (unit-tested there); here, what the registry does when
    the reverted version is a candidate Steward promoted and the alias still names it."""
    world = _world()
    _trained(world)
    world.until(lambda w: w.rollout is None, limit_s=300)
    assert world.stable_version == "4" and world.aliases["champion"] == "4"
    resource = world.resource
    reverted = RolloutRecord(
        from_version="3",
        to_version="4",
        strategy=Strategy.IMMEDIATE,
        started_at=world.now,
        finished_at=world.now,
        outcome=Outcome.ROLLED_BACK,
        reason="monitor quality breached on version 4 within the rollback window",
    )
    stable = StableVersion(version="3", model_uri="models:/credit-risk/3")
    outcome = RolloutDecision(TrafficPlan.single("3", stable.model_uri), stable, None, [], finished=reverted)
    step = candidate_step(resource, resource.status.retraining, resolved("4"), outcome, world.now)
    assert step.registry == [SetModelAlias("credit-risk", "champion", "3")]
    assert step.alias_target is not None and step.alias_target.version == "3"
    [moved] = [d for d in step.drafts if d.action == AuditAction.ALIAS_MOVED]
    assert moved.cause == "alias:champion:move-2:4->3"
    assert step.status is not None and step.status.runs[-1].rollout == CandidateOutcome.REVERTED
    # A person already moved the alias elsewhere: it stays where they put it.
    again = candidate_step(resource, resource.status.retraining, resolved("5"), outcome, world.now)
    assert again.registry == [] and again.status is not None
    assert again.status.runs[-1].rollout == CandidateOutcome.REVERTED


def test_a_candidate_queued_behind_another_rollout_starts_soon_after_it_ends() -> None:
    world = _world()
    world.aliases["champion"] = "5"
    world.model = resolved("5")
    world.step()
    assert world.rollout is not None and world.rollout.canary.version == "5"
    # A run asked for while 5 rolls out; its candidate, compared with 3, waits for that rollout to end.
    _trained(world)
    status = world.resource.status.retraining
    assert status is not None and status.candidate_rollout is not None
    assert status.candidate_rollout.state == CandidateRolloutState.PENDING
    assert "waits for the rollout of version 5" in status.candidate_rollout.message
    world.until(lambda w: w.rollout is None, limit_s=300)
    # The pass that ended 5's rollout asks to be called again soon, not at the resync, for the candidate.
    assert world.decisions[-1].requeue_after_s is not None
    # 5 was promoted: what the candidate was compared with no longer serves, so it is dropped, not canaried.
    world.step()
    status = world.resource.status.retraining
    assert status is not None and status.candidate_rollout is None
    assert status.runs[-1].rollout == CandidateOutcome.DROPPED
    assert SetModelAlias("credit-risk", "challenger", "4") not in _registry_writes(world)


def test_pinning_a_version_during_the_canary_supersedes_the_candidate_and_claims_nothing_of_the_alias() -> (
    None
):
    world = _world()
    _trained(world)
    assert world.rollout is not None and world.rollout.canary.version == "4"
    world.change_spec(_spec(pinned=True), model=resolved("3"))
    world.until(lambda w: w.rollout is None, limit_s=120)
    status = world.resource.status.retraining
    assert status is not None and status.runs[-1].rollout == CandidateOutcome.SUPERSEDED
    assert world.stable_version == "3" and world.aliases == {"champion": "3"}
    [ended] = [
        d for d in _records(world, AuditAction.CANDIDATE_ROLLOUT) if d.evidence["step"] == "superseded"
    ]
    assert ended.evidence["aliases"] == {"challenger": None} and "@champion" not in ended.reason
