"""What one reconcile decision costs in CPU, against parsing the resource it decides about (the baseline).

Both run in this process, interleaved, so machine noise hits both alike; the figure that matters is the ratio.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from steward.api.model_deployment import ModelDeployment
from steward.operator.config import OperatorConfig
from steward.operator.core import decide
from steward.operator.observations import Observations, ResolvedModel, ServeApps, ServeState
from steward.operator.serve_config import TrafficPlan, plan_serve_apps

RAW: dict[str, Any] = {
    "apiVersion": "steward.io/v1alpha1",
    "kind": "ModelDeployment",
    "metadata": {"name": "credit", "namespace": "risk", "generation": 3},
    "spec": {
        "model": {"name": "credit-risk", "alias": "champion"},
        "serving": {"replicas": {"min": 1, "max": 4}},
    },
}


def _per_call_us(fn: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1e6


def measure(rounds: int = 7, calls: int = 2000) -> dict[str, float]:
    config = OperatorConfig(allow_insecure_ray=True)  # the default address is plain http
    md = ModelDeployment.model_validate(RAW)
    model = ResolvedModel("credit-risk", "7", "models:/credit-risk/7")
    plan = TrafficPlan.single(model.version, model.model_uri)
    router, version = plan_serve_apps(md, model.name, plan, config)
    serve = ServeApps(
        router=ServeState("RUNNING", deployed_config=router, ready_replicas=1),
        versions={model.version: ServeState("RUNNING", deployed_config=version, ready_replicas=1)},
    )
    running = Observations(model, serve)
    now = datetime(2026, 11, 23, tzinfo=UTC)
    settled = md.model_copy(update={"status": decide(md, running, config, now).status})

    baseline, steady = [], []
    for _ in range(rounds):
        baseline.append(_per_call_us(lambda: ModelDeployment.model_validate(RAW), calls))
        steady.append(_per_call_us(lambda: decide(settled, running, config, now), calls))
    parse_us, decide_us = statistics.median(baseline), statistics.median(steady)
    return {"parse_resource_us": parse_us, "decide_steady_state_us": decide_us, "ratio": decide_us / parse_us}


if __name__ == "__main__":
    result = measure()
    print(
        f"decide() at steady state: {result['decide_steady_state_us']:.1f} us per call; "
        f"parsing the resource: {result['parse_resource_us']:.1f} us; ratio {result['ratio']:.2f}x"
    )
