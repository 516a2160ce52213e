"""The stable version served inside the router replica (steward.serving.local_model), run without Ray.

Loading happens in a background thread and is swapped in whole; until then, when a load fails, for the canary
and the shadow, and when an in-router call fails, the router goes through the version's handle. Loads are
controlled by events here, never by timing; waits poll with a generous bound and assert no duration.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
import weakref
from typing import Any

import pytest
import test_router_app
from test_router_app import (
    RECORD,
    FakeRecorder,
    FakeVersion,
    RouterClass,
    call,
    make_router,
    request,
    stats,
)

from steward.api.serve_app import InRouterModel, RouterConfig, ShadowConfig
from steward.serving.local_model import (
    INLINE_MAX_BYTES,
    INLINE_MAX_MS,
    INLINE_WAIT_MS,
    LoadedModel,
    LocalModel,
    Pace,
)
from steward.serving.scoring import Answer
from steward.serving.traffic import Counts

versions = test_router_app.versions  # the fake version handles, a fixture

V1 = InRouterModel(version="1", model_uri="models:/scorer/1")
V2 = InRouterModel(version="2", model_uri="models:/scorer/2")


class FakeLoaded:
    """Stands in for a LoadedModel: answers like ModelVersion.predict, can be made to raise; records whether
    each call ran on the event loop (the test's main thread) or in a worker thread."""

    def __init__(self, version: str, prediction: int = 7) -> None:
        self.version = version
        self.prediction = prediction
        self.calls: list[tuple[str, bool]] = []
        self.on_loop: list[bool] = []
        self.error: Exception | None = None
        self.pace = Pace()  # unknown until a test sets it: scored in a worker thread

    def paced_predict(
        self, payload: dict[str, Any], request_id: str, with_proba: bool, size: int, inline: bool = False
    ) -> Answer:
        self.on_loop.append(threading.current_thread() is threading.main_thread())
        return self.predict(payload, request_id, with_proba)

    def predict(self, payload: dict[str, Any], request_id: str = "", with_proba: bool = False) -> Answer:
        self.calls.append((request_id, with_proba))
        if self.error is not None:
            raise self.error
        return Answer(200, {"predictions": [self.prediction], "model": {"version": self.version}})


class Loader:
    """A loader whose loads finish when the test says so (`release`), or fail (`failures`)."""

    def __init__(self) -> None:
        self.gates: dict[str, threading.Event] = {}
        self.failures: dict[str, int] = {}
        self.loads: list[tuple[str, str, str]] = []
        self.made: list[FakeLoaded] = []

    def gate(self, version: str) -> threading.Event:
        return self.gates.setdefault(version, threading.Event())

    def release(self, version: str) -> None:
        self.gate(version).set()

    def __call__(self, model_name: str, version: str, model_uri: str) -> Any:
        self.loads.append((model_name, version, model_uri))
        assert self.gate(version).wait(30), "the test never released this load"
        if self.failures.get(version, 0) > 0:
            self.failures[version] -= 1
            raise OSError(f"registry unreachable for {model_uri}")
        loaded = FakeLoaded(version)
        self.made.append(loaded)
        return loaded


def eventually(check: Any, what: str) -> Any:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.005)
    raise AssertionError(f"not within 30 s: {what}")


def taken(local: LocalModel) -> Any:
    pending = Counts()
    local.count_into(pending)
    return pending.in_router


def test_the_model_loads_in_the_background_and_serves_once_loaded():
    loader = Loader()
    local = LocalModel("scorer", loader)
    local.want(V1)  # returns at once: the load runs in its own thread
    assert local.serving("1") is None
    eventually(lambda: loader.loads, "the load started")
    assert loader.loads == [("scorer", "1", "models:/scorer/1")]
    assert local.serving("1") is None, "nothing served before the load finishes"
    loader.release("1")
    loaded = eventually(lambda: local.serving("1"), "version 1 served in the router")
    assert loaded is loader.made[0]
    # Only the stable version: any other version goes through its handle.
    assert local.serving("2") is None
    assert taken(local).loads == 1
    # The same config again (a weight step) loads nothing again.
    local.want(InRouterModel(version="1", model_uri="models:/scorer/1"))
    assert len(loader.loads) == 1 and local.serving("1") is loaded


def test_a_failed_load_is_counted_visible_and_retried():
    loader = Loader()
    loader.failures["1"] = 2
    loader.release("1")
    local = LocalModel("scorer", loader, retry_delays_s=(0.001,))
    local.want(V1)
    eventually(lambda: local.serving("1"), "loaded on the third attempt")
    assert len(loader.loads) == 3
    figures = taken(local)
    assert (figures.load_failures, figures.loads) == (2, 1)
    assert "OSError: registry unreachable for models:/scorer/1" in figures.last_error
    assert figures.last_error.startswith("version 1 (models:/scorer/1)")


def test_a_load_that_keeps_failing_serves_nothing_and_stops_when_no_longer_wanted():
    loader = Loader()
    loader.failures["1"] = 10**6
    loader.release("1")
    local = LocalModel("scorer", loader, retry_delays_s=(0.001,))
    local.want(V1)
    eventually(lambda: len(loader.loads) >= 3, "retried")
    assert local.serving("1") is None
    local.want(None)
    time.sleep(0.05)  # let a retry under way finish; then no new attempt starts
    attempts = len(loader.loads)
    time.sleep(0.05)
    assert len(loader.loads) == attempts


def test_a_new_stable_version_releases_the_old_model_and_swaps_when_loaded():
    loader = Loader()
    local = LocalModel("scorer", loader)
    loader.release("1")
    local.want(V1)
    eventually(lambda: local.serving("1"), "version 1 loaded")
    old = weakref.ref(loader.made[0])
    loader.made.clear()

    local.want(V2)
    # Version 1 is released at once (its calls go to its handle), version 2 is not there yet.
    assert local.serving("1") is None and local.serving("2") is None
    gc.collect()
    assert old() is None, "the old model is no longer held by the router"
    loader.release("2")
    assert eventually(lambda: local.serving("2"), "version 2 loaded").version == "2"


def test_a_load_that_finishes_after_the_stable_version_changed_is_dropped():
    loader = Loader()
    local = LocalModel("scorer", loader)
    local.want(V1)
    eventually(lambda: loader.loads, "version 1 loading")
    local.want(V2)
    loader.release("2")
    eventually(lambda: local.serving("2"), "version 2 loaded")
    loader.release("1")  # the stale load finishes now
    eventually(lambda: len(loader.made) == 2, "the stale load returned")
    time.sleep(0.05)
    assert local.serving("1") is None and local.serving("2") is loader.made[0]
    assert taken(local).loads == 1


def test_no_model_wanted_releases_it():
    loader = Loader()
    loader.release("1")
    local = LocalModel("scorer", loader)
    local.want(V1)
    eventually(lambda: local.serving("1"), "loaded")
    held = weakref.ref(loader.made.pop())
    local.want(None)
    gc.collect()
    assert local.serving("1") is None and held() is None


def test_an_idle_local_model_adds_nothing_to_the_figures():
    local = LocalModel("scorer", Loader())
    assert taken(local) is None


def test_loaded_model_adds_the_version_like_a_version_replica():
    class Model:
        metadata: Any = None

    loaded = LoadedModel("scorer", "3", Model())  # type: ignore[arg-type]
    answer = loaded.predict({"not_a_format": 1}, "rid")
    # The caller's mistake is answered as by a version replica, without the model field.
    assert (answer.status, answer.body["error"]["code"]) == (400, "UNSUPPORTED_FORMAT")


def test_pace_scores_inline_only_a_small_request_to_a_model_known_to_be_fast():
    pace = Pace()
    assert not pace.is_inline(100), "unknown until measured"
    pace.add(INLINE_MAX_MS / 2)
    assert pace.is_inline(100) and pace.is_inline(INLINE_MAX_BYTES)
    assert not pace.is_inline(INLINE_MAX_BYTES + 1), "a large body keeps the worker thread"
    for _ in range(10):
        pace.add(INLINE_MAX_MS * 10)
    assert not pace.is_inline(100), "a model that became slow goes back to the worker thread"
    for _ in range(60):
        pace.add(INLINE_MAX_MS / 5)
    assert pace.is_inline(100), "and comes back once fast again"


def test_a_model_that_waited_on_the_loop_goes_to_the_thread_until_the_wait_has_faded():
    pace = Pace()
    pace.add(1.0, inline_wall_ms=1.0 + INLINE_WAIT_MS / 2)
    assert pace.is_inline(100), "waiting for a core for a while is not waiting for I/O"
    pace.add(1.0, inline_wall_ms=1.0 + INLINE_WAIT_MS * 2)
    assert not pace.is_inline(100)
    calls = 0
    while not pace.is_inline(100):
        pace.add(1.0)  # in the worker thread, where no wait shows
        calls += 1
    # Tried on the loop again after a while, not at once and not never.
    assert 10 < calls < 100, calls


def burn_cpu(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


class TimedModel:
    """A pyfunc stand-in with an input example."""

    metadata: Any = None
    input_example = {"x": [1.0]}

    def __init__(self) -> None:
        self.calls = 0

    def predict(self, data: Any) -> Any:
        self.calls += 1
        return [0]


def test_a_loaded_model_measures_its_pace_at_warm_up_and_on_small_requests_only():
    model = TimedModel()
    loaded = LoadedModel("scorer", "3", model)  # type: ignore[arg-type]
    loaded.warm_up()
    assert model.calls == 2 and loaded.pace.ms is not None and loaded.pace.is_inline(100)

    def busy_predict(payload: dict[str, Any], request_id: str = "", with_proba: bool = False) -> Answer:
        burn_cpu(INLINE_MAX_MS * 2 / 1000)
        return Answer(200, {"predictions": [0]})

    loaded.predict = busy_predict  # type: ignore[method-assign]
    loaded.paced_predict(RECORD, "rid", False, INLINE_MAX_BYTES + 1)
    assert loaded.pace.is_inline(100), "a large body's time does not count"
    for _ in range(30):
        loaded.paced_predict(RECORD, "rid", False, 100)
    assert loaded.pace.ms is not None and loaded.pace.ms > INLINE_MAX_MS


def test_a_loaded_model_that_sleeps_in_a_call_on_the_loop_goes_back_to_the_thread():
    loaded = LoadedModel("scorer", "3", TimedModel())  # type: ignore[arg-type]
    loaded.warm_up()

    def waiting_predict(payload: dict[str, Any], request_id: str = "", with_proba: bool = False) -> Answer:
        time.sleep(INLINE_WAIT_MS * 2 / 1000)
        return Answer(200, {"predictions": [0]})

    loaded.predict = waiting_predict  # type: ignore[method-assign]
    loaded.paced_predict(RECORD, "rid", False, 100)
    assert loaded.pace.is_inline(100), "in a worker thread, a wait is not held against it"
    loaded.paced_predict(RECORD, "rid", False, 100, inline=True)
    assert not loaded.pace.is_inline(100)


# ------------------------------------------------------------------------------------------- the router


def in_router_router(recorder: FakeRecorder, weights: dict[str, int], **extra: Any) -> Any:
    router = make_router(recorder, weights)
    config = {
        "versions": {"1": "ns-scorer.v1", "2": "ns-scorer.v2"},
        "weights": weights,
        "access": router._routing.config.access.model_dump(),
        "in_router": V1.model_dump(),
        **extra,
    }
    RouterConfig.model_validate(config)
    router.reconfigure(config)
    return router


@pytest.fixture
def loader(monkeypatch: pytest.MonkeyPatch) -> Loader:
    fake = Loader()
    monkeypatch.setattr(LoadedModel, "load", fake)
    return fake


async def wait_loaded(router: Any, version: str) -> None:
    deadline = time.monotonic() + 30
    while router._local.serving(version) is None:
        assert time.monotonic() < deadline, f"version {version} not loaded in the router"
        await asyncio.sleep(0.005)


async def test_until_loaded_stable_goes_through_its_handle_then_is_answered_in_router(
    versions: dict[str, FakeVersion], loader: Loader
) -> None:
    recorder = FakeRecorder()
    router = in_router_router(recorder, {"1": 100, "2": 0})
    status, body, headers = await call(router, request("POST", body=RECORD))
    assert (status, body["predictions"], versions["1"].calls) == (200, [0], 1)

    loader.release("1")
    await wait_loaded(router, "1")
    status, body, headers = await call(router, request("POST", body=RECORD))
    # Answered by the router's own copy (prediction 7), not through the handle; everything else as before.
    assert (status, body["predictions"], versions["1"].calls) == (200, [7], 1)
    assert headers["x-model-version"] == "1" and body["requestId"] == headers["x-request-id"]
    assert loader.made[0].calls == [(body["requestId"], False)]
    assert loader.made[0].on_loop == [False], "a model of unknown pace is scored in a worker thread"
    figures = await stats(router)
    # The per-version figures the canary analysis compares count both paths.
    assert figures.live["1"].requests == 2
    assert figures.in_router is not None
    assert (figures.in_router.answered, figures.in_router.loads) == ({"1": 1}, 1)


async def test_a_fast_model_is_scored_on_the_event_loop_a_slow_one_or_a_large_body_in_a_thread(
    versions: dict[str, FakeVersion], loader: Loader
) -> None:
    loader.release("1")
    router = in_router_router(FakeRecorder(), {"1": 100, "2": 0})
    await wait_loaded(router, "1")
    loaded = loader.made[0]
    loaded.pace.ms = INLINE_MAX_MS / 2
    large = {"dataframe_records": [{"income": 1.0}] * (INLINE_MAX_BYTES // 10)}
    for body in (RECORD, large):
        status, answer, _ = await call(router, request("POST", body=body))
        assert (status, answer["predictions"]) == (200, [7])
    loaded.pace.ms = INLINE_MAX_MS * 2
    await call(router, request("POST", body=RECORD))
    assert loaded.on_loop == [True, False, False]
    assert versions["1"].calls == 0
    figures = (await stats(router)).in_router
    assert figures is not None and (figures.answered, figures.on_loop) == ({"1": 3}, 1)


async def test_canary_and_shadow_always_go_to_their_own_applications(
    versions: dict[str, FakeVersion], loader: Loader
) -> None:
    loader.release("1")
    router = in_router_router(
        FakeRecorder(), {"1": 50, "2": 50}, shadow=ShadowConfig(version="2", percent=100).model_dump()
    )
    await wait_loaded(router, "1")
    answered: dict[str, int] = {}
    for _ in range(40):
        _, _, headers = await call(router, request("POST", body=RECORD))
        answered[headers["x-model-version"]] = answered.get(headers["x-model-version"], 0) + 1
    await asyncio.sleep(0.05)  # mirrored calls finish after their callers
    assert set(answered) == {"1", "2"}
    assert len(loader.made[0].calls) == answered["1"]
    # Canary answers plus every mirror of a stable answer went to version 2's handle.
    assert versions["2"].calls == answered["2"] + answered["1"]
    assert versions["1"].calls == 0
    figures = await stats(router)
    assert figures.in_router.answered == {"1": answered["1"]}
    assert figures.pairs["2"].compared == answered["1"]


@pytest.mark.parametrize("pace_ms", [None, 1.0], ids=["in a worker thread", "on the event loop"])
async def test_a_failing_in_router_call_is_answered_through_the_handle(
    versions: dict[str, FakeVersion], loader: Loader, pace_ms: float | None
) -> None:
    loader.release("1")
    router = in_router_router(FakeRecorder(), {"1": 100, "2": 0})
    await wait_loaded(router, "1")
    loader.made[0].pace.ms = pace_ms
    loader.made[0].error = RuntimeError("thread pool gone")
    status, body, _ = await call(router, request("POST", body=RECORD))
    assert loader.made[0].on_loop == [pace_ms is not None]
    assert (status, body["predictions"], versions["1"].calls) == (200, [0], 1)
    figures = await stats(router)
    assert (figures.in_router.fallbacks, figures.live["1"].requests, figures.live["1"].errors) == (1, 1, 0)


async def test_a_failed_load_leaves_stable_on_its_handle_and_shows_in_stats(
    versions: dict[str, FakeVersion], loader: Loader
) -> None:
    loader.failures["1"] = 10**6
    loader.release("1")
    router = in_router_router(FakeRecorder(), {"1": 100, "2": 0})
    deadline = time.monotonic() + 30
    while not loader.loads:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.02)
    status, body, _ = await call(router, request("POST", body=RECORD))
    assert (status, body["predictions"], versions["1"].calls) == (200, [0], 1)
    figures = await stats(router)
    assert figures.in_router.load_failures >= 1 and "registry unreachable" in figures.in_router.last_error
    assert figures.in_router.answered == {}
    router.reconfigure({"versions": {"1": "ns-scorer.v1"}, "weights": {"1": 100}})  # stop the retries


async def test_a_router_without_an_in_router_model_loads_nothing(
    versions: dict[str, FakeVersion], loader: Loader
) -> None:
    router = RouterClass("ns/scorer", "scorer", FakeRecorder())
    router.reconfigure({"versions": {"1": "ns-scorer.v1"}, "weights": {"1": 100}})
    await call(router, request("POST", body=RECORD))
    assert (loader.loads, versions["1"].calls) == ([], 1)
