"""An object's pass at rest reuses the typed view of the body it parsed last time, and only that body's."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from pydantic import ValidationError

from steward.operator.resource import ParseMemo, parse_resource


def body(version: str = "1", replicas_max: int = 1, status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "steward.io/v1alpha1",
        "kind": "ModelDeployment",
        # The same resourceVersion throughout, as kmock leaves it: only the body itself tells a change.
        "metadata": {"name": "credit", "namespace": "risk", "generation": 1, "resourceVersion": "1"},
        "spec": {
            "model": {"name": "m", "version": version},
            "serving": {"replicas": {"min": 1, "max": replicas_max}},
        },
        "status": status or {"phase": "Ready", "observedGeneration": 1},
    }


def test_the_same_body_is_parsed_once_and_answers_the_same_view() -> None:
    memo = ParseMemo()
    first = memo.parse(body())
    assert memo.parse(copy.deepcopy(body())) is first
    assert first == parse_resource(body())


@pytest.mark.parametrize(
    "changed",
    [
        body(version="2"),
        body(replicas_max=3),
        body(status={"phase": "Degraded", "observedGeneration": 1}),
        {**body(), "metadata": {**body()["metadata"], "annotations": {"steward.io/rollout": "abort"}}},
    ],
)
def test_any_change_to_the_body_is_parsed_afresh_whatever_its_resource_version(
    changed: dict[str, Any],
) -> None:
    memo = ParseMemo()
    first = memo.parse(body())
    again = memo.parse(changed)
    assert again is not first
    assert again == parse_resource(changed)
    assert memo.parse(body()) == first  # and back


def test_a_body_changed_in_place_after_parsing_is_not_mistaken_for_the_one_parsed() -> None:
    memo, raw = ParseMemo(), body()
    first = memo.parse(raw)
    raw["spec"]["model"]["version"] = "2"
    assert memo.parse(raw) is not first
    assert memo.parse(raw).spec.model.version == "2"


def test_a_bad_spec_still_raises_every_time_and_leaves_the_last_good_view() -> None:
    memo = ParseMemo()
    good = memo.parse(body())
    bad = body()
    bad["spec"]["model"] = {"name": "m"}  # neither version nor alias
    for _ in range(2):
        with pytest.raises(ValidationError):
            memo.parse(bad)
    assert memo.parse(body()) is good
