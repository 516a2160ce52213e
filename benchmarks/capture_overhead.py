"""What capture at 100 % sampling adds to a request (goal: <= +0.5 ms p50), measured side by side in one run.

Two Steward deployments of the same registered version on one local stack, identical but for
`spec.monitoring.capture` (sampleRate 1.0, a sensitive feature split off, class probabilities recorded):
single-row `dataframe_records` requests from one keep-alive client, arms interleaved in blocks so machine
noise lands on both, warm-up excluded. Reports p50/p99 per arm, the p50 difference with a bootstrap 95 %
interval, and the rows the capture store received (a capture arm that recorded nothing would measure nothing).

    uv run --frozen python -m benchmarks.capture_overhead [--blocks 10 --per-block 200]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import pandas as pd

from benchmarks.router_overhead import free_port, latencies_ms, percentile, serve_steward
from steward.dev.credit_model import FEATURES, applicants, register
from steward.dev.stack import Stack

CAPTURE = {"capture": {"sampleRate": 1.0, "sensitiveFeatures": ["gender"]}}


def bootstrap_p50_difference_ms(
    treated: list[float], control: list[float], draws: int = 2000, seed: int = 1
) -> tuple[float, float]:
    """95 % interval of median(treated) - median(control), resampling each arm with replacement."""
    rng = random.Random(seed)
    diffs = sorted(
        statistics.median(rng.choices(treated, k=len(treated)))
        - statistics.median(rng.choices(control, k=len(control)))
        for _ in range(draws)
    )
    return diffs[int(0.025 * draws)], diffs[int(0.975 * draws) - 1]


def captured_rows(root: Path) -> int:
    return sum(len(pd.read_parquet(path)) for path in root.rglob("*.parquet"))


def measure(blocks: int = 10, per_block: int = 200) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="steward-bench-capture-") as home:
        stack = Stack(
            home=Path(home),
            mlflow_port=free_port(),
            ray_gcs_port=free_port(),
            ray_dashboard_port=free_port(),
            serve_port=free_port(),
        )
        stack.up(with_loop=False)
        try:
            version = register(stack.tracking_uri, "credit-risk", n=2000)
            plain_url = serve_steward(stack, version, "plain")
            capture_url = serve_steward(stack, version, "captured", CAPTURE)
            record = applicants(1, seed=3)[FEATURES].to_dict(orient="records")[0]
            body = json.dumps({"dataframe_records": [{**record, "gender": "f"}]}).encode()
            plain_ms: list[float] = []
            capture_ms: list[float] = []
            with httpx.Client(timeout=30) as http:
                latencies_ms(http, plain_url, body, 100)  # warm-up, excluded
                latencies_ms(http, capture_url, body, 100)
                for block in range(blocks):
                    # Alternate which arm goes first: a drift in machine load lands on both equally.
                    first, second = (plain_ms, capture_ms) if block % 2 == 0 else (capture_ms, plain_ms)
                    urls = (plain_url, capture_url) if block % 2 == 0 else (capture_url, plain_url)
                    first += latencies_ms(http, urls[0], body, per_block)
                    second += latencies_ms(http, urls[1], body, per_block)
            time.sleep(5)  # the router writes its buffer every 2 s
            rows = captured_rows(Path(home) / "monitoring" / "default" / "captured")
        finally:
            stack.down()
    low, high = bootstrap_p50_difference_ms(capture_ms, plain_ms)
    p50_plain, p50_capture = statistics.median(plain_ms), statistics.median(capture_ms)
    return {
        "requests_per_arm": len(plain_ms),
        "captured_rows": rows,
        "plain": {"p50_ms": p50_plain, "p99_ms": percentile(plain_ms, 0.99)},
        "capture": {"p50_ms": p50_capture, "p99_ms": percentile(capture_ms, 0.99)},
        "p50_overhead_ms": p50_capture - p50_plain,
        "p50_overhead_ci95_ms": [low, high],
        "ratio_p50": p50_capture / p50_plain,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--blocks", type=int, default=10)
    parser.add_argument("--per-block", type=int, default=200)
    args = parser.parse_args()
    print(json.dumps(measure(args.blocks, args.per_block), indent=2))
