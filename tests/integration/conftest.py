"""One real stack per test session: an S3 endpoint (moto server), an MLflow server storing artifacts in it,
and a local Ray head with token authentication, all started by the same `Stack` code the demo uses.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from helpers import BUCKET, free_port
from moto.server import ThreadedMotoServer

from steward.adapters.ray_serve import RayServeClient
from steward.dev.stack import Stack


@pytest.fixture(scope="session")
def s3_env() -> Iterator[dict[str, str]]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    env = {
        "MLFLOW_S3_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    s3 = boto3.client(
        "s3",
        endpoint_url=env["MLFLOW_S3_ENDPOINT_URL"],
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    s3.create_bucket(Bucket=BUCKET)
    yield env
    server.stop()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, s3_env: dict[str, str]) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("steward-home")
    stack = Stack(
        home=home,
        mlflow_port=free_port(),
        ray_gcs_port=free_port(),
        ray_dashboard_port=free_port(),
        serve_port=free_port(),
        num_cpus=4,  # logical slots: replicas ask for fractions; the machine has 2 cores
        artifacts_destination=f"s3://{BUCKET}/mlflow",
        env=s3_env,
    )
    try:
        stack.up(with_loop=False)
        yield stack
    finally:
        stack.down()


@dataclass(frozen=True)
class Registered:
    good_v1: str
    good_v2: str
    broken: str  # a version whose artifacts fail to load


@pytest.fixture(scope="session")
def models(stack: Stack) -> Registered:
    import mlflow
    import mlflow.pyfunc

    from steward.dev.credit_model import register

    v1 = register(stack.tracking_uri, "credit-risk", n=2000, seed=7)
    v2 = register(stack.tracking_uri, "credit-risk", n=2000, seed=8)

    class Broken(mlflow.pyfunc.PythonModel):
        def load_context(self, context: Any) -> None:
            raise RuntimeError("this model cannot load: missing feature store credentials")

        def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
            return model_input

    with mlflow.start_run(run_name="broken"):
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=Broken(),
            registered_model_name="broken-model",
            pip_requirements=["mlflow"],
        )
    return Registered(good_v1=v1, good_v2=v2, broken=str(info.registered_model_version))


@pytest.fixture(scope="session")
def ray_client(stack: Stack) -> Iterator[RayServeClient]:
    client = RayServeClient(stack.ray_address, stack.ray_token(), timeout_s=30)
    yield client
    client.close()
