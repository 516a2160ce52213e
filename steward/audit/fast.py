"""What verification needs of one stored record, without building a pydantic model for it (pure).

`verify` checks each record's hash over the canonical form of its content. The writer computes that hash over
pydantic's JSON form of the record, so a record can be hashed straight from its parsed JSON only when that
JSON is already in pydantic's form: every field present with the type pydantic would keep, nothing it would
refuse or rewrite. `view` checks exactly that, field by field; anything else (an older writer's form, a value
pydantic would coerce, a field it would fill in, anything odd) goes through pydantic, so both paths reach the
same verdict on every record and only the common case is faster (about 3x: this is what lets `verify` read a
million records in the time allowed).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from steward.audit.records import AuditAction, AuditRecord, record_hash
from steward.audit.store import parse_record

_ACTIONS = frozenset(action.value for action in AuditAction)
_FIELDS = frozenset(
    {"deployment", "actor", "action", "model", "reason", "evidence", "cause", "seq", "timestamp"}
    | {"prev_hash", "hash", "signature"}
)
_DEPLOYMENT_FIELDS = frozenset(("namespace", "name", "uid"))
_MODEL_FIELDS = frozenset(("name", "from_version", "to_version"))
# pydantic writes an aware UTC datetime as ...T12:00:00Z, with six fraction digits only when there are
# microseconds; any other spelling (an offset, a naive time) is left to pydantic.
_UTC_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{6})?Z")
# One encoder for every record: json.dumps with options builds a new encoder per call. Same output as
# records.canonical (sorted keys, no spaces, UTF-8), which the hash is defined over.
# allow_nan=False: an overflowing number (1e400) reads as inf, which pydantic writes as null; let it decide.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


@dataclass(frozen=True, slots=True)
class RecordView:
    deployment: str  # namespace/name
    seq: int
    timestamp: str  # as stored (history's window search compares these)
    prev_hash: str
    hash: str
    signature: str | None
    content_ok: bool  # the content matches its hash (records.record_hash(record) == record.hash)


def view_of(record: AuditRecord) -> RecordView:
    return RecordView(
        deployment=record.deployment.key,
        seq=record.seq,
        timestamp=record.timestamp.isoformat(),
        prev_hash=record.prev_hash,
        hash=record.hash,
        signature=record.signature,
        content_ok=record_hash(record) == record.hash,
    )


def view(raw: bytes, where: str, deployment: str | None = None) -> RecordView:
    """The record stored as `raw`; CorruptRecord (from the store's parser) when it is not a record at all."""
    fast = _fast_view(raw)
    return fast if fast is not None else view_of(parse_record(raw, where, deployment))


def _refuse_constant(name: str) -> Any:
    # NaN and Infinity are not JSON: pydantic refuses them, so the slow path must be the one to decide.
    raise ValueError(name)


def _fast_view(raw: bytes) -> RecordView | None:
    """None when the record is not in pydantic's own form (the caller then asks pydantic)."""
    try:
        data = json.loads(raw, parse_constant=_refuse_constant)
    except ValueError:
        return None
    if not _pydantic_form(data):
        return None
    hashed, signature = data.pop("hash"), data.pop("signature")
    try:
        body = _CANONICAL.encode(data).encode()
    except ValueError:
        return None  # a lone surrogate (UnicodeEncodeError) or an infinite number: pydantic decides
    deployment = data["deployment"]
    return RecordView(
        deployment=f"{deployment['namespace']}/{deployment['name']}",
        seq=data["seq"],
        timestamp=data["timestamp"],
        prev_hash=data["prev_hash"],
        hash=hashed,
        signature=signature,
        content_ok=hashlib.sha256(body).hexdigest() == hashed,
    )


def _pydantic_form(data: Any) -> bool:
    """Would pydantic read this record and write back the very same JSON values? (records.AuditRecord)"""
    if type(data) is not dict or data.keys() != _FIELDS:
        return False
    deployment, model, seq, timestamp = data["deployment"], data["model"], data["seq"], data["timestamp"]
    return (
        type(deployment) is dict
        and deployment.keys() == _DEPLOYMENT_FIELDS
        and type(deployment["namespace"]) is str
        and type(deployment["name"]) is str
        and _optional_str(deployment["uid"])
        and type(data["actor"]) is str
        and data["action"] in _ACTIONS
        and (model is None or _model_form(model))
        and type(data["reason"]) is str
        and type(data["evidence"]) is dict  # dict[str, Any]: JSON values are kept as they are
        and type(data["cause"]) is str
        and data["cause"] != ""
        and type(seq) is int  # not bool, not 3.0: pydantic would turn those into another value
        and seq >= 1
        and type(timestamp) is str
        and _utc_timestamp(timestamp)
        and type(data["prev_hash"]) is str
        and type(data["hash"]) is str
        and _optional_str(data["signature"])
    )


def _model_form(model: Any) -> bool:
    return (
        type(model) is dict
        and model.keys() == _MODEL_FIELDS
        and type(model["name"]) is str
        and _optional_str(model["from_version"])
        and _optional_str(model["to_version"])
    )


def _optional_str(value: Any) -> bool:
    return value is None or type(value) is str


def _utc_timestamp(text: str) -> bool:
    if _UTC_TIMESTAMP.fullmatch(text) is None or text.endswith(".000000Z"):
        return False
    try:
        datetime.fromisoformat(text)  # a real date and time (no 30 February), as pydantic requires
    except ValueError:
        return False
    return True
