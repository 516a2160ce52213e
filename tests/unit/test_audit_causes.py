"""Every real transition is recorded once: replays are skipped, repeats of earlier transitions are not.

A replay is the same pass decided again from the same stored status (the trail was written, the status was
not: a crash, a lost patch). A repeat is a new transition that looks like an old one: the same name
re-created, an alias moving back to a version it named before.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from builders import CONFIG, NOTHING, T0, desired, md, resolved, serving
from test_audit_trail import MemoryStore

from steward.api.conditions import Reason
from steward.api.model_deployment import ModelDeployment
from steward.audit.trail import AuditTrail
from steward.operator.actions import RecordAudit
from steward.operator.core import decide, decide_deletion
from steward.operator.observations import Observations, Problem

ALIASED = {"model": {"name": "credit-risk", "alias": "champion"}}


def with_uid(resource: ModelDeployment, uid: str) -> ModelDeployment:
    return resource.model_copy(update={"metadata": resource.metadata.model_copy(update={"uid": uid})})


def run(trail: AuditTrail, resource: ModelDeployment, obs: Observations, seconds: int, keep: bool):
    """One reconcile pass; `keep=False` loses its status write, so the next pass replays it."""
    decision = decide(resource, obs, CONFIG, T0 + timedelta(seconds=seconds))
    trail.record(a.draft for a in decision.actions if isinstance(a, RecordAudit))
    return resource.model_copy(update={"status": decision.status}) if keep else resource


def alias_life(trail: AuditTrail, uid: str, passes: list[tuple[str, bool]]) -> None:
    """Stable serves version 3 under @champion; then each pass sees the alias name a version."""
    resource = with_uid(md(ALIASED, {"stable": {"version": "3", "modelUri": "models:/credit-risk/3"}}), uid)
    for i, (version, keep) in enumerate(passes):
        # Ray unreachable: only what the registry says matters here, and no rollout muddles the trail.
        resource = run(trail, resource, Observations(resolved(version), _ray_down()), i, keep)


def _ray_down() -> Problem:
    return Problem(Reason.RAY_UNREACHABLE, "down", temporary=True)


def moves(store: MemoryStore) -> list[tuple[str | None, str | None]]:
    return [
        (r.model.from_version, r.model.to_version)
        for r in store.trails.get("risk/credit", [])
        if r.action == "alias-moved" and r.model is not None
    ]


@pytest.mark.parametrize(
    ("passes", "recorded"),
    [
        pytest.param([("3", True), ("3", True)], [], id="no move records nothing"),
        pytest.param([("4", True), ("3", True)], [("3", "4"), ("4", "3")], id="3 -> 4 -> 3 is two moves"),
        pytest.param(
            [("4", True), ("3", True), ("4", True)],
            [("3", "4"), ("4", "3"), ("3", "4")],
            id="3 -> 4 -> 3 -> 4 is three moves",
        ),
        pytest.param(
            [("4", False), ("4", False), ("4", True), ("4", True), ("3", False), ("3", True)],
            [("3", "4"), ("4", "3")],
            id="replayed passes add nothing",
        ),
    ],
)
def test_each_alias_move_is_recorded_once(passes, recorded):
    store = MemoryStore()
    alias_life(AuditTrail(store), "uid-1", passes)
    assert moves(store) == recorded


def life(trail: AuditTrail, uid: str, start_s: int) -> ModelDeployment:
    """Create, deploy, change the spec; every pass replayed once (its status write lost the first time)."""
    resource = with_uid(md(), uid)
    planned = desired(resource, resolved())
    observed = [
        Observations(resolved(), NOTHING),
        Observations(resolved(), serving("RUNNING", planned)),
    ]
    for i, obs in enumerate(observed):
        run(trail, resource, obs, start_s + i, keep=False)
        resource = run(trail, resource, obs, start_s + i, keep=True)
    changed = md(
        {"model": {"name": "credit-risk", "version": "3"}, "serving": {"replicas": {"min": 2, "max": 2}}},
        resource.status.model_dump(by_alias=True),
        generation=2,
    )
    changed = with_uid(changed, uid)
    obs = Observations(resolved(), _ray_down())
    run(trail, changed, obs, start_s + 5, keep=False)
    return run(trail, changed, obs, start_s + 5, keep=True)


@pytest.mark.parametrize(
    ("second_uid", "expected"),
    [
        pytest.param(
            "uid-2",
            ["created", "deployed", "spec-changed", "deleted"] * 2,
            id="re-created under the same name: a new life, all recorded",
        ),
        pytest.param(
            "uid-1",
            ["created", "deployed", "spec-changed", "deleted"],
            id="the same object replayed: nothing twice",
        ),
    ],
)
def test_a_re_created_resource_is_recorded_again(second_uid, expected):
    store = MemoryStore()
    trail = AuditTrail(store)
    for uid, start_s in (("uid-1", 0), (second_uid, 100)):
        resource = life(trail, uid, start_s)
        gone = decide_deletion(resource, None, T0 + timedelta(seconds=50), CONFIG, T0)
        trail.record(a.draft for a in gone.actions if isinstance(a, RecordAudit))
    assert [r.action.value for r in store.trails["risk/credit"]] == expected
