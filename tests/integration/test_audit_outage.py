"""The audit store goes away for a while: nothing is lost, order is kept, status says the trail is behind,
then it catches up. Real S3 protocol (moto server) behind a TCP proxy the test switches off and on."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from helpers import BUCKET, free_port
from tcp_proxy import TcpProxy

from steward.audit.records import AuditAction, DeploymentRef, RecordDraft
from steward.audit.s3_store import S3Store
from steward.audit.trail import AuditTrail
from steward.audit.verify import verify
from steward.operator.config import OperatorConfig
from steward.operator.reconciler import Reconciler

pytestmark = pytest.mark.integration
REF = DeploymentRef(namespace="risk", name="outage")


def draft(cause: str) -> RecordDraft:
    return RecordDraft(deployment=REF, action=AuditAction.DEPLOYED, reason=cause, cause=cause)


def test_store_outage_buffers_then_catches_up(
    s3_env: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in s3_env.items():
        monkeypatch.setenv(key, value)  # credentials for boto3, as the operator's environment would hold them
    moto_port = int(s3_env["MLFLOW_S3_ENDPOINT_URL"].rsplit(":", 1)[1])
    proxy = TcpProxy(free_port(), moto_port)
    proxy.start()
    prefix = f"outage-{uuid.uuid4().hex[:8]}"
    try:
        store = S3Store(BUCKET, prefix, endpoint_url=f"http://127.0.0.1:{proxy.listen_port}")
        trail = AuditTrail(store)
        reconciler = Reconciler(OperatorConfig(), ray_token="unused", trail=trail)
        trail.record([draft("one"), draft("two")])
        assert reconciler.audit_status(REF.key).recorded_seq == 2

        proxy.stop()  # the store is unreachable
        trail.record([draft("three")])
        trail.record([draft("four"), draft("three")])  # a replay while down is not a second record
        status = reconciler.audit_status(REF.key)
        assert (status.pending, status.recorded_seq) == (2, 2)
        assert "2 record(s) not yet stored" in status.message

        # The operator restarts while the store is still down: the buffer survives in status.
        saved = reconciler.audit_status(REF.key)
        assert len(saved.buffered) == 2
        trail = AuditTrail(S3Store(BUCKET, prefix, endpoint_url=f"http://127.0.0.1:{proxy.listen_port}"))
        reconciler = Reconciler(OperatorConfig(), ray_token="unused", trail=trail)

        proxy.start()  # back
        reconciler.resume_audit(REF.key, saved)
        status = reconciler.audit_status(REF.key)
        assert (status.pending, status.recorded_seq, status.message) == (0, 4, "")
        records = S3Store(BUCKET, prefix, endpoint_url=s3_env["MLFLOW_S3_ENDPOINT_URL"]).read(REF.key)
        assert [r.cause for r in records] == ["one", "two", "three", "four"]
        assert verify(REF.key, records).ok
    finally:
        proxy.shutdown()
