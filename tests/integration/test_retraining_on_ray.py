"""Retraining on the session's real Ray, MLflow and S3 (artifacts): a manual `retrain` command becomes a real
Ray Job that trains on the captured, labelled traffic of the serving version, registers a candidate version
with its lineage tags, and is judged offline (`candidate-evaluated`); every step is in the audit trail, and
the job got the hash of the stored request record.

Not covered here yet: rolling the passing candidate out through the canary (not built).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import httpx
import pandas as pd
import pytest
from helpers import wait_gone, wait_until

from steward.api.model_deployment import ModelDeployment
from steward.api.monitoring import capture_prefix
from steward.api.retraining import RETRAINING_COMMAND_ANNOTATION, RetrainingCommand, RunOutcome
from steward.audit.records import AuditRecord
from steward.audit.store import LocalFolderStore
from steward.cli.feedback import validated, write_outcomes
from steward.dev.loop import ControlLoop
from steward.dev.stack import Stack
from steward.dev.store import LocalStore
from steward.monitors import store as monitoring_store
from steward.operator.reconciler import Reconciler

pytestmark = pytest.mark.integration
NS, NAME = "retrain", "credit"
REQUESTS = 400


@pytest.fixture(scope="module")
def local(stack: Stack, tmp_path_factory: pytest.TempPathFactory, ray_client: Any) -> Iterator[LocalStore]:
    store = LocalStore(tmp_path_factory.mktemp("retraining-home"))
    config = replace(stack.operator_config(resync_interval_s=1.0), rollout_tick_s=1.0, rollout_drain_s=1.0)
    reconciler = Reconciler(config, ray_token=stack.ray_token())
    stop = threading.Event()
    thread = threading.Thread(target=ControlLoop(store, reconciler).run, args=(0.5, stop), daemon=True)
    thread.start()
    yield store
    store.remove(NS, NAME)
    wait_until(lambda: store.get(NS, NAME) is None, 60, "the deployment to be finalized")
    wait_gone(ray_client, f"{NS}.{NAME}")
    stop.set()
    thread.join(60)
    reconciler.close()


def _apply(store: LocalStore, version: str) -> None:
    store.apply(
        ModelDeployment.model_validate(
            {
                "apiVersion": "steward.io/v1alpha1",
                "kind": "ModelDeployment",
                "metadata": {"name": NAME, "namespace": NS, "annotations": {"steward.io/actor": "mo@bank"}},
                "spec": {
                    "model": {"name": "credit-risk", "version": version},
                    "serving": {"resources": {"cpu": 0.25}},
                    "monitoring": {
                        "capture": {"sampleRate": 1.0, "sensitiveFeatures": ["gender", "age_band"]}
                    },
                    "retraining": {
                        "entrypoint": "python -m steward.retraining.example_train",
                        "entrypointNumCpus": 0.25,
                        "approval": "automatic",
                        "dataWindow": "1h",
                        "timeout": "10m",
                        "evaluation": {"minLabelledRows": 100, "maxQualityDrop": 0.1, "maxFairnessDrop": 0.2},
                    },
                },
            }
        )
    )


def _records(stack: Stack) -> list[AuditRecord]:
    return LocalFolderStore(stack.home / "audit").read(f"{NS}/{NAME}")


def test_a_manual_retrain_trains_a_candidate_on_ray_with_its_lineage(
    local: LocalStore, models: Any, stack: Stack
) -> None:
    from steward.dev.credit_model import FEATURES, SENSITIVE, applicants

    _apply(local, models.good_v1)
    ready = wait_until(
        lambda: (o := local.get(NS, NAME)) and o.status.phase.value == "Ready" and o, 240, "v1 Ready"
    )
    people = applicants(REQUESTS, seed=31)
    ids = [f"rt-{uuid.uuid4().hex}" for _ in range(REQUESTS)]
    with httpx.Client(timeout=30) as client:
        for i, row in enumerate(people[FEATURES + SENSITIVE].to_dict(orient="records")):
            answer = client.post(
                str(ready.status.endpoint),
                json={"dataframe_records": [row]},
                headers={"X-Request-Id": ids[i]},
            )
            assert answer.status_code == 200, answer.text
    store_uri = str((stack.home / "monitoring").resolve())
    prefix = capture_prefix(store_uri, f"{NS}/{NAME}", models.good_v1)
    wait_until(
        lambda: (
            sum(len(monitoring_store.read_parquet(k)) for k in monitoring_store.list_keys(prefix)) >= REQUESTS
        ),
        120,
        "the router to write every captured request",
    )
    now = datetime.now(UTC)
    outcomes = validated(pd.DataFrame({"request_id": ids, "label": people["defaulted"]}), now)
    write_outcomes(store_uri, f"{NS}/{NAME}", outcomes, now)

    command = RetrainingCommand(
        id=uuid.uuid4().hex, command="retrain", actor="alice", reason="CR-77 drift seen"
    )
    local.annotate(NS, NAME, RETRAINING_COMMAND_ANNOTATION, command.model_dump_json(exclude_none=True))
    done = wait_until(
        lambda: (o := local.get(NS, NAME)) and o.status.retraining and o.status.retraining.runs and o,
        600,
        "the retraining run to finish",
        interval_s=2,
    )
    retraining = done.status.retraining
    assert retraining is not None
    [run] = retraining.runs
    assert run.outcome in (RunOutcome.CANDIDATE_PASSED, RunOutcome.CANDIDATE_REJECTED), run
    assert run.candidate_version is not None and run.parent_version == models.good_v1

    records = _records(stack)
    chain = {r.action.value: r for r in records if r.action.value.startswith(("retraining", "candidate"))}
    assert set(chain) == {
        "retraining-requested",
        "retraining-approved",
        "retraining-started",
        "retraining-finished",
        "candidate-evaluated",
    }
    requested = chain["retraining-requested"]
    assert (
        requested.actor == "alice (declared)"
        and requested.cause == f"retraining-requested:command:{command.id}"
    )
    assert chain["retraining-started"].evidence["submission_id"] == run.submission_id
    evaluated = chain["candidate-evaluated"]
    assert evaluated.model is not None and evaluated.model.to_version == run.candidate_version
    assert evaluated.evidence["holdout_rows"] > 0 and evaluated.evidence["checks"]
    assert "pins version" in evaluated.reason or "rejected offline" in evaluated.reason

    import mlflow

    tags = (
        mlflow.MlflowClient(stack.tracking_uri).get_model_version("credit-risk", run.candidate_version).tags
    )
    assert tags["steward.trigger"] == requested.cause
    assert tags["steward.trigger.record_hash"] == requested.hash
    assert tags["steward.trigger.record_seq"] == str(requested.seq)
    assert tags["steward.parent_version"] == models.good_v1
    assert tags["steward.submission_id"] == run.submission_id
    assert ".parquet" in tags["steward.data.windows"]
    # The run was submitted once: Ray has exactly that id.
    events = local.read_events(NS, NAME)
    assert sum(e["reason"] == "RetrainingStarted" for e in events) == 1
