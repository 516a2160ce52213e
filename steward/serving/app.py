"""The Ray Serve applications of one ModelDeployment: a router application and one application per version.

The router owns the HTTP surface (JSON parsing, error bodies, version choice, shadowing, measurements) and
answers the stable version from its own copy of the model once loaded (steward.serving.local_model); version
replicas score everything else. Weights, shadowing and stickiness live in the router's `user_config`, so
moving traffic reconfigures the router in place and never touches a model replica (see steward.api.serve_app
for why each version is an application of its own).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ray import serve
from ray.serve import Application
from ray.serve.handle import DeploymentHandle
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from steward.api.serve_app import (
    SHADOW_PATH,
    STATS_PATH,
    RouterArgs,
    RouterConfig,
    ShadowPair,
    VersionArgs,
    sticky_key_hash,
    version_deployment_name,
)
from steward.serving.capture import Captured, strip_sensitive
from steward.serving.capture_writer import RouterCapture
from steward.serving.http_answers import (
    PAIR_LOG_SIZE,
    READ_REFUSED,
    bearer_token_matches,
    parse_limit,
    relative_path,
    request_id,
    respond,
    with_request_id,
)
from steward.serving.local_model import LoadedModel, LocalModel
from steward.serving.recorder import Recorder
from steward.serving.scoring import Answer, ErrorCode, error, parse_json_body, read_body
from steward.serving.traffic import Counts, answers_agree, choose_version, should_shadow, sticky_key

log = logging.getLogger(__name__)

# Often enough that an analysis window of tens of seconds sees fresh figures; rare enough to cost nothing.
# Shorter than the drain of a stopping replica (at least graceful_shutdown_wait_loop_s, 2 s by default, in
# ray/serve/_private/replica.py, _drain_ongoing_requests), so its last figures still reach the recorder; an
# `async def __del__` would too, but Python's own garbage collection calls it and drops the coroutine.
FLUSH_INTERVAL_S = 1.0
# A recorder that does not answer must not hold a stats read (or the flush loop) forever.
RECORDER_TIMEOUT_S = 10.0
# A slow or stuck challenger must not pile up mirrored calls (each holding its payload) without bound. At 64,
# a burst of 100 requests to a challenger still warming up already lost mirrors on two cores.
MAX_SHADOW_IN_FLIGHT = 256
# A version's first answers through each router replica are counted but kept out of the latency figures.
WARMUP_ANSWERS = 5
SHADOW_TIMEOUT_S = 30.0


@serve.deployment
class ModelVersion:
    def __init__(self, model_name: str, version: str, model_uri: str) -> None:
        # A load failure raises here; Ray Serve then reports DEPLOY_FAILED with this message.
        self.loaded = LoadedModel.load(model_name, version, model_uri)

    def predict(self, payload: dict[str, Any], request_id: str = "", with_proba: bool = False) -> Answer:
        return self.loaded.predict(payload, request_id, with_proba)


@dataclass(frozen=True)
class _Routing:
    """One config and its handles, swapped as a whole so that a request never sees half of a change."""

    config: RouterConfig
    handles: Mapping[str, DeploymentHandle[Any]]


@serve.deployment
class Router:
    def __init__(self, deployment: str, model_name: str, recorder: DeploymentHandle[Any]) -> None:
        self.deployment = deployment
        self.model_name = model_name
        self._recorder = recorder
        self._routing = _Routing(RouterConfig(versions={}, weights={}), {})
        self._pending = Counts()
        self._pending_pairs: list[ShadowPair] = []
        self._flush_lock = asyncio.Lock()
        self._flusher: asyncio.Task[None] | None = None
        self._shadow_tasks: set[asyncio.Task[None]] = set()
        self._shadow_saturated = False
        self._capture = RouterCapture(deployment)
        self._answered: Counter[tuple[str, bool]] = Counter()
        self._local = LocalModel(model_name)

    # ------------------------------------------------------------------------------------------ config

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        config = RouterConfig.model_validate(user_config)
        handles = {
            version: serve.get_deployment_handle(
                version_deployment_name(version),
                app_name=app,
                # The operator deploys the router and a new version's application in one PUT, and Ray may
                # build the router first: with the default check, get_handle() asks the controller whether
                # the deployment exists yet (ray/serve/_private/client.py, get_handle) and raises KeyError,
                # failing the router's update. Unchecked, the handle counts as available until the controller
                # says otherwise (`_deployment_available = True`, serve/_private/router.py), so a call queues
                # until the version has replicas; the operator gives a version weight only once it runs.
                _check_exists=False,
            )
            for version, app in config.versions.items()
        }
        self._capture.reconfigure(config.capture, config.store_uri, _replica_id)
        self._local.want(config.in_router)
        # A version that left and comes back warms up again; one gone for good is forgotten.
        self._answered = Counter({k: n for k, n in self._answered.items() if k[0] in config.versions})
        self._routing = _Routing(config, handles)

    def _warm(self, version: str, latency_ms: float, shadow: bool = False) -> float | None:
        """The latency to measure, or None for one of a version's first answers through this replica: those
        include the handle's first routing to a new replica and the replica's first calls (lazy imports,
        caches), a cold start paid once, which would otherwise fail a healthy canary's latency gate against a
        warm stable version. The answers still count as requests, errors and rejections."""
        key = (version, shadow)
        self._answered[key] += 1
        return latency_ms if self._answered[key] > WARMUP_ANSWERS else None

    # ---------------------------------------------------------------------------------------- requests

    async def __call__(self, request: Request) -> Response:
        self._start_flushing()
        rid = request_id(request.headers)
        return with_request_id(await self._answer(request, rid), rid, request.headers)

    async def _answer(self, request: Request, rid: str) -> JSONResponse:
        if request.method == "GET":
            access = self._routing.config.access
            if not bearer_token_matches(request.headers, None if access is None else access.read_token):
                return respond(READ_REFUSED, rid)
            return await self._get(relative_path(request.scope), request.query_params.get("limit"), rid)
        if request.method != "POST":
            return respond(error(ErrorCode.METHOD_NOT_ALLOWED, "use POST with a JSON body to predict"), rid)
        raw = await read_body(request.stream(), request.headers.get("content-length"))
        payload = raw if isinstance(raw, Answer) else parse_json_body(raw)
        if isinstance(payload, Answer):
            return respond(payload, rid)
        assert isinstance(raw, bytes)
        return await self._predict(payload, request.headers, rid, len(raw))

    async def _predict(
        self, payload: dict[str, Any], headers: Mapping[str, str], rid: str, size: int = 0
    ) -> JSONResponse:
        routing = self._routing
        config = routing.config
        at = time.time()
        key = sticky_key(config.stickiness, headers, payload)
        # Before any model sees the request, the shadow version included.
        payload, sensitive = strip_sensitive(config.capture, payload)
        version = choose_version(config.weights, key, random.random())
        if version is None:
            return respond(error(ErrorCode.NO_VERSION, "no model version currently receives traffic"), rid)
        primary: asyncio.Future[tuple[Answer, float] | None] = asyncio.get_running_loop().create_future()
        if config.shadow is not None and should_shadow(config.shadow, version, random.random()):
            pseudonym = None
            if key is not None and config.access is not None:
                pseudonym = sticky_key_hash(config.access.pseudonym_key, key)
            self._mirror(routing, config.shadow.version, version, payload, primary, pseudonym, at, rid)
        started = time.perf_counter()
        try:
            with_proba = self._capture.wants(config.capture, rid)
            answer = await self._call_primary(routing, version, payload, rid, with_proba, size)
            latency_ms = (time.perf_counter() - started) * 1000
            self._pending.observe(version, answer.status, self._warm(version, answer.judged_ms(latency_ms)))
            primary.set_result((answer, latency_ms))
        finally:
            # The caller may go away mid-call (cancellation): the mirrored call must not wait for it.
            if not primary.done():
                primary.set_result(None)
        self._capture.offer(
            config.capture,
            Captured(rid, at, version, answer.status, latency_ms, payload, sensitive, answer.body),
            size,
        )
        return respond(answer, rid, version)

    async def _call_primary(
        self, routing: _Routing, version: str, payload: dict[str, Any], rid: str, with_proba: bool, size: int
    ) -> Answer:
        # The stable version in this replica when it is loaded; the handle otherwise, or if that call failed.
        loaded = self._local.serving(version)
        answer = None if loaded is None else await self._local.answer(loaded, payload, rid, with_proba, size)
        if answer is None:
            answer = await self._call_version(routing, version, payload, rid, with_proba)
        return answer

    async def _call_version(
        self, routing: _Routing, version: str, payload: dict[str, Any], rid: str, with_proba: bool = False
    ) -> Answer:
        try:
            answer: Answer = await routing.handles[version].predict.remote(payload, rid, with_proba)
        except Exception as exc:  # noqa: BLE001 - a dead replica or a removed application: the caller gets a 503
            log.warning(
                "request %s: model version %s could not answer: %s: %s", rid, version, type(exc).__name__, exc
            )
            return error(
                ErrorCode.VERSION_UNAVAILABLE, f"model version {version} could not answer; retry shortly"
            )
        return answer

    # ---------------------------------------------------------------------------------------- shadowing

    def _mirror(
        self,
        routing: _Routing,
        shadow_version: str,
        primary_version: str,
        payload: dict[str, Any],
        primary: asyncio.Future[tuple[Answer, float] | None],
        pseudonym: str | None,
        at: float,
        rid: str,
    ) -> None:
        if len(self._shadow_tasks) >= MAX_SHADOW_IN_FLIGHT:
            if not self._shadow_saturated:
                log.warning(
                    "%d mirrored calls in flight: not mirroring until some finish", MAX_SHADOW_IN_FLIGHT
                )
            self._shadow_saturated = True
            return
        self._shadow_saturated = False
        task = asyncio.get_running_loop().create_task(
            self._shadow(routing, shadow_version, primary_version, payload, primary, pseudonym, at, rid)
        )
        # The loop keeps only weak references to tasks: hold each until it is done.
        self._shadow_tasks.add(task)
        task.add_done_callback(self._shadow_tasks.discard)

    async def _shadow(
        self,
        routing: _Routing,
        shadow_version: str,
        primary_version: str,
        payload: dict[str, Any],
        primary: asyncio.Future[tuple[Answer, float] | None],
        pseudonym: str | None,
        at: float,
        rid: str,
    ) -> None:
        try:
            started = time.perf_counter()
            try:
                answer = await asyncio.wait_for(
                    self._call_version(routing, shadow_version, payload, rid), SHADOW_TIMEOUT_S
                )
            except TimeoutError:
                answer = error(
                    ErrorCode.VERSION_UNAVAILABLE, f"model version {shadow_version} did not answer in time"
                )
            shadow_ms = (time.perf_counter() - started) * 1000
            judged = self._warm(shadow_version, answer.judged_ms(shadow_ms), shadow=True)
            self._pending.observe(shadow_version, answer.status, judged, shadow=True)
            outcome = await primary
            if outcome is None or outcome[0].status != 200:
                # The caller got no prediction to compare with: counted as shadow traffic, not as a pair.
                return
            returned, primary_ms = outcome
            agree = answers_agree(returned.status, returned.body, answer.status, answer.body)
            self._pending.compare(shadow_version, agree)
            self._pending_pairs.append(
                ShadowPair(
                    at=at,
                    primary_version=primary_version,
                    shadow_version=shadow_version,
                    agree=agree,
                    primary=returned.body.get("predictions"),
                    shadow=answer.body.get("predictions") if answer.status == 200 else answer.body,
                    primary_ms=primary_ms,
                    shadow_ms=shadow_ms,
                    shadow_status=answer.status,
                    sticky_key_hash=pseudonym,
                )
            )
            del self._pending_pairs[:-PAIR_LOG_SIZE]
        except Exception:
            # Measurement only: whatever goes wrong here has already missed the caller's answer.
            log.exception("recording a mirrored call to version %s failed", shadow_version)

    # ------------------------------------------------------------------------------------- measurements

    def _start_flushing(self) -> None:
        # Started here, not in __init__: the replica's event loop is only known to be running inside a call.
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_loop())

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            await self._flush()

    async def _flush(self) -> None:
        """Send the pending delta to the recorder; on failure keep it for the next try. Never raises.

        The lock makes a stats read wait for a flush under way, so that it sees this replica's figures.
        """
        async with self._flush_lock:
            self._capture.count_into(self._pending)
            self._local.count_into(self._pending)
            if self._pending.is_empty() and not self._pending_pairs:
                return
            delta, pairs = self._pending, self._pending_pairs
            self._pending, self._pending_pairs = Counts(), []
            try:
                await asyncio.wait_for(self._recorder.record.remote(delta, pairs), RECORDER_TIMEOUT_S)
            except Exception as exc:  # noqa: BLE001 - measurements must never fail a request
                # Kept rather than dropped: a recorder that timed out after all may count it twice, which
                # skews a window less than losing every figure of a recorder restart would.
                log.warning("could not reach the recorder, keeping the figures for the next flush: %s", exc)
                delta.add(self._pending)
                self._pending = delta
                self._pending_pairs = (pairs + self._pending_pairs)[-PAIR_LOG_SIZE:]

    # --------------------------------------------------------------------------------------------- reads

    async def _get(self, path: str, limit_text: str | None, rid: str) -> JSONResponse:
        if path == STATS_PATH:
            return await self._read(rid, "stats")
        if path == SHADOW_PATH:
            limit = parse_limit(limit_text)
            if isinstance(limit, Answer):
                return respond(limit, rid)
            return await self._read(rid, "shadow_log", limit)
        if path.startswith("/-/"):
            return respond(
                error(ErrorCode.NOT_FOUND, f"no such path: {path}", {"paths": [STATS_PATH, SHADOW_PATH]}), rid
            )
        config = self._routing.config
        return JSONResponse(
            {
                "deployment": self.deployment,
                "model": self.model_name,
                "versions": sorted(config.versions),
                "weights": config.weights,
                "shadow": None if config.shadow is None else config.shadow.model_dump(mode="json"),
                "stickiness": (
                    None
                    if config.stickiness is None
                    else config.stickiness.model_dump(mode="json", by_alias=True, exclude_none=True)
                ),
            }
        )

    async def _read(self, rid: str, method: str, *args: Any) -> JSONResponse:
        # This replica's own figures first, so that a read right after a request sees it.
        await self._flush()
        try:
            body: dict[str, Any] = await asyncio.wait_for(
                getattr(self._recorder, method).remote(*args), RECORDER_TIMEOUT_S
            )
        except Exception as exc:  # noqa: BLE001 - the recorder may be restarting; say so, do not crash
            log.warning("request %s: the recorder could not answer: %s: %s", rid, type(exc).__name__, exc)
            return respond(
                error(ErrorCode.STATS_UNAVAILABLE, "traffic figures are unavailable; retry shortly"), rid
            )
        return JSONResponse(body)


def _replica_id() -> str:
    try:
        return str(serve.get_replica_context().replica_id.unique_id)
    except Exception:  # noqa: BLE001 - outside a replica (tests): any unique name will do
        return uuid.uuid4().hex[:12]


def build_version(args: dict[str, Any]) -> Application:
    """Entry point of a version application (`VERSION_IMPORT_PATH`)."""
    parsed = VersionArgs.model_validate(args)
    deployment = ModelVersion.options(name=version_deployment_name(parsed.version))  # type: ignore[attr-defined]
    app: Application = deployment.bind(parsed.model_name, parsed.version, parsed.model_uri)
    return app


def build_router(args: dict[str, Any]) -> Application:
    """Entry point of a router application (`ROUTER_IMPORT_PATH`)."""
    parsed = RouterArgs.model_validate(args)
    recorder = Recorder.bind()  # type: ignore[attr-defined]
    app: Application = Router.bind(parsed.deployment, parsed.model_name, recorder)  # type: ignore[attr-defined]
    return app
