"""Appending to the audit trail: in order, once per cause, and never dropped.

A draft whose cause is already in the trail for the same object (uid) is skipped, so a replayed reconcile
adds nothing. A record the store cannot take (unreachable, refusing) stays buffered, in order, ahead of
any later draft of the same deployment, and every later call tries again first; `pending()` says how far
behind the trail is.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from steward.audit.diff import spec_changes
from steward.audit.records import AuditAction, AuditRecord, RecordDraft, seal
from steward.audit.store import AuditStore, RecordExists, StoreUnavailable

log = logging.getLogger(__name__)

_SPEC_ACTIONS = (AuditAction.CREATED, AuditAction.SPEC_CHANGED)


def identity(draft: RecordDraft) -> tuple[str | None, str]:
    return draft.identity


@dataclass
class _Tail:
    last: AuditRecord | None = None
    causes: set[tuple[str | None, str]] = field(default_factory=set)
    last_spec: dict[str, Any] | None = None

    def add(self, record: AuditRecord) -> None:
        self.last = record
        self.causes.add(identity(record))
        if record.action in _SPEC_ACTIONS and isinstance(record.evidence.get("spec"), dict):
            self.last_spec = record.evidence["spec"]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class AuditTrail:
    def __init__(
        self, store: AuditStore, key: bytes | None = None, clock: Callable[[], datetime] = _utcnow
    ) -> None:
        self.store = store
        self.key = key
        self.clock = clock
        self._tails: dict[str, _Tail] = {}
        self._pending: dict[str, list[RecordDraft]] = {}
        self._lock = threading.Lock()
        self.last_error: str | None = None
        # deployment -> why its buffered records are not stored yet
        self._errors: dict[str, str] = {}

    def pending(self, deployment: str) -> int:
        return len(self._pending.get(deployment, []))

    def pending_drafts(self, deployment: str) -> list[RecordDraft]:
        return list(self._pending.get(deployment, []))

    def error(self, deployment: str) -> str | None:
        """Why this deployment's trail is behind; None when it is not."""
        return self._errors.get(deployment) if self.pending(deployment) else None

    def last_seq(self, deployment: str) -> int:
        tail = self._tails.get(deployment)
        return tail.last.seq if tail is not None and tail.last is not None else 0

    def record(self, drafts: Iterable[RecordDraft]) -> list[RecordDraft]:
        """Queue drafts behind anything still buffered, then write as much as the store takes.

        Returns the drafts that were new to the trail (a replayed cause is not), stored or buffered.
        """
        with self._lock:
            accepted: list[RecordDraft] = []
            for draft in drafts:
                key = draft.deployment.key
                tail = self._tail_if_readable(key)
                queued = self._pending.get(key, [])
                if any(identity(d) == identity(draft) for d in queued) or (
                    tail and identity(draft) in tail.causes
                ):
                    continue  # a replay, before or after the store took the first one, is still one record
                self._pending.setdefault(key, []).append(draft)
                accepted.append(draft)
            for key in dict.fromkeys(d.deployment.key for d in accepted):
                self._flush(key)
            return accepted

    def flush(self, deployment: str) -> None:
        with self._lock:
            self._flush(deployment)

    def _tail_if_readable(self, deployment: str) -> _Tail | None:
        try:
            return self._tails.get(deployment) or self._load(deployment)
        except StoreUnavailable:
            return None  # decided at flush time, once the store answers

    def _load(self, deployment: str) -> _Tail:
        tail = _Tail()
        for record in self.store.read(deployment):
            tail.add(record)
        self._tails[deployment] = tail
        return tail

    def _flush(self, deployment: str) -> None:
        queue = self._pending.get(deployment, [])
        try:
            tail = self._tails.get(deployment) or self._load(deployment)
            while queue:
                draft = queue[0]
                if identity(draft) not in tail.causes:
                    record = seal(self._complete(draft, tail), tail.last, self.clock(), self.key)
                    try:
                        self.store.append(record)
                    except RecordExists:
                        # Another writer took this position: learn the trail as it is, then decide again.
                        tail = self._load(deployment)
                        continue
                    tail.add(record)
                queue.pop(0)
            self.last_error = None
            self._errors.pop(deployment, None)
        except StoreUnavailable as exc:
            self.last_error = self._errors[deployment] = str(exc)
            log.warning("audit trail of %s is %d record(s) behind: %s", deployment, len(queue), exc)
        if not queue:
            self._pending.pop(deployment, None)

    @staticmethod
    def _complete(draft: RecordDraft, tail: _Tail) -> RecordDraft:
        """Spec changes carry a readable diff against the last spec the trail recorded."""
        spec = draft.evidence.get("spec")
        if draft.action != AuditAction.SPEC_CHANGED or not isinstance(spec, dict):
            return draft
        return draft.model_copy(
            update={"evidence": {**draft.evidence, "changes": spec_changes(tail.last_spec, spec)}}
        )
