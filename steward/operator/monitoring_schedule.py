"""When a monitor's window is due, and the job that judges it (pure: time is passed in).

Windows end on multiples of `every` since the epoch, so the same clock reading gives the same window after a
restart, and the submission id is derived from the window: Ray refuses a second job with the same id, so a
window is never judged twice by accident. Only the latest window is submitted: after an outage the operator
judges now, it does not replay every missed window.

Late labels: a quality or fairness window judged before all its outcomes were known (labelled rows < rows) is
judged once more, `rejudge_after_s` after it ended, as attempt 1 (id suffix `-r1`). Once, not whenever labels
grow: the operator cannot see labels arrive without reading the store.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from steward.api.monitor_results import MonitorJob, MonitorVerdict, report_prefix
from steward.api.monitoring import CaptureSpec, MonitorKind, MonitorSpec
from steward.api.monitoring_status import MonitoringStatus, MonitorJobStatus, MonitorResultSummary
from steward.api.rollout import duration_s

MAX_SUBMISSION_ID = 64
# A rows window has no start of its own: the job takes the last `rows` records before its end, looking no
# further back than this.
ROWS_LOOKBACK = timedelta(days=7)
DEFAULT_REJUDGE_AFTER_S = 3600.0
LABELLED_KINDS = frozenset({MonitorKind.QUALITY, MonitorKind.FAIRNESS})
# The job's entrypoint (steward.monitors.run decodes the argument).
ENTRYPOINT_MODULE = "steward.monitors.run"


@dataclass(frozen=True)
class LiveVersion:
    """A version that serves traffic now, and what its monitor jobs need to know about it."""

    version: str
    role: str  # "stable" or "canary"
    # When it started taking traffic; windows that ended before are not judged.
    since: datetime | None = None
    run_id: str | None = None
    reference_uri: str | None = None
    training_metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Submission:
    submission_id: str
    job: MonitorJob
    entry: MonitorJobStatus

    @property
    def entrypoint(self) -> str:
        return entrypoint(self.job)


def entrypoint(job: MonitorJob) -> str:
    """`python -m steward.monitors.run <base64 JSON>`: base64 keeps the shell out of the JSON."""
    payload = base64.urlsafe_b64encode(job.model_dump_json(by_alias=True).encode()).decode()
    return f"python -m {ENTRYPOINT_MODULE} {payload}"


def submission_id(uid: str | None, monitor: str, version: str, window_end: datetime, attempt: int = 0) -> str:
    """`steward-<uid8>-<monitor>-v<version>-<window end epoch>[-r<attempt>]`, at most 64 characters of
    [a-z0-9-]; a long monitor name is cut and made unique again with a hash of the whole name."""
    uid8 = re.sub(r"[^a-z0-9]", "", (uid or "nouid").lower())[:8] or "nouid"
    safe_version = re.sub(r"[^a-z0-9]", "", version.lower())
    suffix = f"-v{safe_version}-{int(window_end.timestamp())}" + (f"-r{attempt}" if attempt else "")
    head = f"steward-{uid8}-"
    room = MAX_SUBMISSION_ID - len(head) - len(suffix)
    name = monitor
    if len(name) > room:
        digest = hashlib.sha256(monitor.encode()).hexdigest()[:6]
        name = f"{monitor[: max(room - 7, 1)].rstrip('-')}-{digest}"
    return f"{head}{name}{suffix}"[:MAX_SUBMISSION_ID]


def window_end(monitor: MonitorSpec, now: datetime) -> datetime:
    """The end of the latest complete window: `every` boundaries since the epoch."""
    every = duration_s(monitor.window.every)
    return datetime.fromtimestamp(math.floor(now.timestamp() / every) * every, tz=UTC)


def window_start(monitor: MonitorSpec, end: datetime) -> datetime:
    if monitor.window.duration is not None:
        return end - timedelta(seconds=duration_s(monitor.window.duration))
    return end - ROWS_LOOKBACK


def next_due_in_s(monitors: list[MonitorSpec], now: datetime) -> float | None:
    """Seconds until the next window of any monitor ends."""
    waits = []
    for monitor in monitors:
        every = duration_s(monitor.window.every)
        waits.append(window_end(monitor, now).timestamp() + every - now.timestamp())
    return max(min(waits), 1.0) if waits else None


@dataclass(frozen=True)
class JobContext:
    uid: str | None
    deployment: str  # "namespace/name"
    model_name: str
    store_uri: str
    tracking_uri: str | None = None
    capture: CaptureSpec | None = None


def _job(
    ctx: JobContext,
    monitor: MonitorSpec,
    live: LiveVersion,
    start: datetime,
    end: datetime,
    attempt: int,
    now: datetime,
    stable_version: str | None = None,
) -> Submission:
    sid = submission_id(ctx.uid, monitor.name, live.version, end, attempt)
    prefix = report_prefix(ctx.store_uri, ctx.deployment, monitor.name, live.version, end)
    if attempt:
        prefix = f"{prefix}-r{attempt}"
    job = MonitorJob(
        monitor=monitor,
        deployment=ctx.deployment,
        version=live.version,
        model_name=ctx.model_name,
        store_uri=ctx.store_uri,
        window_start=start,
        window_end=end,
        reference_uri=(monitor.drift.reference if monitor.drift else None) or live.reference_uri,
        tracking_uri=ctx.tracking_uri,
        run_id=live.run_id,
        training_metrics=live.training_metrics,
        capture=ctx.capture,
        stable_version=stable_version if live.role == "canary" else None,
        result_uri=f"{prefix}/result.json",
        report_uri=f"{prefix}/report.html",
    )
    entry = MonitorJobStatus(
        monitor=monitor.name,
        version=live.version,
        window_start=start,
        window_end=end,
        submission_id=sid,
        submitted_at=now,
        result_uri=job.result_uri,
        attempt=attempt,
    )
    return Submission(sid, job, entry)


def needs_rejudging(monitor: MonitorSpec, result: MonitorResultSummary) -> bool:
    """A labelled monitor's first judgement of a window that had rows without outcomes yet."""
    return (
        monitor.kind in LABELLED_KINDS
        and result.attempt == 0
        and result.verdict != MonitorVerdict.ERROR
        and result.labelled_rows < result.rows
    )


def due_submissions(
    ctx: JobContext,
    monitors: list[MonitorSpec],
    live: list[LiveVersion],
    status: MonitoringStatus,
    now: datetime,
    rejudge_after_s: float = DEFAULT_REJUDGE_AFTER_S,
) -> list[Submission]:
    """At most one job per (monitor, version) in flight: the latest window if it is new, else a window waiting
    for late labels whose time has come."""
    busy = {(j.monitor, j.version) for j in status.jobs}
    taken = set(status.handled) | {j.submission_id for j in status.jobs}
    stable = next((v.version for v in live if v.role == "stable"), None)
    out = []
    for monitor in monitors:
        for version in live:
            if (monitor.name, version.version) in busy:
                continue
            end = window_end(monitor, now)
            latest = status.latest(monitor.name, version.version)
            fresh = (latest is None or end > latest.window_end) and (
                version.since is None or end > version.since
            )
            if fresh:
                sub = _job(ctx, monitor, version, window_start(monitor, end), end, 0, now, stable)
            else:
                waiting = next(
                    (
                        w
                        for w in status.awaiting_labels
                        if (w.monitor, w.version) == (monitor.name, version.version)
                        and now >= w.window_end + timedelta(seconds=rejudge_after_s)
                    ),
                    None,
                )
                if waiting is None:
                    continue
                sub = _job(ctx, monitor, version, waiting.window_start, waiting.window_end, 1, now, stable)
            if sub.submission_id not in taken:
                out.append(sub)
    return out
