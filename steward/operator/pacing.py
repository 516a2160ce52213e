"""When an object's next reconcile pass is due, and which body a pass may decide from (pure).

Shared by the Kopf daemon (one serialised loop per object) and the local control loop, so that both pace
passes and back off the same way.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from steward.api.retraining import COMMAND_ANNOTATIONS
from steward.operator.config import OperatorConfig
from steward.operator.core import retry_delay_s

# The status this process wrote is not known (the write failed or its answer was lost): read afresh.
UNKNOWN = "unknown"
RESYNC_SPREAD = 0.1


@dataclass(frozen=True)
class Pace:
    """When to look again, and how many passes in a row failed (the backoff's exponent)."""

    after_s: float
    attempts: int


def next_pass(
    *, retry: bool, requeue_after_s: float | None, attempts: int, config: OperatorConfig, draw: float
) -> Pace:
    """A pass that must be retried (a temporary problem, an invalid spec) backs off exponentially with full
    jitter (`draw` in [0, 1]): many objects failing on one outage do not all come back at once. Otherwise
    the decision's own pace (a rollout's tick) or the resync interval, jittered by the same draw."""
    if retry:
        return Pace(retry_delay_s(attempts, config.retry_max_delay_s, draw=draw), attempts + 1)
    if requeue_after_s is not None:
        return Pace(requeue_after_s, 0)
    # Spread over +-10% of the interval: objects that passed together (every one at the operator's start)
    # drift apart, so a resync is a steady trickle of passes, not a burst that a spec change queues behind.
    return Pace(config.resync_interval_s * (1 - RESYNC_SPREAD + 2 * RESYNC_SPREAD * draw), 0)


def digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def without_nulls(value: Any) -> Any:
    """What a merge patch leaves behind: null deletes a field."""
    if isinstance(value, Mapping):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


def is_urgent(body: Mapping[str, Any], acted_on: str | None) -> bool:
    """Does this pass answer a person (a spec change, a command, a new object) rather than the clock? Such a
    pass goes ahead of routine ones. An object found at the operator's start whose status shows its spec
    handled is a routine pass: a restart is no one waiting."""
    if inputs_digest(body) == acted_on:
        return False
    if acted_on is not None:
        return True
    status = body.get("status") or {}
    return not status or status.get("observedGeneration") != (body.get("metadata") or {}).get("generation")


def inputs_digest(body: Mapping[str, Any]) -> str:
    """What a person changes and a pass acts on: the spec (and its generation) and their commands."""
    metadata = body.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    commands = [annotations.get(a) for a in COMMAND_ANNOTATIONS]
    return digest([body.get("spec"), metadata.get("generation"), *commands])


@dataclass
class Pacer:
    """One object's reconcile state between passes (kept in Kopf's per-object memo, or per key locally)."""

    due_at: float = 0.0
    attempts: int = 0
    # The inputs the last pass decided from: different inputs are acted on at once, whatever the backoff.
    acted_on: str | None = None
    # The status this process last wrote, as the API server stored it (None: nothing written yet). Kept as
    # the value, not a digest of it: comparing is cheaper than serialising and hashing it on every pass.
    written: Mapping[str, Any] | str | None = None

    def wait_s(self, body: Mapping[str, Any], now: float) -> float:
        if inputs_digest(body) != self.acted_on:
            return 0.0
        return max(0.0, self.due_at - now)

    def is_behind(self, body: Mapping[str, Any]) -> bool:
        """Is this body possibly older than our own last status write? The watch stream can deliver a write
        after the next pass is due; deciding from the older status would redo a transition (a manual
        command applied twice). Not a matching status means: read the object afresh, never guess by time."""
        if self.written is None:
            return False
        return self.written == UNKNOWN or without_nulls(body.get("status") or {}) != self.written

    def passed(self, inputs: str, pace: Pace, now: float) -> None:
        self.acted_on = inputs
        self.attempts = pace.attempts
        self.due_at = now + pace.after_s
