"""A stored status that cannot be read whole: salvage what reads, and never move traffic on what does not."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from builders import resolved
from world import World, settled

from steward.api.conditions import ConditionStatus, ConditionType, Reason
from steward.api.rollout import ROLLOUT_COMMAND_ANNOTATION, RolloutState
from steward.operator.actions import ApplyServeApplications, DeleteServeApplication, EventType, PostEvent
from steward.operator.observations import Problem, ServeApps
from steward.operator.resource import parse_resource, read_status
from steward.operator.status import find

V4 = {"model": {"name": "credit-risk", "version": "4"}}
V5 = {"model": {"name": "credit-risk", "version": "5"}}
T = "2026-11-23T12:00:00Z"
CONDITION = {"type": "Ready", "status": "True", "reason": "Running", "lastTransitionTime": T}
RECORD = {
    "fromVersion": "2",
    "toVersion": "3",
    "strategy": "canary",
    "startedAt": T,
    "finishedAt": T,
    "outcome": "Promoted",
    "reason": "all steps passed",
}
ROLLOUT = {
    "strategy": "canary",
    "canary": {"version": "4", "modelUri": "models:/credit-risk/4"},
    "fromVersion": "3",
    "state": "Progressing",
    "startedAt": T,
    "stepStartedAt": T,
    "weight": 10,
}
WINDOW = {
    "startedAt": T,
    "endedAt": T,
    "verdict": "Pass",
    "summary": "error rate 0% over 60 requests",
    "canary": {"requests": 60},
    "stable": {"requests": 540},
}
STABLE = {"version": "3", "modelUri": "models:/credit-risk/3"}


def status(**fields: Any) -> dict[str, Any]:
    return {"phase": "Ready", "stable": STABLE, "conditions": [CONDITION], **fields}


SALVAGE = [
    # (case, stored status, unreadable mentions, dropped mentions, check of what was kept)
    (
        "fields from a newer operator are ignored",
        status(
            newField=1,
            stable={**STABLE, "digest": "sha256:x"},
            rollout={**ROLLOUT, "newThing": {"a": 1}},
            conditions=[{**CONDITION, "severity": "Info"}],
        ),
        None,
        [],
        lambda s: s.stable.version == "3" and s.rollout.weight == 10 and len(s.conditions) == 1,
    ),
    (
        "a condition with an unknown reason is dropped alone",
        status(conditions=[{**CONDITION, "reason": "BrandNew"}, {**CONDITION, "type": "Degraded"}]),
        None,
        ["status.conditions.0.reason"],
        lambda s: [c.type.value for c in s.conditions] == ["Degraded"] and s.stable.version == "3",
    ),
    (
        "a history record with an unknown outcome is dropped alone",
        status(rolloutHistory=[{**RECORD, "outcome": "Quarantined"}, RECORD]),
        None,
        ["status.rolloutHistory.0.outcome"],
        lambda s: len(s.rollout_history) == 1 and s.rollout_history[0].to_version == "3",
    ),
    (
        "an analysis window with an unknown verdict is dropped, the rollout kept",
        status(rollout={**ROLLOUT, "windows": [{**WINDOW, "verdict": "Maybe"}, WINDOW]}),
        None,
        ["status.rollout.windows.0.verdict"],
        lambda s: s.rollout is not None and len(s.rollout.windows) == 1,
    ),
    (
        "an unreadable audit counter keeps the buffered records",
        status(audit={"recordedSeq": "many", "buffered": ["{}"]}),
        None,
        ["status.audit.recordedSeq"],
        lambda s: s.audit.buffered == ["{}"] and s.audit.recorded_seq == 0,
    ),
    (
        "a corrupt stable version",
        status(stable="v3"),
        "status.stable",
        [],
        lambda s: s.stable is None and len(s.conditions) == 1,
    ),
    (
        "a rollout state this operator does not know",
        status(rollout={**ROLLOUT, "state": "Canarying"}),
        "status.rollout.state",
        [],
        lambda s: s.rollout is None and s.stable.version == "3",
    ),
    ("status is not an object", "garbage", "not an object", [], lambda s: s.stable is None),
    ("no status yet", None, None, [], lambda s: s.stable is None and s.rollout is None),
]


@pytest.mark.parametrize(
    ("case", "raw", "unreadable", "dropped", "kept"), SALVAGE, ids=[c[0] for c in SALVAGE]
)
def test_read_status_salvages_field_by_field(
    case: str, raw: Any, unreadable: str | None, dropped: list[str], kept: Callable[[Any], bool]
) -> None:
    read = read_status(raw)
    if unreadable is None:
        assert read.unreadable is None
    else:
        assert read.unreadable is not None and unreadable in read.unreadable
    assert len(read.dropped) == len(dropped)
    assert all(d.startswith(want) for d, want in zip(read.dropped, dropped, strict=True))
    assert kept(read.status)


def reread(world: World, corrupt: Callable[[dict[str, Any]], None]) -> None:
    """The operator reads its object back from the API server, with a status it cannot fully parse."""
    body = world.resource.model_dump(mode="json", by_alias=True)
    corrupt(body["status"])
    world.resource = parse_resource(body)


def changes(world: World) -> list[Any]:
    return [
        a
        for d in world.decisions
        for a in d.actions
        if isinstance(a, (ApplyServeApplications, DeleteServeApplication))
    ]


def degraded(world: World) -> tuple[str, str]:
    found = find(world.resource.status.conditions, ConditionType.DEGRADED)
    assert found is not None
    return found.status.value, found.reason.value


def warnings(world: World) -> list[str]:
    return [e.reason for e in world.events() if e.type == EventType.WARNING]


def stable_serves_spec_names_4() -> World:
    world = settled()
    world.change_spec(V4, resolved("4"))
    return world


def canary_at_10() -> World:
    world = settled()
    world.change_spec(V4, resolved("4"))
    world.until(lambda w: w.rollout is not None and w.rollout.weight == 10, limit_s=30)
    world.decisions.clear()
    return world


def corrupt_stable(s: dict[str, Any]) -> None:
    s["stable"] = {"version": 3}


def corrupt_rollout(s: dict[str, Any]) -> None:
    s["rollout"]["state"] = "Canarying"


HOLD = [
    # (case, world, corruption, observed serve, spec, stable after, rollout state after, degraded after)
    (
        "stable unreadable, Ray serves stable only: stable recovered",
        stable_serves_spec_names_4,
        corrupt_stable,
        None,
        None,
        "3",
        None,
        ("False", Reason.STATUS_RECOVERED.value),
    ),
    (
        "rollout unreadable mid-canary: recovered paused at the served weight",
        canary_at_10,
        corrupt_rollout,
        None,
        None,
        "3",
        RolloutState.PAUSED,
        ("False", Reason.STATUS_RECOVERED.value),
    ),
    (
        "rollout unreadable, spec moved to a version Ray does not serve: held",
        canary_at_10,
        corrupt_rollout,
        None,
        V5,
        "3",
        None,
        ("True", Reason.STATUS_UNREADABLE.value),
    ),
    (
        "stable unreadable and Ray unreachable: held, retried",
        stable_serves_spec_names_4,
        corrupt_stable,
        Problem(Reason.RAY_UNREACHABLE, "connection refused", temporary=True),
        None,
        None,
        None,
        ("True", Reason.STATUS_UNREADABLE.value),
    ),
    (
        "stable unreadable, nothing on Ray: recovered as a fresh deployment",
        stable_serves_spec_names_4,
        corrupt_stable,
        ServeApps(),
        None,
        None,
        None,
        ("False", Reason.STATUS_RECOVERED.value),
    ),
]


@pytest.mark.parametrize(
    ("case", "build", "corrupt", "serve", "spec", "stable", "state", "degraded_after"),
    HOLD,
    ids=[c[0] for c in HOLD],
)
def test_an_unreadable_status_moves_no_traffic(
    case: str,
    build: Callable[[], World],
    corrupt: Callable[[dict[str, Any]], None],
    serve: Any,
    spec: dict[str, Any] | None,
    stable: str | None,
    state: RolloutState | None,
    degraded_after: tuple[str, str],
) -> None:
    world = build()
    if spec is not None:
        world.change_spec(spec, resolved("5"))
    before = world.router_config()
    reread(world, corrupt)
    decision = world.step(**({"serve": serve} if serve is not None else {}))

    assert changes(world) == [], "an unreadable status moved traffic or removed an application"
    assert world.router_config() == before
    assert world.stable_version == stable
    assert (world.rollout.state if world.rollout else None) == state
    assert degraded(world) == degraded_after
    assert warnings(world) == [degraded_after[1]]
    assert decision.retry == isinstance(serve, Problem)


def test_a_held_status_stays_held_without_repeating_its_event() -> None:
    world = canary_at_10()
    world.change_spec(V5, resolved("5"))
    reread(world, corrupt_rollout)
    world.step()
    world.restart_operator()  # what was written back is all that is left
    world.step()
    world.step()
    assert changes(world) == []
    assert degraded(world) == ("True", Reason.STATUS_UNREADABLE.value)
    assert warnings(world) == [Reason.STATUS_UNREADABLE.value]
    message = find(world.resource.status.conditions, ConditionType.DEGRADED)
    assert message is not None and "status.rollout.state" in message.message
    assert "name one of the served versions" in message.message


def test_a_held_status_resumes_once_the_spec_names_a_served_version() -> None:
    world = canary_at_10()
    world.change_spec(V5, resolved("5"))
    reread(world, corrupt_rollout)
    world.step()
    world.change_spec(V4, resolved("4"))
    world.step()
    assert changes(world) == []
    assert world.rollout.state == RolloutState.PAUSED and world.rollout.weight == 10


def test_a_recovered_rollout_moves_only_when_a_person_resumes_it() -> None:
    world = canary_at_10()
    world.annotate(ROLLOUT_COMMAND_ANNOTATION, json.dumps({"id": "old", "command": "abort"}))
    reread(world, corrupt_rollout)
    world.run(20)
    assert changes(world) == []  # the abort written before the status was lost is not replayed
    assert world.rollout.state == RolloutState.PAUSED
    assert world.rollout.step_index == 1  # resumes after the 10% step it had reached
    world.annotate(ROLLOUT_COMMAND_ANNOTATION, json.dumps({"id": "c2", "command": "resume"}))
    world.run(4)
    assert world.rollout.state == RolloutState.PROGRESSING


def test_after_recovery_a_new_version_starts_as_a_canary_not_all_at_once() -> None:
    world = stable_serves_spec_names_4()
    reread(world, corrupt_stable)
    world.step()
    world.step()
    assert world.rollout is not None and world.rollout.state == RolloutState.WARMING
    config = world.router_config()
    assert config is not None and config.weights == {"3": 100, "4": 0}


def test_a_partly_unreadable_status_is_said_once_and_rebuilt() -> None:
    world = settled()

    def corrupt(s: dict[str, Any]) -> None:
        s["conditions"][0]["reason"] = "FromTheFuture"

    reread(world, corrupt)
    world.step()
    world.step()
    assert changes(world) == []
    assert [e for e in world.events() if isinstance(e, PostEvent) and e.reason == "StatusPartlyUnreadable"]
    assert warnings(world) == ["StatusPartlyUnreadable"]
    assert find(world.resource.status.conditions, ConditionType.READY) is not None
    assert world.resource.status.conditions[0].status == ConditionStatus.TRUE
