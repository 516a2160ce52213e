"""Retraining inside one reconcile pass (pure): the decision for the core, and its job actions.

`decide()` asks for it after monitoring, because a `retrain` monitor's breach in this pass asks for a run in
this pass; the run is submitted, or stopped, only in a pass that can act on Ray (model and Serve observed).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from steward.api.model_deployment import ModelDeployment, memory_bytes
from steward.api.retraining import TRAINING_JOB_ENV
from steward.operator.actions import Action, StopTrainingJob, SubmitTrainingJob
from steward.operator.config import OperatorConfig
from steward.operator.monitoring import MonitoringDecision
from steward.operator.observations import Observations
from steward.operator.retraining import RetrainingDecision, TrainingSubmission, decide_retraining
from steward.operator.retraining_k8s import kubernetes_job_manifest
from steward.operator.retraining_observation import RetrainingObservation


def retraining_decision(
    md: ModelDeployment,
    obs: Observations,
    mon: MonitoringDecision,
    config: OperatorConfig,
    now: datetime,
    can_act: bool,
) -> RetrainingDecision:
    # Without the reconciler's look (a pure test), a run does not wait for a record nobody will find.
    observed = obs.retraining or RetrainingObservation(trail=obs.audit is not None)
    return decide_retraining(
        md,
        observed,
        mon.retrain,
        now,
        store_uri=config.monitoring_uri,
        tracking_uri=config.tracking_uri,
        can_act=can_act,
    )


def runtime_env(submission: TrainingSubmission) -> dict[str, Any]:
    """The spec's runtime_env for Ray, with the TrainingJob (JSON) in the job's environment."""
    env = submission.spec.runtime_env
    out: dict[str, Any] = {
        "env_vars": {
            **env.env_vars,
            TRAINING_JOB_ENV: json.dumps(submission.job.model_dump(mode="json", by_alias=True)),
        }
    }
    if env.pip:
        out["pip"] = list(env.pip)
    if env.working_dir:
        out["working_dir"] = env.working_dir
    return out


def retraining_actions(ret: RetrainingDecision, md: ModelDeployment, address: str) -> list[Action]:
    actions: list[Action] = []
    if (sub := ret.submit) is not None:
        spec = sub.spec
        env = runtime_env(sub)
        manifest = None
        if sub.kubernetes_job is not None:
            manifest = kubernetes_job_manifest(
                md, spec, sub.kubernetes_job, sub.submission_id, env["env_vars"]
            )
        actions.append(
            SubmitTrainingJob(
                ray_address=address,
                submission_id=sub.submission_id,
                deployment=md.key,
                entrypoint=spec.entrypoint,
                runtime_env=env,
                num_cpus=spec.entrypoint_num_cpus,
                num_gpus=spec.entrypoint_num_gpus,
                memory_bytes=memory_bytes(spec.entrypoint_memory) if spec.entrypoint_memory else None,
                kubernetes_job=manifest,
            )
        )
    if ret.stop is not None:
        # The run being stopped is the one status held before this pass, where it was submitted.
        old = md.status.retraining.current if md.status.retraining is not None else None
        k8s_job = old.kubernetes_job if old is not None and old.submission_id == ret.stop else None
        target = (md.metadata.namespace, k8s_job) if k8s_job is not None else None
        actions.append(StopTrainingJob(address, ret.stop, target))
    return actions
