"""Buffers captured requests in memory and writes them as Parquet to the monitoring store, off the request
path.

The request path only appends to a bounded buffer (`offer`); a thread of the writer applies the privacy
policy, builds the rows and writes one file per version and day every `flush_s`. A full buffer or a store that
is down costs the records, counted in `written`/`dropped`/`last_error`: never a request's time or answer.
"""

from __future__ import annotations

import io
import logging
import os
import re
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from steward.api.monitor_results import CaptureColumn, capture_prefix
from steward.api.monitoring import CaptureSpec
from steward.serving.capture import (
    NO_HASH_KEY,
    Captured,
    Policy,
    needs_key,
    read_hash_key,
    records,
    sampled,
)
from steward.serving.traffic import CaptureCounts, Counts

log = logging.getLogger(__name__)

FLUSH_S = 2.0
FLUSH_REQUESTS = 2000
MAX_BUFFERED_REQUESTS = 10_000
# Request bodies held at most: 10k requests of up to 10 MiB each would be 100 GiB.
MAX_BUFFERED_BYTES = 64 * 2**20
ENDPOINT_ENVS = ("AWS_ENDPOINT_URL_S3", "MLFLOW_S3_ENDPOINT_URL")
# Short, and one retry at most: a store that is down must cost a batch, not pile up waiting threads.
S3_TIMEOUT_S = 3.0

Put = Callable[[str, bytes], None]


class Counters:
    """Counts shared by the writer's thread and the router's flush (which takes them as a delta)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._delta = CaptureCounts()

    def written(self, n: int) -> None:
        with self._lock:
            self._delta.written += n

    def dropped(self, n: int, problem: str | None) -> None:
        with self._lock:
            self._delta.dropped += n
            if problem is not None:
                self._delta.last_error = problem

    def take(self) -> CaptureCounts:
        with self._lock:
            delta, self._delta = self._delta, CaptureCounts()
        return delta


# -------------------------------------------------------------------------------------------------- store


def _s3_put(endpoint: str | None) -> Put:
    client: Any = None

    def put(uri: str, data: bytes) -> None:
        nonlocal client
        if client is None:
            import boto3
            from botocore.config import Config

            config = Config(
                connect_timeout=S3_TIMEOUT_S,
                read_timeout=S3_TIMEOUT_S,
                retries={"mode": "standard", "total_max_attempts": 2},
            )
            client = boto3.client("s3", endpoint_url=endpoint, config=config)
        parsed = urlparse(uri)
        client.put_object(Bucket=parsed.netloc, Key=parsed.path.lstrip("/"), Body=data)

    return put


def _local_put(uri: str, data: bytes) -> None:
    path = Path(uri.removeprefix("file://"))
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write-then-rename: a monitor reading the folder never sees half a file.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def store_put(store_uri: str, environ: Mapping[str, str] | None = None) -> Put:
    env = os.environ if environ is None else environ
    if store_uri.startswith("s3://"):
        return _s3_put(next((env[n] for n in ENDPOINT_ENVS if env.get(n)), None))
    return _local_put


def encode_parquet(rows: list[dict[str, Any]]) -> bytes:
    import pyarrow as pa  # type: ignore[import-untyped]
    import pyarrow.parquet as pq  # type: ignore[import-untyped]

    names = list(dict.fromkeys(k for row in rows for k in row))
    columns = {name: [row.get(name) for row in rows] for name in names}
    arrays = {}
    for name, values in columns.items():
        try:
            arrays[name] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            # One field sent as a number by some callers and as text by others: text for this file.
            arrays[name] = pa.array([None if v is None else str(v) for v in values], pa.string())
    sink = io.BytesIO()
    pq.write_table(pa.table(arrays), sink)
    return sink.getvalue()


# ------------------------------------------------------------------------------------------------- writer


class CaptureWriter:
    def __init__(
        self,
        deployment: str,
        store_uri: str,
        spec: CaptureSpec,
        counters: Counters,
        *,
        replica_id: str,
        environ: Mapping[str, str] | None = None,
        put: Put | None = None,
        flush_s: float = FLUSH_S,
        flush_requests: int = FLUSH_REQUESTS,
        max_requests: int = MAX_BUFFERED_REQUESTS,
        max_bytes: int = MAX_BUFFERED_BYTES,
        start: bool = True,
    ) -> None:
        self.deployment = deployment
        self.store_uri = store_uri
        self.spec = spec
        self._counters = counters
        self._replica = re.sub(r"[^A-Za-z0-9_-]", "_", replica_id)[:64] or "replica"
        key, problem = read_hash_key(environ)
        # Never record a field meant to be hashed in clear: without its key, nothing is recorded.
        self.disabled: str | None = (problem or NO_HASH_KEY) if key is None and needs_key(spec) else None
        if self.disabled is not None:
            log.warning("%s: %s", deployment, self.disabled)
        elif problem is not None:
            log.warning("%s: %s (no field is hashed, so capture goes on)", deployment, problem)
        self._policy = Policy(spec, key)
        self._put = put or store_put(store_uri, environ)
        self._flush_s = flush_s
        self._flush_requests = flush_requests
        self._max_requests = max_requests
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        self._buffer: deque[Captured] = deque()
        self._bytes = 0
        self._seq = 0
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        if start:
            self._thread = threading.Thread(target=self._run, name=f"capture-{deployment}", daemon=True)
            self._thread.start()

    # --------------------------------------------------------------------------- request path (no I/O)

    def offer(self, entry: Captured, size: int) -> None:
        if self.disabled is not None:
            self._counters.dropped(1, self.disabled)
            return
        with self._lock:
            if len(self._buffer) >= self._max_requests or self._bytes + size > self._max_bytes:
                full = True
            else:
                full = False
                self._buffer.append(entry)
                self._bytes += size
                if len(self._buffer) >= self._flush_requests:
                    self._wake.set()
        if full:
            self._counters.dropped(1, "capture buffer full: the store is slower than the traffic")

    # ----------------------------------------------------------------------------- writer's thread

    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait(self._flush_s)
            self._wake.clear()
            self.flush()

    def close(self, timeout_s: float = 5.0) -> None:
        """Write what is buffered and stop the thread (a reconfigured router replaces its writer)."""
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        if self._thread is None or not self._thread.is_alive():
            self.flush()

    def flush(self) -> None:
        """Write every buffered request; never raises (a failed batch is dropped and counted)."""
        with self._lock:
            batch, self._buffer = self._buffer, deque()
            self._bytes = 0
        if not batch:
            return
        groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
        requests: dict[tuple[str, str], int] = {}
        for entry in batch:
            try:
                rows = records(entry, self._policy)
            except Exception as exc:  # noqa: BLE001 - one odd payload must not cost the whole batch
                log.warning("request %s: not captured: %s: %s", entry.request_id, type(exc).__name__, exc)
                self._counters.dropped(1, f"a request could not be recorded: {type(exc).__name__}")
                continue
            day = rows[0][CaptureColumn.TIMESTAMP].strftime("%Y-%m-%d")
            groups.setdefault((entry.version, day), []).extend(rows)
            requests[(entry.version, day)] = requests.get((entry.version, day), 0) + 1
        for (version, day), rows in groups.items():
            self._write(version, day, rows, requests[(version, day)])

    def _write(self, version: str, day: str, rows: list[dict[str, Any]], n_requests: int) -> None:
        self._seq += 1
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        prefix = capture_prefix(self.store_uri, self.deployment, version)
        uri = f"{prefix}/date={day}/{stamp}-{self._replica}-{self._seq:06d}.parquet"
        started = time.monotonic()
        try:
            self._put(uri, encode_parquet(rows))
        except Exception as exc:  # noqa: BLE001 - a store that is down costs this batch, never a request
            problem = f"could not write {uri}: {type(exc).__name__}: {exc}"[:500]
            log.warning("capture: %s (%d requests dropped)", problem, n_requests)
            self._counters.dropped(n_requests, problem)
            return
        log.debug("capture: %d rows to %s in %.0f ms", len(rows), uri, (time.monotonic() - started) * 1000)
        self._counters.written(n_requests)


class RouterCapture:
    """One router replica's capture: its writer, replaced when the config changes, and counters that
    outlive writers (the router sends them to the recorder with its traffic figures)."""

    def __init__(self, deployment: str) -> None:
        self.deployment = deployment
        self.counters = Counters()
        self.writer: CaptureWriter | None = None

    def reconfigure(
        self, spec: CaptureSpec | None, store_uri: str | None, replica_id: Callable[[], str]
    ) -> None:
        old = self.writer
        if old is not None and (old.spec, old.store_uri) == (spec, store_uri):
            return
        self.writer = None
        if spec is not None and store_uri is not None:
            self.writer = CaptureWriter(
                self.deployment, store_uri, spec, self.counters, replica_id=replica_id()
            )
        if old is not None:
            # Its last batch is written on a thread of its own: reconfigure must not wait for the store.
            threading.Thread(target=old.close, name="capture-close", daemon=True).start()

    def wants(self, spec: CaptureSpec | None, request_id: str) -> bool:
        """Will this request be recorded? (Asked before scoring: only then are probabilities computed.)"""
        return self.writer is not None and spec is not None and sampled(request_id, spec.sample_rate)

    def offer(self, spec: CaptureSpec | None, entry: Captured, size: int) -> None:
        """On the request path: a hash of the id and an append, nothing more."""
        writer = self.writer
        if writer is not None and self.wants(spec, entry.request_id):
            writer.offer(entry, size)

    def count_into(self, pending: Counts) -> None:
        delta = self.counters.take()
        if self.writer is None and not (delta.written or delta.dropped):
            return
        if pending.capture is None:
            pending.capture = CaptureCounts()
        pending.capture.add(delta)
