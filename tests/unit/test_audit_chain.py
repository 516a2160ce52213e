"""The hash chain detects every kind of tampering, with its position."""

from __future__ import annotations

from datetime import timedelta

import pytest
from builders import T0

from steward.audit.records import AuditAction, AuditRecord, DeploymentRef, RecordDraft, record_hash, seal
from steward.audit.verify import BreakKind, verify

REF = DeploymentRef(namespace="risk", name="credit", uid="u1")
KEY = b"audit-secret"


def chain(n: int, key: bytes | None = None) -> list[AuditRecord]:
    records: list[AuditRecord] = []
    for i in range(n):
        draft = RecordDraft(deployment=REF, action=AuditAction.DEPLOYED, reason=f"step {i}", cause=f"c{i}")
        records.append(seal(draft, records[-1] if records else None, T0 + timedelta(seconds=i), key))
    return records


def test_an_intact_chain_verifies():
    result = verify("risk/credit", chain(5))
    assert result.ok and result.records == 5


def test_seal_numbers_links_and_hashes():
    records = chain(3)
    assert [r.seq for r in records] == [1, 2, 3]
    assert records[1].prev_hash == records[0].hash
    assert all(record_hash(r) == r.hash for r in records)


def test_json_round_trip_keeps_hashes():
    records = [AuditRecord.model_validate_json(r.model_dump_json()) for r in chain(3)]
    assert verify("risk/credit", records).ok


@pytest.mark.parametrize("position", [1, 3, 5])
def test_edit_is_detected_at_its_position(position):
    records = chain(5)
    records[position - 1] = records[position - 1].model_copy(update={"reason": "nothing to see"})
    brk = verify("risk/credit", records).first_break
    assert brk is not None and brk.kind == BreakKind.EDITED and brk.position == position


def test_deletion_is_detected():
    records = chain(5)
    del records[2]
    brk = verify("risk/credit", records).first_break
    assert brk is not None and (brk.kind, brk.position, brk.seq) == (BreakKind.MISSING, 3, 4)
    assert "seq 3 missing" in brk.message


def test_deleting_the_tail_is_only_visible_against_the_recorded_length():
    # A truncated tail is a valid shorter chain; status.audit.recordedSeq is what reveals it.
    assert verify("risk/credit", chain(5)[:3]).ok


def test_reordering_is_detected():
    records = chain(5)
    records[1], records[2] = records[2], records[1]
    brk = verify("risk/credit", records).first_break
    assert brk is not None and (brk.kind, brk.position) == (BreakKind.REORDERED, 2)


def test_insertion_with_recomputed_hashes_is_detected():
    records = chain(4)
    forged_draft = RecordDraft(deployment=REF, action=AuditAction.PROMOTED, reason="forged", cause="x")
    forged = seal(forged_draft, records[1], T0, None)  # a valid-looking record after seq 2
    tampered = [*records[:2], forged, *[r.model_copy(update={"seq": r.seq + 1}) for r in records[2:]]]
    brk = verify("risk/credit", tampered).first_break
    assert brk is not None and brk.position == 4  # the record after the forgery no longer chains


def test_rewriting_with_fresh_hashes_fails_the_signature():
    records = chain(3, KEY)
    assert verify("risk/credit", records, KEY).ok
    rewritten = seal(
        RecordDraft(deployment=REF, action=AuditAction.DEPLOYED, reason="rewritten", cause="c1"),
        records[0],
        T0,
        b"guess",
    )
    brk = verify("risk/credit", [records[0], rewritten, *records[2:]], KEY).first_break
    assert brk is not None and (brk.kind, brk.position) == (BreakKind.UNSIGNED, 2)


def test_a_record_of_another_deployment_is_foreign():
    other = chain(1)[0].model_copy(update={"deployment": DeploymentRef(namespace="x", name="y")})
    brk = verify("risk/credit", [other]).first_break
    assert brk is not None and brk.kind == BreakKind.FOREIGN
