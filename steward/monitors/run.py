"""Entrypoint of a monitor job: `python -m steward.monitors.run <base64 MonitorJob JSON>`.

Inside a Ray Job it hands the window to the Ray cluster's warm monitor worker (`steward.monitors.worker`):
importing Evidently and fairlearn costs a fresh process 7-12 CPU-seconds, many times what judging a window
of a few thousand rows costs, and a new process per window saturated a 2-core cluster. Run anywhere else (by
hand, in tests) it judges in-process. Light on purpose: nothing here imports pandas, Evidently or fairlearn.
"""

from __future__ import annotations

import base64
import json
import os
import sys

from steward.api.monitor_results import MonitorJob

JOB_CONFIG_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"


def ray_job_id() -> str | None:
    """The Ray Job's submission id, from the driver's job config Ray sets for the entrypoint."""
    raw = os.environ.get(JOB_CONFIG_ENV)
    if not raw:
        return None
    try:
        metadata = json.loads(raw).get("metadata") or {}
    except json.JSONDecodeError:
        return None
    value = metadata.get("job_submission_id")
    return str(value) if value else None


def decode_job(argument: str) -> MonitorJob:
    # The operator encodes with the URL-safe alphabet (steward.operator.monitoring_schedule.entrypoint).
    return MonitorJob.model_validate_json(base64.b64decode(argument, altchars=b"-_", validate=True))


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m steward.monitors.run <base64 MonitorJob JSON>", file=sys.stderr)
        return 2
    job, job_id = decode_job(argv[1]), ray_job_id()
    if job_id is not None:
        from steward.monitors.worker import WorkerUnavailable, judge_in_worker

        try:
            print(judge_in_worker(job, job_id))
            return 0
        except WorkerUnavailable as exc:
            # Slower, never wrong: the window is judged here, as it was before the warm worker.
            print(f"warm monitor worker unavailable ({exc}); judging in this process", file=sys.stderr)
    from steward.monitors.job import judge_and_store

    print(judge_and_store(job, job_id))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
