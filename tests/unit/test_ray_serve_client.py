"""The Ray Serve client's read-merge-write, against a fake dashboard (the real one is in integration)."""

from __future__ import annotations

import json

import httpx
import pytest

from steward.adapters.errors import AdapterError, Unauthorized, Unreachable
from steward.adapters.ray_serve import RayServeClient, parse_application, token_from_env


class FakeDashboard:
    def __init__(self, apps: dict[str, dict], http_options: dict | None = None) -> None:
        self.apps = apps
        self.http_options = http_options
        self.puts: list[dict] = []
        self.auth: list[str | None] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.auth.append(request.headers.get("authorization"))
        if request.method == "GET":
            body = {"applications": self.apps}
            if self.http_options:
                body["http_options"] = self.http_options
            return httpx.Response(200, json=body)
        if request.method == "PUT":
            body = json.loads(request.content)
            self.puts.append(body)
            self.apps = {
                a["name"]: {"status": "DEPLOYING", "deployed_app_config": a} for a in body["applications"]
            }
            return httpx.Response(200)
        if request.method == "DELETE":
            self.apps = {}
            return httpx.Response(200)
        return httpx.Response(405)


def client(fake: FakeDashboard, token: str | None = "t0k") -> RayServeClient:
    return RayServeClient("http://ray:8265", token, transport=httpx.MockTransport(fake))


OTHER = {"name": "other", "route_prefix": "/other", "import_path": "x:y"}
MINE = {"name": "mine", "route_prefix": "/mine", "import_path": "steward.serving.app:build_app"}
HTTP = {"host": "127.0.0.1", "port": 8000}


def test_apply_keeps_every_other_application_and_running_http_options():
    fake = FakeDashboard(
        {"other": {"status": "RUNNING", "deployed_app_config": OTHER}}, {"host": "0.0.0.0", "port": 9}
    )
    client(fake).apply_application(MINE, HTTP)
    (put,) = fake.puts
    assert [a["name"] for a in put["applications"]] == ["other", "mine"]
    assert put["http_options"] == {"host": "0.0.0.0", "port": 9}
    assert set(fake.auth) == {"Bearer t0k"}


def test_apply_replaces_our_own_previous_config():
    old = {**MINE, "route_prefix": "/old"}
    fake = FakeDashboard({"mine": {"status": "RUNNING", "deployed_app_config": old}})
    client(fake).apply_application(MINE, HTTP)
    assert fake.puts[0]["applications"] == [MINE]
    assert fake.puts[0]["http_options"] == HTTP


def test_delete_keeps_others_and_shuts_down_when_last():
    fake = FakeDashboard(
        {
            "other": {"status": "RUNNING", "deployed_app_config": OTHER},
            "mine": {"status": "RUNNING", "deployed_app_config": MINE},
        }
    )
    c = client(fake)
    assert c.delete_application("mine", HTTP) is True
    assert fake.puts[-1]["applications"] == [OTHER]
    assert c.delete_application("mine", HTTP) is False
    assert c.delete_application("other", HTTP) is True
    assert fake.apps == {}


def test_refuses_to_overwrite_an_imperatively_deployed_app():
    fake = FakeDashboard({"notebook": {"status": "RUNNING", "deployed_app_config": None}})
    with pytest.raises(AdapterError, match="deployed imperatively"):
        client(fake).apply_application(MINE, HTTP)
    assert fake.puts == []


def test_an_app_being_deleted_is_left_out_not_refused():
    """Ray drops a deleted app's config before the app is gone; writing meanwhile must not fail."""
    fake = FakeDashboard(
        {
            "going": {"status": "DELETING", "deployed_app_config": None},
            "other": {"status": "RUNNING", "deployed_app_config": OTHER},
        }
    )
    client(fake).apply_application(MINE, HTTP)
    assert fake.puts[-1]["applications"] == [OTHER, MINE]


def test_apply_and_remove_in_one_write():
    fake = FakeDashboard({"other": {"status": "RUNNING", "deployed_app_config": OTHER}})
    c = client(fake)
    c.apply_applications([MINE], set(), HTTP)
    c.apply_applications([OTHER], {"mine"}, HTTP)
    assert fake.puts[-1]["applications"] == [OTHER]


def test_missing_token_is_a_clear_permanent_error():
    transport = httpx.MockTransport(
        lambda r: httpx.Response(401, text="Unauthorized: Missing authentication token")
    )
    with pytest.raises(Unauthorized, match="RAY_AUTH_TOKEN") as info:
        RayServeClient("http://ray:8265", None, transport=transport).get_application("x")
    assert not info.value.temporary


def test_connection_refused_is_temporary():
    with pytest.raises(Unreachable) as info:
        RayServeClient("http://127.0.0.1:9", None, timeout_s=2).get_application("x")
    assert info.value.temporary


def test_token_from_env_or_mounted_secret(tmp_path):
    secret = tmp_path / "token"
    secret.write_text("from-file\n")
    assert token_from_env({"RAY_AUTH_TOKEN": "direct"}) == "direct"
    assert token_from_env({"RAY_AUTH_TOKEN_PATH": str(secret)}) == "from-file"
    assert token_from_env({}) is None


def test_parse_application_counts_running_replicas():
    app = parse_application(
        "a",
        {
            "status": "RUNNING",
            "deployments": {
                "model-v1": {"replicas": [{"state": "RUNNING"}, {"state": "STARTING"}], "message": "scaling"},
            },
        },
    )
    assert app.replicas["model-v1"].running == 1 and app.replicas["model-v1"].total == 2
    assert app.deployment_messages == {"model-v1": "scaling"}
