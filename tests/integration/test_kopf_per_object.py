"""Each ModelDeployment gets its own reconcile loop under Kopf (against kmock), with the reconcile work
replaced by a recorder: no Ray or MLflow needed, so this runs in seconds."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import kopf
import pytest
from kopf_harness import load_handlers, serve_modeldeployments, start_operator

from steward.operator.deletion import DeletionDecision
from steward.operator.object_loop import PassResult

NS = "risk"
BASE = f"/apis/steward.io/v1alpha1/namespaces/{NS}/modeldeployments"


def body(name: str, uid: str) -> dict[str, Any]:
    return {
        "apiVersion": "steward.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": NS, "resourceVersion": "1", "uid": uid},
        "spec": {"model": {"name": "m", "version": "1"}},
    }


async def status_of(http: httpx.AsyncClient, name: str, timeout_s: float = 15) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status: dict[str, Any] = (await http.get(f"{BASE}/{name}")).json().get("status") or {}
        if status:
            return status
        await asyncio.sleep(0.2)
    raise AssertionError(f"{name}: no status within {timeout_s} s")


async def test_objects_with_the_same_spec_each_get_their_own_loop(
    kmock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STEWARD_RESYNC_INTERVAL_S", "1")
    handlers = load_handlers()
    passes: dict[str, int] = {}

    async def record(snapshot: dict[str, Any], changed: bool) -> PassResult:
        name = snapshot["metadata"]["name"]
        passes[name] = passes.get(name, 0) + 1
        return PassResult({"phase": "Ready", "message": f"seen {name}"}, retry=False, requeue_after_s=None)

    monkeypatch.setattr(handlers, "_work_for", lambda _memo: record)
    settings = kopf.OperatorSettings()
    settings.scanning.disabled = True
    settings.posting.enabled = False
    stop = start_operator(settings, NS)
    async with httpx.AsyncClient(base_url=serve_modeldeployments(kmock, NS), timeout=10) as http:
        try:
            # Identical specs: nothing but the object's identity tells their loops apart.
            for name, uid in (("first", "uid-1"), ("second", "uid-2"), ("third", "uid-3")):
                (await http.post(BASE, json=body(name, uid))).raise_for_status()
                assert (await status_of(http, name))["message"] == f"seen {name}"
            await asyncio.sleep(2.5)  # a couple of resyncs: each loop keeps its own pace
            assert set(passes) == {"first", "second", "third"}
            assert all(count >= 2 for count in passes.values()), passes
        finally:
            await asyncio.to_thread(stop().join, 30)


async def test_deleting_an_object_mid_pass_releases_it_promptly(
    kmock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kopf holds the finalizer until the object's loop has exited, and by default re-checks an exiting loop
    only every 60 s. A pass that is running when the object is deleted (and writes nothing new, so no watch
    event wakes Kopf) must not hold the deletion for a minute."""
    monkeypatch.setenv("STEWARD_RESYNC_INTERVAL_S", "1")
    handlers = load_handlers()
    in_pass = asyncio.Event()

    async def slow(snapshot: dict[str, Any], changed: bool) -> PassResult:
        in_pass.set()
        await asyncio.sleep(3)  # the object is deleted meanwhile
        return PassResult({"phase": "Ready", "message": "same"}, retry=False, requeue_after_s=None)

    monkeypatch.setattr(handlers, "_work_for", lambda _memo: slow)
    monkeypatch.setattr(
        handlers, "_finalize", lambda _body: DeletionDecision(release_finalizer=True, actions=[])
    )
    settings = kopf.OperatorSettings()
    settings.scanning.disabled = True
    settings.posting.enabled = False
    stop = start_operator(settings, NS)
    async with httpx.AsyncClient(base_url=serve_modeldeployments(kmock, NS), timeout=10) as http:
        try:
            (await http.post(BASE, json=body("doomed", "uid-doomed"))).raise_for_status()
            await status_of(http, "doomed")
            in_pass.clear()
            await asyncio.wait_for(in_pass.wait(), 10)  # the next (1 s resync) pass is running
            (await http.delete(f"{BASE}/doomed")).raise_for_status()
            deadline = time.monotonic() + 20
            while (await http.get(f"{BASE}/doomed")).status_code != 404:
                assert time.monotonic() < deadline, "deletion held by the exiting loop for over 20 s"
                await asyncio.sleep(0.2)
        finally:
            await asyncio.to_thread(stop().join, 30)
