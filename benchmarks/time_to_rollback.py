"""Time to rollback on real Ray: from the end of a canary's failing analysis window to the last answer the
canary served, over repeated rollouts of a version that fails 30 % of its inputs.

The local stack (MLflow, Ray, the control loop) serves examples/credit-risk.yaml (10 s windows, 20 % first);
a few client threads post single applicants with sticky customer ids and log every answer's version and time.
Each run registers a new faulty version, moves @champion to it, waits for its rollback, and moves @champion
back. Two figures
per run: from the window's nominal end (its start + interval: includes the loop's tick until it judges) and
from when the loop judged it (`ended_at`). Printed, never asserted.

    uv run --frozen python -m benchmarks.time_to_rollback [--runs 10]
"""

from __future__ import annotations

import argparse
import io
import json
import random
import signal
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import httpx
from rich.console import Console

from benchmarks.serving_stack import free_port
from steward.api.manifests import load_manifests
from steward.api.rollout import Outcome, WindowResult, duration_s
from steward.cli.common import stamped
from steward.cli.demo import EXAMPLE, MODEL, ensure_champion, wait_ready
from steward.dev.credit_model import FEATURES, SENSITIVE, applicants, register_faulty
from steward.dev.stack import Stack
from steward.dev.store import LocalStore, StoredObject
from steward.serving.http_answers import VERSION_HEADER


@dataclass
class AnswerLog:
    """(wall time, version) of every answer, from a few keep-alive client threads."""

    url: str
    workers: int = 3
    answers: list[tuple[float, str]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _run(self, seed: int) -> None:
        rng = random.Random(seed)
        records = applicants(500, seed=seed)[FEATURES + SENSITIVE].to_dict(orient="records")
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set():
                record = rng.choice(records)
                headers = {"X-Customer-Id": f"c{rng.randrange(10_000)}"}
                try:
                    response = client.post(self.url, json={"dataframe_records": [record]}, headers=headers)
                except httpx.HTTPError:
                    continue
                version = response.headers.get(VERSION_HEADER)
                if version:
                    with self._lock:
                        self.answers.append((time.time(), version))

    def __enter__(self) -> AnswerLog:
        self._threads = [
            threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(self.workers)
        ]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def last_answer_of(self, version: str) -> float | None:
        with self._lock:
            times = [t for t, v in self.answers if v == version]
        return max(times) if times else None


def wait_rollout_end(
    store: LocalStore, ns: str, name: str, before: int, timeout_s: float
) -> tuple[StoredObject, WindowResult]:
    """The object once the rollout ended, and the last analysis window it judged (read while it ran: the
    status of an ended rollout need not keep its windows)."""
    deadline = time.monotonic() + timeout_s
    last: WindowResult | None = None
    while time.monotonic() < deadline:
        obj = store.get(ns, name)
        if obj is not None and obj.status.rollout is not None and obj.status.rollout.windows:
            last = obj.status.rollout.windows[-1]
        if obj is not None and len(obj.status.rollout_history) > before:
            if last is None:
                raise SystemExit("the rollout ended before any analysis window was seen in status")
            return obj, last
        time.sleep(0.1)
    raise SystemExit(f"no rollout of {ns}/{name} ended within {timeout_s:.0f}s")


def measure(runs: int, home: Path) -> dict[str, object]:
    from mlflow import MlflowClient

    console = Console(file=io.StringIO())
    stack = Stack(
        home=home,
        mlflow_port=free_port(),
        ray_gcs_port=free_port(),
        ray_dashboard_port=free_port(),
        serve_port=free_port(),
    )
    try:
        stack.up()  # inside: a start-up that fails half-way still stops what it started
        stable = ensure_champion(stack, console)
        store = LocalStore(home)
        (md,) = load_manifests(EXAMPLE)
        store.apply(stamped(md, "benchmark: time to rollback"))
        ns, name = md.metadata.namespace, md.metadata.name
        obj = wait_ready(store, ns, name, console, timeout_s=300)
        interval = duration_s(md.spec.rollout.analysis.interval)
        client = MlflowClient(stack.tracking_uri)
        from_nominal, from_judged, outcomes = [], [], []
        with AnswerLog(str(obj.status.endpoint)) as log:
            for run in range(runs):
                # A new faulty version each run: one that was rolled back is not started again by itself.
                faulty = register_faulty(stack.tracking_uri, MODEL, error_share=0.3, n=2000, seed=9 + run)
                before = len(obj.status.rollout_history)
                client.set_registered_model_alias(MODEL, "champion", faulty)
                obj, window = wait_rollout_end(store, ns, name, before, timeout_s=300)
                outcomes.append(obj.status.rollout_history[-1].outcome.value)
                time.sleep(3)  # answers still in flight when the rollback landed
                nominal = window.started_at + timedelta(seconds=interval)
                judged = window.ended_at
                last = log.last_answer_of(faulty)
                if obj.status.rollout_history[-1].outcome == Outcome.ROLLED_BACK and last is not None:
                    from_nominal.append(last - nominal.timestamp())
                    from_judged.append(last - judged.timestamp())
                print(
                    f"run {run + 1}: {outcomes[-1]}; last canary answer "
                    f"{from_nominal[-1] if from_nominal else float('nan'):+.2f} s after the window's end",
                    flush=True,
                )
                client.set_registered_model_alias(MODEL, "champion", stable)
                time.sleep(2)  # the loop notices the alias back on the serving version
        return {
            "runs": runs,
            "outcomes": outcomes,
            "from_window_end_s": sorted(round(x, 3) for x in from_nominal),
            "from_judged_s": sorted(round(x, 3) for x in from_judged),
            "p50_from_window_end_s": statistics.median(from_nominal) if from_nominal else None,
            "max_from_window_end_s": max(from_nominal) if from_nominal else None,
        }
    finally:
        stack.down()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    # A stopped benchmark still stops the stack it started (the `finally` of `measure`).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryDirectory(prefix="steward-ttr-") as tmp:
        figures = measure(args.runs, Path(tmp))
    print(json.dumps(figures))
    print(
        f"time to rollback over {figures['runs']} runs: from the failing window's end to the canary's last "
        f"answer, p50 {figures['p50_from_window_end_s']} s, max (p99 of {figures['runs']}) "
        f"{figures['max_from_window_end_s']} s"
    )


if __name__ == "__main__":
    main()
