"""Local mode: the manifest-folder control loop drives the same reconciler on the session's real stack,
driven through the `steward` CLI; then the served model is hit with every kind of bad request."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import applicant_records, expected_classes, wait_gone, wait_until
from typer.testing import CliRunner

from steward.api.serve_app import router_access, router_secret_from_ray_token
from steward.audit.store import LocalFolderStore
from steward.cli.main import app
from steward.dev.loop import ControlLoop
from steward.dev.stack import Stack
from steward.dev.store import LocalStore
from steward.operator.reconciler import Reconciler

pytestmark = pytest.mark.integration
runner = CliRunner()


@pytest.fixture(scope="module")
def local(stack: Stack, models: Any) -> Iterator[tuple[LocalStore, Path]]:
    """A control loop thread over the session stack's home, as `steward dev up` runs it."""
    reconciler = Reconciler(stack.operator_config(resync_interval_s=1.0), ray_token=stack.ray_token())
    store = LocalStore(stack.home)
    loop = ControlLoop(store, reconciler)
    stop = threading.Event()
    thread = threading.Thread(target=loop.run, args=(0.5, stop), daemon=True)
    thread.start()
    yield store, stack.home
    stop.set()
    thread.join(10)
    reconciler.close()


def cli(*args: str, actor: str = "carol@bank") -> Any:
    result = runner.invoke(app, list(args), catch_exceptions=False, env={"STEWARD_ACTOR": actor})
    return result


@pytest.fixture(scope="module")
def endpoint(local: tuple[LocalStore, Path], models: Any, tmp_path_factory: pytest.TempPathFactory) -> str:
    store, home = local
    manifest = tmp_path_factory.mktemp("m") / "scorer.yaml"
    manifest.write_text(
        f"""
apiVersion: steward.io/v1alpha1
kind: ModelDeployment
metadata: {{name: scorer, namespace: lending}}
spec:
  model: {{name: credit-risk, version: "{models.good_v1}"}}
  serving: {{resources: {{cpu: 0.25}}, routePrefix: /lending/scorer}}
"""
    )
    result = cli("dev", "apply", "-f", str(manifest), "--reason", "CR-42 first release", "--home", str(home))
    assert result.exit_code == 0, result.output
    assert "modeldeployment.steward.io/scorer created" in result.output
    obj = wait_until(
        lambda: (o := store.get("lending", "scorer")) and o.status.phase.value == "Ready" and o,
        180,
        "scorer Ready",
    )
    assert obj.status.endpoint
    return str(obj.status.endpoint)


def test_cli_get_shows_the_ready_deployment(
    local: tuple[LocalStore, Path], endpoint: str, models: Any
) -> None:
    _, home = local
    table = cli("get", "md", "--home", str(home))
    assert table.exit_code == 0
    row = next(line for line in table.output.splitlines() if "scorer" in line)
    assert "Ready" in row and "credit-risk" in row and models.good_v1 in row
    one = cli("get", "md", "scorer", "-n", "lending", "--home", str(home), "-o", "json")
    doc = json.loads(one.output)
    assert doc["status"]["stable"]["version"] == models.good_v1
    missing = cli("get", "md", "nope", "-n", "lending", "--home", str(home))
    assert missing.exit_code == 1 and "not found" in missing.output


def test_predictions_match_the_registered_model(endpoint: str, stack: Stack, models: Any) -> None:
    records = applicant_records(25, seed=5)
    response = httpx.post(endpoint, json={"dataframe_records": records}, timeout=30)
    assert response.status_code == 200, response.text
    assert response.json()["predictions"] == expected_classes(stack.tracking_uri, models.good_v1, records)


GOOD_ROW = {
    "income": 5e4,
    "debt_ratio": 0.2,
    "credit_history_months": 3,
    "late_payments": 0,
    "loan_amount": 100,
}
BAD_REQUESTS = [
    ("malformed JSON", b'{"dataframe_records": [', 400, "MALFORMED_JSON"),
    ("not an object", b"[1, 2, 3]", 400, "UNSUPPORTED_FORMAT"),
    ("unknown format", json.dumps({"rows": [{"income": 1}]}).encode(), 400, "UNSUPPORTED_FORMAT"),
    ("missing columns", json.dumps({"dataframe_records": [{"income": 5e4}]}).encode(), 422, "INVALID_INPUT"),
    (
        "wrong types",
        json.dumps({"dataframe_records": [{**GOOD_ROW, "income": "lots"}]}).encode(),
        422,
        "INVALID_INPUT",
    ),
]


@pytest.mark.parametrize(("case", "body", "status", "code"), BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS])
def test_bad_requests_get_4xx_with_a_code(
    endpoint: str, case: str, body: bytes, status: int, code: str
) -> None:
    response = httpx.post(endpoint, content=body, headers={"content-type": "application/json"}, timeout=30)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]


def test_replica_survives_bad_input_and_health_checks_answer(endpoint: str, stack: Stack) -> None:
    for _ in range(20):
        httpx.post(endpoint, content=b"{oops", timeout=30)
    assert (
        httpx.post(endpoint, json={"dataframe_records": applicant_records(1)}, timeout=30).status_code == 200
    )
    assert httpx.get(f"{stack.serve_url}/-/healthz", timeout=10).status_code == 200
    # The router's metadata is for the operator only: without its read token, a 401 and nothing else.
    refused = httpx.get(endpoint, timeout=10)
    assert refused.status_code == 401 and "credit-risk" not in refused.text
    token = router_access(router_secret_from_ray_token(stack.ray_token()), "lending/scorer").read_token
    info = httpx.get(endpoint, headers={"Authorization": f"Bearer {token}"}, timeout=10).json()
    assert info["model"] == "credit-risk" and info["deployment"] == "lending/scorer"
    assert httpx.put(endpoint, content=b"{}", timeout=10).json()["error"]["code"] == "METHOD_NOT_ALLOWED"


def test_bad_manifest_is_refused_before_it_reaches_the_loop(
    local: tuple[LocalStore, Path], tmp_path: Path
) -> None:
    store, home = local
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: steward.io/v1alpha1\nkind: ModelDeployment\nmetadata: {name: bad}\n"
        "spec: {model: {name: m, version: '1', alias: champion}, serving: {replicas: {min: 3, max: 1}}}\n"
    )
    result = cli("dev", "apply", "-f", str(bad), "--home", str(home))
    assert result.exit_code == 1
    assert "exactly one of model.version or model.alias" in result.output
    assert not (store.manifests / "default__bad.yaml").exists()


def test_delete_removes_the_application(
    local: tuple[LocalStore, Path], endpoint: str, ray_client: Any
) -> None:
    store, home = local
    assert ray_client.get_application("lending.scorer") is not None
    result = cli(
        "dev", "delete", "scorer", "-n", "lending", "--reason", "retired", "--home", str(home), actor="dave"
    )
    assert result.exit_code == 0, result.output
    wait_until(lambda: store.get("lending", "scorer") is None, 60, "the local object to be finalized")
    wait_gone(ray_client, "lending.scorer")
    events = [e["reason"] for e in store.read_events("lending", "scorer")]
    # A transient problem (the dashboard busy on 2 cores) may precede them; the order is what matters.
    lifecycle = [e for e in events if e in ("Deploying", "Running")]
    assert lifecycle[:2] == ["Deploying", "Running"], events
    assert events.count("AuditRecorded") == 3  # created, deployed, deleted: one Event per record

    history = cli("history", "scorer", "-n", "lending", "--home", str(home))
    assert history.exit_code == 0, history.output
    for action in ("created", "deployed", "deleted"):
        assert action in history.output
    records = LocalFolderStore(home / "audit").read("lending/scorer")
    assert [(r.action.value, r.actor, r.reason) for r in records if r.action.value != "deployed"] == [
        # No admission webhook locally: the CLI's STEWARD_ACTOR is what the user declared.
        ("created", "carol@bank (declared)", "CR-42 first release"),
        ("deleted", "dave (declared)", "retired"),
    ]
    verified = cli("audit", "verify", "scorer", "-n", "lending", "--home", str(home))
    assert verified.exit_code == 0, verified.output
    assert "3 records" in verified.output
