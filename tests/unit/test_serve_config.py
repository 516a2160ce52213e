from __future__ import annotations

import copy

from builders import CONFIG, md, resolved

from steward.api.serve_app import AppArgs, RouterConfig
from steward.operator.serve_config import configs_match, plan_serve_config


def test_plan_names_app_route_and_deployments():
    config = plan_serve_config(md(), resolved(), CONFIG)
    assert config["name"] == "risk-credit"
    assert config["route_prefix"] == "/risk/credit"
    assert config["import_path"] == "steward.serving.app:build_app"
    assert [d["name"] for d in config["deployments"]] == ["Router", "model-v3"]
    AppArgs.model_validate(config["args"])  # the serving side accepts what the operator plans
    RouterConfig.model_validate(config["deployments"][0]["user_config"])
    assert config["runtime_env"]["env_vars"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"


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
    config = plan_serve_config(md(spec), resolved(), CONFIG)
    version = config["deployments"][1]
    assert version["autoscaling_config"] == {
        "min_replicas": 0,
        "max_replicas": 4,
        "target_ongoing_requests": 3,
    }
    assert version["max_ongoing_requests"] == 9
    assert version["ray_actor_options"] == {"num_cpus": 2, "num_gpus": 0.5, "memory": 2**30}
    assert config["route_prefix"] == "/score"


def test_no_gpu_key_when_no_gpu_asked():
    config = plan_serve_config(md(), resolved(), CONFIG)
    assert "num_gpus" not in config["deployments"][1]["ray_actor_options"]


def test_configs_match_ignores_rays_number_spelling_but_not_values():
    desired = plan_serve_config(md(), resolved(), CONFIG)
    echoed = copy.deepcopy(desired)
    echoed["deployments"][0]["ray_actor_options"]["num_cpus"] = 0  # Ray echoes 0.0 as it parsed it
    echoed["deployments"][1]["autoscaling_config"]["target_ongoing_requests"] = 2
    assert configs_match(echoed, desired)
    echoed["deployments"][1]["autoscaling_config"]["max_replicas"] = 7
    assert not configs_match(echoed, desired)
    assert not configs_match(None, desired)


def test_replica_env_is_forwarded():
    from dataclasses import replace

    config = plan_serve_config(
        md(), resolved(), replace(CONFIG, replica_env={"MLFLOW_S3_ENDPOINT_URL": "http://s3"})
    )
    assert config["runtime_env"]["env_vars"]["MLFLOW_S3_ENDPOINT_URL"] == "http://s3"
