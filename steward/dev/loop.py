"""The local control loop: reconcile the manifests in a folder through the operator's own reconciler.

It plays the part Kubernetes and Kopf play on a cluster: admits manifests (generation, uid), calls the same
`Reconciler` on each, keeps status in the local store, retries temporary problems with the same backoff, and
finalizes resources whose manifest was removed.
"""

from __future__ import annotations

import argparse
import logging
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from steward.api.manifests import ManifestError, load_manifests
from steward.api.model_deployment import ModelDeployment
from steward.dev.store import LocalStore, StoredObject
from steward.operator.actions import EventType
from steward.operator.core import retry_delay_s
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
    ) -> None:
        self.store = store
        self.reconciler = reconciler
        self.clock = clock
        # key -> (when to try again, attempts so far): backoff for temporary problems, in memory only.
        self._backoff: dict[str, tuple[datetime, int]] = {}
        # key -> when to look again although nothing changed: soon during a rollout, else the resync interval.
        self._next_pass: dict[str, datetime] = {}

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
        """Backoff after a temporary problem; otherwise the resync interval, as Kopf's timer does."""
        if key in self._backoff:
            return now >= self._backoff[key][0]
        due = self._next_pass.get(key)
        return due is None or now >= due

    def _record_outcome(self, key: str, now: datetime, retry: bool, max_delay_s: float) -> None:
        if not retry:
            self._backoff.pop(key, None)
            return
        _, attempts = self._backoff.get(key, (now, 0))
        self._backoff[key] = (now + timedelta(seconds=retry_delay_s(attempts, max_delay_s)), attempts + 1)

    def _reconcile(self, manifest: ModelDeployment, now: datetime) -> None:
        obj = self.store.admit(manifest, now)
        key = manifest.key
        changed = obj.generation != (obj.status.observed_generation or 0)
        if not changed and not self._due(key, now):
            return
        decision = self.reconciler.reconcile(obj.resource(), now, self._events(obj.namespace, obj.name))
        wait_s = decision.requeue_after_s
        if wait_s is None:
            wait_s = self.reconciler.config.resync_interval_s
        self._next_pass[key] = now + timedelta(seconds=wait_s)
        self.store.set_status(obj.namespace, obj.name, decision.status)
        self._record_outcome(key, now, decision.retry, self.reconciler.config.retry_max_delay_s)

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
            self._backoff.pop(key, None)
            self._next_pass.pop(key, None)
            log.info("%s deleted", key)
        else:
            self._record_outcome(key, now, True, 10.0)

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
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per poll would drown the decisions
    stack = Stack.load(args.home)
    reconciler = Reconciler(stack.operator_config(), ray_token=stack.ray_token())
    ControlLoop(LocalStore(args.home), reconciler).run(args.interval_s, threading.Event())


if __name__ == "__main__":
    main()
