"""Judge one analysis window: the new version against stable, from the router's cumulative counters (pure).

The router's figures only grow (like Prometheus counters), so a window's figures are the difference between
the snapshot taken when the window opened, kept in status, and the one read when it closes. That keeps the
judgement restart-safe: a new operator finds the opening snapshot where the old one left it.
"""

from __future__ import annotations

from dataclasses import dataclass

from steward.api.rollout import Analysis, Strategy, Verdict, VersionWindow
from steward.api.serve_app import LATENCY_BUCKETS_MS, PairCounts, TrafficCounts, TrafficStats


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    summary: str
    canary: VersionWindow
    stable: VersionWindow
    disagreement: float | None
    compared: int


def _minus(now: TrafficCounts | None, then: TrafficCounts | None) -> TrafficCounts:
    now = now or TrafficCounts()
    then = then or TrafficCounts()
    width = len(LATENCY_BUCKETS_MS) + 1
    a = (now.latency_ms_buckets + [0] * width)[:width]
    b = (then.latency_ms_buckets + [0] * width)[:width]
    return TrafficCounts(
        requests=now.requests - then.requests,
        errors=now.errors - then.errors,
        rejected=now.rejected - then.rejected,
        latency_ms_buckets=[x - y for x, y in zip(a, b, strict=True)],
    )


def latency_quantile_ms(buckets: list[int], q: float) -> float | None:
    """Estimate a latency quantile from histogram buckets, interpolating inside the bucket (as Prometheus'
    histogram_quantile does); latencies beyond the last bound count as the last bound."""
    total = sum(buckets)
    if total <= 0:
        return None
    rank = q * total
    seen = 0
    for i, count in enumerate(buckets):
        if count and seen + count >= rank:
            if i >= len(LATENCY_BUCKETS_MS):
                return float(LATENCY_BUCKETS_MS[-1])
            lower = LATENCY_BUCKETS_MS[i - 1] if i > 0 else 0.0
            upper = LATENCY_BUCKETS_MS[i]
            return float(lower + (upper - lower) * (rank - seen) / count)
        seen += count
    return float(LATENCY_BUCKETS_MS[-1])


def figures(counts: TrafficCounts) -> VersionWindow:
    return VersionWindow(
        requests=counts.requests,
        errors=counts.errors,
        error_rate=counts.errors / counts.requests if counts.requests else None,
        rejected=counts.rejected,
        rejection_rate=counts.rejected / counts.requests if counts.requests else None,
        latency_p95_ms=latency_quantile_ms(counts.latency_ms_buckets, 0.95),
        latency_p99_ms=latency_quantile_ms(counts.latency_ms_buckets, 0.99),
    )


# Rates are ratios of integers: 0.15 - 0.10 must not exceed a 0.05 threshold by a rounding error.
_EPSILON = 1e-9


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%".replace(".0%", "%")


def _points(x: float) -> str:
    return f"{100 * x:.1f}".removesuffix(".0") + " points"


def _ms(x: float) -> str:
    return f"{x:.0f} ms" if x >= 10 else f"{x:.1f} ms"


@dataclass
class _Gates:
    """What the gates found: failures decide the window; otherwise a gate that needed a figure it could not
    have makes it inconclusive."""

    failures: list[str]
    missing: list[str]


def _error_gates(
    analysis: Analysis, canary: VersionWindow, stable: VersionWindow, over: str, g: _Gates
) -> None:
    rate = canary.error_rate or 0.0
    if rate > analysis.max_error_rate + _EPSILON:
        g.failures.append(f"error rate {_pct(rate)} > {_pct(analysis.max_error_rate)} {over}")
    increase, stable_rate = analysis.max_error_rate_increase, stable.error_rate
    if increase is not None and stable_rate is not None and rate - stable_rate > increase + _EPSILON:
        g.failures.append(
            f"error rate {_pct(rate)} exceeds stable's {_pct(stable_rate)} by more than "
            f"{_pct(increase)} {over}"
        )


def _rejection_gates(
    analysis: Analysis, canary: VersionWindow, stable: VersionWindow | None, over: str, g: _Gates
) -> None:
    """Refusing input is failing too when stable accepts it; refusing what stable refuses is not."""
    rate = canary.rejection_rate or 0.0
    bound = analysis.max_rejection_rate
    if bound is not None and rate > bound + _EPSILON:
        g.failures.append(f"rejection rate {_pct(rate)} > {_pct(bound)} {over}")
    increase = analysis.max_rejection_rate_increase
    if stable is None:
        # Stable's rate is at least 0: a canary rejecting no more than the allowed increase passes anyway.
        if rate > increase + _EPSILON:
            g.missing.append(f"rejection rate {_pct(rate)}")
        return
    stable_rate = stable.rejection_rate or 0.0
    if rate - stable_rate > increase + _EPSILON:
        g.failures.append(
            f"rejection rate {_pct(rate)} vs stable {_pct(stable_rate)} "
            f"(+{_points(rate - stable_rate)} > {_points(increase)}) {over}"
        )


def _latency_gates(
    analysis: Analysis, canary: VersionWindow, stable: VersionWindow | None, over: str, g: _Gates
) -> None:
    """Judged against stable in the same window by default, so that a machine slowing down for both fails
    neither; absolute bounds only where the spec sets them."""
    p95, p99 = canary.latency_p95_ms, canary.latency_p99_ms
    if analysis.max_latency_p95_ms is not None and p95 is not None and p95 > analysis.max_latency_p95_ms:
        g.failures.append(f"latency p95 {_ms(p95)} > {_ms(analysis.max_latency_p95_ms)} {over}")
    if analysis.max_latency_p99_ms is not None and p99 is not None and p99 > analysis.max_latency_p99_ms:
        g.failures.append(f"latency p99 {_ms(p99)} > {_ms(analysis.max_latency_p99_ms)} {over}")
    if p95 is None:
        return
    stable_p95 = stable.latency_p95_ms if stable is not None else None
    ratio, tolerance = analysis.max_latency_p95_ratio, analysis.latency_tolerance_ms
    increase = analysis.max_latency_p95_increase_ms
    if stable_p95 is None:
        # Stable's p95 is at least 0: a canary within the tolerance (or the increase) passes anyway.
        if p95 > tolerance or (increase is not None and p95 > increase):
            g.missing.append(f"latency p95 {_ms(p95)}")
        return
    if p95 > ratio * stable_p95 and p95 - stable_p95 > tolerance:
        g.failures.append(
            f"latency p95 {_ms(p95)} > {ratio:g} x stable's {_ms(stable_p95)} "
            f"(+{_ms(p95 - stable_p95)} > {_ms(tolerance)} tolerated) {over}"
        )
    if increase is not None and p95 - stable_p95 > increase:
        g.failures.append(
            f"latency p95 {_ms(p95)} exceeds stable's {_ms(stable_p95)} by more than {_ms(increase)} {over}"
        )


def canary_requests(strategy: Strategy, canary_version: str, start: TrafficStats, end: TrafficStats) -> int:
    """Requests the new version answered (or, in a shadow rollout, was mirrored) since the window opened."""
    source, then = (end.shadow, start.shadow) if strategy == Strategy.SHADOW else (end.live, start.live)
    return figures(_minus(source.get(canary_version), then.get(canary_version))).requests


def judge_window(
    analysis: Analysis,
    strategy: Strategy,
    canary_version: str,
    stable_version: str,
    start: TrafficStats,
    end: TrafficStats,
) -> Judgement:
    """Pass, fail or inconclusive, with the measurement that decided it in words.

    In a shadow rollout the new version's figures are those of the mirrored requests; otherwise those of the
    live requests it answered. Stable's are always its live figures over the same window.
    """
    canary_source = end.shadow if strategy == Strategy.SHADOW else end.live
    canary_start = start.shadow if strategy == Strategy.SHADOW else start.live
    canary = figures(_minus(canary_source.get(canary_version), canary_start.get(canary_version)))
    stable = figures(_minus(end.live.get(stable_version), start.live.get(stable_version)))
    pairs_now = end.pairs.get(canary_version) or PairCounts()
    pairs_then = start.pairs.get(canary_version) or PairCounts()
    compared = pairs_now.compared - pairs_then.compared
    disagreed = pairs_now.disagreed - pairs_then.disagreed
    disagreement = disagreed / compared if compared > 0 else None

    def judged(verdict: Verdict, summary: str) -> Judgement:
        return Judgement(verdict, summary, canary, stable, disagreement, compared)

    n = canary.requests
    if n < analysis.min_requests:
        return judged(
            Verdict.INCONCLUSIVE,
            f"only {n} request(s) reached version {canary_version} in the window; "
            f"{analysis.min_requests} are needed to judge it",
        )
    over = f"over {n} requests"
    # Stable's figures are compared only when it saw enough requests to have figures worth comparing.
    baseline = stable if stable.requests >= analysis.min_requests else None
    gates = _Gates(failures=[], missing=[])
    _error_gates(analysis, canary, stable, over, gates)
    _rejection_gates(analysis, canary, baseline, over, gates)
    _latency_gates(analysis, canary, baseline, over, gates)
    pending: str | None = None
    if analysis.max_disagreement is not None:
        if compared < analysis.min_requests:
            pending = (
                f"only {compared} shadowed request(s) compared in the window; "
                f"{analysis.min_requests} are needed to judge disagreement"
            )
        elif disagreement is not None and disagreement > analysis.max_disagreement:
            gates.failures.append(
                f"disagreement with stable {_pct(disagreement)} > {_pct(analysis.max_disagreement)} "
                f"over {compared} compared requests"
            )
    if gates.failures:
        return judged(Verdict.FAIL, "; ".join(gates.failures))
    if gates.missing:
        return judged(
            Verdict.INCONCLUSIVE,
            f"only {stable.requests} request(s) reached stable version {stable_version} in the window; "
            f"{analysis.min_requests} are needed to compare {' and '.join(gates.missing)} with it {over}",
        )
    if pending is not None:
        return judged(Verdict.INCONCLUSIVE, pending)
    return judged(Verdict.PASS, _passed(analysis, canary, baseline, disagreement, over))


def _passed(
    analysis: Analysis,
    canary: VersionWindow,
    stable: VersionWindow | None,
    disagreement: float | None,
    over: str,
) -> str:
    rate, rejected = canary.error_rate or 0.0, canary.rejection_rate or 0.0
    parts = [f"error rate {_pct(rate)} <= {_pct(analysis.max_error_rate)}"]
    if stable is None:
        parts.append(f"rejection rate {_pct(rejected)}")
    else:
        parts.append(f"rejection rate {_pct(rejected)} vs stable {_pct(stable.rejection_rate or 0.0)}")
    p95 = canary.latency_p95_ms
    if p95 is not None:
        stable_p95 = stable.latency_p95_ms if stable is not None else None
        parts.append(f"p95 {_ms(p95)}" + ("" if stable_p95 is None else f" vs stable {_ms(stable_p95)}"))
    if disagreement is not None:
        parts.append(f"disagreement {_pct(disagreement)}")
    return f"{', '.join(parts)} {over}"
