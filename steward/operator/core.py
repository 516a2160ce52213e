"""The heart of the operator: `decide(md, observations, config, now) -> Decision` (pure).

Given what the user asked for (spec), what we recorded last time (status) and what we see now
(observations), it returns the next status and the actions that move the world toward the spec. It reads no
clock, no environment and no network, so every branch is a table row in the unit tests, and the Kopf
handlers and the local dev loop drive exactly the same logic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from steward.api.conditions import ConditionStatus, ConditionType, Reason
from steward.api.model_deployment import (
    Condition,
    ModelDeployment,
    ModelDeploymentStatus,
    ServeApplicationStatus,
    StableVersion,
)
from steward.operator.actions import (
    Action,
    ApplyServeApplication,
    DeleteServeApplication,
    EventType,
    PostEvent,
    RecordAudit,
)
from steward.operator.audit_drafts import alias_drafts, deletion_draft, outcome_drafts, spec_drafts
from steward.operator.config import OperatorConfig
from steward.operator.observations import Observations, Problem, ResolvedModel, ServeState
from steward.operator.serve_config import (
    app_name,
    configs_match,
    plan_serve_config,
    ray_address,
    route_prefix,
)
from steward.operator.status import derive_phase, find, set_condition

TRUE, FALSE, UNKNOWN = ConditionStatus.TRUE, ConditionStatus.FALSE, ConditionStatus.UNKNOWN


@dataclass(frozen=True)
class Decision:
    status: ModelDeploymentStatus
    actions: list[Action] = field(default_factory=list)
    # A temporary problem: call again soon, with backoff, instead of at the next resync.
    retry_reason: str = ""

    @property
    def retry(self) -> bool:
        return bool(self.retry_reason)


class _Conditions:
    """Accumulates condition changes for one decision."""

    def __init__(self, old: list[Condition], now: datetime, generation: int | None) -> None:
        self.items = list(old)
        self.now = now
        self.generation = generation

    def set(self, type_: ConditionType, status: ConditionStatus, reason: Reason, message: str) -> None:
        self.items = set_condition(self.items, type_, status, reason, message, self.now, self.generation)

    def ready(self, status: ConditionStatus, reason: Reason, message: str) -> None:
        self.set(ConditionType.READY, status, reason, message)

    def progressing(self, status: ConditionStatus, reason: Reason, message: str = "") -> None:
        self.set(ConditionType.PROGRESSING, status, reason, message)

    def degraded(self, status: ConditionStatus, reason: Reason, message: str = "") -> None:
        self.set(ConditionType.DEGRADED, status, reason, message)


def decide(md: ModelDeployment, obs: Observations, config: OperatorConfig, now: datetime) -> Decision:
    old = md.status
    cond = _Conditions(old.conditions, now, md.metadata.generation)
    actions: list[Action] = []
    retry_reason = ""
    serve_app = old.serve_application
    ready_replicas = old.ready_replicas
    stable = old.stable
    address = ray_address(md, config)

    if isinstance(obs.serve, ServeState):
        serve_app = ServeApplicationStatus(
            name=app_name(md), status=obs.serve.status, message=_serve_message(obs.serve)
        )
        ready_replicas = obs.serve.ready_replicas
    elif obs.serve is None:
        serve_app, ready_replicas = None, 0

    drafts = spec_drafts(md)
    if isinstance(obs.model, ResolvedModel):
        drafts += alias_drafts(md, obs.model)

    if isinstance(obs.model, Problem):
        # What is serving keeps serving: a registry hiccup or a typo in the spec must not take a model down.
        problem = obs.model
        _report_problem(cond, problem)
        retry_reason = problem.message if problem.temporary else ""
    elif isinstance(obs.serve, Problem):
        _report_problem(cond, obs.serve)
        retry_reason = obs.serve.message if obs.serve.temporary else ""
    else:
        model = obs.model
        desired = plan_serve_config(md, model, config)
        if obs.serve is None or not configs_match(obs.serve.deployed_config, desired):
            actions.append(ApplyServeApplication(address, desired))
            message = f"deploying {model.name} version {model.version} to Ray Serve at {address}"
            cond.ready(FALSE, Reason.DEPLOYING, message)
            cond.progressing(TRUE, Reason.DEPLOYING, message)
            serve_app = ServeApplicationStatus(
                name=app_name(md), status="DEPLOYING", message=serve_app.message if serve_app else ""
            )
        else:
            stable = _observe_serving(cond, model, obs.serve, stable)

    status = ModelDeploymentStatus(
        phase=derive_phase(cond.items),
        observed_generation=md.metadata.generation,
        conditions=cond.items,
        stable=stable,
        endpoint=config.endpoint_for(address, route_prefix(md)),
        serve_application=serve_app,
        ready_replicas=ready_replicas,
    )
    actions.extend(_transition_events(old.conditions, status.conditions))
    drafts += outcome_drafts(md, status, obs.model if isinstance(obs.model, ResolvedModel) else None)
    # Records first: the trail says what happened before anything reports it done.
    actions = [RecordAudit(d) for d in drafts] + actions
    return Decision(status=status, actions=actions, retry_reason=retry_reason)


def _report_problem(cond: _Conditions, problem: Problem) -> None:
    if problem.temporary:
        cond.ready(UNKNOWN, problem.reason, f"{problem.message} (retrying)")
        cond.progressing(TRUE, problem.reason, problem.message)
    else:
        cond.ready(FALSE, problem.reason, problem.message)
        cond.progressing(FALSE, problem.reason, problem.message)
        cond.degraded(TRUE, problem.reason, problem.message)


def _observe_serving(
    cond: _Conditions, model: ResolvedModel, serve: ServeState, stable: StableVersion | None
) -> StableVersion | None:
    """Our config is deployed: report how Ray is doing with it. Returns the new `stable`."""
    what = f"{model.name} version {model.version}"
    if serve.status == "RUNNING":
        message = f"serving {what} with {serve.ready_replicas} ready replica(s)"
        cond.ready(TRUE, Reason.RUNNING, message)
        cond.progressing(FALSE, Reason.AS_EXPECTED, message)
        cond.degraded(FALSE, Reason.AS_EXPECTED)
        return StableVersion(
            version=model.version, model_uri=model.model_uri, source=model.source, run_id=model.run_id
        )
    if serve.status == "DEPLOY_FAILED":
        message = f"Ray Serve failed to deploy {what}: {_serve_message(serve)}"
        cond.ready(FALSE, Reason.DEPLOY_FAILED, message)
        cond.progressing(FALSE, Reason.DEPLOY_FAILED, message)
        cond.degraded(TRUE, Reason.DEPLOY_FAILED, message)
    elif serve.status == "UNHEALTHY":
        message = f"Ray Serve reports {what} unhealthy: {_serve_message(serve)}"
        cond.ready(FALSE, Reason.UNHEALTHY, message)
        cond.degraded(TRUE, Reason.UNHEALTHY, message)
    else:  # NOT_STARTED, DEPLOYING, DELETING: Ray is still working on it.
        message = f"Ray Serve is deploying {what} ({serve.status})"
        cond.ready(FALSE, Reason.DEPLOYING, message)
        cond.progressing(TRUE, Reason.DEPLOYING, message)
    return stable


def _serve_message(serve: ServeState) -> str:
    parts = [serve.message] if serve.message else []
    parts += [f"{name}: {msg}" for name, msg in sorted(serve.deployment_messages.items())]
    # Ray's DEPLOY_FAILED messages carry whole tracebacks; the status keeps the useful end.
    text = "; ".join(parts)
    return text if len(text) <= 2000 else "..." + text[-2000:]


def _transition_events(old: list[Condition], new: list[Condition]) -> list[PostEvent]:
    """One Event when Ready changes status or reason; none on a resync that changed nothing."""
    before, after = find(old, ConditionType.READY), find(new, ConditionType.READY)
    if after is None or (
        before is not None and (before.status, before.reason) == (after.status, after.reason)
    ):
        return []
    kind = (
        EventType.NORMAL if after.status != FALSE or after.reason == Reason.DEPLOYING else EventType.WARNING
    )
    return [PostEvent(kind, after.reason.value, after.message)]


@dataclass(frozen=True)
class DeletionDecision:
    release_finalizer: bool
    actions: list[Action]


def decide_deletion(
    md: ModelDeployment,
    delete_problem: Problem | None,
    deletion_requested_at: datetime,
    config: OperatorConfig,
    now: datetime,
) -> DeletionDecision:
    """After trying to remove the Serve application: release the finalizer, or try again?

    A Ray cluster that never comes back must not keep a namespace from being deleted, so after
    `deletion_timeout_s` the finalizer goes anyway, with a warning that names what may be left behind.
    """
    if delete_problem is None:
        return DeletionDecision(True, [RecordAudit(deletion_draft(md, deletion_requested_at, None))])
    waited_s = (now - deletion_requested_at).total_seconds()
    if delete_problem.temporary and waited_s < config.deletion_timeout_s:
        return DeletionDecision(False, [])
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


def retry_delay_s(attempt: int, max_delay_s: float) -> float:
    """Exponential backoff for temporary problems: 1, 2, 4, ... seconds, capped."""
    return float(min(max_delay_s, 2 ** min(attempt, 16)))
