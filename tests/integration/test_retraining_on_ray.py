"""Retraining on the session's real Ray, MLflow and S3 (artifacts), driven by the real reconciler: a `retrain`
command becomes a real Ray Job that trains on the captured, labelled traffic, registers a candidate with its
lineage, is judged offline, and, when the deployment follows an alias, is canaried through spec.rollout and
promoted, with the registry's aliases following what serves. Two tests share the cases to save start-ups:

- the loop to a promoted candidate (manual approval, the challenger alias during the canary, the followed
  alias moved on promotion, the audit chain from the request to the promotion), then cooldown;
- a pinned version: a job that fails (log tail recorded), a candidate worse than serving (never deployed),
  an operator restart while a job runs (no second job, the result still picked up), and a passing candidate
  that is recommended, never deployed.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import httpx
import pandas as pd
import pytest
from helpers import wait_until

from steward.api.model_deployment import ModelDeployment
from steward.api.monitor_results import capture_prefix
from steward.api.retraining import (
    RETRAINING_COMMAND_ANNOTATION,
    CandidateOutcome,
    CandidateRolloutState,
    RetrainingCommand,
    RetrainingState,
    RunOutcome,
)
from steward.audit.records import AuditRecord
from steward.audit.store import LocalFolderStore
from steward.cli.feedback import validated, write_outcomes
from steward.dev.loop import ControlLoop
from steward.dev.stack import Stack
from steward.dev.store import LocalStore, StoredObject
from steward.monitors import store as monitoring_store
from steward.operator.reconciler import Reconciler

pytestmark = pytest.mark.integration
NS = "retrain"
REQUESTS = 400
EXAMPLE = "python -m steward.retraining.example_train"
# Generous margins: the offline judgement itself is unit-tested; here a normal candidate must pass.
MARGINS = {"minLabelledRows": 100, "maxQualityDrop": 0.3, "maxFairnessDrop": 0.5}


@dataclass
class Operator:
    """The real reconciler in a local control loop; `restart` replaces it, as a new operator pod would."""

    stack: Stack
    store: LocalStore
    reconciler: Reconciler | None = None
    thread: threading.Thread | None = None
    stop_flag: threading.Event | None = None

    def start(self) -> None:
        config = replace(
            self.stack.operator_config(resync_interval_s=1.0), rollout_tick_s=1.0, rollout_drain_s=1.0
        )
        self.reconciler = Reconciler(config, ray_token=self.stack.ray_token())
        self.stop_flag = threading.Event()
        loop = ControlLoop(self.store, self.reconciler)
        self.thread = threading.Thread(target=loop.run, args=(0.5, self.stop_flag), daemon=True)
        self.thread.start()

    def stop(self) -> None:
        assert self.stop_flag is not None and self.thread is not None and self.reconciler is not None
        self.stop_flag.set()
        self.thread.join(60)
        assert not self.thread.is_alive(), "the control loop did not stop"
        self.reconciler.close()


@pytest.fixture
def operator(stack: Stack, tmp_path_factory: pytest.TempPathFactory, ray_client: Any) -> Iterator[Operator]:
    op = Operator(stack, LocalStore(tmp_path_factory.mktemp("retraining-home")))
    op.start()
    yield op
    for obj in op.store.all():
        op.store.remove(obj.namespace, obj.name)
    wait_until(lambda: not op.store.all(), 90, "the deployments to be finalized")
    op.stop()


def _manifest(name: str, model: dict[str, str], retraining: dict[str, Any], **spec: Any) -> ModelDeployment:
    return ModelDeployment.model_validate(
        {
            "apiVersion": "steward.io/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": name, "namespace": NS, "annotations": {"steward.io/actor": "mo@bank"}},
            "spec": {
                "model": {"name": "credit-risk", **model},
                "serving": {"resources": {"cpu": 0.25}},
                "monitoring": {"capture": {"sampleRate": 1.0, "sensitiveFeatures": ["gender", "age_band"]}},
                "retraining": {
                    "entrypoint": EXAMPLE,
                    "entrypointNumCpus": 0.25,
                    "dataWindow": "1h",
                    "timeout": "10m",
                    "maxRunsPerDay": 10,
                    "evaluation": MARGINS,
                    **retraining,
                },
                **spec,
            },
        }
    )


def _get(store: LocalStore, name: str) -> StoredObject:
    obj = store.get(NS, name)
    assert obj is not None
    return obj


def _send(url: str, n: int, seed: int) -> tuple[list[str], pd.Series]:
    """n requests with ids; returns the ids and the applicants' true outcomes."""
    from steward.dev.credit_model import FEATURES, SENSITIVE, applicants

    people = applicants(n, seed=seed)
    ids = [f"rt-{uuid.uuid4().hex}" for _ in range(n)]
    with httpx.Client(timeout=30) as client:
        for i, row in enumerate(people[FEATURES + SENSITIVE].to_dict(orient="records")):
            answer = client.post(url, json={"dataframe_records": [row]}, headers={"X-Request-Id": ids[i]})
            assert answer.status_code == 200, answer.text
    return ids, people["defaulted"]


def _labelled_traffic(stack: Stack, store: LocalStore, name: str, version: str) -> None:
    """Live traffic, captured by the router, and its outcomes fed back: what a run trains on."""
    ready = wait_until(
        lambda: (o := store.get(NS, name)) and o.status.phase.value == "Ready" and o, 240, f"{name} Ready"
    )
    ids, outcomes = _send(str(ready.status.endpoint), REQUESTS, seed=31)
    store_uri = str((stack.home / "monitoring").resolve())
    prefix = capture_prefix(store_uri, f"{NS}/{name}", version)
    wait_until(
        lambda: (
            sum(len(monitoring_store.read_parquet(k)) for k in monitoring_store.list_keys(prefix)) >= REQUESTS
        ),
        120,
        "the router to write every captured request",
    )
    now = datetime.now(UTC)
    frame = validated(pd.DataFrame({"request_id": ids, "label": outcomes}), now)
    write_outcomes(store_uri, f"{NS}/{name}", frame, now)


def _command(store: LocalStore, name: str, kind: str, actor: str, reason: str) -> str:
    command = RetrainingCommand(id=uuid.uuid4().hex, command=kind, actor=actor, reason=reason)
    store.annotate(NS, name, RETRAINING_COMMAND_ANNOTATION, command.model_dump_json(exclude_none=True))
    return command.id


def _runs_finished(store: LocalStore, name: str, n: int, timeout_s: float = 600) -> StoredObject:
    def done() -> StoredObject | None:
        obj = store.get(NS, name)
        ret = obj.status.retraining if obj else None
        return obj if ret is not None and len(ret.runs) >= n and ret.current is None else None

    found: StoredObject = wait_until(done, timeout_s, f"retraining run {n} of {name} to end", interval_s=2)
    return found


def _records(stack: Stack, name: str) -> list[AuditRecord]:
    return LocalFolderStore(stack.home / "audit").read(f"{NS}/{name}")


def _ray_jobs(stack: Stack, name: str) -> list[dict[str, Any]]:
    """Every Ray Job submitted for this deployment's retraining (the Jobs API lists them all)."""
    answer = httpx.get(
        f"{stack.ray_address}/api/jobs/",
        headers={"Authorization": f"Bearer {stack.ray_token()}"},
        timeout=30,
    )
    answer.raise_for_status()
    return [
        j
        for j in answer.json()
        if (j.get("metadata") or {}).get("steward.io/deployment") == f"{NS}/{name}"
        and (j.get("metadata") or {}).get("steward.io/purpose") == "retraining"
    ]


def _alias(stack: Stack, alias: str) -> str | None:
    import mlflow

    try:
        found = mlflow.MlflowClient(stack.tracking_uri).get_model_version_by_alias("credit-risk", alias)
    except mlflow.exceptions.MlflowException:
        return None
    return str(found.version)


def _traffic_until(url: str, stop: Callable[[], bool]) -> threading.Thread:
    """Keep live traffic flowing (the canary's analysis needs requests) until `stop()` says so."""

    def run() -> None:
        seed = 100
        while not stop():
            seed += 1
            _send(url, 20, seed)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_the_loop_from_a_request_to_a_promoted_candidate_then_cooldown(
    operator: Operator, models: Any, stack: Stack
) -> None:
    import mlflow

    name, champion, challenger = "loop", "rt-champion", "rt-challenger"
    client = mlflow.MlflowClient(stack.tracking_uri)
    client.set_registered_model_alias("credit-risk", champion, models.good_v1)
    store = operator.store
    store.apply(
        _manifest(
            name,
            {"alias": champion},
            {"approval": "manual", "cooldown": "1h", "challengerAlias": challenger},
            rollout={
                "steps": [{"setWeight": 50}, {"analysis": {}}],
                # The loop, not latency, is under test: two CPUs shared with a training job are noisy.
                "analysis": {"interval": "10s", "minRequests": 10, "latencyToleranceMs": 5000},
            },
        )
    )
    _labelled_traffic(stack, store, name, models.good_v1)

    requested = _command(store, name, "retrain", "alice", "CR-77 drift seen")
    waiting = wait_until(
        lambda: (
            (o := store.get(NS, name))
            and o.status.retraining
            and o.status.retraining.state == RetrainingState.AWAITING_APPROVAL
            and o
        ),
        60,
        "the run to await approval",
    )
    run = waiting.status.retraining.current
    # Manual approval: nothing is submitted before a person approves.
    assert run is not None and run.submitted_at is None and _ray_jobs(stack, name) == []
    _command(store, name, "approve", "bob", "MRM-12 reviewed the drift report")

    # The canary: the run passed, @challenger names the candidate, @champion still the serving version.
    canary = wait_until(
        lambda: (
            (o := store.get(NS, name))
            and o.status.retraining
            and o.status.retraining.candidate_rollout
            and o.status.retraining.candidate_rollout.state == CandidateRolloutState.CANARY
            and o
        ),
        600,
        "the candidate's canary to start",
        interval_s=2,
    )
    cr = canary.status.retraining.candidate_rollout
    [finished] = canary.status.retraining.runs
    assert finished.outcome == RunOutcome.CANDIDATE_PASSED and finished.candidate_version == cr.version
    candidate = cr.version
    assert _alias(stack, challenger) == candidate and _alias(stack, champion) == models.good_v1
    assert canary.status.stable is not None and canary.status.stable.version == models.good_v1

    done = threading.Event()
    url = str(canary.status.endpoint)
    traffic = _traffic_until(url, done.is_set)
    try:
        promoted = wait_until(
            lambda: (
                (o := store.get(NS, name))
                and o.status.stable
                and o.status.stable.version == candidate
                and o.status.rollout is None
                and o
            ),
            420,
            "the candidate to be promoted",
            interval_s=2,
        )
    finally:
        done.set()
        traffic.join(120)
    assert _alias(stack, champion) == candidate and _alias(stack, challenger) is None
    retraining = promoted.status.retraining
    assert retraining is not None and retraining.candidate_rollout is None
    assert retraining.runs[-1].rollout == CandidateOutcome.PROMOTED
    assert promoted.status.rollout_history[-1].outcome.value == "Promoted"

    # The chain, in the trail's order, from the request to the promotion.
    records = _records(stack, name)
    sid = finished.submission_id
    ours = [
        r
        for r in records
        if r.evidence.get("submission_id") == sid
        or r.cause == f"retraining-requested:command:{requested}"
        or (r.model is not None and r.model.to_version == candidate)
    ]
    actions = [r.action.value for r in ours]
    expected = [
        "retraining-requested",
        "retraining-approved",
        "retraining-started",
        "retraining-finished",
        "candidate-evaluated",
        "rollout-started",
        "candidate-rollout",
        "promoted",
        "alias-moved",
        "candidate-rollout",
    ]
    assert [a for a in actions if a in expected] == expected, actions
    assert ours[1].actor == "bob (declared)" and ours[0].actor == "alice (declared)"
    moved = next(r for r in ours if r.action.value == "alias-moved")
    assert moved.evidence["alias"] == champion and moved.model is not None
    assert (moved.model.from_version, moved.model.to_version) == (models.good_v1, candidate)
    # Recorded once: the next passes observed @champion on the candidate and added no alias-moved record.
    assert sum(r.action.value == "alias-moved" for r in records) == 1
    tags = client.get_model_version("credit-risk", candidate).tags
    assert tags["steward.trigger"] == f"retraining-requested:command:{requested}"
    assert tags["steward.trigger.record_hash"] == ours[0].hash

    # Cooldown: a second request within the hour is refused, recorded with why, and nothing runs.
    again = _command(store, name, "retrain", "carol", "once more")
    wait_until(
        lambda: (o := store.get(NS, name)) and o.status.retraining.handled_command == again,
        60,
        "the second command to be handled",
    )
    refused = wait_until(
        lambda: next(
            (r for r in _records(stack, name) if r.cause == f"retraining-requested:command:{again}"), None
        ),
        30,
        "the refused request's record",
    )
    assert refused.evidence["accepted"] is False and "cooldown" in refused.evidence["refused_because"]
    assert len(_ray_jobs(stack, name)) == 1
    assert _get(store, name).status.retraining.current is None


def test_a_pinned_version_survives_a_failed_job_a_worse_candidate_and_a_restart(
    operator: Operator, models: Any, stack: Stack
) -> None:
    name = "pinned"
    store = operator.store
    retraining = {"approval": "automatic", "cooldown": "0s"}
    failing = "python -c \"import sys; print('training blew up: feature store unreachable'); sys.exit(3)\""
    store.apply(_manifest(name, {"version": models.good_v1}, {**retraining, "entrypoint": failing}))
    _labelled_traffic(stack, store, name, models.good_v1)

    # 1. The job fails: the failure and its log's tail are recorded; version 1 keeps serving.
    _command(store, name, "retrain", "alice", "job that fails")
    failed = _runs_finished(store, name, 1).status
    run = failed.retraining.runs[-1]
    assert run.outcome == RunOutcome.FAILED and run.candidate_version is None, run
    assert run.log_tail is not None and "feature store unreachable" in run.log_tail
    assert failed.stable is not None and failed.stable.version == models.good_v1
    record = next(r for r in _records(stack, name) if r.cause == f"retraining-finished:{run.submission_id}")
    assert record.evidence["outcome"] == "Failed" and "feature store" in record.evidence["log_tail"]

    # 2. A candidate worse than the serving version: rejected offline, never deployed.
    worse = {**retraining, "runtimeEnv": {"envVars": {"EXAMPLE_TRAIN_FLIP_LABELS": "1"}}}
    store.apply(_manifest(name, {"version": models.good_v1}, worse))
    _command(store, name, "retrain", "alice", "a bad candidate")
    rejected = _runs_finished(store, name, 2).status
    run = rejected.retraining.runs[-1]
    assert run.outcome == RunOutcome.CANDIDATE_REJECTED and run.candidate_version is not None, run
    evaluated = next(
        r for r in _records(stack, name) if r.cause == f"candidate-evaluated:{run.submission_id}"
    )
    assert evaluated.evidence["passed"] is False

    # 3. The operator restarts while the job runs: no second job, and the result is still picked up.
    store.apply(_manifest(name, {"version": models.good_v1}, retraining))
    _command(store, name, "retrain", "alice", "a good candidate, across a restart")
    wait_until(
        lambda: (
            (o := store.get(NS, name))
            and o.status.retraining.state == RetrainingState.RUNNING
            and o.status.retraining.current is not None
            and o.status.retraining.current.submitted_at is not None
        ),
        60,
        "the third run to be submitted",
    )
    operator.stop()
    # The old operator is gone with the job still running: only the new one can pick its result up.
    between = _get(store, name).status.retraining
    assert between is not None and between.state == RetrainingState.RUNNING, "job ended before the restart"
    operator.start()
    passed = _runs_finished(store, name, 3).status
    run = passed.retraining.runs[-1]
    assert run.outcome == RunOutcome.CANDIDATE_PASSED, run
    # Pinned: recommended, never deployed, no alias set by Steward.
    assert "recommended, not deployed" in run.message and run.rollout is None
    assert passed.retraining.candidate_rollout is None

    jobs = _ray_jobs(stack, name)
    assert len(jobs) == 3, [j["submission_id"] for j in jobs]
    assert sorted(j["submission_id"] for j in jobs) == sorted(r.submission_id for r in passed.retraining.runs)
    events = store.read_events(NS, name)
    assert sum(e["reason"] == "RetrainingStarted" for e in events) == 3
    started = [r for r in _records(stack, name) if r.action.value == "retraining-started"]
    assert len(started) == len({r.cause for r in started}) == 3

    # Through all three runs, version 1 served alone: no rollout ever started.
    final = _get(store, name).status
    assert final.stable is not None and final.stable.version == models.good_v1
    assert final.rollout is None and final.rollout_history == []
    assert not any(r.action.value == "rollout-started" for r in _records(stack, name))
