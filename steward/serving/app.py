"""The Ray Serve application of one ModelDeployment: an ingress router and one deployment per model version.

The router owns the HTTP surface (JSON parsing, error bodies, version choice); model replicas own loading and
scoring. Weights live in the router's `user_config`, so moving traffic reconfigures it in place.
"""

from __future__ import annotations

import logging
import random
from typing import Any

from ray import serve
from ray.serve import Application
from ray.serve.handle import DeploymentHandle
from starlette.requests import Request
from starlette.responses import JSONResponse

from steward.api.serve_app import AppArgs, RouterConfig, version_deployment_name
from steward.serving.scoring import Answer, ErrorCode, error, parse_json_body, score

log = logging.getLogger(__name__)


@serve.deployment
class ModelVersion:
    def __init__(self, model_name: str, version: str, model_uri: str) -> None:
        import mlflow.pyfunc  # imported here: only replicas need MLflow's model loaders

        self.model_name = model_name
        self.version = version
        # A load failure raises here; Ray Serve then reports DEPLOY_FAILED with this message.
        self.model = mlflow.pyfunc.load_model(model_uri)

    def predict(self, payload: dict[str, Any]) -> Answer:
        answer = score(self.model, payload)
        if answer.status == 200:
            answer.body["model"] = {"name": self.model_name, "version": self.version}
        return answer

    def check_health(self) -> None:
        if self.model is None:
            raise RuntimeError("model not loaded")


@serve.deployment
class Router:
    def __init__(self, deployment: str, model_name: str, versions: dict[str, DeploymentHandle[Any]]) -> None:
        self.deployment = deployment
        self.model_name = model_name
        self.versions = versions
        self.weights: dict[str, int] = {}

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        config = RouterConfig.model_validate(user_config)
        unknown = set(config.weights) - set(self.versions)
        if unknown:
            raise ValueError(f"weights name versions this application does not serve: {sorted(unknown)}")
        self.weights = {v: w for v, w in config.weights.items() if w > 0}

    def choose_version(self) -> str | None:
        if not self.weights:
            return None
        versions = list(self.weights)
        return random.choices(versions, weights=[self.weights[v] for v in versions])[0]

    async def __call__(self, request: Request) -> JSONResponse:
        if request.method == "GET":
            return JSONResponse(
                {"deployment": self.deployment, "model": self.model_name, "weights": self.weights}
            )
        if request.method != "POST":
            answer = error(ErrorCode.METHOD_NOT_ALLOWED, "use POST with a JSON body to predict")
            return JSONResponse(answer.body, status_code=answer.status)
        payload = parse_json_body(await request.body())
        if isinstance(payload, Answer):
            return JSONResponse(payload.body, status_code=payload.status)
        version = self.choose_version()
        if version is None:
            answer = error(ErrorCode.NO_VERSION, "no model version currently receives traffic")
        else:
            answer = await self.versions[version].predict.remote(payload)
        return JSONResponse(answer.body, status_code=answer.status)


def build_app(args: dict[str, Any]) -> Application:
    """Entry point named by the Serve config's `import_path`."""
    parsed = AppArgs.model_validate(args)
    handles = {
        v.version: ModelVersion.options(name=version_deployment_name(v.version)).bind(  # type: ignore[attr-defined]
            parsed.model_name, v.version, v.model_uri
        )
        for v in parsed.versions
    }
    app: Application = Router.bind(parsed.deployment, parsed.model_name, handles)  # type: ignore[attr-defined]
    return app
