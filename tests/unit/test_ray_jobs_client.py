"""The Ray Jobs client against a fake dashboard: idempotent submission, reads, errors classified."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from steward.adapters.errors import AdapterError, NotFound, Rejected, Unauthorized, Unreachable
from steward.adapters.ray_jobs import JobRequest, JobStatus, RayJobsClient


class FakeJobs:
    """Ray's Jobs API as far as the client relies on it (dashboard/modules/job/job_head.py)."""

    def __init__(self, token: str | None = "t0k") -> None:
        self.token = token
        self.jobs: dict[str, dict[str, Any]] = {}
        self.posts: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.token and request.headers.get("authorization") != f"Bearer {self.token}":
            return httpx.Response(401, text="Unauthorized")
        path = request.url.path
        if request.method == "POST" and path == "/api/jobs/":
            body = json.loads(request.content)
            self.posts.append(body)
            sid = body["submission_id"]
            if sid in self.jobs:
                # What Ray 2.60's dashboard answers: its job agent's 400, wrapped in a 500.
                return httpx.Response(
                    500,
                    text="Traceback ...\nRuntimeError: Request failed with status code 400: Traceback ...\n"
                    f"ValueError: Job with submission_id {sid} already exists. "
                    "Please use a different submission_id.",
                )
            self.jobs[sid] = {
                "type": "SUBMISSION",
                "submission_id": sid,
                "status": "PENDING",
                "entrypoint": body["entrypoint"],
                "metadata": body.get("metadata"),
                "start_time": 1_700_000_000_000,
                "end_time": None,
            }
            return httpx.Response(200, json={"job_id": sid, "submission_id": sid})
        parts = path.removeprefix("/api/jobs/").split("/")
        job = self.jobs.get(parts[0])
        if job is None:
            return httpx.Response(404, text=f"Job {parts[0]} does not exist")
        if request.method == "GET" and len(parts) == 1:
            return httpx.Response(200, json=job)
        if request.method == "GET" and parts[1:] == ["logs"]:
            return httpx.Response(200, json={"logs": "line\n" * 10 + "Traceback: boom\n"})
        if request.method == "POST" and parts[1:] == ["stop"]:
            running = job["status"] in ("PENDING", "RUNNING")
            job["status"] = "STOPPED" if running else job["status"]
            return httpx.Response(200, json={"stopped": running})
        if request.method == "DELETE" and len(parts) == 1:
            del self.jobs[parts[0]]
            return httpx.Response(200, json={"deleted": True})
        return httpx.Response(405)


def _client(fake: Any, token: str | None = "t0k") -> RayJobsClient:
    return RayJobsClient("http://ray:8265", token, timeout_s=2, transport=httpx.MockTransport(fake))


REQUEST = JobRequest(
    entrypoint="python -m steward.monitors.run e30=",
    submission_id="steward-0a1b2c3d-drift-v3-1700000000",
    metadata={"monitor": "drift"},
    num_cpus=0.5,
    memory_bytes=2**30,
)


def test_submit_sends_rays_fields_and_reads_the_job_back() -> None:
    fake = FakeJobs()
    with _client(fake) as client:
        submission = client.submit(REQUEST)
        job = client.get_job(REQUEST.submission_id)
    assert submission.created and submission.existing is None
    assert fake.posts == [
        {
            "entrypoint": REQUEST.entrypoint,
            "submission_id": REQUEST.submission_id,
            "metadata": {"monitor": "drift"},
            "entrypoint_num_cpus": 0.5,
            "entrypoint_memory": 2**30,
        }
    ]
    assert job is not None and job.status == JobStatus.PENDING and not job.finished
    assert job.metadata == {"monitor": "drift"} and job.started_at is not None and job.ended_at is None


def test_a_repeated_submission_id_returns_the_existing_job_and_runs_nothing_new() -> None:
    fake = FakeJobs()
    with _client(fake) as client:
        client.submit(REQUEST)
        fake.jobs[REQUEST.submission_id]["status"] = "SUCCEEDED"
        again = client.submit(REQUEST)
    assert not again.created
    assert again.existing is not None and again.existing.status == JobStatus.SUCCEEDED
    assert len(fake.jobs) == 1


def test_a_job_ray_does_not_know_is_none() -> None:
    with _client(FakeJobs()) as client:
        assert client.get_job("steward-nope") is None
        assert client.delete("steward-nope") is False


def test_logs_are_tailed_and_stop_says_whether_it_stopped() -> None:
    fake = FakeJobs()
    with _client(fake) as client:
        client.submit(REQUEST)
        assert client.logs(REQUEST.submission_id, max_chars=16) == "Traceback: boom\n"
        assert client.stop(REQUEST.submission_id) is True
        assert client.stop(REQUEST.submission_id) is False
        assert client.delete(REQUEST.submission_id) is True


def _answer(status: int, text: str = "") -> Any:
    return lambda request: httpx.Response(status, text=text)


def _unreachable(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectTimeout("timed out", request=request)


@pytest.mark.parametrize(
    ("handler", "error", "temporary"),
    [
        (_answer(401, "Unauthorized"), Unauthorized, False),
        (_answer(403), Unauthorized, False),
        (_answer(400, "TypeError: unexpected keyword 'entrypoint_foo'"), Rejected, False),
        (_answer(404, "Not Found"), NotFound, False),
        (_answer(500, "No available agent to submit job, please try again later."), Unreachable, True),
        (_answer(200, "<html>login</html>"), Unreachable, True),
        (_unreachable, Unreachable, True),
    ],
)
def test_submit_errors_are_classified(handler: Any, error: type[AdapterError], temporary: bool) -> None:
    with _client(handler) as client, pytest.raises(error) as caught:
        client.submit(REQUEST)
    assert caught.value.temporary is temporary


def test_no_token_means_no_authorization_header() -> None:
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        return httpx.Response(404, text="Job x does not exist")

    with _client(handler, token=None) as client:
        client.get_job("x")
    assert seen == [None]


@pytest.mark.parametrize("bad", ["Steward-Upper", "", "a" * 65, "has space", "../etc"])
def test_submission_ids_ray_would_mangle_are_refused_before_sending(bad: str) -> None:
    fake = FakeJobs()
    with _client(fake) as client, pytest.raises(Rejected):
        client.submit(JobRequest(entrypoint="true", submission_id=bad))
    assert fake.posts == []


def test_every_call_gives_up_at_its_timeout() -> None:
    with RayJobsClient("http://ray:8265", timeout_s=0.25) as client:
        assert client._http.timeout == httpx.Timeout(0.25)
