"""The example training job on a local store and a local MLflow: trains on captured, labelled rows, registers
a candidate with its lineage tags, scores it against the serving version on a holdout, writes the result."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
from builders import T0

from steward.api.monitor_results import capture_prefix, outcomes_prefix
from steward.api.retraining import TRAINING_JOB_ENV, OfflineEvaluation, RetrainingTrigger, TriggerKind
from steward.api.training_job import TrainingJob, TrainingResult
from steward.retraining import example_train
from steward.retraining.contract import in_holdout


def _capture(store: Path, n: int, seed: int) -> None:
    from steward.dev.credit_model import FEATURES, applicants

    people = applicants(n, seed)
    stamps = [T0 - timedelta(hours=2) + timedelta(seconds=i) for i in range(n)]
    ids = [f"r{seed}-{i}" for i in range(n)]
    captured = pd.DataFrame(
        {
            "request_id": ids,
            "timestamp": pd.to_datetime(stamps, utc=True),
            "version": "1",
            "status": 200,
            "prediction": 0,
            **{f"input.{f}": people[f].astype("float64") for f in FEATURES},
            "input.customer": ["hashed"] * n,  # a hashed field: not a feature
            "sensitive.gender": people["gender"],
        }
    )
    folder = Path(capture_prefix(str(store), "risk/credit", "1")) / f"date={T0.date()}"
    folder.mkdir(parents=True)
    captured.to_parquet(folder / "part.parquet", index=False)
    outcomes = pd.DataFrame(
        {"request_id": ids, "label": people["defaulted"], "received_at": pd.Timestamp(T0)}
    )
    folder = Path(outcomes_prefix(str(store), "risk/credit")) / f"date={T0.date()}"
    folder.mkdir(parents=True)
    outcomes.to_parquet(folder / "o.parquet", index=False)


def _job(store: Path, tracking_uri: str, parent: str | None, min_rows: int = 200) -> TrainingJob:
    return TrainingJob(
        submission_id="steward-retrain-u-0123",
        deployment="risk/credit",
        model_name="credit-risk",
        tracking_uri=tracking_uri,
        parent_version=parent,
        store_uri=str(store),
        capture_uris=[capture_prefix(str(store), "risk/credit", "1")],
        outcomes_uri=outcomes_prefix(str(store), "risk/credit"),
        window_start=T0 - timedelta(days=1),
        window_end=T0,
        sensitive_features=["gender"],
        evaluation=OfflineEvaluation(min_labelled_rows=min_rows),
        trigger=RetrainingTrigger(
            kind=TriggerKind.MANUAL,
            cause="retraining-requested:command:c1",
            reason="r",
            record_seq=3,
            record_hash="ef" * 32,
        ),
        result_uri=str(store / "risk/credit/retraining/steward-retrain-u-0123/result.json"),
    )


def test_the_holdout_is_stable_by_request_id() -> None:
    ids = pd.Series([f"r{i}" for i in range(2000)])
    first, second = in_holdout(ids, 0.3), in_holdout(ids, 0.3)
    assert first.equals(second) and 0.25 < first.mean() < 0.35


@pytest.mark.filterwarnings("ignore")
def test_the_example_trainer_registers_a_candidate_with_lineage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    from steward.dev.credit_model import register

    monkeypatch.chdir(tmp_path)  # MLflow's local artifact root is relative to the working directory
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    parent = register(tracking, "credit-risk", n=500, seed=3)
    store = tmp_path / "store"
    _capture(store, 1200, seed=11)
    job = _job(store, tracking, parent)
    monkeypatch.setenv(TRAINING_JOB_ENV, job.model_dump_json(by_alias=True))
    assert example_train.main() == 0
    result = TrainingResult.model_validate_json(Path(job.result_uri).read_text())
    assert result.error is None and result.candidate_version == str(int(parent) + 1)
    assert result.labelled_rows == 1200 and result.holdout_rows + result.training_rows == 1200
    assert set(result.candidate.quality) >= {"accuracy", "roc_auc"} and "accuracy" in result.serving.quality
    assert "gender" in result.candidate.parity_ratio and "gender" in result.serving.parity_ratio
    # With their standard errors, for the evaluation's noise allowance (1,200 rows: a few hundredths).
    assert (
        0 < result.candidate.parity_ratio_se["gender"] < 0.2
        and 0 < result.serving.parity_ratio_se["gender"] < 0.2
    )
    tags = mlflow.MlflowClient(tracking).get_model_version("credit-risk", result.candidate_version).tags
    assert tags["steward.trigger"] == "retraining-requested:command:c1"
    assert tags["steward.parent_version"] == parent and tags["steward.trigger.record_hash"] == "ef" * 32
    assert "part.parquet" in tags["steward.data.windows"]
    # Once it serves, its drift monitor finds what it was trained on (the default reference).
    from steward.monitors.reference import _download, logged_dataset_uri

    uri = logged_dataset_uri(tracking, None, "credit-risk", result.candidate_version)
    reference, _ = _download(uri, tracking)
    assert len(reference) == result.training_rows
    assert {"income", "loan_amount", "gender", "label", "prediction"} <= set(reference.columns)
    assert "customer" not in reference.columns  # a hashed field is no feature


def test_too_few_labels_is_a_result_with_an_error_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = tmp_path / "store"
    _capture(store, 50, seed=5)
    job = _job(store, f"sqlite:///{tmp_path / 'none.db'}", "1", min_rows=200)
    monkeypatch.setenv(TRAINING_JOB_ENV, job.model_dump_json(by_alias=True))
    assert example_train.main() == 0
    result = TrainingResult.model_validate_json(Path(job.result_uri).read_text())
    assert (
        result.candidate_version is None and result.error is not None and "only 50 labelled" in result.error
    )


def test_without_the_job_in_the_environment_it_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TRAINING_JOB_ENV, raising=False)
    with pytest.raises(SystemExit, match=TRAINING_JOB_ENV):
        example_train.main()
