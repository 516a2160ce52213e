"""Example training job: `python -m steward.retraining.example_train`, run as a Ray Job by the operator.

Trains a scikit-learn logistic regression (as the demo's credit model is trained) on the captured, labelled
production rows of the job's window, leaving out a holdout chosen by request id; scores the candidate and the
serving (parent) version on that holdout (quality, and the demographic parity ratio per sensitive feature);
registers the candidate in MLflow with its lineage tags; writes the TrainingResult. Judging the figures is
the operator's business (spec.retraining.evaluation), not the job's.

A problem with the data (none, too few labels) is a result with `error` and exit 0; a store that will not take
the result, or a bug, exits non-zero (the operator then shows the log's tail).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from steward.api.monitor_results import CaptureColumn
from steward.api.training_job import Figures, TrainingJob, TrainingResult
from steward.monitors.reference import log_reference
from steward.monitors.versus import parity_ratio_se
from steward.monitors.window import LABEL, text_series
from steward.retraining.contract import (
    TrainingError,
    in_holdout,
    load_labelled,
    read_job,
    write_result,
)

log = logging.getLogger("steward.retraining.example_train")
# Set to "1" in the job's runtimeEnv.envVars to train a deliberately bad candidate (tests and demos).
FLIP_LABELS_ENV = "EXAMPLE_TRAIN_FLIP_LABELS"
# Groups smaller than this are left out of the parity ratio: a handful of rows says nothing.
MIN_GROUP_ROWS = 10


def features(frame: pd.DataFrame) -> list[str]:
    """Numeric captured inputs (`input.<name>`): hashed or text fields are not features of this model."""
    return sorted(
        c.removeprefix(CaptureColumn.INPUT)
        for c in frame.columns
        if c.startswith(CaptureColumn.INPUT) and pd.api.types.is_numeric_dtype(frame[c])
    )


def inputs(frame: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    return pd.DataFrame({n: frame[CaptureColumn.INPUT + n].astype("float64") for n in names})


def reference_frame(rows: pd.DataFrame, x: pd.DataFrame, predicted: np.ndarray) -> pd.DataFrame:
    """Training rows as a drift reference: inputs (`x`, by name) and sensitive features by name, label,
    prediction."""
    sensitive = [c for c in rows.columns if c.startswith(CaptureColumn.SENSITIVE)]
    frame = x.copy()
    for column in sensitive:
        frame[column.removeprefix(CaptureColumn.SENSITIVE)] = rows[column].to_numpy()
    frame[LABEL] = pd.to_numeric(rows[LABEL], errors="coerce").to_numpy()
    frame[CaptureColumn.PREDICTION] = predicted
    return frame


def quality(truth: pd.Series, predicted: np.ndarray, proba: np.ndarray | None) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score

    out = {
        "accuracy": float(accuracy_score(truth, predicted)),
        "precision": float(precision_score(truth, predicted, zero_division=0)),
        "recall": float(recall_score(truth, predicted, zero_division=0)),
        "f1": float(f1_score(truth, predicted, zero_division=0)),
    }
    if proba is not None and truth.nunique() == 2:
        out["roc_auc"] = float(roc_auc_score(truth, proba))
    return out


def parity_ratios(
    frame: pd.DataFrame, predicted: np.ndarray, sensitive: list[str], favourable: str
) -> tuple[dict[str, float], dict[str, float]]:
    """Per sensitive feature, the lowest group's favourable-outcome rate over the highest's, and that ratio's
    standard error (the canary gate's delta method), for the evaluation's noise allowance."""
    good = text_series(pd.Series(predicted)) == favourable
    ratios, errors = {}, {}
    for feature in sensitive:
        column = CaptureColumn.SENSITIVE + feature
        if column not in frame.columns:
            continue
        groups = pd.DataFrame({"g": frame[column].to_numpy(), "good": good.to_numpy()}).dropna()
        table = groups.groupby("g")["good"].agg(selection_rate="mean", count="size")
        table["judged"] = table["count"] >= MIN_GROUP_ROWS
        rates = table.loc[table["judged"], "selection_rate"]
        if len(rates) >= 2 and rates.max() > 0:
            ratios[feature] = float(rates.min() / rates.max())
            se = parity_ratio_se(table)
            if se is not None:
                errors[feature] = se
    return ratios, errors


def figures(
    frame: pd.DataFrame, truth: pd.Series, predicted: np.ndarray, proba: np.ndarray | None, job: TrainingJob
) -> Figures:
    ratios, errors = parity_ratios(
        frame, predicted, job.sensitive_features, job.evaluation.favourable_outcome
    )
    return Figures(quality=quality(truth, predicted, proba), parity_ratio=ratios, parity_ratio_se=errors)


def lineage(job: TrainingJob, data_uris: list[str]) -> dict[str, str]:
    """Tags on the new MLflow version: why it was trained, on what, from which version."""
    trigger = job.trigger
    tags = {
        "steward.trigger": trigger.cause,
        "steward.trigger.kind": trigger.kind.value,
        "steward.trigger.reason": trigger.reason[:500],
        "steward.deployment": job.deployment,
        "steward.submission_id": job.submission_id,
        "steward.parent_version": job.parent_version or "",
        "steward.data.window": f"{job.window_start.isoformat()}/{job.window_end.isoformat()}",
        # MLflow tag values hold 5000 characters; the full list is in the result and the audit record.
        "steward.data.windows": json.dumps(sorted(data_uris))[:4900],
    }
    if trigger.record_hash is not None:
        tags["steward.trigger.record_hash"] = trigger.record_hash
        tags["steward.trigger.record_seq"] = str(trigger.record_seq)
    return tags


def train(job: TrainingJob) -> TrainingResult:
    import mlflow
    import sklearn
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data = load_labelled(job)
    labelled = data.labelled
    margins = job.evaluation
    if len(labelled) < margins.min_labelled_rows:
        raise TrainingError(
            f"only {len(labelled)} labelled row(s) of {len(data.frame)} captured "
            f"(minLabelledRows {margins.min_labelled_rows})"
        )
    names = features(labelled)
    if not names:
        raise TrainingError("the captured rows have no numeric input.<field> columns to train on")
    truth = pd.to_numeric(labelled[LABEL], errors="coerce")
    if truth.isna().any():
        raise TrainingError("some outcome labels are not numeric classes")
    holdout = in_holdout(labelled[CaptureColumn.REQUEST_ID], margins.holdout_fraction)
    train_rows, test_rows = labelled.loc[~holdout], labelled.loc[holdout]
    if test_rows.empty or train_rows[LABEL].nunique() < 2:
        raise TrainingError(f"the split left {len(test_rows)} holdout row(s) and too few classes to train")

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    labels = truth.loc[~holdout].astype(int)
    if os.environ.get(FLIP_LABELS_ENV) == "1":
        # A deliberately bad candidate (tests, demos): trained on the opposite of every outcome.
        log.warning("%s=1: training on flipped labels", FLIP_LABELS_ENV)
        labels = 1 - labels
    x_train = inputs(train_rows, names)
    model.fit(x_train, labels)
    x_test, y_test = inputs(test_rows, names), truth.loc[holdout].astype(int)
    candidate_pred = model.predict(x_test)
    candidate = figures(test_rows, y_test, candidate_pred, model.predict_proba(x_test)[:, 1], job)

    if job.tracking_uri:
        mlflow.set_tracking_uri(job.tracking_uri)
    serving = Figures()
    if job.parent_version is not None:
        parent = mlflow.pyfunc.load_model(f"models:/{job.model_name}/{job.parent_version}")
        serving_pred = np.asarray(parent.predict(x_test)).ravel()
        serving = figures(test_rows, y_test, serving_pred, None, job)

    tags = lineage(job, data.uris)
    mlflow.set_experiment(f"{job.model_name}-retraining")
    with mlflow.start_run(run_name=job.submission_id, tags=tags) as run:
        mlflow.log_params(
            {"rows": len(labelled), "holdout_fraction": margins.holdout_fraction, "features": ",".join(names)}
        )
        mlflow.log_metrics({f"holdout_{k}": v for k, v in candidate.quality.items()})
        # The candidate's drift reference, once it serves: what it was trained on, as the monitors name it.
        log_reference(reference_frame(train_rows, x_train, model.predict(x_train)), LABEL)
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(x_test, candidate_pred),
            registered_model_name=job.model_name,
            pip_requirements=[f"scikit-learn=={sklearn.__version__}", "pandas<3"],
        )
    version = info.registered_model_version
    if version is None:
        raise RuntimeError(f"MLflow did not register a version of {job.model_name}")
    client = mlflow.MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(job.model_name, str(version), key, value)
    return TrainingResult(
        submission_id=job.submission_id,
        deployment=job.deployment,
        model_name=job.model_name,
        parent_version=job.parent_version,
        candidate_version=str(version),
        candidate_run_id=run.info.run_id,
        rows=len(data.frame),
        labelled_rows=len(labelled),
        training_rows=len(train_rows),
        holdout_rows=len(test_rows),
        data_uris=data.uris,
        candidate=candidate,
        serving=serving,
        lineage=tags,
        finished_at=datetime.now(UTC),
    )


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    job = read_job()
    try:
        result = train(job)
    except TrainingError as exc:
        log.warning("no candidate: %s", exc)
        result = TrainingResult(
            submission_id=job.submission_id,
            deployment=job.deployment,
            model_name=job.model_name,
            parent_version=job.parent_version,
            error=str(exc),
            finished_at=datetime.now(UTC),
        )
    write_result(job, result)
    log.info("result written to %s: candidate %s", job.result_uri, result.candidate_version)
    return 0


if __name__ == "__main__":
    sys.exit(main())
