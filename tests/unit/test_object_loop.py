"""The operator's per-object reconcile loop: pacing, backoff with jitter, and never deciding from a body older
than the loop's own last status write (driven with plain fakes, no Kopf)."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Mapping
from typing import Any

import pytest

from steward.operator.config import OperatorConfig
from steward.operator.core import retry_delay_s
from steward.operator.object_loop import ObjectState, PassResult, object_state, run, run_pass
from steward.operator.pacing import Pace, Pacer, inputs_digest, next_pass

CONFIG = OperatorConfig(resync_interval_s=15.0, retry_max_delay_s=60.0, rollout_tick_s=2.0)
COMMAND = "steward.io/rollout-command"


def body(
    version: str = "1", status: dict[str, Any] | None = None, command: str | None = None
) -> dict[str, Any]:
    annotations = {COMMAND: command} if command else {}
    return {
        "metadata": {"name": "credit", "namespace": "risk", "generation": 1, "annotations": annotations},
        "spec": {"model": {"name": "m", "version": version}},
        "status": status or {},
    }


class FakeApi:
    """The API server: holds the object as it is now; the watch stream (the test's `live`) may lag behind."""

    def __init__(self, stored: dict[str, Any]) -> None:
        self.stored = stored
        self.reads = 0
        self.writes: list[Mapping[str, Any]] = []

    async def read(self) -> Mapping[str, Any] | None:
        self.reads += 1
        return copy.deepcopy(self.stored)

    async def write_status(self, status: Mapping[str, Any]) -> Mapping[str, Any] | None:
        self.writes.append(status)
        merged = {**self.stored["status"], **status}
        self.stored["status"] = {k: v for k, v in merged.items() if v is not None}
        return copy.deepcopy(self.stored["status"])


class CommandHandler:
    """A decide() stand-in with the property that matters: a command is applied once per status that has
    not handled it yet, so deciding from an older status applies it again."""

    def __init__(self, retry: bool = False, requeue_after_s: float | None = 2.0) -> None:
        self.applied: list[str] = []
        self.seen: list[dict[str, Any]] = []
        self.retry, self.requeue_after_s = retry, requeue_after_s

    async def __call__(self, snapshot: dict[str, Any], changed: bool) -> PassResult:
        self.seen.append(snapshot)
        status = dict(snapshot.get("status") or {})
        status.setdefault("phase", "Failed" if self.retry else "Ready")
        command = snapshot["metadata"]["annotations"].get(COMMAND)
        if command and status.get("handledCommand") != command:
            self.applied.append(command)
            status["handledCommand"] = command
            status["weight"] = status.get("weight", 0) + 50
        return PassResult(status, self.retry, self.requeue_after_s)


# ---------------------------------------------------------------------------------------------- backoff
def test_retry_backoff_grows_caps_and_is_jittered():
    assert [retry_delay_s(a, 60, draw=1.0) for a in range(8)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert [retry_delay_s(a, 60, draw=0.5) for a in range(8)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    assert retry_delay_s(3, 60, draw=0.0) == 0.0
    # Full jitter: many objects failing on one outage come back spread over the whole window.
    spread = {retry_delay_s(5, 60, draw=d / 10) for d in range(11)}
    assert len(spread) == 11 and min(spread) == 0 and max(spread) == 32


@pytest.mark.parametrize(
    ("retry", "requeue", "attempts", "draw", "expected"),
    [
        (False, None, 0, 0.5, Pace(15.0, 0)),  # nothing to do: the resync interval (mid-spread)
        (False, 2.0, 0, 0.7, Pace(2.0, 0)),  # a rollout's tick
        (False, 2.0, 5, 0.7, Pace(2.0, 0)),  # a success resets the backoff
        (True, None, 0, 1.0, Pace(1.0, 1)),
        (True, 2.0, 3, 1.0, Pace(8.0, 4)),  # a retry backs off, even during a rollout
        (True, None, 9, 1.0, Pace(60.0, 10)),  # capped
        (True, None, 9, 0.25, Pace(15.0, 10)),  # jittered
    ],
)
def test_next_pass(retry, requeue, attempts, draw, expected):
    assert (
        next_pass(retry=retry, requeue_after_s=requeue, attempts=attempts, config=CONFIG, draw=draw)
        == expected
    )


def test_changed_inputs_are_acted_on_at_once_whatever_the_backoff():
    pacer = Pacer()
    pacer.passed(inputs_digest(body("1")), Pace(60.0, 7), now=100.0)
    assert pacer.wait_s(body("1"), now=110.0) == 50.0
    assert pacer.wait_s(body("1", status={"phase": "Ready"}), now=110.0) == 50.0  # our own write
    assert pacer.wait_s(body("2"), now=110.0) == 0.0  # a spec change
    assert pacer.wait_s(body("1", command='{"id":"c1"}'), now=110.0) == 0.0  # a rollout command
    retrain = body("1")
    retrain["metadata"]["annotations"]["steward.io/retraining-command"] = '{"id":"r1","command":"approve"}'
    assert pacer.wait_s(retrain, now=110.0) == 0.0  # a retraining command (approve) too
    assert pacer.wait_s(body("1"), now=170.0) == 0.0


# ------------------------------------------------------------------------------------ fresh bodies only
async def test_a_command_is_never_applied_twice_from_a_body_older_than_our_write():
    stale = body(command="promote-1")
    api = FakeApi(copy.deepcopy(stale))
    work = CommandHandler()
    state = ObjectState()

    await run_pass(state, stale, api, work, CONFIG, now=0.0, draw=1.0)
    assert work.applied == ["promote-1"] and api.stored["status"]["handledCommand"] == "promote-1"

    # The watch stream has not delivered our write yet, for as long as it likes (no time-based give-up):
    # the pass reads the object afresh instead of deciding again from the old status.
    await run_pass(state, stale, api, work, CONFIG, now=3600.0, draw=1.0)
    assert work.applied == ["promote-1"]
    assert api.reads == 1 and work.seen[-1]["status"]["handledCommand"] == "promote-1"


async def test_a_caught_up_body_is_used_as_it_is_and_an_unchanged_status_is_not_rewritten():
    live = body()
    api = FakeApi(copy.deepcopy(live))
    state = ObjectState()
    await run_pass(state, live, api, CommandHandler(), CONFIG, now=0.0, draw=1.0)
    assert len(api.writes) == 1
    live["status"] = copy.deepcopy(api.stored["status"])  # the stream delivers our write
    await run_pass(state, live, api, CommandHandler(), CONFIG, now=5.0, draw=1.0)
    assert api.reads == 0 and len(api.writes) == 1


async def test_a_status_someone_else_wrote_after_ours_is_read_not_waited_for():
    live = body()
    api = FakeApi(copy.deepcopy(live))
    state = ObjectState()
    await run_pass(state, live, api, CommandHandler(), CONFIG, now=0.0, draw=1.0)
    api.stored["status"]["phase"] = "Edited"
    live["status"] = copy.deepcopy(api.stored["status"])
    work = CommandHandler()
    await run_pass(state, live, api, work, CONFIG, now=5.0, draw=1.0)
    assert work.seen[-1]["status"]["phase"] == "Edited"


async def test_a_failed_write_makes_the_next_pass_read_afresh():
    live = body(command="abort-1")
    api = FakeApi(copy.deepcopy(live))

    async def lost(status: Mapping[str, Any]) -> Mapping[str, Any] | None:
        api.stored["status"] = {**api.stored["status"], **status}  # applied, but the answer was lost
        raise ConnectionError("reset by peer")

    api.write_status = lost  # type: ignore[method-assign]
    state = ObjectState()
    work = CommandHandler()
    with pytest.raises(ConnectionError):
        await run_pass(state, live, api, work, CONFIG, now=0.0, draw=1.0)
    await run_pass(state, live, api, work, CONFIG, now=1.0, draw=1.0)
    assert work.applied == ["abort-1"] and api.reads == 1


# -------------------------------------------------------------------------------------------- backoff
async def test_an_invalid_spec_backs_off_until_the_spec_changes():
    live = body()
    api = FakeApi(copy.deepcopy(live))
    state = ObjectState()
    invalid = CommandHandler(retry=True)
    waits = []
    now = 0.0
    for _ in range(6):
        await run_pass(state, live, api, invalid, CONFIG, now=now, draw=1.0)
        wait = state.pacer.wait_s(live, now)
        waits.append(wait)
        now += wait
    assert waits == [1, 2, 4, 8, 16, 32]
    assert len(api.writes) == 1  # the same invalid status is written once, not every pass
    live["spec"]["model"]["version"] = "2"
    assert state.pacer.wait_s(live, now) == 0.0


# ------------------------------------------------------------------------------------ the loop itself
class Stop:
    def __init__(self) -> None:
        self.event = asyncio.Event()

    def __bool__(self) -> bool:
        return self.event.is_set()

    async def wait(self) -> object:
        return await self.event.wait()


async def wait_for(check: Any, timeout_s: float = 2.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_the_loop_passes_when_woken_by_a_change_and_sleeps_otherwise():
    live = body()
    api = FakeApi(copy.deepcopy(live))
    memo: dict[str, Any] = {}
    state = object_state(memo)
    assert object_state(memo) is state  # one state per object, in its memo
    work = CommandHandler(requeue_after_s=3600.0)
    stop = Stop()
    task = asyncio.create_task(run(state, live, api, work, CONFIG, stop, lambda: 0.0, lambda: 1.0))
    await wait_for(lambda: len(work.seen) == 1)  # the object appeared: one pass at once

    live["status"] = copy.deepcopy(api.stored["status"])  # our own write comes back: nothing is due
    state.wake.set()
    await asyncio.sleep(0.05)
    assert len(work.seen) == 1

    live["metadata"]["annotations"][COMMAND] = "pause-1"  # a person's command wakes it
    api.stored["metadata"]["annotations"][COMMAND] = "pause-1"
    state.wake.set()
    await wait_for(lambda: work.applied == ["pause-1"])

    stop.event.set()
    await asyncio.wait_for(task, 1.0)
    assert len(work.seen) == 2


async def test_the_loop_survives_a_failing_pass_and_backs_off():
    live = body()
    api = FakeApi(copy.deepcopy(live))
    state = ObjectState()
    calls = []

    async def broken(snapshot: dict[str, Any], changed: bool) -> PassResult:
        calls.append(changed)
        raise RuntimeError("boom")

    stop = Stop()
    task = asyncio.create_task(run(state, live, api, broken, CONFIG, stop, lambda: 0.0, lambda: 1.0))
    await wait_for(lambda: state.pacer.attempts == 1)
    assert state.pacer.due_at == 1.0 and calls == [True]
    stop.event.set()
    await asyncio.wait_for(task, 1.0)
