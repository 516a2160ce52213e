"""Observe -> decide -> act: the one reconcile pass that the Kopf handlers and the local dev loop share.

This is the only operator module that touches adapters; it turns their errors into observations so that the
pure core decides what they mean.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from steward.adapters.errors import AdapterError, AddressNotAllowed
from steward.adapters.lease import cluster_guard
from steward.adapters.mlflow_registry import MlflowRegistry
from steward.adapters.ray_serve import RayServeClient, token_from_env
from steward.adapters.router_stats import RouterStatsClient
from steward.api.conditions import Reason
from steward.api.model_deployment import MAX_BUFFERED_AUDIT_RECORDS, AuditTrailStatus, ModelDeployment
from steward.api.monitoring_status import CaptureStatus
from steward.api.serve_app import (
    TrafficStats,
    router_access,
    router_secret_from_ray_token,
    version_app_name,
)
from steward.audit.records import AuditAction, RecordDraft
from steward.audit.store import AuditStore, LocalFolderStore
from steward.audit.trail import AuditTrail
from steward.operator.actions import (
    Action,
    ApplyServeApplications,
    DeleteModelAlias,
    DeleteServeApplication,
    EventType,
    PostEvent,
    RecordAudit,
    SetModelAlias,
    StopMonitorJob,
    StopTrainingJob,
    SubmitMonitorJob,
    SubmitTrainingJob,
)
from steward.operator.adapter_problems import REGISTRY_REASONS, registry_problem, serve_problem
from steward.operator.config import OperatorConfig
from steward.operator.core import Decision, DeletionDecision, decide, decide_deletion, deletion_actions
from steward.operator.deletion import registry_cleanup_actions
from steward.operator.freshness import may_share_observations
from steward.operator.monitoring_io import MonitorJobs
from steward.operator.observations import AuditBacklog, Observations, Problem, ResolvedModel, ServeApps
from steward.operator.retraining_io import TrainingJobs
from steward.operator.serve_config import app_name, ray_address, ray_address_refusal, route_prefix
from steward.operator.serve_observation import index_applications, indexed_serve_apps, serve_apps
from steward.operator.settled import SettledPass

log = logging.getLogger(__name__)

_MLFLOW_TAGS = {
    AuditAction.DEPLOYED: "deployed-at",
    AuditAction.DEPLOY_FAILED: "deploy-failed-at",
    AuditAction.PROMOTED: "promoted-at",
    AuditAction.ROLLED_BACK: "rolled-back-at",
}

EventSink = Callable[[EventType, str, str], None]


def with_router_secret(config: OperatorConfig, ray_token: str | None) -> OperatorConfig:
    """The configured secret file, else one derived from the Ray token (stable across restarts, and routers'
    keys reveal nothing of it). Without either, routers answer no read: a warning, not a failure."""
    if config.router_secret is not None:
        return config
    if config.router_secret_path:
        secret = Path(config.router_secret_path).read_bytes().strip()
        if not secret:
            raise ValueError(f"the router secret file {config.router_secret_path} is empty")
    elif ray_token:
        secret = router_secret_from_ray_token(ray_token)
    else:
        log.warning(
            "no router secret (STEWARD_ROUTER_SECRET_PATH) and no Ray token: routers will refuse every read, "
            "so rollouts cannot read their traffic figures"
        )
        return config
    return replace(config, router_secret=secret)


def build_trail(config: OperatorConfig) -> AuditTrail | None:
    """The audit trail the configuration names: an S3 bucket, a local folder, or none."""
    key = Path(config.audit_key_path).read_bytes().strip() if config.audit_key_path else None
    if config.audit_s3_bucket:
        from steward.audit.s3_store import S3Store  # boto3 only where S3 is used

        store: AuditStore = S3Store(
            config.audit_s3_bucket, config.audit_s3_prefix, endpoint_url=config.audit_s3_endpoint
        )
        return AuditTrail(store, key)
    if config.audit_dir:
        return AuditTrail(LocalFolderStore(Path(config.audit_dir)), key)
    return None


class Reconciler:
    def __init__(
        self, config: OperatorConfig, ray_token: str | None = None, trail: AuditTrail | None = None
    ) -> None:
        self.config = config
        # The trail the configuration names, unless a caller brings its own.
        self.trail = trail if trail is not None else build_trail(config)
        self.ray_token = ray_token if ray_token is not None else token_from_env()
        self.config = with_router_secret(config, self.ray_token)
        self.registry = MlflowRegistry(config.tracking_uri)
        self.router_stats = RouterStatsClient()
        self._serve_clients: dict[str, RayServeClient] = {}
        # Records logged because they did not fit in the status buffer: each is logged once.
        self._logged_beyond: set[tuple[str | None, str]] = set()
        self.ray_guard = cluster_guard(config.ray_lease_namespace, config.ray_lock_dir)
        self.monitor_jobs = MonitorJobs(self.ray_token, config.replica_env)
        self.training_jobs = TrainingJobs(self.ray_token, config.replica_env)

    def close(self) -> None:
        self.registry.close()
        self.router_stats.close()
        self.monitor_jobs.close()
        self.training_jobs.close()
        for client in self._serve_clients.values():
            client.close()

    def serve_client(self, address: str) -> RayServeClient:
        # The one way to a Ray cluster: the token goes nowhere the platform did not allow.
        if (refusal := ray_address_refusal(address, self.config)) is not None:
            raise AddressNotAllowed(refusal)
        if address not in self._serve_clients:
            # Fresh reads unless a pass says otherwise (observe, for objects at rest): the client's own
            # default would follow STEWARD_RAY_LIST_MAX_AGE_S, which here means objects at rest only.
            self._serve_clients[address] = RayServeClient(
                address, self.ray_token, guard=self.ray_guard, list_max_age_s=0.0
            )
        return self._serve_clients[address]

    def observe(self, md: ModelDeployment) -> Observations:
        model: ResolvedModel | Problem
        share = may_share_observations(md)  # at rest: a recent answer will do (see freshness)
        try:
            pin_age_s = self.config.registry_pin_max_age_s if share else 0.0
            spec = md.spec.model
            found = self.registry.resolve(spec.name, spec.version, spec.alias, max_age_s=pin_age_s)
            model = ResolvedModel(found.name, found.version, found.model_uri, found.source, found.run_id)
        except AdapterError as exc:
            model = registry_problem(exc)
        address = ray_address(md, self.config)
        serve: ServeApps | Problem
        try:
            list_age_s = self.config.shared_list_max_age_s if share else 0.0
            index = self.serve_client(address).derived_from_applications(index_applications, list_age_s)
            serve = indexed_serve_apps(index, app_name(md))
        except AdapterError as exc:
            serve = serve_problem(exc)
        traffic: TrafficStats | Problem | None = None
        capturing = md.spec.monitoring.capture is not None and self.config.monitoring_uri is not None
        if (md.status.rollout is not None or capturing) and ray_address_refusal(address, self.config) is None:
            # A rollout judges traffic, and capture's counters say whether the store takes what is sampled;
            # a steady deployment without capture is not polled.
            try:
                secret = self.config.router_secret
                traffic = self.router_stats.read(
                    self.config.endpoint_for(address, route_prefix(md)),
                    None if secret is None else router_access(secret, md.key).read_token,
                )
            except AdapterError as exc:
                traffic = Problem(Reason.RAY_UNREACHABLE, exc.message, temporary=exc.temporary)
        jobs = {} if ray_address_refusal(address, self.config) else self.monitor_jobs.observe(md, address)
        capture = None
        if isinstance(traffic, TrafficStats) and traffic.capture is not None:
            counts = traffic.capture
            capture = CaptureStatus(
                written=counts.written, dropped=counts.dropped, last_error=counts.last_error
            )
        allowed = None if ray_address_refusal(address, self.config) else address
        retraining = self.training_jobs.observe(md, allowed, self.trail)
        return Observations(
            model=model,
            serve=serve,
            traffic=traffic,
            monitor_jobs=jobs,
            capture=capture,
            retraining=retraining,
        )

    def reconcile(
        self, md: ModelDeployment, now: datetime, post_event: EventSink, settled: SettledPass | None = None
    ) -> Decision:
        """With `settled` (the object's own), a pass whose inputs are those of its last settled decision
        repeats that decision rather than deciding again (see steward.operator.settled)."""
        self.resume_audit(md.key, md.status.audit)
        obs = replace(self.observe(md), audit=self.audit_backlog(md.key))
        if settled is not None and (again := settled.again(md, obs, lambda: self.audit_status(md.key))):
            return again
        decision = self._decide_and_act(md, obs, now, post_event)
        if settled is not None:
            settled.remember(md, obs, decision)
        return decision

    def _decide_and_act(
        self, md: ModelDeployment, obs: Observations, now: datetime, post_event: EventSink
    ) -> Decision:
        decision = decide(md, obs, self.config, now)
        failure = self.execute(decision.actions, post_event)
        if failure is not None:
            # The world refused an action: decide again with that as the observation, so status says why.
            # A registry write that failed is the registry's problem, not Ray's (status names the right one).
            seen = (
                replace(obs, model=failure)
                if failure.reason in REGISTRY_REASONS
                else replace(obs, serve=failure)
            )
            decision = decide(md, replace(seen, traffic=None), self.config, now)
            self.execute([a for a in decision.actions if isinstance(a, (PostEvent, RecordAudit))], post_event)
        audit = self.audit_status(md.key)
        if audit.pending and not decision.retry:
            # Soon, not at the next resync: every pass tries the store again first.
            decision = replace(decision, retry_reason=audit.message)
        return replace(decision, status=decision.status.model_copy(update={"audit": audit}))

    def audit_backlog(self, deployment: str) -> AuditBacklog | None:
        """What decide() needs to know of the trail: how far behind it is, and why."""
        if self.trail is None:
            return None
        drafts = self.trail.pending_drafts(deployment)
        return AuditBacklog(
            pending=len(drafts),
            causes=frozenset(d.identity for d in drafts),
            error=self.trail.error(deployment) or "",
        )

    def resume_audit(self, deployment: str, recorded: AuditTrailStatus | None) -> None:
        """Write what is buffered first, in order. After a restart the buffer comes back from status; the
        trail skips any record whose cause it already holds."""
        if self.trail is None:
            return
        if recorded is not None and recorded.buffered and not self.trail.pending(deployment):
            self.trail.record(RecordDraft.model_validate_json(raw) for raw in recorded.buffered)
        self.trail.flush(deployment)

    def audit_status(self, deployment: str) -> AuditTrailStatus:
        if self.trail is None:
            return AuditTrailStatus(
                message="no audit store configured: set STEWARD_AUDIT_DIR or STEWARD_AUDIT_S3_BUCKET"
            )
        drafts = self.trail.pending_drafts(deployment)
        message = f"{len(drafts)} record(s) not yet stored: {self.trail.error(deployment)}" if drafts else ""
        kept, beyond = drafts[:MAX_BUFFERED_AUDIT_RECORDS], drafts[MAX_BUFFERED_AUDIT_RECORDS:]
        if beyond:
            # decide() makes no change that would take the buffer past its bound, so this is a bug; the
            # records beyond it are still written while this process runs, and said in full where they
            # survive a restart: the log.
            for draft in (d for d in beyond if d.identity not in self._logged_beyond):
                self._logged_beyond.add(draft.identity)
                log.error(
                    "audit record of %s beyond the status buffer: %s", deployment, draft.model_dump_json()
                )
            message += f"; {len(beyond)} of them only in the operator's memory and log"
        return AuditTrailStatus(
            recorded_seq=self.trail.last_seq(deployment),
            pending=len(drafts),
            message=message,
            buffered=[d.model_dump_json() for d in kept],
        )

    def _mirror(self, draft: RecordDraft, post_event: EventSink) -> None:
        """Short copies of a record where people look: an Event, and tags on the MLflow model version."""
        versions = f" {draft.model.span()}" if draft.model and draft.model.span() else ""
        post_event(EventType.NORMAL, "AuditRecorded", f"{draft.action.value}{versions}: {draft.reason}"[:300])
        tag = _MLFLOW_TAGS.get(draft.action)
        if tag is None or draft.model is None or draft.model.to_version is None:
            return
        key = f"steward.{draft.deployment.namespace}.{draft.deployment.name}.{tag}"
        value = f"{datetime.now(UTC).isoformat(timespec='seconds')} {draft.reason}"[:500]
        try:
            self.registry.set_version_tag(draft.model.name, draft.model.to_version, key, value)
        except AdapterError as exc:
            # The tag only mirrors the trail, which holds the record; a failed mirror is logged, not retried.
            log.warning("could not tag %s v%s in MLflow: %s", draft.model.name, draft.model.to_version, exc)

    def finalize(
        self, md: ModelDeployment, deletion_requested_at: datetime, now: datetime, post_event: EventSink
    ) -> DeletionDecision:
        # Records buffered in status before the deletion are stored first, and the deletion's after them.
        self.resume_audit(md.key, md.status.audit)
        problem = self.execute(deletion_actions(md, self.config), post_event)
        if (left := self.execute(registry_cleanup_actions(md), post_event)) is not None:
            # The registry's alias is no serving claim: a failure to clear it is said, not waited on.
            post_event(EventType.WARNING, "ChallengerAliasLeft", f"{left.message}; clear it by hand")
        decision = decide_deletion(md, problem, deletion_requested_at, self.config, now)
        self.execute(decision.actions, post_event)
        if not decision.release_finalizer:
            return decision
        return self._hold_for_audit(
            md.key, decision, (now - deletion_requested_at).total_seconds(), post_event
        )

    def _hold_for_audit(
        self, key: str, decision: DeletionDecision, waited_s: float, post_event: EventSink
    ) -> DeletionDecision:
        """Once the finalizer goes, the object and its status buffer go too: a record still buffered would
        live only in this process's memory. So the finalizer waits for the store (a restart meanwhile loses
        nothing: the deletion record is decided again from the object), but not past deletion_timeout_s."""
        pending = self.trail.pending_drafts(key) if self.trail is not None else []
        if not pending:
            return decision
        why = self.trail.error(key) if self.trail is not None else None
        if waited_s < self.config.deletion_timeout_s:
            return replace(
                decision,
                release_finalizer=False,
                waiting_for=f"the audit store to take {len(pending)} record(s): {why}",
            )
        lost = ", ".join(f"{d.action.value} ({d.cause})" for d in pending)
        for draft in pending:
            # The evidence itself, where it can still be found: the operator's log.
            log.error("audit record of deleted %s not stored: %s", key, draft.model_dump_json())
        post_event(
            EventType.WARNING,
            "AuditRecordsLost",
            f"released the finalizer after {waited_s:.0f}s although the audit store has not taken "
            f"{len(pending)} record(s): {lost}; the store said: {why}. The records are in the operator's "
            "log and stay buffered while this operator runs",
        )
        return decision

    def execute(self, actions: list[Action], post_event: EventSink) -> Problem | None:
        """Run actions in order; stop at the first that the world refuses and return why."""
        for action in actions:
            try:
                if isinstance(action, ApplyServeApplications):
                    self.serve_client(action.ray_address).apply_applications(
                        action.app_configs, set(action.remove), self.config.http_options
                    )
                elif isinstance(action, DeleteServeApplication):
                    client = self.serve_client(action.ray_address)
                    ours = serve_apps(client.applications(), action.app_name)
                    names = {action.app_name} | {version_app_name(action.app_name, v) for v in ours.versions}
                    client.delete_applications(names, self.config.http_options)
                elif isinstance(action, SubmitMonitorJob):
                    self.serve_client(action.ray_address)  # the allowlist check
                    self.monitor_jobs.submit(action)
                elif isinstance(action, StopMonitorJob):
                    self.serve_client(action.ray_address)
                    self.monitor_jobs.stop(action)
                elif isinstance(action, SubmitTrainingJob):
                    self.serve_client(action.ray_address)  # the allowlist check
                    self.training_jobs.submit(action)
                elif isinstance(action, StopTrainingJob):
                    self.serve_client(action.ray_address)
                    self.training_jobs.stop(action)
                elif isinstance(action, SetModelAlias):
                    self.registry.set_alias(action.model, action.alias, action.version)
                elif isinstance(action, DeleteModelAlias):
                    self.registry.delete_alias(action.model, action.alias, action.if_version)
                elif isinstance(action, RecordAudit):
                    new = [action.draft] if self.trail is None else self.trail.record([action.draft])
                    for draft in new:  # mirrored once per record, not once per replay
                        self._mirror(draft, post_event)
                else:
                    post_event(action.type, action.reason, action.message)
            except AdapterError as exc:
                log.warning("action %s failed: %s", type(action).__name__, exc.message)
                if isinstance(action, (SetModelAlias, DeleteModelAlias)):
                    return registry_problem(exc)
                return serve_problem(exc)
        return None
