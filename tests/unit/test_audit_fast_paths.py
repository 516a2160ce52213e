"""The faster paths of `steward audit verify` and `steward history --since` reach the plain paths' verdicts:
parallel slices resume the in-order walk where a slice breaks (a break at a slice's edge included), the
record parser and canonical encoder built once behave as json.loads and records.canonical do, and the
window's seek steps over gaps and stray names as the listing says."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from steward.audit import fast, scan
from steward.audit.records import AuditRecord, canonical, seal
from steward.audit.store import CorruptRecord, LocalFolderStore, parse_record, record_name
from steward.audit.verify import verify
from tests.unit.test_audit_at_scale import KEY, chain, draft, folder, rewrite, store_of

DEPLOYMENT = "risk/credit"
RECORDS = 20
# With 2 workers and 4 slices each, 20 records are cut into slices of 3: seqs 1-3, 4-6, ..., 19-20.
SLICE_EDGES = [1, 3, 4, 6, 7, 19, 20]


@pytest.fixture
def parallel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scan, "PARALLEL_MIN_RECORDS", 1)


def _edit(f: Path, seq: int) -> None:
    path = f / record_name(seq)
    rewrite(path, {**json.loads(path.read_bytes()), "reason": "rewritten"})


def _delete(f: Path, seq: int) -> None:
    (f / record_name(seq)).unlink()


def _swap_with_next(f: Path, seq: int) -> None:
    nxt = seq + 1 if seq < RECORDS else seq - 1
    first, second = (f / record_name(seq)).read_bytes(), (f / record_name(nxt)).read_bytes()
    rewrite(f / record_name(seq), second)
    rewrite(f / record_name(nxt), first)


def _replace(f: Path, seq: int) -> None:
    """A record sealed on its own (right number, wrong link): what an insertion looks like."""
    stray = seal(draft(99), None, chain(1)[0].timestamp, KEY).model_copy(update={"seq": seq})
    stray = stray.model_copy(update={"hash": "f" * 64})
    rewrite(f / record_name(seq), stray.model_dump_json().encode())


TAMPER = {"edited": _edit, "deleted": _delete, "reordered": _swap_with_next, "inserted": _replace}


def _same_verdict(store: LocalFolderStore) -> None:
    expected = verify(DEPLOYMENT, store.read(DEPLOYMENT), KEY)
    for workers in (1, 2):
        result = scan.verify_stored(store, DEPLOYMENT, KEY, workers=workers)
        assert (result.records, result.first_break, result.last_seq) == (
            expected.records,
            expected.first_break,
            expected.last_seq,
        ), workers


@pytest.mark.usefixtures("parallel")
@pytest.mark.parametrize("seq", SLICE_EDGES)
@pytest.mark.parametrize("kind", sorted(TAMPER))
def test_a_break_at_a_slice_edge_is_the_in_order_walks_break(tmp_path: Path, kind: str, seq: int) -> None:
    store = store_of(tmp_path, chain(RECORDS))
    TAMPER[kind](folder(tmp_path), seq)
    _same_verdict(store)


@pytest.mark.usefixtures("parallel")
def test_of_two_breaks_in_different_slices_the_first_is_reported(tmp_path: Path) -> None:
    store = store_of(tmp_path, chain(RECORDS))
    _edit(folder(tmp_path), 17)
    _delete(folder(tmp_path), 8)
    _same_verdict(store)
    brk = scan.verify_stored(store, DEPLOYMENT, KEY, workers=2).first_break
    assert brk is not None and (brk.kind, brk.seq) == ("missing", 9)


@pytest.mark.usefixtures("parallel")
def test_a_corrupt_record_after_a_break_is_not_reached_and_one_before_it_raises(tmp_path: Path) -> None:
    store = store_of(tmp_path, chain(RECORDS))
    _edit(folder(tmp_path), 5)
    rewrite(folder(tmp_path) / record_name(14), b"{ not json")
    # The walk in order stops at seq 5 and never reads seq 14 (`store.read` would: it parses every record).
    for workers in (1, 2):
        brk = scan.verify_stored(store, DEPLOYMENT, KEY, workers=workers).first_break
        assert brk is not None and (brk.kind, brk.seq) == ("edited", 5)
    rewrite(folder(tmp_path) / record_name(3), b"")
    for workers in (1, 2):
        with pytest.raises(CorruptRecord, match="is empty"):
            scan.verify_stored(store, DEPLOYMENT, KEY, workers=workers)


@pytest.mark.usefixtures("parallel")
def test_a_file_that_cannot_be_read_after_a_break_is_not_reached_either(tmp_path: Path) -> None:
    store = store_of(tmp_path, chain(RECORDS))
    _edit(folder(tmp_path), 5)
    _delete(folder(tmp_path), 14)
    (folder(tmp_path) / record_name(14)).mkdir()  # listed like a record, fails when read (IsADirectoryError)
    for workers in (1, 2):
        brk = scan.verify_stored(store, DEPLOYMENT, KEY, workers=workers).first_break
        assert brk is not None and (brk.kind, brk.seq) == ("edited", 5)
    rewrite(folder(tmp_path) / record_name(5), chain(RECORDS)[4].model_dump_json().encode())  # no break
    for workers in (1, 2):
        with pytest.raises(IsADirectoryError):
            scan.verify_stored(store, DEPLOYMENT, KEY, workers=workers)


class _CountingStore(LocalFolderStore):
    """Counts what this process reads (the parallel slices read in their own processes)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.read_names: list[str] = []

    def read_raw(self, deployment: str, names: Iterable[str]) -> Iterator[tuple[str, bytes]]:
        for name in names:
            self.read_names.append(name)
            yield from super().read_raw(deployment, [name])


@pytest.mark.usefixtures("parallel")
def test_the_walk_in_order_resumes_at_the_slice_that_broke(tmp_path: Path) -> None:
    store_of(tmp_path, chain(RECORDS))
    _edit(folder(tmp_path), 17)  # in the slice of seqs 16-18
    store = _CountingStore(tmp_path / "audit")
    result = scan.verify_stored(store, DEPLOYMENT, KEY, workers=2)
    assert result.first_break is not None and result.first_break.seq == 17
    assert store.read_names == [record_name(16), record_name(17)]


@pytest.mark.usefixtures("parallel")
def test_an_intact_trail_checked_in_slices_reports_its_last_record(tmp_path: Path) -> None:
    records = chain(RECORDS)
    store = _CountingStore(store_of(tmp_path, records).root)
    result = scan.verify_stored(store, DEPLOYMENT, KEY, workers=2)
    assert result.ok and result.records == RECORDS
    assert (result.last_seq, result.last_hash) == (RECORDS, records[-1].hash)
    assert store.read_names == []  # all of it read by the slices


VALUES: list[Any] = [
    {"b": 1, "a": [1.5, -0.0, 1e16, 1e-7, 2**70, True, None, ""]},
    {"ü": "naïve ünïcödé", "esc": 'quote " backslash \\ tab \t nl \n ctl \x01 del \x7f', "e": "\u2028"},
    {"z": {"y": {"x": {}}}, "a": [], "m": [{"b": 2, "a": 1}]},
    [0.1, 0.30000000000000004, 123456789.123456789, -1.0e-300],
]


@pytest.mark.parametrize("value", VALUES)
def test_the_encoder_built_once_writes_what_records_canonical_writes(value: Any) -> None:
    assert fast._ENCODE(value).encode() == canonical(value)
    assert fast._ENCODE(value) == fast._CANONICAL.encode(value)


@pytest.mark.parametrize("value", [float("inf"), float("nan"), {"a": [float("-inf")]}])
def test_the_encoder_built_once_refuses_what_is_not_json(value: Any) -> None:
    with pytest.raises(ValueError):
        fast._ENCODE(value)


@pytest.mark.parametrize(
    "raw",
    [b'{"a": [1, 2.5, "\\u00fc", null, true]}', b"[]", b'"x"', '{"ü": 1}'.encode(), b"1e400"],
)
def test_the_parser_built_once_reads_what_json_loads_reads(raw: bytes) -> None:
    assert fast._parse(raw) == json.loads(raw)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{ not json",
        b'{"a": 1} ',  # something after the value
        b' {"a": 1}',  # or before it
        b'{"a": NaN}',
        b'{"a": 1}{"b": 2}',
        b"\xef\xbb\xbf" + b'{"a": 1}',  # a byte-order mark
        '{"a": 1}'.encode("utf-16"),
        b'{"a": "\xed\xa0\x80"}',  # an encoded lone surrogate: not UTF-8
    ],
)
def test_the_parser_built_once_leaves_anything_else_to_pydantic(raw: bytes) -> None:
    assert fast._parse(raw) is None


@pytest.mark.parametrize(
    "edit",
    [
        lambda raw: raw + b"\n",  # a record file saved by an editor
        lambda raw: b"\xef\xbb\xbf" + raw,
        lambda raw: raw.decode().encode("utf-16"),
    ],
)
def test_records_outside_the_parsers_form_are_judged_by_pydantic(edit: Any) -> None:
    raw = edit(chain(2)[1].model_dump_json().encode())
    assert fast._fast_view(raw) is None
    try:
        expected = fast.view_of(parse_record(raw, "x"))
    except CorruptRecord:
        with pytest.raises(CorruptRecord):
            fast.view(raw, "x")
        return
    assert fast.view(raw, "x") == expected


def _window(store: LocalFolderStore, records: list[AuditRecord], back: int) -> list[int]:
    cutoff = records[-back].timestamp
    window = scan.read_window(store, DEPLOYMENT, cutoff, slack=timedelta(0))
    return [r.seq for r in window.records]


def test_the_seek_steps_over_a_gap_at_the_window_start_and_a_long_gap_before_it(tmp_path: Path) -> None:
    records = chain(200, step=timedelta(minutes=1))
    store = store_of(tmp_path, records)
    for seq in [*range(20, 160), 185]:  # most of the trail, and the record just before the window
        _delete(folder(tmp_path), seq)
    stored = [r for r in records if r.seq not in {*range(20, 160), 185}]
    for back in (1, 10, 15, 16, 30, 60, 150, 200):
        cutoff = records[-back].timestamp
        assert _window(store, records, back) == [r.seq for r in stored if r.timestamp >= cutoff], back


def test_a_stray_name_above_the_records_does_not_move_the_seek(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = chain(50, step=timedelta(minutes=1))
    store = store_of(tmp_path, records)
    (folder(tmp_path) / "000000000050.json.corrupt").write_text("x")  # moved aside: not listed
    # Listed, gone when read (a name that is not a record's sorts above them all: the trail's end is not it).
    listed = [*store.record_names(DEPLOYMENT, ordered=False), "zz-notes.json"]
    monkeypatch.setattr(store, "record_names", lambda deployment, ordered=True: list(listed))
    assert _window(store, records, 5) == [46, 47, 48, 49, 50]


def test_a_record_deleted_after_the_listing_is_reported_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = chain(60, step=timedelta(minutes=1))
    store = store_of(tmp_path, records)
    listed = store.record_names(DEPLOYMENT, ordered=False)
    _delete(folder(tmp_path), 55)
    monkeypatch.setattr(store, "record_names", lambda deployment, ordered=True: list(listed))
    window = scan.read_window(store, DEPLOYMENT, records[-10].timestamp, slack=timedelta(0))
    assert [r.seq for r in window.records] == [51, 52, 53, 54, 56, 57, 58, 59, 60]
    brk = window.verification.first_break
    assert brk is not None and (brk.kind, brk.seq) == ("missing", 56)
