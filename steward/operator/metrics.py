"""Prometheus metrics of the operator, set from each deployment's status after a reconcile.

Everything but the reconcile duration is read off status (`observe_status`), so the figures a scrape shows
are the ones `kubectl get md -o yaml` shows, and a restarted operator shows them again after one pass.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from time import perf_counter
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, Histogram, start_http_server

from steward.api.model_deployment import ModelDeploymentStatus
from steward.api.monitor_results import MonitorVerdict
from steward.api.rollout import RolloutState
from steward.operator.core import Decision
from steward.operator.retraining_metrics import RetrainingGauges

_D = ("deployment",)
_DVM = ("deployment", "version", "monitor")


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.verdict = Gauge(
            "steward_monitor_verdict",
            "1 for the latest verdict of a monitor on a version, 0 for the others",
            (*_DVM, "verdict"),
            registry=r,
        )
        self.figure = Gauge(
            "steward_monitor_figure",
            "Latest value of a check that failed its threshold",
            (*_DVM, "check"),
            registry=r,
        )
        self.threshold = Gauge(
            "steward_monitor_threshold", "Threshold of that check", (*_DVM, "check"), registry=r
        )
        self.rows = Gauge("steward_monitor_window_rows", "Rows in the latest judged window", _DVM, registry=r)
        self.label_coverage = Gauge(
            "steward_monitor_label_coverage",
            "Share of the latest window's rows with a joined outcome (label)",
            _DVM,
            registry=r,
        )
        self.window_end = Gauge(
            "steward_monitor_window_end_timestamp_seconds",
            "End of the latest window",
            _DVM,
            registry=r,
        )
        self.jobs_in_flight = Gauge(
            "steward_monitor_jobs_in_flight", "Monitor jobs submitted and not yet acted on", _D, registry=r
        )
        self.capture_written = Gauge(
            "steward_capture_records_written",
            "Captured records written (router)",
            _D,
            registry=r,
        )
        self.capture_dropped = Gauge(
            "steward_capture_records_dropped",
            "Captured records dropped",
            _D,
            registry=r,
        )
        self.rollout_state = Gauge(
            "steward_rollout_state", "1 for the rollout's current state", (*_D, "state"), registry=r
        )
        self.rollout_weight = Gauge(
            "steward_rollout_canary_weight_percent",
            "Percent of live traffic on the new version",
            (*_D, "version"),
            registry=r,
        )
        self.audit_pending = Gauge(
            "steward_audit_records_pending", "Audit records waiting for the store", _D, registry=r
        )
        self.reconcile_seconds = Histogram(
            "steward_reconcile_duration_seconds",
            "Time one reconcile pass took",
            _D,
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.retraining = RetrainingGauges(r)
        # Label sets set for each deployment last time, so that a version or monitor that went away goes too.
        self._seen: dict[str, set[tuple[Gauge, tuple[str, ...]]]] = {}

    def _set(
        self, seen: set[tuple[Gauge, tuple[str, ...]]], gauge: Gauge, labels: tuple[str, ...], value: float
    ) -> None:
        gauge.labels(*labels).set(value)
        seen.add((gauge, labels))

    def observe_status(self, md_key: str, status: ModelDeploymentStatus) -> None:
        seen: set[tuple[Gauge, tuple[str, ...]]] = set()
        monitoring = status.monitoring
        if monitoring is not None:
            for result in monitoring.results:
                key = (md_key, result.version, result.monitor)
                for verdict in MonitorVerdict:
                    self._set(seen, self.verdict, (*key, verdict.value), float(result.verdict == verdict))
                for check in result.breached:
                    if check.value is not None:
                        self._set(seen, self.figure, (*key, check.name), check.value)
                    if check.threshold is not None:
                        self._set(seen, self.threshold, (*key, check.name), check.threshold)
                self._set(seen, self.rows, key, result.rows)
                if result.rows:
                    self._set(seen, self.label_coverage, key, result.labelled_rows / result.rows)
                self._set(seen, self.window_end, key, result.window_end.timestamp())
            self._set(seen, self.jobs_in_flight, (md_key,), len(monitoring.jobs))
            if monitoring.capture is not None:
                self._set(seen, self.capture_written, (md_key,), monitoring.capture.written)
                self._set(seen, self.capture_dropped, (md_key,), monitoring.capture.dropped)
        rollout = status.rollout
        for state in RolloutState:
            self._set(
                seen,
                self.rollout_state,
                (md_key, state.value),
                float(rollout is not None and rollout.state == state),
            )
        if rollout is not None:
            self._set(seen, self.rollout_weight, (md_key, rollout.canary.version), rollout.weight)
        self._set(seen, self.audit_pending, (md_key,), status.audit.pending if status.audit else 0)
        self.retraining.observe(lambda g, labels, v: self._set(seen, g, labels, v), md_key, status.retraining)
        for gauge, labels in self._seen.get(md_key, set()) - seen:
            gauge.remove(*labels)
        self._seen[md_key] = seen

    def forget(self, md_key: str) -> None:
        """A deleted deployment's series go with it."""
        for gauge, labels in self._seen.pop(md_key, set()):
            gauge.remove(*labels)
        # KeyError: never reconciled in this process, nothing to remove.
        with suppress(KeyError):
            self.reconcile_seconds.remove(md_key)

    @contextmanager
    def reconcile_timer(self, md_key: str) -> Iterator[None]:
        started = perf_counter()
        try:
            yield
        finally:
            self.reconcile_seconds.labels(md_key).observe(perf_counter() - started)

    def reconciled(self, md_key: str, reconcile: Callable[[], Decision]) -> Decision:
        """One reconcile pass, timed, then the figures of the status it leaves (also a failed pass's: its
        status says what failed). An exception is timed and raised on, and the figures stay as they were."""
        with self.reconcile_timer(md_key):
            decision = reconcile()
        self.observe_status(md_key, decision.status)
        return decision

    def serve(self, port: int, addr: str = "0.0.0.0") -> Any:
        """Serve /metrics on a port in a daemon thread; returns the server (shutdown() stops it)."""
        server, _thread = start_http_server(port, addr=addr, registry=self.registry)
        return server


METRICS = Metrics()


def observe_status(md_key: str, status: ModelDeploymentStatus) -> None:
    METRICS.observe_status(md_key, status)


def serve(port: int) -> Any:
    return METRICS.serve(port)
