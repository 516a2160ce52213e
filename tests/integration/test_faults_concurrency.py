"""Two ModelDeployments in different namespaces whose names collide today (`team-a/fraud`, `team/a-fraud`),
on one Ray cluster, each reconciled by a control loop process of its own (two operator installs), updated
concurrently many times: no Serve application is ever lost, and each ends with its own last spec."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from faults import LoopProcess, fault_home, md_doc
from helpers import wait_gone, wait_until

from steward.adapters.ray_serve import RayServeClient
from steward.api.serve_app import version_app_name, version_deployment_name
from steward.dev.stack import Stack
from steward.dev.store import LocalStore
from steward.operator.serve_config import app_name

pytestmark = pytest.mark.integration
UPDATES = int(os.environ.get("STEWARD_FAULT_UPDATES", "50"))
TEAMS = [("team-a", "fraud"), ("team", "a-fraud")]


class AppWatch:
    """Polls Ray's application list; an application seen once and then missing is a loss."""

    def __init__(self, client: RayServeClient, names: list[str], every_s: float = 0.25) -> None:
        self.client, self.names, self.every_s = client, names, every_s
        self.seen: set[str] = set()
        self.losses: list[tuple[float, str, list[str]]] = []
        self.samples = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                present = {n for n, a in self.client.applications().items() if a.status not in ("DELETING",)}
            except Exception as exc:  # reported by the test, never hidden
                self.errors.append(f"{type(exc).__name__}: {exc}")
            else:
                self.samples += 1
                for name in self.names:
                    if name in present:
                        self.seen.add(name)
                    elif name in self.seen:
                        self.losses.append((time.monotonic(), name, sorted(present)))
            self._stop.wait(self.every_s)

    def __enter__(self) -> AppWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        self._thread.join(30)


def max_replicas_in_ray(client: RayServeClient, router: str, version: str) -> int | None:
    app = client.get_application(version_app_name(router, version))
    config = app.deployed_config if app is not None else None
    for deployment in (config or {}).get("deployments") or []:
        if deployment.get("name") == version_deployment_name(version):
            return int(deployment["autoscaling_config"]["max_replicas"])
    return None


def test_two_colliding_names_updated_concurrently_by_two_loops_never_lose_an_application(
    stack: Stack, models: Any, ray_client: RayServeClient, tmp_path: Path
) -> None:
    version = models.good_v1
    docs = [md_doc(ns, name, version) for ns, name in TEAMS]
    routers = [app_name(d) for d in docs]
    apps = [name for router in routers for name in (router, version_app_name(router, version))]
    assert len(set(apps)) == len(apps), f"Serve application names collide: {routers}"

    homes = [fault_home(stack, tmp_path / f"home{i}") for i in range(len(TEAMS))]
    stores = [LocalStore(h) for h in homes]
    # Two installs share the cluster-wide guard, as two releases share the Lease of one Ray address: here the
    # flock in the home of the stack that runs this Ray cluster.
    loops = [LoopProcess(h, {"ray_lock_dir": str(stack.home)}) for h in homes]
    watch_client = RayServeClient(stack.ray_address, stack.ray_token(), timeout_s=30)
    final_max = {i: 1 + (UPDATES + i) % 2 for i in range(len(TEAMS))}

    def updates(i: int) -> None:
        ns, name = TEAMS[i]
        for n in range(1, UPDATES + 1):
            # Flip replicas.max; each ends on its own value so a lost last update shows.
            stores[i].apply(md_doc(ns, name, version, replicas_max=1 + (n + i) % 2))
            time.sleep(0.3)

    for loop in loops:
        loop.start()
    started = time.monotonic()
    try:
        with AppWatch(watch_client, apps) as watch:
            for store, doc in zip(stores, docs, strict=True):
                store.apply(doc)  # created at the same time: the loops race from the first write
            for (ns, name), store in zip(TEAMS, stores, strict=True):
                wait_until(
                    lambda s=store, n=ns, m=name: (o := s.get(n, m)) and o.status.phase.value == "Ready",
                    180,
                    f"{ns}/{name} Ready",
                )
            threads = [threading.Thread(target=updates, args=(i,)) for i in range(len(TEAMS))]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(120)
            for i, ((ns, name), store) in enumerate(zip(TEAMS, stores, strict=True)):
                wait_until(
                    lambda s=store, n=ns, m=name: (
                        (o := s.get(n, m))
                        and o.status.observed_generation == o.generation
                        and o.status.phase.value == "Ready"
                    ),
                    60,
                    f"{ns}/{name} to observe its last update",
                )
                wait_until(
                    lambda i=i: max_replicas_in_ray(ray_client, routers[i], version) == final_max[i],
                    60,
                    f"{ns}/{name}'s last update in Ray",
                )
        updated_in = time.monotonic() - started
        for (ns, name), store in zip(TEAMS, stores, strict=True):
            store.remove(ns, name, {"steward.io/actor": "fault@bank"})
        for (ns, name), store in zip(TEAMS, stores, strict=True):
            wait_until(lambda s=store, n=ns, m=name: s.get(n, m) is None, 90, f"{ns}/{name} finalized")
        for name in apps:
            wait_gone(ray_client, name)
    finally:
        for loop in loops:
            loop.stop()
        watch_client.close()
    print(f"\n{UPDATES} updates each in {updated_in:.0f}s; {watch.samples} samples of Ray's app list")
    assert not watch.errors, watch.errors[:3]
    assert watch.seen == set(apps)
    assert watch.losses == [], watch.losses[:5]
