"""What every `steward` subcommand shares: consoles, the --home option, and how to fail."""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from steward.api.model_deployment import ACTOR_ANNOTATION, CHANGE_REASON_ANNOTATION, ModelDeployment

# Piped output (CI, make) gets a wide fixed width instead of rich's 80 columns, so tables stay readable.
console = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True)

Home = Annotated[
    Path,
    typer.Option("--home", envvar="STEWARD_HOME", help="Folder of the local stack's state."),
]
DEFAULT_HOME = Path(".steward")
Namespace = Annotated[str, typer.Option("--namespace", "-n", help="Namespace of the ModelDeployment.")]


def fail(message: str, code: int = 1) -> NoReturn:
    # No hard wrapping: an error line must survive copy-paste and grep (paths are long).
    err.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    raise typer.Exit(code)


def who_and_why(reason: str | None) -> dict[str, str]:
    """The audit annotations the CLI sets: who runs it (STEWARD_ACTOR, else the login name) and why."""
    # An empty reason replaces the last one, which belonged to an earlier change.
    return {
        ACTOR_ANNOTATION: os.environ.get("STEWARD_ACTOR") or getpass.getuser(),
        CHANGE_REASON_ANNOTATION: reason or "",
    }


def stamped(md: ModelDeployment, reason: str | None) -> ModelDeployment:
    """The manifest with the CLI's audit annotations added."""
    annotations = {**md.metadata.annotations, **who_and_why(reason)}
    return md.model_copy(update={"metadata": md.metadata.model_copy(update={"annotations": annotations})})
