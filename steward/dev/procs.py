"""Stopping exactly the processes the local stack started, and nothing else of the user's (Linux /proc).

Every service of the stack is spawned as the leader of a session of its own, so everything it starts (Ray's
GCS, raylet, dashboard, agents, workers and Serve actors, MLflow's workers) carries that session id, even when
it moves to a process group of its own as Ray's workers do. The recorded leader pid is trusted only while its
command line still names the service; once the leader is gone, Linux does not hand its pid to a new process
while members of its session are alive, so the members still carrying that session id can only be ours.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path

PROC = Path("/proc")


def cmdline(pid: int) -> list[str] | None:
    """The argv of a live process, or None when it is gone (or a zombie, whose cmdline is empty)."""
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return raw.decode(errors="replace").split("\0")[:-1] or None


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, session id) of a process, or None when it is gone."""
    try:
        raw = (PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name is in parentheses and may contain spaces: split after the last one.
    fields = raw.rsplit(")", 1)[1].split()
    return fields[0], int(fields[3])


def _uid(pid: int) -> int | None:
    try:
        return (PROC / str(pid)).stat().st_uid
    except FileNotFoundError:
        return None


def alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z"


def is_ours(pid: int, markers: Sequence[str]) -> bool:
    """A live process of this user whose argv contains every marker (each one a whole argument)."""
    argv = cmdline(pid)
    return argv is not None and _uid(pid) == os.getuid() and all(m in argv for m in markers)


def user_processes() -> list[int]:
    """Live processes of this user."""
    pids = (int(entry.name) for entry in PROC.iterdir() if entry.name.isdigit())
    return [pid for pid in pids if alive(pid) and _uid(pid) == os.getuid()]


def session_members(sid: int) -> list[int]:
    """Live processes of this user in session `sid`."""
    return [pid for pid in user_processes() if (stat := _stat(pid)) is not None and stat[1] == sid]


def working_dir(pid: int) -> Path | None:
    try:
        return (PROC / str(pid) / "cwd").resolve(strict=True)
    except (FileNotFoundError, PermissionError):
        return None


def _wait_gone(pids: list[int], timeout_s: float) -> list[int]:
    deadline = time.monotonic() + timeout_s
    left = [p for p in pids if alive(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = [p for p in left if alive(p)]
    return left


def _signal(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        # Gone between listing and signalling: nothing left to stop.
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def stop_session(
    leader: int, owned: Callable[[int], bool], grace_s: float = 10.0, sweep: bool = True
) -> list[int]:
    """Stop the session `leader` leads, if it is still ours: the leader first, so that it can shut its
    children down in order (Ray drains), then every member left, SIGTERM and then SIGKILL. Returns the pids
    that survived (none unless the kernel refuses). Without `sweep`, only the leader, which may then be a
    process started by hand in some other session (a terminal's)."""
    if alive(leader) and not owned(leader):
        # The pid now belongs to some other process: our session, and all its members, are gone.
        return []
    if alive(leader):
        _signal([leader], signal.SIGTERM)
        if not sweep:
            _signal(_wait_gone([leader], grace_s), signal.SIGKILL)
            return _wait_gone([leader], 5.0)
        _wait_gone([leader], grace_s)
    if not sweep:
        return []
    rest = [p for p in session_members(leader) if p != os.getpid()]
    _signal(rest, signal.SIGTERM)
    rest = _wait_gone(rest, grace_s)
    # Members forked after the listing above (a worker starting while the raylet shut down) are caught here.
    rest = sorted(set(rest) | set(session_members(leader)) - {os.getpid()})
    _signal(rest, signal.SIGKILL)
    return _wait_gone(rest, 5.0)
