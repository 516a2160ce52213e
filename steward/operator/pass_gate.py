"""How many reconcile passes run at once, and which goes next: one answering a person before the routine ones.

Each pass's blocking work (HTTP to Ray and MLflow, parsing, decide) runs on a thread. Without a gate, every
object due at once queued on the thread pool in the order it woke, and a spec change waited behind hundreds
of routine passes that had nothing to do. The gate admits a bounded number; among those waiting, urgent
passes go first, and each kind in the order it arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections.abc import AsyncIterator


class PassGate:
    def __init__(self, slots: int) -> None:
        if slots < 1:
            raise ValueError("a pass gate needs at least one slot")
        self.free = slots
        # (0 urgent / 1 routine, arrival, admission): a heap, so the next to admit is its head.
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._arrivals = itertools.count()

    @property
    def waiting(self) -> int:
        return sum(1 for *_, admitted in self._waiting if not admitted.done())

    @contextlib.asynccontextmanager
    async def slot(self, urgent: bool) -> AsyncIterator[None]:
        if self.free > 0 and not self.waiting:
            self.free -= 1
        else:
            admitted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            heapq.heappush(self._waiting, (0 if urgent else 1, next(self._arrivals), admitted))
            try:
                await admitted
            except asyncio.CancelledError:
                if admitted.done() and not admitted.cancelled():
                    self._release()  # admitted, then cancelled before it ran: the slot goes on
                raise
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        while self._waiting:
            *_, admitted = heapq.heappop(self._waiting)
            if not admitted.done():  # a waiter cancelled meanwhile is skipped
                admitted.set_result(None)
                return
        self.free += 1
