"""The second half of `make demo`: a canary promoted under load, then a broken version rolled back."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from rich.console import Console
from rich.live import Live

from steward.api.rollout import Outcome
from steward.cli.demo_traffic import LiveClient
from steward.cli.rollout_view import rollout_view
from steward.dev.credit_model import register, register_faulty
from steward.dev.stack import Stack
from steward.dev.store import LocalStore, StoredObject

MODEL = "credit-risk"


def watch_rollout(
    store: LocalStore, namespace: str, name: str, rollouts_before: int, console: Console, timeout_s: float
) -> StoredObject:
    """Show the rollout live until it has ended; returns the object with its history entry."""
    deadline = datetime.now(UTC).timestamp() + timeout_s
    with Live(console=console, refresh_per_second=2, transient=False) as live:
        while datetime.now(UTC).timestamp() < deadline:
            obj = store.get(namespace, name)
            if obj is not None:
                live.update(rollout_view(obj.resource(), datetime.now(UTC)))
                if len(obj.status.rollout_history) > rollouts_before and obj.status.rollout is None:
                    return obj
            threading.Event().wait(1.0)
    raise SystemExit(f"the rollout of {namespace}/{name} did not finish within {timeout_s:.0f}s")


def expect(obj: StoredObject, outcome: Outcome, reason_has: str = "") -> None:
    """The demo tells a story; a run where it did not happen says so and fails, rather than print on."""
    last = obj.status.rollout_history[-1]
    if last.outcome != outcome or reason_has not in last.reason:
        raise SystemExit(
            f"the demo expected version {last.to_version} to be {outcome.value}"
            + (f" ({reason_has!r} in the reason)" if reason_has else "")
            + f", but it was {last.outcome.value}: {last.reason}"
        )


def promote_and_break(stack: Stack, store: LocalStore, namespace: str, name: str, console: Console) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(stack.tracking_uri)
    obj = store.get(namespace, name)
    assert obj is not None and obj.status.endpoint
    endpoint = obj.status.endpoint
    # The monitoring chapters' client at the rollout's pace (~20 requests a second of sticky customers).
    with LiveClient(endpoint, pause_s=0.02) as traffic:
        with console.status("training a retrained version on fresh applicants..."):
            good = register(stack.tracking_uri, MODEL, n=4000, seed=8)
        before = len(obj.status.rollout_history)
        client.set_registered_model_alias(MODEL, "champion", good)
        console.print(f"\n[bold]1. Canary[/]: registered version {good} and moved @champion to it")
        obj = watch_rollout(store, namespace, name, before, console, timeout_s=300)
        console.print(f"\n   traffic answered meanwhile (version, HTTP status: count): {traffic.summary()}")
        expect(obj, Outcome.PROMOTED)

        with console.status("registering a version that fails on 30% of its inputs..."):
            broken = register_faulty(stack.tracking_uri, MODEL, error_share=0.3, n=2000, seed=9)
        before = len(obj.status.rollout_history)
        client.set_registered_model_alias(MODEL, "champion", broken)
        console.print(
            f"\n[bold]2. A bad version[/]: moved @champion to version {broken}, which errors on 30%"
        )
        obj = watch_rollout(store, namespace, name, before, console, timeout_s=300)
        console.print(f"\n   traffic answered meanwhile (version, HTTP status: count): {traffic.summary()}")
        expect(obj, Outcome.ROLLED_BACK, "error rate")
    # The alias still names the version that failed; Steward will not retry it until the alias moves.
    stable = obj.status.stable.version if obj.status.stable else good
    client.set_registered_model_alias(MODEL, "champion", stable)
    console.print(f"   moved @champion back to version {stable}, which kept serving throughout")
