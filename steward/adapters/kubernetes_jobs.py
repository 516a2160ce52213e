"""Training runs as Kubernetes Jobs (batch/v1): create, look at, read the log's end, delete.

Every failure is classified here: a Job that exists already is the same run (its name is the submission's),
one that is gone is `None`, missing permissions say which, and an unreachable API is temporary.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from steward.adapters.errors import AdapterError, Rejected, Unauthorized, Unreachable
from steward.adapters.kubernetes_client import kubernetes_api_client

REQUEST_TIMEOUT_S = 10.0
_RBAC = (
    "the operator needs create, get and delete on jobs.batch, list on pods and get on pods/log in the "
    "ModelDeployment's namespace (chart ClusterRole)"
)


class JobPhase(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True)
class KubernetesJobState:
    phase: JobPhase
    # Kubernetes' reason and message for a failed Job (BackoffLimitExceeded, DeadlineExceeded, ...).
    message: str = ""


def job_state(job: dict[str, Any]) -> KubernetesJobState:
    """A Job's phase from its status (pure): the Complete and Failed conditions are final."""
    status = job.get("status") or {}
    for condition in status.get("conditions") or []:
        if condition.get("status") != "True":
            continue
        if condition.get("type") == "Complete":
            return KubernetesJobState(JobPhase.SUCCEEDED)
        if condition.get("type") == "Failed":
            why = ": ".join(p for p in (condition.get("reason"), condition.get("message")) if p)
            return KubernetesJobState(JobPhase.FAILED, why or "the Job failed")
    return KubernetesJobState(JobPhase.RUNNING)


class KubernetesJobsClient:
    """The four calls a training run makes; the Kubernetes client is made at the first call."""

    def __init__(self, api_client: Any | None = None) -> None:
        self._api_client = api_client

    def _apis(self) -> tuple[Any, Any]:
        from kubernetes import client
        from kubernetes.config import ConfigException

        if self._api_client is None:
            try:
                self._api_client = kubernetes_api_client()
            except ConfigException as exc:
                raise Rejected(
                    f"no Kubernetes configuration ({exc}): spec.retraining.kubernetesJob needs the operator "
                    "to run in a cluster (or a kubeconfig); remove kubernetesJob to train as a Ray Job"
                ) from exc
        return client.BatchV1Api(self._api_client), client.CoreV1Api(self._api_client)

    def _call(self, what: str, call: Any) -> bytes | None:
        """The answer's body (unparsed: the client's models drop fields and a log is text); None for 404.
        Raises an AdapterError for anything else."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            response = call(_preload_content=False, _request_timeout=REQUEST_TIMEOUT_S)
            body: bytes = response.data
            return body
        except ApiException as exc:
            if exc.status == 404:
                return None
            message = _api_message(exc)
            if exc.status in (401, 403):
                raise Unauthorized(f"the Kubernetes API refused to {what} ({exc.status}): {_RBAC}") from exc
            if exc.status == 429 or exc.status >= 500:
                raise Unreachable(f"the Kubernetes API could not {what} ({exc.status}): {message}") from exc
            raise Rejected(f"the Kubernetes API refused to {what} ({exc.status}): {message}") from exc
        except (HTTPError, OSError) as exc:
            raise Unreachable(f"cannot reach the Kubernetes API to {what}: {exc}") from exc

    def create(self, manifest: dict[str, Any]) -> None:
        """Create the Job; one that exists already is this run (its name is the submission's)."""
        from kubernetes.client.exceptions import ApiException

        batch, _ = self._apis()
        meta = manifest["metadata"]
        what = f"create the training Job {meta['namespace']}/{meta['name']}"
        try:
            self._call(what, lambda **kw: batch.create_namespaced_job(meta["namespace"], manifest, **kw))
        except AdapterError as exc:
            cause = exc.__cause__
            if isinstance(cause, ApiException) and cause.status == 409:
                return
            raise

    def state(self, namespace: str, name: str) -> KubernetesJobState | None:
        """None: no such Job (never created, deleted, or removed by its TTL)."""
        batch, _ = self._apis()
        what = f"read the training Job {namespace}/{name}"
        body = self._call(what, lambda **kw: batch.read_namespaced_job(name, namespace, **kw))
        return None if body is None else job_state(_json(body, what))

    def log_tail(self, namespace: str, name: str, max_chars: int) -> str:
        """The end of the newest pod's log; "" when there is no pod (yet, or any more)."""
        _, core = self._apis()
        what = f"list the pods of the training Job {namespace}/{name}"
        body = self._call(
            what, lambda **kw: core.list_namespaced_pod(namespace, label_selector=f"job-name={name}", **kw)
        )
        pods = _json(body, what).get("items") or [] if body is not None else []
        # The label selector again, here: an API that ignores it must not hand us another Job's pod.
        mine = [p for p in pods if (p.get("metadata", {}).get("labels") or {}).get("job-name") == name]
        if not mine:
            return ""
        newest = max(mine, key=lambda p: p["metadata"].get("creationTimestamp") or "")
        pod = newest["metadata"]["name"]
        log = self._call(
            f"read the log of {namespace}/{pod}",
            lambda **kw: core.read_namespaced_pod_log(pod, namespace, tail_lines=200, **kw),
        )
        return "" if log is None else log.decode(errors="replace")[-max_chars:]

    def delete(self, namespace: str, name: str) -> None:
        """Delete the Job and its pods (a Job already gone is fine)."""
        from kubernetes import client

        batch, _ = self._apis()
        body = client.V1DeleteOptions(propagation_policy="Background")
        self._call(
            f"delete the training Job {namespace}/{name}",
            lambda **kw: batch.delete_namespaced_job(name, namespace, body=body, **kw),
        )

    def close(self) -> None:
        if self._api_client is not None:
            self._api_client.close()


def _json(body: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except ValueError as exc:
        raise Unreachable(f"the Kubernetes API answered something that is not JSON to {what}") from exc
    if not isinstance(value, dict):
        raise Unreachable(f"the Kubernetes API answered {type(value).__name__}, not an object, to {what}")
    return value


def _api_message(exc: Any) -> str:
    try:
        return str(json.loads(exc.body).get("message") or exc.reason)
    except (TypeError, ValueError, AttributeError):
        return str(exc.reason)
