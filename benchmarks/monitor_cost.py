"""What a monitor run costs against a bare Evidently + fairlearn run on the same frame (the baseline), and the
peak memory of a monitor run on a 1M-row window.

The monitor run is the whole job as Ray would run it (`run_job`: read the window's Parquet from a local store,
drift against a reference, fairness, both HTML reports and results written). The baseline computes the
same figures by hand on frames already in memory: one Evidently `ValueDrift` per compared column with the
same methods and thresholds (Wasserstein for numbers, Jensen-Shannon for categories and the prediction,
0.1), the report saved as HTML, and a fairlearn MetricFrame of selection rates with the demographic parity
ratio. (A `DataDriftPreset` baseline computes far more than the monitor does, which made an earlier ratio
of 0.24x meaningless.) Printed, not asserted.

    uv run --frozen python -m benchmarks.monitor_cost            # 100k x 20 ratio
    uv run --frozen python -m benchmarks.monitor_cost --million  # peak RSS of a 1M-row window (slow: minutes)
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from steward.api.monitor_results import MonitorJob, capture_prefix, report_prefix
from steward.api.monitoring import DriftSettings, MonitorKind, MonitorSpec, Window

DEPLOYMENT = "bench/credit"
START = datetime(2026, 3, 1, tzinfo=UTC)
END = START + timedelta(hours=1)
NUMERIC = 18  # + 1 categorical input + the prediction = 20 compared columns


def features(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({f"f{i}": rng.normal(i, 1 + i / 10, n) for i in range(NUMERIC)})
    frame["purpose"] = rng.choice(["car", "home", "education", "other"], n)
    frame["prediction"] = rng.choice([0, 1], n, p=[0.6, 0.4])
    return frame


def captured(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed + 1)
    base = features(n, seed)
    frame = base.drop(columns=["prediction"]).add_prefix("input.")
    frame.insert(0, "request_id", [f"r{i}" for i in range(n)])
    frame.insert(1, "timestamp", pd.Timestamp(START) + pd.to_timedelta(np.linspace(0, 3500, n), unit="s"))
    frame["status"] = 200
    frame["prediction"] = base["prediction"]
    frame["sensitive.gender"] = rng.choice(["female", "male"], n)
    return frame


def _job(root: str, spec: MonitorSpec, reference: str) -> MonitorJob:
    out = report_prefix(root, DEPLOYMENT, spec.name, "1", END)
    return MonitorJob(
        monitor=spec,
        deployment=DEPLOYMENT,
        version="1",
        model_name="bench",
        store_uri=root,
        window_start=START,
        window_end=END,
        reference_uri=reference,
        result_uri=f"{out}/result.json",
        report_uri=f"{out}/report.html",
    )


def prepare(root: Path, rows: int, reference_rows: int) -> tuple[str, pd.DataFrame, pd.DataFrame]:
    window = captured(rows, seed=1)
    part = Path(capture_prefix(str(root), DEPLOYMENT, "1")) / "date=2026-03-01" / "part-0.parquet"
    part.parent.mkdir(parents=True)
    window.to_parquet(part, index=False)
    reference = features(reference_rows, seed=2)
    reference_path = root / "reference.parquet"
    reference.to_parquet(reference_path, index=False)
    return str(reference_path), window, reference


def monitor_run(root: str, reference: str) -> None:
    from steward.monitors.job import run_job

    drift = MonitorSpec(
        name="drift", kind=MonitorKind.DRIFT, window=Window(duration="1h"), drift=DriftSettings()
    )
    fairness = MonitorSpec(name="fairness", kind=MonitorKind.FAIRNESS, window=Window(duration="1h"))
    for spec in (drift, fairness):
        result = run_job(_job(root, spec, reference))
        if result.verdict.value == "error":
            raise RuntimeError(result.summary)


def bare_run(window: pd.DataFrame, reference: pd.DataFrame, out: Path) -> None:
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift
    from fairlearn.metrics import MetricFrame, demographic_parity_ratio, selection_rate

    current = window[[c for c in window.columns if c.startswith("input.")] + ["prediction"]]
    current = current.rename(columns=lambda c: c.removeprefix("input."))
    numeric, categorical = [f"f{i}" for i in range(NUMERIC)], ["purpose", "prediction"]
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    metrics = [ValueDrift(column=c, method="wasserstein", threshold=0.1) for c in numeric]
    metrics += [ValueDrift(column=c, method="jensenshannon", threshold=0.1) for c in categorical]
    snapshot = Report(metrics, include_tests=True).run(
        Dataset.from_pandas(current, data_definition=definition),
        Dataset.from_pandas(reference, data_definition=definition),
    )
    snapshot.save_html(str(out / "bare.html"))
    favourable = (window["prediction"] == 1).astype(int)
    groups = window["sensitive.gender"]
    MetricFrame(metrics=selection_rate, y_true=favourable, y_pred=favourable, sensitive_features=groups)
    demographic_parity_ratio(favourable, favourable, sensitive_features=groups)


def measure(rows: int = 100_000, rounds: int = 3) -> dict[str, float]:
    """Rounds of (bare, monitor) back to back: each round's ratio compares two runs under about the same
    machine load (it swings a lot on a shared 2-core machine), and the median round is reported."""
    monitor_s, bare_s = [], []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        reference_uri, window, reference = prepare(root, rows, rows)
        bare_run(window, reference, root)  # imports and first-call caches out of the figures
        for _ in range(rounds):
            start = time.perf_counter()
            bare_run(window, reference, root)
            bare_s.append(time.perf_counter() - start)
            start = time.perf_counter()
            monitor_run(str(root), reference_uri)
            monitor_s.append(time.perf_counter() - start)
    ratios = sorted(m / b for m, b in zip(monitor_s, bare_s, strict=True))
    return {
        "rows": rows,
        "bare_s": statistics.median(bare_s),
        "monitor_s": statistics.median(monitor_s),
        "ratio": statistics.median(ratios),
        "ratio_min": ratios[0],
        "ratio_max": ratios[-1],
    }


def peak_memory_of_million(rows: int = 1_000_000, reference_rows: int = 100_000) -> dict[str, float]:
    """Runs in this process (start it fresh: `--million`); peak RSS includes the interpreter and libraries."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        reference_uri, window, reference = prepare(root, rows, reference_rows)
        del window, reference
        start = time.perf_counter()
        monitor_run(str(root), reference_uri)
        seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"rows": rows, "reference_rows": reference_rows, "seconds": seconds, "peak_rss_mb": peak_mb}


def million_in_subprocess() -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.monitor_cost", "--million"],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


if __name__ == "__main__":
    if "--million" in sys.argv:
        print(json.dumps(peak_memory_of_million()))
    else:
        figures = measure()
        print(json.dumps(figures))
        print(
            f"monitor run (drift + fairness, {figures['rows']:.0f} x 20): {figures['monitor_s']:.1f} s = "
            f"{figures['ratio']:.2f}x (rounds {figures['ratio_min']:.2f}-{figures['ratio_max']:.2f}) a bare "
            f"Evidently + fairlearn run of the same figures ({figures['bare_s']:.1f} s), medians"
        )
