"""Which passes may decide from a shared, slightly old observation, and which must look afresh (pure).

At steady state hundreds of objects pass every resync interval and almost every pass finds nothing to do.
Reading the Ray cluster's whole application list and resolving the model in MLflow for each of them made
the traffic grow with the square of the number of objects. An object at rest may decide from an observation
that another object's pass made a few seconds ago: at worst a change made behind Steward's back is seen one
max age later, and every write still re-reads what it merges. An object in motion (a rollout, a deploy
that is settling, a spec not acted on yet, a problem being retried, a retraining run or a person's
retraining command) always looks afresh, so that nothing moves traffic or claims a transition from what the
cluster showed before.
"""

from __future__ import annotations

from steward.api.conditions import Phase
from steward.api.model_deployment import ModelDeployment
from steward.operator.retraining_plan import pending_command


def may_share_observations(md: ModelDeployment) -> bool:
    status = md.status
    retraining = status.retraining
    return (
        status.phase == Phase.READY
        and status.rollout is None
        and status.observed_generation == md.metadata.generation
        and (retraining is None or (retraining.current is None and retraining.candidate_rollout is None))
        and pending_command(md, None if retraining is None else retraining.handled_command) is None
    )
