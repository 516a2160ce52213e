"""What the reconciler saw of the outside world, handed to the pure core as plain values."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from steward.api.conditions import Reason
from steward.api.model_deployment import MAX_BUFFERED_AUDIT_RECORDS
from steward.api.monitoring_status import CaptureStatus
from steward.api.serve_app import TrafficStats

if TYPE_CHECKING:
    # monitoring's audit drafts import this module: the name is only needed for the annotation.
    from steward.operator.monitor_jobs import JobObservation
    from steward.operator.retraining_observation import RetrainingObservation


@dataclass(frozen=True)
class ResolvedModel:
    """The registry's answer: the version that spec.model names, known to exist."""

    name: str
    version: str
    model_uri: str
    source: str | None = None
    run_id: str | None = None


@dataclass(frozen=True)
class Problem:
    """Something went wrong observing; `temporary` problems are retried with backoff."""

    reason: Reason
    message: str
    temporary: bool


@dataclass(frozen=True)
class ServeState:
    """Ray Serve's view of one of our applications."""

    status: str
    message: str = ""
    deployed_config: dict[str, Any] | None = None
    ready_replicas: int = 0
    deployment_messages: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ServeApps:
    """Our applications on the Ray cluster: the router, and one per version (absent ones are missing)."""

    router: ServeState | None = None
    versions: dict[str, ServeState] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return self.router is None and not self.versions


@dataclass(frozen=True)
class AuditBacklog:
    """This deployment's records that the audit store has not taken, as the reconciler found them after
    trying to store them once more, before deciding."""

    pending: int
    # The records' identities (uid, cause): a draft with one of them is a replay, not a new record.
    causes: frozenset[tuple[str | None, str]]
    # Why the store refused them, in the store's words (names a corrupt record file and what to do).
    error: str
    cap: int = MAX_BUFFERED_AUDIT_RECORDS


@dataclass(frozen=True)
class Observations:
    model: ResolvedModel | Problem
    serve: ServeApps | Problem
    # The router's cumulative traffic figures; read only while a rollout needs them.
    traffic: TrafficStats | Problem | None = None
    # None: no audit store, or the caller did not look (a pure test).
    audit: AuditBacklog | None = None
    # Monitor jobs in flight (by submission id): Ray's state and, once written, the result.
    monitor_jobs: Mapping[str, JobObservation] = field(default_factory=dict)
    # The routers' capture counters (written, dropped, last error), when capture is on.
    capture: CaptureStatus | None = None
    # The retraining run's job and its trigger's stored record; None: not looked at (a pure test).
    retraining: RetrainingObservation | None = None
