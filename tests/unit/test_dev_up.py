"""`steward dev up` on a recorded stack starts only what is missing; a control loop started by hand is
adopted so that `steward dev down` stops it; `steward dev restart-loop` replaces every loop over the home.
Services are stand-in processes whose command lines look like the real ones (no MLflow, no Ray)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from steward.cli.main import app
from steward.dev.procs import alive
from steward.dev.stack import Stack

runner = CliRunner()
SLEEP = "import time; time.sleep(60)"


class Fakes:
    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def spawn(self, *args: str, cwd: Path | None = None, session: bool = True) -> int:
        proc = subprocess.Popen([sys.executable, "-c", SLEEP, *args], cwd=cwd, start_new_session=session)
        self.procs.append(proc)
        return proc.pid


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> Iterator[Fakes]:
    made = Fakes()

    def start_loop(stack: Stack) -> None:
        stack.pids["loop"] = made.spawn("steward.dev.loop", "--home", str(stack.home.resolve()))

    monkeypatch.setattr(Stack, "start_loop", start_loop)
    monkeypatch.setattr(Stack, "wait_ready", lambda stack, timeout_s=0: None)
    yield made
    for proc in made.procs:
        proc.kill()
        proc.wait(timeout=5)


@pytest.fixture
def home(tmp_path: Path, fakes: Fakes) -> Path:
    """A recorded stack whose MLflow and Ray are running, and no loop."""
    stack = Stack(home=tmp_path / "home", mlflow_port=15050, ray_gcs_port=16380)
    stack.pids["mlflow"] = fakes.spawn("server", "--port", "15050")
    stack.pids["ray"] = fakes.spawn("start", "--block", "--port", "16380")
    stack.save()
    return stack.home


def cli(*args: str) -> Any:
    return runner.invoke(app, list(args), catch_exceptions=False)


def recorded(home: Path) -> dict[str, int]:
    pids: dict[str, int] = json.loads((home / "stack.json").read_text())["pids"]
    return pids


def test_up_starts_only_what_is_missing(home: Path) -> None:
    before = recorded(home)
    result = cli("dev", "up", "--home", str(home))
    assert result.exit_code == 0, result.output
    after = recorded(home)
    assert after["mlflow"] == before["mlflow"] and after["ray"] == before["ray"]
    assert alive(after["loop"])
    assert "loop       started" in result.output and "mlflow     running" in result.output


def test_a_loop_started_by_hand_is_adopted_and_stopped_by_down(home: Path, fakes: Fakes) -> None:
    # As a user would: from the project folder, with a relative --home, in the terminal's session.
    by_hand = fakes.spawn("-m", "steward.dev.loop", "--home", home.name, cwd=home.parent, session=False)
    elsewhere = fakes.spawn("-m", "steward.dev.loop", "--home", "other-home", cwd=home.parent, session=False)
    result = cli("dev", "up", "--home", str(home))
    assert result.exit_code == 0, result.output
    pids = recorded(home)
    assert pids["loop"] == by_hand

    result = cli("dev", "down", "--home", str(home))
    assert result.exit_code == 0, result.output
    assert not any(alive(pid) for pid in pids.values())
    assert alive(elsewhere)  # a loop over another home is not ours to stop


def test_restart_loop_replaces_every_loop_over_the_home(home: Path, fakes: Fakes) -> None:
    assert cli("dev", "up", "--home", str(home)).exit_code == 0
    first = recorded(home)["loop"]
    by_hand = fakes.spawn("steward.dev.loop", f"--home={home}", session=False)
    result = cli("dev", "restart-loop", "--home", str(home))
    assert result.exit_code == 0, result.output
    new = recorded(home)["loop"]
    assert new not in (first, by_hand) and alive(new)
    assert not alive(first) and not alive(by_hand)
