"""Plan the declarative Ray Serve config of one ModelDeployment (pure)."""

from __future__ import annotations

from typing import Any

from steward.api.model_deployment import ModelDeployment, memory_bytes
from steward.api.serve_app import (
    IMPORT_PATH,
    ROUTER_DEPLOYMENT,
    AppArgs,
    RouterConfig,
    ServedVersion,
    version_deployment_name,
)
from steward.operator.config import OperatorConfig
from steward.operator.observations import ResolvedModel


def app_name(md: ModelDeployment) -> str:
    return f"{md.metadata.namespace}-{md.metadata.name}"


def route_prefix(md: ModelDeployment) -> str:
    return md.spec.serving.route_prefix or f"/{md.metadata.namespace}/{md.metadata.name}"


def ray_address(md: ModelDeployment, config: OperatorConfig) -> str:
    return (md.spec.serving.ray_address or config.ray_address).rstrip("/")


def _version_actor_options(md: ModelDeployment) -> dict[str, Any]:
    resources = md.spec.serving.resources
    options: dict[str, Any] = {"num_cpus": resources.cpu}
    if resources.gpu:
        options["num_gpus"] = resources.gpu
    if resources.memory:
        options["memory"] = memory_bytes(resources.memory)
    return options


def plan_serve_config(md: ModelDeployment, model: ResolvedModel, config: OperatorConfig) -> dict[str, Any]:
    """The Serve application config that serves `model` as `md` asks."""
    serving = md.spec.serving
    args = AppArgs(
        deployment=md.key,
        model_name=model.name,
        versions=[ServedVersion(version=model.version, model_uri=model.model_uri)],
    )
    router = RouterConfig(weights={model.version: 100})
    return {
        "name": app_name(md),
        "route_prefix": route_prefix(md),
        "import_path": IMPORT_PATH,
        "args": args.model_dump(),
        "runtime_env": {"env_vars": {**config.replica_env, "MLFLOW_TRACKING_URI": config.tracking_uri}},
        "deployments": [
            {
                "name": ROUTER_DEPLOYMENT,
                # The router only parses JSON and forwards: it costs no scheduling slot of its own.
                "ray_actor_options": {"num_cpus": 0.0},
                "autoscaling_config": {
                    "min_replicas": 1,
                    "max_replicas": max(1, serving.replicas.max),
                    "target_ongoing_requests": serving.target_ongoing_requests,
                },
                "user_config": router.model_dump(),
            },
            {
                "name": version_deployment_name(model.version),
                "max_ongoing_requests": serving.max_ongoing_requests,
                "autoscaling_config": {
                    "min_replicas": serving.replicas.min,
                    "max_replicas": serving.replicas.max,
                    "target_ongoing_requests": serving.target_ongoing_requests,
                },
                "ray_actor_options": _version_actor_options(md),
            },
        ],
    }


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
