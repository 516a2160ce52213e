"""Walk a trail and report the first record that breaks it (pure).

A trail is checked as a stream of `RecordView`s, one record at a time, so that a million records need neither
a million pydantic models nor the memory to hold them; `verify` takes records already parsed.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from steward.audit.fast import RecordView, view_of
from steward.audit.records import GENESIS, AuditRecord


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
    # seq of the last record checked: the trail's last when it verified (None: no record was checked)
    last_seq: int | None = None

    @property
    def ok(self) -> bool:
        return self.first_break is None


def verify(deployment: str, records: Sequence[AuditRecord], key: bytes | None = None) -> Verification:
    """Check content hashes, signatures (with `key`), numbering and links, in stored order."""
    views = [view_of(record) for record in records]
    return verify_views(deployment, views, key, lambda: {v.seq for v in views}, count=len(views))


def verify_views(
    deployment: str,
    views: Iterable[RecordView],
    key: bytes | None,
    all_seqs: Callable[[], set[int]],
    count: int | None = None,
    first_position: int = 1,
    prev_hash: str | None = GENESIS,
) -> Verification:
    """`verify` of a stream. `all_seqs` gives the seq of every stored record; it is asked only when a record
    sits at the wrong position (to tell a reordering from a deletion), so an intact trail is read once.
    `count` is the number of records stored (reported even when the walk stops at a break).

    A segment of a trail (history's window) starts at `first_position` with `prev_hash=None`: its first
    record's link to the record before it is not checked, everything from there on is."""
    seen = 0
    last: RecordView | None = None
    seqs: set[int] | None = None
    for position, record in enumerate(views, start=first_position):
        seen += 1
        found = _check_content(deployment, position, record, key)
        if found is None and record.seq != position:
            if seqs is None:
                seqs = all_seqs()
            found = _check_numbering(position, record, seqs)
        if found is None and prev_hash is not None and record.prev_hash != prev_hash:
            found = _break(position, record, BreakKind.INSERTED, _INSERTED)
        if found is not None:
            return Verification(deployment, count if count is not None else seen, found, record.seq)
        prev_hash, last = record.hash, record
    return Verification(
        deployment, count if count is not None else seen, None, None if last is None else last.seq
    )


_INSERTED = "does not chain to the record before it: a record was inserted or replaced"


def _break(position: int, record: RecordView, kind: BreakKind, message: str) -> Break:
    return Break(position, record.seq, kind, f"record {position} (seq {record.seq}): {message}")


def _check_content(deployment: str, position: int, record: RecordView, key: bytes | None) -> Break | None:
    if record.deployment != deployment:
        return _break(
            position, record, BreakKind.FOREIGN, f"belongs to {record.deployment}, not {deployment}"
        )
    if not record.content_ok:
        return _break(
            position, record, BreakKind.EDITED, "content does not match its hash: the record was edited"
        )
    if key is not None and not (
        record.signature is not None and hmac.compare_digest(_sign(record.hash, key), record.signature)
    ):
        msg = "signature does not match the audit key: the record was rewritten"
        return _break(position, record, BreakKind.UNSIGNED, msg)
    return None


def _sign(digest: str, key: bytes) -> str:
    """records.sign, through hmac's one-shot C function: a third of the cost, on every record of a trail."""
    return hmac.digest(key, digest.encode(), "sha256").hex()


def _check_numbering(position: int, record: RecordView, seqs: set[int]) -> Break | None:
    if position in seqs:
        msg = f"expected seq {position}, which is stored elsewhere: records were reordered"
        return _break(position, record, BreakKind.REORDERED, msg)
    if record.seq > position:
        missing = f"seq {position}" if record.seq == position + 1 else f"seq {position}..{record.seq - 1}"
        return _break(
            position, record, BreakKind.MISSING, f"{missing} missing before it: records were deleted"
        )
    return _break(position, record, BreakKind.REORDERED, f"expected seq {position}: a record is duplicated")
