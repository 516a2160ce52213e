"""Capture without Ray: sampling, the privacy policy, sensitive features kept from the model, and the writer's
bounded buffer and store failures (which never reach a request)."""

from __future__ import annotations

import copy
import io
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pandas as pd
import pytest
from moto.server import ThreadedMotoServer

from steward.api.monitoring import CaptureSpec
from steward.serving.capture import (
    NO_HASH_KEY,
    PROBA_FIELD,
    Captured,
    Policy,
    input_rows,
    keyed_hash,
    read_hash_key,
    records,
    sampled,
    sane_request_id,
    without_fields,
)
from steward.serving.capture_writer import CaptureWriter, Counters, encode_parquet

KEY = b"k" * 32
SPEC = CaptureSpec.model_validate(
    {
        "sampleRate": 1.0,
        "fields": {"customer_id": "hash", "name": "drop"},
        "sensitiveFeatures": ["gender"],
    }
)
HASH_ENV = {"STEWARD_CAPTURE_HASH_KEY": KEY.decode()}


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("abc-123", "abc-123"),
        ("x" * 128, "x" * 128),
        ("x" * 129, None),
        ("", None),
        (None, None),
        ("has space", None),
        ("tab\there", None),
        ("é", None),
    ],
)
def test_a_callers_request_id_is_kept_only_when_sane(given: str | None, expected: str | None) -> None:
    assert sane_request_id(given) == expected


def test_sampling_is_deterministic_in_the_id_and_close_to_the_rate() -> None:
    ids = [uuid.uuid4().hex for _ in range(20_000)]
    at_10 = [i for i in ids if sampled(i, 0.1)]
    assert abs(len(at_10) / len(ids) - 0.1) < 0.01
    # The same id, the same answer, in any process: the operator and monitors can recompute it.
    assert at_10 == [i for i in ids if sampled(i, 0.1)]
    assert sampled("request-42", 0.5) == sampled("request-42", 0.5)
    # Nested: what 10% records, 50% records too.
    assert all(sampled(i, 0.5) for i in at_10)
    assert not any(sampled(i, 0.0) for i in ids[:1000])
    assert all(sampled(i, 1.0) for i in ids[:1000])


def test_the_hash_key_comes_from_the_environment_or_a_file(tmp_path: Path) -> None:
    assert read_hash_key({"STEWARD_CAPTURE_HASH_KEY": "secret"}) == (b"secret", None)
    (tmp_path / "key").write_text("from-file\n")
    assert read_hash_key({"STEWARD_CAPTURE_HASH_KEY_PATH": str(tmp_path / "key")}) == (b"from-file", None)
    assert read_hash_key({}) == (None, None)
    key, problem = read_hash_key({"STEWARD_CAPTURE_HASH_KEY_PATH": str(tmp_path / "missing")})
    assert key is None and problem is not None and "missing" in problem
    (tmp_path / "empty").write_text("\n")
    key, problem = read_hash_key({"STEWARD_CAPTURE_HASH_KEY_PATH": str(tmp_path / "empty")})
    assert key is None and problem is not None and "empty" in problem


def test_the_policy_keeps_drops_and_hashes_with_a_stable_keyed_hmac() -> None:
    policy = Policy(SPEC, KEY)
    assert policy.apply("income", 52000.0) == (True, 52000.0)
    assert policy.apply("name", "Ada") == (False, None)
    recorded, hashed = policy.apply("customer_id", "C-1001")
    assert recorded and hashed != "C-1001" and len(hashed) == 64
    # Stable across replicas and restarts (same key), whatever JSON made of the number.
    assert Policy(SPEC, KEY).apply("customer_id", "C-1001") == (True, hashed)
    assert policy.apply("customer_id", 42) == policy.apply("customer_id", 42.0)
    # Another key, another hash: without the key nobody can recompute it.
    assert Policy(SPEC, b"other key").apply("customer_id", "C-1001")[1] != hashed
    assert hashed == keyed_hash(KEY, "C-1001")
    # No key: a field meant to be hashed is never recorded in clear.
    assert Policy(SPEC, None).apply("customer_id", "C-1001") == (False, None)


PAYLOADS: list[dict[str, Any]] = [
    {"dataframe_records": [{"income": 1.0, "gender": "f"}, {"income": 2.0, "gender": "m"}]},
    {"dataframe_split": {"columns": ["income", "gender"], "data": [[1.0, "f"], [2.0, "m"]]}},
    {"inputs": {"income": [1.0, 2.0], "gender": ["f", "m"]}},
    {"instances": [{"income": 1.0, "gender": "f"}, {"income": 2.0, "gender": "m"}]},
]


@pytest.mark.parametrize("payload", PAYLOADS, ids=lambda p: next(iter(p)))
def test_sensitive_features_are_removed_from_the_model_input_in_every_format(payload: dict[str, Any]) -> None:
    original = copy.deepcopy(payload)
    model_input, removed = without_fields(payload, ["gender"])
    assert "gender" not in str(model_input) and "'f'" not in str(model_input)
    assert input_rows(model_input) == [{"income": 1.0}, {"income": 2.0}]
    assert removed == [{"gender": "f"}, {"gender": "m"}]
    # The caller's payload is left alone (the shadow call and the sticky key read it).
    assert payload == original


def test_records_apply_the_policy_and_name_columns_as_the_contract_says() -> None:
    model_input, sensitive = without_fields(
        {"dataframe_records": [{"income": 1.0, "customer_id": "C-1", "name": "Ada", "gender": "f"}]},
        ["gender"],
    )
    body = {"predictions": [1], PROBA_FIELD: [{"0": 0.2, "1": 0.8}]}
    [row] = records(
        Captured("rid-1", 1_700_000_000.0, "3", 200, 4.5, model_input, sensitive, body), Policy(SPEC, KEY)
    )
    assert row["request_id"] == "rid-1" and row["version"] == "3" and row["status"] == 200
    assert row["timestamp"].tzinfo is not None and row["latency_ms"] == 4.5
    assert row["input.income"] == 1.0 and row["input.customer_id"] == keyed_hash(KEY, "C-1")
    assert "input.name" not in row and "input.gender" not in row
    assert row["sensitive.gender"] == "f"
    assert (row["prediction"], row["proba.0"], row["proba.1"]) == (1, 0.2, 0.8)


def test_named_outputs_and_failed_requests_become_rows_too() -> None:
    named = {"predictions": [{"cultivar": 2, "score": 0.5}]}
    [row] = records(Captured("r", 0.0, "1", 200, 1.0, {"inputs": {"x": 1}}, [], named), Policy(SPEC, KEY))
    assert (row["output.cultivar"], row["output.score"], row["input.x"]) == (2, 0.5, 1)
    failed = {"error": {"code": "INVALID_INPUT"}}
    [row] = records(Captured("r", 0.0, "1", 422, 1.0, {"inputs": {"x": "a"}}, [], failed), Policy(SPEC, KEY))
    assert row["status"] == 422 and "prediction" not in row


def entry(rid: str, customer: str = "C-1001", at: float | None = None) -> Captured:
    model_input, sensitive = without_fields(
        {"dataframe_records": [{"income": 5.0, "customer_id": customer, "name": "Ada", "gender": "f"}]},
        ["gender"],
    )
    return Captured(rid, at or time.time(), "2", 200, 3.0, model_input, sensitive, {"predictions": [0]})


def writer(tmp_path: Path, counters: Counters, **kwargs: Any) -> CaptureWriter:
    options: dict[str, Any] = {"replica_id": "r1", "environ": HASH_ENV, "start": False, **kwargs}
    return CaptureWriter("ns/credit", str(tmp_path / "store"), SPEC, counters, **options)


def test_flushed_rows_land_as_parquet_in_the_versions_date_partition(tmp_path: Path) -> None:
    counters = Counters()
    w = writer(tmp_path, counters)
    w.offer(entry("a", at=1_767_225_600.0), 100)  # 2026-01-01T00:00:00Z
    w.offer(entry("b", at=1_767_225_601.0), 100)
    w.flush()
    [path] = list((tmp_path / "store/ns/credit/v2/date=2026-01-01").glob("*.parquet"))
    assert path.name.endswith("-r1-000001.parquet")
    raw = path.read_bytes()
    assert b"C-1001" not in raw and b"Ada" not in raw  # hashed and dropped fields never reach the store
    frame = pd.read_parquet(io.BytesIO(raw))
    assert list(frame["request_id"]) == ["a", "b"]
    assert set(frame.columns) >= {"input.income", "input.customer_id", "sensitive.gender", "prediction"}
    assert str(frame["timestamp"].dt.tz) == "UTC"
    delta = counters.take()
    assert (delta.written, delta.dropped, delta.last_error) == (2, 0, None)
    assert not list(tmp_path.rglob(".*"))  # no temporary file left behind


def test_without_a_hash_key_nothing_is_recorded_and_stats_say_why(tmp_path: Path) -> None:
    counters = Counters()
    w = writer(tmp_path, counters, environ={})
    assert w.disabled == NO_HASH_KEY
    w.offer(entry("a"), 100)
    w.flush()
    assert not (tmp_path / "store").exists()
    delta = counters.take()
    assert (delta.written, delta.dropped, delta.last_error) == (0, 1, NO_HASH_KEY)


def test_a_policy_that_hashes_nothing_needs_no_key(tmp_path: Path) -> None:
    counters = Counters()
    spec = CaptureSpec.model_validate({"sampleRate": 1.0, "fields": {"name": "drop"}})
    w = CaptureWriter("ns/credit", str(tmp_path), spec, counters, replica_id="r", environ={}, start=False)
    w.offer(entry("a"), 10)
    w.flush()
    assert counters.take().written == 1


def test_the_buffer_is_bounded_and_counts_what_it_drops(tmp_path: Path) -> None:
    counters = Counters()
    w = writer(tmp_path, counters, max_requests=3)
    for i in range(5):
        w.offer(entry(f"r{i}"), 10)
    assert (counters.take().dropped, len(w._buffer)) == (2, 3)
    by_size = writer(tmp_path, counters, max_bytes=1000)
    for i in range(4):
        by_size.offer(entry(f"s{i}"), 400)
    delta = counters.take()
    assert delta.dropped == 2 and delta.last_error is not None and "buffer full" in delta.last_error


def test_a_failing_store_costs_the_batch_never_the_caller(tmp_path: Path) -> None:
    def down(uri: str, data: bytes) -> None:
        raise ConnectionError("store is down")

    counters = Counters()
    w = writer(tmp_path, counters, put=down)
    w.offer(entry("a"), 10)
    w.offer(entry("b"), 10)
    w.flush()  # raises nothing
    delta = counters.take()
    assert (delta.written, delta.dropped) == (0, 2)
    assert delta.last_error is not None and "store is down" in delta.last_error
    # The next batch is tried afresh.
    w.offer(entry("c"), 10)
    w.flush()
    assert counters.take().dropped == 1


def test_a_local_store_that_cannot_be_written_is_counted(tmp_path: Path) -> None:
    (tmp_path / "store").write_text("a file where the folder should be")
    counters = Counters()
    w = writer(tmp_path, counters)
    w.offer(entry("a"), 10)
    w.flush()
    delta = counters.take()
    assert delta.dropped == 1 and delta.last_error is not None and "could not write" in delta.last_error


def test_the_writers_thread_flushes_on_its_own_and_on_close(tmp_path: Path) -> None:
    counters = Counters()
    w = writer(tmp_path, counters, start=True, flush_s=0.05)
    w.offer(entry("a"), 10)
    deadline = time.monotonic() + 5
    while not list(tmp_path.rglob("*.parquet")) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(list(tmp_path.rglob("*.parquet"))) == 1
    w.offer(entry("b"), 10)
    w.close()
    assert counters.take().written == 2


def test_a_field_sent_as_number_and_text_is_written_as_text() -> None:
    frame = pd.read_parquet(io.BytesIO(encode_parquet([{"input.x": 1}, {"input.x": "one"}, {"other": None}])))
    assert list(frame["input.x"].iloc[:2]) == ["1", "one"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


S3_ENV = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str]]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    for name, value in S3_ENV.items():
        monkeypatch.setenv(name, value)
    # Moto's backends are per process, shared by every server: a bucket of this test's own.
    bucket = f"mon-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
    try:
        yield endpoint, bucket
    finally:
        server.stop()


def test_captured_rows_reach_a_real_s3_endpoint(s3: tuple[str, str]) -> None:
    endpoint, bucket = s3
    counters = Counters()
    environ = {**HASH_ENV, "MLFLOW_S3_ENDPOINT_URL": endpoint}
    w = CaptureWriter(
        "ns/credit", f"s3://{bucket}/steward", SPEC, counters, replica_id="r1", environ=environ, start=False
    )
    w.offer(entry("a"), 10)
    w.flush()
    assert counters.take().written == 1
    client = boto3.client("s3", endpoint_url=endpoint)
    [key] = [o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]]
    assert key.startswith("steward/ns/credit/v2/date=") and key.endswith("-r1-000001.parquet")
    frame = pd.read_parquet(io.BytesIO(client.get_object(Bucket=bucket, Key=key)["Body"].read()))
    assert list(frame["request_id"]) == ["a"]


def test_an_unreachable_s3_endpoint_costs_a_batch_quickly(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in S3_ENV.items():
        monkeypatch.setenv(name, value)
    counters = Counters()
    environ = {**HASH_ENV, "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{free_port()}"}  # nobody listens
    w = CaptureWriter(
        "ns/credit", "s3://mon/steward", SPEC, counters, replica_id="r", environ=environ, start=False
    )
    w.offer(entry("a"), 10)
    started = time.monotonic()
    w.flush()
    assert time.monotonic() - started < 15  # two short attempts, not a retry storm
    delta = counters.take()
    assert (delta.written, delta.dropped) == (0, 1) and delta.last_error is not None
