"""A training job's side of the contract: read the TrainingJob from the environment, load the captured,
labelled data it names, and write the TrainingResult where the operator looks for it.

Any trainer may use these helpers; only the JSON documents (steward.api.retraining) are the contract.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import pandas as pd

from steward.api.monitor_results import CaptureColumn
from steward.api.retraining import TRAINING_JOB_ENV
from steward.api.training_job import TrainingJob, TrainingResult
from steward.monitors import store
from steward.monitors.window import LABEL, join_outcomes


class TrainingError(Exception):
    """The job cannot train on what it was given (no data, too few labels): a result with `error`."""


def read_job(environ: dict[str, str] | None = None) -> TrainingJob:
    env = os.environ if environ is None else environ
    raw = env.get(TRAINING_JOB_ENV)
    if not raw:
        raise SystemExit(f"{TRAINING_JOB_ENV} is not set: this module runs as a Steward training job")
    return TrainingJob.model_validate_json(raw)


def write_result(job: TrainingJob, result: TrainingResult) -> None:
    """Written last: the operator takes the file's presence as the job's answer."""
    body = result.model_dump_json(by_alias=True, indent=2).encode()
    store.write_bytes(job.result_uri, body, content_type="application/json")


@dataclass(frozen=True)
class LabelledData:
    frame: pd.DataFrame  # captured rows answered in the window, with a `label` column (NaN: no outcome yet)
    uris: list[str]  # the Parquet files read

    @property
    def labelled(self) -> pd.DataFrame:
        return self.frame.loc[self.frame[LABEL].notna()].reset_index(drop=True)


def load_labelled(job: TrainingJob) -> LabelledData:
    """Captured rows of every prefix within the window, answered (2xx), joined with their outcomes."""
    uris: list[str] = []
    for prefix in job.capture_uris:
        uris += store.partitions_between(store.list_keys(prefix), job.window_start, job.window_end)
    captured = store.read_frames(uris)
    if captured.empty:
        raise TrainingError(
            f"no captured rows between {job.window_start} and {job.window_end} in {job.capture_uris}"
        )
    stamps = pd.to_datetime(captured[CaptureColumn.TIMESTAMP], utc=True)
    keep = (stamps >= pd.Timestamp(job.window_start)) & (stamps < pd.Timestamp(job.window_end))
    if CaptureColumn.STATUS in captured.columns:
        keep &= pd.to_numeric(captured[CaptureColumn.STATUS], errors="coerce").between(200, 299)
    captured = captured.loc[keep].reset_index(drop=True)
    outcome_uris = store.partitions_between(store.list_keys(job.outcomes_uri), job.window_start, None)
    frame = join_outcomes(captured, store.read_frames(outcome_uris))
    return LabelledData(frame, uris + outcome_uris)


def in_holdout(request_ids: pd.Series, fraction: float) -> pd.Series:
    """A stable split by request id: the same row lands on the same side in every run and on every machine."""

    def draw(request_id: object) -> bool:
        digest = hashlib.sha256(f"holdout:{request_id}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < fraction

    return request_ids.map(draw).astype(bool)
