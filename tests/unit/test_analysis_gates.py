"""One analysis window judged: rejections (4xx) and latency against stable in the same window (pure)."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

import pytest
from builders import T0, resolved
from rich.console import Console
from world import Behaviour, World, settled

from steward.api.conditions import ConditionType, Reason
from steward.api.rollout import (
    Analysis,
    Outcome,
    RolloutSpec,
    RolloutState,
    Strategy,
    Verdict,
    WindowResult,
)
from steward.api.serve_app import LATENCY_BUCKETS_MS, PairCounts, TrafficCounts, TrafficStats
from steward.audit.records import AuditAction
from steward.cli.rollout_view import windows_table
from steward.operator.analysis import judge_window, latency_quantile_ms
from steward.operator.status import find


@dataclass
class Side:
    """One version's traffic over the window: how many requests, how many 5xx and 4xx, and their latencies
    as (ms, count) groups; requests not in a group take 4 ms."""

    requests: int
    errors: int = 0
    rejected: int = 0
    latencies: list[tuple[float, int]] = field(default_factory=list)

    def counts(self) -> TrafficCounts:
        buckets = [0] * (len(LATENCY_BUCKETS_MS) + 1)
        rest = self.requests - sum(n for _, n in self.latencies)
        for ms, n in [*self.latencies, (4.0, rest)]:
            buckets[bisect.bisect_left(LATENCY_BUCKETS_MS, ms)] += n
        return TrafficCounts(
            requests=self.requests, errors=self.errors, rejected=self.rejected, latency_ms_buckets=buckets
        )


# p95s of the slowdown seen on a loaded machine: canary 189 ms, stable 196 ms, both in (150, 200].
SEEN_CANARY = Side(1000, latencies=[(50, 773), (175, 227)])
SEEN_STABLE = Side(1000, latencies=[(50, 375), (175, 625)])
CLEAN = Side(1000)


def judge(canary: Side, stable: Side, strategy: Strategy = Strategy.CANARY, **analysis: Any):
    end = TrafficStats(
        recorder_id="r",
        live={"3": stable.counts(), **({} if strategy == Strategy.SHADOW else {"4": canary.counts()})},
        shadow={"4": canary.counts()} if strategy == Strategy.SHADOW else {},
        pairs={"4": PairCounts(compared=10, disagreed=0)} if strategy == Strategy.SHADOW else {},
    )
    return judge_window(
        Analysis.model_validate(analysis), strategy, "4", "3", TrafficStats(recorder_id="r"), end
    )


def test_the_seen_slowdown_has_the_p95s_it_claims():
    assert round(latency_quantile_ms(SEEN_CANARY.counts().latency_ms_buckets, 0.95) or 0) == 189
    assert round(latency_quantile_ms(SEEN_STABLE.counts().latency_ms_buckets, 0.95) or 0) == 196


CASES = [
    # --- rejections (4xx)
    pytest.param(
        Side(120, rejected=120),
        CLEAN,
        {},
        Verdict.FAIL,
        "rejection rate 100% vs stable 0% (+100 points > 5 points) over 120 requests",
        id="an all-4xx canary fails",
    ),
    pytest.param(
        Side(200, rejected=20),
        Side(1000, rejected=100),
        {},
        Verdict.PASS,
        "rejection rate 10% vs stable 10%",
        id="rejecting the same share of bad input as stable passes",
    ),
    pytest.param(
        Side(200, rejected=30),
        Side(1000, rejected=100),
        {},
        Verdict.PASS,
        "rejection rate 15% vs stable 10%",
        id="exactly the allowed increase passes",
    ),
    pytest.param(
        Side(200, rejected=32),
        Side(1000, rejected=100),
        {},
        Verdict.FAIL,
        "rejection rate 16% vs stable 10% (+6 points > 5 points) over 200 requests",
        id="more than the allowed increase fails",
    ),
    pytest.param(
        Side(200, rejected=20),
        Side(1000, rejected=100),
        {"maxRejectionRate": 0.05},
        Verdict.FAIL,
        "rejection rate 10% > 5% over 200 requests",
        id="an absolute bound judges whatever stable does",
    ),
    pytest.param(
        Side(120, rejected=120),
        CLEAN,
        {"maxRejectionRateIncrease": 1},
        Verdict.PASS,
        "rejection rate 100% vs stable 0%",
        id="an increase of 1 turns the rejection gate off",
    ),
    pytest.param(
        Side(120, rejected=120),
        Side(5),
        {},
        Verdict.INCONCLUSIVE,
        "only 5 request(s) reached stable version 3 in the window; 50 are needed to compare rejection rate "
        "100% with it over 120 requests",
        id="too little stable traffic to compare rejections is inconclusive",
    ),
    pytest.param(
        Side(120, rejected=3),
        Side(5),
        {},
        Verdict.PASS,
        "rejection rate 2.5%, p95 4.9 ms over 120 requests",
        id="rejecting less than the allowed increase needs no stable figures",
    ),
    pytest.param(
        Side(120, errors=30, rejected=120),
        Side(5),
        {},
        Verdict.FAIL,
        "error rate 25% > 1% over 120 requests",
        id="a failure decides even when another gate cannot compare",
    ),
    pytest.param(
        Side(400, errors=100, rejected=40),
        Side(1000, rejected=100),
        {},
        Verdict.FAIL,
        "error rate 25% > 1% over 400 requests",
        id="errors (5xx) are judged as before, apart from rejections",
    ),
    # --- latency
    pytest.param(
        SEEN_CANARY,
        SEEN_STABLE,
        {},
        Verdict.PASS,
        "p95 189 ms vs stable 196 ms over 1000 requests",
        id="the seen slowdown of the whole machine passes by default",
    ),
    pytest.param(
        SEEN_CANARY,
        SEEN_STABLE,
        {"maxLatencyP95Ms": 150},
        Verdict.FAIL,
        "latency p95 189 ms > 150 ms over 1000 requests",
        id="an absolute bound still judges when set",
    ),
    pytest.param(
        Side(200, latencies=[(180, 200)]),
        Side(1000, latencies=[(60, 1000)]),
        {},
        Verdict.FAIL,
        "latency p95 198 ms > 1.5 x stable's 74 ms (+124 ms > 10 ms tolerated) over 200 requests",
        id="a canary 3x slower than stable fails",
    ),
    pytest.param(
        Side(200, latencies=[(12, 200)]),
        Side(1000),
        {},
        Verdict.PASS,
        "p95 15 ms vs stable 4.9 ms",
        id="a few ms more passes whatever the ratio",
    ),
    pytest.param(
        Side(200, latencies=[(12, 200)]),
        Side(1000),
        {"latencyToleranceMs": 0},
        Verdict.FAIL,
        "latency p95 15 ms > 1.5 x stable's 4.9 ms",
        id="without tolerance a few ms more fail the ratio",
    ),
    pytest.param(
        Side(200, latencies=[(180, 200)]),
        Side(1000, latencies=[(60, 1000)]),
        {"maxLatencyP95Ratio": 1000},
        Verdict.PASS,
        "p95 198 ms vs stable 74 ms",
        id="a large ratio turns the relative latency gate off",
    ),
    pytest.param(
        Side(200, latencies=[(90, 200)]),
        Side(1000, latencies=[(60, 1000)]),
        {"maxLatencyP95IncreaseMs": 10},
        Verdict.FAIL,
        "latency p95 99 ms exceeds stable's 74 ms by more than 10 ms over 200 requests",
        id="an increase in ms judges against stable too",
    ),
    pytest.param(
        Side(200, latencies=[(180, 200)]),
        Side(5),
        {},
        Verdict.INCONCLUSIVE,
        "only 5 request(s) reached stable version 3 in the window; 50 are needed to compare latency p95 "
        "198 ms with it over 200 requests",
        id="too little stable traffic to compare latency is inconclusive, not failed",
    ),
    pytest.param(
        Side(120),
        CLEAN,
        {},
        Verdict.PASS,
        "error rate 0% <= 1%, rejection rate 0% vs stable 0%, p95 4.9 ms vs stable 4.9 ms over 120 requests",
        id="a healthy canary passes and says its figures",
    ),
]


@pytest.mark.parametrize(("canary", "stable", "analysis", "verdict", "summary"), CASES)
def test_a_window_is_judged_against_stable(canary, stable, analysis, verdict, summary):
    judgement = judge(canary, stable, **analysis)
    assert (judgement.verdict, summary in judgement.summary) == (verdict, True), judgement.summary


def test_the_window_keeps_the_rejection_figures_for_status():
    judgement = judge(Side(120, rejected=120), Side(1000, rejected=100))
    assert (judgement.canary.rejected, judgement.canary.rejection_rate) == (120, 1.0)
    assert (judgement.stable.rejected, judgement.stable.rejection_rate) == (100, 0.1)


def test_a_shadow_canary_that_errors_fails_although_too_few_pairs_were_compared():
    judgement = judge(Side(120, errors=60), CLEAN, Strategy.SHADOW, maxDisagreement=0.1)
    assert judgement.verdict == Verdict.FAIL and judgement.summary.startswith("error rate 50% > 1%")
    judgement = judge(Side(120), CLEAN, Strategy.SHADOW, maxDisagreement=0.1)
    assert judgement.verdict == Verdict.INCONCLUSIVE
    assert judgement.summary.startswith("only 10 shadowed request(s) compared")


def test_the_defaults_judge_rejections_and_latency_against_stable():
    analysis = RolloutSpec.model_validate({}).analysis
    assert (analysis.max_rejection_rate_increase, analysis.max_latency_p95_ratio) == (0.05, 1.5)
    assert (analysis.max_rejection_rate, analysis.max_latency_p95_ms, analysis.max_latency_p99_ms) == (
        None,
        None,
        None,
    )
    assert analysis.latency_tolerance_ms == 10


@pytest.mark.parametrize(
    "bad",
    [
        {"maxRejectionRate": 1.5},
        {"maxRejectionRateIncrease": -0.1},
        {"maxRejectionRateIncrease": 2},
        {"maxLatencyP95Ratio": 0},
        {"maxLatencyP95IncreaseMs": 0},
        {"latencyToleranceMs": -1},
    ],
)
def test_out_of_range_thresholds_are_refused(bad):
    with pytest.raises(ValueError):
        Analysis.model_validate(bad)


# ---------------------------------------------------------------------- whole rollouts in the pretend world


def rollout_to_the_end(behaviours: dict[str, Behaviour], rollout: dict[str, Any] | None = None) -> World:
    world = settled()
    world.behaviour.update(behaviours)
    world.change_spec(
        {"model": {"name": "credit-risk", "version": "4"}, **({"rollout": rollout} if rollout else {})},
        resolved("4"),
    )
    world.until(
        lambda w: (
            bool(w.resource.status.rollout_history)
            or (w.rollout is not None and w.rollout.state == RolloutState.PAUSED)
        )
    )
    return world


def test_a_canary_that_rejects_every_request_is_rolled_back_and_says_why():
    world = rollout_to_the_end({"4": Behaviour(reject_share=1.0)})
    (record,) = world.resource.status.rollout_history
    why = "rejection rate 100% vs stable 0% (+100 points > 5 points) over 60 requests"
    assert (record.outcome, record.reason) == (Outcome.ROLLED_BACK, f"analysis failed: {why}")
    degraded = find(world.resource.status.conditions, ConditionType.DEGRADED)
    assert degraded is not None and degraded.reason == Reason.ROLLED_BACK and why in degraded.message
    verdict = [d for d in world.drafts() if d.action == AuditAction.ANALYSIS_VERDICT][-1]
    assert verdict.reason == f"Fail: {why}"
    assert verdict.evidence["window"]["canary"]["rejectionRate"] == 1.0
    assert verdict.evidence["thresholds"]["maxRejectionRateIncrease"] == 0.05
    assert world.stable_version == "3"


def test_a_canary_that_rejects_what_stable_rejects_is_promoted():
    world = rollout_to_the_end({"3": Behaviour(reject_share=0.1), "4": Behaviour(reject_share=0.1)})
    (record,) = world.resource.status.rollout_history
    assert record.outcome == Outcome.PROMOTED and world.stable_version == "4"


def test_a_healthy_canary_is_promoted_when_the_whole_machine_slows_down():
    world = rollout_to_the_end({"3": Behaviour(latency_ms=196), "4": Behaviour(latency_ms=189)})
    (record,) = world.resource.status.rollout_history
    assert record.outcome == Outcome.PROMOTED and world.stable_version == "4"


def test_a_canary_three_times_slower_than_stable_is_rolled_back():
    world = rollout_to_the_end({"3": Behaviour(latency_ms=60), "4": Behaviour(latency_ms=180)})
    (record,) = world.resource.status.rollout_history
    assert record.outcome == Outcome.ROLLED_BACK
    assert record.reason.startswith("analysis failed: latency p95 198 ms > 1.5 x stable's 74 ms")


def test_too_little_stable_traffic_to_compare_pauses_instead_of_failing():
    steps = [{"setWeight": 95}, {"analysis": {}}]
    world = rollout_to_the_end({"4": Behaviour(latency_ms=180)}, {"steps": steps})
    assert (
        world.rollout.state == RolloutState.PAUSED
        and world.rollout.windows[-1].verdict == Verdict.INCONCLUSIVE
    )
    wanted = "only 30 request(s) reached stable version 3 in the window; 50 are needed to compare latency p95"
    assert f"inconclusive: {wanted} 198 ms" in world.rollout.message


def test_the_windows_table_shows_both_rejection_rates():
    judgement = judge(Side(120, rejected=120), Side(1000, rejected=100))
    window = WindowResult(
        started_at=T0,
        ended_at=T0,
        verdict=judgement.verdict,
        summary=judgement.summary,
        canary=judgement.canary,
        stable=judgement.stable,
    )
    console = Console(record=True, width=250)
    console.print(windows_table([window]))
    out = console.export_text()
    assert "REJECTED" in out and "100.00% / 10.00%" in out
