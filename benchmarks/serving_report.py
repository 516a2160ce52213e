"""Figures of the fair serving benchmark: percentiles, bootstrap intervals of differences, the machine's load.

Every comparison is between two arms of the same run; intervals resample each arm's requests with replacement.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.loadgen import Run

DRAWS = 1000
CHUNK = 100


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    a = np.asarray(values)
    return {f"p{q}_ms": float(np.percentile(a, q)) for q in (50, 90, 99)}


def bootstrap_difference(
    treated: list[float], control: list[float], q: float, seed: int = 1
) -> dict[str, float] | None:
    """The q-th percentile of `treated` minus that of `control`, with a 95 % bootstrap interval."""
    if not treated or not control:
        return None
    rng = np.random.default_rng(seed)
    t, c = np.asarray(treated), np.asarray(control)
    diffs: list[np.ndarray[Any, Any]] = []
    for _ in range(DRAWS // CHUNK):
        dt = np.percentile(rng.choice(t, (CHUNK, len(t))), q, axis=1)
        dc = np.percentile(rng.choice(c, (CHUNK, len(c))), q, axis=1)
        diffs.append(dt - dc)
    all_diffs = np.concatenate(diffs)
    return {
        "ms": float(np.percentile(t, q) - np.percentile(c, q)),
        "ci95_low_ms": float(np.percentile(all_diffs, 2.5)),
        "ci95_high_ms": float(np.percentile(all_diffs, 97.5)),
    }


def summary(run: Run) -> dict[str, Any]:
    return {
        "answered": run.answered,
        "errors": {str(k): v for k, v in sorted(run.errors.items())},
        "not_sent": run.not_sent,
        "abandoned": run.abandoned,
        **percentiles(run.latencies_ms),
    }


def throughput(run: Run) -> float:
    return run.answered / run.wall_s if run.wall_s else 0.0


def compare(arm: Run, base: Run) -> dict[str, Any]:
    """`arm` against `base` under the same open-loop load: overhead in ms with intervals, and ratios."""
    out: dict[str, Any] = {}
    for q in (50, 99):
        diff = bootstrap_difference(arm.latencies_ms, base.latencies_ms, q)
        if diff is None:
            continue
        out[f"p{q}_overhead"] = diff
        out[f"p{q}_ratio"] = float(np.percentile(arm.latencies_ms, q) / np.percentile(base.latencies_ms, q))
    return out


@dataclass
class MachineLoad:
    """/proc/loadavg at both ends and the share of the machine's CPU that was busy in between (all
    processes: the server, the generator and anyone else on the machine)."""

    loadavg_start: str
    busy_start: tuple[int, int]
    started: float

    @classmethod
    def start(cls) -> MachineLoad:
        return cls(_loadavg(), _cpu_ticks(), time.monotonic())

    def end(self) -> dict[str, Any]:
        busy, total = _cpu_ticks()
        busy0, total0 = self.busy_start
        return {
            "loadavg_start": self.loadavg_start,
            "loadavg_end": _loadavg(),
            "machine_busy_cores": (busy - busy0) / max(1, total - total0) * (os.cpu_count() or 1),
            "wall_s": time.monotonic() - self.started,
        }


def _loadavg() -> str:
    return Path("/proc/loadavg").read_text().strip()


def _cpu_ticks() -> tuple[int, int]:
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])
    return total - idle, total
