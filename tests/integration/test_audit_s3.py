"""The S3 audit store against a real S3 endpoint (the session's moto server): records round-trip, a taken
sequence number is never overwritten, tampering through the raw S3 API is caught by `verify`, and an
unreachable endpoint fails fast as StoreUnavailable."""

from __future__ import annotations

import socket
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from steward.audit.records import AuditAction, AuditRecord, DeploymentRef, ModelVersions, RecordDraft, seal
from steward.audit.s3_store import S3Store
from steward.audit.store import RecordExists, StoreUnavailable
from steward.audit.verify import BreakKind, verify

pytestmark = pytest.mark.integration

# The bucket the session's `s3_env` fixture creates. Not imported from conftest: when this file is run
# together with tests/unit, `import conftest` resolves to the unit conftest.
BUCKET = "steward-artifacts"

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
CREDIT = DeploymentRef(namespace="risk", name="credit", uid="u1")
FRAUD = DeploymentRef(namespace="payments", name="fraud", uid="u2")
KEY = b"audit-secret"


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def chain(ref: DeploymentRef, n: int, key: bytes | None = None) -> list[AuditRecord]:
    records: list[AuditRecord] = []
    for i in range(n):
        draft = RecordDraft(
            deployment=ref,
            action=AuditAction.DEPLOYED if i else AuditAction.CREATED,
            model=ModelVersions(
                name="credit-risk", from_version=str(i) if i else None, to_version=str(i + 1)
            ),
            reason=f"step {i}",
            evidence={"step": i, "note": "ünïcode ok"},
            cause=f"cause-{i}",
        )
        records.append(seal(draft, records[-1] if records else None, T0 + timedelta(seconds=i), key))
    return records


@pytest.fixture
def s3(s3_env: dict[str, str]) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=s3_env["MLFLOW_S3_ENDPOINT_URL"],
        region_name=s3_env["AWS_DEFAULT_REGION"],
        aws_access_key_id=s3_env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=s3_env["AWS_SECRET_ACCESS_KEY"],
    )


@pytest.fixture
def store(s3: Any) -> S3Store:
    return S3Store(BUCKET, prefix=f"audit-{uuid.uuid4().hex[:12]}", client=s3)


def stored(store: S3Store, records: list[AuditRecord]) -> list[AuditRecord]:
    for record in records:
        store.append(record)
    return records


def raw_body(s3: Any, key: str) -> bytes:
    body: bytes = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    return body


def test_records_round_trip_and_verify(store: S3Store, s3: Any) -> None:
    records = stored(store, chain(CREDIT, 5, KEY))

    back = store.read("risk/credit")
    assert back == records
    assert verify("risk/credit", back, KEY).ok
    head = s3.head_object(Bucket=BUCKET, Key=f"{store.base}risk/credit/000000000003.json")
    assert head["ContentType"] == "application/json"
    assert raw_body(s3, store.key("risk/credit", 3)) == records[2].model_dump_json().encode()


def test_an_empty_prefix_has_no_trails(store: S3Store) -> None:
    assert store.deployments() == []
    assert store.read("risk/credit") == []


def test_a_taken_sequence_number_is_never_overwritten(store: S3Store, s3: Any) -> None:
    first = stored(store, chain(CREDIT, 2))
    before = raw_body(s3, store.key("risk/credit", 2))
    rival = seal(
        RecordDraft(deployment=CREDIT, action=AuditAction.ABORTED, reason="rival writer", cause="rival"),
        first[0],
        T0 + timedelta(minutes=5),
    )
    assert rival.seq == 2

    with pytest.raises(RecordExists, match="risk/credit seq 2"):
        store.append(rival)
    with pytest.raises(RecordExists):
        store.append(first[1])  # the very same record again: still refused

    assert raw_body(s3, store.key("risk/credit", 2)) == before
    assert store.read("risk/credit") == first


def test_deployments_lists_every_trail(store: S3Store) -> None:
    stored(store, chain(CREDIT, 2))
    stored(store, chain(FRAUD, 3))
    stored(store, chain(DeploymentRef(namespace="risk", name="credit-v2"), 1))

    assert store.deployments() == ["payments/fraud", "risk/credit", "risk/credit-v2"]
    assert [r.seq for r in store.read("risk/credit")] == [1, 2]  # credit-v2 is not part of credit's trail
    assert [r.seq for r in store.read("payments/fraud")] == [1, 2, 3]


def test_an_edit_through_the_raw_api_is_detected(store: S3Store, s3: Any) -> None:
    records = stored(store, chain(CREDIT, 4))
    edited = records[1].model_copy(update={"reason": "nothing to see here"})
    s3.put_object(Bucket=BUCKET, Key=store.key("risk/credit", 2), Body=edited.model_dump_json().encode())

    result = verify("risk/credit", store.read("risk/credit"))
    assert result.first_break is not None
    assert (result.first_break.kind, result.first_break.position, result.first_break.seq) == (
        BreakKind.EDITED,
        2,
        2,
    )


def test_a_rehashed_forgery_without_the_key_is_detected(store: S3Store, s3: Any) -> None:
    records = stored(store, chain(CREDIT, 3, KEY))
    draft = RecordDraft(**records[1].model_dump(include=set(RecordDraft.model_fields)))
    forged = seal(draft.model_copy(update={"reason": "forged"}), records[0], records[1].timestamp)
    s3.put_object(Bucket=BUCKET, Key=store.key("risk/credit", 2), Body=forged.model_dump_json().encode())

    back = store.read("risk/credit")
    assert verify("risk/credit", back).first_break is not None  # seq 3 no longer chains to seq 2
    result = verify("risk/credit", back, KEY)
    assert result.first_break is not None
    assert (result.first_break.kind, result.first_break.position) == (BreakKind.UNSIGNED, 2)


def test_a_deletion_through_the_raw_api_is_detected(store: S3Store, s3: Any) -> None:
    stored(store, chain(CREDIT, 4))
    s3.delete_object(Bucket=BUCKET, Key=store.key("risk/credit", 2))

    back = store.read("risk/credit")
    assert [r.seq for r in back] == [1, 3, 4]
    result = verify("risk/credit", back)
    assert result.first_break is not None
    assert (result.first_break.kind, result.first_break.position, result.first_break.seq) == (
        BreakKind.MISSING,
        2,
        3,
    )


def test_swapped_bodies_are_detected(store: S3Store, s3: Any) -> None:
    stored(store, chain(CREDIT, 4))
    key2, key3 = store.key("risk/credit", 2), store.key("risk/credit", 3)
    body2, body3 = raw_body(s3, key2), raw_body(s3, key3)
    s3.put_object(Bucket=BUCKET, Key=key2, Body=body3)
    s3.put_object(Bucket=BUCKET, Key=key3, Body=body2)

    result = verify("risk/credit", store.read("risk/credit"))
    assert result.first_break is not None
    assert (result.first_break.kind, result.first_break.position, result.first_break.seq) == (
        BreakKind.REORDERED,
        2,
        3,
    )


def test_a_missing_bucket_is_unavailable_and_says_how_to_fix_it(s3: Any) -> None:
    store = S3Store("no-such-audit-bucket", client=s3)
    with pytest.raises(StoreUnavailable, match=r"no-such-audit-bucket.*create it"):
        store.append(chain(CREDIT, 1)[0])
    with pytest.raises(StoreUnavailable, match="create it"):
        store.read("risk/credit")
    with pytest.raises(StoreUnavailable, match="create it"):
        store.deployments()


@pytest.fixture
def aws_env(s3_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        monkeypatch.setenv(name, s3_env[name])


def test_an_unreachable_endpoint_fails_fast(aws_env: None) -> None:
    endpoint = f"http://127.0.0.1:{unused_port()}"  # nothing listens there
    store = S3Store(BUCKET, endpoint_url=endpoint)

    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match=rf"{BUCKET}.*{endpoint}.*unreachable") as exc:
        store.append(chain(CREDIT, 1)[0])
    assert time.monotonic() - started < 8
    assert "check the S3 endpoint URL" in str(exc.value)

    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="unreachable"):
        store.read("risk/credit")
    assert time.monotonic() - started < 8

    with pytest.raises(StoreUnavailable, match="unreachable"):
        store.deployments()


def test_the_default_client_talks_to_the_endpoint(aws_env: None, s3_env: dict[str, str]) -> None:
    store = S3Store(BUCKET, f"audit-{uuid.uuid4().hex[:12]}", endpoint_url=s3_env["MLFLOW_S3_ENDPOINT_URL"])
    records = stored(store, chain(FRAUD, 2))
    assert store.read("payments/fraud") == records
    assert store.deployments() == ["payments/fraud"]


def test_with_object_lock_records_survive_raw_overwrites_and_deletes(s3: Any) -> None:
    """The WORM setup from the docs: COMPLIANCE retention keeps every original version."""
    bucket = f"audit-locked-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    s3.put_object_lock_configuration(
        Bucket=bucket,
        ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 1}},
        },
    )
    store = S3Store(bucket, client=s3)
    records = stored(store, chain(CREDIT, 3))
    key = store.key("risk/credit", 2)
    assert s3.head_object(Bucket=bucket, Key=key)["ObjectLockMode"] == "COMPLIANCE"

    s3.put_object(Bucket=bucket, Key=key, Body=b'{"forged": true}')  # a newer version, not a replacement
    versions = s3.list_object_versions(Bucket=bucket, Prefix=key)["Versions"]
    assert len(versions) == 2
    for version in versions:
        with pytest.raises(s3.exceptions.ClientError, match="AccessDenied"):
            s3.delete_object(Bucket=bucket, Key=key, VersionId=version["VersionId"])
    [original] = [v for v in versions if not v["IsLatest"]]
    body = s3.get_object(Bucket=bucket, Key=key, VersionId=original["VersionId"])["Body"].read()
    assert AuditRecord.model_validate_json(body) == records[1]
