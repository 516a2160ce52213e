"""The embedded local stack: an MLflow server, a Ray head with its dashboard, and the control loop.

Everything binds to 127.0.0.1 and lives under one home folder (default `.steward/`): the MLflow database and
artifacts, the Ray auth token, logs, the control loop's manifests and objects, and `stack.json`, which records
ports and process ids so that `steward dev down` and the CLI find the stack again.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from steward.operator.config import OperatorConfig

STACK_FILE = "stack.json"


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
    num_cpus: int = 2
    # Where MLflow keeps artifacts: a local folder by default, or an s3:// URI (with S3 settings in env).
    artifacts_destination: str | None = None
    # Extra environment for the MLflow server and model replicas (e.g. MLFLOW_S3_ENDPOINT_URL, AWS_*).
    env: dict[str, str] = field(default_factory=dict)
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
            tracking_uri=self.tracking_uri,
            serve_host="127.0.0.1",
            serve_port=self.serve_port,
            endpoint_base=self.serve_url,
            replica_env=dict(self.env),
            audit_dir=str(self.home / "audit"),
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
        self.pids["mlflow"] = self._spawn("mlflow", argv, self.env)

    def start_ray(self) -> None:
        if not self.token_path.exists():
            self.token_path.write_text(secrets.token_hex(32))
            self.token_path.chmod(0o600)
        argv = [
            _bin("ray"), "start", "--head",
            "--port", str(self.ray_gcs_port),
            "--dashboard-host", "127.0.0.1", "--dashboard-port", str(self.ray_dashboard_port),
            "--node-ip-address", "127.0.0.1",
            "--num-cpus", str(self.num_cpus), "--disable-usage-stats",
        ]  # fmt: skip
        # Token authentication on, as in production: the operator's Ray client must present it.
        env = {**self.env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.ray_token()}
        with self._log("ray") as log:
            done = subprocess.run(
                argv, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env}, cwd=self.home
            )
        if done.returncode != 0:
            raise StackError(f"`ray start` failed (exit {done.returncode}); see {self.home / 'logs/ray.log'}")

    def start_loop(self) -> None:
        argv = [sys.executable, "-m", "steward.dev.loop", "--home", str(self.home.resolve())]
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

    def up(self, with_loop: bool = True) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.start_mlflow()
        self.save()
        self.start_ray()
        self.save()
        self.wait_ready()
        if with_loop:
            self.start_loop()
        self.save()

    def down(self) -> None:
        for name in ("loop", "mlflow"):
            pid = self.pids.pop(name, None)
            if pid is not None:
                _stop_group(pid)
        with self._log("ray") as log:
            # `ray stop` stops every Ray process of this user on the machine; the local stack owns Ray here.
            subprocess.run([_bin("ray"), "stop", "--force"], stdout=log, stderr=subprocess.STDOUT)
        self.save()


def _stop_group(pid: int, grace_s: float = 10.0) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
