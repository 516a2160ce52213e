"""One read of a Ray cluster's application list serves every object's pass for a short while: not one read
per object. Our own writes drop it, a list with anything still settling is never shared, and a burst of
passes waiting on a miss makes one read."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import httpx
import pytest

from steward.adapters.ray_serve import ListSnapshots, RayServeClient, ServeApplication, list_max_age_from_env

ADDRESS = "http://ray-a:8265"


def running(name: str) -> dict[str, Any]:
    return {"status": "RUNNING", "deployed_app_config": {"name": name, "import_path": "m:app"}}


class Dashboard:
    def __init__(self) -> None:
        self.apps: dict[str, dict[str, Any]] = {"a": running("a")}
        self.gets = 0
        self.puts = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            self.gets += 1
            return httpx.Response(200, json={"applications": self.apps})
        self.puts += 1
        return httpx.Response(200)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def client(
    dashboard: Dashboard, snapshots: ListSnapshots, clock: Clock, max_age_s: float = 15
) -> RayServeClient:
    return RayServeClient(
        ADDRESS,
        transport=httpx.MockTransport(dashboard),
        list_max_age_s=max_age_s,
        snapshots=snapshots,
        clock=clock,
    )


def test_passes_within_the_max_age_share_one_read_of_each_cluster() -> None:
    dashboard, snapshots, clock = Dashboard(), ListSnapshots(), Clock()
    first, second = client(dashboard, snapshots, clock), client(dashboard, snapshots, clock)
    for _ in range(50):
        assert set(first.applications()) == {"a"}
        assert second.get_application("a") is not None
        clock.now += 0.2
    assert dashboard.gets == 1  # 10 s of passes of 100 objects
    clock.now += 5.1
    first.applications()
    assert dashboard.gets == 2
    other = RayServeClient("http://ray-b:8265", transport=httpx.MockTransport(dashboard), snapshots=snapshots)
    other.applications()
    assert dashboard.gets == 3  # another cluster: its own list


def test_our_own_write_drops_the_snapshot_and_a_write_always_reads_afresh() -> None:
    dashboard, snapshots, clock = Dashboard(), ListSnapshots(), Clock()
    ray = client(dashboard, snapshots, clock)
    ray.applications()
    ray.apply_application({"name": "b", "import_path": "m:app"}, {})
    assert dashboard.gets == 2 and dashboard.puts == 1  # the merge read the list itself
    dashboard.apps["b"] = running("b")
    assert set(ray.applications()) == {"a", "b"}
    assert dashboard.gets == 3


def test_a_list_with_an_application_still_settling_is_read_on_every_pass() -> None:
    dashboard, snapshots, clock = Dashboard(), ListSnapshots(), Clock()
    dashboard.apps["b"] = {"status": "DEPLOYING", "deployed_app_config": {"name": "b"}}
    ray = client(dashboard, snapshots, clock)
    for _ in range(3):
        ray.applications()
    assert dashboard.gets == 3
    dashboard.apps["b"] = running("b")
    for _ in range(3):
        assert ray.get_application("b").status == "RUNNING"  # type: ignore[union-attr]
    assert dashboard.gets == 4


def test_no_sharing_when_the_max_age_is_zero() -> None:
    dashboard, snapshots, clock = Dashboard(), ListSnapshots(), Clock()
    ray = client(dashboard, snapshots, clock, max_age_s=0)
    for _ in range(3):
        ray.applications()
    assert dashboard.gets == 3
    assert list_max_age_from_env({"STEWARD_RAY_LIST_MAX_AGE_S": "0"}) == 0
    assert list_max_age_from_env({}) == 0  # off unless asked for: see DEFAULT_LIST_MAX_AGE_S


def test_a_burst_of_passes_waiting_on_a_miss_makes_one_read() -> None:
    dashboard, snapshots, clock = Dashboard(), ListSnapshots(), Clock()
    release = threading.Event()
    slow_gets = 0

    def slow(request: httpx.Request) -> httpx.Response:
        nonlocal slow_gets
        slow_gets += 1
        release.wait(5)
        return dashboard(request)

    ray = RayServeClient(
        ADDRESS, transport=httpx.MockTransport(slow), snapshots=snapshots, clock=clock, list_max_age_s=15
    )
    threads = [threading.Thread(target=ray.applications) for _ in range(8)]
    for thread in threads:
        thread.start()
    release.set()
    for thread in threads:
        thread.join(10)
    assert slow_gets == 1


def test_a_read_overtaken_by_our_write_is_not_shared() -> None:
    """A pass that read the list just before another thread's write must not make every other pass see the
    cluster as it was before that write for the next max_age_s."""
    dashboard, snapshots, clock = Dashboard(), ListSnapshots(), Clock()
    reading, release = threading.Event(), threading.Event()

    def slow(request: httpx.Request) -> httpx.Response:
        reading.set()
        release.wait(5)
        return dashboard(request)

    ray = RayServeClient(ADDRESS, transport=httpx.MockTransport(slow), snapshots=snapshots, clock=clock)
    observer = threading.Thread(target=ray.applications)
    observer.start()
    assert reading.wait(5)
    snapshots.invalidate(ADDRESS)  # what a write does when it is done
    release.set()
    observer.join(10)
    ray.applications()
    assert dashboard.gets == 2


def test_a_shared_list_is_parsed_once_and_each_caller_gets_its_own_mapping() -> None:
    dashboard, snapshots, clock = Dashboard(), ListSnapshots(), Clock()
    ray = client(dashboard, snapshots, clock)
    first = ray.applications()
    first.pop("a")
    second, third = ray.applications(), ray.applications()
    assert set(second) == {"a"} and second["a"] is third["a"]  # the same parsed application, not re-parsed
    assert dashboard.gets == 1


def test_what_a_caller_derives_from_a_shared_list_is_made_once_per_read() -> None:
    dashboard, snapshots, clock = Dashboard(), ListSnapshots(), Clock()
    ray = client(dashboard, snapshots, clock)
    made: list[set[str]] = []

    def names(applications: Mapping[str, ServeApplication]) -> frozenset[str]:
        made.append(set(applications))
        return frozenset(applications)

    for _ in range(5):
        assert ray.derived_from_applications(names) == {"a"}
    assert len(made) == 1 and dashboard.gets == 1
    dashboard.apps["b"] = running("b")
    ray.apply_application({"name": "b", "import_path": "m:app"}, {})  # our write: the next pass reads afresh
    assert ray.derived_from_applications(names) == {"a", "b"}
    clock.now += 16  # older than the max age: read and derived afresh
    assert ray.derived_from_applications(names) == {"a", "b"}
    assert len(made) == 3


def test_what_is_derived_from_a_list_that_is_not_shared_is_made_afresh_every_time() -> None:
    dashboard, snapshots, clock = Dashboard(), ListSnapshots(), Clock()
    dashboard.apps["b"] = {"status": "DEPLOYING", "deployed_app_config": {"name": "b"}}
    ray = client(dashboard, snapshots, clock)
    statuses = [ray.derived_from_applications(lambda apps: apps["b"].status) for _ in range(2)]
    dashboard.apps["b"] = running("b")
    statuses.append(ray.derived_from_applications(lambda apps: apps["b"].status))
    assert statuses == ["DEPLOYING", "DEPLOYING", "RUNNING"] and dashboard.gets == 3


def test_a_derive_function_cannot_change_the_shared_parse() -> None:
    dashboard, snapshots, clock = Dashboard(), ListSnapshots(), Clock()
    ray = client(dashboard, snapshots, clock)

    def meddle(applications: Mapping[str, ServeApplication]) -> None:
        applications.pop("a")  # type: ignore[attr-defined]

    with pytest.raises(AttributeError):
        ray.derived_from_applications(meddle)
    assert set(ray.applications()) == {"a"}
