"""The local stack stops a session it started, every member of it (also those in process groups of their own,
as Ray's workers are), and nothing else: not another session, not a process that took over a recorded pid."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from steward.dev.procs import alive, is_ours, session_members, stop_session
from steward.dev.stack import Stack

# A leader that starts a child in a process group of its own, prints its pid, and then sleeps.
LEADER = """
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], process_group=0)
print(child.pid, flush=True)
time.sleep(120)
"""


def _spawn_session(marker: str) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, "-c", LEADER, marker], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


@pytest.fixture
def sessions() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        for pid in session_members(proc.pid):
            os.kill(pid, 9)
        proc.kill()
        proc.wait(timeout=5)


def test_stops_the_whole_session_and_nothing_else(sessions: list[subprocess.Popen[str]]) -> None:
    ours, our_child = _spawn_session("ours")
    other, other_child = _spawn_session("other")
    sessions += [ours, other]
    assert sorted(session_members(ours.pid)) == sorted([ours.pid, our_child])
    assert os.getpgid(our_child) != ours.pid  # in a group of its own: killpg(leader) would miss it

    assert stop_session(ours.pid, lambda p: is_ours(p, ["ours"]), grace_s=5) == []

    ours.wait(timeout=5)
    assert not alive(our_child)
    assert alive(other.pid) and alive(other_child)


def test_a_reused_pid_is_left_alone(
    sessions: list[subprocess.Popen[str]],
) -> None:
    other, other_child = _spawn_session("somebody-else")
    sessions.append(other)
    assert stop_session(other.pid, lambda p: is_ours(p, ["ours"]), grace_s=1) == []
    time.sleep(0.2)
    assert alive(other.pid) and alive(other_child)


def test_ray_token_is_private_from_creation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # No chmod after the fact: the file must be created 0600, so there is no moment it is readable by others.
    monkeypatch.setattr(Path, "chmod", lambda self, mode: None)
    old = os.umask(0o022)
    try:
        stack = Stack(home=tmp_path / "home")
        stack.write_token()
    finally:
        os.umask(old)
    assert stat.S_IMODE(stack.token_path.stat().st_mode) == 0o600
    assert len(stack.ray_token()) == 64
