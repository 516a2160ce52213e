"""The reconciler's hands for monitoring: what Ray says of the jobs in flight, their results, and submitting.

Kept beside the reconciler (the only other operator module that touches adapters) so that it stays one pass
of observe -> decide -> act; every error becomes part of an observation, never an exception out of a pass.
"""

from __future__ import annotations

import logging

from steward.adapters.errors import AdapterError
from steward.adapters.monitoring_store import CorruptResult, MonitoringStore
from steward.adapters.ray_jobs import JobRequest, JobStatus, RayJobsClient
from steward.api.model_deployment import ModelDeployment
from steward.operator.actions import StopMonitorJob, SubmitMonitorJob
from steward.operator.monitor_jobs import JobObservation, JobState

log = logging.getLogger(__name__)

MAX_PROBLEM_CHARS = 2000
# Ray's job states as the pure core knows them (monitor and training jobs alike).
JOB_STATES = {
    JobStatus.PENDING: JobState.RUNNING,
    JobStatus.RUNNING: JobState.RUNNING,
    JobStatus.SUCCEEDED: JobState.SUCCEEDED,
    JobStatus.FAILED: JobState.FAILED,
    JobStatus.STOPPED: JobState.FAILED,
}


class MonitorJobs:
    def __init__(self, ray_token: str | None, replica_env: dict[str, str]) -> None:
        self.ray_token = ray_token
        # The job reads the store and MLflow with the replicas' credentials, never the operator's own.
        self.replica_env = replica_env
        self.store = MonitoringStore()
        self._clients: dict[str, RayJobsClient] = {}

    def close(self) -> None:
        for client in self._clients.values():
            client.close()

    def client(self, address: str) -> RayJobsClient:
        """Only for addresses the reconciler has already checked against the allowlist."""
        if address not in self._clients:
            self._clients[address] = RayJobsClient(address, self.ray_token)
        return self._clients[address]

    def observe(self, md: ModelDeployment, address: str) -> dict[str, JobObservation]:
        """One observation per job in flight; a job we cannot look at is left out (decided next pass)."""
        status = md.status.monitoring
        if status is None or not status.jobs:
            return {}
        seen: dict[str, JobObservation] = {}
        for job in status.jobs:
            try:
                seen[job.submission_id] = self._observe(address, job.submission_id, job.result_uri)
            except AdapterError as exc:
                log.warning("cannot observe monitor job %s of %s: %s", job.submission_id, md.key, exc.message)
        return seen

    def _observe(self, address: str, submission_id: str, result_uri: str) -> JobObservation:
        client = self.client(address)
        ray_job = client.get_job(submission_id)
        try:
            result = self.store.read_result(result_uri)
        except CorruptResult as exc:
            return JobObservation(JobState.FAILED, problem=exc.message[:MAX_PROBLEM_CHARS])
        if ray_job is None:
            return JobObservation(JobState.MISSING if result is None else JobState.SUCCEEDED, result)
        state = JOB_STATES[ray_job.status]
        problem = ""
        if state == JobState.FAILED and result is None:
            tail = client.logs(submission_id)[-MAX_PROBLEM_CHARS:]
            problem = f"{ray_job.status.value}: {ray_job.message}; log ends: {tail}"[-MAX_PROBLEM_CHARS:]
        return JobObservation(state, result, problem)

    def submit(self, action: SubmitMonitorJob) -> None:
        self.client(action.ray_address).submit(
            JobRequest(
                entrypoint=action.entrypoint,
                submission_id=action.submission_id,
                runtime_env={"env_vars": dict(self.replica_env)} if self.replica_env else None,
                metadata={"steward.io/deployment": action.deployment},
                num_cpus=action.num_cpus,
            )
        )

    def stop(self, action: StopMonitorJob) -> None:
        self.client(action.ray_address).stop(action.submission_id)
