"""Fairness monitor with real fairlearn: injected bias breaches, a fair control passes, small groups are
reported but not judged."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from steward.api.monitor_results import MonitorVerdict
from steward.api.monitoring import FairnessSettings
from steward.monitors.fairness import run_fairness


def window(n: int, female_rate: float, male_rate: float, seed: int = 0, labels: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    gender = rng.choice(["female", "male"], n)
    rate = np.where(gender == "female", female_rate, male_rate)
    approved = rng.random(n) < rate
    frame = pd.DataFrame(
        {
            "request_id": [f"r{i}" for i in range(n)],
            # The favourable outcome is "0" (no default risk predicted); stored as ints, compared as text.
            "prediction": np.where(approved, 0, 1),
            "sensitive.gender": gender,
            "sensitive.age_band": rng.choice(["<30", "30-50", "50+"], n),
        }
    )
    if labels:
        truly_good = rng.random(n) < 0.6
        frame["label"] = np.where(truly_good, 0, 1)
    return frame


SETTINGS = FairnessSettings(favourable_outcome="0")


def test_a_model_that_approves_one_gender_at_half_the_rate_breaches() -> None:
    outcome = run_fairness(window(4000, female_rate=0.3, male_rate=0.6), SETTINGS)
    assert outcome.verdict is MonitorVerdict.BREACH
    gender = next(c for c in outcome.checks if c.name == "demographic_parity_ratio:gender")
    assert gender.passed is False and gender.value is not None and 0.42 < gender.value < 0.58
    assert gender.threshold == 0.8 and gender.op == ">="
    assert "female" in gender.detail and "male" in gender.detail
    age = next(c for c in outcome.checks if c.name == "demographic_parity_ratio:age_band")
    assert age.passed is True
    assert "demographic_parity_ratio:gender" in outcome.summary


def test_a_fair_model_passes() -> None:
    outcome = run_fairness(window(4000, female_rate=0.5, male_rate=0.5, seed=1), SETTINGS)
    assert outcome.verdict is MonitorVerdict.PASS, outcome.summary
    assert all(c.passed for c in outcome.checks)


def test_groups_below_the_minimum_are_reported_not_judged() -> None:
    frame = window(400, female_rate=0.5, male_rate=0.5, seed=2)
    frame.loc[:4, "sensitive.gender"] = "nonbinary"
    frame.loc[:4, "prediction"] = 1  # never approved: would give a ratio of 0 if judged
    outcome = run_fairness(frame, SETTINGS)
    gender = next(c for c in outcome.checks if c.name == "demographic_parity_ratio:gender")
    assert gender.passed is True and "nonbinary" in gender.detail and "not judged" in gender.detail
    assert bool(outcome.tables["gender"].loc["nonbinary", "judged"]) is False


def test_fewer_than_two_judgeable_groups_is_inconclusive() -> None:
    frame = window(100, 0.5, 0.5, seed=3).drop(columns=["sensitive.age_band"])
    outcome = run_fairness(frame, FairnessSettings(favourable_outcome="0", min_group_size=80))
    assert outcome.verdict is MonitorVerdict.INCONCLUSIVE
    assert outcome.checks[0].passed is None


def test_with_outcomes_equalized_odds_and_equal_opportunity_are_judged() -> None:
    fair = run_fairness(window(4000, 0.5, 0.5, seed=4, labels=True), SETTINGS)
    names = {c.name: c for c in fair.checks}
    assert names["equalized_odds_difference:gender"].passed is True
    assert names["equal_opportunity_difference:gender"].passed is True
    biased = run_fairness(window(4000, 0.3, 0.6, seed=5, labels=True), SETTINGS)
    names = {c.name: c for c in biased.checks}
    eop = names["equal_opportunity_difference:gender"]
    # Labels independent of prediction: the TPR of each group is its approval rate, 0.3 vs 0.6.
    assert eop.passed is False and eop.value is not None and 0.22 < eop.value < 0.38
    assert names["equalized_odds_difference:gender"].passed is False


def test_without_sensitive_columns_nothing_is_judged() -> None:
    frame = window(100, 0.5, 0.5).drop(columns=["sensitive.gender", "sensitive.age_band"])
    assert run_fairness(frame, SETTINGS).verdict is MonitorVerdict.INCONCLUSIVE


def test_figures_equal_fairlearns_own_disparity_functions() -> None:
    from fairlearn.metrics import (
        demographic_parity_ratio,
        equal_opportunity_difference,
        equalized_odds_difference,
    )

    frame = window(3000, female_rate=0.45, male_rate=0.6, seed=3, labels=True)
    checks = {c.name: c.value for c in run_fairness(frame, SETTINGS).checks}
    favourable = (frame["prediction"] == 0).astype(int)
    truth = (frame["label"] == 0).astype(int)
    for feature in ("gender", "age_band"):
        groups = frame[f"sensitive.{feature}"]
        expected = {
            "demographic_parity_ratio": demographic_parity_ratio(
                truth, favourable, sensitive_features=groups
            ),
            "equalized_odds_difference": equalized_odds_difference(
                truth, favourable, sensitive_features=groups
            ),
            "equal_opportunity_difference": equal_opportunity_difference(
                truth, favourable, sensitive_features=groups
            ),
        }
        for name, value in expected.items():
            assert checks[f"{name}:{feature}"] == pytest.approx(value), (name, feature)
