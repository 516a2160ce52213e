"""At scale: a resync's passes share one read of each Ray cluster's list and recent MLflow answers for pinned
versions, objects in motion look afresh, and a person's change goes ahead of routine passes. Decisions and
call counts only (no timed assertions)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import httpx
import pytest
from builders import CONFIG, md

from steward.adapters.mlflow_registry import MlflowRegistry
from steward.adapters.ray_serve import ListSnapshots, RayServeClient
from steward.api.model_deployment import ModelDeployment
from steward.operator.config import OperatorConfig, config_from_env
from steward.operator.freshness import may_share_observations
from steward.operator.pacing import inputs_digest, is_urgent, next_pass
from steward.operator.pass_gate import PassGate
from steward.operator.reconciler import Reconciler

READY = {"phase": "Ready", "observedGeneration": 1}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Dashboard:
    """One Ray cluster's Serve API: every application RUNNING; counts list reads."""

    def __init__(self, apps: int) -> None:
        self.gets = 0
        self.apps = {
            f"ns.app{i}": {"status": "RUNNING", "deployed_app_config": {"name": f"ns.app{i}"}}
            for i in range(apps)
        }

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.gets += 1
        return httpx.Response(200, json={"applications": self.apps})


class Registry:
    """MLflow's REST API: every version exists and is READY; counts calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        params = request.url.params
        version = {"version": params.get("version", "1"), "source": "s3://m", "run_id": "r"}
        return httpx.Response(200, json={"model_version": version})


def deployment(i: int, status: dict[str, Any], generation: int = 1, **spec: Any) -> ModelDeployment:
    resource = md({"model": {"name": f"model-{i}", "version": "1"}, **spec}, status, generation)
    return resource.model_copy(update={"metadata": resource.metadata.model_copy(update={"name": f"md-{i}"})})


def reconciler_on(dashboards: dict[str, Dashboard], registry: Registry, clock: Clock) -> Reconciler:
    config = replace(CONFIG, allowed_ray_addresses=frozenset(dashboards), resync_interval_s=15.0)
    reconciler = Reconciler(config, ray_token="t")
    reconciler.registry = MlflowRegistry(
        "http://mlflow:5000", transport=httpx.MockTransport(registry), clock=clock
    )
    snapshots = ListSnapshots()
    for address, dashboard in dashboards.items():
        reconciler._serve_clients[address] = RayServeClient(
            address, transport=httpx.MockTransport(dashboard), snapshots=snapshots, clock=clock
        )
    return reconciler


def test_500_objects_at_rest_in_one_resync_make_one_list_read_per_cluster() -> None:
    clusters = {CONFIG.ray_address: Dashboard(1000), "http://ray-b:8265": Dashboard(10)}
    registry, clock = Registry(), Clock()
    reconciler = reconciler_on(clusters, registry, clock)
    objects = [
        deployment(i, READY, serving={"rayAddress": "http://ray-b:8265"} if i % 10 == 0 else {})
        for i in range(500)
    ]
    for resource in objects:  # one resync: every pass within the interval
        reconciler.observe(resource)
        clock.now += 14.0 / 500
    assert [d.gets for d in clusters.values()] == [1, 1]
    assert registry.calls == 500  # each pinned version asked once...
    clock.now += 2.0
    for resource in objects:  # ...the next resync: one read per cluster again, no MLflow call
        reconciler.observe(resource)
    assert [d.gets for d in clusters.values()] == [2, 2]
    assert registry.calls == 500
    clock.now += 300.0  # the pinned answers are old: asked again
    reconciler.observe(objects[1])
    assert registry.calls == 501


@pytest.mark.parametrize(
    ("status", "generation"),
    [
        ({"phase": "Progressing", "observedGeneration": 1}, 1),  # a deploy settling
        ({"phase": "Degraded", "observedGeneration": 1}, 1),  # a problem being retried
        (READY, 2),  # a spec change not acted on yet
        ({}, 1),  # a new object
    ],
)
def test_an_object_in_motion_reads_the_list_and_the_registry_afresh_on_every_pass(
    status: dict[str, Any], generation: int
) -> None:
    dashboard, registry, clock = Dashboard(3), Registry(), Clock()
    reconciler = reconciler_on({CONFIG.ray_address: dashboard}, registry, clock)
    resource = deployment(1, status, generation)
    assert not may_share_observations(resource)
    for _ in range(3):
        reconciler.observe(resource)
    assert (dashboard.gets, registry.calls) == (3, 3)


def test_a_fresh_read_serves_the_objects_at_rest_that_come_after_it() -> None:
    dashboard, registry, clock = Dashboard(3), Registry(), Clock()
    reconciler = reconciler_on({CONFIG.ray_address: dashboard}, registry, clock)
    reconciler.observe(deployment(1, {"phase": "Progressing", "observedGeneration": 1}))
    for i in range(2, 50):
        reconciler.observe(deployment(i, READY))
    assert dashboard.gets == 1


def test_a_rollout_is_never_at_rest() -> None:
    assert may_share_observations(deployment(1, READY))
    rollout = {
        "strategy": "canary",
        "canary": {"version": "2", "modelUri": "models:/m/2"},
        "fromVersion": "1",
        "state": "Paused",
        "startedAt": "2026-11-24T12:00:00Z",
        "stepStartedAt": "2026-11-24T12:00:00Z",
        "weight": 10,
    }
    assert not may_share_observations(deployment(1, {**READY, "rollout": rollout}))


def test_the_list_max_age_follows_the_resync_interval_unless_set() -> None:
    assert OperatorConfig(resync_interval_s=1.0).shared_list_max_age_s == 1.0
    assert config_from_env({}).shared_list_max_age_s == 15.0
    assert config_from_env({"STEWARD_RAY_LIST_MAX_AGE_S": "0"}).shared_list_max_age_s == 0.0
    assert config_from_env({"STEWARD_MAX_CONCURRENT_PASSES": "0"}).max_concurrent_passes == 1


# ------------------------------------------------------------------------------------------------ pacing
def body(generation: int = 1, status: dict[str, Any] | None = None, version: str = "1") -> dict[str, Any]:
    return {
        "metadata": {"name": "credit", "namespace": "risk", "generation": generation, "annotations": {}},
        "spec": {"model": {"name": "m", "version": version}},
        "status": status or {},
    }


def test_a_resumed_object_is_routine_and_a_change_or_a_new_object_is_urgent() -> None:
    resumed = body(status={"phase": "Ready", "observedGeneration": 1})
    assert not is_urgent(resumed, acted_on=None)  # found at the operator's start, spec handled
    assert is_urgent(body(), acted_on=None)  # created: no status yet
    assert is_urgent(body(generation=2, status={"observedGeneration": 1}), acted_on=None)
    assert not is_urgent(resumed, acted_on=inputs_digest(resumed))  # due by the clock
    changed = body(status={"phase": "Ready", "observedGeneration": 1}, version="2")
    assert is_urgent(changed, acted_on=inputs_digest(resumed))  # a person changed it (kmock: same generation)


def test_the_resync_is_spread_by_the_draw_and_a_rollouts_tick_is_not() -> None:
    config = OperatorConfig(resync_interval_s=15.0)
    resync = [
        next_pass(retry=False, requeue_after_s=None, attempts=0, config=config, draw=d).after_s
        for d in (0.0, 0.5, 1.0)
    ]
    assert resync == pytest.approx([13.5, 15.0, 16.5])
    assert next_pass(retry=False, requeue_after_s=2.0, attempts=3, config=config, draw=0.0).after_s == 2.0


# -------------------------------------------------------------------------------------------------- gate
async def test_a_changed_objects_pass_goes_ahead_of_routine_passes_waiting() -> None:
    gate, order = PassGate(1), []
    holding, release = asyncio.Event(), asyncio.Event()

    async def hold() -> None:
        async with gate.slot(urgent=False):
            holding.set()
            await release.wait()

    async def pass_(name: str, urgent: bool) -> None:
        async with gate.slot(urgent):
            order.append(name)

    holder = asyncio.create_task(hold())
    await holding.wait()
    waiting = [asyncio.create_task(pass_(f"routine-{i}", False)) for i in range(499)]
    await asyncio.sleep(0)
    waiting.append(asyncio.create_task(pass_("spec-change", True)))
    await asyncio.sleep(0)
    assert gate.waiting == 500
    release.set()
    await asyncio.gather(holder, *waiting)
    assert order[0] == "spec-change"
    assert order[1:] == [f"routine-{i}" for i in range(499)]  # the rest in the order they came
    assert gate.free == 1


async def test_the_gate_bounds_passes_at_once_and_skips_a_waiter_that_gave_up() -> None:
    gate, running, most = PassGate(3), 0, 0
    release = asyncio.Event()

    async def pass_() -> None:
        nonlocal running, most
        async with gate.slot(urgent=False):
            running += 1
            most = max(most, running)
            await release.wait()
            running -= 1

    tasks = [asyncio.create_task(pass_()) for _ in range(10)]
    await asyncio.sleep(0)
    assert (running, gate.waiting) == (3, 7)
    tasks[5].cancel()  # its object was deleted while it waited
    await asyncio.sleep(0)
    assert gate.waiting == 6
    release.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert most == 3 and gate.free == 3 and gate.waiting == 0
