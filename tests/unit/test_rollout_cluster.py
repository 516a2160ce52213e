"""The rollout commands in cluster mode, against kmock's emulated Kubernetes API (no Ray, no operator).

The CLI runs in a thread: it talks to the emulated API with the synchronous Kubernetes client, and the API is
served by this test's event loop.
"""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

import steward.cli.rollout as rollout_cli
from steward.api.rollout import ROLLOUT_COMMAND_ANNOTATION
from steward.cli.main import app

RESOURCE = "steward.io/v1alpha1/modeldeployments"
NS = "risk"
BASE = f"/apis/steward.io/v1alpha1/namespaces/{NS}/modeldeployments"
SPEC = {
    "model": {"name": "credit-risk", "version": "4"},
    "rollout": {"steps": [{"setWeight": 10}, {"pause": {}}]},
}
ROLLOUT = {
    "strategy": "canary",
    "canary": {"version": "4", "modelUri": "models:/credit-risk/4"},
    "fromVersion": "3",
    "state": "Progressing",
    "startedAt": "2026-11-23T12:00:00Z",
    "stepIndex": 1,
    "stepCount": 2,
    "stepStartedAt": "2026-11-23T12:01:00Z",
    "weight": 10,
}
runner = CliRunner()


def obj(name: str, rollout: dict[str, Any] | None = ROLLOUT) -> dict[str, Any]:
    return {
        "apiVersion": "steward.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": NS, "generation": 2, "annotations": {"team": "risk"}},
        "spec": SPEC,
        "status": {
            "observedGeneration": 2,
            "stable": {"version": "3", "modelUri": "models:/credit-risk/3"},
            "rollout": rollout,
        },
    }


def kubeconfig(path: Path, server: str) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "emulated", "cluster": {"server": server}}],
                "users": [{"name": "alice", "user": {"token": "test-token"}}],
                "contexts": [{"name": "emulated", "context": {"cluster": "emulated", "user": "alice"}}],
                "current-context": "emulated",
            }
        )
    )
    return path


@pytest.fixture
def cluster(kmock: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("STEWARD_ACTOR", "alice")
    monkeypatch.delenv("STEWARD_CLUSTER", raising=False)
    monkeypatch.setattr(rollout_cli, "POLL_INTERVAL_S", 0.05)
    kmock.resources[RESOURCE] = {"kind": "ModelDeployment", "namespaced": True, "verbs": {"get", "patch"}}
    kmock.objects[RESOURCE, NS, "credit"] = obj("credit")
    return kubeconfig(tmp_path / "kubeconfig", str(kmock.url).rstrip("/"))


async def steward(*args: str) -> Any:
    return await asyncio.to_thread(runner.invoke, app, list(args))


def flat(result: Any) -> str:
    return " ".join(result.output.split())


async def test_a_command_reaches_the_api_as_a_merge_patch_of_one_annotation(
    kmock: Any, cluster: Path
) -> None:
    result = await steward(
        "pause", "credit", "-n", NS, "--kubeconfig", str(cluster), "--reason", "CR-1", "--no-wait"
    )
    assert result.exit_code == 0, result.output
    (patch,) = [r for r in kmock if r.method == "PATCH"]
    assert patch.url.path == f"{BASE}/credit"
    assert patch.headers["Content-Type"] == "application/merge-patch+json"
    assert list(patch.data) == ["metadata"] and list(patch.data["metadata"]) == ["annotations"]
    command = json.loads(patch.data["metadata"]["annotations"][ROLLOUT_COMMAND_ANNOTATION])
    assert {k: command[k] for k in ("command", "actor", "reason")} == {
        "command": "pause",
        "actor": "alice",
        "reason": "CR-1",
    }
    stored = kmock.objects[RESOURCE, NS, "credit"]
    assert stored["metadata"]["annotations"]["team"] == "risk"  # merged, not replaced
    assert json.loads(stored["metadata"]["annotations"][ROLLOUT_COMMAND_ANNOTATION])["id"] == command["id"]
    assert stored["spec"] == SPEC


async def test_waits_for_the_operator_to_acknowledge_in_the_status(kmock: Any, cluster: Path) -> None:
    cli = asyncio.create_task(
        steward("promote", "credit", "-n", NS, "--kubeconfig", str(cluster), "--wait-s", "20")
    )
    # Play the operator: once the command is there, mark it handled.
    for _ in range(200):
        annotations = kmock.objects[RESOURCE, NS, "credit"]["metadata"].get("annotations", {})
        if ROLLOUT_COMMAND_ANNOTATION in annotations:
            break
        await asyncio.sleep(0.05)
    command_id = json.loads(annotations[ROLLOUT_COMMAND_ANNOTATION])["id"]
    acted = {**ROLLOUT, "stepIndex": 2, "message": "step completed by alice", "handledCommand": command_id}
    kmock.objects[RESOURCE, NS, "credit"] = {
        **obj("credit", acted),
        "metadata": {**obj("credit")["metadata"]},
    }
    result = await asyncio.wait_for(cli, 30)
    assert result.exit_code == 0, result.output
    assert "the operator handled it; the rollout is Progressing: step completed by alice" in flat(result)


async def test_status_reads_the_cluster(kmock: Any, cluster: Path) -> None:
    result = await steward("rollout", "status", "credit", "-n", NS, "--kubeconfig", str(cluster))
    assert result.exit_code == 0, result.output
    assert "risk/credit  canary rollout  version 3 -> 4" in result.output
    assert "▶ 2. pause (until resumed)" in result.output


async def test_a_missing_deployment_is_a_clear_404_message(kmock: Any, cluster: Path) -> None:
    result = await steward("abort", "nope", "-n", NS, "--kubeconfig", str(cluster))
    assert result.exit_code == 1
    assert f"no ModelDeployment risk/nope in the cluster at {str(kmock.url).rstrip('/')}" in flat(result)
    assert "Traceback" not in result.output
    assert not [r for r in kmock if r.method == "PATCH"]


async def test_forbidden_and_unauthorized_say_what_to_do(kmock: Any, cluster: Path) -> None:
    kmock.objects[RESOURCE, NS, "locked"] = obj("locked")
    (
        kmock["patch", f"{BASE}/locked"]
        << 403
        << {"kind": "Status", "code": 403, "message": "RBAC: access denied"}
    )
    result = await steward("abort", "locked", "-n", NS, "--kubeconfig", str(cluster))
    assert result.exit_code == 1
    assert (
        "does not allow you to patch ModelDeployment risk/locked (403 Forbidden: RBAC: access denied)"
        in flat(result)
    )
    assert "ask your platform team for a Role" in flat(result)

    kmock["get", f"{BASE}/secret"] << 401 << {"kind": "Status", "code": 401, "message": "Unauthorized"}
    result = await steward("rollout", "status", "secret", "-n", NS, "--kubeconfig", str(cluster))
    assert result.exit_code == 1
    assert "did not accept your credentials (401 Unauthorized: Unauthorized); log in again" in flat(result)


async def test_an_unreachable_cluster_is_a_clear_message(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    config = kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{port}")
    result = await steward("rollout", "status", "credit", "-n", NS, "--kubeconfig", str(config))
    assert result.exit_code == 1
    assert f"cannot reach the cluster at http://127.0.0.1:{port}" in flat(result)
    assert "Traceback" not in result.output
