"""`make bench`: every benchmark, each reported as a ratio against a baseline measured in the same run.

Results go to stdout and to benchmarks/results/latest.json. The scale benchmarks take minutes each and are
run only when asked for: `python -m benchmarks.run --audit-scale --operator-scale` (add `--only-scale` to skip
the others). `make bench` runs `decide()`'s cost and the fair serving benchmark (benchmarks/serving_fair.py,
about half an hour on 2 cores; `make bench BENCH_ARGS=--quick` for a smoke run of a few minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from datetime import UTC, datetime
from pathlib import Path

from benchmarks import decide_cost, serving_fair


def main() -> None:
    parser = argparse.ArgumentParser(description="Steward's benchmarks")
    parser.add_argument("--audit-scale", action="store_true", help="audit verify/history on 1M records")
    parser.add_argument("--operator-scale", action="store_true", help="500 ModelDeployments on one operator")
    parser.add_argument("--only-scale", action="store_true", help="run only the scale benchmarks asked for")
    parser.add_argument("--quick", action="store_true", help="serving: a smoke run only")
    parser.add_argument("--ray-env", action="append", default=[], metavar="KEY=VALUE", help="Ray flags")
    args = parser.parse_args()
    results: dict[str, object] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
    if args.audit_scale:
        from benchmarks import audit_scale

        results["audit_scale"] = audit_scale.measure()
    if args.operator_scale:
        from benchmarks import operator_scale

        results["operator_scale"] = operator_scale.run()
    if args.only_scale:
        _write(results)
        return
    d = decide_cost.measure()
    serving = serving_fair.measure(args.quick, dict(item.split("=", 1) for item in args.ray_env))
    results["decide_cost"], results["serving_fair"] = d, serving
    _write(results)
    print(f"\ndecide(): {d['decide_steady_state_us']:.0f} us/call = {d['ratio']:.2f}x parsing the resource")
    print(serving_fair.headline(serving))


def _write(results: dict[str, object]) -> None:
    out = Path(__file__).resolve().parent / "results" / "latest.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
