"""The monitor store against a real S3 endpoint (moto server): bytes, listing, partitions, missing keys."""

from __future__ import annotations

import io
import socket
from collections.abc import Iterator
from datetime import UTC, datetime

import boto3
import pandas as pd
import pytest
from moto.server import ThreadedMotoServer

from steward.monitors import store


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def s3_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    for name, value in {
        "AWS_ENDPOINT_URL_S3": endpoint,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="mon")
    try:
        yield endpoint
    finally:
        server.stop()


def parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    return buffer.getvalue()


def test_s3_round_trip_listing_and_partitions(s3_endpoint: str) -> None:
    prefix = "s3://mon/steward/ns/credit/v1"
    for day, n in (("2026-03-01", 2), ("2026-03-02", 3), ("2026-03-03", 4)):
        store.write_bytes(f"{prefix}/date={day}/part-0.parquet", parquet(pd.DataFrame({"x": range(n)})))
    store.write_bytes("s3://mon/steward/ns/credit/v10/date=2026-03-02/p.parquet", b"other version")
    keys = store.list_keys(prefix)
    assert len(keys) == 3 and all(k.startswith(f"{prefix}/date=") for k in keys)
    chosen = store.partitions_between(
        keys, datetime(2026, 3, 1, 12, tzinfo=UTC), datetime(2026, 3, 3, 0, 0, tzinfo=UTC)
    )
    assert [store.partition_date(k).isoformat() for k in chosen] == ["2026-03-01", "2026-03-02"]  # type: ignore[union-attr]
    assert len(store.read_frames(chosen)) == 5
    frame, digest = store.read_table(prefix)
    assert len(frame) == 9 and len(digest) == 64
    assert store.read_bytes("s3://mon/steward/ns/credit/v10/date=2026-03-02/p.parquet") == b"other version"


def test_s3_missing_and_unreadable_are_store_errors(s3_endpoint: str) -> None:
    with pytest.raises(store.Missing):
        store.read_bytes("s3://mon/nothing/here.json")
    store.write_bytes("s3://mon/bad/date=2026-03-01/x.parquet", b"not parquet")
    with pytest.raises(store.StoreError, match=r"x\.parquet"):
        store.read_frames(store.list_keys("s3://mon/bad"))
    assert store.list_keys("s3://mon/empty") == []
