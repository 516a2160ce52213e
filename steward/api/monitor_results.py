"""The monitor job's contract: what the operator hands a job (`MonitorJob`), what the job writes back
(`MonitorResult`), and where the router's captured requests, the outcomes and the reports live in the store.

The router writes capture files with `CaptureColumn`'s columns, a monitor job (steward.monitors, run as a Ray
Job) reads a window of them and writes a `MonitorResult`, and the operator acts on it; none imports another.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from steward.api.monitoring import CaptureSpec, MonitorKind, MonitorSpec

# --- results: written by the monitor job as JSON, read by the operator, summarised in status ---------------


class ResultModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)


class MonitorVerdict(StrEnum):
    PASS = "pass"
    BREACH = "breach"
    # Too few rows, labels or group members to judge: reported, never acted on.
    INCONCLUSIVE = "inconclusive"
    # The job could not compute (unreadable data, missing reference): a condition, never a breach.
    ERROR = "error"


# How many standard errors of the difference one version's parity ratio must fall below another's, past the
# margin, before it counts as worse: on a canary's window or a holdout of a few hundred rows, a ratio moves by
# about 0.1 by chance alone. Used by the canary gate (steward.monitors.versus) and the offline evaluation of a
# retrained candidate (steward.operator.retraining_plan).
NOISE_STANDARD_ERRORS = 2.0


class Check(ResultModel):
    """One judged figure: what was measured, against what, and whether it passed."""

    name: Annotated[str, Field(description="e.g. drift:income, demographic_parity_ratio:gender, recall")]
    value: float | None
    threshold: float | None = None
    # "<=" or ">=": which side of the threshold passes.
    op: str = "<="
    passed: bool | None = None
    detail: str = ""


class MonitorResult(ResultModel):
    monitor: str
    kind: MonitorKind
    deployment: str
    version: str
    window_start: datetime
    window_end: datetime
    rows: int = 0
    labelled_rows: int = 0
    verdict: MonitorVerdict
    summary: str = ""
    checks: Annotated[list[Check], Field(max_length=200)] = []
    report_uri: str | None = None
    report_sha256: str | None = None
    reference_uri: str | None = None
    reference_sha256: str | None = None
    job_id: str | None = None
    finished_at: datetime | None = None

    def breaches(self) -> list[Check]:
        return [c for c in self.checks if c.passed is False]


# --- where things live in the monitoring store (an s3:// URI or a local folder; the operator's config) ---


def deployment_root(store_uri: str, deployment: str) -> str:
    """`s3://bucket/prefix` + `ns/name` -> `s3://bucket/prefix/ns/name`."""
    return f"{store_uri.rstrip('/')}/{deployment}"


def capture_prefix(store_uri: str, deployment: str, version: str) -> str:
    """Captured requests of one version, partitioned `date=YYYY-MM-DD/` below this."""
    return f"{deployment_root(store_uri, deployment)}/v{version}"


def outcomes_prefix(store_uri: str, deployment: str) -> str:
    """Outcomes (ground truth) sent with `steward feedback`, partitioned `date=YYYY-MM-DD/` below this."""
    return f"{deployment_root(store_uri, deployment)}/outcomes"


def report_prefix(store_uri: str, deployment: str, monitor: str, version: str, window_end: datetime) -> str:
    """One monitor run's `report.html` and `result.json`."""
    stamp = window_end.strftime("%Y%m%dT%H%M%SZ")
    return f"{deployment_root(store_uri, deployment)}/reports/{monitor}/v{version}/{stamp}"


class CaptureColumn:
    """Columns of a capture Parquet file. Input fields are `input.<field>` after the privacy policy,
    sensitive features `sensitive.<field>`, class probabilities `proba.<class>`; a model with named outputs
    gives `output.<name>` instead of `prediction`."""

    REQUEST_ID = "request_id"
    TIMESTAMP = "timestamp"  # timezone-aware UTC
    VERSION = "version"
    STATUS = "status"  # the HTTP status the caller got
    LATENCY_MS = "latency_ms"
    PREDICTION = "prediction"
    INPUT = "input."
    SENSITIVE = "sensitive."
    PROBA = "proba."
    OUTPUT = "output."


class OutcomeColumn:
    """Columns of an outcomes file: the request id, the true label, optionally sensitive features."""

    REQUEST_ID = "request_id"
    LABEL = "label"
    RECEIVED_AT = "received_at"
    SENSITIVE = "sensitive."


class MonitorJob(ResultModel):
    """What the operator hands a monitor job (JSON, base64 on the entrypoint's command line)."""

    monitor: MonitorSpec
    deployment: str
    version: str
    model_name: str
    store_uri: str
    window_start: datetime
    window_end: datetime
    # The reference data: the spec's URI, else the dataset logged with the version's MLflow run.
    reference_uri: str | None = None
    tracking_uri: str | None = None
    run_id: str | None = None
    # The version's training metrics from MLflow, for relative quality thresholds.
    training_metrics: dict[str, float] = {}
    # The capture policy of the window: a hashed input cannot be compared with raw reference data.
    capture: CaptureSpec | None = None
    # For a canary's window: the stable version, whose traffic over the same window it is compared with.
    stable_version: str | None = None
    result_uri: str
    report_uri: str
