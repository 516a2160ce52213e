"""The drift reference defaults to the training dataset that register() logs with the version's MLflow run."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from steward.api.monitor_results import MonitorJob
from steward.api.monitoring import MonitorKind, MonitorSpec
from steward.dev import credit_model
from steward.monitors.reference import load_reference, logged_dataset_uri


@pytest.fixture(scope="module")
def tracking(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("mlflow")
    return f"sqlite:///{root}/mlflow.db"


def test_reference_is_the_logged_training_frame_pinned_by_hash(
    tracking: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    # A sqlite tracking store puts artifacts in ./mlruns: keep them out of the checkout.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", tracking)  # set_registry_uri would outlive the test
    version = credit_model.register(tracking, "credit-ref", n=600)
    uri = logged_dataset_uri(tracking, None, "credit-ref", version)
    assert uri.endswith("reference/training.parquet")
    job = MonitorJob(
        monitor=MonitorSpec(name="drift", kind=MonitorKind.DRIFT),
        deployment="ns/credit",
        version=version,
        model_name="credit-ref",
        store_uri=str(tmp_path),
        window_start="2026-01-01T00:00:00Z",
        window_end="2026-01-01T01:00:00Z",
        tracking_uri=tracking,
        result_uri=str(tmp_path / "r.json"),
        report_uri=str(tmp_path / "r.html"),
    )
    reference = load_reference(job)
    assert len(reference.frame) == 600
    assert {*credit_model.FEATURES, "prediction", "gender"} <= set(reference.frame.columns)
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=uri, tracking_uri=tracking, dst_path=str(tmp_path)
    )
    assert reference.sha256 == hashlib.sha256(Path(local).read_bytes()).hexdigest()
    run = mlflow.MlflowClient(tracking).get_run(
        mlflow.MlflowClient(tracking).get_model_version("credit-ref", version).run_id
    )
    assert {"accuracy", "precision", "recall", "f1", "roc_auc"} <= set(run.data.metrics)


def test_relative_quality_thresholds_use_the_versions_logged_training_metrics(
    tracking: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    from steward.api.monitoring import QualitySettings
    from steward.monitors import store
    from steward.monitors.training import training_metrics

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", tracking)  # set_registry_uri would outlive the test
    version = credit_model.register(tracking, "credit-trained", n=600)

    def quality_job(**extra: object) -> MonitorJob:
        return MonitorJob(
            monitor=MonitorSpec(
                name="quality",
                kind=MonitorKind.QUALITY,
                quality=QualitySettings(max_drop_from_training=0.05),
            ),
            deployment="ns/credit",
            version=version,
            store_uri=str(tmp_path),
            window_start="2026-01-01T00:00:00Z",
            window_end="2026-01-01T01:00:00Z",
            result_uri=str(tmp_path / "r.json"),
            report_uri=str(tmp_path / "r.html"),
            **{"model_name": "credit-trained", **extra},  # type: ignore[arg-type]
        )

    figures = training_metrics(quality_job(tracking_uri=tracking))
    run = mlflow.MlflowClient(tracking).get_run(
        mlflow.MlflowClient(tracking).get_model_version("credit-trained", version).run_id
    )
    assert figures == {k: run.data.metrics[k] for k in ("accuracy", "precision", "recall", "f1", "roc_auc")}
    # What the operator sent wins; nothing relative asked for: MLflow is not read at all.
    assert training_metrics(quality_job(training_metrics={"accuracy": 0.9})) == {"accuracy": 0.9}
    with pytest.raises(store.StoreError, match="no MLflow tracking URI"):
        training_metrics(quality_job())
    with pytest.raises(store.StoreError, match="MLflow at"):
        training_metrics(quality_job(tracking_uri=tracking, model_name="no-such-model"))
