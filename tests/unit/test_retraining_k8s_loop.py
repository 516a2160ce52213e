"""One retraining run as a Kubernetes Job, from the command to the judged candidate, with the test playing
the kubelet: decide() asks for the run, the executor creates the Job in kmock's emulated API, the "kubelet"
runs the Job's container command (the real example trainer, as a process, with nothing but the Job's
environment) against a local MLflow and store and marks the Job Complete, the executor reads it back, and
decide() judges the result.

What this proves beyond the kmock adapter tests: the Job Steward builds carries everything the trainer needs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from builders import CONFIG
from kubernetes import config
from test_kubernetes_jobs import JOBS, NS
from test_retraining_job import _capture
from test_rollout_cluster import kubeconfig
from world import World, settled

from steward.adapters.kubernetes_jobs import KubernetesJobsClient
from steward.api.retraining import RETRAINING_COMMAND_ANNOTATION, RunOutcome
from steward.audit.records import AuditAction
from steward.operator.actions import RecordAudit, SubmitTrainingJob
from steward.operator.core import Decision, decide
from steward.operator.observations import Observations
from steward.operator.retraining_io import TrainingJobs
from steward.operator.retraining_observation import RetrainingObservation, StoredRecord

TRAINER = "python -m steward.retraining.example_train"


def _kubelet(job: dict[str, Any], cwd: Path) -> tuple[int, str]:
    """Run the Job's one container as a process with the Job's environment only (and PATH, to find python)."""
    (container,) = job["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    env["PATH"] = os.environ["PATH"]
    done = subprocess.run(
        container["command"], env=env, cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )
    return done.returncode, done.stdout + done.stderr


def _pass(world: World, retraining: RetrainingObservation) -> Decision:
    world.now += timedelta(seconds=2)
    obs = Observations(model=world.model, serve=world.serve(), retraining=retraining)
    decision = decide(world.resource, obs, world.config, world.now)
    world.resource = world.resource.model_copy(update={"status": decision.status})
    return decision


@pytest.mark.filterwarnings("ignore")
async def test_a_run_as_a_kubernetes_job_trains_registers_and_is_judged(
    kmock: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from steward.dev.credit_model import register

    monkeypatch.chdir(tmp_path)  # MLflow's local artifact root is relative to the working directory
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", tracking)  # not one another test left set
    parent = await asyncio.to_thread(register, tracking, "credit-risk", 500, 3)
    assert parent == "1"  # the captured traffic below is version 1's
    store = tmp_path / "store"
    _capture(store, 1200, seed=11)  # captured as risk/credit, version 1, with outcomes

    spec = {
        "model": {"name": "credit-risk", "version": parent},
        "monitoring": {"capture": {"sensitiveFeatures": ["gender"]}},
        "retraining": {
            "entrypoint": TRAINER,
            "approval": "automatic",
            "evaluation": {"maxQualityDrop": 0.3, "maxFairnessDrop": 0.5, "minLabelledRows": 100},
            "kubernetesJob": {"image": "registry.bank.example/trainer:1", "envFromSecrets": ["mlflow"]},
        },
    }
    world = settled(spec, version=parent)
    world.config = dataclasses.replace(CONFIG, monitoring_uri=str(store), tracking_uri=tracking)
    meta = world.resource.metadata.model_copy(update={"uid": "0a1b2c3d-uid"})
    world.resource = world.resource.model_copy(update={"metadata": meta})

    kmock.resources[JOBS] = {"kind": "Job", "namespaced": True, "verbs": {"get", "create", "delete", "list"}}
    path = kubeconfig(tmp_path / "kubeconfig", str(kmock.url).rstrip("/"))
    api = KubernetesJobsClient(config.new_client_from_config(config_file=str(path)))  # type: ignore[no-untyped-call]
    jobs = TrainingJobs(None, {}, kubernetes=api)

    world.annotate(
        RETRAINING_COMMAND_ANNOTATION, json.dumps({"id": "c1", "command": "retrain", "reason": "CR-7"})
    )
    _pass(world, RetrainingObservation())
    started = _pass(world, RetrainingObservation(trigger_record=StoredRecord(3, "ef" * 32)))
    submit = next(a for a in started.actions if isinstance(a, SubmitTrainingJob))
    await asyncio.to_thread(jobs.submit, submit)

    run = world.resource.status.retraining.current  # type: ignore[union-attr]
    assert run is not None and run.kubernetes_job is not None
    job = kmock.objects[JOBS, NS, run.kubernetes_job]
    code, output = await asyncio.to_thread(_kubelet, job.raw, tmp_path)
    assert code == 0, output
    kmock.objects[JOBS, NS, run.kubernetes_job] = {
        **job.raw,
        "status": {"conditions": [{"type": "Complete", "status": "True"}], "succeeded": 1},
    }

    observed = await asyncio.to_thread(jobs.observe, world.resource, None, None)
    assert observed.job is not None and observed.job.result is not None
    finished = _pass(world, observed)
    status = world.resource.status.retraining
    assert status is not None and status.current is None
    last = status.runs[-1]
    assert last.outcome == RunOutcome.CANDIDATE_PASSED, last.message
    assert last.candidate_version == str(int(parent) + 1)
    recorded = [a.draft.action for a in finished.actions if isinstance(a, RecordAudit)]
    assert AuditAction.RETRAINING_FINISHED in recorded and AuditAction.CANDIDATE_EVALUATED in recorded
    # The candidate's lineage names the trigger the Job carried.
    import mlflow

    tags = mlflow.MlflowClient(tracking).get_model_version("credit-risk", last.candidate_version).tags
    assert tags["steward.trigger"] == "retraining-requested:command:c1"
    assert tags["steward.trigger.record_hash"] == "ef" * 32
