"""Kopf handlers: parse the resource, run one reconcile pass, write status. Nothing else lives here.

Run with `kopf run -m steward.operator.handlers` (the chart does). Reconciles on create, spec change and
operator start (resume), and re-observes on a timer so that status follows Ray and MLflow, not just edits.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from typing import Any

import kopf
from pydantic import ValidationError

from steward.api.model_deployment import GROUP, PLURAL, VERSION, ModelDeployment, ModelDeploymentStatus
from steward.operator.actions import EventType
from steward.operator.admission import stamp
from steward.operator.config import config_from_env
from steward.operator.core import Decision, retry_delay_s
from steward.operator.reconciler import EventSink, Reconciler
from steward.operator.resource import invalid_spec_status, parse_resource, status_patch

FINALIZER = "steward.io/cleanup"
CONFIG = config_from_env()
_reconciler: Reconciler | None = None
# uid -> monotonic time of the next timer pass: soon while a rollout runs, else the resync interval.
_next_pass: dict[str, float] = {}
# uid -> (when, status) of the last status this process wrote. A timer can fire before the watch stream has
# delivered that write; deciding again from the older status would redo a transition (a manual command
# applied twice), so such a tick waits for the stream to catch up.
_written: dict[str, tuple[float, ModelDeploymentStatus]] = {}
STALE_GRACE_S = 10.0
# Kopf runs sync handlers in threads: a timer tick and a spec-change pass must not overlap on one object.
_busy: dict[str, threading.Lock] = {}


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
    settings.persistence.finalizer = FINALIZER
    # Status belongs to our schema (unknown fields would be pruned): keep Kopf's bookkeeping in annotations.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="steward.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="steward.io", key="last-handled-configuration"
    )
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


def _events_for(body: kopf.Body) -> EventSink:
    def post(type_: EventType, reason: str, message: str) -> None:
        kopf.event(body, type=type_.value, reason=reason, message=message[:1024])

    return post


def _now() -> datetime:
    return datetime.now(UTC)


def _parse(body: kopf.Body, patch: kopf.Patch) -> ModelDeployment:
    try:
        return parse_resource(body)
    except ValidationError as exc:
        # The API server's schema normally stops this; a CRD older than the operator may not.
        patch.status.update(invalid_spec_status(body, exc, _now()))
        raise kopf.PermanentError(f"invalid ModelDeployment spec: {exc}") from exc


def _reconcile(md: ModelDeployment, body: kopf.Body, patch: kopf.Patch) -> Decision:
    uid = str(body.metadata.uid)
    decision = reconciler().reconcile(md, _now(), _events_for(body))
    patch.status.update(status_patch(decision.status))
    _written[uid] = (time.monotonic(), decision.status)
    wait_s = decision.requeue_after_s if decision.requeue_after_s is not None else CONFIG.resync_interval_s
    _next_pass[uid] = time.monotonic() + wait_s
    return decision


def _lock(uid: str) -> threading.Lock:
    return _busy.setdefault(uid, threading.Lock())


def _behind(uid: str, md: ModelDeployment) -> bool:
    """Is this body older than the status this process last wrote (the watch stream not caught up yet)?"""
    written = _written.get(uid)
    if written is None:
        return False
    at, status = written
    return md.status != status and time.monotonic() - at < STALE_GRACE_S


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
def reconcile(body: kopf.Body, patch: kopf.Patch, retry: int, **_: Any) -> None:
    # A spec change arrives on the watch stream after our own last status write: its body is current.
    with _lock(str(body.metadata.uid)):
        decision = _reconcile(_parse(body, patch), body, patch)
    if decision.retry:
        raise kopf.TemporaryError(decision.retry_reason, delay=retry_delay_s(retry, CONFIG.retry_max_delay_s))


@kopf.timer(GROUP, VERSION, PLURAL, interval=CONFIG.rollout_tick_s, initial_delay=CONFIG.rollout_tick_s)
def resync(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
    """Level-triggered: re-observe Ray and MLflow even when nobody edits the resource. The timer ticks at
    the rollout pace; a deployment with no rollout is looked at only every resync interval. Manual rollout
    commands (annotations) are picked up by this tick too."""
    if body.metadata.get("deletionTimestamp"):
        return
    uid = str(body.metadata.uid)
    if time.monotonic() < _next_pass.get(uid, 0.0):
        return
    lock = _lock(uid)
    if not lock.acquire(blocking=False):
        return  # a spec-change pass is running; the next tick looks again
    try:
        md = _parse(body, patch)
        if not _behind(uid, md):
            _reconcile(md, body, patch)
    finally:
        lock.release()


@kopf.on.delete(GROUP, VERSION, PLURAL)
def cleanup(body: kopf.Body, retry: int, **_: Any) -> None:
    md = parse_resource(body, lenient=True)
    requested = body.metadata.get("deletionTimestamp")
    requested_at = datetime.fromisoformat(requested.replace("Z", "+00:00")) if requested else _now()
    for memo in (_next_pass, _written, _busy):
        memo.pop(str(body.metadata.uid), None)
    decision = reconciler().finalize(md, requested_at, _now(), _events_for(body))
    if not decision.release_finalizer:
        raise kopf.TemporaryError(
            "waiting for Ray Serve to remove the application", delay=retry_delay_s(retry, 10.0)
        )


logging.getLogger("httpx").setLevel(logging.WARNING)
