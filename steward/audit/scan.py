"""Reading long trails: verify one record at a time, and find the records of a recent window by seeking.

`verify_stored` streams every record once through the fast validated path (`steward.audit.fast`), holding
no more than one record at a time. `read_window` finds the first record of a time window by bisecting the
trail's names (about 20 reads for a million records) and reads only from there: records are numbered in the
order they were written and stamped by the writer's clock, so their timestamps rise with their numbers. A
writer's clock can step back a little (two operator replicas, an NTP correction), so the search starts
`slack` earlier and the window is then filtered record by record: a record is shown if its own timestamp is
in the window, as before.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from steward.audit.fast import RecordView, view, view_of
from steward.audit.records import GENESIS, AuditRecord
from steward.audit.store import LocalFolderStore, RawTrails, StoreUnavailable, parse_record, record_name
from steward.audit.verify import Verification, verify_views

CLOCK_SLACK = timedelta(hours=1)


def views(store: RawTrails, deployment: str, names: Sequence[str]) -> Iterator[RecordView]:
    for where, raw in store.read_raw(deployment, names):
        yield view(raw, where, deployment)


def verify_stored(
    store: RawTrails, deployment: str, key: bytes | None = None, workers: int | None = None
) -> Verification:
    """`verify` of a stored trail, streamed. Raises CorruptRecord at the first record that is not one.

    A long trail in a local folder is first checked in parallel, one contiguous slice per task: each slice
    is verified on its own, and the slices' boundary links are checked here. An intact trail (the common
    case) is then done; any slice that is not intact makes the walk start again in order, so the break
    reported, its position and its message are exactly those of the sequential walk."""
    names = store.record_names(deployment)
    jobs = workers if workers is not None else _cpus()
    if jobs > 1 and isinstance(store, LocalFolderStore) and len(names) >= PARALLEL_MIN_RECORDS:
        intact = _intact_in_parallel(store, deployment, names, key, jobs)
        if intact is not None:
            return intact

    def all_seqs() -> set[int]:
        return {v.seq for v in views(store, deployment, names)}

    return verify_views(deployment, views(store, deployment, names), key, all_seqs, count=len(names))


# Below this, starting processes costs more than it saves.
PARALLEL_MIN_RECORDS = 50_000
_SLICES_PER_WORKER = 4  # smaller slices even out workers slowed by other load on the machine


@dataclass(frozen=True)
class _Slice:
    intact: bool  # every record verifies on its own, numbered by its position, linked to the one before
    first_prev_hash: str | None
    last_hash: str | None
    last_seq: int | None


def _check_slice(
    root: str, deployment: str, names: list[str], first_position: int, key: bytes | None
) -> _Slice:
    store = LocalFolderStore(Path(root))
    first: RecordView | None = None
    last: RecordView | None = None

    def remember(stream: Iterator[RecordView]) -> Iterator[RecordView]:
        nonlocal first, last
        for record in stream:
            first = first or record
            last = record
            yield record

    # Any record at the wrong position is a break whatever the other seqs are: no need to know them here.
    result = verify_views(
        deployment, remember(views(store, deployment, names)), key, _no_seqs, None, first_position, None
    )
    return _Slice(
        intact=result.ok and last is not None,
        first_prev_hash=None if first is None else first.prev_hash,
        last_hash=None if last is None else last.hash,
        last_seq=None if last is None else last.seq,
    )


def _no_seqs() -> set[int]:
    return set()


def _intact_in_parallel(
    store: LocalFolderStore, deployment: str, names: list[str], key: bytes | None, jobs: int
) -> Verification | None:
    """The verification of an intact trail, or None when a slice is not (or a record is unreadable)."""
    size = -(-len(names) // (jobs * _SLICES_PER_WORKER))
    starts = range(0, len(names), size)
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = [
            pool.submit(_check_slice, str(store.root), deployment, names[i : i + size], i + 1, key)
            for i in starts
        ]
        try:
            slices = [future.result() for future in futures]
        except StoreUnavailable:
            return None  # an unreadable record: the walk in order says where, and what came before it
    prev_hash: str | None = GENESIS
    for part in slices:
        if not part.intact or part.first_prev_hash != prev_hash:
            return None
        prev_hash = part.last_hash
    return Verification(deployment, len(names), None, slices[-1].last_seq)


def _cpus() -> int:
    return len(os.sched_getaffinity(0))


@dataclass(frozen=True)
class Window:
    records: list[AuditRecord]  # those stamped at or after the cutoff, in stored order
    verification: Verification  # of the segment read: from the record before the window to the end
    stored: int  # records in the whole trail


def read_window(
    store: RawTrails, deployment: str, cutoff: datetime, slack: timedelta = CLOCK_SLACK
) -> Window:
    """The records stamped at or after `cutoff`, reading about log2(n) records plus the window."""
    listed = store.record_names(deployment, ordered=False)
    anchor = _Seek(store, deployment, listed).anchor(cutoff - slack)
    # From the record before the first candidate: its hash anchors the first shown record's link.
    names = sorted(name for name in listed if anchor is None or name >= anchor)
    segment = [parse_record(raw, where, deployment) for where, raw in store.read_raw(deployment, names)]
    segment_views = [view_of(record) for record in segment]
    # A window is numbered from its first record's seq: whatever is wrong before it (a deletion) is for
    # `steward audit verify` to find, and does not shift every position inside the window.
    verification = verify_views(
        deployment,
        segment_views,
        None,
        lambda: {v.seq for v in segment_views},
        first_position=segment[0].seq if anchor is not None and segment else 1,
        prev_hash=None if anchor is not None else GENESIS,
    )
    shown = [r for r in segment if _utc(r.timestamp) >= cutoff]
    return Window(shown, verification, len(listed))


class _Seek:
    """Bisection over sequence numbers, on a listing in any order. Records are named by their zero-padded
    seq, so a name is found by its number; a deleted record is stepped over to the next stored one."""

    def __init__(self, store: RawTrails, deployment: str, listed: list[str]) -> None:
        self.store, self.deployment = store, deployment
        self.names = set(listed)
        numbered = [name for name in listed if _SEQ.fullmatch(name)] if listed else []
        self.last = int(max(numbered)[:-5]) if numbered else 0

    def anchor(self, moment: datetime) -> str | None:
        """The name of the stored record just before the first one stamped at or after `moment` (None:
        the window starts at the trail's first record)."""
        low, high = 1, self.last + 1
        while low < high:
            middle = (low + high) // 2
            found = self._at_or_after(middle)
            if found is not None and self._stamped(found) < moment:
                low = middle + 1
            else:
                high = middle
        return next(
            (record_name(seq) for seq in range(low - 1, 0, -1) if record_name(seq) in self.names), None
        )

    def _at_or_after(self, seq: int) -> str | None:
        return next((record_name(s) for s in range(seq, self.last + 1) if record_name(s) in self.names), None)

    def _stamped(self, name: str) -> datetime:
        for where, raw in self.store.read_raw(self.deployment, [name]):
            return _utc(datetime.fromisoformat(view(raw, where, self.deployment).timestamp))
        # Gone since the listing (deleted): taken as old, so the window starts after it; if it falls
        # inside the window after all, verifying the segment reports the gap.
        return datetime.min.replace(tzinfo=UTC)


_SEQ = re.compile(r"\d{12}\.json")


def _utc(moment: datetime) -> datetime:
    return (moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)).astimezone(UTC)
