"""Monitoring on live traffic: `spec.monitoring`, what to capture of each request and which monitors judge it.

The job contract and results are in steward.api.monitor_results, what the operator keeps between passes in
steward.api.monitoring_status.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import ConfigDict, Field, model_validator

from steward.api.rollout import DURATION
from steward.api.types import SpecBool, SpecFloat, SpecInt, SpecModel, SpecStr

MONITOR_NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# Request header (and answer header) that carries the request id; outcomes are joined on it.
REQUEST_ID_HEADER = "X-Request-Id"


def _cel(rule: str, message: str) -> dict[str, Any]:
    return {"x-kubernetes-validations": [{"rule": rule, "message": message}]}


class FieldPolicy(StrEnum):
    """What capture keeps of one request field."""

    KEEP = "keep"
    DROP = "drop"
    # A keyed HMAC-SHA256 (key from the Ray cluster's environment, never from the spec): the same customer
    # hashes the same way, and nobody without the key can reverse or recompute it.
    HASH = "hash"


class CaptureSpec(SpecModel):
    """Which requests the router records, and what it keeps of them, before anything leaves the replica."""

    sample_rate: Annotated[
        SpecFloat,
        Field(
            ge=0,
            le=1,
            description="Share of requests recorded, chosen by a hash of the request id (so outcomes can be "
            "joined later): 0.1 records one request in ten.",
        ),
    ] = 0.1
    default_policy: Annotated[
        FieldPolicy, Field(description="Policy for input fields not listed in `fields`.")
    ] = FieldPolicy.KEEP
    fields: Annotated[
        dict[str, FieldPolicy],
        Field(description="Per input field: keep, drop or hash (keyed HMAC)."),
    ] = {}
    sensitive_features: Annotated[
        list[Annotated[SpecStr, Field(min_length=1, max_length=256)]],
        Field(
            description="Request fields (e.g. gender, age_band) recorded for fairness checks and never "
            "passed to the model.",
            max_length=50,
        ),
    ] = []


class MonitorKind(StrEnum):
    DRIFT = "drift"
    FAIRNESS = "fairness"
    QUALITY = "quality"


class BreachAction(StrEnum):
    """What a breach does. `alert` always sets the Monitoring condition, an Event and metrics."""

    ALERT = "alert"
    # During a rollout: a breach of the canary fails it. After a promotion, within `rollbackWindow`: the
    # previous stable version gets all traffic back.
    ROLLBACK = "rollback"
    # A breach of the stable version asks for a run of spec.retraining (its guardrails and approval apply).
    RETRAIN = "retrain"


class Window(SpecModel):
    """A window is the last `duration` of traffic (evaluated every `every`), or the last `rows` records."""

    model_config = ConfigDict(
        json_schema_extra=_cel(
            "has(self.duration) != has(self.rows)", "set exactly one of window.duration or window.rows"
        )
    )

    duration: Annotated[SpecStr | None, Field(pattern=DURATION, description="e.g. 1h")] = None
    rows: Annotated[SpecInt | None, Field(ge=10, le=10_000_000, description="e.g. 5000")] = None
    every: Annotated[SpecStr, Field(pattern=DURATION, description="How often a window is judged.")] = "5m"

    @model_validator(mode="after")
    def _exactly_one(self) -> Window:
        if (self.duration is None) == (self.rows is None):
            raise ValueError("set exactly one of window.duration or window.rows")
        return self


class ColumnDrift(SpecModel):
    method: Annotated[
        SpecStr | None,
        Field(description="An Evidently drift method, e.g. ks, psi, wasserstein, jensenshannon."),
    ] = None
    threshold: Annotated[SpecFloat | None, Field(ge=0, description="The method's drift threshold.")] = None


class DriftSettings(SpecModel):
    columns: Annotated[
        list[SpecStr] | None, Field(description="Input columns to compare; default: every captured input.")
    ] = None
    include_predictions: Annotated[
        SpecBool, Field(description="Also compare the distribution of the model's predictions.")
    ] = True
    predictions_vs_stable: Annotated[
        SpecBool,
        Field(
            description="For a canary: also compare its predictions with stable's over the same window "
            "(same method and threshold as prediction drift): a canary that answers the same traffic "
            "differently breaches, whatever the reference says."
        ),
    ] = True
    method: Annotated[
        SpecStr | None,
        Field(
            description="Drift method for every column (Evidently's name). Default: wasserstein (distance "
            "in reference standard deviations) for numeric columns, jensenshannon for categorical ones, "
            "whatever the reference's size (Evidently's own default switches to p-value tests at <= 1000 "
            "reference rows, which flag trivial shifts on large windows)."
        ),
    ] = None
    threshold: Annotated[
        SpecFloat | None,
        Field(
            ge=0,
            description="Threshold of that method (a distance: drift at >= it; a p-value test: drift "
            "below it). Default with the default methods: 0.1 (a tenth of a standard deviation; no-drift "
            "noise at 5,000 rows stays under 0.05, a 0.5 sd shift scores about 0.5).",
        ),
    ] = None
    per_column: dict[str, ColumnDrift] = {}
    min_rows: Annotated[
        SpecInt,
        Field(
            ge=1,
            description="Fewer rows than this in the window or the reference: inconclusive (below about "
            "2,000 rows the default statistic's sampling noise reaches its threshold).",
        ),
    ] = 2000
    max_drifted_columns: Annotated[
        SpecInt, Field(ge=0, description="Breach when more columns than this drift (0: any one).")
    ] = 0
    reference: Annotated[
        SpecStr | None,
        Field(
            description="Reference data URI (s3://..., file path; Parquet or CSV). Default: the dataset "
            "logged with the model version's MLflow run (mlflow.log_input)."
        ),
    ] = None


class FairnessSettings(SpecModel):
    favourable_outcome: Annotated[
        SpecStr,
        Field(
            min_length=1,
            description='The prediction that is good for the person, as text (e.g. "0": no default risk); '
            "compared with the prediction's text form.",
        ),
    ] = "1"
    min_demographic_parity_ratio: Annotated[
        SpecFloat, Field(ge=0, le=1, description="Four-fifths screen: lowest group rate / highest >= this.")
    ] = 0.8
    max_equalized_odds_difference: Annotated[
        SpecFloat | None, Field(ge=0, le=1, description="Judged once outcomes are joined.")
    ] = 0.1
    max_equal_opportunity_difference: Annotated[
        SpecFloat | None, Field(ge=0, le=1, description="Judged once outcomes are joined.")
    ] = 0.1
    min_group_size: Annotated[
        SpecInt, Field(ge=1, description="Groups smaller than this are reported but not judged.")
    ] = 30
    max_worse_than_stable: Annotated[
        SpecFloat,
        Field(
            ge=0,
            le=1,
            description="For a canary: its demographic parity ratio may be at most this much below "
            "stable's over the same window (less 2 standard errors of the difference, for small windows), "
            "even when it passes its own threshold. 1: not compared.",
        ),
    ] = 0.05


class QualitySettings(SpecModel):
    min_accuracy: Annotated[SpecFloat | None, Field(ge=0, le=1)] = None
    min_precision: Annotated[SpecFloat | None, Field(ge=0, le=1)] = None
    min_recall: Annotated[SpecFloat | None, Field(ge=0, le=1)] = None
    min_f1: Annotated[SpecFloat | None, Field(ge=0, le=1)] = None
    min_roc_auc: Annotated[SpecFloat | None, Field(ge=0, le=1)] = None
    max_mae: Annotated[SpecFloat | None, Field(ge=0)] = None
    max_rmse: Annotated[SpecFloat | None, Field(ge=0)] = None
    max_drop_from_training: Annotated[
        SpecFloat | None,
        Field(
            ge=0,
            le=1,
            description="Largest drop of any metric below the version's training metric of the same name "
            "in MLflow (e.g. 0.05 = five points).",
        ),
    ] = None
    min_labelled_rows: Annotated[
        SpecInt, Field(ge=1, description="Fewer joined outcomes than this: inconclusive.")
    ] = 100


class MonitorSpec(SpecModel):
    model_config = ConfigDict(
        json_schema_extra=_cel(
            "[has(self.drift), has(self.fairness), has(self.quality)].filter(x, x).size() <= 1 && "
            "(!has(self.drift) || self.kind == 'drift') && (!has(self.fairness) || self.kind == 'fairness') "
            "&& (!has(self.quality) || self.kind == 'quality')",
            "a monitor's settings must match its kind (drift, fairness or quality)",
        )
    )

    name: Annotated[SpecStr, Field(pattern=MONITOR_NAME, max_length=40)]
    kind: MonitorKind
    window: Window = Window(duration="1h")
    on_breach: BreachAction = BreachAction.ALERT
    drift: DriftSettings | None = None
    fairness: FairnessSettings | None = None
    quality: QualitySettings | None = None

    @model_validator(mode="after")
    def _settings_match_kind(self) -> MonitorSpec:
        given = {k for k in MonitorKind if getattr(self, k.value) is not None}
        if given - {self.kind}:
            kinds = sorted(k.value for k in given)
            raise ValueError(f"monitor {self.name}: settings for {kinds} given to a {self.kind} monitor")
        return self


class MonitoringSpec(SpecModel):
    model_config = ConfigDict(
        json_schema_extra=_cel(
            "!has(self.monitors) || self.monitors.all(m, self.monitors.exists_one(n, n.name == m.name))",
            "monitor names must be unique",
        )
    )

    capture: CaptureSpec | None = None
    monitors: Annotated[list[MonitorSpec], Field(max_length=20)] = []
    rollback_window: Annotated[
        SpecStr,
        Field(
            pattern=DURATION,
            description="After a promotion, a `rollback` monitor's breach within this long returns traffic "
            "to "
            "the previous stable version.",
        ),
    ] = "24h"

    @model_validator(mode="after")
    def _unique_names(self) -> MonitoringSpec:
        names = [m.name for m in self.monitors]
        if len(names) != len(set(names)):
            raise ValueError(f"monitor names must be unique: {names}")
        return self

    def monitor(self, name: str) -> MonitorSpec | None:
        return next((m for m in self.monitors if m.name == name), None)
