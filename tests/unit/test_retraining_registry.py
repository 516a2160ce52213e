"""The registry writes a candidate's rollout needs: set an alias, and clear one only if it still names the
candidate; a refused write is reported as the registry's problem, not Ray's."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
from builders import CONFIG, T0, md

from steward.adapters.mlflow_registry import MlflowRegistry
from steward.adapters.ray_serve import RayServeClient
from steward.api.conditions import Reason
from steward.api.model_deployment import ModelDeployment
from steward.operator.actions import EventType, PostEvent, SetModelAlias
from steward.operator.reconciler import REGISTRY_REASONS, Reconciler


def _registry(aliases: dict[str, str], seen: list[httpx.Request]) -> MlflowRegistry:
    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        body = json.loads(request.content) if request.content else {}
        if request.method == "GET":
            version = aliases.get(request.url.params["alias"])
            if version is None:
                return httpx.Response(
                    400, json={"error_code": "INVALID_PARAMETER_VALUE", "message": "alias x not found"}
                )
            return httpx.Response(200, json={"model_version": {"version": version}})
        if request.method == "POST":
            aliases[body["alias"]] = body["version"]
            return httpx.Response(200, json={})
        # MLflow reads a DELETE's parameters from the JSON body; without them it answers 400.
        if "name" not in body:
            return httpx.Response(400, json={"error_code": "INVALID_PARAMETER_VALUE", "message": "name"})
        aliases.pop(body["alias"], None)
        return httpx.Response(200, json={})

    return MlflowRegistry("http://mlflow:5000", transport=httpx.MockTransport(answer))


def test_an_alias_is_set_and_cleared_only_while_it_names_the_candidate() -> None:
    aliases = {"champion": "3"}
    seen: list[httpx.Request] = []
    registry = _registry(aliases, seen)
    registry.set_alias("credit-risk", "challenger", "4")
    assert aliases == {"champion": "3", "challenger": "4"}
    assert registry.delete_alias("credit-risk", "challenger", if_version="4") is True
    assert aliases == {"champion": "3"}
    # Gone already (a replayed pass), or moved by a person to another version: left alone.
    assert registry.delete_alias("credit-risk", "challenger", if_version="4") is False
    aliases["challenger"] = "5"
    assert registry.delete_alias("credit-risk", "challenger", if_version="4") is False
    assert aliases["challenger"] == "5"
    assert [r.method for r in seen].count("DELETE") == 1


def test_a_registry_write_that_fails_stops_the_pass_as_a_registry_problem(tmp_path: Path) -> None:
    reconciler = Reconciler(replace(CONFIG, ray_lock_dir=str(tmp_path)), ray_token="t")

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    reconciler.registry = MlflowRegistry("http://mlflow:5000", transport=httpx.MockTransport(down))
    posted: list[str] = []
    try:
        problem = reconciler.execute(
            [SetModelAlias("credit-risk", "champion", "4"), PostEvent(EventType.NORMAL, "After", "x")],
            lambda _t, reason, _m: posted.append(reason),
        )
    finally:
        reconciler.close()
    assert problem is not None and problem.reason == Reason.REGISTRY_UNREACHABLE and problem.temporary
    assert problem.reason in REGISTRY_REASONS
    assert posted == []  # nothing after the refused write ran


def _canary_md() -> ModelDeployment:
    rollout = {
        "submissionId": "steward-retrain-u1-0123456789abcdef",
        "version": "4",
        "fromVersion": "3",
        "alias": "champion",
        "challengerAlias": "challenger",
        "state": "Canary",
        "since": T0.isoformat(),
    }
    return md(
        {"model": {"name": "credit-risk", "alias": "champion"}, "retraining": {"entrypoint": "python -m t"}},
        {"retraining": {"candidateRollout": rollout}},
    )


def _finalize(registry: MlflowRegistry, tmp_path: Path) -> tuple[bool, list[tuple[Any, ...]]]:
    reconciler = Reconciler(replace(CONFIG, ray_lock_dir=str(tmp_path)), ray_token="t")
    ray = httpx.MockTransport(lambda r: httpx.Response(200, json={"applications": {}}))
    reconciler._serve_clients[CONFIG.ray_address] = RayServeClient(CONFIG.ray_address, "t", transport=ray)
    reconciler.registry = registry
    events: list[tuple[Any, ...]] = []
    try:
        decision = reconciler.finalize(_canary_md(), T0, T0, lambda *e: events.append(e))
    finally:
        reconciler.close()
    return decision.release_finalizer, events


def test_deleting_a_deployment_mid_canary_clears_the_challenger_alias_it_set(tmp_path: Path) -> None:
    aliases = {"champion": "3", "challenger": "4"}
    released, events = _finalize(_registry(aliases, []), tmp_path)
    assert released and aliases == {"champion": "3"}
    assert not [e for e in events if e[1] == "ChallengerAliasLeft"]
    # A person who moved it meanwhile keeps it.
    aliases = {"champion": "3", "challenger": "5"}
    released, _ = _finalize(_registry(aliases, []), tmp_path)
    assert released and aliases == {"champion": "3", "challenger": "5"}


def test_a_registry_that_is_down_does_not_hold_the_deletion_but_says_what_is_left(tmp_path: Path) -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    registry = MlflowRegistry("http://mlflow:5000", transport=httpx.MockTransport(down))
    released, events = _finalize(registry, tmp_path)
    assert released
    (left,) = [e for e in events if e[1] == "ChallengerAliasLeft"]
    assert left[0] == EventType.WARNING and "clear it by hand" in left[2]
