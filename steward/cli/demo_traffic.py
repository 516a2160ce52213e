"""The demo's live client for the monitoring chapters: applicants scored one by one, each request with an id
of its own, so that their true outcomes (known here: the synthetic data has them) can be fed back later."""

from __future__ import annotations

import random
import threading
import uuid
from collections import Counter
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx
import pandas as pd

from steward.api.monitor_results import OutcomeColumn
from steward.api.monitoring import REQUEST_ID_HEADER
from steward.dev.credit_model import FEATURES, SENSITIVE, applicants


@dataclass(frozen=True)
class Applicant:
    customer: str
    record: dict[str, Any]
    defaulted: int


def population(n: int, seed: int, income_factor: float) -> list[Applicant]:
    frame = applicants(n, seed, income_factor=income_factor)
    records = frame[FEATURES + SENSITIVE].to_dict(orient="records")
    # The same customer ids in every population: a customer whose income fell stays on the same version.
    return [
        Applicant(f"customer-{i}", record, int(label))
        for i, (record, label) in enumerate(zip(records, frame["defaulted"], strict=True))
    ]


class LiveClient:
    """A few threads posting one applicant per request; `shift_incomes` changes who applies from now on."""

    def __init__(
        self, url: str, workers: int = 3, size: int = 3000, seed: int = 2027, pause_s: float = 0.15
    ) -> None:
        self.url = url
        # Between a worker's requests: about 15 requests a second in all, a minute's window of ~900 rows,
        # leaving the CPUs to the monitor jobs.
        self.pause_s = pause_s
        self._size, self._seed = size, seed
        self._population = population(size, seed, 1.0)
        self._lock = threading.Lock()
        self._prefix = f"demo-{uuid.uuid4().hex[:8]}"
        self._sent = 0
        # request id -> true outcome, for answered requests whose outcome was not fed back yet
        self._unreported: dict[str, int] = {}
        self.answers: Counter[tuple[str, int]] = Counter()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(workers)]

    def shift_incomes(self, factor: float) -> None:
        shifted = population(self._size, self._seed, factor)
        with self._lock:
            self._population = shifted

    def _next(self, rng: random.Random) -> tuple[str, Applicant]:
        with self._lock:
            self._sent += 1
            return f"{self._prefix}-{self._sent}", rng.choice(self._population)

    def _run(self, worker: int) -> None:
        rng = random.Random(worker)
        with httpx.Client(timeout=30) as http:
            while not self._stop.is_set():
                request_id, who = self._next(rng)
                headers = {REQUEST_ID_HEADER: request_id, "X-Customer-Id": who.customer}
                try:
                    response = http.post(self.url, json={"dataframe_records": [who.record]}, headers=headers)
                    key = (response.headers.get("X-Model-Version", "?"), response.status_code)
                except httpx.HTTPError:
                    key = ("?", 0)
                with self._lock:
                    self.answers[key] += 1
                    if key[1] == 200:
                        self._unreported[request_id] = who.defaulted
                self._stop.wait(self.pause_s)

    def outcomes(self) -> pd.DataFrame:
        """The true outcomes of every answered request not reported before (request_id, label)."""
        with self._lock:
            taken, self._unreported = self._unreported, {}
        return pd.DataFrame(
            {OutcomeColumn.REQUEST_ID: list(taken), OutcomeColumn.LABEL: list(taken.values())}
        )

    def __enter__(self) -> LiveClient:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def summary(self) -> str:
        with self._lock:
            items = sorted(self.answers.items())
        return ", ".join(f"v{version} {status}: {count}" for (version, status), count in items)
