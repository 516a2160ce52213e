"""What a monitor job computes; its entrypoint (`steward.monitors.run`) calls it in a warm worker or here.

Computes the monitor of `job.monitor.kind` over the window, writes the HTML report and then `result.json` (a
MonitorResult; the operator polls for it, so it is written last). A problem with the data (no reference,
unreadable files, no rows) is a result too (`error` or `inconclusive`) and the job exits 0; only a bug, or a
store that will not take the result, exits non-zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from steward.api.monitor_results import Check, MonitorJob, MonitorResult, MonitorVerdict
from steward.api.monitoring import DriftSettings, FairnessSettings, MonitorKind
from steward.monitors import report, store
from steward.monitors.window import WindowData, load_window

MAX_CHECKS = 200


@dataclass
class Computed:
    verdict: MonitorVerdict
    summary: str
    checks: list[Check] = field(default_factory=list)
    snapshot: Any = None
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    reference_uri: str | None = None
    reference_sha256: str | None = None


def compute(job: MonitorJob, window: WindowData) -> Computed:
    kind = job.monitor.kind
    if kind is MonitorKind.DRIFT:
        from steward.monitors.drift import run_drift
        from steward.monitors.reference import load_reference

        try:
            reference = load_reference(job)
        except store.StoreError as exc:
            return Computed(MonitorVerdict.ERROR, f"reference: {exc}")
        drift = run_drift(window.frame, reference.frame, job.monitor.drift or DriftSettings(), job.capture)
        return Computed(
            drift.verdict, drift.summary, drift.checks, drift.snapshot, {}, reference.uri, reference.sha256
        )
    if kind is MonitorKind.FAIRNESS:
        from steward.monitors.fairness import run_fairness

        fair = run_fairness(window.frame, job.monitor.fairness or FairnessSettings())
        return Computed(fair.verdict, fair.summary, fair.checks, tables=fair.tables)
    from steward.api.monitoring import QualitySettings
    from steward.monitors.quality import run_quality
    from steward.monitors.training import training_metrics

    try:
        trained = training_metrics(job)
    except store.StoreError as exc:
        return Computed(MonitorVerdict.ERROR, f"training metrics: {exc}")
    quality = run_quality(window.frame, job.monitor.quality or QualitySettings(), trained)
    return Computed(quality.verdict, quality.summary, quality.checks)


def should_compare_with_stable(job: MonitorJob) -> bool:
    """A canary's fairness or drift window, with the comparison left on in its settings."""
    if job.stable_version is None:
        return False
    if job.monitor.kind is MonitorKind.FAIRNESS:
        return (job.monitor.fairness or FairnessSettings()).max_worse_than_stable < 1
    if job.monitor.kind is MonitorKind.DRIFT:
        return (job.monitor.drift or DriftSettings()).predictions_vs_stable
    return False


def against_stable(job: MonitorJob, window: WindowData, computed: Computed) -> Computed:
    """A canary's fairness figures and predictions, compared with stable's over the same window."""
    from steward.monitors import versus

    stable_version = job.stable_version
    if (
        stable_version is None
        or computed.verdict is MonitorVerdict.ERROR
        or not should_compare_with_stable(job)
    ):
        return computed
    kind = job.monitor.kind
    fairness = job.monitor.fairness or FairnessSettings()
    drift = job.monitor.drift or DriftSettings()
    try:
        stable = load_window(job.model_copy(update={"version": stable_version}))
    except store.StoreError as exc:
        return replace(computed, summary=f"{computed.summary}; stable v{stable_version} not compared: {exc}")
    if stable.rows == 0:
        return replace(
            computed, summary=f"{computed.summary}; stable v{stable_version} answered nothing in the window"
        )
    if kind is MonitorKind.FAIRNESS:
        from steward.monitors.fairness import run_fairness

        theirs = run_fairness(stable.frame, fairness)
        noise = versus.parity_noise(computed.tables, theirs.tables)
        margin = fairness.max_worse_than_stable
        extra = versus.worse_than_stable(computed.checks, theirs.checks, stable_version, margin, noise)
    else:
        extra = versus.predictions_vs_stable(window.frame, stable.frame, drift, stable_version)
    return versus.combined(computed, extra, stable_version)


def _bounded(checks: list[Check]) -> tuple[list[Check], str]:
    if len(checks) <= MAX_CHECKS:
        return checks, ""
    ordered = sorted(checks, key=lambda c: c.passed is not False)
    return ordered[:MAX_CHECKS], f"; {len(checks) - MAX_CHECKS} passing checks left out of the result"


def run_job(job: MonitorJob, job_id: str | None = None) -> MonitorResult:
    rows = labelled = 0
    try:
        window = load_window(job)
        rows, labelled = window.rows, window.labelled_rows
        if window.rows == 0:
            computed = Computed(
                MonitorVerdict.INCONCLUSIVE,
                f"no answered requests captured for version {job.version} in the window",
            )
        else:
            computed = against_stable(job, window, compute(job, window))
    except store.StoreError as exc:
        computed = Computed(MonitorVerdict.ERROR, f"cannot read the window: {exc}")
    checks, cut = _bounded(computed.checks)
    section = report.steward_section(
        job, computed.verdict, computed.summary, checks, computed.tables, rows, labelled
    )
    body = report.render(computed.snapshot, section, f"{job.deployment} {job.monitor.name} v{job.version}")
    report_sha = report.write_report(job.report_uri, body)
    return MonitorResult(
        monitor=job.monitor.name,
        kind=job.monitor.kind,
        deployment=job.deployment,
        version=job.version,
        window_start=job.window_start,
        window_end=job.window_end,
        rows=rows,
        labelled_rows=labelled,
        verdict=computed.verdict,
        summary=computed.summary + cut,
        checks=checks,
        report_uri=job.report_uri,
        report_sha256=report_sha,
        reference_uri=computed.reference_uri,
        reference_sha256=computed.reference_sha256,
        job_id=job_id,
        finished_at=datetime.now(UTC),
    )


def judge_and_store(job: MonitorJob, job_id: str | None = None) -> str:
    """Judge the window, write the report and then the result (last: the operator polls for it); the line
    the job prints."""
    result = run_job(job, job_id)
    body = result.model_dump_json(by_alias=True).encode()
    store.write_bytes(job.result_uri, body, content_type="application/json")
    return f"{job.monitor.name} v{job.version}: {result.verdict.value}: {result.summary}"
