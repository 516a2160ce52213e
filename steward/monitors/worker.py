"""The warm monitor worker: one detached Ray actor per Ray cluster, code and job environment, that keeps
Evidently, fairlearn and pandas imported between windows.

A monitor job's entrypoint (a Ray Job driver) finds it by name, or starts it, and waits for its answer; the
job stays the unit the operator submits, follows, stops and reads logs of. The actor reserves no CPU: the
job's entrypoint holds the CPUs the operator asked for while it waits. It judges one window at a time. Its
name carries a hash of the job's runtime environment (the platform's credentials for the store) and of this
package's monitor code, so a job never runs with another environment's credentials or stale code.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import ray

from steward.api.monitor_results import MonitorJob
from steward.monitors.run import JOB_CONFIG_ENV

NAMESPACE = "steward"
_CODE = Path(__file__).resolve().parent
_API = _CODE.parent / "api" / "monitoring.py"


class _MonitorWorker:
    def judge(self, job_json: str, job_id: str) -> str:
        from steward.monitors.job import judge_and_store

        return judge_and_store(MonitorJob.model_validate_json(job_json), job_id)


# An actor runs one call at a time by default: one window at a time.
MonitorWorker: Any = ray.remote(num_cpus=0)(_MonitorWorker)


def worker_name() -> str:
    """`steward-monitor-<hash of the job's runtime env and the monitor code>`."""
    digest = hashlib.sha256()
    try:
        runtime_env = json.loads(os.environ.get(JOB_CONFIG_ENV) or "{}").get("runtime_env") or {}
    except json.JSONDecodeError:
        runtime_env = {}
    digest.update(json.dumps(runtime_env, sort_keys=True, default=str).encode())
    for path in sorted([*_CODE.glob("*.py"), _API]):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return f"steward-monitor-{digest.hexdigest()[:16]}"


class WorkerUnavailable(Exception):
    """The driver could not reach (or start) the warm worker: the caller judges in-process instead."""


def judge_in_worker(job: MonitorJob, job_id: str) -> str:
    """From a Ray Job's driver: judge the window in the cluster's warm worker; its summary line. Raises
    WorkerUnavailable when the worker cannot be reached or dies; an error of the judging itself propagates."""
    try:
        if not ray.is_initialized():
            ray.init(address="auto", namespace=NAMESPACE, logging_level=logging.WARNING, log_to_driver=False)
        worker = MonitorWorker.options(
            name=worker_name(), namespace=NAMESPACE, lifetime="detached", get_if_exists=True
        ).remote()
        pending = worker.judge.remote(job.model_dump_json(by_alias=True), job_id)
    except Exception as exc:  # connecting fails in many ways (auth, GCS, actor start): all mean "not here"
        raise WorkerUnavailable(f"{type(exc).__name__}: {exc}"[:500]) from exc
    try:
        line: str = ray.get(pending)
    except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError) as exc:
        raise WorkerUnavailable(f"{type(exc).__name__}: {exc}"[:500]) from exc
    return line
