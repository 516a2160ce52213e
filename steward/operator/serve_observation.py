"""One object's share of a Ray cluster's application list: its router and its version applications."""

from __future__ import annotations

from steward.adapters.ray_serve import ServeApplication
from steward.api.serve_app import RECORDER_DEPLOYMENT, ROUTER_DEPLOYMENT, app_version
from steward.operator.observations import ServeApps, ServeState


def serve_state(app: ServeApplication) -> ServeState:
    """Ready replicas: of the model for a version application, of the router for the router's."""
    counted = [name for name in app.replicas if name != RECORDER_DEPLOYMENT]
    models = [name for name in counted if name != ROUTER_DEPLOYMENT]
    ready = sum(app.replicas[name].running for name in (models or counted))
    return ServeState(
        status=app.status,
        message=app.message,
        deployed_config=app.deployed_config,
        ready_replicas=ready,
        deployment_messages=app.deployment_messages,
    )


def serve_apps(applications: dict[str, ServeApplication], router_app: str) -> ServeApps:
    router = applications.get(router_app)
    # Every pass looks through the whole cluster's list (hundreds of applications): a plain prefix test
    # first, the exact match (a regular expression) only for the few it lets through.
    prefix = f"{router_app}.v"
    ours = (name for name in applications if name.startswith(prefix))
    versions = {name: app_version(router_app, name) for name in ours}
    return ServeApps(
        router=None if router is None else serve_state(router),
        versions={v: serve_state(applications[name]) for name, v in versions.items() if v is not None},
    )
