"""The run's HTML report: Evidently's own (drift) with the verdict, checks and group tables added, escaped."""

from __future__ import annotations

import hashlib
import tempfile
from html import escape
from pathlib import Path
from typing import Any

import pandas as pd

from steward.api.monitor_results import Check, MonitorJob, MonitorVerdict
from steward.monitors import store


def _value(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


def _checks_table(checks: list[Check]) -> str:
    rows = "".join(
        "<tr>"
        f"<td>{escape(c.name)}</td><td>{_value(c.value)}</td><td>{escape(c.op)} {_value(c.threshold)}</td>"
        f"<td>{'not judged' if c.passed is None else 'pass' if c.passed else 'BREACH'}</td>"
        f"<td>{escape(c.detail)}</td></tr>"
        for c in checks
    )
    return (
        "<table><thead><tr><th>check</th><th>value</th><th>passes when</th><th>result</th><th>detail</th>"
        f"</tr></thead><tbody>{rows}</tbody></table>"
    )


def _frame_table(frame: pd.DataFrame) -> str:
    head = "".join(f"<th>{escape(str(c))}</th>" for c in ["group", *frame.columns])
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(str(v))}</td>" for v in [index, *row]) + "</tr>"
        for index, row in zip(frame.index, frame.itertuples(index=False), strict=True)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def steward_section(
    job: MonitorJob,
    verdict: MonitorVerdict,
    summary: str,
    checks: list[Check],
    tables: dict[str, pd.DataFrame],
    rows: int,
    labelled_rows: int,
) -> str:
    parts = [
        '<section id="steward-monitor" style="font-family:sans-serif;margin:2em">',
        f"<h2>Steward monitor {escape(job.monitor.name)} ({escape(job.monitor.kind.value)}): "
        f"{escape(verdict.value)}</h2>",
        f"<p>{escape(job.deployment)} version {escape(job.version)}; "
        f"window {escape(job.window_start.isoformat())} to {escape(job.window_end.isoformat())}; "
        f"{rows} rows, {labelled_rows} labelled</p>",
        f"<p>{escape(summary)}</p>",
        _checks_table(checks),
    ]
    for feature, table in tables.items():
        parts += [f"<h3>Groups of {escape(feature)}</h3>", _frame_table(table)]
    parts.append("</section>")
    return "\n".join(parts)


def evidently_html(snapshot: Any) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "report.html"
        snapshot.save_html(str(path))
        return path.read_text(encoding="utf-8")


def render(snapshot: Any, section: str, title: str) -> bytes:
    if snapshot is None:
        page = f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{escape(title)}</title></head><body>"
        return (page + section + "</body></html>").encode()
    html = evidently_html(snapshot)
    cut = html.rfind("</body>")
    html = html + section if cut < 0 else html[:cut] + section + html[cut:]
    return html.encode()


def write_report(uri: str, body: bytes) -> str:
    """Stores the report; returns the sha256 of exactly the bytes written."""
    store.write_bytes(uri, body, content_type="text/html; charset=utf-8")
    return hashlib.sha256(body).hexdigest()
