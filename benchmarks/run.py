"""`make bench`: every benchmark, each reported as a ratio against a baseline measured in the same run.

Results go to stdout and to benchmarks/results/latest.json.
"""

from __future__ import annotations

import json
import os
import platform
from datetime import UTC, datetime
from pathlib import Path

from benchmarks import decide_cost, router_overhead


def main() -> None:
    results = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "decide_cost": decide_cost.measure(),
        "router_overhead": router_overhead.measure(),
    }
    out = Path(__file__).resolve().parent / "results" / "latest.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    d, r = results["decide_cost"], results["router_overhead"]["ratio"]
    print(
        f"\ndecide(): {d['decide_steady_state_us']:.0f} us/call = {d['ratio']:.2f}x parsing the resource"
        f"\nserving path vs bare Serve deployment: p50 {r['p50_ms']:.2f}x, p99 {r['p99_ms']:.2f}x, "
        f"throughput {r['throughput_rps']:.2f}x"
    )


if __name__ == "__main__":
    main()
