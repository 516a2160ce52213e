"""The local control loop: reconcile the manifests in a folder through the operator's own reconciler.

It plays the part Kubernetes and Kopf play on a cluster: admits manifests (generation, uid), calls the same
`Reconciler` on each, keeps status in the local store, retries temporary problems with the same backoff, and
finalizes resources whose manifest was removed.
"""

from __future__ import annotations

import argparse
import logging
import random
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from steward.api.manifests import ManifestError, load_manifests
from steward.api.model_deployment import ModelDeployment
from steward.dev.store import LocalStore, StoredObject
from steward.operator.actions import EventType
from steward.operator.core import Decision, retry_delay_s
from steward.operator.metrics import METRICS, Metrics
from steward.operator.pacing import next_pass
from steward.operator.reconciler import EventSink, Reconciler

log = logging.getLogger(__name__)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class ControlLoop:
    def __init__(
        self,
        store: LocalStore,
        reconciler: Reconciler,
        clock: Callable[[], datetime] = _utcnow,
        draw: Callable[[], float] = random.random,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        # Set from each pass as the operator's are (served only when `steward dev up --metrics-port` asks).
        self.metrics = metrics
        self.reconciler = reconciler
        self.clock = clock
        # The backoff's jitter: a uniform number in [0, 1] per retry.
        self.draw = draw
        # key -> (when to look again although nothing changed, failed passes in a row), as the operator's
        # per-object loop paces itself (steward.operator.pacing): in memory only.
        self._pace: dict[str, tuple[datetime, int]] = {}

    def _events(self, namespace: str, name: str) -> EventSink:
        def post(type_: EventType, reason: str, message: str) -> None:
            log.info("%s/%s %s %s: %s", namespace, name, type_.value, reason, message)
            self.store.post_event(namespace, name, type_.value, reason, message)

        return post

    def tick(self) -> None:
        """One pass over every manifest and every object whose manifest is gone."""
        now = self.clock()
        present: set[str] = set()
        for path in self.store.manifest_paths():
            try:
                manifests = load_manifests(path)
            except ManifestError as exc:
                # `steward dev apply` validates before writing; only a hand-edited file lands here.
                log.error("skipping %s", exc)
                continue
            for md in manifests:
                present.add(md.key)
                self._reconcile(md, now)
        for obj in self.store.all():
            if f"{obj.namespace}/{obj.name}" not in present:
                self._finalize(obj, now)

    def _due(self, key: str, now: datetime) -> bool:
        due = self._pace.get(key)
        return due is None or now >= due[0]

    def _attempts(self, key: str) -> int:
        return self._pace.get(key, (None, 0))[1]

    def _reconcile(self, manifest: ModelDeployment, now: datetime) -> None:
        obj = self.store.admit(manifest, now)
        key = manifest.key
        changed = obj.generation != (obj.status.observed_generation or 0)
        if not changed and not self._due(key, now):
            return

        def reconcile() -> Decision:
            return self.reconciler.reconcile(obj.resource(), now, self._events(obj.namespace, obj.name))

        decision = reconcile() if self.metrics is None else self.metrics.reconciled(key, reconcile)
        self.store.set_status(obj.namespace, obj.name, decision.status)
        pace = next_pass(
            retry=decision.retry,
            requeue_after_s=decision.requeue_after_s,
            attempts=self._attempts(key),
            config=self.reconciler.config,
            draw=self.draw(),
        )
        self._pace[key] = (now + timedelta(seconds=pace.after_s), pace.attempts)

    def _finalize(self, obj: StoredObject, now: datetime) -> None:
        key = f"{obj.namespace}/{obj.name}"
        if obj.deletion_requested_at is None:
            obj = replace(obj, deletion_requested_at=now.isoformat())
            self.store.put(obj)
        if not self._due(key, now):
            return
        requested = datetime.fromisoformat(obj.deletion_requested_at or now.isoformat())
        decision = self.reconciler.finalize(
            obj.resource(), requested, now, self._events(obj.namespace, obj.name)
        )
        if decision.release_finalizer:
            self.store.forget(obj.namespace, obj.name)
            self._pace.pop(key, None)
            if self.metrics is not None:
                self.metrics.forget(key)
            log.info("%s deleted", key)
        else:
            attempts = self._attempts(key)
            delay_s = retry_delay_s(attempts, 10.0, draw=self.draw())
            self._pace[key] = (now + timedelta(seconds=delay_s), attempts + 1)

    def run(self, interval_s: float, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.tick()
            except Exception:
                log.exception("control loop pass failed; retrying in %.1fs", interval_s)
            stop.wait(interval_s)


def main() -> None:
    from steward.dev.stack import Stack

    parser = argparse.ArgumentParser(
        description="Steward's local control loop (started by `steward dev up`)."
    )
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--interval-s", type=float, default=1.0)
    parser.add_argument("--metrics-port", type=int, default=None, help="Serve /metrics on 127.0.0.1:PORT.")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per poll would drown the decisions
    stack = Stack.load(args.home)
    reconciler = Reconciler(stack.operator_config(), ray_token=stack.ray_token())
    metrics = None
    if args.metrics_port is not None:
        # Like every other port of the local stack: this machine only.
        METRICS.serve(args.metrics_port, addr="127.0.0.1")
        metrics = METRICS
    ControlLoop(LocalStore(args.home), reconciler, metrics=metrics).run(args.interval_s, threading.Event())


if __name__ == "__main__":
    main()
