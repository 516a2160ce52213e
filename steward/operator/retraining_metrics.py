"""Prometheus figures of retraining, read off `status.retraining` like the operator's other metrics.

Gauges, not counters: status keeps the last runs (at most 10), so a figure is "of the runs status holds", and
a restarted operator shows the same numbers after one pass instead of counting old runs again.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Gauge

from steward.api.retraining import CandidateOutcome, RetrainingState, RetrainingStatus, RunOutcome

Setter = Callable[[Gauge, tuple[str, ...], float], None]
_D = ("deployment",)


class RetrainingGauges:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.state = Gauge(
            "steward_retraining_state", "1 for the retraining run's current state", (*_D, "state"), registry=r
        )
        self.runs = Gauge(
            "steward_retraining_recent_runs",
            "Finished retraining runs in status (the last 10), by outcome",
            (*_D, "outcome"),
            registry=r,
        )
        self.candidates = Gauge(
            "steward_retraining_recent_candidate_rollouts",
            "Candidates of those runs that Steward rolled out, by what became of them",
            (*_D, "outcome"),
            registry=r,
        )
        self.last_finished = Gauge(
            "steward_retraining_last_run_finished_timestamp_seconds",
            "When the newest run of each outcome ended",
            (*_D, "outcome"),
            registry=r,
        )
        self.last_duration = Gauge(
            "steward_retraining_last_run_duration_seconds",
            "Submission to end of the newest finished run that was submitted",
            _D,
            registry=r,
        )
        self.candidate = Gauge(
            "steward_retraining_candidate_rollout",
            "1 while a passing candidate waits for or runs its canary",
            (*_D, "version", "state"),
            registry=r,
        )

    def observe(self, put: Setter, md_key: str, status: RetrainingStatus | None) -> None:
        """Sets every series of this deployment through `put`, which remembers what it set."""
        if status is None:
            return
        for state in RetrainingState:
            put(self.state, (md_key, state.value), float(status.state == state))
        for outcome in RunOutcome:
            put(self.runs, (md_key, outcome.value), sum(r.outcome == outcome for r in status.runs))
            newest = [r.finished_at for r in status.runs if r.outcome == outcome]
            if newest:
                put(self.last_finished, (md_key, outcome.value), max(newest).timestamp())
        for result in CandidateOutcome:
            put(self.candidates, (md_key, result.value), sum(r.rollout == result for r in status.runs))
        submitted = [r for r in status.runs if r.started_at is not None]
        if submitted:
            last = submitted[-1]
            assert last.started_at is not None
            put(self.last_duration, (md_key,), (last.finished_at - last.started_at).total_seconds())
        cr = status.candidate_rollout
        if cr is not None:
            put(self.candidate, (md_key, cr.version, cr.state.value), 1.0)
