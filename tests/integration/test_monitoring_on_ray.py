"""Monitoring end to end on the session's real Ray, MLflow and S3 (artifacts): the router captures live
traffic to the local monitoring store, the control loop submits monitor windows as Ray Jobs and acts on their
results.

Shifted incomes breach the drift monitor (condition, Event, a monitor-run record whose report's sha256 is the
file's); a version that approves men at half the rate of women is rolled back by the fairness gate; a control
loop restarted between a window's submission and its result records that run once and submits no second job.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import wait_gone, wait_until

from steward.adapters.ray_jobs import RayJobsClient
from steward.api.model_deployment import ModelDeployment
from steward.api.monitor_results import MonitorVerdict
from steward.api.monitoring_status import MonitoringStatus, MonitorResultSummary
from steward.audit.records import AuditRecord
from steward.audit.store import LocalFolderStore
from steward.cli.demo_traffic import LiveClient
from steward.dev.loop import ControlLoop
from steward.dev.stack import Stack
from steward.dev.store import LocalStore, StoredObject
from steward.operator.reconciler import Reconciler

pytestmark = pytest.mark.integration
NS, NAME = "watched", "credit"
# Short windows judge within seconds; the minimum sizes are lowered to what a few seconds of traffic give.
WINDOW = {"duration": "30s", "every": "10s"}
DRIFT = {"name": "drift", "kind": "drift", "window": WINDOW, "drift": {"minRows": 150}}
FAIRNESS = {
    "name": "fairness",
    "kind": "fairness",
    "window": WINDOW,
    "fairness": {"favourableOutcome": "0", "minGroupSize": 10},
}


class Loop:
    """The local control loop in a thread, stoppable and startable again: a restart of the operator."""

    def __init__(self, stack: Stack, store: LocalStore) -> None:
        self.stack, self.store = stack, store
        self.config = replace(
            stack.operator_config(resync_interval_s=1.0), rollout_tick_s=1.0, rollout_drain_s=1.0
        )
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.reconciler = Reconciler(self.config, ray_token=self.stack.ray_token())
        self._stop = threading.Event()
        control = ControlLoop(self.store, self.reconciler)
        self._thread = threading.Thread(target=control.run, args=(0.5, self._stop), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        assert self._thread is not None
        self._stop.set()
        self._thread.join(60)
        assert not self._thread.is_alive(), "the control loop did not stop"
        self.reconciler.close()


@pytest.fixture(scope="module")
def loop(stack: Stack, tmp_path_factory: pytest.TempPathFactory, ray_client: Any) -> Iterator[Loop]:
    harness = Loop(stack, LocalStore(tmp_path_factory.mktemp("monitoring-home")))
    harness.start()
    yield harness
    harness.store.remove(NS, NAME)
    wait_until(lambda: harness.store.get(NS, NAME) is None, 60, "the deployment to be finalized")
    wait_gone(ray_client, f"{NS}.{NAME}")
    harness.stop()


def apply(store: LocalStore, version: str, monitors: list[dict[str, Any]], **rollout: Any) -> None:
    store.apply(
        ModelDeployment.model_validate(
            {
                "apiVersion": "steward.io/v1alpha1",
                "kind": "ModelDeployment",
                "metadata": {"name": NAME, "namespace": NS, "annotations": {"steward.io/actor": "mo@bank"}},
                "spec": {
                    "model": {"name": "credit-risk", "version": version},
                    "serving": {"resources": {"cpu": 0.25}},
                    "monitoring": {
                        "capture": {"sampleRate": 1.0, "sensitiveFeatures": ["gender", "age_band"]},
                        "monitors": monitors,
                    },
                    "rollout": rollout or {"strategy": "canary"},
                },
            }
        )
    )


def current(store: LocalStore) -> StoredObject:
    obj = store.get(NS, NAME)
    assert obj is not None
    return obj


def monitoring(store: LocalStore) -> MonitoringStatus:
    return current(store).status.monitoring or MonitoringStatus()


def latest(store: LocalStore, monitor: str, version: str) -> MonitorResultSummary | None:
    return monitoring(store).latest(monitor, version)


def trail(stack: Stack, action: str) -> list[AuditRecord]:
    records = LocalFolderStore(stack.home / "audit").read(f"{NS}/{NAME}")
    return [r for r in records if r.action.value == action]


@pytest.fixture(scope="module")
def endpoint(loop: Loop, models: Any) -> str:
    apply(loop.store, models.good_v1, [DRIFT])
    obj = wait_until(
        lambda: (o := loop.store.get(NS, NAME)) and o.status.phase.value == "Ready" and o, 180, "v1 Ready"
    )
    return str(obj.status.endpoint)


def test_shifted_incomes_breach_the_drift_monitor_with_a_verifiable_report(
    loop: Loop, endpoint: str, models: Any, stack: Stack
) -> None:
    with LiveClient(endpoint, workers=2) as client:
        client.shift_incomes(0.6)
        breach = wait_until(
            lambda: (
                (r := latest(loop.store, "drift", models.good_v1))
                and r.verdict == MonitorVerdict.BREACH
                and r
            ),
            240,
            "the drift monitor to breach on version 1",
        )
        obj = current(loop.store)
    assert any(c.name.startswith("drift:") and "income" in c.name for c in breach.breached), breach.breached
    condition = next(c for c in obj.status.conditions if c.type.value == "Monitoring")
    assert (condition.status.value, condition.reason.value) == ("False", "MonitorBreached")
    assert "drift" in condition.message and str(breach.report_uri) in condition.message
    events = loop.store.read_events(NS, NAME)
    assert any(e["type"] == "Warning" and e["reason"] == "MonitorBreached" for e in events), events[-5:]

    (run,) = [r for r in trail(stack, "monitor-run") if r.evidence["submission_id"] == breach.submission_id]
    report = Path(str(run.evidence["report_uri"]))
    assert run.evidence["verdict"] == "breach" and run.evidence["rows"] >= 150
    assert run.evidence["report_sha256"] == hashlib.sha256(report.read_bytes()).hexdigest()
    assert run.evidence["report_sha256"] == breach.report_sha256
    # The reference is the training data logged with version 1's MLflow run, pinned by its hash.
    assert str(run.evidence["reference_uri"]).endswith("reference/training.parquet")
    assert len(run.evidence["reference_sha256"]) == 64
    assert "income" in report.read_text()
    # Every window was judged by one warm worker (a detached actor), not by a fresh process importing
    # Evidently each time: exactly one alive, and the jobs' drivers printed its verdict lines.
    workers = alive_monitor_workers(stack)
    assert len(workers) == 1 and workers[0]["name"].startswith("steward-monitor-"), workers
    assert len(monitoring(loop.store).handled) >= 2


def alive_monitor_workers(stack: Stack) -> list[dict[str, Any]]:
    """Ray's state API (the dashboard's /api/v0/actors) for alive monitor workers."""
    response = httpx.get(
        f"{stack.ray_address}/api/v0/actors",
        params={"filter_keys": "class_name", "filter_predicates": "=", "filter_values": "_MonitorWorker"},
        headers={"Authorization": f"Bearer {stack.ray_token()}"},
        timeout=30,
    )
    response.raise_for_status()
    actors: list[dict[str, Any]] = response.json()["data"]["result"]["result"]
    return [a for a in actors if a.get("state") == "ALIVE"]


def test_a_canary_that_approves_men_at_half_the_rate_of_women_is_rolled_back_by_the_fairness_gate(
    loop: Loop, endpoint: str, models: Any, stack: Stack
) -> None:
    from steward.dev.credit_model import register_unfair

    unfair = register_unfair(stack.tracking_uri, "credit-risk", n=1000, seed=21)
    done_before = len(current(loop.store).status.rollout_history)
    with LiveClient(endpoint, workers=3) as client:
        apply(
            loop.store,
            unfair,
            [FAIRNESS],
            strategy="canary",
            steps=[{"setWeight": 50}, {"analysis": {}}],
            analysis={
                "interval": "5s",
                "minRequests": 5,
                # This test is about fairness: a cold canary's first slow answers on a loaded machine must
                # not decide it first.
                "latencyToleranceMs": 5000,
                "requireMonitors": ["fairness"],
            },
            stickiness={"header": "X-Customer-Id"},
        )
        obj = wait_until(
            lambda: (
                (o := current(loop.store))
                and len(o.status.rollout_history) > done_before
                and not o.status.rollout
                and o
            ),
            300,
            "the unfair canary's rollout to end",
        )
    record = obj.status.rollout_history[-1]
    assert (record.to_version, record.outcome.value) == (unfair, "RolledBack"), record.reason
    assert "monitor fairness failed" in record.reason and "demographic_parity_ratio" in record.reason
    assert obj.status.stable is not None and obj.status.stable.version == models.good_v1
    assert all(status == 200 for (version, status) in client.answers if version == models.good_v1)
    ratio = re.search(r"demographic_parity_ratio:gender ([0-9.]+)", record.reason)
    assert ratio is not None and float(ratio.group(1)) < 0.7, record.reason


def test_a_restart_between_submission_and_result_records_the_run_once(
    loop: Loop, endpoint: str, models: Any, stack: Stack
) -> None:
    apply(loop.store, models.good_v1, [FAIRNESS])
    with LiveClient(endpoint, workers=2):
        job = wait_until(
            # Just submitted: the job cannot have finished (a Ray Job takes seconds to start), so the loop
            # stops before it could read the result.
            lambda: next(
                (
                    j
                    for j in monitoring(loop.store).jobs
                    if j.monitor == "fairness" and datetime.now(UTC) - j.submitted_at < timedelta(seconds=2)
                ),
                None,
            ),
            90,
            "a fairness window to be submitted",
            interval_s=0.2,
        )
        loop.stop()
        with RayJobsClient(stack.ray_address, stack.ray_token(), timeout_s=30) as ray_jobs:
            wait_until(
                lambda: (j := ray_jobs.get_job(job.submission_id)) is not None and j.finished,
                180,
                f"job {job.submission_id} to finish while no loop runs",
            )
            assert not [
                r for r in trail(stack, "monitor-run") if r.evidence["submission_id"] == job.submission_id
            ]
            loop.start()
            wait_until(
                lambda: job.submission_id in monitoring(loop.store).handled,
                60,
                "the restarted loop to act on the finished job",
            )
            # A few more passes: none may record the run again or submit the window again.
            wait_until(
                lambda: (
                    (r := latest(loop.store, "fairness", models.good_v1)) and r.window_end > job.window_end
                ),
                150,
                "the next window's verdict",
            )
    runs = [r for r in trail(stack, "monitor-run") if r.evidence["submission_id"] == job.submission_id]
    assert len(runs) == 1
    listed = httpx.get(
        f"{stack.ray_address}/api/jobs/", headers={"Authorization": f"Bearer {stack.ray_token()}"}, timeout=30
    ).json()
    assert [j.get("submission_id") for j in listed].count(job.submission_id) == 1
