"""Monitoring inside one reconcile pass (pure): the monitoring decision for the core, and its actions.

`decide()` asks for the decision before the rollout moves, because a `rollback` monitor's breach of the canary
fails the rollout in the same pass; the jobs to submit and stop become actions like any other change.
"""

from __future__ import annotations

from datetime import datetime

from steward.api.model_deployment import ModelDeployment
from steward.operator.actions import Action, StopMonitorJob, SubmitMonitorJob
from steward.operator.config import OperatorConfig
from steward.operator.monitoring import MonitoringDecision, decide_monitoring
from steward.operator.observations import Observations


def monitoring_decision(
    md: ModelDeployment, obs: Observations, config: OperatorConfig, now: datetime
) -> MonitoringDecision:
    return decide_monitoring(
        md,
        obs.monitor_jobs,
        now,
        config.monitoring_uri,
        tracking_uri=config.tracking_uri,
        capture=obs.capture,
    )


def monitoring_actions(
    mon: MonitoringDecision, md: ModelDeployment, address: str, config: OperatorConfig
) -> list[Action]:
    submit: list[Action] = [
        SubmitMonitorJob(address, s.submission_id, s.entrypoint, md.key, config.monitor_job_cpus)
        for s in mon.submissions
    ]
    return submit + [StopMonitorJob(address, sid) for sid in mon.stops]


def requeue_after_s(*delays: float | None) -> float | None:
    """The soonest of the passes that want to be called again, or None for the resync interval."""
    wanted = [d for d in delays if d is not None]
    return min(wanted) if wanted else None
