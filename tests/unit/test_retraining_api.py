"""spec.retraining and its command annotation: what a manifest may say, and the one shared pattern."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from steward.api.model_deployment import MEMORY_QUANTITY, ModelDeploymentSpec
from steward.api.monitoring import BreachAction
from steward.api.retraining import (
    MAX_RUNS_IN_STATUS,
    MEMORY_PATTERN,
    Approval,
    RetrainingCommand,
    RetrainingCommandKind,
    RetrainingSpec,
)
from steward.api.training_job import retraining_prefix

DRIFT = {"name": "drift", "kind": "drift", "onBreach": "retrain"}


def spec(**extra: Any) -> dict[str, Any]:
    return {"model": {"name": "credit-risk", "alias": "champion"}, **extra}


def test_the_memory_pattern_is_the_serving_one() -> None:
    assert MEMORY_PATTERN == MEMORY_QUANTITY


def test_defaults_are_the_cautious_ones() -> None:
    parsed = RetrainingSpec.model_validate({"entrypoint": "python -m train"})
    assert parsed.approval == Approval.MANUAL
    assert (parsed.cooldown, parsed.max_runs_per_day, parsed.timeout) == ("6h", 3, "2h")
    assert parsed.evaluation.max_quality_drop == 0.0


def test_a_retrain_monitor_needs_spec_retraining() -> None:
    with pytest.raises(ValidationError, match=r"onBreach: retrain, which needs spec\.retraining"):
        ModelDeploymentSpec.model_validate(spec(monitoring={"monitors": [DRIFT]}))
    parsed = ModelDeploymentSpec.model_validate(
        spec(monitoring={"monitors": [DRIFT]}, retraining={"entrypoint": "python -m train"})
    )
    assert parsed.monitoring.monitors[0].on_breach == BreachAction.RETRAIN


@pytest.mark.parametrize(
    ("retraining", "wrong"),
    [
        ({}, "entrypoint"),
        ({"entrypoint": ""}, "entrypoint"),
        ({"entrypoint": "x", "maxRunsPerDay": MAX_RUNS_IN_STATUS + 1}, "maxRunsPerDay"),
        ({"entrypoint": "x", "maxRunsPerDay": "2"}, "maxRunsPerDay"),
        ({"entrypoint": "x", "cooldown": "1d"}, "cooldown"),
        ({"entrypoint": "x", "entrypointMemory": "2 GB"}, "entrypointMemory"),
        ({"entrypoint": "x", "approval": "sometimes"}, "approval"),
        ({"entrypoint": "x", "evaluation": {"holdoutFraction": 0}}, "holdoutFraction"),
        ({"entrypoint": "x", "evaluation": {"maxQualityDrop": 2}}, "maxQualityDrop"),
        ({"entrypoint": "x", "runtimeEnv": {"conda": "env"}}, "conda"),
        ({"entrypoint": "x", "runtimeEnv": {"envVars": {"A": 1}}}, "envVars"),
    ],
)
def test_bad_retraining_specs_say_which_field(retraining: dict[str, Any], wrong: str) -> None:
    with pytest.raises(ValidationError) as caught:
        ModelDeploymentSpec.model_validate(spec(retraining=retraining))
    assert wrong in str(caught.value)


def test_commands_parse_and_refuse_unknown_kinds() -> None:
    raw = '{"id": "c1", "command": "approve", "actor": "alice", "reason": "CR-7"}'
    assert RetrainingCommand.model_validate_json(raw).command == RetrainingCommandKind.APPROVE
    with pytest.raises(ValidationError):
        RetrainingCommand.model_validate_json('{"id": "c1", "command": "deploy"}')


def test_results_live_under_the_deployment_in_the_store() -> None:
    assert retraining_prefix("s3://b/p/", "ns/md", "sid") == "s3://b/p/ns/md/retraining/sid"
