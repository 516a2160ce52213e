"""The embedded local stack: an MLflow server, a Ray head with its dashboard, and the control loop.

Everything binds to 127.0.0.1 and lives under one home folder (default `.steward/`): the MLflow database and
artifacts, the Ray auth token, logs, the control loop's manifests and objects, and `stack.json`, which records
ports and process ids so that `steward dev down` and the CLI find the stack again.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from steward.dev.procs import alive, cmdline, is_ours, stop_session, user_processes, working_dir
from steward.operator.config import OperatorConfig

STACK_FILE = "stack.json"
SERVICES = ("mlflow", "ray", "loop")
LOOP_MODULE = "steward.dev.loop"


class StackError(RuntimeError):
    """The local stack could not start or is not running; the message says what to do."""


def _bin(name: str) -> str:
    """A console script of this environment (mlflow, ray), wherever the venv lives."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


@dataclass
class Stack:
    home: Path
    mlflow_port: int = 5050
    ray_gcs_port: int = 6380
    ray_dashboard_port: int = 8265
    serve_port: int = 8000
    # Ports Ray would otherwise take at fixed defaults (10001, 52365), so that two clusters on one machine
    # (a second stack, a test session's) do not collide; None picks a free one at start and records it.
    ray_client_port: int | None = None
    dashboard_agent_port: int | None = None
    num_cpus: int = 2
    # Where MLflow keeps artifacts: a local folder by default, or an s3:// URI (with S3 settings in env).
    artifacts_destination: str | None = None
    # Extra environment for the MLflow server and model replicas (e.g. MLFLOW_S3_ENDPOINT_URL, AWS_*).
    env: dict[str, str] = field(default_factory=dict)
    # The control loop's Prometheus /metrics port on 127.0.0.1 (None: not served).
    metrics_port: int | None = None
    pids: dict[str, int] = field(default_factory=dict)

    # --- addresses ---------------------------------------------------------------------------
    @property
    def tracking_uri(self) -> str:
        return f"http://127.0.0.1:{self.mlflow_port}"

    @property
    def ray_address(self) -> str:
        return f"http://127.0.0.1:{self.ray_dashboard_port}"

    @property
    def serve_url(self) -> str:
        return f"http://127.0.0.1:{self.serve_port}"

    @property
    def token_path(self) -> Path:
        return self.home / "ray_token"

    def ray_token(self) -> str:
        return self.token_path.read_text().strip()

    def operator_config(self, resync_interval_s: float = 2.0) -> OperatorConfig:
        return OperatorConfig(
            ray_address=self.ray_address,
            allow_insecure_ray=True,  # the token stays on 127.0.0.1
            ray_lock_dir=str(self.home),  # local writers of Ray's application list take turns
            tracking_uri=self.tracking_uri,
            serve_host="127.0.0.1",
            serve_port=self.serve_port,
            endpoint_base=self.serve_url,
            replica_env=dict(self.env),
            audit_dir=str(self.home / "audit"),
            # Absolute: Ray replicas and monitor jobs write and read it from working folders of their own.
            monitoring_uri=str((self.home / "monitoring").resolve()),
            # A logical share: two CPUs hold the demo's replicas, so a whole CPU per job would queue them.
            monitor_job_cpus=0.25,
            resync_interval_s=resync_interval_s,
            retry_max_delay_s=10.0,
            deletion_timeout_s=30.0,
        )

    # --- persistence -------------------------------------------------------------------------
    def save(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        raw = {k: v for k, v in asdict(self).items() if k != "home"}
        (self.home / STACK_FILE).write_text(json.dumps(raw, indent=1))

    @classmethod
    def load(cls, home: Path) -> Stack:
        path = home / STACK_FILE
        if not path.exists():
            raise StackError(f"no local stack under {home}: start one with `steward dev up`")
        raw: dict[str, Any] = json.loads(path.read_text())
        return cls(home=home, **raw)

    # --- life cycle ----------------------------------------------------------------------------
    def _log(self, name: str) -> Any:
        (self.home / "logs").mkdir(parents=True, exist_ok=True)
        return (self.home / "logs" / f"{name}.log").open("ab")

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> int:
        with self._log(name) as log:
            proc = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **env},
                start_new_session=True,  # outlives the CLI; stopped as a group by `down`
                cwd=self.home,
            )
        return proc.pid

    def start_mlflow(self) -> None:
        artifacts = self.artifacts_destination or str((self.home / "artifacts").resolve())
        argv = [
            _bin("mlflow"), "server",
            "--host", "127.0.0.1", "--port", str(self.mlflow_port), "--workers", "1",
            "--backend-store-uri", f"sqlite:///{(self.home / 'mlflow.db').resolve()}",
            "--artifacts-destination", artifacts,
        ]  # fmt: skip
        # MLflow 3 starts a job runner and huey consumers (five processes) for its server-side jobs, which
        # Steward never uses; on two cores they compete with Ray at start-up.
        env = {**self.env, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        self.pids["mlflow"] = self._spawn("mlflow", argv, env)

    def write_token(self) -> None:
        """Create the Ray token file readable by this user only from its first byte (no chmod afterwards)."""
        if self.token_path.exists():
            return
        self.home.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.token_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))

    def ray_argv(self) -> list[str]:
        assert self.ray_client_port is not None and self.dashboard_agent_port is not None
        # `--block`: `ray start` stays in the foreground as the leader of the session every process of this
        # cluster lives in, so `down` stops this cluster alone (`ray stop` stops every cluster of the user).
        return [
            _bin("ray"), "start", "--head", "--block",
            "--port", str(self.ray_gcs_port),
            "--dashboard-host", "127.0.0.1", "--dashboard-port", str(self.ray_dashboard_port),
            "--ray-client-server-port", str(self.ray_client_port),
            "--dashboard-agent-listen-port", str(self.dashboard_agent_port),
            "--node-ip-address", "127.0.0.1",
            "--num-cpus", str(self.num_cpus), "--disable-usage-stats",
        ]  # fmt: skip

    def start_ray(self) -> None:
        self.write_token()
        if self.ray_client_port is None:
            self.ray_client_port = _free_port()
        if self.dashboard_agent_port is None:
            self.dashboard_agent_port = _free_port()
        # Token authentication on, as in production: the operator's Ray client must present it.
        env = {
            **self.env,
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": self.ray_token(),
            # Started under `uv run` (make demo, make test), Ray would start every worker through `uv run`
            # and ship the working directory with it; the stack's venv already holds everything they need.
            "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0",
        }
        self.pids["ray"] = self._spawn("ray", self.ray_argv(), env)

    def start_loop(self) -> None:
        argv = [sys.executable, "-m", LOOP_MODULE, "--home", str(self.home.resolve())]
        if self.metrics_port is not None:
            argv += ["--metrics-port", str(self.metrics_port)]
        self.pids["loop"] = self._spawn("loop", argv, {})

    def wait_ready(self, timeout_s: float = 180.0) -> None:
        deadline = time.monotonic() + timeout_s
        checks = {
            "MLflow": (f"{self.tracking_uri}/health", {}),
            "Ray dashboard": (
                f"{self.ray_address}/api/serve/applications/",
                {"Authorization": f"Bearer {self.ray_token()}"},
            ),
        }
        for name, (url, headers) in checks.items():
            while True:
                self._check_running()
                try:
                    if httpx.get(url, headers=headers, timeout=5).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise StackError(
                        f"{name} did not answer at {url} within {timeout_s:.0f}s; see {self.home}/logs"
                    )
                time.sleep(1)

    def _check_running(self) -> None:
        """Fail fast when a service this stack started has exited (e.g. `ray start` found its port taken)."""
        for name in ("mlflow", "ray"):
            pid = self.pids.get(name)
            if pid is not None and not alive(pid):
                raise StackError(f"{name} exited during start-up; see {self.home / 'logs' / name}.log")

    def owns(self, name: str, pid: int) -> bool:
        """Whether `pid` is service `name` of this stack (and of no other stack): not a pid reused since."""
        if name == "ray":
            return is_ours(pid, ["start", "--block", "--port", str(self.ray_gcs_port)])
        if name == "mlflow":
            return is_ours(pid, ["server", "--port", str(self.mlflow_port)])
        return is_ours(pid, [LOOP_MODULE]) and _loop_home(pid) == self.home.resolve()

    def running(self, name: str) -> bool:
        pid = self.pids.get(name)
        return pid is not None and self.owns(name, pid)

    def loops(self) -> list[int]:
        """Every control loop over this home, also ones started by hand (`python -m steward.dev.loop`)."""
        return [pid for pid in user_processes() if self.owns("loop", pid)]

    def up(self, with_loop: bool = True) -> list[str]:
        """Start whichever services of this stack are not running (all of them the first time), keep the ones
        that are; returns the names of those it started. A control loop started by hand over this home is
        adopted, so that `down` stops it too."""
        self.home.mkdir(parents=True, exist_ok=True)
        started = []
        for name, start in (("mlflow", self.start_mlflow), ("ray", self.start_ray)):
            if not self.running(name):
                self.stop(name)  # what is left of an earlier run of it (a stale pid is only forgotten)
                start()
                started.append(name)
                self.save()
        self.wait_ready()
        if with_loop and not self.running("loop"):
            found = self.loops()
            if found:
                self.pids["loop"] = found[0]
            else:
                self.stop("loop")
                self.start_loop()
                started.append("loop")
        self.save()
        return started

    def restart_loop(self) -> int:
        """Stop every control loop over this home (recorded or started by hand) and start one; its pid."""
        self.stop("loop")
        self.start_loop()
        self.save()
        return self.pids["loop"]

    def stop(self, name: str) -> None:
        """Stop service `name` and every process it started, and only those."""
        pid = self.pids.get(name)
        leaders = ([] if pid is None else [pid]) + (self.loops() if name == "loop" else [])
        for leader in dict.fromkeys(leaders):
            # Ray drains for up to 30 s on SIGTERM before it stops its processes.
            grace_s = 45.0 if name == "ray" else 10.0
            # A loop has no children, and one started by hand is no session leader of ours.
            owned = functools.partial(self.owns, name)
            survivors = stop_session(leader, owned, grace_s=grace_s, sweep=name != "loop")
            if survivors:
                raise StackError(f"{name}: processes {survivors} did not stop; stop them by hand")
        self.pids.pop(name, None)
        self.save()

    def down(self) -> None:
        failures = []
        for name in ("loop", "mlflow", "ray"):
            try:
                self.stop(name)
            except StackError as exc:
                failures.append(str(exc))
        if failures:
            raise StackError("; ".join(failures))


def _loop_home(pid: int) -> Path | None:
    """The --home of a control loop process, resolved from its working folder as the loop resolves it."""
    argv = cmdline(pid) or []
    cwd = working_dir(pid)
    homes = [b for a, b in itertools.pairwise(argv) if a == "--home"]
    homes += [a.removeprefix("--home=") for a in argv if a.startswith("--home=")]
    return None if cwd is None or not homes else (cwd / homes[-1]).resolve()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port
