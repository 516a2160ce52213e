"""The monitors a canary must pass before an analysis step completes (pure).

`spec.rollout.analysis.requireMonitors` names monitors of `spec.monitoring`; their results on the canary's own
captured traffic, for a window that ended after the current step began, decide: any breach fails the canary,
and until every one has passed, the step waits (measuring on). An inconclusive window (too few rows or group
members) is not a pass: a canary that nobody could judge is not promoted by default.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from steward.api.model_deployment import ModelDeployment
from steward.api.monitor_results import MonitorVerdict
from steward.api.monitoring_status import MonitorResultSummary
from steward.operator.monitoring_drafts import figures


@dataclass(frozen=True)
class GateVerdict:
    failed: str | None = None  # why the canary fails
    waiting: str | None = None  # what the step still waits for


def _latest(md: ModelDeployment, monitor: str, version: str, since: datetime) -> MonitorResultSummary | None:
    status = md.status.monitoring
    results = [] if status is None else status.results
    judged = [r for r in results if r.monitor == monitor and r.version == version and r.window_end > since]
    return max(judged, key=lambda r: r.window_end, default=None)


def monitor_gate(md: ModelDeployment, canary_version: str, step_started_at: datetime) -> GateVerdict:
    waiting = []
    for name in md.spec.rollout.analysis.require_monitors:
        result = _latest(md, name, canary_version, step_started_at)
        if result is not None and result.verdict == MonitorVerdict.BREACH:
            detail = figures(result) or result.summary
            return GateVerdict(failed=f"monitor {name} failed on version {canary_version}: {detail}")
        if result is None or result.verdict != MonitorVerdict.PASS:
            seen = "no window judged yet" if result is None else f"last window {result.verdict.value}"
            waiting.append(f"{name} ({seen})")
    if waiting:
        return GateVerdict(waiting=f"waiting for monitors on version {canary_version}: {', '.join(waiting)}")
    return GateVerdict()
