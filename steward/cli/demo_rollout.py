"""The second half of `make demo`: a canary promoted under load, then a broken version rolled back."""

from __future__ import annotations

import random
import threading
from collections import Counter
from datetime import UTC, datetime
from types import TracebackType

import httpx
from rich.console import Console
from rich.live import Live

from steward.cli.rollout_view import rollout_view
from steward.dev.credit_model import FEATURES, SENSITIVE, applicants, register, register_faulty
from steward.dev.stack import Stack
from steward.dev.store import LocalStore, StoredObject

MODEL = "credit-risk"


class Traffic:
    """Steady customer traffic for the rollout to measure: a few threads, each customer sticky by id."""

    def __init__(self, url: str, workers: int = 3) -> None:
        self.url = url
        self.answers: Counter[tuple[str, int]] = Counter()
        self._lock = threading.Lock()
        self._records = applicants(200, seed=77)[FEATURES + SENSITIVE].to_dict(orient="records")
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(workers)]

    def _run(self, seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(timeout=30) as http:
            while not self._stop.is_set():
                headers = {"X-Customer-Id": f"customer-{rng.randrange(500)}"}
                try:
                    response = http.post(
                        self.url, json={"dataframe_records": [rng.choice(self._records)]}, headers=headers
                    )
                    key = (response.headers.get("X-Model-Version", "?"), response.status_code)
                except httpx.HTTPError:
                    key = ("?", 0)
                with self._lock:
                    self.answers[key] += 1
                self._stop.wait(0.02)

    def __enter__(self) -> Traffic:
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


def watch_rollout(
    store: LocalStore, namespace: str, name: str, rollouts_before: int, console: Console, timeout_s: float
) -> StoredObject:
    """Show the rollout live until it has ended; returns the object with its history entry."""
    deadline = datetime.now(UTC).timestamp() + timeout_s
    with Live(console=console, refresh_per_second=2, transient=False) as live:
        while datetime.now(UTC).timestamp() < deadline:
            obj = store.get(namespace, name)
            if obj is not None:
                live.update(rollout_view(obj.resource(), datetime.now(UTC)))
                if len(obj.status.rollout_history) > rollouts_before and obj.status.rollout is None:
                    return obj
            threading.Event().wait(1.0)
    raise SystemExit(f"the rollout of {namespace}/{name} did not finish within {timeout_s:.0f}s")


def promote_and_break(stack: Stack, store: LocalStore, namespace: str, name: str, console: Console) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(stack.tracking_uri)
    obj = store.get(namespace, name)
    assert obj is not None and obj.status.endpoint
    endpoint = obj.status.endpoint
    with Traffic(endpoint) as traffic:
        with console.status("training a retrained version on fresh applicants..."):
            good = register(stack.tracking_uri, MODEL, n=4000, seed=8)
        before = len(obj.status.rollout_history)
        client.set_registered_model_alias(MODEL, "champion", good)
        console.print(f"\n[bold]1. Canary[/]: registered version {good} and moved @champion to it")
        obj = watch_rollout(store, namespace, name, before, console, timeout_s=300)
        console.print(f"\n   traffic answered meanwhile (version, HTTP status: count): {traffic.summary()}")

        with console.status("registering a version that fails on 30% of its inputs..."):
            broken = register_faulty(stack.tracking_uri, MODEL, error_share=0.3, n=2000, seed=9)
        before = len(obj.status.rollout_history)
        client.set_registered_model_alias(MODEL, "champion", broken)
        console.print(
            f"\n[bold]2. A bad version[/]: moved @champion to version {broken}, which errors on 30%"
        )
        obj = watch_rollout(store, namespace, name, before, console, timeout_s=300)
        console.print(f"\n   traffic answered meanwhile (version, HTTP status: count): {traffic.summary()}")
    # The alias still names the version that failed; Steward will not retry it until the alias moves.
    stable = obj.status.stable.version if obj.status.stable else good
    client.set_registered_model_alias(MODEL, "champion", stable)
    console.print(f"   moved @champion back to version {stable}, which kept serving throughout")
