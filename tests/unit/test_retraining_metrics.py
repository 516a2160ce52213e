"""Retraining's Prometheus figures: set from status.retraining and scraped over HTTP."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from steward.api.model_deployment import ModelDeploymentStatus
from steward.operator.metrics import Metrics

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
TRIGGER = {"kind": "manual", "cause": "retraining-requested:command:c1", "reason": "CR-9"}


def _run(sid: str, outcome: str, minutes: int, rollout: str | None = None) -> dict[str, Any]:
    return {
        "submissionId": sid,
        "trigger": TRIGGER,
        "requestedAt": T0.isoformat(),
        "startedAt": (T0 + timedelta(minutes=1)).isoformat(),
        "finishedAt": (T0 + timedelta(minutes=1 + minutes)).isoformat(),
        "outcome": outcome,
        "rollout": rollout,
    }


def _status(with_candidate: bool = True) -> ModelDeploymentStatus:
    retraining: dict[str, Any] = {
        "state": "Idle",
        "runs": [
            _run("a", "Failed", 2),
            _run("b", "CandidateRejected", 3),
            _run("c", "CandidatePassed", 4, "RolledBack"),
            _run("d", "CandidatePassed", 5, "Promoted" if not with_candidate else None),
        ],
    }
    if with_candidate:
        retraining["candidateRollout"] = {
            "submissionId": "d",
            "version": "7",
            "fromVersion": "6",
            "alias": "champion",
            "challengerAlias": "challenger",
            "state": "Canary",
            "since": T0.isoformat(),
        }
    return ModelDeploymentStatus.model_validate({"retraining": retraining})


def _scrape(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = metrics.serve(port, addr="127.0.0.1")
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    finally:
        server.shutdown()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_a_scrape_shows_runs_by_outcome_candidates_and_the_state() -> None:
    metrics = Metrics()
    metrics.observe_status("risk/credit", _status())
    scraped = _scrape(metrics)
    md = {"deployment": "risk/credit"}
    expected = [
        ("steward_retraining_state", {**md, "state": "Idle"}, 1.0),
        ("steward_retraining_state", {**md, "state": "Running"}, 0.0),
        ("steward_retraining_recent_runs", {**md, "outcome": "CandidatePassed"}, 2.0),
        ("steward_retraining_recent_runs", {**md, "outcome": "Failed"}, 1.0),
        ("steward_retraining_recent_runs", {**md, "outcome": "TimedOut"}, 0.0),
        ("steward_retraining_recent_candidate_rollouts", {**md, "outcome": "RolledBack"}, 1.0),
        ("steward_retraining_recent_candidate_rollouts", {**md, "outcome": "Promoted"}, 0.0),
        (
            "steward_retraining_last_run_finished_timestamp_seconds",
            {**md, "outcome": "CandidateRejected"},
            (T0 + timedelta(minutes=4)).timestamp(),
        ),
        ("steward_retraining_last_run_duration_seconds", md, 300.0),
        ("steward_retraining_candidate_rollout", {**md, "version": "7", "state": "Canary"}, 1.0),
    ]
    wrong = [
        (name, labels, value, scraped.get((name, tuple(sorted(labels.items())))))
        for name, labels, value in expected
        if scraped.get((name, tuple(sorted(labels.items())))) != value
    ]
    assert wrong == []


def test_a_candidate_that_ended_leaves_no_series_behind() -> None:
    metrics = Metrics()
    metrics.observe_status("risk/credit", _status())
    metrics.observe_status("risk/credit", _status(with_candidate=False))
    value = metrics.registry.get_sample_value
    labels = {"deployment": "risk/credit", "version": "7", "state": "Canary"}
    assert value("steward_retraining_candidate_rollout", labels) is None
    promoted = {"deployment": "risk/credit", "outcome": "Promoted"}
    assert value("steward_retraining_recent_candidate_rollouts", promoted) == 1.0
    metrics.forget("risk/credit")
    assert value("steward_retraining_recent_candidate_rollouts", promoted) is None
