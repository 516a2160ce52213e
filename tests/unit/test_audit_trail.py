"""The trail appends in order, once per cause, and buffers what a failing store refuses."""

from __future__ import annotations

from builders import T0

from steward.audit.records import AuditAction, AuditRecord, DeploymentRef, RecordDraft, seal
from steward.audit.store import RecordExists, StoreUnavailable
from steward.audit.trail import AuditTrail
from steward.audit.verify import verify

REF = DeploymentRef(namespace="risk", name="credit")


class MemoryStore:
    def __init__(self) -> None:
        self.trails: dict[str, list[AuditRecord]] = {}
        self.down = False

    def deployments(self) -> list[str]:
        return sorted(self.trails)

    def read(self, deployment: str) -> list[AuditRecord]:
        if self.down:
            raise StoreUnavailable("store down")
        return list(self.trails.get(deployment, []))

    def append(self, record: AuditRecord) -> None:
        if self.down:
            raise StoreUnavailable("store down")
        trail = self.trails.setdefault(record.deployment.key, [])
        if any(r.seq == record.seq for r in trail):
            raise RecordExists(str(record.seq))
        trail.append(record)


def draft(cause: str, action: AuditAction = AuditAction.DEPLOYED, **evidence: object) -> RecordDraft:
    return RecordDraft(deployment=REF, action=action, reason=cause, cause=cause, evidence=dict(evidence))


def test_replayed_causes_add_nothing():
    store = MemoryStore()
    trail = AuditTrail(store, clock=lambda: T0)
    trail.record([draft("a"), draft("b")])
    trail.record([draft("a"), draft("b"), draft("c")])
    assert [r.cause for r in store.trails["risk/credit"]] == ["a", "b", "c"]
    # a new process learns the causes from the store
    AuditTrail(store, clock=lambda: T0).record([draft("b"), draft("d")])
    assert [r.cause for r in store.trails["risk/credit"]] == ["a", "b", "c", "d"]
    assert verify("risk/credit", store.trails["risk/credit"]).ok


def test_store_down_buffers_in_order_then_catches_up():
    store = MemoryStore()
    trail = AuditTrail(store, clock=lambda: T0)
    trail.record([draft("a")])
    store.down = True
    trail.record([draft("b")])
    trail.record([draft("c")])
    assert trail.pending("risk/credit") == 2 and "store down" in (trail.last_error or "")
    store.down = False
    trail.flush("risk/credit")
    assert trail.pending("risk/credit") == 0 and trail.last_error is None
    assert [r.cause for r in store.trails["risk/credit"]] == ["a", "b", "c"]
    assert verify("risk/credit", store.trails["risk/credit"]).ok


def test_a_concurrent_writer_is_chained_after_not_overwritten():
    store = MemoryStore()
    trail = AuditTrail(store, clock=lambda: T0)
    trail.record([draft("a")])
    # another writer appends behind this trail's back
    store.append(seal(draft("other"), store.trails["risk/credit"][-1], T0))
    trail.record([draft("b")])
    assert [r.cause for r in store.trails["risk/credit"]] == ["a", "other", "b"]
    assert verify("risk/credit", store.trails["risk/credit"]).ok


def test_spec_changes_carry_a_diff_against_the_last_recorded_spec():
    store = MemoryStore()
    trail = AuditTrail(store, clock=lambda: T0)
    spec1 = {"model": {"name": "m", "version": "3"}, "serving": {"replicas": {"max": 2}}}
    spec2 = {"model": {"name": "m", "alias": "champion"}, "serving": {"replicas": {"max": 4}}}
    trail.record([draft("created", AuditAction.CREATED, spec=spec1)])
    trail.record([draft("spec:2", AuditAction.SPEC_CHANGED, spec=spec2)])
    changes = store.trails["risk/credit"][-1].evidence["changes"]
    assert changes == ["+ model.alias: champion", "- model.version: 3", "serving.replicas.max: 2 -> 4"]


def test_record_returns_only_what_is_new_to_the_trail():
    store = MemoryStore()
    trail = AuditTrail(store, clock=lambda: T0)
    assert [d.cause for d in trail.record([draft("a"), draft("b")])] == ["a", "b"]
    assert trail.record([draft("a")]) == []
    assert [d.cause for d in AuditTrail(store, clock=lambda: T0).record([draft("b"), draft("c")])] == ["c"]
