"""Training runs as Kubernetes Jobs against kmock's emulated API: the executor creates the Job decide() built,
follows its status (a kubelet played by the test), reads its pod's log on failure, and deletes it to stop it.

The client is the real `kubernetes` one, run in a thread; the API is served by this test's event loop.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from builders import T0, md
from kubernetes import config
from test_rollout_cluster import kubeconfig

from steward.adapters.errors import Rejected, Unauthorized, Unreachable
from steward.adapters.kubernetes_jobs import JobPhase, KubernetesJobsClient, job_state
from steward.api.model_deployment import ModelDeployment
from steward.api.retraining import MAX_LOG_TAIL_CHARS
from steward.operator.actions import StopTrainingJob, SubmitTrainingJob
from steward.operator.monitor_jobs import JobState
from steward.operator.retraining_io import TrainingJobs

NS = "risk"
JOBS = "batch/v1/jobs"
PODS = "v1/pods"
NAME = "credit-retrain-0123456789ab"
SID = "steward-retrain-u1-0123456789abcdef"
MANIFEST: dict[str, Any] = {
    "apiVersion": "batch/v1",
    "kind": "Job",
    "metadata": {"name": NAME, "namespace": NS, "labels": {"steward.io/purpose": "retraining"}},
    "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "t", "image": "i"}]}}},
}


@pytest.fixture
def api(kmock: Any, tmp_path: Path) -> KubernetesJobsClient:
    kmock.resources[JOBS] = {"kind": "Job", "namespaced": True, "verbs": {"get", "create", "delete", "list"}}
    kmock.resources[PODS] = {"kind": "Pod", "namespaced": True, "verbs": {"get", "list"}}
    path = kubeconfig(tmp_path / "kubeconfig", str(kmock.url).rstrip("/"))
    return KubernetesJobsClient(config.new_client_from_config(config_file=str(path)))  # type: ignore[no-untyped-call]


def resource(result_uri: str) -> ModelDeployment:
    run = {
        "submissionId": SID,
        "trigger": {"kind": "manual", "cause": "retraining-requested:command:c1", "reason": "r"},
        "requestedAt": T0.isoformat(),
        "resultUri": result_uri,
        "kubernetesJob": NAME,
        "attempts": 1,
    }
    return md(
        {"model": {"name": "credit-risk", "version": "3"}, "retraining": {"entrypoint": "python -m t"}},
        {"retraining": {"state": "Running", "current": run}},
    )


def _finish(kmock: Any, kind: str, reason: str = "", message: str = "") -> None:
    job = kmock.objects[JOBS, NS, NAME]
    condition = {"type": kind, "status": "True", "reason": reason, "message": message}
    kmock.objects[JOBS, NS, NAME] = {**job.raw, "status": {"conditions": [condition]}}


def _pod(kmock: Any, name: str, job: str, created: str) -> None:
    kmock.objects[PODS, NS, name] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": NS,
            "labels": {"job-name": job},
            "creationTimestamp": created,
        },
    }


async def test_created_once_followed_to_its_end_and_its_log_tail_read(
    kmock: Any, api: KubernetesJobsClient, tmp_path: Path
) -> None:
    jobs = TrainingJobs(None, {"AWS_SECRET_ACCESS_KEY": "operator-copy"}, kubernetes=api)
    submit = SubmitTrainingJob("http://ray:8265", SID, "risk/credit", "python -m t", {}, 1, 0, None, MANIFEST)
    await asyncio.to_thread(jobs.submit, submit)
    await asyncio.to_thread(jobs.submit, submit)  # replayed after a crash: the same Job, no error
    created = [r for r in kmock if r.method == "POST"]
    assert len(created) == 2 and kmock.objects[JOBS, NS, NAME]["metadata"]["name"] == NAME
    # The operator's copies of credentials never go into a Job (anyone who reads Jobs would read them).
    assert "operator-copy" not in json.dumps(kmock.objects[JOBS, NS, NAME].raw)

    md_ = resource(str(tmp_path / "result.json"))
    observed = await asyncio.to_thread(jobs.observe, md_, None, None)
    assert observed.job is not None and observed.job.state == JobState.RUNNING

    _pod(kmock, "old-pod", NAME, "2026-11-24T10:00:00Z")
    _pod(kmock, "new-pod", NAME, "2026-11-24T10:05:00Z")
    _pod(kmock, "other-pod", "another-job", "2026-11-24T10:09:00Z")
    kmock["get", f"/api/v1/namespaces/{NS}/pods/new-pod/log"] << b"loading window\nValueError: no labels\n"
    kmock["get", f"/api/v1/namespaces/{NS}/pods/old-pod/log"] << b"the first attempt\n"
    kmock["get", f"/api/v1/namespaces/{NS}/pods/other-pod/log"] << b"not ours\n"
    _finish(kmock, "Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")
    observed = await asyncio.to_thread(jobs.observe, md_, None, None)
    assert observed.job is not None and observed.job.state == JobState.FAILED
    problem = observed.job.problem
    assert "BackoffLimitExceeded: Job has reached the specified backoff limit" in problem
    assert problem.endswith("log ends: loading window\nValueError: no labels\n")
    assert "not ours" not in problem and "first attempt" not in problem
    assert len(problem) <= MAX_LOG_TAIL_CHARS


async def test_a_written_result_counts_and_a_complete_job_without_one_is_seen_as_such(
    kmock: Any, api: KubernetesJobsClient, tmp_path: Path
) -> None:
    jobs = TrainingJobs(None, {}, kubernetes=api)
    kmock.objects[JOBS, NS, NAME] = MANIFEST
    _finish(kmock, "Complete")
    result = tmp_path / "result.json"
    observed = await asyncio.to_thread(jobs.observe, resource(str(result)), None, None)
    assert observed.job is not None and (observed.job.state, observed.job.result) == (
        JobState.SUCCEEDED,
        None,
    )

    result.write_text(json.dumps({"submissionId": SID, "deployment": "risk/credit", "modelName": "m"}))
    observed = await asyncio.to_thread(jobs.observe, resource(str(result)), None, None)
    assert observed.job is not None and observed.job.result is not None
    assert observed.job.result.submission_id == SID


async def test_a_job_that_is_gone_is_missing_and_stopping_deletes_it(
    kmock: Any, api: KubernetesJobsClient, tmp_path: Path
) -> None:
    jobs = TrainingJobs(None, {}, kubernetes=api)
    md_ = resource(str(tmp_path / "result.json"))
    observed = await asyncio.to_thread(jobs.observe, md_, None, None)
    assert observed.job is not None and observed.job.state == JobState.MISSING

    kmock.objects[JOBS, NS, NAME] = MANIFEST
    await asyncio.to_thread(jobs.stop, StopTrainingJob("http://ray:8265", SID, (NS, NAME)))
    (deleted,) = [r for r in kmock if r.method == "DELETE"]
    assert deleted.url.path == f"/apis/batch/v1/namespaces/{NS}/jobs/{NAME}"
    assert deleted.data["propagationPolicy"] == "Background"  # its pod goes too
    observed = await asyncio.to_thread(jobs.observe, md_, None, None)
    assert observed.job is not None and observed.job.state == JobState.MISSING
    # Stopping a Job already gone is not an error.
    await asyncio.to_thread(jobs.stop, StopTrainingJob("http://ray:8265", SID, (NS, NAME)))


async def test_refusals_say_what_is_wrong(kmock: Any, api: KubernetesJobsClient) -> None:
    base = f"/apis/batch/v1/namespaces/{NS}/jobs"
    kmock["post", base] << 403 << {"kind": "Status", "code": 403, "message": "forbidden"}
    with pytest.raises(Unauthorized, match=r"create, get and delete on jobs\.batch"):
        await asyncio.to_thread(api.create, MANIFEST)
    kmock["get", f"{base}/bad"] << 422 << {"kind": "Status", "code": 422, "message": "nodeSelector: invalid"}
    with pytest.raises(Rejected, match="nodeSelector: invalid"):
        await asyncio.to_thread(api.state, NS, "bad")
    kmock["get", f"{base}/busy"] << 503 << {"kind": "Status", "code": 503, "message": "etcd is sad"}
    with pytest.raises(Unreachable, match="503"):
        await asyncio.to_thread(api.state, NS, "busy")


def test_an_operator_without_a_cluster_says_kubernetes_jobs_need_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(Rejected, match="needs the operator to run in a cluster"):
        KubernetesJobsClient().state(NS, NAME)


@pytest.mark.parametrize(
    ("status", "phase"),
    [
        ({}, JobPhase.RUNNING),
        ({"active": 1}, JobPhase.RUNNING),
        ({"conditions": [{"type": "Complete", "status": "True"}]}, JobPhase.SUCCEEDED),
        (
            {"conditions": [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]},
            JobPhase.FAILED,
        ),
        ({"conditions": [{"type": "Failed", "status": "False"}]}, JobPhase.RUNNING),
        ({"conditions": [{"type": "Suspended", "status": "True"}]}, JobPhase.RUNNING),
    ],
)
def test_a_jobs_phase_is_read_from_its_final_conditions(status: dict[str, Any], phase: JobPhase) -> None:
    assert job_state({"status": status}).phase == phase


async def test_a_refused_job_fails_the_run_not_the_deployment(
    kmock: Any, api: KubernetesJobsClient, tmp_path: Path
) -> None:
    jobs = TrainingJobs(None, {}, kubernetes=api)
    md_ = resource(str(tmp_path / "result.json"))
    submit = SubmitTrainingJob("http://ray:8265", SID, "risk/credit", "python -m t", {}, 1, 0, None, MANIFEST)
    base = f"/apis/batch/v1/namespaces/{NS}/jobs"
    # Refused: nothing raised into the pass; the run fails with the API's reason and what to grant.
    kmock["post", base] << 403 << {"kind": "Status", "code": 403, "message": "forbidden"}
    await asyncio.to_thread(jobs.submit, submit)
    observed = await asyncio.to_thread(jobs.observe, md_, None, None)
    assert observed.job is not None and observed.job.state == JobState.FAILED
    assert "refused the training Job credit-retrain-0123456789ab" in observed.job.problem
    assert "create, get and delete on jobs.batch" in observed.job.problem


async def test_an_api_that_does_not_answer_leaves_the_run_going(
    kmock: Any, api: KubernetesJobsClient, tmp_path: Path
) -> None:
    jobs = TrainingJobs(None, {}, kubernetes=api)
    md_ = resource(str(tmp_path / "result.json"))
    submit = SubmitTrainingJob("http://ray:8265", SID, "risk/credit", "python -m t", {}, 1, 0, None, MANIFEST)
    kmock["post", f"/apis/batch/v1/namespaces/{NS}/jobs"] << 503 << {"kind": "Status", "code": 503}
    await asyncio.to_thread(jobs.submit, submit)
    # kmock keeps a Job whose creation it answered with 503 (an API that created it, then failed to say so):
    # it is followed as running. One that is missing would be created again under its name.
    observed = await asyncio.to_thread(jobs.observe, md_, None, None)
    assert observed.job is not None and observed.job.state == JobState.RUNNING
