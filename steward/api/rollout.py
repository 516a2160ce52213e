"""How a new model version replaces the stable one: the `spec.rollout` section and the rollout status.

Modelled on Argo Rollouts' canary: an ordered list of steps (`setWeight`, `pause`, `analysis`), analysis with
thresholds and a failure limit, and abort returning all traffic to stable at once.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from steward.api.types import SpecFloat, SpecInt, SpecModel, SpecStr

DURATION = r"^[0-9]+(ms|s|m|h)$"
_DURATION_FACTORS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
# Who asks for a manual step (promote, abort, pause, resume): the CLI writes it, the operator acts on it once.
ROLLOUT_COMMAND_ANNOTATION = "steward.io/rollout-command"
MAX_WINDOWS_IN_STATUS = 5
MAX_ROLLOUT_HISTORY = 10


def duration_s(text: str) -> float:
    """`"30s"` -> 30.0; the pattern on every duration field guarantees the shape."""
    match = re.fullmatch(r"([0-9]+)(ms|s|m|h)", text)
    if match is None:
        raise ValueError(f"not a duration: {text!r} (use e.g. 500ms, 30s, 5m or 1h)")
    return int(match.group(1)) * _DURATION_FACTORS[match.group(2)]


def _cel(rule: str, message: str) -> dict[str, Any]:
    return {"x-kubernetes-validations": [{"rule": rule, "message": message}]}


class _Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class _Status(_Wire):
    # Status written by a newer operator must still parse in an older CLI.
    model_config = ConfigDict(extra="ignore")


class Strategy(StrEnum):
    CANARY = "canary"
    SHADOW = "shadow"
    IMMEDIATE = "immediate"


class Pause(SpecModel):
    duration: Annotated[
        SpecStr | None,
        Field(pattern=DURATION, description="How long to wait, e.g. 30s. Omit to wait for a human (resume)."),
    ] = None


class AnalysisStep(SpecModel):
    windows: Annotated[
        SpecInt | None,
        Field(ge=1, le=100, description="Passing windows this step needs; default rollout.analysis.windows."),
    ] = None


class RolloutStep(SpecModel):
    model_config = ConfigDict(
        json_schema_extra=_cel(
            "[has(self.setWeight), has(self.pause), has(self.analysis)].filter(x, x).size() == 1",
            "each rollout step sets exactly one of setWeight, pause or analysis",
        )
    )

    set_weight: Annotated[
        SpecInt | None, Field(ge=0, le=100, description="Percent of live traffic the new version gets.")
    ] = None
    pause: Pause | None = None
    analysis: AnalysisStep | None = None

    @model_validator(mode="after")
    def _exactly_one_kind(self) -> RolloutStep:
        if sum(x is not None for x in (self.set_weight, self.pause, self.analysis)) != 1:
            raise ValueError("each rollout step sets exactly one of setWeight, pause or analysis")
        return self


class Analysis(SpecModel):
    """How the new version is judged against stable, one window at a time."""

    interval: Annotated[SpecStr, Field(pattern=DURATION, description="Length of one analysis window.")] = (
        "30s"
    )
    min_requests: Annotated[
        SpecInt,
        Field(ge=1, description="Requests the new version must see in a window before it is judged."),
    ] = 50
    windows: Annotated[
        SpecInt, Field(ge=1, le=100, description="Passing windows an analysis step needs.")
    ] = 1
    failure_limit: Annotated[
        SpecInt, Field(ge=0, le=100, description="Failing windows tolerated; one more rolls back.")
    ] = 0
    max_error_rate: Annotated[
        SpecFloat,
        Field(ge=0, le=1, description="Highest error rate (5xx share) of the new version, 0.01 = 1%."),
    ] = 0.01
    max_error_rate_increase: Annotated[
        SpecFloat | None,
        Field(ge=0, le=1, description="Highest error rate above stable's in the same window, in points."),
    ] = None
    max_rejection_rate: Annotated[
        SpecFloat | None,
        Field(
            ge=0, le=1, description="Highest rejection rate (4xx share) of the new version; off unless set."
        ),
    ] = None
    max_rejection_rate_increase: Annotated[
        SpecFloat,
        Field(
            ge=0,
            le=1,
            description="Highest rejection rate (4xx share) above stable's in the same window, in points: a "
            "version that refuses input stable accepts fails. 1 turns this off.",
        ),
    ] = 0.05
    max_latency_p95_ms: Annotated[
        SpecFloat | None,
        Field(gt=0, description="Highest p95 latency in ms, whatever stable's; off unless set."),
    ] = None
    max_latency_p99_ms: Annotated[
        SpecFloat | None,
        Field(gt=0, description="Highest p99 latency in ms, whatever stable's; off unless set."),
    ] = None
    max_latency_p95_ratio: Annotated[
        SpecFloat,
        Field(
            gt=0,
            description="Highest p95 latency as a multiple of stable's in the same window, so that a machine "
            "slowing down for both versions fails neither. A large value (e.g. 1000) turns this off.",
        ),
    ] = 1.5
    max_latency_p95_increase_ms: Annotated[
        SpecFloat | None,
        Field(
            gt=0, description="Highest p95 latency above stable's in the same window, in ms; off unless set."
        ),
    ] = None
    latency_tolerance_ms: Annotated[
        SpecFloat,
        Field(
            ge=0,
            description="A p95 at most this many ms above stable's passes maxLatencyP95Ratio whatever the "
            "ratio: at a few ms, a ratio measures noise.",
        ),
    ] = 10.0
    max_disagreement: Annotated[
        SpecFloat | None,
        Field(
            ge=0,
            le=1,
            description="Highest share of shadowed requests where the versions answer differently.",
        ),
    ] = None
    require_monitors: Annotated[
        list[Annotated[SpecStr, Field(max_length=40)]],
        Field(
            max_length=20,
            description="Monitors of spec.monitoring (e.g. fairness) that must judge the canary's own "
            "traffic as passing before an analysis step completes; a breach rolls the canary back.",
        ),
    ] = []

    @property
    def interval_s(self) -> float:
        return duration_s(self.interval)


class Stickiness(SpecModel):
    model_config = ConfigDict(
        json_schema_extra=_cel(
            "has(self.header) != has(self.field)", "set exactly one of stickiness.header or stickiness.field"
        )
    )

    header: Annotated[
        SpecStr | None,
        Field(
            pattern=r"^[A-Za-z0-9-]{1,100}$",
            description="Request header holding the key, e.g. X-Customer-Id.",
        ),
    ] = None
    field: Annotated[
        SpecStr | None,
        Field(min_length=1, max_length=200, description="Input column holding the key, e.g. customer_id."),
    ] = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Stickiness:
        if (self.header is None) == (self.field is None):
            raise ValueError("set exactly one of stickiness.header or stickiness.field")
        return self


DEFAULT_CANARY_STEPS = (
    RolloutStep(set_weight=10),
    RolloutStep(analysis=AnalysisStep()),
    RolloutStep(set_weight=50),
    RolloutStep(analysis=AnalysisStep()),
)
# Shadow traffic never reaches callers: judge it, then let a person decide.
DEFAULT_SHADOW_STEPS = (RolloutStep(analysis=AnalysisStep()), RolloutStep(pause=Pause()))


class RolloutSpec(SpecModel):
    model_config = ConfigDict(
        json_schema_extra=_cel(
            "self.strategy != 'shadow' || !has(self.steps) || self.steps.all(s, !has(s.setWeight))",
            "a shadow rollout sends no live traffic to the new version: use analysis and pause steps only",
        )
    )

    strategy: Annotated[
        Strategy,
        Field(
            description="canary: move live traffic step by step; shadow: mirror traffic to the new version "
            "and compare, then switch; immediate: switch once the new version is warm."
        ),
    ] = Strategy.CANARY
    steps: Annotated[
        list[RolloutStep] | None,
        Field(max_length=50, description="Default: 10% -> analysis -> 50% -> analysis -> 100%."),
    ] = None
    analysis: Analysis = Analysis()
    stickiness: Annotated[
        Stickiness | None, Field(description="Keep one caller on one version for the whole rollout.")
    ] = None
    shadow_percent: Annotated[
        SpecInt,
        Field(
            ge=0,
            le=100,
            description="Share of requests mirrored to the new version: in shadow rollouts, and in canary "
            "rollouts that judge disagreement.",
        ),
    ] = 100

    @model_validator(mode="after")
    def _shadow_has_no_weights(self) -> RolloutSpec:
        if self.strategy == Strategy.SHADOW and any(s.set_weight is not None for s in self.steps or ()):
            raise ValueError(
                "a shadow rollout sends no live traffic to the new version: use analysis and pause steps only"
            )
        return self

    @property
    def effective_steps(self) -> tuple[RolloutStep, ...]:
        if self.steps is not None:
            return tuple(self.steps)
        if self.strategy == Strategy.SHADOW:
            return DEFAULT_SHADOW_STEPS
        if self.strategy == Strategy.IMMEDIATE:
            return ()
        return DEFAULT_CANARY_STEPS


class RolloutCommandKind(StrEnum):
    PROMOTE = "promote"  # finish the current step now
    PROMOTE_FULL = "promote-full"  # skip every remaining step: all traffic to the new version
    ABORT = "abort"
    PAUSE = "pause"
    RESUME = "resume"


class RolloutCommand(_Wire):
    """The value of the `steward.io/rollout-command` annotation; acted on once, by id."""

    id: Annotated[str, Field(min_length=1, max_length=100)]
    command: RolloutCommandKind
    actor: str | None = None
    reason: str | None = None


# ---------------------------------------------------------------------------------------------------- status


class RolloutState(StrEnum):
    WARMING = "Warming"  # the new version's replicas are starting; it gets no traffic yet
    PROGRESSING = "Progressing"
    PAUSED = "Paused"
    PROMOTING = "Promoting"  # all traffic moved to the new version; the old one drains, then goes
    ROLLING_BACK = "RollingBack"  # all traffic back on stable; the new version drains, then goes


class Verdict(StrEnum):
    PASS = "Pass"
    FAIL = "Fail"
    INCONCLUSIVE = "Inconclusive"


class Outcome(StrEnum):
    PROMOTED = "Promoted"
    ROLLED_BACK = "RolledBack"
    ABORTED = "Aborted"
    SUPERSEDED = "Superseded"


class VersionWindow(_Status):
    """One version's figures over one window."""

    requests: int = 0
    errors: int = 0
    error_rate: float | None = None
    # 4xx answers: input the version refused.
    rejected: int = 0
    rejection_rate: float | None = None
    latency_p95_ms: float | None = None
    latency_p99_ms: float | None = None


class WindowResult(_Status):
    started_at: datetime
    ended_at: datetime
    verdict: Verdict
    summary: Annotated[str, Field(description='e.g. "error rate 12.5% > 1% over 400 requests"')]
    canary: VersionWindow
    stable: VersionWindow
    disagreement: float | None = None
    compared: int = 0


class RolloutTarget(_Status):
    version: str
    model_uri: str
    source: str | None = None
    run_id: str | None = None


class ActiveRollout(_Status):
    strategy: Strategy
    canary: RolloutTarget
    from_version: str
    state: RolloutState
    message: str = ""
    started_at: datetime
    # The spec generation this rollout follows; a spec change restarts it.
    generation: int | None = None
    step_index: int = 0
    step_count: int = 0
    step_started_at: datetime
    weight: Annotated[int, Field(description="Percent of live traffic the new version gets now.")] = 0
    # When traffic last moved wholesale (promote, roll back): the old side's drain counts from it.
    switched_at: datetime | None = None
    window_started_at: datetime | None = None
    # TrafficStats at the window's start, as JSON: the window's figures are the difference to now.
    window_baseline: str | None = None
    passed_windows: int = 0
    failed_windows: int = 0
    windows: Annotated[list[WindowResult], Field(max_length=MAX_WINDOWS_IN_STATUS)] = []
    # The id of the last manual command acted on, so that none is applied twice.
    handled_command: str | None = None
    # Why it is finishing (set with PROMOTING / ROLLING_BACK), for the history entry and the audit record.
    outcome: Outcome | None = None
    outcome_reason: str | None = None
    # Who decided the outcome: the operator, or the person whose command it was.
    outcome_actor: str | None = None
    # Set when this "rollout" returns traffic to the version before a promoted one (a monitor's breach
    # within the rollback window): no steps, and it ends as a rollback of the version it replaces.
    revert_reason: str | None = None


class RolloutRecord(_Status):
    from_version: str
    to_version: str
    strategy: Strategy
    started_at: datetime
    finished_at: datetime
    outcome: Outcome
    reason: str
    # The spec generation it followed: a failed version is not retried until the spec or the alias changes.
    generation: int | None = None
