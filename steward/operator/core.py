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
    ModelDeployment,
    ModelDeploymentStatus,
)
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
from steward.operator.conditions_report import (
    Conditions,
    first_deployment,
    report_problem,
    report_rollout,
    report_serving,
    serve_summary,
    transition_events,
)
from steward.operator.config import OperatorConfig
from steward.operator.deletion import DeletionDecision, decide_deletion, deletion_actions
from steward.operator.monitoring_plan import monitoring_actions, monitoring_decision, requeue_after_s
from steward.operator.observations import Observations, Problem, ResolvedModel, ServeApps
from steward.operator.retraining_rollout import candidate_queued, candidate_step, rollout_target
from steward.operator.retraining_step import retraining_actions, retraining_decision
from steward.operator.rollout import decide_rollout
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
from steward.operator.status import derive_phase
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


def decide(md: ModelDeployment, obs: Observations, config: OperatorConfig, now: datetime) -> Decision:
    md = with_trusted_identity(md, config.identity_stamped_by_webhook)
    if (unreadable := held_because(md)) is not None:
        # Without stable and rollout, the plan below would send all traffic to the spec's version.
        held, notices, retry = hold_unreadable(md, obs, now, unreadable)
        return Decision(held, list(notices), retry, requeue_after_s=config.rollout_tick_s)
    old = md.status
    cond = Conditions(old.conditions, now, md.metadata.generation)
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
        serve_app = serve_summary(app_name(md), obs.serve)
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
        report_problem(cond, obs.model)
        retry_reason = obs.model.message if obs.model.temporary else ""
    elif isinstance(obs.serve, Problem):
        report_problem(cond, obs.serve)
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
            stable = first_deployment(cond, model, serve, in_sync=not actions, address=address)
        else:
            report_serving(cond, f"{model.name} version {stable.version}", stable, serve)
            if outcome is not None:
                report_rollout(cond, outcome)
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
    actions.extend(transition_events(old.conditions, status.conditions))
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


def _in_sync(serve: ServeApps, desired: list[dict[str, Any]], router_app: str) -> bool:
    deployed = {router_app: serve.router} | {
        version_app_name(router_app, v): state for v, state in serve.versions.items()
    }
    for config in desired:
        state = deployed.get(config["name"])
        if state is None or not configs_match(state.deployed_config, config):
            return False
    return True


def retry_delay_s(attempt: int, max_delay_s: float, *, draw: float) -> float:
    """Exponential backoff with full jitter for temporary problems: uniform in [0, min(cap, 2**attempt))
    seconds, `draw` being the caller's uniform random number in [0, 1] (pure: the caller owns the
    randomness). Jitter spreads the retries of many objects that failed on one outage over time."""
    return float(min(max_delay_s, 2 ** min(attempt, 16))) * min(1.0, max(0.0, draw))
