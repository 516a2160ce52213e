"""The reconciler's passes at rest repeat their settled decision without deciding again, and still observe
everything: a change behind Steward's back, a moved alias or a spec change is decided as soon as it is seen
(a change on Ray within the shared list's max age, as without the repeat). Fakes of Ray's and MLflow's REST
APIs; decisions and call counts only (no timed assertions)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from builders import CONFIG, T0

import steward.operator.reconciler as reconciler_module
from steward.adapters.mlflow_registry import MlflowRegistry
from steward.adapters.ray_serve import ListSnapshots, RayServeClient
from steward.audit.store import LocalFolderStore, StoreUnavailable
from steward.audit.trail import AuditTrail
from steward.operator.actions import ApplyServeApplications
from steward.operator.core import Decision
from steward.operator.object_loop import merged
from steward.operator.pacing import without_nulls
from steward.operator.reconciler import Reconciler
from steward.operator.resource import ParseMemo, status_patch
from steward.operator.settled import SettledPass

RESYNC_S = 15.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Ray:
    """The Serve REST API: a PUT's applications are RUNNING at once; counts list reads."""

    def __init__(self) -> None:
        self.apps: dict[str, dict[str, Any]] = {}
        self.gets = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            self.gets += 1
            return httpx.Response(200, json={"applications": self.apps})
        if request.method == "PUT":
            configs = httpx.Response(200, content=request.content).json()["applications"]
            self.apps = {c["name"]: running(c) for c in configs}
        return httpx.Response(200, json={})


def running(config: dict[str, Any]) -> dict[str, Any]:
    deployments = {
        d["name"]: {"status": "HEALTHY", "message": "", "replicas": [{"state": "RUNNING"}]}
        for d in config.get("deployments") or []
    }
    return {"status": "RUNNING", "message": "", "deployed_app_config": config, "deployments": deployments}


class Mlflow:
    """Versions 1..9 of every model READY; the alias `champion` names `self.champion`."""

    def __init__(self) -> None:
        self.champion = "3"

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/api/2.0/mlflow")
        params = request.url.params
        if path == "/registered-models/get":
            return httpx.Response(200, json={"registered_model": {"name": params["name"]}})
        if path == "/model-versions/search":
            return httpx.Response(200, json={"model_versions": []})
        if path == "/model-versions/set-tag":
            return httpx.Response(200, json={})
        version = self.champion if path == "/registered-models/alias" else params["version"]
        return httpx.Response(
            200, json={"model_version": {"version": version, "source": f"s3://m/{version}"}}
        )


class Operator:
    """One object and the reconciler, as the object's loop drives them: parse (remembered), reconcile (with
    the settled memory), write the status if it changed, as the API server stores it."""

    def __init__(self, tmp_path: Path, spec: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
        self.ray, self.mlflow, self.clock = Ray(), Mlflow(), Clock()
        config = replace(
            CONFIG, allowed_ray_addresses=frozenset({CONFIG.ray_address}), resync_interval_s=RESYNC_S
        )
        self.reconciler = Reconciler(config, ray_token="t", trail=AuditTrail(LocalFolderStore(tmp_path)))
        self.reconciler.registry = MlflowRegistry(
            "http://mlflow:5000", transport=httpx.MockTransport(self.mlflow), clock=self.clock
        )
        self.reconciler._serve_clients[CONFIG.ray_address] = RayServeClient(
            CONFIG.ray_address,
            transport=httpx.MockTransport(self.ray),
            snapshots=ListSnapshots(),
            clock=self.clock,
        )
        self.body: dict[str, Any] = {
            "apiVersion": "steward.io/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": "credit", "namespace": "risk", "uid": "u-1", "generation": 1},
            "spec": spec,
            "status": {},
        }
        self.parsed, self.settled = ParseMemo(), SettledPass()
        self.decides = 0
        real = reconciler_module.decide

        def counted(*args: Any, **kwargs: Any) -> Decision:
            self.decides += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(reconciler_module, "decide", counted)

    def step(self, seconds: float = RESYNC_S) -> Decision:
        self.clock.now += seconds
        md = self.parsed.parse(self.body)
        now = T0 + timedelta(seconds=self.clock.now)
        decision = self.reconciler.reconcile(md, now, lambda *_: None, self.settled)
        stored = without_nulls(merged(self.body["status"], status_patch(decision.status)))
        if stored != self.body["status"]:
            self.body = {**self.body, "status": stored}
        return decision

    def settle(self) -> Decision:
        for _ in range(10):
            decision = self.step(1.0)
            if self.settled.decision is decision:
                return decision
        raise AssertionError(f"never settled: {self.body['status']}")

    def change_spec(self, spec: dict[str, Any]) -> None:
        metadata = {**self.body["metadata"], "generation": self.body["metadata"]["generation"] + 1}
        self.body = {**self.body, "metadata": metadata, "spec": spec}


PINNED = {"model": {"name": "credit-risk", "version": "3"}}


def test_a_pass_at_rest_repeats_its_settled_decision_and_still_observes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    op = Operator(tmp_path, PINNED, monkeypatch)
    settled = op.settle()
    assert op.body["status"]["phase"] == "Ready"
    decides, gets = op.decides, op.ray.gets
    for _ in range(20):  # five minutes of resyncs
        assert op.step() is settled
    assert op.decides == decides
    assert op.ray.gets == gets + 20  # the list is still read once per max age


def test_a_change_on_ray_behind_stewards_back_is_decided_once_the_list_is_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    op = Operator(tmp_path, PINNED, monkeypatch)
    op.settle()
    op.step()  # a fresh read of the list, now shared for its max age
    del op.ray.apps["risk.credit.v3"]  # someone deleted the version's application
    op.step(1.0)  # within the max age: the shared list does not show it yet (as without the repeat)
    decides = op.decides
    decision = op.step(RESYNC_S)
    assert op.decides == decides + 1
    assert any(isinstance(a, ApplyServeApplications) for a in decision.actions)
    assert "risk.credit.v3" in op.ray.apps


def test_a_moved_alias_is_decided_at_the_next_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    op = Operator(tmp_path, {"model": {"name": "credit-risk", "alias": "champion"}}, monkeypatch)
    op.settle()
    decides = op.decides
    op.mlflow.champion = "4"
    decision = op.step(1.0)
    assert op.decides == decides + 1
    assert decision.status.rollout is not None or any(
        isinstance(a, ApplyServeApplications) for a in decision.actions
    )


def test_a_spec_change_is_decided_at_the_next_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    op = Operator(tmp_path, PINNED, monkeypatch)
    op.settle()
    decides = op.decides
    op.change_spec({**PINNED, "serving": {"replicas": {"min": 1, "max": 3}}})
    decision = op.step(1.0)
    assert op.decides == decides + 1
    assert any(isinstance(a, ApplyServeApplications) for a in decision.actions)


def test_a_record_the_audit_store_has_not_taken_keeps_the_object_deciding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    op = Operator(tmp_path, PINNED, monkeypatch)
    op.settle()
    real_append = LocalFolderStore.append

    def down(self: LocalFolderStore, record: Any) -> None:
        raise StoreUnavailable("the audit store is down")

    monkeypatch.setattr(LocalFolderStore, "append", down)
    op.change_spec({**PINNED, "serving": {"replicas": {"min": 1, "max": 3}}})  # a change: a record to write
    for _ in range(4):
        decides = op.decides
        op.step()
        assert op.decides == decides + 1  # every pass decides while a record waits for the store
        assert op.body["status"]["audit"]["pending"] >= 1
    monkeypatch.setattr(LocalFolderStore, "append", real_append)
    settled = op.settle()
    assert op.body["status"]["audit"].get("pending", 0) == 0
    assert op.step() is settled
