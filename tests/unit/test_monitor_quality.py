"""Quality monitor: classifier and regressor figures, absolute and training-relative thresholds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from steward.api.monitor_results import MonitorVerdict
from steward.api.monitoring import QualitySettings
from steward.monitors.quality import run_quality


def classified(n: int, accuracy: float, labelled: float = 1.0, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 2, n)
    right = rng.random(n) < accuracy
    prediction = np.where(right, truth, 1 - truth)
    proba = np.clip(np.where(prediction == 1, 0.7, 0.3) + rng.normal(0, 0.1, n), 0, 1)
    label = pd.Series(truth, dtype="object").where(rng.random(n) < labelled)
    return pd.DataFrame({"prediction": prediction, "proba.1": proba, "proba.0": 1 - proba, "label": label})


def test_classifier_figures_and_absolute_thresholds() -> None:
    outcome = run_quality(classified(2000, 0.9), QualitySettings(min_accuracy=0.95, min_recall=0.5), {})
    assert outcome.verdict is MonitorVerdict.BREACH
    checks = {c.name: c for c in outcome.checks}
    assert set(checks) == {"accuracy", "precision", "recall", "f1", "roc_auc"}
    assert checks["accuracy"].value == pytest.approx(0.9, abs=0.03) and checks["accuracy"].passed is False
    assert checks["recall"].passed is True and checks["roc_auc"].value is not None
    assert checks["precision"].passed is None  # no threshold: reported only


def test_drop_from_training_uses_mlflow_metric_names() -> None:
    training = {"accuracy": 0.97, "recall": 0.9}
    outcome = run_quality(
        classified(2000, 0.9, seed=1), QualitySettings(max_drop_from_training=0.05), training
    )
    checks = {c.name: c for c in outcome.checks}
    assert checks["accuracy"].threshold == pytest.approx(0.92) and checks["accuracy"].passed is False
    assert "training 0.9700" in checks["accuracy"].detail
    assert checks["f1"].threshold is None  # not logged in training: nothing to compare with
    assert outcome.verdict is MonitorVerdict.BREACH


def test_too_few_labels_is_inconclusive_with_coverage() -> None:
    outcome = run_quality(classified(1000, 0.5, labelled=0.05, seed=2), QualitySettings(min_accuracy=0.9), {})
    assert outcome.verdict is MonitorVerdict.INCONCLUSIVE
    assert "labelled of 1000 rows" in outcome.summary and "min_labelled_rows 100" in outcome.summary
    assert all(c.passed is None for c in outcome.checks)


def test_regressor_mae_rmse() -> None:
    rng = np.random.default_rng(3)
    truth = rng.normal(100, 10, 500)
    frame = pd.DataFrame({"prediction": truth + rng.normal(0, 2, 500), "label": truth})
    outcome = run_quality(frame, QualitySettings(max_mae=1.0), {})
    checks = {c.name: c for c in outcome.checks}
    assert set(checks) == {"mae", "rmse"} and checks["mae"].passed is False
    assert checks["rmse"].value == pytest.approx(2.0, abs=0.3)
    assert run_quality(frame, QualitySettings(max_mae=5.0), {}).verdict is MonitorVerdict.PASS
