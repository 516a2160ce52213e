"""How one decision reports itself: the conditions it sets, summarised from what Ray and the rollout say
(pure; used by steward.operator.core.decide)."""

from __future__ import annotations

from datetime import datetime

from steward.api.conditions import ConditionStatus, ConditionType, Reason
from steward.api.model_deployment import Condition, ServeApplicationStatus, StableVersion
from steward.api.rollout import Outcome, RolloutState
from steward.operator.actions import EventType, PostEvent
from steward.operator.observations import Problem, ResolvedModel, ServeApps, ServeState
from steward.operator.rollout import RolloutDecision
from steward.operator.status import find, set_condition

TRUE, FALSE, UNKNOWN = ConditionStatus.TRUE, ConditionStatus.FALSE, ConditionStatus.UNKNOWN


class Conditions:
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


def serve_summary(name: str, serve: ServeApps) -> ServeApplicationStatus | None:
    """The router's and every version's applications as one: the worst status, and what Ray says about it."""
    if serve.empty:
        return None
    states = [serve.router, *serve.versions.values()]
    return ServeApplicationStatus(name=name, status=combined(states), message=serve_messages(states)[-2000:])


def report_problem(cond: Conditions, problem: Problem) -> None:
    if problem.temporary:
        cond.ready(UNKNOWN, problem.reason, f"{problem.message} (retrying)")
        cond.progressing(TRUE, problem.reason, problem.message)
    else:
        cond.ready(FALSE, problem.reason, problem.message)
        cond.progressing(FALSE, problem.reason, problem.message)
        cond.degraded(TRUE, problem.reason, problem.message)


def combined(states: list[ServeState | None]) -> str:
    """One Ray status for several applications: the worst of them."""
    statuses = [s.status if s is not None else "NOT_STARTED" for s in states]
    for worst in ("DEPLOY_FAILED", "UNHEALTHY", "NOT_STARTED", "DELETING", "DEPLOYING"):
        if worst in statuses:
            return worst
    return "RUNNING"


def first_deployment(
    cond: Conditions, model: ResolvedModel, serve: ServeApps, in_sync: bool, address: str
) -> StableVersion | None:
    """Nothing serves yet: the spec's version goes straight in. Returns `stable` once it serves."""
    what = f"{model.name} version {model.version}"
    version_app = serve.versions.get(model.version)
    if not in_sync:
        message = f"deploying {what} to Ray Serve at {address}"
        cond.ready(FALSE, Reason.DEPLOYING, message)
        cond.progressing(TRUE, Reason.DEPLOYING, message)
        return None
    status = combined([serve.router, version_app])
    detail = serve_messages([serve.router, version_app])
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


def report_serving(cond: Conditions, what: str, stable: StableVersion, serve: ServeApps) -> None:
    """A version has served before: is it still serving? Ray updating a config in place (new weights, more
    replicas) keeps serving, so Ready follows running replicas, not Ray's DEPLOYING status."""
    version_app = serve.versions.get(stable.version)
    status = combined([serve.router, version_app])
    detail = serve_messages([serve.router, version_app])
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


def report_rollout(cond: Conditions, outcome: RolloutDecision) -> None:
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


def serve_messages(states: list[ServeState | None]) -> str:
    return "; ".join(message for s in states if s is not None and (message := _serve_message(s)))


def transition_events(old: list[Condition], new: list[Condition]) -> list[PostEvent]:
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
