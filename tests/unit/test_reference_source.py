"""The training data is logged as a dataset whatever the artifact store: also behind a tracking server that
proxies artifacts (`mlflow-artifacts:` URIs, the local stack's), which MLflow has no dataset source for."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from mlflow.data.pandas_dataset import from_pandas

from steward.monitors.reference import _artifact_source

URIS = [
    "mlflow-artifacts:/1/0a1b/artifacts/reference/training.parquet",
    "s3://bucket/1/0a1b/training.parquet",
]


@pytest.mark.parametrize("uri", URIS)
def test_the_training_dataset_source_is_its_artifact_uri(uri: str) -> None:
    dataset = from_pandas(pd.DataFrame({"x": [1.0]}), source=_artifact_source(uri), name="training")
    # steward.monitors.reference reads the reference's URI back from this JSON.
    assert json.loads(dataset.source.to_json()) == {"uri": uri}
