"""What every `steward` subcommand shares: consoles, the --home option, and how to fail."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

# Piped output (CI, make) gets a wide fixed width instead of rich's 80 columns, so tables stay readable.
console = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True)

Home = Annotated[
    Path,
    typer.Option("--home", envvar="STEWARD_HOME", help="Folder of the local stack's state."),
]
DEFAULT_HOME = Path(".steward")


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(code)
