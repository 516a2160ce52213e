"""Kopf handlers: parse the resource, run one reconcile pass, write status. Nothing else lives here.

Run with `kopf run -m steward.operator.handlers` (the chart does). Reconciles on create, spec change and
operator start (resume), and re-observes on a timer so that status follows Ray and MLflow, not just edits.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

import kopf
from pydantic import ValidationError

from steward.api.model_deployment import GROUP, PLURAL, VERSION
from steward.operator.actions import EventType
from steward.operator.config import config_from_env
from steward.operator.core import Decision, retry_delay_s
from steward.operator.reconciler import EventSink, Reconciler
from steward.operator.resource import invalid_spec_status, parse_resource, status_patch

FINALIZER = "steward.io/cleanup"
CONFIG = config_from_env()
_reconciler: Reconciler | None = None
# uid -> monotonic time of the next timer pass: soon while a rollout runs, else the resync interval.
_next_pass: dict[str, float] = {}


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


def _reconcile(body: kopf.Body, patch: kopf.Patch) -> Decision:
    try:
        md = parse_resource(body)
    except ValidationError as exc:
        # The API server's schema normally stops this; a CRD older than the operator may not.
        patch.status.update(invalid_spec_status(body, exc, _now()))
        raise kopf.PermanentError(f"invalid ModelDeployment spec: {exc}") from exc
    decision = reconciler().reconcile(md, _now(), _events_for(body))
    patch.status.update(status_patch(decision.status))
    wait_s = decision.requeue_after_s if decision.requeue_after_s is not None else CONFIG.resync_interval_s
    _next_pass[str(body.metadata.uid)] = time.monotonic() + wait_s
    return decision


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
def reconcile(body: kopf.Body, patch: kopf.Patch, retry: int, **_: Any) -> None:
    decision = _reconcile(body, patch)
    if decision.retry:
        raise kopf.TemporaryError(decision.retry_reason, delay=retry_delay_s(retry, CONFIG.retry_max_delay_s))


@kopf.timer(GROUP, VERSION, PLURAL, interval=CONFIG.rollout_tick_s, initial_delay=CONFIG.rollout_tick_s)
def resync(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
    """Level-triggered: re-observe Ray and MLflow even when nobody edits the resource. The timer ticks at
    the rollout pace; a deployment with no rollout is looked at only every resync interval. Manual rollout
    commands (annotations) are picked up by this tick too."""
    if body.metadata.get("deletionTimestamp"):
        return
    if time.monotonic() < _next_pass.get(str(body.metadata.uid), 0.0):
        return
    _reconcile(body, patch)


@kopf.on.delete(GROUP, VERSION, PLURAL)
def cleanup(body: kopf.Body, retry: int, **_: Any) -> None:
    md = parse_resource(body, lenient=True)
    requested = body.metadata.get("deletionTimestamp")
    requested_at = datetime.fromisoformat(requested.replace("Z", "+00:00")) if requested else _now()
    _next_pass.pop(str(body.metadata.uid), None)
    decision = reconciler().finalize(md, requested_at, _now(), _events_for(body))
    if not decision.release_finalizer:
        raise kopf.TemporaryError(
            "waiting for Ray Serve to remove the application", delay=retry_delay_s(retry, 10.0)
        )


logging.getLogger("httpx").setLevel(logging.WARNING)
