"""Drift monitor with real Evidently: the default method and threshold are calibrated (no false alarm over 20
no-drift windows, a 0.5 sd shift of one feature caught in one 5,000-row window)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from steward.api.monitor_results import MonitorVerdict
from steward.api.monitoring import ColumnDrift, DriftSettings
from steward.monitors.drift import run_drift

NUMERIC = ["income", "debt_ratio", "history", "late_payments", "loan_amount"]


def applicants(rng: np.random.Generator, n: int, income_shift_sd: float = 0.0) -> pd.DataFrame:
    """Realistic shapes (skewed, bounded, counts) rather than five normals: the noise of the statistic
    depends on them."""
    income = rng.lognormal(10.6, 0.45, n)
    income_sd = np.sqrt((np.exp(0.45**2) - 1) * np.exp(2 * 10.6 + 0.45**2))
    return pd.DataFrame(
        {
            "income": income + income_shift_sd * income_sd,
            "debt_ratio": rng.beta(2, 5, n),
            "history": rng.integers(0, 480, n).astype(float),
            "late_payments": rng.poisson(0.8, n),
            "loan_amount": rng.lognormal(9.5, 0.6, n),
            "purpose": rng.choice(["car", "home", "education", "other"], n, p=[0.4, 0.3, 0.2, 0.1]),
        }
    )


def captured(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.add_prefix("input.")


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return applicants(np.random.default_rng(1), 5000)


def test_no_false_alarm_over_twenty_no_drift_windows(reference: pd.DataFrame) -> None:
    rng = np.random.default_rng(2)
    worst = 0.0
    for _ in range(20):
        outcome = run_drift(captured(applicants(rng, 5000)), reference, DriftSettings())
        assert outcome.verdict is MonitorVerdict.PASS, outcome.summary
        worst = max(worst, *(c.value or 0.0 for c in outcome.checks if c.name != "drift:drifted_columns"))
    # Margin, not luck: the noisiest column of 120 stays well under the 0.1 threshold.
    assert worst < 0.07


def test_half_sd_shift_of_one_feature_is_caught_in_one_window(reference: pd.DataFrame) -> None:
    window = captured(applicants(np.random.default_rng(3), 5000, income_shift_sd=0.5))
    outcome = run_drift(window, reference, DriftSettings())
    assert outcome.verdict is MonitorVerdict.BREACH
    failed = [c for c in outcome.checks if c.passed is False]
    assert [c.name for c in failed] == ["drift:income", "drift:drifted_columns"]
    income = failed[0]
    assert income.value is not None and income.value > 0.3
    assert income.threshold == 0.1 and income.op == "<="
    for words in ("method wasserstein", "threshold 0.1", "current rows 5000", "reference rows 5000"):
        assert words in income.detail
    purpose = next(c for c in outcome.checks if c.name == "drift:purpose")
    assert "method jensenshannon" in purpose.detail and purpose.passed


def test_small_window_is_inconclusive_not_a_false_alarm(reference: pd.DataFrame) -> None:
    outcome = run_drift(captured(applicants(np.random.default_rng(4), 300)), reference, DriftSettings())
    assert outcome.verdict is MonitorVerdict.INCONCLUSIVE
    assert all(c.passed is None for c in outcome.checks)
    assert "min_rows 2000" in outcome.summary


def test_per_column_method_and_p_value_direction(reference: pd.DataFrame) -> None:
    window = captured(applicants(np.random.default_rng(5), 3000, income_shift_sd=0.5))
    settings = DriftSettings(
        columns=["income", "debt_ratio"],
        per_column={"income": ColumnDrift(method="ks", threshold=0.01)},
        include_predictions=False,
    )
    outcome = run_drift(window, reference, settings)
    income = next(c for c in outcome.checks if c.name == "drift:income")
    # K-S gives a p-value: drift below the threshold, so the passing side is >=.
    assert income.op == ">=" and income.passed is False and "method ks" in income.detail
    assert {c.name for c in outcome.checks} == {"drift:income", "drift:debt_ratio", "drift:drifted_columns"}


def test_prediction_drift_against_a_reference_with_predictions(reference: pd.DataFrame) -> None:
    rng = np.random.default_rng(6)
    ref = reference.assign(prediction=rng.choice([0, 1], len(reference), p=[0.7, 0.3]))
    window = captured(applicants(rng, 4000)).assign(prediction=rng.choice(["0", "1"], 4000, p=[0.4, 0.6]))
    outcome = run_drift(window, ref, DriftSettings(max_drifted_columns=0))
    prediction = next(c for c in outcome.checks if c.name == "drift:prediction")
    assert prediction.passed is False and "jensenshannon" in prediction.detail
    assert outcome.verdict is MonitorVerdict.BREACH


def test_no_shared_column_is_an_error() -> None:
    window = pd.DataFrame({"input.a": np.arange(10.0)})
    outcome = run_drift(window, pd.DataFrame({"b": np.arange(10.0)}), DriftSettings())
    assert outcome.verdict is MonitorVerdict.ERROR and "a: not in the reference" in outcome.summary


def test_default_method_does_not_switch_to_p_values_on_a_small_reference() -> None:
    """Evidently alone would judge a <= 1000-row reference with K-S p-values; the defaults stay distances."""
    rng = np.random.default_rng(7)
    window = captured(applicants(rng, 3000))
    outcome = run_drift(window, applicants(rng, 800), DriftSettings(min_rows=500, include_predictions=False))
    details = {c.name: c.detail for c in outcome.checks}
    assert "method wasserstein" in details["drift:income"]
    assert "method jensenshannon" in details["drift:purpose"]


def test_inputs_hashed_at_capture_are_left_out_with_a_note(reference: pd.DataFrame) -> None:
    """A keyed hash never equals the raw training value: compared, the column would drift in every window."""
    import hashlib

    from steward.api.monitoring import CaptureSpec, FieldPolicy

    window = captured(applicants(np.random.default_rng(8), 3000))
    window["input.purpose"] = [hashlib.sha256(v.encode()).hexdigest() for v in window["input.purpose"]]
    hashed = CaptureSpec(fields={"purpose": FieldPolicy.HASH})
    outcome = run_drift(window, reference, DriftSettings(include_predictions=False), hashed)
    assert outcome.verdict is MonitorVerdict.PASS, outcome.summary
    assert "drift:purpose" not in {c.name for c in outcome.checks}
    assert "purpose: hashed at capture, not comparable with the reference" in outcome.notes
    # Without the capture policy the same window is a false alarm: what the policy prevents.
    blind = run_drift(window, reference, DriftSettings(include_predictions=False))
    assert blind.verdict is MonitorVerdict.BREACH
    # A default policy of hash covers every input not listed.
    everything = CaptureSpec(default_policy=FieldPolicy.HASH, fields={"income": FieldPolicy.KEEP})
    outcome = run_drift(window, reference, DriftSettings(include_predictions=False), everything)
    assert {c.name for c in outcome.checks} == {"drift:income", "drift:drifted_columns"}
