from __future__ import annotations

import copy
from dataclasses import replace

from builders import CONFIG, md

from steward.api.rollout import Stickiness
from steward.api.serve_app import RouterArgs, RouterConfig, ShadowConfig, VersionArgs
from steward.operator.serve_config import TrafficPlan, configs_match, plan_serve_apps

CANARY = TrafficPlan(
    versions={"3": "models:/credit-risk/3", "4": "models:/credit-risk/4"},
    weights={"3": 90, "4": 10},
    shadow=ShadowConfig(version="4", percent=25),
    stickiness=Stickiness(header="X-Customer-Id"),
)


def plan(resource=None, traffic=None, config=CONFIG):
    return plan_serve_apps(
        resource or md(), "credit-risk", traffic or TrafficPlan.single("3", "models:/credit-risk/3"), config
    )


def test_a_router_app_on_the_route_and_one_app_per_version_without_route():
    router, v3, v4 = plan(traffic=CANARY)
    assert (router["name"], router["route_prefix"]) == ("risk.credit", "/risk/credit")
    assert router["import_path"] == "steward.serving.app:build_router"
    assert [d["name"] for d in router["deployments"]] == ["Router", "Recorder"]
    assert (v3["name"], v3["route_prefix"], v3["import_path"]) == (
        "risk.credit.v3",
        None,
        "steward.serving.app:build_version",
    )
    assert [d["name"] for d in v4["deployments"]] == ["model-v4"]
    # the serving side accepts what the operator plans
    RouterArgs.model_validate(router["args"])
    VersionArgs.model_validate(v4["args"])
    config = RouterConfig.model_validate(router["deployments"][0]["user_config"])
    assert config.versions == {"3": "risk.credit.v3", "4": "risk.credit.v4"}
    assert (config.weights, config.shadow, config.stickiness) == (
        CANARY.weights,
        CANARY.shadow,
        CANARY.stickiness,
    )
    assert v3["runtime_env"]["env_vars"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"


def test_moving_weights_changes_only_the_routers_user_config():
    """Ray restarts replicas when an application's args change; a weight step must change none."""
    before = plan(traffic=CANARY)
    after = plan(traffic=replace(CANARY, weights={"3": 50, "4": 50}))
    assert [a["args"] for a in before] == [a["args"] for a in after]
    assert before[1:] == after[1:]
    assert before[0]["deployments"][0]["user_config"] != after[0]["deployments"][0]["user_config"]


def test_plan_maps_replicas_and_resources():
    spec = {
        "model": {"name": "credit-risk", "version": "3"},
        "serving": {
            "replicas": {"min": 0, "max": 4},
            "targetOngoingRequests": 3,
            "maxOngoingRequests": 9,
            "resources": {"cpu": 2, "gpu": 0.5, "memory": "1Gi"},
            "routePrefix": "/score",
        },
    }
    router, version = plan(md(spec))
    deployment = version["deployments"][0]
    assert deployment["autoscaling_config"] == {
        "min_replicas": 0,
        "max_replicas": 4,
        "target_ongoing_requests": 3,
    }
    assert deployment["max_ongoing_requests"] == 9
    assert deployment["ray_actor_options"] == {"num_cpus": 2, "num_gpus": 0.5, "memory": 2**30}
    assert router["route_prefix"] == "/score"
    assert router["deployments"][0]["autoscaling_config"]["max_replicas"] == 4


def test_no_gpu_key_when_no_gpu_asked():
    assert "num_gpus" not in plan()[1]["deployments"][0]["ray_actor_options"]


def test_configs_match_ignores_rays_number_spelling_but_not_values():
    router, version = plan()
    echoed = copy.deepcopy(version)
    echoed["deployments"][0]["autoscaling_config"]["target_ongoing_requests"] = 2
    echoed["route_prefix"] = None
    assert configs_match(echoed, version)
    r_echoed = copy.deepcopy(router)
    r_echoed["deployments"][0]["ray_actor_options"]["num_cpus"] = 0  # Ray echoes 0.0 as it parsed it
    assert configs_match(r_echoed, router)
    echoed["deployments"][0]["autoscaling_config"]["max_replicas"] = 7
    assert not configs_match(echoed, version)
    assert not configs_match(None, version)


def test_replica_env_is_forwarded():
    _, version = plan(config=replace(CONFIG, replica_env={"MLFLOW_S3_ENDPOINT_URL": "http://s3"}))
    assert version["runtime_env"]["env_vars"]["MLFLOW_S3_ENDPOINT_URL"] == "http://s3"


def test_capture_is_planned_from_the_spec_and_the_operators_monitoring_store():
    capture = {"sampleRate": 0.25, "fields": {"customer_id": "hash"}, "sensitiveFeatures": ["gender"]}
    spec = {"model": {"name": "credit-risk", "version": "3"}, "monitoring": {"capture": capture}}
    with_store = replace(CONFIG, monitoring_uri="s3://mon/steward")
    planned = plan(md(spec), config=with_store)[0]
    router = RouterConfig.model_validate(planned["deployments"][0]["user_config"])
    assert router.store_uri == "s3://mon/steward"
    assert router.capture is not None and router.capture.sample_rate == 0.25
    assert router.capture.sensitive_features == ["gender"]
    # No store: the router still keeps sensitive features from the model, and records nothing.
    router = RouterConfig.model_validate(plan(md(spec))[0]["deployments"][0]["user_config"])
    assert router.capture is not None and router.store_uri is None
    # A store without a capture spec records nothing either.
    router = RouterConfig.model_validate(plan(config=with_store)[0]["deployments"][0]["user_config"])
    assert (router.capture, router.store_uri) == (None, None)
