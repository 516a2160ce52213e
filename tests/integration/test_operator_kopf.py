"""The operator as it runs on a cluster: Kopf against kmock's emulated Kubernetes API, driving a real Ray
cluster and a real MLflow server. Objects are created, patched and deleted over the Kubernetes HTTP API."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import kopf
import pytest
from helpers import applicant_records, expected_classes, free_port, predict, wait_gone
from kopf_harness import load_handlers, serve_modeldeployments, start_operator
from tcp_proxy import TcpProxy

from steward.audit.store import LocalFolderStore
from steward.audit.verify import verify
from steward.dev.stack import Stack

NS = "risk"
BASE = f"/apis/steward.io/v1alpha1/namespaces/{NS}/modeldeployments"

pytestmark = pytest.mark.integration


def manifest(name: str, model: dict[str, Any], serving: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "steward.io/v1alpha1",
        "kind": "ModelDeployment",
        # kmock sets neither resourceVersion nor uid, as an API server does. Kopf's finalizer removal is a
        # JSON patch that tests resourceVersion, and Kopf keys each object's memory (memo, daemons) by uid:
        # without one, every object shares the first one's daemon and a second one is never reconciled.
        "metadata": {"name": name, "namespace": NS, "resourceVersion": "1", "uid": str(uuid.uuid4())},
        "spec": {
            "model": model,
            "serving": {"resources": {"cpu": 0.25}, "replicas": {"min": 1, "max": 1}, **(serving or {})},
        },
    }


class Cluster:
    """The test's kubectl: plain HTTP to the emulated API server."""

    def __init__(self, url: str, kmock: Any) -> None:
        self.http = httpx.AsyncClient(base_url=url, timeout=10)
        self.kmock = kmock
        self.audit: LocalFolderStore | None = None

    async def create(self, body: dict[str, Any]) -> None:
        (await self.http.post(BASE, json=body)).raise_for_status()

    async def patch(self, name: str, body: dict[str, Any]) -> None:
        response = await self.http.patch(
            f"{BASE}/{name}", json=body, headers={"Content-Type": "application/merge-patch+json"}
        )
        response.raise_for_status()

    async def delete(self, name: str) -> None:
        (await self.http.delete(f"{BASE}/{name}")).raise_for_status()

    async def get(self, name: str) -> dict[str, Any] | None:
        response = await self.http.get(f"{BASE}/{name}")
        if response.status_code == 404:
            return None
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    async def events(self, name: str) -> list[dict[str, Any]]:
        """Events Kopf posted about `name`, read from the requests the emulated API received: kmock ignores
        `generateName`, so it stores only the first Event of a namespace and answers 409 to the rest."""
        posted = [r.data for r in self.kmock if r.method == "POST" and r.url.path.endswith("/events")]
        return [e for e in posted if isinstance(e, dict) and e.get("involvedObject", {}).get("name") == name]

    async def wait_events(self, name: str, check: Callable[[set[tuple[str, str]]], bool]) -> None:
        deadline = time.monotonic() + 15
        seen: set[tuple[str, str]] = set()
        while time.monotonic() < deadline:
            seen = {(e["type"], e["reason"]) for e in await self.events(name)}
            if check(seen):
                return
            await asyncio.sleep(0.5)
        raise AssertionError(f"{name}: expected Events not posted within 15 s; seen: {sorted(seen)}")

    async def wait(
        self, name: str, check: Callable[[dict[str, Any] | None], bool], what: str, timeout_s: float
    ) -> Any:
        deadline = time.monotonic() + timeout_s
        obj = None
        while time.monotonic() < deadline:
            obj = await self.get(name)
            if check(obj):
                return obj
            await asyncio.sleep(0.5)
        raise AssertionError(f"{name}: timed out after {timeout_s}s waiting for {what}; last: {obj!r}")

    async def wait_phase(self, name: str, phase: str, timeout_s: float = 180) -> dict[str, Any]:
        obj: dict[str, Any] = await self.wait(
            name, lambda o: bool(o) and o.get("status", {}).get("phase") == phase, f"phase {phase}", timeout_s
        )
        return obj


def ready(obj: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")
    return found


@pytest.fixture
async def cluster(
    kmock: Any, stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Cluster]:
    for key, value in {
        "STEWARD_RAY_ADDRESS": stack.ray_address,
        "STEWARD_ALLOW_INSECURE_RAY": "true",  # the local stack's dashboard is plain http on 127.0.0.1
        "MLFLOW_TRACKING_URI": stack.tracking_uri,
        "STEWARD_SERVE_PORT": str(stack.serve_port),
        "STEWARD_ENDPOINT_BASE": stack.serve_url,
        "RAY_AUTH_TOKEN": stack.ray_token(),
        "STEWARD_RESYNC_INTERVAL_S": "1",
        "STEWARD_ROLLOUT_TICK_S": "1",
        "STEWARD_RETRY_MAX_DELAY_S": "2",
        "STEWARD_DELETION_TIMEOUT_S": "8",
        "STEWARD_AUDIT_DIR": str(tmp_path / "audit"),
    }.items():
        monkeypatch.setenv(key, value)
    handlers = load_handlers()
    api_url = serve_modeldeployments(kmock, NS)
    settings = kopf.OperatorSettings()
    settings.scanning.disabled = True
    settings.posting.enabled = True  # Events land in the emulated API, where the tests read them
    settings.networking.request_timeout = 10
    stop = start_operator(settings, NS)
    client = Cluster(api_url, kmock)
    client.audit = LocalFolderStore(tmp_path / "audit")
    try:
        yield client
    finally:
        operator = stop()
        await asyncio.to_thread(operator.join, 30)
        assert not operator.is_alive(), "the operator did not stop within 30 s"
        await client.http.aclose()
        handlers.close()


def version_tags(tracking_uri: str, version: str) -> dict[str, str]:
    from mlflow import MlflowClient

    tags: dict[str, str] = MlflowClient(tracking_uri).get_model_version("credit-risk", version).tags
    return tags


async def served(url: str, records: list[dict[str, Any]]) -> httpx.Response:
    return await asyncio.to_thread(predict, url, records)


async def test_create_serve_update_delete(
    cluster: Cluster, stack: Stack, models: Any, ray_client: Any
) -> None:
    await cluster.create(manifest("credit", {"name": "credit-risk", "version": models.good_v1}))
    obj = await cluster.wait_phase("credit", "Ready")
    status = obj["status"]
    assert status["serveApplication"]["status"] == "RUNNING"
    assert status["stable"]["version"] == models.good_v1
    assert status["stable"]["modelUri"] == f"models:/credit-risk/{models.good_v1}"
    assert status["readyReplicas"] == 1
    assert status["audit"]["recordedSeq"] == 2 and status["audit"]["pending"] == 0
    assert status["endpoint"] == f"{stack.serve_url}/{NS}/credit"
    assert "finalizers" in obj["metadata"] and "steward.io/cleanup" in obj["metadata"]["finalizers"]
    # Kopf posts Events from a queue, a moment after the status patch.
    await cluster.wait_events(
        "credit", lambda events: {("Normal", "Deploying"), ("Normal", "Running")} <= events
    )

    records = applicant_records(40)
    response = await served(status["endpoint"], records)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == {"name": "credit-risk", "version": models.good_v1}
    assert body["predictions"] == await asyncio.to_thread(
        expected_classes, stack.tracking_uri, models.good_v1, records
    )

    # Level-triggered and idempotent: several resyncs later, Ray has not been asked to redeploy.
    app = await asyncio.to_thread(ray_client.instance)
    deployed_at = app["applications"][f"{NS}.credit"]["last_deployed_time_s"]
    await asyncio.sleep(4)
    app = await asyncio.to_thread(ray_client.instance)
    assert app["applications"][f"{NS}.credit"]["last_deployed_time_s"] == deployed_at

    # kmock does not bump metadata.generation; the API server would, on every spec change.
    # A canary that stops at an open pause: the operator's timer moves it, a person's command finishes it.
    await cluster.patch(
        "credit",
        {
            "metadata": {"generation": 2, "annotations": {"steward.io/actor": "alice@bank"}},
            "spec": {
                "model": {"version": models.good_v2},
                "rollout": {"steps": [{"setWeight": 50}, {"pause": {}}]},
            },
        },
    )
    obj = await cluster.wait(
        "credit",
        lambda o: bool(o) and (o["status"].get("rollout") or {}).get("state") == "Paused",
        "the rollout to pause at 50%",
        180,
    )
    assert obj["status"]["rollout"]["weight"] == 50 and obj["status"]["phase"] == "Progressing"
    served_by = {
        (await served(obj["status"]["endpoint"], records[:1])).json()["model"]["version"] for _ in range(30)
    }
    assert served_by == {models.good_v1, models.good_v2}
    command = {"id": "cmd-1", "command": "promote", "actor": "alice@bank", "reason": "CR-9 sign-off"}
    await cluster.patch(
        "credit", {"metadata": {"annotations": {"steward.io/rollout-command": json.dumps(command)}}}
    )
    obj = await cluster.wait(
        "credit",
        lambda o: (
            bool(o)
            and o["status"].get("phase") == "Ready"
            and o["status"].get("stable", {}).get("version") == models.good_v2
        ),
        "version 2 to be promoted",
        120,
    )
    assert [h["outcome"] for h in obj["status"]["rolloutHistory"]] == ["Promoted"]
    response = await served(obj["status"]["endpoint"], records[:3])
    assert response.json()["model"]["version"] == models.good_v2
    await asyncio.to_thread(wait_gone, ray_client, f"{NS}.credit.v{models.good_v1}")

    await cluster.delete("credit")
    await cluster.wait("credit", lambda o: o is None, "the finalizer to be released", 60)
    await asyncio.to_thread(wait_gone, ray_client, f"{NS}.credit")
    await asyncio.to_thread(wait_gone, ray_client, f"{NS}.credit.v{models.good_v2}")

    # Every transition left exactly one record, chained, in order, despite many resyncs in between.
    assert cluster.audit is not None
    records = cluster.audit.read(f"{NS}/credit")
    assert [r.action.value for r in records] == [
        "created",
        "deployed",
        "spec-changed",
        "rollout-started",
        "rollout-step",
        "rollout-step",
        "promoted",
        "deleted",
    ]
    assert (records[6].model.from_version, records[6].model.to_version) == (models.good_v1, models.good_v2)
    # The webhook is off here: names are what the client declared, and the records say so.
    assert records[2].actor == "alice@bank (declared)"
    assert (records[5].actor, records[5].reason) == (
        "alice@bank (declared)",
        "step 2 completed by alice@bank (declared): CR-9 sign-off",
    )
    assert f"model.version: {models.good_v1} -> {models.good_v2}" in records[2].evidence["changes"]
    assert verify(f"{NS}/credit", records).ok
    audited: list[dict[str, Any]] = []
    for _ in range(30):  # Kopf posts Events from a queue
        audited = [e for e in await cluster.events("credit") if e["reason"] == "AuditRecorded"]
        if len(audited) >= len(records):
            break
        await asyncio.sleep(0.5)
    assert [e["message"].split(" ", 1)[0].rstrip(":") for e in audited] == [r.action.value for r in records]
    tags = await asyncio.to_thread(version_tags, stack.tracking_uri, models.good_v2)
    assert f"steward.{NS}.credit.promoted-at" in tags


async def test_unknown_version_and_model_are_reported_with_what_exists(cluster: Cluster, models: Any) -> None:
    await cluster.create(manifest("typo", {"name": "credit-risk", "version": "999"}))
    obj = await cluster.wait_phase("typo", "Failed", 60)
    condition = ready(obj)
    assert condition["status"] == "False"
    assert condition["reason"] == "VersionNotFound"
    assert "999" in condition["message"]
    assert models.good_v1 in condition["message"] and models.good_v2 in condition["message"]
    assert "serveApplication" not in obj["status"] or obj["status"]["serveApplication"] is None

    await cluster.create(manifest("nomodel", {"name": "no-such-model", "alias": "champion"}))
    obj = await cluster.wait_phase("nomodel", "Failed", 60)
    assert ready(obj)["reason"] == "ModelNotFound"
    assert "no-such-model" in ready(obj)["message"]

    # Both at once: Failed objects are re-checked by their loops, so a delete can land mid-pass (Kopf then
    # waited 60 s for the loop to exit before releasing the finalizer; test_kopf_per_object pins that down).
    for name in ("typo", "nomodel"):
        await cluster.delete(name)
    for name in ("typo", "nomodel"):
        await cluster.wait(name, lambda o: o is None, "deletion", 30)


async def test_deploy_failure_surfaces_rays_message(cluster: Cluster, models: Any, ray_client: Any) -> None:
    await cluster.create(manifest("broken", {"name": "broken-model", "version": models.broken}))
    obj = await cluster.wait_phase("broken", "Failed", 240)
    condition = ready(obj)
    assert condition["reason"] == "DeployFailed"
    assert "missing feature store credentials" in condition["message"]
    assert obj["status"]["serveApplication"]["status"] == "DEPLOY_FAILED"
    await cluster.delete("broken")
    await cluster.wait("broken", lambda o: o is None, "deletion", 60)
    await asyncio.to_thread(wait_gone, ray_client, f"{NS}.broken")


@pytest.fixture
def ray_proxy(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[TcpProxy]:
    """A TCP proxy to the session's Ray dashboard, not started (Ray is "down"), on an address the operator is
    allowed to use (set before the `cluster` fixture starts the operator, which reads it once)."""
    proxy = TcpProxy(free_port(), stack.ray_dashboard_port)
    monkeypatch.setenv(
        "STEWARD_ALLOWED_RAY_ADDRESSES", f"{stack.ray_address},http://127.0.0.1:{proxy.listen_port}"
    )
    try:
        yield proxy
    finally:
        proxy.shutdown()


async def test_ray_down_at_create_then_back(
    ray_proxy: TcpProxy, cluster: Cluster, stack: Stack, models: Any, ray_client: Any
) -> None:
    proxy = ray_proxy
    address = f"http://127.0.0.1:{proxy.listen_port}"
    await cluster.create(
        manifest("flaky", {"name": "credit-risk", "version": models.good_v1}, {"rayAddress": address})
    )
    obj = await cluster.wait(
        "flaky",
        lambda o: (
            bool(o) and o.get("status", {}).get("conditions") and ready(o)["reason"] == "RayUnreachable"
        ),
        "RayUnreachable",
        60,
    )
    assert ready(obj)["status"] == "Unknown"
    assert address in ready(obj)["message"]
    assert obj["status"]["phase"] == "Progressing"

    proxy.start()  # Ray is back
    obj = await cluster.wait_phase("flaky", "Ready", 180)
    assert obj["status"]["endpoint"] == f"{stack.serve_url}/{NS}/flaky"
    response = await served(obj["status"]["endpoint"], applicant_records(2))
    assert response.status_code == 200, response.text

    # Ray goes away again and stays away: deletion still completes after the bounded wait.
    proxy.stop()
    started = time.monotonic()
    await cluster.delete("flaky")
    await cluster.wait("flaky", lambda o: o is None, "the finalizer released despite Ray down", 60)
    assert time.monotonic() - started >= 7
    await cluster.wait_events("flaky", lambda events: ("Warning", "CleanupAbandoned") in events)
    (warning,) = [e for e in await cluster.events("flaky") if e["reason"] == "CleanupAbandoned"]
    assert f"{NS}.flaky may remain" in warning["message"]
    # The application was left behind on Ray, as the warning says; clean it up for the next tests.
    assert await asyncio.to_thread(ray_client.get_application, f"{NS}.flaky") is not None
    await asyncio.to_thread(
        ray_client.delete_application, f"{NS}.flaky", stack.operator_config().http_options
    )
