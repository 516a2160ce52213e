"""The two JSON documents a training job exchanges with the operator (the contract is described in
steward.api.retraining): the `TrainingJob` it is handed in its environment, and the `TrainingResult` it
writes when it ends."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from steward.api.retraining import OfflineEvaluation, RetrainingTrigger


class _Doc(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)


class TrainingJob(_Doc):
    """What the operator hands a training job, as JSON in the `STEWARD_TRAINING_JOB` environment variable."""

    submission_id: str
    deployment: str  # "namespace/name"
    model_name: str
    tracking_uri: str | None = None
    # The version serving when the run was asked for: the one the candidate is compared with.
    parent_version: str | None = None
    store_uri: str
    # Captured requests (Parquet, partitioned date=YYYY-MM-DD/) of these prefixes within the window, joined
    # on request_id with the outcomes under `outcomes_uri`.
    capture_uris: list[str]
    outcomes_uri: str
    window_start: datetime
    window_end: datetime
    sensitive_features: list[str] = []
    evaluation: OfflineEvaluation
    trigger: RetrainingTrigger
    result_uri: str


class Figures(_Doc):
    """One model's figures on the holdout: quality metrics, and the demographic parity ratio per feature."""

    quality: dict[str, float] = {}
    parity_ratio: dict[str, float] = {}
    # Per feature, the standard error of its parity ratio (delta method from the lowest and highest groups'
    # rates and sizes). With both versions', a drop must exceed the margin by NOISE_STANDARD_ERRORS standard
    # errors of the difference to count; a trainer that gives none is judged on the margin alone.
    parity_ratio_se: dict[str, float] = {}


class TrainingResult(_Doc):
    """What the job writes to `result_uri` when it ends, whatever happened (written last)."""

    submission_id: str
    deployment: str
    model_name: str
    parent_version: str | None = None
    # None when no version was registered; `error` then says why.
    candidate_version: str | None = None
    candidate_run_id: str | None = None
    error: str | None = None
    rows: int = 0
    labelled_rows: int = 0
    training_rows: int = 0
    holdout_rows: int = 0
    data_uris: list[str] = []
    candidate: Figures = Figures()
    serving: Figures = Figures()
    lineage: dict[str, str] = {}
    finished_at: datetime | None = None


def retraining_prefix(store_uri: str, deployment: str, submission_id: str) -> str:
    """Where one run writes its `result.json` in the monitoring store."""
    return f"{store_uri.rstrip('/')}/{deployment}/retraining/{submission_id}"
