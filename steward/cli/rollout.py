"""The model owner's rollout commands: `steward rollout status|history`, `steward promote|abort|pause|resume`.

A manual command is a `RolloutCommand` written into the `steward.io/rollout-command` annotation; the operator
acts on each id once and records it in `status.rollout.handledCommand`, also when it refuses (the reason is
then in `status.rollout.message`). The CLI never changes the spec or the status itself.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.live import Live
from rich.markup import escape

from steward.api.model_deployment import ACTOR_ANNOTATION, ModelDeployment
from steward.api.rollout import (
    ROLLOUT_COMMAND_ANNOTATION,
    Outcome,
    RolloutCommand,
    RolloutCommandKind,
    RolloutRecord,
)
from steward.cli.common import DEFAULT_HOME, Home, Namespace, console, err, fail, who_and_why
from steward.cli.rollout_view import (
    history_table,
    operator_behind,
    outcome_line,
    progress_key,
    progress_line,
    rollout_view,
    utc,
)
from steward.cli.sources import DeploymentSource, SourceError
from steward.cli.target import (
    CLOCK,
    Clock,
    CommandReason,
    Context,
    Kubeconfig,
    NoWait,
    WaitS,
    get_or_fail,
    open_or_fail,
)

rollout = typer.Typer(help="Follow a rollout of a new model version, and its history.", no_args_is_help=True)

POLL_INTERVAL_S = 1.0
LOG_EVERY_S = 30.0
EXIT_NOT_PROMOTED = 3
EXIT_TIMED_OUT = 4

# ------------------------------------------------------------------------------------------------ status


def _identity(md: ModelDeployment) -> tuple[str, datetime] | None:
    r = md.status.rollout
    return None if r is None else (r.canary.version, r.started_at)


def _record_of(md: ModelDeployment, watched: tuple[str, datetime] | None) -> RolloutRecord | None:
    """The history entry of the rollout that was watched, or the newest one if none was seen running."""
    history = md.status.rollout_history
    if watched is None:
        return history[-1] if history else None
    version, started_at = watched
    return next(
        (r for r in reversed(history) if r.to_version == version and r.started_at == started_at),
        None,
    )


class _Display:
    """A live view on a terminal; on a pipe (CI logs) one line each time the rollout moves."""

    def __init__(self, out: Console, clock: Clock) -> None:
        self.out = out
        self.clock = clock
        self.live = Live(console=out, auto_refresh=False) if out.is_terminal else None
        self.last_key = self.last_line = ""
        self.last_printed = 0.0

    def __enter__(self) -> _Display:
        if self.live is not None:
            self.live.start()
        return self

    def __exit__(self, *_: object) -> None:
        if self.live is not None:
            self.live.stop()

    def show(self, md: ModelDeployment) -> None:
        now = self.clock.now()
        if self.live is not None:
            self.live.update(rollout_view(md, now), refresh=True)
            return
        # Operator messages count down ("measuring window 1 (12/30s)"): print them at most every
        # LOG_EVERY_S unless the rollout itself moved, so a log gets no line per poll.
        key, line, at = progress_key(md), progress_line(md), self.clock.monotonic()
        if key != self.last_key or (line != self.last_line and at - self.last_printed >= LOG_EVERY_S):
            self.out.print(f"{utc(now)} {escape(line)}", highlight=False)
            self.last_key, self.last_line, self.last_printed = key, line, at


def watch_rollout(
    source: DeploymentSource, namespace: str, name: str, timeout_s: float | None, out: Console, clock: Clock
) -> int:
    """Follow the rollout until none is in progress; the exit code says how the watched one ended."""
    started = clock.monotonic()
    md = get_or_fail(source, namespace, name)
    watched = _identity(md)
    with _Display(out, clock) as display:
        while True:
            current = _identity(md)
            if watched is None and current is not None:
                watched = current  # it started while we waited for the operator
            if current != watched or (current is None and not operator_behind(md)):
                break
            display.show(md)
            if timeout_s is not None and clock.monotonic() - started >= timeout_s:
                r = md.status.rollout
                state = f"still {r.state.value}: {r.message}" if r else "not started yet"
                err.print(
                    f"[bold red]timed out[/] after {timeout_s:g}s: the rollout of {escape(md.key)} is "
                    f"{escape(state)}; see `steward rollout status {escape(name)} -n {escape(namespace)}`"
                )
                return EXIT_TIMED_OUT
            clock.sleep(POLL_INTERVAL_S)
            md = get_or_fail(source, namespace, name)
    record = _record_of(md, watched)
    if record is None:
        if watched is None:
            out.print(f"{escape(md.key)}: no rollout has run yet")
            return 0
        out.print(
            f"{escape(md.key)}: the rollout of version {escape(watched[0])} ended, but "
            "status.rolloutHistory has no entry for it; `steward get md -o yaml` shows the status"
        )
        return EXIT_NOT_PROMOTED
    out.print(outcome_line(record))
    return 0 if record.outcome == Outcome.PROMOTED else EXIT_NOT_PROMOTED


@rollout.command("status")
def status_command(
    name: Annotated[str, typer.Argument(help="ModelDeployment whose rollout to show.")],
    namespace: Namespace = "default",
    watch: Annotated[
        bool,
        typer.Option(
            "--watch", "-w", help="Follow it until it ends: exit 0 if promoted, 3 if not, 4 on --timeout."
        ),
    ] = False,
    timeout: Annotated[
        float | None, typer.Option("--timeout", help="With --watch: give up after this many seconds.")
    ] = None,
    home: Home = DEFAULT_HOME,
    context: Context = None,
    kubeconfig: Kubeconfig = None,
) -> None:
    """The rollout in progress: versions, state, steps, traffic split, analysis windows and recent history."""
    source = open_or_fail(home, context, kubeconfig)
    if not watch:
        console.print(rollout_view(get_or_fail(source, namespace, name), CLOCK.now()))
        return
    code = watch_rollout(source, namespace, name, timeout, console, CLOCK)
    if code:
        raise typer.Exit(code)


@rollout.command("history")
def history_command(
    name: Annotated[str, typer.Argument(help="ModelDeployment whose rollouts to list.")],
    namespace: Namespace = "default",
    home: Home = DEFAULT_HOME,
    context: Context = None,
    kubeconfig: Kubeconfig = None,
) -> None:
    """Past rollouts from status.rolloutHistory: versions, strategy, outcome and why."""
    md = get_or_fail(open_or_fail(home, context, kubeconfig), namespace, name)
    if not md.status.rollout_history:
        console.print(f"{escape(md.key)}: no rollouts yet")
        return
    console.print(history_table(md.status.rollout_history, f"rollouts of {md.key}"))


# ------------------------------------------------------------------------------------------------ commands


def _command_in(md: ModelDeployment) -> RolloutCommand | None:
    raw = md.metadata.annotations.get(ROLLOUT_COMMAND_ANNOTATION)
    if not raw:
        return None
    try:
        return RolloutCommand.model_validate_json(raw)
    except ValidationError:
        return None  # a hand-written value the operator will refuse; ours replaces it


def _describe(command: RolloutCommand) -> str:
    return f"{command.command.value} by {command.actor or 'unknown'}"


def wait_for_ack(
    source: DeploymentSource,
    namespace: str,
    name: str,
    command: RolloutCommand,
    before: ModelDeployment,
    wait_s: float,
    out: Console,
    clock: Clock,
) -> int:
    """Poll until the operator has acted on `command` or the rollout has ended; say what happened."""
    newest_before = before.status.rollout_history[-1] if before.status.rollout_history else None
    deadline = clock.monotonic() + wait_s
    while True:
        md = get_or_fail(source, namespace, name)
        r = md.status.rollout
        history = md.status.rollout_history
        if r is not None and r.handled_command == command.id:
            # Also a refusal ("resume ... ignored: the rollout is not paused") is an answer: show it as is.
            out.print(f"the operator handled it; the rollout is {r.state.value}: {escape(r.message)}")
            return 0
        if history and history[-1] != newest_before:
            out.print(outcome_line(history[-1]))
            return 0
        if r is None:
            out.print(f"{escape(md.key)}: the rollout is no longer in progress")
            return 0
        other = _command_in(md)
        if other is not None and other.id != command.id:
            fail(
                f"the command annotation now holds another command ({_describe(other)}, id {other.id}); "
                "the operator may not act on yours: see `steward rollout status` and send it again if needed"
            )
        if clock.monotonic() >= deadline:
            err.print(
                f"[bold red]timed out[/] after {wait_s:g}s: the operator has not acted on command "
                f"{command.id} yet; it stays in the annotation and is acted on at the operator's next pass. "
                f"`steward rollout status {escape(name)} -n {escape(namespace)}` shows when it has"
            )
            return EXIT_TIMED_OUT
        clock.sleep(POLL_INTERVAL_S)


def send_command(
    kind: RolloutCommandKind,
    name: str,
    namespace: str,
    reason: str | None,
    wait_s: float,
    no_wait: bool,
    source: DeploymentSource,
) -> int:
    md = get_or_fail(source, namespace, name)
    r = md.status.rollout
    verb = "promote" if kind == RolloutCommandKind.PROMOTE_FULL else kind.value
    if r is None:
        stable = md.status.stable
        serving = f"version {stable.version} is stable" if stable else "nothing serves yet"
        fail(
            f"no rollout of {md.key} is in progress ({serving}), so there is nothing to {verb}; "
            "a rollout starts when spec.model points at a new version"
        )
    pending = _command_in(md)
    if pending is not None and pending.id != r.handled_command:
        err.print(
            "[yellow]warning:[/] replacing a command the operator has not acted on yet "
            f"({escape(_describe(pending))})"
        )
    actor = who_and_why(reason)[ACTOR_ANNOTATION]
    command = RolloutCommand(id=uuid.uuid4().hex, command=kind, actor=actor, reason=reason or None)
    try:
        value = command.model_dump_json(exclude_none=True)
        source.annotate(namespace, name, ROLLOUT_COMMAND_ANNOTATION, value)
    except SourceError as exc:
        fail(str(exc))
    full = " to 100% at once" if kind == RolloutCommandKind.PROMOTE_FULL else ""
    console.print(
        f"asked the operator to {verb} the rollout of {escape(md.key)} "
        f"({escape(r.from_version)} -> {escape(r.canary.version)}){full}; command {command.id}"
    )
    if no_wait:
        return 0
    return wait_for_ack(source, namespace, name, command, md, wait_s, console, CLOCK)


def _run(
    kind: RolloutCommandKind,
    name: str,
    namespace: str,
    reason: str | None,
    wait_s: float,
    no_wait: bool,
    home: Path,
    context: str | None,
    kubeconfig: Path | None,
) -> None:
    source = open_or_fail(home, context, kubeconfig)
    code = send_command(kind, name, namespace, reason, wait_s, no_wait, source)
    if code:
        raise typer.Exit(code)


Name = Annotated[str, typer.Argument(help="ModelDeployment whose rollout it is.")]


def promote(
    name: Name,
    full: Annotated[
        bool, typer.Option("--full", help="Skip every remaining step: all traffic to the new version now.")
    ] = False,
    reason: CommandReason = None,
    namespace: Namespace = "default",
    wait_s: WaitS = 30.0,
    no_wait: NoWait = False,
    home: Home = DEFAULT_HOME,
    context: Context = None,
    kubeconfig: Kubeconfig = None,
) -> None:
    """Finish the current step of the rollout now (a pause, an analysis), or with --full all of them."""
    kind = RolloutCommandKind.PROMOTE_FULL if full else RolloutCommandKind.PROMOTE
    _run(kind, name, namespace, reason, wait_s, no_wait, home, context, kubeconfig)


def abort(
    name: Name,
    reason: CommandReason = None,
    namespace: Namespace = "default",
    wait_s: WaitS = 30.0,
    no_wait: NoWait = False,
    home: Home = DEFAULT_HOME,
    context: Context = None,
    kubeconfig: Kubeconfig = None,
) -> None:
    """Stop the rollout: all traffic back to the stable version at once."""
    _run(RolloutCommandKind.ABORT, name, namespace, reason, wait_s, no_wait, home, context, kubeconfig)


def pause(
    name: Name,
    reason: CommandReason = None,
    namespace: Namespace = "default",
    wait_s: WaitS = 30.0,
    no_wait: NoWait = False,
    home: Home = DEFAULT_HOME,
    context: Context = None,
    kubeconfig: Kubeconfig = None,
) -> None:
    """Hold the rollout at its current step and weight until `steward resume`."""
    _run(RolloutCommandKind.PAUSE, name, namespace, reason, wait_s, no_wait, home, context, kubeconfig)


def resume(
    name: Name,
    reason: CommandReason = None,
    namespace: Namespace = "default",
    wait_s: WaitS = 30.0,
    no_wait: NoWait = False,
    home: Home = DEFAULT_HOME,
    context: Context = None,
    kubeconfig: Kubeconfig = None,
) -> None:
    """Continue a paused rollout (also one waiting at a `pause` step without a duration)."""
    _run(RolloutCommandKind.RESUME, name, namespace, reason, wait_s, no_wait, home, context, kubeconfig)
