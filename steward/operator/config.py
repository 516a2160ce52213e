"""Operator-wide settings: defaults a ModelDeployment may leave out, and the knobs of the control loop."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


@dataclass(frozen=True)
class OperatorConfig:
    ray_address: str = "http://127.0.0.1:8265"
    tracking_uri: str = "http://127.0.0.1:5000"
    # Where Ray Serve's HTTP proxy listens (only used when Serve is not running yet).
    serve_host: str = "127.0.0.1"
    serve_port: int = 8000
    # How clients reach the proxy, for status.endpoint; defaults to http://serve_host:serve_port.
    endpoint_base: str | None = None
    # Other Ray dashboards a ModelDeployment may name in spec.serving.rayAddress (ray_address is always
    # allowed): the operator sends its Ray token to them, so the platform team lists them, not the user.
    allowed_ray_addresses: frozenset[str] = frozenset()
    # Plain http sends the token in clear: only where the network is trusted (the local stack, 127.0.0.1).
    allow_insecure_ray: bool = False
    # Environment for model replicas: their own credentials (never the operator's), MLFLOW_S3_ENDPOINT_URL...
    # From STEWARD_REPLICA_ENV_<NAME> variables, so that the operator's own secrets are never forwarded.
    replica_env: dict[str, str] = field(default_factory=dict)
    # One writer at a time per Ray cluster across processes: a Lease in this namespace (the operator's own;
    # the chart sets it), else a lock file in this folder (the local stack's home), else this process only.
    ray_lease_namespace: str | None = None
    ray_lock_dir: str | None = None
    # The audit trail: a local folder, or an S3 bucket (endpoint for MinIO and tests), and an HMAC key file.
    audit_dir: str | None = None
    audit_s3_bucket: str | None = None
    audit_s3_prefix: str = "steward-audit"
    audit_s3_endpoint: str | None = None
    audit_key_path: str | None = None
    # The secret each router's read token and sticky-key pseudonym key derive from (per ModelDeployment, by
    # HMAC): a file (a mounted Secret), else derived from the Ray token by the reconciler. Without one,
    # routers answer no read, and rollouts cannot read their figures.
    router_secret_path: str | None = None
    router_secret: bytes | None = field(default=None, repr=False)
    # The monitoring store (captured requests, outcomes, monitor reports): an s3:// URI or a local folder.
    monitoring_uri: str | None = None
    # CPUs a monitor job's entrypoint asks of the Ray cluster (Evidently and fairlearn run in it).
    monitor_job_cpus: float = 1.0
    resync_interval_s: float = 15.0
    # An object at rest (steward.operator.freshness) may decide from a Ray application list another pass read
    # this recently (None: the resync interval, so one read per cluster per resync, not one per object; 0:
    # every pass reads), and from a pinned version's MLflow answer this recent (a deleted version is seen
    # that much later).
    ray_list_max_age_s: float | None = None
    registry_pin_max_age_s: float = 300.0
    # Passes running at once (their blocking work is on threads); a changed object's pass goes first.
    max_concurrent_passes: int = 4
    retry_max_delay_s: float = 60.0
    deletion_timeout_s: float = 120.0
    # While a rollout runs it is looked at this often (steps, analysis windows, manual commands).
    rollout_tick_s: float = 2.0
    # After all traffic moves, how long the losing version keeps its replicas for requests in flight.
    rollout_drain_s: float = 2.0
    # The admission webhook that stamps the authenticated user on changes (off unless a port is given).
    webhook_port: int | None = None
    webhook_addr: str = "0.0.0.0"
    # The name the API server calls it by (the Service's DNS name), for the certificate and the URLs.
    webhook_host: str | None = None
    webhook_certfile: str | None = None
    webhook_keyfile: str | None = None
    # Plain HTTP: only for tests; the API server calls webhooks over TLS.
    webhook_insecure: bool = False
    # Let the operator create and update this MutatingWebhookConfiguration itself (needs the RBAC for it).
    webhook_managed: str | None = None
    # Prometheus metrics (/metrics) on this port, on every interface of the pod; off unless a port is given.
    metrics_port: int | None = None

    @property
    def identity_stamped_by_webhook(self) -> bool:
        """Does this operator's admission webhook vouch for steward.io/authenticated-user? Without it the
        annotation is whatever a client wrote, and records say the actor is declared."""
        return self.webhook_port is not None

    @property
    def shared_list_max_age_s(self) -> float:
        return self.resync_interval_s if self.ray_list_max_age_s is None else self.ray_list_max_age_s

    @property
    def http_options(self) -> dict[str, object]:
        return {"host": self.serve_host, "port": self.serve_port}

    def endpoint_for(self, ray_address: str, route_prefix: str) -> str:
        if self.endpoint_base and ray_address == self.ray_address:
            base = self.endpoint_base
        else:
            host = ray_address.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0]
            base = f"http://{host}:{self.serve_port}"
        return base.rstrip("/") + route_prefix


# STEWARD_REPLICA_ENV_AWS_ACCESS_KEY_ID=... gives model replicas AWS_ACCESS_KEY_ID=...: replicas get
# credentials of their own (the chart loads them from a Secret of their own). The operator's own AWS_* and
# MLFLOW_* variables (its audit writer's and registry reader's credentials) are never copied: the runtime_env
# is readable by anyone with the dashboard token and by all model code.
REPLICA_ENV_PREFIX = "STEWARD_REPLICA_ENV_"


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes")


def _replica_env(env: dict[str, str]) -> dict[str, str]:
    return {
        key[len(REPLICA_ENV_PREFIX) :]: value
        for key, value in env.items()
        if key.startswith(REPLICA_ENV_PREFIX) and len(key) > len(REPLICA_ENV_PREFIX)
    }


def _address_list(raw: str | None) -> frozenset[str]:
    """Comma- or space-separated addresses (a chart list joins with commas)."""
    return frozenset(a.strip().rstrip("/") for a in (raw or "").replace(",", " ").split() if a.strip())


def config_from_env(environ: dict[str, str] | None = None) -> OperatorConfig:
    env = dict(os.environ if environ is None else environ)
    defaults = OperatorConfig()
    return OperatorConfig(
        ray_address=env.get("STEWARD_RAY_ADDRESS", defaults.ray_address),
        tracking_uri=env.get("MLFLOW_TRACKING_URI", defaults.tracking_uri),
        serve_host=env.get("STEWARD_SERVE_HOST", defaults.serve_host),
        serve_port=int(env.get("STEWARD_SERVE_PORT", defaults.serve_port)),
        endpoint_base=env.get("STEWARD_ENDPOINT_BASE") or None,
        allowed_ray_addresses=_address_list(env.get("STEWARD_ALLOWED_RAY_ADDRESSES")),
        allow_insecure_ray=_truthy(env.get("STEWARD_ALLOW_INSECURE_RAY")),
        replica_env=_replica_env(env),
        ray_lease_namespace=env.get("STEWARD_RAY_LEASE_NAMESPACE") or None,
        ray_lock_dir=env.get("STEWARD_RAY_LOCK_DIR") or None,
        audit_dir=env.get("STEWARD_AUDIT_DIR") or None,
        audit_s3_bucket=env.get("STEWARD_AUDIT_S3_BUCKET") or None,
        audit_s3_prefix=env.get("STEWARD_AUDIT_S3_PREFIX", defaults.audit_s3_prefix),
        audit_s3_endpoint=env.get("STEWARD_AUDIT_S3_ENDPOINT") or None,
        audit_key_path=env.get("STEWARD_AUDIT_KEY_PATH") or None,
        router_secret_path=env.get("STEWARD_ROUTER_SECRET_PATH") or None,
        monitoring_uri=env.get("STEWARD_MONITORING_URI") or None,
        monitor_job_cpus=float(env.get("STEWARD_MONITOR_JOB_CPUS", defaults.monitor_job_cpus)),
        resync_interval_s=float(env.get("STEWARD_RESYNC_INTERVAL_S", defaults.resync_interval_s)),
        ray_list_max_age_s=(
            float(env["STEWARD_RAY_LIST_MAX_AGE_S"]) if env.get("STEWARD_RAY_LIST_MAX_AGE_S") else None
        ),
        registry_pin_max_age_s=float(
            env.get("STEWARD_REGISTRY_PIN_MAX_AGE_S") or defaults.registry_pin_max_age_s
        ),
        max_concurrent_passes=max(
            1, int(env.get("STEWARD_MAX_CONCURRENT_PASSES") or defaults.max_concurrent_passes)
        ),
        retry_max_delay_s=float(env.get("STEWARD_RETRY_MAX_DELAY_S", defaults.retry_max_delay_s)),
        deletion_timeout_s=float(env.get("STEWARD_DELETION_TIMEOUT_S", defaults.deletion_timeout_s)),
        rollout_tick_s=float(env.get("STEWARD_ROLLOUT_TICK_S", defaults.rollout_tick_s)),
        rollout_drain_s=float(env.get("STEWARD_ROLLOUT_DRAIN_S", defaults.rollout_drain_s)),
        webhook_port=int(env["STEWARD_WEBHOOK_PORT"]) if env.get("STEWARD_WEBHOOK_PORT") else None,
        webhook_addr=env.get("STEWARD_WEBHOOK_ADDR", defaults.webhook_addr),
        webhook_host=env.get("STEWARD_WEBHOOK_HOST") or None,
        webhook_certfile=env.get("STEWARD_WEBHOOK_CERT") or None,
        webhook_keyfile=env.get("STEWARD_WEBHOOK_KEY") or None,
        webhook_insecure=env.get("STEWARD_WEBHOOK_INSECURE", "").lower() in ("1", "true", "yes"),
        webhook_managed=env.get("STEWARD_WEBHOOK_MANAGED") or None,
        metrics_port=int(env["STEWARD_METRICS_PORT"]) if env.get("STEWARD_METRICS_PORT") else None,
    )
