"""A canary judged against stable over the same window: the same traffic, answered by two versions.

A canary can pass every absolute threshold and still treat a group worse than the version it would replace
(a parity ratio of 0.82 where stable has 0.97), or answer the same applicants differently. These checks say
so, with both figures, so the canary gate can refuse it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from steward.api.monitoring import Check, DriftSettings, MonitorVerdict

if TYPE_CHECKING:
    import pandas as pd

    from steward.monitors.run import Computed

DRIFTED_COLUMNS = "drift:drifted_columns"


def worse_than_stable(
    canary: list[Check], stable: list[Check], stable_version: str, margin: float
) -> list[Check]:
    """One check per figure both versions had judged: the canary's may be at most `margin` worse than
    stable's, on the side where its own threshold passes (`>=`: lower is worse)."""
    theirs = {c.name: c for c in stable if c.value is not None and c.passed is not None}
    out = []
    for mine in canary:
        other = theirs.get(mine.name)
        if other is None or other.value is None or mine.value is None or mine.passed is None:
            continue
        limit = other.value - margin if mine.op == ">=" else other.value + margin
        passed = mine.value >= limit if mine.op == ">=" else mine.value <= limit
        out.append(
            Check(
                name=f"{mine.name} vs v{stable_version}",
                value=mine.value,
                threshold=round(limit, 6),
                op=mine.op,
                passed=passed,
                detail=f"canary {mine.value:.4f}, stable v{stable_version} {other.value:.4f} over the same "
                f"window; at most {margin:g} worse",
            )
        )
    return out


def predictions_vs_stable(
    current: pd.DataFrame, stable: pd.DataFrame, settings: DriftSettings, stable_version: str
) -> list[Check]:
    """The canary's prediction distribution against stable's over the same window (stable's answers are the
    reference), with the method and threshold prediction drift uses; unjudged under `min_rows`."""
    from steward.monitors.drift import run_drift

    only_predictions = settings.model_copy(update={"columns": [], "include_predictions": True})
    outcome = run_drift(current, stable, only_predictions)
    return [
        c.model_copy(
            update={
                "name": f"{c.name} vs v{stable_version}",
                "detail": f"{c.detail} (reference: stable v{stable_version}'s answers)",
            }
        )
        for c in outcome.checks
        if c.name != DRIFTED_COLUMNS
    ]


def combined(computed: Computed, extra: list[Check], stable_version: str) -> Computed:
    """The canary's own verdict, breached as well when it is worse than stable on any compared figure."""
    failed = [c for c in extra if c.passed is False]
    judged = [c for c in extra if c.passed is not None]
    if failed:
        worst = "; ".join(
            f"{c.name} {c.value:.4f} (limit {c.threshold:g})" for c in failed if c.value is not None
        )
        return replace(
            computed,
            verdict=MonitorVerdict.BREACH,
            summary=f"worse than stable v{stable_version} over the same window: {worst}; {computed.summary}",
            checks=computed.checks + extra,
        )
    note = (
        f"no worse than stable v{stable_version} over the same window ({len(judged)} figures compared)"
        if judged
        else f"not compared with stable v{stable_version}: too few rows or group members on a side"
    )
    return replace(computed, summary=f"{computed.summary}; {note}", checks=computed.checks + extra)
