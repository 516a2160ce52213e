"""Retraining inside decide(): a command or a `retrain` monitor's breach asks for a run; the run's Ray Job is
submitted as an action before the records that describe it, only in a pass that can act on Ray."""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta
from typing import Any

from builders import CONFIG
from world import World, settled

from steward.api.conditions import Reason
from steward.api.monitor_results import Check, MonitorResult, MonitorVerdict
from steward.api.monitoring import MonitorKind
from steward.api.retraining import RETRAINING_COMMAND_ANNOTATION, TRAINING_JOB_ENV, RetrainingState
from steward.api.training_job import TrainingJob
from steward.audit.records import AuditAction
from steward.operator.actions import PostEvent, RecordAudit, StopTrainingJob, SubmitTrainingJob
from steward.operator.core import Decision, decide
from steward.operator.monitor_jobs import JobObservation, JobState
from steward.operator.observations import Observations, Problem
from steward.operator.retraining_observation import (
    RetrainingObservation,
    StoredRecord,
    TrainingJobObservation,
)

STORE = "/var/steward/monitoring"
STORED = StoredRecord(seq=4, hash="cd" * 32)


def _spec(on_breach: str = "retrain", **retraining: Any) -> dict[str, Any]:
    return {
        "model": {"name": "credit-risk", "version": "3"},
        "monitoring": {
            "capture": {"sensitiveFeatures": ["gender"]},
            "monitors": [
                {
                    "name": "drift",
                    "kind": "drift",
                    "window": {"duration": "1m", "every": "1m"},
                    "onBreach": on_breach,
                }
            ],
        },
        "retraining": {
            "entrypoint": "python -m steward.retraining.example_train",
            "approval": "automatic",
            "entrypointMemory": "1Gi",
            "runtimeEnv": {"envVars": {"TRAIN_SEED": "7"}, "pip": ["lightgbm==4.5.0"]},
            **retraining,
        },
    }


def _world(**kwargs: Any) -> World:
    world = settled(_spec(**kwargs))
    world.config = dataclasses.replace(CONFIG, monitoring_uri=STORE)
    return world


def _pass(world: World, seconds: float = 2.0, **observed: Any) -> Decision:
    """One pass with the retraining observation the reconciler would make."""
    world.now += timedelta(seconds=seconds)
    obs = Observations(
        model=observed.get("model", world.model),
        serve=observed.get("serve", world.serve()),
        monitor_jobs=observed.get("monitor_jobs", {}),
        retraining=observed.get("retraining", RetrainingObservation()),
    )
    decision = decide(world.resource, obs, world.config, world.now)
    world.decisions.append(decision)
    world.resource = world.resource.model_copy(update={"status": decision.status})
    return decision


def _command(world: World, **command: Any) -> None:
    world.annotate(RETRAINING_COMMAND_ANNOTATION, json.dumps({"id": "c1", "command": "retrain", **command}))


def test_a_retrain_command_becomes_a_ray_job_submitted_before_its_records() -> None:
    world = _world()
    _command(world, actor="alice", reason="CR-9")
    requested = _pass(world)
    assert [a.draft.action for a in requested.actions if isinstance(a, RecordAudit)] == [
        AuditAction.RETRAINING_REQUESTED
    ]
    assert not any(isinstance(a, SubmitTrainingJob) for a in requested.actions)
    assert requested.requeue_after_s is not None and requested.requeue_after_s <= 2.0

    started = _pass(world, retraining=RetrainingObservation(trigger_record=STORED))
    kinds = [type(a).__name__ for a in started.actions]
    submit = next(a for a in started.actions if isinstance(a, SubmitTrainingJob))
    assert kinds.index("SubmitTrainingJob") < kinds.index("RecordAudit")
    assert all(
        isinstance(a, PostEvent)
        for a in started.actions[kinds.index("RecordAudit") :]
        if not isinstance(a, RecordAudit)
    )
    assert (submit.ray_address, submit.deployment) == ("http://ray:8265", "risk/credit")
    assert (submit.num_cpus, submit.num_gpus, submit.memory_bytes) == (1.0, 0.0, 2**30)
    env = submit.runtime_env
    assert env["pip"] == ["lightgbm==4.5.0"] and env["env_vars"]["TRAIN_SEED"] == "7"
    job = TrainingJob.model_validate_json(env["env_vars"][TRAINING_JOB_ENV])
    assert job.submission_id == submit.submission_id and job.trigger.record_hash == STORED.hash
    assert job.model_name == "credit-risk" and job.parent_version == "3"
    status = world.resource.status.retraining
    assert status is not None and status.state == RetrainingState.RUNNING


def test_a_pass_that_cannot_reach_ray_submits_nothing_and_keeps_the_run_approved() -> None:
    world = _world()
    _command(world)
    _pass(world)
    problem = Problem(Reason.RAY_UNREACHABLE, "down", temporary=True)
    decision = _pass(world, serve=problem, retraining=RetrainingObservation(trigger_record=STORED))
    assert not any(isinstance(a, SubmitTrainingJob) for a in decision.actions)
    status = world.resource.status.retraining
    assert status is not None and status.state == RetrainingState.APPROVED
    again = _pass(world, retraining=RetrainingObservation(trigger_record=STORED))
    assert any(isinstance(a, SubmitTrainingJob) for a in again.actions)


def _breach_of(world: World) -> dict[str, JobObservation]:
    monitoring = world.resource.status.monitoring
    assert monitoring is not None
    [job] = monitoring.jobs
    result = MonitorResult(
        monitor="drift",
        kind=MonitorKind.DRIFT,
        deployment="risk/credit",
        version=job.version,
        window_start=job.window_start,
        window_end=job.window_end,
        rows=4000,
        verdict=MonitorVerdict.BREACH,
        checks=[Check(name="drift:income", value=0.41, threshold=0.1, op="<=", passed=False)],
    )
    return {job.submission_id: JobObservation(JobState.SUCCEEDED, result)}


def test_a_retrain_monitors_breach_of_the_stable_version_asks_for_a_run_once() -> None:
    world = _world()
    _pass(world, 60)
    observed = _breach_of(world)
    decision = _pass(world, monitor_jobs=observed)
    drafts = [a.draft for a in decision.actions if isinstance(a, RecordAudit)]
    policy = next(d for d in drafts if d.action == AuditAction.POLICY_ACTION)
    requested = next(d for d in drafts if d.action == AuditAction.RETRAINING_REQUESTED)
    assert policy.evidence["action"] == "retrain"
    assert requested.evidence["breached"][0]["name"] == "drift:income" and requested.evidence["accepted"]
    status = world.resource.status.retraining
    assert status is not None and status.current is not None and status.current.trigger.monitor == "drift"
    # The same result observed again (a replayed pass) asks for nothing more.
    replay = _pass(world, monitor_jobs=observed)
    assert not [
        a
        for a in replay.actions
        if isinstance(a, RecordAudit) and a.draft.action == AuditAction.RETRAINING_REQUESTED
    ]


def test_an_alert_monitors_breach_asks_for_no_run() -> None:
    world = _world(on_breach="alert")
    _pass(world, 60)
    _pass(world, monitor_jobs=_breach_of(world))
    status = world.resource.status.retraining
    assert status is None or status.current is None


def test_a_timed_out_job_is_stopped_through_an_action() -> None:
    world = _world(timeout="10m")
    _command(world)
    _pass(world)
    _pass(world, retraining=RetrainingObservation(trigger_record=STORED))
    decision = _pass(
        world, 601, retraining=RetrainingObservation(job=TrainingJobObservation(JobState.RUNNING))
    )
    assert [a for a in decision.actions if isinstance(a, StopTrainingJob)]
    status = world.resource.status.retraining
    assert status is not None and status.runs[-1].outcome.value == "TimedOut"
