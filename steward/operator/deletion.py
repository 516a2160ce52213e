"""Deleting a ModelDeployment (pure): when the finalizer may go, and what is recorded.

Moved out of `core` (which re-exports these names) so that the core holds the reconcile decision only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from steward.api.conditions import Reason
from steward.api.model_deployment import ModelDeployment
from steward.operator.actions import (
    Action,
    DeleteModelAlias,
    DeleteServeApplication,
    EventType,
    PostEvent,
    RecordAudit,
)
from steward.operator.audit_drafts import deletion_draft
from steward.operator.config import OperatorConfig
from steward.operator.observations import Problem
from steward.operator.serve_config import app_name, ray_address


@dataclass(frozen=True)
class DeletionDecision:
    release_finalizer: bool
    actions: list[Action]
    # While the finalizer is held: why, for the retry's message.
    waiting_for: str = ""


def decide_deletion(
    md: ModelDeployment,
    delete_problem: Problem | None,
    deletion_requested_at: datetime,
    config: OperatorConfig,
    now: datetime,
) -> DeletionDecision:
    """After trying to remove the Serve application: release the finalizer, or try again?

    A Ray cluster that never comes back must not keep a namespace from being deleted, so after
    `deletion_timeout_s` of "Ray is gone" the finalizer goes anyway, with a warning that names what may be
    left behind. Any other failure (a refused token, a rejected config, another writer) means Ray is there
    and still serves the model: the finalizer stays until it is fixed, because releasing it would orphan a
    serving application that nothing tracks any more. An address the operator may not contact is released
    at once: nothing was ever sent there.
    """
    if delete_problem is None:
        return DeletionDecision(True, [RecordAudit(deletion_draft(md, deletion_requested_at, None))])
    waited_s = (now - deletion_requested_at).total_seconds()
    ray_gone = delete_problem.reason == Reason.RAY_UNREACHABLE
    if ray_gone and waited_s < config.deletion_timeout_s:
        return DeletionDecision(False, [], f"Ray Serve to answer: {delete_problem.message}")
    if not ray_gone and delete_problem.reason != Reason.RAY_ADDRESS_NOT_ALLOWED:
        return DeletionDecision(
            False,
            [],
            f"a fix for {delete_problem.reason.value}: {delete_problem.message} "
            f"(the model keeps serving on {ray_address(md, config)} until it is removed)",
        )
    leftover = f"Serve application {app_name(md)} may remain on {ray_address(md, config)}"
    return DeletionDecision(
        True,
        [
            RecordAudit(deletion_draft(md, deletion_requested_at, f"{delete_problem.message}; {leftover}")),
            PostEvent(
                EventType.WARNING,
                "CleanupAbandoned",
                f"gave up removing the model from Ray Serve after {waited_s:.0f}s: "
                f"{delete_problem.message}. {leftover}; remove it by hand",
            ),
        ],
    )


def deletion_actions(md: ModelDeployment, config: OperatorConfig) -> list[Action]:
    return [DeleteServeApplication(ray_address(md, config), app_name(md))]


def registry_cleanup_actions(md: ModelDeployment) -> list[Action]:
    """A candidate canaried when its deployment goes carries the challenger alias, which nothing would ever
    clear afterwards: remove it, if it still names the candidate (a person may have moved it since)."""
    retraining = md.status.retraining
    candidate = retraining.candidate_rollout if retraining is not None else None
    if candidate is None:
        return []
    return [DeleteModelAlias(md.spec.model.name, candidate.challenger_alias, candidate.version)]
