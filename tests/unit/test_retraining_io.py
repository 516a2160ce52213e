"""The reconciler's view of a retraining run: Ray's job state, the result file, the stored request record."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
from builders import T0, md

from steward.adapters.ray_jobs import RayJobsClient
from steward.api.model_deployment import ModelDeployment
from steward.audit.records import AuditAction, DeploymentRef, RecordDraft
from steward.audit.store import LocalFolderStore
from steward.audit.trail import AuditTrail
from steward.operator.actions import SubmitTrainingJob
from steward.operator.monitor_jobs import JobState
from steward.operator.retraining_io import TrainingJobs

ADDRESS = "http://ray:8265"
SID = "steward-retrain-uid-0123456789abcdef"


def resource(state: str, result_uri: str) -> ModelDeployment:
    run = {
        "submissionId": SID,
        "trigger": {"kind": "manual", "cause": "retraining-requested:command:c1", "reason": "r"},
        "requestedAt": T0.isoformat(),
        "resultUri": result_uri,
    }
    out = md(
        {"model": {"name": "credit-risk", "version": "3"}, "retraining": {"entrypoint": "python -m t"}},
        {"retraining": {"state": state, "current": run}},
    )
    return out.model_copy(update={"metadata": out.metadata.model_copy(update={"uid": "u1"})})


def jobs_with(answers: dict[str, Any], seen: list[httpx.Request] | None = None) -> TrainingJobs:
    def handle(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        for suffix, (code, body) in answers.items():
            if request.url.path.endswith(suffix):
                return httpx.Response(code, json=body)
        return httpx.Response(404, json={})

    jobs = TrainingJobs(None, {"AWS_ACCESS_KEY_ID": "replica"})
    jobs._clients[ADDRESS] = RayJobsClient(ADDRESS, transport=httpx.MockTransport(handle))
    return jobs


def test_a_failed_job_without_a_result_is_observed_with_its_log_tail(tmp_path: Path) -> None:
    jobs = jobs_with(
        {
            f"{SID}/logs": (200, {"logs": "Traceback...\nKeyError: 'label'\n"}),
            SID: (200, {"submission_id": SID, "status": "FAILED", "message": "exit 1"}),
        }
    )
    observed = jobs.observe(resource("Running", str(tmp_path / "result.json")), ADDRESS, None)
    assert observed.job is not None and observed.job.state == JobState.FAILED
    assert "KeyError: 'label'" in observed.job.problem and "exit 1" in observed.job.problem


def test_a_written_result_counts_whatever_ray_says_and_a_corrupt_one_fails(tmp_path: Path) -> None:
    path = tmp_path / "result.json"
    path.write_text(
        json.dumps(
            {
                "submissionId": SID,
                "deployment": "risk/credit",
                "modelName": "credit-risk",
                "candidateVersion": "4",
            }
        )
    )
    jobs = jobs_with({})  # Ray lost the job
    observed = jobs.observe(resource("Running", str(path)), ADDRESS, None)
    assert observed.job is not None and observed.job.state == JobState.SUCCEEDED
    assert observed.job.result is not None and observed.job.result.candidate_version == "4"
    path.write_text('{"submissionId": 1}')
    observed = jobs.observe(resource("Running", str(path)), ADDRESS, None)
    assert observed.job is not None and observed.job.state == JobState.FAILED
    assert "not a valid training result" in observed.job.problem


def test_a_requested_run_finds_its_stored_record_and_its_hash(tmp_path: Path) -> None:
    trail = AuditTrail(LocalFolderStore(tmp_path / "audit"))
    resource_ = resource("Requested", "/r.json")
    assert jobs_with({}).observe(resource_, ADDRESS, trail).trigger_record is None
    trail.record(
        [
            RecordDraft(
                deployment=DeploymentRef(namespace="risk", name="credit", uid="u1"),
                action=AuditAction.RETRAINING_REQUESTED,
                reason="r",
                cause="retraining-requested:command:c1",
            )
        ]
    )
    stored = jobs_with({}).observe(resource_, ADDRESS, trail).trigger_record
    [record] = LocalFolderStore(tmp_path / "audit").read("risk/credit")
    assert stored is not None and (stored.seq, stored.hash) == (record.seq, record.hash)


def test_submission_adds_the_replicas_credentials_and_names_the_purpose() -> None:
    seen: list[httpx.Request] = []
    jobs = jobs_with({"/api/jobs/": (200, {"submission_id": SID})}, seen)
    jobs.submit(
        SubmitTrainingJob(
            ADDRESS, SID, "risk/credit", "python -m t", {"env_vars": {"A": "1"}}, 1.0, 0.0, 2**30
        )
    )
    body = json.loads(seen[0].content)
    assert body["submission_id"] == SID and body["entrypoint_memory"] == 2**30
    assert body["runtime_env"]["env_vars"] == {"A": "1", "AWS_ACCESS_KEY_ID": "replica"}
    assert body["metadata"]["steward.io/purpose"] == "retraining" and "entrypoint_num_gpus" not in body
