"""The router's decisions and measurements, as pure functions (no Ray): which version answers a request,
whether it is mirrored to the shadow version, whether two answers agree, and the counts behind `/-/stats`.
"""

from __future__ import annotations

import bisect
import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from steward.api.rollout import Stickiness
from steward.api.serve_app import (
    LATENCY_BUCKETS_MS,
    CaptureStats,
    InRouterStats,
    PairCounts,
    ShadowConfig,
    TrafficCounts,
    TrafficStats,
)

# Predictions are floats computed by the same kind of code on different machines: equal up to rounding.
REL_TOLERANCE = 1e-9
_MISSING = object()


# ------------------------------------------------------------------------------------------- sticky keys


def _key_text(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value or None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        # A JSON client may send customer 42 as 42 or 42.0; both must be the same caller.
        return str(int(value)) if value.is_integer() else repr(value)
    # None, lists and objects identify no caller.
    return None


def _first(value: Any) -> Any:
    if isinstance(value, list):
        return value[0] if value else _MISSING
    return value


def _from_columns_or_rows(data: Any, field_name: str) -> Any:
    # `inputs` / `instances`: a dict of columns, or a list of records.
    if isinstance(data, dict):
        return _first(data.get(field_name, _MISSING))
    if isinstance(data, list) and data and isinstance(data[0], dict):
        return data[0].get(field_name, _MISSING)
    return _MISSING


def _from_split(split: Any, field_name: str) -> Any:
    if not isinstance(split, dict):
        return _MISSING
    columns, rows = split.get("columns"), split.get("data")
    if not isinstance(columns, list) or field_name not in columns or not isinstance(rows, list) or not rows:
        return _MISSING
    index = columns.index(field_name)
    row = rows[0]
    if isinstance(row, list):
        return row[index] if index < len(row) else _MISSING
    # A single-column split may list bare values.
    return row if len(columns) == 1 else _MISSING


def key_from_payload(payload: Mapping[str, Any], field_name: str) -> str | None:
    """The sticky key in any MLflow scoring format: the field's value in the first row; None when absent."""
    if "dataframe_records" in payload:
        records = payload["dataframe_records"]
        first = records[0] if isinstance(records, list) and records else None
        value = first.get(field_name, _MISSING) if isinstance(first, dict) else _MISSING
    elif "dataframe_split" in payload:
        value = _from_split(payload["dataframe_split"], field_name)
    elif "inputs" in payload:
        value = _from_columns_or_rows(payload["inputs"], field_name)
    elif "instances" in payload:
        value = _from_columns_or_rows(payload["instances"], field_name)
    else:
        value = _MISSING
    return None if value is _MISSING else _key_text(value)


def key_from_headers(headers: Mapping[str, str], header: str) -> str | None:
    wanted = header.lower()
    for name, value in headers.items():
        if name.lower() == wanted:
            return value.strip() or None
    return None


def sticky_key(
    stickiness: Stickiness | None, headers: Mapping[str, str], payload: Mapping[str, Any]
) -> str | None:
    if stickiness is None:
        return None
    if stickiness.header is not None:
        return key_from_headers(headers, stickiness.header)
    if stickiness.field is not None:
        return key_from_payload(payload, stickiness.field)
    return None


# ------------------------------------------------------------------------------------------ version choice


def key_bucket(key: str) -> int:
    """0..99, the same in every process: Python's hash() is salted per process, so two router replicas
    would send one caller to different versions."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % 100


def _newest_first(version: str) -> tuple[int, int, str]:
    try:
        return (0, -int(version), version)
    except ValueError:
        # Registry versions are integers; anything else goes after them, in a fixed order.
        return (1, 0, version)


def choose_version(weights: Mapping[str, int], key: str | None, rand: float) -> str | None:
    """The version that answers: by the key's bucket when there is a key, else by `rand` in [0, 1).

    Versions are laid out newest first on 0..100, so the newest version owns the lowest buckets: a caller
    on the new version at 10% is still on it at 50%, and at 0% nobody reaches it.
    """
    live = sorted(((v, w) for v, w in weights.items() if w > 0), key=lambda vw: _newest_first(vw[0]))
    total = sum(w for _, w in live)
    if total == 0:
        return None
    share = key_bucket(key) / 100 if key is not None else rand
    point = share * total
    upper = 0
    for version, weight in live:
        upper += weight
        if point < upper:
            return version
    return live[-1][0]  # rand == 1.0 exactly, or rounding at the top end


def should_shadow(shadow: ShadowConfig | None, chosen: str | None, rand: float) -> bool:
    """Mirror this request? Never to the version that already answers it."""
    if shadow is None or chosen is None or chosen == shadow.version:
        return False
    return rand * 100 < shadow.percent


# ------------------------------------------------------------------------------------------------ agreement


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
            return True
        return math.isclose(a, b, rel_tol=REL_TOLERANCE, abs_tol=0.0)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and bool(a == b)


def answers_agree(
    primary_status: int, primary_body: Mapping[str, Any], shadow_status: int, shadow_body: Mapping[str, Any]
) -> bool:
    """Whether the challenger would have told the caller the same thing; a failed challenger disagrees."""
    if primary_status != 200 or shadow_status != 200:
        return False
    if "predictions" not in primary_body or "predictions" not in shadow_body:
        return False
    return _same(primary_body["predictions"], shadow_body["predictions"])


# ------------------------------------------------------------------------------------------------- counts


def latency_bucket(latency_ms: float) -> int:
    """Index of the bucket holding `latency_ms`: bucket i holds (bound[i-1], bound[i]]."""
    return bisect.bisect_left(LATENCY_BUCKETS_MS, latency_ms)


def _empty_buckets() -> list[int]:
    return [0] * (len(LATENCY_BUCKETS_MS) + 1)


@dataclass
class VersionCounts:
    requests: int = 0
    errors: int = 0
    rejected: int = 0
    latency_ms_buckets: list[int] = field(default_factory=_empty_buckets)

    def observe(self, status: int, latency_ms: float | None) -> None:
        """`latency_ms` None: counted, but not in the latency histogram (a warm-up answer)."""
        self.requests += 1
        if status >= 500:
            self.errors += 1
        elif status >= 400:
            self.rejected += 1
        if latency_ms is not None:
            self.latency_ms_buckets[latency_bucket(latency_ms)] += 1

    def add(self, other: VersionCounts) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.rejected += other.rejected
        self.latency_ms_buckets = [
            a + b for a, b in zip(self.latency_ms_buckets, other.latency_ms_buckets, strict=True)
        ]

    def to_api(self) -> TrafficCounts:
        return TrafficCounts(
            requests=self.requests,
            errors=self.errors,
            rejected=self.rejected,
            latency_ms_buckets=list(self.latency_ms_buckets),
        )


@dataclass
class CaptureCounts:
    """Captured requests written to the monitoring store, and dropped (buffer full, store down, no key)."""

    written: int = 0
    dropped: int = 0
    last_error: str | None = None

    def add(self, other: CaptureCounts) -> None:
        self.written += other.written
        self.dropped += other.dropped
        self.last_error = other.last_error or self.last_error

    def to_api(self) -> CaptureStats:
        return CaptureStats(written=self.written, dropped=self.dropped, last_error=self.last_error)


@dataclass
class InRouterCounts:
    """Answers of the in-router model, its loads, failed loads and calls that went to the handle instead."""

    answered: dict[str, int] = field(default_factory=dict)
    on_loop: int = 0
    loads: int = 0
    load_failures: int = 0
    fallbacks: int = 0
    last_error: str | None = None

    def add(self, other: InRouterCounts) -> None:
        for version, n in other.answered.items():
            self.answered[version] = self.answered.get(version, 0) + n
        self.on_loop += other.on_loop
        self.loads += other.loads
        self.load_failures += other.load_failures
        self.fallbacks += other.fallbacks
        self.last_error = other.last_error or self.last_error

    def is_empty(self) -> bool:
        return not (self.answered or self.loads or self.load_failures or self.fallbacks or self.last_error)

    def to_api(self) -> InRouterStats:
        return InRouterStats(
            answered=dict(sorted(self.answered.items())),
            on_loop=self.on_loop,
            loads=self.loads,
            load_failures=self.load_failures,
            fallbacks=self.fallbacks,
            last_error=self.last_error,
        )


@dataclass
class Counts:
    """Traffic figures: a router's delta since its last flush, or the recorder's totals (same shape)."""

    live: dict[str, VersionCounts] = field(default_factory=dict)
    shadow: dict[str, VersionCounts] = field(default_factory=dict)
    # shadow version -> [compared, disagreed]
    pairs: dict[str, list[int]] = field(default_factory=dict)
    # None until a router with capture configured reports.
    capture: CaptureCounts | None = None
    # None until a router with an in-router model reports.
    in_router: InRouterCounts | None = None

    def observe(self, version: str, status: int, latency_ms: float | None, *, shadow: bool = False) -> None:
        counts = self.shadow if shadow else self.live
        counts.setdefault(version, VersionCounts()).observe(status, latency_ms)

    def compare(self, shadow_version: str, agree: bool) -> None:
        pair = self.pairs.setdefault(shadow_version, [0, 0])
        pair[0] += 1
        if not agree:
            pair[1] += 1

    def add(self, other: Counts) -> None:
        for mine, theirs in ((self.live, other.live), (self.shadow, other.shadow)):
            for version, counts in theirs.items():
                mine.setdefault(version, VersionCounts()).add(counts)
        for version, (compared, disagreed) in other.pairs.items():
            pair = self.pairs.setdefault(version, [0, 0])
            pair[0] += compared
            pair[1] += disagreed
        if other.capture is not None:
            if self.capture is None:
                self.capture = CaptureCounts()
            self.capture.add(other.capture)
        if other.in_router is not None:
            if self.in_router is None:
                self.in_router = InRouterCounts()
            self.in_router.add(other.in_router)

    def is_empty(self) -> bool:
        return not (self.live or self.shadow or self.pairs or self.capture or self.in_router)

    def to_stats(self, recorder_id: str) -> TrafficStats:
        return TrafficStats(
            recorder_id=recorder_id,
            live={v: c.to_api() for v, c in sorted(self.live.items())},
            shadow={v: c.to_api() for v, c in sorted(self.shadow.items())},
            pairs={v: PairCounts(compared=p[0], disagreed=p[1]) for v, p in sorted(self.pairs.items())},
            capture=None if self.capture is None else self.capture.to_api(),
            in_router=None if self.in_router is None else self.in_router.to_api(),
        )
