"""One ModelDeployment's reconcile loop: the only path that decides for an object and writes its status.

Kopf runs it as one daemon per object. Change notifications (create, spec change, a rollout command, the
operator's start) only wake it, so two passes never overlap and never decide from different statuses. It
sleeps until the next pass is due or the object changes, then observes, decides, acts and writes status.
No Kopf import here: the handlers module wires it to Kopf, and tests drive it with plain fakes.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from steward.operator.config import OperatorConfig
from steward.operator.pacing import (
    UNKNOWN,
    Pacer,
    inputs_digest,
    is_urgent,
    next_pass,
    without_nulls,
)
from steward.operator.pass_gate import PassGate

log = logging.getLogger(__name__)
MEMO_KEY = "steward_reconcile"


class ObjectApi(Protocol):
    async def read(self) -> Mapping[str, Any] | None:
        """The object as the API server has it now (None: it is gone)."""

    async def write_status(self, status: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """Merge-patch .status; the status the server stored (None: the object is gone)."""


class StopSignal(Protocol):
    def __bool__(self) -> bool: ...

    def wait(self) -> Awaitable[object]: ...


@dataclass(frozen=True)
class PassResult:
    status: dict[str, Any]  # a merge patch for .status
    retry: bool
    requeue_after_s: float | None


# (a snapshot of the body, did its inputs change since the last pass?) -> what to write and when to come back
Work = Callable[[dict[str, Any], bool], Awaitable[PassResult]]


@dataclass
class ObjectState:
    pacer: Pacer = field(default_factory=Pacer)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    # Held for a whole pass: the deletion handler waits for it, so it never overlaps a pass either.
    busy: asyncio.Lock = field(default_factory=asyncio.Lock)


def object_state(memo: MutableMapping[str, Any]) -> ObjectState:
    """This object's state, in Kopf's per-object memo (created by whichever handler sees the object first)."""
    state = memo.get(MEMO_KEY)
    if not isinstance(state, ObjectState):
        state = ObjectState()
        memo[MEMO_KEY] = state
    return state


def merged(old: Any, patch: Any) -> Any:
    """RFC 7386 merge patch."""
    if not isinstance(patch, Mapping):
        return patch
    result = dict(old) if isinstance(old, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merged(result.get(key), value)
    return result


async def run_pass(
    state: ObjectState,
    live: Mapping[str, Any],
    api: ObjectApi,
    work: Work,
    config: OperatorConfig,
    now: float,
    draw: float,
    gate: PassGate | None = None,
) -> None:
    """One observe-decide-act pass from the freshest body, then its status write and the next pass's time."""
    pacer = state.pacer
    async with state.busy:
        inputs = inputs_digest(live)
        result = await _decide_and_write(pacer, live, api, work, gate)
        if result is not None:
            inputs = result[0]
        pace = next_pass(
            retry=result is None or result[1].retry,
            requeue_after_s=None if result is None else result[1].requeue_after_s,
            attempts=pacer.attempts,
            config=config,
            draw=draw,
        )
        pacer.passed(inputs, pace, now)


async def _decide_and_write(
    pacer: Pacer, live: Mapping[str, Any], api: ObjectApi, work: Work, gate: PassGate | None
) -> tuple[str, PassResult] | None:
    """None: the object is gone (Kopf stops this loop soon)."""
    body = await api.read() if pacer.is_behind(live) else live
    if body is None:
        return None
    snapshot = copy.deepcopy(dict(body))
    inputs = inputs_digest(snapshot)
    if gate is None:
        result = await work(snapshot, inputs != pacer.acted_on)
    else:
        async with gate.slot(is_urgent(snapshot, pacer.acted_on)):
            result = await work(snapshot, inputs != pacer.acted_on)
    current = without_nulls(snapshot.get("status") or {})
    if without_nulls(merged(current, result.status)) == current:
        pacer.written = current  # an unchanged status is not re-patched
        return inputs, result
    pacer.written = UNKNOWN  # until the server answers: a lost answer means reading afresh next time
    stored = await api.write_status(result.status)
    if stored is None:
        return None
    pacer.written = without_nulls(stored)
    return inputs, result


async def _sleep(wake: asyncio.Event, stopped: StopSignal, timeout_s: float | None) -> None:
    waiters = [asyncio.ensure_future(wake.wait()), asyncio.ensure_future(stopped.wait())]
    try:
        await asyncio.wait(waiters, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


async def run(
    state: ObjectState,
    live: Mapping[str, Any],
    api: ObjectApi,
    work: Work,
    config: OperatorConfig,
    stopped: StopSignal,
    clock: Callable[[], float],
    draw: Callable[[], float],
    gate: PassGate | None = None,
) -> None:
    """Until stopped (the object is deleted, the operator exits): wait until due or woken, then pass. With
    a gate, the pass's work waits for a slot (an urgent pass before routine ones)."""
    while not stopped:
        state.wake.clear()  # before reading the body: a change from now on wakes the wait below
        if (live.get("metadata") or {}).get("deletionTimestamp"):
            await _sleep(state.wake, stopped, None)  # deletion belongs to the delete handler
            continue
        delay = state.pacer.wait_s(live, clock())
        if delay > 0:
            await _sleep(state.wake, stopped, delay)
            continue
        try:
            await run_pass(state, live, api, work, config, clock(), draw(), gate)
        except Exception:
            # The loop must outlive any one failure: a daemon that exits is never restarted by Kopf.
            log.exception("reconcile pass failed; backing off")
            pace = next_pass(
                retry=True, requeue_after_s=None, attempts=state.pacer.attempts, config=config, draw=draw()
            )
            state.pacer.passed(inputs_digest(live), pace, clock())
