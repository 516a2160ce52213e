"""Between a raw Kubernetes object and the typed ModelDeployment (pure)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
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


# Lists whose unreadable items are dropped one by one: each item stands alone.
_ITEM_LISTS = (("conditions",), ("rolloutHistory",), ("audit", "buffered"), ("rollout", "windows"))
# What decide() acts on: without them it cannot tell what serves, so nothing may move on Ray.
_NEEDED = ("stable", "rollout")


@dataclass(frozen=True)
class StatusRead:
    status: ModelDeploymentStatus
    # Why a part that decide() acts on could not be read; None when it could.
    unreadable: str | None = None
    # Parts dropped because they could not be read, and rebuilt by the next pass.
    dropped: tuple[str, ...] = ()


def _where(loc: tuple[int | str, ...]) -> str:
    return ".".join(["status", *(str(p) for p in loc)])


def _drop_target(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    """The smallest part of status to give up for an error at `loc`."""
    for prefix in _ITEM_LISTS:
        n = len(prefix)
        if loc[:n] == prefix and len(loc) > n and isinstance(loc[n], int):
            return loc[: n + 1]
    if loc[:1] == ("audit",) and len(loc) > 1:
        return loc[:2]
    return loc[:1]


def _remove(data: Any, path: tuple[int | str, ...]) -> bool:
    for part in path[:-1]:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return False
    try:
        del data[path[-1]]
    except (KeyError, IndexError, TypeError):
        return False
    return True


def read_status(raw: Any) -> StatusRead:
    """Salvage what can be read of a stored status, field by field and item by item.

    A status written by a newer operator (unknown fields, an enum value this version does not know) or
    mangled by a bad patch must not read as "nothing deployed yet": that would send all traffic to whatever
    the spec names now. Unknown fields are ignored; an unreadable part is dropped, and when that part is one
    decide() acts on (stable, rollout), `unreadable` says so and decide() holds everything as Ray serves it.
    """
    if raw is None:
        return StatusRead(ModelDeploymentStatus())
    if not isinstance(raw, Mapping):
        return StatusRead(ModelDeploymentStatus(), f"status is a {type(raw).__name__}, not an object")
    data = copy.deepcopy(_json_like(raw))
    unreadable: list[str] = []
    dropped: list[str] = []
    # Each round drops what the last validation named; nested errors may show only once their parent reads.
    for _ in range(5):
        try:
            status = ModelDeploymentStatus.model_validate(data)
        except ValidationError as exc:
            errors = exc.errors()
        else:
            return StatusRead(status, "; ".join(unreadable) or None, tuple(dropped))
        targets: set[tuple[int | str, ...]] = set()
        for error in errors:
            loc = tuple(error["loc"])
            where = f"{_where(loc)}: {error['msg']}"
            target = _drop_target(loc)
            (unreadable if target[:1] in {(n,) for n in _NEEDED} and len(target) == 1 else dropped).append(
                where
            )
            targets.add(target)
        # Highest index first, so that dropping one item does not shift the next one's index.
        for target in sorted(targets, key=lambda t: [(isinstance(p, int), p) for p in t], reverse=True):
            if not target or not _remove(data, target):
                return StatusRead(ModelDeploymentStatus(), "; ".join(unreadable + dropped))
    return StatusRead(ModelDeploymentStatus(), "; ".join(unreadable + dropped))


def _json_like(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _json_like(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_like(v) for v in value]
    return value


def _status(raw: Any) -> ModelDeploymentStatus:
    return read_status(raw).status


def parse_resource(body: Mapping[str, Any], lenient: bool = False) -> ModelDeployment:
    """Typed view of a ModelDeployment; raises ValidationError on a bad spec unless `lenient`.

    Lenient parsing serves deletion: a resource whose spec went bad must still be removable.
    """
    raw = _plain(body)
    read = read_status(raw.get("status"))
    raw["status"] = read.status.model_dump(by_alias=True)
    raw["status_unreadable"], raw["status_dropped"] = read.unreadable, read.dropped
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


class ParseMemo:
    """One object's last parsed body and its typed view (kept in Kopf's per-object memo, never shared).

    At rest an object's pass finds the very body it parsed at its last pass: validating it again with
    pydantic was about a sixth of a pass's cost at 500 objects. The body is compared whole, not by its
    resourceVersion (an API server that does not bump it, as kmock does not, must not hide a change), and the
    typed view is frozen, so whoever gets it cannot change what the next pass gets.
    """

    def __init__(self) -> None:
        self._body: dict[str, Any] | None = None
        self._parsed: ModelDeployment | None = None

    def parse(self, body: Mapping[str, Any]) -> ModelDeployment:
        """`parse_resource(body)`, from memory when `body` equals the last body parsed."""
        if self._parsed is not None and body == self._body:
            return self._parsed
        parsed = parse_resource(body)  # a bad spec raises, and leaves the memory as it was
        self._body, self._parsed = copy.deepcopy(dict(body)), parsed
        return parsed


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
