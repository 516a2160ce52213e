"""The operator's Prometheus metrics, set from status and scraped over HTTP."""

from __future__ import annotations

import socket
from datetime import UTC, datetime

import httpx
from prometheus_client.parser import text_string_to_metric_families

from steward.api.model_deployment import ModelDeploymentStatus
from steward.operator.metrics import Metrics

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def _status(with_canary: bool = True) -> ModelDeploymentStatus:
    rollout = {
        "strategy": "canary",
        "canary": {"version": "4", "modelUri": "models:/credit-risk/4"},
        "fromVersion": "3",
        "state": "Progressing",
        "startedAt": T0.isoformat(),
        "stepStartedAt": T0.isoformat(),
        "weight": 10,
    }
    result = {
        "monitor": "fairness",
        "version": "4",
        "verdict": "breach",
        "windowStart": T0.isoformat(),
        "windowEnd": T0.isoformat(),
        "rows": 5000,
        "labelledRows": 1250,
        "breached": [
            {
                "name": "demographic_parity_ratio:gender",
                "value": 0.5,
                "threshold": 0.8,
                "op": ">=",
                "passed": False,
            }
        ],
        "submissionId": "steward-x-fairness-v4-1",
    }
    return ModelDeploymentStatus.model_validate(
        {
            "audit": {"pending": 2},
            "rollout": rollout if with_canary else None,
            "monitoring": {
                "results": [result] if with_canary else [],
                "jobs": [],
                "capture": {"written": 120, "dropped": 3},
            },
        }
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_a_scrape_shows_monitor_capture_rollout_audit_and_reconcile_figures() -> None:
    metrics = Metrics()
    metrics.observe_status("risk/credit", _status())
    with metrics.reconcile_timer("risk/credit"):
        pass
    port = _free_port()
    server = metrics.serve(port, addr="127.0.0.1")
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    finally:
        server.shutdown()
    scraped = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    md = {"deployment": "risk/credit"}
    fairness = {**md, "version": "4", "monitor": "fairness"}
    dpr = {**fairness, "check": "demographic_parity_ratio:gender"}
    expected = [
        ("steward_monitor_verdict", {**fairness, "verdict": "breach"}, 1.0),
        ("steward_monitor_verdict", {**fairness, "verdict": "pass"}, 0.0),
        ("steward_monitor_figure", dpr, 0.5),
        ("steward_monitor_threshold", dpr, 0.8),
        ("steward_monitor_label_coverage", fairness, 0.25),
        ("steward_capture_records_written", md, 120.0),
        ("steward_capture_records_dropped", md, 3.0),
        ("steward_rollout_state", {**md, "state": "Progressing"}, 1.0),
        ("steward_rollout_state", {**md, "state": "Paused"}, 0.0),
        ("steward_rollout_canary_weight_percent", {**md, "version": "4"}, 10.0),
        ("steward_audit_records_pending", md, 2.0),
        ("steward_reconcile_duration_seconds_count", md, 1.0),
    ]
    missing = [
        (name, labels, value)
        for name, labels, value in expected
        if scraped.get((name, tuple(sorted(labels.items())))) != value
    ]
    assert missing == []


def test_series_of_a_version_that_went_away_go_with_it() -> None:
    metrics = Metrics()
    metrics.observe_status("risk/credit", _status())
    metrics.observe_status("risk/credit", _status(with_canary=False))
    value = metrics.registry.get_sample_value
    assert (
        value("steward_rollout_canary_weight_percent", {"deployment": "risk/credit", "version": "4"}) is None
    )
    labels = {"deployment": "risk/credit", "version": "4", "monitor": "fairness"}
    assert value("steward_monitor_label_coverage", labels) is None
    assert value("steward_capture_records_dropped", {"deployment": "risk/credit"}) == 3
    metrics.forget("risk/credit")
    assert value("steward_capture_records_dropped", {"deployment": "risk/credit"}) is None
