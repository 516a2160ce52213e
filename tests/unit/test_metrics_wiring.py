"""The operator's and the local loop's passes feed the Prometheus metrics: timed, observed, forgotten."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from steward.api.model_deployment import ModelDeployment, ModelDeploymentStatus
from steward.dev.loop import ControlLoop
from steward.dev.stack import Stack
from steward.dev.store import LocalStore
from steward.operator import handlers
from steward.operator.config import OperatorConfig, config_from_env
from steward.operator.core import Decision, DeletionDecision
from steward.operator.metrics import Metrics

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
KEY = "risk/credit"
MD = {"deployment": KEY}
DRIFT = {**MD, "version": "4", "monitor": "drift"}


def manifest() -> ModelDeployment:
    return ModelDeployment.model_validate(
        {
            "apiVersion": "steward.io/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": "credit", "namespace": "risk"},
            "spec": {
                "model": {"name": "credit-risk", "version": "4"},
                "monitoring": {"monitors": [{"name": "drift", "kind": "drift"}]},
            },
        }
    )


def monitored_status(generation: int | None = 1) -> ModelDeploymentStatus:
    return ModelDeploymentStatus.model_validate(
        {
            "observedGeneration": generation,
            "monitoring": {
                "results": [
                    {
                        "monitor": "drift",
                        "version": "4",
                        "verdict": "breach",
                        "windowStart": T0.isoformat(),
                        "windowEnd": T0.isoformat(),
                        "rows": 5000,
                        "breached": [
                            {"name": "drift:income", "value": 0.52, "threshold": 0.1, "passed": False}
                        ],
                        "submissionId": "steward-x-drift-v4-1",
                    }
                ],
                "capture": {"written": 5000, "dropped": 4},
            },
        }
    )


class Monitored:
    """A reconciler whose passes leave a drift breach in status, and whose deletions finish at once."""

    config = OperatorConfig()

    def __init__(self) -> None:
        self.fail = False

    def reconcile(self, md: ModelDeployment, now: datetime, events: Any, settled: Any = None) -> Decision:
        if self.fail:
            raise RuntimeError("Ray went away mid-pass")
        return Decision(monitored_status(md.metadata.generation))

    def finalize(
        self, md: ModelDeployment, requested: datetime, now: datetime, events: Any
    ) -> DeletionDecision:
        return DeletionDecision(release_finalizer=True, actions=[])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def at(
    scraped: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, labels: dict[str, str]
) -> Any:
    return scraped.get((name, tuple(sorted(labels.items()))))


def test_local_loop_passes_are_timed_observed_served_and_forgotten_on_delete(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.apply(manifest())
    metrics = Metrics()
    clock = [T0]
    loop = ControlLoop(store, Monitored(), clock=lambda: clock[0], draw=lambda: 0.5, metrics=metrics)  # type: ignore[arg-type]
    port = free_port()
    server = metrics.serve(port, addr="127.0.0.1")
    try:
        loop.tick()
        scraped = scrape(port)
        assert at(scraped, "steward_reconcile_duration_seconds_count", MD) == 1.0
        assert at(scraped, "steward_monitor_verdict", {**DRIFT, "verdict": "breach"}) == 1.0
        assert at(scraped, "steward_monitor_figure", {**DRIFT, "check": "drift:income"}) == 0.52
        assert at(scraped, "steward_capture_records_dropped", MD) == 4.0

        store.remove("risk", "credit")
        clock[0] += timedelta(hours=1)  # the deletion is due
        loop.tick()
        assert store.get("risk", "credit") is None
        left = [key for key in scrape(port) if ("deployment", KEY) in key[1]]
        assert left == []
    finally:
        server.shutdown()


def test_a_kopf_pass_is_timed_and_observed_and_a_failed_one_only_timed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    metrics = Metrics()
    reconciler = Monitored()
    monkeypatch.setattr(handlers, "METRICS", metrics)
    monkeypatch.setattr(handlers, "_reconciler", reconciler)
    body = {**manifest().model_dump(mode="json", by_alias=True, exclude={"status"}), "status": {}}
    body["metadata"]["generation"] = 1
    result = handlers._pass(handlers.Remembered(), body, True)
    assert result.status["monitoring"]["results"][0]["verdict"] == "breach"
    value = metrics.registry.get_sample_value
    assert value("steward_reconcile_duration_seconds_count", MD) == 1
    assert value("steward_monitor_verdict", {**DRIFT, "verdict": "breach"}) == 1

    reconciler.fail = True
    with pytest.raises(RuntimeError):
        handlers._pass(handlers.Remembered(), body, False)
    assert value("steward_reconcile_duration_seconds_count", MD) == 2
    assert value("steward_monitor_verdict", {**DRIFT, "verdict": "breach"}) == 1  # as the last pass left it


def test_metrics_port_from_the_environment() -> None:
    assert config_from_env({"STEWARD_METRICS_PORT": "9090"}).metrics_port == 9090
    assert config_from_env({}).metrics_port is None


def test_dev_up_metrics_port_reaches_the_control_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spawned: list[list[str]] = []

    def spawn(self: Stack, name: str, argv: list[str], env: dict[str, str]) -> int:
        spawned.append(argv)
        return 1

    monkeypatch.setattr(Stack, "_spawn", spawn)
    Stack(home=tmp_path, metrics_port=9191).start_loop()
    Stack(home=tmp_path).start_loop()
    assert spawned[0][-2:] == ["--metrics-port", "9191"]
    assert "--metrics-port" not in spawned[1]
