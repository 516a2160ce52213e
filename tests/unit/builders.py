"""Small builders for unit tests of the pure core."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from steward.api.model_deployment import ModelDeployment
from steward.operator.config import OperatorConfig
from steward.operator.observations import ResolvedModel, ServeState

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
CONFIG = OperatorConfig(ray_address="http://ray:8265", tracking_uri="http://mlflow:5000")


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


def serving(status: str, config: dict[str, Any] | None, replicas: int = 1, message: str = "") -> ServeState:
    return ServeState(status=status, message=message, deployed_config=config, ready_replicas=replicas)
