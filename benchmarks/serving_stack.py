"""One local stack with every arm of the serving benchmark deployed on it, side by side.

The only place the serving benchmarks set up MLflow, Ray and the arms (`serving_fair` uses it). Every Ray arm
runs on the same Ray cluster (the same environment flags), its model replicas with the same CPU share and the
same `max_ongoing_requests`, one replica each; `mlflow models serve` gets the same number of workers (one).

Steward's arms are deployed from the operator's own plan (`plan_serve_apps`), as the operator would deploy
them, so that a change in what the operator plans shows in the figures.

With Ray Serve's direct ingress on (`RAY_SERVE_ENABLE_DIRECT_INGRESS=1`, or
`RAY_SERVE_THROUGHPUT_OPTIMIZED=1`), each application's ingress replica listens on a port of its own and no
proxy sits in the request path; the arms are then called on those ports, read from the target groups that
Serve's REST API reports (what HAProxy or a load balancer in front of the cluster would be given).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pandas as pd

from steward.adapters.ray_serve import RayServeClient
from steward.api.model_deployment import ModelDeployment
from steward.api.serve_app import STATS_PATH, RouterConfig, TrafficStats, router_access
from steward.dev.credit_model import register
from steward.dev.stack import Stack
from steward.operator.reconciler import with_router_secret
from steward.operator.serve_config import TrafficPlan, plan_serve_apps

HERE = Path(__file__).resolve().parent
MODEL = "credit-risk"
# A logical share (Ray does not pin cores): six model replicas must fit the stack's 2 logical CPUs.
CPU_PER_REPLICA = 0.25
CAPTURE = {"capture": {"sampleRate": 1.0, "sensitiveFeatures": ["gender"]}}
# Nine applications on a loaded 2-core machine took longer than 300 s (load 30, 2026-11-24).
READY_TIMEOUT_S = 900.0


def is_direct_ingress(ray_env: dict[str, str]) -> bool:
    """Ray's own rule: the throughput-optimised preset turns direct ingress on unless it is set apart."""
    default = "1" if ray_env.get("RAY_SERVE_THROUGHPUT_OPTIMIZED") == "1" else "0"
    return ray_env.get("RAY_SERVE_ENABLE_DIRECT_INGRESS", default) == "1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(frozen=True)
class Arm:
    name: str
    url: str  # http://127.0.0.1:PORT/path
    capture: bool = False  # its requests carry the sensitive field that capture splits off


@dataclass
class ServingStack:
    home: Path
    max_ongoing_requests: int = 16
    ray_env: dict[str, str] = field(default_factory=dict)
    # A lever measured in the same run: arm 'one-router-mor' is (c) with this on its router deployment.
    router_max_ongoing: int | None = None
    arms: dict[str, Arm] = field(default_factory=dict)
    # Arms whose router scores the stable version itself -> the read token of their figures.
    in_router_tokens: dict[str, str] = field(default_factory=dict)
    _stack: Stack | None = None
    _mlflow_serve: subprocess.Popen[bytes] | None = None

    # ------------------------------------------------------------------------------------ lifecycle

    def up(self) -> None:
        self._stack = Stack(
            home=self.home,
            mlflow_port=free_port(),
            ray_gcs_port=free_port(),
            ray_dashboard_port=free_port(),
            serve_port=free_port(),
            env=dict(self.ray_env),
        )
        self._stack.up(with_loop=False)
        stable = register(self._stack.tracking_uri, MODEL, n=2000)
        canary = register(self._stack.tracking_uri, MODEL, n=2000, seed=8)
        client = RayServeClient(self._stack.ray_address, self._stack.ray_token(), timeout_s=30)
        try:
            self._deploy(client, stable, canary)
        finally:
            client.close()
        self.arms["mlflow"] = self._start_mlflow_serve(stable)

    def down(self) -> None:
        failures: list[str] = []
        if self._mlflow_serve is not None and self._mlflow_serve.poll() is None:
            # Its own session: the uvicorn workers it forks go with it.
            os.killpg(self._mlflow_serve.pid, signal.SIGTERM)
            try:
                self._mlflow_serve.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self._mlflow_serve.pid, signal.SIGKILL)
                failures.append("mlflow models serve did not stop on SIGTERM")
        if self._stack is not None:
            self._stack.down()
        if failures:
            raise RuntimeError("; ".join(failures))

    def __enter__(self) -> ServingStack:
        try:
            self.up()
        except BaseException:
            self.down()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    @property
    def stack(self) -> Stack:
        assert self._stack is not None, "up() first"
        return self._stack

    # ---------------------------------------------------------------------------------------- arms

    def _deploy(self, client: RayServeClient, stable: str, canary: str) -> None:
        stack = self.stack
        # With the router secret the control loop derives, so that the arms' figures can be read.
        config = with_router_secret(stack.operator_config(), stack.ray_token())
        uri = {v: f"models:/{MODEL}/{v}" for v in (stable, canary)}
        env_vars = {**self.ray_env, "MLFLOW_TRACKING_URI": stack.tracking_uri, "PYTHONPATH": str(HERE)}
        env = {"env_vars": env_vars}
        model_options = {
            "max_ongoing_requests": self.max_ongoing_requests,
            "ray_actor_options": {"num_cpus": CPU_PER_REPLICA},
        }
        apps: list[dict[str, Any]] = [
            {
                "name": "bare",
                "route_prefix": "/bare",
                "import_path": "baseline_app:build",
                "args": {"model_uri": uri[stable]},
                "runtime_env": env,
                "deployments": [{"name": "BareModel", **model_options}],
            },
            {
                "name": "passthrough",
                "route_prefix": "/passthrough",
                "import_path": "baseline_app:build_passthrough",
                "args": {"model_name": MODEL, "version": stable, "model_uri": uri[stable]},
                "runtime_env": env,
                "deployments": [
                    # The hop costs no CPU reservation, like Steward's router.
                    {"name": "PassThrough", "max_ongoing_requests": self.max_ongoing_requests,
                     "ray_actor_options": {"num_cpus": 0.0}},
                    {"name": "Model", **model_options},
                ],
            },
        ]  # fmt: skip
        one = TrafficPlan.single(stable, uri[stable])
        split = TrafficPlan(versions=uri, weights={stable: 90, canary: 10}, stable=stable)
        self.arms["bare"] = Arm("bare", f"{stack.serve_url}/bare")
        self.arms["passthrough"] = Arm("passthrough", f"{stack.serve_url}/passthrough")
        arms = [("one", one, None), ("canary", split, None), ("captured", one, CAPTURE)]
        if self.router_max_ongoing is not None:
            arms.append(("one-router-mor", one, None))
        for name, plan, monitoring in arms:
            resource = self._resource(name, monitoring)
            planned = plan_serve_apps(resource, MODEL, plan, config)
            if name == "one-router-mor":
                planned[0]["deployments"][0]["max_ongoing_requests"] = self.router_max_ongoing
            if RouterConfig.model_validate(planned[0]["deployments"][0]["user_config"]).in_router is not None:
                assert config.router_secret is not None
                self.in_router_tokens[name] = router_access(config.router_secret, resource.key).read_token
            apps += planned
            self.arms[name] = Arm(name, f"{stack.serve_url}/default/{name}", capture=monitoring is not None)
        client.apply_applications(apps, set(), config.http_options)
        self._wait_running(client, {app["name"] for app in apps})
        self._wait_loaded_in_router()
        if is_direct_ingress(self.ray_env):
            self._route_direct(client)

    def _route_direct(self, client: RayServeClient) -> None:
        """Point every Ray arm at its ingress replica's own port instead of the proxy."""
        proxy = httpx.URL(self.stack.serve_url)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            ports: dict[str, int] = {}
            for group in client.instance().get("target_groups") or []:
                targets = [t for t in group["targets"] if t["port"] != proxy.port]
                if group["protocol"] == "HTTP" and len(targets) == 1:
                    ports[group["route_prefix"]] = targets[0]["port"]
            arms = {name: httpx.URL(arm.url) for name, arm in self.arms.items()}
            if all(url.path in ports for url in arms.values()):
                break
            if time.monotonic() > deadline:
                missing = sorted(name for name, url in arms.items() if url.path not in ports)
                raise RuntimeError(f"arms {missing}: no direct-ingress port in {READY_TIMEOUT_S:.0f} s")
            time.sleep(1)
        for name, url in arms.items():
            # Replicas bind the cluster's HTTP host (127.0.0.1 here), not the node address they report.
            self.arms[name] = Arm(name, str(url.copy_with(port=ports[url.path])), self.arms[name].capture)

    def in_router_figures(self, name: str) -> dict[str, Any] | None:
        """The arm's in-router counts (answers, loads, fallbacks); None if it has none or is unreadable."""
        headers = {"Authorization": f"Bearer {self.in_router_tokens[name]}"}
        response = httpx.get(self.arms[name].url + STATS_PATH, headers=headers, timeout=30)
        if not response.is_success:
            return None
        stats = TrafficStats.model_validate_json(response.content)
        return None if stats.in_router is None else stats.in_router.model_dump(mode="json")

    def _wait_loaded_in_router(self) -> None:
        """A router loads the stable model in the background after it runs; until then it forwards. Measure
        what it serves once loaded, not the switch."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        waiting = set(self.in_router_tokens)
        while waiting and time.monotonic() < deadline:
            for name in sorted(waiting):
                figures = self.in_router_figures(name)
                if figures is not None and figures["loads"] >= 1:
                    waiting.discard(name)
                elif figures is not None and figures["load_failures"]:
                    raise RuntimeError(f"arm {name}: the router could not load: {figures['last_error']}")
            time.sleep(1)
        if waiting:
            raise RuntimeError(
                f"arms {sorted(waiting)}: stable not loaded in the router in {READY_TIMEOUT_S} s"
            )

    def _resource(self, name: str, monitoring: dict[str, Any] | None) -> ModelDeployment:
        spec: dict[str, Any] = {
            "model": {"name": MODEL, "version": "1"},
            "serving": {
                "resources": {"cpu": CPU_PER_REPLICA},
                "maxOngoingRequests": self.max_ongoing_requests,
            },
        }
        if monitoring is not None:
            spec["monitoring"] = monitoring
        return ModelDeployment.model_validate(
            {
                "apiVersion": "steward.io/v1alpha1",
                "kind": "ModelDeployment",
                "metadata": {"name": name, "namespace": "default", "generation": 1},
                "spec": spec,
            }
        )

    def _wait_running(self, client: RayServeClient, names: set[str]) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            apps = client.applications()
            failed = {n: apps[n].message for n in names if n in apps and apps[n].status == "DEPLOY_FAILED"}
            if failed:
                raise RuntimeError(f"applications failed to deploy: {failed}")
            if all(n in apps and apps[n].status == "RUNNING" for n in names):
                return
            time.sleep(2)
        statuses = {n: (apps[n].status, apps[n].message) if n in apps else None for n in sorted(names)}
        raise RuntimeError(f"applications not RUNNING within {READY_TIMEOUT_S:.0f} s: {statuses}")

    def _start_mlflow_serve(self, version: str) -> Arm:
        port = free_port()
        argv = [
            str(Path(sys.executable).parent / "mlflow"), "models", "serve",
            "-m", f"models:/{MODEL}/{version}", "-h", "127.0.0.1", "-p", str(port),
            "-w", "1", "--env-manager", "local",
        ]  # fmt: skip
        log = (self.home / "mlflow-serve.log").open("ab")
        self._mlflow_serve = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "MLFLOW_TRACKING_URI": self.stack.tracking_uri},
            start_new_session=True,
        )
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._mlflow_serve.poll() is not None:
                raise RuntimeError(f"mlflow models serve exited; see {self.home / 'mlflow-serve.log'}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ping", timeout=2).status_code == 200:
                    return Arm("mlflow", f"http://127.0.0.1:{port}/invocations")
            except httpx.TransportError:
                pass  # not listening yet
            time.sleep(1)
        raise RuntimeError("mlflow models serve did not answer /ping in time")

    # ------------------------------------------------------------------------------------- evidence

    def captured_rows(self) -> int:
        root = self.home / "monitoring" / "default" / "captured"
        return sum(len(pd.read_parquet(path)) for path in root.rglob("*.parquet"))
