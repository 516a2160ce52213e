"""The Router deployment's own code, run without Ray: fake handles stand in for the versions and the recorder.

What only shows with control over timing and failures: a failing recorder never fails a request and loses no
figures, a shadow answer never holds up the caller, a dead version answers 503.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from starlette.requests import Request

from steward.api.rollout import Stickiness
from steward.api.serve_app import (
    ShadowConfig,
    ShadowLog,
    ShadowPair,
    TrafficStats,
    router_access,
    sticky_key_hash,
)
from steward.serving import app as serving_app
from steward.serving.app import Recorder, Router
from steward.serving.http_answers import relative_path
from steward.serving.scoring import MAX_BODY_BYTES, Answer
from steward.serving.traffic import Counts, latency_bucket

RouterClass: Any = Router.func_or_class  # the plain class under the @serve.deployment wrapper
RecorderClass: Any = Recorder.func_or_class
ROUTE = "/ns/scorer"
RECORD = {"dataframe_records": [{"income": 1.0}]}
ACCESS = router_access(b"operator secret", "ns/scorer")
AUTH = {"authorization": f"Bearer {ACCESS.read_token}"}


class _Method:
    def __init__(self, call: Any) -> None:
        self._call = call

    def remote(self, *args: Any) -> Any:
        return self._call(*args)


class FakeVersion:
    """Answers like a ModelVersion replica; can fail, or wait for a gate before answering."""

    def __init__(self, version: str, prediction: int = 0) -> None:
        self.version = version
        self.prediction = prediction
        self.error: Exception | None = None
        self.gate: asyncio.Event | None = None
        self.calls = 0
        self.predict = _Method(self._predict)

    async def _predict(self, payload: dict[str, Any], request_id: str, with_proba: bool = False) -> Answer:
        assert request_id, "the router names the request, so that a version's log lines can be found"
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.error is not None:
            raise self.error
        return Answer(200, {"predictions": [self.prediction], "model": {"version": self.version}})


class FakeRecorder:
    """The real Recorder's logic behind handle-shaped methods that can be made to fail."""

    def __init__(self) -> None:
        self.inner = RecorderClass()
        self.down = False
        self.record = _Method(self._guard(self.inner.record))
        self.stats = _Method(self._guard(self.inner.stats))
        self.shadow_log = _Method(self._guard(self.inner.shadow_log))

    def _guard(self, method: Any) -> Any:
        async def call(*args: Any) -> Any:
            if self.down:
                raise ConnectionError("recorder replica is restarting")
            return method(*args)

        return call


@pytest.fixture
def versions(monkeypatch: pytest.MonkeyPatch) -> dict[str, FakeVersion]:
    fakes = {"1": FakeVersion("1", prediction=0), "2": FakeVersion("2", prediction=1)}
    by_app = {f"ns-scorer.v{v}": fake for v, fake in fakes.items()}

    def get_deployment_handle(name: str, app_name: str, _check_exists: bool = True) -> FakeVersion:
        assert not _check_exists, "a version application may still be deploying when the router reconfigures"
        assert name == f"model-v{by_app[app_name].version}"
        return by_app[app_name]

    monkeypatch.setattr(serving_app.serve, "get_deployment_handle", get_deployment_handle)
    return fakes


def make_router(
    recorder: FakeRecorder,
    weights: dict[str, int],
    shadow: ShadowConfig | None = None,
    *,
    access: bool = True,
    stickiness: Stickiness | None = None,
) -> Any:
    router = RouterClass("ns/scorer", "scorer", recorder)
    router.reconfigure(
        {
            "versions": {"1": "ns-scorer.v1", "2": "ns-scorer.v2"},
            "weights": weights,
            **({"shadow": shadow.model_dump()} if shadow else {}),
            **({"access": ACCESS.model_dump()} if access else {}),
            **({"stickiness": stickiness.model_dump(by_alias=True)} if stickiness else {}),
        }
    )
    return router


def request(
    method: str,
    path: str = ROUTE,
    body: Any = None,
    query: str = "",
    headers: dict[str, str] | None = None,
    chunks: list[bytes] | None = None,
) -> Request:
    """`chunks`: the body as the ASGI server would hand it over, piece by piece (counted in `pulled`)."""
    pieces = list(chunks) if chunks is not None else [b"" if body is None else json.dumps(body).encode()]
    pulled: list[int] = []

    async def receive() -> dict[str, Any]:
        pulled.append(1)
        piece = pieces.pop(0) if pieces else b""
        return {"type": "http.request", "body": piece, "more_body": bool(pieces)}

    auth = AUTH if method == "GET" and headers is None else (headers or {})
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "root_path": ROUTE,
        "query_string": query.encode(),
        "headers": [(b"content-type", b"application/json")]
        + [(k.lower().encode(), v.encode()) for k, v in auth.items()],
    }
    req = Request(scope, receive)
    req.state.pulled = pulled
    return req


async def call(router: Any, req: Request) -> tuple[int, dict[str, Any], dict[str, str]]:
    response = await router(req)
    return response.status_code, json.loads(response.body), dict(response.headers)


async def stats(router: Any) -> TrafficStats:
    status, body, _ = await call(router, request("GET", f"{ROUTE}/-/stats"))
    assert status == 200, body
    return TrafficStats.model_validate(body)


@pytest.mark.parametrize(
    ("path", "root_path", "expected"),
    [
        ("/ns/scorer/-/stats", "/ns/scorer", "/-/stats"),
        ("/ns/scorer", "/ns/scorer", "/"),
        ("/ns/scorer/", "/ns/scorer", "/"),
        ("/-/stats", "", "/-/stats"),
        ("/base/ns/scorer/-/shadow", "/base/ns/scorer", "/-/shadow"),
    ],
)
def test_relative_path_strips_the_route_prefix(path, root_path, expected):
    assert relative_path({"path": path, "root_path": root_path}) == expected


async def test_answers_carry_the_version_and_are_counted(versions):
    router = make_router(FakeRecorder(), {"1": 0, "2": 100})
    status, body, headers = await call(router, request("POST", body=RECORD))
    assert (status, body["predictions"], headers["x-model-version"]) == (200, [1], "2")
    figures = await stats(router)
    assert (figures.live["2"].requests, set(figures.live)) == (1, {"2"})


async def test_a_versions_first_answers_are_counted_but_kept_out_of_its_latency(versions):
    """A cold start is paid once per version and router replica; judged against a warm stable version, it
    would roll back a healthy canary on latency alone."""
    router = make_router(FakeRecorder(), {"1": 0, "2": 100})
    for _ in range(serving_app.WARMUP_ANSWERS + 3):
        await call(router, request("POST", body=RECORD))
    figures = (await stats(router)).live["2"]
    assert figures.requests == serving_app.WARMUP_ANSWERS + 3
    assert sum(figures.latency_ms_buckets) == 3
    # Errors among the first answers still count: a failing canary is never excused as warming up.
    versions["1"].error = RuntimeError("actor died")
    router.reconfigure(
        {
            "versions": {"1": "ns-scorer.v1", "2": "ns-scorer.v2"},
            "weights": {"1": 100},
            "access": ACCESS.model_dump(),
        }
    )
    await call(router, request("POST", body=RECORD))
    figures = (await stats(router)).live["1"]
    assert (figures.requests, figures.errors, sum(figures.latency_ms_buckets)) == (1, 1, 0)


async def test_the_latency_judged_is_the_models_own_time_not_the_hop_to_it(versions):
    """A version replica times its model and says so in the answer: the router's figures hold that time,
    not the call through the handle, which only the canary pays once stable is answered in the router."""
    slow_hop = versions["2"]

    async def answer_after_a_slow_hop(
        payload: dict[str, Any], request_id: str, with_proba: bool = False
    ) -> Answer:
        await asyncio.sleep(0.06)
        return Answer(200, {"predictions": [1]}, model_ms=0.3)

    slow_hop.predict = _Method(answer_after_a_slow_hop)
    router = make_router(FakeRecorder(), {"1": 0, "2": 100})
    for _ in range(serving_app.WARMUP_ANSWERS + 2):
        status, body, _ = await call(router, request("POST", body=RECORD))
        assert (status, set(body)) == (200, {"predictions", "requestId"}), "the model's time is not sent"
    buckets = (await stats(router)).live["2"].latency_ms_buckets
    assert buckets[latency_bucket(0.3)] == 2 and sum(buckets) == 2


async def test_a_version_that_cannot_answer_gets_a_503_and_an_error_count(versions):
    versions["1"].error = RuntimeError("actor died")
    router = make_router(FakeRecorder(), {"1": 100})
    status, body, headers = await call(router, request("POST", body=RECORD))
    assert (status, body["error"]["code"], headers["x-model-version"]) == (503, "VERSION_UNAVAILABLE", "1")
    # What went wrong inside is logged under the request id, never told to the caller.
    assert "actor died" not in json.dumps(body) and "RuntimeError" not in json.dumps(body)
    assert body["error"]["request_id"]
    figures = await stats(router)
    assert (figures.live["1"].requests, figures.live["1"].errors) == (1, 1)


async def test_no_weight_anywhere_is_a_503_no_version(versions):
    router = make_router(FakeRecorder(), {"1": 0, "2": 0})
    status, body, _ = await call(router, request("POST", body=RECORD))
    assert (status, body["error"]["code"]) == (503, "NO_VERSION")


async def test_a_failing_recorder_fails_no_request_and_loses_no_figures(versions):
    recorder = FakeRecorder()
    router = make_router(recorder, {"1": 100})
    recorder.down = True
    answers = [await call(router, request("POST", body=RECORD)) for _ in range(3)]
    assert [a[0] for a in answers] == [200, 200, 200]
    status, body, _ = await call(router, request("GET", f"{ROUTE}/-/stats"))
    assert (status, body["error"]["code"]) == (503, "STATS_UNAVAILABLE")
    assert "restarting" not in json.dumps(body)

    recorder.down = False
    await call(router, request("POST", body=RECORD))
    assert (await stats(router)).live["1"].requests == 4


async def test_a_shadow_answer_never_holds_up_the_caller(versions):
    recorder = FakeRecorder()
    router = make_router(recorder, {"1": 100}, ShadowConfig(version="2", percent=100))
    versions["2"].gate = asyncio.Event()

    status, body, headers = await asyncio.wait_for(call(router, request("POST", body=RECORD)), 1.0)
    assert (status, body["predictions"], headers["x-model-version"]) == (200, [0], "1")
    assert versions["2"].calls == 1
    assert (await stats(router)).shadow == {}

    versions["2"].gate.set()
    await asyncio.sleep(0.05)
    figures = await stats(router)
    assert figures.shadow["2"].requests == 1
    assert (figures.pairs["2"].compared, figures.pairs["2"].disagreed) == (1, 1)
    _, log_body, _ = await call(router, request("GET", f"{ROUTE}/-/shadow", query="limit=5"))
    [pair] = ShadowLog.model_validate(log_body).pairs
    assert (pair.primary, pair.shadow, pair.agree, pair.shadow_status) == ([0], [1], False, 200)


async def test_a_failing_shadow_is_recorded_as_a_disagreeing_error(versions):
    versions["2"].error = RuntimeError("replica gone")
    router = make_router(FakeRecorder(), {"1": 100}, ShadowConfig(version="2", percent=100))
    status, _, _ = await call(router, request("POST", body=RECORD))
    assert status == 200
    await asyncio.sleep(0.05)
    figures = await stats(router)
    assert (figures.shadow["2"].errors, figures.pairs["2"].disagreed) == (1, 1)
    assert "2" not in figures.live


async def test_reads_of_the_metadata(versions):
    router = make_router(FakeRecorder(), {"1": 70, "2": 30}, ShadowConfig(version="2", percent=10))
    status, body, _ = await call(router, request("GET"))
    assert status == 200
    assert body == {
        "deployment": "ns/scorer",
        "model": "scorer",
        "versions": ["1", "2"],
        "weights": {"1": 70, "2": 30},
        "shadow": {"version": "2", "percent": 10},
        "stickiness": None,
    }


def test_a_config_naming_an_unserved_version_is_refused(versions):
    router = RouterClass("ns/scorer", "scorer", FakeRecorder())
    with pytest.raises(ValueError, match="does not serve"):
        router.reconfigure({"versions": {"1": "ns-scorer.v1"}, "weights": {"1": 50, "7": 50}})


def test_the_recorder_keeps_the_last_pairs_only():
    recorder = RecorderClass()
    router_pairs = [
        {
            "at": float(i),
            "primary_version": "1",
            "shadow_version": "2",
            "agree": True,
            "primary": [0],
            "shadow": [0],
            "primary_ms": 1.0,
            "shadow_ms": 1.0,
            "shadow_status": 200,
        }
        for i in range(serving_app.PAIR_LOG_SIZE + 20)
    ]
    recorder.record(Counts(), [ShadowPair.model_validate(p) for p in router_pairs])
    log = ShadowLog.model_validate(recorder.shadow_log(3))
    assert [p.at for p in log.pairs] == [float(serving_app.PAIR_LOG_SIZE + 17 + i) for i in range(3)]
    assert len(ShadowLog.model_validate(recorder.shadow_log(10_000)).pairs) == serving_app.PAIR_LOG_SIZE


# ------------------------------------------------------------------------------------------------ reads


UNAUTHENTICATED = [
    {},
    {"authorization": "Bearer wrong-token"},
    {"authorization": f"Basic {ACCESS.read_token}"},
    {"authorization": f"Bearer {ACCESS.read_token[:-1]}"},
    {"authorization": f"Bearer {router_access(b'operator secret', 'ns/other').read_token}"},
]


@pytest.mark.parametrize(
    "headers", UNAUTHENTICATED, ids=["none", "wrong", "basic", "cut", "other deployment"]
)
async def test_reads_without_the_token_are_refused_alike_whatever_the_path(versions, headers):
    router = make_router(FakeRecorder(), {"1": 100}, ShadowConfig(version="2", percent=10))
    answers = [
        await call(router, request("GET", f"{ROUTE}{path}", headers=headers))
        for path in ("", "/", "/-/stats", "/-/shadow", "/-/nothing", "/anything")
    ]
    assert {status for status, _, _ in answers} == {401}
    # One body for every path (request ids aside): nothing tells what exists.
    bodies = {json.dumps({**body["error"], "request_id": None}) for _, body, _ in answers}
    assert len(bodies) == 1
    assert all(h["www-authenticate"] == "Bearer" for _, _, h in answers)
    assert "weights" not in bodies.pop()


async def test_a_router_without_access_config_answers_no_read(versions):
    router = make_router(FakeRecorder(), {"1": 100}, access=False)
    status, _, _ = await call(router, request("GET", f"{ROUTE}/-/stats"))
    assert status == 401
    status, _, _ = await call(router, request("POST", body=RECORD))
    assert status == 200


async def test_shadow_pairs_keep_a_keyed_hash_of_the_sticky_key_never_the_key(versions):
    router = make_router(
        FakeRecorder(),
        {"1": 100},
        ShadowConfig(version="2", percent=100),
        stickiness=Stickiness(field="customer"),
    )
    record = {"dataframe_records": [{"income": 1.0, "customer": "C-1234"}]}
    await call(router, request("POST", body=record))
    await asyncio.sleep(0.05)
    status, body, _ = await call(router, request("GET", f"{ROUTE}/-/shadow"))
    assert status == 200
    assert "C-1234" not in json.dumps(body)
    [pair] = ShadowLog.model_validate(body).pairs
    assert pair.sticky_key_hash == sticky_key_hash(ACCESS.pseudonym_key, "C-1234")
    assert pair.sticky_key_hash != sticky_key_hash(ACCESS.read_token, "C-1234")


# ------------------------------------------------------------------------------------------- body size


async def test_an_oversized_body_is_refused_as_soon_as_it_crosses_the_limit(versions):
    router = make_router(FakeRecorder(), {"1": 100})
    chunk = b" " * 2**20
    req = request("POST", chunks=[chunk] * 40)  # 40 MiB, sent without a Content-Length
    status, body, _ = await call(router, req)
    assert (status, body["error"]["code"]) == (413, "PAYLOAD_TOO_LARGE")
    assert len(req.state.pulled) == MAX_BODY_BYTES // len(chunk) + 1
    assert versions["1"].calls == 0


async def test_a_declared_oversized_body_is_refused_before_reading_it(versions):
    router = make_router(FakeRecorder(), {"1": 100})
    req = request("POST", chunks=[b"{}"], headers={"content-length": str(MAX_BODY_BYTES + 1)})
    status, body, _ = await call(router, req)
    assert (status, body["error"]["code"]) == (413, "PAYLOAD_TOO_LARGE")
    assert req.state.pulled == []


async def test_a_body_of_many_chunks_under_the_limit_is_scored(versions):
    router = make_router(FakeRecorder(), {"1": 100})
    raw = json.dumps(RECORD).encode()
    status, _, _ = await call(router, request("POST", chunks=[raw[i : i + 3] for i in range(0, len(raw), 3)]))
    assert status == 200
