"""The admission webhook that stamps the authenticated user, served by Kopf itself (no Ray needed).

No API server runs here, so the test plays its part: it posts AdmissionReview requests, as the API server
would, to the webhook server the operator starts, and checks the JSON patch that comes back.
(The API server would call it over TLS; the test runs the server in its insecure mode on 127.0.0.1.)
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import kopf
import pytest
from helpers import free_port
from kopf_harness import load_handlers, serve_modeldeployments, start_operator

pytestmark = pytest.mark.integration
NS = "risk"


def md(spec_version: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "steward.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "credit", "namespace": NS, "annotations": annotations or {}},
        "spec": {"model": {"name": "credit-risk", "version": spec_version}},
    }


def review(
    operation: str, user: str, new: dict[str, Any], old: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": f"req-{operation}-{user}",
            "kind": {"group": "steward.io", "version": "v1alpha1", "kind": "ModelDeployment"},
            "resource": {"group": "steward.io", "version": "v1alpha1", "resource": "modeldeployments"},
            "operation": operation,
            "userInfo": {"username": user, "groups": ["system:authenticated"]},
            "object": new,
            "oldObject": old,
            "dryRun": False,
        },
    }


@pytest.fixture
async def webhook(kmock: Any, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[str]:
    port = free_port()
    for key, value in {
        "STEWARD_WEBHOOK_PORT": str(port),
        "STEWARD_WEBHOOK_ADDR": "127.0.0.1",
        "STEWARD_WEBHOOK_INSECURE": "1",
    }.items():
        monkeypatch.setenv(key, value)
    load_handlers()
    serve_modeldeployments(kmock, NS)
    settings = kopf.OperatorSettings()
    settings.scanning.disabled = True
    stop = start_operator(settings, NS)
    url = f"http://127.0.0.1:{port}/authenticated-user"
    async with httpx.AsyncClient(timeout=5) as http:
        for _ in range(100):
            try:
                await http.get(f"http://127.0.0.1:{port}/")
                break
            except httpx.TransportError:
                await asyncio.sleep(0.2)
    try:
        yield url
    finally:
        await asyncio.to_thread(stop().join, 30)
        monkeypatch.delenv("STEWARD_WEBHOOK_PORT")
        load_handlers()  # leave the module as other tests expect it: no admission handler


async def post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.post(url, json=body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()["response"]
    return answer


def patch_of(answer: dict[str, Any]) -> list[dict[str, Any]]:
    if "patch" not in answer:
        return []
    ops: list[dict[str, Any]] = json.loads(base64.b64decode(answer["patch"]))
    return ops


def stamped(ops: list[dict[str, Any]]) -> str | None:
    for op in ops:
        value = op.get("value")
        if op["path"] == "/metadata/annotations/steward.io~1authenticated-user":
            return str(value)
        if op["path"] == "/metadata/annotations" and isinstance(value, dict):
            return value.get("steward.io/authenticated-user")
    return None


async def test_create_and_spec_changes_are_stamped_with_the_authenticated_user(webhook: str) -> None:
    created = await post(webhook, review("CREATE", "alice@bank.example", md("3")))
    assert created["allowed"] is True and created["uid"] == "req-CREATE-alice@bank.example"
    assert stamped(patch_of(created)) == "alice@bank.example"

    # A client cannot forge it: whatever the request carries is replaced.
    forged = md("4", {"steward.io/authenticated-user": "someone-else", "steward.io/actor": "bob"})
    changed = await post(webhook, review("UPDATE", "system:serviceaccount:ci:deployer", forged, md("3")))
    assert stamped(patch_of(changed)) == "system:serviceaccount:ci:deployer"

    command = {"steward.io/rollout-command": json.dumps({"id": "c1", "command": "abort"})}
    aborted = await post(webhook, review("UPDATE", "carol@bank.example", md("4", command), md("4")))
    assert stamped(patch_of(aborted)) == "carol@bank.example"


async def test_the_operators_own_writes_are_not_stamped(webhook: str) -> None:
    """Kopf's bookkeeping annotations change, the spec does not: the person's name must stay."""
    before = md("4", {"steward.io/authenticated-user": "alice@bank.example"})
    after = md("4", {**before["metadata"]["annotations"], "steward.io/last-handled-configuration": "{}"})
    answer = await post(webhook, review("UPDATE", "system:serviceaccount:steward:steward", after, before))
    assert answer["allowed"] is True and stamped(patch_of(answer)) is None
