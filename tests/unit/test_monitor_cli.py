"""`steward monitor status|report` against the local stack's store, and a monitoring store in a folder or
S3 (moto server)."""

from __future__ import annotations

import hashlib
import json
import socket
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer
from typer.testing import CliRunner

from steward.api.model_deployment import ModelDeployment, ModelDeploymentStatus
from steward.cli.main import app
from steward.dev.store import LocalStore

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
NS, NAME = "risk", "credit"
REPORT = b"<html><body><h1>Drift report</h1></body></html>"
runner = CliRunner()

SPEC = {
    "model": {"name": "credit-risk", "version": "4"},
    "monitoring": {
        "capture": {"sampleRate": 1.0, "sensitiveFeatures": ["gender"]},
        "monitors": [
            {"name": "drift", "kind": "drift", "window": {"duration": "1h"}},
            {"name": "fairness", "kind": "fairness", "onBreach": "rollback"},
            {"name": "quality", "kind": "quality"},
        ],
    },
}


def result(
    monitor: str, version: str, verdict: str, uri: str | None, sha: str | None, **extra: Any
) -> dict[str, Any]:
    return {
        "monitor": monitor,
        "version": version,
        "verdict": verdict,
        "windowStart": (T0 - timedelta(hours=1)).isoformat(),
        "windowEnd": T0.isoformat(),
        "rows": 5000,
        "labelledRows": 1200,
        "reportUri": uri,
        "reportSha256": sha,
        "submissionId": f"steward-x-{monitor}-v{version}-1",
        **extra,
    }


def status(results: list[dict[str, Any]], jobs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "observedGeneration": 1,
        "conditions": [
            {
                "type": "Monitoring",
                "status": "False",
                "reason": "MonitorBreached",
                "message": "drift breached on version 4: drift:income 0.52 (threshold <= 0.1)",
                "lastTransitionTime": T0.isoformat(),
            }
        ],
        "monitoring": {
            "results": results,
            "jobs": jobs or [],
            "capture": {"written": 4810, "dropped": 7, "lastError": "store unreachable"},
        },
    }


def seed(home: Path, st: dict[str, Any]) -> LocalStore:
    store = LocalStore(home)
    md = ModelDeployment.model_validate(
        {
            "apiVersion": "steward.io/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": NAME, "namespace": NS},
            "spec": SPEC,
        }
    )
    store.apply(md)
    obj = store.admit(md, T0 - timedelta(days=1))
    store.put(replace(obj, status=ModelDeploymentStatus.model_validate(st)))
    return store


def put_report(folder: Path, name: str, body: bytes = REPORT) -> tuple[str, str]:
    path = folder / "monitoring" / name / "report.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)
    return str(path), hashlib.sha256(body).hexdigest()


@pytest.fixture(autouse=True)
def local_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STEWARD_CLUSTER", raising=False)


def run(home: Path, *args: str) -> Any:
    return runner.invoke(app, ["monitor", *args, "-n", NS, "--home", str(home)])


def flat(output: str) -> str:
    return " ".join(output.split())


BREACH = [{"name": "drift:income", "value": 0.52, "threshold": 0.1, "op": "<=", "passed": False}]


def test_status_shows_verdicts_breaches_jobs_capture_and_condition(tmp_path: Path) -> None:
    uri, sha = put_report(tmp_path, "drift-v4")
    job = {
        "monitor": "quality",
        "version": "4",
        "windowStart": (T0 - timedelta(hours=1)).isoformat(),
        "windowEnd": T0.isoformat(),
        "submissionId": "steward-x-quality-v4-2",
        "submittedAt": T0.isoformat(),
        "resultUri": "/tmp/r.json",
    }
    seed(
        tmp_path,
        status(
            [
                result("drift", "4", "breach", uri, sha, breached=BREACH),
                result("fairness", "4", "inconclusive", None, None, summary="group F has 12 rows < 30"),
            ],
            [job],
        ),
    )
    out = run(tmp_path, "status", NAME)
    assert out.exit_code == 0, out.output
    text = flat(out.output)
    assert "drift 4 breach" in text
    assert "drift:income 0.52 (threshold <= 0.1)" in text
    assert f"report drift v4: {uri}" in out.output.splitlines()
    assert "fairness 4 inconclusive" in text and "group F has 12 rows < 30" in text
    assert "5000 1200" in text
    assert "no verdict yet: quality" in text
    assert "jobs in flight: 1" in text and "steward-x-quality-v4-2" in text
    assert "capture: 4810 written, 7 dropped, last error: store unreachable" in text
    assert "condition Monitoring=False MonitorBreached: drift breached on version 4" in text


def test_status_json_is_status_monitoring_and_the_condition(tmp_path: Path) -> None:
    uri, sha = put_report(tmp_path, "drift-v4")
    seed(tmp_path, status([result("drift", "4", "breach", uri, sha, breached=BREACH)]))
    out = run(tmp_path, "status", NAME, "-o", "json")
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    assert doc["monitors"] == ["drift", "fairness", "quality"]
    [r] = doc["monitoring"]["results"]
    assert (r["verdict"], r["reportUri"], r["reportSha256"]) == ("breach", uri, sha)
    assert r["breached"][0]["threshold"] == 0.1
    assert doc["monitoring"]["capture"]["dropped"] == 7
    assert doc["condition"]["reason"] == "MonitorBreached"


def test_status_of_a_missing_deployment_fails(tmp_path: Path) -> None:
    out = run(tmp_path, "status", "nope")
    assert out.exit_code == 1
    assert "no ModelDeployment risk/nope" in flat(out.output)


def test_report_writes_the_latest_report_of_the_monitor_after_checking_its_hash(tmp_path: Path) -> None:
    old_uri, old_sha = put_report(tmp_path, "drift-v4-old", b"<html>old window</html>")
    uri, sha = put_report(tmp_path, "drift-v4")
    fair_uri, fair_sha = put_report(tmp_path, "fairness-v4", b"<html>fairness</html>")
    older = result("drift", "3", "pass", old_uri, old_sha)
    older["windowEnd"] = (T0 - timedelta(hours=2)).isoformat()
    older["windowStart"] = (T0 - timedelta(hours=3)).isoformat()
    seed(
        tmp_path,
        status(
            [
                older,
                result("drift", "4", "breach", uri, sha),
                result("fairness", "4", "pass", fair_uri, fair_sha),
            ]
        ),
    )
    target = tmp_path / "out.html"
    out = run(tmp_path, "report", NAME, "--monitor", "drift", "-o", str(target))
    assert out.exit_code == 0, out.output
    assert target.read_bytes() == REPORT
    assert f"sha256 {sha} verified" in flat(out.output)

    out = run(tmp_path, "report", NAME, "--monitor", "drift", "--version", "3", "-o", str(target))
    assert out.exit_code == 0, out.output
    assert target.read_bytes() == b"<html>old window</html>"


def test_a_report_changed_in_the_store_is_refused_and_not_written(tmp_path: Path) -> None:
    uri, sha = put_report(tmp_path, "drift-v4")
    Path(uri).write_bytes(REPORT.replace(b"Drift", b"No drift"))
    seed(tmp_path, status([result("drift", "4", "breach", uri, sha)]))
    target = tmp_path / "out.html"
    out = run(tmp_path, "report", NAME, "--monitor", "drift", "-o", str(target))
    assert out.exit_code == 1
    assert "evidence tampered" in flat(out.output) and sha in flat(out.output)
    assert not target.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--monitor", "quality"), "has no monitor report of monitor quality; reports exist for: drift v4"),
        (("--monitor", "drift", "--version", "9"), "on version 9"),
    ],
)
def test_report_without_a_matching_result_says_what_exists(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    uri, sha = put_report(tmp_path, "drift-v4")
    seed(tmp_path, status([result("drift", "4", "breach", uri, sha)]))
    out = run(tmp_path, "report", NAME, *args, "-o", str(tmp_path / "out.html"))
    assert out.exit_code == 1
    assert message in flat(out.output)


def test_a_report_gone_from_the_store_or_without_a_hash_is_an_error(tmp_path: Path) -> None:
    uri, sha = put_report(tmp_path, "drift-v4")
    seed(
        tmp_path,
        status([result("drift", "4", "breach", uri, None), result("drift", "3", "pass", uri + ".gone", sha)]),
    )
    target = tmp_path / "out.html"
    out = run(tmp_path, "report", NAME, "--version", "4", "-o", str(target))
    assert out.exit_code == 1 and "cannot be verified" in flat(out.output)
    out = run(tmp_path, "report", NAME, "--version", "3", "-o", str(target))
    assert out.exit_code == 1 and "is not in the monitoring store" in flat(out.output)
    assert not target.exists()


def test_report_from_s3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port())
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        monkeypatch.delenv("MLFLOW_S3_ENDPOINT_URL", raising=False)
        # How the CLI finds MinIO / moto: the standard variable, as the operator and the jobs do.
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", endpoint)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        s3 = boto3.client("s3", endpoint_url=endpoint)
        s3.create_bucket(Bucket="monitoring")
        key = "steward/reports/risk/credit/drift/v4/report.html"
        s3.put_object(Bucket="monitoring", Key=key, Body=REPORT)
        uri = f"s3://monitoring/{key}"
        seed(tmp_path, status([result("drift", "4", "breach", uri, hashlib.sha256(REPORT).hexdigest())]))
        target = tmp_path / "out.html"
        out = run(tmp_path, "report", NAME, "-o", str(target))
        assert out.exit_code == 0, out.output
        assert target.read_bytes() == REPORT
        s3.put_object(Bucket="monitoring", Key=key, Body=b"<html>edited</html>")
        target.unlink()
        out = run(tmp_path, "report", NAME, "-o", str(target))
        assert out.exit_code == 1 and "evidence tampered" in flat(out.output)
        assert not target.exists()
    finally:
        server.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port
