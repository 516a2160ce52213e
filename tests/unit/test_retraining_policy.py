"""Retraining's pure policy, one table row per rule: asking, guardrails, approval, submission, following the
job to its end, and the offline judgement of the candidate."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from builders import T0, md

from steward.api.model_deployment import ModelDeployment
from steward.api.monitor_results import Check, MonitorVerdict
from steward.api.monitoring_status import MonitorResultSummary
from steward.api.retraining import (
    RETRAINING_COMMAND_ANNOTATION,
    RetrainingState,
    RetrainingStatus,
    RunOutcome,
)
from steward.api.training_job import Figures, TrainingResult
from steward.audit.records import AuditAction
from steward.operator.monitor_jobs import JobState
from steward.operator.retraining import MAX_ATTEMPTS, RetrainingDecision, decide_retraining
from steward.operator.retraining_observation import (
    RetrainingObservation,
    StoredRecord,
    TrainingJobObservation,
)
from steward.operator.retraining_plan import training_submission_id

STORE = "s3://bucket/mon"
STORED = StoredRecord(seq=7, hash="ab" * 32)
RETRAINING = {"entrypoint": "python -m steward.retraining.example_train", "approval": "automatic"}


def resource(
    retraining: dict[str, Any] | None = None,
    status: dict[str, Any] | None = None,
    command: dict[str, Any] | None = None,
    pinned: bool = True,
) -> ModelDeployment:
    model = (
        {"name": "credit-risk", "version": "3"} if pinned else {"name": "credit-risk", "alias": "champion"}
    )
    spec: dict[str, Any] = {
        "model": model,
        "monitoring": {"capture": {"sensitiveFeatures": ["gender"]}},
        "retraining": {**RETRAINING, **(retraining or {})},
    }
    base = {"stable": {"version": "3", "modelUri": "models:/credit-risk/3"}}
    out = md(spec, {**base, **(status or {})})
    meta: dict[str, Any] = {"uid": "0a1b2c3d-uid"}
    if command is not None:
        meta["annotations"] = {RETRAINING_COMMAND_ANNOTATION: json.dumps(command)}
    return out.model_copy(update={"metadata": out.metadata.model_copy(update=meta)})


def decide(
    resource_: ModelDeployment,
    observed: RetrainingObservation | None = None,
    breaches: list[MonitorResultSummary] | None = None,
    at: timedelta = timedelta(0),
    can_act: bool = True,
    store: str | None = STORE,
) -> RetrainingDecision:
    return decide_retraining(
        resource_,
        observed or RetrainingObservation(),
        breaches or [],
        T0 + at,
        store_uri=store,
        tracking_uri="http://mlflow:5000",
        can_act=can_act,
    )


def after(resource_: ModelDeployment, decision: RetrainingDecision, **extra: Any) -> ModelDeployment:
    """The resource as the next pass reads it: this decision's status written back."""
    assert decision.status is not None
    status = resource_.status.model_copy(update={"retraining": decision.status})
    return resource_.model_copy(update={"status": status, **extra})


def actions(decision: RetrainingDecision) -> list[AuditAction]:
    return [d.action for d in decision.drafts]


RETRAIN = {"id": "c1", "command": "retrain", "actor": "alice", "reason": "CR-9 drift seen by ops"}


def breach(sid: str = "steward-0a1b2c3d-drift-v3-1700000000") -> MonitorResultSummary:
    return MonitorResultSummary(
        monitor="drift",
        version="3",
        verdict=MonitorVerdict.BREACH,
        window_start=T0 - timedelta(hours=1),
        window_end=T0,
        breached=[Check(name="drift:income", value=0.4, threshold=0.1, op="<=", passed=False)],
        report_uri="s3://bucket/mon/r.html",
        submission_id=sid,
    )


def running(**retraining: Any) -> ModelDeployment:
    """A run submitted at T0."""
    first = resource(retraining, command=RETRAIN)
    requested = after(first, decide(first))
    return after(requested, decide(requested, RetrainingObservation(trigger_record=STORED)))


def result(candidate: Figures, serving: Figures, version: str | None = "4", **extra: Any) -> TrainingResult:
    return TrainingResult(
        submission_id="x",
        deployment="risk/credit",
        model_name="credit-risk",
        parent_version="3",
        candidate_version=version,
        candidate=candidate,
        serving=serving,
        **extra,
    )


GOOD = Figures(quality={"accuracy": 0.80}, parity_ratio={"gender": 0.90})
BASE = Figures(quality={"accuracy": 0.75}, parity_ratio={"gender": 0.91})


# ------------------------------------------------------------------------------------------------- asking


def test_a_manual_command_asks_for_a_run_and_waits_for_the_trail_to_store_the_request() -> None:
    decision = decide(resource(command=RETRAIN))
    assert decision.status is not None and decision.status.state == RetrainingState.REQUESTED
    assert decision.submit is None
    [draft] = decision.drafts
    assert draft.action == AuditAction.RETRAINING_REQUESTED and draft.evidence["accepted"] is True
    assert draft.actor == "alice (declared)" and draft.cause == "retraining-requested:command:c1"
    assert decision.status.handled_command == "c1" and decision.requeue_after_s is not None
    # Not stored yet: still waiting, nothing submitted, nothing recorded twice.
    again = decide(after(resource(command=RETRAIN), decision), RetrainingObservation(trigger_record=None))
    assert again.status is not None and again.status.state == RetrainingState.REQUESTED
    assert (again.submit, again.drafts) == (None, [])


def test_once_stored_an_automatic_run_is_approved_by_policy_and_submitted_with_the_record_hash() -> None:
    first = resource(command=RETRAIN)
    requested = after(first, decide(first))
    decision = decide(requested, RetrainingObservation(trigger_record=STORED))
    assert decision.status is not None and decision.status.state == RetrainingState.RUNNING
    assert actions(decision) == [AuditAction.RETRAINING_APPROVED, AuditAction.RETRAINING_STARTED]
    assert decision.drafts[0].reason.endswith("policy: approval automatic")
    assert decision.submit is not None
    job = decision.submit.job
    assert decision.submit.submission_id == training_submission_id(first, "retraining-requested:command:c1")
    assert (job.trigger.record_seq, job.trigger.record_hash) == (7, STORED.hash)
    assert job.parent_version == "3" and job.capture_uris == [f"{STORE}/risk/credit/v3"]
    assert job.outcomes_uri == f"{STORE}/risk/credit/outcomes" and job.sensitive_features == ["gender"]
    assert job.window_end == T0 and job.window_start == T0 - timedelta(hours=168)
    assert job.result_uri == f"{STORE}/risk/credit/retraining/{job.submission_id}/result.json"


def test_without_an_audit_trail_a_run_does_not_wait_for_a_record() -> None:
    first = resource(command=RETRAIN)
    decision = decide(after(first, decide(first)), RetrainingObservation(trail=False))
    assert decision.submit is not None and decision.submit.job.trigger.record_hash is None


def test_a_manual_approval_waits_for_the_approve_command_and_records_who() -> None:
    first = resource({"approval": "manual"}, command=RETRAIN)
    requested = after(first, decide(first))
    waiting = decide(requested, RetrainingObservation(trigger_record=STORED))
    assert waiting.status is not None and waiting.status.state == RetrainingState.AWAITING_APPROVAL
    assert waiting.submit is None and [e.reason for e in waiting.events] == ["RetrainingAwaitingApproval"]
    approve = {"id": "c2", "command": "approve", "actor": "bob", "reason": "MRM-12 reviewed"}
    annotations = {RETRAINING_COMMAND_ANNOTATION: json.dumps(approve)}
    stamped = after(requested, waiting)
    stamped = stamped.model_copy(
        update={"metadata": stamped.metadata.model_copy(update={"annotations": annotations})}
    )
    decision = decide(stamped, RetrainingObservation(trigger_record=STORED))
    assert decision.submit is not None
    assert actions(decision) == [AuditAction.RETRAINING_APPROVED, AuditAction.RETRAINING_STARTED]
    assert decision.drafts[0].actor == "bob (declared)" and "MRM-12" in decision.drafts[0].reason
    # Behind the admission webhook, the approver is who the API server authenticated, not who the client says.
    vouched = stamped.model_copy(
        update={
            "metadata": stamped.metadata.model_copy(
                update={"annotations": {**annotations, "steward.io/authenticated-user": "bob@bank.example"}}
            )
        }
    )
    decision = decide(vouched, RetrainingObservation(trigger_record=STORED))
    assert decision.drafts[0].actor == "bob (authenticated as bob@bank.example)"


def test_an_approve_with_nothing_waiting_is_ignored_and_said() -> None:
    decision = decide(resource(command={"id": "c3", "command": "approve", "actor": "bob"}))
    assert decision.status is not None and decision.status.state == RetrainingState.IDLE
    assert [e.reason for e in decision.events] == ["RetrainingCommandIgnored"]
    assert decision.status.handled_command == "c3" and decision.drafts == []


def test_a_handled_command_is_not_acted_on_again() -> None:
    first = resource(command=RETRAIN)
    replay = decide(after(first, decide(first)))
    assert [d for d in replay.drafts if d.action == AuditAction.RETRAINING_REQUESTED] == []


def test_an_unreadable_command_is_said_in_status() -> None:
    decision = decide(resource(command={"id": "c4", "command": "deploy"}))
    assert (
        decision.status is not None and "ignored the steward.io/retraining-command" in decision.status.message
    )


def test_a_breach_asks_for_a_run_keyed_by_the_monitor_job() -> None:
    decision = decide(resource(), breaches=[breach()])
    [draft] = decision.drafts
    assert draft.cause == "retraining-requested:breach:steward-0a1b2c3d-drift-v3-1700000000"
    assert draft.actor == "steward-operator" and draft.evidence["breached"][0]["name"] == "drift:income"
    assert draft.evidence["policy"]["on_breach"] == "retrain"
    assert decision.status is not None and decision.status.current is not None
    assert decision.status.current.trigger.monitor == "drift"


def test_the_same_trigger_always_gets_the_same_submission_id_and_another_trigger_another() -> None:
    a, b = resource(), resource()
    assert training_submission_id(a, "x") == training_submission_id(b, "x")
    assert training_submission_id(a, "x") != training_submission_id(a, "y")
    assert training_submission_id(a, "x").startswith("steward-retrain-0a1b2c3d-")


# ------------------------------------------------------------------------------------------------ guardrails


def _finished_run(started_hours_ago: float) -> dict[str, Any]:
    started = T0 - timedelta(hours=started_hours_ago)
    return {
        "submissionId": f"s{started_hours_ago}",
        "trigger": {"kind": "manual", "cause": f"c{started_hours_ago}", "reason": "r"},
        "requestedAt": started.isoformat(),
        "startedAt": started.isoformat(),
        "finishedAt": (started + timedelta(minutes=5)).isoformat(),
        "outcome": "Failed",
    }


@pytest.mark.parametrize(
    ("retraining", "status", "store", "refused"),
    [
        ({"cooldown": "6h"}, {"retraining": {"runs": [_finished_run(2)]}}, STORE, "cooldown"),
        (
            {"cooldown": "1h", "maxRunsPerDay": 2},
            {"retraining": {"runs": [_finished_run(3), _finished_run(5)]}},
            STORE,
            "maxRunsPerDay 2 reached",
        ),
        ({}, {}, None, "no monitoring store"),
        ({}, {"stable": None}, STORE, "nothing serves yet"),
    ],
)
def test_guardrails_refuse_a_run_and_record_why(
    retraining: dict[str, Any], status: dict[str, Any], store: str | None, refused: str
) -> None:
    decision = decide(resource(retraining, status, command=RETRAIN), store=store)
    [draft] = decision.drafts
    assert draft.evidence["accepted"] is False and refused in draft.evidence["refused_because"]
    assert decision.status is not None and decision.status.current is None
    assert [e.reason for e in decision.events] == ["RetrainingRefused"]


def test_outside_the_cooldown_and_budget_a_run_starts() -> None:
    runs = [_finished_run(7), _finished_run(30)]
    decision = decide(
        resource({"cooldown": "6h", "maxRunsPerDay": 2}, {"retraining": {"runs": runs}}, RETRAIN)
    )
    assert decision.status is not None and decision.status.state == RetrainingState.REQUESTED


def test_a_second_trigger_while_a_run_is_in_progress_is_refused() -> None:
    decision = decide(running(), breaches=[breach()])
    [draft] = decision.drafts
    assert draft.evidence["accepted"] is False and "in progress" in draft.evidence["refused_because"]


# ------------------------------------------------------------------------------------------------ following


def test_a_run_that_cannot_act_this_pass_is_not_submitted() -> None:
    first = resource(command=RETRAIN)
    decision = decide(
        after(first, decide(first)), RetrainingObservation(trigger_record=STORED), can_act=False
    )
    assert decision.submit is None
    assert decision.status is not None and decision.status.state == RetrainingState.APPROVED


def test_a_running_job_is_waited_for() -> None:
    decision = decide(running(), RetrainingObservation(job=TrainingJobObservation(JobState.RUNNING)))
    assert decision.status is not None and decision.status.state == RetrainingState.RUNNING
    assert (decision.submit, decision.stop, decision.drafts) == (None, None, [])


def test_a_job_over_its_timeout_is_stopped_and_failed() -> None:
    decision = decide(
        running(timeout="1h"),
        RetrainingObservation(job=TrainingJobObservation(JobState.RUNNING)),
        at=timedelta(minutes=61),
    )
    assert decision.stop is not None and decision.stop.startswith("steward-retrain-")
    assert decision.status is not None and decision.status.runs[-1].outcome == RunOutcome.TIMED_OUT
    assert actions(decision) == [AuditAction.RETRAINING_FINISHED]


def test_a_failed_job_keeps_its_log_tail() -> None:
    job = TrainingJobObservation(JobState.FAILED, problem="FAILED: ...; log ends: KeyError: 'label'")
    decision = decide(running(), RetrainingObservation(job=job))
    assert decision.status is not None
    last = decision.status.runs[-1]
    assert last.outcome == RunOutcome.FAILED and last.log_tail is not None and "KeyError" in last.log_tail
    assert decision.drafts[0].evidence["log_tail"] == last.log_tail
    assert [e.reason for e in decision.events] == ["RetrainingFailed"]


def test_a_job_ray_lost_is_submitted_again_under_its_id_a_bounded_number_of_times() -> None:
    current = running()
    lost = RetrainingObservation(job=TrainingJobObservation(JobState.MISSING))
    for attempt in range(2, MAX_ATTEMPTS + 1):
        decision = decide(current, lost)
        assert decision.submit is not None, attempt
        assert decision.drafts == []  # started once, not per attempt
        current = after(current, decision)
    decision = decide(current, lost)
    assert decision.submit is None
    assert decision.status is not None and decision.status.runs[-1].outcome == RunOutcome.FAILED


def test_a_job_that_succeeded_without_a_result_fails_the_run() -> None:
    decision = decide(running(), RetrainingObservation(job=TrainingJobObservation(JobState.SUCCEEDED)))
    assert decision.status is not None and "wrote no result" in decision.status.runs[-1].message


def test_a_result_with_an_error_fails_the_run_and_names_it() -> None:
    bad = result(Figures(), Figures(), version=None, error="only 12 labelled rows (minLabelledRows 200)")
    decision = decide(running(), RetrainingObservation(job=TrainingJobObservation(JobState.SUCCEEDED, bad)))
    assert decision.status is not None and "12 labelled rows" in decision.status.runs[-1].message
    assert actions(decision) == [AuditAction.RETRAINING_FINISHED]


@pytest.mark.parametrize(
    ("candidate", "margins", "outcome", "failed"),
    [
        (GOOD, {}, RunOutcome.CANDIDATE_PASSED, None),
        (
            Figures(quality={"accuracy": 0.74}, parity_ratio={"gender": 0.95}),
            {},
            RunOutcome.CANDIDATE_REJECTED,
            "accuracy",
        ),
        (
            Figures(quality={"accuracy": 0.74}, parity_ratio={"gender": 0.95}),
            {"maxQualityDrop": 0.02},
            RunOutcome.CANDIDATE_PASSED,
            None,
        ),
        (
            Figures(quality={"accuracy": 0.9}, parity_ratio={"gender": 0.70}),
            {},
            RunOutcome.CANDIDATE_REJECTED,
            "parity",
        ),
        (Figures(quality={"accuracy": 0.9}), {}, RunOutcome.CANDIDATE_REJECTED, "no candidate figure"),
        (
            Figures(quality={"f1": 0.9}, parity_ratio={"gender": 0.95}),
            {},
            RunOutcome.CANDIDATE_REJECTED,
            "accuracy",
        ),
    ],
)
def test_the_candidate_is_judged_against_the_serving_version_with_the_margins(
    candidate: Figures, margins: dict[str, Any], outcome: RunOutcome, failed: str | None
) -> None:
    res = result(candidate, BASE)
    decision = decide(
        running(evaluation=margins),
        RetrainingObservation(job=TrainingJobObservation(JobState.SUCCEEDED, res)),
    )
    assert decision.status is not None
    last = decision.status.runs[-1]
    assert (last.outcome, last.candidate_version) == (outcome, "4")
    assert actions(decision) == [AuditAction.RETRAINING_FINISHED, AuditAction.CANDIDATE_EVALUATED]
    evaluated = decision.drafts[1]
    assert evaluated.evidence["passed"] is (outcome == RunOutcome.CANDIDATE_PASSED)
    if failed is not None:
        assert failed in last.message and "never deployed" in last.message


def test_a_pinned_version_is_never_replaced_the_candidate_is_recommended() -> None:
    res = result(GOOD, BASE)
    decision = decide(running(), RetrainingObservation(job=TrainingJobObservation(JobState.SUCCEEDED, res)))
    assert [e.reason for e in decision.events] == ["CandidateRecommended"]
    assert (
        "pins version 3" in decision.events[0].message
        and 'spec.model.version: "4"' in decision.events[0].message
    )
    assert decision.drafts[1].evidence["pinned_version"] == "3"
    assert decision.submit is None and decision.stop is None
    assert decision.status is not None and decision.status.candidate == "4"


def test_a_candidate_for_an_alias_is_reported_ready_not_rolled_out() -> None:
    first = resource(command=RETRAIN, pinned=False)
    requested = after(first, decide(first))
    started = after(requested, decide(requested, RetrainingObservation(trigger_record=STORED)))
    res = result(GOOD, BASE)
    decision = decide(started, RetrainingObservation(job=TrainingJobObservation(JobState.SUCCEEDED, res)))
    assert [e.reason for e in decision.events] == ["CandidateReady"]
    assert "@champion" in decision.events[0].message


def test_finished_runs_are_bounded() -> None:
    current = running()
    assert current.status.retraining is not None
    full = current.status.retraining.model_copy(
        update={
            "runs": RetrainingStatus.model_validate(
                {"runs": [_finished_run(100 + i) for i in range(10)]}
            ).runs
        }
    )
    current = current.model_copy(update={"status": current.status.model_copy(update={"retraining": full})})
    decision = decide(current, RetrainingObservation(job=TrainingJobObservation(JobState.FAILED)))
    assert decision.status is not None and len(decision.status.runs) == 10
    assert decision.status.runs[-1].outcome == RunOutcome.FAILED
    assert decision.status.runs[0].submission_id == "s101"


def test_removing_spec_retraining_mid_run_cancels_and_stops_it() -> None:
    current = running()
    gone = current.model_copy(update={"spec": current.spec.model_copy(update={"retraining": None})})
    decision = decide(gone)
    assert decision.stop is not None
    assert decision.status is not None and decision.status.current is None
    assert "removed" in decision.status.runs[-1].message


def test_no_retraining_spec_and_no_status_decides_nothing() -> None:
    plain = md({"model": {"name": "credit-risk", "version": "3"}})
    decision = decide(plain)
    assert decision == RetrainingDecision(status=None)


@pytest.mark.parametrize(
    ("candidate_se", "serving_se", "passed"),
    [
        (None, None, False),  # no standard errors: the margin alone (a drop of 0.12 > 0.05)
        (0.04, 0.04, True),  # on a small holdout, 0.12 is within 0.05 + 2 x 0.057 of chance
        (0.04, None, False),  # one side's noise unknown: no allowance
        (0.005, 0.005, False),  # on a large one it is a real drop
    ],
)
def test_a_parity_drop_counts_only_past_the_margin_and_the_holdouts_noise(
    candidate_se: float | None, serving_se: float | None, passed: bool
) -> None:
    from steward.api.retraining import OfflineEvaluation
    from steward.operator.retraining_plan import evaluate

    def figures(ratio: float, se: float | None) -> Figures:
        return Figures(
            quality={"accuracy": 0.8},
            parity_ratio={"gender": ratio},
            parity_ratio_se={} if se is None else {"gender": se},
        )

    res = result(figures(0.79, candidate_se), figures(0.91, serving_se))
    verdict = evaluate(OfflineEvaluation(max_fairness_drop=0.05), res)
    parity = next(c for c in verdict.checks if c.name.startswith("demographic_parity_ratio:gender"))
    assert verdict.passed is passed and parity.passed is passed
    assert parity.value == pytest.approx(0.12)
    if candidate_se and serving_se:
        assert "standard errors" in parity.detail
        assert parity.threshold == pytest.approx(0.05 + 2 * (candidate_se**2 + serving_se**2) ** 0.5)
