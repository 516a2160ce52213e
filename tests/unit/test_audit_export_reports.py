"""`steward audit export --format html` links the monitor reports of monitor-run and policy-action records."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest

from steward.audit.export import to_html
from steward.audit.records import AuditAction, AuditRecord, DeploymentRef, RecordDraft, seal
from steward.audit.verify import verify

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
SHA = "9f2c" + "0" * 60


def page_of(action: AuditAction, evidence: dict[str, Any]) -> str:
    record: AuditRecord = seal(
        RecordDraft(
            deployment=DeploymentRef(namespace="risk", name="credit", uid="u1"),
            action=action,
            reason="monitor drift on version 4: breach",
            evidence=evidence,
            cause="monitor-run:x",
        ),
        None,
        T0,
    )
    return to_html("risk/credit", [record], verify("risk/credit", [record]))


def report_block(page: str) -> str:
    found = re.findall(r'<div class="report">(.*?)</div>', page)
    assert len(found) == 1, page
    return str(found[0])


@pytest.mark.parametrize("action", [AuditAction.MONITOR_RUN, AuditAction.POLICY_ACTION])
@pytest.mark.parametrize(
    ("uri", "href"),
    [
        ("s3://monitoring/reports/risk/credit/drift/v4/report.html", None),
        (
            "https://minio.example/monitoring/report.html?x=1&y=2",
            "https://minio.example/monitoring/report.html?x=1&amp;y=2",
        ),
        ("/home/me/.steward/monitoring/reports/drift v4/report.html", None),
        ("file:///srv/monitoring/report.html", None),
    ],
)
def test_the_report_is_a_link_with_its_sha256(action: AuditAction, uri: str, href: str | None) -> None:
    block = report_block(page_of(action, {"report_uri": uri, "report_sha256": SHA, "monitor": "drift"}))
    expected = href or (
        "file:///home/me/.steward/monitoring/reports/drift%20v4/report.html" if uri.startswith("/") else uri
    )
    assert f'<a href="{expected}" rel="noopener noreferrer">' in block
    assert f'<span class="mono">{SHA}</span>' in block


@pytest.mark.parametrize(
    "uri",
    [
        "javascript:alert(1)",
        "JavaScript:alert(document.cookie)",
        "java\tscript:alert(1)",
        " javascript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "vbscript:msgbox(1)",
        "//evil.example/report.html",
        "https:/no-host",
        'https://ok.example/"onmouseover="alert(1)',
        "relative/report.html",
    ],
)
def test_anything_else_is_shown_as_text_never_as_a_link(uri: str) -> None:
    page = page_of(AuditAction.MONITOR_RUN, {"report_uri": uri, "report_sha256": SHA})
    block = report_block(page)
    assert "<a " not in block
    assert "<script" not in page.lower()
    assert 'href="javascript' not in page.lower() and 'href="data' not in page.lower()
    assert "onmouseover=" not in page.replace("onmouseover=&quot;", "")


def test_a_missing_hash_is_said_and_records_without_a_report_get_no_block() -> None:
    block = report_block(
        page_of(AuditAction.POLICY_ACTION, {"report_uri": "s3://m/r.html", "report_sha256": None})
    )
    assert "no sha256 recorded" in block
    assert '<div class="report">' not in page_of(
        AuditAction.MONITOR_RUN, {"report_uri": None, "verdict": "error"}
    )
    # Another action's evidence may hold the same key; only monitoring records rest on a report.
    assert '<div class="report">' not in page_of(AuditAction.SPEC_CHANGED, {"report_uri": "s3://m/r.html"})
