"""What a rollout asks of the router, what the router runs now, and which manual command waits (pure)."""

from __future__ import annotations

from pydantic import ValidationError

from steward.api.model_deployment import ModelDeployment, StableVersion
from steward.api.rollout import (
    ROLLOUT_COMMAND_ANNOTATION,
    ActiveRollout,
    RolloutCommand,
    RolloutState,
    Strategy,
)
from steward.api.serve_app import ROUTER_DEPLOYMENT, RouterConfig, ShadowConfig
from steward.operator.observations import ServeApps
from steward.operator.serve_config import TrafficPlan


def traffic_plan(md: ModelDeployment, stable: StableVersion, r: ActiveRollout | None) -> TrafficPlan:
    """Which versions run and who gets what share, for each state."""
    if r is None:
        return TrafficPlan.single(stable.version, stable.model_uri)
    spec = md.spec.rollout
    new, old = r.canary.version, stable.version
    versions = {old: stable.model_uri, new: r.canary.model_uri}
    if r.state == RolloutState.PROMOTING:
        return TrafficPlan(versions, {old: 0, new: 100}, stickiness=spec.stickiness, stable=old)
    if r.state in (RolloutState.WARMING, RolloutState.ROLLING_BACK):
        return TrafficPlan(versions, {old: 100, new: 0}, stickiness=spec.stickiness, stable=old)
    shadow = None
    mirrors = r.strategy == Strategy.SHADOW or spec.analysis.max_disagreement is not None
    if mirrors and spec.shadow_percent > 0:
        shadow = ShadowConfig(version=new, percent=spec.shadow_percent)
    return TrafficPlan(versions, {old: 100 - r.weight, new: r.weight}, shadow, spec.stickiness, stable=old)


def router_weights(serve: ServeApps) -> dict[str, int] | None:
    """The weights the router was last configured with, as Ray reports its deployed config."""
    config = serve.router.deployed_config if serve.router else None
    for deployment in (config or {}).get("deployments") or []:
        if deployment.get("name") == ROUTER_DEPLOYMENT and deployment.get("user_config"):
            try:
                return dict(RouterConfig.model_validate(deployment["user_config"]).weights)
            except ValidationError:
                return None
    return None


def pending_command(md: ModelDeployment, handled: str | None) -> RolloutCommand | str | None:
    """The manual command not yet acted on; a string says why the annotation could not be read."""
    raw = md.metadata.annotations.get(ROLLOUT_COMMAND_ANNOTATION)
    if not raw:
        return None
    try:
        command = RolloutCommand.model_validate_json(raw)
    except ValidationError as exc:
        return f"ignored the {ROLLOUT_COMMAND_ANNOTATION} annotation: {exc.errors()[0]['msg']}"
    return None if command.id == handled else command


def command_id(md: ModelDeployment) -> str | None:
    command = pending_command(md, None)
    return command.id if isinstance(command, RolloutCommand) else None
