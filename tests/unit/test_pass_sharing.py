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

from steward.adapters.mlflow_registry import MlflowRegistry, VersionNotFound
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


async def test_the_object_loop_sends_a_changed_objects_pass_through_the_gate_first() -> None:
    """run_pass itself asks the gate, urgent when the inputs changed since its last pass."""
    from steward.operator.object_loop import ObjectState, PassResult, run_pass
    from steward.operator.pacing import Pace

    config = OperatorConfig(resync_interval_s=15.0)
    gate, order = PassGate(1), []
    release = asyncio.Event()

    class Api:
        async def read(self) -> dict[str, Any]:
            raise AssertionError("caught-up bodies are used as they are")

        async def write_status(self, status: Any) -> Any:
            return status

    def work_for(name: str) -> Any:
        async def work(snapshot: dict[str, Any], changed: bool) -> PassResult:
            order.append(name)
            return PassResult(dict(snapshot.get("status") or {}), False, None)

        return work

    async def hold() -> None:
        async with gate.slot(urgent=False):
            await release.wait()

    resting, changed_body = body(status=READY), body(status=READY, version="2")
    states = {"routine": ObjectState(), "changed": ObjectState()}
    for state in states.values():  # both passed last on the resting inputs
        state.pacer.passed(inputs_digest(resting), Pace(15.0, 0), now=0.0)
    holder = asyncio.create_task(hold())
    await asyncio.sleep(0)
    routine = asyncio.create_task(
        run_pass(states["routine"], resting, Api(), work_for("routine"), config, 20.0, 0.5, gate)
    )
    await asyncio.sleep(0)
    changed = asyncio.create_task(
        run_pass(states["changed"], changed_body, Api(), work_for("changed"), config, 20.0, 0.5, gate)
    )
    await asyncio.sleep(0)
    assert gate.waiting == 2 and order == []
    release.set()
    await asyncio.gather(holder, routine, changed)
    assert order == ["changed", "routine"]


def test_a_pending_retraining_command_or_a_running_retraining_is_not_at_rest() -> None:
    commanded = deployment(1, READY)
    annotations = {"steward.io/retraining-command": '{"id":"r1","command":"run"}'}
    commanded = commanded.model_copy(
        update={"metadata": commanded.metadata.model_copy(update={"annotations": annotations})}
    )
    assert not may_share_observations(commanded)
    run = {
        "submissionId": "steward-retrain-1",
        "trigger": {"kind": "manual", "cause": "c1", "reason": "asked"},
        "requestedAt": "2026-11-24T12:00:00Z",
        "resultUri": "s3://results/1.json",
    }
    retraining = deployment(1, {**READY, "retraining": {"current": run}})
    assert retraining.status.retraining is not None and retraining.status.retraining.current is not None
    assert not may_share_observations(retraining)


def test_deletion_and_other_callers_read_the_list_afresh_whatever_the_env(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """STEWARD_RAY_LIST_MAX_AGE_S is the operator's age for objects at rest, never its clients' default:
    a deletion deciding which applications are ours from a stale list could leave one behind."""
    monkeypatch.setenv("STEWARD_RAY_LIST_MAX_AGE_S", "60")
    config = replace(CONFIG, allowed_ray_addresses=frozenset({CONFIG.ray_address}))
    reconciler = Reconciler(config, ray_token="t")
    client = reconciler.serve_client(CONFIG.ray_address)
    assert client.list_max_age_s == 0.0
    reconciler.close()


# ------------------------------------------------------------------------------------- pinned versions
class Versions:
    """MLflow: versions 1..9 of every model READY, alias champion -> 3; deleted ones answer 404."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.deleted: set[str] = set()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/api/2.0/mlflow")
        params = request.url.params
        self.calls.append(f"{path}?{params}")
        if path == "/registered-models/get":
            return httpx.Response(200, json={"registered_model": {"name": params["name"]}})
        if path == "/model-versions/search":
            return httpx.Response(200, json={"model_versions": []})
        version = "3" if path == "/registered-models/alias" else params["version"]
        if version in self.deleted:
            return httpx.Response(404, json={"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "gone"})
        return httpx.Response(
            200, json={"model_version": {"version": version, "source": f"s3://m/{version}"}}
        )


def pinned_registry(answers: Versions, clock: Clock) -> MlflowRegistry:
    return MlflowRegistry("http://mlflow:5000", transport=httpx.MockTransport(answers), clock=clock)


def test_a_pinned_version_is_answered_from_memory_only_within_its_max_age() -> None:
    answers, clock = Versions(), Clock()
    registry = pinned_registry(answers, clock)
    assert registry.resolve("m", "1", max_age_s=300).version == "1"
    clock.now += 299.0
    assert registry.resolve("m", "1", max_age_s=300).version == "1"
    assert len(answers.calls) == 1
    assert registry.resolve("m", "1", max_age_s=0).version == "1"  # in motion: always asked
    assert len(answers.calls) == 2
    clock.now += 300.0
    registry.resolve("m", "1", max_age_s=300)  # older than the max age: asked again
    assert len(answers.calls) == 3


def test_an_alias_is_never_answered_from_memory() -> None:
    answers, clock = Versions(), Clock()
    registry = pinned_registry(answers, clock)
    for _ in range(3):
        assert registry.resolve("m", alias="champion", max_age_s=300).version == "3"
    assert len(answers.calls) == 3
    assert registry.resolve("m", "3", max_age_s=300).version == "3"  # an alias's answer pins nothing
    assert len(answers.calls) == 4


def test_the_pinned_memory_is_bounded_and_forgets_the_least_recently_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import steward.adapters.mlflow_registry as mlflow_registry

    monkeypatch.setattr(mlflow_registry, "PINNED_CACHE_SIZE", 2)
    answers, clock = Versions(), Clock()
    registry = pinned_registry(answers, clock)
    for version in ("1", "2", "3"):
        registry.resolve("m", version, max_age_s=300)
    assert len(registry._pinned) == 2
    registry.resolve("m", "3", max_age_s=300)
    registry.resolve("m", "2", max_age_s=300)
    assert len(answers.calls) == 3  # the two newest remembered
    registry.resolve("m", "1", max_age_s=300)
    assert len(answers.calls) == 4  # the oldest was forgotten


def test_a_version_found_deleted_is_forgotten_at_once() -> None:
    answers, clock = Versions(), Clock()
    registry = pinned_registry(answers, clock)
    registry.resolve("m", "1", max_age_s=300)
    answers.deleted.add("1")
    with pytest.raises(VersionNotFound):
        registry.resolve("m", "1", max_age_s=0)  # an object in motion sees the deletion...
    with pytest.raises(VersionNotFound):
        registry.resolve("m", "1", max_age_s=300)  # ...and no object at rest is answered from memory


def test_kopfs_line_for_every_wake_is_dropped_and_nothing_else() -> None:
    import logging

    from steward.operator import handlers

    def record(message: str) -> logging.LogRecord:
        return logging.LogRecord("kopf.objects", logging.INFO, __file__, 1, message, None, None)

    kopf_objects = logging.getLogger("kopf.objects")
    assert not kopf_objects.filter(record("Handler 'wake' succeeded."))
    assert kopf_objects.filter(record("Handler 'cleanup' succeeded."))
    assert kopf_objects.filter(record("Handler 'wake' failed with an exception. Will retry."))
    assert handlers._not_a_wake in kopf_objects.filters
