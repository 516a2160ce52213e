"""An analysis step of a rollout: open a window, keep it open while traffic is too thin, judge it against
stable, and pass, pause or roll back (pure)."""

from __future__ import annotations

from datetime import datetime

from steward.api.model_deployment import ModelDeployment
from steward.api.rollout import (
    MAX_WINDOWS_IN_STATUS,
    ActiveRollout,
    Outcome,
    RolloutState,
    RolloutStep,
    Verdict,
    WindowResult,
)
from steward.api.serve_app import TrafficStats
from steward.audit.records import AuditAction
from steward.operator.analysis import canary_requests, judge_window
from steward.operator.monitor_gate import monitor_gate
from steward.operator.observations import Problem
from steward.operator.rollout_machine import MachineBase

# A window with fewer than minRequests stays open up to this many intervals before it is judged inconclusive.
LOW_TRAFFIC_WINDOW_EXTENSION = 5
# Come back this much after a window's end, so that the pass sees it complete whatever the clocks' jitter.
WINDOW_END_MARGIN_S = 0.05


def window_due_in_s(md: ModelDeployment, r: ActiveRollout | None, now: datetime) -> float | None:
    """Seconds until the open analysis window has run its interval: the pass that judges it (and rolls a
    failing canary back) comes then, not up to a rollout tick later."""
    if r is None or r.state is not RolloutState.PROGRESSING or r.window_started_at is None:
        return None
    remaining = md.spec.rollout.analysis.interval_s - (now - r.window_started_at).total_seconds()
    return remaining + WINDOW_END_MARGIN_S if remaining > 0 else None


class AnalysisSteps(MachineBase):
    def run_analysis(self, step: RolloutStep) -> bool:
        """Open, judge or keep waiting on an analysis window; True when the step is complete."""
        analysis = self.md.spec.rollout.analysis
        needed = (
            step.analysis.windows if step.analysis and step.analysis.windows else None
        ) or analysis.windows
        where = f"step {self.r.step_index + 1}/{len(self.steps)}: analysis"
        gate = monitor_gate(self.md, self.r.canary.version, self.r.step_started_at)
        if gate.failed is not None:
            self.finish(RolloutState.ROLLING_BACK, Outcome.ROLLED_BACK, gate.failed)
            return False
        if not isinstance(self.traffic, TrafficStats):
            why = self.traffic.message if isinstance(self.traffic, Problem) else "not read yet"
            self.update(message=f"{where} waits for the router's traffic figures ({why})")
            return False
        if self.r.window_started_at is None or self.r.window_baseline is None:
            self.update(
                window_started_at=self.now,
                window_baseline=self.traffic.model_dump_json(),
                message=f"{where}: window 1 of {needed} opened",
            )
            return False
        baseline = TrafficStats.model_validate_json(self.r.window_baseline)
        if baseline.recorder_id != self.traffic.recorder_id:
            self.update(
                window_started_at=self.now,
                window_baseline=self.traffic.model_dump_json(),
                message=f"{where}: the router's counters restarted; window reopened",
            )
            return False
        elapsed = (self.now - self.r.window_started_at).total_seconds()
        number = self.r.passed_windows + self.r.failed_windows + 1
        if elapsed < analysis.interval_s:
            self.update(
                message=f"{where}: measuring window {number} ({elapsed:.0f}/{analysis.interval_s:.0f}s)"
            )
            return False
        seen = canary_requests(self.r.strategy, self.r.canary.version, baseline, self.traffic)
        if seen < analysis.min_requests and elapsed < LOW_TRAFFIC_WINDOW_EXTENSION * analysis.interval_s:
            # Too few requests to judge is a fact about traffic, not about the version: keep the window open
            # (bounded) rather than pause the rollout for a person on every quiet minute.
            self.update(
                message=f"{where}: window {number} has {seen} of {analysis.min_requests} requests after "
                f"{elapsed:.0f}s; kept open up to {LOW_TRAFFIC_WINDOW_EXTENSION * analysis.interval_s:.0f}s"
            )
            return False
        judgement = judge_window(
            analysis, self.r.strategy, self.r.canary.version, self.stable.version, baseline, self.traffic
        )
        result = WindowResult(
            started_at=self.r.window_started_at,
            ended_at=self.now,
            verdict=judgement.verdict,
            summary=judgement.summary,
            canary=judgement.canary,
            stable=judgement.stable,
            disagreement=judgement.disagreement,
            compared=judgement.compared,
        )
        self.update(
            windows=[*self.r.windows, result][-MAX_WINDOWS_IN_STATUS:],
            window_started_at=self.now,
            window_baseline=self.traffic.model_dump_json(),
        )
        self.record(
            AuditAction.ANALYSIS_VERDICT,
            f"{judgement.verdict.value}: {judgement.summary}",
            f"window-{result.started_at.isoformat()}",
            evidence={
                "window": result.model_dump(mode="json", by_alias=True),
                "thresholds": analysis.model_dump(mode="json", by_alias=True, exclude_none=True),
            },
        )
        if judgement.verdict == Verdict.INCONCLUSIVE:
            self.pause(
                f"{where} inconclusive: {judgement.summary}; `steward resume` measures again, "
                "`steward promote` or `steward abort` decide"
            )
            return False
        if judgement.verdict == Verdict.FAIL:
            failed = self.r.failed_windows + 1
            self.update(failed_windows=failed)
            if failed > analysis.failure_limit:
                self.finish(
                    RolloutState.ROLLING_BACK, Outcome.ROLLED_BACK, f"analysis failed: {judgement.summary}"
                )
                return False
            self.event(
                "AnalysisFailed",
                f"{judgement.summary} ({failed} of {analysis.failure_limit} failures tolerated)",
                warning=True,
            )
            self.update(
                message=f"{where}: window failed ({judgement.summary}); "
                f"{failed}/{analysis.failure_limit} failures tolerated"
            )
            return False
        passed = self.r.passed_windows + 1
        self.update(
            passed_windows=passed,
            message=f"{where}: {passed}/{needed} window(s) passed ({judgement.summary})",
        )
        if passed >= needed and gate.waiting is not None:
            self.update(message=f"{where}: {passed}/{needed} window(s) passed; {gate.waiting}")
            return False
        if passed >= needed:
            self.advance_step()
            return True
        return False

    # ------------------------------------------------------------------ the pass
