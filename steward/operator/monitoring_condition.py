"""The Monitoring condition (pure): what the latest results and the capture counters say, worst first."""

from __future__ import annotations

from steward.api.conditions import ConditionStatus, ConditionType, Reason
from steward.api.monitor_results import MonitorVerdict
from steward.api.monitoring_status import CaptureStatus, MonitoringStatus, MonitorResultSummary
from steward.operator.monitoring_drafts import figures

TRUE, FALSE, UNKNOWN = ConditionStatus.TRUE, ConditionStatus.FALSE, ConditionStatus.UNKNOWN
Condition = tuple[ConditionType, ConditionStatus, Reason, str]


def capture_failing(capture: CaptureStatus | None, old: MonitoringStatus) -> Condition | None:
    old_dropped = old.capture.dropped if old.capture else 0
    if capture is None or capture.dropped <= old_dropped:
        return None
    text = f"capture dropped {capture.dropped} record(s)" + (
        f": {capture.last_error}" if capture.last_error else ""
    )
    return ConditionType.MONITORING, UNKNOWN, Reason.CAPTURE_FAILING, text


def monitoring_condition(
    results: list[MonitorResultSummary], capture: CaptureStatus | None, old: MonitoringStatus
) -> Condition:
    def names(verdict: MonitorVerdict) -> list[MonitorResultSummary]:
        return [r for r in results if r.verdict == verdict]

    if breached := names(MonitorVerdict.BREACH):
        text = "; ".join(
            f"{r.monitor} on version {r.version}: {figures(r)}"
            + (f" (report {r.report_uri})" if r.report_uri else "")
            for r in breached
        )
        return ConditionType.MONITORING, FALSE, Reason.MONITOR_BREACHED, text[:2000]
    if errors := names(MonitorVerdict.ERROR):
        text = "; ".join(f"{r.monitor} on version {r.version}: {r.summary}" for r in errors)
        return ConditionType.MONITORING, UNKNOWN, Reason.MONITOR_ERROR, text[:2000]
    if dropping := capture_failing(capture, old):
        return dropping
    if not results:
        return ConditionType.MONITORING, UNKNOWN, Reason.MONITORS_PENDING, "no window judged yet"
    judged = ", ".join(f"{r.monitor}@v{r.version}: {r.verdict.value}" for r in results)
    return ConditionType.MONITORING, TRUE, Reason.MONITORS_PASSING, judged
