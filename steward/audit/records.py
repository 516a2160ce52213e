"""Audit records and their hash chain (pure).

Each record carries the hash of the one before it in the same deployment's trail, so editing, deleting,
inserting or reordering any record breaks the chain at a position `verify` reports. With an HMAC key (from
a Secret) each record is also signed, so a forger who recomputes the hashes cannot produce valid signatures.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

GENESIS = "0" * 64
OPERATOR_ACTOR = "steward-operator"


class AuditAction(StrEnum):
    CREATED = "created"
    SPEC_CHANGED = "spec-changed"
    DELETED = "deleted"
    DEPLOYED = "deployed"
    DEPLOY_FAILED = "deploy-failed"
    ALIAS_MOVED = "alias-moved"
    ROLLOUT_STARTED = "rollout-started"
    ROLLOUT_STEP = "rollout-step"
    ANALYSIS_VERDICT = "analysis-verdict"
    PROMOTED = "promoted"
    ABORTED = "aborted"
    ROLLED_BACK = "rolled-back"
    MONITOR_RUN = "monitor-run"
    VIOLATION_DETECTED = "violation-detected"
    POLICY_ACTION = "policy-action"
    RETRAINING_REQUESTED = "retraining-requested"
    RETRAINING_OUTCOME = "retraining-outcome"
    RETRAINING_APPROVED = "retraining-approved"
    RETRAINING_STARTED = "retraining-started"
    RETRAINING_FINISHED = "retraining-finished"
    CANDIDATE_EVALUATED = "candidate-evaluated"
    CANDIDATE_ROLLOUT = "candidate-rollout"


class DeploymentRef(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    namespace: str
    name: str
    uid: str | None = None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


class ModelVersions(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    from_version: str | None = None
    to_version: str | None = None

    def span(self, arrow: str = "->") -> str:
        """`3 -> 4` for a change of version, `4` when only one side is known."""
        if self.from_version is not None and self.to_version is not None:
            return f"{self.from_version} {arrow} {self.to_version}"
        return self.to_version or self.from_version or ""


class RecordDraft(BaseModel):
    """What the operator knows when something happens; the trail numbers, chains and signs it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    deployment: DeploymentRef
    actor: str = OPERATOR_ACTOR
    action: AuditAction
    model: ModelVersions | None = None
    reason: str
    evidence: dict[str, Any] = {}
    # What caused this record, unique within the deployment's trail: replaying the same cause adds nothing.
    cause: Annotated[str, Field(min_length=1)]

    @property
    def identity(self) -> tuple[str | None, str]:
        """What makes a record a replay: the same cause for the same object. A resource deleted and
        re-created under the same name shares its trail but not its uid, so its records are new."""
        return self.deployment.uid, self.cause


class AuditRecord(RecordDraft):
    seq: Annotated[int, Field(ge=1)]
    timestamp: datetime
    prev_hash: str
    hash: str
    signature: str | None = None

    def body_bytes(self) -> bytes:
        return canonical(self.model_dump(mode="json", exclude={"hash", "signature"}))


def canonical(value: Any) -> bytes:
    """One byte string per value, whoever serialises it: sorted keys, no spaces, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def record_hash(record: AuditRecord) -> str:
    return hashlib.sha256(record.body_bytes()).hexdigest()


def sign(digest: str, key: bytes) -> str:
    return hmac.new(key, digest.encode(), hashlib.sha256).hexdigest()


def seal(
    draft: RecordDraft, prev: AuditRecord | None, now: datetime, key: bytes | None = None
) -> AuditRecord:
    """The next record of a trail: numbered after `prev`, chained to its hash, signed when a key is given."""
    unsealed = AuditRecord(
        **draft.model_dump(),
        seq=1 if prev is None else prev.seq + 1,
        timestamp=now,
        prev_hash=GENESIS if prev is None else prev.hash,
        hash="",
    )
    digest = record_hash(unsealed)
    return unsealed.model_copy(update={"hash": digest, "signature": sign(digest, key) if key else None})
