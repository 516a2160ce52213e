"""Baseline for the router-overhead benchmark: the same MLflow model behind one bare Ray Serve deployment.

No router hop, no version choice, no error classification: the least a Serve app can do to score a request.
"""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc
import pandas as pd
from ray import serve
from starlette.requests import Request


@serve.deployment
class BareModel:
    def __init__(self, model_uri: str) -> None:
        self.model = mlflow.pyfunc.load_model(model_uri)

    async def __call__(self, request: Request) -> dict[str, Any]:
        payload = await request.json()
        frame = pd.DataFrame(payload["dataframe_records"]).astype("float64")
        return {"predictions": [int(x) for x in self.model.predict(frame)]}


def build(args: dict[str, Any]) -> Any:
    return BareModel.bind(args["model_uri"])
