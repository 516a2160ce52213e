"""`steward feedback`: outcomes validated, then written as one Parquet file to a folder or S3 (moto)."""

from __future__ import annotations

import io
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pandas as pd
import pytest
from moto.server import ThreadedMotoServer
from typer.testing import CliRunner

from steward.cli.main import app

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, " ".join(result.output.split())


def outcomes_file(tmp_path: Path, text: str, name: str = "outcomes.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_outcomes_land_in_todays_partition_of_a_local_store(tmp_path: Path) -> None:
    csv = outcomes_file(tmp_path, "request_id,label,sensitive.gender\n007,1,f\nabc,0,m\n")
    code, out = invoke("feedback", "credit", "-f", str(csv), "-n", "risk", "--store", str(tmp_path / "mon"))
    assert code == 0, out
    assert "wrote 2 outcomes for risk/credit" in out
    [path] = list((tmp_path / "mon/risk/credit/outcomes").glob("date=*/*.parquet"))
    frame = pd.read_parquet(path)
    assert list(frame["request_id"]) == ["007", "abc"]  # ids stay text
    assert list(frame["label"]) == [1, 0] and list(frame["sensitive.gender"]) == ["f", "m"]
    assert str(frame["received_at"].dt.tz) == "UTC"
    assert path.parent.name == f"date={frame['received_at'].iloc[0]:%Y-%m-%d}"


def test_parquet_input_and_the_local_stacks_store_by_default(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "stack.json").write_text("{}")
    source = tmp_path / "o.parquet"
    pd.DataFrame({"request_id": ["r1"], "label": ["approved"]}).to_parquet(source)
    code, out = invoke("feedback", "credit", "-f", str(source), "--home", str(home))
    assert code == 0, out
    assert len(list((home / "monitoring/default/credit/outcomes").rglob("*.parquet"))) == 1


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("request_id,outcome\nr1,1\n", "missing column(s) ['label']"),
        ("id,label\nr1,1\n", "missing column(s) ['request_id']"),
        ("request_id,label\n", "no rows"),
        ("request_id,label\nr1,1\n,0\nr3,1\n", "empty request_id on line(s) 3"),
        ("request_id,label\nr1,1\nr2,\n", "empty label on line(s) 3"),
        ("request_id,label\nr1,1\nr1,0\n", "request_id repeated on line(s) 2, 3"),
        ("request_id,label,gender\nr1,1,f\n", "unknown column(s) ['gender']"),
    ],
)
def test_a_bad_file_is_refused_naming_the_problem_and_nothing_is_written(
    tmp_path: Path, text: str, problem: str
) -> None:
    csv = outcomes_file(tmp_path, text)
    code, out = invoke("feedback", "credit", "-f", str(csv), "--store", str(tmp_path / "mon"))
    assert code == 1 and problem in out, out
    assert not (tmp_path / "mon").exists()


def test_no_store_anywhere_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STEWARD_MONITORING_URI", raising=False)
    csv = outcomes_file(tmp_path, "request_id,label\nr1,1\n")
    code, out = invoke("feedback", "credit", "-f", str(csv), "--home", str(tmp_path / "nothing"))
    assert code == 1 and "no monitoring store" in out


def test_an_unsupported_file_type_is_refused(tmp_path: Path) -> None:
    path = outcomes_file(tmp_path, "{}", "outcomes.json")
    code, out = invoke("feedback", "credit", "-f", str(path), "--store", str(tmp_path))
    assert code == 1 and "expected a .csv or .parquet file" in out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str]]:
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
    # Moto's backends are per process, shared by every server: a bucket of this test's own.
    bucket = f"mon-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
    try:
        yield endpoint, bucket
    finally:
        server.stop()


def test_outcomes_reach_a_real_s3_endpoint(
    s3: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint, bucket = s3
    monkeypatch.setenv("STEWARD_MONITORING_URI", f"s3://{bucket}/steward")
    csv = outcomes_file(tmp_path, "request_id,label\nr1,1\n")
    code, out = invoke("feedback", "credit", "-f", str(csv), "-n", "risk")
    assert code == 0, out
    client = boto3.client("s3", endpoint_url=endpoint)
    [key] = [o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]]
    assert key.startswith("steward/risk/credit/outcomes/date=") and key.endswith(".parquet")
    frame = pd.read_parquet(io.BytesIO(client.get_object(Bucket=bucket, Key=key)["Body"].read()))
    assert list(frame["request_id"]) == ["r1"]
