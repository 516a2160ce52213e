"""Where audit records live: the store contract and the local-folder store.

A store never overwrites: `append` of a sequence number that is already stored raises `RecordExists`, so two
writers racing for the same position cannot both win, and nobody can rewrite history through the store's API.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Protocol

from steward.audit.records import AuditRecord


class StoreUnavailable(Exception):
    """The store cannot be reached or refused for a reason that may pass: retry, keep the record buffered."""


class CorruptRecord(StoreUnavailable):
    """A stored object is not an audit record at all: nothing can be chained after it until a person looks."""


def parse_record(raw: bytes, where: str, deployment: str | None = None) -> AuditRecord:
    """A stored record, or CorruptRecord with what to do about it: the message ends up in the
    ModelDeployment's condition and Event, where the person who has to fix it reads it."""
    if deployment is None:
        verify = "`steward audit verify NAME -n NAMESPACE`"
    else:
        namespace, name = deployment.split("/", 1)
        verify = f"`steward audit verify {name} -n {namespace}`"
    # Moved aside, not deleted: it is evidence of what happened, and readers look only at *.json.
    aside = f"rename it so that its name no longer ends in .json (e.g. {where}.empty)"
    if not raw.strip():
        raise CorruptRecord(
            f"audit record file {where} is empty: a write cut short by a crash (before records were "
            f"written atomically), and no record can follow it. Inspect it, then {aside}; the operator "
            f"then continues the trail from the record before it. {verify} shows the break"
        )
    try:
        return AuditRecord.model_validate_json(raw)
    except ValueError as exc:
        raise CorruptRecord(
            f"audit record file {where} is not a readable audit record ({exc.__class__.__name__}), and no "
            f"record can follow it. Inspect it: restore it from a backup, or, if it never was a record, "
            f"{aside.replace('.empty', '.corrupt')}. {verify} shows the break"
        ) from exc


class RecordExists(Exception):
    """Another writer already stored this sequence number."""


class AuditStore(Protocol):
    def deployments(self) -> list[str]:
        """Every trail in the store, as namespace/name."""
        ...

    def read(self, deployment: str) -> list[AuditRecord]:
        """One trail in stored order (by sequence number in the object name)."""
        ...

    def append(self, record: AuditRecord) -> None:
        """Store one record; raises RecordExists if its sequence number is taken."""
        ...


class RawTrails(Protocol):
    """Reading a trail one stored record at a time, as bytes: what `verify` and `history` need at scale."""

    def record_names(self, deployment: str, ordered: bool = True) -> list[str]:
        """The names of a trail's records in stored order (sequence order), or in any order when not
        `ordered` (sorting a million names takes longer than a window of them takes to read)."""
        ...

    def read_raw(self, deployment: str, names: Iterable[str]) -> Iterator[tuple[str, bytes]]:
        """(where, bytes) of each named record, in the order given; one gone since the listing is skipped."""
        ...


class TrailStore(AuditStore, RawTrails, Protocol):
    """A store the CLI reads: both stores are one."""


def record_name(seq: int) -> str:
    # Zero-padded so that lexical order (S3 listings, directory listings) is sequence order.
    return f"{seq:012d}.json"


class LocalFolderStore:
    """One file per record under `<root>/<namespace>/<name>/`, published atomically and never replaced."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _dir(self, deployment: str) -> Path:
        namespace, name = deployment.split("/", 1)
        return self.root / namespace / name

    def deployments(self) -> list[str]:
        if not self.root.exists():
            return []
        return sorted(
            f"{ns.name}/{d.name}" for ns in self.root.iterdir() if ns.is_dir() for d in ns.iterdir()
        )

    def read(self, deployment: str) -> list[AuditRecord]:
        names = self.record_names(deployment)
        return [parse_record(raw, where, deployment) for where, raw in self.read_raw(deployment, names)]

    def record_names(self, deployment: str, ordered: bool = True) -> list[str]:
        # Names, not Path objects: at a million records the Paths alone cost seconds.
        try:
            listed = os.listdir(self._dir(deployment))  # noqa: PTH208
        except FileNotFoundError:
            return []
        names = [name for name in listed if name.endswith(".json")]
        return sorted(names) if ordered else names

    def read_raw(self, deployment: str, names: Iterable[str]) -> Iterator[tuple[str, bytes]]:
        folder = self._dir(deployment)
        # Opened relative to the folder's descriptor: no path lookup per record.
        try:
            dir_fd = os.open(folder, os.O_RDONLY)
        except FileNotFoundError:
            return  # no trail (any more): every name is gone since the listing
        prefix = f"{folder}/"
        try:
            for name in names:
                try:
                    fd = os.open(name, os.O_RDONLY, dir_fd=dir_fd)
                except FileNotFoundError:
                    continue  # deleted since the listing: `verify` reports the gap as missing
                try:
                    data = _read_whole(fd)
                finally:
                    os.close(fd)
                yield prefix + name, data
        finally:
            os.close(dir_fd)

    def append(self, record: AuditRecord) -> None:
        folder = self._dir(record.deployment.key)
        final = folder / record_name(record.seq)
        data = record.model_dump_json().encode()
        try:
            folder.mkdir(parents=True, exist_ok=True)
            # Written whole under a name no reader looks at, then published: a crash leaves at most a stray
            # temp file, never a torn record that would block the trail.
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{final.name}.", suffix=".tmp")
        except OSError as exc:
            raise StoreUnavailable(f"cannot write the audit folder {folder}: {exc.strerror}") from exc
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fchmod(f.fileno(), 0o444)
                os.fsync(f.fileno())
            # link(), unlike rename(), refuses to replace an existing name: publishing is atomic and keeps
            # O_EXCL's promise that a stored sequence number is never overwritten.
            os.link(tmp, final)
            _fsync_dir(folder)
        except FileExistsError as exc:
            raise RecordExists(f"{record.deployment.key} seq {record.seq} is already stored") from exc
        except OSError as exc:
            raise StoreUnavailable(f"cannot write the audit folder {folder}: {exc.strerror}") from exc
        finally:
            Path(tmp).unlink(missing_ok=True)


_READ_SIZE = 4096


def _read_whole(fd: int) -> bytes:
    # A record is a few hundred bytes: one read of a page. A larger buffer costs more than the read itself
    # (measured on a million records: 64 KiB took 9.8 us a record, 4 KiB 5.8 us, open and close included).
    chunk = os.read(fd, _READ_SIZE)
    if len(chunk) < _READ_SIZE:
        return chunk
    chunks = [chunk]
    while chunk:
        chunk = os.read(fd, 1 << 16)
        chunks.append(chunk)
    return b"".join(chunks)


def _fsync_dir(folder: Path) -> None:
    """The new name itself must survive a power cut, not only the file's bytes."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
