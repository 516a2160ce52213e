"""The fair benchmark's reference arms: the same scoring code as Steward's version replicas, without Steward.

- `build` (arm a): one bare Serve deployment that reads the JSON body and calls
  `steward.serving.scoring.score`, the function Steward's version replicas call; no router hop, no request
  id, no version choice, no figures.
- `build_passthrough` (arm b): a router with no logic in front of Steward's own version deployment
  (`ModelVersion`): the pure cost of one deployment hop, and nothing else.

Both answer what a Steward endpoint answers for a good request (`{"predictions": [...]}`, 200).
"""

from __future__ import annotations

from typing import Any

from ray import serve
from ray.serve import Application
from ray.serve.handle import DeploymentHandle
from starlette.requests import Request
from starlette.responses import JSONResponse

from steward.serving.app import ModelVersion
from steward.serving.scoring import Answer, score


@serve.deployment
class BareModel:
    def __init__(self, model_uri: str) -> None:
        import mlflow.pyfunc

        self.model = mlflow.pyfunc.load_model(model_uri)

    async def __call__(self, request: Request) -> JSONResponse:
        answer = score(self.model, await request.json())
        return JSONResponse(answer.body, status_code=answer.status)


@serve.deployment
class PassThrough:
    def __init__(self, model: DeploymentHandle[Any]) -> None:
        self.model = model

    async def __call__(self, request: Request) -> JSONResponse:
        answer: Answer = await self.model.predict.remote(await request.json())
        return JSONResponse(answer.body, status_code=answer.status)


def build(args: dict[str, Any]) -> Application:
    app: Application = BareModel.bind(args["model_uri"])  # type: ignore[attr-defined]
    return app


def build_passthrough(args: dict[str, Any]) -> Application:
    model = ModelVersion.options(name="Model").bind(  # type: ignore[attr-defined]
        args["model_name"], args["version"], args["model_uri"]
    )
    app: Application = PassThrough.bind(model)  # type: ignore[attr-defined]
    return app
