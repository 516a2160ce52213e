"""Audit trails as files for auditors: JSON and CSV that read back exactly, and one HTML page (pure).

A record read back from JSON or CSV serialises to the same bytes it was hashed from, so `verify` gives the
same answer on an exported copy as on the store. The HTML page is self-contained (inline CSS, no scripts, no
external assets): the only links in it are URLs found in the records' evidence, and the monitor reports that
monitor-run and policy-action records name (http(s), s3:// or a local file, with their SHA-256).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from html import escape
from typing import Any
from urllib.parse import quote, urlsplit

from steward.audit.records import AuditAction, AuditRecord
from steward.audit.verify import Verification

CSV_COLUMNS = (
    "seq",
    "timestamp",
    "namespace",
    "name",
    "uid",
    "actor",
    "action",
    "model",
    "from_version",
    "to_version",
    "reason",
    "evidence",
    "cause",
    "prev_hash",
    "hash",
    "signature",
)
# CSV has no null: an empty cell in these columns is an absent value (None).
_NULLABLE = ("uid", "model", "from_version", "to_version", "signature")
# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection): such a cell, and one
# that starts with the quote itself so that reading back stays exact, gets a leading single quote, which
# spreadsheets show as text and `from_csv` takes off again.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "'")


# --- JSON -------------------------------------------------------------------------------------------------


def to_json(records: Sequence[AuditRecord]) -> str:
    """A JSON array of the records, keys sorted at every level so that the same trail gives the same text."""
    return json.dumps(
        [r.model_dump(mode="json") for r in records], indent=2, sort_keys=True, ensure_ascii=False
    )


def from_json(text: str) -> list[AuditRecord]:
    """Records from `to_json` output; raises ValueError naming the first entry that is not a record."""
    data = json.loads(text)
    if not isinstance(data, list):
        raise ValueError("an audit export in JSON is an array of records")
    records = []
    for index, item in enumerate(data, start=1):
        try:
            records.append(AuditRecord.model_validate(item))
        except ValueError as exc:
            raise ValueError(f"entry {index}: {exc}") from exc
    return records


# --- CSV --------------------------------------------------------------------------------------------------


def _csv_row(record: AuditRecord) -> dict[str, str]:
    data = record.model_dump(mode="json")
    model = data["model"] or {}
    row = {
        "seq": str(data["seq"]),
        "timestamp": data["timestamp"],
        "namespace": data["deployment"]["namespace"],
        "name": data["deployment"]["name"],
        "uid": data["deployment"]["uid"],
        "actor": data["actor"],
        "action": data["action"],
        "model": model.get("name"),
        "from_version": model.get("from_version"),
        "to_version": model.get("to_version"),
        "reason": data["reason"],
        "evidence": json.dumps(data["evidence"], separators=(",", ":"), ensure_ascii=False),
        "cause": data["cause"],
        "prev_hash": data["prev_hash"],
        "hash": data["hash"],
        "signature": data["signature"],
    }
    for column in _NULLABLE:
        if row[column] == "":
            # It would read back as None and the record would no longer match its hash.
            raise ValueError(
                f"record seq {record.seq}: an empty {column} cannot be told from a missing one in CSV; "
                "export as JSON instead"
            )
    return {column: _neutralise("" if value is None else value) for column, value in row.items()}


def _neutralise(cell: str) -> str:
    return "'" + cell if cell.startswith(_FORMULA_START) else cell


def _restore(cell: str) -> str:
    return cell[1:] if cell.startswith("'") else cell


def to_csv(records: Sequence[AuditRecord]) -> str:
    """One row per record under a header of CSV_COLUMNS; evidence is compact JSON, absent values are empty."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    for record in records:
        writer.writerow(_csv_row(record))
    return out.getvalue()


def _record_from_row(row: dict[str, str]) -> AuditRecord:
    def cell(column: str) -> str | None:
        value = row[column]
        return None if column in _NULLABLE and value == "" else value

    model: dict[str, Any] | None = None
    if cell("model") is not None:
        model = {
            "name": cell("model"),
            "from_version": cell("from_version"),
            "to_version": cell("to_version"),
        }
    elif cell("from_version") is not None or cell("to_version") is not None:
        raise ValueError("versions are given without a model")
    return AuditRecord.model_validate(
        {
            "deployment": {"namespace": row["namespace"], "name": row["name"], "uid": cell("uid")},
            "actor": row["actor"],
            "action": row["action"],
            "model": model,
            "reason": row["reason"],
            "evidence": json.loads(row["evidence"]),
            "cause": row["cause"],
            "seq": int(row["seq"]),
            "timestamp": row["timestamp"],
            "prev_hash": row["prev_hash"],
            "hash": row["hash"],
            "signature": cell("signature"),
        }
    )


def from_csv(text: str) -> list[AuditRecord]:
    """Records from `to_csv` output; raises ValueError naming the first row that is not a record."""
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if tuple(reader.fieldnames or ()) != CSV_COLUMNS:
        raise ValueError(f"an audit export in CSV has the header {','.join(CSV_COLUMNS)}")
    records = []
    for row in reader:
        if None in row or any(value is None for value in row.values()):
            raise ValueError(f"row {reader.line_num}: expected {len(CSV_COLUMNS)} cells")
        try:
            records.append(_record_from_row({column: _restore(cell) for column, cell in row.items()}))
        except ValueError as exc:
            raise ValueError(f"row {reader.line_num}: {exc}") from exc
    return records


# --- HTML -------------------------------------------------------------------------------------------------

_URL = re.compile(r"https?://[^\s<>\"'`]+")

_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2328;
       margin: 2rem auto; max-width: 1400px; padding: 0 1rem; }
h1 { font-size: 1.5rem; margin: 0 0 .25rem; }
.meta { color: #59636e; margin: 0 0 1rem; }
.verdict { border-radius: 6px; padding: .9rem 1.1rem; margin: 0 0 1.5rem; font-size: 1.1rem; }
.verdict.ok { background: #dafbe1; border: 1px solid #1a7f37; color: #116329; }
.verdict.broken { background: #ffebe9; border: 1px solid #cf222e; color: #a40e26; }
.verdict p { margin: .3rem 0 0; font-size: .95rem; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; vertical-align: top; padding: .45rem .6rem; border-bottom: 1px solid #d1d9e0; }
th { background: #f6f8fa; position: sticky; top: 0; }
tr.break td { background: #ffebe9; }
tr.after-break td { color: #8c959f; }
.mono, code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .85em; }
.nowrap { white-space: nowrap; }
.reason { white-space: pre-line; }
.action { display: inline-block; padding: 0 .45rem; border-radius: 1em; background: #ddf4ff; color: #0a3069;
          white-space: nowrap; }
.action.bad { background: #ffebe9; color: #a40e26; }
.action.good { background: #dafbe1; color: #116329; }
dl.evidence { margin: 0; display: grid; grid-template-columns: max-content auto; gap: .1rem .6rem; }
dl.evidence dt { color: #59636e; }
dl.evidence dd { margin: 0; overflow-wrap: anywhere; }
ul.evidence { margin: 0; padding-left: 1.1rem; }
.report { margin: 0 0 .4rem; overflow-wrap: anywhere; }
.none { color: #8c959f; }
details summary { cursor: pointer; color: #59636e; }
footer { color: #59636e; margin-top: 1.5rem; font-size: .85rem; }
"""

_GOOD = {"deployed", "promoted", "created"}
_BAD = {"deploy-failed", "aborted", "rolled-back", "violation-detected", "deleted"}


def _utc(moment: datetime) -> str:
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _linkify(text: str) -> str:
    """Escaped text in which http(s) URLs are links; nothing else becomes markup."""
    parts, last = [], 0
    for match in _URL.finditer(text):
        url = match.group(0)
        parts.append(escape(text[last : match.start()]))
        parts.append(f'<a href="{escape(url)}" rel="noopener noreferrer">{escape(url)}</a>')
        last = match.end()
    parts.append(escape(text[last:]))
    return "".join(parts)


def _evidence(value: Any, depth: int = 0) -> str:
    if isinstance(value, dict):
        if not value:
            return '<span class="none">&mdash;</span>'
        items = "".join(
            f"<dt>{escape(str(key))}</dt><dd>{_evidence(sub, depth + 1)}</dd>" for key, sub in value.items()
        )
        body = f'<dl class="evidence">{items}</dl>'
        # Nested objects (a whole spec) fold away so the timeline stays readable.
        fields = f"{len(value)} field" + ("s" if len(value) != 1 else "")
        return f"<details><summary>{fields}</summary>{body}</details>" if depth > 0 else body
    if isinstance(value, list):
        if not value:
            return '<span class="none">none</span>'
        return (
            '<ul class="evidence">' + "".join(f"<li>{_evidence(v, depth + 1)}</li>" for v in value) + "</ul>"
        )
    if value is None:
        return '<span class="none">&mdash;</span>'
    if isinstance(value, str):
        return _linkify(value)
    return f"<code>{escape(json.dumps(value))}</code>"


# Records whose evidence names a monitor's HTML report (report_uri) and its SHA-256 (report_sha256).
_REPORT_ACTIONS = (AuditAction.MONITOR_RUN, AuditAction.POLICY_ACTION)
_REPORT_SCHEMES = ("http", "https", "s3", "file")


def _report_href(uri: str) -> str | None:
    """The link target of a report URI, or None for anything that is not plainly a report's address: a link
    must never run code (javascript:, data:) or point somewhere the text does not show."""
    if not uri or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in uri):
        return None
    if uri.startswith("/") and not uri.startswith("//"):
        return "file://" + quote(uri)  # a local store (the local stack's <home>/monitoring)
    # As _URL: a URL with whitespace, quotes or angle brackets in it is not linked (the text may mislead).
    if any(ch.isspace() or ch in "<>\"'`" for ch in uri):
        return None
    parts = urlsplit(uri)
    if parts.scheme.lower() not in _REPORT_SCHEMES or (parts.scheme.lower() != "file" and not parts.netloc):
        return None
    return uri


def _report(record: AuditRecord) -> str:
    """The monitor report a monitor-run or policy-action record rests on, as a link with its SHA-256."""
    if record.action not in _REPORT_ACTIONS:
        return ""
    evidence = record.evidence
    uri, sha = evidence.get("report_uri"), evidence.get("report_sha256")
    if not isinstance(uri, str) or not uri:
        return ""
    href = _report_href(uri)
    target = escape(uri)
    link = f'<a href="{escape(href)}" rel="noopener noreferrer">{target}</a>' if href else target
    digest = (
        f'<br>sha256 <span class="mono">{escape(sha)}</span>'
        if isinstance(sha, str) and sha
        else '<br><span class="none">no sha256 recorded</span>'
    )
    return f'<div class="report">report: {link}{digest}</div>'


def _versions(record: AuditRecord) -> str:
    return record.model.span("\u2192") if record.model else ""


def _short(digest: str) -> str:
    return f'<span class="mono" title="{escape(digest)}">{escape(digest[:12])}</span>'


def _row(position: int, record: AuditRecord, verification: Verification) -> str:
    brk = verification.first_break
    css = ""
    if brk is not None and position == brk.position:
        css = ' class="break"'
    elif brk is not None and position > brk.position:
        css = ' class="after-break"'
    action = str(record.action)
    tone = " good" if action in _GOOD else " bad" if action in _BAD else ""
    model = record.model
    model_cell = "" if model is None else f"{escape(model.name)}<br>{escape(_versions(record))}"
    signed = "signed" if record.signature else '<span class="none">unsigned</span>'
    cells = [
        f'<td class="nowrap mono">{escape(_utc(record.timestamp))}</td>',
        f'<td class="mono">{record.seq}</td>',
        f"<td>{escape(record.actor)}</td>",
        f'<td><span class="action{tone}">{escape(action)}</span></td>',
        f"<td>{model_cell}</td>",
        f'<td class="reason">{_linkify(record.reason)}</td>',
        f"<td>{_report(record)}{_evidence(record.model_dump(mode='json')['evidence'])}</td>",
        f"<td>{_short(record.prev_hash)}</td>",
        f"<td>{_short(record.hash)}</td>",
        f"<td>{signed}</td>",
    ]
    return f"<tr{css}>{''.join(cells)}</tr>"


def _verdict(verification: Verification) -> str:
    brk = verification.first_break
    if brk is None:
        return (
            '<section class="verdict ok"><strong>&#10004; chain intact: '
            f"{verification.records} records verified</strong></section>"
        )
    return (
        '<section class="verdict broken"><strong>&#10008; chain broken at position '
        f"{brk.position} (seq {brk.seq}, {escape(str(brk.kind))})</strong>"
        f"<p>{escape(brk.message)}</p>"
        f"<p>Records from position {brk.position} on cannot be trusted.</p></section>"
    )


def to_html(deployment: str, records: Sequence[AuditRecord], verification: Verification) -> str:
    """One self-contained page: the verification result, then the timeline with its hash chain."""
    title = f"Audit trail of {deployment}"
    if records:
        span = f"{_utc(records[0].timestamp)} to {_utc(records[-1].timestamp)} UTC"
        meta = f"{len(records)} records, {span}"
    else:
        meta = "no records"
    rows = "".join(_row(position, r, verification) for position, r in enumerate(records, start=1))
    if not rows:
        rows = '<tr><td colspan="10" class="none">no records</td></tr>'
    head = "".join(
        f"<th>{escape(h)}</th>"
        for h in (
            "Time (UTC)",
            "Seq",
            "Actor",
            "Action",
            "Model",
            "Reason",
            "Evidence",
            "Previous hash",
            "Hash",
            "Signature",
        )
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title>
<style>{_CSS}</style>
</head>
<body>
<header>
<h1>{escape(title)}</h1>
<p class="meta">{escape(meta)}</p>
</header>
{_verdict(verification)}
<table>
<thead><tr>{head}</tr></thead>
<tbody>
{rows}
</tbody>
</table>
<footer>Each record carries the SHA-256 of the record before it (previous hash); editing, deleting, inserting
or reordering a record breaks the chain at that record. Hover a short hash for the full value.</footer>
</body>
</html>
"""
