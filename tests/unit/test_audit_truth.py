"""The trail says what happened: no record claims a change that Ray refused, and a start replayed after a
crash is one record. Drives the Reconciler itself, with a pretend Ray that can refuse applies."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from builders import CONFIG, resolved
from test_audit_trail import MemoryStore
from world import World, settled

from steward.adapters.errors import Unreachable
from steward.audit.records import AuditAction
from steward.audit.store import LocalFolderStore
from steward.audit.trail import AuditTrail
from steward.operator.actions import EventType
from steward.operator.observations import Observations
from steward.operator.reconciler import Reconciler

V4 = {"model": {"name": "credit-risk", "version": "4"}}


class PretendRay:
    def __init__(self, world: World) -> None:
        self.world = world
        self.refuse = False
        # Router weights as Ray actually applied them, one entry per successful apply.
        self.applied: list[dict[str, int]] = []

    def apply_applications(self, configs: list[dict[str, Any]], remove: Any, *_: Any, **__: Any) -> None:
        if self.refuse:
            raise Unreachable("connection refused")
        for name in remove:
            self.world.apps.pop(name, None)
        for config in configs:
            self.world.apps[config["name"]] = config
        router = self.world.router_config()
        if router is not None:
            self.applied.append(dict(router.weights))

    def applications(self) -> dict[str, Any]:
        return {}

    def delete_applications(self, names: Any, *_: Any) -> None:
        for name in names:
            self.world.apps.pop(name, None)

    def close(self) -> None:
        pass


class PretendRegistry:
    def set_version_tag(self, *_: Any) -> None:
        pass

    def close(self) -> None:
        pass


class Operator:
    """One operator process: a Reconciler over a trail in `folder`, observing `world`."""

    def __init__(self, folder: Path, world: World, ray: PretendRay, store: Any = None) -> None:
        self.world, self.ray = world, ray
        self.store = store or LocalFolderStore(folder)
        self.reconciler = Reconciler(CONFIG, ray_token="t", trail=AuditTrail(self.store))
        self.reconciler.registry = PretendRegistry()  # type: ignore[assignment]
        self.reconciler.serve_client = lambda address: ray  # type: ignore[assignment,method-assign,return-value]
        self.reconciler.observe = self.observe  # type: ignore[method-assign]

    def observe(self, md: Any) -> Observations:
        traffic = self.world.traffic() if md.status.rollout is not None else None
        return Observations(self.world.model, self.world.serve(), traffic)

    def step(self, seconds: float = 2.0, keep_status: bool = True) -> None:
        self.world.flow(seconds)
        self.world.now += timedelta(seconds=seconds)
        decision = self.reconciler.reconcile(self.world.resource, self.world.now, lambda *_: None)
        if keep_status:
            self.world.resource = self.world.resource.model_copy(update={"status": decision.status})

    def trail(self) -> list[Any]:
        return self.store.read("risk/credit")


def started_world() -> tuple[World, PretendRay]:
    world = settled()
    world.change_spec(V4, resolved("4"))
    return world, PretendRay(world)


def test_a_refused_apply_leaves_no_record_of_a_rollout_or_a_weight(tmp_path: Path) -> None:
    world, ray = started_world()
    operator = Operator(tmp_path, world, ray)
    operator.step()  # the rollout starts: version 4 deployed beside 3
    assert [r.action for r in operator.trail()] == [AuditAction.SPEC_CHANGED, AuditAction.ROLLOUT_STARTED]

    ray.refuse = True  # from now on, every change Ray is asked for fails
    for _ in range(60):
        operator.step()

    claimed = [r for r in operator.trail() if r.action in (AuditAction.ROLLOUT_STEP, AuditAction.PROMOTED)]
    assert claimed == [], [r.reason for r in claimed]
    assert all(weights.get("4", 0) == 0 for weights in ray.applied)  # indeed: no traffic ever moved


def test_a_rollout_start_replayed_after_a_crash_is_recorded_once(tmp_path: Path) -> None:
    world, ray = started_world()
    Operator(tmp_path, world, ray).step(keep_status=False)  # applied and recorded; died before status

    restarted = Operator(tmp_path, world, ray)  # a new process: nothing in memory
    restarted.step()
    restarted.step()

    started = [r for r in restarted.trail() if r.action == AuditAction.ROLLOUT_STARTED]
    assert len(started) == 1
    assert world.resource.status.rollout is not None


def test_the_finalizer_waits_until_the_deletion_record_is_stored(tmp_path: Path) -> None:
    world = settled()
    ray = PretendRay(world)
    store = MemoryStore()
    store.down = True
    requested = world.now
    events: list[tuple[Any, str, str]] = []

    held = Operator(tmp_path, world, ray, store).reconciler.finalize(
        world.resource, requested, requested + timedelta(seconds=5), lambda *e: events.append(e)
    )
    assert not held.release_finalizer and "audit store" in held.waiting_for

    store.down = False  # a restarted operator: nothing in memory, the record is decided again
    released = Operator(tmp_path, world, ray, store).reconciler.finalize(
        world.resource, requested, requested + timedelta(seconds=10), lambda *e: events.append(e)
    )
    assert released.release_finalizer
    assert [r.action for r in store.trails["risk/credit"]] == [AuditAction.DELETED]


def test_the_finalizer_gives_up_on_the_audit_store_after_the_deletion_timeout_and_says_what(
    tmp_path: Path,
) -> None:
    world = settled()
    store = MemoryStore()
    store.down = True
    events: list[tuple[Any, str, str]] = []
    late = world.now + timedelta(seconds=CONFIG.deletion_timeout_s + 1)

    released = Operator(tmp_path, world, PretendRay(world), store).reconciler.finalize(
        world.resource, world.now, late, lambda *e: events.append(e)
    )

    assert released.release_finalizer
    (lost,) = [e for e in events if e[1] == "AuditRecordsLost"]
    assert lost[0] == EventType.WARNING and "deleted (deleted:" in lost[2]
