"""Drift of a window's inputs and predictions against a reference, with Evidently's `ValueDrift`.

Calibration (FIELD-NOTES "Calibration trap"): Evidently picks its method by the reference's size (p-value
tests at <= 1000 rows, which call any shift of a large window significant; distances above). The defaults
here are fixed instead: the Wasserstein distance in reference standard deviations for numbers and the
Jensen-Shannon distance for categories, both at 0.1, judged only from `min_rows` (2,000) rows on each side.
Measured: no-drift noise of the normed Wasserstein distance is at most about 0.05 at 5,000 rows (0.08 at
2,000, 0.15 at 1,000), and a 0.5 sd mean shift scores about 0.5. tests/unit/test_monitor_drift.py holds both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from pandas.api import types as ptypes

from steward.api.monitor_results import CaptureColumn, Check, MonitorVerdict
from steward.api.monitoring import CaptureSpec, DriftSettings, FieldPolicy
from steward.monitors.window import text_series

NUMERIC_METHOD = "wasserstein"
CATEGORICAL_METHOD = "jensenshannon"
DEFAULT_THRESHOLD = 0.1
# A prediction with at most this many distinct whole values is a class, not a number.
_MAX_CLASSES = 20


@dataclass(frozen=True)
class Column:
    name: str  # as in the reference and the report
    source: str  # as captured: input.<name>, prediction or output.<name>
    categorical: bool
    method: str
    threshold: float


@dataclass
class DriftOutcome:
    verdict: MonitorVerdict
    summary: str
    checks: list[Check] = field(default_factory=list)
    snapshot: Any = None  # Evidently's Snapshot, for the HTML report
    notes: list[str] = field(default_factory=list)


def _strip_input(frame: pd.DataFrame) -> pd.DataFrame:
    """A reference may be a training table (bare names) or captured traffic (`input.` names)."""
    renamed = {
        c: c.removeprefix(CaptureColumn.INPUT) for c in frame.columns if c.startswith(CaptureColumn.INPUT)
    }
    return frame.rename(columns=renamed)


def _is_classes(*series: pd.Series) -> bool:
    values = pd.concat([s.dropna() for s in series], ignore_index=True)
    if not ptypes.is_numeric_dtype(values) or ptypes.is_bool_dtype(values):
        return True
    return bool((values == values.round()).all()) and values.nunique() <= _MAX_CLASSES


def plan(
    current: pd.DataFrame,
    reference: pd.DataFrame,
    settings: DriftSettings,
    capture: CaptureSpec | None = None,
) -> tuple[list[Column], list[str]]:
    """The columns to compare and how; notes say what was left out and why."""
    notes: list[str] = []
    inputs = [
        c.removeprefix(CaptureColumn.INPUT) for c in current.columns if c.startswith(CaptureColumn.INPUT)
    ]
    if settings.columns is not None:
        wanted = [c.removeprefix(CaptureColumn.INPUT) for c in settings.columns]
        notes += [f"{c}: not captured" for c in wanted if c not in inputs]
        inputs = [c for c in wanted if c in inputs]
    if capture is not None:
        # A keyed hash of a value never matches the raw value in training data: every window would "drift".
        hashed = [c for c in inputs if capture.fields.get(c, capture.default_policy) is FieldPolicy.HASH]
        notes += [f"{c}: hashed at capture, not comparable with the reference" for c in hashed]
        inputs = [c for c in inputs if c not in hashed]
    pairs = [(name, f"{CaptureColumn.INPUT}{name}") for name in inputs]
    if settings.include_predictions:
        outputs = [
            c for c in current.columns if c == CaptureColumn.PREDICTION or c.startswith(CaptureColumn.OUTPUT)
        ]
        pairs += [(c, c) for c in outputs]
    columns: list[Column] = []
    for name, source in pairs:
        if name not in reference.columns:
            notes.append(f"{name}: not in the reference, not compared")
            continue
        cur, ref = current[source], reference[name]
        if source.startswith(CaptureColumn.INPUT):
            categorical = not (ptypes.is_numeric_dtype(cur) and ptypes.is_numeric_dtype(ref)) or any(
                ptypes.is_bool_dtype(s) for s in (cur, ref)
            )
        else:
            categorical = _is_classes(cur, ref)
        own = settings.per_column.get(name) or settings.per_column.get(source)
        method = (own.method if own else None) or settings.method
        threshold = (
            (own.threshold if own else None) if own and own.threshold is not None else settings.threshold
        )
        if method is None:
            method = CATEGORICAL_METHOD if categorical else NUMERIC_METHOD
            threshold = DEFAULT_THRESHOLD if threshold is None else threshold
        if threshold is None:
            threshold = _evidently_default_threshold(method, categorical)
        columns.append(Column(name, source, categorical, method, float(threshold)))
    return columns, notes


def _evidently_default_threshold(method: str, categorical: bool) -> float:
    from evidently.legacy.calculations.stattests.registry import get_stattest
    from evidently.legacy.core import ColumnType

    kind = ColumnType.Categorical if categorical else ColumnType.Numerical
    return float(get_stattest(pd.Series(dtype=float), pd.Series(dtype=float), kind, method).default_threshold)


def _frames(
    current: pd.DataFrame, reference: pd.DataFrame, columns: list[Column]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    def shaped(frame: pd.DataFrame, use_source: bool) -> pd.DataFrame:
        out = {}
        for col in columns:
            series = frame[col.source if use_source else col.name]
            # One text form on both sides: 1 (int) in training and "1" (text) in capture are one class.
            series = text_series(series) if col.categorical else pd.to_numeric(series, errors="coerce")
            out[col.name] = series.reset_index(drop=True)
        return pd.DataFrame(out)

    return shaped(current, True), shaped(reference, False)


def _detail(col: Column, value: float, drifted: bool, n_cur: int, n_ref: int) -> str:
    return (
        f"method {col.method}, statistic {value:.4f}, threshold {col.threshold:g}, "
        f"{'drift' if drifted else 'no drift'}; current rows {n_cur}, reference rows {n_ref}"
    )


def run_drift(
    current: pd.DataFrame,
    reference: pd.DataFrame,
    settings: DriftSettings,
    capture: CaptureSpec | None = None,
) -> DriftOutcome:
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift

    reference = _strip_input(reference)
    columns, notes = plan(current, reference, settings, capture)
    if not columns:
        return DriftOutcome(
            MonitorVerdict.ERROR, "no captured column is in the reference: " + "; ".join(notes), notes=notes
        )
    cur, ref = _frames(current, reference, columns)
    definition = DataDefinition(
        numerical_columns=[c.name for c in columns if not c.categorical],
        categorical_columns=[c.name for c in columns if c.categorical],
    )
    report = Report(
        [ValueDrift(column=c.name, method=c.method, threshold=c.threshold) for c in columns],
        include_tests=True,
    )
    snapshot = report.run(
        Dataset.from_pandas(cur, data_definition=definition),
        Dataset.from_pandas(ref, data_definition=definition),
    )
    figures = _figures(snapshot.dict())
    too_few = min(len(cur), len(ref)) < settings.min_rows
    checks: list[Check] = []
    for col in columns:
        value, drifted = figures[col.name]
        n_cur, n_ref = int(cur[col.name].notna().sum()), int(ref[col.name].notna().sum())
        # Which side passes: distances pass below the threshold, p-values above it.
        op = "<=" if (value < col.threshold) != drifted else ">="
        checks.append(
            Check(
                name=f"drift:{col.name}",
                value=value,
                threshold=col.threshold,
                op=op,
                passed=None if too_few else not drifted,
                detail=_detail(col, value, drifted, n_cur, n_ref),
            )
        )
    drifted_names = [c.name.removeprefix("drift:") for c in checks if c.passed is False]
    if too_few:
        verdict = MonitorVerdict.INCONCLUSIVE
        summary = (
            f"{len(cur)} window rows and {len(ref)} reference rows: fewer than min_rows {settings.min_rows} "
            "on a side, drift not judged"
        )
    else:
        breached = len(drifted_names) > settings.max_drifted_columns
        checks.append(
            Check(
                name="drift:drifted_columns",
                value=float(len(drifted_names)),
                threshold=float(settings.max_drifted_columns),
                op="<=",
                passed=not breached,
                detail=f"{len(drifted_names)} of {len(columns)} columns drifted: "
                f"{', '.join(drifted_names) or 'none'}",
            )
        )
        verdict = MonitorVerdict.BREACH if breached else MonitorVerdict.PASS
        worst = max(checks[:-1], key=lambda c: (c.passed is False, c.value or 0.0))
        summary = (
            f"{len(drifted_names)} of {len(columns)} columns drifted ({', '.join(drifted_names) or 'none'}); "
            f"largest: {worst.name} {worst.detail}"
        )
    if notes:
        summary += "; " + "; ".join(notes)
    return DriftOutcome(verdict, summary, checks, snapshot, notes)


def _figures(result: dict[str, Any]) -> dict[str, tuple[float, bool]]:
    """Per column: the statistic and whether Evidently's own test called it drift."""
    values: dict[str, tuple[str, float]] = {}
    for metric in result["metrics"]:
        config = metric["config"]
        values[metric["id"]] = (config["column"], float(metric["value"]))
    out: dict[str, tuple[float, bool]] = {}
    for test in result["tests"]:
        column, value = values[test["metric_config"]["metric_id"]]
        out[column] = (value, test["status"] != "SUCCESS")
    missing = {column for column, _ in values.values()} - set(out)
    if missing:
        raise RuntimeError(f"Evidently gave no drift test for {sorted(missing)}")
    return out
