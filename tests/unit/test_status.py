from __future__ import annotations

from datetime import timedelta

import pytest
from builders import T0

from steward.api.conditions import ConditionStatus, ConditionType, Phase, Reason
from steward.operator.status import derive_phase, set_condition

R, P, D = ConditionType.READY, ConditionType.PROGRESSING, ConditionType.DEGRADED
TRUE, FALSE = ConditionStatus.TRUE, ConditionStatus.FALSE


def conds(*items):
    out = []
    for type_, status, reason in items:
        out = set_condition(out, type_, status, reason, "", T0, 1)
    return out


@pytest.mark.parametrize(
    ("items", "phase"),
    [
        ([], Phase.PENDING),
        ([(R, TRUE, Reason.RUNNING)], Phase.READY),
        ([(R, TRUE, Reason.RUNNING), (D, TRUE, Reason.UNHEALTHY)], Phase.DEGRADED),
        ([(R, FALSE, Reason.DEPLOYING), (P, TRUE, Reason.DEPLOYING)], Phase.PROGRESSING),
        ([(R, FALSE, Reason.VERSION_NOT_FOUND), (D, TRUE, Reason.VERSION_NOT_FOUND)], Phase.FAILED),
        ([(R, FALSE, Reason.UNHEALTHY), (D, TRUE, Reason.UNHEALTHY)], Phase.DEGRADED),
    ],
)
def test_phase_is_derived_from_conditions(items, phase):
    assert derive_phase(conds(*items)) == phase


def test_deleting_wins():
    assert derive_phase(conds((R, TRUE, Reason.RUNNING)), deleting=True) == Phase.DELETING


def test_transition_time_moves_only_with_status():
    first = set_condition([], R, FALSE, Reason.DEPLOYING, "a", T0, 1)
    same = set_condition(first, R, FALSE, Reason.DEPLOY_FAILED, "b", T0 + timedelta(minutes=1), 2)
    flipped = set_condition(same, R, TRUE, Reason.RUNNING, "c", T0 + timedelta(minutes=2), 2)
    assert same[0].last_transition_time == T0
    assert same[0].reason == Reason.DEPLOY_FAILED and same[0].observed_generation == 2
    assert flipped[0].last_transition_time == T0 + timedelta(minutes=2)


def test_conditions_keep_a_stable_order():
    items = conds((D, FALSE, Reason.AS_EXPECTED), (R, TRUE, Reason.RUNNING), (P, FALSE, Reason.AS_EXPECTED))
    assert [c.type for c in items] == [R, P, D]
