"""When an object's pass may repeat its last decision instead of deciding again (pure).

At steady state hundreds of objects pass every resync and almost every pass decides exactly what the last
one did: decide() and dumping its status were about a fifth of a pass's cost at 500 objects. A pass still
observes everything (the shared list, the registry, the audit trail) and is skipped only past that point,
when deciding again could only repeat the last decision: the same body (the very object its parse memo
returned), the same observations and the same audit state, and the last decision was settled. Settled
means that no clock is waiting on it: the object was at rest, nothing was in flight, the decision did
nothing and asked for no earlier pass, and its status is already the object's. Anything that runs on a
clock says so with `requeue_after_s` (a monitor's next window, a retraining run's poll, a rollout's tick) or
keeps the object in motion, and such a decision is never repeated.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from steward.api.model_deployment import AuditTrailStatus, ModelDeployment
from steward.operator.core import Decision
from steward.operator.freshness import may_share_observations
from steward.operator.observations import Observations


def is_settled(md: ModelDeployment, obs: Observations, decision: Decision) -> bool:
    """Would a pass with the same inputs decide the same, whenever it runs?"""
    return (
        may_share_observations(md)
        and md.status_unreadable is None
        and not md.status_dropped
        and not decision.actions
        and not decision.retry
        and decision.requeue_after_s is None
        # Nothing whose figures move without the object changing: router counters, monitor jobs.
        and obs.traffic is None
        and obs.capture is None
        and not obs.monitor_jobs
        and (obs.audit is None or obs.audit.pending == 0)
        and decision.status == md.status
    )


@dataclass
class SettledPass:
    """One object's last settled decision and what it was decided from (in Kopf's per-object memo)."""

    md: ModelDeployment | None = None
    obs: Observations | None = None
    decision: Decision | None = None

    def again(
        self, md: ModelDeployment, obs: Observations, audit: Callable[[], AuditTrailStatus]
    ) -> Decision | None:
        """The last decision, if this pass's inputs are the ones it was decided from; None: decide."""
        if self.decision is None or md is not self.md or obs != self.obs:
            return None
        # The trail's own figures (its last sequence number) are in status but not in the observations.
        return self.decision if audit() == self.decision.status.audit else None

    def remember(self, md: ModelDeployment, obs: Observations, decision: Decision) -> None:
        if is_settled(md, obs, decision):
            self.md, self.obs, self.decision = md, obs, decision
        else:
            self.md, self.obs, self.decision = None, None, None
