"""Plan the declarative Ray Serve configs of one ModelDeployment (pure).

A router application on the route prefix, and one application per live version (see steward.api.serve_app for
why versions live in applications of their own).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from steward.api.model_deployment import ModelDeployment, memory_bytes
from steward.api.rollout import Stickiness
from steward.api.serve_app import (
    RECORDER_DEPLOYMENT,
    ROUTER_DEPLOYMENT,
    ROUTER_IMPORT_PATH,
    VERSION_IMPORT_PATH,
    InRouterModel,
    RouterArgs,
    RouterConfig,
    ShadowConfig,
    VersionArgs,
    router_access,
    router_app_name,
    version_app_name,
    version_deployment_name,
)
from steward.operator.config import OperatorConfig


def app_name(md: ModelDeployment) -> str:
    return router_app_name(md.metadata.namespace, md.metadata.name)


def route_prefix(md: ModelDeployment) -> str:
    return md.spec.serving.route_prefix or f"/{md.metadata.namespace}/{md.metadata.name}"


def ray_address(md: ModelDeployment, config: OperatorConfig) -> str:
    return (md.spec.serving.ray_address or config.ray_address).rstrip("/")


def _canonical(address: str) -> str | None:
    """scheme://host:port in lower case, or None for anything that is not a plain dashboard URL (user info,
    a query or fragment could make two spellings of one allowed address differ from what is contacted)."""
    try:
        url = urlsplit(address.strip())
        port = url.port
    except ValueError:
        return None
    if url.scheme not in ("http", "https") or not url.hostname or url.username is not None:
        return None
    if url.query or url.fragment:
        return None
    default_port = 443 if url.scheme == "https" else 80
    return f"{url.scheme}://{url.hostname}:{port or default_port}{url.path.rstrip('/')}"


def ray_address_refusal(address: str, config: OperatorConfig) -> str | None:
    """Why the operator must not contact `address` (it would send its Ray token there), or None.

    Only the platform's addresses are allowed (the default and `allowed_ray_addresses`), never one a
    ModelDeployment makes up; plain http only where the platform says its network is trusted."""
    canonical = _canonical(address)
    if canonical is None:
        return (
            f"rayAddress {address!r} is not a Ray dashboard URL (http[s]://host[:port][/path], nothing more)"
        )
    allowed = {_canonical(a) for a in (config.ray_address, *config.allowed_ray_addresses)}
    if canonical not in allowed:
        return (
            f"rayAddress {address} is not one of the Ray clusters this operator may use; ask the platform "
            "team to add it to the operator's allowed addresses (chart value ray.allowedAddresses, "
            "STEWARD_ALLOWED_RAY_ADDRESSES) or remove spec.serving.rayAddress"
        )
    if canonical.startswith("http://") and not config.allow_insecure_ray:
        return (
            f"rayAddress {address} is plain http, which would send the Ray token in clear; use https, or "
            "let the platform team allow plain http (chart value ray.allowInsecureHttp, "
            "STEWARD_ALLOW_INSECURE_RAY)"
        )
    return None


@dataclass(frozen=True)
class TrafficPlan:
    """Which versions run and how the router splits live traffic between them."""

    # version -> model URI, for every version that has replicas.
    versions: dict[str, str]
    weights: dict[str, int]
    shadow: ShadowConfig | None = None
    stickiness: Stickiness | None = None
    # The stable version, which the router serves itself (steward.serving.local_model) while it takes live
    # traffic (in_router_model). Never the canary, which stays isolated in its own application.
    stable: str | None = None

    @classmethod
    def single(cls, version: str, model_uri: str) -> TrafficPlan:
        return cls(versions={version: model_uri}, weights={version: 100}, stable=version)


def _version_actor_options(md: ModelDeployment) -> dict[str, Any]:
    resources = md.spec.serving.resources
    options: dict[str, Any] = {"num_cpus": resources.cpu}
    if resources.gpu:
        options["num_gpus"] = resources.gpu
    if resources.memory:
        options["memory"] = memory_bytes(resources.memory)
    return options


def _serves_in_router(md: ModelDeployment) -> bool:
    # The router replica holds no GPU: a GPU model would score on its CPU, or not load at all.
    return not md.spec.serving.resources.gpu


def in_router_model(md: ModelDeployment, plan: TrafficPlan) -> InRouterModel | None:
    """What the router loads to answer the stable version itself: whenever stable takes live traffic, during
    a canary too, whose own traffic goes through its application. The analysis judges each version's model
    time, timed where the model runs (steward.serving.scoring.Answer.judged_ms), so the hop that only the
    canary pays does not count against it. Not while a shadow is mirrored: a mirrored call waits for
    stable's answer, and that pairing was measured only with both versions behind their handles. None also
    frees the router's copy of the model."""
    stable = plan.stable
    if stable is None or stable not in plan.versions or plan.shadow is not None:
        return None
    if not plan.weights.get(stable) or not _serves_in_router(md):
        return None
    return InRouterModel(version=stable, model_uri=plan.versions[stable])


def _router_actor_options(md: ModelDeployment) -> dict[str, Any]:
    """No CPU reservation, as before the router held a model: the stable version's application keeps its
    replicas' reservations (it is the fallback and the rollback target), and reserving the same again here
    would ask the cluster for two model replicas' CPUs per replica of traffic. Memory is reserved, since a
    copy of the model really lives in each router replica; with a fixed value per spec, so that a stable
    change (in place, in user_config) never restarts the router."""
    resources = md.spec.serving.resources
    options: dict[str, Any] = {"num_cpus": 0.0}
    if resources.memory and _serves_in_router(md):
        options["memory"] = memory_bytes(resources.memory)
    return options


def _router_deployment(md: ModelDeployment, router: RouterConfig) -> dict[str, Any]:
    serving = md.spec.serving
    deployment: dict[str, Any] = {
        "name": ROUTER_DEPLOYMENT,
        "ray_actor_options": _router_actor_options(md),
        "autoscaling_config": {
            "min_replicas": 1,
            "max_replicas": max(1, serving.replicas.max),
            "target_ongoing_requests": serving.target_ongoing_requests,
        },
        "user_config": router.model_dump(mode="json", exclude_none=True),
    }
    if _serves_in_router(md):
        # It scores stable's requests itself now: it admits as many at once as a version replica does,
        # not Ray's default of 5, which queued a closed loop of 8 callers at the proxy.
        deployment["max_ongoing_requests"] = serving.max_ongoing_requests
    return deployment


def _runtime_env(config: OperatorConfig) -> dict[str, Any]:
    return {"env_vars": {**config.replica_env, "MLFLOW_TRACKING_URI": config.tracking_uri}}


def plan_router_app(
    md: ModelDeployment, model_name: str, plan: TrafficPlan, config: OperatorConfig
) -> dict[str, Any]:
    router = RouterConfig(
        versions={v: version_app_name(app_name(md), v) for v in plan.versions},
        weights=plan.weights,
        shadow=plan.shadow,
        stickiness=plan.stickiness,
        access=None if config.router_secret is None else router_access(config.router_secret, md.key),
        capture=md.spec.monitoring.capture,
        # Only with a capture spec: a store alone records nothing.
        store_uri=config.monitoring_uri if md.spec.monitoring.capture is not None else None,
        in_router=in_router_model(md, plan),
    )
    return {
        "name": app_name(md),
        "route_prefix": route_prefix(md),
        "import_path": ROUTER_IMPORT_PATH,
        "args": RouterArgs(deployment=md.key, model_name=model_name).model_dump(),
        "runtime_env": _runtime_env(config),
        "deployments": [
            _router_deployment(md, router),
            # Sums the routers' measurements: one replica, so that there is one count to read.
            {"name": RECORDER_DEPLOYMENT, "num_replicas": 1, "ray_actor_options": {"num_cpus": 0.0}},
        ],
    }


def plan_version_app(
    md: ModelDeployment, model_name: str, version: str, model_uri: str, config: OperatorConfig
) -> dict[str, Any]:
    serving = md.spec.serving
    return {
        "name": version_app_name(app_name(md), version),
        # No route: only the router calls it.
        "route_prefix": None,
        "import_path": VERSION_IMPORT_PATH,
        "args": VersionArgs(model_name=model_name, version=version, model_uri=model_uri).model_dump(),
        "runtime_env": _runtime_env(config),
        "deployments": [
            {
                "name": version_deployment_name(version),
                "max_ongoing_requests": serving.max_ongoing_requests,
                "autoscaling_config": {
                    "min_replicas": serving.replicas.min,
                    "max_replicas": serving.replicas.max,
                    "target_ongoing_requests": serving.target_ongoing_requests,
                },
                "ray_actor_options": _version_actor_options(md),
            }
        ],
    }


def plan_serve_apps(
    md: ModelDeployment, model_name: str, plan: TrafficPlan, config: OperatorConfig
) -> list[dict[str, Any]]:
    """Every Serve application `md` needs for `plan`: the router first, then one per version."""
    return [plan_router_app(md, model_name, plan, config)] + [
        plan_version_app(md, model_name, version, uri, config)
        for version, uri in sorted(plan.versions.items())
    ]


def _normalized(value: Any) -> Any:
    # Ray echoes numbers back as it parsed them (num_cpus 0 -> 0.0); compare values, not spellings.
    if isinstance(value, dict):
        return {k: _normalized(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_normalized(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def configs_match(deployed: dict[str, Any] | None, desired: dict[str, Any]) -> bool:
    return deployed is not None and _normalized(deployed) == _normalized(desired)
