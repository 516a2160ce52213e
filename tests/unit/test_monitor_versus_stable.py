"""A canary's monitor window judged against stable's traffic over the same window (real fairlearn and
Evidently on a local folder store)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_monitor_run import DEPLOYMENT, START, captured, job, run_main, write

from steward.api.monitor_results import Check, MonitorVerdict, capture_prefix
from steward.api.monitoring import DriftSettings, FairnessSettings, MonitorKind, MonitorSpec, Window
from steward.api.monitoring_status import MonitoringStatus
from steward.monitors.versus import parity_noise, parity_ratio_se, worse_than_stable
from steward.operator.monitoring_schedule import JobContext, LiveVersion, due_submissions

FAIR = MonitorSpec(name="fair", kind=MonitorKind.FAIRNESS, window=Window(duration="2h"))


def parity(value: float, passed: bool = True) -> Check:
    return Check(name="demographic_parity_ratio:gender", value=value, threshold=0.8, op=">=", passed=passed)


def test_a_canary_passing_its_own_threshold_can_still_be_worse_than_stable() -> None:
    [check] = worse_than_stable([parity(0.82)], [parity(0.97)], "2", margin=0.05)
    assert check.name == "demographic_parity_ratio:gender vs v2"
    assert check.passed is False and check.threshold == pytest.approx(0.92)
    assert "stable v2 0.9700" in check.detail
    [check] = worse_than_stable([parity(0.95)], [parity(0.97)], "2", margin=0.05)
    assert check.passed is True
    # Sampling noise widens the margin: 0.82 is within 0.05 + 2 x 0.06 of 0.97.
    [check] = worse_than_stable(
        [parity(0.82)], [parity(0.97)], "2", 0.05, {check.name[: -len(" vs v2")]: 0.06}
    )
    assert check.passed is True and check.threshold == pytest.approx(0.80)
    # Only parity ratios both versions judged are compared.
    odds = Check(name="equalized_odds_difference:gender", value=0.09, threshold=0.1, op="<=", passed=True)
    assert worse_than_stable([odds], [odds.model_copy(update={"value": 0.01})], "2", margin=0.05) == []
    unjudged = parity(0.9).model_copy(update={"passed": None})
    assert worse_than_stable([parity(0.5)], [unjudged], "2", 0.05) == []


def groups(female: tuple[int, float], male: tuple[int, float]) -> pd.DataFrame:
    return pd.DataFrame(
        {"count": [female[0], male[0]], "judged": [True, True], "selection_rate": [female[1], male[1]]},
        index=["female", "male"],
    )


def test_the_noise_of_a_parity_ratio_shrinks_with_the_groups() -> None:
    small, large = (
        parity_ratio_se(groups((40, 0.6), (40, 0.7))),
        parity_ratio_se(groups((4000, 0.6), (4000, 0.7))),
    )
    assert small is not None and large is not None
    assert small == pytest.approx(10 * large)  # 1 / sqrt(n)
    assert 0.08 < small < 0.15  # 40 rows a group: a ratio moves by about a tenth by chance
    noise = parity_noise({"gender": groups((40, 0.6), (40, 0.7))}, {"gender": groups((40, 0.6), (40, 0.7))})
    assert noise["demographic_parity_ratio:gender"] == pytest.approx(small * 2**0.5)
    assert parity_ratio_se(groups((40, 0.6), (10, 0.7)).assign(judged=[True, False])) is None


def decisions(n: int, seed: int, female_rate: float, male_rate: float, version: str) -> pd.DataFrame:
    frame = captured(n, START, seed=seed).assign(version=version)
    rng = np.random.default_rng(seed + 100)
    rate = np.where(frame["sensitive.gender"] == "female", female_rate, male_rate)
    frame["prediction"] = (rng.random(n) < rate).astype(int)
    frame["request_id"] = [f"v{version}-{i}" for i in range(n)]
    return frame


def store(root: Path, canary: pd.DataFrame, stable: pd.DataFrame | None) -> str:
    uri = str(root)
    for version, frame in (("3", canary), ("2", stable)):
        if frame is not None:
            write(f"{capture_prefix(uri, DEPLOYMENT, version)}/date=2026-03-01/part.parquet", frame)
    return uri


def test_a_canary_that_favours_one_group_more_than_stable_breaches(tmp_path: Path) -> None:
    # Both pass the four-fifths screen; the canary's ratio (~0.85) is far below stable's (~0.98).
    uri = store(tmp_path, decisions(10_000, 1, 0.47, 0.55, "3"), decisions(10_000, 2, 0.54, 0.55, "2"))
    own = run_main(job(uri, FAIR))
    assert own.verdict is MonitorVerdict.PASS, own.summary  # judged alone, it would pass
    result = run_main(job(str(tmp_path), FAIR.model_copy(update={"name": "fair2"}), stable_version="2"))
    assert result.verdict is MonitorVerdict.BREACH, result.summary
    [breach] = result.breaches()
    assert breach.name == "demographic_parity_ratio:gender vs v2"
    assert result.summary.startswith("worse than stable v2 over the same window")


def test_a_canary_as_fair_as_stable_passes_and_says_it_was_compared(tmp_path: Path) -> None:
    uri = store(tmp_path, decisions(4000, 3, 0.5, 0.52, "3"), decisions(4000, 4, 0.5, 0.52, "2"))
    result = run_main(job(uri, FAIR, stable_version="2"))
    assert result.verdict is MonitorVerdict.PASS, result.summary
    assert "no worse than stable v2 over the same window" in result.summary
    assert any(c.name.endswith(" vs v2") and c.passed for c in result.checks)
    off = FAIR.model_copy(update={"name": "off", "fairness": FairnessSettings(max_worse_than_stable=1)})
    result = run_main(job(uri, off, stable_version="2"))
    assert not any(c.name.endswith(" vs v2") for c in result.checks)


def test_stable_without_traffic_is_said_not_compared(tmp_path: Path) -> None:
    uri = store(tmp_path, decisions(500, 5, 0.5, 0.5, "3"), None)
    result = run_main(job(uri, FAIR, stable_version="2"))
    assert result.verdict is MonitorVerdict.PASS
    assert "stable v2 answered nothing in the window" in result.summary


def test_a_canary_answering_the_same_traffic_differently_drifts_from_stable(tmp_path: Path) -> None:
    drift = MonitorSpec(
        name="drift",
        kind=MonitorKind.DRIFT,
        window=Window(duration="2h"),
        drift=DriftSettings(min_rows=500, columns=[]),
    )
    reference = tmp_path / "reference.parquet"
    pd.DataFrame({"prediction": np.random.default_rng(9).choice([0, 1], 3000, p=[0.3, 0.7])}).to_parquet(
        reference
    )
    # Stable approves 70 % like the reference; the canary approves 40 %, and the reference alone would
    # also see it: what matters here is the check against stable's answers in the same window.
    uri = store(tmp_path / "s", decisions(3000, 6, 0.4, 0.4, "3"), decisions(3000, 7, 0.7, 0.7, "2"))
    result = run_main(job(uri, drift, reference_uri=str(reference), stable_version="2"))
    assert result.verdict is MonitorVerdict.BREACH
    names = {c.name for c in result.breaches()}
    assert "drift:prediction vs v2" in names
    same = store(tmp_path / "t", decisions(3000, 8, 0.7, 0.7, "3"), decisions(3000, 10, 0.7, 0.7, "2"))
    result = run_main(job(same, drift, reference_uri=str(reference), stable_version="2"))
    assert result.verdict is MonitorVerdict.PASS, result.summary
    [versus] = [c for c in result.checks if c.name == "drift:prediction vs v2"]
    assert versus.passed is True and "stable v2's answers" in versus.detail


def test_only_a_canarys_jobs_are_compared_with_stable() -> None:
    ctx = JobContext(uid="0a1b2c3d", deployment=DEPLOYMENT, model_name="credit", store_uri="s3://m/p")
    spec = MonitorSpec(name="fair", kind=MonitorKind.FAIRNESS, window=Window(duration="1h", every="5m"))
    now = START + timedelta(hours=3)
    live = [LiveVersion("2", "stable"), LiveVersion("3", "canary", since=START)]
    subs = due_submissions(ctx, [spec], live, MonitoringStatus(), now)
    assert {s.job.version: s.job.stable_version for s in subs} == {"2": None, "3": "2"}
