"""Reading monitor results from the store: a local folder and an S3 endpoint (moto server on a free port)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from moto.server import ThreadedMotoServer

from steward.adapters.errors import NotFound, Unreachable
from steward.adapters.monitoring_store import CorruptResult, MonitoringStore, s3_endpoint
from steward.api.monitor_results import MonitorResult, MonitorVerdict
from steward.api.monitoring import MonitorKind

RESULT = MonitorResult(
    monitor="drift",
    kind=MonitorKind.DRIFT,
    deployment="risk/credit",
    version="3",
    window_start=datetime(2026, 11, 23, 11, tzinfo=UTC),
    window_end=datetime(2026, 11, 23, 12, tzinfo=UTC),
    rows=5000,
    verdict=MonitorVerdict.BREACH,
    summary="income drifted",
    report_uri="s3://b/r/report.html",
    report_sha256="ab" * 32,
)
GOOD = RESULT.model_dump_json(by_alias=True).encode()
CORRUPT = [
    b"{not json",
    json.dumps({"monitor": "drift"}).encode(),
    json.dumps({**json.loads(GOOD), "verdict": "maybe"}).encode(),
]


def test_local_result_round_trips_and_missing_is_none(tmp_path: Path) -> None:
    store = MonitoringStore(endpoint_url="")
    (tmp_path / "result.json").write_bytes(GOOD)
    assert store.read_result(str(tmp_path / "result.json")) == RESULT
    assert store.read_result(f"file://{tmp_path}/result.json") == RESULT
    assert store.read_result(str(tmp_path / "nothing" / "result.json")) is None
    assert store.read_bytes(str(tmp_path / "result.json")) == GOOD


@pytest.mark.parametrize("body", CORRUPT)
def test_a_corrupt_local_result_is_an_error_naming_the_file(tmp_path: Path, body: bytes) -> None:
    (tmp_path / "result.json").write_bytes(body)
    with pytest.raises(CorruptResult, match=r"result\.json") as caught:
        MonitoringStore(endpoint_url="").read_result(str(tmp_path / "result.json"))
    assert not caught.value.temporary


def test_an_oversized_result_is_corrupt(tmp_path: Path) -> None:
    (tmp_path / "result.json").write_bytes(b" " * 1_000_001)
    with pytest.raises(CorruptResult, match="over"):
        MonitoringStore(endpoint_url="").read_result(str(tmp_path / "result.json"))


def test_a_relative_path_is_refused() -> None:
    with pytest.raises(NotFound):
        MonitoringStore(endpoint_url="").read_result("reports/result.json")


def test_the_endpoint_comes_from_the_aws_variable_first() -> None:
    assert (
        s3_endpoint({"MLFLOW_S3_ENDPOINT_URL": "http://m", "AWS_ENDPOINT_URL_S3": "http://a"}) == "http://a"
    )
    assert s3_endpoint({"MLFLOW_S3_ENDPOINT_URL": "http://m"}) == "http://m"
    assert s3_endpoint({}) is None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def s3() -> Iterator[tuple[str, Any]]:
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(connect_timeout=2, read_timeout=2, retries={"max_attempts": 1}),
    )
    client.create_bucket(Bucket="monitoring")
    yield endpoint, client
    server.stop()


def test_s3_result_round_trips_missing_is_none_and_corrupt_is_an_error(s3: tuple[str, Any]) -> None:
    endpoint, client = s3
    prefix = "s3://monitoring/risk/credit/reports/drift/v3/20261123T120000Z"
    client.put_object(
        Bucket="monitoring", Key="risk/credit/reports/drift/v3/20261123T120000Z/result.json", Body=GOOD
    )
    client.put_object(Bucket="monitoring", Key="risk/credit/bad/result.json", Body=CORRUPT[0])
    store = MonitoringStore(s3_client=client, endpoint_url=endpoint)
    assert store.read_result(f"{prefix}/result.json") == RESULT
    assert store.read_result(f"{prefix}/nothing.json") is None
    with pytest.raises(CorruptResult, match=r"s3://monitoring/risk/credit/bad/result\.json"):
        store.read_result("s3://monitoring/risk/credit/bad/result.json")
    with pytest.raises(NotFound, match="bucket does not exist"):
        store.read_result("s3://no-such-bucket/result.json")


def test_an_unreachable_endpoint_is_temporary_and_fails_within_the_timeout() -> None:
    client = boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{_free_port()}",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(connect_timeout=1, read_timeout=1, retries={"max_attempts": 1}),
    )
    with pytest.raises(Unreachable) as caught:
        MonitoringStore(s3_client=client).read_result("s3://monitoring/x/result.json")
    assert caught.value.temporary


def test_the_default_client_has_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    client = MonitoringStore(endpoint_url="http://127.0.0.1:9", timeout_s=3).s3
    assert client.meta.config.connect_timeout == 3 and client.meta.config.read_timeout == 3
    assert client.meta.endpoint_url == "http://127.0.0.1:9"
