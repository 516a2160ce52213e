"""What the router records of a request for monitoring, as pure functions: which requests are sampled, what
the privacy policy keeps of each field, which fields never reach the model, and the rows written to the store.

No I/O and no Ray here (steward.serving.capture_writer buffers and writes the rows). The request path only
strips sensitive features and hands a `Captured` to the writer; the policy and the row building run on the
writer's thread, off the request path.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from steward.api.monitor_results import CaptureColumn
from steward.api.monitoring import CaptureSpec, FieldPolicy

HASH_KEY_ENV = "STEWARD_CAPTURE_HASH_KEY"
HASH_KEY_PATH_ENV = "STEWARD_CAPTURE_HASH_KEY_PATH"
NO_HASH_KEY = "capture disabled: no hash key (set STEWARD_CAPTURE_HASH_KEY_PATH on the Ray cluster)"
MAX_REQUEST_ID = 128
# Internal field a version application may add to its answer (class -> probability per row); the router
# records it and strips it before answering.
PROBA_FIELD = "_steward_proba"
_FORMATS = ("dataframe_records", "dataframe_split", "inputs", "instances")


# ------------------------------------------------------------------------------------------- request ids


def sane_request_id(given: str | None) -> str | None:
    """The caller's id if it can be echoed and logged safely: 1..128 printable ASCII characters."""
    if not given or len(given) > MAX_REQUEST_ID:
        return None
    if not all(" " < ch <= "~" for ch in given):
        return None
    return given


def sampled(request_id: str, rate: float) -> bool:
    """Deterministic in the id alone, so a monitor or the operator can tell which requests were recorded."""
    if rate <= 0:
        return False
    if rate >= 1:
        return True
    digest = hashlib.sha256(request_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") < rate * 2**64


# ------------------------------------------------------------------------------------------------ policy


def read_hash_key(environ: Mapping[str, str] | None = None) -> tuple[bytes | None, str | None]:
    """(key, problem): the key from STEWARD_CAPTURE_HASH_KEY, else from the file STEWARD_CAPTURE_HASH_KEY_PATH
    names. Read once per writer: a key that changed mid-stream would split one customer into two hashes."""
    env = os.environ if environ is None else environ
    if env.get(HASH_KEY_ENV):
        return env[HASH_KEY_ENV].encode("utf-8"), None
    path = env.get(HASH_KEY_PATH_ENV)
    if not path:
        return None, None
    try:
        key = Path(path).read_bytes().strip()
    except OSError as exc:
        return None, f"capture disabled: cannot read the hash key at {path}: {exc.strerror or exc}"
    return (key, None) if key else (None, f"capture disabled: the hash key file {path} is empty")


def needs_key(spec: CaptureSpec) -> bool:
    return spec.default_policy == FieldPolicy.HASH or FieldPolicy.HASH in spec.fields.values()


def _canonical(value: Any) -> str:
    # One text per value whatever the JSON spelling: 42 and 42.0 are the same customer.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def keyed_hash(key: bytes, value: Any) -> str:
    return hmac.new(key, _canonical(value).encode("utf-8"), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Policy:
    spec: CaptureSpec
    key: bytes | None

    def apply(self, name: str, value: Any, default: FieldPolicy | None = None) -> tuple[bool, Any]:
        """(recorded?, value as recorded). Without a key a hashed field is never recorded."""
        policy = self.spec.fields.get(name, default or self.spec.default_policy)
        if policy == FieldPolicy.DROP:
            return False, None
        if policy == FieldPolicy.HASH:
            if self.key is None:
                return False, None
            return True, None if value is None else keyed_hash(self.key, value)
        return True, value


# ------------------------------------------------------------------------------------ payload (any format)


def _rows_of_columns(columns: Mapping[str, Any]) -> list[dict[str, Any]]:
    lengths = {len(v) for v in columns.values() if isinstance(v, list)}
    if not lengths:
        return [dict(columns)]  # one row of scalars
    n = max(lengths)
    return [
        {k: (v[i] if i < len(v) else None) if isinstance(v, list) else v for k, v in columns.items()}
        for i in range(n)
    ]


def input_rows(payload: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The named input rows of an MLflow scoring payload; [] when it has no named columns (a tensor)."""
    for fmt in _FORMATS:
        if fmt not in payload:
            continue
        data = payload[fmt]
        if fmt == "dataframe_split":
            if not isinstance(data, dict) or not isinstance(data.get("columns"), list):
                return []
            columns, rows = data["columns"], data.get("data") or []
            if not isinstance(rows, list):
                return []
            return [dict(zip(columns, row if isinstance(row, list) else [row], strict=False)) for row in rows]
        if isinstance(data, dict):
            return _rows_of_columns(data)
        if isinstance(data, list):
            return [dict(row) for row in data if isinstance(row, dict)]
        return []
    return []


def without_fields(
    payload: Mapping[str, Any], names: list[str]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(the payload without `names`, per row the values removed): what the model gets and what fairness
    checks get. A new payload: the caller's is left as it was (a shadow call may still read it)."""
    wanted = set(names)
    out = dict(payload)
    for fmt in _FORMATS:
        if fmt not in payload:
            continue
        data = payload[fmt]
        if fmt == "dataframe_split" and isinstance(data, dict) and isinstance(data.get("columns"), list):
            columns = data["columns"]
            drop = [i for i, c in enumerate(columns) if c in wanted]
            given = data.get("data")
            # A single-column split may list bare values.
            rows = [r if isinstance(r, list) else [r] for r in given] if isinstance(given, list) else []
            kept = [i for i in range(len(columns)) if i not in drop]
            out[fmt] = {
                **data,
                "columns": [columns[i] for i in kept],
                "data": [[row[i] for i in kept if i < len(row)] for row in rows],
            }
            return out, [{columns[i]: row[i] for i in drop if i < len(row)} for row in rows]
        if isinstance(data, dict):
            removed_columns = {k: v for k, v in data.items() if k in wanted}
            out[fmt] = {k: v for k, v in data.items() if k not in wanted}
            return out, _rows_of_columns(removed_columns) if removed_columns else []
        if isinstance(data, list):
            removed = [
                {k: v for k, v in r.items() if k in wanted} if isinstance(r, dict) else {} for r in data
            ]
            out[fmt] = [
                {k: v for k, v in r.items() if k not in wanted} if isinstance(r, dict) else r for r in data
            ]
            return out, removed
        return out, []
    return out, []


def strip_sensitive(
    spec: CaptureSpec | None, payload: dict[str, Any]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    if spec is None or not spec.sensitive_features:
        return payload, []
    return without_fields(payload, spec.sensitive_features)


def _output_rows(predictions: Any) -> list[dict[str, Any]]:
    if isinstance(predictions, dict):
        return [
            {CaptureColumn.OUTPUT + k: v for k, v in row.items()} for row in _rows_of_columns(predictions)
        ]
    if not isinstance(predictions, list):
        return [{CaptureColumn.PREDICTION: _scalar(predictions)}]
    return [
        {CaptureColumn.OUTPUT + k: _scalar(v) for k, v in p.items()}
        if isinstance(p, dict)
        else {CaptureColumn.PREDICTION: _scalar(p)}
        for p in predictions
    ]


def _scalar(value: Any) -> Any:
    # A cell of a Parquet column: nested values (a tensor row) are kept as JSON text.
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return json.dumps(value, default=str)


# ---------------------------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class Captured:
    """What the request path hands over: references only, no copies, no policy applied yet."""

    request_id: str
    at: float
    version: str
    status: int
    latency_ms: float
    # What the model was given (sensitive features already removed) and what they were, per row.
    payload: Mapping[str, Any]
    sensitive: list[dict[str, Any]]
    body: Mapping[str, Any]


def records(entry: Captured, policy: Policy) -> list[dict[str, Any]]:
    """The Parquet rows of one request: one per input row, every row with the request's id."""
    inputs = input_rows(entry.payload)
    outputs = _output_rows(entry.body["predictions"]) if "predictions" in entry.body else []
    probas = entry.body.get(PROBA_FIELD)
    n = max(len(inputs), len(outputs), len(entry.sensitive), 1)
    stamp = datetime.fromtimestamp(entry.at, UTC)
    rows: list[dict[str, Any]] = []
    for i in range(n):
        row: dict[str, Any] = {
            CaptureColumn.REQUEST_ID: entry.request_id,
            CaptureColumn.TIMESTAMP: stamp,
            CaptureColumn.VERSION: entry.version,
            CaptureColumn.STATUS: entry.status,
            CaptureColumn.LATENCY_MS: entry.latency_ms,
        }
        for name, value in (inputs[i] if i < len(inputs) else {}).items():
            recorded, shown = policy.apply(name, value)
            if recorded:
                row[CaptureColumn.INPUT + str(name)] = _scalar(shown)
        for name, value in (entry.sensitive[i] if i < len(entry.sensitive) else {}).items():
            # Kept as given unless the policy names the field: fairness needs the groups themselves.
            recorded, shown = policy.apply(name, value, FieldPolicy.KEEP)
            if recorded:
                row[CaptureColumn.SENSITIVE + str(name)] = _scalar(shown)
        if i < len(outputs):
            row.update(outputs[i])
        if isinstance(probas, list) and i < len(probas) and isinstance(probas[i], dict):
            row.update({CaptureColumn.PROBA + str(k): v for k, v in probas[i].items()})
        rows.append(row)
    return rows
