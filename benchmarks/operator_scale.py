"""500 ModelDeployments on one operator process: CPU, memory, API traffic, start-up and reaction time.

Run:  uv run --frozen python -m benchmarks.operator_scale             # 500 objects, two arms, some minutes
      uv run --frozen python -m benchmarks.operator_scale --arm default   # arms: STEWARD_RAY_LIST_MAX_AGE_S
      uv run --frozen python -m benchmarks.run --operator-scale --only-scale

The operator runs as in its container (Kopf, `steward.operator.handlers`) in a process of its own, against
kmock's Kubernetes emulator, a fake Ray dashboard and a fake MLflow registry, both small aiohttp apps on
127.0.0.1 in this process that answer what `steward/adapters/ray_serve.py` and `mlflow_registry.py` call and
count their calls. Measured: the first start (every object created, none with a status, until all are Ready);
then, for each arm (by default a Ray list read on every pass, STEWARD_RAY_LIST_MAX_AGE_S=0, against the
default: objects at rest share one read per cluster per resync interval and a pinned version's MLflow answer
for 300 s, objects in motion read afresh), a restart (resuming the objects, until each has been passed
once: its model resolved in MLflow), then at steady state over `--steady-s`: the operator's CPU (cores)
and RSS, and calls per second to Kubernetes, Ray and MLflow; then spec changes, one object at a time, and
the time until each reached Ray (p50, p99).
Goals (issue 10): <= 0.1 core, <= 300 MB, at most one Ray list read per cluster per resync, a spec change
acted on within 2 s p99, start-up within 60 s. Kopf runs with scanning and event posting off, as in the
integration tests (kmock serves neither CRD discovery nor checks events). kmock's own cost grows with the
requests it has served (see RecentRequests) and it shares this process with the fakes and the 2 cores with
the operator: the operator's CPU is its own process's, from /proc.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web

NS = "scale"
RESOURCE = "steward.io/v1alpha1/modeldeployments"
BASE = f"/apis/steward.io/v1alpha1/namespaces/{NS}/modeldeployments"


class RecentRequests(list[Any]):
    """kmock's request log, keeping only the latest requests. kmock matches each request by scanning every
    request it has recorded (`request in source`, for its test assertions), which makes a run of tens of
    thousands of requests quadratic: 1.3 s per GET after a few thousand. The benchmark needs only a count."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def append(self, request: Any) -> None:
        self.total += 1
        super().append(request)
        if len(self) > 64:
            del self[:-16]  # the newest, which is being matched right now, stays


class FakeRay:
    """The Serve REST API: PUT replaces the list; every application deployed is at once RUNNING."""

    def __init__(self) -> None:
        self.apps: dict[str, dict[str, Any]] = {}
        self.calls: Counter[str] = Counter()
        self.changed: list[tuple[float, str]] = []  # (when, app) for every app a PUT added or changed
        self._body = b""
        self._encode()

    def _encode(self) -> None:
        # Encoded once per change: the fake must not be what costs CPU on a 2-core machine.
        body = {"applications": self.apps, "http_options": {"host": "127.0.0.1", "port": 8000}}
        self._body = json.dumps(body).encode()

    async def handle(self, request: web.Request) -> web.Response:
        self.calls[request.method] += 1
        if request.method == "GET":
            return web.Response(body=self._body, content_type="application/json")
        if request.method == "PUT":
            configs = (await request.json())["applications"]
            now = time.monotonic()
            new = {c["name"]: _running(c) for c in configs}
            for name, app in new.items():
                if self.apps.get(name, {}).get("deployed_app_config") != app["deployed_app_config"]:
                    self.changed.append((now, name))
            self.apps = new
        elif request.method == "DELETE":
            self.apps = {}
        self._encode()
        return web.Response(body=b"{}", content_type="application/json")


def _running(config: dict[str, Any]) -> dict[str, Any]:
    deployments = {
        d["name"]: {"status": "HEALTHY", "message": "", "replicas": [{"state": "RUNNING"}]}
        for d in config.get("deployments") or []
    }
    return {"status": "RUNNING", "message": "", "deployed_app_config": config, "deployments": deployments}


class FakeMlflow:
    """The registry calls of MlflowRegistry: every model has versions 1 and 2, alias champion -> 1."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.resolved: dict[str, float] = {}  # model -> last time it was resolved

    async def handle(self, request: web.Request) -> web.Response:
        path = request.match_info["path"]
        self.calls[path] += 1
        if path == "model-versions/set-tag":
            return web.json_response({})
        name = request.query.get("name", "")
        if path in ("model-versions/get", "registered-models/alias"):
            self.resolved[name] = time.monotonic()
            version = request.query.get("version", "1")
            if version not in ("1", "2"):
                return web.json_response(
                    {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no"}, status=404
                )
            return web.json_response(
                {
                    "model_version": {
                        "version": version,
                        "source": f"s3://models/{name}/{version}",
                        "run_id": "r1",
                    }
                }
            )
        if path == "registered-models/get":
            return web.json_response({"registered_model": {"name": name}})
        return web.json_response({"model_versions": [{"version": "2"}, {"version": "1"}]})


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


def manifest(i: int) -> dict[str, Any]:
    return {
        "apiVersion": "steward.io/v1alpha1",
        "kind": "ModelDeployment",
        # kmock assigns neither: Kopf keys each object's daemon by uid, and its patches test resourceVersion.
        "metadata": {
            "name": f"md-{i:04d}",
            "namespace": NS,
            "resourceVersion": "1",
            "uid": str(uuid.uuid4()),
        },
        "spec": {
            "model": {"name": f"model-{i:04d}", "version": "1"},
            "serving": {"resources": {"cpu": 0.25}, "replicas": {"min": 1, "max": 1}},
        },
    }


class Operator:
    """The operator in a child process, as in its container; CPU and RSS from /proc."""

    def __init__(self, api_url: str, env: dict[str, str], log: Path) -> None:
        self.log = log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.operator_scale", "--child", api_url],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")

    async def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)  # Kopf stops gracefully on SIGINT
        try:
            await asyncio.to_thread(self.proc.wait, 60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            await asyncio.to_thread(self.proc.wait, 10)
        self.log.close()


async def phases(http: httpx.AsyncClient) -> Counter[str]:
    try:
        items = (await http.get(BASE)).json()["items"]
    except httpx.TimeoutException:
        return Counter()  # the emulator is busy serving the operator: ask again

    return Counter(((o.get("status") or {}).get("phase") or "-") for o in items)


async def until(check: Any, timeout_s: float, every_s: float = 0.5) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if await check():
            return time.monotonic() - started
        await asyncio.sleep(every_s)
    raise TimeoutError


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def measure(objects: int, steady_s: float, changes: int, arms: list[float | None]) -> dict[str, Any]:
    """One first start, then per arm (a value of STEWARD_RAY_LIST_MAX_AGE_S; None: the default) a restart
    of the operator resuming every object, its steady state and its spec changes: arms side by side."""
    from kmock import KubernetesEmulator, Server

    ray, mlflow = FakeRay(), FakeMlflow()
    ray_app, mlflow_app = web.Application(), web.Application()
    ray_app.router.add_route("*", "/api/serve/applications/", ray.handle)
    mlflow_app.router.add_route("*", "/api/2.0/mlflow/{path:.*}", mlflow.handle)
    (ray_runner, ray_url), (mlflow_runner, mlflow_url) = await serve(ray_app), await serve(mlflow_app)
    work = Path(tempfile.mkdtemp(prefix="steward-operator-scale-"))
    env = {
        **os.environ,
        "STEWARD_RAY_ADDRESS": ray_url,
        "STEWARD_ALLOW_INSECURE_RAY": "1",
        "MLFLOW_TRACKING_URI": mlflow_url,
        "STEWARD_AUDIT_DIR": str(work / "audit"),
    }
    resync_s = float(env.get("STEWARD_RESYNC_INTERVAL_S", "15"))
    result: dict[str, Any] = {"objects": objects, "resync_interval_s": resync_s, "operator_log": str(work)}
    async with KubernetesEmulator() as kmock, Server(kmock):
        kmock._requests = requests = RecentRequests()
        api_url = str(kmock.url).rstrip("/")
        kmock.resources.load_bundled()
        resource = kmock.resources[RESOURCE]
        resource.kind = "ModelDeployment"
        resource.namespaced = True
        resource.verbs = {"list", "watch", "get", "patch", "create", "delete"}
        resource.subresources = {"status"}
        async with httpx.AsyncClient(base_url=api_url, timeout=120) as http:
            for i in range(objects):
                (await http.post(BASE, json=manifest(i))).raise_for_status()

            async def all_ready() -> bool:
                return (await phases(http))["Ready"] == objects

            operator = Operator(api_url, env, work / "first-start.log")
            try:
                result["first_start_all_ready_s"] = round(await until(all_ready, 1800, 2.0), 1)
            except TimeoutError:
                result["first_start_phases"] = dict(await phases(http))
                raise SystemExit(f"not all Ready after 1800 s: {result}") from None
            finally:
                await operator.stop()
            for n, max_age_s in enumerate(arms):
                arm_env = (
                    {**env, "STEWARD_RAY_LIST_MAX_AGE_S": str(max_age_s)} if max_age_s is not None else env
                )
                label = f"ray_list_max_age_{'default' if max_age_s is None else max_age_s}"
                restarted = time.monotonic()
                operator = Operator(api_url, arm_env, work / f"{label}.log")

                async def all_passed(restarted: float = restarted) -> bool:
                    return sum(1 for t in mlflow.resolved.values() if t > restarted) == objects

                arm: dict[str, Any] = {}
                try:
                    arm["restart_all_passed_s"] = round(await until(all_passed, 900, 0.2), 1)
                    await asyncio.sleep(max(resync_s, 10))  # let the start-up burst pass
                    arm.update(await steady(operator, requests, ray, mlflow, steady_s, resync_s))
                    arm.update(await spec_changes(http, ray, changes, objects, 100 * n))
                finally:
                    await operator.stop()
                result[label] = arm
    await ray_runner.cleanup()
    await mlflow_runner.cleanup()
    return result


async def steady(
    operator: Operator,
    requests: RecentRequests,
    ray: FakeRay,
    mlflow: FakeMlflow,
    window_s: float,
    resync_s: float,
) -> dict[str, Any]:
    k8s0, ray0, mlflow0 = requests.total, Counter(ray.calls), sum(mlflow.calls.values())
    cpu0, started, rss = operator.cpu_s(), time.monotonic(), operator.rss_mb()
    while time.monotonic() - started < window_s:
        await asyncio.sleep(1)
        rss = max(rss, operator.rss_mb())
    elapsed = time.monotonic() - started
    ray_gets = ray.calls["GET"] - ray0["GET"]
    return {
        "steady_window_s": round(elapsed, 1),
        "steady_cpu_cores": round((operator.cpu_s() - cpu0) / elapsed, 3),
        "steady_rss_mb_max": round(rss, 1),
        "k8s_calls_per_s": round((requests.total - k8s0) / elapsed, 2),
        "ray_calls_per_s": round((sum(ray.calls.values()) - sum(ray0.values())) / elapsed, 2),
        "ray_list_reads_per_resync": round(ray_gets / (elapsed / resync_s), 1),
        "mlflow_calls_per_s": round((sum(mlflow.calls.values()) - mlflow0) / elapsed, 2),
    }


async def spec_changes(
    http: httpx.AsyncClient, ray: FakeRay, count: int, objects: int, offset: int
) -> dict[str, Any]:
    """Raise one object's replicas.max at a time; acted on = its version application's new config in Ray."""
    latencies: list[float] = []
    for n in range(count):
        name = f"md-{(n * 37) % objects:04d}"
        app = f"{NS}.{name}"
        patch = {"spec": {"serving": {"replicas": {"min": 1, "max": 2 + n + offset}}}}
        sent = time.monotonic()
        response = await http.patch(
            f"{BASE}/{name}", json=patch, headers={"Content-Type": "application/merge-patch+json"}
        )
        response.raise_for_status()

        async def reached(sent: float = sent, app: str = app) -> bool:
            return any(t >= sent and (a == app or a.startswith(f"{app}.")) for t, a in ray.changed)

        try:
            latencies.append(await until(reached, 60, 0.02))
        except TimeoutError:
            latencies.append(float("inf"))
        await asyncio.sleep(1)
    finite = [x for x in latencies if x != float("inf")]
    return {
        "spec_changes": count,
        "spec_change_not_acted_on_in_60s": len(latencies) - len(finite),
        "spec_change_p50_s": round(statistics.median(finite), 2) if finite else None,
        "spec_change_p99_s": round(_pct(latencies, 0.99), 2),
    }


def child(api_url: str) -> None:
    """The operator process: Steward's handlers in Kopf, logging at INFO as `kopf run` does."""
    import ctypes

    import kopf

    # Dies with the benchmark, whatever happens to it (PR_SET_PDEATHSIG): no operator left running.
    ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)

    import steward.operator.handlers  # noqa: F401  (registers the handlers)

    @kopf.on.login()
    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=api_url, token="test", default_namespace=NS)

    kopf.configure(verbose=False)
    settings = kopf.OperatorSettings()
    settings.scanning.disabled = True
    settings.posting.enabled = False
    asyncio.run(kopf.operator(settings=settings, namespaces=[NS], standalone=True))


def run(
    objects: int = 500, steady_s: float = 60, changes: int = 10, arms: list[float | None] | None = None
) -> dict[str, Any]:
    load = os.getloadavg()[0]
    result = asyncio.run(measure(objects, steady_s, changes, [0.0, None] if arms is None else arms))
    result["load_avg_1m"] = [round(load, 2), round(os.getloadavg()[0], 2)]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--objects", type=int, default=500)
    parser.add_argument("--steady-s", type=float, default=60)
    parser.add_argument("--changes", type=int, default=10)
    parser.add_argument(
        "--arm",
        type=lambda v: None if v == "default" else float(v),
        action="append",
        default=None,
        help="STEWARD_RAY_LIST_MAX_AGE_S of an arm, or 'default' (unset; repeatable); default: 0, then unset",
    )
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    print(json.dumps(run(args.objects, args.steady_s, args.changes, args.arm), indent=2))


if __name__ == "__main__":
    main()
