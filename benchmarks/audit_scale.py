"""The audit trail at scale: `steward audit verify` and `steward history --since 24h` on a 1M-record trail.

Run:  uv run --frozen python -m benchmarks.audit_scale                 # builds 1M records in a temp folder
      uv run --frozen python -m benchmarks.audit_scale --records 100000 --keep /tmp/trail   # keep it to reuse
      uv run --frozen python -m benchmarks.run --audit-scale --only-scale

Goals (issue 10): verify within 30 s, history of the last day within 2 s. Building the trail takes a few
minutes and some 4 GB of disk (one file per record, as the local-folder store keeps them); it is removed
afterwards unless `--keep` names where to keep it, and a kept trail is reused when its size matches. Each
command runs in a fresh process, output to a pipe, and is reported twice: the command itself (after the
`steward` CLI's imports, which cost the same whatever the trail) and the wall time an auditor waits. The
baselines are measured in the same run on the same files: listing the folder and reading-and-hashing every
record file with sha256 in one process (the floor for a check that must read every record), the same spread
over the machine's cores (the floor for verify's parallel check), and listing it and reading the last day's
files (the floor for history). The machine's load average is reported with them: on a shared 2-core machine
the absolute times move with it, the ratios much less, and the CPU seconds (user + system, all processes)
least: they are reported for verify and its floors too.

The trail is written the way `LocalFolderStore.append` writes it (one `<seq, 12 digits>.json` per record,
pydantic's JSON of an `AuditRecord`, hash-chained and HMAC-signed), without pydantic or fsync per record so
that it builds in a minute; a sample is checked with the store's own parser and `record_hash` before timing.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from steward.audit.records import GENESIS, canonical, record_hash
from steward.audit.store import parse_record, record_name

NAMESPACE, NAME, UID = "risk", "credit-risk", "6f1c2a9e-8d4b-4c1e-9a57-3b2f0e1d7c44"
KEY = b"benchmark-audit-key"
SPAN_DAYS = 365  # a year of a busy deployment: monitor runs every ~30 s, rollouts now and then


def _timestamp(moment: datetime) -> str:
    """pydantic's JSON form of an aware UTC datetime (microseconds only when there are any)."""
    return moment.isoformat().replace("+00:00", "Z")


def _event(seq: int) -> dict[str, Any]:
    """A mix like a real trail's: mostly monitor runs, a rollout of four steps every 500 records."""
    phase = seq % 500
    version = str(3 + seq // 500)
    model = {"name": "credit-risk", "from_version": str(int(version) - 1), "to_version": version}
    if seq == 1:
        return {
            "action": "created",
            "model": None,
            "reason": "CR-1234 first release",
            "evidence": {"spec": {"model": {"name": "credit-risk", "alias": "champion"}}, "generation": 1},
            "actor": "alice@bank.example",
        }
    if phase in (1, 2, 3, 4):
        weight = (10, 50, 100, 100)[phase - 1]
        return {
            "action": "rollout-step" if phase < 4 else "promoted",
            "model": model,
            "reason": f"canary at {weight}%: error rate 0.21% <= 1%, p95 ratio 1.07 <= 1.5",
            "evidence": {
                "weight": weight,
                "requests": 1200 + seq % 97,
                "errorRate": 0.0021,
                "p95Ratio": 1.07,
            },
            "actor": "steward-operator",
        }
    return {
        "action": "monitor-run",
        "model": {"name": "credit-risk", "from_version": None, "to_version": version},
        "reason": "drift: 1 of 13 columns drifted (share 0.08 < 0.5)",
        "evidence": {
            "monitor": "drift",
            "window": f"w-{seq}",
            "report": f"s3://monitoring/risk/credit-risk/reports/drift-{seq}.html",
            "sha256": hashlib.sha256(str(seq).encode()).hexdigest(),
            "driftShare": 0.0769,
            "naïve": "ünïcödé stays UTF-8",
        },
        "actor": "steward-operator",
    }


def trail_records(count: int, end: datetime) -> Iterator[tuple[int, bytes]]:
    """(seq, file bytes) of a valid, signed chain whose last record is at `end`."""
    step_s = SPAN_DAYS * 86400 / count
    start = end - timedelta(seconds=step_s * (count - 1))
    prev = GENESIS
    for seq in range(1, count + 1):
        event = _event(seq)
        moment = start + timedelta(seconds=round(step_s * (seq - 1), 3))
        # Field order as pydantic writes an AuditRecord; the hash is over the canonical form either way.
        body = {
            "deployment": {"namespace": NAMESPACE, "name": NAME, "uid": UID},
            "actor": event["actor"],
            "action": event["action"],
            "model": event["model"],
            "reason": event["reason"],
            "evidence": event["evidence"],
            "cause": f"{event['action']}/{seq}",
            "seq": seq,
            "timestamp": _timestamp(moment),
            "prev_hash": prev,
        }
        digest = hashlib.sha256(canonical(body)).hexdigest()
        signature = hmac.new(KEY, digest.encode(), hashlib.sha256).hexdigest()
        record = {**body, "hash": digest, "signature": signature}
        yield seq, json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode()
        prev = digest


def build_trail(home: Path, count: int, end: datetime) -> Path:
    folder = home / "audit" / NAMESPACE / NAME
    folder.mkdir(parents=True, exist_ok=True)
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        for seq, data in trail_records(count, end):
            fd = os.open(record_name(seq), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444, dir_fd=dir_fd)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
    finally:
        os.close(dir_fd)
    return folder


def check_sample(folder: Path, count: int) -> None:
    """The records are what the store writes: its parser takes them and their hashes hold."""
    for seq in sorted({1, 2, 3, 4, 5, count // 2, count - 1, count}):
        path = folder / record_name(seq)
        record = parse_record(path.read_bytes(), str(path))
        if record.seq != seq or record_hash(record) != record.hash:
            raise SystemExit(f"benchmark trail is not valid at {path}")


def _read_files(folder: str, names: list[str]) -> int:
    total = 0
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        for name in names:
            fd = os.open(name, os.O_RDONLY, dir_fd=dir_fd)
            try:
                # One read of a page: the cheapest way measured to read a small file (a 64 KiB buffer, as
                # before, cost 4-6 us more a file, open(...).read() 8 us more), as the store now reads.
                chunks = [os.read(fd, 4096)]
                while len(chunks[-1]) == 4096:
                    chunks.append(os.read(fd, 4096))
                data = b"".join(chunks)
            finally:
                os.close(fd)
            hashlib.sha256(data).digest()
            total += len(data)
    finally:
        os.close(dir_fd)
    return total


def _names(folder: Path) -> list[str]:
    return sorted(n for n in os.listdir(folder) if n.endswith(".json"))  # noqa: PTH208 (names, not Paths)


def _cpu_s() -> float:
    """User + system CPU seconds of this process and of the children it has waited for."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def baseline_s(folder: Path, last: int | None = None) -> tuple[float, float]:
    """(seconds, CPU seconds) to list the folder and read-and-hash every record file (or the last `last`)."""
    cpu, started = _cpu_s(), time.perf_counter()
    names = _names(folder)
    _read_files(str(folder), names if last is None else names[-last:])
    return time.perf_counter() - started, _cpu_s() - cpu


def parallel_baseline_s(folder: Path, jobs: int) -> tuple[float, float]:
    """(seconds, CPU seconds) to list the folder and read-and-hash every file in `jobs` processes, one
    contiguous slice each: the floor for a check that reads every record on all the cores."""
    cpu, started = _cpu_s(), time.perf_counter()
    names = _names(folder)
    size = -(-len(names) // jobs)
    slices = [names[i : i + size] for i in range(0, len(names), size)]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(_read_files, [str(folder)] * len(slices), slices))
    return time.perf_counter() - started, _cpu_s() - cpu


# Runs the CLI in a fresh process and reports how long the command itself took, after the imports.
_TIMED_CLI = """
import sys, time
started = time.perf_counter()
from steward.cli.main import app
imported = time.perf_counter()
try:
    app(sys.argv[1:], standalone_mode=False)
finally:
    print(f"\\nSTEWARD-TIMES {imported - started:.3f} {time.perf_counter() - imported:.3f}", file=sys.stderr)
"""


def cli_s(*args: str) -> tuple[float, float, float, str, float]:
    """(wall time of the command as an auditor runs it, its imports, the command itself, last output line,
    CPU seconds of the whole process and its workers)."""
    cpu, started = _cpu_s(), time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _TIMED_CLI, *args], capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - started
    cpu = _cpu_s() - cpu
    if done.returncode != 0:
        raise SystemExit(f"steward {' '.join(args)} failed ({done.returncode}): {done.stdout}{done.stderr}")
    times = [line.split() for line in done.stderr.splitlines() if line.startswith("STEWARD-TIMES")]
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    return wall, float(times[-1][1]), float(times[-1][2]), (lines[-1] if lines else ""), cpu


def _load() -> float:
    return os.getloadavg()[0]


def measure(count: int = 1_000_000, keep: Path | None = None) -> dict[str, Any]:
    home = keep if keep is not None else Path(tempfile.mkdtemp(prefix="steward-audit-scale-"))
    folder = home / "audit" / NAMESPACE / NAME
    key_file = home / "audit.key"
    built_s = 0.0
    existing = len(os.listdir(folder)) if folder.exists() else 0  # noqa: PTH208
    if existing != count:
        if existing:
            raise SystemExit(
                f"{folder} holds {existing} records, not {count}: remove it or use another --keep"
            )
        started = time.perf_counter()
        build_trail(home, count, datetime.now(UTC) - timedelta(minutes=1))
        built_s = time.perf_counter() - started
    key_file.write_bytes(KEY)
    check_sample(folder, count)
    per_day = round(count / SPAN_DAYS)
    common = ("-n", NAMESPACE, "--home", str(home))
    load_before = _load()
    jobs = len(os.sched_getaffinity(0))
    # The baselines first and last, so a cold or a warm page cache does not favour either side.
    verify_base_s, verify_base_cpu_s = baseline_s(folder)
    parallel_base_s, parallel_base_cpu_s = parallel_baseline_s(folder, jobs)
    verify_wall_s, imports_s, verify_s, verify_out, verify_cpu_s = cli_s(
        "audit", "verify", NAME, *common, "--key-file", str(key_file)
    )
    history_base_s, _ = baseline_s(folder, per_day)
    history_wall_s, _, history_s, history_out, _ = cli_s("history", NAME, *common, "--since", "24h")
    history_base_s = min(history_base_s, baseline_s(folder, per_day)[0])
    result = {
        "records": count,
        "records_last_day": per_day,
        "build_s": round(built_s, 1),
        "load_avg_1m": [round(load_before, 2), round(_load(), 2)],
        "cores": jobs,
        "verify_s": round(verify_s, 2),
        "verify_wall_s": round(verify_wall_s, 2),
        "verify_cpu_s": round(verify_cpu_s, 2),  # the CLI's imports included
        "verify_baseline_read_sha256_s": round(verify_base_s, 2),
        "verify_baseline_cpu_s": round(verify_base_cpu_s, 2),
        "verify_ratio": round(verify_s / verify_base_s, 2),
        "verify_baseline_parallel_s": round(parallel_base_s, 2),
        "verify_baseline_parallel_cpu_s": round(parallel_base_cpu_s, 2),
        "verify_ratio_to_parallel": round(verify_s / parallel_base_s, 2),
        "verify_output": verify_out,
        "history_last_day_s": round(history_s, 2),
        "history_wall_s": round(history_wall_s, 2),
        "history_baseline_read_last_day_s": round(history_base_s, 3),
        "history_ratio": round(history_s / history_base_s, 1),
        "history_output_last_line": history_out[:120],
        "cli_imports_s": imports_s,
        "goals": {"verify_s": 30, "history_last_day_s": 2},
    }
    if keep is None:
        shutil.rmtree(home)  # a million files: not left behind in /tmp
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, default=None, help="build (or reuse) the trail under this home")
    args = parser.parse_args()
    result = measure(args.records, args.keep)
    print(json.dumps(result, indent=2))
    print(
        f"\naudit verify, {result['records']} records: {result['verify_s']:.1f} s (goal 30 s) = "
        f"{result['verify_ratio']:.1f}x reading and hashing every file in one process, "
        f"{result['verify_ratio_to_parallel']:.1f}x on {result['cores']} cores"
        f"\n  CPU: verify {result['verify_cpu_s']:.1f} s, reading and hashing "
        f"{result['verify_baseline_cpu_s']:.1f} s (load {result['load_avg_1m']})"
        f"\nhistory --since 24h ({result['records_last_day']} records shown): "
        f"{result['history_last_day_s']:.2f} s (goal 2 s) = "
        f"{result['history_ratio']:.1f}x reading the last day's files"
    )


if __name__ == "__main__":
    main()
