"""A pass at rest may repeat its last decision instead of deciding again, only when deciding again could only
repeat it, whenever it runs. Pure: decide() driven by the pretend world; the reconciler's use of it is in
test_settled_reconcile."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import pytest
from builders import CONFIG, resolved
from world import World, settled

from steward.api.model_deployment import AuditTrailStatus
from steward.api.monitor_results import MonitorResult, MonitorVerdict
from steward.api.monitoring import MonitorKind
from steward.operator.actions import SubmitMonitorJob
from steward.operator.core import decide
from steward.operator.monitor_jobs import JobObservation, JobState
from steward.operator.observations import AuditBacklog, Observations, Problem
from steward.operator.settled import SettledPass, is_settled

MODEL = {"name": "credit-risk", "version": "3"}
MONITORS = {"monitors": [{"name": "drift", "kind": "drift", "window": {"duration": "1h", "every": "1h"}}]}
LATER = [
    timedelta(seconds=1),
    timedelta(minutes=5),
    timedelta(hours=1),
    timedelta(days=1),
    timedelta(days=40),
]


def at_rest(spec: dict[str, Any], monitoring_uri: str | None = None) -> tuple[World, Observations]:
    world = settled(spec)
    world.config = dataclasses.replace(CONFIG, monitoring_uri=monitoring_uri)
    world.run(10)  # whatever the first passes left to do (a monitor's first window, say)
    return world, Observations(model=world.model, serve=world.serve())


SPECS: dict[str, tuple[dict[str, Any], str | None]] = {
    "pinned": ({"model": MODEL}, None),
    "aliased": ({"model": {"name": "credit-risk", "alias": "champion"}}, None),
    "rollout steps": ({"model": MODEL, "rollout": {"steps": [{"setWeight": 10}, {"pause": {}}]}}, None),
    "retraining": ({"model": MODEL, "retraining": {"entrypoint": "python -m train", "cooldown": "1h"}}, None),
    "monitoring, no store": ({"model": MODEL, "monitoring": MONITORS}, None),
    "monitors": ({"model": MODEL, "monitoring": MONITORS}, "/var/steward/monitoring"),
}


@pytest.mark.parametrize("name", SPECS)
def test_a_settled_decision_is_the_one_any_later_pass_would_make(name: str) -> None:
    spec, store = SPECS[name]
    world, obs = at_rest(spec, store)
    decision = decide(world.resource, obs, world.config, world.now)
    if not is_settled(world.resource, obs, decision):
        assert name == "monitors"  # a schedule asks to be called back: never settled
        assert decision.requeue_after_s is not None
        return
    for later in LATER:
        assert decide(world.resource, obs, world.config, world.now + later) == decision, later


def test_an_object_with_a_monitor_is_never_settled_and_its_next_window_is_submitted_when_due() -> None:
    spec, store = SPECS["monitors"]
    world, _ = at_rest(spec, store)
    monitoring = world.resource.status.monitoring
    assert monitoring is not None and len(monitoring.jobs) == 1  # the first window's job, in flight
    [job] = monitoring.jobs
    result = MonitorResult(
        monitor="drift",
        kind=MonitorKind.DRIFT,
        deployment="risk/credit",
        version="3",
        window_start=job.window_start,
        window_end=job.window_end,
        rows=5000,
        verdict=MonitorVerdict.PASS,
    )
    world.step(60, monitor_jobs={job.submission_id: JobObservation(JobState.SUCCEEDED, result)})
    submitted = []
    for _ in range(90):  # an hour and a half of passes at rest: the next window ends on the way
        decision = world.step(60)
        obs = Observations(model=world.model, serve=world.serve())
        assert not is_settled(world.resource, obs, decision)
        submitted += [a for a in decision.actions if isinstance(a, SubmitMonitorJob)]
    assert len(submitted) == 1 and submitted[0].submission_id != job.submission_id


def plain() -> tuple[World, Observations]:
    return at_rest({"model": MODEL})


def test_a_plain_object_at_rest_is_settled() -> None:
    world, obs = plain()
    assert is_settled(world.resource, obs, decide(world.resource, obs, CONFIG, world.now))


@pytest.mark.parametrize(
    "unsettle",
    [
        pytest.param(lambda w, o, d: (w.resource, o, dataclasses.replace(d, retry_reason="x")), id="retry"),
        pytest.param(
            lambda w, o, d: (w.resource, o, dataclasses.replace(d, requeue_after_s=5.0)), id="requeue"
        ),
        pytest.param(
            lambda w, o, d: (
                w.resource,
                o,
                dataclasses.replace(d, actions=[SubmitMonitorJob.__new__(SubmitMonitorJob)]),
            ),
            id="actions",
        ),
        pytest.param(
            lambda w, o, d: (
                w.resource,
                dataclasses.replace(o, audit=AuditBacklog(1, frozenset(), "down")),
                d,
            ),
            id="audit pending",
        ),
        pytest.param(
            lambda w, o, d: (w.resource.model_copy(update={"status_dropped": ("status.x",)}), o, d),
            id="status partly unreadable",
        ),
        pytest.param(
            lambda w, o, d: (
                w.resource,
                o,
                dataclasses.replace(d, status=d.status.model_copy(update={"ready_replicas": 7})),
            ),
            id="status to write",
        ),
        pytest.param(
            lambda w, o, d: (
                w.resource.model_copy(update={"status": d.status.model_copy(update={"phase": "Degraded"})}),
                o,
                d,
            ),
            id="not at rest",
        ),
    ],
)
def test_anything_to_do_or_to_come_back_for_is_not_settled(unsettle: Any) -> None:
    world, obs = plain()
    decision = decide(world.resource, obs, CONFIG, world.now)
    assert not is_settled(*unsettle(world, obs, decision))


def test_the_memory_repeats_only_for_the_same_body_and_the_same_observations() -> None:
    world, obs = plain()
    decision = decide(world.resource, obs, CONFIG, world.now)
    memory = SettledPass()
    audit = lambda: decision.status.audit  # noqa: E731
    memory.remember(world.resource, obs, decision)
    assert memory.again(world.resource, obs, audit) is decision
    assert memory.again(world.resource, dataclasses.replace(obs), audit) is decision  # equal, not identical
    # Another parse of the same body is another object: decided again (a missed repeat only costs a pass).
    assert memory.again(world.resource.model_copy(), obs, audit) is None
    moved = dataclasses.replace(obs, model=resolved("4"))
    assert memory.again(world.resource, moved, audit) is None
    gone = dataclasses.replace(
        obs, serve=Problem(decision.status.conditions[0].reason, "gone", temporary=True)
    )
    assert memory.again(world.resource, gone, audit) is None
    # Someone else appended to the trail: its sequence number in status would move.
    assert memory.again(world.resource, obs, lambda: AuditTrailStatus(recorded_seq=9)) is None
    memory.remember(world.resource, obs, dataclasses.replace(decision, retry_reason="x"))
    assert memory.again(world.resource, obs, audit) is None  # an unsettled decision is forgotten
