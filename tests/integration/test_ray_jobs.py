"""The Ray Jobs client against the session's real Ray: a tiny job succeeds, and submitting the same id again
answers with that job instead of running it a second time."""

from __future__ import annotations

import shlex
import sys
import uuid
from pathlib import Path

import pytest
from helpers import wait_until

from steward.adapters.ray_jobs import JobRequest, JobStatus, RayJobsClient
from steward.dev.stack import Stack

pytestmark = pytest.mark.integration


def test_a_job_runs_once_per_submission_id(stack: Stack, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    # Each run appends a line: a second run of the same id would show as a second line.
    code = f"print(1); open({str(runs)!r}, 'a').write('ran\\n')"
    request = JobRequest(
        entrypoint=f"{shlex.quote(sys.executable)} -c {shlex.quote(code)}",
        submission_id=f"steward-test-{uuid.uuid4().hex[:8]}",
        metadata={"test": "ray-jobs"},
        num_cpus=0.1,
    )
    with RayJobsClient(stack.ray_address, stack.ray_token(), timeout_s=30) as client:
        first = client.submit(request)
        assert first.created
        job = wait_until(
            lambda: (j := client.get_job(request.submission_id)) is not None and j.finished and j,
            timeout_s=120,
            what=f"job {request.submission_id} to finish",
        )
        assert job.status == JobStatus.SUCCEEDED, client.logs(request.submission_id)
        assert "1" in client.logs(request.submission_id).split()
        assert job.metadata == {"test": "ray-jobs"}

        again = client.submit(request)
        assert not again.created
        assert again.existing is not None and again.existing.status == JobStatus.SUCCEEDED
        assert runs.read_text() == "ran\n"
        client.delete(request.submission_id)
