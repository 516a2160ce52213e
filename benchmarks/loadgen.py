"""A small HTTP/1.1 load generator on asyncio streams: keep-alive connections, 127.0.0.1 only.

Raw streams rather than an HTTP client library: on two cores the generator competes with the server, so it
does as little as it can per request (one prepared request, a header parse). Its own CPU time is measured
with every run (`cpu_s`) so that a report can say what it took from the machine.

- `open_loop`: requests start on a Poisson schedule at a fixed mean rate whether or not earlier ones are done;
  latency counts from the scheduled start, so time spent waiting for a free connection is counted (no
  coordinated omission). Bounded in count and in time: what is not scheduled by `max_s` is reported as
  not sent, and what is not answered `GRACE_S` later as abandoned (an arm that cannot hold the rate shows
  both; their latencies, which would be the longest, are missing from its percentiles).
- `closed_loop`: `concurrency` connections each send the next request as soon as the last one is answered,
  for `duration_s`: the throughput the server sustains.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

MAX_CONNECTIONS = 64
GRACE_S = 10.0
READ_TIMEOUT_S = 30.0


@dataclass
class Run:
    latencies_ms: list[float] = field(default_factory=list)
    errors: dict[int, int] = field(default_factory=dict)  # status (0: transport error) -> count
    not_sent: int = 0
    abandoned: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0

    @property
    def answered(self) -> int:
        return len(self.latencies_ms)

    def extend(self, other: Run) -> None:
        self.latencies_ms += other.latencies_ms
        for status, n in other.errors.items():
            self.errors[status] = self.errors.get(status, 0) + n
        self.not_sent += other.not_sent
        self.abandoned += other.abandoned
        self.wall_s += other.wall_s
        self.cpu_s += other.cpu_s


class Target:
    def __init__(self, url: str, body: bytes) -> None:
        parts = urlsplit(url)
        if parts.hostname != "127.0.0.1" or parts.port is None:
            raise ValueError(f"load is sent to 127.0.0.1:PORT only, not {url}")
        self.port = parts.port
        self.request = (
            f"POST {parts.path or '/'} HTTP/1.1\r\nHost: 127.0.0.1:{parts.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, target: Target) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", target.port)
        return cls(reader, writer)

    async def post(self, target: Target) -> int:
        """Send the prepared request and read the whole answer; returns its status."""
        self.writer.write(target.request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        pairs = (line.partition(":") for line in lines[1:] if line)
        headers = {k.strip().lower(): v.strip() for k, _, v in pairs}
        if "content-length" in headers:
            await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                await self.reader.readexactly(size + 2)
                if size == 0:
                    break
        else:
            raise RuntimeError(f"an answer with neither Content-Length nor chunks: {lines[:3]}")
        if headers.get("connection", "").lower() == "close":
            raise ConnectionResetError("the server closed the connection")
        return status

    def close(self) -> None:
        self.writer.close()


class Pool:
    def __init__(self, target: Target, size: int) -> None:
        self.target, self.size = target, size
        self.idle: asyncio.Queue[Connection] = asyncio.Queue()
        self.opened = 0

    async def take(self) -> Connection:
        if self.idle.empty() and self.opened < self.size:
            self.opened += 1
            try:
                return await Connection.open(self.target)
            except OSError:
                self.opened -= 1
                raise
        return await self.idle.get()

    def give(self, conn: Connection | None) -> None:
        if conn is None:  # broken: a new one may be opened in its place
            self.opened -= 1
        else:
            self.idle.put_nowait(conn)

    def close(self) -> None:
        while not self.idle.empty():
            self.idle.get_nowait().close()


async def _one(pool: Pool, run: Run, scheduled: float) -> None:
    conn: Connection | None = None
    try:
        conn = await pool.take()
        status = await asyncio.wait_for(conn.post(pool.target), READ_TIMEOUT_S)
    except asyncio.CancelledError:  # abandoned by open_loop: the half-read connection cannot be reused
        if conn is not None:
            conn.close()
        raise
    except (OSError, asyncio.IncompleteReadError, TimeoutError):
        # Counted (status 0) and reported with the arm's figures; the broken connection is replaced.
        if conn is not None:
            conn.close()
        pool.give(None)
        run.errors[0] = run.errors.get(0, 0) + 1
        return
    pool.give(conn)
    if status == 200:
        run.latencies_ms.append((time.perf_counter() - scheduled) * 1000)
    else:
        run.errors[status] = run.errors.get(status, 0) + 1


async def open_loop(target: Target, rate_rps: float, count: int, max_s: float, seed: int = 0) -> Run:
    run, pool, rng = Run(), Pool(target, MAX_CONNECTIONS), random.Random(seed)
    cpu0, start = time.process_time(), time.perf_counter()
    tasks: list[asyncio.Task[None]] = []
    scheduled = start
    for i in range(count):
        scheduled += rng.expovariate(rate_rps)
        if scheduled - start > max_s:
            run.not_sent = count - i
            break
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(_one(pool, run, scheduled)))
    if tasks:
        wait_s = max(0.0, start + max_s - time.perf_counter()) + GRACE_S
        _, pending = await asyncio.wait(tasks, timeout=wait_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        run.abandoned = len(pending)
    run.wall_s, run.cpu_s = time.perf_counter() - start, time.process_time() - cpu0
    pool.close()
    return run


async def closed_loop(target: Target, concurrency: int, duration_s: float) -> Run:
    run, pool = Run(), Pool(target, concurrency)
    cpu0, start = time.process_time(), time.perf_counter()
    end = start + duration_s

    async def worker() -> None:
        while time.perf_counter() < end:
            await _one(pool, run, time.perf_counter())

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    run.wall_s, run.cpu_s = time.perf_counter() - start, time.process_time() - cpu0
    pool.close()
    return run
