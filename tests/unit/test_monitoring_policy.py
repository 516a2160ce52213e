"""What a finished monitor job's result does (pure): condition, Events, records, rollout decisions; once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from steward.api.conditions import ConditionStatus, ConditionType, Reason
from steward.api.model_deployment import ModelDeployment
from steward.api.monitor_results import Check, MonitorResult, MonitorVerdict
from steward.api.monitoring import MonitorKind
from steward.audit.records import AuditAction
from steward.operator.actions import EventType
from steward.operator.monitor_jobs import JobObservation, JobState
from steward.operator.monitoring import FailCanary, MonitoringDecision, RollbackPromotion, decide_monitoring

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
STORE = "/var/steward/monitoring"
UID = "0a1b2c3d-9999"


def _job(version: str, monitor: str = "drift", submitted: datetime = T0) -> dict[str, Any]:
    end = T0
    return {
        "monitor": monitor,
        "version": version,
        "windowStart": (end - timedelta(hours=1)).isoformat(),
        "windowEnd": end.isoformat(),
        "submissionId": f"steward-0a1b2c3d-{monitor}-v{version}-{int(end.timestamp())}",
        "submittedAt": submitted.isoformat(),
        "resultUri": f"{STORE}/risk/credit/reports/{monitor}/v{version}/20261123T120000Z/result.json",
    }


ROLLOUT = {
    "strategy": "canary",
    "canary": {"version": "4", "modelUri": "models:/credit-risk/4"},
    "fromVersion": "3",
    "state": "Progressing",
    "startedAt": (T0 - timedelta(hours=2)).isoformat(),
    "stepStartedAt": (T0 - timedelta(hours=1)).isoformat(),
    "weight": 10,
}


def _promoted(finished: datetime) -> list[dict[str, Any]]:
    return [
        {
            "fromVersion": "3",
            "toVersion": "4",
            "strategy": "canary",
            "startedAt": (finished - timedelta(hours=1)).isoformat(),
            "finishedAt": finished.isoformat(),
            "outcome": "Promoted",
            "reason": "every analysis passed",
        }
    ]


def resource(
    on_breach: str = "alert",
    jobs: list[dict[str, Any]] | None = None,
    stable: str = "3",
    rollout: dict[str, Any] | None = None,
    history: list[dict[str, Any]] | None = None,
    monitoring: dict[str, Any] | None = None,
) -> ModelDeployment:
    status: dict[str, Any] = {
        "stable": {"version": stable, "modelUri": f"models:/credit-risk/{stable}"},
        "rolloutHistory": history or [],
        "monitoring": monitoring if monitoring is not None else {"jobs": jobs or []},
    }
    if rollout:
        status["rollout"] = rollout
    return ModelDeployment.model_validate(
        {
            "apiVersion": "steward.io/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": "credit", "namespace": "risk", "uid": UID, "generation": 1},
            "spec": {
                "model": {"name": "credit-risk", "version": stable},
                "monitoring": {
                    "monitors": [{"name": "drift", "kind": "drift", "onBreach": on_breach}],
                    "rollbackWindow": "24h",
                },
            },
            "status": status,
        }
    )


def result(version: str, verdict: MonitorVerdict, window_end: datetime = T0) -> MonitorResult:
    checks = [Check(name="drift:income", value=0.31, threshold=0.1, op="<=", passed=verdict != "breach")]
    return MonitorResult(
        monitor="drift",
        kind=MonitorKind.DRIFT,
        deployment="risk/credit",
        version=version,
        window_start=window_end - timedelta(hours=1),
        window_end=window_end,
        rows=5000,
        verdict=verdict,
        summary="1 of 8 columns drifted" if verdict == "breach" else "",
        checks=checks,
        report_uri=f"{STORE}/risk/credit/reports/drift/v{version}/20261123T120000Z/report.html",
        report_sha256="ab" * 32,
        reference_sha256="cd" * 32,
    )


def decide(
    md: ModelDeployment, observed: dict[str, JobObservation], now: datetime = T0
) -> MonitoringDecision:
    return decide_monitoring(md, observed, now + timedelta(minutes=1), STORE)


def _sid(version: str) -> str:
    return str(_job(version)["submissionId"])


def _condition(decision: MonitoringDecision) -> tuple[ConditionStatus, Reason]:
    [(type_, status, reason, _)] = decision.conditions
    assert type_ == ConditionType.MONITORING
    return status, reason


def test_a_breach_alerts_with_condition_event_and_records_and_is_acted_on_once() -> None:
    md = resource(jobs=[_job("3")])
    observed = {_sid("3"): JobObservation(JobState.SUCCEEDED, result("3", MonitorVerdict.BREACH))}
    first = decide(md, observed)
    assert _condition(first) == (ConditionStatus.FALSE, Reason.MONITOR_BREACHED)
    assert "drift:income 0.31 (threshold <= 0.1)" in first.conditions[0][3]
    assert [d.action for d in first.drafts] == [AuditAction.MONITOR_RUN, AuditAction.POLICY_ACTION]
    run, policy = first.drafts
    assert run.cause == f"monitor-run:{_sid('3')}" and policy.cause == f"policy-action:{_sid('3')}"
    assert run.deployment.uid == UID
    assert run.evidence["report_sha256"] == "ab" * 32 and run.evidence["reference_sha256"] == "cd" * 32
    assert run.evidence["checks"][0]["threshold"] == 0.1 and run.evidence["verdict"] == "breach"
    assert policy.evidence["action"] == "alert"
    assert [(e.type, e.reason) for e in first.events] == [(EventType.WARNING, "MonitorBreached")]
    assert first.canary_failure is None and first.promotion_rollback is None
    assert first.status is not None and _sid("3") in first.status.handled and first.status.jobs == []

    # The next pass (status written): the result is handled, nothing is recorded or announced again.
    after = resource(monitoring=first.status.model_dump(mode="json", by_alias=True))
    second = decide(after, observed)
    assert second.drafts == [] and second.events == []
    assert _condition(second) == (ConditionStatus.FALSE, Reason.MONITOR_BREACHED)

    # A restart before status was written replays the pass: the same causes, which the trail skips.
    replay = decide(md, observed)
    assert [d.cause for d in replay.drafts] == [d.cause for d in first.drafts]


@dataclass(frozen=True)
class Case:
    name: str
    version: str
    rollout: dict[str, Any] | None
    history: list[dict[str, Any]] | None
    stable: str
    canary_failure: FailCanary | None
    promotion_rollback: RollbackPromotion | None
    action: str


REASON = "monitor drift breached on version 4: drift:income 0.31 (threshold <= 0.1)"
NO_ROLLBACK = "alert (the version no longer serves alone: nothing to roll back)"
NOTHING_TO_UNDO = "alert (no promotion to undo: the version was deployed, not rolled out)"
CASES = [
    Case(
        "canary of a running rollout fails",
        "4", ROLLOUT, None, "3", FailCanary("4", REASON), None, "fail-canary",
    ),
    Case("stable breached while a canary runs: alert only", "3", ROLLOUT, None, "3", None, None, NO_ROLLBACK),
    Case(
        "promoted 2h before the window: rolled back to the previous stable",
        "4", None, _promoted(T0 - timedelta(hours=2)), "4",
        None, RollbackPromotion("4", "3", REASON), "rollback-promotion",
    ),
    Case(
        "promoted 30h before the window: outside the rollback window",
        "4", None, _promoted(T0 - timedelta(hours=30)), "4",
        None, None, "alert (outside the rollback window of 24h)",
    ),
    Case("deployed, never rolled out: nothing to undo", "4", None, None, "4", None, None, NOTHING_TO_UNDO),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_rollback_monitors_breach(case: Case) -> None:
    md = resource("rollback", [_job(case.version)], case.stable, case.rollout, case.history)
    observed = {
        _sid(case.version): JobObservation(JobState.SUCCEEDED, result(case.version, MonitorVerdict.BREACH))
    }
    decision = decide(md, observed)
    assert decision.canary_failure == case.canary_failure
    assert decision.promotion_rollback == case.promotion_rollback
    policy = [d for d in decision.drafts if d.action == AuditAction.POLICY_ACTION]
    assert [d.evidence["action"] for d in policy] == [case.action]


@pytest.mark.parametrize(
    ("observation", "summary"),
    [
        (JobObservation(JobState.SUCCEEDED, result("3", MonitorVerdict.ERROR)), ""),
        (JobObservation(JobState.FAILED, problem="Traceback: reference not found"), "reference not found"),
        (JobObservation(JobState.SUCCEEDED, problem="result.json is corrupt: verdict"), "corrupt"),
        (JobObservation(JobState.SUCCEEDED), "wrote no result"),
    ],
)
def test_an_error_is_a_condition_and_a_record_never_a_breach(
    observation: JobObservation, summary: str
) -> None:
    decision = decide(resource("rollback", [_job("4")], "3", ROLLOUT), {_sid("4"): observation})
    assert _condition(decision) == (ConditionStatus.UNKNOWN, Reason.MONITOR_ERROR)
    assert [d.action for d in decision.drafts] == [AuditAction.MONITOR_RUN]
    assert decision.drafts[0].evidence["verdict"] == "error"
    assert decision.canary_failure is None
    assert [e.reason for e in decision.events] == ["MonitorError"]
    assert decision.status is not None and summary in decision.status.results[0].summary


def test_a_job_past_its_time_limit_is_stopped_and_reported() -> None:
    md = resource(jobs=[_job("3", submitted=T0 - timedelta(hours=1))])
    decision = decide(md, {_sid("3"): JobObservation(JobState.RUNNING)})
    assert decision.stops == [_sid("3")]
    assert _condition(decision) == (ConditionStatus.UNKNOWN, Reason.MONITOR_ERROR)


@pytest.mark.parametrize(
    ("verdict", "expected"),
    [
        (MonitorVerdict.PASS, (ConditionStatus.TRUE, Reason.MONITORS_PASSING)),
        (MonitorVerdict.INCONCLUSIVE, (ConditionStatus.TRUE, Reason.MONITORS_PASSING)),
    ],
)
def test_passing_and_inconclusive_results_record_and_do_nothing(
    verdict: MonitorVerdict, expected: tuple[ConditionStatus, Reason]
) -> None:
    decision = decide(
        resource(jobs=[_job("3")]), {_sid("3"): JobObservation(JobState.SUCCEEDED, result("3", verdict))}
    )
    assert _condition(decision) == expected
    assert [d.action for d in decision.drafts] == [AuditAction.MONITOR_RUN]
    assert decision.events == []


def test_a_job_not_looked_at_stays_in_flight() -> None:
    decision = decide(resource(jobs=[_job("3")]), {})
    assert decision.status is not None and [j.submission_id for j in decision.status.jobs] == [_sid("3")]
    assert _condition(decision) == (ConditionStatus.UNKNOWN, Reason.MONITORS_PENDING)


def test_a_result_of_a_version_no_longer_serving_does_not_hold_the_condition() -> None:
    md = resource(jobs=[_job("4")], stable="3")  # 4 was a canary; it is gone
    decision = decide(md, {_sid("4"): JobObservation(JobState.SUCCEEDED, result("4", MonitorVerdict.BREACH))})
    assert _condition(decision) == (ConditionStatus.UNKNOWN, Reason.MONITORS_PENDING)
    assert decision.status is not None and decision.status.results[0].version == "4"  # still shown


def test_without_a_store_the_condition_says_what_to_set() -> None:
    decision = decide_monitoring(resource(), {}, T0, None)
    assert _condition(decision) == (ConditionStatus.UNKNOWN, Reason.MONITORING_NOT_CONFIGURED)
    assert decision.submissions == []


def test_a_result_already_handled_is_never_acted_on_again_even_if_its_job_is_still_listed() -> None:
    md = resource("rollback", monitoring={"jobs": [_job("4")], "handled": [_sid("4")]}, rollout=ROLLOUT)
    decision = decide(md, {_sid("4"): JobObservation(JobState.SUCCEEDED, result("4", MonitorVerdict.BREACH))})
    assert decision.drafts == [] and decision.events == [] and decision.canary_failure is None
    assert decision.status is not None and _sid("4") not in [j.submission_id for j in decision.status.jobs]


def test_capture_without_monitors_reports_its_counters_and_drops() -> None:
    from steward.api.monitoring_status import CaptureStatus

    spec = resource().model_dump(by_alias=True, mode="json")
    spec["spec"]["monitoring"] = {"capture": {"sampleRate": 1.0}}
    md = ModelDeployment.model_validate(spec)
    decision = decide_monitoring(md, {}, T0, STORE, capture=CaptureStatus(written=40, dropped=0))
    assert _condition(decision) == (ConditionStatus.TRUE, Reason.CAPTURING)
    assert "40 record(s) written, 0 dropped" in decision.conditions[0][3]
    assert decision.status is not None and decision.status.capture == CaptureStatus(written=40, dropped=0)
    assert decision.submissions == []

    md = md.model_copy(update={"status": md.status.model_copy(update={"monitoring": decision.status})})
    failing = CaptureStatus(written=40, dropped=7, last_error="could not write s3://captures/...: 503")
    decision = decide_monitoring(md, {}, T0, STORE, capture=failing)
    assert _condition(decision) == (ConditionStatus.UNKNOWN, Reason.CAPTURE_FAILING)
    assert "dropped 7 record(s): could not write" in decision.conditions[0][3]
    # No figures from the router this pass: the last ones are kept.
    md = md.model_copy(update={"status": md.status.model_copy(update={"monitoring": decision.status})})
    decision = decide_monitoring(md, {}, T0, STORE, capture=None)
    assert decision.status is not None and decision.status.capture == failing
    assert _condition(decision) == (ConditionStatus.TRUE, Reason.CAPTURING)
