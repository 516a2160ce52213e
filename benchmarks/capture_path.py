"""What capture at 100 % sampling adds to one request's own work, in-process: the same single-applicant
request scored with and without capture, in interleaved blocks, p50 difference with a bootstrap interval.

With capture, a request also has its sensitive fields split off, its id hashed for sampling, the class
probabilities computed (the version does that, for the record), and its record appended to the router's
bounded queue, while the writer thread turns full batches into Parquet in the same process (sharing the
GIL, as in a router replica). Without it, the same request is scored alone. This is the cost Steward's
code adds; the end-to-end figure through Ray Serve is arm (e) of `benchmarks.serving_fair`. Printed, never
asserted.

    uv run --frozen python -m benchmarks.capture_path [--requests 20000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from steward.api.monitoring import CaptureSpec
from steward.dev.credit_model import FEATURES, SENSITIVE, applicants, train
from steward.serving.capture import Captured, strip_sensitive
from steward.serving.capture_writer import RouterCapture
from steward.serving.scoring import score

BLOCK = 500


def pyfunc_model(root: Path) -> Any:
    import mlflow.pyfunc
    import mlflow.sklearn

    path = root / "model"
    mlflow.sklearn.save_model(train(applicants(2000, seed=7)), str(path))
    return mlflow.pyfunc.load_model(str(path))


def measure(requests: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="steward-capture-") as tmp:
        model = pyfunc_model(Path(tmp))
        spec = CaptureSpec.model_validate({"sampleRate": 1.0, "sensitiveFeatures": SENSITIVE})
        capture = RouterCapture("bench/credit")
        capture.reconfigure(spec, str(Path(tmp) / "store"), lambda: "replica-1")
        rows = applicants(200, seed=11)[FEATURES + SENSITIVE].to_dict(orient="records")
        payloads = [{"dataframe_records": [row]} for row in rows]

        # Without capture the router knows no sensitive fields: the caller sends the model's inputs only.
        bare_payloads = [{"dataframe_records": [{k: row[k] for k in FEATURES}]} for row in rows]

        def bare(payload: dict[str, Any]) -> None:
            answer = score(model, payload, "rid", with_proba=False)
            if answer.status != 200:
                raise RuntimeError(f"the baseline request failed: {answer.body}")

        def captured(payload: dict[str, Any]) -> None:
            rid = uuid.uuid4().hex
            at = time.time()
            body, sensitive = strip_sensitive(spec, payload)
            started = time.perf_counter()
            answer = score(model, body, rid, with_proba=capture.wants(spec, rid))
            if answer.status != 200:
                raise RuntimeError(f"the captured request failed: {answer.body}")
            latency_ms = (time.perf_counter() - started) * 1000
            capture.offer(
                spec, Captured(rid, at, "1", answer.status, latency_ms, body, sensitive, answer.body), 200
            )

        times: dict[str, list[float]] = {"bare": [], "capture": []}
        arms = {"bare": bare, "capture": captured}
        inputs = {"bare": bare_payloads, "capture": payloads}
        for _ in range(50):  # warm-up, excluded
            bare(bare_payloads[0])
            captured(payloads[0])
        for block in range(max(requests // BLOCK, 2)):
            for name in ("bare", "capture") if block % 2 == 0 else ("capture", "bare"):
                for i in range(BLOCK):
                    started = time.perf_counter()
                    arms[name](inputs[name][i % len(rows)])
                    times[name].append((time.perf_counter() - started) * 1000)
        capture.reconfigure(None, None, lambda: "replica-1")
        time.sleep(2)  # the last batch is written on the closing writer's thread
        written = sum(1 for _ in (Path(tmp) / "store").rglob("*.parquet"))
        counters = capture.counters.take()
    rng = np.random.default_rng(0)
    bare_ms, capture_ms = np.array(times["bare"]), np.array(times["capture"])
    diffs = [
        float(
            np.median(rng.choice(capture_ms, capture_ms.size)) - np.median(rng.choice(bare_ms, bare_ms.size))
        )
        for _ in range(500)
    ]
    return {
        "requests_per_arm": int(bare_ms.size),
        "bare_p50_ms": statistics.median(times["bare"]),
        "capture_p50_ms": statistics.median(times["capture"]),
        "added_p50_ms": statistics.median(times["capture"]) - statistics.median(times["bare"]),
        "added_p50_ci95_ms": [float(np.percentile(diffs, 2.5)), float(np.percentile(diffs, 97.5))],
        "bare_p99_ms": float(np.percentile(bare_ms, 99)),
        "capture_p99_ms": float(np.percentile(capture_ms, 99)),
        "records_written": counters.written,
        "records_dropped": counters.dropped,
        "parquet_files": written,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    figures = measure(parser.parse_args().requests)
    print(json.dumps(figures))
    print(
        f"capture at 100% adds {figures['added_p50_ms']:.3f} ms to a request's p50 "
        f"(95% interval {figures['added_p50_ci95_ms'][0]:.3f}..{figures['added_p50_ci95_ms'][1]:.3f}; "
        f"{figures['bare_p50_ms']:.3f} -> {figures['capture_p50_ms']:.3f} ms, "
        f"{figures['requests_per_arm']} requests an arm); {figures['records_written']} records written, "
        f"{figures['records_dropped']} dropped"
    )


if __name__ == "__main__":
    main()
