"""decide() turns lifecycle transitions into audit drafts, once per cause."""

from __future__ import annotations

from datetime import timedelta

from builders import CONFIG, NOTHING, T0, desired, md, resolved, serving

from steward.api.conditions import Reason
from steward.audit.records import AuditAction
from steward.operator.actions import ApplyServeApplications, RecordAudit
from steward.operator.core import decide, decide_deletion
from steward.operator.observations import Observations, Problem


def drafts(decision):
    return [a.draft for a in decision.actions if isinstance(a, RecordAudit)]


def step(resource, obs, generation=None, seconds=0):
    decision = decide(resource, obs, CONFIG, T0 + timedelta(seconds=seconds))
    status = decision.status.model_dump(by_alias=True)
    return decision, md(resource.spec.model_dump(by_alias=True, exclude_none=True), status, generation or 1)


def test_a_life_creates_deploys_changes_and_deletes():
    first = md()
    d1, r1 = step(first, Observations(resolved(), NOTHING))
    (created,) = drafts(d1)
    assert created.action == AuditAction.CREATED and created.cause == "created"
    assert created.evidence["spec"]["model"] == {"name": "credit-risk", "version": "3"}
    assert isinstance(d1.actions[0], ApplyServeApplications)  # the change before the record of it
    assert isinstance(d1.actions[1], RecordAudit)

    planned = desired(r1, resolved())
    d2, r2 = step(r1, Observations(resolved(), serving("RUNNING", planned)))
    (deployed,) = drafts(d2)
    assert deployed.action == AuditAction.DEPLOYED
    assert (deployed.model.from_version, deployed.model.to_version) == (None, "3")
    assert deployed.evidence["model_uri"] == "models:/credit-risk/3"

    d3, _ = step(r2, Observations(resolved(), serving("RUNNING", planned)))
    assert drafts(d3) == []  # a resync records nothing

    changed = md({"model": {"name": "credit-risk", "version": "4"}}, r2.status.model_dump(by_alias=True), 2)
    d4, r5 = step(changed, Observations(resolved("4"), serving("RUNNING", planned)), generation=2)
    spec_changed, started = drafts(d4)
    assert spec_changed.action == AuditAction.SPEC_CHANGED and spec_changed.cause == "spec:generation-2"
    # A new version over a serving one is a rollout, recorded by the rollout (tests/unit/test_rollout.py).
    assert started.action == AuditAction.ROLLOUT_STARTED
    assert (started.model.from_version, started.model.to_version) == ("3", "4")

    gone = decide_deletion(r5, None, T0, CONFIG, T0)
    (deleted,) = [a.draft for a in gone.actions if isinstance(a, RecordAudit)]
    assert deleted.action == AuditAction.DELETED and deleted.evidence["cleanup_complete"] is True


def test_actor_and_reason_come_from_annotations():
    resource = md().model_copy(
        update={
            "metadata": md().metadata.model_copy(
                update={
                    "annotations": {"steward.io/actor": "alice@bank", "steward.io/change-reason": "CR-123"}
                }
            )
        }
    )
    (created,) = drafts(decide(resource, Observations(resolved(), NOTHING), CONFIG, T0))
    # No admission webhook in CONFIG: the name is what the client declared, and the record says so.
    assert (created.actor, created.reason) == ("alice@bank (declared)", "CR-123")


def test_alias_moved_is_recorded_once():
    spec = {"model": {"name": "credit-risk", "alias": "champion"}}
    _, settled = step(md(spec), Observations(resolved("3"), NOTHING))
    settled = md(
        spec, {**settled.status.model_dump(by_alias=True), "stable": {"version": "3", "modelUri": "m"}}
    )
    d, _ = step(settled, Observations(resolved("4"), NOTHING))
    moved = [x for x in drafts(d) if x.action == AuditAction.ALIAS_MOVED]
    assert len(moved) == 1 and moved[0].cause == "alias:champion:move-1:3->4"
    assert (moved[0].model.from_version, moved[0].model.to_version) == ("3", "4")


def test_deploy_failure_is_recorded_with_rays_message():
    _, r1 = step(md(), Observations(resolved(), NOTHING))
    planned = desired(r1, resolved())
    d, r2 = step(
        r1, Observations(resolved(), serving("DEPLOY_FAILED", planned, message="ImportError: xgboost"))
    )
    (failed,) = drafts(d)
    assert failed.action == AuditAction.DEPLOY_FAILED and "ImportError: xgboost" in failed.evidence["message"]
    d_again, _ = step(
        r2, Observations(resolved(), serving("DEPLOY_FAILED", planned, message="ImportError: xgboost"))
    )
    assert drafts(d_again) == []


def test_unreachable_ray_at_deletion_records_what_was_left_behind():
    problem = Problem(Reason.RAY_UNREACHABLE, "refused", True)
    released = decide_deletion(md(), problem, T0, CONFIG, T0 + timedelta(seconds=500))
    (deleted,) = [a.draft for a in released.actions if isinstance(a, RecordAudit)]
    assert deleted.evidence["cleanup_complete"] is False and "risk.credit may remain" in deleted.reason
