"""Walk a trail and report the first record that breaks it (pure)."""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from steward.audit.records import GENESIS, AuditRecord, record_hash, sign


class BreakKind(StrEnum):
    EDITED = "edited"  # the record's content no longer matches its hash
    UNSIGNED = (
        "bad-signature"  # hash intact but the HMAC does not match: rewritten by someone without the key
    )
    MISSING = "missing"  # a sequence number is skipped: a record was deleted
    REORDERED = "reordered"  # a record sits where a different sequence number belongs
    INSERTED = "inserted"  # a record that does not chain to its predecessor
    FOREIGN = "foreign"  # a record of another deployment


@dataclass(frozen=True)
class Break:
    position: int  # 1-based position in the trail as stored
    seq: int
    kind: BreakKind
    message: str


@dataclass(frozen=True)
class Verification:
    deployment: str
    records: int
    first_break: Break | None

    @property
    def ok(self) -> bool:
        return self.first_break is None


def verify(deployment: str, records: Sequence[AuditRecord], key: bytes | None = None) -> Verification:
    """Check content hashes, signatures (with `key`), numbering and links, in stored order."""
    prev_hash = GENESIS
    seqs = {r.seq for r in records}
    for position, record in enumerate(records, start=1):
        found = _check(deployment, position, record, prev_hash, key, seqs)
        if found is not None:
            return Verification(deployment, len(records), found)
        prev_hash = record.hash
    return Verification(deployment, len(records), None)


def _check(
    deployment: str, position: int, record: AuditRecord, prev_hash: str, key: bytes | None, seqs: set[int]
) -> Break | None:
    def brk(kind: BreakKind, message: str) -> Break:
        return Break(position, record.seq, kind, f"record {position} (seq {record.seq}): {message}")

    if record.deployment.key != deployment:
        return brk(BreakKind.FOREIGN, f"belongs to {record.deployment.key}, not {deployment}")
    if record_hash(record) != record.hash:
        return brk(BreakKind.EDITED, "content does not match its hash: the record was edited")
    signed = record.signature is not None and hmac.compare_digest(
        sign(record.hash, key or b""), record.signature
    )
    if key is not None and not signed:
        return brk(BreakKind.UNSIGNED, "signature does not match the audit key: the record was rewritten")
    if record.seq != position and position in seqs:
        return brk(
            BreakKind.REORDERED, f"expected seq {position}, which is stored elsewhere: records were reordered"
        )
    if record.seq > position:
        missing = f"seq {position}" if record.seq == position + 1 else f"seq {position}..{record.seq - 1}"
        return brk(BreakKind.MISSING, f"{missing} missing before it: records were deleted")
    if record.seq < position:
        return brk(BreakKind.REORDERED, f"expected seq {position}: a record is duplicated")
    if record.prev_hash != prev_hash:
        return brk(
            BreakKind.INSERTED, "does not chain to the record before it: a record was inserted or replaced"
        )
    return None
