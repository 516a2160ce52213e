"""Where the operator sends its Ray token, and which credentials reach model replicas."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from builders import NOTHING, T0, md, resolved

from steward.adapters.errors import AddressNotAllowed
from steward.api.conditions import ConditionType, Reason
from steward.operator.actions import ApplyServeApplications, EventType
from steward.operator.config import OperatorConfig, config_from_env
from steward.operator.core import decide
from steward.operator.observations import Observations
from steward.operator.reconciler import Reconciler
from steward.operator.serve_config import TrafficPlan, plan_serve_apps, ray_address_refusal
from steward.operator.status import find

PLATFORM = OperatorConfig(
    ray_address="https://ray.platform:8265",
    allowed_ray_addresses=frozenset({"https://gpu-ray.platform:8265", "http://cpu-ray.platform:8265"}),
)

ADDRESS_CASES = [
    # (case, address, config, allowed)
    ("the default", "https://ray.platform:8265", PLATFORM, True),
    ("the default, spelled differently", "HTTPS://Ray.Platform:8265/", PLATFORM, True),
    ("a listed cluster", "https://gpu-ray.platform:8265", PLATFORM, True),
    ("anything else", "https://attacker.example:8265", PLATFORM, False),
    ("a listed host on another port", "https://gpu-ray.platform:9999", PLATFORM, False),
    ("a listed host over the other scheme", "http://gpu-ray.platform:8265", PLATFORM, False),
    ("user info that hides the host", "https://gpu-ray.platform:8265@attacker.example", PLATFORM, False),
    ("not a URL", "gpu-ray.platform:8265", PLATFORM, False),
    ("listed but plain http", "http://cpu-ray.platform:8265", PLATFORM, False),
    (
        "listed plain http, allowed",
        "http://cpu-ray.platform:8265",
        replace(PLATFORM, allow_insecure_ray=True),
        True,
    ),
    ("the default over plain http", "http://127.0.0.1:8265", OperatorConfig(), False),
    ("the local stack", "http://127.0.0.1:8265", OperatorConfig(allow_insecure_ray=True), True),
    (
        "an implicit https port",
        "https://ray.platform",
        replace(PLATFORM, ray_address="https://ray.platform:443"),
        True,
    ),
]


@pytest.mark.parametrize(
    ("case", "address", "config", "allowed"), ADDRESS_CASES, ids=[c[0] for c in ADDRESS_CASES]
)
def test_only_the_platforms_ray_addresses_are_contacted(case, address, config, allowed):
    assert (ray_address_refusal(address, config) is None) == allowed


def test_a_spec_naming_an_unlisted_cluster_is_refused_for_good_and_nothing_is_applied():
    resource = md(
        {"model": {"name": "credit-risk", "version": "3"}, "serving": {"rayAddress": "https://evil:8265"}}
    )
    decision = decide(resource, Observations(resolved(), NOTHING), PLATFORM, T0)
    assert not [a for a in decision.actions if isinstance(a, ApplyServeApplications)]
    assert not decision.retry
    ready = find(decision.status.conditions, ConditionType.READY)
    assert ready is not None and ready.reason == Reason.RAY_ADDRESS_NOT_ALLOWED
    assert "ray.allowedAddresses" in ready.message
    degraded = find(decision.status.conditions, ConditionType.DEGRADED)
    assert degraded is not None and degraded.status == "True"


def test_a_listed_cluster_is_deployed_to():
    resource = md(
        {
            "model": {"name": "credit-risk", "version": "3"},
            "serving": {"rayAddress": "https://gpu-ray.platform:8265"},
        }
    )
    decision = decide(resource, Observations(resolved(), NOTHING), PLATFORM, T0)
    (apply,) = [a for a in decision.actions if isinstance(a, ApplyServeApplications)]
    assert apply.ray_address == "https://gpu-ray.platform:8265"


def test_allowed_addresses_and_insecure_http_come_from_the_environment():
    config = config_from_env(
        {
            "STEWARD_RAY_ADDRESS": "http://ray-head:8265",
            "STEWARD_ALLOWED_RAY_ADDRESSES": "https://a:8265/, https://b:8265  https://c:8265",
            "STEWARD_ALLOW_INSECURE_RAY": "true",
        }
    )
    assert config.allowed_ray_addresses == {"https://a:8265", "https://b:8265", "https://c:8265"}
    assert config.allow_insecure_ray is True
    assert config_from_env({}).allow_insecure_ray is False
    assert config_from_env({}).allowed_ray_addresses == frozenset()


OPERATOR_SECRETS = {
    "AWS_ACCESS_KEY_ID": "operator-key-id",
    "AWS_SECRET_ACCESS_KEY": "operator-secret-key",
    "AWS_SESSION_TOKEN": "operator-session-token",
    "MLFLOW_TRACKING_TOKEN": "operator-mlflow-token",
    "MLFLOW_TRACKING_USERNAME": "operator-mlflow-user",
    "MLFLOW_TRACKING_PASSWORD": "operator-mlflow-password",
    "RAY_AUTH_TOKEN": "operator-ray-token",
}


def test_model_replicas_never_get_the_operators_own_credentials():
    config = config_from_env(
        {
            **OPERATOR_SECRETS,
            "MLFLOW_TRACKING_URI": "http://mlflow:5000",
            "STEWARD_REPLICA_ENV_AWS_ACCESS_KEY_ID": "replica-key-id",
            "STEWARD_REPLICA_ENV_AWS_SECRET_ACCESS_KEY": "replica-secret-key",
            "STEWARD_REPLICA_ENV_MLFLOW_S3_ENDPOINT_URL": "http://minio:9000",
        }
    )
    canary = TrafficPlan(
        versions={"3": "models:/credit-risk/3", "4": "models:/credit-risk/4"}, weights={"3": 90, "4": 10}
    )
    apps = plan_serve_apps(md(), "credit-risk", canary, config)
    planned = json.dumps(apps)
    leaked = [name for name, secret in OPERATOR_SECRETS.items() if secret in planned]
    assert leaked == [], f"the operator's {leaked} reach the Serve runtime_env"
    for app in apps:
        assert app["runtime_env"]["env_vars"] == {
            "AWS_ACCESS_KEY_ID": "replica-key-id",
            "AWS_SECRET_ACCESS_KEY": "replica-secret-key",
            "MLFLOW_S3_ENDPOINT_URL": "http://minio:9000",
            "MLFLOW_TRACKING_URI": "http://mlflow:5000",
        }


def test_the_reconciler_opens_no_connection_to_a_refused_address():
    reconciler = Reconciler(PLATFORM, ray_token="operator-ray-token")
    try:
        with pytest.raises(AddressNotAllowed):
            reconciler.serve_client("https://attacker.example:8265")
        assert reconciler._serve_clients == {}
    finally:
        reconciler.close()


def test_deleting_a_deployment_on_a_refused_address_contacts_nothing_and_releases():
    resource = md(
        {"model": {"name": "credit-risk", "version": "3"}, "serving": {"rayAddress": "https://evil:8265"}}
    )
    events: list[tuple[EventType, str, str]] = []
    reconciler = Reconciler(PLATFORM, ray_token="operator-ray-token")
    try:
        decision = reconciler.finalize(resource, T0, T0, lambda *e: events.append(e))
    finally:
        reconciler.close()
    assert decision.release_finalizer
    assert [reason for kind, reason, _ in events if kind == EventType.WARNING] == ["CleanupAbandoned"]
