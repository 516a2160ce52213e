"""The reconciler's hands for retraining: the run's job on Ray, its result in the store, the trigger's record
in the audit trail, and submitting or stopping the job.

Beside the reconciler (the only other operator module that touches adapters); every error becomes part of an
observation or an AdapterError for the executor, never an exception out of a pass.
"""

from __future__ import annotations

import logging

from pydantic import ValidationError

from steward.adapters.errors import AdapterError
from steward.adapters.kubernetes_jobs import JobPhase, KubernetesJobsClient
from steward.adapters.monitoring_store import MAX_RESULT_BYTES, MonitoringStore
from steward.adapters.ray_jobs import JobRequest, RayJobsClient
from steward.api.model_deployment import ModelDeployment
from steward.api.retraining import MAX_LOG_TAIL_CHARS, RetrainingState
from steward.api.training_job import TrainingResult
from steward.audit.store import StoreUnavailable
from steward.audit.trail import AuditTrail
from steward.operator.actions import StopTrainingJob, SubmitTrainingJob
from steward.operator.monitor_jobs import JobState
from steward.operator.monitoring_io import JOB_STATES
from steward.operator.retraining_observation import (
    RetrainingObservation,
    StoredRecord,
    TrainingJobObservation,
)

log = logging.getLogger(__name__)


class TrainingJobs:
    def __init__(
        self,
        ray_token: str | None,
        replica_env: dict[str, str],
        kubernetes: KubernetesJobsClient | None = None,
    ) -> None:
        self.ray_token = ray_token
        # The job reads the store and writes MLflow with the replicas' credentials, never the operator's own.
        self.replica_env = replica_env
        self.store = MonitoringStore()
        self._clients: dict[str, RayJobsClient] = {}
        self.kubernetes = kubernetes or KubernetesJobsClient()
        # Why the Kubernetes API refused to create a run's Job, by submission id, until the run has seen it.
        self._refused: dict[str, AdapterError] = {}

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self.kubernetes.close()

    def client(self, address: str) -> RayJobsClient:
        """Only for addresses the reconciler has already checked against the allowlist."""
        if address not in self._clients:
            self._clients[address] = RayJobsClient(address, self.ray_token)
        return self._clients[address]

    def observe(
        self, md: ModelDeployment, address: str | None, trail: AuditTrail | None
    ) -> RetrainingObservation:
        """What the run in progress needs this pass; a part that cannot be looked at is left out."""
        status = md.status.retraining
        run = status.current if status is not None else None
        observed = RetrainingObservation(trail=trail is not None)
        if run is None or status is None:
            return observed
        if status.state == RetrainingState.REQUESTED and trail is not None:
            observed = RetrainingObservation(trigger_record=self._stored(md, trail, run.trigger.cause))
        if status.state == RetrainingState.RUNNING and (address is not None or run.kubernetes_job):
            try:
                refused = self._refused.pop(run.submission_id, None)
                if run.kubernetes_job is not None and refused is not None and not refused.temporary:
                    why = (
                        f"the Kubernetes API refused the training Job {run.kubernetes_job}: {refused.message}"
                    )
                    job = TrainingJobObservation(JobState.FAILED, problem=why[-MAX_LOG_TAIL_CHARS:])
                elif run.kubernetes_job is not None:
                    job = self._kubernetes_job(md.metadata.namespace, run.kubernetes_job, run.result_uri)
                else:
                    assert address is not None
                    job = self._job(address, run.submission_id, run.result_uri)
            except AdapterError as exc:
                log.warning(
                    "cannot observe training job %s of %s: %s", run.submission_id, md.key, exc.message
                )
                job = None
            observed = RetrainingObservation(job=job, trail=trail is not None)
        return observed

    @staticmethod
    def _stored(md: ModelDeployment, trail: AuditTrail, cause: str) -> StoredRecord | None:
        # The whole trail is read, but only while a run waits for its request to be stored (a pass or two).
        try:
            records = trail.store.read(md.key)
        except StoreUnavailable as exc:
            log.warning("cannot read the audit trail of %s for the retraining request: %s", md.key, exc)
            return None
        found = next((r for r in records if r.cause == cause and r.deployment.uid == md.metadata.uid), None)
        return StoredRecord(found.seq, found.hash) if found is not None else None

    def _job(self, address: str, submission_id: str, result_uri: str) -> TrainingJobObservation:
        client = self.client(address)
        ray_job = client.get_job(submission_id)
        result, corrupt = self._result(result_uri)
        if corrupt:
            return TrainingJobObservation(JobState.FAILED, problem=corrupt)
        if ray_job is None:
            return TrainingJobObservation(JobState.MISSING if result is None else JobState.SUCCEEDED, result)
        state = JOB_STATES[ray_job.status]
        problem = ""
        if state == JobState.FAILED and result is None:
            tail = client.logs(submission_id)[-MAX_LOG_TAIL_CHARS:]
            problem = f"{ray_job.status.value}: {ray_job.message}; log ends: {tail}"[-MAX_LOG_TAIL_CHARS:]
        return TrainingJobObservation(state, result, problem)

    def _kubernetes_job(self, namespace: str, name: str, result_uri: str) -> TrainingJobObservation:
        """As `_job`, for a run that is a Kubernetes Job: a written result counts whatever the Job says."""
        state = self.kubernetes.state(namespace, name)
        result, corrupt = self._result(result_uri)
        if corrupt:
            return TrainingJobObservation(JobState.FAILED, problem=corrupt)
        if result is not None:
            return TrainingJobObservation(JobState.SUCCEEDED, result)
        if state is None:
            return TrainingJobObservation(JobState.MISSING)
        if state.phase == JobPhase.FAILED:
            tail = self.kubernetes.log_tail(namespace, name, MAX_LOG_TAIL_CHARS)
            problem = f"Job {namespace}/{name} failed: {state.message}; log ends: {tail}"
            return TrainingJobObservation(JobState.FAILED, problem=problem[-MAX_LOG_TAIL_CHARS:])
        phase = JobState.SUCCEEDED if state.phase == JobPhase.SUCCEEDED else JobState.RUNNING
        return TrainingJobObservation(phase)

    def _result(self, uri: str) -> tuple[TrainingResult | None, str]:
        """(result, why it is unusable)."""
        body = self.store.read_bytes(uri, limit=MAX_RESULT_BYTES + 1)
        if body is None:
            return None, ""
        if len(body) > MAX_RESULT_BYTES:
            return None, f"{uri} is over {MAX_RESULT_BYTES} bytes: not a training result"
        try:
            return TrainingResult.model_validate_json(body), ""
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '(file)'}: {e['msg']}" for e in exc.errors()[:5]
            )
            return None, f"{uri} is not a valid training result: {problems}"

    def submit(self, action: SubmitTrainingJob) -> None:
        if action.kubernetes_job is not None:
            # Credentials come from the Job's own envFrom Secrets: the operator never writes its copies of
            # them into an object that anyone who can read Jobs can read.
            try:
                self.kubernetes.create(action.kubernetes_job)
            except AdapterError as exc:
                # The run's failure, not the deployment's: serving is fine. Refused, the run fails next pass
                # with this message; an API that did not answer leaves the Job missing, created again then.
                log.warning("training Job of %s not created: %s", action.deployment, exc.message)
                self._refused[action.submission_id] = exc
            return
        runtime_env = dict(action.runtime_env)
        # The spec's own variables win over nothing of ours but the credentials, which the platform sets.
        runtime_env["env_vars"] = {**runtime_env.get("env_vars", {}), **self.replica_env}
        self.client(action.ray_address).submit(
            JobRequest(
                entrypoint=action.entrypoint,
                submission_id=action.submission_id,
                runtime_env=runtime_env,
                metadata={"steward.io/deployment": action.deployment, "steward.io/purpose": "retraining"},
                num_cpus=action.num_cpus,
                num_gpus=action.num_gpus or None,
                memory_bytes=action.memory_bytes,
            )
        )

    def stop(self, action: StopTrainingJob) -> None:
        if action.kubernetes_job is not None:
            self.kubernetes.delete(*action.kubernetes_job)
            return
        self.client(action.ray_address).stop(action.submission_id)
