"""Unequal treatment of groups, with fairlearn: per `sensitive.*` column of the window.

Label-free: the demographic parity ratio of the favourable outcome (lowest group rate / highest; the
four-fifths screen). With joined outcomes: the equalized-odds and equal-opportunity differences. Groups below
`min_group_size` are reported and left out of the figures: a group of three says nothing about a model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from steward.api.monitor_results import CaptureColumn, Check, MonitorVerdict
from steward.api.monitoring import FairnessSettings
from steward.monitors.window import LABEL, text_series

MISSING_GROUP = "(missing)"


@dataclass
class FairnessOutcome:
    verdict: MonitorVerdict
    summary: str
    checks: list[Check] = field(default_factory=list)
    # Per sensitive feature: rows of group, count, selection rate (and TPR/FPR with labels), judged.
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)


def _rates(detail: pd.Series) -> str:
    return ", ".join(f"{group} {rate:.3f}" for group, rate in detail.items())


def _judge(name: str, value: float, threshold: float | None, op: str, detail: str) -> Check:
    if value != value:  # NaN: a group without the needed positives or negatives
        return Check(
            name=name, value=None, threshold=threshold, op=op, passed=None, detail=detail + "; undefined"
        )
    if threshold is None:
        return Check(name=name, value=value, op=op, detail=detail + "; reported, no threshold set")
    passed = value >= threshold if op == ">=" else value <= threshold
    return Check(name=name, value=value, threshold=threshold, op=op, passed=passed, detail=detail)


def _feature_checks(
    feature: str,
    groups: pd.Series,
    favourable: pd.Series,
    truth: pd.Series | None,
    settings: FairnessSettings,
) -> tuple[list[Check], pd.DataFrame]:
    # One MetricFrame per figure family, its own disparity methods on top: fairlearn's
    # demographic_parity_ratio / equalized_odds_difference would each build the same frame again (a third of
    # a 100k-row run's time, measured).
    from fairlearn.metrics import MetricFrame, false_positive_rate, selection_rate, true_positive_rate

    sizes = groups.value_counts()
    judged = sorted(str(g) for g in sizes[sizes >= settings.min_group_size].index)
    small = {str(g): int(n) for g, n in sizes[sizes < settings.min_group_size].items()}
    note = f"; not judged (< {settings.min_group_size} rows): {small}" if small else ""
    table = pd.DataFrame({"count": sizes.astype(int)})
    table["judged"] = [str(g) in judged for g in table.index]
    if len(judged) < 2:
        detail = f"{len(judged)} group(s) of at least {settings.min_group_size} rows: {judged}{note}"
        return [
            Check(
                name=f"demographic_parity_ratio:{feature}",
                value=None,
                threshold=settings.min_demographic_parity_ratio,
                op=">=",
                passed=None,
                detail=detail,
            )
        ], table
    keep = groups.isin(judged)
    g, fav = groups[keep], favourable[keep]
    frame = MetricFrame(
        metrics={"selection_rate": selection_rate}, y_true=fav, y_pred=fav, sensitive_features=g
    )
    table.loc[frame.by_group.index, "selection_rate"] = frame.by_group["selection_rate"]
    ratio = float(frame.ratio(method="between_groups")["selection_rate"])
    counts = {str(k): int(v) for k, v in sizes[sizes.index.isin(judged)].items()}
    checks = [
        _judge(
            f"demographic_parity_ratio:{feature}",
            ratio,
            settings.min_demographic_parity_ratio,
            ">=",
            f"favourable ({settings.favourable_outcome!r}) rate by group: "
            f"{_rates(frame.by_group['selection_rate'])}; "
            f"rows {counts}{note}",
        )
    ]
    if truth is None:
        return checks, table
    labelled = keep & truth.notna()
    lsizes = groups[labelled].value_counts()
    ljudged = sorted(str(x) for x in lsizes[lsizes >= settings.min_group_size].index)
    lsmall = {str(x): int(n) for x, n in lsizes[lsizes < settings.min_group_size].items()}
    lnote = f"; not judged (< {settings.min_group_size} labelled rows): {lsmall}" if lsmall else ""
    names = (f"equalized_odds_difference:{feature}", f"equal_opportunity_difference:{feature}")
    limits = (settings.max_equalized_odds_difference, settings.max_equal_opportunity_difference)
    if len(ljudged) < 2:
        detail = f"{len(ljudged)} group(s) with at least {settings.min_group_size} labelled rows{lnote}"
        return checks + [
            Check(name=n, value=None, threshold=t, passed=None, detail=detail)
            for n, t in zip(names, limits, strict=True)
        ], table
    rows = labelled & groups.isin(ljudged)
    y_true, y_pred, lg = truth[rows].astype(int), fav[rows], groups[rows]
    rate_frame = MetricFrame(
        metrics={"tpr": true_positive_rate, "fpr": false_positive_rate},
        y_true=y_true,
        y_pred=y_pred,
        sensitive_features=lg,
    )
    rates = rate_frame.by_group
    table.loc[rates.index, "true_positive_rate"] = rates["tpr"]
    table.loc[rates.index, "false_positive_rate"] = rates["fpr"]
    gaps = rate_frame.difference(method="between_groups")
    eod = float(max(gaps["tpr"], gaps["fpr"]))  # fairlearn's equalized_odds_difference (worst case)
    eop = float(gaps["tpr"])  # its equal_opportunity_difference
    base = f"true positive rate by group: {_rates(rates['tpr'])}; false positive rate: {_rates(rates['fpr'])}"
    checks.append(_judge(names[0], eod, limits[0], "<=", f"{base}; labelled rows {dict(lsizes)}{lnote}"))
    checks.append(_judge(names[1], eop, limits[1], "<=", f"{base}{lnote}"))
    return checks, table


def run_fairness(frame: pd.DataFrame, settings: FairnessSettings) -> FairnessOutcome:
    features = [c for c in frame.columns if c.startswith(CaptureColumn.SENSITIVE)]
    if not features:
        return FairnessOutcome(
            MonitorVerdict.INCONCLUSIVE, "no sensitive.* column in the window: nothing to judge"
        )
    if CaptureColumn.PREDICTION not in frame.columns:
        return FairnessOutcome(MonitorVerdict.ERROR, "the window has no prediction column")
    favourable = (text_series(frame[CaptureColumn.PREDICTION]) == settings.favourable_outcome).astype(int)
    truth: pd.Series | None = None
    if LABEL in frame.columns and frame[LABEL].notna().any():
        labels = text_series(frame[LABEL])
        truth = (labels == settings.favourable_outcome).astype(float).where(labels.notna())
    checks: list[Check] = []
    tables: dict[str, Any] = {}
    for column in features:
        feature = column.removeprefix(CaptureColumn.SENSITIVE)
        groups = text_series(frame[column]).fillna(MISSING_GROUP)
        found, table = _feature_checks(feature, groups, favourable, truth, settings)
        checks += found
        tables[feature] = table
    failed = [c for c in checks if c.passed is False]
    judged = [c for c in checks if c.passed is not None]
    if failed:
        verdict = MonitorVerdict.BREACH
        summary = "; ".join(
            f"{c.name} {c.value:.3f} (limit {c.op} {c.threshold:g})" for c in failed if c.value is not None
        )
    elif judged:
        verdict = MonitorVerdict.PASS
        summary = "; ".join(f"{c.name} {c.value:.3f}" for c in judged if c.value is not None)
    else:
        verdict = MonitorVerdict.INCONCLUSIVE
        summary = "no sensitive feature has two groups large enough to judge: " + "; ".join(
            c.detail for c in checks
        )
    if truth is None:
        summary += "; no outcomes joined yet: equalized odds and equal opportunity not judged"
    return FairnessOutcome(verdict, summary, checks, tables)
