"""A canary judged against stable over the same window: the same traffic, answered by two versions.

A canary can pass every absolute threshold and still treat a group worse than the version it would replace
(a parity ratio of 0.82 where stable has 0.97), or answer the same applicants differently. These checks say
so, with both figures, so the canary gate can refuse it.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING

from steward.api.monitor_results import NOISE_STANDARD_ERRORS, Check, MonitorVerdict
from steward.api.monitoring import DriftSettings

if TYPE_CHECKING:
    import pandas as pd

    from steward.monitors.job import Computed

DRIFTED_COLUMNS = "drift:drifted_columns"


PARITY = "demographic_parity_ratio:"


def parity_ratio_se(table: pd.DataFrame) -> float | None:
    """Standard error of the demographic parity ratio (the lowest judged group's favourable rate over the
    highest's), by the delta method from the groups' rates and sizes; None when it cannot be told."""
    if "selection_rate" not in table.columns:
        return None
    judged = table.loc[table["judged"].astype(bool) & table["selection_rate"].notna()]
    if len(judged) < 2:
        return None
    rates = judged["selection_rate"].astype(float)
    low, high = rates.idxmin(), rates.idxmax()
    variance = 0.0
    for group in (low, high):
        n = float(judged.loc[group, "count"])
        p = min(max(float(rates[group]), 0.5 / n), 1 - 0.5 / n)  # a rate of 0 or 1 still has noise
        variance += (1 - p) / (p * n)
    ratio = float(rates[low]) / max(float(rates[high]), 1e-9)
    return ratio * math.sqrt(variance)


def parity_noise(mine: dict[str, pd.DataFrame], theirs: dict[str, pd.DataFrame]) -> dict[str, float]:
    """Per parity check name: the standard error of the difference between the two versions' ratios."""
    out = {}
    for feature, table in mine.items():
        own, other = parity_ratio_se(table), parity_ratio_se(theirs[feature]) if feature in theirs else None
        if own is not None and other is not None:
            out[f"{PARITY}{feature}"] = math.hypot(own, other)
    return out


def worse_than_stable(
    canary: list[Check],
    stable: list[Check],
    stable_version: str,
    margin: float,
    noise: dict[str, float] | None = None,
) -> list[Check]:
    """One check per demographic parity ratio both versions had judged: the canary's may be at most `margin`
    below stable's, less NOISE_STANDARD_ERRORS standard errors of the difference (`noise`, per check name)
    where known.
    (Equalized-odds figures keep their own thresholds only: their labels arrive late and sparse.)"""
    theirs = {c.name: c for c in stable if c.value is not None and c.passed is not None}
    out = []
    for mine in canary:
        other = theirs.get(mine.name)
        if not mine.name.startswith(PARITY) or mine.value is None or mine.passed is None:
            continue
        if other is None or other.value is None:
            continue
        slack = NOISE_STANDARD_ERRORS * (noise or {}).get(mine.name, 0.0)
        limit = other.value - margin - slack
        detail = (
            f"canary {mine.value:.4f}, stable v{stable_version} {other.value:.4f} over the same window; "
            f"at most {margin:g} lower"
        )
        if slack:
            detail += (
                f", less {NOISE_STANDARD_ERRORS:g} standard errors of the difference "
                f"({slack / NOISE_STANDARD_ERRORS:.4f})"
            )
        out.append(
            Check(
                name=f"{mine.name} vs v{stable_version}",
                value=mine.value,
                threshold=round(limit, 6),
                op=">=",
                passed=mine.value >= limit,
                detail=detail,
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
