"""Who may read a router: per-deployment keys derived from the operator secret, planned into the router's
config and sent by the operator's stats reader; nothing else gets in."""

from __future__ import annotations

import httpx
import pytest
from builders import md as make_md

from steward.adapters.errors import Unreachable
from steward.adapters.router_stats import RouterStatsClient
from steward.api.serve_app import (
    RouterConfig,
    router_access,
    router_secret_from_ray_token,
    sticky_key_hash,
)
from steward.operator.config import OperatorConfig, config_from_env
from steward.operator.reconciler import with_router_secret
from steward.operator.serve_config import TrafficPlan, plan_router_app

SECRET = b"operator secret"


def test_keys_are_per_deployment_distinct_and_stable():
    a, b = router_access(SECRET, "team-a/fraud"), router_access(SECRET, "team/a-fraud")
    assert a == router_access(SECRET, "team-a/fraud")
    assert len({a.read_token, a.pseudonym_key, b.read_token, b.pseudonym_key}) == 4
    assert router_access(b"another secret", "team-a/fraud") != a
    # The token travels on the wire; a pseudonym made with it would be open to whoever saw it.
    assert sticky_key_hash(a.pseudonym_key, "C-1") != sticky_key_hash(a.read_token, "C-1")


def test_secrets_never_show_in_reprs():
    access = router_access(SECRET, "ns/m")
    config = RouterConfig(versions={}, weights={}, access=access)
    shown = repr(config) + repr(OperatorConfig(router_secret=SECRET))
    assert (
        access.read_token not in shown
        and access.pseudonym_key not in shown
        and "operator secret" not in shown
    )


def test_the_router_plan_carries_the_deployments_keys_only_with_a_secret():
    md = make_md()
    plan = TrafficPlan.single("1", "models:/m/1")
    with_secret = plan_router_app(md, "m", plan, OperatorConfig(router_secret=SECRET))
    [router] = [d for d in with_secret["deployments"] if d["name"] == "Router"]
    assert router["user_config"]["access"] == router_access(SECRET, md.key).model_dump()
    # Keys live in user_config (applied in place): a new secret never restarts a router replica.
    assert "access" not in str(with_secret["args"])
    without = plan_router_app(md, "m", plan, OperatorConfig())
    [router] = [d for d in without["deployments"] if d["name"] == "Router"]
    assert "access" not in router["user_config"]


def test_the_operator_secret_comes_from_its_file_then_the_ray_token(tmp_path):
    path = tmp_path / "secret"
    path.write_bytes(b"from the file\n")
    config = OperatorConfig(router_secret_path=str(path))
    assert with_router_secret(config, "ray-token").router_secret == b"from the file"
    assert with_router_secret(OperatorConfig(), "ray-token").router_secret == router_secret_from_ray_token(
        "ray-token"
    )
    assert router_secret_from_ray_token("ray-token") != b"ray-token"
    assert with_router_secret(OperatorConfig(), None).router_secret is None
    path.write_bytes(b"\n")
    with pytest.raises(ValueError, match="empty"):
        with_router_secret(config, "ray-token")
    assert config_from_env({"STEWARD_ROUTER_SECRET_PATH": "/s"}).router_secret_path == "/s"


def _client(status: int, seen: list[httpx.Request]) -> RouterStatsClient:
    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, json={"recorder_id": "r"} if status == 200 else {"error": {}})

    return RouterStatsClient(transport=httpx.MockTransport(answer))


def test_the_stats_reader_sends_the_read_token():
    seen: list[httpx.Request] = []
    stats = _client(200, seen).read("http://serve/ns/m", "tok")
    assert stats.recorder_id == "r"
    assert (seen[0].url.path, seen[0].headers["authorization"]) == ("/ns/m/-/stats", "Bearer tok")


@pytest.mark.parametrize(("token", "hint"), [("tok", "refused"), (None, "STEWARD_ROUTER_SECRET_PATH")])
def test_a_refused_read_is_temporary_and_says_why(token, hint):
    seen: list[httpx.Request] = []
    with pytest.raises(Unreachable, match=hint) as info:
        _client(401, seen).read("http://serve/ns/m", token)
    assert info.value.temporary
    assert ("authorization" in seen[0].headers) == (token is not None)
