"""Monitoring inside decide(): jobs are submitted as actions, and a `rollback` monitor's breach of the canary
rolls the rollout back through the rollout's own path, once, with the monitor's figures in the reason."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

from builders import CONFIG, resolved
from world import World, settled

from steward.api.conditions import ConditionStatus, ConditionType, Reason
from steward.api.monitor_results import Check, MonitorResult, MonitorVerdict
from steward.api.monitoring import MonitorKind
from steward.api.rollout import Outcome, RolloutState
from steward.audit.records import AuditAction
from steward.operator.actions import SubmitMonitorJob
from steward.operator.monitor_jobs import JobObservation, JobState
from steward.operator.status import find

STORE = "/var/steward/monitoring"


def _spec(version: str, on_breach: str = "rollback") -> dict[str, Any]:
    return {
        "model": {"name": "credit-risk", "version": version},
        "rollout": {
            "steps": [{"setWeight": 10}, {"pause": {}}],
            "analysis": {"interval": "10s", "minRequests": 5},
        },
        "monitoring": {
            "monitors": [
                {
                    "name": "fairness",
                    "kind": "fairness",
                    "window": {"duration": "1m", "every": "1m"},
                    "onBreach": on_breach,
                }
            ]
        },
    }


def _paused_canary(on_breach: str = "rollback") -> World:
    world = settled(_spec("3", on_breach))
    world.config = dataclasses.replace(CONFIG, monitoring_uri=STORE)
    world.change_spec(_spec("4", on_breach), resolved("4"))
    world.until(lambda w: w.rollout is not None and w.rollout.state == RolloutState.PAUSED)
    return world


def _breach(world: World, version: str) -> dict[str, JobObservation]:
    monitoring = world.resource.status.monitoring
    assert monitoring is not None
    [job] = [j for j in monitoring.jobs if j.version == version]
    result = MonitorResult(
        monitor="fairness",
        kind=MonitorKind.FAIRNESS,
        deployment="risk/credit",
        version=version,
        window_start=job.window_start,
        window_end=job.window_end,
        rows=4000,
        verdict=MonitorVerdict.BREACH,
        summary="demographic parity ratio 0.52 < 0.8 (gender)",
        checks=[
            Check(name="demographic_parity_ratio:gender", value=0.52, threshold=0.8, op=">=", passed=False)
        ],
        report_uri=f"{STORE}/risk/credit/reports/fairness/v{version}/x/report.html",
        report_sha256="ab" * 32,
    )
    return {job.submission_id: JobObservation(JobState.SUCCEEDED, result)}


def test_due_windows_are_submitted_as_ray_jobs_for_stable_and_canary() -> None:
    world = _paused_canary()
    world.step(60)
    submitted = [a for d in world.decisions for a in d.actions if isinstance(a, SubmitMonitorJob)]
    assert {a.submission_id.split("-v")[1].split("-")[0] for a in submitted} >= {"3", "4"}
    assert all(a.entrypoint.startswith("python -m steward.monitors.run ") for a in submitted)
    monitoring = world.resource.status.monitoring
    assert monitoring is not None and {j.version for j in monitoring.jobs} == {"3", "4"}


def test_a_rollback_monitors_breach_of_the_canary_rolls_it_back_once() -> None:
    world = _paused_canary()
    world.step(60)
    observed = _breach(world, "4")
    world.step(2, monitor_jobs=observed)
    assert world.rollout is not None and world.rollout.state == RolloutState.ROLLING_BACK
    assert "0.52" in (world.rollout.outcome_reason or "")
    world.until(lambda w: w.rollout is None, tick=2)
    last = world.resource.status.rollout_history[-1]
    assert (last.outcome, last.to_version, world.stable_version) == (Outcome.ROLLED_BACK, "4", "3")
    # Replaying the same observation after a restart acts on nothing again.
    world.restart_operator()
    world.step(2, monitor_jobs=observed)
    actions = [d.action for d in world.drafts()]
    assert actions.count(AuditAction.POLICY_ACTION) == 1
    assert actions.count(AuditAction.MONITOR_RUN) == 1
    assert actions.count(AuditAction.ROLLED_BACK) == 1


def test_an_alert_monitors_breach_leaves_the_rollout_alone_and_says_so() -> None:
    world = _paused_canary(on_breach="alert")
    world.step(60)
    world.step(2, monitor_jobs=_breach(world, "4"))
    assert world.rollout is not None and world.rollout.state == RolloutState.PAUSED
    monitoring = find(world.resource.status.conditions, ConditionType.MONITORING)
    assert monitoring is not None
    assert (monitoring.status, monitoring.reason) == (ConditionStatus.FALSE, Reason.MONITOR_BREACHED)
    assert world.now - world.resource.status.rollout.started_at < timedelta(hours=1)  # type: ignore[union-attr]


def test_a_breach_after_promotion_returns_traffic_to_the_earlier_version_warm_first() -> None:
    spec = {**_spec("3"), "rollout": {"strategy": "immediate"}}
    world = settled(spec)
    world.config = dataclasses.replace(CONFIG, monitoring_uri=STORE)
    world.change_spec({**spec, "model": {"name": "credit-risk", "version": "4"}}, resolved("4"))
    world.until(lambda w: w.rollout is None and w.stable_version == "4")
    world.step(60)
    world.step(2, monitor_jobs=_breach(world, "4"))
    revert = world.rollout
    assert revert is not None and revert.canary.version == "3" and revert.revert_reason
    # Version 3 starts at 0% while version 4 keeps all traffic, until Ray reports 3 RUNNING.
    router = world.router_config()
    assert router is not None and router.weights.get("4") == 100
    world.until(lambda w: w.rollout is None, tick=2)
    last = world.resource.status.rollout_history[-1]
    assert (last.outcome, last.from_version, last.to_version) == (Outcome.ROLLED_BACK, "3", "4")
    assert world.stable_version == "3"
    assert "0.52" in last.reason
    # The spec still names version 4: it is not rolled out again by itself.
    world.run(30)
    assert world.rollout is None and world.stable_version == "3"
    rolled_back = [d for d in world.drafts() if d.action == AuditAction.ROLLED_BACK]
    assert len(rolled_back) == 1 and rolled_back[0].model is not None
    assert rolled_back[0].model.to_version == "4"


def _gated(world_spec_version: str) -> dict[str, Any]:
    spec = _spec(world_spec_version, on_breach="alert")
    spec["rollout"] = {
        "steps": [{"setWeight": 10}, {"analysis": {}}],
        "analysis": {"interval": "10s", "minRequests": 5, "requireMonitors": ["fairness"]},
    }
    return spec


def _canary_result(world: World, verdict: MonitorVerdict) -> dict[str, JobObservation]:
    observed = _breach(world, "4")
    [(sid, obs)] = observed.items()
    assert obs.result is not None
    passed = obs.result.model_copy(update={"verdict": verdict, "checks": [], "summary": "ratio 0.93"})
    return {sid: JobObservation(JobState.SUCCEEDED, passed if verdict == MonitorVerdict.PASS else obs.result)}


def _gated_canary_waiting() -> World:
    world = settled(_gated("3"))
    world.config = dataclasses.replace(CONFIG, monitoring_uri=STORE)
    world.change_spec(_gated("4"), resolved("4"))
    world.until(lambda w: w.rollout is not None and "waiting for monitors" in w.rollout.message)
    world.run(70)  # a monitor window that ends after the analysis step began
    assert world.rollout is not None and world.rollout.step_index == 1
    return world


def test_a_required_monitor_holds_the_step_until_it_passes_on_the_canary() -> None:
    world = _gated_canary_waiting()
    world.step(2, monitor_jobs=_canary_result(world, MonitorVerdict.PASS))
    world.until(lambda w: w.rollout is None)
    last = world.resource.status.rollout_history[-1]
    assert (last.outcome, world.stable_version) == (Outcome.PROMOTED, "4")


def test_a_required_monitors_breach_rolls_the_canary_back_whatever_its_on_breach() -> None:
    world = _gated_canary_waiting()
    world.step(2, monitor_jobs=_canary_result(world, MonitorVerdict.BREACH))
    world.until(lambda w: w.rollout is None)
    last = world.resource.status.rollout_history[-1]
    assert (last.outcome, world.stable_version) == (Outcome.ROLLED_BACK, "3")
    assert "monitor fairness failed on version 4" in last.reason and "0.52" in last.reason


def test_require_monitors_must_name_defined_monitors() -> None:
    import pytest
    from pydantic import ValidationError

    from steward.api.model_deployment import ModelDeploymentSpec

    spec = _gated("4")
    spec["rollout"]["analysis"]["requireMonitors"] = ["fairnes"]
    with pytest.raises(ValidationError, match="fairnes"):
        ModelDeploymentSpec.model_validate(spec)
