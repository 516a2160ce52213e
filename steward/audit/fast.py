"""What verification needs of one stored record, without building a pydantic model for it (pure).

`verify` checks each record's hash over the canonical form of its content. The writer computes that hash over
pydantic's JSON form of the record, so a record can be hashed straight from its parsed JSON only when that
JSON is already in pydantic's form: every field present with the type pydantic would keep, nothing it would
refuse or rewrite. `view` checks exactly that, field by field; anything else (an older writer's form, a value
pydantic would coerce, a field it would fill in, anything odd) goes through pydantic, so both paths reach the
same verdict on every record and only the common case is faster (about 3x: this is what lets `verify` read a
million records in the time allowed).

At a million records the per-call set-up of the stdlib's one-shot helpers is a large share of the work:
`json.loads(raw, parse_constant=...)` builds a decoder and `JSONEncoder.encode` builds a C encoder on every
call. Both are built once here and their C parts called directly (measured: 27 -> 18 us a record).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any, NamedTuple

from steward.audit.records import AuditAction, AuditRecord, record_hash
from steward.audit.store import parse_record

_ACTIONS = frozenset(action.value for action in AuditAction)
_FIELDS = frozenset(
    {"deployment", "actor", "action", "model", "reason", "evidence", "cause", "seq", "timestamp"}
    | {"prev_hash", "hash", "signature"}
)
_DEPLOYMENT_FIELDS = frozenset(("namespace", "name", "uid"))
_MODEL_FIELDS = frozenset(("name", "from_version", "to_version"))
_OPTIONAL_STR = frozenset((str, type(None)))  # `type(x) in _OPTIONAL_STR`: no call per field
# pydantic writes an aware UTC datetime as ...T12:00:00Z, with six fraction digits only when there are
# microseconds; any other spelling (an offset, a naive time) is left to pydantic.
_UTC_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{6})?Z")
# One encoder for every record: json.dumps with options builds a new encoder per call. Same output as
# records.canonical (sorted keys, no spaces, UTF-8), which the hash is defined over.
# allow_nan=False: an overflowing number (1e400) reads as inf, which pydantic writes as null; let it decide.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _refuse_constant(name: str) -> Any:
    # NaN and Infinity are not JSON: pydantic refuses them, so the slow path must be the one to decide.
    raise ValueError(name)


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)


def _c_parts() -> tuple[Callable[[str, int], tuple[Any, int]] | None, Callable[[Any], str]]:
    """The C scanner behind _DECODER and a C encoder with _CANONICAL's options (what `_CANONICAL.encode`
    builds on each call), or None and the plain encoder where the interpreter has no `_json`."""
    try:
        import _json
    except ImportError:  # pragma: no cover (CPython always has it)
        return None, _CANONICAL.encode
    c = _CANONICAL
    # No circular-reference markers: a value parsed from JSON cannot contain itself.
    encoder = _json.make_encoder(
        None, c.default, _json.encode_basestring, None, c.key_separator, c.item_separator, c.sort_keys,
        c.skipkeys, c.allow_nan,
    )  # fmt: skip

    def encode(value: Any) -> str:
        return "".join(encoder(value, 0))

    # The scanner takes its options from a decoder (typeshed types that argument as a scanner).
    return _json.make_scanner(_DECODER), encode  # type: ignore[arg-type]


_SCAN, _ENCODE = _c_parts()


class RecordView(NamedTuple):
    # A tuple, not a frozen dataclass: built once per record, and a frozen dataclass costs 2 us to build.
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


def _parse(raw: bytes) -> Any:
    """The JSON value of `raw`, or None when it is not one in the form pydantic writes (UTF-8, nothing before
    or after the value): the caller then leaves the record to pydantic."""
    try:
        # Strict UTF-8: json.loads would also take UTF-16 and lone surrogates, which pydantic refuses.
        text = raw.decode()
        if _SCAN is None:  # pragma: no cover
            return _DECODER.decode(text)
        data, end = _SCAN(text, 0)
    except (ValueError, StopIteration):  # StopIteration: no JSON value at the start
        return None
    return data if end == len(text) else None


def _fast_view(raw: bytes) -> RecordView | None:
    """None when the record is not in pydantic's own form (the caller then asks pydantic)."""
    data = _parse(raw)
    if not _pydantic_form(data):
        return None
    hashed, signature = data.pop("hash"), data.pop("signature")
    try:
        body = _ENCODE(data).encode()
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
        and type(deployment["uid"]) in _OPTIONAL_STR
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
        and type(data["signature"]) in _OPTIONAL_STR
    )


def _model_form(model: Any) -> bool:
    return (
        type(model) is dict
        and model.keys() == _MODEL_FIELDS
        and type(model["name"]) is str
        and type(model["from_version"]) in _OPTIONAL_STR
        and type(model["to_version"]) in _OPTIONAL_STR
    )


def _utc_timestamp(text: str) -> bool:
    if _UTC_TIMESTAMP.fullmatch(text) is None or text.endswith(".000000Z"):
        return False
    try:
        datetime.fromisoformat(text)  # a real date and time (no 30 February), as pydantic requires
    except ValueError:
        return False
    return True
