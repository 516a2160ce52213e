"""No audit record is ever dropped: at the status buffer's bound the operator makes no change, and a trail the
store refuses is a condition and one Event that say what to do. Drives the Reconciler with a pretend Ray."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from builders import CONFIG, resolved
from test_audit_trail import MemoryStore
from test_audit_truth import V4, Operator, started_world
from world import World, settled

from steward.api.conditions import ConditionStatus, ConditionType, Reason
from steward.api.model_deployment import MAX_BUFFERED_AUDIT_RECORDS, AuditTrailStatus
from steward.audit.records import AuditAction, DeploymentRef, RecordDraft
from steward.audit.store import LocalFolderStore, record_name
from steward.operator.actions import ApplyServeApplications, EventType, RecordAudit
from steward.operator.core import decide
from steward.operator.observations import AuditBacklog, Observations
from steward.operator.status import find

CAP = MAX_BUFFERED_AUDIT_RECORDS


def earlier(n: int) -> list[RecordDraft]:
    """Records of earlier passes that the store never took."""
    ref = DeploymentRef(namespace="risk", name="credit")
    return [
        RecordDraft(deployment=ref, action=AuditAction.ROLLOUT_STEP, reason=f"step {i}", cause=f"earlier-{i}")
        for i in range(n)
    ]


def buffered_in_status(world: World, drafts: list[RecordDraft]) -> None:
    """As a restarted operator finds them: in status.audit, and nowhere else."""
    audit = AuditTrailStatus(pending=len(drafts), buffered=[d.model_dump_json() for d in drafts])
    world.resource = world.resource.model_copy(
        update={"status": world.resource.status.model_copy(update={"audit": audit})}
    )


def degraded(world: World) -> Any:
    return find(world.resource.status.conditions, ConditionType.DEGRADED)


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[EventType, str, str]] = []

    def __call__(self, *event: Any) -> None:
        self.events.append(event)  # type: ignore[arg-type]

    def warnings(self, reason: str) -> list[str]:
        return [m for t, r, m in self.events if t == EventType.WARNING and r == reason]


def step(operator: Operator, events: Recorder) -> Any:
    """One pass, as the object loop runs it: status written back, Events posted."""
    world = operator.world
    world.flow(2.0)
    world.now += timedelta(seconds=2)
    decision = operator.reconciler.reconcile(world.resource, world.now, events)
    world.resource = world.resource.model_copy(update={"status": decision.status})
    return decision


def test_a_full_buffer_stops_every_change_and_says_why_then_the_store_takes_everything_in_order(
    tmp_path: Path,
) -> None:
    world, ray = started_world()  # the spec now names version 4: a rollout would start
    store = MemoryStore()
    store.down = True
    buffered_in_status(world, earlier(CAP))
    before = world.resource.status
    operator, events = Operator(tmp_path, world, ray, store), Recorder()

    for _ in range(3):
        decision = step(operator, events)

    assert ray.applied == [] and "risk.credit.v4" not in world.apps  # no change on Ray
    assert world.resource.status.audit is not None
    assert world.resource.status.audit.pending == CAP
    assert len(world.resource.status.audit.buffered) == CAP  # every record still there for a restart
    assert world.resource.status.observed_generation == before.observed_generation
    assert world.resource.status.rollout is None and world.resource.status.stable == before.stable
    condition = degraded(world)
    assert (condition.status, condition.reason) == (ConditionStatus.TRUE, Reason.AUDIT_BLOCKED)
    assert condition.message.startswith(f"{CAP} audit records could not be stored: store down;")
    assert "no change is made until the audit store takes them" in condition.message
    assert len(events.warnings("AuditBlocked")) == 1  # on the transition, not every pass
    assert decision.retry

    store.down = False
    for _ in range(2):
        step(operator, events)

    stored = store.trails["risk/credit"]
    assert [r.cause for r in stored[:CAP]] == [f"earlier-{i}" for i in range(CAP)]
    # then what the held-back pass and its successors did, after the records of earlier passes
    assert [r.action for r in stored[CAP : CAP + 2]] == [
        AuditAction.SPEC_CHANGED,
        AuditAction.ROLLOUT_STARTED,
    ]
    assert [r.seq for r in stored] == list(range(1, len(stored) + 1))
    assert world.resource.status.rollout is not None  # the change it held back, made now
    assert degraded(world).reason not in (Reason.AUDIT_BLOCKED, Reason.AUDIT_PENDING)
    assert [r for t, r, _ in events.events if r == "AuditCaughtUp"] == ["AuditCaughtUp"]


def test_a_long_outage_never_takes_the_buffer_past_its_bound(tmp_path: Path) -> None:
    world, ray = started_world()
    store = MemoryStore()
    store.down = True
    buffered_in_status(world, earlier(CAP - 3))  # room for less than a rollout's worth of records
    operator, events = Operator(tmp_path, world, ray, store), Recorder()

    seen = []
    for _ in range(150):  # a whole rollout's worth of steps and windows
        step(operator, events)
        assert world.resource.status.audit is not None
        seen.append(world.resource.status.audit.pending)

    assert max(seen) <= CAP
    assert degraded(world).reason == Reason.AUDIT_BLOCKED


@pytest.mark.parametrize(
    ("pending", "replays", "held"),
    [
        (CAP - 2, 0, False),  # the pass's two records fill the buffer exactly
        (CAP - 1, 0, True),  # the second would be one too many: no change, not one change and a lost record
        (CAP - 1, 1, False),  # the spec change is already buffered: a replay takes no room
        (0, 0, False),  # the store took everything: nothing to hold back for
    ],
)
def test_a_pass_is_held_back_when_its_own_records_would_overflow_the_buffer(
    pending: int, replays: int, held: bool
) -> None:
    world = settled()
    world.change_spec(V4, resolved("4"))  # this pass: spec-changed and rollout-started
    causes = {("", f"earlier-{i}") for i in range(pending - replays)}
    if replays:
        causes.add((world.resource.metadata.uid, "spec:generation-2"))
    backlog = AuditBacklog(pending=pending, causes=frozenset(causes), error="store down")
    decision = decide(
        world.resource, Observations(world.model, world.serve(), audit=backlog), CONFIG, world.now
    )

    applies = [a for a in decision.actions if isinstance(a, ApplyServeApplications)]
    records = [a for a in decision.actions if isinstance(a, RecordAudit)]
    assert (not applies and not records) == held
    reason = find(decision.status.conditions, ConditionType.DEGRADED)
    assert (reason is not None and reason.reason == Reason.AUDIT_BLOCKED) == held


def test_an_empty_record_file_is_a_condition_and_one_event_that_name_it_and_the_fix(tmp_path: Path) -> None:
    world, ray = started_world()
    folder = tmp_path / "risk" / "credit"
    folder.mkdir(parents=True)
    empty = folder / record_name(1)
    empty.touch()  # left by a crash of an operator that wrote records in place
    operator, events = Operator(tmp_path, world, ray, LocalFolderStore(tmp_path)), Recorder()

    for _ in range(4):
        step(operator, events)

    condition = degraded(world)
    assert (condition.status, condition.reason) == (ConditionStatus.TRUE, Reason.AUDIT_PENDING)
    assert str(empty) in condition.message and "is empty" in condition.message
    (warning,) = events.warnings("AuditPending")
    assert str(empty) in warning
    assert "rename it so that its name no longer ends in .json" in warning
    assert "`steward audit verify credit -n risk`" in warning
    assert empty.exists() and empty.read_bytes() == b""  # evidence is never deleted for the operator's sake
    assert world.resource.status.rollout is not None  # below the bound, the operator carries on

    empty.rename(empty.with_name(empty.name + ".empty"))  # what the message says to do
    step(operator, events)

    stored = LocalFolderStore(tmp_path).read("risk/credit")
    assert [r.seq for r in stored] == list(range(1, len(stored) + 1))
    assert [r.action for r in stored][:2] == [AuditAction.SPEC_CHANGED, AuditAction.ROLLOUT_STARTED]
    assert degraded(world).reason != Reason.AUDIT_PENDING
    assert len(events.warnings("AuditPending")) == 1


def test_a_store_that_refuses_once_is_retried_soon(tmp_path: Path) -> None:
    world, ray = started_world()
    store = MemoryStore()
    store.down = True
    decision = step(Operator(tmp_path, world, ray, store), Recorder())
    assert decision.retry and "not yet stored" in decision.retry_reason


def test_records_beyond_the_status_buffer_are_never_dropped_silently(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    world, ray = started_world()
    store = MemoryStore()
    store.down = True
    operator = Operator(tmp_path, world, ray, store)
    assert operator.reconciler.trail is not None
    operator.reconciler.trail.record(earlier(CAP + 1))  # more than decide() lets pile up: a bug elsewhere

    status = operator.reconciler.audit_status("risk/credit")
    status = operator.reconciler.audit_status("risk/credit")

    assert status.pending == CAP + 1 and len(status.buffered) == CAP
    assert "1 of them only in the operator's memory and log" in status.message
    logged = [r.getMessage() for r in caplog.records if "beyond the status buffer" in r.getMessage()]
    assert len(logged) == 1 and f'"cause":"earlier-{CAP}"' in logged[0]  # in full, once
