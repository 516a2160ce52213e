"""Outages mid-rollout, on the real stack: the Ray dashboard (behind a proxy the test switches off) and the
audit store (S3 on the moto server, behind another proxy), each with the control loop in its own process."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from faults import Load, LoopProcess, WeightSampler, actions, fault_home, md_doc, trail_problems
from helpers import BUCKET, applicant_records, free_port, wait_gone, wait_until
from tcp_proxy import TcpProxy

from steward.adapters.ray_serve import RayServeClient
from steward.api.serve_app import version_app_name
from steward.audit.s3_store import S3Store
from steward.dev.stack import Stack
from steward.dev.store import LocalStore, StoredObject
from steward.operator.serve_config import app_name

pytestmark = pytest.mark.integration
# The figure; a shorter outage can be asked for where time is tight (it must stay well above the
# loop's retry backoff, or the loop never sees it).
RAY_OUTAGE_S = float(os.environ.get("STEWARD_FAULT_RAY_OUTAGE_S", "60"))
# Latency is not what these tests judge: restarts on 2 cores must not fail a healthy version on p95 noise.
ROLLOUT = {
    "steps": [{"setWeight": 50}, {"analysis": {}}],
    "analysis": {"interval": "4s", "minRequests": 5, "maxLatencyP95Ratio": 1000},
}


def ready(store: LocalStore, ns: str, name: str) -> StoredObject | None:
    obj = store.get(ns, name)
    return obj if obj is not None and obj.status.phase.value == "Ready" else None


def finished(store: LocalStore, ns: str, name: str) -> StoredObject | None:
    obj = store.get(ns, name)
    return obj if obj is not None and obj.status.rollout_history and obj.status.rollout is None else None


def delete(store: LocalStore, ray_client: RayServeClient, ns: str, name: str, apps: list[str]) -> None:
    store.remove(ns, name, {"steward.io/actor": "fault@bank"})
    wait_until(lambda: store.get(ns, name) is None, 90, f"{ns}/{name} to be finalized")
    for app in apps:
        wait_gone(ray_client, app)


def test_ray_dashboard_down_mid_rollout_moves_no_traffic_then_the_rollout_resumes(
    stack: Stack, models: Any, ray_client: RayServeClient, tmp_path: Path
) -> None:
    ns, name = "faults", "dash"
    proxy = TcpProxy(free_port(), stack.ray_dashboard_port)
    proxy.start()
    home = fault_home(stack, tmp_path / "home", ray_dashboard_port=proxy.listen_port)
    store = LocalStore(home)
    loop = LoopProcess(home)
    router = app_name(md_doc(ns, name, models.good_v1))
    loop.start()
    try:
        store.apply(md_doc(ns, name, models.good_v1, ROLLOUT))
        obj = wait_until(lambda: ready(store, ns, name), 180, "v1 Ready")
        with (
            Load(str(obj.status.endpoint), applicant_records(50, seed=6)) as load,
            WeightSampler(ray_client, lambda: router) as sampler,
        ):
            store.apply(md_doc(ns, name, models.good_v2, ROLLOUT))
            wait_until(
                lambda: (sampler.sample() or {}).get(models.good_v2) == 50,
                180,
                "50% on v2, as Ray reports it",
            )
            proxy.stop()
            down_at = time.monotonic()
            before = store.get(ns, name)
            assert before is not None and before.status.rollout is not None
            records_before = len(list((home / "audit" / ns / name).glob("*.json")))
            weights_during: list[dict[str, int] | None] = []
            while time.monotonic() - down_at < RAY_OUTAGE_S:
                weights_during.append(sampler.sample())  # Ray directly, not through the proxy
                during = store.get(ns, name)
                assert during is not None and during.status.rollout is not None, (
                    "the rollout ended while down"
                )
                assert (during.status.rollout.weight, during.status.rollout.state.value) == (
                    before.status.rollout.weight,
                    before.status.rollout.state.value,
                )
                time.sleep(2)
            down = store.get(ns, name)
            records_during = len(list((home / "audit" / ns / name).glob("*.json"))) - records_before
            proxy.start()
            done = wait_until(
                lambda: finished(store, ns, name), 180, "the rollout to finish after the outage"
            )
            up_for = time.monotonic() - down_at - RAY_OUTAGE_S
        delete(store, ray_client, ns, name, [router, version_app_name(router, models.good_v2)])
    finally:
        loop.stop()
        proxy.shutdown()
    print(f"\noutage {RAY_OUTAGE_S:.0f}s; the rollout finished {up_for:.0f}s after the dashboard came back")
    assert all(w == {models.good_v1: 50, models.good_v2: 50} for w in weights_during), weights_during
    assert records_during == 0  # nothing claimed while nothing could happen
    assert down is not None
    ready_condition = next(c for c in down.status.conditions if c.type.value == "Ready")
    assert "unreachable" in ready_condition.message.lower(), ready_condition  # said, not hidden
    assert (
        done.status.rollout_history[-1].outcome.value,
        done.status.stable.version if done.status.stable else None,
    ) == (
        "Promoted",
        models.good_v2,
    )
    assert load.failed() == [], load.failed()[:5]
    records = store_records(home, ns, name)
    assert trail_problems(f"{ns}/{name}", records) == []
    assert actions(records)[-4:] == ["rollout-step", "analysis-verdict", "promoted", "deleted"]
    assert sampler.weights_of(models.good_v2)[-3:] == [0, 50, 100], sampler.seen


def store_records(home: Path, ns: str, name: str) -> list[Any]:
    from steward.audit.store import LocalFolderStore

    return LocalFolderStore(home / "audit").read(f"{ns}/{name}")


def test_audit_store_down_during_a_rollout_and_a_restart_loses_and_repeats_nothing(
    stack: Stack,
    models: Any,
    ray_client: RayServeClient,
    s3_env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ns, name = "faults", "trail"
    for key, value in s3_env.items():
        monkeypatch.setenv(key, value)  # credentials for this process's reader of the trail, as an auditor's
    moto_port = int(s3_env["MLFLOW_S3_ENDPOINT_URL"].rsplit(":", 1)[1])
    proxy = TcpProxy(free_port(), moto_port)
    proxy.start()
    prefix = f"faults-{uuid.uuid4().hex[:8]}"
    home = fault_home(stack, tmp_path / "home")
    store = LocalStore(home)
    overrides = {
        "audit_dir": None,
        "audit_s3_bucket": BUCKET,
        "audit_s3_prefix": prefix,
        "audit_s3_endpoint": f"http://127.0.0.1:{proxy.listen_port}",
        "rollout_tick_s": 1.0,
        "rollout_drain_s": 1.0,
        "resync_interval_s": 1.0,
    }
    loop = LoopProcess(home, overrides, env=s3_env)
    router = app_name(md_doc(ns, name, models.good_v1))
    s3 = S3Store(BUCKET, prefix, endpoint_url=s3_env["MLFLOW_S3_ENDPOINT_URL"])
    pending_seen: list[int] = []

    def pending() -> int:
        obj = store.get(ns, name)
        value = obj.status.audit.pending if obj is not None and obj.status.audit is not None else 0
        pending_seen.append(value)
        return value

    loop.start()
    try:
        store.apply(md_doc(ns, name, models.good_v1, ROLLOUT))
        obj = wait_until(lambda: ready(store, ns, name), 180, "v1 Ready")
        wait_until(lambda: len(s3.read(f"{ns}/{name}")) == 2, 30, "created and deployed stored")
        with Load(str(obj.status.endpoint), applicant_records(50, seed=7)):
            proxy.stop()  # the audit store goes away
            store.apply(md_doc(ns, name, models.good_v2, ROLLOUT))
            wait_until(lambda: pending() >= 2, 90, "records buffered while the store is down")
            loop.kill()  # the operator dies with records only in its buffer (and in status)
            loop.start()
            wait_until(lambda: pending() >= 3, 120, "more records buffered after the restart")
            loop.kill()
            loop.start()
            proxy.start()  # back
            done = wait_until(lambda: finished(store, ns, name), 180, "the rollout to finish")
            wait_until(lambda: pending() == 0, 60, "the trail to catch up")
        delete(store, ray_client, ns, name, [router, version_app_name(router, models.good_v2)])
        wait_until(lambda: len(s3.read(f"{ns}/{name}")) >= 8, 30, "the deletion record stored")
    finally:
        loop.stop()
        proxy.shutdown()
    print(f"\nbuffered while down: up to {max(pending_seen)} record(s)")
    assert done.status.rollout_history[-1].outcome.value == "Promoted"
    records = s3.read(f"{ns}/{name}")
    assert trail_problems(f"{ns}/{name}", records) == []
    assert actions(records) == [
        "created",
        "deployed",
        "spec-changed",
        "rollout-started",
        "rollout-step",
        "analysis-verdict",
        "promoted",
        "deleted",
    ], actions(records)
