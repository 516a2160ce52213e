"""Fault injection for the integration tests: the control loop as a process of its own (so that it can be
SIGKILLed and started again), a killer that does so at every rollout transition, a steady request load, a
sampler of the router's weights as Ray itself reports them, and checks of a whole audit trail.

Run as a script, this module is a control loop with operator settings overridden from JSON: the same
`ControlLoop` and `Reconciler` that `python -m steward.dev.loop` runs, for settings that `stack.json` cannot
carry (an S3 audit store, short rollout ticks).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx

from steward.adapters.ray_serve import RayServeClient
from steward.api.model_deployment import ModelDeployment
from steward.api.serve_app import ROUTER_DEPLOYMENT
from steward.audit.records import AuditRecord
from steward.audit.verify import verify
from steward.dev.stack import Stack
from steward.dev.store import LocalStore, StoredObject

HERE = Path(__file__).resolve()


# --------------------------------------------------------------------------------------------- homes
def fault_home(stack: Stack, home: Path, **changes: Any) -> Path:
    """A home of its own (objects, manifests, audit folder, logs) over the session's Ray and MLflow.

    `changes` override the recorded stack, e.g. the dashboard port, to put a proxy between loop and Ray. No
    process ids are copied: nothing here may stop the session's processes.
    """
    home.mkdir(parents=True, exist_ok=True)
    token = home / "ray_token"
    token.touch(mode=0o600)
    token.write_text(stack.ray_token())
    replace(stack, home=home, pids={}, **changes).save()
    return home


# --------------------------------------------------------------------------------------------- the loop
class LoopProcess:
    """The local control loop in its own process group: `python -m steward.dev.loop --home HOME`, or, with
    `overrides`, this module as a script with those operator settings."""

    def __init__(
        self,
        home: Path,
        overrides: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
        interval_s: float = 0.5,
    ) -> None:
        self.home = home
        self.overrides = overrides
        self.env = env or {}
        self.interval_s = interval_s
        self.proc: subprocess.Popen[bytes] | None = None
        self.kills = 0
        self.starts = 0

    def argv(self) -> list[str]:
        base = ["--home", str(self.home), "--interval-s", str(self.interval_s)]
        if self.overrides is None:
            return [sys.executable, "-m", "steward.dev.loop", *base]
        return [sys.executable, str(HERE), *base, "--config", json.dumps(self.overrides)]

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "the loop is already running"
        (self.home / "logs").mkdir(parents=True, exist_ok=True)
        with (self.home / "logs" / "loop.log").open("ab") as log:
            log.write(f"--- start {self.starts + 1} at {time.time():.3f}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.argv(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **self.env},
                start_new_session=True,
                cwd=self.home,
            )
        self.starts += 1

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL, as the OOM killer or a node loss would: no handler runs, nothing is flushed."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.kills += 1

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.kill()

    def log_tail(self, lines: int = 40) -> str:
        path = self.home / "logs" / "loop.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


# --------------------------------------------------------------------------------------------- killer
def rollout_signature(obj: StoredObject | None) -> tuple[Any, ...]:
    """What changes at a step of the rollout (not messages, which change on every pass)."""
    if obj is None:
        return ("gone",)
    s = obj.status
    r = s.rollout
    return (
        obj.generation,
        obj.deletion_requested_at is not None,
        s.observed_generation,
        s.phase.value,
        s.stable.version if s.stable else None,
        len(s.rollout_history),
        None
        if r is None
        else (
            r.state.value,
            r.step_index,
            r.weight,
            len(r.windows),
            r.window_started_at,
            r.switched_at is not None,
        ),
    )


@dataclass
class Kill:
    at: float
    trigger: str  # "status" (after the pass wrote status) or "audit" (mid-pass: a record is written)
    signature: tuple[Any, ...]
    audit_files: int


class Killer:
    """Watches one object and its audit folder; at every change SIGKILLs the loop and starts it again.

    A change of status comes after a pass; a new audit record comes in the middle of one (records are
    written before status), so both the between-passes and the mid-pass cases are hit. At most
    `per_signature` kills per status signature, so that a pass that keeps failing cannot livelock the test.
    """

    def __init__(
        self,
        loop: LoopProcess,
        store: LocalStore,
        namespace: str,
        name: str,
        audit_dir: Path | None = None,
        per_signature: int = 2,
        poll_s: float = 0.03,
    ) -> None:
        self.loop, self.store, self.namespace, self.name = loop, store, namespace, name
        self.audit_dir = audit_dir
        self.per_signature = per_signature
        self.poll_s = poll_s
        self.kills: list[Kill] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _audit_files(self) -> int:
        if self.audit_dir is None or not self.audit_dir.exists():
            return 0
        return len(list(self.audit_dir.glob("*.json")))

    def _read(self) -> StoredObject | None:
        for _ in range(5):
            try:
                return self.store.get(self.namespace, self.name)
            except (ValueError, OSError):
                time.sleep(0.01)  # caught between a write and a rename: read again
        return self.store.get(self.namespace, self.name)

    def _run(self) -> None:
        last_sig = rollout_signature(self._read())
        last_files = self._audit_files()
        per_sig: dict[tuple[Any, ...], int] = {}
        while not self._stop.is_set():
            try:
                sig = rollout_signature(self._read())
                files = self._audit_files()
            except Exception as exc:  # reported by the test, never hidden
                self.errors.append(f"{type(exc).__name__}: {exc}")
                time.sleep(self.poll_s)
                continue
            if not self.loop.alive():
                self.errors.append(f"the loop exited by itself:\n{self.loop.log_tail()}")
                self.loop.start()
            if sig != last_sig or files != last_files:
                trigger = "status" if sig != last_sig else "audit"
                if per_sig.get(sig, 0) < self.per_signature and self.loop.alive():
                    per_sig[sig] = per_sig.get(sig, 0) + 1
                    self.loop.kill()
                    self.kills.append(Kill(time.monotonic(), trigger, sig, files))
                    self.loop.start()
                last_sig, last_files = sig, files
            time.sleep(self.poll_s)

    def __enter__(self) -> Killer:
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        self._thread.join(30)

    def summary(self) -> str:
        """Where the kills landed: trigger, then rollout state (or phase outside a rollout)."""

        def where(sig: tuple[Any, ...]) -> str:
            if len(sig) == 1:
                return str(sig[0])
            rollout = sig[-1]
            return f"{rollout[0]}/step{rollout[1]}/w{rollout[2]}" if rollout else f"{sig[3]}"

        return ", ".join(f"{k.trigger}@{where(k.signature)}" for k in self.kills)


# --------------------------------------------------------------------------------------------- load
@dataclass
class Answer:
    at: float
    status: int
    version: str | None


class Load:
    """A steady stream of scoring requests from a few threads, keeping every answer."""

    def __init__(self, url: str, records: list[dict[str, Any]], workers: int = 2, pause_s: float = 0.02):
        self.url = url
        self.records = records
        self.pause_s = pause_s
        self.answers: list[Answer] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(workers)]

    def _run(self, seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(timeout=30) as http:
            while not self._stop.is_set():
                headers = {"X-Customer-Id": f"c{rng.randrange(1000)}"}
                body = {"dataframe_records": [rng.choice(self.records)]}
                try:
                    response = http.post(self.url, json=body, headers=headers)
                    self.answers.append(
                        Answer(
                            time.monotonic(), response.status_code, response.headers.get("X-Model-Version")
                        )
                    )
                except httpx.HTTPError:
                    self.answers.append(Answer(time.monotonic(), 0, None))
                time.sleep(self.pause_s)

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def failed(self, version: str | None = None) -> list[Answer]:
        return [a for a in self.answers if a.status != 200 and (version is None or a.version == version)]


# --------------------------------------------------------------------------------------------- Ray's view
def router_weights(app: Any) -> dict[str, int] | None:
    """The weights in the router's deployed user_config, read from what Ray reports (not from Steward)."""
    config = app.deployed_config if app is not None else None
    for deployment in (config or {}).get("deployments") or []:
        if deployment.get("name") == ROUTER_DEPLOYMENT:
            weights = (deployment.get("user_config") or {}).get("weights")
            return {str(k): int(v) for k, v in weights.items()} if weights else None
    return None


class WeightSampler:
    """Polls Ray for one router application's weights and keeps every distinct value, in order."""

    def __init__(self, client: RayServeClient, app_name: Callable[[], str | None], every_s: float = 0.5):
        self.client = client
        self.app_name = app_name
        self.every_s = every_s
        self.seen: list[tuple[float, dict[str, int] | None]] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> dict[str, int] | None:
        name = self.app_name()
        return None if name is None else router_weights(self.client.get_application(name))

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                weights = self.sample()
            except Exception as exc:  # reported by the test, never hidden
                self.errors.append(f"{type(exc).__name__}: {exc}")
            else:
                if not self.seen or self.seen[-1][1] != weights:
                    self.seen.append((time.monotonic(), weights))
            self._stop.wait(self.every_s)

    def weights_of(self, version: str) -> list[int]:
        """The version's weight over time, each change once (absent counts as 0)."""
        out: list[int] = []
        for _, weights in self.seen:
            w = (weights or {}).get(version, 0)
            if not out or out[-1] != w:
                out.append(w)
        return out

    def __enter__(self) -> WeightSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        self._thread.join(30)


# --------------------------------------------------------------------------------------------- trails
def trail_problems(key: str, records: list[AuditRecord]) -> list[str]:
    """Everything wrong with a trail as a whole: numbering, chain, duplicates."""
    problems = []
    seqs = [r.seq for r in records]
    if seqs != list(range(1, len(records) + 1)):
        problems.append(f"sequence numbers are {seqs}")
    causes = [r.cause for r in records]
    dupes = sorted({c for c in causes if causes.count(c) > 1})
    if dupes:
        problems.append(f"causes recorded twice: {dupes}")
    checked = verify(key, records)
    if not checked.ok and checked.first_break is not None:
        problems.append(f"verify: {checked.first_break.message}")
    stamps = [r.timestamp for r in records]
    if stamps != sorted(stamps):
        problems.append("timestamps are not in order")
    return problems


def actions(records: Iterable[AuditRecord]) -> list[str]:
    return [r.action.value for r in records]


def md_doc(
    namespace: str,
    name: str,
    version: str,
    rollout: dict[str, Any] | None = None,
    replicas_max: int = 1,
    actor: str = "fault@bank",
) -> ModelDeployment:
    spec: dict[str, Any] = {
        "model": {"name": "credit-risk", "version": version},
        "serving": {"resources": {"cpu": 0.25}, "replicas": {"min": 1, "max": replicas_max}},
    }
    if rollout is not None:
        spec["rollout"] = rollout
    return ModelDeployment.model_validate(
        {
            "apiVersion": "steward.io/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": name, "namespace": namespace, "annotations": {"steward.io/actor": actor}},
            "spec": spec,
        }
    )


@dataclass
class Timer:
    marks: dict[str, float] = field(default_factory=dict)
    start: float = field(default_factory=time.monotonic)

    def mark(self, what: str) -> None:
        self.marks[what] = round(time.monotonic() - self.start, 1)


# --------------------------------------------------------------------------------------------- script
def main() -> None:
    import logging

    from steward.dev.loop import ControlLoop
    from steward.operator.reconciler import Reconciler

    parser = argparse.ArgumentParser(description="The local control loop with operator settings overridden.")
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--interval-s", type=float, default=0.5)
    parser.add_argument("--config", default="{}", help="OperatorConfig fields as JSON")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    stack = Stack.load(args.home)
    config = replace(stack.operator_config(), **json.loads(args.config))
    reconciler = Reconciler(config, ray_token=stack.ray_token())
    ControlLoop(LocalStore(args.home), reconciler).run(args.interval_s, threading.Event())


if __name__ == "__main__":
    main()
