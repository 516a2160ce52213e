"""`steward history`, `steward audit verify` and `steward audit export` read the operator's S3 bucket (flags
or the operator's STEWARD_AUDIT_S3_* variables), and `verify --all` finds trails cut off at their end."""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer
from typer.testing import CliRunner

from steward.api.model_deployment import AuditTrailStatus, ModelDeployment
from steward.audit.records import AuditAction, AuditRecord, DeploymentRef, RecordDraft, seal
from steward.audit.s3_store import S3Store
from steward.audit.store import AuditStore, LocalFolderStore, record_name
from steward.cli.main import app
from steward.dev.store import LocalStore

runner = CliRunner()
PREFIX = "trails/prod"
T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port())
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> S3Store:
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")):
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    bucket = f"audit-{uuid.uuid4().hex[:12]}"  # one per test: the server lives for the module
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
    return S3Store(bucket, PREFIX, endpoint_url=endpoint)


def write_trail(store: AuditStore, name: str, n: int) -> list[AuditRecord]:
    records: list[AuditRecord] = []
    for i in range(n):
        draft = RecordDraft(
            deployment=DeploymentRef(namespace="risk", name=name, uid="uid-1"),
            actor="alice",
            action=AuditAction.CREATED if i == 0 else AuditAction.SPEC_CHANGED,
            reason=f"change {i + 1} of {name}",
            evidence={},
            cause=f"c{i}",
        )
        records.append(seal(draft, records[-1] if records else None, T0 + timedelta(minutes=i)))
        store.append(records[-1])
    return records


def record_status(home: Path, name: str, recorded_seq: int) -> None:
    """The resource as the loop keeps it, with how far its trail went."""
    store = LocalStore(home)
    md = ModelDeployment.model_validate(
        {
            "apiVersion": "steward.io/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": name, "namespace": "risk"},
            "spec": {"model": {"name": "credit-risk", "version": "4"}},
        }
    )
    obj = store.admit(md, T0)
    audit = AuditTrailStatus(recorded_seq=recorded_seq)
    store.put(replace(obj, status=obj.status.model_copy(update={"audit": audit})))


def run(*args: str, env: dict[str, str] | None = None) -> Any:
    return runner.invoke(app, list(args), env=env, catch_exceptions=False)


def test_history_verify_and_export_read_the_bucket_named_by_flags(
    s3: S3Store, endpoint: str, tmp_path: Path
) -> None:
    records = write_trail(s3, "credit", 3)
    flags = ["-n", "risk", "--home", str(tmp_path), "--s3-bucket", s3.bucket, "--s3-prefix", PREFIX]
    flags += ["--s3-endpoint", endpoint]
    shown = run("history", "credit", *flags)
    assert shown.exit_code == 0, shown.output
    assert "change 3 of credit" in shown.output
    verified = run("audit", "verify", "credit", *flags)
    assert verified.exit_code == 0, verified.output
    assert "3 records" in verified.output
    exported = run("audit", "export", "credit", "--format", "json", *flags)
    assert exported.exit_code == 0, exported.output
    assert [r["hash"] for r in json.loads(exported.output)] == [r.hash for r in records]
    # Nothing of it is in the local folder: the answers came from the bucket.
    assert not (tmp_path / "audit").exists()


def test_the_operators_environment_names_the_bucket_too(s3: S3Store, endpoint: str, tmp_path: Path) -> None:
    write_trail(s3, "credit", 2)
    write_trail(s3, "ranker", 1)
    env = {
        "STEWARD_AUDIT_S3_BUCKET": s3.bucket,
        "STEWARD_AUDIT_S3_PREFIX": PREFIX,
        "STEWARD_AUDIT_S3_ENDPOINT": endpoint,
    }
    result = run("audit", "verify", "--all", "--home", str(tmp_path), env=env)
    assert result.exit_code == 0, result.output
    assert "2 trail(s), 0 broken" in result.output


def test_verify_all_finds_a_trail_cut_off_at_its_end_in_the_bucket(
    s3: S3Store, endpoint: str, tmp_path: Path
) -> None:
    write_trail(s3, "credit", 4)
    write_trail(s3, "ranker", 2)
    record_status(tmp_path, "credit", 4)
    record_status(tmp_path, "ranker", 2)
    flags = [
        "--home",
        str(tmp_path),
        "--s3-bucket",
        s3.bucket,
        "--s3-prefix",
        PREFIX,
        "--s3-endpoint",
        endpoint,
    ]
    assert run("audit", "verify", "--all", *flags).exit_code == 0
    for seq in (4, 3):
        s3.client.delete_object(Bucket=s3.bucket, Key=s3.key("risk/credit", seq))
    result = run("audit", "verify", "--all", *flags)
    assert result.exit_code == 1, result.output
    assert "ends at seq 2 but status.audit.recordedSeq is 4" in result.output
    assert "2 trail(s), 1 broken" in result.output


def test_verify_all_finds_a_local_trail_cut_off_at_its_end(tmp_path: Path) -> None:
    write_trail(LocalFolderStore(tmp_path / "audit"), "credit", 3)
    record_status(tmp_path, "credit", 3)
    (tmp_path / "audit" / "risk" / "credit" / record_name(3)).unlink()
    result = run("audit", "verify", "--all", "--home", str(tmp_path))
    assert result.exit_code == 1, result.output
    assert "records 3..3 are missing" in result.output
