"""`steward retrain [approve] NAME` writes its command into the local store's manifest as the control loop
reads it; `steward lineage NAME VERSION` prints the chain behind a version from the audit trail."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from steward.api.model_deployment import ModelDeployment, ModelDeploymentStatus
from steward.api.retraining import RETRAINING_COMMAND_ANNOTATION, RetrainingCommand, RetrainingStatus
from steward.audit.records import AuditAction, DeploymentRef, ModelVersions, RecordDraft
from steward.audit.store import LocalFolderStore
from steward.audit.trail import AuditTrail
from steward.cli.main import app
from steward.cli.retrain import lineage_records
from steward.cli.sources import LocalSource
from steward.dev.store import LocalStore

runner = CliRunner()
NS, NAME = "risk", "credit"


def _store(tmp_path: Path, retraining: bool = True, state: str | None = None) -> LocalStore:
    store = LocalStore(tmp_path)
    spec: dict[str, Any] = {"model": {"name": "credit-risk", "version": "3"}}
    if retraining:
        spec["retraining"] = {"entrypoint": "python -m steward.retraining.example_train"}
    resource = ModelDeployment.model_validate(
        {
            "apiVersion": "steward.io/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": NAME, "namespace": NS},
            "spec": spec,
        }
    )
    store.apply(resource)
    if state is not None:
        store.admit(resource, datetime.now(UTC))
        store.set_status(
            NS, NAME, ModelDeploymentStatus(retraining=RetrainingStatus.model_validate({"state": state}))
        )
    return store


def _command(store: LocalStore) -> RetrainingCommand:
    md = LocalSource(store).get(NS, NAME)
    assert md is not None
    return RetrainingCommand.model_validate_json(md.metadata.annotations[RETRAINING_COMMAND_ANNOTATION])


def test_retrain_writes_a_command_with_who_and_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEWARD_ACTOR", "alice@bank")
    store = _store(tmp_path)
    result = runner.invoke(
        app, ["retrain", NAME, "-n", NS, "--reason", "CR-9", "--no-wait", "--home", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    command = _command(store)
    assert (command.command.value, command.actor, command.reason) == ("retrain", "alice@bank", "CR-9")


def test_approve_needs_a_run_that_awaits_approval(tmp_path: Path) -> None:
    _store(tmp_path, state="Running")
    result = runner.invoke(app, ["retrain", "approve", NAME, "-n", NS, "--no-wait", "--home", str(tmp_path)])
    assert result.exit_code == 1 and "awaits approval" in result.output
    store = _store(tmp_path, state="AwaitingApproval")
    result = runner.invoke(
        app, ["retrain", "approve", NAME, "-n", NS, "--reason", "MRM-1", "--no-wait", "--home", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    assert _command(store).command.value == "approve"


def test_retrain_without_spec_retraining_says_what_to_add(tmp_path: Path) -> None:
    _store(tmp_path, retraining=False)
    result = runner.invoke(app, ["retrain", NAME, "-n", NS, "--no-wait", "--home", str(tmp_path)])
    assert result.exit_code == 1 and "spec.retraining" in result.output


def _draft(action: AuditAction, cause: str, evidence: dict[str, Any], to: str | None = None) -> RecordDraft:
    return RecordDraft(
        deployment=DeploymentRef(namespace=NS, name=NAME, uid="u"),
        action=action,
        model=ModelVersions(name="credit-risk", from_version="3", to_version=to),
        reason=f"{action.value} reason",
        evidence=evidence,
        cause=cause,
    )


def _trail(tmp_path: Path) -> None:
    trigger = {"cause": "retraining-requested:command:c1"}
    AuditTrail(LocalFolderStore(tmp_path / "audit")).record(
        [
            _draft(AuditAction.CREATED, "created", {}),
            _draft(AuditAction.RETRAINING_REQUESTED, "retraining-requested:command:c1", {"trigger": trigger}),
            _draft(AuditAction.RETRAINING_REQUESTED, "retraining-requested:command:c0", {}),  # another run
            _draft(AuditAction.RETRAINING_STARTED, "retraining-started:s1", {"submission_id": "s1"}),
            _draft(
                AuditAction.RETRAINING_FINISHED,
                "retraining-finished:s1",
                {"submission_id": "s1", "trigger": trigger, "lineage": {"steward.trigger": trigger["cause"]}},
                to="4",
            ),
            _draft(
                AuditAction.CANDIDATE_EVALUATED, "candidate-evaluated:s1", {"submission_id": "s1"}, to="4"
            ),
            _draft(AuditAction.PROMOTED, "promoted:4", {}, to="4"),
        ]
    )


def test_lineage_follows_a_version_from_its_request_to_its_rollout(tmp_path: Path) -> None:
    _trail(tmp_path)
    records = LocalFolderStore(tmp_path / "audit").read(f"{NS}/{NAME}")
    chain = [r.cause for r in lineage_records(records, "4")]
    assert chain == [
        "retraining-requested:command:c1",
        "retraining-started:s1",
        "retraining-finished:s1",
        "candidate-evaluated:s1",
        "promoted:4",
    ]
    result = runner.invoke(
        app, ["lineage", NAME, "4", "-n", NS, "--home", str(tmp_path)], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    assert "retraining-requested" in result.output and "steward.trigger" in result.output
    missing = runner.invoke(app, ["lineage", NAME, "9", "-n", NS, "--home", str(tmp_path)])
    assert missing.exit_code == 1 and "nothing about version 9" in missing.output
