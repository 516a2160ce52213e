"""The training run as a Kubernetes Job (pure): its name, and the batch/v1 manifest the executor creates.

The Job carries the same contract as the Ray Job (the TrainingJob as JSON in `STEWARD_TRAINING_JOB`, the
result written to the store), so the operator follows and judges both alike. Its name is derived from the
submission id, so a replayed submission creates nothing new (the API server answers 409), and the Job is
owned by its ModelDeployment, so deleting the deployment deletes the Job and its pod.
"""

from __future__ import annotations

import re
from typing import Any

from steward.api.kubernetes_job import KubernetesJob
from steward.api.model_deployment import GROUP, KIND, VERSION, ModelDeployment
from steward.api.retraining import RetrainingSpec
from steward.api.rollout import duration_s

CONTAINER = "train"
MANAGED_BY = "steward"
# Pods of a Job carry its name as a label value (<= 63 characters); keep the name well inside that.
_NAME_PREFIX_CHARS = 40


def kubernetes_job_name(deployment_name: str, submission_id: str) -> str:
    """`<deployment>-retrain-<12 hex>`: readable in `kubectl get jobs`, one per trigger (the submission id's
    digest), valid as a label value."""
    digest = submission_id.rsplit("-", 1)[-1][:12]
    prefix = re.sub(r"[^a-z0-9-]", "-", deployment_name.lower())[:_NAME_PREFIX_CHARS].strip("-")
    return f"{prefix or 'model'}-retrain-{digest}"


def labels(md: ModelDeployment) -> dict[str, str]:
    return {
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "steward.io/deployment": md.metadata.name,
        "steward.io/purpose": "retraining",
    }


def _resources(spec: RetrainingSpec) -> dict[str, dict[str, str]]:
    requests: dict[str, str] = {"cpu": f"{int(spec.entrypoint_num_cpus * 1000)}m"}
    limits: dict[str, str] = {}
    if spec.entrypoint_memory:
        # Memory is not compressible: request what the limit allows, so the pod is not evicted first.
        requests["memory"] = limits["memory"] = spec.entrypoint_memory
    if spec.entrypoint_num_gpus:
        # Kubernetes schedules whole GPUs; a fraction for Ray is a whole one here.
        gpus = str(max(1, int(-(-spec.entrypoint_num_gpus // 1))))
        limits["nvidia.com/gpu"] = gpus
    return {"requests": requests, **({"limits": limits} if limits else {})}


def _pod_spec(job: KubernetesJob, spec: RetrainingSpec, env: dict[str, str]) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": job.image,
        # The entrypoint is a shell command line, as Ray runs it.
        "command": ["/bin/sh", "-c", spec.entrypoint],
        "env": [{"name": k, "value": v} for k, v in sorted(env.items())],
        "resources": _resources(spec),
    }
    if job.image_pull_policy is not None:
        container["imagePullPolicy"] = job.image_pull_policy.value
    if job.env_from_secrets:
        container["envFrom"] = [{"secretRef": {"name": name}} for name in job.env_from_secrets]
    pod: dict[str, Any] = {"restartPolicy": "Never", "containers": [container]}
    if job.service_account_name:
        pod["serviceAccountName"] = job.service_account_name
    if job.node_selector:
        pod["nodeSelector"] = dict(job.node_selector)
    if job.tolerations:
        pod["tolerations"] = [
            t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in job.tolerations
        ]
    return pod


def kubernetes_job_manifest(
    md: ModelDeployment, spec: RetrainingSpec, name: str, submission_id: str, env: dict[str, str]
) -> dict[str, Any]:
    """The batch/v1 Job of one run; `env` holds the TrainingJob and the spec's own variables."""
    job = spec.kubernetes_job
    if job is None:
        raise ValueError("spec.retraining.kubernetesJob is not set: this run is a Ray Job")
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": md.metadata.namespace,
        "labels": labels(md),
        "annotations": {"steward.io/submission-id": submission_id},
    }
    if md.metadata.uid:
        # The deployment owns its runs: deleting it deletes the Job (and the Job its pod).
        metadata["ownerReferences"] = [
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": KIND,
                "name": md.metadata.name,
                "uid": md.metadata.uid,
                "controller": True,
                "blockOwnerDeletion": False,
            }
        ]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata,
        "spec": {
            "backoffLimit": job.backoff_limit,
            # The operator stops a run at spec.retraining.timeout; Kubernetes does too if it is down.
            "activeDeadlineSeconds": max(1, int(duration_s(spec.timeout))),
            "ttlSecondsAfterFinished": job.ttl_seconds_after_finished,
            "template": {
                "metadata": {
                    "labels": labels(md),
                    "annotations": {"steward.io/submission-id": submission_id},
                },
                "spec": _pod_spec(job, spec, env),
            },
        },
    }
