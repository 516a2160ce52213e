"""A Ray that refuses the token is there and serving: that is a condition to fix, never a reason to let go."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from builders import CONFIG, T0, md, resolved

from steward.adapters.errors import Conflict, NotFound, Rejected, Unauthorized, Unreachable
from steward.adapters.ray_serve import RayServeClient
from steward.api.conditions import ConditionType, Reason
from steward.operator.core import decide
from steward.operator.observations import Observations
from steward.operator.reconciler import Reconciler, serve_problem
from steward.operator.status import find

PROBLEM_CASES = [
    # (error, reason, temporary)
    (Unreachable("connection refused"), Reason.RAY_UNREACHABLE, True),
    (Unauthorized("401"), Reason.RAY_UNAUTHORIZED, True),
    (Conflict("another writer"), Reason.RAY_CONFLICT, True),
    (Rejected("400"), Reason.RAY_REJECTED, False),
    (NotFound("no Serve API"), Reason.RAY_REJECTED, False),
]


@pytest.mark.parametrize(("error", "reason", "temporary"), PROBLEM_CASES, ids=[c[1] for c in PROBLEM_CASES])
def test_only_an_unreachable_ray_counts_as_gone(error, reason, temporary):
    problem = serve_problem(error)
    assert (problem.reason, problem.temporary) == (reason, temporary)


def refusing_reconciler(status: int) -> Reconciler:
    reconciler = Reconciler(CONFIG, ray_token="stale-token")
    transport = httpx.MockTransport(lambda r: httpx.Response(status, text="Unauthorized"))
    reconciler._serve_clients[CONFIG.ray_address] = RayServeClient(
        CONFIG.ray_address, "stale-token", transport=transport
    )
    return reconciler


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_token_holds_the_finalizer_however_long_it_lasts(status):
    reconciler = refusing_reconciler(status)
    events: list[tuple] = []
    try:
        for waited_s in (0, CONFIG.deletion_timeout_s + 1, 10 * CONFIG.deletion_timeout_s):
            decision = reconciler.finalize(
                md(), T0, T0 + timedelta(seconds=waited_s), lambda *e: events.append(e)
            )
            assert not decision.release_finalizer
            assert "RayUnauthorized" in decision.waiting_for
    finally:
        reconciler.close()
    assert not [e for e in events if e[1] in ("CleanupAbandoned", "AuditRecorded")]


def test_a_refused_token_is_retried_and_says_what_to_fix():
    reconciler = refusing_reconciler(401)
    try:
        with pytest.raises(Unauthorized) as refused:
            reconciler.serve_client(CONFIG.ray_address).applications()
    finally:
        reconciler.close()
    decision = decide(md(), Observations(resolved(), serve_problem(refused.value)), CONFIG, T0)
    assert decision.retry
    ready = find(decision.status.conditions, ConditionType.READY)
    assert ready is not None and ready.reason == Reason.RAY_UNAUTHORIZED
    assert "RAY_AUTH_TOKEN" in ready.message
    assert not decision.actions or all(
        a.__class__.__name__ != "ApplyServeApplications" for a in decision.actions
    )
