"""Ray Serve through the dashboard's REST API (`/api/serve/applications/`).

Ray's PUT replaces the whole declarative config and deletes every application it does not list, so this client
owns the full application list of each Ray cluster: it reads what is deployed, merges one application in or
out, and writes the whole list back, holding a per-cluster lock so two reconciles in this process never race,
and a cluster-wide guard (steward.adapters.lease) so that two processes (two operator releases, the local loop
and the CLI) never do either. It refuses to write back a list it could not read whole.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

import httpx

from steward.adapters.errors import Conflict, NotFound, Rejected, Unauthorized, Unreachable
from steward.adapters.lease import ClusterGuard, Confirm

SERVE_API = "/api/serve/applications/"
TOKEN_ENV = "RAY_AUTH_TOKEN"
TOKEN_PATH_ENV = "RAY_AUTH_TOKEN_PATH"
# How long one read of a cluster's application list serves every object's pass (seconds; 0: never shared).
# Each object's pass observes the whole list; with hundreds of objects per cluster, one read per pass made the
# traffic grow with the square of their number (the resync interval, 15 s, measured well at 500 objects).
LIST_MAX_AGE_ENV = "STEWARD_RAY_LIST_MAX_AGE_S"
# Off by default for this client's callers (the CLI, benchmarks waiting for a change): a shared list is up to
# its age stale. The operator passes its own max age per pass, and only for objects at rest
# (steward.operator.freshness): a pass deciding from a stale list during a dashboard outage would move a
# rollout on where a fresh read holds it.
DEFAULT_LIST_MAX_AGE_S = 0.0
# A list showing any application in one of these is not shared: whoever waits for it to settle (a deploy,
# a rollout step, a deletion) reads afresh on every pass, as without sharing.
_SETTLED = frozenset({"RUNNING", "DEPLOY_FAILED"})

T = TypeVar("T")

_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def _cluster_lock(address: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(address, threading.Lock())


def token_from_env(environ: dict[str, str] | None = None) -> str | None:
    """Ray's own conventions: the token itself, or a file (a mounted Kubernetes Secret)."""
    env = os.environ if environ is None else environ
    if env.get(TOKEN_ENV):
        return env[TOKEN_ENV].strip()
    path = env.get(TOKEN_PATH_ENV)
    if path:
        return Path(path).read_text().strip()
    return None


@dataclass(frozen=True)
class ReplicaCounts:
    running: int = 0
    total: int = 0


@dataclass(frozen=True)
class ServeApplication:
    """What Ray reports about one application."""

    name: str
    status: str
    message: str
    deployed_config: dict[str, Any] | None
    replicas: dict[str, ReplicaCounts] = field(default_factory=dict)
    deployment_messages: dict[str, str] = field(default_factory=dict)


def parse_application(name: str, raw: dict[str, Any]) -> ServeApplication:
    replicas: dict[str, ReplicaCounts] = {}
    messages: dict[str, str] = {}
    for dep_name, dep in (raw.get("deployments") or {}).items():
        states = [r.get("state") for r in dep.get("replicas") or []]
        replicas[dep_name] = ReplicaCounts(running=states.count("RUNNING"), total=len(states))
        if dep.get("message"):
            messages[dep_name] = str(dep["message"])
    return ServeApplication(
        name=name,
        status=str(raw.get("status", "UNKNOWN")),
        message=str(raw.get("message") or ""),
        deployed_config=raw.get("deployed_app_config"),
        replicas=replicas,
        deployment_messages=messages,
    )


@dataclass
class _Snapshot:
    read_at: float  # time.monotonic()
    instance: dict[str, Any]
    # Parsed once for every pass that shares it (hundreds of applications each time otherwise).
    applications: dict[str, ServeApplication] | None = None
    # What callers make of the parsed list (an index by owner, say), made once per snapshot like the parse:
    # keyed by the function that made it.
    derived: dict[Callable[..., Any], Any] = field(default_factory=dict)


class ListSnapshots:
    """One short-lived copy of each cluster's application list, shared by every client of this process
    (one per address, keyed like the write locks). Our own writes drop it; concurrent misses wait for one
    read instead of each reading (a resync wakes many objects at once)."""

    def __init__(self) -> None:
        self._snapshots: dict[str, _Snapshot] = {}
        self._fetching: dict[str, threading.Lock] = {}
        # Bumped by every invalidation: a read that a write overtook is returned but never shared.
        self._writes: dict[str, int] = {}
        self._guard = threading.Lock()

    def get(
        self, address: str, max_age_s: float, read: Callable[[], dict[str, Any]], clock: Callable[[], float]
    ) -> dict[str, Any]:
        if max_age_s <= 0:
            # A caller that must see the cluster as it is now reads afresh, and leaves what it read for
            # the passes that may share it: a cluster with objects in motion is then read no more often.
            with self._guard:
                writes = self._writes.get(address, 0)
            read_at = clock()
            instance = read()
            self._keep(address, writes, _Snapshot(read_at, instance))
            return instance
        with self._guard:
            fetching = self._fetching.setdefault(address, threading.Lock())
        with fetching:
            with self._guard:
                held = self._snapshots.get(address)
                writes = self._writes.get(address, 0)
            if held is not None and clock() - held.read_at < max_age_s:
                return held.instance
            read_at = clock()
            instance = read()
            self._keep(address, writes, _Snapshot(read_at, instance))
            return instance

    def _keep(self, address: str, writes: int, snapshot: _Snapshot) -> None:
        """Shared only if every application is settled and no write of ours overtook the read."""
        with self._guard:
            held = self._snapshots.get(address)
            newer = held is not None and held.read_at > snapshot.read_at
            if _settled(snapshot.instance) and self._writes.get(address, 0) == writes and not newer:
                self._snapshots[address] = snapshot

    def parsed(self, address: str, instance: dict[str, Any]) -> dict[str, ServeApplication]:
        """`instance`'s applications, parsed once while it is the shared snapshot."""
        return dict(self._parsed(address, instance))

    def _parsed(self, address: str, instance: dict[str, Any]) -> dict[str, ServeApplication]:
        """The shared parse itself: never handed out to be changed."""
        with self._guard:
            held = self._snapshots.get(address)
            if held is not None and held.instance is instance and held.applications is not None:
                return held.applications
        raw = instance.get("applications") or {}
        applications = {name: parse_application(name, app) for name, app in raw.items()}
        with self._guard:
            held = self._snapshots.get(address)
            if held is not None and held.instance is instance:
                held.applications = applications
        return applications

    def derived(
        self,
        address: str,
        instance: dict[str, Any],
        derive: Callable[[Mapping[str, ServeApplication]], T],
    ) -> T:
        """`derive` of `instance`'s applications, made once while it is the shared snapshot: a pass that
        needs only its own few applications looks them up in what `derive` made of the whole list instead of
        scanning it. `derive` must be pure, and its result is shared: never changed by whoever gets it."""
        with self._guard:
            held = self._snapshots.get(address)
            if held is not None and held.instance is instance and derive in held.derived:
                shared: T = held.derived[derive]
                return shared
        value = derive(MappingProxyType(self._parsed(address, instance)))
        with self._guard:
            held = self._snapshots.get(address)
            if held is not None and held.instance is instance:
                held.derived[derive] = value
        return value

    def invalidate(self, address: str) -> None:
        with self._guard:
            self._snapshots.pop(address, None)
            self._writes[address] = self._writes.get(address, 0) + 1


def _settled(instance: dict[str, Any]) -> bool:
    apps = instance.get("applications")
    return isinstance(apps, dict) and all(
        isinstance(app, dict) and app.get("status") in _SETTLED for app in apps.values()
    )


SNAPSHOTS = ListSnapshots()


def list_max_age_from_env(environ: dict[str, str] | None = None) -> float:
    env = os.environ if environ is None else environ
    return float(env.get(LIST_MAX_AGE_ENV) or DEFAULT_LIST_MAX_AGE_S)


class RayServeClient:
    def __init__(
        self,
        address: str,
        token: str | None = None,
        timeout_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        guard: ClusterGuard | None = None,
        list_max_age_s: float | None = None,
        snapshots: ListSnapshots = SNAPSHOTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.address = address.rstrip("/")
        self.guard = guard
        self.list_max_age_s = list_max_age_from_env() if list_max_age_s is None else list_max_age_s
        self._snapshots = snapshots
        self._clock = clock
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            base_url=self.address, headers=headers, timeout=timeout_s, transport=transport
        )

    def close(self) -> None:
        self._http.close()

    @contextlib.contextmanager
    def _write_guard(self) -> Iterator[Confirm]:
        """This process's lock first (cheap, and it keeps our own threads off the cluster-wide guard)."""
        with _cluster_lock(self.address):
            try:
                if self.guard is None:
                    yield lambda: None
                else:
                    with self.guard.hold(self.address) as confirm:
                        yield confirm
            finally:
                # Whatever we wrote (or tried to), the shared list no longer shows the cluster as it is.
                self._snapshots.invalidate(self.address)

    def _request(self, method: str, json: dict[str, Any] | None = None) -> dict[str, Any]:
        try:
            response = self._http.request(method, SERVE_API, json=json)
        except httpx.HTTPError as exc:
            raise Unreachable(f"Ray dashboard at {self.address} is unreachable: {exc}") from exc
        if response.status_code in (401, 403):
            raise Unauthorized(
                f"Ray dashboard at {self.address} refused the token ({response.status_code}): "
                f"set {TOKEN_ENV} or {TOKEN_PATH_ENV} to the cluster's auth token"
            )
        if response.status_code == 404:
            raise NotFound(f"{self.address} has no Serve REST API (is this a Ray dashboard address?)")
        if 400 <= response.status_code < 500:
            raise Rejected(f"Ray rejected the Serve config ({response.status_code}): {response.text[:2000]}")
        if response.status_code >= 500:
            raise Unreachable(
                f"Ray dashboard at {self.address} failed ({response.status_code}): {response.text[:500]}"
            )
        if not response.content:
            return {}
        try:
            body: dict[str, Any] = response.json()
        except ValueError as exc:
            raise Unreachable(
                f"Ray dashboard at {self.address} answered non-JSON: {response.text[:200]}"
            ) from exc
        return body

    def instance(self) -> dict[str, Any]:
        return self._request("GET")

    def shared_instance(self, max_age_s: float | None = None) -> dict[str, Any]:
        """The application list for observing (not for a write's merge): shared by every pass for up to
        `max_age_s` (default: the client's `list_max_age_s`) while every application is settled, read
        afresh otherwise."""
        age = self.list_max_age_s if max_age_s is None else max_age_s
        return self._snapshots.get(self.address, age, self.instance, self._clock)

    def get_application(self, name: str) -> ServeApplication | None:
        raw = (self.shared_instance().get("applications") or {}).get(name)
        return None if raw is None else parse_application(name, raw)

    def applications(self, max_age_s: float | None = None) -> dict[str, ServeApplication]:
        return self._snapshots.parsed(self.address, self.shared_instance(max_age_s))

    def derived_from_applications(
        self, derive: Callable[[Mapping[str, ServeApplication]], T], max_age_s: float | None = None
    ) -> T:
        """`derive` of the application list, read as `applications` reads it; made once per shared read."""
        return self._snapshots.derived(self.address, self.shared_instance(max_age_s), derive)

    def apply_application(self, app_config: dict[str, Any], http_options: dict[str, Any]) -> None:
        self.apply_applications([app_config], set(), http_options)

    def apply_applications(
        self, app_configs: list[dict[str, Any]], remove: set[str], http_options: dict[str, Any]
    ) -> None:
        """Deploy or update some applications and remove others in one PUT, keeping every other application
        on the cluster. One PUT, so that Ray never runs a router whose versions are half there."""
        with self._write_guard() as confirm:
            instance = self.instance()
            apps = merged_applications(instance, app_configs, remove)
            confirm()
            if apps:
                self._request("PUT", _deploy_body(instance, apps, http_options))
            elif instance.get("applications"):
                # A PUT of an empty list is refused by some Ray versions; DELETE shuts Serve down cleanly.
                self._request("DELETE")

    def delete_application(self, name: str, http_options: dict[str, Any]) -> bool:
        """Remove one application; returns False when it was already gone."""
        return self.delete_applications({name}, http_options) > 0

    def delete_applications(self, names: set[str], http_options: dict[str, Any]) -> int:
        """Remove applications; returns how many were there."""
        with self._write_guard() as confirm:
            instance = self.instance()
            present = names & set(instance.get("applications") or {})
            if not present:
                return 0
            apps = merged_applications(instance, [], present)
            confirm()
            if apps:
                self._request("PUT", _deploy_body(instance, apps, http_options))
            else:
                self._request("DELETE")
            return len(present)


def merged_applications(
    instance: dict[str, Any], app_configs: list[dict[str, Any]], remove: set[str]
) -> list[dict[str, Any]]:
    """The whole list to write back: every other application as Ray runs it (whoever deployed it), then
    ours. Ray deletes whatever the list leaves out, so a read that does not show every application with a
    config we can write back is refused (temporary: it clears when Ray or a person fixes it) rather than
    written: an application is never dropped because its config could not be read."""
    listed = instance.get("applications")
    if not isinstance(listed, dict):
        raise Conflict(
            "Ray's Serve API answered without an application list; not writing, since a write replaces "
            "every application on the cluster"
        )
    replaced = {c["name"] for c in app_configs} | remove
    kept = []
    for app_name, raw in listed.items():
        if app_name in replaced:
            continue
        raw = raw if isinstance(raw, dict) else {}
        config = raw.get("deployed_app_config")
        if config is None and raw.get("status") == "DELETING":
            continue  # on its way out (Ray drops its config first): leaving it out of the list is the same
        if not isinstance(config, dict) or config.get("name", app_name) != app_name:
            raise Conflict(
                f"application {app_name!r} on this Ray cluster has no config Steward can write back "
                "(deployed with serve.run or another tool, not `serve deploy`); writing the cluster's "
                f"application list would delete it, so Steward waits. Redeploy {app_name!r} with "
                "`serve deploy` or remove it"
            )
        kept.append({**config, "name": app_name})
    return kept + list(app_configs)


def _deploy_body(
    instance: dict[str, Any], apps: list[dict[str, Any]], http_options: dict[str, Any]
) -> dict[str, Any]:
    # Ray cannot change http_options of a running Serve instance; keep what it runs with.
    current = instance.get("http_options") or {}
    options = {k: current[k] for k in ("host", "port") if k in current} or http_options
    return {"http_options": options, "applications": apps}
