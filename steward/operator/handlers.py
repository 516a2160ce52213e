"""Kopf handlers: wire each ModelDeployment to its one reconcile loop, the webhook and the finalizer.

Run with `kopf run -m steward.operator.handlers` (the chart does). Each object gets one daemon
(`steward.operator.object_loop`), the only path that decides and writes its status: it passes at once when the
object appears (created, or found at the operator's start) or its inputs change (spec, a rollout command), and
otherwise when the next pass is due (soon while a rollout runs, else the resync interval; backing off with
jitter after failures). Kopf's change notifications only wake it. Its state lives in Kopf's per-object memo.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import kopf
from pydantic import ValidationError

from steward.api.model_deployment import GROUP, PLURAL, VERSION
from steward.operator.actions import EventType
from steward.operator.admission import stamp
from steward.operator.config import config_from_env
from steward.operator.core import Decision, DeletionDecision, retry_delay_s
from steward.operator.kopf_api import KopfObjectApi
from steward.operator.metrics import METRICS
from steward.operator.object_loop import PassResult, Work, object_state, run
from steward.operator.pass_gate import PassGate
from steward.operator.reconciler import EventSink, Reconciler
from steward.operator.resource import ParseMemo, invalid_spec_status, parse_resource, status_patch
from steward.operator.settled import SettledPass

FINALIZER = "steward.io/cleanup"
REMEMBERED_KEY = "steward_remembered"
CONFIG = config_from_env()
_reconciler: Reconciler | None = None
# Operator-wide (set at startup): the daemons write status through Kopf's client, which needs them.
_settings: kopf.OperatorSettings | None = None
_jitter = random.Random()
# Shared by every object's loop: bounded passes at once, a person's change ahead of routine passes. Made
# afresh at each start (tests run the operator several times in one process, each on its own event loop).
_gate: PassGate | None = None
# The /metrics server; started once per process, however often Kopf's startup handlers run in it (tests).
_metrics_server: Any = None


def reconciler() -> Reconciler:
    global _reconciler
    if _reconciler is None:
        _reconciler = Reconciler(CONFIG)
        if _reconciler.trail is None:
            logging.getLogger(__name__).warning(
                "no audit store configured (STEWARD_AUDIT_S3_BUCKET or STEWARD_AUDIT_DIR): "
                "decisions are not recorded"
            )
    return _reconciler


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    global _settings, _gate
    _settings = settings
    _gate = PassGate(CONFIG.max_concurrent_passes)
    settings.persistence.finalizer = FINALIZER
    # Kopf keeps the finalizer until the object's loop has exited, and re-checks a loop still finishing its
    # pass (which cannot be interrupted) only every `cancellation_polling` s, 60 by default: a deletion that
    # lands mid-pass would wait a minute after the pass ends unless a watch event came.
    settings.background.cancellation_polling = 1.0
    # Status belongs to our schema (unknown fields would be pruned): keep Kopf's bookkeeping in annotations.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="steward.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="steward.io", key="last-handled-configuration"
    )
    global _metrics_server
    if CONFIG.metrics_port is not None and _metrics_server is None:
        _metrics_server = METRICS.serve(CONFIG.metrics_port)
    if CONFIG.webhook_port is not None:
        if not CONFIG.webhook_insecure and not (CONFIG.webhook_certfile and CONFIG.webhook_keyfile):
            raise kopf.PermanentError(
                "STEWARD_WEBHOOK_PORT is set but STEWARD_WEBHOOK_CERT / STEWARD_WEBHOOK_KEY are not: the API "
                "server calls admission webhooks over TLS; mount a certificate (e.g. from cert-manager)"
            )
        settings.admission.server = kopf.WebhookServer(
            addr=CONFIG.webhook_addr,
            port=CONFIG.webhook_port,
            host=CONFIG.webhook_host,
            certfile=CONFIG.webhook_certfile,
            pkeyfile=CONFIG.webhook_keyfile,
            insecure=CONFIG.webhook_insecure,
        )
        if CONFIG.webhook_managed:
            settings.admission.managed = CONFIG.webhook_managed


if CONFIG.webhook_port is not None:
    # Registered only when enabled: Kopf refuses to start with admission handlers and no webhook server.

    @kopf.on.mutate(GROUP, VERSION, PLURAL, id="authenticated-user", operations=["CREATE", "UPDATE"])
    def stamp_authenticated_user(userinfo: kopf.UserInfo, patch: kopf.Patch, **kwargs: Any) -> None:
        """Fail closed: if this webhook is down, changes wait, rather than land without who made them."""
        operation = str(kwargs.get("operation") or "")
        for key, value in stamp(operation, userinfo, kwargs.get("old"), kwargs.get("new")).items():
            patch.metadata.annotations[key] = value


@kopf.on.cleanup()
def close(**_: Any) -> None:
    if _reconciler is not None:
        _reconciler.close()


def _events_for(body: Mapping[str, Any]) -> EventSink:
    def post(type_: EventType, reason: str, message: str) -> None:
        kopf.event(
            kopf.Body(cast(kopf.RawBody, dict(body))), type=type_.value, reason=reason, message=message[:1024]
        )

    return post


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Remembered:
    """What one object's pass keeps for its next one (in Kopf's per-object memo, never shared)."""

    parsed: ParseMemo = field(default_factory=ParseMemo)
    settled: SettledPass = field(default_factory=SettledPass)
    # The last decision and the result made of it: a decision repeated is not dumped again.
    result: tuple[Decision, PassResult] | None = None


def _pass(remembered: Remembered, body: dict[str, Any], changed: bool) -> PassResult:
    """Parse, observe, decide, act (blocking: runs in a thread). The status is written by the caller."""
    try:
        md = remembered.parsed.parse(body)
    except ValidationError as exc:
        # The API server's schema normally stops this; a CRD older than the operator may not. Said once per
        # spec; the loop backs off until the spec changes.
        if changed:
            _events_for(body)(EventType.WARNING, "InvalidSpec", f"invalid ModelDeployment spec: {exc}")
        return PassResult(invalid_spec_status(body, exc, _now()), retry=True, requeue_after_s=None)
    decision = METRICS.reconciled(
        md.key, lambda: reconciler().reconcile(md, _now(), _events_for(body), remembered.settled)
    )
    if remembered.result is not None and remembered.result[0] is decision:
        return remembered.result[1]
    result = PassResult(status_patch(decision.status), decision.retry, decision.requeue_after_s)
    remembered.result = (decision, result)
    return result


def _work_for(memo: kopf.Memo) -> Work:
    """The object's pass, with what it remembers from its last one (in Kopf's per-object memo)."""
    remembered = memo.get(REMEMBERED_KEY)
    if not isinstance(remembered, Remembered):
        remembered = memo[REMEMBERED_KEY] = Remembered()

    async def work(body: dict[str, Any], changed: bool) -> PassResult:
        return await asyncio.to_thread(_pass, remembered, body, changed)

    return work


@kopf.on.event(GROUP, VERSION, PLURAL, id="wake")
async def wake(memo: kopf.Memo, **_: Any) -> None:
    """Every change (spec, a rollout command, our own status write) only wakes the object's loop, which
    decides whether anything is due; nothing here reconciles."""
    object_state(memo).wake.set()


@kopf.daemon(GROUP, VERSION, PLURAL, id="reconcile")
async def reconcile_loop(
    body: kopf.Body,
    memo: kopf.Memo,
    stopped: kopf.DaemonStopped,
    resource: kopf.Resource,
    logger: Any,
    **_: Any,
) -> None:
    """The object's one reconcile path; `body` is Kopf's live view, following the watch stream."""
    if _settings is None:
        raise kopf.PermanentError("the operator's settings are not known: the startup handler did not run")
    api = KopfObjectApi(_settings, resource, body.metadata.namespace, body.metadata.name, logger)
    work = _work_for(memo)
    await run(object_state(memo), body, api, work, CONFIG, stopped, time.monotonic, _jitter.random, _gate)


def _finalize(body: dict[str, Any]) -> DeletionDecision:
    md = parse_resource(body, lenient=True)
    requested = (body.get("metadata") or {}).get("deletionTimestamp")
    requested_at = datetime.fromisoformat(requested.replace("Z", "+00:00")) if requested else _now()
    return reconciler().finalize(md, requested_at, _now(), _events_for(body))


@kopf.on.delete(GROUP, VERSION, PLURAL)
async def cleanup(body: kopf.Body, memo: kopf.Memo, retry: int, **_: Any) -> None:
    async with object_state(memo).busy:  # a pass of the object's loop finishes first, never overlaps
        decision = await asyncio.to_thread(_finalize, copy.deepcopy(dict(body)))
    if decision.release_finalizer:
        METRICS.forget(f"{body.metadata.namespace}/{body.metadata.name}")
    else:
        raise kopf.TemporaryError(
            f"waiting for {decision.waiting_for or 'Ray Serve to remove the application'}",
            delay=retry_delay_s(retry, 10.0, draw=_jitter.random()),
        )


def _not_a_wake(record: logging.LogRecord) -> bool:
    """Kopf logs every handler's success at INFO, and posts what it logs at INFO as a Kubernetes Event: for
    `wake`, one line and one Event per watch event of every object (each of our own status writes too),
    none of which says anything. Dropped at the logger, so neither the log nor the Events see it."""
    return record.getMessage() != "Handler 'wake' succeeded."


logging.getLogger("httpx").setLevel(logging.WARNING)
logging.getLogger("kopf.objects").addFilter(_not_a_wake)
