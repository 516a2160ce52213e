"""Condition types, reasons and phases: the one vocabulary status speaks."""

from __future__ import annotations

from enum import StrEnum


class ConditionType(StrEnum):
    READY = "Ready"
    PROGRESSING = "Progressing"
    DEGRADED = "Degraded"
    # True: every live version's monitors pass (or cannot judge yet); False: one breached; Unknown: one could
    # not run, or monitoring is not configured.
    MONITORING = "Monitoring"


class Reason(StrEnum):
    """Every reason a condition may carry. Kubernetes reasons are CamelCase."""

    # model registry
    MODEL_RESOLVED = "ModelResolved"
    MODEL_NOT_FOUND = "ModelNotFound"
    VERSION_NOT_FOUND = "VersionNotFound"
    ALIAS_NOT_FOUND = "AliasNotFound"
    REGISTRY_UNREACHABLE = "RegistryUnreachable"
    REGISTRY_REJECTED = "RegistryRejected"
    # Ray Serve
    RAY_UNREACHABLE = "RayUnreachable"
    RAY_REJECTED = "RayRejected"
    RAY_UNAUTHORIZED = "RayUnauthorized"
    RAY_ADDRESS_NOT_ALLOWED = "RayAddressNotAllowed"
    RAY_CONFLICT = "RayConflict"
    DEPLOYING = "Deploying"
    DEPLOY_FAILED = "DeployFailed"
    RUNNING = "Running"
    UNHEALTHY = "Unhealthy"
    # rollouts
    ROLLOUT_PROGRESSING = "RolloutProgressing"
    ROLLOUT_PAUSED = "RolloutPaused"
    PROMOTED = "Promoted"
    ROLLED_BACK = "RolledBack"
    ROLLOUT_ABORTED = "RolloutAborted"
    # the resource itself
    INVALID_SPEC = "InvalidSpec"
    AS_EXPECTED = "AsExpected"
    DELETING = "Deleting"
    # The stored status could not be read: nothing moves on Ray until it is rebuilt from what Ray serves.
    STATUS_UNREADABLE = "StatusUnreadable"
    STATUS_RECOVERED = "StatusRecovered"
    # audit: the store has not taken every record (they wait in status.audit.buffered), and at the
    # buffer's bound no change is made, so that no record is ever dropped.
    AUDIT_PENDING = "AuditPending"
    AUDIT_BLOCKED = "AuditBlocked"
    # monitoring (the Monitoring condition)
    MONITORS_PASSING = "MonitorsPassing"
    MONITORS_PENDING = "MonitorsPending"
    MONITOR_BREACHED = "MonitorBreached"
    MONITOR_ERROR = "MonitorError"
    MONITORING_NOT_CONFIGURED = "MonitoringNotConfigured"
    CAPTURE_FAILING = "CaptureFailing"
    CAPTURING = "Capturing"


class Phase(StrEnum):
    """A one-word summary for printer columns, derived from the conditions."""

    PENDING = "Pending"
    PROGRESSING = "Progressing"
    READY = "Ready"
    DEGRADED = "Degraded"
    FAILED = "Failed"
    DELETING = "Deleting"


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"
