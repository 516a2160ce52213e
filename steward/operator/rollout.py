"""The rollout state machine: move a new version from 0% to stable, or back out (pure).

Everything it needs to resume lives in `status.rollout`: a new operator finds the same step, the same weight
and the same analysis window, and applying the traffic plan again is a no-op on Ray. The state machine:

    Warming --(new version RUNNING)--> Progressing --(steps done | promote)--> Promoting --(drained)--> done
                                        |   ^ pause / resume / inconclusive
                                        v   |
                                       Paused
    Warming/Progressing/Paused --(analysis failed | abort | superseded)--> RollingBack --(drained)--> done
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from steward.api.model_deployment import ModelDeployment, StableVersion
from steward.api.rollout import (
    MAX_ROLLOUT_HISTORY,
    ActiveRollout,
    Outcome,
    RolloutCommand,
    RolloutCommandKind,
    RolloutRecord,
    RolloutState,
    RolloutStep,
    RolloutTarget,
    duration_s,
)
from steward.api.serve_app import TrafficStats
from steward.audit.records import OPERATOR_ACTOR, AuditAction, RecordDraft
from steward.operator.actions import PostEvent
from steward.operator.audit_drafts import actor_of, requester
from steward.operator.monitoring import FailCanary, RollbackPromotion
from steward.operator.observations import Problem, ResolvedModel, ServeApps
from steward.operator.revert import finish_revert, start_revert
from steward.operator.rollout_analysis import AnalysisSteps
from steward.operator.rollout_machine import FINISHING
from steward.operator.rollout_plan import pending_command, router_weights, traffic_plan
from steward.operator.rollout_start import blocking_record, start_evidence, start_identity, start_rollout
from steward.operator.serve_config import TrafficPlan


@dataclass
class RolloutDecision:
    plan: TrafficPlan
    stable: StableVersion
    rollout: ActiveRollout | None
    history: list[RolloutRecord]
    drafts: list[RecordDraft] = field(default_factory=list)
    events: list[PostEvent] = field(default_factory=list)
    # The rollout that ended in this pass, if one did.
    finished: RolloutRecord | None = None
    # Why no rollout runs although the spec names another version (it failed, and nothing changed since).
    blocked: RolloutRecord | None = None


def _stable_from(target: RolloutTarget) -> StableVersion:
    return StableVersion(
        version=target.version, model_uri=target.model_uri, source=target.source, run_id=target.run_id
    )


class _Machine(AnalysisSteps):
    """One pass of the state machine over a working copy of the rollout."""

    # ------------------------------------------------------------------ commands
    def apply_command(self, command: RolloutCommand) -> None:
        who = actor_of(self.md, command.actor)
        why = f": {command.reason}" if command.reason else ""
        self.update(handled_command=command.id)
        kind = command.command
        if self.r.state in FINISHING:
            self.note = f"{kind.value} by {who} ignored: the rollout is already finishing"
            return
        if kind == RolloutCommandKind.ABORT:
            self.finish(RolloutState.ROLLING_BACK, Outcome.ABORTED, f"aborted by {who}{why}", actor=who)
        elif kind == RolloutCommandKind.PROMOTE_FULL:
            if self.r.state == RolloutState.WARMING:
                self.note = (
                    f"promote --full by {who} refused: version {self.r.canary.version} is still starting"
                )
                return
            self.finish(
                RolloutState.PROMOTING,
                Outcome.PROMOTED,
                f"promoted by {who}, skipping the remaining steps{why}",
                actor=who,
            )
        elif kind == RolloutCommandKind.PROMOTE:
            if self.r.state == RolloutState.WARMING:
                self.note = f"promote by {who} refused: version {self.r.canary.version} is still starting"
                return
            self.record(
                AuditAction.ROLLOUT_STEP,
                f"step {self.r.step_index + 1} completed by {who}{why}",
                f"command:{command.id}",
                actor=who,
            )
            self.advance_step()
            self.update(state=RolloutState.PROGRESSING, message=f"step completed by {who}")
        elif kind == RolloutCommandKind.PAUSE:
            if self.r.state == RolloutState.PAUSED:
                self.note = f"pause by {who} ignored: already paused"
                return
            self.record(AuditAction.ROLLOUT_STEP, f"paused by {who}{why}", f"command:{command.id}", actor=who)
            self.pause(f"paused by {who}{why}; `steward resume` continues, `steward promote` skips the step")
        elif kind == RolloutCommandKind.RESUME:
            if self.r.state != RolloutState.PAUSED:
                self.note = f"resume by {who} ignored: the rollout is not paused"
                return
            self.record(
                AuditAction.ROLLOUT_STEP, f"resumed by {who}{why}", f"command:{command.id}", actor=who
            )
            step = self.current_step()
            if step is not None and step.pause is not None and step.pause.duration is None:
                self.advance_step()  # resuming an open-ended pause step is what finishes it
            self.update(state=RolloutState.PROGRESSING, message=f"resumed by {who}")

    # ------------------------------------------------------------------ steps
    def current_step(self) -> RolloutStep | None:
        return self.steps[self.r.step_index] if self.r.step_index < len(self.steps) else None

    def run_steps(self) -> None:
        """Run steps until one has to wait; a pass never applies a step twice (its index moves on)."""
        while self.r.state == RolloutState.PROGRESSING:
            step = self.current_step()
            if step is None:
                self.finish(
                    RolloutState.PROMOTING,
                    Outcome.PROMOTED,
                    f"all {len(self.steps)} steps passed"
                    if self.steps
                    else "immediate rollout: the new version is warm",
                )
                return
            if step.set_weight is not None:
                self.update(
                    weight=step.set_weight,
                    message=f"version {self.r.canary.version} gets {step.set_weight}% of traffic",
                )
                self.record(
                    AuditAction.ROLLOUT_STEP,
                    f"step {self.r.step_index + 1}/{len(self.steps)}: version {self.r.canary.version} gets "
                    f"{step.set_weight}% of live traffic",
                    f"step-{self.r.step_index}",
                )
                self.event(
                    "TrafficShifted",
                    f"version {self.r.canary.version} now gets {step.set_weight}% of traffic",
                )
                self.advance_step()
            elif step.pause is not None:
                if step.pause.duration is None:
                    self.pause(
                        f"step {self.r.step_index + 1}/{len(self.steps)}: waiting for a person; "
                        "`steward resume` or `steward promote` continues, `steward abort` rolls back"
                    )
                    return
                remaining = (
                    duration_s(step.pause.duration) - (self.now - self.r.step_started_at).total_seconds()
                )
                if remaining > 0:
                    self.update(
                        message=f"step {self.r.step_index + 1}/{len(self.steps)}: pausing "
                        f"{step.pause.duration} ({remaining:.0f}s left)"
                    )
                    return
                self.advance_step()
            else:
                if not self.run_analysis(step):
                    return

    def run(self, target: ResolvedModel) -> None:
        r = self.r
        command = pending_command(self.md, r.handled_command)
        if r.state not in FINISHING and r.revert_reason is None:
            if target.version != r.canary.version:
                why = (
                    f"the spec now names version {target.version}"
                    if target.version != self.stable.version
                    else f"the spec returned to stable version {target.version}"
                )
                self.finish(RolloutState.ROLLING_BACK, Outcome.SUPERSEDED, f"superseded: {why}")
                return
            if self.md.metadata.generation != r.generation:
                self.restart()
        # While finishing, a command is answered too (ignored, with why), so that nobody waits on it.
        if isinstance(command, RolloutCommand):
            self.apply_command(command)
        elif isinstance(command, str):
            self.update(message=command)
        if self.r.state == RolloutState.WARMING:
            self.warm()
        if self.r.state == RolloutState.PROGRESSING:
            self.run_steps()
        if self.note:
            self.update(message=f"{self.note}; {self.r.message}")

    def restart(self) -> None:
        self.update(
            generation=self.md.metadata.generation,
            state=RolloutState.WARMING,
            step_index=0,
            step_count=len(self.steps),
            step_started_at=self.now,
            weight=0,
            window_started_at=None,
            window_baseline=None,
            passed_windows=0,
            failed_windows=0,
            windows=[],
            strategy=self.md.spec.rollout.strategy,
            message="the spec changed mid-rollout: starting again from step 1",
        )
        self.record(
            AuditAction.ROLLOUT_STARTED,
            "the spec changed mid-rollout: starting again from step 1",
            f"restart:generation-{self.md.metadata.generation}",
            actor=requester(self.md),
            evidence={
                "steps": [s.model_dump(mode="json", by_alias=True, exclude_none=True) for s in self.steps]
            },
        )
        self.event("RolloutRestarted", "the spec changed mid-rollout: starting again from step 1")

    def warm(self) -> None:
        state = self.new_version_state()
        version = self.r.canary.version
        if state is None or state.status in ("NOT_STARTED", "DEPLOYING"):
            self.update(message=f"version {version} is starting; it gets no traffic until it is RUNNING")
        elif state.status == "RUNNING":
            self.update(
                state=RolloutState.PROGRESSING, step_started_at=self.now, message=f"version {version} is warm"
            )
        elif state.status in ("DEPLOY_FAILED", "UNHEALTHY"):
            detail = state.message or "; ".join(state.deployment_messages.values())
            self.finish(
                RolloutState.ROLLING_BACK,
                Outcome.ROLLED_BACK,
                f"version {version} failed to start ({state.status}): {detail[-500:]}",
            )

    def drained(self, plan: TrafficPlan) -> bool:
        """The switch is in effect on every router replica and in-flight requests had time to finish."""
        if self.r.switched_at is None:
            self.update(switched_at=self.now)
            return False
        router = self.serve.router
        applied = (
            router_weights(self.serve) == plan.weights and router is not None and router.status == "RUNNING"
        )
        return applied and (self.now - self.r.switched_at).total_seconds() >= self.drain_s


def decide_rollout(
    md: ModelDeployment,
    target: ResolvedModel,
    stable: StableVersion,
    serve: ServeApps,
    traffic: TrafficStats | Problem | None,
    now: datetime,
    drain_s: float,
    monitor_failure: FailCanary | None = None,
    revert: RollbackPromotion | None = None,
) -> RolloutDecision:
    """Given a stable version that serves, what the rollout does in this pass. A `rollback` monitor's breach
    of the canary (`monitor_failure`) fails the rollout as a failed analysis window would."""
    history = list(md.status.rollout_history)
    r = md.status.rollout
    if r is None and revert is not None and revert.from_version == stable.version:
        r = start_revert(md, stable, revert, now)
        machine = _Machine(md, r, stable, serve, traffic, now, drain_s)
        machine.record(AuditAction.ROLLOUT_STARTED, r.message, "started", prefix=start_identity(md, r))
        machine.event("RevertStarted", r.message, warning=True)
        return RolloutDecision(
            traffic_plan(md, stable, r), stable, r, history, machine.drafts, machine.events
        )
    if r is None:
        if target.version == stable.version:
            return RolloutDecision(traffic_plan(md, stable, None), stable, None, history)
        blocked = blocking_record(md, target)
        if blocked is not None:
            return RolloutDecision(traffic_plan(md, stable, None), stable, None, history, blocked=blocked)
        r = start_rollout(md, target, stable, now)
        machine = _Machine(md, r, stable, serve, traffic, now, drain_s)
        reason = f"{r.strategy.value} rollout of version {target.version} over version {stable.version}"
        machine.record(
            AuditAction.ROLLOUT_STARTED,
            reason,
            "started",
            prefix=start_identity(md, r),
            actor=OPERATOR_ACTOR if md.spec.model.alias else requester(md),
            evidence=start_evidence(md, target),
        )
        machine.event("RolloutStarted", reason)
        return RolloutDecision(
            traffic_plan(md, stable, r), stable, r, history, machine.drafts, machine.events
        )

    machine = _Machine(md, r, stable, serve, traffic, now, drain_s)
    if (
        monitor_failure is not None
        and monitor_failure.version == r.canary.version
        and r.state not in FINISHING
    ):
        machine.finish(RolloutState.ROLLING_BACK, Outcome.ROLLED_BACK, monitor_failure.reason)
    machine.run(target)
    r = machine.r
    plan = traffic_plan(md, stable, r)
    if r.state not in FINISHING or not machine.drained(plan):
        return RolloutDecision(plan, stable, machine.r, history, machine.drafts, machine.events)

    # Drained: the losing side goes, and the rollout becomes history.
    r = machine.r
    outcome = r.outcome or Outcome.ROLLED_BACK
    reason = r.outcome_reason or r.message
    record = RolloutRecord(
        from_version=r.from_version,
        to_version=r.canary.version,
        strategy=r.strategy,
        started_at=r.started_at,
        finished_at=now,
        outcome=outcome,
        reason=reason,
        generation=r.generation,
    )
    evidence = {"windows": [w.model_dump(mode="json", by_alias=True) for w in r.windows]}
    actor = r.outcome_actor or OPERATOR_ACTOR
    if r.revert_reason is not None and outcome == Outcome.PROMOTED:
        record, drafts, events = finish_revert(md, r, stable, now)
        history = [*history, record][-MAX_ROLLOUT_HISTORY:]
        return RolloutDecision(
            traffic_plan(md, _stable_from(r.canary), None),
            _stable_from(r.canary),
            None,
            history,
            machine.drafts + drafts,
            machine.events + events,
            finished=record,
        )
    if outcome == Outcome.PROMOTED:
        new_stable = _stable_from(r.canary)
        machine.record(AuditAction.PROMOTED, reason, "promoted", actor=actor, evidence=evidence)
        machine.event("Promoted", f"version {r.canary.version} is stable: {reason}")
    else:
        new_stable = stable
        action = {Outcome.ABORTED: AuditAction.ABORTED}.get(outcome, AuditAction.ROLLED_BACK)
        machine.record(action, reason, "finished", actor=actor, evidence=evidence)
        machine.event(
            "RolledBack",
            f"version {r.canary.version} removed, version {stable.version} serves all traffic: {reason}",
            warning=outcome == Outcome.ROLLED_BACK,
        )
    history = [*history, record][-MAX_ROLLOUT_HISTORY:]
    return RolloutDecision(
        traffic_plan(md, new_stable, None),
        new_stable,
        None,
        history,
        machine.drafts,
        machine.events,
        finished=record,
    )
