"""Quality of a window's answers once outcomes are joined: classifier or regressor figures, judged against
absolute thresholds and against the version's training metrics in MLflow."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from steward.api.monitor_results import CaptureColumn, Check, MonitorVerdict
from steward.api.monitoring import QualitySettings
from steward.monitors.window import LABEL, text_series

CLASSIFIER_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc")
REGRESSOR_METRICS = ("mae", "rmse")


@dataclass
class QualityOutcome:
    verdict: MonitorVerdict
    summary: str
    checks: list[Check] = field(default_factory=list)
    figures: dict[str, float] = field(default_factory=dict)


def is_regression(labels: pd.Series, settings: QualitySettings) -> bool:
    wants_regression = settings.max_mae is not None or settings.max_rmse is not None
    wants_classes = any(
        v is not None
        for v in (
            settings.min_accuracy,
            settings.min_precision,
            settings.min_recall,
            settings.min_f1,
            settings.min_roc_auc,
        )
    )
    if wants_regression != wants_classes:
        return wants_regression
    numeric = pd.to_numeric(labels, errors="coerce")
    if numeric.isna().any() or ptypes.is_bool_dtype(labels):
        return False
    return not bool((numeric == numeric.round()).all())


def _positive(classes: list[str]) -> str:
    return "1" if "1" in classes else sorted(classes)[-1]


def classifier_figures(frame: pd.DataFrame) -> tuple[dict[str, float], str]:
    from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score

    y_true = text_series(frame[LABEL])
    y_pred = text_series(frame[CaptureColumn.PREDICTION]).fillna("(none)")
    classes = sorted(set(y_true) | set(y_pred))
    binary = len(classes) <= 2
    positive = _positive(classes)
    kwargs: dict[str, object] = (
        {"pos_label": positive, "average": "binary"} if binary else {"average": "macro"}
    )
    figures = {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "precision": float(precision_score(y_true, y_pred, zero_division=0, **kwargs)),
        "recall": float(recall_score(y_true, y_pred, zero_division=0, **kwargs)),
        "f1": float(f1_score(y_true, y_pred, zero_division=0, **kwargs)),
    }
    note = f"positive class {positive!r}" if binary else f"{len(classes)} classes, macro average"
    proba = f"{CaptureColumn.PROBA}{positive}"
    if binary and proba in frame.columns and y_true.nunique() == 2:
        scores = pd.to_numeric(frame[proba], errors="coerce")
        ok = scores.notna()
        figures["roc_auc"] = float(roc_auc_score((y_true[ok] == positive).astype(int), scores[ok]))
    elif binary:
        note += f"; no ROC AUC ({proba} not captured or one class only)"
    return figures, note


def regressor_figures(frame: pd.DataFrame) -> dict[str, float]:
    error = pd.to_numeric(frame[CaptureColumn.PREDICTION], errors="coerce") - pd.to_numeric(
        frame[LABEL], errors="coerce"
    )
    error = error.dropna()
    return {"mae": float(error.abs().mean()), "rmse": float(np.sqrt((error**2).mean()))}


def _training(training: dict[str, float], name: str) -> float | None:
    for key in (name, f"training_{name}", f"train_{name}"):
        if key in training:
            return training[key]
    return None


def run_quality(frame: pd.DataFrame, settings: QualitySettings, training: dict[str, float]) -> QualityOutcome:
    if LABEL not in frame.columns or CaptureColumn.PREDICTION not in frame.columns:
        return QualityOutcome(MonitorVerdict.INCONCLUSIVE, "no outcomes joined (or no prediction captured)")
    labelled = frame.loc[frame[LABEL].notna()].reset_index(drop=True)
    n = len(labelled)
    if n == 0:
        return QualityOutcome(
            MonitorVerdict.INCONCLUSIVE, f"0 of {len(frame)} rows labelled: nothing to judge"
        )
    regression = is_regression(labelled[LABEL], settings)
    if regression:
        figures, note = regressor_figures(labelled), "regressor"
        limits = {"mae": (settings.max_mae, "<="), "rmse": (settings.max_rmse, "<=")}
    else:
        figures, note = classifier_figures(labelled)
        limits = {
            "accuracy": (settings.min_accuracy, ">="),
            "precision": (settings.min_precision, ">="),
            "recall": (settings.min_recall, ">="),
            "f1": (settings.min_f1, ">="),
            "roc_auc": (settings.min_roc_auc, ">="),
        }
    enough = n >= settings.min_labelled_rows
    coverage = f"{n} labelled of {len(frame)} rows ({n / len(frame):.1%})"
    checks: list[Check] = []
    for name, value in figures.items():
        limit, op = limits[name]
        trained = None if regression else _training(training, name)
        bounds = [
            b
            for b in (
                limit,
                None
                if trained is None or settings.max_drop_from_training is None
                else trained - settings.max_drop_from_training,
            )
            if b is not None
        ]
        # The stricter of the absolute floor and the allowed drop below training.
        threshold = max(bounds) if bounds else None
        detail = f"{note}; {coverage}"
        if trained is not None:
            detail += f"; training {trained:.4f}"
        if threshold is None or math.isnan(value):
            passed = None
        elif not enough:
            passed = None
            detail += f"; fewer than min_labelled_rows {settings.min_labelled_rows}: not judged"
        else:
            passed = value >= threshold if op == ">=" else value <= threshold
        checks.append(Check(name=name, value=value, threshold=threshold, op=op, passed=passed, detail=detail))
    failed = [c for c in checks if c.passed is False]
    figures_text = ", ".join(f"{k} {v:.3f}" for k, v in figures.items())
    if not enough:
        return QualityOutcome(
            MonitorVerdict.INCONCLUSIVE,
            f"{coverage}: fewer than min_labelled_rows {settings.min_labelled_rows}; {figures_text}",
            checks,
            figures,
        )
    if failed:
        text = "; ".join(
            f"{c.name} {c.value:.3f} (limit {c.op} {c.threshold:.3f})"
            for c in failed
            if c.value is not None and c.threshold is not None
        )
        return QualityOutcome(MonitorVerdict.BREACH, f"{text}; {coverage}", checks, figures)
    return QualityOutcome(MonitorVerdict.PASS, f"{figures_text}; {coverage}", checks, figures)
