"""The Router's capture and request ids, run without Ray: fake version handles, the real Recorder's logic."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from starlette.requests import Request

from steward.api.serve_app import TrafficStats, router_access
from steward.serving import app as serving_app
from steward.serving.app import Recorder, Router
from steward.serving.capture import NO_HASH_KEY, PROBA_FIELD
from steward.serving.scoring import Answer

RouterClass: Any = Router.func_or_class
RecorderClass: Any = Recorder.func_or_class
ACCESS = router_access(b"operator secret", "ns/credit")
CAPTURE = {"sampleRate": 1.0, "fields": {"customer_id": "hash"}, "sensitiveFeatures": ["gender"]}
RECORD = {"dataframe_records": [{"income": 1.0, "customer_id": "C-7", "gender": "f"}]}


class _Method:
    def __init__(self, call: Any) -> None:
        self._call = call

    def remote(self, *args: Any) -> Any:
        return self._call(*args)


class FakeVersion:
    def __init__(self) -> None:
        self.payloads: list[dict[str, Any]] = []
        self.asked_proba: list[bool] = []
        self.predict = _Method(self._predict)

    async def _predict(self, payload: dict[str, Any], request_id: str, with_proba: bool = False) -> Answer:
        self.payloads.append(payload)
        self.asked_proba.append(with_proba)
        body: dict[str, Any] = {"predictions": [1]}
        if with_proba:
            body[PROBA_FIELD] = [{"0": 0.3, "1": 0.7}]
        return Answer(200, body)


class FakeRecorder:
    def __init__(self) -> None:
        inner = RecorderClass()
        self.record = _Method(self._async(inner.record))
        self.stats = _Method(self._async(inner.stats))

    @staticmethod
    def _async(method: Any) -> Any:
        async def call(*args: Any) -> Any:
            return method(*args)

        return call


@pytest.fixture
def version(monkeypatch: pytest.MonkeyPatch) -> FakeVersion:
    fake = FakeVersion()
    monkeypatch.setattr(serving_app.serve, "get_deployment_handle", lambda *a, **k: fake)
    return fake


def make_router(store: Path | None, capture: dict[str, Any] | None = CAPTURE) -> Any:
    router = RouterClass("ns/credit", "credit", FakeRecorder())
    router.reconfigure(
        {
            "versions": {"1": "ns.credit.v1"},
            "weights": {"1": 100},
            "access": ACCESS.model_dump(),
            **({"capture": capture} if capture is not None else {}),
            **({"store_uri": str(store)} if store is not None else {}),
        }
    )
    return router


def request(
    method: str, path: str = "/ns/credit", body: Any = None, headers: dict[str, str] | None = None
) -> Request:
    data = [b"" if body is None else json.dumps(body).encode()]

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": data.pop(0) if data else b"", "more_body": False}

    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "root_path": "/ns/credit",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
    }
    return Request(scope, receive)


async def call(router: Any, req: Request) -> tuple[int, dict[str, Any], Any]:
    response = await router(req)
    return response.status_code, json.loads(response.body), response.headers


async def stats(router: Any) -> TrafficStats:
    auth = {"authorization": f"Bearer {ACCESS.read_token}"}
    status, body, _ = await call(router, request("GET", "/ns/credit/-/stats", headers=auth))
    assert status == 200, body
    return TrafficStats.model_validate(body)


@pytest.fixture
def hash_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEWARD_CAPTURE_HASH_KEY", "k" * 32)


async def test_every_answer_carries_one_request_id_in_header_and_body(version: FakeVersion) -> None:
    router = make_router(None, None)
    status, body, headers = await call(router, request("POST", body=RECORD))
    assert status == 200 and len(body["requestId"]) == 32 and headers["x-request-id"] == body["requestId"]
    status, body, headers = await call(router, request("POST", body=[1]))
    assert status == 400 and headers["x-request-id"] == body["requestId"] == body["error"]["request_id"]
    # A sane caller id is the request's id; Ray's proxy echoes that header, so the router adds none.
    status, body, headers = await call(
        router, request("POST", body=RECORD, headers={"x-request-id": "abc-1"})
    )
    assert body["requestId"] == "abc-1" and headers.getlist("x-request-id") == []
    # One it cannot safely log or echo is replaced.
    status, body, headers = await call(
        router, request("POST", body=RECORD, headers={"x-request-id": "x" * 200})
    )
    assert len(body["requestId"]) == 32 and headers["x-request-id"] == body["requestId"]
    # GETs too (the figures' body keeps its own shape).
    auth = {"authorization": f"Bearer {ACCESS.read_token}"}
    status, body, headers = await call(router, request("GET", "/ns/credit/-/stats", headers=auth))
    assert status == 200 and len(headers["x-request-id"]) == 32


async def test_sensitive_features_never_reach_the_model_and_are_captured(
    version: FakeVersion, tmp_path: Path, hash_key: None
) -> None:
    router = make_router(tmp_path)
    status, body, _ = await call(router, request("POST", body=RECORD, headers={"x-request-id": "req-1"}))
    assert status == 200 and body["predictions"] == [1]
    assert PROBA_FIELD not in body  # internal: stripped before answering
    assert version.payloads == [{"dataframe_records": [{"income": 1.0, "customer_id": "C-7"}]}]
    assert version.asked_proba == [True]  # a captured request: its probabilities go into the record
    router._capture.writer.close()
    [path] = list(tmp_path.rglob("*.parquet"))
    assert "/ns/credit/v1/date=" in str(path) and b"C-7" not in path.read_bytes()
    frame = pd.read_parquet(path)
    row = frame.iloc[0]
    assert (row["request_id"], row["sensitive.gender"], row["prediction"], row["proba.1"]) == (
        "req-1",
        "f",
        1,
        0.7,
    )
    assert row["input.customer_id"] != "C-7" and "input.gender" not in frame.columns
    figures = await stats(router)
    assert figures.capture is not None and (figures.capture.written, figures.capture.dropped) == (1, 0)


async def test_without_a_store_sensitive_features_are_still_kept_from_the_model(version: FakeVersion) -> None:
    router = make_router(None)
    await call(router, request("POST", body=RECORD))
    assert "gender" not in json.dumps(version.payloads)
    assert (await stats(router)).capture is None


async def test_a_broken_store_or_missing_key_fails_no_request_and_shows_in_stats(
    version: FakeVersion, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STEWARD_CAPTURE_HASH_KEY", raising=False)
    monkeypatch.delenv("STEWARD_CAPTURE_HASH_KEY_PATH", raising=False)
    router = make_router(tmp_path)
    assert (await call(router, request("POST", body=RECORD)))[0] == 200
    figures = await stats(router)
    assert figures.capture is not None and (figures.capture.written, figures.capture.dropped) == (0, 1)
    assert figures.capture.last_error == NO_HASH_KEY
    assert not list(tmp_path.rglob("*.parquet"))

    monkeypatch.setenv("STEWARD_CAPTURE_HASH_KEY", "k" * 32)
    (tmp_path / "blocked").write_text("a file where the store's folder should be")
    router = make_router(tmp_path / "blocked")
    started = time.perf_counter()
    for _ in range(5):
        assert (await call(router, request("POST", body=RECORD)))[0] == 200
    assert time.perf_counter() - started < 1.0
    router._capture.writer.close()
    figures = await stats(router)
    assert figures.capture is not None and (figures.capture.written, figures.capture.dropped) == (0, 5)
    assert figures.capture.last_error is not None and "could not write" in figures.capture.last_error


async def test_a_new_capture_config_replaces_the_writer_in_place(
    version: FakeVersion, tmp_path: Path, hash_key: None
) -> None:
    router = make_router(tmp_path / "a")
    first = router._capture.writer
    router.reconfigure(
        {"versions": {"1": "ns.credit.v1"}, "weights": {"1": 100}, "capture": {**CAPTURE, "sampleRate": 0.0},
         "store_uri": str(tmp_path / "a")}
    )  # fmt: skip
    assert router._capture.writer is not first
    for _ in range(20):
        await call(router, request("POST", body=RECORD))
    router._capture.writer.close()
    assert not list(tmp_path.rglob("*.parquet"))
    assert version.asked_proba == [False] * 20  # nothing sampled: no probabilities computed either
