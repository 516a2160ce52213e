"""A training run as a Kubernetes Job (spec.retraining.kubernetesJob): the spec, the Job Steward builds (valid
for Kubernetes' own schema), and decide() submitting, following and stopping it where it runs."""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import timedelta
from typing import Any

import kubernetes_validate
import pytest
from builders import CONFIG
from pydantic import ValidationError
from world import World, settled

from steward.api.model_deployment import ModelDeployment
from steward.api.retraining import RETRAINING_COMMAND_ANNOTATION, TRAINING_JOB_ENV, RetrainingSpec
from steward.api.training_job import TrainingJob
from steward.operator.actions import PostEvent, StopTrainingJob, SubmitTrainingJob
from steward.operator.core import Decision, decide
from steward.operator.monitor_jobs import JobState
from steward.operator.observations import Observations
from steward.operator.retraining_k8s import kubernetes_job_name
from steward.operator.retraining_observation import (
    RetrainingObservation,
    StoredRecord,
    TrainingJobObservation,
)

STORE = "/var/steward/monitoring"
STORED = StoredRecord(seq=4, hash="cd" * 32)
K8S_JOB = {
    "image": "registry.bank.example/credit-trainer:1.4",
    "serviceAccountName": "trainer",
    "envFromSecrets": ["mlflow-credentials", "s3-credentials"],
    "nodeSelector": {"pool": "gpu"},
    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
}


def _retraining(**overrides: Any) -> dict[str, Any]:
    return {
        "entrypoint": "python -m steward.retraining.example_train --seed 7",
        "approval": "automatic",
        "entrypointNumCpus": 1.5,
        "entrypointNumGpus": 0.5,
        "entrypointMemory": "2Gi",
        "timeout": "30m",
        "runtimeEnv": {"envVars": {"TRAIN_SEED": "7"}},
        "kubernetesJob": K8S_JOB,
        **overrides,
    }


def _world(**overrides: Any) -> World:
    world = settled(
        {"model": {"name": "credit-risk", "version": "3"}, "retraining": _retraining(**overrides)}
    )
    world.config = dataclasses.replace(CONFIG, monitoring_uri=STORE)
    meta = world.resource.metadata.model_copy(update={"uid": "0a1b2c3d-uid"})
    world.resource = world.resource.model_copy(update={"metadata": meta})
    return world


def _pass(world: World, seconds: float = 2.0, retraining: RetrainingObservation | None = None) -> Decision:
    world.now += timedelta(seconds=seconds)
    obs = Observations(
        model=world.model, serve=world.serve(), retraining=retraining or RetrainingObservation()
    )
    decision = decide(world.resource, obs, world.config, world.now)
    world.resource = world.resource.model_copy(update={"status": decision.status})
    return decision


def _submitted(world: World) -> SubmitTrainingJob:
    world.annotate(RETRAINING_COMMAND_ANNOTATION, json.dumps({"id": "c1", "command": "retrain"}))
    _pass(world)
    decision = _pass(world, retraining=RetrainingObservation(trigger_record=STORED))
    return next(a for a in decision.actions if isinstance(a, SubmitTrainingJob))


# --- the spec -----------------------------------------------------------------------------------------------


def test_rays_own_runtime_env_parts_are_refused_with_a_kubernetes_job() -> None:
    for ray_only in ({"pip": ["lightgbm"]}, {"workingDir": "s3://code/trainer.zip"}):
        with pytest.raises(ValidationError, match="image must hold the trainer"):
            RetrainingSpec.model_validate(_retraining(runtimeEnv=ray_only))
    # Without kubernetesJob they are the Ray Job's, as before.
    plain = {k: v for k, v in _retraining(runtimeEnv={"pip": ["lightgbm"]}).items() if k != "kubernetesJob"}
    assert RetrainingSpec.model_validate(plain).kubernetes_job is None


@pytest.mark.parametrize(
    ("job", "field"),
    [
        ({}, "image"),
        ({"image": "x", "serviceAccountName": "Trainer_SA"}, "serviceAccountName"),
        ({"image": "x", "envFromSecrets": ["UPPER"]}, "envFromSecrets"),
        ({"image": "x", "backoffLimit": 11}, "backoffLimit"),
        ({"image": "x", "tolerations": [{"operator": "Maybe"}]}, "operator"),
        ({"image": "x", "nodeSelector": {"pool": "not a value"}}, "nodeSelector"),
        ({"image": "x", "podSpec": {}}, "podSpec"),
    ],
)
def test_a_bad_kubernetes_job_says_which_field(job: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        RetrainingSpec.model_validate(_retraining(kubernetesJob=job))
    assert field in str(caught.value)


# --- the Job ------------------------------------------------------------------------------------------------


def test_the_job_name_is_one_per_trigger_and_a_valid_label_value() -> None:
    sid = "steward-retrain-0a1b2c3d-0123456789abcdef"
    name = kubernetes_job_name("credit", sid)
    assert name == "credit-retrain-0123456789ab"
    assert kubernetes_job_name("credit", sid) == name
    assert kubernetes_job_name("credit", sid.replace("0123", "9999")) != name
    long = kubernetes_job_name("a" * 63, sid)
    assert len(long) <= 63 and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", long)


def test_the_job_runs_the_entrypoint_with_the_contract_the_resources_and_the_placement() -> None:
    world = _world()
    submit = _submitted(world)
    manifest = submit.kubernetes_job
    assert manifest is not None
    status = world.resource.status.retraining
    assert status is not None and status.current is not None
    assert manifest["metadata"]["name"] == status.current.kubernetes_job
    assert manifest["metadata"]["namespace"] == "risk"
    assert manifest["metadata"]["ownerReferences"][0]["uid"] == "0a1b2c3d-uid"
    job_spec = manifest["spec"]
    assert (job_spec["backoffLimit"], job_spec["activeDeadlineSeconds"]) == (0, 1800)
    pod = job_spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and pod["serviceAccountName"] == "trainer"
    assert pod["nodeSelector"] == {"pool": "gpu"} and pod["tolerations"][0]["operator"] == "Exists"
    (container,) = pod["containers"]
    assert container["command"] == ["/bin/sh", "-c", "python -m steward.retraining.example_train --seed 7"]
    assert container["resources"] == {
        "requests": {"cpu": "1500m", "memory": "2Gi"},
        "limits": {"memory": "2Gi", "nvidia.com/gpu": "1"},
    }
    assert [s["secretRef"]["name"] for s in container["envFrom"]] == ["mlflow-credentials", "s3-credentials"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["TRAIN_SEED"] == "7"
    contract = TrainingJob.model_validate_json(env[TRAINING_JOB_ENV])
    assert contract.submission_id == submit.submission_id and contract.trigger.record_hash == STORED.hash


@pytest.mark.parametrize("version", ("1.31", "1.35"))
def test_the_job_is_valid_for_kubernetes(version: str) -> None:
    manifest = _submitted(_world()).kubernetes_job
    assert manifest is not None
    kubernetes_validate.validate(manifest, version, strict=True)


def test_the_started_event_says_where_the_run_went() -> None:
    world = _world()
    world.annotate(RETRAINING_COMMAND_ANNOTATION, json.dumps({"id": "c1", "command": "retrain"}))
    _pass(world)
    decision = _pass(world, retraining=RetrainingObservation(trigger_record=STORED))
    started = [a for a in decision.actions if isinstance(a, PostEvent) and a.reason == "RetrainingStarted"]
    assert len(started) == 1 and "as the Kubernetes Job credit-retrain-" in started[0].message


# --- following it -------------------------------------------------------------------------------------------


def test_a_run_stays_a_kubernetes_job_when_the_spec_changes_and_is_stopped_there() -> None:
    world = _world(timeout="10m")
    submit = _submitted(world)
    assert submit.kubernetes_job is not None
    name = submit.kubernetes_job["metadata"]["name"]
    # The platform team switches to Ray mid-run: this run is still followed, and stopped, as the Job it is.
    spec = world.resource.spec.model_copy(
        update={"retraining": RetrainingSpec.model_validate(_retraining(kubernetesJob=None, timeout="10m"))}
    )
    world.resource = ModelDeployment.model_validate(
        {**world.resource.model_dump(by_alias=True), "spec": spec.model_dump(by_alias=True)}
    )
    running = RetrainingObservation(job=TrainingJobObservation(JobState.RUNNING))
    assert not [a for a in _pass(world, retraining=running).actions if isinstance(a, StopTrainingJob)]
    timed_out = _pass(world, 601, retraining=running)
    stops = [a for a in timed_out.actions if isinstance(a, StopTrainingJob)]
    assert [s.kubernetes_job for s in stops] == [("risk", name)]
    status = world.resource.status.retraining
    assert status is not None and status.runs[-1].outcome.value == "TimedOut"


def test_a_lost_job_is_created_again_under_the_same_name() -> None:
    world = _world()
    first = _submitted(world)
    missing = RetrainingObservation(job=TrainingJobObservation(JobState.MISSING))
    again = next(a for a in _pass(world, retraining=missing).actions if isinstance(a, SubmitTrainingJob))
    assert first.kubernetes_job is not None and again.kubernetes_job is not None
    assert again.kubernetes_job["metadata"]["name"] == first.kubernetes_job["metadata"]["name"]
