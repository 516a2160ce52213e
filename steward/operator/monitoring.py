"""Monitoring's decisions (pure): which monitor jobs to submit, and what each finished job's result does.

`decide_monitoring` reads spec.monitoring, status.monitoring, the live versions, what the reconciler observed
of the jobs in flight (Ray's job state and the result file) and the time, and returns the next
status.monitoring, the jobs to submit and stop, audit drafts, Events, the Monitoring condition, and, for a
`rollback` monitor's breach, what the core should do about the rollout.

Each result is acted on once: its submission id goes to `status.monitoring.handled`, and every audit draft is
keyed by it, so a pass replayed after a restart adds no record and takes no second action.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from steward.api.conditions import ConditionStatus, ConditionType, Reason
from steward.api.model_deployment import ModelDeployment, ModelDeploymentStatus
from steward.api.monitor_results import MonitorVerdict
from steward.api.monitoring import BreachAction, MonitorSpec
from steward.api.monitoring_status import (
    MAX_HANDLED_IN_STATUS,
    MAX_RESULTS_IN_STATUS,
    CaptureStatus,
    MonitoringStatus,
    MonitorJobStatus,
    MonitorResultSummary,
    WindowRef,
)
from steward.api.rollout import Outcome, RolloutState, duration_s
from steward.audit.records import RecordDraft
from steward.operator.actions import EventType, PostEvent
from steward.operator.monitor_jobs import JobObservation, JobState, job_outcome
from steward.operator.monitoring_condition import Condition, capture_failing, monitoring_condition
from steward.operator.monitoring_drafts import figures, policy_draft, run_draft
from steward.operator.monitoring_schedule import (
    DEFAULT_REJUDGE_AFTER_S,
    JobContext,
    LiveVersion,
    Submission,
    due_submissions,
    needs_rejudging,
    next_due_in_s,
)

DEFAULT_JOB_TIMEOUT_S = 1800.0
# While jobs run, look again this often (a window's result is worth having within seconds, not at resync).
POLL_S = 15.0
TRUE, FALSE, UNKNOWN = ConditionStatus.TRUE, ConditionStatus.FALSE, ConditionStatus.UNKNOWN


@dataclass(frozen=True)
class FailCanary:
    """A `rollback` monitor breached on the canary of a running rollout: fail it (the rollout's own path)."""

    version: str
    reason: str


@dataclass(frozen=True)
class RollbackPromotion:
    """A `rollback` monitor breached on a version promoted within `rollbackWindow`: stable goes back."""

    from_version: str
    to_version: str
    reason: str


@dataclass(frozen=True)
class MonitoringDecision:
    status: MonitoringStatus | None
    submissions: list[Submission] = field(default_factory=list)
    drafts: list[RecordDraft] = field(default_factory=list)
    events: list[PostEvent] = field(default_factory=list)
    conditions: list[Condition] = field(default_factory=list)
    canary_failure: FailCanary | None = None
    promotion_rollback: RollbackPromotion | None = None
    # Breaches of the stable version by `retrain` monitors: each asks spec.retraining for a run.
    retrain: list[MonitorResultSummary] = field(default_factory=list)
    requeue_after_s: float | None = None
    # Jobs to stop on Ray: over their time limit, or of monitors no longer in the spec.
    stops: list[str] = field(default_factory=list)


def live_versions(status: ModelDeploymentStatus) -> list[LiveVersion]:
    """Versions taking traffic now: stable, and the canary of a rollout that has started moving traffic."""
    out = []
    if status.stable is not None:
        promoted = next(
            (
                r.finished_at
                for r in reversed(status.rollout_history)
                if r.outcome == Outcome.PROMOTED and r.to_version == status.stable.version
            ),
            None,
        )
        out.append(LiveVersion(status.stable.version, "stable", since=promoted, run_id=status.stable.run_id))
    rollout = status.rollout
    if rollout is not None and rollout.state in (RolloutState.PROGRESSING, RolloutState.PAUSED):
        out.append(
            LiveVersion(
                rollout.canary.version, "canary", since=rollout.started_at, run_id=rollout.canary.run_id
            )
        )
    return out


def _policy(
    md: ModelDeployment, spec: MonitorSpec, s: MonitorResultSummary
) -> tuple[str, FailCanary | None, RollbackPromotion | None]:
    """What a breach does: (action name for the record, canary failure, promotion rollback)."""
    reason = f"monitor {s.monitor} breached on version {s.version}: {figures(s)}"
    status = md.status
    if spec.on_breach == BreachAction.RETRAIN:
        if status.stable is not None and status.stable.version == s.version:
            return "retrain", None, None
        return "alert (retraining follows breaches of the stable version only)", None, None
    if spec.on_breach != BreachAction.ROLLBACK:
        return "alert", None, None
    rollout = status.rollout
    if (
        rollout is not None
        and rollout.canary.version == s.version
        and rollout.state
        in (
            RolloutState.WARMING,
            RolloutState.PROGRESSING,
            RolloutState.PAUSED,
        )
    ):
        return "fail-canary", FailCanary(s.version, reason), None
    if rollout is None and status.stable is not None and status.stable.version == s.version:
        promotion = next(
            (
                r
                for r in reversed(status.rollout_history)
                if r.outcome == Outcome.PROMOTED and r.to_version == s.version
            ),
            None,
        )
        window = timedelta(seconds=duration_s(md.spec.monitoring.rollback_window))
        if promotion is None:
            return "alert (no promotion to undo: the version was deployed, not rolled out)", None, None
        # Judged by the traffic's time, not the job's: a late result about early traffic still counts.
        if not promotion.finished_at <= s.window_end <= promotion.finished_at + window:
            return f"alert (outside the rollback window of {md.spec.monitoring.rollback_window})", None, None
        return (
            "rollback-promotion",
            None,
            RollbackPromotion(from_version=s.version, to_version=promotion.from_version, reason=reason),
        )
    return "alert (the version no longer serves alone: nothing to roll back)", None, None


def _capture_only(
    capture: CaptureStatus | None, old: MonitoringStatus, stops: list[str]
) -> MonitoringDecision:
    """Capture with no monitors (e.g. collecting data before monitors are set up): its counters and a
    condition that says whether the store takes what is sampled."""
    current = capture if capture is not None else old.capture
    condition = capture_failing(capture, old)
    if condition is None:
        figures_text = "no figures from the router yet"
        if current is not None:
            figures_text = f"{current.written} record(s) written, {current.dropped} dropped"
        condition = (
            ConditionType.MONITORING,
            TRUE,
            Reason.CAPTURING,
            f"capture only (no monitors): {figures_text}",
        )
    return MonitoringDecision(status=MonitoringStatus(capture=current), conditions=[condition], stops=stops)


def decide_monitoring(
    md: ModelDeployment,
    observed: Mapping[str, JobObservation],
    now: datetime,
    store_uri: str | None,
    *,
    live: list[LiveVersion] | None = None,
    tracking_uri: str | None = None,
    capture: CaptureStatus | None = None,
    rejudge_after_s: float = DEFAULT_REJUDGE_AFTER_S,
    job_timeout_s: float = DEFAULT_JOB_TIMEOUT_S,
) -> MonitoringDecision:
    spec = md.spec.monitoring
    old = md.status.monitoring or MonitoringStatus()
    live = live_versions(md.status) if live is None else live
    by_name = {m.name: m for m in spec.monitors}
    if not spec.monitors and spec.capture is not None and store_uri is not None:
        return _capture_only(capture, old, [j.submission_id for j in old.jobs])
    if not spec.monitors:
        if old == MonitoringStatus():
            return MonitoringDecision(status=md.status.monitoring)
        return MonitoringDecision(status=None, stops=[j.submission_id for j in old.jobs])
    if store_uri is None:
        why = (
            "spec.monitoring has monitors but the operator has no monitoring store "
            "(set STEWARD_MONITORING_URI)"
        )
        return MonitoringDecision(
            status=old,
            conditions=[(ConditionType.MONITORING, UNKNOWN, Reason.MONITORING_NOT_CONFIGURED, why)],
        )

    results = {(r.monitor, r.version): r for r in old.results}
    handled = list(old.handled)
    awaiting = list(old.awaiting_labels)
    jobs: list[MonitorJobStatus] = []
    decision_drafts: list[RecordDraft] = []
    events: list[PostEvent] = []
    stops: list[str] = []
    canary_failure: FailCanary | None = None
    promotion_rollback: RollbackPromotion | None = None
    retrain: list[MonitorResultSummary] = []
    for job in old.jobs:
        if job.submission_id in handled:
            continue
        monitor = by_name.get(job.monitor)
        if monitor is None:
            stops.append(job.submission_id)  # the monitor left the spec: its job judges nothing anyone wants
            continue
        summary, full, in_flight = job_outcome(job, observed.get(job.submission_id), now, job_timeout_s)
        if in_flight:
            jobs.append(job)
            continue
        if summary is None:
            continue  # Ray lost it: dropped, and the window is due again under the same id
        if summary.verdict == MonitorVerdict.ERROR and observed[job.submission_id].state == JobState.RUNNING:
            stops.append(job.submission_id)
        handled.append(job.submission_id)
        key = (summary.monitor, summary.version)
        before = results.get(key)
        if before is None or summary.window_end >= before.window_end:
            results[key] = summary
        if job.attempt == 0 and needs_rejudging(monitor, summary):
            awaiting.append(
                WindowRef(
                    monitor=job.monitor,
                    version=job.version,
                    window_start=job.window_start,
                    window_end=job.window_end,
                )
            )
        else:
            awaiting = [
                w
                for w in awaiting
                if (w.monitor, w.version, w.window_end) != (job.monitor, job.version, job.window_end)
            ]
        decision_drafts.append(run_draft(md, summary, full))
        was = before.verdict if before is not None else None
        if summary.verdict == MonitorVerdict.ERROR and was != MonitorVerdict.ERROR:
            events.append(
                PostEvent(
                    EventType.WARNING,
                    Reason.MONITOR_ERROR.value,
                    f"{summary.monitor} on version {summary.version}: {summary.summary}",
                )
            )
        if summary.verdict != MonitorVerdict.BREACH:
            continue
        action, fail, back = _policy(md, monitor, summary)
        canary_failure = canary_failure or fail
        promotion_rollback = promotion_rollback or back
        if action == "retrain":
            retrain.append(summary)
        decision_drafts.append(policy_draft(md, monitor, summary, action))
        if was != MonitorVerdict.BREACH or fail or back:
            message = (
                f"monitor {summary.monitor} breached on version {summary.version}: "
                f"{figures(summary)}; {action}"
            )
            if summary.report_uri:
                message += f"; report {summary.report_uri}"
            events.append(PostEvent(EventType.WARNING, Reason.MONITOR_BREACHED.value, message[:1000]))

    ctx = JobContext(
        uid=md.metadata.uid,
        deployment=md.key,
        model_name=md.spec.model.name,
        store_uri=store_uri,
        tracking_uri=tracking_uri,
        capture=spec.capture,
    )
    interim = MonitoringStatus(
        results=list(results.values()), jobs=jobs, handled=handled, awaiting_labels=awaiting
    )
    submissions = due_submissions(ctx, spec.monitors, live, interim, now, rejudge_after_s)
    for sub in submissions:
        if sub.entry.attempt:
            awaiting = [
                w
                for w in awaiting
                if (w.monitor, w.version, w.window_end)
                != (sub.entry.monitor, sub.entry.version, sub.entry.window_end)
            ]
    jobs += [s.entry for s in submissions]

    live_ids = {v.version for v in live}
    current = [r for r in results.values() if r.monitor in by_name and r.version in live_ids]
    # Results of versions that no longer serve stay (the CLI shows them) while there is room, newest first.
    kept = sorted(
        results.values(),
        key=lambda r: (r.monitor in by_name and r.version in live_ids, r.window_end),
        reverse=True,
    )
    status = MonitoringStatus(
        results=sorted(kept[:MAX_RESULTS_IN_STATUS], key=lambda r: (r.monitor, r.version)),
        jobs=jobs[:MAX_RESULTS_IN_STATUS],
        handled=handled[-MAX_HANDLED_IN_STATUS:],
        awaiting_labels=awaiting[-MAX_RESULTS_IN_STATUS:],
        capture=capture if capture is not None else old.capture,
    )
    due = next_due_in_s(spec.monitors, now)
    requeue = min(x for x in (due, POLL_S if jobs else None) if x is not None) if (due or jobs) else None
    return MonitoringDecision(
        status=status,
        submissions=submissions,
        drafts=decision_drafts,
        events=events,
        conditions=[monitoring_condition(current, capture, old)],
        canary_failure=canary_failure,
        promotion_rollback=promotion_rollback,
        retrain=retrain,
        requeue_after_s=requeue,
        stops=stops,
    )
