"""`steward audit verify|export` and `steward history` against a local audit folder."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from steward.audit.export import from_csv, from_json
from steward.audit.records import AuditAction, AuditRecord, DeploymentRef, ModelVersions, RecordDraft, seal
from steward.audit.store import LocalFolderStore, record_name
from steward.cli.audit import parse_since
from steward.cli.main import app

runner = CliRunner()
KEY = b"audit-secret"
NOW = datetime.now(UTC).replace(microsecond=0)
STEPS: list[tuple[timedelta, AuditAction, str, str | None, str | None]] = [
    (timedelta(days=10), AuditAction.CREATED, "resource created", None, "3"),
    (timedelta(days=10) - timedelta(minutes=5), AuditAction.DEPLOYED, "version 3 is serving", None, "3"),
    (timedelta(days=3), AuditAction.ROLLOUT_STARTED, "canary of version 4 [10%]", "3", "4"),
    (timedelta(hours=2), AuditAction.PROMOTED, "analysis passed", "3", "4"),
]


def build(
    home: Path, name: str = "credit", namespace: str = "risk", key: bytes | None = KEY
) -> list[AuditRecord]:
    store = LocalFolderStore(home / "audit")
    records: list[AuditRecord] = []
    for ago, action, reason, before, after in STEPS:
        draft = RecordDraft(
            deployment=DeploymentRef(namespace=namespace, name=name, uid="uid-1"),
            actor="alice" if action == AuditAction.CREATED else "steward-operator",
            action=action,
            model=ModelVersions(name="credit-risk", from_version=before, to_version=after),
            reason=reason,
            evidence={"report": "https://reports.example.com/r/1"} if action == AuditAction.PROMOTED else {},
            cause=f"{action}",
        )
        record = seal(draft, records[-1] if records else None, NOW - ago, key)
        store.append(record)
        records.append(record)
    return records


def tamper(home: Path, deployment: str, seq: int, **update: Any) -> None:
    path = home / "audit" / deployment / record_name(seq)
    path.chmod(0o644)
    data = json.loads(path.read_text())
    data.update(update)
    path.write_text(json.dumps(data))


def run(*args: str) -> Any:
    return runner.invoke(app, list(args))


@pytest.fixture
def home(tmp_path: Path) -> Path:
    build(tmp_path)
    return tmp_path


def test_history_lists_every_action_with_versions(home: Path) -> None:
    result = run("history", "credit", "-n", "risk", "--home", str(home))
    assert result.exit_code == 0, result.output
    for _, action, reason, _, _ in STEPS:
        assert action.value in result.output
        assert reason in result.output  # including "[10%]", which is not rich markup
    assert "3 -> 4" in result.output
    assert "alice" in result.output
    assert f"{NOW - timedelta(hours=2):%Y-%m-%d %H:%M:%S}" in result.output


@pytest.mark.parametrize(
    ("since", "shown"),
    [
        ("24h", {"promoted"}),
        ("7d", {"promoted", "rollout-started"}),
        ("30d", {"created", "deployed", "rollout-started", "promoted"}),
        ((NOW - timedelta(days=4)).date().isoformat(), {"promoted", "rollout-started"}),
        ((NOW - timedelta(hours=3)).isoformat(), {"promoted"}),
    ],
)
def test_history_since_filters(home: Path, since: str, shown: set[str]) -> None:
    result = run("history", "credit", "-n", "risk", "--since", since, "--home", str(home))
    assert result.exit_code == 0, result.output
    for _, action, _, _, _ in STEPS:
        assert (action.value in result.output) == (action.value in shown), action


def test_history_since_with_nothing_after_it(home: Path) -> None:
    result = run("history", "credit", "-n", "risk", "--since", "1m", "--home", str(home))
    assert result.exit_code == 0
    assert "no records of risk/credit since" in result.output


def test_history_bad_since_and_unknown_name(home: Path) -> None:
    result = run("history", "credit", "-n", "risk", "--since", "last tuesday", "--home", str(home))
    assert result.exit_code == 1
    assert "--since 'last tuesday'" in result.output
    result = run("history", "nope", "-n", "risk", "--home", str(home))
    assert result.exit_code == 1
    assert "no audit trail for risk/nope" in result.output
    assert "risk/credit" in result.output


def test_history_warns_about_a_broken_chain(home: Path) -> None:
    tamper(home, "risk/credit", 2, reason="nothing happened")
    result = run("history", "credit", "-n", "risk", "--home", str(home))
    assert result.exit_code == 0
    assert "chain is broken at position 2" in result.output


def test_parse_since() -> None:
    now = datetime(2026, 11, 23, 12, tzinfo=UTC)
    assert parse_since("24h", now) == datetime(2026, 11, 22, 12, tzinfo=UTC)
    assert parse_since("7d", now) == datetime(2026, 11, 16, 12, tzinfo=UTC)
    assert parse_since("90m", now) == datetime(2026, 11, 23, 10, 30, tzinfo=UTC)
    assert parse_since("2026-11-01", now) == datetime(2026, 11, 1, tzinfo=UTC)
    assert parse_since("2026-11-01T12:00+02:00", now) == datetime(2026, 11, 1, 10, tzinfo=UTC)
    for bad in ("", "yesterday", "7y", "-3d", "99999999999999d"):
        with pytest.raises(ValueError, match="--since"):
            parse_since(bad, now)


def test_verify_an_intact_chain(home: Path, tmp_path: Path) -> None:
    result = run("audit", "verify", "credit", "-n", "risk", "--home", str(home))
    assert result.exit_code == 0, result.output
    assert "ok" in result.output and "risk/credit  4 records" in result.output
    key_file = tmp_path / "key"
    key_file.write_bytes(KEY + b"\n")
    result = run("audit", "verify", "credit", "-n", "risk", "--key-file", str(key_file), "--home", str(home))
    assert result.exit_code == 0, result.output


def test_verify_reports_the_position_of_an_edit(home: Path) -> None:
    tamper(home, "risk/credit", 3, reason="canary of version 5")
    result = run("audit", "verify", "credit", "-n", "risk", "--home", str(home))
    assert result.exit_code == 1
    assert "BROKEN" in result.output
    assert "at position 3" in result.output
    assert "edited" in result.output


def test_verify_reports_a_deleted_record(home: Path) -> None:
    (home / "audit" / "risk" / "credit" / record_name(2)).unlink()
    result = run("audit", "verify", "credit", "-n", "risk", "--home", str(home))
    assert result.exit_code == 1
    assert "at position 2" in result.output and "missing" in result.output


def test_verify_finds_a_tail_cut_off_using_the_status_record_count(home: Path) -> None:
    """Deleting the newest records leaves a chain that verifies; status remembers how many were written."""
    from dataclasses import replace

    from steward.api.model_deployment import AuditTrailStatus, ModelDeployment
    from steward.dev.store import LocalStore

    store = LocalStore(home)
    md = ModelDeployment.model_validate(
        {
            "apiVersion": "steward.io/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": "credit", "namespace": "risk"},
            "spec": {"model": {"name": "credit-risk", "version": "4"}},
        }
    )
    obj = store.admit(md, NOW)
    store.put(replace(obj, status=obj.status.model_copy(update={"audit": AuditTrailStatus(recorded_seq=4)})))
    assert run("audit", "verify", "credit", "-n", "risk", "--home", str(home)).exit_code == 0
    for seq in (4, 3):
        (home / "audit" / "risk" / "credit" / record_name(seq)).unlink()
    result = run("audit", "verify", "credit", "-n", "risk", "--home", str(home))
    assert result.exit_code == 1, result.output
    assert "ends at seq 2 but status.audit.recordedSeq is 4" in result.output
    assert "records 3..4 are missing" in result.output


def test_verify_with_the_wrong_key_finds_bad_signatures(home: Path, tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_bytes(b"another key")
    result = run("audit", "verify", "credit", "-n", "risk", "--key-file", str(key_file), "--home", str(home))
    assert result.exit_code == 1
    assert "at position 1" in result.output and "bad-signature" in result.output


def test_verify_an_unreadable_record(home: Path) -> None:
    path = home / "audit" / "risk" / "credit" / record_name(4)
    path.chmod(0o644)
    path.write_text("{ not json")
    result = run("audit", "verify", "credit", "-n", "risk", "--home", str(home))
    assert result.exit_code == 1
    assert "cannot read the audit trail of risk/credit" in result.output


def test_verify_all(home: Path) -> None:
    build(home, name="fraud", namespace="payments")
    result = run("audit", "verify", "--all", "--home", str(home))
    assert result.exit_code == 0, result.output
    assert "payments/fraud" in result.output and "risk/credit" in result.output
    assert "2 trail(s), 0 broken" in result.output
    tamper(home, "payments/fraud", 4, actor="mallory")
    result = run("audit", "verify", "--all", "--home", str(home))
    assert result.exit_code == 1
    assert "2 trail(s), 1 broken" in result.output
    assert "payments/fraud  at position 4" in result.output


def test_verify_needs_a_trail(home: Path, tmp_path: Path) -> None:
    result = run("audit", "verify", "nope", "-n", "risk", "--home", str(home))
    assert result.exit_code == 1
    assert "no audit trail for risk/nope" in result.output
    result = run("audit", "verify", "--all", "--home", str(tmp_path / "empty"))
    assert result.exit_code == 1
    assert "no audit trails" in result.output
    result = run("audit", "verify", "--home", str(home))
    assert result.exit_code == 1
    assert "give a NAME or --all" in result.output
    result = run("audit", "verify", "../../etc", "--home", str(home))
    assert result.exit_code == 1
    assert "invalid name" in result.output


@pytest.mark.parametrize("fmt", ["json", "csv", "html"])
def test_export_writes_each_format(home: Path, tmp_path: Path, fmt: str) -> None:
    records = LocalFolderStore(home / "audit").read("risk/credit")
    out = tmp_path / f"trail.{fmt}"
    result = run(
        "audit", "export", "credit", "-n", "risk", "--format", fmt, "-o", str(out), "--home", str(home)
    )
    assert result.exit_code == 0, result.output
    assert "wrote 4 records of risk/credit" in result.output
    text = out.read_text(encoding="utf-8")
    if fmt == "json":
        assert from_json(text) == records
    elif fmt == "csv":
        assert from_csv(out.read_bytes().decode()) == records
    else:
        assert "chain intact: 4 records verified" in text
        assert 'href="https://reports.example.com/r/1"' in text


def test_export_to_stdout(home: Path) -> None:
    result = run("audit", "export", "credit", "-n", "risk", "--format", "json", "--home", str(home))
    assert result.exit_code == 0
    assert [r.seq for r in from_json(result.stdout)] == [1, 2, 3, 4]


def test_export_html_of_a_broken_chain_warns(home: Path) -> None:
    tamper(home, "risk/credit", 2, reason="nothing happened")
    result = run("audit", "export", "credit", "-n", "risk", "--format", "html", "--home", str(home))
    assert result.exit_code == 0
    assert "chain broken at position 2" in result.stdout
    assert "the chain is broken" in result.stderr


def test_export_errors(home: Path) -> None:
    result = run("audit", "export", "credit", "-n", "risk", "--format", "pdf", "--home", str(home))
    assert result.exit_code == 1
    assert "unknown format 'pdf'" in result.output
    result = run("audit", "export", "nope", "--format", "json", "--home", str(home))
    assert result.exit_code == 1
    assert "no audit trail for default/nope" in result.output
