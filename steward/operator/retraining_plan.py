"""Retraining's plan (pure): the guardrails, the run's id and job, and the offline evaluation's judgement.

Kept apart from the run's state machine (`steward.operator.retraining`) so each stays readable on its own.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import ValidationError

from steward.api.model_deployment import ModelDeployment
from steward.api.monitor_results import NOISE_STANDARD_ERRORS, Check, capture_prefix, outcomes_prefix
from steward.api.monitoring_status import MonitorResultSummary
from steward.api.retraining import (
    RETRAINING_COMMAND_ANNOTATION,
    OfflineEvaluation,
    RetrainingCommand,
    RetrainingRun,
    RetrainingSpec,
    RetrainingStatus,
    RetrainingTrigger,
    TriggerKind,
)
from steward.api.rollout import duration_s
from steward.api.training_job import TrainingJob, TrainingResult
from steward.operator.monitoring_drafts import figures

DAY = timedelta(days=1)


@dataclass(frozen=True)
class Evaluation:
    passed: bool
    checks: list[Check]


def training_submission_id(md: ModelDeployment, cause: str) -> str:
    """`steward-retrain-<uid8>-<16 hex of sha256(deployment, uid, cause)>`: one id per trigger, ever."""
    uid = md.metadata.uid or ""
    uid8 = re.sub(r"[^a-z0-9]", "", uid.lower())[:8] or "nouid"
    digest = hashlib.sha256(f"{md.key}\n{uid}\n{cause}".encode()).hexdigest()[:16]
    return f"steward-retrain-{uid8}-{digest}"


def pending_command(md: ModelDeployment, handled: str | None) -> RetrainingCommand | str | None:
    """The command not yet acted on; a string says why the annotation could not be read."""
    raw = md.metadata.annotations.get(RETRAINING_COMMAND_ANNOTATION)
    if not raw:
        return None
    try:
        command = RetrainingCommand.model_validate_json(raw)
    except ValidationError as exc:
        return f"ignored the {RETRAINING_COMMAND_ANNOTATION} annotation: {exc.errors()[0]['msg']}"
    return None if command.id == handled else command


def guardrail_refusal(
    spec: RetrainingSpec, status: RetrainingStatus, md: ModelDeployment, store_uri: str | None, now: datetime
) -> str | None:
    """Why a new run may not start now; None when it may."""
    if status.current is not None:
        return f"run {status.current.submission_id} is in progress ({status.state.value})"
    if (cr := status.candidate_rollout) is not None:
        return f"candidate {cr.version} of run {cr.submission_id} is being rolled out ({cr.state.value})"
    if store_uri is None:
        return "the operator has no monitoring store (STEWARD_MONITORING_URI): no data to train on"
    if md.status.stable is None:
        return "nothing serves yet: there is no captured traffic and no version to compare with"
    started = [r.started_at for r in status.runs if r.started_at is not None]
    cooldown = timedelta(seconds=duration_s(spec.cooldown))
    if started and now < max(started) + cooldown:
        return (
            f"cooldown: the last run started at {max(started).isoformat()}; no run before "
            f"{(max(started) + cooldown).isoformat()} (cooldown {spec.cooldown})"
        )
    today = [s for s in started if s > now - DAY]
    if len(today) >= spec.max_runs_per_day:
        return f"maxRunsPerDay {spec.max_runs_per_day} reached: {len(today)} run(s) started in the last 24h"
    return None


def evaluate(margins: OfflineEvaluation, result: TrainingResult) -> Evaluation:
    """The candidate against the serving version on the same holdout: no worse than the margins allow."""
    metric = margins.metric.value
    cand, serv = result.candidate.quality.get(metric), result.serving.quality.get(metric)
    checks = [_no_worse(f"{metric} drop", cand, serv, margins.max_quality_drop)]
    for feature in sorted({*result.candidate.parity_ratio, *result.serving.parity_ratio}):
        checks.append(
            _no_worse(
                f"demographic_parity_ratio:{feature} drop",
                result.candidate.parity_ratio.get(feature),
                result.serving.parity_ratio.get(feature),
                margins.max_fairness_drop,
                _noise(result, feature),
            )
        )
    return Evaluation(all(c.passed for c in checks), checks)


def _noise(result: TrainingResult, feature: str) -> float:
    """Standard error of the difference of the two ratios, where the trainer gave both (else 0)."""
    mine, theirs = result.candidate.parity_ratio_se.get(feature), result.serving.parity_ratio_se.get(feature)
    return 0.0 if mine is None or theirs is None else math.hypot(mine, theirs)


def _no_worse(
    name: str, candidate: float | None, serving: float | None, margin: float, noise: float = 0.0
) -> Check:
    if candidate is None or serving is None:
        missing = "candidate" if candidate is None else "serving version"
        return Check(name=name, value=None, threshold=margin, passed=False, detail=f"no {missing} figure")
    drop = serving - candidate
    slack = NOISE_STANDARD_ERRORS * noise
    detail = f"candidate {candidate:.4f}, serving {serving:.4f}"
    if slack:
        detail += (
            f"; a drop counts past the margin plus {NOISE_STANDARD_ERRORS:g} standard errors ({slack:.4f})"
        )
    return Check(
        name=name,
        value=drop,
        threshold=margin + slack,
        passed=drop <= margin + slack + 1e-12,
        detail=detail,
    )


def recommendation(
    md: ModelDeployment, spec: RetrainingSpec, candidate: str, compared_with: str | None
) -> str:
    pinned, alias = md.spec.model.version, md.spec.model.alias
    if pinned is not None:
        return (
            f"spec.model.version pins version {pinned}: candidate {candidate} is recommended, not deployed; "
            f'set spec.model.version: "{candidate}" to roll it out'
        )
    if alias == spec.challenger_alias:
        return (
            f"candidate {candidate} passed its offline evaluation but is not rolled out: spec.model follows "
            f"@{alias}, which is also spec.retraining.challengerAlias; point @{alias} at it to roll it out"
        )
    return (
        f"candidate {candidate} passed its offline evaluation and is queued for a "
        f"{md.spec.rollout.strategy.value} rollout over version {compared_with} "
        f"(@{spec.challenger_alias} on it during the canary, @{alias} moved to it only on promotion)"
    )


def breach_trigger(summary: MonitorResultSummary) -> RetrainingTrigger:
    return RetrainingTrigger(
        kind=TriggerKind.BREACH,
        cause=f"retraining-requested:breach:{summary.submission_id}",
        reason=f"monitor {summary.monitor} breached on version {summary.version}: {figures(summary)}"[:1000],
        monitor=summary.monitor,
        version=summary.version,
        monitor_submission_id=summary.submission_id,
        report_uri=summary.report_uri,
    )


def training_job(
    md: ModelDeployment,
    spec: RetrainingSpec,
    run: RetrainingRun,
    store_uri: str,
    tracking_uri: str | None,
) -> TrainingJob:
    """What the job gets: the captured traffic of every version that served lately, with its outcomes."""
    status = md.status
    versions = {r.to_version for r in status.rollout_history}
    versions |= {r.from_version for r in status.rollout_history}
    if run.parent_version is not None:
        versions.add(run.parent_version)
    capture = md.spec.monitoring.capture
    return TrainingJob(
        submission_id=run.submission_id,
        deployment=md.key,
        model_name=md.spec.model.name,
        tracking_uri=tracking_uri,
        parent_version=run.parent_version,
        store_uri=store_uri,
        capture_uris=[capture_prefix(store_uri, md.key, v) for v in sorted(versions)],
        outcomes_uri=outcomes_prefix(store_uri, md.key),
        # From the request, not the submission: a job submitted again reads the same data.
        window_start=run.requested_at - timedelta(seconds=duration_s(spec.data_window)),
        window_end=run.requested_at,
        sensitive_features=list(capture.sensitive_features) if capture else [],
        evaluation=spec.evaluation,
        trigger=run.trigger,
        result_uri=run.result_uri,
    )
