"""Ray Jobs through the dashboard's REST API (`/api/jobs/`): submit, read, tail logs, stop.

Submission is idempotent by `submission_id`: Ray refuses a second job with an id it already has ("already
exists"; Ray 2.60's dashboard wraps its job agent's 400 in a 500), and this client answers that refusal with
the job Ray has. So a caller that derives the id from what the job is for (a monitor's window) can submit
again after a restart, a timeout or a lost answer, and the window still runs once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from urllib.parse import quote

import httpx

from steward.adapters.errors import NotFound, Rejected, Unauthorized, Unreachable
from steward.adapters.ray_serve import TOKEN_ENV, TOKEN_PATH_ENV

JOBS_API = "/api/jobs/"
# Ray accepts any string; we keep ids to what is safe in a URL path, a file name and a log line.
SUBMISSION_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
MAX_LOG_CHARS = 20_000


class JobStatus(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    STOPPED = "STOPPED"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"

    @property
    def finished(self) -> bool:
        return self in (JobStatus.STOPPED, JobStatus.SUCCEEDED, JobStatus.FAILED)


@dataclass(frozen=True)
class JobRequest:
    entrypoint: str
    submission_id: str
    runtime_env: dict[str, Any] | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    num_cpus: float | None = None
    num_gpus: float | None = None
    memory_bytes: int | None = None

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"entrypoint": self.entrypoint, "submission_id": self.submission_id}
        if self.runtime_env:
            body["runtime_env"] = self.runtime_env
        if self.metadata:
            body["metadata"] = dict(self.metadata)
        if self.num_cpus is not None:
            body["entrypoint_num_cpus"] = self.num_cpus
        if self.num_gpus is not None:
            body["entrypoint_num_gpus"] = self.num_gpus
        if self.memory_bytes is not None:
            body["entrypoint_memory"] = self.memory_bytes
        return body


@dataclass(frozen=True)
class RayJob:
    """What Ray reports about one submitted job."""

    submission_id: str
    status: JobStatus
    message: str = ""
    entrypoint: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    started_at: datetime | None = None
    ended_at: datetime | None = None

    @property
    def finished(self) -> bool:
        return self.status.finished


@dataclass(frozen=True)
class Submission:
    submission_id: str
    # False when Ray already had a job with this id: nothing new runs, `existing` is that job.
    created: bool
    existing: RayJob | None = None


def _ms(value: Any) -> datetime | None:
    return datetime.fromtimestamp(value / 1000, tz=UTC) if isinstance(value, int | float) and value else None


def parse_job(raw: dict[str, Any]) -> RayJob:
    try:
        status = JobStatus(str(raw.get("status")))
    except ValueError as exc:
        raise Unreachable(f"Ray answered a job with an unknown status: {raw.get('status')!r}") from exc
    return RayJob(
        submission_id=str(raw.get("submission_id") or raw.get("job_id") or ""),
        status=status,
        message=str(raw.get("message") or ""),
        entrypoint=str(raw.get("entrypoint") or ""),
        metadata={str(k): str(v) for k, v in (raw.get("metadata") or {}).items()},
        started_at=_ms(raw.get("start_time")),
        ended_at=_ms(raw.get("end_time")),
    )


def _already_submitted(response: httpx.Response) -> bool:
    # Ray 2.60's dashboard wraps its job agent's 400 in a 500 ("Request failed with status code 400: ...
    # Job with submission_id X already exists"); a direct 400 is what the agent itself answers.
    return response.status_code in (400, 500) and "already exists" in response.text


class RayJobsClient:
    def __init__(
        self,
        address: str,
        token: str | None = None,
        timeout_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.address = address.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            base_url=self.address, headers=headers, timeout=timeout_s, transport=transport
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RayJobsClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _send(self, method: str, path: str, json: dict[str, Any] | None = None) -> httpx.Response:
        try:
            response = self._http.request(method, path, json=json)
        except httpx.HTTPError as exc:
            raise Unreachable(f"Ray dashboard at {self.address} is unreachable: {exc}") from exc
        if response.status_code in (401, 403):
            raise Unauthorized(
                f"Ray dashboard at {self.address} refused the token ({response.status_code}): "
                f"set {TOKEN_ENV} or {TOKEN_PATH_ENV} to the cluster's auth token"
            )
        if response.status_code >= 500 and not _already_submitted(response):
            raise Unreachable(
                f"Ray dashboard at {self.address} failed ({response.status_code}): {response.text[:500]}"
            )
        return response

    def _json(self, response: httpx.Response) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError as exc:
            raise Unreachable(
                f"Ray dashboard at {self.address} answered non-JSON: {response.text[:200]}"
            ) from exc
        if not isinstance(body, dict):
            raise Unreachable(
                f"Ray dashboard at {self.address} answered {type(body).__name__}, not an object"
            )
        return body

    def _refused(self, what: str, response: httpx.Response) -> Exception:
        if response.status_code == 404:
            return NotFound(f"{what}: {self.address} answered 404: {response.text[:300]}")
        return Rejected(f"{what}: Ray refused ({response.status_code}): {response.text[:2000]}")

    def submit(self, request: JobRequest) -> Submission:
        """Submit once per id: a repeated id is answered with the job Ray already has, never run again."""
        if not SUBMISSION_ID.match(request.submission_id):
            raise Rejected(
                f"submission id {request.submission_id!r} must match {SUBMISSION_ID.pattern} "
                "(lower-case letters, digits, '.', '_', '-'; at most 64)"
            )
        response = self._send("POST", JOBS_API, request.body())
        if _already_submitted(response):
            existing = self.get_job(request.submission_id)
            if existing is None:
                # Ray said it has it and then did not: an agent between restarts. Ask again later.
                raise Unreachable(f"Ray reported job {request.submission_id} as submitted but cannot show it")
            return Submission(request.submission_id, created=False, existing=existing)
        if response.status_code >= 400:
            raise self._refused(f"submitting job {request.submission_id}", response)
        body = self._json(response)
        return Submission(str(body.get("submission_id") or request.submission_id), created=True)

    def get_job(self, submission_id: str) -> RayJob | None:
        """None when Ray has no such job (never submitted, or deleted)."""
        response = self._send("GET", JOBS_API + quote(submission_id, safe=""))
        if response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise self._refused(f"reading job {submission_id}", response)
        return parse_job(self._json(response))

    def logs(self, submission_id: str, max_chars: int = MAX_LOG_CHARS) -> str:
        """The end of the job's output: what a person needs to see why it failed."""
        response = self._send("GET", f"{JOBS_API}{quote(submission_id, safe='')}/logs")
        if response.status_code >= 400:
            raise self._refused(f"reading the logs of job {submission_id}", response)
        logs = str(self._json(response).get("logs") or "")
        return logs[-max_chars:]

    def stop(self, submission_id: str) -> bool:
        """True when Ray stopped it; False when it had already finished."""
        response = self._send("POST", f"{JOBS_API}{quote(submission_id, safe='')}/stop")
        if response.status_code >= 400:
            raise self._refused(f"stopping job {submission_id}", response)
        return bool(self._json(response).get("stopped"))

    def delete(self, submission_id: str) -> bool:
        """Forget a finished job; False when Ray had no such job."""
        response = self._send("DELETE", JOBS_API + quote(submission_id, safe=""))
        if response.status_code == 404:
            return False
        if response.status_code >= 400:
            raise self._refused(f"deleting job {submission_id}", response)
        return bool(self._json(response).get("deleted", True))
