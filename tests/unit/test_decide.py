"""Table-driven tests of decide(): every observation the reconciler can hand in."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from builders import CONFIG, NOTHING, T0, desired, md, resolved, serving

from steward.api.conditions import ConditionStatus, ConditionType, Phase, Reason
from steward.operator.actions import ApplyServeApplications, DeleteServeApplication, EventType, PostEvent
from steward.operator.core import Decision, decide, decide_deletion, deletion_actions
from steward.operator.observations import Observations, Problem
from steward.operator.status import find

DESIRED = desired(md(), resolved())


def condition(decision: Decision, type_: ConditionType) -> tuple[str, str]:
    found = find(decision.status.conditions, type_)
    assert found is not None, f"{type_} missing"
    return found.status.value, found.reason.value


def applies(decision: Decision) -> list[ApplyServeApplications]:
    return [a for a in decision.actions if isinstance(a, ApplyServeApplications)]


CASES = [
    # (case, observations, phase, ready, applies?, retry?)
    (
        "new: app absent",
        Observations(resolved(), NOTHING),
        Phase.PROGRESSING,
        ("False", "Deploying"),
        True,
        False,
    ),
    (
        "deployed config differs (new version)",
        Observations(resolved("4"), serving("RUNNING", DESIRED)),
        Phase.PROGRESSING,
        ("False", "Deploying"),
        True,
        False,
    ),
    (
        "Ray still deploying our config",
        Observations(resolved(), serving("DEPLOYING", DESIRED)),
        Phase.PROGRESSING,
        ("False", "Deploying"),
        False,
        False,
    ),
    (
        "running",
        Observations(resolved(), serving("RUNNING", DESIRED, replicas=2)),
        Phase.READY,
        ("True", "Running"),
        False,
        False,
    ),
    (
        "deploy failed",
        Observations(resolved(), serving("DEPLOY_FAILED", DESIRED, message="ImportError: boom")),
        Phase.FAILED,
        ("False", "DeployFailed"),
        False,
        False,
    ),
    (
        "unhealthy",
        Observations(resolved(), serving("UNHEALTHY", DESIRED)),
        Phase.DEGRADED,
        ("False", "Unhealthy"),
        False,
        False,
    ),
    (
        "version missing",
        Observations(Problem(Reason.VERSION_NOT_FOUND, "no version 9; existing 1, 2", False), NOTHING),
        Phase.FAILED,
        ("False", "VersionNotFound"),
        False,
        False,
    ),
    (
        "registry unreachable",
        Observations(Problem(Reason.REGISTRY_UNREACHABLE, "refused", True), NOTHING),
        Phase.PROGRESSING,
        ("Unknown", "RegistryUnreachable"),
        False,
        True,
    ),
    (
        "ray unreachable",
        Observations(resolved(), Problem(Reason.RAY_UNREACHABLE, "connect refused", True)),
        Phase.PROGRESSING,
        ("Unknown", "RayUnreachable"),
        False,
        True,
    ),
    (
        "ray rejects the token",
        Observations(resolved(), Problem(Reason.RAY_REJECTED, "401", False)),
        Phase.FAILED,
        ("False", "RayRejected"),
        False,
        False,
    ),
]


@pytest.mark.parametrize(
    ("case", "obs", "phase", "ready", "apply", "retry"), CASES, ids=[c[0] for c in CASES]
)
def test_decide_table(case, obs, phase, ready, apply, retry):
    decision = decide(md(), obs, CONFIG, T0)
    assert decision.status.phase == phase
    assert condition(decision, ConditionType.READY) == ready
    assert bool(applies(decision)) == apply
    assert decision.retry == retry
    assert decision.status.observed_generation == 1
    assert all(c.observed_generation == 1 for c in decision.status.conditions)


def test_apply_carries_the_planned_config_to_the_right_cluster():
    (action,) = applies(decide(md(), Observations(resolved(), NOTHING), CONFIG, T0))
    assert action.ray_address == "http://ray:8265"
    assert action.app_configs == DESIRED


def test_running_records_stable_version_endpoint_and_replicas():
    decision = decide(md(), Observations(resolved(), serving("RUNNING", DESIRED, replicas=2)), CONFIG, T0)
    status = decision.status
    assert status.stable is not None
    assert (status.stable.version, status.stable.model_uri) == ("3", "models:/credit-risk/3")
    assert status.ready_replicas == 2
    assert status.endpoint == "http://ray:8000/risk/credit"
    assert status.serve_application is not None and status.serve_application.status == "RUNNING"


def test_registry_problem_keeps_what_is_serving():
    before = decide(md(), Observations(resolved(), serving("RUNNING", DESIRED)), CONFIG, T0).status
    changed = md({"model": {"name": "credit-risk", "version": "9"}}, before.model_dump(by_alias=True), 2)
    problem = Problem(
        Reason.VERSION_NOT_FOUND, "model 'credit-risk' has no version 9; existing versions: 3", False
    )
    decision = decide(changed, Observations(problem, serving("RUNNING", DESIRED)), CONFIG, T0)
    applied = [a for a in decision.actions if isinstance(a, (ApplyServeApplications, DeleteServeApplication))]
    assert not applied
    assert decision.status.stable is not None and decision.status.stable.version == "3"
    ready = find(decision.status.conditions, ConditionType.READY)
    assert ready is not None and "existing versions: 3" in ready.message
    assert decision.status.observed_generation == 2


def test_deploy_failed_surfaces_rays_message():
    obs = Observations(resolved(), serving("DEPLOY_FAILED", DESIRED, message="ModuleNotFoundError: sklearn"))
    ready = find(decide(md(), obs, CONFIG, T0).status.conditions, ConditionType.READY)
    assert ready is not None and "ModuleNotFoundError: sklearn" in ready.message


def test_events_only_on_transitions():
    first = decide(md(), Observations(resolved(), serving("RUNNING", DESIRED)), CONFIG, T0)
    events = [a for a in first.actions if isinstance(a, PostEvent)]
    assert [(e.type, e.reason) for e in events] == [(EventType.NORMAL, "Running")]
    again = decide(
        md(status=first.status.model_dump(by_alias=True)),
        Observations(resolved(), serving("RUNNING", DESIRED)),
        CONFIG,
        T0 + timedelta(seconds=30),
    )
    assert again.actions == []
    # lastTransitionTime stays when the status did not change
    assert find(again.status.conditions, ConditionType.READY) == find(
        first.status.conditions, ConditionType.READY
    )


def test_failure_event_is_a_warning():
    obs = Observations(resolved(), serving("DEPLOY_FAILED", DESIRED, message="x"))
    events = [a for a in decide(md(), obs, CONFIG, T0).actions if isinstance(a, PostEvent)]
    assert [(e.type, e.reason) for e in events] == [(EventType.WARNING, "DeployFailed")]


def test_restart_resumes_from_status_without_reapplying():
    """A new operator process with only .status and the same observations does nothing twice."""
    deploying = decide(md(), Observations(resolved(), NOTHING), CONFIG, T0)
    resumed = decide(
        md(status=deploying.status.model_dump(by_alias=True)),
        Observations(resolved(), serving("DEPLOYING", DESIRED)),
        CONFIG,
        T0 + timedelta(seconds=5),
    )
    assert applies(resumed) == []
    assert resumed.status.phase == Phase.PROGRESSING


def test_spec_ray_address_overrides_default_and_drives_endpoint():
    custom = md(
        {"model": {"name": "credit-risk", "version": "3"}, "serving": {"rayAddress": "http://gpu-ray:8265"}}
    )
    config = replace(CONFIG, allowed_ray_addresses=frozenset({"http://gpu-ray:8265"}))
    decision = decide(custom, Observations(resolved(), NOTHING), config, T0)
    assert applies(decision)[0].ray_address == "http://gpu-ray:8265"
    assert decision.status.endpoint == "http://gpu-ray:8000/risk/credit"


DELETION_CASES = [
    ("removed", None, 5, True, 0),
    ("ray down, within the wait", Problem(Reason.RAY_UNREACHABLE, "refused", True), 5, False, 0),
    ("ray down past the wait", Problem(Reason.RAY_UNREACHABLE, "refused", True), 500, True, 1),
    # Ray is there and still serves the model: releasing the finalizer would orphan it, however long it takes.
    ("ray rejects the config", Problem(Reason.RAY_REJECTED, "400", False), 500, False, 0),
    ("token refused", Problem(Reason.RAY_UNAUTHORIZED, "401", True), 5, False, 0),
    ("token refused past the wait", Problem(Reason.RAY_UNAUTHORIZED, "401", True), 500, False, 0),
    ("another writer past the wait", Problem(Reason.RAY_CONFLICT, "busy", True), 500, False, 0),
    ("address not allowed", Problem(Reason.RAY_ADDRESS_NOT_ALLOWED, "not allowed", False), 0, True, 1),
]


@pytest.mark.parametrize(
    ("case", "problem", "waited_s", "release", "warnings"), DELETION_CASES, ids=[c[0] for c in DELETION_CASES]
)
def test_deletion(case, problem, waited_s, release, warnings):
    decision = decide_deletion(md(), problem, T0, CONFIG, T0 + timedelta(seconds=waited_s))
    assert decision.release_finalizer == release
    posted = [a for a in decision.actions if isinstance(a, PostEvent) and a.type == EventType.WARNING]
    assert len(posted) == warnings
    if warnings:
        assert "risk.credit" in posted[0].message


def test_deletion_removes_the_application_by_name():
    assert deletion_actions(md(), CONFIG) == [DeleteServeApplication("http://ray:8265", "risk.credit")]


def test_condition_statuses_are_kubernetes_strings():
    decision = decide(md(), Observations(resolved(), NOTHING), CONFIG, T0)
    assert {c.status for c in decision.status.conditions} <= set(ConditionStatus)
