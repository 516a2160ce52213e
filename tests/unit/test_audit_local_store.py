"""The local-folder audit store: one read-only file per record, created exclusively, never overwritten."""

from __future__ import annotations

import os
import stat
from datetime import timedelta
from pathlib import Path

import pytest
from builders import T0

from steward.audit.records import AuditAction, AuditRecord, DeploymentRef, RecordDraft, seal
from steward.audit.store import LocalFolderStore, RecordExists, StoreUnavailable, record_name
from steward.audit.verify import verify

CREDIT = DeploymentRef(namespace="risk", name="credit", uid="u1")
FRAUD = DeploymentRef(namespace="payments", name="fraud", uid="u2")


def chain(ref: DeploymentRef, n: int) -> list[AuditRecord]:
    records: list[AuditRecord] = []
    for i in range(n):
        draft = RecordDraft(deployment=ref, action=AuditAction.DEPLOYED, reason=f"step {i}", cause=f"c{i}")
        records.append(seal(draft, records[-1] if records else None, T0 + timedelta(seconds=i)))
    return records


def stored(store: LocalFolderStore, records: list[AuditRecord]) -> list[AuditRecord]:
    for record in records:
        store.append(record)
    return records


def test_records_round_trip_in_sequence_order(tmp_path: Path) -> None:
    store = LocalFolderStore(tmp_path / "audit")
    records = stored(store, chain(CREDIT, 12))  # past 9: names must sort numerically

    back = store.read("risk/credit")
    assert back == records
    assert verify("risk/credit", back).ok
    assert (tmp_path / "audit" / "risk" / "credit" / record_name(12)).exists()


def test_a_missing_folder_reads_as_empty(tmp_path: Path) -> None:
    store = LocalFolderStore(tmp_path / "nothing-yet")
    assert store.deployments() == []
    assert store.read("risk/credit") == []


def test_a_taken_sequence_number_raises_and_keeps_the_first_record(tmp_path: Path) -> None:
    store = LocalFolderStore(tmp_path)
    first = stored(store, chain(CREDIT, 2))
    path = tmp_path / "risk" / "credit" / record_name(2)
    before = path.read_bytes()
    rival = seal(
        RecordDraft(deployment=CREDIT, action=AuditAction.ABORTED, reason="rival", cause="rival"),
        first[0],
        T0 + timedelta(minutes=1),
    )

    with pytest.raises(RecordExists, match="risk/credit seq 2"):
        store.append(rival)
    assert path.read_bytes() == before
    assert store.read("risk/credit") == first


def test_record_files_are_created_read_only(tmp_path: Path) -> None:
    store = LocalFolderStore(tmp_path)
    stored(store, chain(CREDIT, 2))

    files = sorted((tmp_path / "risk" / "credit").iterdir())
    assert [f.name for f in files] == [record_name(1), record_name(2)]
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH) == 0


def test_deployments_lists_every_trail(tmp_path: Path) -> None:
    store = LocalFolderStore(tmp_path)
    stored(store, chain(CREDIT, 1))
    stored(store, chain(FRAUD, 2))
    stored(store, chain(DeploymentRef(namespace="risk", name="credit-v2"), 1))

    assert store.deployments() == ["payments/fraud", "risk/credit", "risk/credit-v2"]
    assert [r.seq for r in store.read("payments/fraud")] == [1, 2]


def test_an_unwritable_root_is_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    store = LocalFolderStore(blocker / "audit")

    with pytest.raises(StoreUnavailable, match=r"cannot (create|write) the audit folder"):
        store.append(chain(CREDIT, 1)[0])


class _CrashingFile:
    """A file whose write stops halfway, as a process killed mid-write leaves it."""

    def __init__(self, real: object) -> None:
        self.real = real

    def __enter__(self) -> _CrashingFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.real.close()  # type: ignore[attr-defined]

    def write(self, data: bytes) -> int:
        self.real.write(data[: len(data) // 2])  # type: ignore[attr-defined]
        raise OSError(5, "crash mid-write")


def test_a_write_cut_off_midway_leaves_no_record_and_the_trail_writable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalFolderStore(tmp_path)
    first = chain(CREDIT, 1)[0]
    real_fdopen = os.fdopen
    monkeypatch.setattr(os, "fdopen", lambda fd, mode: _CrashingFile(real_fdopen(fd, mode)))

    with pytest.raises(StoreUnavailable):
        store.append(first)

    monkeypatch.setattr(os, "fdopen", real_fdopen)
    assert store.read("risk/credit") == []  # no torn record blocks the reader
    store.append(first)  # nor the next writer of that position
    assert store.read("risk/credit") == [first]


def test_a_stray_temp_file_from_a_crash_is_not_a_record(tmp_path: Path) -> None:
    store = LocalFolderStore(tmp_path)
    folder = tmp_path / "risk" / "credit"
    folder.mkdir(parents=True)
    (folder / f".{record_name(1)}.x1y2.tmp").write_bytes(b"")

    records = stored(store, chain(CREDIT, 2))
    assert store.read("risk/credit") == records
