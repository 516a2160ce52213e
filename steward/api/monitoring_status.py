"""`status.monitoring`: what the operator remembers between passes about its monitors (bounded)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field

from steward.api.monitor_results import Check, MonitorVerdict, ResultModel

# --- status.monitoring: what the operator remembers between passes (bounded; written by the operator) -------

MAX_RESULTS_IN_STATUS = 40
MAX_HANDLED_IN_STATUS = 100
MAX_BREACHES_IN_SUMMARY = 10


class MonitorResultSummary(ResultModel):
    """The latest judged window of one monitor on one version, as `steward monitor status` shows it."""

    monitor: str
    version: str
    verdict: MonitorVerdict
    summary: str = ""
    window_start: datetime
    window_end: datetime
    rows: int = 0
    labelled_rows: int = 0
    # The figures that failed their threshold (the whole list is in the report and the audit record).
    breached: Annotated[list[Check], Field(max_length=MAX_BREACHES_IN_SUMMARY)] = []
    report_uri: str | None = None
    report_sha256: str | None = None
    reference_sha256: str | None = None
    submission_id: str
    finished_at: datetime | None = None
    # 1 when this is a window judged again because its outcomes arrived late.
    attempt: int = 0


class WindowRef(ResultModel):
    """A window of one monitor on one version (e.g. one waiting to be judged again once labels arrive)."""

    monitor: str
    version: str
    window_start: datetime
    window_end: datetime


class MonitorJobStatus(ResultModel):
    """A monitor job submitted to Ray and not yet acted on; its id is derived from what it judges."""

    monitor: str
    version: str
    window_start: datetime
    window_end: datetime
    submission_id: str
    submitted_at: datetime
    result_uri: str
    # 0 for a window's first judgement; 1 when it is judged again because outcomes (labels) arrived late.
    attempt: int = 0


class CaptureStatus(ResultModel):
    """The router's capture counters (from its stats), so a full or broken store is visible."""

    written: int = 0
    dropped: int = 0
    last_error: str | None = None


class MonitoringStatus(ResultModel):
    results: Annotated[list[MonitorResultSummary], Field(max_length=MAX_RESULTS_IN_STATUS)] = []
    jobs: Annotated[list[MonitorJobStatus], Field(max_length=MAX_RESULTS_IN_STATUS)] = []
    # Submission ids whose results were acted on, newest last: no breach is acted on twice, across restarts.
    handled: Annotated[list[str], Field(max_length=MAX_HANDLED_IN_STATUS)] = []
    # Windows judged before their outcomes were all in: judged once more later (quality, fairness).
    awaiting_labels: Annotated[list[WindowRef], Field(max_length=MAX_RESULTS_IN_STATUS)] = []
    capture: CaptureStatus | None = None

    def latest(self, monitor: str, version: str) -> MonitorResultSummary | None:
        return next((r for r in self.results if (r.monitor, r.version) == (monitor, version)), None)
