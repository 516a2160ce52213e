"""CPU seconds spent by the serving processes (Ray's and MLflow's) while an arm is under load, per process.

On a shared 2-core machine latency figures swing with whatever else runs, but the CPU an arm's processes burn
per request barely does, and on a machine where every core is busy it is what bounds throughput. Read from
/proc (user + system time); the load generator is left out (each run measures its own with process_time).
Processes are keyed by pid: Ray renames a worker's title while it runs a task (`ray::ServeController` then
`ray::ServeController.listen_for_change`).
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

TICKS_PER_S = os.sysconf("SC_CLK_TCK")
# Every process of the stack that can serve or route a request: Ray's workers (proxy, controller, replicas),
# its raylet and GCS, and MLflow's scoring server.
SERVER_MARKERS = ("ray::", "/raylet", "/gcs_server", "uvicorn", "mlflow")
TITLE_CHARS = 60


def snapshot() -> dict[int, tuple[float, str]]:
    """pid -> (CPU seconds so far, title) of the serving processes now running."""
    out: dict[int, tuple[float, str]] = {}
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            stat = (entry / "stat").read_text()
        except OSError:  # gone since the listing
            continue
        if not any(marker in title for marker in SERVER_MARKERS):
            continue
        fields = stat.rsplit(")", 1)[1].split()
        # Fields 14 and 15 of /proc/PID/stat (utime, stime), counted after the ")" that ends the command name.
        out[int(entry.name)] = ((int(fields[11]) + int(fields[12])) / TICKS_PER_S, _short(title))
    return out


def _short(title: str) -> str:
    if title.startswith("ray::"):
        # The task a Ray worker is running is not who it is: `ray::ServeController.listen_for_change`.
        name = title.split()[0]
        head, _, tail = name.rpartition(":")
        return (f"{head}:{tail.split('.')[0]}" if head else name)[:TITLE_CHARS]
    return title[:TITLE_CHARS]


@dataclass
class ServerCpu:
    """CPU seconds of the serving processes, summed over the runs measured for one arm."""

    cpu_s: float = 0.0
    by_process: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    requests: int = 0

    def measure_from(self, before: dict[int, tuple[float, str]], requests: int) -> None:
        after = snapshot()
        for pid, (cpu_s, title) in after.items():
            used = cpu_s - before.get(pid, (0.0, ""))[0]
            if used > 0:
                self.cpu_s += used
                self.by_process[title] += used
        self.requests += requests

    @property
    def ms_per_request(self) -> float:
        return self.cpu_s / self.requests * 1000 if self.requests else float("nan")

    def summary(self, top: int = 4) -> dict[str, object]:
        biggest = sorted(self.by_process.items(), key=lambda item: -item[1])[:top]
        return {
            "ms_per_request": self.ms_per_request,
            "requests": self.requests,
            "top_processes_ms_per_request": {
                title: used / self.requests * 1000 for title, used in biggest if self.requests
            },
        }
