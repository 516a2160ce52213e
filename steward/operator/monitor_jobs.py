"""What the operator makes of one monitor job (pure): the states it reads from Ray, and the summary that a
finished job, its result or the lack of one, leaves in status.monitoring."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from steward.api.monitor_results import MonitorResult, MonitorVerdict
from steward.api.monitoring_status import MAX_BREACHES_IN_SUMMARY, MonitorJobStatus, MonitorResultSummary


class JobState(StrEnum):
    RUNNING = "running"  # pending or running on Ray
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # failed or stopped
    MISSING = "missing"  # Ray does not know the id (its cluster restarted): the window is submitted again


@dataclass(frozen=True)
class JobObservation:
    """What the reconciler saw of one job in flight. A result in the store counts whatever Ray says."""

    state: JobState
    result: MonitorResult | None = None
    # Why there is no usable result: Ray's message and the log's end, or "result.json is corrupt: ...".
    problem: str = ""


def _error_result(job: MonitorJobStatus, problem: str, now: datetime) -> MonitorResultSummary:
    return MonitorResultSummary(
        monitor=job.monitor,
        version=job.version,
        verdict=MonitorVerdict.ERROR,
        summary=problem[:1000] or "the job ended without a result",
        window_start=job.window_start,
        window_end=job.window_end,
        submission_id=job.submission_id,
        finished_at=now,
        attempt=job.attempt,
    )


def summarise(job: MonitorJobStatus, result: MonitorResult) -> MonitorResultSummary:
    return MonitorResultSummary(
        monitor=job.monitor,
        version=job.version,
        verdict=result.verdict,
        summary=result.summary[:1000],
        window_start=result.window_start,
        window_end=result.window_end,
        rows=result.rows,
        labelled_rows=result.labelled_rows,
        breached=result.breaches()[:MAX_BREACHES_IN_SUMMARY],
        report_uri=result.report_uri,
        report_sha256=result.report_sha256,
        reference_sha256=result.reference_sha256,
        submission_id=job.submission_id,
        finished_at=result.finished_at,
        attempt=job.attempt,
    )


def job_outcome(
    job: MonitorJobStatus, obs: JobObservation | None, now: datetime, timeout_s: float
) -> tuple[MonitorResultSummary | None, MonitorResult | None, bool]:
    """(summary, full result, still in flight): a result in the store counts whatever Ray says; a job that
    ended without one, or ran past `timeout_s`, gets an error summary; one Ray forgot is submitted again."""
    if obs is None:
        return None, None, True  # not looked at this pass
    if obs.result is not None:
        return summarise(job, obs.result), obs.result, False
    if obs.state == JobState.MISSING:
        return None, None, False
    if obs.state in (JobState.FAILED, JobState.SUCCEEDED):
        problem = obs.problem or (
            "the job succeeded but wrote no result" if obs.state == JobState.SUCCEEDED else ""
        )
        return _error_result(job, problem, now), None, False
    if (now - job.submitted_at).total_seconds() > timeout_s:
        return (
            _error_result(job, f"the job did not finish within {timeout_s:.0f}s; stopped", now),
            None,
            False,
        )
    return None, None, True
