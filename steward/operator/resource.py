"""Between a raw Kubernetes object and the typed ModelDeployment (pure)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from steward.api.conditions import ConditionStatus, ConditionType, Reason
from steward.api.model_deployment import (
    ModelDeployment,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    ModelRef,
)
from steward.operator.status import derive_phase, set_condition


def _plain(body: Mapping[str, Any]) -> dict[str, Any]:
    return {k: copy.deepcopy(dict(v) if isinstance(v, Mapping) else v) for k, v in body.items()}


def _status(raw: Any) -> ModelDeploymentStatus:
    try:
        return ModelDeploymentStatus.model_validate(raw or {})
    except ValidationError:
        # Status is ours to rewrite: one we cannot read (an older operator's) is rebuilt from observations.
        return ModelDeploymentStatus()


def parse_resource(body: Mapping[str, Any], lenient: bool = False) -> ModelDeployment:
    """Typed view of a ModelDeployment; raises ValidationError on a bad spec unless `lenient`.

    Lenient parsing serves deletion: a resource whose spec went bad must still be removable.
    """
    raw = _plain(body)
    raw["status"] = _status(raw.get("status")).model_dump(by_alias=True)
    try:
        return ModelDeployment.model_validate(raw)
    except ValidationError:
        if not lenient:
            raise
        serving = (raw.get("spec") or {}).get("serving") or {}
        try:
            spec = ModelDeploymentSpec.model_validate(
                {"model": {"name": "unknown", "version": "1"}, "serving": serving}
            )
        except ValidationError:
            spec = ModelDeploymentSpec(model=ModelRef(name="unknown", version="1"))
        return ModelDeployment.model_validate({**raw, "spec": spec.model_dump(by_alias=True)})


def status_patch(status: ModelDeploymentStatus) -> dict[str, Any]:
    """A merge patch for .status: None values delete fields that no longer apply."""
    patch: dict[str, Any] = status.model_dump(mode="json", by_alias=True)
    return patch


def invalid_spec_status(body: Mapping[str, Any], error: ValidationError, now: datetime) -> dict[str, Any]:
    old = _status(body.get("status"))
    generation = (body.get("metadata") or {}).get("generation")
    problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors())
    conditions = set_condition(
        old.conditions,
        ConditionType.READY,
        ConditionStatus.FALSE,
        Reason.INVALID_SPEC,
        f"fix the manifest: {problems}",
        now,
        generation,
    )
    status = old.model_copy(
        update={
            "conditions": conditions,
            "phase": derive_phase(conditions),
            "observed_generation": generation,
        }
    )
    return status_patch(status)
