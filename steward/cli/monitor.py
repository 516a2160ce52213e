"""The model owner's monitoring commands: `steward monitor status NAME` and `steward monitor report NAME`.

Both read `status.monitoring` (what the operator made of the monitor jobs' results), in local or cluster mode
like the rollout commands. `report` fetches an HTML report from the monitoring store and hands it over only if
its SHA-256 is the one the operator recorded (and the audit trail holds): a report edited in the store is
refused, not shown.
"""

from __future__ import annotations

import hashlib
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from steward.adapters.errors import AdapterError
from steward.adapters.monitoring_store import MonitoringStore
from steward.api.conditions import ConditionType
from steward.api.model_deployment import ModelDeployment
from steward.api.monitor_results import Check, MonitorVerdict
from steward.api.monitoring_status import MonitorResultSummary
from steward.cli.common import DEFAULT_HOME, Home, Namespace, console, err, fail
from steward.cli.target import Context, Kubeconfig, get_or_fail, open_or_fail
from steward.operator.status import find

monitor = typer.Typer(
    help="Monitors of live traffic: their last verdicts, and their HTML reports.", no_args_is_help=True
)

Name = Annotated[str, typer.Argument(help="ModelDeployment whose monitors to show.")]

_VERDICT_STYLE = {
    MonitorVerdict.PASS: "green",
    MonitorVerdict.BREACH: "bold red",
    MonitorVerdict.INCONCLUSIVE: "yellow",
    MonitorVerdict.ERROR: "magenta",
}


def _utc(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M")


def _figure(check: Check) -> str:
    value = "n/a" if check.value is None else f"{check.value:.4g}"
    limit = "" if check.threshold is None else f" (threshold {check.op} {check.threshold:.4g})"
    return f"{check.name} {value}{limit}"


def results_table(results: list[MonitorResultSummary]) -> Table:
    table = Table(box=None, header_style="bold", title="last verdict per monitor and version")
    for column in ("MONITOR", "VERSION", "VERDICT", "WINDOW (UTC)", "ROWS", "LABELLED", "BREACHED"):
        table.add_column(column, overflow="fold")
    for r in sorted(results, key=lambda r: (r.monitor, r.version)):
        breached = "\n".join(escape(_figure(c)) for c in r.breached)
        if not breached and r.verdict != MonitorVerdict.PASS:
            breached = escape(r.summary)  # inconclusive or error: the summary says why
        again = " (re-judged)" if r.attempt else ""
        table.add_row(
            escape(r.monitor),
            escape(r.version),
            f"[{_VERDICT_STYLE[r.verdict]}]{r.verdict.value}[/]{again}",
            f"{_utc(r.window_start)} - {_utc(r.window_end)}",
            str(r.rows),
            str(r.labelled_rows),
            breached,
        )
    return table


def status_document(md: ModelDeployment) -> dict[str, Any]:
    """What `-o json` prints: status.monitoring as the API has it, and the Monitoring condition."""
    condition = find(md.status.conditions, ConditionType.MONITORING)
    monitoring = md.status.monitoring
    return {
        "namespace": md.metadata.namespace,
        "name": md.metadata.name,
        "monitors": [m.name for m in md.spec.monitoring.monitors],
        "monitoring": None if monitoring is None else monitoring.model_dump(mode="json", by_alias=True),
        "condition": None if condition is None else condition.model_dump(mode="json", by_alias=True),
    }


def print_status(md: ModelDeployment) -> None:
    monitoring = md.status.monitoring
    defined = [m.name for m in md.spec.monitoring.monitors]
    if not defined:
        console.print(f"{escape(md.key)}: no monitors in spec.monitoring.monitors")
    results = monitoring.results if monitoring else []
    if results:
        console.print(results_table(results))
        # On lines of their own, unwrapped: a URI folded inside a table cell cannot be copied.
        for r in sorted(results, key=lambda r: (r.monitor, r.version)):
            if r.report_uri:
                console.print(
                    f"report {escape(r.monitor)} v{escape(r.version)}: {escape(r.report_uri)}",
                    highlight=False,
                    soft_wrap=True,
                )
    judged = {r.monitor for r in results}
    waiting = [name for name in defined if name not in judged]
    if waiting:
        console.print(f"no verdict yet: {escape(', '.join(waiting))}")
    jobs = monitoring.jobs if monitoring else []
    if jobs:
        console.print(f"jobs in flight: {len(jobs)}")
        for job in jobs:
            again = ", re-judging for late labels" if job.attempt else ""
            console.print(
                f"  {escape(job.monitor)} v{escape(job.version)} window {_utc(job.window_start)} - "
                f"{_utc(job.window_end)}: {escape(job.submission_id)} (submitted {_utc(job.submitted_at)}"
                f"{again})",
                highlight=False,
            )
    else:
        console.print("jobs in flight: none")
    capture = monitoring.capture if monitoring else None
    if capture is not None:
        problem = f", last error: {escape(capture.last_error)}" if capture.last_error else ""
        console.print(
            f"capture: {capture.written} written, {capture.dropped} dropped{problem}", highlight=False
        )
    condition = find(md.status.conditions, ConditionType.MONITORING)
    if condition is not None:
        console.print(
            f"condition Monitoring={condition.status.value} {condition.reason.value}: "
            f"{escape(condition.message)}",
            highlight=False,
        )


@monitor.command("status")
def status_command(
    name: Name,
    namespace: Namespace = "default",
    output: Annotated[str, typer.Option("--output", "-o", help="table or json")] = "table",
    home: Home = DEFAULT_HOME,
    context: Context = None,
    kubeconfig: Kubeconfig = None,
) -> None:
    """The last verdict of each monitor on each version, jobs in flight, capture counters, the condition."""
    if output not in ("table", "json"):
        fail(f"unknown output {output!r}: use table or json")
    md = get_or_fail(open_or_fail(home, context, kubeconfig), namespace, name)
    if output == "json":
        sys.stdout.write(json.dumps(status_document(md), indent=2) + "\n")
        return
    print_status(md)


def pick_result(
    results: list[MonitorResultSummary], monitor_name: str | None, version: str | None
) -> MonitorResultSummary | None:
    """The newest judged window with a report among those of that monitor (and version)."""
    candidates = [
        r
        for r in results
        if r.report_uri
        and (monitor_name is None or r.monitor == monitor_name)
        and (version is None or r.version == version)
    ]
    return max(candidates, key=lambda r: (r.window_end, r.attempt), default=None)


class TamperedReport(Exception):
    """The report's bytes are not the ones the operator recorded."""


def verified_report(store: MonitoringStore, result: MonitorResultSummary) -> bytes:
    """The report's bytes, if their SHA-256 is the recorded one; raises otherwise (never returns others)."""
    uri = result.report_uri or ""
    if not result.report_sha256:
        raise TamperedReport(
            f"no SHA-256 is recorded for {uri} (status.monitoring.results), so it cannot be verified"
        )
    body = store.read_bytes(uri)
    if body is None:
        raise FileNotFoundError(f"the report {uri} is not in the monitoring store (deleted, or moved?)")
    digest = hashlib.sha256(body).hexdigest()
    if digest != result.report_sha256.lower():
        raise TamperedReport(
            f"the report at {uri} has SHA-256 {digest}, but the operator recorded "
            f"{result.report_sha256} when the monitor ran: it was changed after the run (evidence tampered "
            "with, or replaced); not written. The audit trail's monitor-run record holds the recorded hash"
        )
    return body


@monitor.command("report")
def report_command(
    name: Name,
    output: Annotated[Path, typer.Option("--output", "-o", help="Write the HTML report to this file.")],
    monitor_name: Annotated[
        str | None, typer.Option("--monitor", help="Monitor (spec.monitoring.monitors[].name).")
    ] = None,
    version: Annotated[str | None, typer.Option("--version", help="Model version judged.")] = None,
    namespace: Namespace = "default",
    home: Home = DEFAULT_HOME,
    context: Context = None,
    kubeconfig: Kubeconfig = None,
) -> None:
    """Fetch the latest HTML report of a monitor from the monitoring store, checked against its SHA-256."""
    md = get_or_fail(open_or_fail(home, context, kubeconfig), namespace, name)
    results = md.status.monitoring.results if md.status.monitoring else []
    result = pick_result(results, monitor_name, version)
    if result is None:
        which = " ".join(
            part
            for part in (
                f"of monitor {monitor_name}" if monitor_name else "",
                f"on version {version}" if version else "",
            )
            if part
        )
        known = sorted({f"{r.monitor} v{r.version}" for r in results if r.report_uri})
        fail(
            f"{md.key} has no monitor report {which}".rstrip()
            + (f"; reports exist for: {', '.join(known)}" if known else "; no monitor has written one yet")
        )
    try:
        body = verified_report(MonitoringStore(), result)
    except (AdapterError, FileNotFoundError, TamperedReport) as exc:
        fail(str(exc))
    output.write_bytes(body)
    err.print(
        f"wrote {escape(str(output))}: monitor {escape(result.monitor)} on version "
        f"{escape(result.version)}, window {_utc(result.window_start)} - {_utc(result.window_end)} UTC, "
        f"verdict {result.verdict.value}, sha256 {result.report_sha256} verified",
        highlight=False,
        soft_wrap=True,
    )
