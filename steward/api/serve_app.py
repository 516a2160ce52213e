"""The contract between the operator, which plans a Serve application, and the Ray Serve code that runs it.

Plain pydantic, so that the operator can build the config without importing Ray, and Ray Serve validates the
builder arguments against the same model when it imports the application.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

IMPORT_PATH = "steward.serving.app:build_app"
ROUTER_DEPLOYMENT = "Router"


def version_deployment_name(version: str) -> str:
    return f"model-v{version}"


class ServedVersion(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    version: str
    model_uri: str


class AppArgs(BaseModel):
    """Builder arguments of one Serve application: fixed for the life of its replicas."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    deployment: Annotated[str, Field(description="namespace/name of the ModelDeployment")]
    model_name: str
    versions: Annotated[list[ServedVersion], Field(min_length=1)]


class RouterConfig(BaseModel):
    """The router's `user_config`: changes here are applied in place, without restarting replicas."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    weights: Annotated[dict[str, int], Field(description="version -> percent of traffic")]
