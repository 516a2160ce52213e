"""The monitor job end to end against a local folder store: window, outcomes join, report, result."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from steward.api.monitor_results import (
    MonitorJob,
    MonitorResult,
    MonitorVerdict,
    capture_prefix,
    outcomes_prefix,
    report_prefix,
)
from steward.api.monitoring import DriftSettings, MonitorKind, MonitorSpec, Window
from steward.monitors import run
from steward.monitors.window import load_window

DEPLOYMENT = "risk/credit"
START = datetime(2026, 3, 1, 23, 0, tzinfo=UTC)
END = START + timedelta(hours=2)


def write(path: str, frame: pd.DataFrame) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path)


def captured(n: int, start: datetime, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "request_id": [f"req-{seed}-{i}" for i in range(n)],
            "timestamp": [start + timedelta(seconds=i * 7200 / n) for i in range(n)],
            "version": "3",
            "status": 200,
            "latency_ms": 3.0,
            "prediction": rng.choice([0, 1], n),
            "proba.1": rng.random(n),
            "input.income": rng.normal(50_000 * (1 - shift), 10_000, n),
            "input.debt_ratio": rng.beta(2, 5, n),
            "sensitive.gender": rng.choice(["female", "male"], n),
        }
    )


def store_with_window(root: Path, frame: pd.DataFrame) -> str:
    uri = str(root)
    prefix = capture_prefix(uri, DEPLOYMENT, "3")
    for day, part in frame.groupby(frame["timestamp"].dt.strftime("%Y-%m-%d")):
        write(f"{prefix}/date={day}/part-{day}.parquet", part)
    return uri


def job(store_uri: str, spec: MonitorSpec, **extra: object) -> MonitorJob:
    reports = report_prefix(store_uri, DEPLOYMENT, spec.name, "3", END)
    return MonitorJob(
        monitor=spec,
        deployment=DEPLOYMENT,
        version="3",
        model_name="credit",
        store_uri=store_uri,
        window_start=START,
        window_end=END,
        result_uri=f"{reports}/result.json",
        report_uri=f"{reports}/report.html",
        **extra,
    )


def run_main(monitor_job: MonitorJob) -> MonitorResult:
    encoded = base64.b64encode(monitor_job.model_dump_json(by_alias=True).encode()).decode()
    assert run.main(["run", encoded]) == 0
    return MonitorResult.model_validate_json(Path(monitor_job.result_uri).read_bytes())


def test_window_keeps_its_rows_and_joins_the_latest_outcome(tmp_path: Path) -> None:
    inside = captured(10, START, seed=1)
    inside.loc[9, ["status", "prediction"]] = [500, None]  # refused: no prediction to judge
    before = captured(3, START - timedelta(hours=3), seed=2)
    at_end = captured(1, END, seed=3)
    uri = store_with_window(tmp_path, pd.concat([inside, before, at_end], ignore_index=True))
    outcomes = outcomes_prefix(uri, DEPLOYMENT)
    write(
        f"{outcomes}/date=2026-03-02/a.parquet",
        pd.DataFrame(
            {
                "request_id": ["req-1-0", "req-1-1", "req-1-0", "req-2-0"],
                "label": [1, 0, 0, 1],
                "received_at": pd.to_datetime(
                    ["2026-03-02T10:00Z", "2026-03-02T10:00Z", "2026-03-04T10:00Z", "2026-03-02T10:00Z"]
                ),
            }
        ),
    )
    spec = MonitorSpec(name="fair", kind=MonitorKind.FAIRNESS, window=Window(duration="2h"))
    window = load_window(job(uri, spec))
    assert (window.rows, window.labelled_rows, window.failed_rows) == (9, 2, 1)
    labels = window.frame.set_index("request_id")["label"]
    assert labels["req-1-0"] == 0  # the correction received later wins


def test_count_window_takes_the_newest_rows_before_the_end(tmp_path: Path) -> None:
    uri = store_with_window(tmp_path, captured(50, START, seed=4))
    spec = MonitorSpec(name="fair", kind=MonitorKind.FAIRNESS, window=Window(rows=20))
    window = load_window(job(uri, spec))
    assert window.rows == 20
    assert list(window.frame["request_id"]) == [f"req-4-{i}" for i in range(30, 50)]


def test_drift_job_writes_report_and_result_pinning_the_reference(tmp_path: Path) -> None:
    uri = store_with_window(tmp_path / "store", captured(2500, START, seed=5, shift=0.3))
    reference = tmp_path / "reference.parquet"
    rng = np.random.default_rng(6)
    pd.DataFrame(
        {
            "income": rng.normal(50_000, 10_000, 2500),
            "debt_ratio": rng.beta(2, 5, 2500),
            "prediction": rng.choice([0, 1], 2500),
        }
    ).to_parquet(reference)
    spec = MonitorSpec(
        name="drift", kind=MonitorKind.DRIFT, window=Window(duration="2h"), drift=DriftSettings()
    )
    result = run_main(job(uri, spec, reference_uri=str(reference)))
    assert result.verdict is MonitorVerdict.BREACH and result.rows == 2500
    assert [c.name for c in result.breaches()] == ["drift:income", "drift:drifted_columns"]
    assert result.reference_uri == str(reference)
    assert result.reference_sha256 == hashlib.sha256(reference.read_bytes()).hexdigest()
    html = Path(result.report_uri or "").read_bytes()
    assert result.report_sha256 == hashlib.sha256(html).hexdigest()
    assert b"steward-monitor" in html and b"drift:income" in html
    assert len(html) > 100_000  # Evidently's page (scripts and plots) around our section


def test_fairness_job_report_has_the_group_table(tmp_path: Path) -> None:
    frame = captured(600, START, seed=7)
    frame.loc[frame["sensitive.gender"] == "<script>", "prediction"] = 1
    frame.loc[:5, "sensitive.gender"] = "<script>"
    uri = store_with_window(tmp_path, frame)
    spec = MonitorSpec(name="fair", kind=MonitorKind.FAIRNESS, window=Window(duration="2h"))
    result = run_main(job(uri, spec))
    assert result.verdict is MonitorVerdict.PASS, result.summary
    html = Path(result.report_uri or "").read_text()
    assert "Groups of gender" in html and "&lt;script&gt;" in html and "<script>" not in html


def test_data_problems_are_verdicts_not_crashes(tmp_path: Path) -> None:
    spec = MonitorSpec(
        name="drift", kind=MonitorKind.DRIFT, window=Window(duration="2h"), drift=DriftSettings()
    )
    empty = run_main(job(str(tmp_path / "empty"), spec, reference_uri=str(tmp_path / "none.parquet")))
    assert empty.verdict is MonitorVerdict.INCONCLUSIVE and "no answered requests" in empty.summary
    uri = store_with_window(tmp_path / "store", captured(50, START, seed=8))
    missing = run_main(job(uri, spec, reference_uri=str(tmp_path / "none.parquet")))
    assert missing.verdict is MonitorVerdict.ERROR and "none.parquet" in missing.summary
    no_mlflow = run_main(job(uri, spec))
    assert no_mlflow.verdict is MonitorVerdict.ERROR and "tracking URI" in no_mlflow.summary
    broken = tmp_path / "store2"
    prefix = capture_prefix(str(broken), DEPLOYMENT, "3")
    Path(f"{prefix}/date=2026-03-01").mkdir(parents=True)
    Path(f"{prefix}/date=2026-03-01/bad.parquet").write_bytes(b"not parquet")
    unreadable = run_main(job(str(broken), spec))
    assert unreadable.verdict is MonitorVerdict.ERROR and "bad.parquet" in unreadable.summary


def test_the_job_decodes_the_operators_entrypoint(tmp_path: Path) -> None:
    from steward.operator.monitoring_schedule import entrypoint

    spec = MonitorSpec(name="drift", kind=MonitorKind.DRIFT, window=Window(duration="2h"))
    # '?>' in the JSON gives '-' and '_' in URL-safe base64, which the standard alphabet refuses.
    monitor_job = job(str(tmp_path), spec, reference_uri=str(tmp_path / "a?>b.parquet"))
    argument = entrypoint(monitor_job).split()[-1]
    assert {"-", "_"} & set(argument)
    assert run.decode_job(argument) == monitor_job


def test_the_warm_worker_is_one_per_job_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Jobs with the same runtime environment share a worker; another environment (other credentials for
    the store) never runs in it."""
    from steward.monitors.worker import worker_name

    def name_with(runtime_env: dict[str, object]) -> str:
        config = {"runtime_env": runtime_env, "metadata": {"job_submission_id": "steward-x"}}
        monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", json.dumps(config))
        return worker_name()

    team_a = name_with({"env_vars": {"AWS_ACCESS_KEY_ID": "a"}})
    assert team_a == name_with({"env_vars": {"AWS_ACCESS_KEY_ID": "a"}})
    assert team_a != name_with({"env_vars": {"AWS_ACCESS_KEY_ID": "b"}})
    assert re.fullmatch(r"steward-monitor-[0-9a-f]{16}", team_a)


def test_a_job_whose_warm_worker_is_unreachable_judges_in_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Seen on a machine running several Ray clusters: Ray gives a job's driver the address of the latest
    cluster started there, whose token it lacks. The window is still judged (here), the job id kept."""
    from steward.monitors import worker

    def unreachable(_job: MonitorJob, _job_id: str) -> str:
        raise worker.WorkerUnavailable("AuthenticationError: InvalidAuthToken")

    monkeypatch.setattr(worker, "judge_in_worker", unreachable)
    monkeypatch.setenv(
        "RAY_JOB_CONFIG_JSON_ENV_VAR", json.dumps({"metadata": {"job_submission_id": "sid-7"}})
    )
    uri = store_with_window(tmp_path, captured(200, START, seed=11))
    spec = MonitorSpec(name="fair", kind=MonitorKind.FAIRNESS, window=Window(duration="2h"))
    result = run_main(job(uri, spec))
    assert result.job_id == "sid-7" and result.rows == 200
    assert "judging in this process" in capsys.readouterr().err
