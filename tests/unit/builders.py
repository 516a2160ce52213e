"""Small builders for unit tests of the pure core."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from steward.api.model_deployment import ModelDeployment
from steward.operator.config import OperatorConfig
from steward.operator.observations import ResolvedModel, ServeApps, ServeState
from steward.operator.serve_config import TrafficPlan, plan_serve_apps

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
# Plain http like the local stack; tests of the address checks build their own config.
CONFIG = OperatorConfig(
    ray_address="http://ray:8265", tracking_uri="http://mlflow:5000", allow_insecure_ray=True
)


def md(
    spec: dict[str, Any] | None = None, status: dict[str, Any] | None = None, generation: int = 1
) -> ModelDeployment:
    return ModelDeployment.model_validate(
        {
            "apiVersion": "steward.io/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": "credit", "namespace": "risk", "generation": generation},
            "spec": spec or {"model": {"name": "credit-risk", "version": "3"}},
            "status": status or {},
        }
    )


def resolved(version: str = "3") -> ResolvedModel:
    return ResolvedModel("credit-risk", version, f"models:/credit-risk/{version}", "s3://b/m", "run1")


NOTHING = ServeApps()


def desired(resource: ModelDeployment, model: ResolvedModel | None = None) -> list[dict[str, Any]]:
    """The Serve apps a deployment with nothing rolling out wants: its router and one version."""
    model = model or resolved()
    return plan_serve_apps(resource, model.name, TrafficPlan.single(model.version, model.model_uri), CONFIG)


def serving(
    status: str, configs: list[dict[str, Any]] | None, replicas: int = 1, message: str = ""
) -> ServeApps:
    """Ray reporting every one of `configs` as deployed, in `status`."""
    router, versions = None, {}
    for config in configs or []:
        state = ServeState(status=status, message=message, deployed_config=config, ready_replicas=replicas)
        if ".v" in config["name"]:
            versions[config["name"].rsplit(".v", 1)[1]] = state
        else:
            router = state
    return ServeApps(router=router, versions=versions)
