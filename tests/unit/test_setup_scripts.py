"""The set-up scripts find uv however they are started.

`make test` runs pytest inside `uv run`, where python3 is the project's venv (user site disabled), and on a
new user's machine uv's folder (~/.local/bin) is not on PATH."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _path_without_uv() -> str:
    venv_bin = str(Path(sys.executable).parent)  # python3 here is the venv's, as inside `uv run`
    dirs = [venv_bin] + [d for d in os.environ.get("PATH", "").split(os.pathsep) if d]
    return os.pathsep.join(d for d in dirs if not (Path(d) / "uv").exists())


def test_ensure_uv_finds_uv_from_inside_the_venv_with_no_uv_on_path() -> None:
    env = {k: v for k, v in os.environ.items() if k != "UV"}
    env["PATH"] = _path_without_uv()
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "ensure-uv.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    printed = Path(done.stdout.strip())
    assert printed.is_file(), f"printed {done.stdout!r}; stderr: {done.stderr}"
    assert os.access(printed, os.X_OK)


def test_ensure_uv_prefers_the_uv_the_makefile_passes_down(tmp_path: Path) -> None:
    fake = tmp_path / "uv"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    env = {**os.environ, "UV": str(fake), "PATH": _path_without_uv()}
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "ensure-uv.sh")], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and done.stdout.strip() == str(fake), done.stderr
