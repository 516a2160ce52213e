"""Retraining's decisions (pure): when a run is asked for, whether the guardrails allow it, when it is
submitted, how it ends, and whether its candidate passes the offline evaluation.

A run moves Requested -> (AwaitingApproval ->) Approved -> Running -> finished (one of `RunOutcome`). It is
asked for by a monitor's breach of the stable version (`onBreach: retrain`) or by a person's command; its
Ray submission id is derived from the deployment and the cause of its `retraining-requested` record, so a
restarted operator that decides the same pass again submits the same id, which Ray runs once. The job gets
the stored request record's sequence number and hash, so a run is submitted only after the trail took it.

Automation never replaces a pinned version (`spec.model.version`): its candidate that passes is recommended
(status, Event, record). With a followed alias, a passing candidate is queued for its canary
(`status.retraining.candidateRollout`), which `steward.operator.retraining_rollout` drives.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from steward.api.model_deployment import ModelDeployment
from steward.api.monitoring_status import MonitorResultSummary
from steward.api.retraining import (
    MAX_LOG_TAIL_CHARS,
    MAX_RUNS_IN_STATUS,
    Approval,
    RetrainingCommand,
    RetrainingCommandKind,
    RetrainingRun,
    RetrainingRunRecord,
    RetrainingSpec,
    RetrainingState,
    RetrainingStatus,
    RetrainingTrigger,
    RunOutcome,
    TriggerKind,
)
from steward.api.rollout import duration_s
from steward.api.training_job import TrainingJob, TrainingResult, retraining_prefix
from steward.audit.records import OPERATOR_ACTOR, RecordDraft
from steward.operator.actions import EventType, PostEvent
from steward.operator.audit_drafts import actor_of
from steward.operator.monitor_jobs import JobState
from steward.operator.retraining_drafts import (
    approved_draft,
    evaluated_draft,
    finished_draft,
    requested_draft,
    started_draft,
)
from steward.operator.retraining_k8s import kubernetes_job_name
from steward.operator.retraining_observation import RetrainingObservation, TrainingJobObservation
from steward.operator.retraining_plan import (
    breach_trigger,
    evaluate,
    guardrail_refusal,
    pending_command,
    recommendation,
    training_job,
    training_submission_id,
)
from steward.operator.retraining_rollout import queued_candidate

# A job Ray no longer knows (its cluster restarted) is submitted again under its id this many times in all.
MAX_ATTEMPTS = 3
# How soon to look again: a request waits for the trail to store it; a job runs for minutes.
REQUEST_POLL_S = 2.0
RUNNING_POLL_S = 10.0


@dataclass(frozen=True)
class TrainingSubmission:
    """A Ray Job to submit: the spec's entrypoint and resources, with the TrainingJob for its environment."""

    submission_id: str
    spec: RetrainingSpec
    job: TrainingJob
    # The Kubernetes Job's name when the run is one (spec.retraining.kubernetesJob), else a Ray Job.
    kubernetes_job: str | None = None


@dataclass(frozen=True)
class RetrainingDecision:
    status: RetrainingStatus | None
    submit: TrainingSubmission | None = None
    stop: str | None = None
    drafts: list[RecordDraft] = field(default_factory=list)
    events: list[PostEvent] = field(default_factory=list)
    requeue_after_s: float | None = None


class _Run:
    """One pass over status.retraining: collects the new status, drafts, events and job actions."""

    def __init__(
        self,
        md: ModelDeployment,
        spec: RetrainingSpec,
        old: RetrainingStatus,
        now: datetime,
        store_uri: str | None,
        tracking_uri: str | None,
    ) -> None:
        self.md, self.spec, self.now = md, spec, now
        self.store_uri, self.tracking_uri = store_uri, tracking_uri
        self.status = old
        self.drafts: list[RecordDraft] = []
        self.events: list[PostEvent] = []
        self.submit: TrainingSubmission | None = None
        self.stop: str | None = None

    def update(self, **changes: object) -> None:
        self.status = self.status.model_copy(update=changes)

    def event(self, warning: bool, reason: str, message: str) -> None:
        kind = EventType.WARNING if warning else EventType.NORMAL
        self.events.append(PostEvent(kind, reason, message[:1000]))

    # ------------------------------------------------------------------ asking
    def ask(self, trigger: RetrainingTrigger, breach: MonitorResultSummary | None) -> None:
        refusal = guardrail_refusal(self.spec, self.status, self.md, self.store_uri, self.now)
        self.drafts.append(requested_draft(self.md, self.spec, trigger, breach, refusal))
        if refusal is not None:
            self.event(
                True, "RetrainingRefused", f"retraining asked for ({trigger.reason}) refused: {refusal}"
            )
            self.update(message=f"refused: {refusal}")
            return
        assert self.store_uri is not None and self.md.status.stable is not None  # the guardrails checked
        sid = training_submission_id(self.md, trigger.cause)
        run = RetrainingRun(
            submission_id=sid,
            trigger=trigger,
            requested_at=self.now,
            parent_version=self.md.status.stable.version,
            result_uri=f"{retraining_prefix(self.store_uri, self.md.key, sid)}/result.json",
            message="requested; waiting for the audit trail to store the request",
        )
        self.update(current=run, state=RetrainingState.REQUESTED, message=run.message)
        self.event(False, "RetrainingRequested", f"retraining requested ({trigger.reason}); run {sid}")

    def command(self, command: RetrainingCommand) -> RetrainingTrigger | None:
        self.update(handled_command=command.id)
        who = actor_of(self.md, command.actor)
        why = command.reason or "no reason given"
        if command.command == RetrainingCommandKind.RETRAIN:
            return RetrainingTrigger(
                kind=TriggerKind.MANUAL,
                cause=f"retraining-requested:command:{command.id}",
                reason=f"asked by {who}: {why}",
                actor=who,
            )
        run = self.status.current
        if run is None or self.status.state != RetrainingState.AWAITING_APPROVAL:
            text = f"approve by {who} ignored: no run awaits approval"
            self.event(True, "RetrainingCommandIgnored", text)
            self.update(message=text)
            return None
        run = run.model_copy(update={"approved_by": who, "approval_reason": why})
        self.drafts.append(approved_draft(self.md, run))
        self.update(current=run, state=RetrainingState.APPROVED, message=f"approved by {who}: {why}")
        self.event(False, "RetrainingApproved", f"run {run.submission_id} approved by {who}: {why}")
        return None

    # ------------------------------------------------------------------ following
    def advance(self, observed: RetrainingObservation, can_act: bool) -> None:
        run = self.status.current
        if run is None:
            return
        if self.status.state == RetrainingState.REQUESTED:
            if observed.trail and observed.trigger_record is None:
                return  # the record is not stored yet: its hash goes to the job
            stored = observed.trigger_record
            trigger = run.trigger.model_copy(
                update={
                    "record_seq": stored.seq if stored else None,
                    "record_hash": stored.hash if stored else None,
                }
            )
            run = run.model_copy(update={"trigger": trigger})
            if self.spec.approval == Approval.MANUAL:
                text = (
                    f"run {run.submission_id} awaits approval: steward retrain approve "
                    f"{self.md.metadata.name} -n {self.md.metadata.namespace} --reason ..."
                )
                self.update(
                    current=run.model_copy(update={"message": text}),
                    state=RetrainingState.AWAITING_APPROVAL,
                    message=text,
                )
                self.event(False, "RetrainingAwaitingApproval", text)
                return
            run = run.model_copy(
                update={"approved_by": OPERATOR_ACTOR, "approval_reason": "policy: approval automatic"}
            )
            self.drafts.append(approved_draft(self.md, run))
            self.update(current=run, state=RetrainingState.APPROVED)
        if self.status.state == RetrainingState.APPROVED and can_act:
            self._submit(run)
        elif self.status.state == RetrainingState.RUNNING:
            self._follow(run, observed.job, can_act)

    def _submit(self, run: RetrainingRun) -> None:
        assert self.store_uri is not None  # a run exists only with a store
        k8s_job = run.kubernetes_job
        if run.attempts == 0 and self.spec.kubernetes_job is not None:
            k8s_job = kubernetes_job_name(self.md.metadata.name, run.submission_id)
        self.submit = TrainingSubmission(
            run.submission_id,
            self.spec,
            training_job(self.md, self.spec, run, self.store_uri, self.tracking_uri),
            k8s_job,
        )
        run = run.model_copy(
            update={
                "submitted_at": run.submitted_at or self.now,
                "attempts": run.attempts + 1,
                "message": "submitted",
                "kubernetes_job": k8s_job,
            }
        )
        if run.attempts == 1:
            self.drafts.append(started_draft(self.md, run, self.spec, self.submit.job))
            where = f"as the Kubernetes Job {k8s_job}" if k8s_job else "to Ray"
            self.event(False, "RetrainingStarted", f"run {run.submission_id} submitted {where}")
        self.update(current=run, state=RetrainingState.RUNNING, message=f"run {run.submission_id} running")

    def _follow(self, run: RetrainingRun, job: TrainingJobObservation | None, can_act: bool) -> None:
        if job is not None and job.result is not None:
            self._finish_with(run, job.result)
            return
        started = run.submitted_at or run.requested_at
        if (self.now - started).total_seconds() > duration_s(self.spec.timeout):
            if not can_act:
                return  # the stop could not be sent: decided again next pass
            if job is None or job.state == JobState.RUNNING:
                self.stop = run.submission_id
            self._finish(
                run, RunOutcome.TIMED_OUT, f"the job did not finish within {self.spec.timeout}; stopped"
            )
            return
        if job is None or job.state == JobState.RUNNING:
            return
        if job.state == JobState.MISSING:
            if not can_act:
                return
            if run.attempts < MAX_ATTEMPTS:
                self._submit(run)  # the same id: Ray lost it (cluster restart), nothing of it runs
                return
            lost = f"the job was lost {run.attempts} time(s) (Ray or Kubernetes no longer knew it); giving up"
            self._finish(run, RunOutcome.FAILED, lost)
            return
        if job.state == JobState.SUCCEEDED:
            self._finish(run, RunOutcome.FAILED, "the job succeeded but wrote no result", job.problem or None)
            return
        self._finish(run, RunOutcome.FAILED, "the training job failed", job.problem or None)

    def _finish_with(self, run: RetrainingRun, result: TrainingResult) -> None:
        if result.error is not None or result.candidate_version is None:
            why = result.error or "no version registered"
            self._finish(run, RunOutcome.FAILED, f"no candidate: {why}", result=result)
            return
        verdict = evaluate(self.spec.evaluation, result)
        candidate = result.candidate_version
        if verdict.passed:
            outcome, message = (
                RunOutcome.CANDIDATE_PASSED,
                recommendation(self.md, self.spec, candidate, run.parent_version),
            )
        else:
            failed = "; ".join(f"{c.name} {c.detail}" for c in verdict.checks if not c.passed)
            outcome = RunOutcome.CANDIDATE_REJECTED
            message = f"candidate {candidate} rejected offline, never deployed: {failed}"
        self._finish(run, outcome, message, candidate=candidate, result=result)
        if verdict.passed and run.parent_version is not None:
            self.update(candidate_rollout=queued_candidate(self.md, self.spec, run, result, self.now))
        record = self.status.runs[-1]
        self.drafts.append(
            evaluated_draft(self.md, record, result, self.spec.evaluation, verdict.checks, message)
        )

    def _finish(
        self,
        run: RetrainingRun,
        outcome: RunOutcome,
        message: str,
        log_tail: str | None = None,
        candidate: str | None = None,
        result: TrainingResult | None = None,
    ) -> None:
        record = RetrainingRunRecord(
            submission_id=run.submission_id,
            trigger=run.trigger,
            requested_at=run.requested_at,
            started_at=run.submitted_at,
            finished_at=self.now,
            outcome=outcome,
            parent_version=run.parent_version,
            candidate_version=candidate,
            message=message[:2000],
            log_tail=log_tail[-MAX_LOG_TAIL_CHARS:] if log_tail else None,
        )
        runs = [*self.status.runs, record][-MAX_RUNS_IN_STATUS:]
        self.update(
            current=None, state=RetrainingState.IDLE, runs=runs, message=f"{outcome.value}: {message}"
        )
        self.drafts.append(finished_draft(self.md, record, result))
        if outcome == RunOutcome.CANDIDATE_PASSED:
            pinned = self.md.spec.model.version is not None
            self.event(False, "CandidateRecommended" if pinned else "CandidateReady", message)
        elif outcome == RunOutcome.CANDIDATE_REJECTED:
            self.event(True, "CandidateRejected", message)
        else:
            self.event(True, "RetrainingFailed", f"run {run.submission_id}: {message}")


def decide_retraining(
    md: ModelDeployment,
    observed: RetrainingObservation,
    breaches: Sequence[MonitorResultSummary],
    now: datetime,
    *,
    store_uri: str | None,
    tracking_uri: str | None,
    can_act: bool,
) -> RetrainingDecision:
    spec, old = md.spec.retraining, md.status.retraining
    if spec is None:
        if old is None or old.current is None:
            return RetrainingDecision(status=old)
        # The section left the spec mid-run: the run is cancelled, and its job stopped.
        run = old.current
        stop = run.submission_id if run.submitted_at is not None and can_act else None
        ended = RetrainingRunRecord(
            submission_id=run.submission_id,
            trigger=run.trigger,
            requested_at=run.requested_at,
            started_at=run.submitted_at,
            finished_at=now,
            outcome=RunOutcome.FAILED,
            parent_version=run.parent_version,
            message="cancelled: spec.retraining was removed",
        )
        status = old.model_copy(
            update={
                "current": None,
                "state": RetrainingState.IDLE,
                "runs": [*old.runs, ended][-MAX_RUNS_IN_STATUS:],
            }
        )
        return RetrainingDecision(status=status, stop=stop, drafts=[finished_draft(md, ended, None)])
    one = _Run(md, spec, old or RetrainingStatus(), now, store_uri, tracking_uri)
    triggers: list[tuple[RetrainingTrigger, MonitorResultSummary | None]] = []
    command = pending_command(md, one.status.handled_command)
    if isinstance(command, RetrainingCommand):
        if (trigger := one.command(command)) is not None:
            triggers.append((trigger, None))
    elif isinstance(command, str):
        one.update(message=command)
    triggers += [(breach_trigger(b), b) for b in breaches]
    for trigger, breach in triggers:
        one.ask(trigger, breach)
    one.advance(observed, can_act)
    state = one.status.state
    poll = {
        RetrainingState.REQUESTED: REQUEST_POLL_S,
        RetrainingState.APPROVED: REQUEST_POLL_S,
        RetrainingState.AWAITING_APPROVAL: RUNNING_POLL_S,
        RetrainingState.RUNNING: RUNNING_POLL_S,
    }.get(state)
    return RetrainingDecision(
        status=one.status,
        submit=one.submit,
        stop=one.stop,
        drafts=one.drafts,
        events=one.events,
        requeue_after_s=poll,
    )
