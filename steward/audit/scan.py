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
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from itertools import chain
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
    case) is then done. Otherwise the walk goes on in order from the first slice that is not intact (or
    does not link to the one before it), with the hash it must link to: every record before that slice
    passed every check, so the break reported, its position and its message are exactly those of the
    sequential walk."""
    names = store.record_names(deployment)
    start, prev_hash, last_seq = 0, GENESIS, None
    jobs = workers if workers is not None else _cpus()
    if jobs > 1 and isinstance(store, LocalFolderStore) and len(names) >= PARALLEL_MIN_RECORDS:
        checked = _check_in_parallel(store, deployment, names, key, jobs)
        if checked.intact:
            return Verification(deployment, len(names), None, checked.last_seq, checked.prev_hash)
        start, prev_hash, last_seq = checked.start, checked.prev_hash, checked.last_seq

    def all_seqs() -> set[int]:
        return {v.seq for v in views(store, deployment, names)}

    result = verify_views(
        deployment,
        views(store, deployment, names[start:]),
        key,
        all_seqs,
        count=len(names),
        first_position=start + 1,
        prev_hash=prev_hash,
    )
    if result.ok and result.last_seq is None and last_seq is not None:
        # Every record from `start` on is gone since the listing: the trail ends where the slices did.
        return replace(result, last_seq=last_seq, last_hash=prev_hash)
    return result


# Below this, starting processes costs more than it saves.
PARALLEL_MIN_RECORDS = 50_000
_SLICES_PER_WORKER = 4  # smaller slices even out workers slowed by other load on the machine


@dataclass(frozen=True)
class _Slice:
    intact: bool  # every record verifies on its own, numbered by its position, linked to the one before
    first_prev_hash: str | None
    last_hash: str | None
    last_seq: int | None


_NOT_INTACT = _Slice(False, None, None, None)


def _check_slice(
    root: str, deployment: str, names: list[str], first_position: int, key: bytes | None
) -> _Slice:
    store = LocalFolderStore(Path(root))
    try:
        records = views(store, deployment, names)
        first = next(records, None)
        if first is None:
            return _NOT_INTACT  # every record gone since the listing: the walk in order reports it
        # Any record at the wrong position is a break whatever the other seqs are: no need to know them.
        result = verify_views(
            deployment, chain([first], records), key, _no_seqs, None, first_position, prev_hash=None
        )
    except (StoreUnavailable, OSError):
        return _NOT_INTACT  # an unreadable record: the walk in order says where, and what came before it
    if not result.ok:
        return _NOT_INTACT
    return _Slice(True, first.prev_hash, result.last_hash, result.last_seq)


def _no_seqs() -> set[int]:
    return set()


@dataclass(frozen=True)
class _Checked:
    intact: bool  # the whole trail
    start: int  # index of the first name whose slice is not intact (or does not link to the one before)
    prev_hash: str  # the hash of the record before it: the last record's when intact
    last_seq: int | None  # that record's seq


def _check_in_parallel(
    store: LocalFolderStore, deployment: str, names: list[str], key: bytes | None, jobs: int
) -> _Checked:
    size = -(-len(names) // (jobs * _SLICES_PER_WORKER))
    starts = range(0, len(names), size)
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = [
            pool.submit(_check_slice, str(store.root), deployment, names[i : i + size], i + 1, key)
            for i in starts
        ]
        slices = [future.result() for future in futures]
    prev_hash, last_seq = GENESIS, None
    for start, part in zip(starts, slices, strict=True):
        if not part.intact or part.first_prev_hash != prev_hash or part.last_hash is None:
            return _Checked(False, start, prev_hash, last_seq)
        prev_hash, last_seq = part.last_hash, part.last_seq
    return _Checked(True, len(names), prev_hash, last_seq)


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
    seq, so a name is found by its number; a deleted record is stepped over to the next stored one.

    A million-name listing is neither matched name by name nor hashed into a set (together 0.5 s, as long
    as the rest of `history` after the listing): a record is looked up by reading it, and only when a name
    is missing (a gap) are the listed names sorted once to find the stored one next to it."""

    def __init__(self, store: RawTrails, deployment: str, listed: list[str]) -> None:
        self.store, self.deployment, self.listed = store, deployment, listed
        # The highest name is the last record's unless a stray name sorts above it (then look at them all).
        top = max(listed, default="")
        self.last = int(top[:-5]) if _SEQ.fullmatch(top) else _last_seq(listed)
        self._numbered: list[str] | None = None

    def anchor(self, moment: datetime) -> str | None:
        """The name of the stored record just before the first one stamped at or after `moment` (None:
        the window starts at the trail's first record)."""
        low, high = 1, self.last + 1
        while low < high:
            middle = (low + high) // 2
            stamp = self._first_stamp_from(middle)
            if stamp is not None and stamp < moment:
                low = middle + 1
            else:
                high = middle
        if low == 1:
            return None
        before = record_name(low - 1)
        if self._read(before) is not None:
            return before
        numbered = self._sorted()
        index = bisect_left(numbered, before)
        if index < len(numbered) and numbered[index] == before:
            return before  # listed, gone since: the segment's verification reports the gap
        return numbered[index - 1] if index > 0 else None

    def _first_stamp_from(self, seq: int) -> datetime | None:
        """The stamp of the first stored record at or after `seq` (None: there is none)."""
        name = record_name(seq)
        found = self._read(name)
        if found is not None:
            return _stamp(self.deployment, *found)
        numbered = self._sorted()
        index = bisect_left(numbered, name)
        return self._stamped(numbered[index]) if index < len(numbered) else None

    def _read(self, name: str) -> tuple[str, bytes] | None:
        return next(iter(self.store.read_raw(self.deployment, [name])), None)

    def _stamped(self, name: str) -> datetime:
        found = self._read(name)
        if found is not None:
            return _stamp(self.deployment, *found)
        # Gone since the listing (deleted): taken as old, so the window starts after it; if it falls
        # inside the window after all, verifying the segment reports the gap.
        return datetime.min.replace(tzinfo=UTC)

    def _sorted(self) -> list[str]:
        if self._numbered is None:
            self._numbered = sorted(name for name in self.listed if _SEQ.fullmatch(name))
        return self._numbered


def _stamp(deployment: str, where: str, raw: bytes) -> datetime:
    return _utc(datetime.fromisoformat(view(raw, where, deployment).timestamp))


def _last_seq(listed: list[str]) -> int:
    numbered = [name for name in listed if _SEQ.fullmatch(name)]
    return int(max(numbered)[:-5]) if numbered else 0


_SEQ = re.compile(r"\d{12}\.json")


def _utc(moment: datetime) -> datetime:
    return (moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)).astimezone(UTC)
