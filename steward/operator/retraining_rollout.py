"""A passing candidate's way to production (pure): its canary through `spec.rollout`, and the registry kept
consistent with what serves.

One reconcile path: the rollout machine (`steward.operator.rollout`) rolls the candidate out exactly as it
rolls out a moved alias, with the same steps, analysis and `requireMonitors` gate. This module only says
which version the machine follows in a pass (`rollout_target`) and, after the machine has decided, what the
registry and `status.retraining` must do about it (`candidate_step`):

- Pending: the candidate passed offline and the deployment follows an alias. When no other rollout runs and
  the version it was compared with still serves and is still what the alias names, it becomes the target:
  the machine starts its canary, the challenger alias is set on it, `Canary`.
- Canary: the machine follows the candidate while the alias names the version it replaces (or the candidate
  itself). When the rollout ends: promoted -> the followed alias moves to the candidate, the challenger alias
  is cleared; rolled back / aborted / superseded -> the challenger alias is cleared and the followed alias,
  never moved by Steward, is put back if a person had pointed it at the candidate.
- A promoted candidate that a `rollback` monitor reverts within its window: the followed alias, moved by
  Steward on promotion, goes back to the version that serves again.

Registry writes run before the serve change and before the records of the pass (the reconciler stops at the
first refused action, so no record claims a move that failed); each is idempotent, and each record is keyed
by the run and the step (the champion's move by the alias cause that `alias_drafts` would compute), so a pass
replayed after a crash neither writes nor records anything twice. A pinned `spec.model.version` never gets
here: its candidate is recommended (`steward.operator.retraining`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from steward.api.model_deployment import AliasTarget, ModelDeployment, StableVersion
from steward.api.retraining import (
    CandidateOutcome,
    CandidateRollout,
    CandidateRolloutState,
    RetrainingRun,
    RetrainingRunRecord,
    RetrainingSpec,
    RetrainingStatus,
    RunOutcome,
)
from steward.api.rollout import Outcome, RolloutRecord
from steward.api.training_job import TrainingResult
from steward.audit.records import OPERATOR_ACTOR, AuditAction, ModelVersions, RecordDraft
from steward.operator.actions import Action, DeleteModelAlias, EventType, PostEvent, SetModelAlias
from steward.operator.audit_drafts import deployment_ref
from steward.operator.observations import ResolvedModel
from steward.operator.rollout import RolloutDecision

_ENDED = {
    Outcome.PROMOTED: CandidateOutcome.PROMOTED,
    Outcome.ROLLED_BACK: CandidateOutcome.ROLLED_BACK,
    Outcome.ABORTED: CandidateOutcome.ABORTED,
    Outcome.SUPERSEDED: CandidateOutcome.SUPERSEDED,
}


@dataclass(frozen=True)
class CandidateStep:
    status: RetrainingStatus | None
    # SetModelAlias / DeleteModelAlias, to run before the pass's serve change.
    registry: list[Action] = field(default_factory=list)
    drafts: list[RecordDraft] = field(default_factory=list)
    events: list[PostEvent] = field(default_factory=list)
    # What status.aliasTarget says once this pass moved the followed alias; None: it did not.
    alias_target: AliasTarget | None = None


def should_roll_out(md: ModelDeployment, challenger_alias: str) -> bool:
    """A passing candidate is canaried by Steward only when the deployment follows an alias other than the
    challenger's; a pinned version is never replaced by automation."""
    alias = md.spec.model.alias
    return md.spec.model.version is None and alias is not None and alias != challenger_alias


def queued_candidate(
    md: ModelDeployment, spec: RetrainingSpec, run: RetrainingRun, result: TrainingResult, now: datetime
) -> CandidateRollout | None:
    """A candidate that passed, queued for its canary; None when Steward does not roll it out."""
    if (
        not should_roll_out(md, spec.challenger_alias)
        or result.candidate_version is None
        or run.parent_version is None
        or md.spec.model.alias is None
    ):
        return None
    return CandidateRollout(
        submission_id=run.submission_id,
        version=result.candidate_version,
        run_id=result.candidate_run_id,
        from_version=run.parent_version,
        alias=md.spec.model.alias,
        challenger_alias=spec.challenger_alias,
        state=CandidateRolloutState.PENDING,
        since=now,
        message=f"passed offline; queued for a canary over version {run.parent_version}",
    )


def candidate_queued(status: RetrainingStatus | None) -> bool:
    return status is not None and status.candidate_rollout is not None


def is_followed(md: ModelDeployment, cr: CandidateRollout) -> bool:
    return md.spec.model.version is None and md.spec.model.alias == cr.alias


def candidate_model(md: ModelDeployment, cr: CandidateRollout) -> ResolvedModel:
    name = md.spec.model.name
    return ResolvedModel(name, cr.version, f"models:/{name}/{cr.version}", None, cr.run_id)


def should_start_canary(
    md: ModelDeployment, cr: CandidateRollout, model: ResolvedModel, stable: StableVersion
) -> bool:
    """Nothing else rolls out, and what the candidate was compared with is what serves and what the alias
    names."""
    return (
        cr.state == CandidateRolloutState.PENDING
        and is_followed(md, cr)
        and md.status.rollout is None
        and stable.version == cr.from_version
        and model.version == cr.from_version
    )


def rollout_target(
    md: ModelDeployment, status: RetrainingStatus | None, model: ResolvedModel, stable: StableVersion
) -> ResolvedModel:
    """The version the rollout machine follows this pass: what the alias names, or the candidate."""
    cr = status.candidate_rollout if status is not None else None
    if cr is None or not is_followed(md, cr):
        return model
    if cr.state == CandidateRolloutState.CANARY:
        # A person moving the alias elsewhere supersedes the candidate, as any alias move does.
        return candidate_model(md, cr) if model.version in (cr.from_version, cr.version) else model
    return candidate_model(md, cr) if should_start_canary(md, cr, model, stable) else model


class _Step:
    def __init__(
        self, md: ModelDeployment, status: RetrainingStatus, model: ResolvedModel, now: datetime
    ) -> None:
        self.md, self.status, self.model, self.now = md, status, model, now
        self.registry: list[Action] = []
        self.drafts: list[RecordDraft] = []
        self.events: list[PostEvent] = []
        self.alias_target: AliasTarget | None = None

    def run_of(self, submission_id: str) -> RetrainingRunRecord | None:
        return next((r for r in self.status.runs if r.submission_id == submission_id), None)

    def mark_run(self, submission_id: str, outcome: CandidateOutcome, message: str) -> None:
        runs = [
            r.model_copy(update={"rollout": outcome, "rollout_message": message[:2000]})
            if r.submission_id == submission_id
            else r
            for r in self.status.runs
        ]
        self.status = self.status.model_copy(update={"runs": runs})

    def record(
        self, submission_id: str, versions: tuple[str, str], step: str, reason: str, evidence: dict[str, Any]
    ) -> None:
        """A candidate-rollout record: `versions` is (the version it replaces, the candidate)."""
        run = self.run_of(submission_id)
        self.drafts.append(
            RecordDraft(
                deployment=deployment_ref(self.md),
                actor=OPERATOR_ACTOR,
                action=AuditAction.CANDIDATE_ROLLOUT,
                model=ModelVersions(
                    name=self.md.spec.model.name, from_version=versions[0], to_version=versions[1]
                ),
                reason=reason[:1000],
                evidence={
                    "step": step,
                    "submission_id": submission_id,
                    "trigger_cause": run.trigger.cause if run is not None else None,
                    **evidence,
                },
                cause=f"candidate-rollout:{submission_id}:{step}",
            )
        )

    def event(self, warning: bool, reason: str, message: str) -> None:
        self.events.append(PostEvent(EventType.WARNING if warning else EventType.NORMAL, reason, message))

    def move_alias(
        self, alias: str, from_version: str, to_version: str, why: str, submission_id: str
    ) -> None:
        """Point the followed alias at `to_version`, recorded under the cause `alias_drafts` would give the
        move it observes next pass (so a replay after a crash records it once)."""
        self.registry.append(SetModelAlias(self.md.spec.model.name, alias, to_version))
        seen = self.md.status.alias_target
        moves = seen.moves if seen is not None and seen.alias == alias else 0
        self.alias_target = AliasTarget(alias=alias, version=to_version, moves=moves + 1)
        self.drafts.append(
            RecordDraft(
                deployment=deployment_ref(self.md),
                actor=OPERATOR_ACTOR,
                action=AuditAction.ALIAS_MOVED,
                model=ModelVersions(
                    name=self.md.spec.model.name, from_version=from_version, to_version=to_version
                ),
                reason=f"Steward moved registry alias @{alias} from version {from_version} to {to_version}: "
                f"{why}"[:1000],
                evidence={"alias": alias, "by": "steward", "submission_id": submission_id},
                cause=f"alias:{alias}:move-{moves + 1}:{from_version}->{to_version}",
            )
        )

    # ------------------------------------------------------------------ states
    def pending(self, cr: CandidateRollout, outcome: RolloutDecision, stable: StableVersion) -> None:
        r = outcome.rollout
        if not is_followed(self.md, cr):
            pinned = self.md.spec.model.version
            why = f"spec.model.version now pins {pinned}" if pinned else "spec.model follows another alias"
            self.end(cr, CandidateOutcome.SUPERSEDED, f"never canaried: {why}")
        elif self.md.status.rollout is None and r is not None and r.canary.version == cr.version:
            self.registry.append(SetModelAlias(self.md.spec.model.name, cr.challenger_alias, cr.version))
            text = (
                f"candidate {cr.version} of run {cr.submission_id} starts its {r.strategy.value} rollout "
                f"over version {cr.from_version}; @{cr.challenger_alias} set to {cr.version}, "
                f"@{cr.alias} still names {cr.from_version}"
            )
            self.record(
                cr.submission_id,
                (cr.from_version, cr.version),
                "canary-started",
                text,
                {"aliases": {cr.challenger_alias: cr.version}},
            )
            self.event(False, "CandidateCanaryStarted", text)
            canary = cr.model_copy(
                update={"state": CandidateRolloutState.CANARY, "since": self.now, "message": text}
            )
            self.status = self.status.model_copy(update={"candidate_rollout": canary})
        elif outcome.blocked is not None and outcome.blocked.to_version == cr.version:
            self.end(
                cr,
                CandidateOutcome.DROPPED,
                f"never canaried: a rollout of version {cr.version} failed before under this spec "
                f"({outcome.blocked.reason})",
            )
        elif self.md.status.rollout is not None:
            text = f"waits for the rollout of version {self.md.status.rollout.canary.version} to end"
            if cr.message != text:
                waiting = cr.model_copy(update={"message": text})
                self.status = self.status.model_copy(update={"candidate_rollout": waiting})
        elif stable.version != cr.from_version or self.model.version != cr.from_version:
            self.end(
                cr,
                CandidateOutcome.DROPPED,
                f"never canaried: it was compared with version {cr.from_version}, but version "
                f"{stable.version} serves and @{cr.alias} names {self.model.version}",
            )

    def canary(self, cr: CandidateRollout, outcome: RolloutDecision, stable: StableVersion) -> None:
        finished = outcome.finished
        if finished is not None and finished.to_version == cr.version:
            self.ended(cr, finished, stable)
        elif outcome.rollout is None or outcome.rollout.canary.version != cr.version:
            # Its rollout is gone without ending as a rollout of it (the status was rebuilt): nothing of
            # it serves, so the registry is put back as for a rollback.
            now_rolling = outcome.rollout.canary.version if outcome.rollout is not None else None
            what = f"the rollout of version {now_rolling} runs" if now_rolling else "no rollout runs"
            self.clear_challenger(cr)
            self.end(cr, CandidateOutcome.SUPERSEDED, f"its canary is no longer in progress ({what})")

    def clear_challenger(self, cr: CandidateRollout) -> None:
        self.registry.append(
            DeleteModelAlias(self.md.spec.model.name, cr.challenger_alias, if_version=cr.version)
        )

    def ended(self, cr: CandidateRollout, finished: RolloutRecord, stable: StableVersion) -> None:
        result = _ENDED[finished.outcome]
        aliases: dict[str, str | None] = {cr.challenger_alias: None}
        if result == CandidateOutcome.PROMOTED:
            if self.model.version != cr.version:
                self.move_alias(
                    cr.alias,
                    self.model.version,
                    cr.version,
                    f"candidate {cr.version} of run {cr.submission_id} was promoted",
                    cr.submission_id,
                )
            aliases[cr.alias] = cr.version
            text = (
                f"candidate {cr.version} promoted ({finished.reason}); @{cr.alias} names {cr.version}, "
                f"@{cr.challenger_alias} removed if it still named {cr.version}"
            )
            self.event(False, "CandidatePromoted", text)
        else:
            if self.model.version == cr.version and result != CandidateOutcome.SUPERSEDED:
                # A person pointed the followed alias at it meanwhile: it must not name a rolled-back version.
                self.move_alias(
                    cr.alias,
                    cr.version,
                    stable.version,
                    f"candidate {cr.version} was {result.value.lower()} and version {stable.version} serves",
                    cr.submission_id,
                )
            text = (
                f"candidate {cr.version} {result.value} ({finished.reason}); version {stable.version} serves"
            )
            if is_followed(self.md, cr):
                # Observed this pass (or just written): what the followed alias names now.
                aliases[cr.alias] = stable.version if self.model.version == cr.version else self.model.version
                text += f", @{cr.alias} names {aliases[cr.alias]}"
            text += f", @{cr.challenger_alias} removed if it still named {cr.version}"
            self.event(True, "CandidateRolledBack", text)
        # After the followed alias: a crash between the two never leaves the candidate without either.
        self.clear_challenger(cr)
        self.end(
            cr, result, text, {"aliases": aliases, "rollout_outcome": finished.outcome.value}, announce=False
        )

    def end(
        self,
        cr: CandidateRollout,
        result: CandidateOutcome,
        text: str,
        evidence: dict[str, Any] | None = None,
        announce: bool = True,
    ) -> None:
        if announce:
            self.event(result != CandidateOutcome.PROMOTED, "CandidateRolloutEnded", f"{cr.version}: {text}")
        self.record(
            cr.submission_id,
            (cr.from_version, cr.version),
            result.value.lower(),
            f"candidate {cr.version}: {text}",
            evidence or {},
        )
        self.mark_run(cr.submission_id, result, text)
        self.status = self.status.model_copy(update={"candidate_rollout": None, "message": text[:2000]})

    def reverted(self, finished: RolloutRecord, stable: StableVersion) -> None:
        """A promoted candidate a monitor reverted: the alias Steward moved goes back with the traffic."""
        version = finished.to_version
        run = next(
            (
                r
                for r in reversed(self.status.runs)
                if r.candidate_version == version
                and r.outcome == RunOutcome.CANDIDATE_PASSED
                and r.rollout == CandidateOutcome.PROMOTED
            ),
            None,
        )
        alias = self.md.spec.model.alias
        if run is None or alias is None or self.md.spec.model.version is not None:
            return
        if self.model.version == version:
            self.move_alias(
                alias,
                version,
                stable.version,
                f"promoted candidate {version} was rolled back ({finished.reason})",
                run.submission_id,
            )
        text = f"reverted after promotion ({finished.reason}); version {stable.version} serves"
        self.event(True, "CandidateReverted", f"candidate {version} {text}")
        self.record(
            run.submission_id,
            (run.parent_version or stable.version, version),
            "reverted",
            f"candidate {version} {text}",
            {"aliases": {alias: stable.version}},
        )
        self.mark_run(run.submission_id, CandidateOutcome.REVERTED, text)


def candidate_step(
    md: ModelDeployment,
    status: RetrainingStatus | None,
    model: ResolvedModel,
    outcome: RolloutDecision,
    now: datetime,
) -> CandidateStep:
    """After the rollout machine's pass: the candidate's state, the registry's writes, records and Events."""
    if status is None:
        return CandidateStep(status)
    step = _Step(md, status, model, now)
    cr = status.candidate_rollout
    if cr is not None and cr.state == CandidateRolloutState.PENDING:
        step.pending(cr, outcome, outcome.stable)
    elif cr is not None:
        step.canary(cr, outcome, outcome.stable)
    finished = outcome.finished
    if (
        finished is not None
        and finished.outcome == Outcome.ROLLED_BACK
        and (cr is None or finished.to_version != cr.version)
    ):
        step.reverted(finished, outcome.stable)
    return CandidateStep(step.status, step.registry, step.drafts, step.events, step.alias_target)
