"""What the reconciler observed of a retraining run (its Ray or Kubernetes Job, and the trail's record of
the trigger) for the pure decision in steward.operator.retraining to read."""

from __future__ import annotations

from dataclasses import dataclass

from steward.api.training_job import TrainingResult
from steward.operator.monitor_jobs import JobState


@dataclass(frozen=True)
class TrainingJobObservation:
    """What the reconciler saw of the run's job: Ray's state and, once written, the result."""

    state: JobState
    result: TrainingResult | None = None
    # Why there is no usable result: Ray's message and the log's end, or "result.json is corrupt: ...".
    problem: str = ""


@dataclass(frozen=True)
class StoredRecord:
    seq: int
    hash: str


@dataclass(frozen=True)
class RetrainingObservation:
    # None: no job submitted yet, or it could not be looked at this pass (decided next pass).
    job: TrainingJobObservation | None = None
    # The trigger's `retraining-requested` record once the trail holds it.
    trigger_record: StoredRecord | None = None
    # False when no audit trail is configured: a run does not wait for a record that never comes.
    trail: bool = True
