"""The serving version's training metrics, as logged with its MLflow run: the baseline of quality thresholds
relative to training (`quality.maxDropFromTraining`). Read by the job, which already talks to MLflow for the
drift reference, so the operator does not read every version's run on every pass."""

from __future__ import annotations

from steward.api.monitor_results import MonitorJob
from steward.monitors import store
from steward.monitors.quality import CLASSIFIER_METRICS, REGRESSOR_METRICS


def training_metrics(job: MonitorJob) -> dict[str, float]:
    """The job's own figures if the operator sent them, else the version run's metrics named as the quality
    monitor names its figures; {} when nothing relative is asked for."""
    settings = job.monitor.quality
    if job.training_metrics or settings is None or settings.max_drop_from_training is None:
        return dict(job.training_metrics)
    if not job.tracking_uri:
        raise store.StoreError(
            "quality.maxDropFromTraining needs the version's training metrics, but the job has no MLflow "
            "tracking URI: set MLFLOW_TRACKING_URI for the operator"
        )
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=job.tracking_uri)
    try:
        run_id = job.run_id or client.get_model_version(job.model_name, job.version).run_id
        if not run_id:
            raise store.StoreError(
                f"model {job.model_name} v{job.version} has no MLflow run, so no training metrics for "
                "quality.maxDropFromTraining: log them with the version's run or drop the setting"
            )
        logged = client.get_run(run_id).data.metrics
    except MlflowException as exc:
        raise store.StoreError(f"MLflow at {job.tracking_uri}: {exc}") from exc
    known = set(CLASSIFIER_METRICS) | set(REGRESSOR_METRICS)
    return {name: float(value) for name, value in logged.items() if name in known}
