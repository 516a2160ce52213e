"""The rollout state machine's working copy of one pass and its primitives: records, Events, transitions
(pure). `steward.operator.rollout` drives it; `steward.operator.rollout_analysis` judges analysis steps."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from steward.api.model_deployment import ModelDeployment, StableVersion
from steward.api.rollout import ActiveRollout, Outcome, RolloutState, RolloutStep
from steward.api.serve_app import TrafficStats
from steward.audit.records import OPERATOR_ACTOR, AuditAction, ModelVersions, RecordDraft
from steward.operator.actions import EventType, PostEvent
from steward.operator.audit_drafts import deployment_ref
from steward.operator.observations import Problem, ServeApps, ServeState

FINISHING = (RolloutState.PROMOTING, RolloutState.ROLLING_BACK)


class MachineBase:
    """One pass of the state machine over a working copy of the rollout."""

    def __init__(
        self,
        md: ModelDeployment,
        r: ActiveRollout,
        stable: StableVersion,
        serve: ServeApps,
        traffic: TrafficStats | Problem | None,
        now: datetime,
        drain_s: float,
    ) -> None:
        self.md, self.r, self.stable, self.serve, self.traffic = md, r, stable, serve, traffic
        self.now, self.drain_s = now, drain_s
        # A revert goes straight back once the earlier version is warm: no steps to earn.
        self.steps: tuple[RolloutStep, ...] = () if r.revert_reason else md.spec.rollout.effective_steps
        self.drafts: list[RecordDraft] = []
        self.events: list[PostEvent] = []
        # Why a command was not followed: shown ahead of whatever the pass says next.
        self.note = ""

    # ------------------------------------------------------------------ records
    @property
    def cause(self) -> str:
        return f"rollout:{self.r.canary.version}:{self.r.started_at.isoformat()}"

    def record(
        self,
        action: AuditAction,
        reason: str,
        cause: str,
        actor: str = OPERATOR_ACTOR,
        evidence: dict[str, Any] | None = None,
        prefix: str | None = None,
    ) -> None:
        self.drafts.append(
            RecordDraft(
                deployment=deployment_ref(self.md),
                actor=actor,
                action=action,
                model=ModelVersions(
                    name=self.md.spec.model.name,
                    from_version=self.r.from_version,
                    to_version=self.r.canary.version,
                ),
                reason=reason,
                evidence={
                    "strategy": self.r.strategy.value,
                    "step": self.r.step_index,
                    "weight": self.r.weight,
                    **(evidence or {}),
                },
                cause=f"{prefix or self.cause}:{cause}",
            )
        )

    def event(self, reason: str, message: str, warning: bool = False) -> None:
        self.events.append(PostEvent(EventType.WARNING if warning else EventType.NORMAL, reason, message))

    def update(self, **changes: Any) -> None:
        self.r = self.r.model_copy(update=changes)

    # ------------------------------------------------------------------ transitions
    def finish(self, state: RolloutState, outcome: Outcome, reason: str, actor: str = OPERATOR_ACTOR) -> None:
        """Move all traffic at once, to the new version or back to stable; the other goes after a drain."""
        self.update(
            state=state,
            outcome=outcome,
            outcome_reason=reason,
            outcome_actor=actor,
            switched_at=None,
            message=reason,
            window_started_at=None,
            window_baseline=None,
        )
        if state == RolloutState.ROLLING_BACK:
            self.event(
                "RollingBack",
                f"all traffic back to version {self.r.from_version}: {reason}",
                warning=outcome == Outcome.ROLLED_BACK,
            )
        else:
            self.event("Promoting", f"all traffic to version {self.r.canary.version}: {reason}")

    def advance_step(self) -> None:
        self.update(
            step_index=self.r.step_index + 1,
            step_started_at=self.now,
            passed_windows=0,
            failed_windows=0,
            window_started_at=None,
            window_baseline=None,
        )

    def pause(self, message: str) -> None:
        self.update(state=RolloutState.PAUSED, message=message, window_started_at=None, window_baseline=None)
        self.event("RolloutPaused", message)

    def new_version_state(self) -> ServeState | None:
        return self.serve.versions.get(self.r.canary.version)
