"""One writer at a time per Ray cluster, across processes: a Kubernetes Lease, or a file lock locally.

Ray's Serve API replaces a cluster's whole application list on every PUT, so a write is read-merge-write. Two
operator releases pointed at one Ray cluster (per-namespace installs, an upgrade overlapping) would each write
back a list without the other's newest application. A lock inside one process cannot see the other process;
a coordination.k8s.io/v1 Lease named after the Ray address can. The holder confirms it still holds the Lease
right before it writes, so a write that outlived its Lease (a stalled process) is refused rather than racing.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from steward.adapters.errors import Conflict
from steward.adapters.kubernetes_client import kubernetes_api_client

# Called right before the write: raises Conflict if the guard was lost meanwhile.
Confirm = Callable[[], None]


class ClusterGuard(Protocol):
    def hold(self, cluster: str) -> contextlib.AbstractContextManager[Confirm]: ...


def guard_name(cluster: str) -> str:
    """A valid object or file name for a Ray address (any spelling of which would not be one)."""
    return "steward-ray-" + hashlib.sha256(cluster.rstrip("/").lower().encode()).hexdigest()[:16]


def default_identity() -> str:
    # The pod's name in a cluster (the chart sets POD_ID, as Kopf's peering uses), else host and process.
    return os.environ.get("POD_ID") or f"{socket.gethostname()}-{os.getpid()}"


class FileGuard:
    """The local stack's equivalent: flock on a file in the stack's home (CLI, loop and tests share it)."""

    def __init__(self, directory: Path, wait_s: float = 20.0, poll_s: float = 0.1) -> None:
        self.directory = directory
        self.wait_s = wait_s
        self.poll_s = poll_s

    @contextlib.contextmanager
    def hold(self, cluster: str) -> Iterator[Confirm]:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{guard_name(cluster)}.lock"
        with path.open("a") as handle:
            deadline = time.monotonic() + self.wait_s
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise Conflict(
                            f"another process has been writing the Ray cluster {cluster} for over "
                            f"{self.wait_s:.0f}s (lock {path}); retrying"
                        ) from None
                    time.sleep(self.poll_s)
            try:
                # A flock lasts as long as the process holds the file: nothing can take it meanwhile.
                yield lambda: None
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


class LeaseApi(Protocol):
    """The calls of kubernetes.client.CoordinationV1Api this module makes."""

    def read_namespaced_lease(self, name: str, namespace: str, *, _request_timeout: float) -> Any: ...

    def create_namespaced_lease(self, namespace: str, body: Any, *, _request_timeout: float) -> Any: ...

    def replace_namespaced_lease(
        self, name: str, namespace: str, body: Any, *, _request_timeout: float
    ) -> Any: ...


def _micro_time(when: datetime) -> str:
    # Kubernetes MicroTime: always six fractional digits (isoformat drops them at .000000).
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class _Held:
    name: str
    resource_version: str
    acquire_time: str
    transitions: int


class LeaseGuard:
    """A coordination.k8s.io/v1 Lease per Ray cluster in the operator's namespace.

    Taken when free, released, or expired (renewTime + leaseDurationSeconds in the past: its holder died);
    every change is a replace with the resourceVersion read, so two takers never both win. Expiry compares
    the holder's clock with ours: keep the duration well above any clock skew and above the longest write
    (two Ray requests of at most their timeout each)."""

    def __init__(
        self,
        api: LeaseApi,
        namespace: str,
        identity: str,
        duration_s: int = 60,
        wait_s: float = 20.0,
        request_timeout_s: float = 5.0,
        poll_s: float = 0.25,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.identity = identity
        self.duration_s = duration_s
        self.wait_s = wait_s
        self.request_timeout_s = request_timeout_s
        self.poll_s = poll_s
        self.clock = clock

    @contextlib.contextmanager
    def hold(self, cluster: str) -> Iterator[Confirm]:
        held = [self._acquire(cluster)]

        def confirm() -> None:
            held[0] = self._renew(cluster, held[0])

        try:
            yield confirm
        finally:
            self._release(held[0])

    def _body(self, name: str, holder: str | None, acquire: str, transitions: int, rv: str | None) -> Any:
        metadata: dict[str, Any] = {"name": name, "namespace": self.namespace}
        if rv is not None:
            metadata["resourceVersion"] = rv
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": metadata,
            "spec": {
                "holderIdentity": holder,
                "leaseDurationSeconds": self.duration_s,
                "acquireTime": acquire,
                "renewTime": _micro_time(self.clock()),
                "leaseTransitions": transitions,
            },
        }

    def _call(self, what: str, call: Callable[[], Any]) -> Any:
        """The API's answer; None for 404; raises _Lost for 409 (someone changed it since we read).

        Any other failure is a Conflict, not Unreachable: that would read as "Ray is gone" and let a
        deletion give up on an application that still serves."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return call()
        except ApiException as exc:
            if exc.status == 404:
                return None
            if exc.status == 409:
                raise _Lost() from exc
            raise Conflict(
                f"the Kubernetes API refused to {what} a Lease in {self.namespace} "
                f"({exc.status} {exc.reason}): the operator needs get, create and update on leases in its "
                "namespace (chart Role); not writing to Ray without it"
            ) from exc
        except (HTTPError, OSError) as exc:
            raise Conflict(
                f"cannot reach the Kubernetes API to {what} the Ray cluster's Lease ({exc}); "
                "not writing to Ray"
            ) from exc

    def _acquire(self, cluster: str) -> _Held:
        name = guard_name(cluster)
        timeout = self.request_timeout_s
        deadline = time.monotonic() + self.wait_s
        holder = None
        while True:
            current = self._call(
                "read",
                partial(self.api.read_namespaced_lease, name, self.namespace, _request_timeout=timeout),
            )
            now = _micro_time(self.clock())
            try:
                if current is None:
                    body = self._body(name, self.identity, now, 0, None)
                    create = partial(self.api.create_namespaced_lease, self.namespace, body)
                    created = self._call("create", partial(create, _request_timeout=timeout))
                    return _Held(name, created.metadata.resource_version, now, 0)
                spec = current.spec
                holder = spec.holder_identity
                if not holder or holder == self.identity or self._expired(spec):
                    transitions = (spec.lease_transitions or 0) + (0 if holder == self.identity else 1)
                    body = self._body(
                        name, self.identity, now, transitions, current.metadata.resource_version
                    )
                    take = partial(self.api.replace_namespaced_lease, name, self.namespace, body)
                    taken = self._call("take", partial(take, _request_timeout=timeout))
                    return _Held(name, taken.metadata.resource_version, now, transitions)
            except _Lost:
                pass  # someone else moved first: read again
            if time.monotonic() >= deadline:
                raise Conflict(
                    f"{holder or 'another operator'} has been writing the Ray cluster {cluster} for over "
                    f"{self.wait_s:.0f}s (Lease {self.namespace}/{name}); retrying"
                )
            time.sleep(self.poll_s)

    def _expired(self, spec: Any) -> bool:
        renewed = spec.renew_time or spec.acquire_time
        if renewed is None:
            return True
        if isinstance(renewed, str):
            renewed = datetime.fromisoformat(renewed.replace("Z", "+00:00"))
        age_s: float = (self.clock() - renewed).total_seconds()
        duration_s: float = spec.lease_duration_seconds or self.duration_s
        return age_s > duration_s

    def _renew(self, cluster: str, held: _Held) -> _Held:
        body = self._body(
            held.name, self.identity, held.acquire_time, held.transitions, held.resource_version
        )
        try:
            renewed = self._call(
                "renew",
                lambda: self.api.replace_namespaced_lease(
                    held.name, self.namespace, body, _request_timeout=self.request_timeout_s
                ),
            )
        except _Lost:
            renewed = None
        if renewed is None:
            raise Conflict(
                f"lost the Lease {self.namespace}/{held.name} on the Ray cluster {cluster} before writing "
                "(another operator took it): not writing; retrying"
            )
        return _Held(held.name, renewed.metadata.resource_version, held.acquire_time, held.transitions)

    def _release(self, held: _Held) -> None:
        body = self._body(held.name, None, held.acquire_time, held.transitions, held.resource_version)
        # Letting go is a courtesy that saves the next writer the wait; if it fails, the Lease expires.
        with contextlib.suppress(_Lost, Conflict):
            self._call(
                "release",
                lambda: self.api.replace_namespaced_lease(
                    held.name, self.namespace, body, _request_timeout=self.request_timeout_s
                ),
            )


class _Lost(Exception):
    """409 Conflict: the Lease changed since it was read."""


def kubernetes_lease_api() -> LeaseApi:
    """CoordinationV1Api from the pod's service account, else the kubeconfig."""
    from kubernetes import client

    api: LeaseApi = client.CoordinationV1Api(kubernetes_api_client())
    return api


class LazyLeaseGuard:
    """A LeaseGuard whose Kubernetes client is made at the first write, not at import or start-up."""

    def __init__(self, namespace: str, identity: str) -> None:
        self.namespace = namespace
        self.identity = identity
        self._guard: LeaseGuard | None = None

    def hold(self, cluster: str) -> contextlib.AbstractContextManager[Confirm]:
        if self._guard is None:
            from kubernetes.config import ConfigException

            try:
                api = kubernetes_lease_api()
            except ConfigException as exc:
                raise Conflict(
                    f"no Kubernetes configuration for the Ray cluster's Lease ({exc}); not writing to Ray"
                ) from exc
            self._guard = LeaseGuard(api, self.namespace, self.identity)
        return self._guard.hold(cluster)


def cluster_guard(lease_namespace: str | None, lock_dir: str | None) -> ClusterGuard | None:
    """The cross-process guard the configuration names: a Lease in a cluster, a lock file locally, or none
    (one process only)."""
    if lease_namespace:
        return LazyLeaseGuard(lease_namespace, default_identity())
    if lock_dir:
        return FileGuard(Path(lock_dir))
    return None
