"""What Steward's serving path costs per request, against the same model behind a bare Serve deployment.

Starts its own local stack (MLflow + Ray, on free ports), registers the demo model and serves it twice on the
same Ray cluster: once as Steward's application (router -> model replica, error handling, version tag), once
as the baseline (one deployment, no router hop). Both get the same requests, interleaved in blocks so that
machine noise lands on both. Reports latency percentiles and throughput as ratios Steward / baseline.
"""

from __future__ import annotations

import json
import socket
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from steward.adapters.ray_serve import RayServeClient
from steward.api.model_deployment import ModelDeployment
from steward.dev.credit_model import FEATURES, applicants, register
from steward.dev.stack import Stack
from steward.operator.reconciler import Reconciler

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def serve_steward(
    stack: Stack, version: str, name: str = "bench", monitoring: dict[str, Any] | None = None
) -> str:
    spec: dict[str, Any] = {
        "model": {"name": "credit-risk", "version": version},
        "serving": {"resources": {"cpu": 0.5}, "maxOngoingRequests": 16},
    }
    if monitoring is not None:
        spec["monitoring"] = monitoring
    md = ModelDeployment.model_validate(
        {
            "apiVersion": "steward.io/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": name, "namespace": "default", "generation": 1},
            "spec": spec,
        }
    )
    reconciler = Reconciler(stack.operator_config(), ray_token=stack.ray_token())
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        decision = reconciler.reconcile(md, datetime.now(UTC), lambda *_: None)
        md = md.model_copy(update={"status": decision.status})
        if decision.status.phase.value == "Ready":
            return str(decision.status.endpoint)
        time.sleep(1)
    raise RuntimeError(f"Steward's app was not Ready: {md.status}")


def _serve_baseline(stack: Stack, version: str, client: RayServeClient) -> str:
    config = {
        "name": "baseline",
        "route_prefix": "/baseline",
        "import_path": "baseline_app:build",
        "args": {"model_uri": f"models:/credit-risk/{version}"},
        # Ray's declarative config takes only remote working_dirs; this folder is on the (local) node already.
        "runtime_env": {"env_vars": {"MLFLOW_TRACKING_URI": stack.tracking_uri, "PYTHONPATH": str(HERE)}},
        "deployments": [
            {"name": "BareModel", "max_ongoing_requests": 16, "ray_actor_options": {"num_cpus": 0.5}}
        ],
    }
    client.apply_application(config, stack.operator_config().http_options)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        app = client.get_application("baseline")
        if app is not None and app.status == "RUNNING":
            return f"{stack.serve_url}/baseline"
        if app is not None and app.status == "DEPLOY_FAILED":
            raise RuntimeError(f"baseline failed: {app.message} {app.deployment_messages}")
        time.sleep(1)
    raise RuntimeError("baseline app was not RUNNING in time")


def latencies_ms(http: httpx.Client, url: str, body: bytes, n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        response = http.post(url, content=body, headers={"content-type": "application/json"})
        out.append((time.perf_counter() - start) * 1000)
        if response.status_code != 200:
            raise RuntimeError(f"{url} answered {response.status_code}: {response.text[:300]}")
    return out


def _throughput_rps(url: str, body: bytes, n: int, concurrency: int) -> float:
    def one(_: int) -> int:
        with httpx.Client(timeout=30) as http:
            return http.post(url, content=body, headers={"content-type": "application/json"}).status_code

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        codes = list(pool.map(one, range(n)))
    if set(codes) != {200}:
        raise RuntimeError(f"{url}: non-200 answers under load: {sorted(set(codes))}")
    return n / (time.perf_counter() - start)


def measure(blocks: int = 6, per_block: int = 50, rows: int = 10) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="steward-bench-") as home:
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
            client = RayServeClient(stack.ray_address, stack.ray_token(), timeout_s=30)
            steward_url = serve_steward(stack, version)
            baseline_url = _serve_baseline(stack, version, client)
            records = applicants(rows, seed=3)[FEATURES].to_dict(orient="records")
            body = json.dumps({"dataframe_records": records}).encode()
            with httpx.Client(timeout=30) as http:
                latencies_ms(http, steward_url, body, 20)  # warm both paths
                latencies_ms(http, baseline_url, body, 20)
                steward_ms: list[float] = []
                baseline_ms: list[float] = []
                for _ in range(blocks):
                    steward_ms += latencies_ms(http, steward_url, body, per_block)
                    baseline_ms += latencies_ms(http, baseline_url, body, per_block)
            steward_rps = statistics.median(_throughput_rps(steward_url, body, 200, 8) for _ in range(3))
            baseline_rps = statistics.median(_throughput_rps(baseline_url, body, 200, 8) for _ in range(3))
        finally:
            stack.down()

    def summary(values: list[float]) -> dict[str, float]:
        return {"p50_ms": statistics.median(values), "p95_ms": percentile(values, 0.95),
                "p99_ms": percentile(values, 0.99)}  # fmt: skip

    s, b = summary(steward_ms), summary(baseline_ms)
    return {
        "requests_per_path": len(steward_ms),
        "rows_per_request": rows,
        "steward": {**s, "throughput_rps": steward_rps},
        "baseline": {**b, "throughput_rps": baseline_rps},
        "ratio": {
            **{k: s[k] / b[k] for k in s},
            "throughput_rps": steward_rps / baseline_rps,
        },
    }


if __name__ == "__main__":
    print(json.dumps(measure(), indent=2))
