"""One object's share of a Ray cluster's application list: its router and its version applications."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

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


def serve_apps(applications: Mapping[str, ServeApplication], router_app: str) -> ServeApps:
    """By a scan of the whole list: for a caller that looks once (a deletion); passes use an index."""
    router = applications.get(router_app)
    # A plain prefix test first, the exact match (a regular expression) only for the few it lets through.
    prefix = f"{router_app}.v"
    ours = (name for name in applications if name.startswith(prefix))
    versions = {name: app_version(router_app, name) for name in ours}
    return ServeApps(
        router=None if router is None else serve_state(router),
        versions={v: serve_state(applications[name]) for name, v in versions.items() if v is not None},
    )


@dataclass(frozen=True)
class ServeIndex:
    """A cluster's list arranged by owner: made once per read of the list, so that each of the hundreds of
    passes sharing that read finds its own applications without looking through all of them."""

    applications: Mapping[str, ServeApplication]
    # router application -> version -> that version's application name
    versions: Mapping[str, Mapping[str, str]]


def index_applications(applications: Mapping[str, ServeApplication]) -> ServeIndex:
    versions: dict[str, dict[str, str]] = {}
    for name in applications:
        # `<router>.v<digits>` splits at its last ".v" only: digits hold no ".v", so that split is the
        # one router `app_version` would accept, and any other split names no router at all.
        router, dot_v, version = name.rpartition(".v")
        if dot_v and _is_version_number(version):
            versions.setdefault(router, {})[version] = name
    return ServeIndex(applications, versions)


def _is_version_number(text: str) -> bool:
    """`[1-9][0-9]*`, as `app_version` matches it, without compiling a pattern per application."""
    return text.isascii() and text.isdigit() and not text.startswith("0")


def indexed_serve_apps(index: ServeIndex, router_app: str) -> ServeApps:
    """What `serve_apps` finds by a scan, from the index: the same answer."""
    router = index.applications.get(router_app)
    names = index.versions.get(router_app, {})
    return ServeApps(
        router=None if router is None else serve_state(router),
        versions={v: serve_state(index.applications[name]) for v, name in names.items()},
    )
