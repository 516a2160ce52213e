"""When monitor windows are due and what is submitted for them (pure; time passed in)."""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from steward.api.model_deployment import ModelDeployment
from steward.api.monitor_results import MonitorJob
from steward.api.monitoring import MonitorSpec
from steward.api.monitoring_status import MonitoringStatus
from steward.operator.monitor_jobs import JobObservation, JobState
from steward.operator.monitoring import decide_monitoring
from steward.operator.monitoring_schedule import (
    JobContext,
    LiveVersion,
    due_submissions,
    entrypoint,
    submission_id,
    window_end,
)

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)  # on a 5m and a 1h boundary
STORE = "s3://monitoring/prod"
CTX = JobContext(uid="0a1b2c3d-9999", deployment="risk/credit", model_name="credit-risk", store_uri=STORE)
DRIFT = MonitorSpec.model_validate(
    {"name": "drift", "kind": "drift", "window": {"duration": "1h", "every": "5m"}}
)
ROWS = MonitorSpec.model_validate(
    {"name": "quality", "kind": "quality", "window": {"rows": 5000, "every": "10m"}}
)
STABLE = LiveVersion("3", "stable", run_id="run3", training_metrics={"recall": 0.8})
CANARY = LiveVersion("4", "canary", since=T0 - timedelta(minutes=20), run_id="run4")


def resource(monitors: list[dict[str, Any]], status: dict[str, Any] | None = None) -> ModelDeployment:
    return ModelDeployment.model_validate(
        {
            "apiVersion": "steward.io/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": "credit", "namespace": "risk", "uid": "0a1b2c3d-9999", "generation": 1},
            "spec": {"model": {"name": "credit-risk", "version": "3"}, "monitoring": {"monitors": monitors}},
            "status": {"stable": {"version": "3", "modelUri": "models:/credit-risk/3", "runId": "run3"}}
            | (status or {}),
        }
    )


@pytest.mark.parametrize(
    ("now", "every", "expected_end"),
    [
        (T0, "5m", T0),
        (T0 + timedelta(minutes=4, seconds=59), "5m", T0),
        (T0 + timedelta(minutes=5), "5m", T0 + timedelta(minutes=5)),
        (T0 + timedelta(minutes=59), "1h", T0),
    ],
)
def test_windows_end_on_every_boundaries(now: datetime, every: str, expected_end: datetime) -> None:
    monitor = MonitorSpec.model_validate(
        {"name": "m", "kind": "drift", "window": {"duration": "1h", "every": every}}
    )
    assert window_end(monitor, now) == expected_end


def test_the_submission_id_is_deterministic_bounded_and_ray_safe() -> None:
    sid = submission_id("0A1B2C3D-9999", "drift", "3", T0)
    assert sid == f"steward-0a1b2c3d-drift-v3-{int(T0.timestamp())}"
    assert submission_id("0A1B2C3D-9999", "drift", "3", T0) == sid
    assert submission_id("0a1b2c3d", "drift", "3", T0, attempt=1) == sid + "-r1"
    long_a, long_b = "a" * 39 + "x", "a" * 39 + "y"
    ids = {submission_id("u", name, "12345", T0, attempt=1) for name in (long_a, long_b)}
    assert len(ids) == 2
    for value in [*ids, submission_id(None, "drift", "3", T0)]:
        assert len(value) <= 64 and re.fullmatch(r"[a-z0-9][a-z0-9-]*", value), value


def test_a_time_window_is_the_last_duration_and_a_rows_window_looks_back_a_week() -> None:
    subs = due_submissions(CTX, [DRIFT, ROWS], [STABLE], MonitoringStatus(), T0 + timedelta(minutes=3))
    by_monitor = {s.entry.monitor: s for s in subs}
    drift, quality = by_monitor["drift"].job, by_monitor["quality"].job
    assert (drift.window_start, drift.window_end) == (T0 - timedelta(hours=1), T0)
    assert (quality.window_start, quality.window_end) == (T0 - timedelta(days=7), T0)
    assert drift.result_uri == f"{STORE}/risk/credit/reports/drift/v3/20261123T120000Z/result.json"
    assert drift.report_uri.endswith("/report.html")
    assert (drift.run_id, drift.training_metrics, drift.model_name) == (
        "run3",
        {"recall": 0.8},
        "credit-risk",
    )
    assert drift.capture is None  # the context carried none


def test_the_job_carries_the_capture_policy_its_window_was_recorded_under() -> None:
    from dataclasses import replace

    from steward.api.monitoring import CaptureSpec, FieldPolicy

    policy = CaptureSpec(fields={"customer_id": FieldPolicy.HASH})
    ctx = replace(CTX, capture=policy)
    [sub] = due_submissions(ctx, [DRIFT], [STABLE], MonitoringStatus(), T0)
    assert sub.job.capture == policy


def test_the_entrypoint_carries_the_job_as_base64_json() -> None:
    sub = due_submissions(CTX, [DRIFT], [STABLE], MonitoringStatus(), T0)[0]
    command = entrypoint(sub.job)
    assert command.startswith("python -m steward.monitors.run ")
    payload = command.rsplit(" ", 1)[1]
    decoded = MonitorJob.model_validate(json.loads(base64.urlsafe_b64decode(payload)))
    assert decoded == sub.job


def test_each_version_is_judged_separately_and_a_canary_only_after_it_went_live() -> None:
    young = LiveVersion("4", "canary", since=T0 + timedelta(minutes=1))
    subs = due_submissions(
        CTX, [DRIFT], [STABLE, CANARY, young], MonitoringStatus(), T0 + timedelta(minutes=2)
    )
    assert sorted(s.entry.version for s in subs) == ["3", "4"]  # the young canary's first window is not over


def _decide(md: ModelDeployment, now: datetime, observed: dict[str, JobObservation] | None = None) -> Any:
    return decide_monitoring(md, observed or {}, now, STORE)


def _status_after(decision: Any) -> dict[str, Any]:
    return {"monitoring": decision.status.model_dump(mode="json", by_alias=True)}


def test_no_second_job_while_one_is_in_flight_and_the_next_window_waits_its_turn() -> None:
    monitors = [DRIFT.model_dump(by_alias=True)]
    first = _decide(resource(monitors), T0 + timedelta(seconds=30))
    assert [s.submission_id for s in first.submissions] == [
        f"steward-0a1b2c3d-drift-v3-{int(T0.timestamp())}"
    ]
    running = {first.submissions[0].submission_id: JobObservation(JobState.RUNNING)}
    # Later, past the next boundary: the running job blocks a second one for that monitor and version.
    later = _decide(resource(monitors, _status_after(first)), T0 + timedelta(minutes=7), running)
    assert later.submissions == []
    assert [j.submission_id for j in later.status.jobs] == [first.submissions[0].submission_id]
    assert later.requeue_after_s == 15.0


def test_a_restarted_operator_with_the_same_status_submits_the_same_ids() -> None:
    monitors = [DRIFT.model_dump(by_alias=True), ROWS.model_dump(by_alias=True)]
    now = T0 + timedelta(minutes=12)
    a = _decide(resource(monitors), now)
    b = _decide(resource(monitors), now + timedelta(seconds=40))
    assert [s.submission_id for s in a.submissions] == [s.submission_id for s in b.submissions]
    assert len(a.submissions) == 2


def test_a_job_ray_lost_is_submitted_again_under_the_same_id() -> None:
    monitors = [DRIFT.model_dump(by_alias=True)]
    first = _decide(resource(monitors), T0)
    sid = first.submissions[0].submission_id
    again = _decide(
        resource(monitors, _status_after(first)),
        T0 + timedelta(minutes=1),
        {sid: JobObservation(JobState.MISSING)},
    )
    assert [s.submission_id for s in again.submissions] == [sid]
    assert sid not in again.status.handled


def test_a_window_judged_without_all_labels_is_judged_once_more_later() -> None:
    from steward.api.monitor_results import MonitorResult, MonitorVerdict
    from steward.api.monitoring import MonitorKind

    monitors = [ROWS.model_dump(by_alias=True)]
    first = _decide(resource(monitors), T0)
    job = first.submissions[0]
    partial = MonitorResult(
        monitor="quality", kind=MonitorKind.QUALITY, deployment="risk/credit", version="3",
        window_start=job.job.window_start, window_end=job.job.window_end, rows=5000, labelled_rows=40,
        verdict=MonitorVerdict.INCONCLUSIVE,
    )  # fmt: skip
    done = _decide(
        resource(monitors, _status_after(first)),
        T0 + timedelta(minutes=1),
        {job.submission_id: JobObservation(JobState.SUCCEEDED, partial)},
    )
    assert [w.window_end for w in done.status.awaiting_labels] == [T0]
    # The regular windows go on; the re-judgement comes an hour after the window ended, once, as attempt 1.
    status = _status_after(done)
    soon = _decide(resource(monitors, status), T0 + timedelta(minutes=10))
    assert [s.submission_id for s in soon.submissions] == [
        submission_id("0a1b2c3d", "quality", "3", T0 + timedelta(minutes=10))
    ]
    # At T0+61m the regular T0+60m window comes first (one job per monitor and version); once it is judged,
    # the waiting window's turn comes.
    assert _decide(resource(monitors, status), T0 + timedelta(minutes=61)).submissions[0].entry.attempt == 0
    status["monitoring"]["results"][0]["windowEnd"] = (T0 + timedelta(minutes=60)).isoformat()
    idle = _decide(resource(monitors, status), T0 + timedelta(minutes=61))
    rejudge = [s for s in idle.submissions if s.entry.attempt == 1]
    assert [s.submission_id for s in rejudge] == [submission_id("0a1b2c3d", "quality", "3", T0, attempt=1)]
    assert rejudge[0].job.result_uri.endswith("20261123T120000Z-r1/result.json")
    assert idle.status.awaiting_labels == []
