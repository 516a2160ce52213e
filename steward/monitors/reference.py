"""The drift reference: an explicit URI, else the training dataset logged with the version's MLflow run.

`log_reference` (called by the trainers: steward.dev.credit_model, steward.retraining.example_train) logs
it with `mlflow.log_input(from_pandas(df, source=<artifact uri>), context="training")`; MLflow keeps the
source as JSON (`{"uri": ...}`) on the run's dataset inputs.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from steward.api.monitor_results import MonitorJob
from steward.monitors import store

TRAINING_CONTEXT = "training"


class NoReference(store.StoreError):
    """No reference is configured or logged for this version."""


@dataclass(frozen=True)
class Reference:
    frame: pd.DataFrame
    uri: str
    sha256: str


def logged_dataset_uri(tracking_uri: str, run_id: str | None, model_name: str, version: str) -> str:
    """The source URI of the dataset logged as the `training` input of the version's run (else its first)."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    try:
        if run_id is None:
            run_id = client.get_model_version(model_name, version).run_id
        if not run_id:
            raise NoReference(
                f"model {model_name} version {version} has no MLflow run to take a reference from"
            )
        run_inputs = client.get_run(run_id).inputs
        inputs = run_inputs.dataset_inputs if run_inputs is not None else []
    except MlflowException as exc:
        raise store.StoreError(f"MLflow at {tracking_uri}: {exc}") from exc
    if not inputs:
        raise NoReference(
            f"run {run_id} of {model_name} v{version} logged no dataset (mlflow.log_input): set "
            "drift.reference to a Parquet or CSV URI"
        )

    def context(item: object) -> str | None:
        return next((t.value for t in getattr(item, "tags", []) if t.key == "mlflow.data.context"), None)

    chosen = next((i for i in inputs if context(i) == TRAINING_CONTEXT), inputs[0])
    source = chosen.dataset.source
    try:
        uri = json.loads(source).get("uri") if source.strip().startswith("{") else source
    except json.JSONDecodeError as exc:
        raise NoReference(f"run {run_id}: dataset source {source!r} is not a JSON source") from exc
    if not uri:
        raise NoReference(f"run {run_id}: dataset {chosen.dataset.name!r} has no URI (source {source!r})")
    return str(uri)


def _download(uri: str, tracking_uri: str | None) -> tuple[pd.DataFrame, str]:
    """An MLflow artifact URI (mlflow-artifacts:/, runs:/, file:): through MLflow's artifact client."""
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=uri, dst_path=tmp, tracking_uri=tracking_uri
            )
        except (MlflowException, OSError) as exc:
            raise store.StoreError(f"cannot download reference {uri}: {exc}") from exc
        return store.read_table(str(Path(local).resolve()))


def load_reference(job: MonitorJob) -> Reference:
    settings = job.monitor.drift
    uri = job.reference_uri or (settings.reference if settings else None)
    if uri is None:
        if not job.tracking_uri:
            raise NoReference("no drift.reference and no MLflow tracking URI to find the training dataset")
        uri = logged_dataset_uri(job.tracking_uri, job.run_id, job.model_name, job.version)
    if uri.startswith("s3://") or Path(uri).is_absolute():
        frame, digest = store.read_table(uri)
    else:
        frame, digest = _download(uri, job.tracking_uri)
    if frame.empty:
        raise store.StoreError(f"reference {uri} has no rows")
    return Reference(frame, uri, digest)


def log_reference(frame: pd.DataFrame, targets: str | None = None) -> str:
    """In the active MLflow run: `frame` (model inputs by name, sensitive features, the label, and the
    model's `prediction`) as a Parquet artifact and as the run's `training` dataset input, which
    `load_reference` finds for the version registered from this run. Returns the artifact's URI."""
    import mlflow
    from mlflow.data.pandas_dataset import from_pandas

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "training.parquet"
        frame.to_parquet(path, index=False)
        mlflow.log_artifact(str(path), artifact_path="reference")
    uri = str(mlflow.get_artifact_uri("reference/training.parquet"))
    dataset = from_pandas(frame, source=_artifact_source(uri), name=TRAINING_CONTEXT, targets=targets)
    mlflow.log_input(dataset, context=TRAINING_CONTEXT)
    return uri


def _artifact_source(uri: str) -> Any:
    """A dataset source for any artifact URI. MLflow resolves s3:// and file: itself, but not the
    `mlflow-artifacts:` URIs of a tracking server that proxies artifacts (the local stack's), so it gets this
    source, which MLflow stores as `{"uri": ...}` like its own (`logged_dataset_uri` reads that)."""
    from mlflow.artifacts import download_artifacts
    from mlflow.data.dataset_source import DatasetSource

    class ArtifactUriSource(DatasetSource):
        def __init__(self, uri: str) -> None:
            self.uri = uri

        @staticmethod
        def _get_source_type() -> str:
            return "artifact"

        def load(self) -> str:
            return str(download_artifacts(artifact_uri=self.uri))

        @staticmethod
        def _can_resolve(raw_source: Any) -> bool:
            return False

        @classmethod
        def _resolve(cls, raw_source: Any) -> ArtifactUriSource:
            return cls(str(raw_source))

        def to_dict(self) -> dict[str, Any]:
            return {"uri": self.uri}

        @classmethod
        def from_dict(cls, source_dict: dict[Any, Any]) -> ArtifactUriSource:
            return cls(str(source_dict["uri"]))

    return ArtifactUriSource(uri)
