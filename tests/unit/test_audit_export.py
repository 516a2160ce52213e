"""Audit exports: JSON and CSV read back to records with the same hashes; the HTML page stands alone."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from steward.audit.export import CSV_COLUMNS, from_csv, from_json, to_csv, to_html, to_json
from steward.audit.records import (
    AuditAction,
    AuditRecord,
    DeploymentRef,
    ModelVersions,
    RecordDraft,
    record_hash,
    seal,
)
from steward.audit.verify import verify

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
REF = DeploymentRef(namespace="risk", name="credit", uid="3f0c-uid")
KEY = b"audit-secret"
REPORT = "https://reports.example.com/credit/run-17?tab=drift&x=1"


def draft(action: AuditAction, reason: str, evidence: dict[str, Any] | None = None, **kw: Any) -> RecordDraft:
    return RecordDraft(
        deployment=kw.pop("deployment", REF),
        action=action,
        reason=reason,
        evidence=evidence or {},
        cause=kw.pop("cause", f"{action}:{reason}"),
        **kw,
    )


def chain(key: bytes | None = KEY) -> list[AuditRecord]:
    drafts = [
        draft(
            AuditAction.CREATED,
            "resource created",
            {"spec": {"model": {"name": "credit-risk", "version": "3"}, "serving": {"replicas": 2}}},
            actor="alice@example.com",
            model=ModelVersions(name="credit-risk", to_version="3"),
        ),
        draft(
            AuditAction.DEPLOYED,
            "version 3 is serving with 2 ready replica(s)",
            {"model_uri": "models:/credit-risk/3", "endpoint": "http://127.0.0.1:8000/credit", "extra": None},
            model=ModelVersions(name="credit-risk", to_version="3"),
        ),
        draft(
            AuditAction.SPEC_CHANGED,
            'ticket RISK-12: "bump", with commas,\nand a newline',
            {"changes": ["model.version: 3 -> 4"], "generation": 2, "ratio": 0.1, "ok": True},
            actor="bob",
            model=ModelVersions(name="credit-risk", to_version="4"),
        ),
        draft(
            AuditAction.VIOLATION_DETECTED,
            "drift above threshold",
            {"report": REPORT, "score": 0.31, "at": T0.isoformat()},
            model=ModelVersions(name="credit-risk", from_version="4"),
        ),
        draft(
            AuditAction.ROLLED_BACK,
            "rolled back after the violation, ünïcödé reason",
            {"nested": {"deep": [1, 2, {"k": "v"}]}},
            model=ModelVersions(name="credit-risk", from_version="4", to_version="3"),
        ),
        draft(AuditAction.MONITOR_RUN, "", deployment=DeploymentRef(namespace="risk", name="credit")),
    ]
    records: list[AuditRecord] = []
    for i, d in enumerate(drafts):
        records.append(seal(d, records[-1] if records else None, T0 + timedelta(minutes=i), key))
    return records


@pytest.mark.parametrize("key", [KEY, None])
@pytest.mark.parametrize(("write", "read"), [(to_json, from_json), (to_csv, from_csv)])
def test_round_trip_preserves_hashes(write: Any, read: Any, key: bytes | None) -> None:
    records = chain(key)
    back = read(write(records))
    assert [r.hash for r in back] == [r.hash for r in records]
    assert all(record_hash(r) == r.hash for r in back)
    assert [r.signature for r in back] == [r.signature for r in records]
    assert back == records
    assert verify("risk/credit", back, key).ok
    # Reading back and writing again gives the same text.
    assert write(back) == write(records)


def test_round_trip_keeps_a_tampered_record_tampered() -> None:
    records = chain()
    records[2] = records[2].model_copy(update={"reason": "nothing to see"})
    for write, read in ((to_json, from_json), (to_csv, from_csv)):
        result = verify("risk/credit", read(write(records)), KEY)
        assert result.first_break is not None and result.first_break.position == 3


def test_json_is_an_array_with_sorted_keys() -> None:
    text = to_json(chain())
    assert text.lstrip().startswith("[")
    assert text == to_json(from_json(text))
    first_keys = re.findall(r'^    "(\w+)":', text, flags=re.MULTILINE)[:12]
    assert first_keys == sorted(first_keys)


def test_csv_has_the_documented_columns_and_compact_evidence() -> None:
    text = to_csv(chain())
    header = text.splitlines()[0]
    assert tuple(header.split(",")) == CSV_COLUMNS
    assert '"{""model_uri"":""models:/credit-risk/3"",' in text


@pytest.mark.parametrize(
    "text", ['=HYPERLINK("http://evil.example","x")', "+1+2", "-2+3", "@SUM(A1)", "\tx", "\rx", "'quoted"]
)
def test_csv_cells_cannot_become_formulas_and_still_read_back(text: str) -> None:
    # Free text from annotations (reason, actor) and versions reach the CSV as cells a spreadsheet would run.
    records = []
    for i, d in enumerate(
        [
            draft(AuditAction.CREATED, text, actor=text, model=ModelVersions(name=text, to_version=text)),
            draft(AuditAction.SPEC_CHANGED, f"{text} again", actor="bob"),
        ]
    ):
        records.append(seal(d, records[-1] if records else None, T0 + timedelta(minutes=i), KEY))
    exported = to_csv(records)
    rows = list(csv.reader(io.StringIO(exported, newline="")))[1:]
    cells = [cell for row in rows for cell in row]
    assert not [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")]
    assert rows[0][CSV_COLUMNS.index("reason")] == "'" + text
    back = from_csv(exported)
    assert back == records
    assert verify("risk/credit", back, KEY).ok


def test_csv_refuses_an_empty_value_it_could_not_read_back() -> None:
    record = seal(
        draft(AuditAction.CREATED, "r", deployment=DeploymentRef(namespace="a", name="b", uid="")), None, T0
    )
    with pytest.raises(ValueError, match="uid"):
        to_csv([record])


def test_malformed_input_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        from_json('{"not": "an array"}')
    with pytest.raises(ValueError, match="entry 1"):
        from_json('[{"seq": 1}]')
    with pytest.raises(ValueError, match="header"):
        from_csv("a,b,c\n1,2,3\n")
    good = to_csv(chain()[:1])
    with pytest.raises(ValueError, match="row 2"):
        from_csv(good.replace("\r\n1,", "\r\nx,", 1))


def test_html_shows_an_intact_chain_and_every_record() -> None:
    records = chain()
    page = to_html("risk/credit", records, verify("risk/credit", records, KEY))
    assert page.startswith("<!DOCTYPE html>")
    assert "Audit trail of risk/credit" in page
    assert f"chain intact: {len(records)} records verified" in page
    for r in records:
        assert f">{r.action.value}<" in page
        assert r.hash[:12] in page
    assert "alice@example.com" in page
    assert "2026-11-23 12:00:00" in page
    assert "3 \u2192 4" not in page and "4 \u2192 3" in page
    assert "model.version: 3 -&gt; 4" in page


def test_html_is_self_contained_and_links_only_evidence_urls() -> None:
    records = chain()
    page = to_html("risk/credit", records, verify("risk/credit", records, KEY))
    assert "<script" not in page.lower()
    assert "<link" not in page.lower()
    assert "url(" not in page
    assert "@import" not in page
    assert re.findall(r"\bsrc\s*=", page) == []
    hrefs = re.findall(r'href="([^"]*)"', page)
    assert hrefs == ["http://127.0.0.1:8000/credit", REPORT.replace("&", "&amp;")]
    # No other absolute URL anywhere on the page.
    urls = re.findall(r"https?://[^\s<\"]+", page)
    assert set(urls) <= {"http://127.0.0.1:8000/credit", REPORT.replace("&", "&amp;")}
    # models:/ and s3:// URIs stay text.
    assert 'href="models:' not in page


def test_html_shows_the_first_break_in_red() -> None:
    records = chain()
    records[3] = records[3].model_copy(update={"reason": "edited afterwards"})
    result = verify("risk/credit", records, KEY)
    page = to_html("risk/credit", records, result)
    assert 'class="verdict broken"' in page
    assert "chain intact" not in page
    assert "chain broken at position 4" in page
    assert "content does not match its hash" in page
    assert page.count('<tr class="break">') == 1
    assert page.count('<tr class="after-break">') == 2


def test_html_escapes_everything() -> None:
    evil = '<script>alert("x")</script>'
    record = seal(
        draft(
            AuditAction.POLICY_ACTION,
            evil,
            {evil: evil, "link": 'https://ok.example/"onmouseover="alert(1)', "js": "javascript:alert(1)"},
            actor="<b>mallory</b>",
            model=ModelVersions(name="<i>m</i>", to_version="<1>"),
            deployment=DeploymentRef(namespace="risk", name="credit"),
        ),
        None,
        T0,
    )
    page = to_html("risk/<credit>", [record], verify("risk/<credit>", [record]))
    assert "<script" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "<b>mallory" not in page and "&lt;b&gt;mallory&lt;/b&gt;" in page
    assert "<i>m</i>" not in page
    assert "risk/&lt;credit&gt;" in page
    assert 'href="javascript' not in page
    assert "onmouseover=" not in page.replace("onmouseover=&quot;", "")
    assert re.findall(r'href="([^"]*)"', page) == ["https://ok.example/"]


def test_html_of_an_empty_trail() -> None:
    page = to_html("risk/credit", [], verify("risk/credit", []))
    assert "chain intact: 0 records verified" in page
    assert "no records" in page
