"""What the commands that talk to a cluster share: where to find the ModelDeployment (the local stack, or a
Kubernetes context), the options for a command sent to the operator, and the clock their polling uses."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from steward.api.model_deployment import ModelDeployment
from steward.cli.common import fail
from steward.cli.sources import DeploymentSource, SourceError, open_source

Context = Annotated[
    str | None,
    typer.Option("--context", help="Kubernetes context: talk to that cluster instead of the local stack."),
]
Kubeconfig = Annotated[
    Path | None,
    typer.Option("--kubeconfig", help="Kubeconfig file: talk to its cluster instead of the local stack."),
]
CommandReason = Annotated[
    str | None, typer.Option("--reason", help="Why: sent with the command, for the audit trail.")
]
WaitS = Annotated[
    float, typer.Option("--wait-s", help="How long to wait for the operator to act on the command.")
]
NoWait = Annotated[bool, typer.Option("--no-wait", help="Return once the command is written.")]


@dataclass
class Clock:
    """Time as the polling sees it; tests swap in one that does not sleep."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


CLOCK = Clock()


def open_or_fail(home: Path, context: str | None, kubeconfig: Path | None) -> DeploymentSource:
    try:
        return open_source(home, context, kubeconfig)
    except SourceError as exc:
        fail(str(exc))


def get_or_fail(source: DeploymentSource, namespace: str, name: str) -> ModelDeployment:
    try:
        md = source.get(namespace, name)
    except SourceError as exc:
        fail(str(exc))
    if md is None:
        fail(f"no ModelDeployment {namespace}/{name} in {source.where}; check the name and -n/--namespace")
    return md
