"""The heart of the operator: `decide(md, observations, config, now) -> Decision` (pure).

Given what the user asked for (spec), what we recorded last time (status) and what we see now
(observations), it returns the next status and the actions that move the world toward the spec. It reads no
clock, no environment and no network, so every branch is a table row in the unit tests, and the Kopf
handlers and the local dev loop drive exactly the same logic.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from steward.api.conditions import ConditionStatus, ConditionType, Reason
from steward.api.model_deployment import (
    Condition,
    ModelDeployment,
    ModelDeploymentStatus,
    ServeApplicationStatus,
    StableVersion,
)
from steward.api.rollout import Outcome, RolloutState
from steward.api.serve_app import version_app_name
from steward.operator.actions import (
    Action,
    ApplyServeApplications,
    EventType,
    PostEvent,
    RecordAudit,
)
from steward.operator.audit_drafts import (
    alias_drafts,
    alias_target,
    outcome_drafts,
    spec_drafts,
    with_trusted_identity,
)
from steward.operator.audit_guard import audit_events, hold_for_audit, holds_back, pending_condition
from steward.operator.config import OperatorConfig
from steward.operator.deletion import DeletionDecision, decide_deletion, deletion_actions
from steward.operator.monitoring_plan import monitoring_actions, monitoring_decision, requeue_after_s
from steward.operator.observations import Observations, Problem, ResolvedModel, ServeApps, ServeState
from steward.operator.retraining_rollout import candidate_queued, candidate_step, rollout_target
from steward.operator.retraining_step import retraining_actions, retraining_decision
from steward.operator.rollout import RolloutDecision, decide_rollout
from steward.operator.rollout_analysis import window_due_in_s
from steward.operator.serve_config import (
    TrafficPlan,
    app_name,
    configs_match,
    plan_serve_apps,
    ray_address,
    ray_address_refusal,
    route_prefix,
)
from steward.operator.status import derive_phase, find, set_condition
from steward.operator.status_recovery import held_because, hold_unreadable

# Re-exported: the reconciler, the handlers and tests import them from here.
__all__ = ["Decision", "DeletionDecision", "decide", "decide_deletion", "deletion_actions", "retry_delay_s"]
TRUE, FALSE, UNKNOWN = ConditionStatus.TRUE, ConditionStatus.FALSE, ConditionStatus.UNKNOWN


@dataclass(frozen=True)
class Decision:
    status: ModelDeploymentStatus
    actions: list[Action] = field(default_factory=list)
    # A temporary problem: call again soon, with backoff, instead of at the next resync.
    retry_reason: str = ""
    # Call again after this long even when nothing changes (a rollout's steps and windows move with time).
    requeue_after_s: float | None = None

    @property
    def retry(self) -> bool:
        return bool(self.retry_reason)


class _Conditions:
    """Collects the conditions one decision wants; the last word on each type wins, and transition times
    are computed once, against the status as it was."""

    def __init__(self, old: list[Condition], now: datetime, generation: int | None) -> None:
        self.old = old
        self.now = now
        self.generation = generation
        self.wanted: dict[ConditionType, tuple[ConditionStatus, Reason, str]] = {}

    def set(self, type_: ConditionType, status: ConditionStatus, reason: Reason, message: str) -> None:
        self.wanted[type_] = (status, reason, message)

    def ready(self, status: ConditionStatus, reason: Reason, message: str) -> None:
        self.set(ConditionType.READY, status, reason, message)

    def progressing(self, status: ConditionStatus, reason: Reason, message: str = "") -> None:
        self.set(ConditionType.PROGRESSING, status, reason, message)

    def degraded(self, status: ConditionStatus, reason: Reason, message: str = "") -> None:
        self.set(ConditionType.DEGRADED, status, reason, message)

    @property
    def items(self) -> list[Condition]:
        items = list(self.old)
        for type_, (status, reason, message) in self.wanted.items():
            items = set_condition(items, type_, status, reason, message, self.now, self.generation)
        return items


def decide(md: ModelDeployment, obs: Observations, config: OperatorConfig, now: datetime) -> Decision:
    md = with_trusted_identity(md, config.identity_stamped_by_webhook)
    if (unreadable := held_because(md)) is not None:
        # Without stable and rollout, the plan below would send all traffic to the spec's version.
        held, notices, retry = hold_unreadable(md, obs, now, unreadable)
        return Decision(held, list(notices), retry, requeue_after_s=config.rollout_tick_s)
    old = md.status
    cond = _Conditions(old.conditions, now, md.metadata.generation)
    actions: list[Action] = []
    events: list[PostEvent] = []
    if md.status_dropped:
        # Rebuilt by this pass from observations; said once, since the status written now reads whole.
        dropped = f"dropped and rebuilt: {'; '.join(md.status_dropped)}"
        events.append(PostEvent(EventType.WARNING, "StatusPartlyUnreadable", dropped))
    notices = list(events)  # what a pass held back by the audit trail still says
    retry_reason = ""
    serve_app = old.serve_application
    ready_replicas = old.ready_replicas
    stable, rollout, history = old.stable, old.rollout, old.rollout_history
    address = ray_address(md, config)
    if (refusal := ray_address_refusal(address, config)) is not None:
        # Whatever was observed, nothing is sent there: the spec named a cluster the platform does not allow.
        obs = replace(obs, serve=Problem(Reason.RAY_ADDRESS_NOT_ALLOWED, refusal, temporary=False))

    if isinstance(obs.serve, ServeApps):
        serve_app = _serve_summary(app_name(md), obs.serve)
    # Before the rollout moves: a `rollback` monitor's breach of the canary fails it in this same pass.
    mon = monitoring_decision(md, obs, config, now)
    for condition in mon.conditions:
        cond.set(*condition)

    drafts = spec_drafts(md)
    if isinstance(obs.model, ResolvedModel):
        drafts += alias_drafts(md, obs.model)
    # Before the rollout: a run that ends in this pass may queue its candidate, which the rollout follows.
    can_act = isinstance(obs.model, ResolvedModel) and isinstance(obs.serve, ServeApps)
    ret = retraining_decision(md, obs, mon, config, now, can_act)
    retraining, moved_alias = ret.status, None
    # In the order things happened: a breach, the run it asks for (or ends), then the rollout it starts.
    drafts += mon.drafts + ret.drafts
    events += mon.events + ret.events

    if isinstance(obs.model, Problem):
        # What is serving keeps serving, and a rollout holds its step: a registry hiccup or a typo in the
        # spec must not take a model down or move traffic.
        _report_problem(cond, obs.model)
        retry_reason = obs.model.message if obs.model.temporary else ""
    elif isinstance(obs.serve, Problem):
        _report_problem(cond, obs.serve)
        retry_reason = obs.serve.message if obs.serve.temporary else ""
    else:
        model, serve = obs.model, obs.serve
        outcome = None
        if stable is None:
            plan = TrafficPlan.single(model.version, model.model_uri)
        else:
            outcome = decide_rollout(
                md,
                rollout_target(md, retraining, model, stable),
                stable,
                serve,
                obs.traffic,
                now,
                config.rollout_drain_s,
                mon.canary_failure,
                mon.promotion_rollback,
            )
            plan, stable, rollout, history = outcome.plan, outcome.stable, outcome.rollout, outcome.history
            drafts += outcome.drafts
            events += outcome.events
            candidate = candidate_step(md, retraining, model, outcome, now)
            retraining, moved_alias = candidate.status, candidate.alias_target
            # The registry first: a promotion is not served (nor recorded) before the alias names it.
            actions += candidate.registry
            drafts += candidate.drafts
            events += candidate.events
        desired = plan_serve_apps(md, model.name, plan, config)
        stale = frozenset(version_app_name(app_name(md), v) for v in serve.versions if v not in plan.versions)
        if stale or not _in_sync(serve, desired, app_name(md)):
            actions.append(ApplyServeApplications(address, desired, stale))
        if stable is None:
            stable = _first_deployment(cond, model, serve, in_sync=not actions, address=address)
        else:
            _report_serving(cond, f"{model.name} version {stable.version}", stable, serve)
            if outcome is not None:
                _report_rollout(cond, outcome)
        if stable is not None and stable.version in serve.versions:
            ready_replicas = serve.versions[stable.version].ready_replicas
        actions += monitoring_actions(mon, md, address, config)
    actions += retraining_actions(ret, md, address) if can_act else []

    degraded_decided = ConditionType.DEGRADED in cond.wanted
    if (audit := pending_condition(obs.audit, old.conditions, degraded_decided)) is not None:
        cond.degraded(*audit)
    status = ModelDeploymentStatus(
        phase=derive_phase(cond.items),
        observed_generation=md.metadata.generation,
        conditions=cond.items,
        stable=stable,
        alias_target=moved_alias
        or (alias_target(md, obs.model) if isinstance(obs.model, ResolvedModel) else old.alias_target),
        endpoint=config.endpoint_for(address, route_prefix(md)),
        serve_application=serve_app,
        ready_replicas=ready_replicas,
        rollout=rollout,
        rollout_history=history,
        monitoring=mon.status,
        retraining=retraining,
    )
    actions.extend(_transition_events(old.conditions, status.conditions))
    actions.extend(audit_events(old.conditions, status.conditions))
    actions.extend(events)
    drafts += outcome_drafts(md, status, obs.model if isinstance(obs.model, ResolvedModel) else None)
    if obs.audit is not None and holds_back(obs.audit, drafts):
        # No change, so no record: status keeps what is left to do, and each record is decided again.
        held, why = hold_for_audit(md, obs.audit, now)
        return Decision(held, [*notices, *audit_events(old.conditions, held.conditions)], retry_reason=why)
    # The change first, then the records that describe it, then the Events that report it: the reconciler
    # stops at the first action Ray refuses, so no record claims a weight change or promotion that failed.
    changes = [a for a in actions if not isinstance(a, PostEvent)]
    reports = [a for a in actions if isinstance(a, PostEvent)]
    actions = changes + [RecordAudit(d) for d in drafts] + reports
    return Decision(
        status=status,
        actions=actions,
        retry_reason=retry_reason,
        requeue_after_s=requeue_after_s(
            # A queued candidate starts its canary once the rollout in progress ends: look again soon.
            config.rollout_tick_s if rollout is not None or candidate_queued(retraining) else None,
            window_due_in_s(md, rollout, now),
            mon.requeue_after_s,
            ret.requeue_after_s,
        ),
    )


def _serve_summary(name: str, serve: ServeApps) -> ServeApplicationStatus | None:
    """The router's and every version's applications as one: the worst status, and what Ray says about it."""
    if serve.empty:
        return None
    states = [serve.router, *serve.versions.values()]
    return ServeApplicationStatus(
        name=name, status=_combined(states), message=_serve_messages(states)[-2000:]
    )


def _in_sync(serve: ServeApps, desired: list[dict[str, Any]], router_app: str) -> bool:
    deployed = {router_app: serve.router} | {
        version_app_name(router_app, v): state for v, state in serve.versions.items()
    }
    for config in desired:
        state = deployed.get(config["name"])
        if state is None or not configs_match(state.deployed_config, config):
            return False
    return True


def _report_problem(cond: _Conditions, problem: Problem) -> None:
    if problem.temporary:
        cond.ready(UNKNOWN, problem.reason, f"{problem.message} (retrying)")
        cond.progressing(TRUE, problem.reason, problem.message)
    else:
        cond.ready(FALSE, problem.reason, problem.message)
        cond.progressing(FALSE, problem.reason, problem.message)
        cond.degraded(TRUE, problem.reason, problem.message)


def _combined(states: list[ServeState | None]) -> str:
    """One Ray status for several applications: the worst of them."""
    statuses = [s.status if s is not None else "NOT_STARTED" for s in states]
    for worst in ("DEPLOY_FAILED", "UNHEALTHY", "NOT_STARTED", "DELETING", "DEPLOYING"):
        if worst in statuses:
            return worst
    return "RUNNING"


def _first_deployment(
    cond: _Conditions, model: ResolvedModel, serve: ServeApps, in_sync: bool, address: str
) -> StableVersion | None:
    """Nothing serves yet: the spec's version goes straight in. Returns `stable` once it serves."""
    what = f"{model.name} version {model.version}"
    version_app = serve.versions.get(model.version)
    if not in_sync:
        message = f"deploying {what} to Ray Serve at {address}"
        cond.ready(FALSE, Reason.DEPLOYING, message)
        cond.progressing(TRUE, Reason.DEPLOYING, message)
        return None
    status = _combined([serve.router, version_app])
    detail = _serve_messages([serve.router, version_app])
    if status == "RUNNING":
        replicas = version_app.ready_replicas if version_app else 0
        message = f"serving {what} with {replicas} ready replica(s)"
        cond.ready(TRUE, Reason.RUNNING, message)
        cond.progressing(FALSE, Reason.AS_EXPECTED, message)
        cond.degraded(FALSE, Reason.AS_EXPECTED)
        return StableVersion(
            version=model.version, model_uri=model.model_uri, source=model.source, run_id=model.run_id
        )
    if status == "DEPLOY_FAILED":
        message = f"Ray Serve failed to deploy {what}: {detail}"
        cond.ready(FALSE, Reason.DEPLOY_FAILED, message)
        cond.progressing(FALSE, Reason.DEPLOY_FAILED, message)
        cond.degraded(TRUE, Reason.DEPLOY_FAILED, message)
    elif status == "UNHEALTHY":
        message = f"Ray Serve reports {what} unhealthy: {detail}"
        cond.ready(FALSE, Reason.UNHEALTHY, message)
        cond.degraded(TRUE, Reason.UNHEALTHY, message)
    else:  # NOT_STARTED, DEPLOYING, DELETING: Ray is still working on it.
        message = f"Ray Serve is deploying {what} ({status})"
        cond.ready(FALSE, Reason.DEPLOYING, message)
        cond.progressing(TRUE, Reason.DEPLOYING, message)
    return None


def _report_serving(cond: _Conditions, what: str, stable: StableVersion, serve: ServeApps) -> None:
    """A version has served before: is it still serving? Ray updating a config in place (new weights, more
    replicas) keeps serving, so Ready follows running replicas, not Ray's DEPLOYING status."""
    version_app = serve.versions.get(stable.version)
    status = _combined([serve.router, version_app])
    detail = _serve_messages([serve.router, version_app])
    serving = (
        serve.router is not None
        and version_app is not None
        and serve.router.ready_replicas > 0
        and (version_app.ready_replicas > 0 or version_app.status == "RUNNING")
    )
    replicas = version_app.ready_replicas if version_app else 0
    if status == "DEPLOY_FAILED":
        message = f"Ray Serve failed to update {what}: {detail}"
        cond.ready(TRUE if serving else FALSE, Reason.DEPLOY_FAILED, message)
        cond.progressing(FALSE, Reason.DEPLOY_FAILED, message)
        cond.degraded(TRUE, Reason.DEPLOY_FAILED, message)
    elif status == "UNHEALTHY":
        message = f"Ray Serve reports {what} unhealthy: {detail}"
        cond.ready(TRUE if serving else FALSE, Reason.UNHEALTHY, message)
        cond.degraded(TRUE, Reason.UNHEALTHY, message)
    elif status == "RUNNING":
        message = f"serving {what} with {replicas} ready replica(s)"
        cond.ready(TRUE, Reason.RUNNING, message)
        cond.progressing(FALSE, Reason.AS_EXPECTED, message)
        cond.degraded(FALSE, Reason.AS_EXPECTED)
    elif serving:
        message = (
            f"serving {what} with {replicas} ready replica(s) while Ray Serve applies changes ({status})"
        )
        cond.ready(TRUE, Reason.RUNNING, message)
        cond.progressing(TRUE, Reason.DEPLOYING, message)
        cond.degraded(FALSE, Reason.AS_EXPECTED)
    else:
        message = f"Ray Serve is restoring {what} ({status})"
        cond.ready(FALSE, Reason.DEPLOYING, message)
        cond.progressing(TRUE, Reason.DEPLOYING, message)


def _report_rollout(cond: _Conditions, outcome: RolloutDecision) -> None:
    r = outcome.rollout
    if r is not None:
        reason = Reason.ROLLOUT_PAUSED if r.state == RolloutState.PAUSED else Reason.ROLLOUT_PROGRESSING
        step = f"step {min(r.step_index + 1, r.step_count)}/{r.step_count}, " if r.step_count else ""
        cond.progressing(
            TRUE,
            reason,
            f"{r.strategy.value} rollout of version {r.canary.version} ({step}{r.weight}% of traffic, "
            f"{r.state.value}): {r.message}",
        )
        return
    ended = outcome.finished or outcome.blocked
    if ended is None:
        return
    if ended.outcome == Outcome.ROLLED_BACK:
        message = f"version {ended.to_version} was rolled back: {ended.reason}"
        if outcome.blocked is not None:
            message += "; change the spec or move the alias to try again"
        cond.progressing(FALSE, Reason.ROLLED_BACK, message)
        cond.degraded(TRUE, Reason.ROLLED_BACK, message)
    elif ended.outcome == Outcome.ABORTED:
        message = f"the rollout of version {ended.to_version} was {ended.reason}"
        if outcome.blocked is not None:
            message += "; change the spec or move the alias to try again"
        cond.progressing(FALSE, Reason.ROLLOUT_ABORTED, message)
    elif ended.outcome == Outcome.PROMOTED:
        cond.progressing(FALSE, Reason.PROMOTED, f"version {ended.to_version} promoted: {ended.reason}")


def _serve_message(serve: ServeState) -> str:
    parts = [serve.message] if serve.message else []
    parts += [f"{name}: {msg}" for name, msg in sorted(serve.deployment_messages.items())]
    # Ray's DEPLOY_FAILED messages carry whole tracebacks; the status keeps the useful end.
    text = "; ".join(parts)
    return text if len(text) <= 2000 else "..." + text[-2000:]


def _serve_messages(states: list[ServeState | None]) -> str:
    return "; ".join(message for s in states if s is not None and (message := _serve_message(s)))


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


def retry_delay_s(attempt: int, max_delay_s: float, *, draw: float) -> float:
    """Exponential backoff with full jitter for temporary problems: uniform in [0, min(cap, 2**attempt))
    seconds, `draw` being the caller's uniform random number in [0, 1] (pure: the caller owns the
    randomness). Jitter spreads the retries of many objects that failed on one outage over time."""
    return float(min(max_delay_s, 2 ** min(attempt, 16))) * min(1.0, max(0.0, draw))
