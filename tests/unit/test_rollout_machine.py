"""The rollout state machine, driven through whole rollouts in a pretend world (tests/unit/world.py)."""

from __future__ import annotations

import json

import pytest
from builders import resolved
from world import Behaviour, World, settled

from steward.api.conditions import ConditionType, Phase, Reason
from steward.api.rollout import ROLLOUT_COMMAND_ANNOTATION, Outcome, RolloutState
from steward.audit.records import AuditAction
from steward.operator.actions import EventType
from steward.operator.status import find

V4 = {"model": {"name": "credit-risk", "version": "4"}}


def with_rollout(rollout: dict, version: str = "4") -> dict:
    return {"model": {"name": "credit-risk", "version": version}, "rollout": rollout}


def start(world: World, spec: dict = V4, version: str = "4") -> None:
    world.change_spec(spec, resolved(version))


def command(world: World, kind: str, id_: str, actor: str = "ops@bank") -> None:
    world.annotate(
        ROLLOUT_COMMAND_ANNOTATION, json.dumps({"id": id_, "command": kind, "actor": actor, "reason": "CR-7"})
    )


def actions(world: World) -> list[str]:
    return [d.action.value for d in world.drafts()]


def condition(world: World, type_: ConditionType):
    found = find(world.resource.status.conditions, type_)
    assert found is not None
    return found


def weights(world: World) -> dict[str, int]:
    config = world.router_config()
    assert config is not None
    return config.weights


def test_a_healthy_canary_goes_10_50_100_and_the_old_version_goes():
    world = settled()
    start(world)
    world.step()
    assert world.rollout.state == RolloutState.WARMING
    assert weights(world) == {"3": 100, "4": 0}  # the new version is warm before it gets traffic
    assert world.resource.status.phase == Phase.PROGRESSING
    assert condition(world, ConditionType.READY).status.value == "True"  # stable keeps serving

    world.step()
    assert (world.rollout.state, world.rollout.weight) == (RolloutState.PROGRESSING, 10)
    assert weights(world) == {"3": 90, "4": 10}
    world.until(lambda w: w.rollout.weight == 50)
    assert weights(world) == {"3": 50, "4": 50}
    world.until(lambda w: w.rollout is None)

    assert world.stable_version == "4"
    assert set(world.apps) == {"risk.credit", "risk.credit.v4"}
    assert weights(world) == {"4": 100}
    (record,) = world.resource.status.rollout_history
    assert (record.from_version, record.to_version, record.outcome) == ("3", "4", Outcome.PROMOTED)
    assert record.reason == "all 4 steps passed"
    assert actions(world) == [
        "spec-changed",
        "rollout-started",
        "rollout-step",
        "analysis-verdict",
        "rollout-step",
        "analysis-verdict",
        "promoted",
    ]
    promoted = world.drafts()[-1]
    assert len(promoted.evidence["windows"]) == 2 and promoted.evidence["windows"][0]["verdict"] == "Pass"
    assert condition(world, ConditionType.PROGRESSING).reason == Reason.PROMOTED
    assert world.resource.status.phase == Phase.READY
    assert [e.reason for e in world.events() if e.reason in ("RolloutStarted", "Promoted")] == [
        "RolloutStarted",
        "Promoted",
    ]


def test_the_stable_versions_app_is_never_rewritten_during_a_rollout():
    """Ray restarts replicas when an app's config changes: stable's must stay byte-for-byte the same."""
    world = settled()
    before = world.apps["risk.credit.v3"]
    start(world)
    world.until(lambda w: w.rollout is not None and w.rollout.state == RolloutState.PROMOTING)
    assert world.apps["risk.credit.v3"] == before


@pytest.mark.parametrize("failing_from_weight", [10, 50])
def test_a_canary_that_errors_is_rolled_back_at_the_step_where_it_fails(failing_from_weight):
    world = settled()
    start(world)
    world.until(lambda w: w.rollout is not None and w.rollout.weight == failing_from_weight)
    world.behaviour["4"] = Behaviour(error_share=0.25)
    world.until(lambda w: w.rollout is None or w.rollout.state == RolloutState.ROLLING_BACK)
    assert weights(world) == {"3": 100, "4": 0}  # all traffic back at once, before the canary goes
    world.until(lambda w: w.rollout is None)

    assert world.stable_version == "3" and set(world.apps) == {"risk.credit", "risk.credit.v3"}
    (record,) = world.resource.status.rollout_history
    assert record.outcome == Outcome.ROLLED_BACK
    assert record.reason.startswith("analysis failed: error rate 25% > 1% over ")
    degraded = condition(world, ConditionType.DEGRADED)
    assert (degraded.status.value, degraded.reason) == ("True", Reason.ROLLED_BACK)
    assert "error rate 25% > 1%" in degraded.message
    assert world.resource.status.phase == Phase.DEGRADED
    assert condition(world, ConditionType.READY).status.value == "True"
    assert "rolled-back" in actions(world)
    verdicts = [d for d in world.drafts() if d.action == AuditAction.ANALYSIS_VERDICT]
    assert verdicts[-1].reason.startswith("Fail: error rate 25%")
    assert [e.type for e in world.events() if e.reason == "RolledBack"] == [EventType.WARNING]


def test_a_rolled_back_version_is_not_retried_until_the_spec_changes():
    world = settled()
    start(world)
    world.behaviour["4"] = Behaviour(error_share=0.5)
    world.until(lambda w: w.resource.status.rollout_history)
    world.run(60)
    assert world.rollout is None and "risk.credit.v4" not in world.apps
    assert "change the spec or move the alias" in condition(world, ConditionType.DEGRADED).message

    world.behaviour["4"] = Behaviour()
    start(world, with_rollout({"analysis": {"minRequests": 20}}))  # a new generation: try again
    world.until(lambda w: w.rollout is None and w.stable_version == "4")
    assert condition(world, ConditionType.DEGRADED).status.value == "False"


def test_a_slow_canary_fails_on_latency():
    world = settled()
    start(world, with_rollout({"analysis": {"maxLatencyP99Ms": 200}}))
    world.behaviour["4"] = Behaviour(latency_ms=400)
    world.until(lambda w: w.resource.status.rollout_history)
    assert "latency p99" in world.resource.status.rollout_history[-1].reason
    assert world.stable_version == "3"


def test_relative_error_rate_and_latency_ratio_compare_with_stable():
    world = settled()
    start(world, with_rollout({"analysis": {"maxErrorRate": 0.5, "maxErrorRateIncrease": 0.05}}))
    world.behaviour["3"] = Behaviour(error_share=0.10)
    world.behaviour["4"] = Behaviour(error_share=0.20)
    world.until(lambda w: w.resource.status.rollout_history)
    reason = world.resource.status.rollout_history[-1].reason
    assert "error rate 25% exceeds stable's 11.1% by more than 5%" in reason


def test_failure_limit_tolerates_failed_windows():
    world = settled()
    spec = with_rollout(
        {"steps": [{"setWeight": 20}, {"analysis": {"windows": 3}}], "analysis": {"failureLimit": 1}}
    )
    start(world, spec)
    world.until(lambda w: w.rollout is not None and w.rollout.window_started_at is not None)
    world.behaviour["4"] = Behaviour(error_share=0.5)
    world.until(lambda w: w.rollout.failed_windows == 1)
    assert world.rollout.state == RolloutState.PROGRESSING
    assert [e.reason for e in world.events()].count("AnalysisFailed") == 1
    world.behaviour["4"] = Behaviour()
    world.until(lambda w: w.rollout is None)
    assert world.stable_version == "4"


def test_a_quiet_window_stays_open_until_it_has_min_requests():
    world = settled()
    world.rps = 5.0  # 10% of 150 requests in a 30 s window: 15 of the 50 minRequests
    start(world)
    world.until(lambda w: w.rollout is not None and "has 15 of 50 requests" in w.rollout.message)
    assert "kept open up to 150s" in world.rollout.message and world.rollout.windows == []
    world.until(lambda w: w.rollout is None)
    assert world.stable_version == "4"
    verdicts = [d for d in world.drafts() if d.action.value == "analysis-verdict"]
    # Each analysis window judged once it had enough requests, never paused for want of them.
    assert verdicts and {d.reason.split(":")[0] for d in verdicts} == {"Pass"}
    assert not [d for d in world.drafts() if "inconclusive" in d.reason]


def test_too_little_traffic_pauses_instead_of_promoting():
    world = settled()
    world.rps = 1.0  # 10% of 30 requests in a 30 s window, 15 in five windows' time: below minRequests
    start(world)
    world.until(lambda w: w.rollout is not None and w.rollout.state == RolloutState.PAUSED)
    assert world.rollout.weight == 10 and world.rollout.windows[-1].verdict.value == "Inconclusive"
    assert "only 15 request(s) reached version 4 in the window; 50 are needed" in world.rollout.message
    assert condition(world, ConditionType.PROGRESSING).reason == Reason.ROLLOUT_PAUSED
    world.run(120)
    assert world.rollout.state == RolloutState.PAUSED and world.stable_version == "3"

    world.rps = 20.0
    command(world, "resume", "c1")
    world.until(lambda w: w.rollout is None)
    assert world.stable_version == "4"
    resumed = [d for d in world.drafts() if d.reason.startswith("resumed by")]
    assert len(resumed) == 1 and resumed[0].actor == "ops@bank (declared)"


def test_pause_and_resume_by_hand_hold_the_weight():
    world = settled()
    start(world)
    world.until(lambda w: w.rollout is not None and w.rollout.weight == 10)
    command(world, "pause", "c1")
    world.step()
    assert world.rollout.state == RolloutState.PAUSED and world.rollout.handled_command == "c1"
    world.run(200)
    assert (world.rollout.state, world.rollout.weight, weights(world)) == (
        RolloutState.PAUSED,
        10,
        {"3": 90, "4": 10},
    )
    command(world, "resume", "c2")
    world.until(lambda w: w.rollout is None)
    assert world.stable_version == "4"
    manual = [(d.actor, d.reason) for d in world.drafts() if d.actor == "ops@bank (declared)"]
    assert manual == [
        ("ops@bank (declared)", "paused by ops@bank (declared): CR-7"),
        ("ops@bank (declared)", "resumed by ops@bank (declared): CR-7"),
    ]


def test_a_command_is_acted_on_once():
    world = settled()
    start(world)
    world.until(lambda w: w.rollout is not None and w.rollout.weight == 10)
    command(world, "pause", "c1")
    world.step()
    command(world, "resume", "c2")
    world.step()
    world.restart_operator()
    world.step()  # c2 again: already handled
    assert world.rollout.state == RolloutState.PROGRESSING
    assert [d.reason for d in world.drafts()].count("resumed by ops@bank (declared): CR-7") == 1


def test_promote_finishes_the_current_step_and_promote_full_skips_the_rest():
    world = settled()
    start(world)
    world.until(lambda w: w.rollout is not None and w.rollout.weight == 10 and w.rollout.window_started_at)
    command(world, "promote", "c1")
    world.step()
    assert world.rollout.weight == 50  # the analysis step was skipped, the next setWeight ran
    command(world, "promote-full", "c2")
    world.step()
    assert world.rollout.state == RolloutState.PROMOTING and weights(world) == {"3": 0, "4": 100}
    world.until(lambda w: w.rollout is None)
    (record,) = world.resource.status.rollout_history
    assert record.outcome == Outcome.PROMOTED and record.reason.startswith("promoted by ops@bank")
    assert world.drafts()[-1].actor == "ops@bank (declared)"


def test_abort_returns_all_traffic_to_stable_and_records_who():
    world = settled()
    start(world)
    world.until(lambda w: w.rollout is not None and w.rollout.weight == 50)
    command(world, "abort", "c1", actor="carol@bank")
    world.step()
    assert weights(world) == {"3": 100, "4": 0}
    world.until(lambda w: w.rollout is None)
    (record,) = world.resource.status.rollout_history
    assert (record.outcome, record.reason) == (Outcome.ABORTED, "aborted by carol@bank (declared): CR-7")
    last = world.drafts()[-1]
    assert (last.action, last.actor) == (AuditAction.ABORTED, "carol@bank (declared)")
    assert condition(world, ConditionType.DEGRADED).status.value == "False"
    assert condition(world, ConditionType.PROGRESSING).reason == Reason.ROLLOUT_ABORTED


def test_a_command_while_finishing_is_answered_as_ignored():
    world = settled()
    start(world)
    world.until(lambda w: w.rollout is not None and w.rollout.weight == 10)
    command(world, "abort", "c1")
    world.step()
    assert world.rollout.state == RolloutState.ROLLING_BACK
    command(world, "pause", "c2")
    world.step(0.5)
    assert world.rollout.handled_command == "c2"
    assert world.rollout.message.startswith(
        "pause by ops@bank (declared) ignored: the rollout is already finishing"
    )
    world.until(lambda w: w.rollout is None)
    assert world.resource.status.rollout_history[-1].outcome == Outcome.ABORTED


def test_promote_while_warming_is_refused_with_a_reason():
    world = settled()
    start(world)
    world.app_status["risk.credit.v4"] = "DEPLOYING"
    world.step()
    world.step()
    command(world, "promote-full", "c1")
    world.step()
    assert world.rollout.state == RolloutState.WARMING
    assert "refused" in world.rollout.message and world.rollout.handled_command == "c1"


def test_a_canary_that_fails_to_start_is_rolled_back_without_traffic():
    world = settled()
    start(world)
    world.step()
    world.app_status["risk.credit.v4"] = "DEPLOY_FAILED"
    world.until(lambda w: w.rollout is None)
    assert world.resource.status.rollout_history[-1].outcome == Outcome.ROLLED_BACK
    assert "failed to start (DEPLOY_FAILED)" in world.resource.status.rollout_history[-1].reason
    assert "4" not in world.live


def test_timed_pause_waits_then_goes_on_and_open_pause_waits_for_a_person():
    world = settled()
    spec = with_rollout({"steps": [{"setWeight": 30}, {"pause": {"duration": "1m"}}, {"pause": {}}]})
    start(world, spec)
    world.until(lambda w: w.rollout is not None and w.rollout.step_index == 1)
    entered = world.now
    world.until(lambda w: w.rollout.step_index == 2)
    assert (world.now - entered).total_seconds() >= 60
    world.step()
    assert world.rollout.state == RolloutState.PAUSED and "waiting for a person" in world.rollout.message
    world.run(300)
    assert world.rollout.state == RolloutState.PAUSED
    command(world, "resume", "go")
    world.until(lambda w: w.rollout is None)
    assert world.stable_version == "4"


def test_a_spec_change_mid_rollout_starts_it_again():
    world = settled()
    start(world)
    world.until(lambda w: w.rollout is not None and w.rollout.weight == 50)
    started_at = world.rollout.started_at
    start(world, with_rollout({"analysis": {"minRequests": 30}}))
    world.step()
    assert world.rollout.started_at == started_at and world.rollout.step_index <= 1
    assert world.rollout.weight == 10 or world.rollout.state == RolloutState.WARMING
    assert "rollout-started" in actions(world)[-3:] or actions(world).count("rollout-started") == 2
    world.until(lambda w: w.rollout is None)
    assert world.stable_version == "4"


def test_operator_restart_mid_step_resumes_the_same_step_without_reapplying():
    world = settled()
    start(world)
    world.until(lambda w: w.rollout is not None and w.rollout.weight == 10 and w.rollout.window_started_at)
    world.step()
    before = world.rollout
    applies = world.applies
    causes = [d.cause for d in world.drafts()]
    world.restart_operator()
    world.step()
    after = world.rollout
    assert (after.step_index, after.weight, after.window_started_at, after.window_baseline) == (
        before.step_index,
        before.weight,
        before.window_started_at,
        before.window_baseline,
    )
    assert world.applies == applies  # nothing applied twice
    assert [d.cause for d in world.drafts()] == causes
    world.until(lambda w: w.rollout is None)
    assert world.stable_version == "4"
    assert len([d for d in world.drafts() if d.action == AuditAction.PROMOTED]) == 1


def test_every_cause_is_unique_over_a_whole_rollout():
    world = settled()
    start(world)
    world.until(lambda w: w.rollout is None and w.stable_version == "4")
    causes = [d.cause for d in world.drafts()]
    assert len(causes) == len(set(causes))


def test_alias_moved_twice_quickly_supersedes_the_first_rollout():
    spec = {"model": {"name": "credit-risk", "alias": "champion"}}
    world = settled(spec)
    world.model = resolved("4")
    world.until(lambda w: w.rollout is not None and w.rollout.weight == 10)
    world.model = resolved("5")
    world.step()
    assert world.rollout.state == RolloutState.ROLLING_BACK and world.rollout.outcome == Outcome.SUPERSEDED
    assert weights(world) == {"3": 100, "4": 0}
    world.until(lambda w: w.rollout is not None and w.rollout.canary.version == "5")
    assert "risk.credit.v4" not in world.apps
    world.until(lambda w: w.rollout is None)
    assert world.stable_version == "5"
    history = world.resource.status.rollout_history
    assert [(h.to_version, h.outcome) for h in history] == [
        ("4", Outcome.SUPERSEDED),
        ("5", Outcome.PROMOTED),
    ]
    started = [d for d in world.drafts() if d.action == AuditAction.ROLLOUT_STARTED]
    assert [d.actor for d in started] == ["steward-operator", "steward-operator"]


def test_spec_returning_to_stable_mid_rollout_cancels_it():
    world = settled()
    start(world)
    world.until(lambda w: w.rollout is not None and w.rollout.weight == 10)
    start(world, {"model": {"name": "credit-risk", "version": "3"}}, version="3")
    world.until(lambda w: w.rollout is None)
    assert world.stable_version == "3" and set(world.apps) == {"risk.credit", "risk.credit.v3"}
    assert "returned to stable version 3" in world.resource.status.rollout_history[-1].reason


def test_immediate_switches_once_warm():
    world = settled()
    start(world, with_rollout({"strategy": "immediate"}))
    world.step()
    world.step()
    assert weights(world) == {"3": 0, "4": 100}
    world.until(lambda w: w.rollout is None)
    assert world.stable_version == "4"
    assert "immediate rollout" in world.resource.status.rollout_history[-1].reason


def test_shadow_mirrors_traffic_and_never_gives_the_new_version_live_requests():
    world = settled()
    start(
        world, with_rollout({"strategy": "shadow", "shadowPercent": 50, "analysis": {"maxDisagreement": 0.1}})
    )
    world.until(lambda w: w.rollout is not None and w.rollout.state == RolloutState.PAUSED)
    config = world.router_config()
    assert config is not None and config.weights == {"3": 100, "4": 0}
    assert config.shadow is not None and (config.shadow.version, config.shadow.percent) == ("4", 50)
    assert "4" not in world.live and world.shadow["4"].requests > 0
    window = world.rollout.windows[-1]
    assert window.verdict.value == "Pass" and window.disagreement == 0.0 and window.compared >= 50
    assert "waiting for a person" in world.rollout.message  # the default shadow steps end with a pause
    command(world, "promote", "ok")
    world.until(lambda w: w.rollout is None)
    assert world.stable_version == "4"


def test_shadow_disagreement_rolls_back():
    world = settled()
    start(world, with_rollout({"strategy": "shadow", "analysis": {"maxDisagreement": 0.05}}))
    world.behaviour["4"] = Behaviour(disagree_share=0.3)
    world.until(lambda w: w.resource.status.rollout_history)
    assert "disagreement with stable 30% > 5%" in world.resource.status.rollout_history[-1].reason


def test_canary_with_disagreement_threshold_mirrors_stables_share():
    world = settled()
    start(world, with_rollout({"shadowPercent": 20, "analysis": {"maxDisagreement": 0.1}}))
    world.until(lambda w: w.rollout is not None and w.rollout.weight == 10)
    config = world.router_config()
    assert config is not None and config.shadow is not None and config.shadow.percent == 20


def test_stickiness_reaches_the_router():
    world = settled()
    start(world, with_rollout({"stickiness": {"header": "X-Customer-Id"}}))
    world.step()
    config = world.router_config()
    assert (
        config is not None and config.stickiness is not None and config.stickiness.header == "X-Customer-Id"
    )


def test_unreadable_traffic_holds_the_step():
    from steward.operator.observations import Problem

    world = settled()
    start(world)
    world.until(lambda w: w.rollout is not None and w.rollout.weight == 10)
    for _ in range(30):
        world.step(traffic=Problem(Reason.RAY_UNREACHABLE, "connection refused", True))
    assert world.rollout.weight == 10 and world.rollout.state == RolloutState.PROGRESSING
    assert "connection refused" in world.rollout.message


def test_counters_restarting_reopen_the_window():
    world = settled()
    start(world)
    world.until(lambda w: w.rollout is not None and w.rollout.window_started_at is not None)
    world.recorder_id = "rec-2"
    world.live.clear()
    world.step()
    assert "counters restarted" in world.rollout.message and not world.rollout.windows
    world.until(lambda w: w.rollout is None)
    assert world.stable_version == "4"


def test_registry_outage_mid_rollout_freezes_it():
    from steward.operator.observations import Problem

    world = settled()
    start(world)
    world.until(lambda w: w.rollout is not None and w.rollout.weight == 10)
    before = world.rollout
    applies = world.applies
    for _ in range(40):
        world.step(model=Problem(Reason.REGISTRY_UNREACHABLE, "refused", True))
    assert world.rollout == before and world.applies == applies


def test_a_failing_window_is_judged_at_its_end_not_a_tick_later():
    """Paced as the loop paces it (each pass at the decision's requeue), the pass that judges a window comes
    right after the window's interval, so a failing canary is rolled back then: the rollout tick (2 s) is not
    added to the time to rollback."""
    world = settled()
    world.behaviour["4"] = Behaviour(error_share=0.25)
    # 5 s windows on a 2 s tick: judged a whole second late if passes kept to the tick.
    start(world, with_rollout({"analysis": {"interval": "5s", "minRequests": 1}}))
    world.step()
    opened = None
    while world.rollout is not None and world.rollout.state != RolloutState.ROLLING_BACK:
        if opened is None and world.rollout.window_started_at is not None:
            opened = world.rollout.window_started_at
        due = world.decisions[-1].requeue_after_s
        world.step(2.0 if due is None else due)
    assert opened is not None and world.rollout is not None
    late = (world.now - opened).total_seconds() - 5.0
    assert 0 < late <= 0.1, late
