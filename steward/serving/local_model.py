"""A model loaded for scoring, and the stable version's model kept inside the router replica.

Every hop between Serve replicas costs a third of the throughput on two cores (benchmarks/serving_fair.py), so
the router answers the stable version's traffic itself: it loads the model named in its config
(`RouterConfig.in_router`) in a background thread, off the request path (MLflow's loaders block for
seconds), and swaps it in as a whole once it is loaded. The operator names stable there whenever it takes
live traffic and nothing is mirrored, a canary's steps included
(steward.operator.serve_config.in_router_model). Until the model is loaded, while a failed load waits for its
retry, and for every other version (the canary and the shadow stay isolated in their own applications) the
router calls the version's application through its handle, as it always did; the stable version's
application stays deployed for that, and as the rollback target. The in-router path never makes an answer
worse: a call that fails inside it goes to the handle.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import anyio.to_thread
from mlflow.pyfunc import PyFuncModel

from steward.api.serve_app import InRouterModel
from steward.serving.scoring import Answer, score
from steward.serving.traffic import Counts, InRouterCounts

log = logging.getLogger(__name__)

# A registry or store that is down at start-up is usually back within minutes; until it is, stable traffic
# takes the handle. The last delay repeats for as long as the version is wanted.
RETRY_DELAYS_S: tuple[float, ...] = (5.0, 30.0, 120.0, 300.0)
MAX_ERROR_CHARS = 500

# A small request to a model that answers those within INLINE_MAX_MS of CPU is scored on the router's event
# loop: handing a call to a worker thread and back cost about 1.3 ms of CPU a request on two cores, more than
# such a model holds the loop (benchmarks/serving_fair.py). Larger bodies and slower models keep the worker
# thread, so that other requests, mirrored calls and the figures' flush are not held up behind them.
INLINE_MAX_MS = 5.0
INLINE_MAX_BYTES = 16_384
# An inline call whose wall time exceeds its CPU time by more than this waited for something (I/O, a lock, the
# GIL behind another thread), and the loop waited with it: the model goes to the worker thread until the
# largest recent wait has faded below it (by WAIT_FADE a call there, where waits cannot be told apart from
# the GIL's), then is tried on the loop again. A model that waits on every call is thus on the loop for about
# one call in 35; one that waited once behind the capture writer's flush comes back after as many.
INLINE_WAIT_MS = 50.0
WAIT_FADE = 0.98
PACE_WEIGHT = 0.1  # of the newest call in the moving average


class Pace:
    """How much CPU a model spends answering a small request (a moving average of the scoring thread's CPU
    time) and how long it recently kept the loop waiting. CPU, not wall time: under load a call's wall time
    also counts waiting for a core or, in a worker thread, for the GIL, and a model judged on that would
    stay in the costlier worker thread just when the router is busiest (seen in the fair benchmark: p50
    88 ms at 80% load for one arm, 17 ms for another running the same path). Unknown until measured: a
    model is scored in a thread until then."""

    def __init__(self) -> None:
        self.ms: float | None = None
        self.wait_ms = 0.0

    def add(self, cpu_ms: float, inline_wall_ms: float | None = None) -> None:
        """`inline_wall_ms`: the wall time of a call made on the loop, where waiting shows."""
        faded = self.wait_ms * WAIT_FADE
        self.wait_ms = faded if inline_wall_ms is None else max(inline_wall_ms - cpu_ms, faded)
        # Races between worker threads lose an update at worst: a float assignment is atomic.
        self.ms = cpu_ms if self.ms is None else self.ms + PACE_WEIGHT * (cpu_ms - self.ms)

    def is_inline(self, size: int) -> bool:
        fast = self.ms is not None and self.ms <= INLINE_MAX_MS
        return fast and self.wait_ms <= INLINE_WAIT_MS and size <= INLINE_MAX_BYTES


class LoadedModel:
    """One version's model, loaded and warmed up: what a version replica and the router score with, so that
    both give the same answers, input validation and errors (steward.serving.scoring)."""

    def __init__(self, model_name: str, version: str, model: PyFuncModel) -> None:
        self.model_name = model_name
        self.version = version
        self.model = model
        self.pace = Pace()

    @classmethod
    def load(cls, model_name: str, version: str, model_uri: str) -> LoadedModel:
        """Raises whatever MLflow raises when the model cannot be loaded."""
        import mlflow.pyfunc  # imported here: only the processes that serve need MLflow's model loaders

        loaded = cls(model_name, version, mlflow.pyfunc.load_model(model_uri))
        loaded.warm_up()
        return loaded

    def warm_up(self) -> None:
        """Score the model's logged input example once before taking traffic, so that the first callers do
        not pay for lazy imports and caches. A model without one, or one that fails on it, still serves: its
        live answers are what the rollout judges."""
        example = self.model.input_example
        if example is None:
            return
        try:
            self.model.predict(example)
            # Timed once warm, as a first measure of its pace; live traffic refines it.
            started = time.thread_time()
            self.model.predict(example)
            self.pace.add((time.thread_time() - started) * 1000)
        except Exception as exc:  # noqa: BLE001 - judged on live traffic, not on its example
            log.warning("version %s: warm-up on the logged input example failed: %s", self.version, exc)

    def predict(self, payload: dict[str, Any], request_id: str = "", with_proba: bool = False) -> Answer:
        started = time.perf_counter()
        answer = score(self.model, payload, request_id, with_proba)
        if answer.status == 200:
            answer.body["model"] = {"name": self.model_name, "version": self.version}
        return replace(answer, model_ms=(time.perf_counter() - started) * 1000)

    def paced_predict(
        self, payload: dict[str, Any], request_id: str, with_proba: bool, size: int, inline: bool = False
    ) -> Answer:
        """`predict`, counted into the pace when the request is a small one."""
        wall, cpu = time.perf_counter(), time.thread_time()
        answer = self.predict(payload, request_id, with_proba)
        if size <= INLINE_MAX_BYTES:
            cpu_ms = (time.thread_time() - cpu) * 1000
            wall_ms = (time.perf_counter() - wall) * 1000
            self.pace.add(cpu_ms, wall_ms if inline else None)
        return answer


Loader = Callable[[str, str, str], LoadedModel]  # (model name, version, model URI) -> loaded model


class LocalModel:
    """The router replica's copy of the stable version's model, and the figures of its path.

    `want` is called on reconfigure; `serving` and `answer` on the request path, which reads the current
    model in one attribute read, so a request sees either the old state or the new one, never half a swap.
    """

    def __init__(
        self,
        model_name: str,
        loader: Loader | None = None,
        retry_delays_s: Sequence[float] = RETRY_DELAYS_S,
    ) -> None:
        self._model_name = model_name
        # Looked up here, not bound as a default: tests replace LoadedModel.load.
        self._loader = loader or LoadedModel.load
        self._retry_delays_s = tuple(retry_delays_s) or RETRY_DELAYS_S
        # Guards what the loading thread and the event loop both touch: the wanted model and the counts.
        self._lock = threading.Lock()
        self._wanted: InRouterModel | None = None
        self._cancel: threading.Event | None = None
        # Only ever the wanted version's model, or None.
        self._current: LoadedModel | None = None
        self._counts = InRouterCounts()

    # ------------------------------------------------------------------------------------------ config

    def want(self, wanted: InRouterModel | None) -> None:
        """Serve `wanted` in the router from when it is loaded. The model of a version no longer wanted is
        released at once: its traffic goes to the handle, and calls under way keep their own reference."""
        with self._lock:
            if wanted == self._wanted:
                return
            self._wanted = wanted
            self._current = None
            if self._cancel is not None:
                self._cancel.set()
            self._cancel = None if wanted is None else threading.Event()
            cancel = self._cancel
        if wanted is None or cancel is None:
            return
        # A daemon thread: a load in progress must not hold up the replica's shutdown.
        thread = threading.Thread(
            target=self._load, args=(wanted, cancel), name=f"steward-load-v{wanted.version}", daemon=True
        )
        thread.start()

    def _load(self, wanted: InRouterModel, cancel: threading.Event) -> None:
        attempt = 0
        while not cancel.is_set():
            try:
                loaded = self._loader(self._model_name, wanted.version, wanted.model_uri)
            except Exception as exc:  # noqa: BLE001 - logged, counted in the stats, retried; traffic takes the handle
                delay = self._retry_delays_s[min(attempt, len(self._retry_delays_s) - 1)]
                attempt += 1
                message = f"version {wanted.version} ({wanted.model_uri}): {type(exc).__name__}: {exc}"
                log.warning(
                    "could not load %s in the router (its application answers meanwhile); retry in %.0f s",
                    message,
                    delay,
                )
                with self._lock:
                    self._counts.load_failures += 1
                    self._counts.last_error = message[:MAX_ERROR_CHARS]
                cancel.wait(delay)
                continue
            with self._lock:
                if cancel.is_set():
                    # Wanted no more while it loaded: dropped here, never served.
                    return
                self._current = loaded
                self._counts.loads += 1
            log.info("version %s loaded in the router: it answers its traffic without a hop", wanted.version)
            return

    # ---------------------------------------------------------------------------------------- requests

    def serving(self, version: str) -> LoadedModel | None:
        """The loaded model if it is `version`'s, else None (the caller goes through the handle)."""
        current = self._current
        return current if current is not None and current.version == version else None

    async def answer(
        self,
        loaded: LoadedModel,
        payload: dict[str, Any],
        request_id: str,
        with_proba: bool,
        size: int,
    ) -> Answer | None:
        """The in-router answer. Scored on the event loop when the model is fast and the body (`size`
        bytes) small (see INLINE_MAX_MS); otherwise in a worker thread, as a version replica's sync
        `predict` is (Serve runs those with anyio.to_thread), so that a slow model does not stall the loop,
        where other requests, mirrored calls and the figures' flush run. None if the call itself failed (not
        the model on this input: that is an answer), so that the caller goes through the handle instead."""
        try:
            on_loop = loaded.pace.is_inline(size)
            if on_loop:
                answer = loaded.paced_predict(payload, request_id, with_proba, size, inline=True)
            else:
                answer = await anyio.to_thread.run_sync(
                    loaded.paced_predict, payload, request_id, with_proba, size
                )
        except Exception:
            log.exception(
                "request %s: the in-router model failed; asking version %s's application",
                request_id,
                loaded.version,
            )
            with self._lock:
                self._counts.fallbacks += 1
            return None
        with self._lock:
            self._counts.answered[loaded.version] = self._counts.answered.get(loaded.version, 0) + 1
            self._counts.on_loop += on_loop
        return answer

    # ------------------------------------------------------------------------------------- measurements

    def count_into(self, pending: Counts) -> None:
        with self._lock:
            delta, self._counts = self._counts, InRouterCounts()
        # Nothing new, nothing sent: an idle router makes no call to the recorder.
        if delta.is_empty():
            return
        if pending.in_router is None:
            pending.in_router = InRouterCounts()
        pending.in_router.add(delta)
