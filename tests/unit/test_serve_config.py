from __future__ import annotations

import copy
from dataclasses import replace

import pytest
from builders import CONFIG, md

from steward.api.rollout import Stickiness
from steward.api.serve_app import InRouterModel, RouterArgs, RouterConfig, ShadowConfig, VersionArgs
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


# ------------------------------------------------------------------------------------ in-router model


def router_config(apps):
    return RouterConfig.model_validate(apps[0]["deployments"][0]["user_config"])


def test_the_router_is_told_to_load_the_stable_version_itself():
    """What the version application loads (its model URI), so that the router answers stable's traffic
    without a hop; the version application is still planned, as the fallback and the rollback target."""
    apps = plan()
    assert router_config(apps).in_router == InRouterModel(version="3", model_uri="models:/credit-risk/3")
    assert VersionArgs.model_validate(apps[1]["args"]).model_uri == "models:/credit-risk/3"


def test_during_a_canary_stable_stays_in_the_router_and_the_canary_goes_through_its_application():
    """The analysis judges each version's model time, so the hop only the canary pays does not count
    against it: stable's traffic keeps the in-router path, and the canary is never in it."""
    no_shadow = replace(CANARY, shadow=None, stable="3")
    apps = plan(traffic=no_shadow)
    assert router_config(apps).in_router == InRouterModel(version="3", model_uri="models:/credit-risk/3")
    assert [a["name"] for a in apps] == ["risk.credit", "risk.credit.v3", "risk.credit.v4"]


def test_while_a_shadow_is_mirrored_every_version_goes_through_its_application():
    apps = plan(traffic=replace(CANARY, stable="3"))
    assert router_config(apps).in_router is None
    shadowing = replace(CANARY, weights={"3": 100, "4": 0}, stable="3")
    assert router_config(plan(traffic=shadowing)).in_router is None


def test_while_a_canary_warms_up_or_is_rolled_back_stable_is_served_in_the_router():
    idle = replace(CANARY, weights={"3": 100, "4": 0}, shadow=None, stable="3")
    assert router_config(plan(traffic=idle)).in_router == InRouterModel(
        version="3", model_uri="models:/credit-risk/3"
    )


def test_no_in_router_model_without_a_stable_version_or_while_it_takes_no_traffic():
    assert (
        router_config(plan(traffic=replace(CANARY, weights={"3": 100, "4": 0}, shadow=None))).in_router
        is None
    )
    promoting = replace(CANARY, weights={"3": 0, "4": 100}, shadow=None, stable="3")
    assert router_config(plan(traffic=promoting)).in_router is None


def test_a_stable_change_reconfigures_the_router_in_place():
    """user_config only: Ray applies it without restarting the router's replicas."""
    before = plan(traffic=replace(CANARY, stable="3"))[0]
    after = plan(traffic=TrafficPlan.single("4", "models:/credit-risk/4"))[0]
    assert router_config([before]).in_router is None
    assert {k: v for k, v in before.items() if k != "deployments"} == {
        k: v for k, v in after.items() if k != "deployments"
    }
    assert before["deployments"][0]["ray_actor_options"] == after["deployments"][0]["ray_actor_options"]
    assert router_config([after]).in_router.version == "4"


def test_the_router_reserves_the_models_memory_but_no_cpu():
    spec = {
        "model": {"name": "credit-risk", "version": "3"},
        "serving": {"resources": {"cpu": 2, "memory": "1Gi"}},
    }
    router = plan(md(spec))[0]
    assert router["deployments"][0]["ray_actor_options"] == {"num_cpus": 0.0, "memory": 2**30}
    assert plan()[0]["deployments"][0]["ray_actor_options"] == {"num_cpus": 0.0}


def test_a_gpu_model_is_not_served_in_the_router():
    spec = {
        "model": {"name": "credit-risk", "version": "3"},
        "serving": {"resources": {"cpu": 1, "gpu": 1, "memory": "1Gi"}},
    }
    router = plan(md(spec))[0]
    assert router_config([router]).in_router is None
    assert router["deployments"][0]["ray_actor_options"] == {"num_cpus": 0.0}


def test_the_router_config_refuses_an_in_router_version_it_does_not_serve():
    with pytest.raises(ValueError, match="does not serve"):
        RouterConfig(
            versions={"3": "a.v3"}, weights={"3": 100}, in_router=InRouterModel(version="4", model_uri="u")
        )


def _in_router(world):
    config = world.router_config()
    return None if config is None or config.in_router is None else config.in_router.version


def _roll_out_4(world):
    """(version in the router, 4's weight) at each step of a rollout of version 4 over a settled 3."""
    from builders import resolved

    assert _in_router(world) == "3"
    world.change_spec({"model": {"name": "credit-risk", "version": "4"}}, resolved("4"))
    seen = set()
    while world.rollout is not None or not seen:
        world.step()
        seen.add((_in_router(world), world.router_config().weights.get("4")))
    return seen


def test_through_a_whole_rollout_the_router_serves_the_stable_version_while_it_takes_traffic():
    """The rollout's plans (steward.operator.rollout_plan) name the stable version in every state: it stays
    in the router while 4 warms up and while 4 is judged, leaves it once promoting drains it, and 4 goes in
    once stable."""
    from world import settled

    world = settled()
    seen = _roll_out_4(world)
    assert {v for v, weight in seen if weight is not None and 0 < weight < 100} == {"3"}, seen
    # (None, 100): promoting, 3 drained; ("4", 100): promoted.
    assert {("3", 0), ("3", 10), ("3", 50), (None, 100), ("4", 100)} <= seen
    assert world.stable_version == "4" and _in_router(world) == "4"


def test_a_rollback_puts_the_stable_version_back_in_the_router():
    from world import Behaviour, settled

    world = settled()
    world.behaviour["4"] = Behaviour(error_share=0.5)
    seen = _roll_out_4(world)
    assert ("3", 10) in seen and world.stable_version == "3"
    assert _in_router(world) == "3"
    assert "4" not in world.router_config().versions


def test_a_router_that_scores_admits_as_many_requests_as_a_version_replica():
    spec = {"model": {"name": "credit-risk", "version": "3"}, "serving": {"maxOngoingRequests": 16}}
    assert plan(md(spec))[0]["deployments"][0]["max_ongoing_requests"] == 16
    gpu = {**spec, "serving": {"maxOngoingRequests": 16, "resources": {"gpu": 1}}}
    # Forwarding only: Ray's default.
    assert "max_ongoing_requests" not in plan(md(gpu))[0]["deployments"][0]
