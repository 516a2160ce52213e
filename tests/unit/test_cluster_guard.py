"""The cluster-wide guard on a Ray cluster's application list: a Lease (against a fake of the same API calls,
with the API server's create and resourceVersion conflicts) and the local stack's file lock."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from builders import CONFIG
from kubernetes.client.exceptions import ApiException

from steward.adapters.errors import Conflict
from steward.adapters.lease import FileGuard, LeaseGuard, cluster_guard, guard_name
from steward.api.conditions import Reason
from steward.operator.config import config_from_env
from steward.operator.reconciler import Reconciler, serve_problem

RAY = "http://ray-head.ray:8265"
NS = "steward-system"


class FakeLeases:
    """CoordinationV1Api's three calls, as the API server answers them: 404 for a missing Lease, 409 for a
    create of an existing one or a replace whose resourceVersion is not the current one."""

    def __init__(self) -> None:
        self.leases: dict[tuple[str, str], dict[str, Any]] = {}
        self.version = 0
        self.lock = threading.Lock()
        self.timeouts: list[float] = []

    def _view(self, body: dict[str, Any]) -> SimpleNamespace:
        spec = body["spec"]
        return SimpleNamespace(
            metadata=SimpleNamespace(name=body["metadata"]["name"], resource_version=body["metadata"]["rv"]),
            spec=SimpleNamespace(
                holder_identity=spec.get("holderIdentity"),
                lease_duration_seconds=spec.get("leaseDurationSeconds"),
                acquire_time=_parse(spec.get("acquireTime")),
                renew_time=_parse(spec.get("renewTime")),
                lease_transitions=spec.get("leaseTransitions"),
            ),
        )

    def _store(self, body: dict[str, Any]) -> SimpleNamespace:
        self.version += 1
        stored = {"metadata": {**body["metadata"], "rv": str(self.version)}, "spec": dict(body["spec"])}
        self.leases[(body["metadata"]["namespace"], body["metadata"]["name"])] = stored
        return self._view(stored)

    def read_namespaced_lease(self, name: str, namespace: str, *, _request_timeout: float) -> Any:
        self.timeouts.append(_request_timeout)
        with self.lock:
            if (namespace, name) not in self.leases:
                raise ApiException(status=404, reason="Not Found")
            return self._view(self.leases[(namespace, name)])

    def create_namespaced_lease(self, namespace: str, body: Any, *, _request_timeout: float) -> Any:
        self.timeouts.append(_request_timeout)
        with self.lock:
            if (namespace, body["metadata"]["name"]) in self.leases:
                raise ApiException(status=409, reason="AlreadyExists")
            assert "resourceVersion" not in body["metadata"]
            return self._store(body)

    def replace_namespaced_lease(
        self, name: str, namespace: str, body: Any, *, _request_timeout: float
    ) -> Any:
        self.timeouts.append(_request_timeout)
        with self.lock:
            current = self.leases.get((namespace, name))
            if current is None:
                raise ApiException(status=404, reason="Not Found")
            if body["metadata"].get("resourceVersion") != current["metadata"]["rv"]:
                raise ApiException(status=409, reason="Conflict")
            return self._store(body)

    def holder(self, cluster: str = RAY) -> str | None:
        holder: str | None = self.leases[(NS, guard_name(cluster))]["spec"]["holderIdentity"]
        return holder


def _parse(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value.replace("Z", "+00:00"))


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def guard(api: FakeLeases, identity: str, clock: Clock | None = None, wait_s: float = 0.3) -> LeaseGuard:
    return LeaseGuard(
        api,
        NS,
        identity,
        duration_s=60,
        wait_s=wait_s,
        poll_s=0.01,
        clock=clock or (lambda: datetime.now(UTC)),
    )


def test_the_lease_is_named_after_the_ray_address_and_valid_as_an_object_name():
    name = guard_name(RAY)
    assert name == guard_name(RAY + "/") != guard_name("http://other:8265")
    assert len(name) <= 63 and name.replace("-", "").isalnum() and name.islower()


def test_a_held_lease_keeps_a_second_operator_out_until_it_is_released():
    api = FakeLeases()
    first, second = guard(api, "operator-a"), guard(api, "operator-b")
    with first.hold(RAY) as confirm:
        assert api.holder() == "operator-a"
        with pytest.raises(Conflict, match="operator-a") as info, second.hold(RAY):
            pass
        assert info.value.temporary
        confirm()  # still ours
    assert api.holder() is None
    with second.hold(RAY):
        assert api.holder() == "operator-b"
    assert api.timeouts and all(t > 0 for t in api.timeouts), "every API call has a timeout"


def test_a_lease_whose_holder_died_is_taken_over_after_its_duration():
    api, clock = FakeLeases(), Clock()
    dead = guard(api, "operator-a", clock)
    dead._acquire(RAY)  # took it and never released it (killed)
    clock.now += timedelta(seconds=30)
    with pytest.raises(Conflict), guard(api, "operator-b", clock).hold(RAY):
        pass
    clock.now += timedelta(seconds=31)
    with guard(api, "operator-b", clock).hold(RAY):
        assert api.holder() == "operator-b"


def test_a_writer_that_lost_its_lease_is_told_before_it_writes():
    api, clock = FakeLeases(), Clock()
    stalled = guard(api, "operator-a", clock)
    with stalled.hold(RAY) as confirm:
        clock.now += timedelta(seconds=61)  # stalled past the duration: another operator takes over
        guard(api, "operator-b", clock)._acquire(RAY)
        with pytest.raises(Conflict, match="lost the Lease"):
            confirm()
    assert api.holder() == "operator-b", "the loser's release does not free the winner's Lease"


def test_two_operators_never_interleave_a_read_merge_write():
    """Each of two operators adds its own entries to one shared list 25 times, read-modify-write with a pause
    in between (the window where a PUT would drop the other's newest app): none is lost."""
    api, apps = FakeLeases(), []
    errors: list[BaseException] = []

    def operator(identity: str) -> None:
        g = guard(api, identity, wait_s=30)
        try:
            for i in range(25):
                with g.hold(RAY) as confirm:
                    seen = list(apps)
                    time.sleep(0.001)
                    confirm()
                    apps[:] = [*seen, f"{identity}-{i}"]
        except BaseException as exc:  # reported below; a thread's exception would otherwise vanish
            errors.append(exc)

    threads = [threading.Thread(target=operator, args=(who,)) for who in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert sorted(apps) == sorted(f"{who}-{i}" for who in ("a", "b") for i in range(25))


def test_the_local_file_lock_keeps_a_second_writer_out(tmp_path: Path):
    first, second = FileGuard(tmp_path, wait_s=0.2), FileGuard(tmp_path, wait_s=0.2)
    with first.hold(RAY):
        with pytest.raises(Conflict, match="another process") as info, second.hold(RAY):
            pass
        assert info.value.temporary
        with second.hold("http://another-ray:8265"):
            pass  # another cluster is another lock
    with second.hold(RAY):
        pass


def test_the_configuration_picks_the_guard(tmp_path: Path):
    assert cluster_guard(None, None) is None
    assert isinstance(cluster_guard(None, str(tmp_path)), FileGuard)
    assert type(cluster_guard(NS, str(tmp_path))).__name__ == "LazyLeaseGuard"


def test_the_operator_guards_every_ray_client_it_makes(tmp_path: Path):
    assert config_from_env({"STEWARD_RAY_LEASE_NAMESPACE": NS}).ray_lease_namespace == NS
    reconciler = Reconciler(replace(CONFIG, ray_lock_dir=str(tmp_path)), ray_token="t")
    try:
        assert isinstance(reconciler.serve_client(CONFIG.ray_address).guard, FileGuard)
    finally:
        reconciler.close()


class ForbiddenLeases(FakeLeases):
    def read_namespaced_lease(self, name: str, namespace: str, *, _request_timeout: float) -> Any:
        raise ApiException(status=403, reason="Forbidden")


def test_a_lease_the_operator_may_not_take_stops_the_write_but_never_reads_as_ray_gone():
    with (
        pytest.raises(Conflict, match="leases in its namespace") as info,
        guard(ForbiddenLeases(), "a").hold(RAY),
    ):
        pass
    problem = serve_problem(info.value)
    assert (problem.reason, problem.temporary) == (Reason.RAY_CONFLICT, True)
