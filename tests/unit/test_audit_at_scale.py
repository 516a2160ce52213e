"""The paths that make long trails fast (streamed and parallel verify, the fast validated record view, the
seeking history window) reach exactly the verdicts of the plain ones, and trails in any older form verify."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from steward.audit import scan
from steward.audit.fast import _fast_view, view, view_of
from steward.audit.records import (
    AuditAction,
    AuditRecord,
    DeploymentRef,
    ModelVersions,
    RecordDraft,
    seal,
    sign,
)
from steward.audit.store import CorruptRecord, LocalFolderStore, parse_record, record_name
from steward.audit.verify import Signer, verify
from steward.cli import audit as audit_cli
from steward.cli.main import app

REF = DeploymentRef(namespace="risk", name="credit", uid="u-1")
KEY = b"k3y"
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def draft(i: int) -> RecordDraft:
    return RecordDraft(
        deployment=REF,
        actor="alice" if i % 3 == 0 else "steward-operator",
        action=list(AuditAction)[i % len(AuditAction)],
        model=None if i % 4 == 0 else ModelVersions(name="credit-risk", from_version=None, to_version=str(i)),
        reason=f'step {i}: ünïcode [10%] and "quotes"',
        evidence={
            "n": i,
            "ratio": i / 7,
            "big": 10**20,
            "nested": {"b": [1, 2.5, None], "a": True},
            "ü": "x",
        },
        cause=f"c{i}",
    )


def chain(n: int, step: timedelta = timedelta(minutes=10), key: bytes | None = KEY) -> list[AuditRecord]:
    records: list[AuditRecord] = []
    for i in range(n):
        # Some with microseconds, some without: pydantic writes the two differently.
        moment = T0 + step * i + timedelta(microseconds=(i % 2) * 1234)
        records.append(seal(draft(i), records[-1] if records else None, moment, key))
    return records


def store_of(tmp_path: Path, records: list[AuditRecord]) -> LocalFolderStore:
    store = LocalFolderStore(tmp_path / "audit")
    for record in records:
        store.append(record)
    return store


def folder(tmp_path: Path) -> Path:
    return tmp_path / "audit" / "risk" / "credit"


def rewrite(path: Path, data: dict[str, Any] | bytes) -> None:
    path.chmod(0o644)
    path.write_bytes(data if isinstance(data, bytes) else json.dumps(data).encode())


def test_the_fast_view_is_the_pydantic_view_for_every_record_the_writer_writes() -> None:
    for record in chain(12):
        raw = record.model_dump_json().encode()
        fast = _fast_view(raw)
        assert fast is not None, raw
        slow = view_of(parse_record(raw, "x"))
        assert (fast.deployment, fast.seq, fast.prev_hash, fast.hash, fast.signature) == (
            slow.deployment,
            slow.seq,
            slow.prev_hash,
            slow.hash,
            slow.signature,
        )
        assert fast.content_ok and slow.content_ok


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d.pop("signature"),  # an older writer without the field: pydantic fills it in
        lambda d: d.update(timestamp=d["timestamp"].replace("Z", "+00:00")),  # another spelling of UTC
        lambda d: d.update(seq=float(d["seq"])),  # pydantic makes it an int
        lambda d: d["deployment"].pop("uid"),
        lambda d: d.update(action="no-such-action"),  # refused by pydantic: a corrupt record
        lambda d: d.update(evidence={"x": float("inf")}),
    ],
)
def test_any_other_form_is_left_to_pydantic_and_judged_the_same(change: Any) -> None:
    record = chain(2)[1]
    data = json.loads(record.model_dump_json())
    change(data)
    raw = json.dumps(data).encode()
    assert _fast_view(raw) is None
    try:
        expected = view_of(parse_record(raw, "x"))
    except CorruptRecord:
        with pytest.raises(CorruptRecord):
            view(raw, "x")
        return
    assert view(raw, "x") == expected


def test_an_edit_that_keeps_the_form_is_still_an_edit() -> None:
    data = json.loads(chain(1)[0].model_dump_json())
    data["reason"] = "nothing to see"
    fast = _fast_view(json.dumps(data).encode())
    assert fast is not None and not fast.content_ok


@pytest.mark.parametrize("length", [0, 1, 19, 63, 64, 65, 200])
def test_the_precomputed_hmac_signs_as_records_sign_does(length: int) -> None:
    """Keys shorter than, as long as and longer than SHA-256's block (hashed first, by RFC 2104)."""
    key = bytes((i * 37 + 11) % 256 for i in range(length))
    signer = Signer(key)
    for digest in ("ab" * 32, "0" * 64, "ünï"):
        assert signer.sign(digest) == sign(digest, key)
        assert signer.matches(digest, sign(digest, key))
    assert not signer.matches("ab" * 32, None)
    assert not signer.matches("ab" * 32, sign("ab" * 32, key + b"x"))


def test_a_trail_in_an_older_form_still_verifies(tmp_path: Path) -> None:
    """Backward compatibility: files in any form pydantic reads as the same record (indented, keys in another
    order, +00:00 timestamps, defaults left out) verify as before, through the streamed walk too."""
    records = chain(6)
    store = store_of(tmp_path, records)
    for record in records[::2]:
        data = record.model_dump(mode="json")
        data["timestamp"] = record.timestamp.isoformat()  # +00:00
        if data["signature"] is None:
            del data["signature"]
        rewrite(
            folder(tmp_path) / record_name(record.seq),
            json.dumps(dict(reversed(data.items())), indent=2).encode(),
        )
    assert verify("risk/credit", store.read("risk/credit"), KEY).ok
    result = scan.verify_stored(store, "risk/credit", KEY, workers=1)
    assert result.ok and result.records == 6 and result.last_seq == 6


TAMPERINGS = {
    "intact": lambda f: None,
    "edited": lambda f: rewrite(
        f / record_name(5), {**json.loads((f / record_name(5)).read_bytes()), "actor": "m"}
    ),
    "deleted": lambda f: (f / record_name(4)).unlink(),
    "reordered": lambda f: _swap(f / record_name(3), f / record_name(6)),
    "foreign": lambda f: rewrite(
        f / record_name(7),
        {
            **json.loads((f / record_name(7)).read_bytes()),
            "deployment": {"namespace": "x", "name": "y", "uid": None},
        },
    ),
}


def _swap(a: Path, b: Path) -> None:
    first, second = a.read_bytes(), b.read_bytes()
    rewrite(a, second)
    rewrite(b, first)


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("tampering", sorted(TAMPERINGS))
def test_streamed_and_parallel_verify_report_what_verify_reports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tampering: str, workers: int
) -> None:
    monkeypatch.setattr(scan, "PARALLEL_MIN_RECORDS", 1)
    store = store_of(tmp_path, chain(20))
    TAMPERINGS[tampering](folder(tmp_path))
    expected = verify("risk/credit", store.read("risk/credit"), KEY)
    result = scan.verify_stored(store, "risk/credit", KEY, workers=workers)
    assert (result.ok, result.records, result.first_break) == (
        expected.ok,
        expected.records,
        expected.first_break,
    )
    assert result.ok == (tampering == "intact")


def test_a_corrupt_record_raises_in_either_walk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scan, "PARALLEL_MIN_RECORDS", 1)
    store = store_of(tmp_path, chain(10))
    rewrite(folder(tmp_path) / record_name(8), b"{ not json")
    for workers in (1, 2):
        with pytest.raises(CorruptRecord, match="not a readable audit record"):
            scan.verify_stored(store, "risk/credit", KEY, workers=workers)


@pytest.mark.parametrize("hours", [0.5, 5, 30, 24 * 30])
def test_the_window_holds_exactly_the_records_since_the_cutoff(tmp_path: Path, hours: float) -> None:
    records = chain(100, step=timedelta(minutes=7))
    store = store_of(tmp_path, records)
    cutoff = records[-1].timestamp - timedelta(hours=hours)
    window = scan.read_window(store, "risk/credit", cutoff, slack=timedelta(minutes=20))
    assert window.records == [r for r in records if r.timestamp >= cutoff]
    assert window.verification.ok and window.stored == 100


def test_the_window_tolerates_a_clock_stepping_back_within_the_slack(tmp_path: Path) -> None:
    records = chain(50, step=timedelta(minutes=1))
    late = seal(draft(50), records[-1], records[-1].timestamp - timedelta(minutes=3), KEY)
    store = store_of(tmp_path, [*records, late])
    cutoff = records[-1].timestamp - timedelta(minutes=5)
    window = scan.read_window(store, "risk/credit", cutoff, slack=timedelta(minutes=10))
    assert window.records == [r for r in [*records, late] if r.timestamp >= cutoff]


def test_a_break_inside_the_window_is_reported_at_its_position_and_one_before_it_is_not_read(
    tmp_path: Path,
) -> None:
    records = chain(60, step=timedelta(hours=1))
    store = store_of(tmp_path, records)
    (folder(tmp_path) / record_name(10)).unlink()  # long before the window
    rewrite(folder(tmp_path) / record_name(55), {**json.loads(records[54].model_dump_json()), "reason": "x"})
    window = scan.read_window(store, "risk/credit", records[49].timestamp, slack=timedelta(minutes=30))
    assert [r.seq for r in window.records] == list(range(50, 61))
    brk = window.verification.first_break
    assert brk is not None and brk.seq == 55 and brk.kind == "edited"
    assert brk.position == 55  # a window is numbered from its first record's seq: what is before it is
    # `steward audit verify`'s to check


def test_a_gap_inside_the_window_is_reported(tmp_path: Path) -> None:
    records = chain(40, step=timedelta(hours=1))
    store = store_of(tmp_path, records)
    (folder(tmp_path) / record_name(38)).unlink()
    window = scan.read_window(store, "risk/credit", records[34].timestamp, slack=timedelta(0))
    brk = window.verification.first_break
    assert brk is not None and brk.kind == "missing" and brk.seq == 39


def test_history_prints_a_long_window_plainly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit_cli, "MAX_RICH_ROWS", 3)
    now = datetime.now(UTC)
    records: list[AuditRecord] = []
    for i in range(8):
        records.append(seal(draft(i), records[-1] if records else None, now - timedelta(hours=8 - i)))
    store_of(tmp_path, records)
    result = CliRunner().invoke(
        app, ["history", "credit", "-n", "risk", "--home", str(tmp_path), "--since", "270m"]
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[1].split()[:3] == ["TIME", "(UTC)", "SEQ"]
    assert [line.split()[2] for line in lines[2:]] == ["5", "6", "7", "8"]
    assert 'ünïcode [10%] and "quotes"' in result.output
