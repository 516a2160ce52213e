"""`Stack.down()` stops every process of its own Ray cluster (GCS, raylet, dashboard, workers, the Serve
controller and proxy) and leaves another Ray cluster of the same user on the machine running (`ray stop` would
not)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from helpers import free_port, wait_until

from steward.dev.procs import alive, cmdline, session_members
from steward.dev.stack import Stack

pytestmark = pytest.mark.integration


def _ray_head(home: Path) -> Stack:
    return Stack(
        home=home,
        mlflow_port=free_port(),
        ray_gcs_port=free_port(),
        ray_dashboard_port=free_port(),
        serve_port=free_port(),
        num_cpus=1,
    )


def _dashboard_answers(stack: Stack) -> bool:
    try:
        url = f"{stack.ray_address}/api/serve/applications/"
        headers = {"Authorization": f"Bearer {stack.ray_token()}"}
        return httpx.get(url, headers=headers, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def _naming_gcs(port: int) -> list[int]:
    # The GCS address (`<node ip>:<port>`, an IP Ray picks) or the GCS server's own port flag.
    pattern = re.compile(rf"\d:{port}\b|--gcs_server_port={port}\b")
    pids = [int(e.name) for e in Path("/proc").iterdir() if e.name.isdigit()]
    return [p for p in pids if alive(p) and pattern.search(_titles([p]))]


def _titles(pids: list[int]) -> str:
    return " ".join(" ".join(cmdline(p) or []) for p in pids)


@pytest.fixture
def heads(tmp_path: Path) -> Iterator[tuple[Stack, Stack]]:
    ours, other = _ray_head(tmp_path / "ours"), _ray_head(tmp_path / "other")
    try:
        ours.start_ray()
        other.start_ray()
        yield ours, other
    finally:
        ours.down()
        other.down()


def test_down_stops_its_whole_cluster_and_no_other(heads: tuple[Stack, Stack]) -> None:
    ours, other = heads
    for stack in heads:
        wait_until(lambda s=stack: _dashboard_answers(s), 180, f"the Ray dashboard of {stack.home.name}")
    # Start Serve on ours: its controller and proxy are Ray actors in worker processes of their own.
    put = httpx.put(
        f"{ours.ray_address}/api/serve/applications/",
        headers={"Authorization": f"Bearer {ours.ray_token()}"},
        json={"http_options": {"host": "127.0.0.1", "port": ours.serve_port}, "applications": []},
        timeout=120,
    )
    assert put.status_code < 500, put.text
    leader = ours.pids["ray"]
    members = wait_until(
        lambda: (
            m
            if all(t in _titles(m := session_members(leader)) for t in ("ServeController", "ProxyActor"))
            else None
        ),
        120,
        "the Serve controller and proxy in our cluster's session",
    )
    assert _naming_gcs(ours.ray_gcs_port)  # the pattern does find our cluster's processes while it runs
    titles = _titles(members)
    for part in ("gcs_server", "raylet", "dashboard.py"):
        assert part in titles
    others = session_members(other.pids["ray"])
    others_core = [p for p in others if any(k in _titles([p]) for k in ("gcs_server", "raylet"))]
    assert len(others_core) == 2

    ours.down()

    assert [p for p in members if alive(p)] == []
    assert session_members(leader) == []
    assert "ray" not in ours.pids
    assert _naming_gcs(ours.ray_gcs_port) == []
    assert all(alive(p) for p in others_core)
    assert _dashboard_answers(other)
