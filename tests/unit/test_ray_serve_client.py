"""The Ray Serve client's read-merge-write, against a fake dashboard (the real one is in integration)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator

import httpx
import pytest

from steward.adapters.errors import Conflict, Unauthorized, Unreachable
from steward.adapters.ray_serve import RayServeClient, merged_applications, parse_application, token_from_env


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


def test_an_imperatively_deployed_app_is_not_overwritten_and_the_refusal_is_temporary():
    """Someone else's serve.run app is neither deleted by our write nor fails every deployment for good."""
    fake = FakeDashboard({"notebook": {"status": "RUNNING", "deployed_app_config": None}})
    with pytest.raises(Conflict, match="'notebook'") as info:
        client(fake).apply_application(MINE, HTTP)
    assert info.value.temporary
    assert fake.puts == []


class RecordingGuard:
    def __init__(self, fake: FakeDashboard, lose: bool = False) -> None:
        self.fake, self.lose = fake, lose
        self.log: list[str] = []

    @contextlib.contextmanager
    def hold(self, cluster: str) -> Iterator[Callable[[], None]]:
        self.log.append(f"hold {cluster}")

        def confirm() -> None:
            self.log.append(f"confirm after {len(self.fake.auth)} request(s)")
            if self.lose:
                raise Conflict("lost the Lease")

        try:
            yield confirm
        finally:
            self.log.append("release")


def test_every_write_holds_the_cluster_guard_and_confirms_it_before_writing():
    fake = FakeDashboard({"other": {"status": "RUNNING", "deployed_app_config": OTHER}})
    guard = RecordingGuard(fake)
    c = RayServeClient("http://ray:8265", "t", transport=httpx.MockTransport(fake), guard=guard)
    c.apply_application(MINE, HTTP)
    c.delete_application("mine", HTTP)
    # read (1 request), confirm, write; then read (3), confirm, write
    assert guard.log == [
        "hold http://ray:8265",
        "confirm after 1 request(s)",
        "release",
        "hold http://ray:8265",
        "confirm after 3 request(s)",
        "release",
    ]


def test_a_guard_lost_before_writing_means_no_write():
    fake = FakeDashboard({"other": {"status": "RUNNING", "deployed_app_config": OTHER}})
    guard = RecordingGuard(fake, lose=True)
    c = RayServeClient("http://ray:8265", "t", transport=httpx.MockTransport(fake), guard=guard)
    with pytest.raises(Conflict):
        c.apply_application(MINE, HTTP)
    assert fake.puts == [] and guard.log[-1] == "release"


MERGE_CASES = [
    # (case, applications as Ray lists them, ours, remove, written names or the app named in the refusal)
    (
        "others kept, whoever deployed them",
        {"other": {"status": "RUNNING", "deployed_app_config": OTHER}},
        [MINE],
        set(),
        ["other", "mine"],
    ),
    (
        "ours replaced",
        {"mine": {"status": "RUNNING", "deployed_app_config": {**MINE, "route_prefix": "/x"}}},
        [MINE],
        set(),
        ["mine"],
    ),
    ("ours removed", {"mine": {"status": "RUNNING", "deployed_app_config": MINE}}, [], {"mine"}, []),
    (
        "a deleted app left out",
        {"going": {"status": "DELETING", "deployed_app_config": None}},
        [MINE],
        set(),
        ["mine"],
    ),
    (
        "a config that omits its name",
        {"other": {"status": "RUNNING", "deployed_app_config": {"import_path": "x:y"}}},
        [],
        set(),
        ["other"],
    ),
    (
        "an app without a config",
        {"notebook": {"status": "RUNNING", "deployed_app_config": None}},
        [MINE],
        set(),
        Conflict("notebook"),
    ),
    (
        "an app being deployed without a config yet",
        {"new": {"status": "DEPLOYING", "deployed_app_config": None}},
        [MINE],
        set(),
        Conflict("new"),
    ),
    (
        "a config under another app's name",
        {"b": {"status": "RUNNING", "deployed_app_config": {**OTHER, "name": "a"}}},
        [MINE],
        set(),
        Conflict("b"),
    ),
    ("no application list at all", None, [MINE], set(), Conflict("application list")),
]


@pytest.mark.parametrize(
    ("case", "listed", "ours", "remove", "expected"), MERGE_CASES, ids=[c[0] for c in MERGE_CASES]
)
def test_merge_writes_back_every_application_or_refuses(case, listed, ours, remove, expected):
    instance = {} if listed is None else {"applications": listed}
    if isinstance(expected, Conflict):
        with pytest.raises(Conflict, match=expected.message) as info:
            merged_applications(instance, ours, remove)
        assert info.value.temporary
        return
    merged = merged_applications(instance, ours, remove)
    assert [a["name"] for a in merged] == expected


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
